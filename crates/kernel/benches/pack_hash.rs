//! Criterion benchmarks for the pack hash (KRN-03): one large file, many small files, and the
//! in-memory variant. `cargo bench -p lumenflow-kernel --bench pack_hash`.
//!
//! The end-to-end comparison against `openssl dgst -sha256` lives in `bench/pack-hash.sh`.

use std::fs;
use std::path::Path;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use lumenflow_kernel::integrity::{
    compute_pack_hash_with, hash_files_in_memory, HashOptions, DEFAULT_EXCLUSIONS,
};

const BIG: usize = 64 * 1024 * 1024;
const SMALL_FILES: usize = 1000;
const SMALL: usize = 53 * 1024;

/// Cheap deterministic pseudo-random bytes (xorshift), so the data does not compress.
fn bytes(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

fn write(root: &Path, rel: &str, content: &[u8]) {
    let path = root.join(rel);
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent).expect("create bench directory");
    }
    fs::write(path, content).expect("write bench file");
}

fn bench_on_disk(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("tempdir");
    let big = dir.path().join("big");
    write(&big, "blob.bin", &bytes(1, BIG));
    let many = dir.path().join("many");
    for i in 0..SMALL_FILES {
        write(
            &many,
            &format!("d{:02}/f{i:04}.bin", i / 100),
            &bytes(i as u64 + 7, SMALL),
        );
    }

    let mut group = c.benchmark_group("pack_hash");
    group.sample_size(10);
    let threads_options = [Some(1), None];
    for (name, root, total) in [
        ("one_64MiB_file", &big, BIG),
        ("1000_files_53KiB", &many, SMALL_FILES * SMALL),
    ] {
        group.throughput(Throughput::Bytes(total as u64));
        for threads in threads_options {
            let label = threads.map_or("all_cores".to_owned(), |t| format!("{t}_thread"));
            group.bench_with_input(BenchmarkId::new(name, label), root, |b, root| {
                let options = HashOptions {
                    threads,
                    ..HashOptions::default()
                };
                b.iter(|| compute_pack_hash_with(root, &options).expect("hash"));
            });
        }
    }
    group.finish();
}

fn bench_in_memory(c: &mut Criterion) {
    let files: Vec<(String, Vec<u8>)> = (0..200)
        .map(|i| (format!("tools/t{i:03}.ts"), bytes(i, 4096)))
        .collect();
    let mut group = c.benchmark_group("pack_hash_in_memory");
    group.throughput(Throughput::Bytes(200 * 4096));
    group.bench_function("200_files_4KiB", |b| {
        b.iter(|| {
            hash_files_in_memory(
                files.iter().map(|(p, c)| (p.as_str(), c.as_slice())),
                DEFAULT_EXCLUSIONS,
            )
        });
    });
    group.finish();
}

criterion_group!(benches, bench_on_disk, bench_in_memory);
criterion_main!(benches);
