//! The operator web console, served by `lumenflow cloud serve` at `/`.
//!
//! Its pages are static files embedded in the binary (no CDN, works offline) that call JSON
//! endpoints under `/console/api/`. Every console endpoint takes a [`session::Operator`], which
//! only a logged-in operator's session cookie yields (and, for a state-changing method, only with
//! the session's CSRF token in `X-CSRF-Token`).

pub(crate) mod approvals;
mod assets;
mod energy;
mod events;
pub mod password;
mod recovery;
mod runs;
pub mod session;
mod workspaces;

use axum::http::{header, HeaderValue};
use axum::Router;

pub use session::ConsoleState;

use crate::server::Shared;

/// Every console route; merged into the server's router.
pub(crate) fn router() -> Router<Shared> {
    Router::new()
        .merge(assets::routes())
        .merge(session::routes())
        .merge(runs::routes())
        .merge(recovery::routes())
        .merge(energy::routes())
        .merge(workspaces::routes())
        .merge(events::routes())
        .merge(approvals::routes())
        .layer(axum::middleware::map_response(security_headers))
}

/// Headers on every console response: no framing (clickjacking), no MIME sniffing, no referrer
/// leaving the console, and API answers never cached (they carry operator data).
async fn security_headers(mut response: axum::response::Response) -> axum::response::Response {
    let h = response.headers_mut();
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    if !h.contains_key(header::CACHE_CONTROL) {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    response
}
