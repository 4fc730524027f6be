//! Operator ingestion: facility registration and files of readings, validated row by row before
//! anything is written.
//!
//! [`ingest_file`] reads the whole file, parses every row ([`parse_text`]), then checks the
//! rules across rows and against the stored state: the facility is registered, no two rows are
//! the same reading, and no two windows of one meter (facility and `source`) overlap, within the
//! file or with windows already stored. A file with any bad row is refused whole (every bad row
//! listed with its line), unless the operator asks for `skip_bad_rows`; then the good rows are
//! kept and the bad ones reported. Only then are the readings appended to the state files and
//! the `campus:*` events stamped in the ledger, in batches.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use lumenflow_contracts::kinds::CampusKind;
use lumenflow_contracts::payloads::{
    FacilityRegistered, NodeInventoryUpdated, PowerSignalIngested, PueSampled,
};
use lumenflow_contracts::time::Timestamp;
use lumenflow_kernel::events::emit::EmitError;
use serde::Serialize;
use serde_json::{Map, Value};

use super::events::{Recorder, LEDGER_BATCH};
use super::model::{
    check_field_name, parse_json_line, parse_row, split_csv_line, valid_id, CsvRow, EnergyWindow,
    Facility, Node, PowerSignal, PueSample, Reading, RowError,
};
use super::store::{Series, Store, StoreError};

/// The format of a readings file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Format {
    JsonLines,
    Csv,
}

impl Format {
    /// From the file name: `.csv` is CSV, anything else JSON Lines.
    pub fn from_path(path: &Path) -> Format {
        match path.extension().and_then(|e| e.to_str()) {
            Some(ext) if ext.eq_ignore_ascii_case("csv") => Format::Csv,
            _ => Format::JsonLines,
        }
    }
}

/// Why an ingestion was refused. Nothing was written in any of these cases, except
/// [`IngestError::Emit`] after the state was written (then the readings are stored and the
/// events can be re-stamped by ingesting again: stored duplicates are refused, so that run
/// reports them).
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    #[error("cannot read `{path}`: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{} bad row(s) in `{}`, nothing ingested (pass --skip-bad-rows to keep the good rows); first: {}", .errors.len(), .path.display(), .errors.first().map(|e| e.located(&.path.display().to_string())).unwrap_or_default())]
    BadRows {
        path: PathBuf,
        errors: Vec<RowError>,
    },
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{0}")]
    Emit(EmitError),
}

impl IngestError {
    pub fn code(&self) -> &'static str {
        match self {
            IngestError::Read { .. } => "IO_ERROR",
            IngestError::BadRows { .. } => "INGEST_BAD_ROWS",
            IngestError::Invalid(_) => "INVALID_INPUT",
            IngestError::Store(e) => e.code(),
            IngestError::Emit(e) => e.code(),
        }
    }
}

/// What an ingestion did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct IngestReport {
    /// Data rows in the file (blank lines and the CSV header not counted).
    pub rows: usize,
    pub ingested: usize,
    pub energy_windows: usize,
    pub pue_samples: usize,
    pub power_signals: usize,
    pub nodes: usize,
    /// Events stamped in the ledger.
    pub events: usize,
    /// Rows left out under `skip_bad_rows`, with why.
    pub skipped: Vec<RowError>,
    /// Seconds spent checking rows across the file, writing the state, and building and
    /// stamping the events.
    pub phase_seconds: BTreeMap<&'static str, f64>,
    /// A sink refused the (ephemeral) events; their ledger stamps remain.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub warning: Option<String>,
}

/// Parse every row of a file's text, on every core. Returns the good rows with their line
/// numbers and the bad rows' errors, both in line order, and the number of data rows.
pub fn parse_text(text: &str, format: Format) -> (Vec<(usize, Reading)>, Vec<RowError>, usize) {
    let mut lines = text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| (i + 1, l.trim_end_matches('\r')));
    let header: Option<Vec<String>> = match format {
        Format::JsonLines => None,
        Format::Csv => {
            let Some((line, header_line)) = lines.next() else {
                return (Vec::new(), Vec::new(), 0);
            };
            let checked = split_csv_line(header_line).and_then(|cells| {
                let columns: Vec<String> = cells.iter().map(|c| c.trim().to_string()).collect();
                match columns
                    .iter()
                    .find_map(|c| check_field_name(c, line, "column").err())
                {
                    Some(e) => Err(format!("`{}`: {}", e.field.unwrap_or_default(), e.message)),
                    None => Ok(columns),
                }
            });
            match checked {
                Ok(columns) => Some(columns),
                Err(m) => {
                    return (
                        Vec::new(),
                        vec![RowError::new(line, None, format!("bad CSV header: {m}"))],
                        0,
                    )
                }
            }
        }
    };
    let lines: Vec<(usize, &str)> = lines.collect();
    let count = lines.len();
    let parse_one = |(line, text): &(usize, &str)| -> Result<Reading, RowError> {
        let line = *line;
        match &header {
            None => parse_json_line(text, line),
            Some(header) => {
                let cells = split_csv_line(text).map_err(|m| RowError::new(line, None, m))?;
                if cells.len() != header.len() {
                    return Err(RowError::new(
                        line,
                        None,
                        format!("{} cells, the header has {}", cells.len(), header.len()),
                    ));
                }
                parse_row(
                    &CsvRow {
                        header,
                        cells: &cells,
                    },
                    line,
                )
            }
        }
    };
    let parts = parallel_chunks(&lines, |chunk| {
        let mut good = Vec::with_capacity(chunk.len());
        let mut bad = Vec::new();
        for l in chunk {
            match parse_one(l) {
                Ok(r) => good.push((l.0, r)),
                Err(e) => bad.push(e),
            }
        }
        (good, bad)
    });
    let mut good = Vec::with_capacity(count);
    let mut bad = Vec::new();
    for (g, b) in parts {
        good.extend(g);
        bad.extend(b);
    }
    (good, bad, count)
}

/// `f` over contiguous chunks of `items`, one per core (at most four), results in order.
fn parallel_chunks<'a, T: Sync, R: Send>(
    items: &'a [T],
    f: impl Fn(&'a [T]) -> R + Sync,
) -> Vec<R> {
    let workers = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .clamp(1, 4);
    if workers == 1 || items.len() < 4096 {
        return vec![f(items)];
    }
    let size = items.len().div_ceil(workers);
    std::thread::scope(|s| {
        let f = &f;
        let handles: Vec<_> = items.chunks(size).map(|c| s.spawn(move || f(c))).collect();
        handles
            .into_iter()
            .map(|h| match h.join() {
                Ok(r) => r,
                Err(panic) => std::panic::resume_unwind(panic),
            })
            .collect()
    })
}

/// Register (or update the name and region of) a facility; emits
/// `campus:facility_registered`.
pub fn add_facility(
    store: &Store,
    recorder: &Recorder,
    facility_id: &str,
    name: Option<&str>,
    region: Option<&str>,
) -> Result<Facility, IngestError> {
    if !valid_id(facility_id) {
        return Err(IngestError::Invalid(format!(
            "`{facility_id}` is not a valid facility id (a letter or digit, then up to 127 letters, digits, `.`, `_` or `-`)"
        )));
    }
    // Read, change and write the registry under its lock: two registrations at once both stay.
    let (stored, event) = super::store::with_lock(&store.facilities_path(), || {
        let mut facilities = store.facilities()?;
        let now = Timestamp::now();
        let facility = Facility {
            facility_id: facility_id.to_string(),
            name: name.map(str::to_string),
            region: region.map(str::to_string),
            registered_at: now,
        };
        match facilities.iter_mut().find(|f| f.facility_id == facility_id) {
            Some(existing) => {
                existing.name = facility.name.clone().or(existing.name.take());
                existing.region = facility.region.clone().or(existing.region.take());
            }
            None => facilities.push(facility),
        }
        facilities.sort_by(|a, b| a.facility_id.cmp(&b.facility_id));
        let stored = facilities
            .iter()
            .find(|f| f.facility_id == facility_id)
            .cloned()
            .ok_or_else(|| IngestError::Invalid("facility vanished".into()))?;
        let payload = FacilityRegistered {
            facility_id: stored.facility_id.clone(),
            name: stored.name.clone(),
            region: stored.region.clone(),
        };
        let event = recorder
            .build(CampusKind::FacilityRegistered.as_str(), &payload, None, now)
            .map_err(IngestError::Emit)?;
        store.write_facilities(&facilities)?;
        Ok::<_, IngestError>((stored, event))
    })?;
    recorder.record(&[event]).map_err(IngestError::Emit)?;
    Ok(stored)
}

/// Options of [`ingest_file`].
#[derive(Debug, Clone, Copy, Default)]
pub struct IngestOptions {
    /// Keep the good rows of a file with bad ones (the bad ones are reported).
    pub skip_bad_rows: bool,
    /// The format; from the file name when `None`.
    pub format: Option<Format>,
}

/// Ingest a file of readings (see the module documentation).
pub fn ingest_file(
    store: &Store,
    recorder: &Recorder,
    path: &Path,
    options: IngestOptions,
) -> Result<IngestReport, IngestError> {
    let text = std::fs::read_to_string(path).map_err(|source| IngestError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let format = options.format.unwrap_or_else(|| Format::from_path(path));
    let (rows, errors, count) = parse_text(&text, format);
    if count == 0 && !errors.is_empty() {
        // The file itself is unreadable as rows (a bad CSV header): there are no good rows to
        // keep, so --skip-bad-rows must not turn it into an empty success.
        return Err(IngestError::BadRows {
            path: path.to_path_buf(),
            errors,
        });
    }
    ingest_rows(
        store,
        recorder,
        path,
        rows,
        errors,
        count,
        options.skip_bad_rows,
    )
}

/// Ingest parsed rows: the cross-row checks, then the writes (see the module documentation).
///
/// One ingest at a time per workspace (an exclusive `flock` beside the readings folder): the
/// checks against stored readings (duplicates, overlapping windows) and the appends are one
/// step, so two ingests at once (a file ingest beside a Redfish poll) never both store one
/// span of energy.
pub fn ingest_rows(
    store: &Store,
    recorder: &Recorder,
    path: &Path,
    rows: Vec<(usize, Reading)>,
    errors: Vec<RowError>,
    count: usize,
    skip_bad_rows: bool,
) -> Result<IngestReport, IngestError> {
    super::store::with_lock(&store.root().join("readings"), || {
        ingest_rows_alone(store, recorder, path, rows, errors, count, skip_bad_rows)
    })
}

fn ingest_rows_alone(
    store: &Store,
    recorder: &Recorder,
    path: &Path,
    rows: Vec<(usize, Reading)>,
    mut errors: Vec<RowError>,
    count: usize,
    skip_bad_rows: bool,
) -> Result<IngestReport, IngestError> {
    let started = std::time::Instant::now();
    let facilities: HashMap<String, Facility> = store
        .facilities()?
        .into_iter()
        .map(|f| (f.facility_id.clone(), f))
        .collect();
    let mut bad_lines: HashSet<usize> = HashSet::new();
    let mut reject = |errors: &mut Vec<RowError>, e: RowError| {
        bad_lines.insert(e.line);
        errors.push(e);
    };

    // Facilities must be registered; an energy window needs a region (its own or its
    // facility's).
    let mut touched: Vec<&str> = Vec::new();
    let mut seen_facility: HashSet<&str> = HashSet::new();
    for (line, r) in &rows {
        let id = r.facility_id();
        match facilities.get(id) {
            None => reject(
                &mut errors,
                RowError::new(
                    *line,
                    Some("facility_id"),
                    format!("facility `{id}` is not registered (run `lumenflow campus facility add --id {id}` first)"),
                ),
            ),
            Some(f) => {
                if let Reading::Energy(w) = r {
                    if w.region.is_none() && f.region.is_none() {
                        reject(
                            &mut errors,
                            RowError::new(
                                *line,
                                Some("region"),
                                format!("required: facility `{id}` has no region to default to"),
                            ),
                        );
                    }
                }
                if seen_facility.insert(id) {
                    touched.push(id);
                }
            }
        }
    }

    check_energy(store, &rows, &touched, &mut errors, &mut bad_lines)?;
    check_points(store, &rows, &touched, &mut errors, &mut bad_lines)?;

    if !errors.is_empty() && !skip_bad_rows {
        errors.sort_by_key(|e| e.line);
        return Err(IngestError::BadRows {
            path: path.to_path_buf(),
            errors,
        });
    }
    errors.sort_by_key(|e| e.line);

    let checked = started.elapsed().as_secs_f64();
    let now = Timestamp::now();
    let mut report = IngestReport {
        rows: count,
        skipped: errors,
        ..IngestReport::default()
    };
    let emit = IngestError::Emit;

    // The good rows; energy windows take their facility's region when they have none.
    let mut good: Vec<Reading> = Vec::with_capacity(rows.len());
    let mut nodes: BTreeMap<String, Vec<Node>> = BTreeMap::new();
    let any_bad = !bad_lines.is_empty();
    for (line, r) in rows {
        if any_bad && bad_lines.contains(&line) {
            continue;
        }
        report.ingested += 1;
        match r {
            Reading::Energy(mut w) => {
                if w.region.is_none() {
                    w.region = facilities
                        .get(&w.facility_id)
                        .and_then(|f| f.region.clone());
                }
                report.energy_windows += 1;
                good.push(Reading::Energy(w));
            }
            Reading::Pue(s) => {
                report.pue_samples += 1;
                good.push(Reading::Pue(s));
            }
            Reading::Power(p) => {
                report.power_signals += 1;
                good.push(Reading::Power(p));
            }
            Reading::Node(n) => {
                report.nodes += 1;
                nodes.entry(n.facility_id.clone()).or_default().push(n);
            }
        }
    }

    // The state lines, per facility and series (few of each: a linear search), encoded on
    // every core and joined in row order.
    let parts = parallel_chunks(&good, encode_state);
    let mut lines: Vec<(&str, Series, Vec<u8>)> = Vec::new();
    for part in parts {
        for (facility_id, series, bytes) in part? {
            match lines
                .iter_mut()
                .find(|(f, s, _)| *f == facility_id && *s == series)
            {
                Some((_, _, buf)) => buf.extend_from_slice(&bytes),
                None => lines.push((facility_id, series, bytes)),
            }
        }
    }

    // Node inventories: merged into the stored ones, one event per facility.
    let mut inventories = Vec::new();
    let mut inventory_events = Vec::new();
    for (facility_id, new_nodes) in nodes {
        let mut all = store.nodes(&facility_id)?;
        for n in new_nodes {
            match all.iter_mut().find(|m| m.node_id == n.node_id) {
                Some(m) => *m = n,
                None => all.push(n),
            }
        }
        all.sort_by(|a, b| a.node_id.cmp(&b.node_id));
        let payload = NodeInventoryUpdated {
            facility_id: facility_id.clone(),
            node_count: all.len() as u64,
            nodes: Some(
                all.iter()
                    .filter_map(|n| serde_json::to_value(n).ok())
                    .collect(),
            ),
        };
        inventory_events.push(
            recorder
                .build(
                    CampusKind::NodeInventoryUpdated.as_str(),
                    &payload,
                    None,
                    now,
                )
                .map_err(emit)?,
        );
        inventories.push((facility_id, all));
    }

    let encoded = started.elapsed().as_secs_f64();
    // The state first, then the events that announce it.
    for (facility_id, series, bytes) in &lines {
        store.append(facility_id, *series, bytes)?;
    }
    drop(lines);
    for (facility_id, all) in &inventories {
        store.write_nodes(facility_id, all)?;
    }
    let stored = started.elapsed().as_secs_f64();
    let (events, warning) = record_readings(recorder, &good, now)?;
    let done = started.elapsed().as_secs_f64();
    report.phase_seconds.insert("check", checked);
    report
        .phase_seconds
        .insert("encode_state", encoded - checked);
    report.phase_seconds.insert("write_state", stored - encoded);
    report.phase_seconds.insert("events", done - stored);
    report.events = events + inventory_events.len();
    report.warning = warning.or(recorder.record(&inventory_events).map_err(emit)?);
    Ok(report)
}

type StateLines<'a> = Vec<(&'a str, Series, Vec<u8>)>;

/// The JSON lines of readings, per facility and series.
fn encode_state(readings: &[Reading]) -> Result<StateLines<'_>, IngestError> {
    let mut lines: StateLines<'_> = Vec::new();
    for r in readings {
        let series = match r {
            Reading::Energy(_) => Series::Energy,
            Reading::Pue(_) => Series::Pue,
            _ => Series::Power,
        };
        let facility_id = r.facility_id();
        let i = match lines
            .iter()
            .position(|(f, s, _)| *f == facility_id && *s == series)
        {
            Some(i) => i,
            None => {
                lines.push((
                    facility_id,
                    series,
                    Vec::with_capacity(readings.len() * 256),
                ));
                lines.len() - 1
            }
        };
        let buf = &mut lines[i].2;
        let encoded = match r {
            Reading::Energy(w) => serde_json::to_writer(&mut *buf, w),
            Reading::Pue(s) => serde_json::to_writer(&mut *buf, s),
            Reading::Power(p) => serde_json::to_writer(&mut *buf, p),
            Reading::Node(n) => serde_json::to_writer(&mut *buf, n),
        };
        encoded.map_err(|e| IngestError::Invalid(format!("cannot encode a reading: {e}")))?;
        buf.push(b'\n');
    }
    Ok(lines)
}

/// Build and stamp one event per reading, a ledger batch at a time, on every core: each worker
/// builds a batch and appends it (one fsync), so building and writing overlap.
fn record_readings(
    recorder: &Recorder,
    readings: &[Reading],
    now: Timestamp,
) -> Result<(usize, Option<String>), IngestError> {
    let batches: Vec<&[Reading]> = readings.chunks(LEDGER_BATCH).collect();
    let workers = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .clamp(1, 4)
        .min(batches.len().max(1));
    let next = AtomicUsize::new(0);
    let work = || -> Result<(usize, Option<String>), IngestError> {
        let (mut count, mut warning) = (0, None);
        loop {
            let i = next.fetch_add(1, Ordering::Relaxed);
            let Some(batch) = batches.get(i) else {
                return Ok((count, warning));
            };
            let events = batch
                .iter()
                .map(|r| reading_event(recorder, r, now))
                .collect::<Result<Vec<_>, _>>()?;
            if let Some(w) = recorder.record(&events).map_err(IngestError::Emit)? {
                warning = Some(w);
            }
            count += events.len();
        }
    };
    let results: Vec<Result<(usize, Option<String>), IngestError>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..workers).map(|_| s.spawn(work)).collect();
        handles
            .into_iter()
            .map(|h| {
                h.join().unwrap_or_else(|_| {
                    Err(IngestError::Invalid("an event worker panicked".into()))
                })
            })
            .collect()
    });
    let (mut total, mut warning) = (0, None);
    for r in results {
        let (count, w) = r?;
        total += count;
        warning = warning.or(w);
    }
    Ok((total, warning))
}

/// The event announcing one stored reading. Its id is derived from the reading's identity
/// (facility, meter, time), so ingesting the same reading twice is the same event.
fn reading_event(
    recorder: &Recorder,
    r: &Reading,
    now: Timestamp,
) -> Result<lumenflow_contracts::event::KernelEventV2, IngestError> {
    let built = match r {
        Reading::Energy(w) => {
            // The shape of `FacilityEnergyRecorded` plus the meter reference, assembled
            // directly (this is the hot path of a meter file).
            let mut payload = Map::new();
            payload.insert("facility_id".into(), Value::from(w.facility_id.as_str()));
            payload.insert("valid_from".into(), time_value(w.valid_from));
            payload.insert("valid_to".into(), time_value(w.valid_to));
            payload.insert("quantity_joules".into(), js_number(w.quantity_joules));
            payload.insert("source".into(), Value::from(w.source.as_str()));
            let key = format!(
                "energy:{}:{}:{}:{}",
                w.facility_id,
                w.source,
                w.valid_from.unix_millis(),
                w.valid_to.unix_millis()
            );
            recorder.build_map(
                CampusKind::FacilityEnergyRecorded.as_str(),
                payload,
                Some(key),
                now,
            )
        }
        Reading::Pue(s) => {
            let key = format!("pue:{}:{}", s.facility_id, s.sampled_at.unix_millis());
            let payload = PueSampled {
                facility_id: s.facility_id.clone(),
                pue: s.pue,
                sampled_at: s.sampled_at,
            };
            recorder.build(CampusKind::PueSampled.as_str(), &payload, Some(key), now)
        }
        Reading::Power(p) => {
            let key = format!(
                "power:{}:{}:{}",
                p.facility_id,
                p.source,
                p.observed_at.unix_millis()
            );
            let payload = PowerSignalIngested {
                facility_id: p.facility_id.clone(),
                watts: p.watts,
                observed_at: p.observed_at,
                source: p.source.clone(),
            };
            recorder.build(
                CampusKind::PowerSignalIngested.as_str(),
                &payload,
                Some(key),
                now,
            )
        }
        Reading::Node(n) => {
            return Err(IngestError::Invalid(format!(
                "node `{}` is announced with its facility's inventory",
                n.node_id
            )))
        }
    };
    built.map_err(IngestError::Emit)
}

fn time_value(t: Timestamp) -> Value {
    let (b, n) = super::model::fast_time::format(t);
    Value::from(std::str::from_utf8(&b[..n]).unwrap_or_default())
}

/// A number as the contracts write it: an integer when it is one (at most 53 bits).
fn js_number(n: f64) -> Value {
    const MAX_SAFE: f64 = 9_007_199_254_740_991.0;
    if n.is_finite() && n.fract() == 0.0 && n.abs() <= MAX_SAFE {
        Value::from(n as i64)
    } else {
        Value::from(n)
    }
}

/// Duplicate and overlapping windows of one meter (facility + source), in the file and against
/// the stored windows. The later line is the bad one.
fn check_energy(
    store: &Store,
    rows: &[(usize, Reading)],
    touched: &[&str],
    errors: &mut Vec<RowError>,
    bad_lines: &mut HashSet<usize>,
) -> Result<(), IngestError> {
    let stored: Vec<(String, Vec<EnergyWindow>)> = touched
        .iter()
        .map(|f| store.energy(f).map(|w| (f.to_string(), w)))
        .collect::<Result<_, _>>()?;
    // Meter ids, then (meter, from, to, line) with line 0 for a stored window.
    let mut meters: HashMap<(&str, &str), u32> = HashMap::new();
    let mut windows: Vec<(u32, i64, i64, usize)> = Vec::new();
    for (line, r) in rows {
        if let Reading::Energy(w) = r {
            if bad_lines.contains(line) {
                continue;
            }
            let next = meters.len() as u32;
            let id = *meters
                .entry((w.facility_id.as_str(), w.source.as_str()))
                .or_insert(next);
            windows.push((
                id,
                w.valid_from.unix_millis(),
                w.valid_to.unix_millis(),
                *line,
            ));
        }
    }
    for (facility_id, stored) in &stored {
        for w in stored {
            if let Some(id) = meters.get(&(facility_id.as_str(), w.source.as_str())) {
                windows.push((*id, w.valid_from.unix_millis(), w.valid_to.unix_millis(), 0));
            }
        }
    }
    windows.sort_unstable();
    // Per meter: the window reaching furthest so far.
    let mut reach: Option<(u32, i64, i64, usize)> = None;
    for &(meter, from, to, line) in &windows {
        match reach {
            Some((m, rfrom, rto, rline)) if m == meter && from < rto => {
                let (bad, other) = if line == 0 || (rline != 0 && rline > line) {
                    (rline, line)
                } else {
                    (line, rline)
                };
                let what = if other == 0 {
                    "a stored window".to_string()
                } else {
                    format!("line {other}")
                };
                let message = if from == rfrom && to == rto {
                    format!("duplicate row: the same meter window as {what}")
                } else {
                    format!("overlapping window: this meter already has {what} covering part of it")
                };
                if bad_lines.insert(bad) {
                    errors.push(RowError::new(bad, Some("valid_from"), message));
                }
                if to > rto {
                    reach = Some((meter, from, to, line));
                }
            }
            _ => reach = Some((meter, from, to, line)),
        }
    }
    Ok(())
}

/// Duplicate PUE samples (facility + time) and power readings (facility + source + time), in
/// the file and against the stored ones.
fn check_points(
    store: &Store,
    rows: &[(usize, Reading)],
    touched: &[&str],
    errors: &mut Vec<RowError>,
    bad_lines: &mut HashSet<usize>,
) -> Result<(), IngestError> {
    let has_pue = rows.iter().any(|(_, r)| matches!(r, Reading::Pue(_)));
    let has_power = rows.iter().any(|(_, r)| matches!(r, Reading::Power(_)));
    let mut seen: HashMap<(u8, String, String, i64), usize> = HashMap::new();
    for f in touched {
        if has_pue {
            for s in store.pue(f)? {
                seen.insert(
                    (1, s.facility_id, String::new(), s.sampled_at.unix_millis()),
                    0,
                );
            }
        }
        if has_power {
            for p in store.power(f)? {
                seen.insert((2, p.facility_id, p.source, p.observed_at.unix_millis()), 0);
            }
        }
    }
    let mut nodes_seen: HashMap<(&str, &str), usize> = HashMap::new();
    for (line, r) in rows {
        if bad_lines.contains(line) {
            continue;
        }
        let (key, field) = match r {
            Reading::Pue(PueSample {
                facility_id,
                sampled_at,
                ..
            }) => (
                (
                    1,
                    facility_id.clone(),
                    String::new(),
                    sampled_at.unix_millis(),
                ),
                "sampled_at",
            ),
            Reading::Power(PowerSignal {
                facility_id,
                source,
                observed_at,
                ..
            }) => (
                (
                    2,
                    facility_id.clone(),
                    source.clone(),
                    observed_at.unix_millis(),
                ),
                "observed_at",
            ),
            Reading::Node(n) => {
                if let Some(first) = nodes_seen.insert((&n.facility_id, &n.node_id), *line) {
                    bad_lines.insert(*line);
                    errors.push(RowError::new(
                        *line,
                        Some("node_id"),
                        format!(
                            "duplicate row: node `{}` is already given on line {first}",
                            n.node_id
                        ),
                    ));
                }
                continue;
            }
            Reading::Energy(_) => continue,
        };
        if let Some(first) = seen.get(&key) {
            let what = if *first == 0 {
                "a stored reading".to_string()
            } else {
                format!("line {first}")
            };
            bad_lines.insert(*line);
            errors.push(RowError::new(
                *line,
                Some(field),
                format!("duplicate row: the same reading as {what}"),
            ));
        } else {
            seen.insert(key, *line);
        }
    }
    Ok(())
}
