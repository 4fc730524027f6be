//! Q26 with consent on both sides: a pack writes another pack's `.lumenflow/state/<slug>/`
//! only when it lists that slug in `state_folders` and the owner, loaded beside it, lists the
//! writer in `state_writers`; the runtime's own folders can never be shared.

#![allow(clippy::unwrap_used)]

use lumenflow_kernel::diagnostics::SourceFile;
use lumenflow_kernel::dispatch::registry::shared_state_slugs;
use lumenflow_kernel::manifest::{parse_manifest, PackManifest};
use lumenflow_kernel::scope::is_reserved_write_path_for;

fn manifest(yaml: &str) -> PackManifest {
    parse_manifest(SourceFile::new("manifest.yaml", yaml))
        .unwrap_or_else(|e| panic!("{e:?}"))
        .manifest
}

fn pack(id: &str, extra: &str) -> PackManifest {
    manifest(&format!(
        "id: {id}\nversion: 1.0.0\ntask_types: [t]\n{extra}"
    ))
}

#[test]
fn a_state_folder_is_shared_only_with_consent_on_both_sides() {
    let owner = pack("campus", "state_writers: [tenant-proofs]\n");
    let writer = pack("tenant-proofs", "state_folders: [campus]\n");
    let squatter = pack("squatter", "state_folders: [campus]\n");
    let silent_owner = pack("campus", "");

    assert_eq!(
        shared_state_slugs(&writer, &[&owner, &writer]),
        ["tenant-proofs", "campus"]
    );
    // The writer claims it, but the owner did not name it.
    assert_eq!(
        shared_state_slugs(&squatter, &[&owner, &squatter]),
        ["squatter"]
    );
    // The owner never opened its folder.
    assert_eq!(
        shared_state_slugs(&writer, &[&silent_owner, &writer]),
        ["tenant-proofs"]
    );
    // The owner is not loaded.
    assert_eq!(shared_state_slugs(&writer, &[&writer]), ["tenant-proofs"]);

    let slugs = ["tenant-proofs", "campus"];
    assert!(!is_reserved_write_path_for(
        ".lumenflow/state/campus/evidence/exports/b.json",
        &slugs
    ));
    assert!(!is_reserved_write_path_for(
        ".lumenflow/state/tenant-proofs/x",
        &slugs
    ));
    assert!(is_reserved_write_path_for(
        ".lumenflow/state/approvals/x",
        &slugs
    ));
    assert!(is_reserved_write_path_for(
        ".lumenflow/state/campusx/y",
        &slugs
    ));
    assert!(is_reserved_write_path_for(
        ".lumenflow/kernel/events.jsonl",
        &slugs
    ));
}

#[test]
fn the_runtimes_own_folders_and_bad_slugs_cannot_be_shared() {
    for (extra, needle) in [
        ("state_folders: [approvals]\n", "runtime's own state"),
        ("state_writers: [conductor]\n", "runtime's own state"),
        ("state_folders: [Not_Kebab]\n", "kebab-case"),
        ("state_writers: [campus]\n", "own slug"),
    ] {
        let text = format!("id: campus\nversion: 1.0.0\ntask_types: [t]\n{extra}");
        let err = parse_manifest(SourceFile::new("manifest.yaml", &text));
        let shown = format!(
            "{:?}",
            err.err().unwrap_or_else(|| panic!("{extra} accepted"))
        );
        assert!(shown.contains(needle), "{extra}: {shown}");
    }
}
