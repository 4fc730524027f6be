//! `pack author` (PAK-01): requests, validation, deterministic generation, the wizard, atomic
//! writing, and the generated Python tools run for real.
//!
//! Golden files: `fixtures/authoring/customer-ops/` is the pack generated from the original
//! engine's `BASE_REQUEST` (`fixtures/authoring/customer-ops.spec.json`). Regenerate with
//! `UPDATE_GOLDEN=1 cargo test -p lumenflow-kernel --test authoring`.
//!
//! The generated scripts are executed with `python3` (skipped, with a notice, when it is missing).
//! `http.get_json` only allows https URLs, and the scripts carry no test hooks, so its network path
//! is exercised by a harness that imports the unmodified script and points its opener at a plain
//! HTTP server on 127.0.0.1 started by the test.

#![allow(clippy::unwrap_used)]

use lumenflow_kernel::authoring::{
    generate, manifest_value, run_wizard, validate_request, write_pack, AuthoringError,
    AuthoringIssue, AuthoringRequest, FileTemplate, GeneratedPack, HttpGetJsonTemplate,
    TemplateRequest, MANIFEST_HEADER, TEMPLATE_IDS,
};
use lumenflow_kernel::yaml::emit::to_yaml_string;
use serde_json::{json, Value};
use std::fs;
use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

// ---------------------------------------------------------------------------------------------
// Requests

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/authoring")
}

/// The original engine test's BASE_REQUEST (PAK-01).
fn base_request_json() -> Value {
    json!({
        "pack_id": "customer-ops",
        "version": "1.0.0",
        "task_types": ["wu", "incident"],
        "templates": [
            {"template_id": "file.read_text", "tool_name": "read-customer-notes", "scope_pattern": "notes/**/*.md"},
            {"template_id": "file.write_text", "tool_name": "write-customer-report", "scope_pattern": "reports/**/*.md"},
            {"template_id": "http.get_json", "tool_name": "fetch-customer-profile", "allowed_urls": ["https://api.example.com/v1/customer/profile"]}
        ]
    })
}

fn base_request() -> AuthoringRequest {
    serde_json::from_value(base_request_json()).unwrap()
}

fn request_with(edit: impl FnOnce(&mut Value)) -> Result<AuthoringRequest, serde_json::Error> {
    let mut value = base_request_json();
    edit(&mut value);
    serde_json::from_value(value)
}

fn issues_of(req: &AuthoringRequest) -> Vec<AuthoringIssue> {
    validate_request(req).expect_err("request should be rejected")
}

fn has_issue(issues: &[AuthoringIssue], path: &str, needle: &str) -> bool {
    issues
        .iter()
        .any(|i| i.path == path && i.message.to_lowercase().contains(&needle.to_lowercase()))
}

#[test]
fn template_ids_are_the_three_vetted_templates() {
    assert_eq!(
        TEMPLATE_IDS,
        &["file.read_text", "file.write_text", "http.get_json"]
    );
}

#[test]
fn base_request_deserializes_with_defaults() {
    let req = base_request();
    validate_request(&req).unwrap();
    assert_eq!(
        req.templates[0],
        TemplateRequest::ReadText(FileTemplate {
            tool_name: "read-customer-notes".into(),
            description: None,
            scope_pattern: "notes/**/*.md".into(),
            max_bytes: 131_072,
        })
    );
    assert_eq!(
        req.templates[2],
        TemplateRequest::HttpGetJson(HttpGetJsonTemplate {
            tool_name: "fetch-customer-profile".into(),
            description: None,
            allowed_urls: vec!["https://api.example.com/v1/customer/profile".into()],
            timeout_ms: 5_000,
            max_bytes: 262_144,
        })
    );
    // The spec-file fixture holds the same request, and serializing gives it back.
    let text = fs::read_to_string(fixtures().join("customer-ops.spec.json")).unwrap();
    let from_file: AuthoringRequest = serde_json::from_str(&text).unwrap();
    assert_eq!(from_file, req);
    let round_trip: AuthoringRequest =
        serde_json::from_value(serde_json::to_value(&req).unwrap()).unwrap();
    assert_eq!(round_trip, req);
}

/// PAK-01: the engine test's vector (tool order, task types, permissions, scopes).
#[test]
fn manifest_follows_the_reference_vector() {
    let manifest = manifest_value(&base_request()).unwrap();
    let tools = manifest["tools"].as_array().unwrap();
    let names: Vec<&str> = tools.iter().map(|t| t["name"].as_str().unwrap()).collect();
    assert_eq!(
        names,
        [
            "fetch-customer-profile",
            "read-customer-notes",
            "write-customer-report"
        ]
    );
    let permissions: Vec<&str> = tools
        .iter()
        .map(|t| t["permission"].as_str().unwrap())
        .collect();
    assert_eq!(permissions, ["read", "read", "write"]); // fetch, read, write
    assert_eq!(manifest["task_types"], json!(["incident", "wu"]));
    assert_eq!(
        tools[0]["required_scopes"],
        json!([{"type": "network", "posture": "allowlist", "allowlist_entries": ["api.example.com:443"]}])
    );
    assert_eq!(
        tools[1]["required_scopes"],
        json!([{"type": "path", "pattern": "notes/**/*.md", "access": "read"}])
    );
    assert_eq!(
        tools[2]["required_scopes"],
        json!([{"type": "path", "pattern": "reports/**/*.md", "access": "write"}])
    );
    assert_eq!(tools[1]["entry"], "tool-impl/read-customer-notes.py");
    assert_eq!(
        tools[1]["description"],
        "Read UTF-8 text files under notes/."
    );
    assert_eq!(
        tools[0]["input_schema"]["properties"]["url"]["enum"],
        json!(["https://api.example.com/v1/customer/profile"])
    );
    assert_eq!(
        tools[0]["output_schema"]["properties"]["body"],
        json!({"type": "object", "additionalProperties": true})
    );
    let keys: Vec<&String> = manifest.as_object().unwrap().keys().collect();
    assert_eq!(
        keys,
        [
            "id",
            "version",
            "task_types",
            "tools",
            "policies",
            "evidence_types",
            "state_aliases",
            "lane_templates"
        ]
    );
}

// ---------------------------------------------------------------------------------------------
// Rejections (PAK-01: security lint blocks unsafe combinations; network templates need https)

#[test]
fn wildcard_scopes_are_rejected_for_writes_and_reads() {
    for pattern in ["**", "*", "**/*", "./**", "./**/*", " ** "] {
        let req = request_with(|v| v["templates"][1]["scope_pattern"] = json!(pattern)).unwrap();
        let issues = issues_of(&req);
        assert!(
            has_issue(
                &issues,
                "templates[1].scope_pattern",
                "scope_pattern is too broad; wildcard write scope is forbidden"
            ),
            "{pattern}: {issues:?}"
        );
        let req = request_with(|v| v["templates"][0]["scope_pattern"] = json!(pattern)).unwrap();
        let issues = issues_of(&req);
        assert!(
            has_issue(
                &issues,
                "templates[0].scope_pattern",
                "too broad; wildcard scope is forbidden"
            ),
            "{pattern}: {issues:?}"
        );
    }
}

#[test]
fn unsafe_scope_patterns_are_rejected() {
    let cases = [
        ("../secrets/**", "unsafe traversal"),
        ("notes/../../x", "unsafe traversal"),
        ("notes/\u{0}", "null-byte"),
        ("/etc/**", "absolute"),
        ("C:/data/**", "absolute"),
        ("*.md", "literal directory or file name"),
        ("**/*.md", "literal directory or file name"),
        ("{a,b}/x", "literal directory or file name"),
        ("", "must not be empty"),
        ("notes/\n", "control characters"),
    ];
    for (pattern, needle) in cases {
        let req = request_with(|v| v["templates"][0]["scope_pattern"] = json!(pattern)).unwrap();
        let issues = issues_of(&req);
        assert!(
            has_issue(&issues, "templates[0].scope_pattern", needle),
            "{pattern:?}: {issues:?}"
        );
    }
}

#[test]
fn unsafe_urls_are_rejected() {
    let cases = [
        ("http://x.example/", "allowed_urls must use https://"),
        (
            "https://x.example/?q=1",
            "must not include query params or fragments",
        ),
        (
            "https://x.example/#top",
            "must not include query params or fragments",
        ),
        (
            "https://x.example/?",
            "must not include query params or fragments",
        ),
        (
            "https://user:pw@x.example/",
            "allowed_urls cannot embed credentials",
        ),
        (
            "https://user@x.example/",
            "allowed_urls cannot embed credentials",
        ),
        ("not a url", "whitespace"),
        ("https://x.example/a\tb", "whitespace"),
        ("x.example/profile", "does not parse"),
        ("ftp://x.example/", "https"),
    ];
    for (url, needle) in cases {
        let req = request_with(|v| v["templates"][2]["allowed_urls"] = json!([url])).unwrap();
        let issues = issues_of(&req);
        assert!(
            has_issue(&issues, "templates[2].allowed_urls[0]", needle),
            "{url}: {issues:?}"
        );
    }
    let req = request_with(|v| {
        v["templates"][2]["allowed_urls"] = json!(["https://a.example/", "https://a.example/"])
    })
    .unwrap();
    assert!(has_issue(
        &issues_of(&req),
        "templates[2].allowed_urls[1]",
        "duplicate URL"
    ));
    let req = request_with(|v| v["templates"][2]["allowed_urls"] = json!([])).unwrap();
    assert!(has_issue(
        &issues_of(&req),
        "templates[2].allowed_urls",
        "between 1 and 64"
    ));
    let many: Vec<String> = (0..65).map(|i| format!("https://a.example/{i}")).collect();
    let req = request_with(|v| v["templates"][2]["allowed_urls"] = json!(many)).unwrap();
    assert!(has_issue(
        &issues_of(&req),
        "templates[2].allowed_urls",
        "between 1 and 64"
    ));
}

#[test]
fn ids_names_and_ranges_are_checked() {
    let req = request_with(|v| v["pack_id"] = json!("Bad_Id")).unwrap();
    assert!(has_issue(
        &issues_of(&req),
        "pack_id",
        "pack_id must be kebab-case"
    ));
    for bad in ["1pack", "pack-", "pack--ops", "-pack", ""] {
        let req = request_with(|v| v["pack_id"] = json!(bad)).unwrap();
        assert!(
            has_issue(&issues_of(&req), "pack_id", "kebab-case"),
            "{bad}"
        );
    }
    for bad in ["1.0", "v1.0.0", "1.0.0 "] {
        let req = request_with(|v| v["version"] = json!(bad)).unwrap();
        assert!(
            has_issue(&issues_of(&req), "version", "semantic version"),
            "{bad}"
        );
    }
    for good in ["1.0.0", "0.1.0-beta.1", "2.3.4+build.5", "01.2.3-.."] {
        let req = request_with(|v| v["version"] = json!(good)).unwrap();
        validate_request(&req).unwrap();
    }
    for bad in [
        "Read",
        "read_notes",
        "read--x",
        "read-",
        "1read",
        "a-1",
        "notes::read",
    ] {
        let req = request_with(|v| v["templates"][0]["tool_name"] = json!(bad)).unwrap();
        assert!(
            has_issue(
                &issues_of(&req),
                "templates[0].tool_name",
                "tool_name must be lowercase and use safe separators"
            ),
            "{bad}"
        );
    }
    for good in ["notes:read", "notes:read-all", "a-b-1", "x"] {
        let req = request_with(|v| v["templates"][0]["tool_name"] = json!(good)).unwrap();
        validate_request(&req).unwrap();
    }
    let req = request_with(|v| v["templates"][0]["max_bytes"] = json!(0)).unwrap();
    assert!(has_issue(
        &issues_of(&req),
        "templates[0].max_bytes",
        "between 1 and 1048576"
    ));
    let req = request_with(|v| v["templates"][2]["max_bytes"] = json!(1_048_577)).unwrap();
    assert!(has_issue(
        &issues_of(&req),
        "templates[2].max_bytes",
        "between 1 and 1048576"
    ));
    let req = request_with(|v| v["templates"][2]["timeout_ms"] = json!(99)).unwrap();
    assert!(has_issue(
        &issues_of(&req),
        "templates[2].timeout_ms",
        "between 100 and 30000"
    ));
    let req = request_with(|v| v["templates"][2]["timeout_ms"] = json!(30_000)).unwrap();
    validate_request(&req).unwrap();
    let req = request_with(|v| v["task_types"] = json!([])).unwrap();
    assert!(has_issue(&issues_of(&req), "task_types", "at least one"));
    let req = request_with(|v| v["task_types"] = json!(["wu", "  "])).unwrap();
    assert!(has_issue(
        &issues_of(&req),
        "task_types[1]",
        "must not be empty"
    ));
    let req = request_with(|v| v["templates"] = json!([])).unwrap();
    assert!(has_issue(
        &issues_of(&req),
        "templates",
        "at least one template"
    ));
    let req = request_with(|v| v["description"] = json!("two\nlines")).unwrap();
    assert!(has_issue(&issues_of(&req), "description", "single line"));
}

#[test]
fn duplicate_and_colliding_tool_names_are_rejected() {
    let req =
        request_with(|v| v["templates"][2]["tool_name"] = json!("read-customer-notes")).unwrap();
    assert!(has_issue(
        &issues_of(&req),
        "templates[2].tool_name",
        "duplicate tool_name `read-customer-notes`"
    ));
    // `notes:read` and `notes-read` would both be tool-impl/notes-read.py.
    let req = request_with(|v| {
        v["templates"][0]["tool_name"] = json!("notes:read");
        v["templates"][1]["tool_name"] = json!("notes-read");
    })
    .unwrap();
    assert!(has_issue(
        &issues_of(&req),
        "templates[1].tool_name",
        "tool-impl/notes-read.py"
    ));
}

#[test]
fn every_problem_is_reported_at_once() {
    let req = request_with(|v| {
        v["pack_id"] = json!("Bad_Id");
        v["templates"][1]["scope_pattern"] = json!("**");
        v["templates"][2]["allowed_urls"] = json!(["http://x.example/", "https://x.example/?q=1"]);
    })
    .unwrap();
    let issues = issues_of(&req);
    let paths: Vec<&str> = issues.iter().map(|i| i.path.as_str()).collect();
    assert_eq!(
        paths,
        [
            "pack_id",
            "templates[1].scope_pattern",
            "templates[2].allowed_urls[0]",
            "templates[2].allowed_urls[1]"
        ],
        "{issues:?}"
    );
    let err = generate(&req).unwrap_err();
    assert_eq!(err, issues);
    let err = AuthoringError::from(issues);
    assert_eq!(err.code(), "TEMPLATE_VALIDATION_ERROR");
    assert!(err
        .to_string()
        .contains("pack_id: pack_id must be kebab-case"));
}

/// Strict at every level: unknown keys, and keys of another template, are errors.
#[test]
fn unknown_keys_are_rejected_at_every_level() {
    let err = request_with(|v| v["templates"][0]["extra"] = json!(1)).unwrap_err();
    assert!(err.to_string().contains("unknown field `extra`"), "{err}");
    let err = request_with(|v| v["extra"] = json!(1)).unwrap_err();
    assert!(err.to_string().contains("unknown field `extra`"), "{err}");
    let err = request_with(|v| v["templates"][0]["allowed_urls"] = json!(["https://a.example/"]))
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("unknown field `allowed_urls` for template `file.read_text`"),
        "{err}"
    );
    let err = request_with(|v| v["templates"][2]["scope_pattern"] = json!("x/**")).unwrap_err();
    assert!(
        err.to_string().contains("unknown field `scope_pattern`"),
        "{err}"
    );
    let err =
        request_with(|v| v["templates"][0]["template_id"] = json!("file.delete")).unwrap_err();
    assert!(
        err.to_string()
            .contains("unknown template_id `file.delete`"),
        "{err}"
    );
    let err = request_with(|v| {
        v["templates"][0]
            .as_object_mut()
            .unwrap()
            .remove("scope_pattern");
    })
    .unwrap_err();
    assert!(
        err.to_string().contains("missing field `scope_pattern`"),
        "{err}"
    );
    let err = request_with(|v| v["templates"][0]["max_bytes"] = json!(-1)).unwrap_err();
    assert!(err.to_string().contains("invalid value"), "{err}");
}

// ---------------------------------------------------------------------------------------------
// Generation

fn file<'a>(pack: &'a GeneratedPack, rel_path: &str) -> &'a str {
    let file = pack
        .files
        .iter()
        .find(|f| f.rel_path == rel_path)
        .unwrap_or_else(|| panic!("no {rel_path}"));
    std::str::from_utf8(&file.contents).unwrap()
}

#[test]
fn generated_files_and_their_order() {
    let pack = generate(&base_request()).unwrap();
    assert_eq!(pack.pack_id, "customer-ops");
    let listing: Vec<(&str, bool)> = pack
        .files
        .iter()
        .map(|f| (f.rel_path.as_str(), f.executable))
        .collect();
    assert_eq!(
        listing,
        [
            ("manifest.yaml", false),
            ("README.md", false),
            ("tool-impl/fetch-customer-profile.py", true),
            ("tool-impl/read-customer-notes.py", true),
            ("tool-impl/write-customer-report.py", true),
        ]
    );
    let manifest = file(&pack, "manifest.yaml");
    assert!(manifest.starts_with(MANIFEST_HEADER));
    assert_eq!(
        &manifest[MANIFEST_HEADER.len()..],
        to_yaml_string(&manifest_value(&base_request()).unwrap())
    );
    for f in pack.files.iter().filter(|f| f.executable) {
        let text = std::str::from_utf8(&f.contents).unwrap();
        assert!(
            text.starts_with("#!/usr/bin/env python3\n\"\"\""),
            "{}",
            f.rel_path
        );
        assert!(text.contains("lumenflow pack author"));
    }
    assert!(file(&pack, "tool-impl/read-customer-notes.py").contains("notes/**/*.md"));
}

/// Byte-for-byte golden files of the generated pack (`UPDATE_GOLDEN=1` rewrites them).
#[test]
fn golden_pack() {
    let pack = generate(&base_request()).unwrap();
    let dir = fixtures().join("customer-ops");
    let spec_yaml = fixtures().join("customer-ops.spec.yaml");
    let spec_yaml_text = format!(
        "# lumenflow pack author --spec-file fixtures/authoring/customer-ops.spec.yaml\n{}",
        to_yaml_string(&base_request_json())
    );
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        write_pack(&pack, &fixtures(), true).unwrap();
        fs::write(&spec_yaml, &spec_yaml_text).unwrap();
    }
    for f in &pack.files {
        let golden = fs::read(dir.join(&f.rel_path))
            .unwrap_or_else(|e| panic!("{}: {e} (run with UPDATE_GOLDEN=1)", f.rel_path));
        assert!(
            golden == f.contents,
            "{} differs from its golden file (run with UPDATE_GOLDEN=1 and review the diff)",
            f.rel_path
        );
    }
    let mut on_disk = Vec::new();
    collect_files(&dir, &dir, &mut on_disk);
    on_disk.sort();
    let mut generated: Vec<String> = pack.files.iter().map(|f| f.rel_path.clone()).collect();
    generated.sort();
    assert_eq!(on_disk, generated, "extra or missing golden files");
    assert_eq!(fs::read_to_string(&spec_yaml).unwrap(), spec_yaml_text);
}

fn collect_files(root: &Path, dir: &Path, out: &mut Vec<String>) {
    for entry in fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            collect_files(root, &path, out);
        } else {
            let rel = path.strip_prefix(root).unwrap();
            out.push(rel.to_string_lossy().replace('\\', "/"));
        }
    }
}

#[test]
fn generation_is_deterministic() {
    let a = generate(&base_request()).unwrap();
    let b = generate(&base_request()).unwrap();
    assert_eq!(a, b);
    // An equivalent request: templates in another order, task types reordered with duplicates
    // and padding, URLs reordered.
    let mut reordered = base_request_json();
    reordered["templates"].as_array_mut().unwrap().reverse();
    reordered["task_types"] = json!([" incident", "wu", "incident "]);
    reordered["templates"][0]["allowed_urls"] =
        json!(["https://b.example/x", "https://a.example/y"]);
    let mut original = base_request_json();
    original["templates"][2]["allowed_urls"] =
        json!(["https://a.example/y", "https://b.example/x"]);
    let x = generate(&serde_json::from_value(reordered).unwrap()).unwrap();
    let y = generate(&serde_json::from_value(original).unwrap()).unwrap();
    assert_eq!(x, y);
}

#[test]
fn descriptions_are_used_and_defaulted() {
    let req = request_with(|v| {
        v["description"] = json!("Customer operations");
        v["templates"][0]["description"] = json!("Read the customer's notes.");
        v["templates"][1]["scope_pattern"] = json!("reports/summary.md");
        v["templates"][2]["allowed_urls"] =
            json!(["https://b.example:8443/x", "https://a.example/y"]);
    })
    .unwrap();
    let manifest = manifest_value(&req).unwrap();
    assert_eq!(manifest["description"], "Customer operations");
    let tools = manifest["tools"].as_array().unwrap();
    assert_eq!(
        tools[0]["description"],
        "Fetch JSON over HTTPS from a.example, b.example."
    );
    assert_eq!(
        tools[0]["required_scopes"][0]["allowlist_entries"],
        json!(["a.example:443", "b.example:8443"])
    );
    assert_eq!(tools[1]["description"], "Read the customer's notes.");
    assert_eq!(
        tools[2]["description"],
        "Write the UTF-8 text file reports/summary.md."
    );
}

/// Request text reaches the scripts only as escaped literals: quotes, backslashes, triple quotes
/// and non-ASCII text cannot break out of the docstring or the constants.
#[test]
fn request_text_cannot_inject_code() {
    let req = request_with(|v| {
        v["templates"][0]["description"] =
            json!("evil \"\"\" + __import__('os').system('x') # é 😀 \\");
        v["templates"][0]["scope_pattern"] = json!("notes/\"\"\"x'\\/**");
    })
    .unwrap();
    let pack = generate(&req).unwrap();
    let script = file(&pack, "tool-impl/read-customer-notes.py");
    assert!(script.is_ascii());
    assert!(!script.contains("\"\"\" + __import__"));
    let Some(python) = python3() else { return };
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tool.py");
    fs::write(&path, script).unwrap();
    let out = Command::new(python)
        .arg("-c")
        .arg(
            "import importlib.util, json, sys\n\
             spec = importlib.util.spec_from_file_location('tool', sys.argv[1])\n\
             mod = importlib.util.module_from_spec(spec)\n\
             spec.loader.exec_module(mod)\n\
             print(json.dumps([mod.__doc__, mod.SCOPE_PATTERN, mod.SCOPE_PREFIX]))",
        )
        .arg(&path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let read: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(read[0]
        .as_str()
        .unwrap()
        .contains("evil \"\"\" + __import__('os').system('x') # é 😀 \\"));
    assert_eq!(read[1], "notes/\"\"\"x'\\/**");
    assert_eq!(read[2], "notes/\"\"\"x'\\");
}

/// PAK-01: the generated manifest passes `pack validate`'s security lint (packs.md §6.1, L1-L10)
/// and entry resolution without edits.
#[test]
fn generated_manifest_passes_the_security_lint() {
    let req = request_with(|v| {
        v["templates"][2]["allowed_urls"] =
            json!(["https://a.example/x", "https://b.example:8443/y"])
    })
    .unwrap();
    let pack = generate(&req).unwrap();
    let manifest = manifest_value(&req).unwrap();
    for tool in manifest["tools"].as_array().unwrap() {
        let name = tool["name"].as_str().unwrap();
        let permission = tool["permission"].as_str().unwrap();
        let scopes = tool["required_scopes"].as_array().unwrap();
        assert!(!scopes.is_empty(), "{name}: required_scopes");
        let paths: Vec<&Value> = scopes.iter().filter(|s| s["type"] == "path").collect();
        let writes = paths.iter().filter(|s| s["access"] == "write").count();
        assert!(!(permission == "read" && writes > 0), "{name}: L1");
        assert!(
            !(permission == "write" && !paths.is_empty() && writes == 0),
            "{name}: L2"
        );
        for scope in &paths {
            let pattern = scope["pattern"].as_str().unwrap();
            assert!(
                !pattern.contains('\0') && !pattern.split('/').any(|s| s == ".."),
                "L3"
            );
            assert!(
                !["*", "**", "**/*", "./**", "./**/*"].contains(&pattern.trim()),
                "{name}: L4/L5"
            );
        }
        assert_eq!(tool["input_schema"]["type"], "object", "{name}: L6");
        assert_eq!(tool["output_schema"]["type"], "object", "{name}: L7");
        if scopes.iter().any(|s| s["type"] == "network") {
            let urls = tool["input_schema"]["properties"]["url"]["enum"]
                .as_array()
                .unwrap_or_else(|| panic!("{name}: L8"));
            for url in urls {
                let url = url::Url::parse(url.as_str().unwrap()).expect("L9");
                assert_eq!(url.scheme(), "https", "{name}: L10");
            }
            for scope in scopes.iter().filter(|s| s["type"] == "network") {
                assert_eq!(scope["posture"], "allowlist", "least privilege");
                for entry in scope["allowlist_entries"].as_array().unwrap() {
                    let (host, port) = entry.as_str().unwrap().rsplit_once(':').unwrap();
                    assert!(!host.is_empty() && port.parse::<u16>().is_ok(), "{entry}");
                }
            }
        }
        let entry = tool["entry"].as_str().unwrap();
        assert!(!entry.contains('#') && !entry.starts_with('/') && !entry.contains(".."));
        assert!(
            pack.files
                .iter()
                .any(|f| f.rel_path == entry && f.executable),
            "{entry}"
        );
    }
}

/// PAK-01: generated packs pass `pack validate` (all five checks) without edits, and their
/// `manifest.yaml` reads back as exactly the manifest value.
#[test]
fn generated_packs_pass_pack_validate() {
    let variants = [
        base_request(),
        request_with(|v| {
            v["description"] = json!("Customer operations: notes, reports # and profiles");
            v["task_types"] = json!(["yes", "1.0", "wu"]);
            v["templates"][0]["description"] = json!("Read the customer's notes.");
            v["templates"][0]["scope_pattern"] = json!("notes/draft-*.md");
            v["templates"][1]["scope_pattern"] = json!("./reports/summary.md");
            v["templates"][1]["tool_name"] = json!("report:write");
            v["templates"][2]["allowed_urls"] = json!([
                "https://b.example:8443/x",
                "https://a.example/y",
                "https://[::1]/z"
            ]);
        })
        .unwrap(),
    ];
    for req in variants {
        let pack = generate(&req).unwrap();
        let manifest_text = std::str::from_utf8(&pack.files[0].contents).unwrap();
        assert_eq!(
            lumenflow_kernel::yaml::parse_value(manifest_text).unwrap(),
            manifest_value(&req).unwrap()
        );
        let out = tempfile::tempdir().unwrap();
        let root = write_pack(&pack, out.path(), false).unwrap();
        let report = lumenflow_kernel::pack_report::validate_pack_dir(&root, &[], None);
        assert!(report.passed(), "{}", report.render_text());
    }
}

proptest::proptest! {
    /// Whatever text a request carries, an accepted request generates ASCII-only scripts and a
    /// manifest that reads back exactly; a rejected one names the field.
    #[test]
    fn any_accepted_request_generates_a_faithful_pack(
        pattern in "(\\./)?[a-z\\. '\"#:-]{1,8}(/[a-z*?{}\\[\\]\\.,-]{0,6}){0,3}",
        description in proptest::option::of(proptest::prelude::any::<String>()),
        url_path in "[a-zA-Z0-9/._~%-]{0,12}",
        task in "[ -~]{1,10}",
    ) {
        let req = request_with(|v| {
            v["templates"][1]["scope_pattern"] = json!(pattern);
            v["templates"][1]["description"] = json!(description);
            v["templates"][2]["allowed_urls"] = json!([format!("https://api.example.com/{url_path}")]);
            v["task_types"] = json!([task]);
        })
        .unwrap();
        match generate(&req) {
            Ok(pack) => {
                let manifest = std::str::from_utf8(&pack.files[0].contents).unwrap();
                proptest::prop_assert_eq!(
                    lumenflow_kernel::yaml::parse_value(manifest).unwrap(),
                    manifest_value(&req).unwrap()
                );
                for f in pack.files.iter().filter(|f| f.executable) {
                    proptest::prop_assert!(f.contents.is_ascii(), "{}", f.rel_path);
                }
            }
            Err(issues) => {
                proptest::prop_assert!(!issues.is_empty());
                for issue in &issues {
                    proptest::prop_assert!(
                        issue.path.starts_with("templates[") || issue.path.starts_with("task_types"),
                        "{issue}"
                    );
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Wizard

fn wizard(answers: &str) -> (Result<AuthoringRequest, AuthoringError>, String) {
    let mut input = answers.as_bytes();
    let mut output = Vec::new();
    let result = run_wizard(&mut input, &mut output);
    (result, String::from_utf8(output).unwrap())
}

#[test]
fn wizard_builds_a_request_and_re_asks_invalid_answers() {
    let answers = "\
customer-ops
1.0.0
task,incident
4
1
read-customer-notes
**
notes/**/*.md
y
http.get_json
fetch-customer-profile
http://api.example.com/v1/customer/profile
https://api.example.com/v1/customer/profile, https://api.example.com/v1/customer/profile
maybe
n
";
    let (result, output) = wizard(answers);
    let req = result.unwrap();
    // Task types keep their order at request level (the original's wizard test).
    assert_eq!(req.task_types, ["task", "incident"]);
    assert_eq!(req.pack_id, "customer-ops");
    assert_eq!(req.version, "1.0.0");
    assert_eq!(
        req.templates,
        [
            TemplateRequest::ReadText(FileTemplate {
                tool_name: "read-customer-notes".into(),
                description: None,
                scope_pattern: "notes/**/*.md".into(),
                max_bytes: 131_072,
            }),
            TemplateRequest::HttpGetJson(HttpGetJsonTemplate {
                tool_name: "fetch-customer-profile".into(),
                description: None,
                allowed_urls: vec!["https://api.example.com/v1/customer/profile".into()],
                timeout_ms: 5_000,
                max_bytes: 262_144,
            }),
        ]
    );
    assert!(output.contains("Pack id: "));
    assert!(output.contains("Version [1.0.0]: "));
    assert!(output.contains("Task types, comma separated [task]: "));
    assert!(output.contains("  1) file.read_text"));
    assert!(output.contains("  3) http.get_json"));
    assert!(output.contains("scope_pattern is too broad; wildcard scope is forbidden"));
    assert!(output.contains("allowed_urls must use https://"));
    assert!(output.contains("Add another tool? [y/N]: "));
    assert!(output.contains("answer `y` or `n`, got `maybe`"));
    assert!(output.contains("unknown template `4`; choose 1-3"));
    assert_eq!(
        output.matches("Scope pattern").count(),
        2,
        "asked again once"
    );
    validate_request(&req).unwrap();
}

#[test]
fn wizard_defaults_and_numbers() {
    let (result, _) = wizard("my-pack\n\n\n2\nreport:write\nreports/**/*.md\n\n");
    let req = result.unwrap();
    assert_eq!(req.version, "1.0.0");
    assert_eq!(req.task_types, ["task"]);
    assert!(
        matches!(&req.templates[..], [TemplateRequest::WriteText(t)] if t.tool_name == "report:write")
    );
}

#[test]
fn wizard_end_of_input_cancels() {
    for answers in [
        "",
        "customer-ops\n",
        "customer-ops\n1.0.0\ntask\n1\nread-notes\n",
    ] {
        let (result, _) = wizard(answers);
        let err = result.unwrap_err();
        assert!(
            matches!(err, AuthoringError::Cancelled),
            "{answers:?}: {err}"
        );
        assert_eq!(err.code(), "CANCELLED_BY_USER");
        assert_eq!(err.to_string(), "pack authoring cancelled");
    }
}

#[test]
fn wizard_gives_up_after_five_invalid_answers() {
    let (result, output) = wizard("Bad_Id\nBad_Id\nBad_Id\nBad_Id\nBad_Id\ncustomer-ops\n");
    let err = result.unwrap_err();
    assert_eq!(err.code(), "TEMPLATE_VALIDATION_ERROR");
    assert_eq!(err.issues()[0].path, "pack_id");
    assert_eq!(output.matches("pack_id must be kebab-case").count(), 5);
    // Duplicate tool names are re-asked too.
    let (result, output) = wizard("p\n\n\n1\nread-x\nnotes/**\ny\n2\nread-x\nwrite-x\nout/**\nn\n");
    assert_eq!(result.unwrap().templates.len(), 2);
    assert!(output.contains("duplicate tool_name `read-x`"));
}

// ---------------------------------------------------------------------------------------------
// Writing

#[test]
fn write_pack_writes_atomically_with_modes() {
    let out = tempfile::tempdir().unwrap();
    let pack = generate(&base_request()).unwrap();
    let target = write_pack(&pack, out.path(), false).unwrap();
    assert_eq!(target, out.path().join("customer-ops"));
    for f in &pack.files {
        assert_eq!(fs::read(target.join(&f.rel_path)).unwrap(), f.contents);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(target.join(&f.rel_path))
                .unwrap()
                .permissions()
                .mode()
                & 0o777;
            assert_eq!(
                mode,
                if f.executable { 0o755 } else { 0o644 },
                "{}",
                f.rel_path
            );
        }
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            fs::metadata(&target).unwrap().permissions().mode() & 0o777,
            0o755
        );
    }
    let names: Vec<String> = fs::read_dir(out.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, ["customer-ops"], "no staging directory left behind");
}

#[test]
fn write_pack_refuses_an_existing_directory_without_force() {
    let out = tempfile::tempdir().unwrap();
    let target = out.path().join("customer-ops");
    fs::create_dir(&target).unwrap();
    fs::write(target.join("keep.txt"), "mine").unwrap();
    let pack = generate(&base_request()).unwrap();
    let err = write_pack(&pack, out.path(), false).unwrap_err();
    assert!(matches!(&err, AuthoringError::AlreadyExists { path } if *path == target));
    assert_eq!(err.code(), "PACK_ALREADY_EXISTS");
    let names: Vec<_> = fs::read_dir(&target)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, ["keep.txt"], "existing directory untouched");
    assert_eq!(fs::read_to_string(target.join("keep.txt")).unwrap(), "mine");
    assert_eq!(
        fs::read_dir(out.path()).unwrap().count(),
        1,
        "nothing else written"
    );
}

#[test]
fn write_pack_with_force_replaces_the_directory() {
    let out = tempfile::tempdir().unwrap();
    let target = out.path().join("customer-ops");
    fs::create_dir_all(target.join("old")).unwrap();
    fs::write(target.join("old/stale.txt"), "stale").unwrap();
    let pack = generate(&base_request()).unwrap();
    write_pack(&pack, out.path(), true).unwrap();
    assert!(!target.join("old").exists());
    assert!(target.join("manifest.yaml").is_file());
    assert_eq!(
        fs::read_dir(out.path()).unwrap().count(),
        1,
        "old copy removed"
    );
}

#[test]
fn write_pack_refuses_paths_outside_the_pack() {
    let out = tempfile::tempdir().unwrap();
    for bad in ["../escape.txt", "/abs.txt", "a/../../b", "", "./x", "a\\b"] {
        let mut pack = generate(&base_request()).unwrap();
        pack.files[1].rel_path = bad.to_owned();
        let err = write_pack(&pack, out.path(), false).unwrap_err();
        assert_eq!(err.code(), "SCOPE_VIOLATION", "{bad}");
    }
    let mut pack = generate(&base_request()).unwrap();
    pack.pack_id = "../up".into();
    assert_eq!(
        write_pack(&pack, out.path(), false).unwrap_err().code(),
        "SCOPE_VIOLATION"
    );
    assert_eq!(
        fs::read_dir(out.path()).unwrap().count(),
        0,
        "nothing written"
    );
}

// ---------------------------------------------------------------------------------------------
// The generated Python tools, run for real

fn python3() -> Option<&'static str> {
    let ok = Command::new("python3")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if ok {
        Some("python3")
    } else {
        println!("notice: python3 is not installed; skipping execution of generated tools");
        None
    }
}

/// Runs a tool the way the kernel does: one JSON request on stdin, one ToolOutput on stdout,
/// exit code 0.
fn run_tool(command: &mut Command, cwd: &Path, input: Value) -> Value {
    let request = json!({"export": null, "input": input, "cwd": cwd.to_str().unwrap()});
    let mut child = command
        .current_dir(cwd)
        .env_remove("http_proxy")
        .env_remove("https_proxy")
        .env_remove("HTTP_PROXY")
        .env_remove("HTTPS_PROXY")
        .env_remove("all_proxy")
        .env_remove("ALL_PROXY")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(request.to_string().as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "exit {:?}: {stderr}", out.status);
    assert!(stderr.is_empty(), "stderr: {stderr}");
    let text = String::from_utf8(out.stdout).unwrap();
    assert_eq!(text.lines().count(), 1, "one JSON object: {text}");
    serde_json::from_str(&text).unwrap()
}

fn error_code(output: &Value) -> &str {
    assert_eq!(output["success"], false, "{output}");
    output["error"]["code"].as_str().unwrap()
}

struct Tools {
    _pack_dir: tempfile::TempDir,
    root: PathBuf,
}

impl Tools {
    fn new(req: &AuthoringRequest) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let root = write_pack(&generate(req).unwrap(), dir.path(), false).unwrap();
        Tools {
            _pack_dir: dir,
            root,
        }
    }

    fn script(&self, tool: &str) -> PathBuf {
        self.root.join(format!("tool-impl/{tool}.py"))
    }

    fn run(&self, python: &str, tool: &str, cwd: &Path, input: Value) -> Value {
        run_tool(Command::new(python).arg(self.script(tool)), cwd, input)
    }
}

#[test]
fn generated_scripts_compile() {
    let Some(python) = python3() else { return };
    let tools = Tools::new(&base_request());
    for tool in [
        "fetch-customer-profile",
        "read-customer-notes",
        "write-customer-report",
    ] {
        let status = Command::new(python)
            .args([
                "-c",
                "import ast, sys; ast.parse(open(sys.argv[1], encoding='utf-8').read())",
            ])
            .arg(tools.script(tool))
            .status()
            .unwrap();
        assert!(status.success(), "{tool}");
    }
}

#[test]
fn read_text_tool_stays_in_scope() {
    let Some(python) = python3() else { return };
    let tools = Tools::new(&base_request());
    let ws = tempfile::tempdir().unwrap();
    let outside = tempfile::tempdir().unwrap();
    let cwd = ws.path();
    fs::create_dir_all(cwd.join("notes/2024")).unwrap();
    fs::create_dir_all(cwd.join("notes-evil")).unwrap();
    fs::write(cwd.join("notes/2024/a.md"), "héllo\n").unwrap();
    fs::write(cwd.join("notes-evil/x.md"), "no").unwrap();
    fs::write(cwd.join("secret.md"), "no").unwrap();
    fs::write(outside.path().join("secret.md"), "no").unwrap();
    let read = |input: Value| tools.run(python, "read-customer-notes", cwd, input);

    let ok = read(json!({"path": "notes/2024/a.md"}));
    assert_eq!(
        ok,
        json!({"success": true, "data": {"content": "héllo\n", "bytes": 7}})
    );
    let ok = read(json!({"path": "./notes/../notes/2024/a.md"}));
    assert_eq!(ok["success"], true, "{ok}");

    let escape = read(json!({"path": "notes/../../secret.md"}));
    assert_eq!(error_code(&escape), "INVALID_INPUT");
    assert!(escape["error"]["message"]
        .as_str()
        .unwrap()
        .contains("outside the working directory"));
    let absolute = read(json!({"path": outside.path().join("secret.md").to_str().unwrap()}));
    assert_eq!(error_code(&absolute), "INVALID_INPUT");

    for outside_prefix in ["secret.md", "notes-evil/x.md", "notes"] {
        let refused = read(json!({"path": outside_prefix}));
        assert_eq!(error_code(&refused), "INVALID_INPUT", "{outside_prefix}");
    }
    let refused = read(json!({"path": "secret.md"}));
    assert!(refused["error"]["message"]
        .as_str()
        .unwrap()
        .contains("outside this tool's scope"));

    #[cfg(unix)]
    {
        std::os::unix::fs::symlink(outside.path().join("secret.md"), cwd.join("notes/link.md"))
            .unwrap();
        let link = read(json!({"path": "notes/link.md"}));
        assert_eq!(error_code(&link), "INVALID_INPUT");
        assert!(link["error"]["message"]
            .as_str()
            .unwrap()
            .contains("outside the working directory"));
        std::os::unix::fs::symlink(cwd.join("secret.md"), cwd.join("notes/inner.md")).unwrap();
        let inner = read(json!({"path": "notes/inner.md"}));
        assert_eq!(
            error_code(&inner),
            "INVALID_INPUT",
            "a link out of the prefix"
        );
    }

    fs::write(cwd.join("notes/big.md"), vec![b'x'; 131_073]).unwrap();
    assert_eq!(
        error_code(&read(json!({"path": "notes/big.md"}))),
        "PAYLOAD_TOO_LARGE"
    );
    fs::write(cwd.join("notes/limit.md"), vec![b'x'; 131_072]).unwrap();
    assert_eq!(
        read(json!({"path": "notes/limit.md"}))["data"]["bytes"],
        131_072
    );
    fs::write(cwd.join("notes/bin.md"), [0xff, 0xfe, 0x00]).unwrap();
    assert_eq!(
        error_code(&read(json!({"path": "notes/bin.md"}))),
        "INVALID_INPUT"
    );

    assert_eq!(
        error_code(&read(json!({"path": "notes/none.md"}))),
        "NOT_FOUND"
    );
    assert_eq!(error_code(&read(json!({"path": ""}))), "INVALID_INPUT");
    assert_eq!(error_code(&read(json!({}))), "INVALID_INPUT");
    assert_eq!(error_code(&read(json!({"path": 3}))), "INVALID_INPUT");
    assert_eq!(
        error_code(&read(json!({"path": "notes/2024/a.md", "x": 1}))),
        "INVALID_INPUT"
    );
    assert_eq!(
        error_code(&read(json!({"path": "notes/2024"}))),
        "INVALID_INPUT"
    );
}

#[test]
fn tools_answer_bad_requests_with_json() {
    let Some(python) = python3() else { return };
    let tools = Tools::new(&base_request());
    let ws = tempfile::tempdir().unwrap();
    for tool in [
        "fetch-customer-profile",
        "read-customer-notes",
        "write-customer-report",
    ] {
        for stdin in [
            "",
            "not json",
            "[]",
            "{\"input\": 1}",
            // The file tools need an absolute cwd; the http tool then lacks its url.
            "{\"export\": null, \"input\": {\"path\": \"notes/a.md\"}, \"cwd\": \"notes\"}",
        ] {
            let mut child = Command::new(python)
                .arg(tools.script(tool))
                .current_dir(ws.path())
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .spawn()
                .unwrap();
            child
                .stdin
                .take()
                .unwrap()
                .write_all(stdin.as_bytes())
                .unwrap();
            let out = child.wait_with_output().unwrap();
            assert!(out.status.success());
            let output: Value = serde_json::from_slice(&out.stdout).unwrap();
            assert_eq!(error_code(&output), "INVALID_INPUT", "{tool} {stdin:?}");
        }
    }
}

#[test]
fn write_text_tool_writes_in_scope_and_reports_artifacts() {
    let Some(python) = python3() else { return };
    let small = request_with(|v| v["templates"][1]["max_bytes"] = json!(16)).unwrap();
    let tools = Tools::new(&small);
    let ws = tempfile::tempdir().unwrap();
    let outside = tempfile::tempdir().unwrap();
    let cwd = ws.path();
    let write = |input: Value| tools.run(python, "write-customer-report", cwd, input);

    let ok = write(json!({"path": "reports/q1/summary.md", "content": "# Q1 ✓\n"}));
    assert_eq!(
        ok,
        json!({
            "success": true,
            "data": {"bytes_written": 9},
            "metadata": {"artifacts_written": ["reports/q1/summary.md"]}
        })
    );
    assert_eq!(
        fs::read_to_string(cwd.join("reports/q1/summary.md")).unwrap(),
        "# Q1 ✓\n"
    );
    let again = write(json!({"path": "reports/q1/summary.md", "content": "short"}));
    assert_eq!(again["data"]["bytes_written"], 5);
    assert_eq!(
        fs::read_to_string(cwd.join("reports/q1/summary.md")).unwrap(),
        "short"
    );

    assert_eq!(
        error_code(&write(json!({"path": "notes/x.md", "content": "x"}))),
        "INVALID_INPUT"
    );
    assert_eq!(
        error_code(&write(json!({"path": "../x.md", "content": "x"}))),
        "INVALID_INPUT"
    );
    assert_eq!(
        error_code(&write(
            json!({"path": "reports/big.md", "content": "x".repeat(17)})
        )),
        "PAYLOAD_TOO_LARGE"
    );
    assert!(!cwd.join("reports/big.md").exists());
    assert_eq!(
        error_code(&write(json!({"path": "reports/x.md"}))),
        "INVALID_INPUT"
    );
    assert_eq!(
        error_code(&write(json!({"path": "reports/x.md", "content": 1}))),
        "INVALID_INPUT"
    );
    assert_eq!(
        error_code(&write(json!({"path": "reports/q1", "content": "x"}))),
        "INVALID_INPUT"
    );
    #[cfg(unix)]
    {
        std::os::unix::fs::symlink(outside.path(), cwd.join("reports/out")).unwrap();
        let escape = write(json!({"path": "reports/out/x.md", "content": "x"}));
        assert_eq!(error_code(&escape), "INVALID_INPUT");
        assert_eq!(
            fs::read_dir(outside.path()).unwrap().count(),
            0,
            "nothing written outside"
        );
    }
}

#[test]
fn http_tool_refuses_urls_outside_its_allow_list() {
    let Some(python) = python3() else { return };
    let tools = Tools::new(&base_request());
    let ws = tempfile::tempdir().unwrap();
    let fetch = |input: Value| tools.run(python, "fetch-customer-profile", ws.path(), input);
    for url in [
        json!("https://api.example.com/v1/customer/other"),
        json!("https://api.example.com/v1/customer/profile?x=1"),
        json!("http://api.example.com/v1/customer/profile"),
        json!("https://evil.example/"),
        json!(7),
    ] {
        let refused = fetch(json!({ "url": url }));
        assert_eq!(error_code(&refused), "INVALID_INPUT", "{url}");
    }
    let refused = fetch(json!({"url": "https://evil.example/"}));
    assert!(refused["error"]["message"]
        .as_str()
        .unwrap()
        .contains("allow-list"));
    assert_eq!(error_code(&fetch(json!({}))), "INVALID_INPUT");
    assert_eq!(
        error_code(&fetch(
            json!({"url": "https://api.example.com/v1/customer/profile", "x": 1})
        )),
        "INVALID_INPUT"
    );
}

/// Serves canned responses on 127.0.0.1, one connection at a time, until the test ends.
fn serve() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut request = Vec::new();
            let mut buf = [0u8; 1024];
            while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                match stream.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => request.extend_from_slice(&buf[..n]),
                }
            }
            let request = String::from_utf8_lossy(&request).to_lowercase();
            let path = request.split_whitespace().nth(1).unwrap_or("/").to_owned();
            let json_accepted = request.contains("\r\naccept: application/json\r\n");
            let (status, content_type, body, extra) = match path.as_str() {
                "/ok" if request.starts_with("get ") && json_accepted => (
                    "200 OK",
                    "application/json; charset=utf-8",
                    r#"{"id":7,"name":"Ada"}"#.to_owned(),
                    String::new(),
                ),
                "/ok" => (
                    "406 Not Acceptable",
                    "text/plain",
                    "accept".to_owned(),
                    String::new(),
                ),
                "/html" => ("200 OK", "text/html", "<p>hi</p>".to_owned(), String::new()),
                "/missing" => (
                    "404 Not Found",
                    "application/json",
                    r#"{"error":"nope"}"#.to_owned(),
                    String::new(),
                ),
                "/redirect" => (
                    "302 Found",
                    "text/plain",
                    String::new(),
                    format!("Location: http://127.0.0.1:{port}/ok\r\n"),
                ),
                "/big" => (
                    "200 OK",
                    "application/json",
                    format!(r#"{{"pad":"{}"}}"#, "x".repeat(100)),
                    String::new(),
                ),
                "/array" => (
                    "200 OK",
                    "application/json",
                    "[1,2]".to_owned(),
                    String::new(),
                ),
                "/badjson" => (
                    "200 OK",
                    "application/json",
                    "{not json".to_owned(),
                    String::new(),
                ),
                _ => (
                    "500 Internal Server Error",
                    "text/plain",
                    String::new(),
                    String::new(),
                ),
            };
            let response = format!(
                "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n{extra}Connection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = stream.write_all(response.as_bytes());
        }
    });
    port
}

/// The unmodified `http.get_json` script, imported by a harness that points its opener at a
/// plain-HTTP server on 127.0.0.1 (the script itself only ever GETs its https allow-list).
#[test]
fn http_tool_handles_responses() {
    let Some(python) = python3() else { return };
    let paths = [
        "ok", "html", "missing", "redirect", "big", "array", "badjson",
    ];
    let urls: Vec<String> = paths
        .iter()
        .map(|p| format!("https://api.example.com/{p}"))
        .collect();
    let req = request_with(|v| {
        v["templates"][2]["allowed_urls"] = json!(urls);
        v["templates"][2]["max_bytes"] = json!(64);
        v["templates"][2]["timeout_ms"] = json!(5_000);
    })
    .unwrap();
    let tools = Tools::new(&req);
    let port = serve();
    let ws = tempfile::tempdir().unwrap();
    let harness = format!(
        "import importlib.util, sys, urllib.request\n\
         spec = importlib.util.spec_from_file_location('tool', sys.argv[1])\n\
         tool = importlib.util.module_from_spec(spec)\n\
         spec.loader.exec_module(tool)\n\
         real_build_opener = urllib.request.build_opener\n\
         def build_opener(*handlers):\n\
         \x20   opener = real_build_opener(*handlers)\n\
         \x20   real_open = opener.open\n\
         \x20   def open_local(request, *args, **kwargs):\n\
         \x20       request.full_url = request.full_url.replace('https://api.example.com', 'http://127.0.0.1:{port}')\n\
         \x20       return real_open(request, *args, **kwargs)\n\
         \x20   opener.open = open_local\n\
         \x20   return opener\n\
         urllib.request.build_opener = build_opener\n\
         sys.exit(tool.main())\n"
    );
    let fetch = |path: &str| {
        run_tool(
            Command::new(python)
                .arg("-c")
                .arg(&harness)
                .arg(tools.script("fetch-customer-profile"))
                .env("no_proxy", "*"),
            ws.path(),
            json!({"url": format!("https://api.example.com/{path}")}),
        )
    };
    assert_eq!(
        fetch("ok"),
        json!({"success": true, "data": {"status": 200, "body": {"id": 7, "name": "Ada"}}})
    );
    assert_eq!(error_code(&fetch("html")), "INVALID_OUTPUT");
    let missing = fetch("missing");
    assert_eq!(error_code(&missing), "HTTP_ERROR");
    assert_eq!(missing["data"]["status"], 404);
    let redirect = fetch("redirect");
    assert_eq!(
        error_code(&redirect),
        "HTTP_ERROR",
        "redirects are not followed"
    );
    assert_eq!(redirect["data"]["status"], 302);
    assert_eq!(error_code(&fetch("big")), "PAYLOAD_TOO_LARGE");
    assert_eq!(error_code(&fetch("array")), "INVALID_OUTPUT");
    assert_eq!(error_code(&fetch("badjson")), "INVALID_OUTPUT");
    // A closed port: the exception comes back as TOOL_EXECUTION_FAILED.
    let closed = TcpListener::bind("127.0.0.1:0").unwrap();
    let closed_port = closed.local_addr().unwrap().port();
    drop(closed);
    let harness_closed = harness.replace(&format!(":{port}'"), &format!(":{closed_port}'"));
    let failed = run_tool(
        Command::new(python)
            .arg("-c")
            .arg(&harness_closed)
            .arg(tools.script("fetch-customer-profile"))
            .env("no_proxy", "*"),
        ws.path(),
        json!({"url": "https://api.example.com/ok"}),
    );
    assert_eq!(error_code(&failed), "TOOL_EXECUTION_FAILED");
}
