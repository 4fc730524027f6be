//! Re-checking the whole chain: what `lumenflow audit verify` runs.

use std::fmt;
use std::fs::File;
use std::io::{self, BufRead};
use std::path::Path;

use super::error::{LineProblem, VerifyError};
use super::record::check_line;
use super::GENESIS_HASH;

/// A log whose chain holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifySummary {
    pub records: u64,
    /// 0 for an empty log.
    pub last_seq: u64,
    /// The last record's hash (64 zeros for an empty log): the value to anchor elsewhere.
    pub last_hash: String,
}

impl fmt::Display for VerifySummary {
    /// `chain ok: N records, last seq S, head <hash>`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "chain ok: {} records, last seq {}, head {}",
            self.records, self.last_seq, self.last_hash
        )
    }
}

/// Check every line of the log at `path`: a strict JSON object with the log's members, its hash
/// recomputed from its content, `prev_hash` equal to the previous line's hash (64 zeros on line 1)
/// and `seq` equal to its line number. Stops at the first bad line and names it.
///
/// A final line without its newline is reported ([`LineProblem::Incomplete`]): `open` cuts it.
pub fn verify(path: &Path) -> Result<VerifySummary, VerifyError> {
    let io_err = |source| VerifyError::Io {
        path: path.to_path_buf(),
        source,
    };
    let file = File::open(path).map_err(io_err)?;
    let mut reader = io::BufReader::with_capacity(256 * 1024, file);
    let bad = |line: u64, seq: Option<u64>, problem: LineProblem| VerifyError::BadLine {
        path: path.to_path_buf(),
        line,
        seq,
        problem,
    };
    let mut buf = Vec::new();
    let mut line = 0u64;
    let mut prev_hash = GENESIS_HASH.to_string();
    loop {
        buf.clear();
        let n = reader.read_until(b'\n', &mut buf).map_err(io_err)?;
        if n == 0 {
            return Ok(VerifySummary {
                records: line,
                last_seq: line,
                last_hash: prev_hash,
            });
        }
        line += 1;
        if buf.last() != Some(&b'\n') {
            return Err(bad(line, None, LineProblem::Incomplete));
        }
        let checked =
            check_line(&buf[..buf.len() - 1]).map_err(|problem| bad(line, None, problem))?;
        if checked.prev_hash != prev_hash {
            let problem = if line == 1 {
                LineProblem::FirstPrevHashNotZero
            } else {
                LineProblem::PrevHashMismatch {
                    previous_line: line - 1,
                }
            };
            return Err(bad(line, Some(checked.seq), problem));
        }
        if checked.seq != line {
            return Err(bad(
                line,
                Some(checked.seq),
                LineProblem::SeqMismatch {
                    expected: line,
                    found: checked.seq,
                },
            ));
        }
        prev_hash = checked.hash;
    }
}
