//! Workspace files and the pack loader (KRN-04, KRN-05, KRN-06).

use std::fs;
use std::path::Path;

use lumenflow_kernel::builtin::EmbeddedPack;
use lumenflow_kernel::diagnostics::SourceFile;
use lumenflow_kernel::loader::{LoadError, PackLoader, PackLocation};
use lumenflow_kernel::workspace::{self, parse_workspace, read_workspace, Integrity};

const VECTOR_F_MANIFEST: &str = "id: software-delivery\nversion: 1.0.0\ntask_types:\n  - wu\ntools:\n  - name: fs:read\n    entry: tools/fs-read.ts\n    permission: read\n    required_scopes:\n      - type: path\n        pattern: \"**\"\n        access: read\npolicies:\n  - id: workspace.default\n    trigger: on_tool_request\n    decision: allow\nevidence_types:\n  - trace\nstate_aliases:\n  active: in_progress\nlane_templates:\n  - id: framework-core\n    title: Framework Core";
const VECTOR_F_TOOL: &str =
    "import { readFile } from \"node:fs/promises\";\nexport const tool = readFile;";
const VECTOR_F_HASH: &str = "203dc4bc3bc92b86df7e4dcce7e1bd51f79e3a8285a701092bce9cfd75eb00e3";

fn workspace_yaml(pins: &str, extra: &str) -> String {
    format!(
        "id: ws\nname: Test\npacks:{pins}\nlanes:\n  - id: core\n    title: Core\nsecurity:\n  allowed_scopes:\n    - type: path\n      pattern: \"**\"\n      access: read\nmemory_namespace: mem\nevent_namespace: evt\n{extra}"
    )
}

fn write_vector_f(pack_root: &Path) {
    fs::create_dir_all(pack_root.join("tools")).expect("mkdir");
    fs::write(pack_root.join("manifest.yaml"), VECTOR_F_MANIFEST).expect("manifest");
    fs::write(pack_root.join("tools/fs-read.ts"), VECTOR_F_TOOL).expect("tool");
}

fn ws_with(dir: &Path, pins: &str, extra: &str) -> workspace::WorkspaceDocument {
    fs::write(dir.join("workspace.yaml"), workspace_yaml(pins, extra)).expect("ws");
    read_workspace(dir).expect("valid workspace")
}

fn loader(dir: &Path) -> PackLoader<'static> {
    PackLoader {
        workspace_dir: dir.to_path_buf(),
        builtin: &[],
        production: false,
        allow_dev_in_production: false,
        import_allowlist: vec!["simple-git".into()],
    }
}

fn sd_pin(integrity: &str, version: &str) -> String {
    format!("\n  - id: software-delivery\n    version: {version}\n    integrity: {integrity}\n    source: local")
}

#[test]
fn vector_f_loads_with_its_sha256_pin_and_fails_after_tampering() {
    // KRN-03/KRN-04: the original loader fixture, pinned by hash.
    let tmp = tempfile::tempdir().expect("tmp");
    write_vector_f(&tmp.path().join("packs/software-delivery"));
    let doc = ws_with(
        tmp.path(),
        &sd_pin(&format!("sha256:{VECTOR_F_HASH}"), "1.0.0"),
        "",
    );
    let pack = loader(tmp.path())
        .load(&doc.spec, "software-delivery")
        .expect("loads");
    assert_eq!(pack.hash.hex(), VECTOR_F_HASH);
    assert!(pack.warnings.is_empty());
    fs::write(
        tmp.path().join("packs/software-delivery/tools/fs-read.ts"),
        "import { readFile } from \"node:fs/promises\";\nexport const tool = () => readFile;",
    )
    .expect("tamper");
    let err = loader(tmp.path())
        .load(&doc.spec, "software-delivery")
        .expect_err("tampered");
    assert_eq!(err.code(), "INTEGRITY_MISMATCH");
    assert!(err.to_string().contains("integrity mismatch"), "{err}");
}

#[test]
fn dev_integrity_warns_and_is_refused_in_production_unless_allowed() {
    let tmp = tempfile::tempdir().expect("tmp");
    write_vector_f(&tmp.path().join("packs/software-delivery"));
    let doc = ws_with(tmp.path(), &sd_pin("dev", "1.0.0"), "");
    let pack = loader(tmp.path())
        .load(&doc.spec, "software-delivery")
        .expect("dev loads");
    assert_eq!(pack.warnings.len(), 1);
    assert!(pack.warnings[0].contains("integrity: dev"));

    let mut prod = loader(tmp.path());
    prod.production = true;
    let err = prod
        .load(&doc.spec, "software-delivery")
        .expect_err("refused");
    assert!(
        err.to_string()
            .contains("integrity: dev is not allowed in production"),
        "{err}"
    );
    prod.allow_dev_in_production = true;
    let pack = prod
        .load(&doc.spec, "software-delivery")
        .expect("allowed explicitly");
    assert!(pack.warnings[0].contains("verification skipped"));
}

#[test]
fn id_version_pin_and_entry_checks_use_the_original_messages() {
    let tmp = tempfile::tempdir().expect("tmp");
    let root = tmp.path().join("packs/software-delivery");
    write_vector_f(&root);
    let doc = ws_with(tmp.path(), &sd_pin("dev", "2.0.0"), "");
    let err = loader(tmp.path())
        .load(&doc.spec, "software-delivery")
        .expect_err("version");
    assert_eq!(
        err.to_string(),
        "Pack manifest version mismatch: expected 2.0.0, got 1.0.0"
    );

    let err = loader(tmp.path())
        .load(&doc.spec, "other")
        .expect_err("unpinned");
    assert_eq!(
        err.to_string(),
        "Pack \"other\" is not present in workspace PackPin entries."
    );

    fs::write(
        root.join("manifest.yaml"),
        VECTOR_F_MANIFEST.replace("tools/fs-read.ts", "../escape.ts"),
    )
    .expect("w");
    let doc = ws_with(tmp.path(), &sd_pin("dev", "1.0.0"), "");
    let err = loader(tmp.path())
        .load(&doc.spec, "software-delivery")
        .expect_err("escape");
    assert_eq!(
        err.to_string(),
        "Pack tool entry \"../escape.ts\" resolves outside pack root."
    );

    // A symlink inside the pack that points outside it is an escape too.
    fs::write(
        root.join("manifest.yaml"),
        VECTOR_F_MANIFEST.replace("tools/fs-read.ts", "tools/link.ts"),
    )
    .expect("w");
    fs::write(tmp.path().join("secret.ts"), "export const s = 1;").expect("w");
    std::os::unix::fs::symlink(tmp.path().join("secret.ts"), root.join("tools/link.ts"))
        .expect("symlink");
    let err = loader(tmp.path())
        .load(&doc.spec, "software-delivery")
        .expect_err("symlink escape");
    assert!(err.to_string().contains("outside pack root"), "{err}");

    fs::remove_file(root.join("tools/link.ts")).expect("rm");
    fs::write(
        root.join("manifest.yaml"),
        VECTOR_F_MANIFEST.replace("id: software-delivery", "id: other-pack"),
    )
    .expect("w");
    let err = loader(tmp.path())
        .load(&doc.spec, "software-delivery")
        .expect_err("id");
    assert_eq!(
        err.to_string(),
        "Pack manifest id mismatch: expected software-delivery, got other-pack"
    );
}

#[test]
fn import_boundary_is_enforced_at_load_with_a_configurable_allow_list() {
    // KRN-05
    let tmp = tempfile::tempdir().expect("tmp");
    let root = tmp.path().join("packs/software-delivery");
    write_vector_f(&root);
    fs::write(
        root.join("tools/extra.ts"),
        "import lodash from \"lodash\";\n",
    )
    .expect("w");
    let doc = ws_with(tmp.path(), &sd_pin("dev", "1.0.0"), "");
    let err = loader(tmp.path())
        .load(&doc.spec, "software-delivery")
        .expect_err("bare import");
    assert_eq!(err.code(), "IMPORT_BOUNDARY_VIOLATION");
    assert!(err.to_string().contains("Bare package import"), "{err}");
    let mut l = loader(tmp.path());
    l.import_allowlist.push("lodash".into());
    l.load(&doc.spec, "software-delivery")
        .expect("allowed by the workspace");
}

#[test]
fn resolution_order_is_packs_then_monorepo_then_builtin() {
    // KRN-04: <ws>/packs/<id>, <ws>/packages/@lumenflow/packs/<id>, then built-in packs.
    static FILES: &[(&str, &[u8])] = &[(
        "manifest.yaml",
        b"id: software-delivery\nversion: 1.0.0\ntask_types: []\n",
    )];
    static BUILTIN: &[EmbeddedPack] = &[EmbeddedPack {
        id: "software-delivery",
        files: FILES,
    }];
    let tmp = tempfile::tempdir().expect("tmp");
    let mut l = loader(tmp.path());
    l.builtin = BUILTIN;
    assert!(matches!(
        l.locate("software-delivery"),
        Some(PackLocation::Builtin(_))
    ));
    write_vector_f(
        &tmp.path()
            .join("packages/@lumenflow/packs/software-delivery"),
    );
    match l.locate("software-delivery") {
        Some(PackLocation::Dir(d)) => {
            assert!(d.ends_with("packages/@lumenflow/packs/software-delivery"))
        }
        other => panic!("unexpected {other:?}"),
    }
    write_vector_f(&tmp.path().join("packs/software-delivery"));
    match l.locate("software-delivery") {
        Some(PackLocation::Dir(d)) => assert!(
            d.ends_with("packs/software-delivery") && !d.to_string_lossy().contains("packages")
        ),
        other => panic!("unexpected {other:?}"),
    }
    assert!(l.locate("missing").is_none());

    // A built-in pack is hashed like the same files on disk.
    let tmp2 = tempfile::tempdir().expect("tmp");
    let mut l2 = loader(tmp2.path());
    l2.builtin = BUILTIN;
    let disk = tmp2.path().join("copy");
    fs::create_dir_all(&disk).expect("mkdir");
    fs::write(disk.join("manifest.yaml"), FILES[0].1).expect("w");
    let disk_hash = lumenflow_kernel::integrity::compute_pack_hash(&disk).expect("hash");
    let doc = ws_with(
        tmp2.path(),
        &sd_pin(&format!("sha256:{}", disk_hash.hex()), "1.0.0"),
        "",
    );
    let pack = l2
        .load(&doc.spec, "software-delivery")
        .expect("builtin loads with a sha256 pin");
    assert_eq!(pack.hash, disk_hash);

    // A binary whose built-in pack differs from the pin (upgraded, rebuilt) is refused with the
    // same code, and the message says how to re-pin it on purpose.
    let doc = ws_with(
        tmp2.path(),
        &sd_pin(&format!("sha256:{}", "0".repeat(64)), "1.0.0"),
        "",
    );
    let err = l2
        .load(&doc.spec, "software-delivery")
        .expect_err("another build's pin");
    assert_eq!(err.code(), "INTEGRITY_MISMATCH");
    let text = err.to_string();
    assert!(
        text.starts_with("Pack integrity mismatch for software-delivery"),
        "{text}"
    );
    assert!(
        text.contains(
            "lumenflow pack install --id software-delivery --version 1.0.0 --source local"
        ),
        "{text}"
    );
}

#[test]
fn root_keys_are_strict_once_packs_are_loaded() {
    // KRN-06: an unknown root key is refused with the original's message; a pinned pack's
    // config_key is accepted; `software_delivery` without the pack gets the migration hint.
    let tmp = tempfile::tempdir().expect("tmp");
    let root = tmp.path().join("packs/software-delivery");
    write_vector_f(&root);
    fs::write(
        root.join("manifest.yaml"),
        format!("{VECTOR_F_MANIFEST}\nconfig_key: software_delivery"),
    )
    .expect("w");
    let doc = ws_with(
        tmp.path(),
        &sd_pin("dev", "1.0.0"),
        "software_delivery:\n  gates: {}\n",
    );
    loader(tmp.path())
        .load_all(&doc)
        .expect("pack-owned key accepted");

    let doc = ws_with(tmp.path(), &sd_pin("dev", "1.0.0"), "securty:\n  x: 1\n");
    let err = loader(tmp.path()).load_all(&doc).expect_err("typo");
    let LoadError::Workspace(diags) = err else {
        panic!("workspace error expected")
    };
    let d = &diags.0[0];
    assert!(
        d.message.contains("Unknown workspace root key \"securty\""),
        "{}",
        d.message
    );
    assert!(d
        .help
        .as_deref()
        .unwrap_or("")
        .contains("did you mean `security`?"));
    assert_eq!(d.line, 18);

    let doc = ws_with(tmp.path(), " []", "software_delivery:\n  gates: {}\n");
    let err = loader(tmp.path())
        .load_all(&doc)
        .expect_err("unpinned block");
    let LoadError::Workspace(diags) = err else {
        panic!("workspace error expected")
    };
    assert!(diags.0[0]
        .help
        .as_deref()
        .unwrap_or("")
        .contains("--id software-delivery --source registry --version 1.0.0"));
}

#[test]
fn workspace_value_rules_report_every_problem_with_its_line() {
    let text = workspace_yaml(
        "\n  - id: a\n    version: 1.0\n    integrity: sha1:abc\n    source: local\n  - id: b\n    version: 1.0.0\n    integrity: dev\n    source: git",
        "control_plane:\n  endpoint: not a url\n  sync_interval: 0\n  policy_mode: loose\n  enabled: true\n",
    );
    let err = parse_workspace(
        SourceFile::new("workspace.yaml", text.clone()),
        Path::new("."),
    )
    .expect_err("invalid");
    let all: Vec<String> = err.0.iter().map(|d| d.one_line()).collect();
    let joined = all.join("\n");
    // serde stops at the first type error inside `packs`; fix it and the value rules report the rest.
    assert!(
        joined.contains("`packs[0].version`: expected a string, found number `1.0`"),
        "{joined}"
    );
    let text = text.replace("version: 1.0\n", "version: 1.0.0\n");
    let err = parse_workspace(
        SourceFile::new("workspace.yaml", text.clone()),
        Path::new("."),
    )
    .expect_err("invalid");
    let joined = err
        .0
        .iter()
        .map(|d| d.one_line())
        .collect::<Vec<_>>()
        .join("\n");
    assert!(
        joined.contains("Expected dev or sha256:<64-hex>, found `sha1:abc`"),
        "{joined}"
    );
    let text = text.replace("sha1:abc", "dev");
    let err = parse_workspace(SourceFile::new("workspace.yaml", text), Path::new("."))
        .expect_err("invalid");
    let joined = err
        .0
        .iter()
        .map(|d| d.one_line())
        .collect::<Vec<_>>()
        .join("\n");
    for needle in [
        "pack `b` has source git but no url",
        "Invalid control_plane.endpoint: expected a valid URL",
        "Invalid control_plane.sync_interval: expected a positive integer",
        "Invalid control_plane.policy_mode",
        "unknown field control_plane.enabled",
    ] {
        assert!(joined.contains(needle), "missing `{needle}` in:\n{joined}");
    }
}

#[test]
fn init_writes_a_valid_workspace_and_never_overwrites() {
    let tmp = tempfile::tempdir().expect("tmp");
    let path = lumenflow_kernel::install::init_workspace(tmp.path(), "demo", "Demo \"quoted\"")
        .expect("init");
    let doc = read_workspace(tmp.path()).expect("valid");
    assert_eq!(doc.spec.name, "Demo \"quoted\"");
    assert!(tmp.path().join(".lumenflow/state").is_dir());
    let before = fs::read(&path).expect("read");
    assert!(lumenflow_kernel::install::init_workspace(tmp.path(), "demo", "x").is_err());
    assert_eq!(fs::read(&path).expect("read"), before);
    assert!(doc.spec.packs.is_empty());
    assert_eq!(
        doc.spec.pin("x").map(|p| p.integrity.clone()),
        None::<Integrity>
    );
    // The config hash ignores comments and layout (RFC 8785 over the parsed document).
    let reformatted = format!("# another comment\n{}", String::from_utf8_lossy(&before));
    fs::write(&path, reformatted).expect("w");
    assert_eq!(
        read_workspace(tmp.path()).expect("valid").config_hash(),
        doc.config_hash()
    );
}

#[test]
fn conductor_fields_are_checked_at_load() {
    // BKP-07, MAN-05: a pack emitting a kind without a backpressure class never loads.
    let tmp = tempfile::tempdir().expect("tmp");
    let root = tmp.path().join("packs/software-delivery");
    write_vector_f(&root);
    fs::write(
        root.join("manifest.yaml"),
        format!("{VECTOR_F_MANIFEST}\nemitted_event_kinds: [software-delivery:gate_passed]"),
    )
    .expect("w");
    let doc = ws_with(tmp.path(), &sd_pin("dev", "1.0.0"), "");
    let err = loader(tmp.path())
        .load(&doc.spec, "software-delivery")
        .expect_err("no backpressure");
    assert_eq!(err.code(), "MANIFEST_CONDUCTOR_FIELDS");
    assert!(
        err.to_string()
            .starts_with("Missing backpressure_policy entry"),
        "{err}"
    );
}
