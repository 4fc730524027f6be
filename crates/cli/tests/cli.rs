//! End-to-end tests of the `lumenflow` binary, ripgrep style: every test makes a scratch folder,
//! runs the real binary in it through [`run`] and checks what a user (or a script) would see:
//! exit codes, stdout/stderr, `--json` documents and the files left on disk.
//!
//! Requirement ids: KRN-01 manifest, KRN-02 lint/validate, KRN-03 hash, KRN-04 pins/install,
//! KRN-06 config, PAK-01 authoring.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;
use sha2::{Digest, Sha256};
use tempfile::TempDir;

// ---------------------------------------------------------------------------------------------
// Harness
// ---------------------------------------------------------------------------------------------

/// What one run of the binary did.
struct Output {
    code: Option<i32>,
    stdout: String,
    stderr: String,
    /// The command line, for failure messages.
    shown: String,
}

impl Output {
    fn success(&self) -> bool {
        self.code == Some(0)
    }

    /// stdout parsed as one JSON document (the whole of stdout, nothing else).
    fn json(&self) -> Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| {
            panic!(
                "`{}`: stdout is not one JSON document ({e}):\n{}",
                self.shown, self
            )
        })
    }

    /// The `error.code` of a `--json` failure.
    fn error_code(&self) -> String {
        let v = self.json();
        v["error"]["code"]
            .as_str()
            .unwrap_or_else(|| panic!("`{}`: no error.code in {v}", self.shown))
            .to_string()
    }
}

impl std::fmt::Display for Output {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "$ {}\nexit: {:?}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.shown, self.code, self.stdout, self.stderr
        )
    }
}

/// The only place that spawns `lumenflow`: in `dir`, with `NO_COLOR=1`, stdin from `stdin` (or
/// empty, so a command that unexpectedly asks something cannot hang the suite).
fn run(dir: &Path, args: &[&str], stdin: Option<&str>) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_lumenflow"))
        .args(args)
        .current_dir(dir)
        .env("NO_COLOR", "1")
        .env("GIT_TERMINAL_PROMPT", "0")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn lumenflow");
    let mut pipe = child.stdin.take().expect("stdin pipe");
    let input = stdin.unwrap_or("").to_string();
    // Write from a thread: the child may answer on stderr before it has read everything.
    let writer = std::thread::spawn(move || {
        let _ = pipe.write_all(input.as_bytes());
        // Dropping the pipe closes stdin (end of input).
    });
    let out = child.wait_with_output().expect("wait for lumenflow");
    writer.join().expect("stdin writer");
    Output {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        shown: format!("lumenflow {}", args.join(" ")),
    }
}

/// Run and require exit code 0.
fn ok(dir: &Path, args: &[&str]) -> Output {
    let out = run(dir, args, None);
    assert!(out.success(), "expected success:\n{out}");
    out
}

/// Run and require a failure (exit code 1, the documented failure code).
fn fails(dir: &Path, args: &[&str]) -> Output {
    let out = run(dir, args, None);
    assert_eq!(out.code, Some(1), "expected exit code 1:\n{out}");
    out
}

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn tmp() -> TempDir {
    tempfile::Builder::new()
        .prefix("lumenflow-cli-test-")
        .tempdir()
        .unwrap()
}

/// A fresh folder with `lumenflow init` run in it.
fn workspace() -> TempDir {
    let dir = tmp();
    ok(dir.path(), &["init", "--id", "test-ws", "--name", "Test"]);
    dir
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

fn write(path: &Path, text: &str) {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).unwrap();
    }
    std::fs::write(path, text).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
}

/// The three-tool request the demo uses (a copy of `demo.rs`'s SPEC).
const CUSTOMER_OPS_SPEC: &str = include_str!("../../../fixtures/cli/customer-ops.spec.yaml");

/// A one-tool authoring request.
fn read_tool_spec(id: &str, version: &str, tool: &str, scope: &str) -> String {
    format!(
        "pack_id: {id}\nversion: {version}\ntask_types: [task]\ntemplates:\n  - template_id: file.read_text\n    tool_name: {tool}\n    scope_pattern: {scope}\n"
    )
}

/// Author a pack with `pack author --spec-file` into `<dir>/<output>/<id>` and return that folder.
fn author(dir: &Path, spec: &str, output: &str) -> PathBuf {
    let spec_path = dir.join(format!("spec-{}.yaml", unique()));
    write(&spec_path, spec);
    let out = ok(
        dir,
        &[
            "pack",
            "author",
            "--spec-file",
            spec_path.to_str().unwrap(),
            "--output",
            output,
        ],
    );
    let id = spec
        .lines()
        .find_map(|l| l.strip_prefix("pack_id: "))
        .expect("spec has pack_id")
        .trim();
    let pack = dir.join(output).join(id);
    assert!(
        pack.join("manifest.yaml").is_file(),
        "no manifest in {}:\n{out}",
        pack.display()
    );
    pack
}

fn unique() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    N.fetch_add(1, Ordering::Relaxed)
}

/// `pack hash --pack-root <dir>`, as printed.
fn pack_hash(cwd: &Path, pack: &Path) -> String {
    let out = ok(
        cwd,
        &["pack", "hash", "--pack-root", pack.to_str().unwrap()],
    );
    out.stdout.trim().to_string()
}

fn is_sha256_prefixed(s: &str) -> bool {
    s.strip_prefix("sha256:").is_some_and(|hex| {
        hex.len() == 64
            && hex
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    })
}

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// The fields of the pin for `id` in workspace.yaml text (block style, as the binary writes it).
fn pin_fields(workspace_yaml: &str, id: &str) -> Option<BTreeMap<String, String>> {
    let lines: Vec<&str> = workspace_yaml.lines().collect();
    let start = lines
        .iter()
        .position(|l| l.trim() == format!("- id: {id}"))?;
    let indent = lines[start].find('-')?;
    let mut fields = BTreeMap::new();
    fields.insert("id".to_string(), id.to_string());
    for line in &lines[start + 1..] {
        let lead = line.len() - line.trim_start().len();
        if line.trim().is_empty() || lead <= indent {
            break;
        }
        if let Some((k, v)) = line.trim().split_once(": ") {
            fields.insert(k.to_string(), v.trim_matches('"').to_string());
        }
    }
    Some(fields)
}

/// The pin for `id` in `<ws>/workspace.yaml`, which must exist.
fn pin(ws: &Path, id: &str) -> BTreeMap<String, String> {
    let text = read(&ws.join("workspace.yaml"));
    pin_fields(&text, id).unwrap_or_else(|| panic!("no pin for `{id}` in:\n{text}"))
}

/// Nothing left behind in the install staging area.
fn assert_no_staging_leftovers(ws: &Path) {
    let tmp = ws.join(".lumenflow/tmp");
    let left: Vec<_> = std::fs::read_dir(&tmp)
        .map(|d| d.flatten().map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "staging leftovers in {tmp:?}: {left:?}");
}

fn comment_lines(text: &str) -> Vec<String> {
    text.lines()
        .filter(|l| l.trim_start().starts_with('#'))
        .map(|l| l.trim().to_string())
        .collect()
}

/// A `.tar.gz` of `pack` with every entry under `package/`, as registries publish them.
fn tarball_of(pack: &Path) -> Vec<u8> {
    let gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    let mut builder = tar::Builder::new(gz);
    builder.append_dir_all("package", pack).unwrap();
    builder.into_inner().unwrap().finish().unwrap()
}

// ---------------------------------------------------------------------------------------------
// A tiny HTTP/1.1 server for the registry tests
// ---------------------------------------------------------------------------------------------

struct Server {
    base: String,
    /// Request lines seen (`GET /path`), in order.
    requests: Arc<Mutex<Vec<String>>>,
}

/// Serve `routes` (path -> body) on 127.0.0.1; any other path is a 404. One request per
/// connection (`Connection: close`); the thread lives until the test process ends.
fn serve(routes: BTreeMap<String, Vec<u8>>) -> Server {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let requests = Arc::new(Mutex::new(Vec::new()));
    let seen = Arc::clone(&requests);
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { continue };
            handle(stream, &routes, &seen);
        }
    });
    Server {
        base: format!("http://127.0.0.1:{port}"),
        requests,
    }
}

fn handle(mut stream: TcpStream, routes: &BTreeMap<String, Vec<u8>>, seen: &Mutex<Vec<String>>) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match stream.read(&mut byte) {
            Ok(1) => head.push(byte[0]),
            _ => return,
        }
    }
    let head = String::from_utf8_lossy(&head);
    let mut parts = head.lines().next().unwrap_or("").split_whitespace();
    let method = parts.next().unwrap_or("").to_string();
    let path = parts.next().unwrap_or("").to_string();
    seen.lock().unwrap().push(format!("{method} {path}"));
    let (status, body): (&str, &[u8]) = match routes.get(&path) {
        Some(body) if method == "GET" => ("200 OK", body),
        _ => ("404 Not Found", b"not found"),
    };
    let header = format!(
        "HTTP/1.1 {status}\r\nContent-Length: {}\r\nContent-Type: application/octet-stream\r\nConnection: close\r\n\r\n",
        body.len()
    );
    let _ = stream.write_all(header.as_bytes());
    let _ = stream.write_all(body);
    let _ = stream.flush();
}

/// A registry serving one pack version: the metadata document and the tarball.
fn registry_for(id: &str, version: &str, tarball: &[u8]) -> Server {
    let meta = serde_json::json!({"pack": {
        "latestVersion": version,
        "versions": [{"version": version, "integrity": format!("sha256:{}", sha256_hex(tarball))}],
    }});
    let mut routes = BTreeMap::new();
    routes.insert(
        format!("/api/registry/packs/{id}"),
        serde_json::to_vec(&meta).unwrap(),
    );
    routes.insert(
        format!("/api/registry/packs/{id}/versions/{version}/tarball"),
        tarball.to_vec(),
    );
    serve(routes)
}

// ---------------------------------------------------------------------------------------------
// 1. The new user's path, start to finish
// ---------------------------------------------------------------------------------------------

/// KRN-01..04, KRN-06, PAK-01: init -> author -> validate -> hash -> install -> list -> config.
#[test]
fn new_user_can_author_validate_hash_install_and_configure_a_pack() {
    let dir = tmp();
    let ws = dir.path();
    ok(ws, &["init"]);
    let initial = read(&ws.join("workspace.yaml"));
    let comments = comment_lines(&initial);
    assert!(
        !comments.is_empty(),
        "init wrote no comments to keep:\n{initial}"
    );
    assert!(ws.join(".lumenflow").is_dir());

    // PAK-01
    write(&ws.join("spec.yaml"), CUSTOMER_OPS_SPEC);
    ok(ws, &["pack", "author", "--spec-file", "spec.yaml"]);
    assert!(ws.join("packs/customer-ops/manifest.yaml").is_file());

    // KRN-02
    let validate = ok(ws, &["pack", "validate", "--id", "customer-ops"]);
    assert!(
        validate.stdout.contains("Result: ALL CHECKS PASSED"),
        "{validate}"
    );

    // KRN-03: exactly one line, `sha256:<64 hex>`.
    let hash_out = ok(ws, &["pack", "hash", "--id", "customer-ops"]);
    let lines: Vec<&str> = hash_out.stdout.lines().collect();
    assert_eq!(lines.len(), 1, "{hash_out}");
    let hash = lines[0].to_string();
    assert!(is_sha256_prefixed(&hash), "{hash_out}");

    // KRN-04
    ok(
        ws,
        &[
            "pack",
            "install",
            "--id",
            "customer-ops",
            "--source",
            "local",
            "--version",
            "1.0.0",
        ],
    );
    let p = pin(ws, "customer-ops");
    assert_eq!(p["integrity"], hash);
    assert_eq!(p["source"], "local");
    assert_eq!(p["version"], "1.0.0");
    assert!(ws.join("packs/customer-ops/manifest.yaml").is_file());

    let list = ok(ws, &["pack", "list", "--json"]).json();
    let pinned = list["pinned"].as_array().unwrap();
    assert_eq!(pinned.len(), 1, "{list}");
    assert_eq!(pinned[0]["id"], "customer-ops");
    assert_eq!(pinned[0]["status"], "ok (verified)", "{list}");
    assert_eq!(pinned[0]["integrity"], hash.as_str());

    // KRN-06
    ok(
        ws,
        &[
            "config",
            "set",
            "--key",
            "control_plane.sync_interval",
            "--value",
            "30",
        ],
    );
    let get = ok(
        ws,
        &["config", "get", "--key", "control_plane.sync_interval"],
    );
    assert_eq!(get.stdout, "30\n", "{get}");
    let after = read(&ws.join("workspace.yaml"));
    assert_eq!(
        comment_lines(&after),
        comments,
        "comments written by init were lost:\n{after}"
    );
    // The pin survived the config write.
    assert_eq!(pin(ws, "customer-ops")["integrity"], hash);
}

// ---------------------------------------------------------------------------------------------
// 2. Hash conformance
// ---------------------------------------------------------------------------------------------

/// KRN-03 vector A, in text and in JSON.
#[test]
fn pack_hash_of_vector_a_is_the_published_digest() {
    const VECTOR_A: &str =
        "sha256:cba5564b47ac176995ef5f3c9dbf4d54f0992201f84678631b29c6ba49dfcd8e";
    let dir = tmp();
    let root = repo_root().join("fixtures/packs/vectors/a-sample-min");
    assert!(root.is_dir(), "missing fixture {}", root.display());
    let root = root.to_str().unwrap();

    let text = ok(dir.path(), &["pack", "hash", "--pack-root", root]);
    assert_eq!(text.stdout, format!("{VECTOR_A}\n"), "{text}");

    let json = ok(dir.path(), &["pack", "hash", "--pack-root", root, "--json"]).json();
    assert_eq!(json["integrity"], VECTOR_A, "{json}");
}

// ---------------------------------------------------------------------------------------------
// 3. Bad input never leaves anything half-done
// ---------------------------------------------------------------------------------------------

/// KRN-01/02/04: an unknown manifest key is pointed at (file, line, suggestion) by validate, and
/// install of that pack changes nothing.
#[test]
fn misspelled_manifest_key_is_located_and_blocks_install() {
    let ws_dir = workspace();
    let ws = ws_dir.path();
    let pack = misspelled_pack(ws);
    let broken = read(&pack.join("manifest.yaml"));
    let line = broken
        .lines()
        .position(|l| l.contains("permision"))
        .unwrap()
        + 1;

    let out = fails(ws, &["pack", "validate", "--pack-root", "src/notes-pack"]);
    assert!(
        out.stderr
            .contains(&format!("src/notes-pack/manifest.yaml:{line}:")),
        "no file:line in stderr:\n{out}"
    );
    assert!(
        out.stderr.contains("did you mean `permission`"),
        "no suggestion:\n{out}"
    );
    assert!(out.stdout.contains("VALIDATION FAILED"), "{out}");

    let before = std::fs::read(ws.join("workspace.yaml")).unwrap();
    let install = fails(
        ws,
        &[
            "pack",
            "install",
            "--id",
            "notes-pack",
            "--source",
            "local",
            "--version",
            "1.0.0",
            "--pack-root",
            "src/notes-pack",
            "--json",
        ],
    );
    assert_eq!(install.error_code(), "VALIDATION_ERROR", "{install}");
    assert_eq!(std::fs::read(ws.join("workspace.yaml")).unwrap(), before);
    assert!(!ws.join("packs/notes-pack").exists());
    assert_no_staging_leftovers(ws);
}

/// A pack with `permision:` instead of `permission:` at `<dir>/src/notes-pack`.
fn misspelled_pack(dir: &Path) -> PathBuf {
    let pack = author(
        dir,
        &read_tool_spec("notes-pack", "1.0.0", "read-notes", "notes/**/*.md"),
        "src",
    );
    let manifest = read(&pack.join("manifest.yaml"));
    assert!(manifest.contains("permission: read"), "{manifest}");
    write(
        &pack.join("manifest.yaml"),
        &manifest.replacen("permission: read", "permision: read", 1),
    );
    pack
}

/// KRN-02: a failed `pack validate --json` is still ONE JSON document on stdout.
///
/// Known bug: `commands/pack.rs` `validate` prints the report with `print_ok` and then returns a
/// `VALIDATION_FAILED` error that `print_error` also prints in JSON mode (`already_reported` is
/// `!ctx.json`), so stdout holds two concatenated documents.
#[test]

fn failed_validate_in_json_mode_prints_one_json_document() {
    let dir = tmp();
    misspelled_pack(dir.path());
    let out = fails(
        dir.path(),
        &[
            "pack",
            "validate",
            "--pack-root",
            "src/notes-pack",
            "--json",
        ],
    );
    let v = out.json();
    assert!(
        v["passed"] == false || v["error"]["code"].is_string(),
        "{out}"
    );
}

/// KRN-02/04: when install refuses a pack, the problem points at the user's file, not at the
/// deleted staging copy, and keeps the did-you-mean.
///
/// Known bug: install validates the staged copy, so the error names
/// `<ws>/.lumenflow/tmp/install-notes-pack-XXXX/pack/manifest.yaml` (gone by the time the user
/// reads it), drops the `did you mean` help, and `--json` has `diagnostics: []`.
#[test]

fn install_validation_errors_point_at_the_source_manifest() {
    let ws_dir = workspace();
    let ws = ws_dir.path();
    misspelled_pack(ws);
    let args = [
        "pack",
        "install",
        "--id",
        "notes-pack",
        "--source",
        "local",
        "--version",
        "1.0.0",
        "--pack-root",
        "src/notes-pack",
    ];
    let out = fails(ws, &args);
    assert!(!out.stderr.contains(".lumenflow/tmp"), "{out}");
    assert!(out.stderr.contains("src/notes-pack/manifest.yaml"), "{out}");
    assert!(out.stderr.contains("did you mean `permission`"), "{out}");
}

/// KRN-04: the folder's manifest must be the pack that was asked for (id and version).
#[test]
fn install_refuses_a_pack_whose_manifest_is_not_the_requested_id_or_version() {
    let ws_dir = workspace();
    let ws = ws_dir.path();
    author(
        ws,
        &read_tool_spec("real-id", "1.0.0", "read-notes", "notes/**/*.md"),
        "src",
    );
    let before = std::fs::read(ws.join("workspace.yaml")).unwrap();

    let wrong_id = fails(
        ws,
        &[
            "pack",
            "install",
            "--id",
            "other-id",
            "--source",
            "local",
            "--version",
            "1.0.0",
            "--pack-root",
            "src/real-id",
            "--json",
        ],
    );
    assert_eq!(wrong_id.error_code(), "MANIFEST_MISMATCH", "{wrong_id}");
    let message = wrong_id.json()["error"]["message"].to_string();
    assert!(
        message.contains("real-id") && message.contains("other-id"),
        "{wrong_id}"
    );

    let wrong_version = fails(
        ws,
        &[
            "pack",
            "install",
            "--id",
            "real-id",
            "--source",
            "local",
            "--version",
            "2.0.0",
            "--pack-root",
            "src/real-id",
            "--json",
        ],
    );
    assert_eq!(
        wrong_version.error_code(),
        "MANIFEST_MISMATCH",
        "{wrong_version}"
    );

    assert_eq!(std::fs::read(ws.join("workspace.yaml")).unwrap(), before);
    assert!(!ws.join("packs/other-id").exists());
    assert!(!ws.join("packs/real-id").exists());
    assert_no_staging_leftovers(ws);
}

/// KRN-04: `--integrity` is a promise about the content; a different pack is refused.
#[test]
fn install_with_a_wrong_expected_integrity_is_refused() {
    let ws_dir = workspace();
    let ws = ws_dir.path();
    author(
        ws,
        &read_tool_spec("notes-pack", "1.0.0", "read-notes", "notes/**/*.md"),
        "src",
    );
    let before = std::fs::read(ws.join("workspace.yaml")).unwrap();
    let wrong = format!("sha256:{}", "0".repeat(64));
    let out = fails(
        ws,
        &[
            "pack",
            "install",
            "--id",
            "notes-pack",
            "--source",
            "local",
            "--version",
            "1.0.0",
            "--pack-root",
            "src/notes-pack",
            "--integrity",
            &wrong,
            "--json",
        ],
    );
    assert_eq!(out.error_code(), "INTEGRITY_MISMATCH", "{out}");
    assert_eq!(std::fs::read(ws.join("workspace.yaml")).unwrap(), before);
    assert!(!ws.join("packs/notes-pack").exists());
}

/// KRN-04: an installed pack is only replaced by a different one with `--force`.
#[test]
fn install_over_a_different_installed_pack_needs_force() {
    let ws_dir = workspace();
    let ws = ws_dir.path();
    let first = author(
        ws,
        &read_tool_spec("notes-pack", "1.0.0", "read-notes", "notes/**/*.md"),
        "src1",
    );
    let second = author(
        ws,
        &read_tool_spec("notes-pack", "1.0.0", "read-docs", "docs/**/*.md"),
        "src2",
    );
    let first_hash = pack_hash(ws, &first);
    let second_hash = pack_hash(ws, &second);
    assert_ne!(first_hash, second_hash);
    let install = |root: &str, force: bool| {
        let mut args = vec![
            "pack",
            "install",
            "--id",
            "notes-pack",
            "--source",
            "local",
            "--version",
            "1.0.0",
            "--pack-root",
            root,
            "--json",
        ];
        if force {
            args.push("--force");
        }
        run(ws, &args, None)
    };

    let out = install("src1/notes-pack", false);
    assert!(out.success(), "{out}");
    assert_eq!(pin(ws, "notes-pack")["integrity"], first_hash);

    // The same content again is fine and changes nothing.
    let again = install("src1/notes-pack", false);
    assert!(again.success(), "{again}");
    assert_eq!(again.json()["unchanged"], true, "{again}");

    let before = std::fs::read(ws.join("workspace.yaml")).unwrap();
    let refused = install("src2/notes-pack", false);
    assert_eq!(refused.code, Some(1), "{refused}");
    assert_eq!(refused.error_code(), "PACK_ALREADY_INSTALLED", "{refused}");
    assert_eq!(std::fs::read(ws.join("workspace.yaml")).unwrap(), before);
    assert_eq!(pack_hash(ws, &ws.join("packs/notes-pack")), first_hash);
    assert!(ws
        .join("packs/notes-pack/tool-impl/read-notes.py")
        .is_file());

    let forced = install("src2/notes-pack", true);
    assert!(forced.success(), "{forced}");
    assert_eq!(forced.json()["replaced"], true, "{forced}");
    assert_eq!(pin(ws, "notes-pack")["integrity"], second_hash);
    assert_eq!(pack_hash(ws, &ws.join("packs/notes-pack")), second_hash);
    assert!(
        !ws.join("packs/notes-pack/tool-impl/read-notes.py").exists(),
        "files of the replaced pack were left behind"
    );
    assert_no_staging_leftovers(ws);
}

/// KRN-04: the pin holds: a file changed after install makes the pack fail to load.
#[test]
fn pack_list_flags_an_installed_pack_that_was_tampered_with() {
    let ws_dir = workspace();
    let ws = ws_dir.path();
    author(
        ws,
        &read_tool_spec("notes-pack", "1.0.0", "read-notes", "notes/**/*.md"),
        "src",
    );
    ok(
        ws,
        &[
            "pack",
            "install",
            "--id",
            "notes-pack",
            "--source",
            "local",
            "--version",
            "1.0.0",
            "--pack-root",
            "src/notes-pack",
        ],
    );
    let script = ws.join("packs/notes-pack/tool-impl/read-notes.py");
    let mut text = read(&script);
    text.push_str("\n# exfiltrate()\n");
    write(&script, &text);

    let list = ok(ws, &["pack", "list", "--json"]).json();
    let status = list["pinned"][0]["status"].as_str().unwrap_or("");
    assert!(status.starts_with("INTEGRITY_MISMATCH"), "{list}");
}

/// `pack author` never overwrites a pack folder unless asked to (PAK-01).
#[test]
fn author_refuses_to_overwrite_an_existing_pack_without_force() {
    let dir = tmp();
    let d = dir.path();
    let pack = author(
        d,
        &read_tool_spec("notes-pack", "1.0.0", "read-notes", "notes/**/*.md"),
        "packs",
    );
    write(&pack.join("NOTES.txt"), "mine\n");
    write(
        &d.join("other.yaml"),
        &read_tool_spec("notes-pack", "1.0.0", "read-docs", "docs/**/*.md"),
    );

    let out = fails(
        d,
        &["pack", "author", "--spec-file", "other.yaml", "--json"],
    );
    assert_eq!(out.error_code(), "PACK_ALREADY_EXISTS", "{out}");
    assert_eq!(read(&pack.join("NOTES.txt")), "mine\n");
    assert!(pack.join("tool-impl/read-notes.py").is_file());

    ok(
        d,
        &["pack", "author", "--spec-file", "other.yaml", "--force"],
    );
    assert!(pack.join("tool-impl/read-docs.py").is_file());
    assert!(!pack.join("tool-impl/read-notes.py").exists());
}

/// PAK-01: spec-file problems point at the field.
#[test]
fn author_rejects_a_wildcard_write_scope_in_a_spec_file() {
    let dir = tmp();
    let d = dir.path();
    write(
        &d.join("spec.yaml"),
        "pack_id: bad-pack\nversion: 1.0.0\ntask_types: [task]\ntemplates:\n  - template_id: file.write_text\n    tool_name: write-all\n    scope_pattern: \"**\"\n",
    );
    let out = fails(d, &["pack", "author", "--spec-file", "spec.yaml"]);
    assert!(out.stderr.contains("spec.yaml"), "{out}");
    assert!(out.stderr.contains("scope_pattern"), "{out}");
    assert!(!d.join("packs").exists(), "{out}");
}

/// `init` never overwrites a workspace.
#[test]
fn init_refuses_to_overwrite_an_existing_workspace() {
    let ws_dir = workspace();
    let ws = ws_dir.path();
    ok(
        ws,
        &[
            "config",
            "set",
            "--key",
            "memory_namespace",
            "--value",
            "mine",
        ],
    );
    let before = std::fs::read(ws.join("workspace.yaml")).unwrap();
    let out = fails(ws, &["init", "--json"]);
    assert!(out.json()["error"]["code"].is_string(), "{out}");
    assert_eq!(std::fs::read(ws.join("workspace.yaml")).unwrap(), before);
}

// ---------------------------------------------------------------------------------------------
// 4. Config and the `--json` error shape
// ---------------------------------------------------------------------------------------------

/// KRN-06: every failure with `--json` is `{"error": {"code", "message"}}` on stdout, exit 1.
#[test]
fn json_errors_have_a_code_and_a_message_on_stdout() {
    let ws_dir = workspace();
    let out = fails(
        ws_dir.path(),
        &["config", "get", "--key", "gates.minCoverage", "--json"],
    );
    let v = out.json();
    assert_eq!(v["error"]["code"], "CONFIG_KEY_UNKNOWN", "{out}");
    let message = v["error"]["message"].as_str().unwrap();
    assert!(message.contains("gates"), "{out}");
    assert!(
        out.stderr.is_empty(),
        "--json must keep stderr quiet:\n{out}"
    );
}

/// KRN-04, KRN-06: `config set` and `pack install` each read workspace.yaml, edit it and write
/// it back. Run as separate processes at once, every edit survives: none is undone by another
/// process writing the text it had read before.
#[test]
fn concurrent_config_sets_and_pack_installs_keep_every_edit() {
    let sets: &[(&str, &str)] = &[
        ("control_plane.endpoint", "https://cp.example.test"),
        ("control_plane.org_id", "org-1"),
        ("control_plane.project_id", "project-1"),
        ("control_plane.sync_interval", "30"),
        ("control_plane.batch_size", "50"),
        ("control_plane.timeout_ms", "5000"),
        ("memory_namespace", "mem-concurrent"),
        ("event_namespace", "evt-concurrent"),
    ];
    let packs = ["pack-one", "pack-two"];
    for round in 0..3 {
        let ws_dir = workspace();
        let ws = ws_dir.path();
        let comments = comment_lines(&read(&ws.join("workspace.yaml")));
        for id in packs {
            author(
                ws,
                &read_tool_spec(id, "1.0.0", &format!("{id}-read"), "notes/**"),
                "packs",
            );
        }
        std::thread::scope(|scope| {
            let mut running = Vec::new();
            for (key, value) in sets {
                running.push(scope.spawn(move || {
                    run(ws, &["config", "set", "--key", key, "--value", value], None)
                }));
            }
            for id in packs {
                running.push(scope.spawn(move || {
                    let args = [
                        "pack",
                        "install",
                        "--id",
                        id,
                        "--source",
                        "local",
                        "--version",
                        "1.0.0",
                    ];
                    run(ws, &args, None)
                }));
            }
            for handle in running {
                let out = handle.join().expect("runner thread");
                assert!(out.success(), "round {round}:\n{out}");
            }
        });
        let text = read(&ws.join("workspace.yaml"));
        for (key, value) in sets {
            let got = ok(ws, &["config", "get", "--key", key]);
            assert_eq!(got.stdout.trim(), *value, "round {round}, {key}:\n{text}");
        }
        for id in packs {
            assert_eq!(pin(ws, id)["version"], "1.0.0", "round {round}:\n{text}");
        }
        assert_eq!(comment_lines(&text), comments, "round {round}:\n{text}");
    }
}

/// KRN-06: refused writes say why and leave workspace.yaml byte-identical.
#[test]
fn config_set_refuses_managed_unknown_and_invalid_keys_without_writing() {
    let ws_dir = workspace();
    let ws = ws_dir.path();
    let before = std::fs::read(ws.join("workspace.yaml")).unwrap();
    let cases: &[(&str, &str, &str)] = &[
        ("packs", "x", "CONFIG_KEY_MANAGED"),
        ("lanes", "x", "CONFIG_KEY_MANAGED"),
        ("control_plane", "5", "CONFIG_VALUE_INVALID"),
        (
            "control_plane.auth.token_env",
            "lowercase",
            "CONFIG_VALUE_INVALID",
        ),
        ("control_plane.sync_interval", "-5", "CONFIG_VALUE_INVALID"),
        ("control_plane.sync_intervl", "5", "CONFIG_VALUE_INVALID"),
        ("memory_namespace.foo", "x", "CONFIG_VALUE_INVALID"),
        ("sync_interval", "30", "CONFIG_KEY_UNKNOWN"),
        ("a..b", "x", "CONFIG_VALUE_INVALID"),
    ];
    for (key, value, code) in cases {
        let out = fails(
            ws,
            &["config", "set", "--key", key, "--value", value, "--json"],
        );
        assert_eq!(&out.error_code(), code, "{out}");
        assert!(
            out.json()["error"]["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty()),
            "{out}"
        );
        assert_eq!(
            std::fs::read(ws.join("workspace.yaml")).unwrap(),
            before,
            "workspace.yaml changed by a refused write:\n{out}"
        );
    }
    // The refusals that help: the unqualified key names the qualified one, a typo its fix.
    let unqualified = fails(
        ws,
        &["config", "set", "--key", "sync_interval", "--value", "30"],
    );
    assert!(
        unqualified.stderr.contains("control_plane.sync_interval"),
        "{unqualified}"
    );
    let typo = fails(
        ws,
        &[
            "config",
            "set",
            "--key",
            "control_plane.sync_intervl",
            "--value",
            "5",
        ],
    );
    assert!(
        typo.stderr.contains("control_plane.sync_interval"),
        "{typo}"
    );
}

/// KRN-06: a number stays a number: text over a numeric value is refused.
#[test]
fn config_set_keeps_numeric_keys_numeric() {
    let ws_dir = workspace();
    let ws = ws_dir.path();
    let set = ok(
        ws,
        &[
            "config",
            "set",
            "--key",
            "control_plane.sync_interval",
            "--value",
            "30",
            "--json",
        ],
    )
    .json();
    assert_eq!(set["value"], 30, "{set}");
    let out = fails(
        ws,
        &[
            "config",
            "set",
            "--key",
            "control_plane.sync_interval",
            "--value",
            "soon",
            "--json",
        ],
    );
    assert_eq!(out.error_code(), "CONFIG_VALUE_INVALID", "{out}");
    let get = ok(
        ws,
        &[
            "config",
            "get",
            "--key",
            "control_plane.sync_interval",
            "--json",
        ],
    )
    .json();
    assert_eq!(get["value"], 30, "{get}");
}

/// KRN-06: what `config set` stores is what `config get` returns, even for text YAML would
/// otherwise read as something else, and the file keeps its comments.
#[test]
fn config_set_then_get_round_trips_yaml_sensitive_strings() {
    let ws_dir = workspace();
    let ws = ws_dir.path();
    let comments = comment_lines(&read(&ws.join("workspace.yaml")));
    for value in [
        "a: b", "#x", "null", "yes", "on", "~", "'q", "\"dq\"", "x # y", "010", "1_000", "[1]",
        "{}", "*star", "&anchor", "!tag", "@at", "%pct", "ünï", " lead",
    ] {
        let arg = format!("--value={value}");
        ok(
            ws,
            &["config", "set", "--key", "memory_namespace", &arg, "--json"],
        );
        let get = ok(
            ws,
            &["config", "get", "--key", "memory_namespace", "--json"],
        )
        .json();
        assert_eq!(
            get["value"],
            Value::String(value.to_string()),
            "stored {value:?}, read back {get}:\n{}",
            read(&ws.join("workspace.yaml"))
        );
    }
    assert_eq!(comment_lines(&read(&ws.join("workspace.yaml"))), comments);
}

/// Commands that need a workspace say how to get one.
#[test]
fn commands_outside_a_workspace_point_to_init() {
    let dir = tmp();
    let out = fails(
        dir.path(),
        &["config", "get", "--key", "memory_namespace", "--json"],
    );
    let v = out.json();
    assert_eq!(v["error"]["code"], "WORKSPACE_NOT_FOUND", "{out}");
    assert!(
        v["error"]["help"]
            .as_str()
            .is_some_and(|h| h.contains("lumenflow init")),
        "{out}"
    );
}

/// `--workspace DIR` works from any folder, and a workspace is found from a subfolder.
#[test]
fn workspace_is_found_from_a_subfolder_or_given_with_the_workspace_flag() {
    let ws_dir = workspace();
    let ws = ws_dir.path();
    let sub = ws.join("deep/er");
    std::fs::create_dir_all(&sub).unwrap();
    let from_sub = ok(&sub, &["config", "get", "--key", "memory_namespace"]);
    assert_eq!(from_sub.stdout, "test-ws\n", "{from_sub}");

    let elsewhere = tmp();
    let out = ok(
        elsewhere.path(),
        &[
            "--workspace",
            ws.to_str().unwrap(),
            "config",
            "set",
            "--key",
            "event_namespace",
            "--value",
            "events-x",
        ],
    );
    assert!(!elsewhere.path().join("workspace.yaml").exists(), "{out}");
    assert!(read(&ws.join("workspace.yaml")).contains("event_namespace: events-x"));
}

// ---------------------------------------------------------------------------------------------
// 5. The wizard
// ---------------------------------------------------------------------------------------------

/// PAK-01: answers on stdin, one per line; a bad answer is asked again.
#[test]
fn wizard_builds_a_valid_pack_from_piped_answers_and_reasks_a_bad_id() {
    let ws_dir = workspace();
    let ws = ws_dir.path();
    let answers = "Bad_Id\ncustomer-ops\n\ntask\n1\nread-notes\nnotes/**/*.md\nn\n";
    let out = run(ws, &["pack", "author"], Some(answers));
    assert!(out.success(), "{out}");
    assert_eq!(
        out.stderr.matches("Pack id:").count(),
        2,
        "the bad id was not asked again:\n{out}"
    );
    assert!(out.stderr.contains("kebab-case"), "{out}");
    let manifest = read(&ws.join("packs/customer-ops/manifest.yaml"));
    assert!(manifest.contains("id: customer-ops"), "{manifest}");
    assert!(
        manifest.contains("version: 1.0.0"),
        "default version:\n{manifest}"
    );
    assert!(manifest.contains("pattern: notes/**/*.md"), "{manifest}");
    assert!(ws
        .join("packs/customer-ops/tool-impl/read-notes.py")
        .is_file());

    let validate = ok(ws, &["pack", "validate", "--id", "customer-ops"]);
    assert!(validate.stdout.contains("Result: ALL CHECKS PASSED"));
}

/// PAK-01: the questions go to stderr, so `--json` stdout is only the result.
#[test]
fn wizard_in_json_mode_prints_only_json_on_stdout() {
    let dir = tmp();
    let answers = "notes-pack\n2.1.0\nincident, wu, incident\n3\nfetch-status\nhttps://status.example.com/v1/health\nn\n";
    let out = run(dir.path(), &["pack", "author", "--json"], Some(answers));
    assert!(out.success(), "{out}");
    let v = out.json();
    assert_eq!(v["pack_id"], "notes-pack", "{v}");
    assert!(out.stderr.contains("Pack id:"), "{out}");
    let manifest = read(&dir.path().join("packs/notes-pack/manifest.yaml"));
    assert!(manifest.contains("version: 2.1.0"), "{manifest}");
    assert!(manifest.contains("status.example.com:443"), "{manifest}");
}

/// PAK-01: end of input cancels, creates nothing, and says so.
#[test]
fn wizard_cancelled_by_closing_stdin_creates_nothing() {
    let dir = tmp();
    let out = run(
        dir.path(),
        &["pack", "author", "--json"],
        Some("customer-ops\n\n"),
    );
    assert_ne!(out.code, Some(0), "{out}");
    assert_eq!(out.error_code(), "CANCELLED_BY_USER", "{out}");
    assert!(!dir.path().join("packs").exists(), "{out}");

    let human = run(dir.path(), &["pack", "author"], Some(""));
    assert_ne!(human.code, Some(0), "{human}");
    assert!(human.stderr.contains("CANCELLED_BY_USER"), "{human}");
    assert!(!dir.path().join("packs").exists());
}

// ---------------------------------------------------------------------------------------------
// 6. Registry installs over real HTTP
// ---------------------------------------------------------------------------------------------

/// KRN-04: resolve by id and version, download, verify the tarball digest, pin the CONTENT hash.
#[test]
fn registry_install_over_http_pins_the_pack_content_hash() {
    let src = tmp();
    let pack = author(
        src.path(),
        &read_tool_spec("reg-pack", "1.0.0", "read-notes", "notes/**/*.md"),
        "out",
    );
    let content_hash = pack_hash(src.path(), &pack);
    let tarball = tarball_of(&pack);
    let tarball_hash = format!("sha256:{}", sha256_hex(&tarball));
    assert_ne!(content_hash, tarball_hash);
    let server = registry_for("reg-pack", "1.0.0", &tarball);

    let ws_dir = workspace();
    let ws = ws_dir.path();
    let out = ok(
        ws,
        &[
            "pack",
            "install",
            "--source",
            "registry",
            "--registry-url",
            &server.base,
            "--id",
            "reg-pack",
            "--version",
            "1.0.0",
            "--json",
        ],
    );
    let p = pin(ws, "reg-pack");
    assert_eq!(p["source"], "registry");
    assert_eq!(p["integrity"], content_hash, "{out}");
    assert_ne!(p["integrity"], tarball_hash);
    assert_eq!(p.get("registry_url"), Some(&server.base));
    let installed = ws.join("packs/reg-pack");
    assert!(
        installed.join("manifest.yaml").is_file(),
        "package/ not stripped"
    );
    assert!(!installed.join("package").exists());
    assert_eq!(pack_hash(ws, &installed), content_hash);
    assert_eq!(
        ok(ws, &["pack", "list", "--json"]).json()["pinned"][0]["status"],
        "ok (verified)"
    );
    let requests = server.requests.lock().unwrap().clone();
    assert_eq!(
        requests,
        vec![
            "GET /api/registry/packs/reg-pack".to_string(),
            "GET /api/registry/packs/reg-pack/versions/1.0.0/tarball".to_string(),
        ]
    );
    assert_no_staging_leftovers(ws);
}

/// KRN-04: a version the registry does not list is refused before any download.
#[test]
fn registry_install_of_an_unlisted_version_is_refused() {
    let src = tmp();
    let pack = author(
        src.path(),
        &read_tool_spec("reg-pack", "1.0.0", "read-notes", "notes/**/*.md"),
        "out",
    );
    let server = registry_for("reg-pack", "1.0.0", &tarball_of(&pack));
    let ws_dir = workspace();
    let ws = ws_dir.path();
    let before = std::fs::read(ws.join("workspace.yaml")).unwrap();
    let out = fails(
        ws,
        &[
            "pack",
            "install",
            "--source",
            "registry",
            "--registry-url",
            &server.base,
            "--id",
            "reg-pack",
            "--version",
            "9.9.9",
            "--json",
        ],
    );
    assert_eq!(out.error_code(), "VERSION_NOT_FOUND", "{out}");
    assert_eq!(std::fs::read(ws.join("workspace.yaml")).unwrap(), before);

    let missing = fails(
        ws,
        &[
            "pack",
            "install",
            "--source",
            "registry",
            "--registry-url",
            &server.base,
            "--id",
            "no-such-pack",
            "--version",
            "1.0.0",
            "--json",
        ],
    );
    assert_eq!(missing.error_code(), "HTTP_ERROR", "{missing}");
    assert!(!ws.join("packs").exists());
}

/// KRN-04: a tarball whose bytes are not the promised digest is never unpacked.
#[test]
fn tarball_with_the_wrong_sha256_is_refused_and_nothing_is_installed() {
    let src = tmp();
    let pack = author(
        src.path(),
        &read_tool_spec("reg-pack", "1.0.0", "read-notes", "notes/**/*.md"),
        "out",
    );
    let server = registry_for("reg-pack", "1.0.0", &tarball_of(&pack));
    let ws_dir = workspace();
    let ws = ws_dir.path();
    let before = std::fs::read(ws.join("workspace.yaml")).unwrap();
    let url = format!(
        "{}/api/registry/packs/reg-pack/versions/1.0.0/tarball",
        server.base
    );
    let wrong = "f".repeat(64);
    let out = fails(
        ws,
        &[
            "pack",
            "install",
            "--source",
            "registry",
            "--tarball",
            &url,
            "--sha256",
            &wrong,
            "--id",
            "reg-pack",
            "--version",
            "1.0.0",
            "--json",
        ],
    );
    assert_eq!(out.error_code(), "TARBALL_INTEGRITY_MISMATCH", "{out}");
    assert_eq!(
        server.requests.lock().unwrap().len(),
        1,
        "the tarball was not downloaded"
    );
    assert_eq!(std::fs::read(ws.join("workspace.yaml")).unwrap(), before);
    assert!(!ws.join("packs").exists());
    assert_no_staging_leftovers(ws);
}

/// KRN-04: plain http is only for this machine; anything else is refused before connecting.
#[test]
fn plain_http_tarball_url_to_another_host_is_refused_without_connecting() {
    let ws_dir = workspace();
    let ws = ws_dir.path();
    let digest = "a".repeat(64);
    // 192.0.2.1 (TEST-NET-1) never answers: a connection attempt would hang until the timeout.
    for url in ["http://example.com/x.tgz", "http://192.0.2.1/x.tgz"] {
        let started = Instant::now();
        let out = fails(
            ws,
            &[
                "pack",
                "install",
                "--source",
                "registry",
                "--tarball",
                url,
                "--sha256",
                &digest,
                "--id",
                "reg-pack",
                "--version",
                "1.0.0",
                "--json",
            ],
        );
        assert_eq!(out.error_code(), "INSECURE_URL", "{out}");
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "took {:?}: it tried the network",
            started.elapsed()
        );
    }
    let registry = fails(
        ws,
        &[
            "pack",
            "install",
            "--source",
            "registry",
            "--registry-url",
            "http://192.0.2.1",
            "--id",
            "reg-pack",
            "--version",
            "1.0.0",
            "--json",
        ],
    );
    assert_eq!(registry.error_code(), "INSECURE_URL", "{registry}");
    assert!(!ws.join("packs").exists());
}

/// KRN-04: a tarball on disk with its digest installs like a downloaded one.
#[test]
fn local_tarball_path_with_sha256_installs() {
    let src = tmp();
    let pack = author(
        src.path(),
        &read_tool_spec("tar-pack", "1.2.3", "read-notes", "notes/**/*.md"),
        "out",
    );
    let content_hash = pack_hash(src.path(), &pack);
    let tarball = tarball_of(&pack);
    let tar_path = src.path().join("tar-pack-1.2.3.tgz");
    std::fs::write(&tar_path, &tarball).unwrap();

    let ws_dir = workspace();
    let ws = ws_dir.path();
    ok(
        ws,
        &[
            "pack",
            "install",
            "--source",
            "registry",
            "--tarball",
            tar_path.to_str().unwrap(),
            "--sha256",
            &format!("sha256:{}", sha256_hex(&tarball)),
            "--id",
            "tar-pack",
            "--version",
            "1.2.3",
        ],
    );
    let p = pin(ws, "tar-pack");
    assert_eq!(p["source"], "registry");
    assert_eq!(p["version"], "1.2.3");
    assert_eq!(p["integrity"], content_hash);
    assert_eq!(pack_hash(ws, &ws.join("packs/tar-pack")), content_hash);
}

/// A tarball of `pack` under `package/` plus one hostile entry added by `add`.
fn tarball_with(
    pack: &Path,
    add: impl FnOnce(&mut tar::Builder<flate2::write::GzEncoder<Vec<u8>>>),
) -> Vec<u8> {
    let gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    let mut builder = tar::Builder::new(gz);
    builder.append_dir_all("package", pack).unwrap();
    add(&mut builder);
    builder.into_inner().unwrap().finish().unwrap()
}

/// KRN-04: archive entries that could write outside the pack folder (`..`, links) are refused
/// and nothing is written.
#[test]
fn tarball_with_a_path_escaping_entry_or_a_link_is_refused() {
    let src = tmp();
    let pack = author(
        src.path(),
        &read_tool_spec("tar-pack", "1.0.0", "read-notes", "notes/**/*.md"),
        "out",
    );
    let dotdot = tarball_with(&pack, |b| {
        // `tar` refuses to build such a name through its API; write the header bytes directly.
        let body = b"owned\n";
        let mut header = tar::Header::new_old();
        let name = b"package/../../escaped.txt";
        header.as_old_mut().name[..name.len()].copy_from_slice(name);
        header.set_size(body.len() as u64);
        header.set_mode(0o644);
        header.set_entry_type(tar::EntryType::Regular);
        header.set_cksum();
        b.append(&header, &body[..]).unwrap();
    });
    let symlink = tarball_with(&pack, |b| {
        let mut header = tar::Header::new_gnu();
        header.set_entry_type(tar::EntryType::Symlink);
        header.set_size(0);
        header.set_mode(0o777);
        b.append_link(&mut header, "package/notes-link", "/etc")
            .unwrap();
    });

    let ws_dir = workspace();
    let ws = ws_dir.path();
    let before = std::fs::read(ws.join("workspace.yaml")).unwrap();
    for (name, tarball) in [("dotdot.tgz", dotdot), ("symlink.tgz", symlink)] {
        let tar_path = src.path().join(name);
        std::fs::write(&tar_path, &tarball).unwrap();
        let out = fails(
            ws,
            &[
                "pack",
                "install",
                "--source",
                "registry",
                "--tarball",
                tar_path.to_str().unwrap(),
                "--sha256",
                &sha256_hex(&tarball),
                "--id",
                "tar-pack",
                "--version",
                "1.0.0",
                "--json",
            ],
        );
        assert_eq!(out.error_code(), "UNSAFE_ARCHIVE", "{name}: {out}");
        assert_eq!(std::fs::read(ws.join("workspace.yaml")).unwrap(), before);
        assert!(!ws.join("packs").exists());
        assert!(!ws.join("escaped.txt").exists());
        assert!(!ws.join(".lumenflow/escaped.txt").exists());
        assert_no_staging_leftovers(ws);
    }
}

// ---------------------------------------------------------------------------------------------
// 7. Git installs
// ---------------------------------------------------------------------------------------------

fn have_git() -> bool {
    Command::new("git")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn git(dir: &Path, args: &[&str]) {
    let out = Command::new("git")
        .args(args)
        .current_dir(dir)
        .env("GIT_AUTHOR_NAME", "LumenFlow Test")
        .env("GIT_AUTHOR_EMAIL", "test@lumenflow.invalid")
        .env("GIT_COMMITTER_NAME", "LumenFlow Test")
        .env("GIT_COMMITTER_EMAIL", "test@lumenflow.invalid")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .output()
        .expect("run git");
    assert!(
        out.status.success(),
        "git {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A git repository whose root is a valid pack, tagged `v1.0.0`, with a later untagged commit
/// that changes the content. Returns (repo dir, hash of the tagged content).
fn tagged_pack_repo(parent: &Path, id: &str) -> (PathBuf, String) {
    let pack = author(
        parent,
        &read_tool_spec(id, "1.0.0", "read-notes", "notes/**/*.md"),
        "out",
    );
    let tagged_hash = pack_hash(parent, &pack);
    git(&pack, &["init", "--quiet"]);
    git(&pack, &["add", "-A"]);
    git(
        &pack,
        &[
            "-c",
            "commit.gpgsign=false",
            "commit",
            "--quiet",
            "-m",
            "v1",
        ],
    );
    git(&pack, &["-c", "tag.gpgsign=false", "tag", "v1.0.0"]);
    // HEAD moves on: the install must take the tag, not the branch tip.
    let readme = pack.join("README.md");
    let mut text = read(&readme);
    text.push_str("\nUnreleased change.\n");
    write(&readme, &text);
    git(
        &pack,
        &[
            "-c",
            "commit.gpgsign=false",
            "commit",
            "--quiet",
            "-am",
            "next",
        ],
    );
    (pack, tagged_hash)
}

/// KRN-04: clone, check out `v<version>`, drop `.git`, pin url and rev.
#[test]
fn git_install_checks_out_the_version_tag_and_pins_url_and_rev() {
    if !have_git() {
        eprintln!("SKIPPED git_install_checks_out_the_version_tag_and_pins_url_and_rev: `git` is not on PATH");
        return;
    }
    let src = tmp();
    let (repo, tagged_hash) = tagged_pack_repo(src.path(), "git-pack");
    let url = url::Url::from_directory_path(repo.canonicalize().unwrap())
        .unwrap()
        .to_string();

    let ws_dir = workspace();
    let ws = ws_dir.path();
    let out = ok(
        ws,
        &[
            "pack",
            "install",
            "--source",
            "git",
            "--url",
            &url,
            "--id",
            "git-pack",
            "--version",
            "1.0.0",
        ],
    );
    let p = pin(ws, "git-pack");
    assert_eq!(p["source"], "git", "{out}");
    assert_eq!(p.get("url"), Some(&url));
    assert_eq!(p.get("rev").map(String::as_str), Some("v1.0.0"));
    assert_eq!(p["integrity"], tagged_hash, "not the tagged content");
    let installed = ws.join("packs/git-pack");
    assert!(installed.join("manifest.yaml").is_file());
    assert!(!installed.join(".git").exists(), ".git was installed");
    assert!(!read(&installed.join("README.md")).contains("Unreleased change"));
    assert_eq!(pack_hash(ws, &installed), tagged_hash);
    assert_no_staging_leftovers(ws);
}

/// KRN-04: `--url` is documented as "repository URL (or path)".
///
/// Known bug: the clone works, but the pin's `url` is validated as a URL when workspace.yaml is
/// rewritten, so a plain path fails with WORKSPACE_INVALID `packs[0].url: ... is not a valid URL`.
#[test]

fn git_install_accepts_a_plain_repository_path() {
    if !have_git() {
        eprintln!("SKIPPED git_install_accepts_a_plain_repository_path: `git` is not on PATH");
        return;
    }
    let src = tmp();
    let (repo, tagged_hash) = tagged_pack_repo(src.path(), "git-pack");
    let ws_dir = workspace();
    let ws = ws_dir.path();
    ok(
        ws,
        &[
            "pack",
            "install",
            "--source",
            "git",
            "--url",
            repo.to_str().unwrap(),
            "--id",
            "git-pack",
            "--version",
            "1.0.0",
        ],
    );
    let p = pin(ws, "git-pack");
    assert_eq!(p["source"], "git");
    assert_eq!(p.get("rev").map(String::as_str), Some("v1.0.0"));
    assert_eq!(p["integrity"], tagged_hash);
    assert!(!ws.join("packs/git-pack/.git").exists());
}

/// KRN-04: a repository that does not exist fails cleanly.
#[test]
fn git_install_of_a_missing_repository_fails_cleanly() {
    if !have_git() {
        eprintln!(
            "SKIPPED git_install_of_a_missing_repository_fails_cleanly: `git` is not on PATH"
        );
        return;
    }
    let ws_dir = workspace();
    let ws = ws_dir.path();
    let before = std::fs::read(ws.join("workspace.yaml")).unwrap();
    let missing = url::Url::from_directory_path(ws.join("no-such-repo"))
        .unwrap()
        .to_string();
    let out = fails(
        ws,
        &[
            "pack",
            "install",
            "--source",
            "git",
            "--url",
            &missing,
            "--id",
            "git-pack",
            "--version",
            "1.0.0",
            "--json",
        ],
    );
    assert_eq!(out.error_code(), "GIT_FAILED", "{out}");
    assert_eq!(std::fs::read(ws.join("workspace.yaml")).unwrap(), before);
    assert!(!ws.join("packs").exists());
    assert_no_staging_leftovers(ws);
}

// ---------------------------------------------------------------------------------------------
// 8. The demo
// ---------------------------------------------------------------------------------------------

/// KRN-04: the guided quickstart runs end to end and shows the pin refusing a tampered pack.
#[test]
fn demo_quickstart_runs_and_shows_the_tamper_refusal() {
    let dir = tmp();
    let out = ok(dir.path(), &["demo", "quickstart", "--dir", "q"]);
    assert!(
        out.stderr.contains("load refused: Pack integrity mismatch"),
        "{out}"
    );
    let ws = dir.path().join("q");
    assert!(ws.join("workspace.yaml").is_file());
    // The tamper was undone: the installed pack verifies again.
    let list = ok(&ws, &["pack", "list", "--json"]).json();
    assert_eq!(list["pinned"][0]["status"], "ok (verified)", "{list}");
}

// ---------------------------------------------------------------------------------------------
// 9. `--json` on success
// ---------------------------------------------------------------------------------------------

/// Every command prints exactly one JSON document on stdout with `--json`, and nothing on
/// stderr (warnings become fields).
#[test]
fn every_command_prints_one_json_document_on_success() {
    let dir = tmp();
    let ws = dir.path();
    let check = |args: &[&str], field: &str| -> Value {
        let mut args = args.to_vec();
        args.push("--json");
        let out = ok(ws, &args);
        let v = out.json();
        assert!(
            !v.get(field).unwrap_or(&Value::Null).is_null(),
            "no `{field}`:\n{out}"
        );
        assert!(
            out.stderr.is_empty(),
            "stderr not empty with --json:\n{out}"
        );
        v
    };

    let init = check(&["init"], "workspace_file");
    assert!(init["id"].is_string());
    write(&ws.join("spec.yaml"), CUSTOMER_OPS_SPEC);
    let authored = check(&["pack", "author", "--spec-file", "spec.yaml"], "pack_id");
    assert_eq!(authored["pack_id"], "customer-ops");
    assert!(authored["files"].is_array());
    check(&["pack", "validate", "--id", "customer-ops"], "checks");
    let hash = check(&["pack", "hash", "--id", "customer-ops"], "integrity");
    assert!(is_sha256_prefixed(hash["integrity"].as_str().unwrap()));
    let installed = check(
        &[
            "pack",
            "install",
            "--id",
            "customer-ops",
            "--source",
            "local",
            "--version",
            "1.0.0",
        ],
        "pin",
    );
    assert_eq!(installed["pin"]["integrity"], hash["integrity"]);
    let list = check(&["pack", "list"], "pinned");
    assert_eq!(list["pinned"][0]["id"], "customer-ops");
    // This write leaves control_plane incomplete, which is a warning: a field, not stderr.
    let set = check(
        &[
            "config",
            "set",
            "--key",
            "control_plane.sync_interval",
            "--value",
            "30",
        ],
        "key",
    );
    assert!(
        set["warnings"].as_array().is_some_and(|w| !w.is_empty()),
        "{set}"
    );
    let get = check(
        &["config", "get", "--key", "control_plane.sync_interval"],
        "value",
    );
    assert_eq!(get["value"], 30);
    check(&["demo", "quickstart", "--dir", "q"], "steps");
}

/// KRN-04: the loader's local roots end with the packs built into the binary, so `pack install
/// --source local` of a built-in id with no folder in the workspace pins that pack with its real
/// hash (nothing copied) instead of failing on a missing folder: the way to enable
/// software-delivery or agent-runtime without hand-editing workspace.yaml or pinning `dev`.
#[test]
fn install_of_a_built_in_pack_pins_it_with_its_hash() {
    let ws_dir = workspace();
    let ws = ws_dir.path();
    let install = |extra: &[&str]| {
        let mut args = vec![
            "pack",
            "install",
            "--id",
            "software-delivery",
            "--version",
            "0.1.0",
            "--source",
            "local",
            "--json",
        ];
        args.extend_from_slice(extra);
        run(ws, &args, None)
    };
    let before = std::fs::read(ws.join("workspace.yaml")).unwrap();

    // Refusals leave workspace.yaml alone: a wrong version, a wrong expected hash.
    let wrong_version = run(
        ws,
        &[
            "pack",
            "install",
            "--id",
            "software-delivery",
            "--version",
            "9.9.9",
            "--source",
            "local",
            "--json",
        ],
        None,
    );
    assert_eq!(
        wrong_version.error_code(),
        "MANIFEST_MISMATCH",
        "{wrong_version}"
    );
    let wrong_hash = install(&["--integrity", &format!("sha256:{}", "0".repeat(64))]);
    assert_eq!(
        wrong_hash.error_code(),
        "INTEGRITY_MISMATCH",
        "{wrong_hash}"
    );
    assert_eq!(std::fs::read(ws.join("workspace.yaml")).unwrap(), before);

    let out = install(&[]);
    assert!(out.success(), "{out}");
    let expected = ok(
        ws,
        &["pack", "hash", "--builtin", "software-delivery", "--json"],
    )
    .json()["integrity"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(is_sha256_prefixed(&expected));
    let v = out.json();
    assert_eq!(v["hash"], expected.as_str());
    assert_eq!(v["unchanged"], false);
    let pinned = pin(ws, "software-delivery");
    assert_eq!(pinned["integrity"], expected);
    assert_eq!(pinned["source"], "local");
    assert_eq!(pinned["version"], "0.1.0");
    assert!(
        !ws.join("packs/software-delivery").exists(),
        "nothing is copied"
    );
    assert_no_staging_leftovers(ws);

    // The pin loads (verified, not dev) and the pack's tools are there.
    let list = ok(ws, &["pack", "list"]);
    assert!(list.stdout.contains("ok (verified)"), "{list}");
    let tools = ok(ws, &["tool", "list"]);
    assert!(
        tools.stdout.contains("software-delivery:wu_claim"),
        "{tools}"
    );

    // `--id` finds what the loader loads: with no folder of that id, the built-in pack, so
    // `pack hash --id` prints the pin's value and `pack validate --id` checks that pack.
    let by_id = ok(ws, &["pack", "hash", "--id", "software-delivery", "--json"]).json();
    assert_eq!(by_id["integrity"], expected.as_str(), "{by_id}");
    assert_eq!(by_id["pack_root"], "<built-in>/software-delivery");
    let validated = ok(ws, &["pack", "validate", "--id", "software-delivery"]);
    assert!(
        validated.stdout.contains("ALL CHECKS PASSED"),
        "{validated}"
    );
    // A vendored copy under packages/@lumenflow/packs/ is what the loader loads instead, so it
    // is what `--id` hashes; an explicit --packs-root never falls back to the binary.
    let vendored = ws.join("packages/@lumenflow/packs/acme-demo");
    std::fs::create_dir_all(&vendored).unwrap();
    std::fs::write(vendored.join("manifest.yaml"), "id: acme-demo\n").unwrap();
    let vendored_hash = ok(ws, &["pack", "hash", "--id", "acme-demo", "--json"]).json();
    assert!(
        vendored_hash["pack_root"]
            .as_str()
            .unwrap()
            .ends_with("packages/@lumenflow/packs/acme-demo"),
        "{vendored_hash}"
    );
    std::fs::remove_dir_all(ws.join("packages")).unwrap();
    let explicit = fails(
        ws,
        &[
            "pack",
            "hash",
            "--id",
            "software-delivery",
            "--packs-root",
            "packs",
            "--json",
        ],
    );
    assert_eq!(explicit.error_code(), "PACK_NOT_FOUND", "{explicit}");

    // Again: the same pin, reported unchanged.
    let again = install(&[]);
    assert!(again.success(), "{again}");
    assert_eq!(again.json()["unchanged"], true);

    // A named folder is never replaced by the built-in pack, and an unknown id says what is
    // built in.
    let named = install(&["--pack-root", "nowhere/software-delivery"]);
    assert_eq!(named.error_code(), "SOURCE_NOT_FOUND", "{named}");
    let unknown = fails(
        ws,
        &[
            "pack",
            "install",
            "--id",
            "nope",
            "--version",
            "1.0.0",
            "--source",
            "local",
        ],
    );
    assert!(
        unknown.stderr.contains("no built-in pack is called `nope`")
            && unknown.stderr.contains("software-delivery"),
        "{unknown}"
    );
}

/// A reader that stops early (`lumenflow … | head`) must not make the CLI panic ("failed
/// printing to stdout: Broken pipe"): output to a closed pipe ends the command quietly, with
/// status 0 after a success, 1 after a failure whose JSON error could not be delivered.
#[test]
fn a_closed_stdout_ends_the_command_quietly_instead_of_panicking() {
    let ws_dir = workspace();
    for (args, status) in [
        (&["pack", "list"][..], 0),
        (&["--json", "pack", "list"], 0),
        (&["--json", "approvals", "list"], 0),
        (&["pack", "validate", "--id", "software-delivery"], 0),
        (&["--json", "task", "show", "WU-404"], 1),
    ] {
        let (reader, writer) = std::io::pipe().expect("pipe");
        drop(reader);
        let out = Command::new(env!("CARGO_BIN_EXE_lumenflow"))
            .args(args)
            .current_dir(ws_dir.path())
            .stdout(writer)
            .stderr(std::process::Stdio::piped())
            .output()
            .expect("run");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
        assert_eq!(out.status.code(), Some(status), "{args:?}: {stderr}");
    }
}

/// `tool call` in text mode shows what a failing tool put beside its message (here the
/// `recovery_action` of a missing worktree); it used to appear only with --json.
#[test]
fn a_failed_tool_calls_details_are_shown_in_text_mode() {
    let ws_dir = workspace();
    let ws = ws_dir.path();
    let git = |args: &[&str]| {
        let out = Command::new("git")
            .args(args)
            .current_dir(ws)
            .env("GIT_CONFIG_GLOBAL", "/dev/null")
            .env("GIT_AUTHOR_NAME", "t")
            .env("GIT_AUTHOR_EMAIL", "t@example.invalid")
            .env("GIT_COMMITTER_NAME", "t")
            .env("GIT_COMMITTER_EMAIL", "t@example.invalid")
            .output()
            .expect("git");
        assert!(out.status.success(), "git {args:?}: {out:?}");
    };
    git(&["init", "--quiet", "--initial-branch=main"]);
    write(&ws.join("README.md"), "hi\n");
    git(&["add", "-A"]);
    git(&["commit", "--quiet", "-m", "init"]);
    ok(
        ws,
        &[
            "pack",
            "install",
            "--id",
            "software-delivery",
            "--version",
            "0.1.0",
            "--source",
            "local",
        ],
    );
    ok(
        ws,
        &[
            "tool",
            "call",
            "software-delivery:wu_claim",
            "--input",
            r#"{"wu_id":"WU-1","lane":"Default"}"#,
        ],
    );
    std::fs::remove_dir_all(ws.join("worktrees/default-wu-1")).unwrap();
    let out = fails(
        ws,
        &[
            "tool",
            "call",
            "git:status",
            "--input",
            r#"{"wu_id":"WU-1"}"#,
        ],
    );
    assert!(
        out.stderr.contains("WORKTREE_MISSING")
            && out
                .stderr
                .contains("recovery_action: lumenflow tool call software-delivery:wu_recover"),
        "{out}"
    );
}

/// `config set` may leave a pack's block incomplete (built one key at a time), and then says
/// what that means: until it is complete, commands that load the workspace refuse it.
#[test]
fn an_incomplete_config_block_warns_that_the_workspace_is_refused_until_complete() {
    let ws_dir = workspace();
    let ws = ws_dir.path();
    ok(
        ws,
        &[
            "pack",
            "install",
            "--id",
            "agent-runtime",
            "--version",
            "0.1.0",
            "--source",
            "local",
        ],
    );
    let set = |key: &str, value: &str| ok(ws, &["config", "set", "--key", key, "--value", value]);
    let out = set("agent_runtime.provider.base_url", "http://127.0.0.1:9/v1");
    assert!(
        out.stderr.contains("missing required property `model`")
            && out
                .stderr
                .contains("commands that load the workspace refuse it (WORKSPACE_INVALID)"),
        "{out}"
    );
    assert_eq!(
        fails(ws, &["tool", "list", "--json"]).error_code(),
        "WORKSPACE_INVALID"
    );
    let out = set("agent_runtime.provider.model", "local-model");
    assert!(!out.stderr.contains("not complete"), "{out}");
    ok(ws, &["tool", "list"]);

    // A list the schema wants, where there is none yet, is started from `a, b` (the original's
    // coercion only appends to an existing one); later values append as before.
    set("agent_runtime.allow_tools", "git:status, git:diff");
    set("agent_runtime.allow_tools", "software-delivery:gates");
    let got = ok(
        ws,
        &[
            "config",
            "get",
            "--key",
            "agent_runtime.allow_tools",
            "--json",
        ],
    )
    .json();
    assert_eq!(
        got["value"],
        serde_json::json!(["git:status", "git:diff", "software-delivery:gates"]),
        "{got}"
    );
    // A plain string where the schema wants one stays a string.
    set("agent_runtime.provider.model", "a, b");
    let got = ok(
        ws,
        &[
            "config",
            "get",
            "--key",
            "agent_runtime.provider.model",
            "--json",
        ],
    )
    .json();
    assert_eq!(got["value"], "a, b");
}
