//! The Energy page: facility PUE over time and energy windows, per workspace and facility, from
//! the campus pack's events (`campus:pue_sampled`, `campus:facility_energy_recorded`) and the
//! shared EMIT meter (`emit:energy_meter_recorded`). The page draws them; this endpoint only
//! groups and orders the points. A point whose time or number is missing or malformed is
//! skipped rather than drawn as zero.

use std::collections::BTreeMap;

use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use lumenflow_contracts::identity::check_id;
use lumenflow_contracts::time::Timestamp;
use serde::Deserialize;
use serde_json::{json, Value};

use super::session::Operator;
use crate::error::{CloudError, CloudResult};
use crate::server::Shared;
use crate::store::StoredEvent;

pub const PUE_SAMPLED: &str = "campus:pue_sampled";
pub const FACILITY_ENERGY: &str = "campus:facility_energy_recorded";
pub const ENERGY_METER: &str = "emit:energy_meter_recorded";
/// Points read per kind and workspace (the newest).
const POINTS_PER_KIND: u32 = 1_000;
/// The facility label of meter readings that name none (run-grain meters).
const NO_FACILITY: &str = "(no facility)";

pub(super) fn routes() -> Router<Shared> {
    Router::new().route("/console/api/energy", get(energy))
}

#[derive(Deserialize, Default)]
struct Params {
    workspace_id: Option<String>,
}

/// The points of one facility of one workspace.
#[derive(Default)]
struct Facility {
    pue: Vec<Value>,
    windows: Vec<Value>,
    meters: Vec<Value>,
}

fn millis(v: Option<&Value>) -> Option<i64> {
    Timestamp::parse(v?.as_str()?).ok().map(|t| t.unix_millis())
}

fn payload(e: &StoredEvent) -> &Value {
    e.event.get("payload").unwrap_or(&Value::Null)
}

/// Group events of the three kinds by (workspace, facility), each series ordered by time.
fn aggregate(events: &[StoredEvent]) -> Vec<Value> {
    let mut facilities: BTreeMap<(String, String), Facility> = BTreeMap::new();
    for e in events {
        let p = payload(e);
        let facility = p
            .get("facility_id")
            .and_then(Value::as_str)
            .unwrap_or(NO_FACILITY)
            .to_string();
        let entry = facilities
            .entry((e.workspace_id.clone(), facility))
            .or_default();
        match e.kind.as_str() {
            PUE_SAMPLED => {
                let (Some(at), Some(pue)) = (
                    millis(p.get("sampled_at")),
                    p.get("pue").and_then(Value::as_f64),
                ) else {
                    continue;
                };
                entry
                    .pue
                    .push(json!({"at_ms": at, "at": p.get("sampled_at"), "pue": pue}));
            }
            FACILITY_ENERGY | ENERGY_METER => {
                let (Some(from), Some(to), Some(joules)) = (
                    millis(p.get("valid_from")),
                    millis(p.get("valid_to")),
                    p.get("quantity_joules").and_then(Value::as_f64),
                ) else {
                    continue;
                };
                let mut point = json!({
                    "from_ms": from, "to_ms": to,
                    "from": p.get("valid_from"), "to": p.get("valid_to"),
                    "joules": joules,
                    "kwh": joules / 3.6e6,
                });
                if e.kind == ENERGY_METER {
                    for key in [
                        "energy_source",
                        "energy_provenance",
                        "pue",
                        "pue_applied",
                        "region",
                        "source",
                        "compute_assignment_run_id",
                    ] {
                        if let Some(v) = p.get(key) {
                            point[key] = v.clone();
                        }
                    }
                    entry.meters.push(point);
                } else {
                    entry.windows.push(point);
                }
            }
            _ => {}
        }
    }
    facilities
        .into_iter()
        .map(|((ws, facility), mut f)| {
            let key = |field: &'static str| {
                move |v: &Value| v.get(field).and_then(Value::as_i64).unwrap_or(0)
            };
            f.pue.sort_by_key(key("at_ms"));
            f.windows.sort_by_key(key("from_ms"));
            f.meters.sort_by_key(key("from_ms"));
            let joules = |points: &[Value]| -> f64 {
                points
                    .iter()
                    .filter_map(|p| p.get("joules").and_then(Value::as_f64))
                    .sum()
            };
            json!({
                "workspace_id": ws,
                "facility_id": facility,
                "latest_pue": f.pue.last().and_then(|p| p.get("pue")).cloned(),
                "facility_joules": joules(&f.windows),
                "meter_joules": joules(&f.meters),
                "pue": f.pue,
                "windows": f.windows,
                "meters": f.meters,
            })
        })
        .collect()
}

async fn energy(
    State(state): State<Shared>,
    _op: Operator,
    Query(p): Query<Params>,
) -> CloudResult<Response> {
    let workspaces: Vec<String> = match p.workspace_id.as_deref().filter(|w| !w.is_empty()) {
        Some(ws) => {
            check_id(ws).map_err(|reason| {
                CloudError::BadRequest(format!(
                    "`workspace_id` `{}` is not valid: {reason}",
                    ws.chars().take(100).collect::<String>()
                ))
            })?;
            vec![ws.to_string()]
        }
        None => state
            .store
            .all_workspaces()
            .await?
            .into_iter()
            .map(|w| w.workspace_id)
            .collect(),
    };
    let mut events = Vec::new();
    for ws in &workspaces {
        for kind in [PUE_SAMPLED, FACILITY_ENERGY, ENERGY_METER] {
            events.extend(
                state
                    .store
                    .recent_events(ws, Some(kind), None, POINTS_PER_KIND)
                    .await?,
            );
        }
    }
    Ok(Json(json!({"facilities": aggregate(&events)})).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(kind: &str, payload: Value) -> StoredEvent {
        StoredEvent {
            cursor: 0,
            workspace_id: "ws".into(),
            kind: kind.into(),
            ts_ms: 0,
            seq: None,
            channel: "c".into(),
            run_id: None,
            event: json!({"kind": kind, "payload": payload}),
        }
    }

    #[test]
    fn points_are_grouped_per_facility_and_ordered_by_time() {
        let out = aggregate(&[
            ev(
                PUE_SAMPLED,
                json!({"facility_id": "f1", "pue": 1.4, "sampled_at": "2026-01-01T02:00:00.000Z"}),
            ),
            ev(
                PUE_SAMPLED,
                json!({"facility_id": "f1", "pue": 1.2, "sampled_at": "2026-01-01T01:00:00.000Z"}),
            ),
            ev(
                FACILITY_ENERGY,
                json!({"facility_id": "f1", "quantity_joules": 3.6e6,
                "valid_from": "2026-01-01T00:00:00.000Z", "valid_to": "2026-01-01T01:00:00.000Z"}),
            ),
            ev(
                ENERGY_METER,
                json!({"quantity_joules": 7.2e6, "energy_source": "pdu",
                "valid_from": "2026-01-01T00:00:00.000Z", "valid_to": "2026-01-01T01:00:00.000Z"}),
            ),
            // No number: skipped, not drawn as zero.
            ev(
                PUE_SAMPLED,
                json!({"facility_id": "f1", "sampled_at": "2026-01-01T03:00:00.000Z"}),
            ),
        ]);
        assert_eq!(out.len(), 2);
        let f1 = out.iter().find(|f| f["facility_id"] == "f1").expect("f1");
        assert_eq!(f1["pue"].as_array().map(Vec::len), Some(2));
        assert_eq!(f1["pue"][0]["pue"], 1.2);
        assert_eq!(f1["latest_pue"], 1.4);
        assert_eq!(f1["windows"][0]["kwh"], 1.0);
        let none = out
            .iter()
            .find(|f| f["facility_id"] == NO_FACILITY)
            .expect("meter");
        assert_eq!(none["meter_joules"], 7.2e6);
        assert_eq!(none["meters"][0]["energy_source"], "pdu");
    }
}
