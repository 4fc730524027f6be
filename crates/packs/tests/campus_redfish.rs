//! The Redfish poller against a real Redfish HTTP service on loopback serving DMTF-schema JSON
//! (an axum server in this test): power and energy counters become `power` rows and `energy`
//! windows, the service only ever sees `GET`s, and a service that times out or answers with
//! malformed JSON fails the poll with its URL and writes nothing.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::extract::State;
use axum::http::{Method, StatusCode, Uri};
use axum::response::Response;
use axum::Router;
use lumenflow_kernel::events::ledger::read_from;
use lumenflow_kernel::events::ledger_path;
use lumenflow_packs::campus::events::Recorder;
use lumenflow_packs::campus::ingest;
use lumenflow_packs::campus::redfish::{poll_once, Client, RedfishError};
use lumenflow_packs::campus::store::Store;
use serde_json::json;

#[derive(Default)]
struct Service {
    /// Chassis 1's `EnergyJoules` counter and chassis 2's `EnergykWh` counter.
    joules: f64,
    kwh: f64,
    methods: Vec<Method>,
}

type Shared = Arc<Mutex<Service>>;

fn json_response(body: String) -> Response {
    Response::builder()
        .status(StatusCode::OK)
        .header("content-type", "application/json")
        .body(Body::from(body))
        .unwrap()
}

async fn handle(State(state): State<Shared>, method: Method, uri: Uri) -> Response {
    let path = uri.path().to_string();
    let (joules, kwh) = {
        let mut s = state.lock().unwrap();
        s.methods.push(method);
        (s.joules, s.kwh)
    };
    if path.starts_with("/slow/") {
        tokio::time::sleep(Duration::from_secs(5)).await;
    }
    if path.starts_with("/bad/") && path.ends_with("/Chassis") {
        return json_response("{\"Members\": [ {\"@odata.id\": ".into());
    }
    let path = path
        .trim_start_matches("/slow")
        .trim_start_matches("/bad")
        .trim_end_matches('/')
        .to_string();
    let body = match path.as_str() {
        "/redfish/v1" => json!({
            "@odata.id": "/redfish/v1", "@odata.type": "#ServiceRoot.v1_15_0.ServiceRoot",
            "Id": "RootService", "Name": "Root Service", "RedfishVersion": "1.17.0",
            "Chassis": {"@odata.id": "/redfish/v1/Chassis"}
        }),
        "/redfish/v1/Chassis" => json!({
            "@odata.id": "/redfish/v1/Chassis",
            "@odata.type": "#ChassisCollection.ChassisCollection", "Name": "Chassis Collection",
            "Members": [{"@odata.id": "/redfish/v1/Chassis/1"}, {"@odata.id": "/redfish/v1/Chassis/2"}],
            "Members@odata.count": 2
        }),
        "/redfish/v1/Chassis/1" => json!({
            "@odata.id": "/redfish/v1/Chassis/1", "@odata.type": "#Chassis.v1_23_0.Chassis",
            "Id": "1", "Name": "Rack 1", "ChassisType": "Rack",
            "Power": {"@odata.id": "/redfish/v1/Chassis/1/Power"},
            "EnvironmentMetrics": {"@odata.id": "/redfish/v1/Chassis/1/EnvironmentMetrics"}
        }),
        "/redfish/v1/Chassis/1/Power" => json!({
            "@odata.id": "/redfish/v1/Chassis/1/Power", "@odata.type": "#Power.v1_7_1.Power",
            "Id": "Power", "Name": "Power",
            "PowerControl": [
                {"@odata.id": "/redfish/v1/Chassis/1/Power#/PowerControl/0", "MemberId": "0",
                 "Name": "Rack power", "PowerConsumedWatts": 4210.5},
                {"@odata.id": "/redfish/v1/Chassis/1/Power#/PowerControl/1", "MemberId": "1",
                 "Name": "Auxiliary", "PowerConsumedWatts": 89.5}
            ]
        }),
        "/redfish/v1/Chassis/1/EnvironmentMetrics" => json!({
            "@odata.id": "/redfish/v1/Chassis/1/EnvironmentMetrics",
            "@odata.type": "#EnvironmentMetrics.v1_3_0.EnvironmentMetrics",
            "Id": "EnvironmentMetrics", "Name": "Rack 1 environment",
            "EnergyJoules": {"DataSourceUri": "/redfish/v1/Chassis/1/Sensors/energy", "Reading": joules},
            "PowerWatts": {"Reading": 4300.0}
        }),
        "/redfish/v1/Chassis/2" => json!({
            "@odata.id": "/redfish/v1/Chassis/2", "@odata.type": "#Chassis.v1_23_0.Chassis",
            "Id": "2", "Name": "Rack 2", "ChassisType": "Rack",
            "EnvironmentMetrics": {"@odata.id": "/redfish/v1/Chassis/2/EnvironmentMetrics"}
        }),
        "/redfish/v1/Chassis/2/EnvironmentMetrics" => json!({
            "@odata.id": "/redfish/v1/Chassis/2/EnvironmentMetrics",
            "@odata.type": "#EnvironmentMetrics.v1_3_0.EnvironmentMetrics",
            "Id": "EnvironmentMetrics", "Name": "Rack 2 environment",
            "EnergykWh": {"Reading": kwh},
            "PowerWatts": {"Reading": 1800.0}
        }),
        _ => {
            return Response::builder()
                .status(StatusCode::NOT_FOUND)
                .body(Body::from("{}"))
                .unwrap()
        }
    };
    json_response(body.to_string())
}

/// A Redfish service on a loopback port, served from its own thread.
fn serve() -> (SocketAddr, Shared) {
    let state: Shared = Arc::new(Mutex::new(Service {
        joules: 1_000_000.0,
        kwh: 10.0,
        methods: Vec::new(),
    }));
    let app = Router::new().fallback(handle).with_state(state.clone());
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            tx.send(listener.local_addr().unwrap()).unwrap();
            axum::serve(listener, app).await.unwrap();
        });
    });
    (rx.recv().unwrap(), state)
}

struct Ws {
    _dir: tempfile::TempDir,
    root: std::path::PathBuf,
    store: Store,
    recorder: Recorder,
}

fn workspace() -> Ws {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().to_path_buf();
    let store = Store::new(&root);
    let recorder = Recorder::open(&root, "ws-campus").unwrap();
    ingest::add_facility(&store, &recorder, "campus-fac-001", None, Some("eu-west-1")).unwrap();
    Ws {
        _dir: dir,
        root,
        store,
        recorder,
    }
}

#[test]
fn polls_power_and_energy_from_a_loopback_redfish_service() {
    let (addr, state) = serve();
    let ws = workspace();
    let client = Client::new(&format!("http://{addr}"), Duration::from_secs(5)).unwrap();

    // First poll: power readings, energy baselines only.
    let first = poll_once(&ws.store, &ws.recorder, &client, "campus-fac-001").unwrap();
    assert_eq!(first.chassis.len(), 2);
    assert_eq!(first.ingest.power_signals, 2);
    assert_eq!(first.ingest.energy_windows, 0);
    assert_eq!(first.baselines, vec!["1".to_string(), "2".to_string()]);
    let power = ws.store.power("campus-fac-001").unwrap();
    let rack1 = power.iter().find(|p| p.source == "redfish:1").unwrap();
    assert_eq!(rack1.watts, 4300.0); // PowerControl[] summed
    let rack2 = power.iter().find(|p| p.source == "redfish:2").unwrap();
    assert_eq!(rack2.watts, 1800.0); // EnvironmentMetrics.PowerWatts (no Power resource)

    // The counters move; the second poll records one window per chassis.
    {
        let mut s = state.lock().unwrap();
        s.joules += 5000.0;
        s.kwh += 0.5;
    }
    std::thread::sleep(Duration::from_millis(5));
    let second = poll_once(&ws.store, &ws.recorder, &client, "campus-fac-001").unwrap();
    assert_eq!(second.ingest.energy_windows, 2);
    let energy = ws.store.energy("campus-fac-001").unwrap();
    let w1 = energy.iter().find(|w| w.source == "redfish:1").unwrap();
    assert_eq!(w1.quantity_joules, 5000.0);
    assert_eq!(w1.energy_source.as_str(), "redfish");
    assert_eq!(w1.energy_provenance.as_str(), "measured");
    assert_eq!(w1.region.as_deref(), Some("eu-west-1"));
    assert_eq!(
        w1.sensor_ref.as_deref(),
        Some("/redfish/v1/Chassis/1/EnvironmentMetrics")
    );
    assert_eq!(w1.valid_from, first.polled_at);
    assert_eq!(w1.valid_to, second.polled_at);
    let w2 = energy.iter().find(|w| w.source == "redfish:2").unwrap();
    assert!((w2.quantity_joules - 1_800_000.0).abs() < 1e-3);

    // A counter reset starts a new baseline instead of a negative window.
    state.lock().unwrap().joules = 10.0;
    std::thread::sleep(Duration::from_millis(5));
    let third = poll_once(&ws.store, &ws.recorder, &client, "campus-fac-001").unwrap();
    assert_eq!(third.baselines, vec!["1".to_string()]);
    assert_eq!(third.ingest.energy_windows, 1);

    // Events: power and energy observations in the ledger.
    let ledger = read_from(&ledger_path(&ws.root), 0, None).unwrap().0;
    let count = |k: &str| ledger.iter().filter(|e| e.kind == k).count();
    assert_eq!(count("campus:power_signal_ingested"), 6);
    assert_eq!(count("campus:facility_energy_recorded"), 3);

    // Proposes, never actuates: the service only ever saw GETs.
    assert!(state
        .lock()
        .unwrap()
        .methods
        .iter()
        .all(|m| m == Method::GET));
}

#[test]
fn a_service_that_times_out_or_answers_garbage_fails_with_its_url_and_writes_nothing() {
    let (addr, _state) = serve();
    let ws = workspace();
    let energy_before = ws.store.energy("campus-fac-001").unwrap();
    let power_before = ws.store.power("campus-fac-001").unwrap();

    let slow = Client::new(&format!("http://{addr}/slow"), Duration::from_millis(500)).unwrap();
    let err = poll_once(&ws.store, &ws.recorder, &slow, "campus-fac-001").unwrap_err();
    assert!(matches!(err, RedfishError::Timeout { .. }), "{err}");
    assert_eq!(err.code(), "REDFISH_TIMEOUT");
    assert!(
        err.to_string()
            .contains(&format!("http://{addr}/slow/redfish/v1/Chassis")),
        "{err}"
    );

    let bad = Client::new(
        &format!("http://{addr}/bad/redfish/v1"),
        Duration::from_secs(5),
    )
    .unwrap();
    let err = poll_once(&ws.store, &ws.recorder, &bad, "campus-fac-001").unwrap_err();
    assert!(matches!(err, RedfishError::Malformed { .. }), "{err}");
    assert!(err.to_string().contains("/bad/redfish/v1/Chassis"), "{err}");
    assert!(err.to_string().contains("malformed JSON"), "{err}");

    // Nothing refused to connect is a clear error too.
    let closed = Client::new("http://127.0.0.1:9", Duration::from_secs(2)).unwrap();
    let err = poll_once(&ws.store, &ws.recorder, &closed, "campus-fac-001").unwrap_err();
    assert!(err.to_string().contains("127.0.0.1:9"), "{err}");

    assert_eq!(ws.store.energy("campus-fac-001").unwrap(), energy_before);
    assert_eq!(ws.store.power("campus-fac-001").unwrap(), power_before);
    // No counters were written (only the empty lock file a poll holds).
    assert!(!ws.store.root().join("redfish/campus-fac-001.json").exists());

    // An unknown facility is refused before any request.
    let good = Client::new(&format!("http://{addr}"), Duration::from_secs(5)).unwrap();
    let err = poll_once(&ws.store, &ws.recorder, &good, "campus-fac-404").unwrap_err();
    assert!(err.to_string().contains("not registered"), "{err}");
}

#[test]
fn concurrent_polls_never_count_one_span_of_energy_twice() {
    // Two polls at once (the sidecar's poller and a `lumenflow campus redfish poll`) must not
    // both measure from the same baseline: the energy between two readings is counted once.
    let (addr, state) = serve();
    let ws = workspace();
    let client = Client::new(&format!("http://{addr}"), Duration::from_secs(5)).unwrap();
    poll_once(&ws.store, &ws.recorder, &client, "campus-fac-001").unwrap();
    {
        let mut s = state.lock().unwrap();
        s.joules += 5000.0;
    }
    std::thread::sleep(Duration::from_millis(5));
    std::thread::scope(|s| {
        for _ in 0..4 {
            let (ws, client) = (&ws, &client);
            s.spawn(move || {
                let store = Store::new(&ws.root);
                poll_once(&store, &ws.recorder, client, "campus-fac-001").unwrap();
            });
        }
    });
    let counted: f64 = ws
        .store
        .energy("campus-fac-001")
        .unwrap()
        .iter()
        .filter(|w| w.source == "redfish:1")
        .map(|w| w.quantity_joules)
        .sum();
    assert_eq!(counted, 5000.0);
}
