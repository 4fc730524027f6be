//! The figure of issue 9: ingestion rate of a 1 000 000-row meter file (target: at least
//! 200 000 rows/s, events included), beside the rate of merely parsing the same file, in the
//! same run. Run with `bench/campus-ingest.sh` (or `cargo bench -p lumenflow-packs --bench
//! campus_ingest`); `CAMPUS_ROWS` changes the row count.
//!
//! "Ingestion" is what `lumenflow campus ingest --file F` does: read the file, parse and check
//! every row, check windows across rows and against the stored ones, append the readings to the
//! state files (fsync'd) and stamp one `campus:facility_energy_recorded` event per row in the
//! ledger (batched appends, fsync'd). "Parse only" is reading the file and parsing its rows.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::fmt::Write as _;
use std::time::Instant;

use lumenflow_contracts::time::Timestamp;
use lumenflow_packs::campus::events::Recorder;
use lumenflow_packs::campus::ingest::{self, Format, IngestOptions};
use lumenflow_packs::campus::store::Store;

const METERS: usize = 100;

fn meter_file(rows: usize, format: Format) -> String {
    let start = Timestamp::parse("2026-01-01T00:00:00.000Z")
        .unwrap()
        .unix_millis();
    let window = 15 * 60 * 1000;
    let mut out = String::with_capacity(rows * 220);
    if format == Format::Csv {
        out.push_str("type,facility_id,source,valid_from,valid_to,quantity_joules,energy_source,energy_provenance,sensor_ref\n");
    }
    for i in 0..rows {
        let meter = i % METERS;
        let n = (i / METERS) as i64;
        let from = Timestamp::from_unix_millis(start + n * window).to_rfc3339();
        let to = Timestamp::from_unix_millis(start + (n + 1) * window).to_rfc3339();
        let joules = 900_000.0 + (i % 1000) as f64 * 17.25;
        match format {
            Format::Csv => {
                let _ = writeln!(
                    out,
                    "energy,campus-fac-001,pdu:meter-{meter},{from},{to},{joules},pdu,measured,sensor:meter-{meter}"
                );
            }
            Format::JsonLines => {
                let _ = writeln!(
                    out,
                    r#"{{"type":"energy","facility_id":"campus-fac-001","source":"pdu:meter-{meter}","valid_from":"{from}","valid_to":"{to}","quantity_joules":{joules},"energy_source":"pdu","energy_provenance":"measured","sensor_ref":"sensor:meter-{meter}"}}"#
                );
            }
        }
    }
    out
}

fn run(rows: usize, format: Format) {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    std::fs::write(root.join("workspace.yaml"), "id: ws-bench\n").unwrap();
    let store = Store::new(root);
    let recorder = Recorder::open(root, "ws-bench").unwrap();
    ingest::add_facility(&store, &recorder, "campus-fac-001", None, Some("eu-west-1")).unwrap();
    let name = match format {
        Format::Csv => "meters.csv",
        Format::JsonLines => "meters.jsonl",
    };
    let path = root.join(name);
    std::fs::write(&path, meter_file(rows, format)).unwrap();
    let bytes = std::fs::metadata(&path).unwrap().len();

    let t = Instant::now();
    let text = std::fs::read_to_string(&path).unwrap();
    let (good, bad, count) = ingest::parse_text(&text, format);
    let parse = t.elapsed().as_secs_f64();
    assert_eq!((good.len(), bad.len(), count), (rows, 0, rows));
    drop((good, text));

    let t = Instant::now();
    let report = ingest::ingest_file(
        &store,
        &recorder,
        &path,
        IngestOptions {
            skip_bad_rows: false,
            format: Some(format),
        },
    )
    .unwrap();
    let full = t.elapsed().as_secs_f64();
    assert_eq!((report.ingested, report.events), (rows, rows));
    let ledger = std::fs::metadata(lumenflow_kernel::events::ledger_path(root))
        .unwrap()
        .len();

    println!(
        "campus ingest {name}: {rows} rows, {:.1} MB file, {:.1} MB ledger",
        bytes as f64 / 1e6,
        ledger as f64 / 1e6
    );
    println!(
        "  parse only            {:>8.3} s  {:>10.0} rows/s",
        parse,
        rows as f64 / parse
    );
    println!(
        "  ingest (with events)  {:>8.3} s  {:>10.0} rows/s  (target >= 200000 rows/s: {})",
        full,
        rows as f64 / full,
        if rows as f64 / full >= 200_000.0 {
            "met"
        } else {
            "NOT met"
        }
    );
    let phases: Vec<String> = report
        .phase_seconds
        .iter()
        .map(|(k, v)| format!("{k} {v:.3} s"))
        .collect();
    println!("    after parsing: {}", phases.join(", "));
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` runs this too, so keep it small
    // unless benchmarking.
    let benchmarking = std::env::args().any(|a| a == "--bench");
    let rows = std::env::var("CAMPUS_ROWS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(if benchmarking { 1_000_000 } else { 10_000 });
    run(rows, Format::Csv);
    run(rows, Format::JsonLines);
}
