//! KRN-03: the pack integrity hash, byte for byte the original (`original/packs.md` §2), plus our
//! documented differences (symlinks, special files, missing roots).

// Tests: a failed unwrap is a failed test, with the error in the panic message.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use lumenflow_kernel::integrity::{
    compute_pack_hash, compute_pack_hash_with, hash_files_in_memory, hash_pack_files,
    list_pack_files, utf16_cmp, HashOptions, IntegrityError, PackHash, DEFAULT_EXCLUSIONS,
};
use proptest::prelude::*;
use sha2::{Digest, Sha256};

const VECTOR_A: &str = "cba5564b47ac176995ef5f3c9dbf4d54f0992201f84678631b29c6ba49dfcd8e";
const VECTOR_C: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
const VECTOR_F: &str = "203dc4bc3bc92b86df7e4dcce7e1bd51f79e3a8285a701092bce9cfd75eb00e3";

const VECTOR_F_MANIFEST: &[&str] = &[
    "id: software-delivery",
    "version: 1.0.0",
    "task_types:",
    "  - wu",
    "tools:",
    "  - name: fs:read",
    "    entry: tools/fs-read.ts",
    "    permission: read",
    "    required_scopes:",
    "      - type: path",
    "        pattern: \"**\"",
    "        access: read",
    "policies:",
    "  - id: workspace.default",
    "    trigger: on_tool_request",
    "    decision: allow",
    "evidence_types:",
    "  - trace",
    "state_aliases:",
    "  active: in_progress",
    "lane_templates:",
    "  - id: framework-core",
    "    title: Framework Core",
];
const VECTOR_F_TOOL: &str =
    "import { readFile } from \"node:fs/promises\";\nexport const tool = readFile;";

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../fixtures/packs/vectors")
        .join(name)
}

fn write(root: &Path, rel: &str, content: &[u8]) {
    let path = root.join(rel);
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent).unwrap();
    }
    fs::write(path, content).unwrap();
}

fn hash(root: &Path) -> String {
    compute_pack_hash(root).unwrap().hex()
}

fn listed(root: &Path) -> Vec<String> {
    list_pack_files(root, DEFAULT_EXCLUSIONS)
        .unwrap()
        .into_iter()
        .map(|f| f.rel_path)
        .collect()
}

fn error_of(root: &Path) -> IntegrityError {
    compute_pack_hash(root).unwrap_err()
}

/// The record buffer built by hand, as a cross-check of the algorithm (§2.1 step 6).
fn reference_hash(files: &[(&str, &[u8])]) -> String {
    let mut buf = Vec::new();
    for (path, content) in files {
        buf.extend_from_slice(path.as_bytes());
        buf.push(0);
        buf.extend_from_slice(hex::encode(Sha256::digest(content)).as_bytes());
        buf.push(0);
    }
    hex::encode(Sha256::digest(&buf))
}

// ---------------------------------------------------------------------------------------------
// Conformance vectors (KRN-03, packs.md §2.3)

#[test]
fn krn03_vector_a_fixture() {
    let root = fixture("a-sample-min");
    assert_eq!(hash(&root), VECTOR_A);
    assert_eq!(listed(&root), ["manifest.yaml", "tool.ts"]);
    let pack_hash = compute_pack_hash(&root).unwrap();
    assert_eq!(pack_hash.prefixed(), format!("sha256:{VECTOR_A}"));
    assert_eq!(pack_hash.to_string(), format!("sha256:{VECTOR_A}"));
}

#[test]
fn krn03_vector_a_record_buffer() {
    let files: &[(&str, &[u8])] = &[
        ("manifest.yaml", b"id: hash-match\nversion: 1.0.0\n"),
        ("tool.ts", b"export const x = 1;\n"),
    ];
    assert_eq!(reference_hash(files), VECTOR_A);
    assert_eq!(
        hash_files_in_memory(files.iter().copied(), DEFAULT_EXCLUSIONS).hex(),
        VECTOR_A
    );
}

#[test]
fn krn03_vector_c_empty_dir() {
    let dir = tempfile::tempdir().unwrap();
    assert_eq!(hash(dir.path()), VECTOR_C);
    // Empty directories contribute nothing, and neither does an all-excluded pack.
    fs::create_dir_all(dir.path().join("a/b/c")).unwrap();
    write(dir.path(), "node_modules/x.js", b"x");
    write(dir.path(), ".DS_Store", b"x");
    assert_eq!(hash(dir.path()), VECTOR_C);
    assert_eq!(
        hash_files_in_memory(std::iter::empty(), DEFAULT_EXCLUSIONS).hex(),
        VECTOR_C
    );
}

#[test]
fn krn03_vector_f_tempdir() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("software-delivery");
    let manifest = VECTOR_F_MANIFEST.join("\n");
    assert_eq!(manifest.len(), 425);
    write(&root, "manifest.yaml", manifest.as_bytes());
    write(&root, "tools/fs-read.ts", VECTOR_F_TOOL.as_bytes());
    assert_eq!(hash(&root), VECTOR_F);

    // After the tool is rewritten, the pin no longer matches.
    write(&root, "tools/fs-read.ts", b"export const tool = 1;");
    assert_ne!(hash(&root), VECTOR_F);
}

#[test]
fn krn03_vector_f_fixture() {
    let root = fixture("f-loader-fixture");
    assert_eq!(
        fs::read_to_string(root.join("manifest.yaml")).unwrap(),
        VECTOR_F_MANIFEST.join("\n")
    );
    assert_eq!(
        fs::read_to_string(root.join("tools/fs-read.ts")).unwrap(),
        VECTOR_F_TOOL
    );
    assert_eq!(hash(&root), VECTOR_F);
    assert_eq!(listed(&root), ["manifest.yaml", "tools/fs-read.ts"]);
}

#[test]
fn krn03_pack_hash_parse_and_format() {
    let parsed = PackHash::parse(&format!("sha256:{VECTOR_A}")).unwrap();
    assert_eq!(parsed.hex(), VECTOR_A);
    assert_eq!(PackHash::parse(VECTOR_A), Some(parsed.clone()));
    assert_eq!(PackHash::parse(&VECTOR_A.to_uppercase()), None);
    assert_eq!(PackHash::parse("sha256:abc"), None);
    assert_eq!(PackHash::parse(&format!("sha512:{VECTOR_A}")), None);
    assert_eq!(PackHash::from_bytes(*parsed.as_bytes()), parsed);
}

// ---------------------------------------------------------------------------------------------
// Exclusions and ordering (KRN-03, packs.md §2.1 steps 4-5)

#[test]
fn krn03_exclusions_are_root_anchored_prefixes_or_suffix_names() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    for rel in [
        "node_modules/a.js",
        "node_modules/deep/b.js",
        ".git/HEAD",
        "dist/out.js",
        ".DS_Store",
        "sub/.DS_Store",
        "sub/deeper/.DS_Store",
        // kept:
        "sub/node_modules/keep.js",
        "sub/dist/keep.js",
        "sub/.git/keep",
        "distfile",
        "node_modules_x/keep.js",
        ".DS_Store_dir/keep",
        "x.DS_Store",
        "manifest.yaml",
    ] {
        write(root, rel, rel.as_bytes());
    }
    let expected = [
        ".DS_Store_dir/keep",
        "distfile",
        "manifest.yaml",
        "node_modules_x/keep.js",
        "sub/.git/keep",
        "sub/dist/keep.js",
        "sub/node_modules/keep.js",
        "x.DS_Store",
    ];
    assert_eq!(listed(root), expected);
    let files: Vec<(&str, &[u8])> = expected.iter().map(|p| (*p, p.as_bytes())).collect();
    assert_eq!(hash(root), reference_hash(&files));
}

#[test]
fn krn03_top_level_files_named_like_excluded_dirs_are_kept() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    write(root, "dist", b"a file, not a directory");
    write(root, ".git", b"gitdir: ../.git/modules/x");
    write(root, "node_modules", b"file");
    assert_eq!(listed(root), [".git", "dist", "node_modules"]);
}

#[test]
fn krn03_caller_exclusions_replace_the_default() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    write(root, "node_modules/a.js", b"a");
    write(root, "build/b.js", b"b");
    write(root, "notes.txt", b"n");
    write(root, "sub/notes.txt", b"n");
    let files = list_pack_files(root, &["build/", "notes.txt"]).unwrap();
    let paths: Vec<_> = files.iter().map(|f| f.rel_path.as_str()).collect();
    assert_eq!(paths, ["node_modules/a.js"]);
    let options = HashOptions {
        exclusions: &["build/", "notes.txt"],
        ..HashOptions::default()
    };
    assert_eq!(
        compute_pack_hash_with(root, &options).unwrap().hex(),
        reference_hash(&[("node_modules/a.js", b"a")])
    );
}

#[test]
fn krn03_utf16_cmp_matches_javascript_sort() {
    use std::cmp::Ordering::*;
    assert_eq!(utf16_cmp("B.txt", "a.txt"), Less);
    assert_eq!(utf16_cmp("a-b", "a.b"), Less);
    assert_eq!(utf16_cmp("a.b", "a/b"), Less);
    assert_eq!(utf16_cmp("a/b", "a_b"), Less);
    assert_eq!(utf16_cmp("a", "a"), Equal);
    assert_eq!(utf16_cmp("a", "ab"), Less);
    // Astral (surrogate pair 0xD83D...) sorts before U+FF21 in UTF-16, after it in UTF-8.
    assert_eq!(utf16_cmp("\u{1F600}", "\u{FF21}"), Less);
    assert_eq!("\u{1F600}".cmp("\u{FF21}"), Greater);
    assert_eq!(utf16_cmp("x\u{10000}y", "x\u{E000}"), Less);
    assert_eq!(utf16_cmp("x\u{E000}", "x\u{10000}y"), Greater);
    // Below U+E000 both orders agree.
    assert_eq!(utf16_cmp("\u{1F600}", "\u{D7FF}"), Greater);
    assert_eq!(utf16_cmp("é", "z"), Greater);
}

#[test]
fn krn03_listing_is_sorted_by_utf16_code_units() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    for rel in [
        "a.txt",
        "B.txt",
        "\u{FF21}.txt",
        "\u{1F600}.txt",
        "a_b",
        "a/b",
        "a.b",
        "a-b",
    ] {
        write(root, rel, rel.as_bytes());
    }
    let expected = [
        "B.txt",
        "a-b",
        "a.b",
        "a.txt",
        "a/b",
        "a_b",
        "\u{1F600}.txt",
        "\u{FF21}.txt",
    ];
    assert_eq!(listed(root), expected);
    let files: Vec<(&str, &[u8])> = expected.iter().map(|p| (*p, p.as_bytes())).collect();
    assert_eq!(hash(root), reference_hash(&files));
}

#[test]
fn krn03_in_memory_hash_equals_on_disk_hash() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let files: Vec<(&str, Vec<u8>)> = vec![
        ("manifest.yaml", b"id: x\nversion: 1.0.0\n".to_vec()),
        ("tools/a.ts", b"export const a = 1;".to_vec()),
        ("tools/\u{1F600}.ts", vec![0, 1, 2, 255]),
        ("tools/\u{FF21}.ts", Vec::new()),
        ("Z/b.bin", (0..=255u8).cycle().take(100_000).collect()),
        ("node_modules/dep/index.js", b"excluded".to_vec()),
        ("sub/.DS_Store", b"excluded".to_vec()),
    ];
    for (rel, content) in &files {
        write(root, rel, content);
    }
    let in_memory = hash_files_in_memory(
        files.iter().map(|(p, c)| (*p, c.as_slice())),
        DEFAULT_EXCLUSIONS,
    );
    assert_eq!(compute_pack_hash(root).unwrap(), in_memory);
    // Hashing an existing listing gives the same result without a second walk.
    let listing = list_pack_files(root, DEFAULT_EXCLUSIONS).unwrap();
    assert_eq!(
        hash_pack_files(&listing, &HashOptions::default()).unwrap(),
        in_memory
    );
    // Input order does not matter.
    let reversed = hash_files_in_memory(
        files.iter().rev().map(|(p, c)| (*p, c.as_slice())),
        DEFAULT_EXCLUSIONS,
    );
    assert_eq!(reversed, in_memory);
}

// ---------------------------------------------------------------------------------------------
// Parallel and streamed hashing (KRN-03 "better")

#[test]
fn krn03_thread_counts_and_progress_agree() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let mut total = 0u64;
    for i in 0..50 {
        let content: Vec<u8> = (0..(i * 997 % 5000)).map(|b| (b * 7 + i) as u8).collect();
        total += content.len() as u64;
        write(root, &format!("d{}/f{i}.bin", i % 7), &content);
    }
    let expected = hash(root);
    for threads in [1, 2, 3, 8, 64] {
        let seen = AtomicU64::new(0);
        let progress = |n: u64| {
            seen.fetch_add(n, Ordering::Relaxed);
        };
        let options = HashOptions {
            threads: Some(threads),
            progress: Some(&progress),
            ..HashOptions::default()
        };
        assert_eq!(
            compute_pack_hash_with(root, &options).unwrap().hex(),
            expected
        );
        assert_eq!(seen.load(Ordering::Relaxed), total, "threads = {threads}");
    }
    let files = list_pack_files(root, DEFAULT_EXCLUSIONS).unwrap();
    assert_eq!(files.iter().map(|f| f.len).sum::<u64>(), total);
    assert!(files.iter().all(|f| f.abs_path.is_absolute()));
}

#[test]
fn krn03_large_files_stream_through_every_path() {
    // 20 MiB crosses the size at which a lone file is read on a helper thread.
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let big: Vec<u8> = (0..20 * 1024 * 1024u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
        .collect();
    write(root, "big.bin", &big);
    let expected = reference_hash(&[("big.bin", &big)]);
    for threads in [None, Some(1), Some(2), Some(4)] {
        let seen = AtomicU64::new(0);
        let progress = |n: u64| {
            seen.fetch_add(n, Ordering::Relaxed);
        };
        let options = HashOptions {
            threads,
            progress: Some(&progress),
            ..HashOptions::default()
        };
        assert_eq!(
            compute_pack_hash_with(root, &options).unwrap().hex(),
            expected
        );
        assert_eq!(seen.load(Ordering::Relaxed), big.len() as u64);
    }
    // A big file last in a list of small ones.
    write(root, "a.txt", b"small");
    let expected = reference_hash(&[("a.txt", b"small"), ("big.bin", &big)]);
    assert_eq!(hash(root), expected);
}

// ---------------------------------------------------------------------------------------------
// Errors and our deliberate differences (KRN-03 "a directory symlink is a clear error")

#[cfg(unix)]
#[test]
fn krn03_directory_symlink_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("pack");
    write(&root, "tools/real/a.ts", b"a");
    std::os::unix::fs::symlink(root.join("tools/real"), root.join("tools/link")).unwrap();
    let err = error_of(&root);
    assert_eq!(err.code(), "DIRECTORY_SYMLINK");
    assert_eq!(
        err.to_string(),
        "`tools/link` is a symlink to a directory; packs may not contain directory symlinks (replace it with a copy of the files)"
    );
}

#[cfg(unix)]
#[test]
fn krn03_symlink_escaping_the_root_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("pack");
    write(&root, "manifest.yaml", b"id: x");
    write(dir.path(), "secret.txt", b"secret");
    std::os::unix::fs::symlink(dir.path().join("secret.txt"), root.join("leak.txt")).unwrap();
    let err = error_of(&root);
    assert_eq!(err.code(), "SYMLINK_ESCAPE");
    let message = err.to_string();
    assert!(
        message.starts_with("`leak.txt` is a symlink to `"),
        "{message}"
    );
    assert!(message.contains("outside the pack root"), "{message}");

    // A relative link climbing out is caught the same way.
    fs::remove_file(root.join("leak.txt")).unwrap();
    std::os::unix::fs::symlink("../secret.txt", root.join("leak.txt")).unwrap();
    assert_eq!(error_of(&root).code(), "SYMLINK_ESCAPE");
}

#[cfg(unix)]
#[test]
fn krn03_symlink_to_a_file_inside_is_hashed_as_its_target() {
    let dir = tempfile::tempdir().unwrap();
    let linked = dir.path().join("linked");
    write(&linked, "lib/real.ts", b"export const real = 1;");
    std::os::unix::fs::symlink("lib/real.ts", linked.join("alias.ts")).unwrap();
    // The same pack with a copy instead of the link.
    let copied = dir.path().join("copied");
    write(&copied, "lib/real.ts", b"export const real = 1;");
    write(&copied, "alias.ts", b"export const real = 1;");
    assert_eq!(hash(&linked), hash(&copied));

    // Through a symlinked pack root too (the root is canonicalized for the escape check).
    let via = dir.path().join("via");
    std::os::unix::fs::symlink(&linked, &via).unwrap();
    assert_eq!(hash(&via), hash(&copied));
    let files = list_pack_files(&linked, DEFAULT_EXCLUSIONS).unwrap();
    assert_eq!(files[0].rel_path, "alias.ts");
    assert_eq!(files[0].len, 22);
}

#[cfg(unix)]
#[test]
fn krn03_symlinks_in_excluded_directories_are_ignored() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("pack");
    write(&root, "manifest.yaml", b"id: x");
    fs::create_dir_all(root.join("node_modules/.bin")).unwrap();
    std::os::unix::fs::symlink("/", root.join("node_modules/root")).unwrap();
    std::os::unix::fs::symlink("/etc/hostname", root.join("node_modules/.bin/x")).unwrap();
    std::os::unix::fs::symlink("/", root.join(".DS_Store")).unwrap();
    assert_eq!(hash(&root), reference_hash(&[("manifest.yaml", b"id: x")]));
}

#[cfg(unix)]
#[test]
fn krn03_broken_symlink_is_an_io_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink("missing.ts", dir.path().join("dangling.ts")).unwrap();
    let err = error_of(dir.path());
    assert_eq!(err.code(), "IO_ERROR");
    assert!(err.to_string().contains("dangling.ts"), "{err}");
}

#[test]
fn krn03_missing_root_and_file_root() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nope");
    let err = error_of(&missing);
    assert_eq!(err.code(), "PACK_ROOT_NOT_FOUND");
    assert!(err.to_string().contains("nope"), "{err}");

    write(dir.path(), "file.txt", b"x");
    let err = error_of(&dir.path().join("file.txt"));
    assert_eq!(err.code(), "NOT_A_DIRECTORY");
    assert!(err.to_string().contains("file.txt"), "{err}");
}

#[cfg(unix)]
#[test]
fn krn03_fifo_is_unsupported_and_does_not_hang() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().to_path_buf();
    write(&root, "manifest.yaml", b"id: x");
    fs::create_dir_all(root.join("tools")).unwrap();
    let status = std::process::Command::new("mkfifo")
        .arg(root.join("tools/pipe"))
        .status()
        .unwrap();
    assert!(status.success());

    let (tx, rx) = std::sync::mpsc::channel();
    let worker_root = root.clone();
    std::thread::spawn(move || {
        let _ = tx.send(compute_pack_hash(&worker_root).map(|h| h.hex()));
    });
    let result = rx
        .recv_timeout(std::time::Duration::from_secs(20))
        .expect("hashing a pack with a FIFO must not hang");
    let err = result.unwrap_err();
    assert_eq!(err.code(), "UNSUPPORTED_FILE_TYPE");
    assert_eq!(
        err.to_string(),
        "`tools/pipe` is a fifo; packs may contain only regular files, directories and symlinks to files"
    );
}

#[cfg(unix)]
#[test]
fn krn03_symlink_to_fifo_inside_is_unsupported() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    fs::create_dir_all(root.join("node_modules")).unwrap();
    let status = std::process::Command::new("mkfifo")
        .arg(root.join("node_modules/pipe"))
        .status()
        .unwrap();
    assert!(status.success());
    // The FIFO itself is excluded; a link to it from a hashed path is not.
    assert_eq!(hash(root), VECTOR_C);
    std::os::unix::fs::symlink("node_modules/pipe", root.join("pipe.ts")).unwrap();
    let err = error_of(root);
    assert_eq!(err.code(), "UNSUPPORTED_FILE_TYPE");
    assert!(err.to_string().starts_with("`pipe.ts` is a fifo"), "{err}");
}

#[cfg(target_os = "linux")]
#[test]
fn krn03_non_utf8_name_is_an_error_naming_it() {
    use std::ffi::OsStr;
    use std::os::unix::ffi::OsStrExt;
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    write(root, "manifest.yaml", b"id: x");
    let bad = OsStr::from_bytes(b"bad\xffname.ts");
    fs::create_dir_all(root.join("tools")).unwrap();
    fs::write(root.join("tools").join(bad), b"x").unwrap();
    let err = error_of(root);
    assert_eq!(err.code(), "NON_UTF8_PATH");
    assert!(
        err.to_string()
            .starts_with("`tools/bad\u{FFFD}name.ts` is not a valid UTF-8 path"),
        "{err}"
    );

    // Under an excluded directory it does not matter.
    fs::remove_file(root.join("tools").join(bad)).unwrap();
    fs::create_dir_all(root.join("node_modules")).unwrap();
    fs::write(root.join("node_modules").join(bad), b"x").unwrap();
    assert_eq!(hash(root), reference_hash(&[("manifest.yaml", b"id: x")]));
}

#[test]
fn krn03_error_messages_are_lowercase_without_trailing_period() {
    let dir = tempfile::tempdir().unwrap();
    let errors = [error_of(&dir.path().join("missing")), {
        write(dir.path(), "f", b"x");
        error_of(&dir.path().join("f"))
    }];
    for err in errors {
        let message = err.to_string();
        assert!(message.chars().next().unwrap().is_lowercase(), "{message}");
        assert!(!message.ends_with('.'), "{message}");
    }
}

// ---------------------------------------------------------------------------------------------
// Properties (KRN-03): excluded noise and metadata never change the hash; content and names do.

const DIRS: &[&str] = &["", "src", "src/lib", "tools", "B", "\u{1F600}", "\u{FF21}x"];

/// A pack: relative path -> content. File names always carry an extension and directory names
/// never do, so files and directories cannot collide, and no name is excluded.
fn pack_strategy() -> impl Strategy<Value = BTreeMap<String, Vec<u8>>> {
    prop::collection::btree_map(
        (
            prop::sample::select(DIRS),
            "[a-zA-Z0-9_é\u{1F600}\u{FF21}-]{1,6}\\.[a-z]{1,3}",
        )
            .prop_map(|(dir, name)| {
                if dir.is_empty() {
                    name
                } else {
                    format!("{dir}/{name}")
                }
            }),
        prop::collection::vec(any::<u8>(), 0..200),
        1..8,
    )
}

fn materialize(root: &Path, pack: &BTreeMap<String, Vec<u8>>, reverse: bool) {
    let mut entries: Vec<_> = pack.iter().collect();
    if reverse {
        entries.reverse();
    }
    for (rel, content) in entries {
        write(root, rel, content);
    }
}

fn model_hash(pack: &BTreeMap<String, Vec<u8>>) -> String {
    hash_files_in_memory(
        pack.iter().map(|(p, c)| (p.as_str(), c.as_slice())),
        DEFAULT_EXCLUSIONS,
    )
    .hex()
}

#[derive(Debug, Clone)]
enum Noise {
    Excluded {
        dir: &'static str,
        name: String,
        content: Vec<u8>,
    },
    DsStore {
        dir: &'static str,
        content: Vec<u8>,
    },
    Touch {
        index: usize,
        secs: u64,
    },
    ReadOnly {
        index: usize,
    },
}

fn noise_strategy() -> impl Strategy<Value = Noise> {
    prop_oneof![
        (
            prop::sample::select(
                &[
                    "node_modules",
                    ".git",
                    "dist",
                    "node_modules/x/y",
                    ".git/objects"
                ][..]
            ),
            "[a-z]{1,6}\\.[a-z]{1,3}",
            prop::collection::vec(any::<u8>(), 0..50)
        )
            .prop_map(|(dir, name, content)| Noise::Excluded { dir, name, content }),
        (
            prop::sample::select(DIRS),
            prop::collection::vec(any::<u8>(), 0..50)
        )
            .prop_map(|(dir, content)| Noise::DsStore { dir, content }),
        (any::<usize>(), 0u64..2_000_000_000)
            .prop_map(|(index, secs)| Noise::Touch { index, secs }),
        any::<usize>().prop_map(|index| Noise::ReadOnly { index }),
    ]
}

fn apply_noise(root: &Path, pack: &BTreeMap<String, Vec<u8>>, noise: &Noise) {
    let nth = |index: usize| -> PathBuf {
        let rel = pack.keys().nth(index % pack.len()).unwrap();
        root.join(rel)
    };
    match noise {
        Noise::Excluded { dir, name, content } => write(root, &format!("{dir}/{name}"), content),
        Noise::DsStore { dir, content } => {
            let rel = if dir.is_empty() {
                ".DS_Store".to_owned()
            } else {
                format!("{dir}/.DS_Store")
            };
            write(root, &rel, content);
        }
        Noise::Touch { index, secs } => {
            let file = fs::File::options().append(true).open(nth(*index)).unwrap();
            let time = std::time::UNIX_EPOCH + std::time::Duration::from_secs(*secs);
            file.set_modified(time).unwrap();
        }
        Noise::ReadOnly { index } => {
            let path = nth(*index);
            let mut perms = fs::metadata(&path).unwrap().permissions();
            perms.set_readonly(true);
            fs::set_permissions(&path, perms).unwrap();
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 32, ..ProptestConfig::default() })]

    /// KRN-03 property 1: the hash is the model's, whatever the creation order, and excluded
    /// files, mtimes and permissions never change it.
    #[test]
    fn krn03_prop_noise_never_changes_the_hash(
        pack in pack_strategy(),
        noise in prop::collection::vec(noise_strategy(), 0..6),
    ) {
        let expected = model_hash(&pack);
        let dir = tempfile::tempdir().unwrap();
        let forward = dir.path().join("forward");
        let backward = dir.path().join("backward");
        materialize(&forward, &pack, false);
        materialize(&backward, &pack, true);
        prop_assert_eq!(hash(&forward), expected.clone());
        prop_assert_eq!(hash(&backward), expected.clone());
        for n in &noise {
            apply_noise(&forward, &pack, n);
        }
        prop_assert_eq!(hash(&forward), expected);
    }

    /// KRN-03 property 2: flipping any byte of a hashed file, or renaming it, changes the hash.
    #[test]
    fn krn03_prop_content_and_names_always_count(
        pack in pack_strategy(),
        index in any::<usize>(),
        offset in any::<usize>(),
        mask in 1u8..=255,
    ) {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        materialize(root, &pack, false);
        let original = hash(root);
        let (rel, content) = pack.iter().nth(index % pack.len()).unwrap();

        let mut changed = content.clone();
        if changed.is_empty() {
            changed.push(mask);
        } else {
            let at = offset % changed.len();
            changed[at] ^= mask;
        }
        write(root, rel, &changed);
        prop_assert_ne!(hash(root), original.clone());
        write(root, rel, content);
        prop_assert_eq!(hash(root), original.clone());

        // Renamed to a name not in the pack (a `z` before the extension is never taken: the
        // generated names are unique keys, and we check).
        let renamed = format!("{rel}z");
        prop_assume!(!pack.contains_key(&renamed));
        fs::rename(root.join(rel), root.join(&renamed)).unwrap();
        prop_assert_ne!(hash(root), original);
    }
}
