//! The five read tools (CTL-02, CTL-03). Each reads only `.lumenflow/state/campus/**` (checked
//! against the call's effective scopes) and returns typed data; none writes a file or a device
//! (CTL-04). `campus:facility_energy` also proposes its EMIT events on the event bus.

use lumenflow_contracts::event::BuildOptions;
use lumenflow_contracts::scope::PathAccess;
use lumenflow_contracts::time::Timestamp;
use lumenflow_contracts::tool_output::{codes, ToolOutput};
use lumenflow_kernel::dispatch::BuiltinCall;
use serde_json::{json, Map, Value};

use super::energy::{self, EMIT_KIND};
use super::model::valid_id;
use super::store::{Store, StoreError, STATE_REL};

/// Stable error codes of this pack's tools (besides the kernel's).
pub mod errors {
    pub const FACILITY_NOT_FOUND: &str = "FACILITY_NOT_FOUND";
    pub const STATE_IO: &str = "STATE_IO_FAILED";
    pub const ENERGY_WINDOW_INVALID: &str = "ENERGY_WINDOW_INVALID";
}

type ToolResult<T> = Result<T, Box<ToolOutput>>;

fn fail(code: &str, message: impl Into<String>) -> Box<ToolOutput> {
    Box::new(ToolOutput::fail(code, message))
}

fn run(f: impl FnOnce() -> ToolResult<Value>) -> ToolOutput {
    match f() {
        Ok(data) => ToolOutput::ok(data),
        Err(out) => *out,
    }
}

fn run_output(f: impl FnOnce() -> ToolResult<ToolOutput>) -> ToolOutput {
    f().unwrap_or_else(|out| *out)
}

fn store_fail(e: StoreError) -> Box<ToolOutput> {
    fail(e.code(), e.to_string())
}

fn input<'a>(call: &BuiltinCall<'a>) -> ToolResult<&'a Map<String, Value>> {
    call.input()
        .as_object()
        .ok_or_else(|| fail(codes::INVALID_INPUT, "tool input must be a JSON object"))
}

/// Refuse unless the call may read the pack's state (a workspace may narrow the scopes).
fn require_read(call: &BuiltinCall<'_>) -> ToolResult<Store> {
    let probe = format!("{STATE_REL}/facilities.json");
    if !call.effective().allows_path(&probe, PathAccess::Read) {
        return Err(fail(
            codes::SCOPE_DENIED,
            format!("`{STATE_REL}/**` is outside the effective read scopes of this call"),
        ));
    }
    Ok(Store::new(call.workspace_dir()))
}

fn facility_arg(input: &Map<String, Value>) -> ToolResult<String> {
    match input.get("facility_id") {
        Some(Value::String(s)) if valid_id(s) => Ok(s.clone()),
        Some(Value::String(s)) => Err(fail(
            codes::INVALID_INPUT,
            format!("`facility_id` = `{s}` is not a valid facility id"),
        )),
        _ => Err(fail(codes::INVALID_INPUT, "`facility_id` is required")),
    }
}

fn registered(store: &Store, facility_id: &str) -> ToolResult<super::model::Facility> {
    store
        .facility(facility_id)
        .map_err(store_fail)?
        .ok_or_else(|| {
            fail(
                errors::FACILITY_NOT_FOUND,
                format!("facility `{facility_id}` is not registered"),
            )
        })
}

fn time_arg(input: &Map<String, Value>, field: &str) -> ToolResult<Option<Timestamp>> {
    match input.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Timestamp::parse(s)
            .map(Some)
            .map_err(|e| fail(codes::INVALID_INPUT, format!("`{field}`: {e}"))),
        Some(_) => Err(fail(
            codes::INVALID_INPUT,
            format!("`{field}` must be an RFC 3339 string"),
        )),
    }
}

fn limit_arg(input: &Map<String, Value>) -> usize {
    input
        .get("limit")
        .and_then(Value::as_u64)
        .map_or(1000, |l| l.clamp(1, 10_000) as usize)
}

/// `campus:list_facilities`: every registered facility.
pub fn list_facilities(call: &BuiltinCall<'_>) -> ToolOutput {
    run(|| {
        let store = require_read(call)?;
        let facilities = store.facilities().map_err(store_fail)?;
        Ok(json!({ "facilities": facilities }))
    })
}

/// `campus:node_inventory`: the nodes of one facility.
pub fn node_inventory(call: &BuiltinCall<'_>) -> ToolOutput {
    run(|| {
        let store = require_read(call)?;
        let facility_id = facility_arg(input(call)?)?;
        registered(&store, &facility_id)?;
        let nodes = store.nodes(&facility_id).map_err(store_fail)?;
        Ok(json!({"facility_id": facility_id, "node_count": nodes.len(), "nodes": nodes}))
    })
}

/// `campus:pue_telemetry`: the PUE samples of one facility, oldest first, within
/// `[since, until)`, the newest `limit` of them.
pub fn pue_telemetry(call: &BuiltinCall<'_>) -> ToolOutput {
    run(|| {
        let store = require_read(call)?;
        let input = input(call)?;
        let facility_id = facility_arg(input)?;
        registered(&store, &facility_id)?;
        let (since, until) = (time_arg(input, "since")?, time_arg(input, "until")?);
        let mut samples: Vec<_> = store
            .pue(&facility_id)
            .map_err(store_fail)?
            .into_iter()
            .filter(|s| since.is_none_or(|t| s.sampled_at >= t))
            .filter(|s| until.is_none_or(|t| s.sampled_at < t))
            .collect();
        samples.sort_by_key(|s| s.sampled_at);
        let total = samples.len();
        let samples = samples.split_off(total.saturating_sub(limit_arg(input)));
        let mut data = json!({
            "facility_id": facility_id,
            "total": total,
            "samples": samples.iter().map(|s| json!({"pue": s.pue, "sampled_at": s.sampled_at})).collect::<Vec<_>>(),
        });
        if let Some(s) = samples.last() {
            data["latest"] = json!({"pue": s.pue, "sampled_at": s.sampled_at});
        }
        Ok(data)
    })
}

/// `campus:power_signal`: the latest power reading of one facility (per source when asked).
pub fn power_signal(call: &BuiltinCall<'_>) -> ToolOutput {
    run(|| {
        let store = require_read(call)?;
        let input = input(call)?;
        let facility_id = facility_arg(input)?;
        registered(&store, &facility_id)?;
        let source = input.get("source").and_then(Value::as_str);
        let latest = store
            .power(&facility_id)
            .map_err(store_fail)?
            .into_iter()
            .filter(|p| source.is_none_or(|s| p.source == s))
            .max_by_key(|p| p.observed_at);
        let mut data = json!({ "facility_id": facility_id });
        if let Some(p) = latest {
            data["latest"] =
                json!({"watts": p.watts, "observed_at": p.observed_at, "source": p.source});
        }
        Ok(data)
    })
}

/// `campus:facility_energy`. Given a meter window (`quantity_joules` present, the seed's input
/// shape), returns it in EMIT form as `energy_meter_event` and proposes it as an
/// `emit:energy_meter_recorded` event (its `event_id` is the idempotency key, so a retry is the
/// same event). Otherwise returns the stored windows of `facility_id` in EMIT form.
pub fn facility_energy(call: &BuiltinCall<'_>) -> ToolOutput {
    run_output(|| {
        let store = require_read(call)?;
        let input = input(call)?;
        if input.contains_key("quantity_joules") {
            let window = energy::normalize(input).map_err(|e| {
                fail(
                    errors::ENERGY_WINDOW_INVALID,
                    format!("the meter window does not fit the EMIT contract: {e}"),
                )
            })?;
            let options = BuildOptions {
                idempotency_key: Some(window.event_id.clone()),
                timestamp: Some(window.timestamp),
                seq: window.seq,
            };
            let mut out = ToolOutput::ok(json!({ "energy_meter_event": window.to_json() }));
            match call.emit(EMIT_KIND, window.payload_map(), options) {
                Ok(Some(event)) => {
                    out.metadata = Some(
                        [("emitted_event_id".to_string(), Value::from(event.event_id))]
                            .into_iter()
                            .collect(),
                    );
                }
                Ok(None) => {}
                Err(e) => {
                    out.metadata = Some(
                        [(
                            "emit_errors".to_string(),
                            json!([format!("{EMIT_KIND}: {e}")]),
                        )]
                        .into_iter()
                        .collect(),
                    );
                }
            }
            return Ok(out);
        }
        let facility_id = facility_arg(input)?;
        let facility = registered(&store, &facility_id)?;
        let workspace_id = match input.get("workspace_id").and_then(Value::as_str) {
            Some(w) => w.to_string(),
            None => lumenflow_kernel::workspace::read_workspace(call.workspace_dir())
                .map(|d| d.spec.id)
                .map_err(|d| {
                    fail(
                        codes::INVALID_INPUT,
                        format!("cannot read workspace.yaml: {d}"),
                    )
                })?,
        };
        let (since, until) = (time_arg(input, "since")?, time_arg(input, "until")?);
        let apply = input.get("apply_pue").and_then(Value::as_bool) == Some(true);
        let mut windows: Vec<_> = store
            .energy(&facility_id)
            .map_err(store_fail)?
            .into_iter()
            .filter(|w| since.is_none_or(|t| w.valid_to > t))
            .filter(|w| until.is_none_or(|t| w.valid_from < t))
            .collect();
        windows.sort_by_key(|w| (w.valid_from, w.valid_to));
        let total = windows.len();
        let windows = windows.split_off(total.saturating_sub(limit_arg(input)));
        let region = facility.region.clone().unwrap_or_default();
        let mut events = Vec::with_capacity(windows.len());
        let mut total_joules = 0.0;
        for w in &windows {
            let mut e = energy::from_stored(w, &workspace_id, &region);
            if apply {
                energy::apply_pue(&mut e.payload).map_err(|m| {
                    fail(
                        errors::ENERGY_WINDOW_INVALID,
                        format!(
                            "window `{}` of `{}`: {m}",
                            e.payload.valid_from, e.payload.source
                        ),
                    )
                })?;
            }
            total_joules += e.payload.quantity_joules;
            events.push(e.to_json());
        }
        Ok(ToolOutput::ok(json!({
            "facility_id": facility_id,
            "total": total,
            "quantity_joules": total_joules,
            "unit": "joules",
            "energy_meter_events": events,
        })))
    })
}
