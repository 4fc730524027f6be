//! Registry tarballs are untrusted: extraction must never panic and never write outside its folder.
#![no_main]
use libfuzzer_sys::fuzz_target;
use lumenflow_kernel::install::extract_tarball;

fuzz_target!(|data: &[u8]| {
    let Ok(dir) = tempfile::tempdir() else { return };
    let archive = dir.path().join("pack.tar.gz");
    if std::fs::write(&archive, data).is_err() {
        return;
    }
    let dest = dir.path().join("out");
    let _ = extract_tarball(&archive, &dest);
    // Everything in the temp dir must be the archive itself or under `out/`.
    for entry in std::fs::read_dir(dir.path())
        .into_iter()
        .flatten()
        .flatten()
    {
        let name = entry.file_name();
        assert!(
            name == "pack.tar.gz" || name == "out",
            "extraction wrote {:?} outside its folder",
            name
        );
    }
});
