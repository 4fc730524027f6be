//! The comment-preserving editor must always write exactly the intended document.
#![no_main]
use libfuzzer_sys::fuzz_target;
use lumenflow_kernel::yaml::{self, edit};

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    // First line: a dotted key path; the rest: the document.
    let Some((key, doc)) = text.split_once('\n') else {
        return;
    };
    let path: Vec<String> = key
        .split('.')
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect();
    if path.is_empty() {
        return;
    }
    let value = serde_json::json!({"k": [1, "two", null]});
    if let Ok(edited) = edit::set_value(doc, &path, &value) {
        let mut expected =
            yaml::parse_value(doc).expect("set_value only succeeds on parseable input");
        edit::set_in_json(&mut expected, &path, value).expect("json set");
        assert_eq!(
            yaml::parse_value(&edited.text).expect("edited text parses"),
            expected
        );
    }
});
