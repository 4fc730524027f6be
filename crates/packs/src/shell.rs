//! Command lines for a person to paste (a `recovery_action`, a hint in an error).
//!
//! Such a line is read by an operator's shell, so every value interpolated into it is quoted
//! here: tool names, work unit ids and inputs can come from a model or a remote caller, and an
//! unquoted `;` or `$(...)` in one of them would run when the operator pastes the line
//! (walk-E finding 1, ABR-02, ABR-03).

use serde_json::Value;

/// `s` as one POSIX shell word: bare when it holds only characters no shell treats specially
/// (so the usual `lumenflow tool call pack:tool ...` lines stay readable), else single-quoted
/// with every `'` written as `'\''`.
pub fn quote(s: &str) -> String {
    let plain = !s.is_empty()
        && s.chars().all(|c| {
            c.is_ascii_alphanumeric()
                || matches!(c, '_' | '-' | ':' | '.' | '/' | '@' | '%' | '+' | '=' | ',')
        });
    if plain {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', r#"'\''"#))
    }
}

/// `lumenflow tool call <tool> --input '<input>'`, every part quoted.
pub fn tool_call_command(tool: &str, input: &Value) -> String {
    // Always quoted: JSON is rarely a plain word, and `{}` alone means something to some shells.
    let input = format!("'{}'", input.to_string().replace('\'', r#"'\''"#));
    format!("lumenflow tool call {} --input {input}", quote(tool))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use serde_json::json;

    /// Walk-E finding 1: a model-chosen tool name cannot break out of the command line.
    #[test]
    fn every_interpolated_value_is_one_shell_word() {
        assert_eq!(
            quote("software-delivery:wu_recover"),
            "software-delivery:wu_recover"
        );
        assert_eq!(quote("x;touch /tmp/PWNED;#"), "'x;touch /tmp/PWNED;#'");
        assert_eq!(quote("a'b"), r#"'a'\''b'"#);
        assert_eq!(quote("$(id)"), "'$(id)'");
        assert_eq!(quote(""), "''");
        assert_eq!(
            tool_call_command("x;rm -rf ~;#", &json!({"a": "it's"})),
            r#"lumenflow tool call 'x;rm -rf ~;#' --input '{"a":"it'\''s"}'"#
        );
        // Run through a real shell: the words come back exactly, and nothing else runs.
        for hostile in [
            "x;echo PWNED;#",
            "$(echo PWNED)",
            "`echo PWNED`",
            "a'b\"c\n",
            "*",
        ] {
            let out = std::process::Command::new("sh")
                .arg("-c")
                .arg(format!("printf %s {}", quote(hostile)))
                .output()
                .unwrap();
            assert_eq!(String::from_utf8(out.stdout).unwrap(), hostile);
        }
    }
}
