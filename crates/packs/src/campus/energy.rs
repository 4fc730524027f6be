//! `campus:facility_energy`: facility meter windows in the shared EMIT joules meter contract
//! (EMI-01 to EMI-08, Q28).
//!
//! An EMIT event in its flat wire form is the envelope fields Q28 lists (`kind`,
//! `schema_version`, `event_id`, `seq`, `timestamp`) beside the payload of
//! [`EnergyMeterRecorded`], whose rules (finite non-negative joules, `valid_from < valid_to`,
//! PUE at least 1, the four source labels, measured or modelled) are the contract's own.
//!
//! The double-counting guard: `pue_applied` says the joules already include facility overhead.
//! [`apply_pue`] multiplies an IT-load window by its PUE once and marks it; a window already
//! marked is returned unchanged, however often it is asked.

use lumenflow_contracts::event::{compute_event_id, SCHEMA_VERSION};
use lumenflow_contracts::kinds::EmitKind;
use lumenflow_contracts::payloads::{
    parse_payload, CurtailmentWindow, EnergyMeterRecorded, EnergyUnit, Payload,
};
use lumenflow_contracts::time::Timestamp;
use serde_json::{Map, Value};

use super::model::EnergyWindow;

/// The EMIT kind this tool maps to.
pub const EMIT_KIND: &str = EmitKind::EnergyMeterRecorded.as_str();

/// Input fields that belong to the envelope, not the payload.
const ENVELOPE: [&str; 3] = ["event_id", "seq", "timestamp"];

/// Fields of the tool's input that are options of the tool, not of the window.
const TOOL_OPTIONS: [&str; 1] = ["apply_pue"];

/// A window in EMIT form: the typed payload and its envelope fields.
#[derive(Debug, Clone, PartialEq)]
pub struct EmitWindow {
    pub payload: EnergyMeterRecorded,
    pub event_id: String,
    pub seq: Option<u64>,
    pub timestamp: Timestamp,
}

impl EmitWindow {
    /// The flat wire form (`data.energy_meter_event`).
    pub fn to_json(&self) -> Value {
        let mut map = Map::new();
        map.insert("kind".into(), Value::from(EMIT_KIND));
        map.insert("schema_version".into(), Value::from(SCHEMA_VERSION));
        map.insert("event_id".into(), Value::from(self.event_id.clone()));
        if let Some(seq) = self.seq {
            map.insert("seq".into(), Value::from(seq));
        }
        map.insert("timestamp".into(), Value::from(self.timestamp.to_rfc3339()));
        if let Ok(Value::Object(payload)) = serde_json::to_value(&self.payload) {
            map.extend(payload);
        }
        Value::Object(map)
    }

    /// The payload as the event builder takes it.
    pub fn payload_map(&self) -> Map<String, Value> {
        match serde_json::to_value(&self.payload) {
            Ok(Value::Object(m)) => m,
            _ => Map::new(),
        }
    }
}

/// Why an operator-provided window does not fit the contract: the field and the reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EmitInputError {
    pub field: Option<String>,
    pub message: String,
}

impl std::fmt::Display for EmitInputError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.field {
            Some(field) => write!(f, "`{field}`: {}", self.message),
            None => write!(f, "{}", self.message),
        }
    }
}

/// Normalize one operator-provided window (the seed's input shape) into EMIT: source labels
/// in any letter case become lower case, `unit` is `joules`, `pue_applied` defaults to false.
pub fn normalize(input: &Map<String, Value>) -> Result<EmitWindow, EmitInputError> {
    let mut payload = Map::new();
    for (k, v) in input {
        if !ENVELOPE.contains(&k.as_str()) && !TOOL_OPTIONS.contains(&k.as_str()) {
            payload.insert(k.clone(), v.clone());
        }
    }
    match payload.get("unit") {
        None | Some(Value::Null) => {
            payload.insert("unit".into(), Value::from(EnergyUnit::Joules.as_str()));
        }
        Some(_) => {}
    }
    let parsed = parse_payload(EMIT_KIND, &payload).map_err(|e| EmitInputError {
        field: e.field.clone(),
        message: e.message.clone(),
    })?;
    let Some(Payload::EnergyMeterRecorded(payload)) = parsed else {
        return Err(EmitInputError {
            field: None,
            message: "not an energy meter payload".into(),
        });
    };
    let timestamp = match input.get("timestamp") {
        None | Some(Value::Null) => Timestamp::now(),
        Some(Value::String(s)) => Timestamp::parse(s).map_err(|e| EmitInputError {
            field: Some("timestamp".into()),
            message: e.to_string(),
        })?,
        Some(_) => {
            return Err(EmitInputError {
                field: Some("timestamp".into()),
                message: "expected an RFC 3339 string".into(),
            })
        }
    };
    let seq = match input.get("seq") {
        None | Some(Value::Null) => None,
        Some(v) => Some(v.as_u64().ok_or_else(|| EmitInputError {
            field: Some("seq".into()),
            message: "expected a non-negative integer".into(),
        })?),
    };
    let event_id = match input.get("event_id") {
        Some(Value::String(s)) if !s.trim().is_empty() => s.clone(),
        None | Some(Value::Null) => window_event_id(&payload),
        Some(_) => {
            return Err(EmitInputError {
                field: Some("event_id".into()),
                message: "expected a non-empty string".into(),
            })
        }
    };
    let mut window = EmitWindow {
        payload,
        event_id,
        seq,
        timestamp,
    };
    if input.get("apply_pue").and_then(Value::as_bool) == Some(true) {
        apply_pue(&mut window.payload).map_err(|m| EmitInputError {
            field: Some("pue".into()),
            message: m,
        })?;
    }
    Ok(window)
}

/// The double-counting guard: scale IT-load joules by the PUE once. A window whose joules
/// already include facility overhead (`pue_applied`) is left alone.
pub fn apply_pue(payload: &mut EnergyMeterRecorded) -> Result<(), String> {
    if payload.pue_applied {
        return Ok(());
    }
    let pue = payload.pue.ok_or("`apply_pue` needs the window's `pue`")?;
    payload.quantity_joules *= pue;
    payload.pue_applied = true;
    Ok(())
}

/// A deterministic event id for a window: the same meter window gets the same id.
fn window_event_id(p: &EnergyMeterRecorded) -> String {
    let key = format!(
        "{}:{}:{}:{}",
        p.facility_id.as_deref().unwrap_or(""),
        p.source,
        p.valid_from.unix_millis(),
        p.valid_to.unix_millis()
    );
    compute_event_id(EMIT_KIND, &p.workspace_id, "", &Map::new(), Some(&key))
}

/// A stored window in EMIT form, attributed to `workspace_id`.
pub fn from_stored(w: &EnergyWindow, workspace_id: &str, region: &str) -> EmitWindow {
    let payload = EnergyMeterRecorded {
        workspace_id: workspace_id.to_string(),
        facility_id: Some(w.facility_id.clone()),
        compute_assignment_run_id: w.compute_assignment_run_id.clone(),
        region: w.region.clone().unwrap_or_else(|| region.to_string()),
        valid_from: w.valid_from,
        valid_to: w.valid_to,
        quantity_joules: w.quantity_joules,
        unit: EnergyUnit::Joules,
        source: w.source.clone(),
        energy_source: w.energy_source,
        energy_provenance: w.energy_provenance,
        pue: w.pue,
        pue_applied: w.pue_applied,
        grid_carbon_intensity_gco2e_per_kwh: w.grid_carbon_intensity_gco2e_per_kwh,
        price_per_kwh: w.price_per_kwh,
        currency: w.currency.clone(),
        curtailment_window: w.curtailment_window.map(|c| CurtailmentWindow {
            start: c.start,
            end: c.end,
        }),
        sensor_ref: w.sensor_ref.clone(),
        coefficient_ref: w.coefficient_ref.clone(),
    };
    EmitWindow {
        event_id: window_event_id(&payload),
        seq: None,
        timestamp: w.valid_to,
        payload,
    }
}
