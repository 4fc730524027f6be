//! The records the campus pack keeps, and how one input row becomes one of them.
//!
//! An operator's file (JSON Lines or CSV) holds rows of four types: `energy` (a meter window),
//! `pue` (a PUE sample), `power` (a power reading) and `node` (one node of a facility's
//! inventory). A row names its type in a `type` field, or the type is inferred from the fields it
//! has (`quantity_joules` → energy, `watts` → power, `pue` with `sampled_at` → pue, `node_id` →
//! node). Every value rule the EMIT contract states (Q28) is checked here, per row; rules across
//! rows (duplicates, overlapping windows, unknown facilities) are checked by
//! [`super::ingest`]. Every label is opaque (GOV-02): nothing here knows a vendor.

use std::borrow::Cow;
use std::fmt;

use lumenflow_contracts::payloads::{EnergyProvenance, EnergySource};
use lumenflow_contracts::time::Timestamp;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// A registered facility (`facilities.json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Facility {
    /// Opaque facility identifier, e.g. `campus-fac-001`.
    pub facility_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Region label, e.g. `eu-west-1`; the default region of the facility's energy windows.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    #[serde(serialize_with = "fast_time::serialize")]
    pub registered_at: Timestamp,
}

/// One node of a facility's inventory, with opaque labels only.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Node {
    pub node_id: String,
    pub facility_id: String,
    /// Opaque capability label, e.g. `tier-a`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub capability_tier: Option<String>,
    /// Number of accelerators in the node.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub accelerator_count: Option<u64>,
    /// Opaque accelerator class label, e.g. `class-1`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub accelerator_class: Option<String>,
}

/// A PUE sample.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PueSample {
    pub facility_id: String,
    pub pue: f64,
    #[serde(serialize_with = "fast_time::serialize")]
    pub sampled_at: Timestamp,
}

/// A power reading: an observation, never a command (CTL-04).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PowerSignal {
    pub facility_id: String,
    pub watts: f64,
    #[serde(serialize_with = "fast_time::serialize")]
    pub observed_at: Timestamp,
    /// The meter reference, e.g. `redfish:chassis-1`.
    pub source: String,
}

/// A curtailment period overlapping an energy window.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Curtailment {
    #[serde(serialize_with = "fast_time::serialize")]
    pub start: Timestamp,
    #[serde(serialize_with = "fast_time::serialize")]
    pub end: Timestamp,
}

/// A facility meter window: what `campus:facility_energy` maps to EMIT.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EnergyWindow {
    pub facility_id: String,
    /// The meter reference, e.g. `facility_meter:utility-smart-meter-a`. One meter's windows
    /// never overlap.
    pub source: String,
    #[serde(serialize_with = "fast_time::serialize")]
    pub valid_from: Timestamp,
    #[serde(serialize_with = "fast_time::serialize")]
    pub valid_to: Timestamp,
    pub quantity_joules: f64,
    pub energy_source: EnergySource,
    pub energy_provenance: EnergyProvenance,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pue: Option<f64>,
    /// True when the joules already include facility overhead (never multiply by PUE again).
    #[serde(default)]
    pub pue_applied: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grid_carbon_intensity_gco2e_per_kwh: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub price_per_kwh: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub currency: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub curtailment_window: Option<Curtailment>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sensor_ref: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub coefficient_ref: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compute_assignment_run_id: Option<String>,
}

/// `YYYY-MM-DDTHH:MM:SS.mmmZ` without `format!` (the state files hold millions of these; the
/// text is the same as `Timestamp::to_rfc3339`).
pub mod fast_time {
    use lumenflow_contracts::time::Timestamp;
    use serde::Serializer;

    /// The RFC 3339 text of `t`, in a stack buffer.
    pub fn format(t: Timestamp) -> ([u8; 24], usize) {
        let ms = t.unix_millis();
        let millis = ms.rem_euclid(1000);
        let secs = ms.div_euclid(1000);
        let days = secs.div_euclid(86_400);
        let rem = secs.rem_euclid(86_400);
        // Howard Hinnant's civil_from_days.
        let z = days + 719_468;
        let era = z.div_euclid(146_097);
        let doe = z - era * 146_097;
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let d = doy - (153 * mp + 2) / 5 + 1;
        let m = if mp < 10 { mp + 3 } else { mp - 9 };
        let y = yoe + era * 400 + i64::from(m <= 2);
        let mut b = [0u8; 24];
        if !(0..=9999).contains(&y) {
            // Outside four-digit years: the slow path's text.
            let text = t.to_rfc3339();
            let n = text.len().min(24);
            b[..n].copy_from_slice(&text.as_bytes()[..n]);
            return (b, n);
        }
        let digits = |b: &mut [u8], at: usize, v: i64, n: usize| {
            let mut v = v;
            for i in (0..n).rev() {
                b[at + i] = b'0' + (v % 10) as u8;
                v /= 10;
            }
        };
        digits(&mut b, 0, y, 4);
        b[4] = b'-';
        digits(&mut b, 5, m, 2);
        b[7] = b'-';
        digits(&mut b, 8, d, 2);
        b[10] = b'T';
        digits(&mut b, 11, rem / 3600, 2);
        b[13] = b':';
        digits(&mut b, 14, (rem % 3600) / 60, 2);
        b[16] = b':';
        digits(&mut b, 17, rem % 60, 2);
        b[19] = b'.';
        digits(&mut b, 20, millis, 3);
        b[23] = b'Z';
        (b, 24)
    }

    pub fn serialize<S: Serializer>(t: &Timestamp, s: S) -> Result<S::Ok, S::Error> {
        let (b, n) = format(*t);
        s.serialize_str(std::str::from_utf8(&b[..n]).unwrap_or_default())
    }
}

/// One validated input row.
#[derive(Debug, Clone, PartialEq)]
pub enum Reading {
    Energy(EnergyWindow),
    Pue(PueSample),
    Power(PowerSignal),
    Node(Node),
}

impl Reading {
    pub fn facility_id(&self) -> &str {
        match self {
            Reading::Energy(r) => &r.facility_id,
            Reading::Pue(r) => &r.facility_id,
            Reading::Power(r) => &r.facility_id,
            Reading::Node(r) => &r.facility_id,
        }
    }
}

/// Why one row was refused: the line, the field when there is one, and what was wrong.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RowError {
    pub line: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    pub message: String,
}

impl RowError {
    pub fn new(line: usize, field: Option<&str>, message: impl Into<String>) -> Self {
        RowError {
            line,
            field: field.map(str::to_string),
            message: message.into(),
        }
    }
}

impl RowError {
    /// `file:line: `field`: message`, the form editors and terminals jump to.
    pub fn located(&self, file: &str) -> String {
        match &self.field {
            Some(field) => format!("{file}:{}: `{field}`: {}", self.line, self.message),
            None => format!("{file}:{}: {}", self.line, self.message),
        }
    }
}

impl fmt::Display for RowError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.field {
            Some(field) => write!(f, "line {}: `{field}`: {}", self.line, self.message),
            None => write!(f, "line {}: {}", self.line, self.message),
        }
    }
}

/// Is `id` usable as a facility or node id (it names files): a letter or digit, then up to 127
/// letters, digits, `.`, `_` or `-`.
pub fn valid_id(id: &str) -> bool {
    let b = id.as_bytes();
    !b.is_empty()
        && b.len() <= 128
        && b[0].is_ascii_alphanumeric()
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'_' | b'-'))
}

/// The fields of one row, whatever the file format.
pub trait RowFields {
    /// The raw value of `name`; `None` when absent, null or (CSV) empty.
    fn text(&self, name: &str) -> Result<Option<Cow<'_, str>>, String>;
    fn number(&self, name: &str) -> Result<Option<f64>, String>;
    fn boolean(&self, name: &str) -> Result<Option<bool>, String>;
    fn has(&self, name: &str) -> bool;
}

/// A JSON Lines row.
pub struct JsonRow<'a>(pub &'a Map<String, Value>);

impl RowFields for JsonRow<'_> {
    fn text(&self, name: &str) -> Result<Option<Cow<'_, str>>, String> {
        match self.0.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(Cow::Borrowed(s.as_str()))),
            Some(other) => Err(format!("expected a string, found `{other}`")),
        }
    }
    fn number(&self, name: &str) -> Result<Option<f64>, String> {
        match self.0.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Number(n)) => n
                .as_f64()
                .map(Some)
                .ok_or_else(|| format!("`{n}` is not a finite number")),
            Some(other) => Err(format!("expected a number, found `{other}`")),
        }
    }
    fn boolean(&self, name: &str) -> Result<Option<bool>, String> {
        match self.0.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(other) => Err(format!("expected true or false, found `{other}`")),
        }
    }
    fn has(&self, name: &str) -> bool {
        !matches!(self.0.get(name), None | Some(Value::Null))
    }
}

/// A CSV row: the header's column names and this row's cells.
pub struct CsvRow<'a> {
    pub header: &'a [String],
    pub cells: &'a [Cow<'a, str>],
}

impl CsvRow<'_> {
    fn cell(&self, name: &str) -> Option<&str> {
        let i = self.header.iter().position(|h| h == name)?;
        let cell = self.cells.get(i)?.trim();
        (!cell.is_empty()).then_some(cell)
    }
}

impl RowFields for CsvRow<'_> {
    fn text(&self, name: &str) -> Result<Option<Cow<'_, str>>, String> {
        Ok(self.cell(name).map(Cow::Borrowed))
    }
    fn number(&self, name: &str) -> Result<Option<f64>, String> {
        match self.cell(name) {
            None => Ok(None),
            Some(s) => s
                .parse::<f64>()
                .map(Some)
                .map_err(|_| format!("`{s}` is not a number")),
        }
    }
    fn boolean(&self, name: &str) -> Result<Option<bool>, String> {
        match self.cell(name) {
            None => Ok(None),
            Some(s) if s.eq_ignore_ascii_case("true") => Ok(Some(true)),
            Some(s) if s.eq_ignore_ascii_case("false") => Ok(Some(false)),
            Some(s) => Err(format!("expected true or false, found `{s}`")),
        }
    }
    fn has(&self, name: &str) -> bool {
        self.cell(name).is_some()
    }
}

/// Split one CSV line into cells (RFC 4180 quoting; a field may not span lines).
pub fn split_csv_line(line: &str) -> Result<Vec<Cow<'_, str>>, String> {
    let mut cells = Vec::with_capacity(16);
    if !line.contains('"') {
        cells.extend(line.split(',').map(Cow::Borrowed));
        return Ok(cells);
    }
    let bytes = line.as_bytes();
    let mut i = 0;
    loop {
        if bytes.get(i) == Some(&b'"') {
            let mut value = String::new();
            i += 1;
            loop {
                match bytes.get(i) {
                    None => return Err("a quoted cell is not closed on this line".into()),
                    Some(b'"') if bytes.get(i + 1) == Some(&b'"') => {
                        value.push('"');
                        i += 2;
                    }
                    Some(b'"') => {
                        i += 1;
                        break;
                    }
                    Some(_) => {
                        let start = i;
                        while i < bytes.len() && bytes[i] != b'"' {
                            i += 1;
                        }
                        value.push_str(&line[start..i]);
                    }
                }
            }
            cells.push(Cow::Owned(value));
            match bytes.get(i) {
                None => return Ok(cells),
                Some(b',') => i += 1,
                Some(_) => return Err("unexpected text after a closing quote".into()),
            }
        } else {
            let start = i;
            while i < bytes.len() && bytes[i] != b',' {
                i += 1;
            }
            cells.push(Cow::Borrowed(&line[start..i]));
            if i >= bytes.len() {
                return Ok(cells);
            }
            i += 1;
        }
    }
}

/// Every field a row may have, as CSV columns and JSON keys (JSON also takes
/// `curtailment_window: {start, end}` for the two `curtailment_*` fields). Anything else is
/// refused: a misspelt `pue_aplied` silently read as absent would defeat the double-counting
/// guard, and a misspelt `regoin` would lose the region.
pub const ROW_FIELDS: [&str; 26] = [
    "type",
    "facility_id",
    "source",
    "valid_from",
    "valid_to",
    "quantity_joules",
    "energy_source",
    "energy_provenance",
    "region",
    "pue",
    "pue_applied",
    "grid_carbon_intensity_gco2e_per_kwh",
    "price_per_kwh",
    "currency",
    "curtailment_start",
    "curtailment_end",
    "sensor_ref",
    "coefficient_ref",
    "compute_assignment_run_id",
    "sampled_at",
    "watts",
    "observed_at",
    "node_id",
    "capability_tier",
    "accelerator_count",
    "accelerator_class",
];

/// `Err` naming `name` (a JSON key or CSV column, `noun`) when it is not a row field.
pub fn check_field_name(name: &str, line: usize, noun: &str) -> Result<(), RowError> {
    if ROW_FIELDS.contains(&name) {
        return Ok(());
    }
    Err(RowError::new(
        line,
        Some(name),
        format!(
            "unknown {noun}; {}",
            lumenflow_kernel::yaml::de::suggest(name, &ROW_FIELDS, "fields")
        ),
    ))
}

struct Reader<'r, F: RowFields> {
    row: &'r F,
    line: usize,
}

impl<F: RowFields> Reader<'_, F> {
    fn err(&self, field: &str, message: impl Into<String>) -> RowError {
        RowError::new(self.line, Some(field), message)
    }
    fn opt_str(&self, field: &str) -> Result<Option<String>, RowError> {
        match self.row.text(field).map_err(|m| self.err(field, m))? {
            None => Ok(None),
            Some(s) if s.trim().is_empty() => Ok(None),
            Some(s) => Ok(Some(s.into_owned())),
        }
    }
    fn req_str(&self, field: &str) -> Result<String, RowError> {
        self.opt_str(field)?
            .ok_or_else(|| self.err(field, "required field is missing"))
    }
    fn id(&self, field: &str) -> Result<String, RowError> {
        let id = self.req_str(field)?;
        if valid_id(&id) {
            Ok(id)
        } else {
            Err(self.err(
                field,
                format!("`{id}` is not a valid id (a letter or digit, then up to 127 letters, digits, `.`, `_` or `-`)"),
            ))
        }
    }
    fn opt_f64(&self, field: &str, min: Option<f64>) -> Result<Option<f64>, RowError> {
        let Some(v) = self.row.number(field).map_err(|m| self.err(field, m))? else {
            return Ok(None);
        };
        if !v.is_finite() {
            return Err(self.err(field, format!("must be a finite number, found `{v}`")));
        }
        if let Some(min) = min {
            if v < min {
                return Err(self.err(field, format!("must be at least {min}, found {v}")));
            }
        }
        Ok(Some(v))
    }
    fn req_f64(&self, field: &str, min: Option<f64>) -> Result<f64, RowError> {
        self.opt_f64(field, min)?
            .ok_or_else(|| self.err(field, "required field is missing"))
    }
    fn opt_time(&self, field: &str) -> Result<Option<Timestamp>, RowError> {
        match self.row.text(field).map_err(|m| self.err(field, m))? {
            None => Ok(None),
            Some(s) => Timestamp::parse(&s)
                .map(Some)
                .map_err(|e| self.err(field, e.to_string())),
        }
    }
    fn req_time(&self, field: &str) -> Result<Timestamp, RowError> {
        self.opt_time(field)?
            .ok_or_else(|| self.err(field, "required field is missing"))
    }
}

/// The lowest PUE there is: total facility power cannot be below IT power.
pub const MIN_PUE: f64 = 1.0;

/// Read and check one row (line numbers count from 1).
pub fn parse_row<F: RowFields>(row: &F, line: usize) -> Result<Reading, RowError> {
    let r = Reader { row, line };
    let kind = match r.opt_str("type")? {
        Some(t) => t,
        None if row.has("quantity_joules") => "energy".into(),
        None if row.has("watts") => "power".into(),
        None if row.has("pue") && row.has("sampled_at") => "pue".into(),
        None if row.has("node_id") => "node".into(),
        None => {
            return Err(RowError::new(
                line,
                Some("type"),
                "cannot tell the row's type: give `type` (`energy`, `pue`, `power` or `node`)",
            ))
        }
    };
    match kind.as_str() {
        "energy" => energy_row(&r).map(Reading::Energy),
        "pue" => Ok(Reading::Pue(PueSample {
            facility_id: r.id("facility_id")?,
            pue: r.req_f64("pue", Some(MIN_PUE))?,
            sampled_at: r.req_time("sampled_at")?,
        })),
        "power" => Ok(Reading::Power(PowerSignal {
            facility_id: r.id("facility_id")?,
            watts: r.req_f64("watts", Some(0.0))?,
            observed_at: r.req_time("observed_at")?,
            source: r.req_str("source")?,
        })),
        "node" => {
            let count = r.opt_f64("accelerator_count", Some(0.0))?;
            let accelerator_count = match count {
                Some(c) if c.fract() != 0.0 || c > u32::MAX as f64 => {
                    return Err(r.err("accelerator_count", "must be a whole number"))
                }
                Some(c) => Some(c as u64),
                None => None,
            };
            Ok(Reading::Node(Node {
                node_id: r.id("node_id")?,
                facility_id: r.id("facility_id")?,
                capability_tier: r.opt_str("capability_tier")?,
                accelerator_count,
                accelerator_class: r.opt_str("accelerator_class")?,
            }))
        }
        other => Err(RowError::new(
            line,
            Some("type"),
            format!("unknown row type `{other}` (expected `energy`, `pue`, `power` or `node`)"),
        )),
    }
}

fn energy_row<F: RowFields>(r: &Reader<'_, F>) -> Result<EnergyWindow, RowError> {
    let facility_id = r.id("facility_id")?;
    let source = r.req_str("source")?;
    let valid_from = r.req_time("valid_from")?;
    let valid_to = r.req_time("valid_to")?;
    if valid_from >= valid_to {
        return Err(r.err(
            "valid_from",
            format!(
                "must be before `valid_to` ({valid_to}), found {valid_from}",
                valid_from = valid_from.to_rfc3339(),
                valid_to = valid_to.to_rfc3339()
            ),
        ));
    }
    let quantity_joules = r.req_f64("quantity_joules", Some(0.0))?;
    let label = r.req_str("energy_source")?;
    let energy_source = EnergySource::from_wire(&label).ok_or_else(|| {
        r.err(
            "energy_source",
            format!("unknown source label `{label}` (expected `pdu`, `ipmi`, `redfish` or `smart_meter`, any letter case)"),
        )
    })?;
    let provenance = r.req_str("energy_provenance")?;
    let energy_provenance = EnergyProvenance::from_wire(&provenance).ok_or_else(|| {
        r.err(
            "energy_provenance",
            format!("unknown provenance `{provenance}` (expected `measured` or `modelled`)"),
        )
    })?;
    let curtailment_window = curtailment(r)?;
    let price_per_kwh = r.opt_f64("price_per_kwh", None)?;
    let currency = r.opt_str("currency")?;
    if price_per_kwh.is_some() && currency.is_none() {
        return Err(r.err("currency", "required when `price_per_kwh` is given"));
    }
    Ok(EnergyWindow {
        facility_id,
        source,
        valid_from,
        valid_to,
        quantity_joules,
        energy_source,
        energy_provenance,
        region: r.opt_str("region")?,
        pue: r.opt_f64("pue", Some(MIN_PUE))?,
        pue_applied: r
            .row
            .boolean("pue_applied")
            .map_err(|m| r.err("pue_applied", m))?
            .unwrap_or(false),
        grid_carbon_intensity_gco2e_per_kwh: r
            .opt_f64("grid_carbon_intensity_gco2e_per_kwh", Some(0.0))?,
        price_per_kwh,
        currency,
        curtailment_window,
        sensor_ref: r.opt_str("sensor_ref")?,
        coefficient_ref: r.opt_str("coefficient_ref")?,
        compute_assignment_run_id: r.opt_str("compute_assignment_run_id")?,
    })
}

/// `curtailment_window: {start, end}` (JSON) or `curtailment_start` / `curtailment_end`
/// columns (CSV).
fn curtailment<F: RowFields>(r: &Reader<'_, F>) -> Result<Option<Curtailment>, RowError> {
    let (start, end) = (
        r.opt_time("curtailment_start")?,
        r.opt_time("curtailment_end")?,
    );
    let window = match (start, end) {
        (None, None) => None,
        (Some(start), Some(end)) => Some(Curtailment { start, end }),
        (Some(_), None) => {
            return Err(r.err("curtailment_end", "required with `curtailment_start`"))
        }
        (None, Some(_)) => {
            return Err(r.err("curtailment_start", "required with `curtailment_end`"))
        }
    };
    match window {
        Some(w) if w.start >= w.end => Err(r.err(
            "curtailment_start",
            "the curtailment window must start before it ends",
        )),
        w => Ok(w),
    }
}

/// The fields a JSON Lines row may have, read without building a JSON tree (the fast path of
/// [`parse_json_line`]; any row it cannot read, such as a field of the wrong type, goes through
/// the general reader, which names the field).
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct FastRow<'a> {
    #[serde(borrow, rename = "type")]
    kind: Option<Cow<'a, str>>,
    #[serde(borrow)]
    facility_id: Option<Cow<'a, str>>,
    #[serde(borrow)]
    source: Option<Cow<'a, str>>,
    #[serde(borrow)]
    valid_from: Option<Cow<'a, str>>,
    #[serde(borrow)]
    valid_to: Option<Cow<'a, str>>,
    quantity_joules: Option<f64>,
    #[serde(borrow)]
    energy_source: Option<Cow<'a, str>>,
    #[serde(borrow)]
    energy_provenance: Option<Cow<'a, str>>,
    #[serde(borrow)]
    region: Option<Cow<'a, str>>,
    pue: Option<f64>,
    pue_applied: Option<bool>,
    grid_carbon_intensity_gco2e_per_kwh: Option<f64>,
    price_per_kwh: Option<f64>,
    #[serde(borrow)]
    currency: Option<Cow<'a, str>>,
    #[serde(borrow)]
    curtailment_window: Option<FastWindow<'a>>,
    #[serde(borrow)]
    sensor_ref: Option<Cow<'a, str>>,
    #[serde(borrow)]
    coefficient_ref: Option<Cow<'a, str>>,
    #[serde(borrow)]
    compute_assignment_run_id: Option<Cow<'a, str>>,
    #[serde(borrow)]
    sampled_at: Option<Cow<'a, str>>,
    watts: Option<f64>,
    #[serde(borrow)]
    observed_at: Option<Cow<'a, str>>,
    #[serde(borrow)]
    node_id: Option<Cow<'a, str>>,
    #[serde(borrow)]
    capability_tier: Option<Cow<'a, str>>,
    accelerator_count: Option<f64>,
    #[serde(borrow)]
    accelerator_class: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FastWindow<'a> {
    #[serde(borrow)]
    start: Option<Cow<'a, str>>,
    #[serde(borrow)]
    end: Option<Cow<'a, str>>,
}

impl RowFields for FastRow<'_> {
    fn text(&self, name: &str) -> Result<Option<Cow<'_, str>>, String> {
        let window = self.curtailment_window.as_ref();
        let v: Option<&str> = match name {
            "type" => self.kind.as_deref(),
            "facility_id" => self.facility_id.as_deref(),
            "source" => self.source.as_deref(),
            "valid_from" => self.valid_from.as_deref(),
            "valid_to" => self.valid_to.as_deref(),
            "energy_source" => self.energy_source.as_deref(),
            "energy_provenance" => self.energy_provenance.as_deref(),
            "region" => self.region.as_deref(),
            "currency" => self.currency.as_deref(),
            "curtailment_start" => window.and_then(|w| w.start.as_deref()),
            "curtailment_end" => window.and_then(|w| w.end.as_deref()),
            "sensor_ref" => self.sensor_ref.as_deref(),
            "coefficient_ref" => self.coefficient_ref.as_deref(),
            "compute_assignment_run_id" => self.compute_assignment_run_id.as_deref(),
            "sampled_at" => self.sampled_at.as_deref(),
            "observed_at" => self.observed_at.as_deref(),
            "node_id" => self.node_id.as_deref(),
            "capability_tier" => self.capability_tier.as_deref(),
            "accelerator_class" => self.accelerator_class.as_deref(),
            _ => None,
        };
        Ok(v.map(Cow::Borrowed))
    }
    fn number(&self, name: &str) -> Result<Option<f64>, String> {
        Ok(match name {
            "quantity_joules" => self.quantity_joules,
            "pue" => self.pue,
            "grid_carbon_intensity_gco2e_per_kwh" => self.grid_carbon_intensity_gco2e_per_kwh,
            "price_per_kwh" => self.price_per_kwh,
            "watts" => self.watts,
            "accelerator_count" => self.accelerator_count,
            _ => None,
        })
    }
    fn boolean(&self, name: &str) -> Result<Option<bool>, String> {
        Ok(match name {
            "pue_applied" => self.pue_applied,
            _ => None,
        })
    }
    fn has(&self, name: &str) -> bool {
        self.number(name).ok().flatten().is_some()
            || self.text(name).ok().flatten().is_some()
            || self.boolean(name).ok().flatten().is_some()
    }
}

/// Parse one JSON Lines row, including a nested `curtailment_window` object.
pub fn parse_json_line(text: &str, line: usize) -> Result<Reading, RowError> {
    if let Ok(row) = serde_json::from_str::<FastRow<'_>>(text) {
        let nested = row.curtailment_window.is_some();
        return parse_row(&row, line).map_err(|e| json_names(e, nested));
    }
    let value: Value = serde_json::from_str(text)
        .map_err(|e| RowError::new(line, None, format!("not valid JSON: {e}")))?;
    let Value::Object(mut map) = value else {
        return Err(RowError::new(line, None, "a row must be a JSON object"));
    };
    let window = map.remove("curtailment_window");
    for key in map.keys() {
        check_field_name(key, line, "field")?;
    }
    let nested = matches!(window, Some(Value::Object(_)));
    if let Some(window) = window {
        match window {
            Value::Null => {}
            Value::Object(w) => {
                if let Some(key) = w.keys().find(|k| !["start", "end"].contains(&k.as_str())) {
                    return Err(RowError::new(
                        line,
                        Some(&format!("curtailment_window.{key}")),
                        "unknown field; a curtailment window has `start` and `end`",
                    ));
                }
                for (from, to) in [("start", "curtailment_start"), ("end", "curtailment_end")] {
                    if let Some(v) = w.get(from) {
                        map.insert(to.into(), v.clone());
                    }
                }
            }
            _ => {
                return Err(RowError::new(
                    line,
                    Some("curtailment_window"),
                    "expected an object `{start, end}`",
                ))
            }
        }
    }
    parse_row(&JsonRow(&map), line).map_err(|e| json_names(e, nested))
}

/// `e` naming the JSON fields a row with a `curtailment_window` object has, not the CSV
/// columns they stand for.
fn json_names(mut e: RowError, nested: bool) -> RowError {
    if nested {
        e.field = match e.field.as_deref() {
            Some("curtailment_start") => Some("curtailment_window.start".into()),
            Some("curtailment_end") => Some("curtailment_window.end".into()),
            _ => e.field,
        };
        e.message = e
            .message
            .replace("`curtailment_start`", "`curtailment_window.start`")
            .replace("`curtailment_end`", "`curtailment_window.end`");
    }
    e
}
