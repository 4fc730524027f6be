//! Reading power and energy from a DMTF Redfish service: `lumenflow campus poll --redfish URL`.
//!
//! Read only (GOV-01): the poller sends `GET` requests and nothing else. For every member of
//! `/redfish/v1/Chassis` it reads `Power` (`PowerControl[].PowerConsumedWatts`, summed) and,
//! where the chassis links one, `EnvironmentMetrics` (`EnergyJoules.Reading`, else
//! `EnergykWh.Reading`, and `PowerWatts.Reading` when `Power` has no reading). A power reading
//! becomes a `power` row; an energy counter becomes an `energy` window (`redfish`, measured)
//! from the previous poll's counter to this one's, so the first poll only sets the baseline and
//! a counter that went backwards (a reset) starts a new one. The rows go through the same checks
//! and writes as an ingested file ([`super::ingest::ingest_rows`]).
//!
//! A service that times out, answers with an error status or with malformed JSON fails the
//! whole poll with the URL in the error, and nothing of that poll is written.

use lumenflow_contracts::error_text::with_causes;
use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use lumenflow_contracts::payloads::{EnergyProvenance, EnergySource};
use lumenflow_contracts::time::Timestamp;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use url::Url;

use super::events::Recorder;
use super::ingest::{ingest_rows, IngestError, IngestReport};
use super::model::{EnergyWindow, PowerSignal, Reading};
use super::store::{read_json, with_lock, write_json, Store};

/// Joules in one kilowatt-hour.
const JOULES_PER_KWH: f64 = 3_600_000.0;

/// Why a poll failed. Nothing was written.
#[derive(Debug, thiserror::Error)]
pub enum RedfishError {
    #[error("redfish `{url}`: timed out after {seconds}s")]
    Timeout { url: String, seconds: u64 },
    #[error("redfish `{url}`: HTTP status {status}")]
    Status { url: String, status: u16 },
    #[error("redfish `{url}`: malformed JSON: {reason}")]
    Malformed { url: String, reason: String },
    #[error("redfish `{url}`: {reason}")]
    Transport { url: String, reason: String },
    #[error("{0}")]
    Ingest(#[from] IngestError),
}

impl From<super::store::StoreError> for RedfishError {
    fn from(e: super::store::StoreError) -> Self {
        RedfishError::Ingest(IngestError::from(e))
    }
}

impl RedfishError {
    pub fn code(&self) -> &'static str {
        match self {
            RedfishError::Timeout { .. } => "REDFISH_TIMEOUT",
            RedfishError::Status { .. } => "REDFISH_HTTP_STATUS",
            RedfishError::Malformed { .. } => "REDFISH_MALFORMED",
            RedfishError::Transport { .. } => "REDFISH_UNREACHABLE",
            RedfishError::Ingest(e) => e.code(),
        }
    }
}

/// What one chassis reported.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ChassisReading {
    /// The chassis' `Id` (an opaque label).
    pub chassis_id: String,
    /// The chassis resource path, e.g. `/redfish/v1/Chassis/1`.
    pub path: String,
    pub power_watts: Option<f64>,
    /// The cumulative energy counter, in joules.
    pub energy_joules: Option<f64>,
    /// The resource the energy counter came from (the window's `sensor_ref`).
    pub energy_path: Option<String>,
}

/// A read-only Redfish client.
pub struct Client {
    http: reqwest::blocking::Client,
    root: Url,
    timeout: Duration,
}

impl Client {
    /// A client for the service at `url` (its root, or any URL under which `/redfish/v1` is).
    pub fn new(url: &str, timeout: Duration) -> Result<Client, RedfishError> {
        let transport = |reason: String| RedfishError::Transport {
            url: url.to_string(),
            reason,
        };
        let mut root = Url::parse(url).map_err(|e| transport(format!("not a URL: {e}")))?;
        if !matches!(root.scheme(), "http" | "https") {
            return Err(transport("expected an http or https URL".into()));
        }
        let path = root.path().trim_end_matches('/').to_string();
        let base = match path.find("/redfish/v1") {
            Some(i) => path[..i].to_string(),
            None => path,
        };
        root.set_path(&format!("{base}/redfish/v1/"));
        let http = reqwest::blocking::Client::builder()
            .timeout(timeout)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| transport(e.to_string()))?;
        Ok(Client {
            http,
            root,
            timeout,
        })
    }

    fn get(&self, path: &str) -> Result<Value, RedfishError> {
        let url = self.root.join(path).map_err(|e| RedfishError::Transport {
            url: path.to_string(),
            reason: e.to_string(),
        })?;
        let shown = url.to_string();
        let response = self
            .http
            .get(url)
            .header("Accept", "application/json")
            .send()
            .map_err(|e| self.transport_error(&shown, e))?;
        let status = response.status();
        if !status.is_success() {
            return Err(RedfishError::Status {
                url: shown,
                status: status.as_u16(),
            });
        }
        let bytes = response
            .bytes()
            .map_err(|e| self.transport_error(&shown, e))?;
        let value: Value = serde_json::from_slice(&bytes).map_err(|e| RedfishError::Malformed {
            url: shown.clone(),
            reason: e.to_string(),
        })?;
        if !value.is_object() {
            return Err(RedfishError::Malformed {
                url: shown,
                reason: "expected a JSON object".into(),
            });
        }
        Ok(value)
    }

    fn transport_error(&self, url: &str, e: reqwest::Error) -> RedfishError {
        if e.is_timeout() {
            RedfishError::Timeout {
                url: url.to_string(),
                seconds: self.timeout.as_secs().max(1),
            }
        } else if e.is_decode() || e.is_body() {
            RedfishError::Malformed {
                url: url.to_string(),
                reason: e.to_string(),
            }
        } else {
            RedfishError::Transport {
                url: url.to_string(),
                reason: with_causes(&e),
            }
        }
    }

    /// Read every chassis' power and energy.
    pub fn read(&self) -> Result<Vec<ChassisReading>, RedfishError> {
        let collection = self.get("Chassis")?;
        let members = collection
            .get("Members")
            .and_then(Value::as_array)
            .ok_or_else(|| RedfishError::Malformed {
                url: format!("{}Chassis", self.root),
                reason: "`Members` is missing or not an array".into(),
            })?;
        let mut readings = Vec::new();
        for member in members {
            let Some(path) = member.get("@odata.id").and_then(Value::as_str) else {
                return Err(RedfishError::Malformed {
                    url: format!("{}Chassis", self.root),
                    reason: "a member has no `@odata.id`".into(),
                });
            };
            let chassis = self.get(path)?;
            let chassis_id = chassis
                .get("Id")
                .and_then(Value::as_str)
                .map(str::to_string)
                .unwrap_or_else(|| path.rsplit('/').next().unwrap_or(path).to_string());
            let link = |name: &str| {
                chassis
                    .get(name)
                    .and_then(|l| l.get("@odata.id"))
                    .and_then(Value::as_str)
                    .map(str::to_string)
            };
            let mut power_watts = None;
            if let Some(power_path) = link("Power") {
                let power = self.get(&power_path)?;
                let watts: Vec<f64> = power
                    .get("PowerControl")
                    .and_then(Value::as_array)
                    .map(|controls| {
                        controls
                            .iter()
                            .filter_map(|c| c.get("PowerConsumedWatts").and_then(Value::as_f64))
                            .collect()
                    })
                    .unwrap_or_default();
                if !watts.is_empty() {
                    power_watts = Some(watts.iter().sum());
                }
            }
            let (mut energy_joules, mut energy_path) = (None, None);
            if let Some(env_path) = link("EnvironmentMetrics") {
                let env = self.get(&env_path)?;
                let reading = |name: &str| {
                    env.get(name)
                        .and_then(|r| r.get("Reading"))
                        .and_then(Value::as_f64)
                };
                energy_joules = reading("EnergyJoules")
                    .or_else(|| reading("EnergykWh").map(|k| k * JOULES_PER_KWH));
                if energy_joules.is_some() {
                    energy_path = Some(env_path.clone());
                }
                if power_watts.is_none() {
                    power_watts = reading("PowerWatts");
                }
            }
            readings.push(ChassisReading {
                chassis_id,
                path: path.to_string(),
                power_watts,
                energy_joules,
                energy_path,
            });
        }
        Ok(readings)
    }
}

/// The last energy counter of each chassis of a facility (the baseline of the next window).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
struct Counters {
    chassis: BTreeMap<String, Counter>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Counter {
    joules: f64,
    at: Timestamp,
}

/// What one poll did.
#[derive(Debug, Clone, Serialize)]
pub struct PollReport {
    pub polled_at: Timestamp,
    pub chassis: Vec<ChassisReading>,
    pub ingest: IngestReport,
    /// Chassis whose energy counter started (or restarted) a baseline this poll.
    pub baselines: Vec<String>,
}

fn counters_path(store: &Store, facility_id: &str) -> std::path::PathBuf {
    store
        .root()
        .join("redfish")
        .join(format!("{facility_id}.json"))
}

/// Poll the service once and record what it reported for `facility_id`.
pub fn poll_once(
    store: &Store,
    recorder: &Recorder,
    client: &Client,
    facility_id: &str,
) -> Result<PollReport, RedfishError> {
    let facility = store
        .facility(facility_id)
        .map_err(IngestError::from)?
        .ok_or_else(|| {
            IngestError::Invalid(format!(
                "facility `{facility_id}` is not registered (run `lumenflow campus facility add --id {facility_id}` first)"
            ))
        })?;
    let path = counters_path(store, facility_id);
    // Poll, read the counters and write them back under their lock: two polls at once would
    // both take the same baseline and count the energy between them twice.
    with_lock(&path, || {
        let chassis = client.read()?;
        let now = Timestamp::now();
        let mut counters: Counters = read_json(&path)
            .map_err(IngestError::from)?
            .unwrap_or_default();
        let mut rows = Vec::new();
        let mut baselines = Vec::new();
        for c in &chassis {
            let source = format!("redfish:{}", c.chassis_id);
            if let Some(watts) = c.power_watts {
                rows.push(Reading::Power(PowerSignal {
                    facility_id: facility_id.to_string(),
                    watts,
                    observed_at: now,
                    source: source.clone(),
                }));
            }
            let Some(joules) = c.energy_joules else {
                continue;
            };
            match counters.chassis.get(&c.chassis_id) {
                Some(prev) if joules >= prev.joules && now > prev.at => {
                    rows.push(Reading::Energy(EnergyWindow {
                        facility_id: facility_id.to_string(),
                        source,
                        valid_from: prev.at,
                        valid_to: now,
                        quantity_joules: joules - prev.joules,
                        energy_source: EnergySource::Redfish,
                        energy_provenance: EnergyProvenance::Measured,
                        region: facility.region.clone(),
                        pue: None,
                        pue_applied: false,
                        grid_carbon_intensity_gco2e_per_kwh: None,
                        price_per_kwh: None,
                        currency: None,
                        curtailment_window: None,
                        sensor_ref: c.energy_path.clone(),
                        coefficient_ref: None,
                        compute_assignment_run_id: None,
                    }));
                }
                _ => baselines.push(c.chassis_id.clone()),
            }
            counters
                .chassis
                .insert(c.chassis_id.clone(), Counter { joules, at: now });
        }
        let count = rows.len();
        let rows: Vec<(usize, Reading)> = rows
            .into_iter()
            .enumerate()
            .map(|(i, r)| (i + 1, r))
            .collect();
        let ingest = ingest_rows(
            store,
            recorder,
            Path::new(client.root.as_str()),
            rows,
            Vec::new(),
            count,
            false,
        )?;
        write_json(&path, &counters).map_err(IngestError::from)?;
        Ok(PollReport {
            polled_at: now,
            chassis,
            ingest,
            baselines,
        })
    })
}
