//! Parsing, validating and linting a 100-tool manifest, beside the raw YAML event parse of the
//! same text (the floor any YAML-based validator pays). Prints the ratio at the end.

use std::hint::black_box;
use std::time::Instant;

use criterion::{criterion_group, criterion_main, Criterion};
use lumenflow_kernel::diagnostics::SourceFile;
use lumenflow_kernel::manifest::{lint, parse_manifest};

pub fn manifest_with_tools(n: usize) -> String {
    let mut s = String::from("id: bench-pack\nversion: 1.0.0\ntask_types: [task]\ntools:\n");
    for i in 0..n {
        s.push_str(&format!(
            "  - name: bench:tool-{i}\n    entry: tools/tool.py\n    permission: write\n    description: Tool number {i}.\n    required_scopes:\n      - type: path\n        pattern: data/{i}/**\n        access: read\n      - type: path\n        pattern: out/{i}/**/*.json\n        access: write\n    input_schema:\n      type: object\n      properties:\n        path: {{type: string, minLength: 1}}\n        limit: {{type: integer, minimum: 0, maximum: 1000}}\n      required: [path]\n    output_schema:\n      type: object\n      properties:\n        ok: {{type: boolean}}\n"
        ));
    }
    s.push_str(
        "policies:\n  - id: bench.default\n    trigger: on_tool_request\n    decision: allow\n",
    );
    s
}

fn raw_yaml_events(text: &str) -> usize {
    saphyr_parser::Parser::new_from_str(text)
        .filter(|e| e.is_ok())
        .count()
}

fn bench(c: &mut Criterion) {
    let text = manifest_with_tools(100);
    let mut group = c.benchmark_group("manifest_100_tools");
    group.bench_function("baseline_raw_yaml_events", |b| {
        b.iter(|| raw_yaml_events(black_box(&text)))
    });
    group.bench_function("parse_validate_lint", |b| {
        b.iter(|| {
            let doc =
                parse_manifest(SourceFile::new("manifest.yaml", text.clone())).expect("valid");
            lint::security_lint(&doc, None).len()
        })
    });
    group.finish();

    // A plain ratio, measured in this process, for the closing note.
    let rounds = 200;
    let t = Instant::now();
    for _ in 0..rounds {
        black_box(raw_yaml_events(&text));
    }
    let base = t.elapsed().as_secs_f64() / rounds as f64;
    let t = Instant::now();
    for _ in 0..rounds {
        let doc = parse_manifest(SourceFile::new("manifest.yaml", text.clone())).expect("valid");
        black_box(lint::security_lint(&doc, None).len());
    }
    let full = t.elapsed().as_secs_f64() / rounds as f64;
    println!(
        "manifest (100 tools, {} bytes): raw YAML events {:.3} ms, parse+validate+lint {:.3} ms, ratio {:.2}x",
        text.len(),
        base * 1e3,
        full * 1e3,
        full / base
    );
}

criterion_group!(benches, bench);
criterion_main!(benches);
