//! Delivery to the control plane under failure, with the real sidecar process (DLV-01, DLV-03,
//! BKP-03, BKP-05, Q8, Q19):
//!
//! - the crash test: 10 000 queue-class events in the outbox drain while the sidecar is
//!   SIGKILLed at random points 50 times and restarted; the control plane ends with every event
//!   exactly once after dedupe, first seen in FIFO order, and the outbox is empty;
//! - the outage test: the control plane goes down; the sidecar keeps serving, ephemeral events
//!   are dropped, queue events are kept and drained in order once it is back.
//!
//! - two processes on one workspace: what another process queues is drained by the running
//!   sidecar, and when the draining process dies, the other takes over.
//!
//! `LUMENFLOW_CRASH_EVENTS` and `LUMENFLOW_CRASH_KILLS` shrink the crash test for a quick local
//! run; the default is the numbers.

#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

mod sidecar_support;

use std::collections::HashSet;
use std::time::{Duration, Instant};

use lumenflow_conductor::outbox::{self, Outbox};
use lumenflow_contracts::event::{build_event, BuildOptions};
use serde_json::{json, Map, Value};
use sidecar_support::*;

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// A small deterministic generator (xorshift), seeded from the clock and printed, so a failing
/// schedule of kill points can be replayed with `LUMENFLOW_CRASH_SEED`.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }
}

#[test]
fn crash_test_every_queued_event_arrives_exactly_once_after_50_random_kills() {
    let total = env_usize("LUMENFLOW_CRASH_EVENTS", 10_000);
    let kills = env_usize("LUMENFLOW_CRASH_KILLS", 50);
    let seed = std::env::var("LUMENFLOW_CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(1)
                | 1
        });
    eprintln!("crash test: {total} events, {kills} kills, LUMENFLOW_CRASH_SEED={seed}");
    let mut rng = Rng(seed);

    let cloud = FakeCloud::start();
    let (_tmp, root) = workspace();
    enroll(&root, &cloud);

    // The queue: approval requests, as the sidecar writes them (one file each, FIFO names).
    let ob = Outbox::open(&outbox::default_dir(&root)).unwrap();
    let mut expected = Vec::with_capacity(total);
    let mut chunk = Vec::new();
    for i in 0..total {
        let mut p = Map::new();
        p.insert("approval_id".into(), format!("apr-{i:05}").into());
        let mut e = build_event(
            "sidekick:approval_requested",
            WS,
            p,
            BuildOptions::idempotent(format!("crash:{i}")),
        )
        .unwrap();
        e.seq = Some(i as u64 + 1);
        expected.push(e.event_id.clone());
        chunk.push(e);
        if chunk.len() == 500 {
            ob.enqueue(&chunk).unwrap();
            chunk.clear();
        }
    }
    ob.enqueue(&chunk).unwrap();
    drop(ob);
    assert_eq!(outbox_files(&root).len(), total);

    let args = [
        "--batch-size",
        "50",
        "--backoff-base-ms",
        "20",
        "--backoff-cap-ms",
        "200",
    ];
    let started = Instant::now();
    let mut mid_drain_kills = 0;
    for round in 0..kills {
        let before = cloud.state.lock().unwrap().ids.len();
        let sidecar = Sidecar::spawn(&root, &args);
        // The kill point: mostly after a random amount of progress (so the 50 kills spread
        // over the whole drain), sometimes at a random instant right after start.
        if rng.next().is_multiple_of(5) {
            std::thread::sleep(Duration::from_millis(rng.next() % 30));
        } else {
            let step = (2 * total / kills.max(1)).max(2) as u64;
            let target = before + 1 + (rng.next() % step) as usize;
            let deadline = Instant::now() + Duration::from_secs(5);
            while cloud.state.lock().unwrap().ids.len() < target && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(1));
            }
        }
        sidecar.kill();
        let after = cloud.state.lock().unwrap().ids.len();
        let pending = outbox_files(&root).len();
        if after > before && pending > 0 {
            mid_drain_kills += 1;
        }
        eprintln!("kill {round:>2}: control plane has {after:>5} unique, outbox {pending:>5}");
    }
    let sidecar = Sidecar::spawn(&root, &args);
    // Besides the queue, the first start announces the tool surface (one ephemeral event).
    let queued_kind = |e: &&Value| e["kind"] == "sidekick:approval_requested";
    let done = wait_until(Duration::from_secs(600), || {
        let s = cloud.state.lock().unwrap();
        s.events.iter().filter(queued_kind).count() >= total && outbox_files(&root).is_empty()
    });
    let s = cloud.state.lock().unwrap();
    assert!(
        done,
        "not drained: {} of {total} at the control plane, {} files left\n{}",
        s.ids.len(),
        outbox_files(&root).len(),
        sidecar.log()
    );
    eprintln!(
        "crash test done in {:?}: {} received for {} unique ({} re-sent after kills), {mid_drain_kills} kills landed mid-drain",
        started.elapsed(),
        s.received,
        s.ids.len(),
        s.received - s.ids.len()
    );
    // Exactly the queued events, each once after dedupe, first seen in FIFO order.
    let got: Vec<String> = s
        .events
        .iter()
        .filter(queued_kind)
        .map(|e| e["event_id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(got.len(), total);
    assert_eq!(
        got.iter().collect::<HashSet<_>>(),
        expected.iter().collect::<HashSet<_>>()
    );
    assert_eq!(
        got, expected,
        "first arrivals follow the outbox's FIFO order"
    );
    assert!(outbox_files(&root).is_empty());
    // Acknowledged files leave the queue for `acked/` at once; the sweeper deletes them there.
    let acked = outbox::default_dir(&root).join("acked");
    let entries = |d: &std::path::Path| std::fs::read_dir(d).map(|e| e.count()).unwrap_or(0);
    assert!(
        wait_until(Duration::from_secs(30), || entries(&acked) == 0),
        "acknowledged files left unswept in {}",
        acked.display()
    );
    let leftovers: Vec<String> = std::fs::read_dir(outbox::default_dir(&root))
        .unwrap()
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n != "acked" && n != ".drain.lock")
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    if total >= 1000 && kills >= 10 {
        assert!(
            mid_drain_kills > 0,
            "no kill landed while the outbox was draining"
        );
    }
}

#[test]
fn outage_test_ephemeral_dropped_queue_kept_and_drained_in_order() {
    let cloud = FakeCloud::start();
    let (_tmp, root) = workspace();
    enroll(&root, &cloud);
    // Approvals are local here: the outage is about delivery (with control-plane approvals, a
    // call needing one is refused with 503 APPROVAL_PROVIDER_UNAVAILABLE while it is down).
    let sidecar = Sidecar::spawn(
        &root,
        &[
            "--backoff-base-ms",
            "50",
            "--backoff-cap-ms",
            "400",
            "--approvals",
            "local",
        ],
    );
    let url = &sidecar.url;
    let token = cloud.token(WS, "workspace");
    let claim = |wu: &str| {
        post(
            &format!("{url}/tools/software-delivery:wu_claim"),
            Some(&token),
            &json!({"wu_id": wu, "lane": "Content: Site Comms"}),
        )
    };
    let claimed = |wu: &str| {
        cloud
            .events_of("software-delivery:wu_claimed")
            .iter()
            .any(|e| e["payload"]["wu_id"] == wu)
    };
    assert_eq!(claim("WU-1").0, 200);
    assert!(wait_until(Duration::from_secs(20), || claimed("WU-1")));

    cloud.down();
    // The sidecar keeps serving while the control plane is unreachable.
    for wu in ["WU-2", "WU-3"] {
        let (s, b) = claim(wu);
        assert_eq!(s, 200, "{b}");
    }
    let mut approvals = Vec::new();
    for wu in ["WU-2", "WU-3", "WU-4"] {
        let (s, b) = post(
            &format!("{url}/tools/software-delivery:wu_recover"),
            Some(&token),
            &json!({"wu_id": wu}),
        );
        assert_eq!(
            (s, b["error"]["code"].as_str()),
            (403, Some("APPROVAL_REQUIRED")),
            "{b}"
        );
        approvals.push(b["approval_id"].as_str().unwrap().to_string());
    }
    assert!(wait_until(Duration::from_secs(10), || outbox_files(&root)
        .len()
        == 3));
    std::thread::sleep(Duration::from_millis(1500)); // several failed drains with backoff
    let (_, health) = get(&format!("{url}/healthz"), None);
    assert_eq!(health["outbox_pending"], 3, "{health}");
    assert!(
        health["delivery"]["drain_failures"].as_u64().unwrap() >= 2,
        "{health}"
    );
    assert_eq!(health["delivery"]["control_plane_up"], false);
    assert!(
        health["delivery"]["ephemeral_dropped"].as_u64().unwrap() >= 2,
        "{health}"
    );

    cloud.up();
    assert!(
        wait_until(Duration::from_secs(30), || outbox_files(&root).is_empty()
            && cloud.events_of("sidekick:approval_requested").len() == 3),
        "{}",
        sidecar.log()
    );
    let arrived = cloud.events_of("sidekick:approval_requested");
    let order: Vec<&str> = arrived
        .iter()
        .map(|e| e["payload"]["approval_id"].as_str().unwrap())
        .collect();
    assert_eq!(
        order,
        approvals.iter().map(String::as_str).collect::<Vec<_>>()
    );
    let seqs: Vec<u64> = arrived.iter().map(|e| e["seq"].as_u64().unwrap()).collect();
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "{seqs:?}");
    // The ephemeral events of the outage never arrive, but the workspace kept their stamps.
    assert!(!claimed("WU-2") && !claimed("WU-3"));
    let stamped: Vec<Value> = ledger(&root)
        .into_iter()
        .filter(|e| e["kind"] == "software-delivery:wu_claimed")
        .collect();
    assert_eq!(stamped.len(), 3);
    // Ephemeral delivery resumes with the control plane.
    assert_eq!(claim("WU-5").0, 200);
    assert!(wait_until(Duration::from_secs(20), || claimed("WU-5")));
}

/// A queue-class event, as `lumenflow mcp` queues one when a call waits for an approval.
fn approval_requested(i: usize) -> lumenflow_contracts::event::KernelEventV2 {
    let mut p = Map::new();
    p.insert("approval_id".into(), format!("apr-two-{i:05}").into());
    build_event(
        "sidekick:approval_requested",
        WS,
        p,
        BuildOptions::idempotent(format!("two:{i}")),
    )
    .unwrap()
}

#[test]
fn another_process_queue_is_drained_and_the_drain_passes_when_its_process_dies() {
    // BKP-05 with `lumenflow mcp` beside `lumenflow sidecar`: both queue into one outbox. One
    // process drains it and takes in what the other queued, without a restart; when it dies,
    // the other takes over. Nothing is lost, nothing arrives twice after dedupe.
    let cloud = FakeCloud::start();
    let (_tmp, root) = workspace();
    enroll(&root, &cloud);
    let args = ["--backoff-base-ms", "20", "--backoff-cap-ms", "200"];
    let first = Sidecar::spawn(&root, &args);
    // This test process queues as another process of the workspace would.
    let queue = |range: std::ops::Range<usize>| -> Vec<String> {
        let ob = Outbox::open(&outbox::default_dir(&root)).unwrap();
        let events: Vec<_> = range.map(approval_requested).collect();
        assert_eq!(ob.enqueue(&events).unwrap(), events.len());
        events.iter().map(|e| e.event_id.clone()).collect()
    };
    let arrived = |ids: &[String]| {
        let s = cloud.state.lock().unwrap();
        ids.iter().all(|id| s.ids.contains(id))
    };
    let ids = queue(0..200);
    assert!(
        wait_until(Duration::from_secs(20), || arrived(&ids)
            && outbox_files(&root).is_empty()),
        "the running sidecar did not drain another process's queue\n{}",
        first.log()
    );

    // A second sidecar of the workspace follows while the first leads the drain.
    let second = Sidecar::spawn(&root, &args);
    cloud.down();
    let more = queue(200..300);
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(
        outbox_files(&root).len(),
        100,
        "kept while the cloud is down"
    );
    first.kill();
    cloud.up();
    assert!(
        wait_until(Duration::from_secs(30), || arrived(&more)
            && outbox_files(&root).is_empty()),
        "the second sidecar did not take over the drain\n{}",
        second.log()
    );
    let s = cloud.state.lock().unwrap();
    let approvals: Vec<&str> = s
        .events
        .iter()
        .filter(|e| e["kind"] == "sidekick:approval_requested")
        .map(|e| e["event_id"].as_str().unwrap())
        .collect();
    assert_eq!(approvals.len(), 300, "each event once after dedupe");
    let want: HashSet<&str> = ids.iter().chain(&more).map(String::as_str).collect();
    assert_eq!(approvals.into_iter().collect::<HashSet<_>>(), want);
}
