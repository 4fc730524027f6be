//! Prints the pack hash of a directory: `cargo run --release --example pack_hash -- DIR [THREADS]`.
//!
//! Used by `bench/pack-hash.sh` (through `LUMENFLOW_BIN`) before the CLI command exists.

use std::path::Path;
use std::process::ExitCode;

use lumenflow_kernel::integrity::{compute_pack_hash_with, HashOptions};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(dir) = args.first() else {
        eprintln!("usage: pack_hash DIR [THREADS]");
        return ExitCode::from(2);
    };
    let threads = args.get(1).and_then(|t| t.parse().ok());
    let options = HashOptions {
        threads,
        ..HashOptions::default()
    };
    match compute_pack_hash_with(Path::new(dir), &options) {
        Ok(hash) => {
            println!("{hash}");
            ExitCode::SUCCESS
        }
        Err(err) => {
            eprintln!("error [{}]: {err}", err.code());
            ExitCode::FAILURE
        }
    }
}
