//! `bundle::verify` on a demo-sized bundle, beside the baseline of what any verifier must do at
//! least: read and SHA-256 the same files and check one Ed25519 signature (issue 10 target:
//! under 5 ms per bundle).

use std::fs;
use std::time::Instant;

use criterion::{criterion_group, criterion_main, Criterion};
use lumenflow_proof::bundle::{self, SealRequest, REQUIRED_ARTIFACTS};
use lumenflow_proof::KeyPair;
use sha2::{Digest, Sha256};

fn bench(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("tmp");
    let key = KeyPair::generate();
    for (i, name) in REQUIRED_ARTIFACTS.iter().enumerate() {
        // Demo bundles hold a few KiB per file.
        fs::write(dir.path().join(name), vec![b'a' + i as u8; 2048]).expect("write");
    }
    bundle::seal(
        dir.path(),
        &key,
        &SealRequest {
            run_id: "tc-bench",
            mode: "happy",
            created_at: "2026-11-21T00:00:00.000Z",
        },
    )
    .expect("seal");
    let public = key.public();
    let path = dir.path().to_path_buf();

    let mut group = c.benchmark_group("proof_verify");
    group.bench_function("bundle::verify (pinned)", |b| {
        b.iter(|| assert!(bundle::verify(&path, Some(&public)).passed()))
    });
    let manifest = fs::read(path.join("manifest.json")).expect("manifest");
    let sig = fs::read(path.join("manifest.sig")).expect("sig");
    group.bench_function("baseline: read+sha256 files, one signature", |b| {
        b.iter(|| {
            for name in REQUIRED_ARTIFACTS {
                let bytes = fs::read(path.join(name)).expect("read");
                std::hint::black_box(Sha256::digest(&bytes));
            }
            public.verify(&manifest, &sig).expect("sig");
        })
    });
    group.finish();

    // The ratio, measured here in one process.
    let time = |f: &dyn Fn()| {
        let n = 2000;
        let t = Instant::now();
        for _ in 0..n {
            f();
        }
        t.elapsed().as_secs_f64() / n as f64
    };
    let full = time(&|| {
        bundle::verify(&path, Some(&public));
    });
    let base = time(&|| {
        for name in REQUIRED_ARTIFACTS {
            let bytes = fs::read(path.join(name)).unwrap_or_default();
            std::hint::black_box(Sha256::digest(&bytes));
        }
        let _ = public.verify(&manifest, &sig);
    });
    println!(
        "proof verify: {:.1} us per bundle, baseline {:.1} us, ratio {:.2}x",
        full * 1e6,
        base * 1e6,
        full / base
    );
}

criterion_group!(benches, bench);
criterion_main!(benches);
