//! Durable approvals (KRN-09) from outside the kernel: the request → grant → consume life, the
//! binding of a grant to tool + input hash, expiry as deny, the finality of a deny, exactly-once
//! consumption under threads and processes, fail-closed reading of damaged files, durability
//! across handles, and a model-based run of random operations against an in-memory model.

#![allow(clippy::unwrap_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::Duration;

use lumenflow_contracts::time::Timestamp;
use lumenflow_kernel::approvals::{
    approvals_dir, gate, input_hash, ApprovalError, ApprovalFilter, ApprovalProvider,
    ApprovalRequest, ApprovalStatus, Decision, Gate, GateContext, LocalApprovals, NewApproval,
    APPROVAL_REQUIRED, DEFAULT_TTL,
};
use proptest::prelude::*;
use proptest::test_runner::Config;
use serde_json::{json, Value};
use tempfile::TempDir;

const TOOL: &str = "tenant-evidence:export";
const CHILD_ENV: &str = "LUMENFLOW_APPROVALS_CHILD";
const CHILD_CALLS: usize = 24;

fn t0() -> Timestamp {
    Timestamp::parse("2026-04-20T00:00:00.000Z").unwrap()
}

fn at(seconds: i64) -> Timestamp {
    Timestamp::from_unix_millis(t0().unix_millis() + seconds * 1000)
}

fn store() -> (TempDir, LocalApprovals) {
    let dir = tempfile::tempdir().unwrap();
    let store = LocalApprovals::open(dir.path());
    (dir, store)
}

fn hash_of(input: Value) -> String {
    input_hash(&input)
}

fn ctx() -> GateContext {
    GateContext {
        task: Some("WU-1".into()),
        run: Some("run-1".into()),
        requested_by: "agent-7".into(),
        ttl: DEFAULT_TTL,
        reason: "rule `ws.export.approval` requires approval".into(),
        required_ids: vec!["ws.export.approval".into(), TOOL.into()],
    }
}

fn granted(by: &str, at: Timestamp) -> Decision {
    Decision::Granted {
        approver: by.into(),
        reason: "looked at the export".into(),
        decided_at: at,
    }
}

fn denied(by: &str, at: Timestamp) -> Decision {
    Decision::Denied {
        approver: by.into(),
        reason: "not today".into(),
        decided_at: at,
    }
}

/// The one helper that calls `gate` in these tests.
fn call(store: &dyn ApprovalProvider, tool: &str, hash: &str, now: Timestamp) -> Gate {
    gate(store, tool, hash, ctx(), now).unwrap()
}

fn required(g: Gate) -> (ApprovalRequest, bool) {
    match g {
        Gate::Required {
            approval,
            newly_created,
        } => (approval, newly_created),
        Gate::Proceed { approval_id, .. } => {
            panic!("expected APPROVAL_REQUIRED, got proceed with {approval_id}")
        }
    }
}

fn proceeded(g: Gate) -> String {
    match g {
        Gate::Proceed {
            approval_id,
            approval,
        } => {
            assert_eq!(approval.id, approval_id);
            assert!(approval.consumed);
            approval_id
        }
        Gate::Required { approval, .. } => panic!("expected proceed, got required {}", approval.id),
    }
}

fn code<T: std::fmt::Debug>(r: Result<T, ApprovalError>) -> &'static str {
    r.unwrap_err().code()
}

/// A pending request through `gate`, then granted.
fn granted_request(store: &LocalApprovals, hash: &str) -> ApprovalRequest {
    let (pending, _) = required(call(store, TOOL, hash, t0()));
    store
        .decide(&pending.id, granted("ops-lead", at(10)))
        .unwrap()
}

#[test]
fn krn09_request_grant_runs_once_then_asks_again() {
    let (_dir, store) = store();
    let hash = hash_of(json!({"bundle": "b-1", "records": ["r1", "r2"]}));

    let (pending, newly) = required(call(&store, TOOL, &hash, t0()));
    assert!(newly);
    assert!(
        pending.id.starts_with("apr_") && pending.id.len() == 24,
        "{}",
        pending.id
    );
    assert_eq!(pending.tool, TOOL);
    assert_eq!(pending.input_hash, hash);
    assert_eq!(pending.task.as_deref(), Some("WU-1"));
    assert_eq!(pending.run.as_deref(), Some("run-1"));
    assert_eq!(pending.requested_by, "agent-7");
    assert_eq!(pending.requested_at, t0());
    assert_eq!(pending.expires_at, at(24 * 3600));
    assert_eq!(
        pending.required_approval_ids,
        vec!["ws.export.approval", TOOL]
    );
    assert_eq!(pending.status(t0()), ApprovalStatus::Pending);

    let decided = store
        .decide(&pending.id, granted("ops-lead", at(10)))
        .unwrap();
    assert_eq!(decided.status(at(11)), ApprovalStatus::Granted);
    let Some(Decision::Granted {
        approver,
        reason,
        decided_at,
    }) = &decided.decision
    else {
        panic!("{decided:?}")
    };
    assert_eq!(
        (approver.as_str(), reason.as_str(), *decided_at),
        ("ops-lead", "looked at the export", at(10))
    );

    // The retry with the same input runs once, with the grant's id.
    let id = proceeded(call(&store, TOOL, &hash, at(20)));
    assert_eq!(id, pending.id);
    let consumed = store.get(&id).unwrap();
    assert_eq!(consumed.status(at(21)), ApprovalStatus::Consumed);
    assert_eq!(consumed.consumed_at, Some(at(20)));

    // A second call with the same input asks again: a new request, the grant is not reused.
    let (again, newly) = required(call(&store, TOOL, &hash, at(30)));
    assert!(newly);
    assert_ne!(again.id, id);
    assert_eq!(again.status(at(30)), ApprovalStatus::Pending);
    assert_eq!(
        code(store.consume(&id, TOOL, &hash, at(31))),
        "APPROVAL_ALREADY_CONSUMED"
    );
    // Granting or denying a consumed approval is refused too.
    assert_eq!(
        code(store.decide(&id, granted("x", at(32)))),
        "APPROVAL_ALREADY_CONSUMED"
    );
    assert_eq!(
        code(store.decide(&id, denied("x", at(32)))),
        "APPROVAL_ALREADY_CONSUMED"
    );
}

#[test]
fn krn09_a_grant_is_bound_to_its_tool_and_input() {
    let (_dir, store) = store();
    let hash = hash_of(json!({"bundle": "b-1"}));
    let other_input = hash_of(json!({"bundle": "b-2"}));
    let grant = granted_request(&store, &hash);

    // Consuming it for another input or another tool is refused by the binding.
    for (tool, h) in [
        (TOOL, other_input.as_str()),
        ("fs:write", hash.as_str()),
        ("fs:write", other_input.as_str()),
    ] {
        let err = store.consume(&grant.id, tool, h, at(20)).unwrap_err();
        assert_eq!(err.code(), "APPROVAL_BINDING_MISMATCH", "{tool} {h}");
        assert!(err.to_string().contains(&grant.id), "{err}");
    }
    // Through the gate, other input or another tool does not proceed: it asks for itself.
    let (asked, newly) = required(call(&store, TOOL, &other_input, at(20)));
    assert!(newly);
    assert_ne!(asked.id, grant.id);
    assert_eq!(asked.input_hash, other_input);
    let (asked, _) = required(call(&store, "fs:write", &hash, at(20)));
    assert_eq!(asked.tool, "fs:write");

    // The refusals did not use the grant up: the bound call still runs, once.
    assert_eq!(proceeded(call(&store, TOOL, &hash, at(30))), grant.id);
    required(call(&store, TOOL, &hash, at(31)));
}

#[test]
fn krn09_the_same_input_in_another_key_order_is_the_same_call() {
    let a = hash_of(json!({"a": 1, "b": [1, 2, {"y": true, "x": null}]}));
    let b: Value = serde_json::from_str(r#"{"b":[1,2,{"x":null,"y":true}],"a":1.0}"#).unwrap();
    assert_eq!(a, input_hash(&b));
    assert!(a.starts_with("sha256:") && a.len() == 71, "{a}");
    assert_ne!(
        a,
        hash_of(json!({"a": 2, "b": [1, 2, {"y": true, "x": null}]}))
    );
}

#[test]
fn krn09_expiry_is_deny() {
    let (_dir, store) = store();
    let hash = hash_of(json!({"n": 1}));
    let short = GateContext {
        ttl: Duration::from_secs(60),
        ..ctx()
    };
    let Gate::Required {
        approval: pending, ..
    } = gate(&store, TOOL, &hash, short.clone(), t0()).unwrap()
    else {
        panic!()
    };
    assert_eq!(pending.expires_at, at(60));
    // Valid up to and including `expires_at`, expired a millisecond later.
    assert_eq!(pending.status(at(60)), ApprovalStatus::Pending);
    let late = Timestamp::from_unix_millis(at(60).unix_millis() + 1);
    assert_eq!(pending.status(late), ApprovalStatus::Expired);
    // An expired request cannot be granted (nor denied)...
    assert_eq!(
        code(store.decide(&pending.id, granted("ops", late))),
        "APPROVAL_EXPIRED"
    );
    assert_eq!(
        code(store.decide(&pending.id, denied("ops", late))),
        "APPROVAL_EXPIRED"
    );
    // ...and is not reused: the next call makes a new request.
    let (fresh, newly) = required(gate(&store, TOOL, &hash, short.clone(), at(61)).unwrap());
    assert!(newly);
    assert_ne!(fresh.id, pending.id);

    // A grant expires with its request: an unused grant past `expires_at` never proceeds.
    store.decide(&fresh.id, granted("ops", at(62))).unwrap();
    let after = at(61 + 60 + 1);
    assert_eq!(
        store.get(&fresh.id).unwrap().status(after),
        ApprovalStatus::Expired
    );
    assert_eq!(
        code(store.consume(&fresh.id, TOOL, &hash, after)),
        "APPROVAL_EXPIRED"
    );
    let (third, newly) = required(call(&store, TOOL, &hash, after));
    assert!(newly);
    assert_ne!(third.id, fresh.id);
    // Listed as expired.
    let expired = store
        .list(&ApprovalFilter::status(ApprovalStatus::Expired, after))
        .unwrap();
    let ids: BTreeSet<_> = expired.approvals.iter().map(|a| a.id.as_str()).collect();
    assert_eq!(
        ids,
        BTreeSet::from([pending.id.as_str(), fresh.id.as_str()])
    );
}

#[test]
fn krn09_a_deny_is_final() {
    let (_dir, store) = store();
    let hash = hash_of(json!({"n": 2}));
    let (pending, _) = required(call(&store, TOOL, &hash, t0()));
    let d = store
        .decide(&pending.id, denied("security", at(5)))
        .unwrap();
    assert_eq!(d.status(at(6)), ApprovalStatus::Denied);

    let err = store
        .decide(&pending.id, granted("ops", at(6)))
        .unwrap_err();
    assert_eq!(err.code(), "APPROVAL_ALREADY_DECIDED");
    assert!(
        err.to_string().contains("denied") && err.to_string().contains("security"),
        "{err}"
    );
    assert_eq!(
        code(store.decide(&pending.id, denied("ops", at(6)))),
        "APPROVAL_ALREADY_DECIDED"
    );
    assert_eq!(
        code(store.consume(&pending.id, TOOL, &hash, at(6))),
        "APPROVAL_NOT_GRANTED"
    );
    assert_eq!(store.get(&pending.id).unwrap().decision, d.decision);

    // The denied request never proceeds; a new call creates a new request.
    let (next, newly) = required(call(&store, TOOL, &hash, at(7)));
    assert!(newly);
    assert_ne!(next.id, pending.id);
    // A grant is final the same way.
    store.decide(&next.id, granted("ops", at(8))).unwrap();
    assert_eq!(
        code(store.decide(&next.id, denied("security", at(9)))),
        "APPROVAL_ALREADY_DECIDED"
    );
    assert_eq!(
        code(store.decide(&next.id, granted("ops", at(9)))),
        "APPROVAL_ALREADY_DECIDED"
    );
}

#[test]
fn krn09_pending_requests_are_not_duplicated() {
    let (_dir, store) = store();
    let hash = hash_of(json!({"n": 3}));
    let (first, newly) = required(call(&store, TOOL, &hash, t0()));
    assert!(newly);
    for s in 1..5 {
        let (again, newly) = required(call(&store, TOOL, &hash, at(s)));
        assert!(!newly);
        assert_eq!(again.id, first.id);
    }
    // Another handle on the same folder (another process) sees and reuses it too.
    let other = LocalApprovals::at(store.dir());
    let (again, newly) = required(call(&other, TOOL, &hash, at(9)));
    assert!(!newly);
    assert_eq!(again.id, first.id);
    // Other input: its own request.
    let (second, newly) = required(call(&store, TOOL, &hash_of(json!({"n": 4})), at(10)));
    assert!(newly);
    assert_ne!(second.id, first.id);
    let all = store.list(&ApprovalFilter::all(at(11))).unwrap();
    assert_eq!(all.approvals.len(), 2);
    assert!(all.unreadable.is_empty());
}

#[test]
fn krn09_one_grant_proceeds_once_under_eight_threads() {
    for round in 0..10 {
        let (_dir, store) = store();
        let store = Arc::new(store);
        let hash = hash_of(json!({"round": round}));
        let grant = granted_request(&store, &hash);
        let barrier = Arc::new(Barrier::new(8));
        let results: Vec<Gate> = (0..8)
            .map(|i| {
                let (store, barrier, hash) =
                    (Arc::clone(&store), Arc::clone(&barrier), hash.clone());
                // Half the threads share the handle, half open their own (as another process would).
                let own = (i % 2 == 1).then(|| LocalApprovals::at(store.dir()));
                thread::spawn(move || {
                    barrier.wait();
                    let provider: &dyn ApprovalProvider = match &own {
                        Some(own) => own,
                        None => &*store,
                    };
                    gate(provider, TOOL, &hash, ctx(), at(20)).unwrap()
                })
            })
            .collect::<Vec<_>>()
            .into_iter()
            .map(|h| h.join().unwrap())
            .collect();
        let proceeds: Vec<_> = results
            .iter()
            .filter_map(|g| match g {
                Gate::Proceed { approval_id, .. } => Some(approval_id.clone()),
                Gate::Required { .. } => None,
            })
            .collect();
        assert_eq!(proceeds, vec![grant.id.clone()], "round {round}");
        // The seven others all got APPROVAL_REQUIRED for a pending request of this call.
        for g in &results {
            if let Gate::Required { approval, .. } = g {
                assert_eq!(approval.status(at(20)), ApprovalStatus::Pending);
                assert!(approval.is_bound_to(TOOL, &hash));
            }
        }
        assert_eq!(
            store.get(&grant.id).unwrap().status(at(21)),
            ApprovalStatus::Consumed
        );
    }
}

#[test]
fn krn09_threads_sharing_a_handle_create_one_pending_request() {
    let (_dir, store) = store();
    let store = Arc::new(store);
    let hash = hash_of(json!({"shared": true}));
    let barrier = Arc::new(Barrier::new(8));
    let results: Vec<(ApprovalRequest, bool)> = (0..8)
        .map(|_| {
            let (store, barrier, hash) = (Arc::clone(&store), Arc::clone(&barrier), hash.clone());
            thread::spawn(move || {
                barrier.wait();
                required(call(&*store, TOOL, &hash, t0()))
            })
        })
        .collect::<Vec<_>>()
        .into_iter()
        .map(|h| h.join().unwrap())
        .collect();
    let ids: BTreeSet<_> = results.iter().map(|(a, _)| a.id.clone()).collect();
    assert_eq!(ids.len(), 1, "{ids:?}");
    assert_eq!(results.iter().filter(|(_, newly)| *newly).count(), 1);
}

#[test]
fn krn09_handles_on_one_folder_create_one_pending_request() {
    // As two processes would (a sidecar and a `lumenflow tool call` asking for one call): each
    // thread has its own handle, so only the folder's lock file can make them agree.
    for round in 0..5 {
        let (_dir, store) = store();
        let hash = hash_of(json!({"handles": round}));
        let barrier = Arc::new(Barrier::new(8));
        let results: Vec<(ApprovalRequest, bool)> = (0..8)
            .map(|_| {
                let (own, barrier, hash) = (
                    LocalApprovals::at(store.dir()),
                    Arc::clone(&barrier),
                    hash.clone(),
                );
                thread::spawn(move || {
                    barrier.wait();
                    required(call(&own, TOOL, &hash, t0()))
                })
            })
            .collect::<Vec<_>>()
            .into_iter()
            .map(|h| h.join().unwrap())
            .collect();
        let ids: BTreeSet<_> = results.iter().map(|(a, _)| a.id.clone()).collect();
        assert_eq!(ids.len(), 1, "round {round}: {ids:?}");
        assert_eq!(results.iter().filter(|(_, newly)| *newly).count(), 1);
        let all = store.list(&ApprovalFilter::all(at(1))).unwrap();
        assert_eq!((all.approvals.len(), all.unreadable.len()), (1, 0));
    }
}

/// The child of `krn09_grants_are_consumed_once_across_processes`: waits for the parent's go,
/// calls `gate` [`CHILD_CALLS`] times and prints `proceed <id>` or `required <id>` per call. Does
/// nothing unless the parent set `LUMENFLOW_APPROVALS_CHILD` to the store's folder.
#[test]
fn child_gate_caller() {
    let Some(dir) = std::env::var_os(CHILD_ENV) else {
        return;
    };
    let dir = Path::new(&dir);
    let hash = fs::read_to_string(dir.join("hash")).expect("hash file");
    let store = LocalApprovals::at(dir);
    fs::write(dir.join(format!("ready-{}", std::process::id())), b"").expect("ready file");
    while !dir.join("go").exists() {
        thread::sleep(Duration::from_millis(1));
    }
    for _ in 0..CHILD_CALLS {
        match gate(&store, TOOL, hash.trim(), ctx(), at(20)).expect("child gate") {
            Gate::Proceed { approval_id, .. } => println!("proceed {approval_id}"),
            Gate::Required { approval, .. } => println!("required {}", approval.id),
        }
    }
}

#[test]
fn krn09_grants_are_consumed_once_across_processes() {
    let exe = std::env::current_exe().unwrap();
    let (_dir, store) = store();
    let hash = hash_of(json!({"processes": 2}));
    // As many grants for this call as one child makes calls: the two children race for them.
    let mut grants = BTreeSet::new();
    for i in 0..CHILD_CALLS {
        let req = NewApproval {
            tool: TOOL.into(),
            input_hash: hash.clone(),
            task: None,
            run: None,
            requested_by: "agent".into(),
            reason: String::new(),
            required_approval_ids: Vec::new(),
            requested_at: at(i as i64),
            ttl: DEFAULT_TTL,
        };
        let pending = store.request(req).unwrap();
        store.decide(&pending.id, granted("ops", at(10))).unwrap();
        grants.insert(pending.id);
    }
    fs::write(store.dir().join("hash"), &hash).unwrap();
    let children: Vec<_> = (0..2)
        .map(|_| {
            Command::new(&exe)
                .args([
                    "--exact",
                    "child_gate_caller",
                    "--nocapture",
                    "--test-threads=1",
                ])
                .env(CHILD_ENV, store.dir())
                .stdout(Stdio::piped())
                .stderr(Stdio::inherit())
                .spawn()
                .unwrap()
        })
        .collect();
    // Both children ready before either starts, so they really race.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while fs::read_dir(store.dir())
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .starts_with("ready-")
        })
        .count()
        < 2
        && std::time::Instant::now() < deadline
    {
        thread::sleep(Duration::from_millis(5));
    }
    fs::write(store.dir().join("go"), b"").unwrap();
    let mut proceeded = Vec::new();
    for mut child in children {
        let out = BufReader::new(child.stdout.take().unwrap());
        for line in out.lines() {
            let line = line.unwrap();
            // libtest may print its own `test child_gate_caller ... ` in front of the first line.
            if let Some((_, id)) = line.split_once("proceed ") {
                proceeded.push(id.trim().to_string());
            }
        }
        assert!(child.wait().unwrap().success());
    }
    // Every grant ran exactly once: no id twice, none left over.
    let unique: BTreeSet<_> = proceeded.iter().cloned().collect();
    assert_eq!(
        unique.len(),
        proceeded.len(),
        "a grant proceeded twice: {proceeded:?}"
    );
    assert_eq!(unique, grants);
    for id in &grants {
        assert_eq!(
            store.get(id).unwrap().status(at(30)),
            ApprovalStatus::Consumed
        );
    }
}

/// Damage one approval's files; the store must never take the result for a grant.
fn assert_never_a_grant(store: &LocalApprovals, id: &str, hash: &str, damaged: &Path) {
    assert_eq!(
        store.find_grant(TOOL, hash, at(20)).unwrap(),
        None,
        "{}",
        damaged.display()
    );
    let err = store.consume(id, TOOL, hash, at(20)).unwrap_err();
    assert_eq!(err.code(), "APPROVAL_STORE_CORRUPT", "{err}");
    let err = store.get(id).unwrap_err();
    assert_eq!(err.code(), "APPROVAL_STORE_CORRUPT");
    let name = damaged.file_name().unwrap().to_str().unwrap();
    assert!(err.to_string().contains(name), "{err}");
    assert_eq!(
        code(store.decide(id, granted("ops", at(20)))),
        "APPROVAL_STORE_CORRUPT"
    );
    // The gate asks again instead of proceeding, and the listing names the file.
    let (asked, _) = required(call(store, TOOL, hash, at(20)));
    assert_ne!(asked.id, id);
    let list = store.list(&ApprovalFilter::all(at(20))).unwrap();
    assert!(list.approvals.iter().all(|a| a.id != id));
    assert!(
        list.unreadable
            .iter()
            .any(|u| u.file.contains(id) && u.reason.contains(name)),
        "{:?}",
        list.unreadable
    );
}

#[test]
fn krn09_a_damaged_store_never_yields_a_grant() {
    type Damage = fn(&Path, &str);
    let damages: [(&str, &str, Damage); 8] = [
        ("garbage record", "json", |p, _| {
            fs::write(p, b"{not json").unwrap()
        }),
        ("empty record", "json", |p, _| fs::write(p, b"").unwrap()),
        ("truncated record", "json", |p, _| {
            let text = fs::read(p).unwrap();
            fs::write(p, &text[..text.len() / 2]).unwrap()
        }),
        ("record of another id", "json", |p, id| {
            let text = fs::read_to_string(p).unwrap();
            fs::write(p, text.replace(id, "apr_00000000000000000000")).unwrap()
        }),
        ("record with an unknown field", "json", |p, _| {
            let mut v: Value = serde_json::from_slice(&fs::read(p).unwrap()).unwrap();
            v["granted"] = json!(true);
            fs::write(p, serde_json::to_vec(&v).unwrap()).unwrap()
        }),
        ("garbage decision", "decision", |p, _| {
            fs::write(p, b"granted").unwrap()
        }),
        ("decision that differs from the copy", "decision", |p, _| {
            let mut v: Value = serde_json::from_slice(&fs::read(p).unwrap()).unwrap();
            v["decision"]["approver"] = json!("mallory");
            fs::write(p, serde_json::to_vec(&v).unwrap()).unwrap()
        }),
        ("record is a folder", "json", |p, _| {
            fs::remove_file(p).unwrap();
            fs::create_dir(p).unwrap()
        }),
    ];
    for (what, ext, damage) in damages {
        let (_dir, store) = store();
        let hash = hash_of(json!({"damage": what}));
        let grant = granted_request(&store, &hash);
        let file = store.dir().join(format!("{}.{ext}", grant.id));
        damage(&file, &grant.id);
        assert_never_a_grant(&store, &grant.id, &hash, &file);
    }
}

#[test]
fn krn09_a_grant_written_by_hand_is_not_a_grant() {
    // A record that claims a decision the store never arbitrated (no `<id>.decision`).
    let (_dir, store) = store();
    let hash = hash_of(json!({"forged": true}));
    let (pending, _) = required(call(&store, TOOL, &hash, t0()));
    let path = store.record_path(&pending.id);
    let mut v: Value = serde_json::from_slice(&fs::read(&path).unwrap()).unwrap();
    v["decision"] = serde_json::to_value(granted("mallory", at(1))).unwrap();
    fs::write(&path, serde_json::to_vec_pretty(&v).unwrap()).unwrap();
    assert_never_a_grant(&store, &pending.id, &hash, &path);
}

#[test]
fn krn09_crash_windows_fail_closed() {
    // Crash after the decision was published but before the record got its copy: granted.
    let (_dir, store) = store();
    let hash = hash_of(json!({"crash": 1}));
    let (pending, _) = required(call(&store, TOOL, &hash, t0()));
    let before = fs::read(store.record_path(&pending.id)).unwrap();
    store.decide(&pending.id, granted("ops", at(1))).unwrap();
    fs::write(store.record_path(&pending.id), before).unwrap();
    let g = store.get(&pending.id).unwrap();
    assert_eq!(g.status(at(2)), ApprovalStatus::Granted);
    assert_eq!(g.decision.as_ref().map(Decision::approver), Some("ops"));

    // Crash while writing the consumed marker (empty file): consumed, never run again.
    let marker = store.dir().join(format!("{}.consumed", pending.id));
    fs::write(&marker, b"").unwrap();
    assert_eq!(
        store.get(&pending.id).unwrap().status(at(2)),
        ApprovalStatus::Consumed
    );
    assert_eq!(store.find_grant(TOOL, &hash, at(2)).unwrap(), None);
    assert_eq!(
        code(store.consume(&pending.id, TOOL, &hash, at(2))),
        "APPROVAL_ALREADY_CONSUMED"
    );
    required(call(&store, TOOL, &hash, at(3)));

    // Leftover temporary files from a crash are ignored.
    fs::write(store.dir().join(".apr-tmp-abc"), b"{}").unwrap();
    assert!(store
        .list(&ApprovalFilter::all(at(4)))
        .unwrap()
        .unreadable
        .is_empty());
}

#[test]
fn krn09_reopening_the_store_sees_everything() {
    let dir = tempfile::tempdir().unwrap();
    let (pending, granted_one, denied_one, consumed_one);
    {
        let store = LocalApprovals::open(dir.path());
        pending = required(call(&store, TOOL, &hash_of(json!({"k": "pending"})), t0())).0;
        let g = hash_of(json!({"k": "granted"}));
        granted_one = granted_request(&store, &g);
        let d = required(call(&store, TOOL, &hash_of(json!({"k": "denied"})), t0())).0;
        denied_one = store.decide(&d.id, denied("security", at(3))).unwrap();
        let c = hash_of(json!({"k": "consumed"}));
        granted_request(&store, &c);
        consumed_one = store
            .get(&proceeded(call(&store, TOOL, &c, at(20))))
            .unwrap();
    }
    let reopened = LocalApprovals::open(dir.path());
    assert_eq!(reopened.dir(), approvals_dir(dir.path()));
    assert!(reopened.dir().ends_with(".lumenflow/state/approvals"));
    for (before, status) in [
        (&pending, ApprovalStatus::Pending),
        (&granted_one, ApprovalStatus::Granted),
        (&denied_one, ApprovalStatus::Denied),
        (&consumed_one, ApprovalStatus::Consumed),
    ] {
        let after = reopened.get(&before.id).unwrap();
        assert_eq!(&after, before);
        assert_eq!(after.status(at(30)), status);
        let listed = reopened
            .list(&ApprovalFilter::status(status, at(30)))
            .unwrap();
        assert_eq!(listed.approvals, vec![after]);
    }
    // The reopened store still proceeds the granted one exactly once.
    let g = hash_of(json!({"k": "granted"}));
    assert_eq!(proceeded(call(&reopened, TOOL, &g, at(40))), granted_one.id);
    required(call(&reopened, TOOL, &g, at(41)));
}

#[test]
fn krn09_on_disk_format() {
    let (_dir, store) = store();
    let hash = hash_of(json!({"format": 1}));
    let grant = granted_request(&store, &hash);
    proceeded(call(&store, TOOL, &hash, at(20)));
    let read = |ext: &str| -> Value {
        serde_json::from_slice(&fs::read(store.dir().join(format!("{}.{ext}", grant.id))).unwrap())
            .unwrap()
    };
    let record = read("json");
    assert_eq!(
        record,
        json!({
            "schema_version": 1,
            "id": grant.id,
            "tool": TOOL,
            "input_hash": hash,
            "task": "WU-1",
            "run": "run-1",
            "requested_by": "agent-7",
            "requested_at": "2026-04-20T00:00:00.000Z",
            "expires_at": "2026-04-21T00:00:00.000Z",
            "reason": "rule `ws.export.approval` requires approval",
            "required_approval_ids": ["ws.export.approval", TOOL],
            "decision": {
                "outcome": "granted",
                "approver": "ops-lead",
                "reason": "looked at the export",
                "decided_at": "2026-04-20T00:00:10.000Z"
            }
        })
    );
    assert_eq!(
        read("decision"),
        json!({"schema_version": 1, "id": grant.id, "decision": record["decision"]})
    );
    assert_eq!(
        read("consumed"),
        json!({"schema_version": 1, "id": grant.id, "tool": TOOL, "input_hash": hash,
               "consumed_at": "2026-04-20T00:00:20.000Z"})
    );
    // Nothing else (but the empty lock file of requests): the tool input itself lives in the
    // evidence store, not here.
    assert_eq!(fs::read(store.dir().join(".create.lock")).unwrap(), b"");
    let mut names: Vec<_> = fs::read_dir(store.dir())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n != ".create.lock")
        .collect();
    names.sort();
    assert_eq!(
        names,
        [".consumed", ".decision", ".json"].map(|ext| format!("{}{ext}", grant.id))
    );
}

#[test]
fn krn09_bad_arguments_are_refused() {
    let (_dir, store) = store();
    for bad in [
        "",
        "sha256:xyz",
        "abc",
        &format!("sha256:{}", "A".repeat(64)),
        &"0".repeat(64),
    ] {
        assert_eq!(
            code(gate(&store, TOOL, bad, ctx(), t0())),
            "INVALID_ARGUMENT",
            "{bad:?}"
        );
    }
    let hash = hash_of(json!({}));
    assert_eq!(
        code(gate(&store, " ", &hash, ctx(), t0())),
        "INVALID_ARGUMENT"
    );
    assert_eq!(
        code(gate(
            &store,
            TOOL,
            &hash,
            GateContext {
                requested_by: String::new(),
                ..ctx()
            },
            t0()
        )),
        "INVALID_ARGUMENT"
    );
    // Ids the store never issues, including ones that would leave the folder, are not found.
    for id in [
        "apr_nope",
        "../../workspace.yaml",
        "apr_../../../../../etc",
        "",
        "apr_0123456789abcdefghjk/..",
    ] {
        assert_eq!(code(store.get(id)), "APPROVAL_NOT_FOUND", "{id}");
        assert_eq!(
            code(store.decide(id, granted("ops", t0()))),
            "APPROVAL_NOT_FOUND",
            "{id}"
        );
        assert_eq!(
            code(store.consume(id, TOOL, &hash, t0())),
            "APPROVAL_NOT_FOUND",
            "{id}"
        );
    }
    // A blank approver or reason is refused, and the request stays pending.
    let (pending, _) = required(call(&store, TOOL, &hash, t0()));
    for d in [
        Decision::Granted {
            approver: "ops".into(),
            reason: "  ".into(),
            decided_at: at(1),
        },
        Decision::Denied {
            approver: String::new(),
            reason: "no".into(),
            decided_at: at(1),
        },
    ] {
        assert_eq!(code(store.decide(&pending.id, d)), "INVALID_ARGUMENT");
    }
    assert_eq!(
        store.get(&pending.id).unwrap().status(at(2)),
        ApprovalStatus::Pending
    );
    // A store folder that does not exist yet is simply empty.
    let empty = LocalApprovals::at(_dir.path().join("nowhere"));
    assert_eq!(
        empty.list(&ApprovalFilter::all(t0())).unwrap().approvals,
        vec![]
    );
    assert_eq!(empty.find_grant(TOOL, &hash, t0()).unwrap(), None);
}

#[test]
fn krn09_required_message_names_the_approval() {
    let (_dir, store) = store();
    let (pending, _) = required(call(&store, TOOL, &hash_of(json!({"m": 1})), t0()));
    let msg = lumenflow_kernel::approvals::required_message(&pending);
    assert!(
        msg.contains(&pending.id) && msg.contains("lumenflow approvals grant"),
        "{msg}"
    );
    assert!(msg.contains("ws.export.approval"), "{msg}");
    assert_eq!(APPROVAL_REQUIRED, "APPROVAL_REQUIRED");
}

// ---------------------------------------------------------------------------------------------
// Model-based: random operations against the real store and an in-memory model.

#[derive(Debug, Clone)]
enum Op {
    /// `gate` for input `n`.
    Gate(u8),
    /// Grant or deny the `k`-th approval created so far (modulo), `grant` = true to grant.
    Decide(usize, bool),
    /// Consume the `k`-th approval for input `n` (which may not be its own).
    Consume(usize, u8),
    /// Let time pass (seconds).
    Advance(u32),
    /// Drop the handle and open the folder again.
    Reopen,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0u8..3).prop_map(Op::Gate),
        3 => (0usize..64, any::<bool>()).prop_map(|(k, g)| Op::Decide(k, g)),
        2 => (0usize..64, 0u8..3).prop_map(|(k, n)| Op::Consume(k, n)),
        1 => (1u32..400).prop_map(Op::Advance),
        1 => Just(Op::Reopen),
    ]
}

#[derive(Debug, Clone, PartialEq)]
struct Model {
    input: u8,
    expires_at: Timestamp,
    decision: Option<bool>,
    consumed: bool,
}

impl Model {
    fn status(&self, now: Timestamp) -> ApprovalStatus {
        match (self.consumed, self.decision) {
            (true, _) => ApprovalStatus::Consumed,
            (_, Some(false)) => ApprovalStatus::Denied,
            _ if now > self.expires_at => ApprovalStatus::Expired,
            (_, Some(true)) => ApprovalStatus::Granted,
            (_, None) => ApprovalStatus::Pending,
        }
    }
}

fn run_model(ops: Vec<Op>) -> Result<(), TestCaseError> {
    let dir = tempfile::tempdir().unwrap();
    let mut store = LocalApprovals::open(dir.path());
    let hashes: Vec<String> = (0..3).map(|n| hash_of(json!({"model": n}))).collect();
    let ttl = Duration::from_secs(600);
    let mut now = t0();
    let mut model: BTreeMap<String, Model> = BTreeMap::new();
    let mut order: Vec<String> = Vec::new();
    for op in ops {
        match op {
            Op::Gate(n) => {
                let h = &hashes[usize::from(n)];
                let expect_grant = order
                    .iter()
                    .filter(|id| {
                        model[*id].input == n && model[*id].status(now) == ApprovalStatus::Granted
                    })
                    .min_by_key(|id| (model[*id].expires_at, (*id).clone()))
                    .cloned();
                let expect_pending = order
                    .iter()
                    .find(|id| {
                        model[*id].input == n && model[*id].status(now) == ApprovalStatus::Pending
                    })
                    .cloned();
                let g = gate(&store, TOOL, h, GateContext { ttl, ..ctx() }, now).unwrap();
                match (g, expect_grant) {
                    (Gate::Proceed { approval_id, .. }, Some(id)) => {
                        prop_assert_eq!(&approval_id, &id);
                        model.get_mut(&id).unwrap().consumed = true;
                    }
                    (
                        Gate::Required {
                            approval,
                            newly_created,
                        },
                        None,
                    ) => {
                        prop_assert_eq!(newly_created, expect_pending.is_none());
                        if let Some(p) = expect_pending {
                            prop_assert_eq!(&approval.id, &p);
                        } else {
                            prop_assert!(!model.contains_key(&approval.id));
                            model.insert(
                                approval.id.clone(),
                                Model {
                                    input: n,
                                    expires_at: approval.expires_at,
                                    decision: None,
                                    consumed: false,
                                },
                            );
                            order.push(approval.id);
                        }
                    }
                    (g, expected) => {
                        prop_assert!(false, "gate {g:?}, model expected grant {expected:?}")
                    }
                }
            }
            Op::Decide(k, grant) if !order.is_empty() => {
                let id = order[k % order.len()].clone();
                let d = if grant {
                    granted("ops", now)
                } else {
                    denied("ops", now)
                };
                let expected = match model[&id].status(now) {
                    ApprovalStatus::Pending => Ok(()),
                    ApprovalStatus::Granted | ApprovalStatus::Denied => {
                        Err("APPROVAL_ALREADY_DECIDED")
                    }
                    ApprovalStatus::Consumed => Err("APPROVAL_ALREADY_CONSUMED"),
                    ApprovalStatus::Expired => Err("APPROVAL_EXPIRED"),
                };
                let got = store.decide(&id, d).map(|_| ()).map_err(|e| e.code());
                prop_assert_eq!(got, expected);
                if got.is_ok() {
                    model.get_mut(&id).unwrap().decision = Some(grant);
                }
            }
            Op::Consume(k, n) if !order.is_empty() => {
                let id = order[k % order.len()].clone();
                let m = &model[&id];
                let expected = if m.input != n {
                    Err("APPROVAL_BINDING_MISMATCH")
                } else {
                    match m.status(now) {
                        ApprovalStatus::Granted => Ok(()),
                        ApprovalStatus::Consumed => Err("APPROVAL_ALREADY_CONSUMED"),
                        ApprovalStatus::Expired => Err("APPROVAL_EXPIRED"),
                        ApprovalStatus::Pending | ApprovalStatus::Denied => {
                            Err("APPROVAL_NOT_GRANTED")
                        }
                    }
                };
                let got = store
                    .consume(&id, TOOL, &hashes[usize::from(n)], now)
                    .map(|_| ())
                    .map_err(|e| e.code());
                prop_assert_eq!(got, expected);
                if got.is_ok() {
                    model.get_mut(&id).unwrap().consumed = true;
                }
            }
            Op::Decide(..) | Op::Consume(..) => {}
            Op::Advance(s) => {
                now = Timestamp::from_unix_millis(now.unix_millis() + i64::from(s) * 1000)
            }
            Op::Reopen => store = LocalApprovals::open(dir.path()),
        }
        // After every step the store and the model agree on every approval's status.
        let list = store.list(&ApprovalFilter::all(now)).unwrap();
        prop_assert!(list.unreadable.is_empty());
        let real: BTreeMap<String, ApprovalStatus> = list
            .approvals
            .iter()
            .map(|a| (a.id.clone(), a.status(now)))
            .collect();
        let expected: BTreeMap<String, ApprovalStatus> = model
            .iter()
            .map(|(id, m)| (id.clone(), m.status(now)))
            .collect();
        prop_assert_eq!(real, expected);
    }
    Ok(())
}

proptest! {
    #![proptest_config(Config { cases: 48, ..Config::default() })]

    #[test]
    fn krn09_the_store_matches_a_model(ops in prop::collection::vec(op(), 1..60)) {
        run_model(ops)?;
    }
}
