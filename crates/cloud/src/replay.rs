//! Replay: the chain of one run, assembled from stored events, approvals and sealed receipts
//! (TCD-11): Ask → Dispatch → Rules → Tool calls → Approvals → Proof.
//!
//! Events are placed in a stage by their kind (the families are open-ended, so the rule is a
//! keyword table, checked in order, with an `other` stage for the rest); within a stage they keep
//! the reconciliation order (timestamp, then `seq`).

use serde_json::{json, Value};

use crate::store::{ReceiptRow, StoredEvent};
use lumenflow_contracts::wire::ApprovalRecord;

/// The stages in chain order.
pub const STAGES: [&str; 6] = [
    "ask",
    "dispatch",
    "rules",
    "tool_calls",
    "approvals",
    "proof",
];

/// The stage of an event kind.
pub fn stage_of(kind: &str) -> &'static str {
    let name = kind.rsplit(':').next().unwrap_or(kind);
    const TABLE: &[(&str, &[&str])] = &[
        ("approvals", &["approval"]),
        ("tool_calls", &["tool_call", "tool_called", "tool_result"]),
        ("rules", &["policy", "rule", "gate", "decision", "scope"]),
        (
            "proof",
            &[
                "proof",
                "receipt",
                "evidence",
                "bundle",
                "attestation",
                "seal",
            ],
        ),
        (
            "dispatch",
            &[
                "dispatch",
                "run_started",
                "task_claimed",
                "turn_started",
                "started",
            ],
        ),
        (
            "ask",
            &["ask", "requested", "task_created", "run_created", "prompt"],
        ),
    ];
    for (stage, words) in TABLE {
        if words.iter().any(|w| name.contains(w)) {
            return stage;
        }
    }
    "other"
}

/// The kind whose payload states what a turn was asked to do.
pub const TURN_STARTED: &str = "agent-runtime:turn_started";

/// The Ask as the runtime reported it: who sent the turn request, when, and its goal.
fn turn_request(e: &StoredEvent) -> Value {
    json!({
        "source": "turn_request",
        "event_id": e.event.get("event_id"),
        "timestamp": e.event.get("timestamp"),
        "from": e.event.get("from"),
        "turn_id": e.event.pointer("/payload/turn_id"),
        "goal": e.event.pointer("/payload/goal"),
    })
}

/// The replay document of `run_id`.
pub fn assemble(
    run_id: &str,
    events: &[StoredEvent],
    approvals: &[ApprovalRecord],
    receipts: &[ReceiptRow],
) -> Value {
    let mut stages: Vec<(&str, Vec<Value>)> = STAGES
        .iter()
        .copied()
        .chain(std::iter::once("other"))
        .map(|s| (s, Vec::new()))
        .collect();
    let mut push = |stage: &str, item: Value| {
        if let Some((_, items)) = stages.iter_mut().find(|(s, _)| *s == stage) {
            items.push(item);
        }
    };
    for e in events {
        // No run record carries the Ask; a turn request does (its goal), so it opens the chain.
        if e.kind == TURN_STARTED {
            push("ask", turn_request(e));
        }
        push(
            stage_of(&e.kind),
            json!({"source": "event", "cursor": e.cursor, "channel": e.channel, "event": e.event}),
        );
    }
    for a in approvals {
        push("approvals", json!({"source": "approval", "approval": a}));
    }
    for r in receipts {
        push(
            "proof",
            json!({"source": "sealed_receipt", "receipt_id": r.receipt_id,
                   "content_digest": r.content_digest, "seal": r.seal, "receipt": r.receipt}),
        );
    }
    let workspaces: std::collections::BTreeSet<&str> =
        events.iter().map(|e| e.workspace_id.as_str()).collect();
    let stages: Vec<Value> = stages
        .into_iter()
        .filter(|(s, items)| *s != "other" || !items.is_empty())
        .map(|(s, items)| json!({"stage": s, "count": items.len(), "items": items}))
        .collect();
    json!({
        "run_id": run_id,
        "workspaces": workspaces,
        // Receipts alone are not a run: anyone with a token could seal one for a run that never
        // happened, so only the run's own events make the chain complete (walk-G F2).
        "complete": !events.is_empty(),
        "stages": stages,
    })
}

/// A minimal HTML view of a replay document (the web console is a later issue).
pub fn render_html(doc: &Value) -> String {
    let run = doc.get("run_id").and_then(Value::as_str).unwrap_or("");
    let mut out = format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>Replay {}</title></head><body><h1>Replay {}</h1>",
        escape(run),
        escape(run)
    );
    if let Some(stages) = doc.get("stages").and_then(Value::as_array) {
        for s in stages {
            let name = s.get("stage").and_then(Value::as_str).unwrap_or("");
            out.push_str(&format!("<h2>{}</h2><ol>", escape(name)));
            for item in s
                .get("items")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                out.push_str(&format!(
                    "<li><pre>{}</pre></li>",
                    escape(&item.to_string())
                ));
            }
            out.push_str("</ol>");
        }
    }
    out.push_str("</body></html>");
    out
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_fall_into_the_chain_stages() {
        for (kind, stage) in [
            ("agent-runtime:turn_started", "dispatch"),
            ("agent-runtime:tool_called", "tool_calls"),
            ("sidekick:approval_requested", "approvals"),
            ("campus:proof_bundle_exported", "proof"),
            ("kernel:policy_decided", "rules"),
            ("task_created", "ask"),
            ("acme:heartbeat", "other"),
        ] {
            assert_eq!(stage_of(kind), stage, "{kind}");
        }
    }

    #[test]
    fn a_turn_request_fills_the_ask_stage() {
        let event = |kind: &str, payload: Value| StoredEvent {
            cursor: 1,
            workspace_id: "ws".into(),
            kind: kind.into(),
            ts_ms: 0,
            seq: None,
            channel: "ws".into(),
            run_id: Some("r".into()),
            event: json!({"kind": kind, "from": "ws", "timestamp": "t", "payload": payload}),
        };
        let doc = assemble(
            "r",
            &[event(
                TURN_STARTED,
                json!({"turn_id": "turn-1", "goal": "fix the test"}),
            )],
            &[],
            &[],
        );
        let stage = |name: &str| {
            doc["stages"]
                .as_array()
                .and_then(|s| s.iter().find(|s| s["stage"] == name))
                .cloned()
                .unwrap_or(Value::Null)
        };
        assert_eq!(stage("ask")["count"], 1);
        assert_eq!(stage("ask")["items"][0]["source"], "turn_request");
        assert_eq!(stage("ask")["items"][0]["goal"], "fix the test");
        // The event itself stays where its kind puts it.
        assert_eq!(stage("dispatch")["count"], 1);
    }
}
