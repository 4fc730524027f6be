//! The Live events page's stream: server-sent events for one workspace, filtered by kind and
//! run, authorised by the operator's session (an `EventSource` sends the cookie).
//!
//! A stream opens with the newest events of the filter, then tails the workspace by cursor from
//! the database: woken by this process's ingest broadcast, and polling besides, so it also sees
//! events another control-plane process stored. A reconnect resumes after `Last-Event-ID`.
//!
//! The session is checked again every [`SESSION_RECHECK`] while the stream is open: after a
//! logout, an expiry or the operator's removal the stream sends one `session_ended` event and
//! closes, and the browser's reconnect then gets 401. Events stop within that interval.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use futures_util::stream::Stream;
use lumenflow_contracts::identity::check_id;
use lumenflow_contracts::time::Timestamp;
use serde::Deserialize;
use serde_json::json;
use tokio::sync::{broadcast, watch};

use super::session::Operator;
use crate::error::{CloudError, CloudResult};
use crate::server::{LiveEvent, Shared};
use crate::store::{now_ms, Store, StoredEvent};

/// How many of the newest events a fresh stream starts with.
const BACKLOG: u32 = 200;
/// How often a stream looks at the database when nothing woke it.
const POLL: Duration = Duration::from_millis(500);
/// How often an open stream re-checks its session.
const SESSION_RECHECK: Duration = Duration::from_secs(2);
/// The longest kind or run id filter accepted.
const MAX_FILTER_CHARS: usize = 200;

#[derive(Deserialize)]
struct StreamParams {
    workspace_id: String,
    kind: Option<String>,
    run_id: Option<String>,
}

/// The store's kind filter, in Rust: `pack:` is a prefix, anything else an exact kind.
fn kind_matches(filter: &str, kind: &str) -> bool {
    if filter.ends_with(':') {
        kind.starts_with(filter)
    } else {
        kind == filter
    }
}

fn filter(value: Option<String>, field: &str) -> CloudResult<Option<String>> {
    match value
        .map(|v| v.trim().to_string())
        .filter(|v| !v.is_empty())
    {
        Some(v) if v.chars().count() > MAX_FILTER_CHARS => Err(CloudError::BadRequest(format!(
            "`{field}` is longer than {MAX_FILTER_CHARS} characters"
        ))),
        other => Ok(other),
    }
}

async fn stream(
    State(state): State<Shared>,
    op: Operator,
    headers: HeaderMap,
    params: Result<Query<StreamParams>, axum::extract::rejection::QueryRejection>,
) -> CloudResult<Response> {
    let Query(p) = params.map_err(|e| CloudError::BadRequest(e.body_text()))?;
    check_id(&p.workspace_id).map_err(|reason| {
        CloudError::BadRequest(format!("`workspace_id` is not a workspace id: {reason}"))
    })?;
    // A kind without `:` names a pack: `campus` shows every `campus:` event (walk-B: an
    // operator typing the pack's name got nothing, silently).
    let kind = filter(p.kind, "kind")?.map(|k| if k.contains(':') { k } else { format!("{k}:") });
    let run_id = filter(p.run_id, "run_id")?;
    let resume = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .map(|t| {
            t.trim().parse::<i64>().map_err(|_| {
                CloudError::BadRequest(format!("`Last-Event-ID` `{t}` is not an event cursor"))
            })
        })
        .transpose()?;
    let (buffer, last) = match resume {
        Some(after) => (VecDeque::new(), after),
        None => {
            let recent = match &run_id {
                // A run's events are found through its time span (`event_runs`), not by
                // scanning the workspace's newest events for it.
                Some(run) => {
                    let mut events: Vec<StoredEvent> = state
                        .store
                        .run_events(run, Some(&p.workspace_id))
                        .await?
                        .into_iter()
                        .filter(|e| kind.as_ref().is_none_or(|k| kind_matches(k, &e.kind)))
                        .collect();
                    // In cursor order, like the tail, so `Last-Event-ID` resumes exactly.
                    events.sort_by_key(|e| e.cursor);
                    let keep = events.len().saturating_sub(BACKLOG as usize);
                    events.drain(..keep);
                    events
                }
                None => {
                    state
                        .store
                        .recent_events(&p.workspace_id, kind.as_deref(), None, BACKLOG)
                        .await?
                }
            };
            // Tail from the newest event of the workspace, not of the filter: an unfiltered
            // newer event would otherwise be scanned again on every poll.
            let last = state.store.last_event_id(&p.workspace_id).await?;
            (recent.into_iter().collect(), last)
        }
    };
    let tail = Tail {
        store: state.store.clone(),
        workspace_id: p.workspace_id,
        kind,
        run_id,
        last,
        wake: state.live.subscribe(),
        buffer,
        session_hash: op.session_hash,
        session_checked: Instant::now(),
        ended: false,
        stopping: state.stopping.subscribe(),
    };
    Ok(Sse::new(tail_stream(tail))
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
        .into_response())
}

struct Tail {
    store: Store,
    workspace_id: String,
    kind: Option<String>,
    run_id: Option<String>,
    last: i64,
    wake: broadcast::Receiver<Arc<LiveEvent>>,
    buffer: VecDeque<StoredEvent>,
    session_hash: String,
    session_checked: Instant,
    /// The session ended and the stream said so: nothing more is sent.
    ended: bool,
    /// The server is stopping: the stream ends (the page reconnects).
    stopping: watch::Receiver<bool>,
}

impl Tail {
    /// Whether the session still stands (re-checked at most every [`SESSION_RECHECK`]). A
    /// failed check keeps the stream: the database being unreachable is not a logout, and the
    /// events query fails too, so nothing is sent meanwhile.
    async fn session_stands(&mut self) -> bool {
        if self.session_checked.elapsed() < SESSION_RECHECK {
            return true;
        }
        self.session_checked = Instant::now();
        match self.store.session_live(&self.session_hash, now_ms()).await {
            Ok(live) => live,
            Err(e) => {
                tracing::warn!(error = %e, "console event stream could not re-check its session");
                true
            }
        }
    }
}

fn session_ended() -> SseEvent {
    SseEvent::default().event("session_ended").data(
        json!({"code": "SESSION_REQUIRED", "message": "your console session has ended; log in again"})
            .to_string(),
    )
}

fn message(e: &StoredEvent) -> SseEvent {
    let data = json!({
        "cursor": e.cursor,
        "workspace_id": e.workspace_id,
        "kind": e.kind,
        "timestamp": Timestamp::from_unix_millis(e.ts_ms).to_rfc3339(),
        "seq": e.seq,
        "channel": e.channel,
        "run_id": e.run_id,
        "event": e.event,
    });
    SseEvent::default()
        .id(e.cursor.to_string())
        .event("event")
        .data(data.to_string())
}

fn tail_stream(tail: Tail) -> impl Stream<Item = Result<SseEvent, std::convert::Infallible>> {
    futures_util::stream::unfold(tail, |mut t| async move {
        loop {
            if t.ended || *t.stopping.borrow() {
                return None;
            }
            if !t.session_stands().await {
                t.ended = true;
                return Some((Ok(session_ended()), t));
            }
            if let Some(e) = t.buffer.pop_front() {
                return Some((Ok(message(&e)), t));
            }
            tokio::select! {
                woken = t.wake.recv() => {
                    if matches!(woken, Err(broadcast::error::RecvError::Closed)) {
                        tokio::time::sleep(POLL).await;
                    }
                }
                _ = tokio::time::sleep(POLL) => {}
                _ = t.stopping.changed() => continue,
            }
            match t
                .store
                .events_after(&t.workspace_id, t.kind.as_deref(), t.last, 500)
                .await
            {
                Ok(events) => {
                    if let Some(e) = events.last() {
                        t.last = e.cursor;
                    }
                    let run = t.run_id.clone();
                    t.buffer.extend(
                        events
                            .into_iter()
                            .filter(|e| run.is_none() || e.run_id == run),
                    );
                }
                Err(e) => {
                    tracing::warn!(error = %e, "console event stream query failed");
                    tokio::time::sleep(POLL).await;
                }
            }
        }
    })
}

pub(super) fn routes() -> Router<Shared> {
    Router::new().route("/console/api/events/stream", get(stream))
}
