//! The console's static files, embedded in the binary: `/` is the page, `/console/assets/<file>`
//! its scripts and style sheet. The list is fixed at compile time, so no request can name a file
//! outside it. Every answer carries a strict Content-Security-Policy (scripts and styles only from
//! this origin, nothing inline, no framing) and `Cache-Control: no-cache`, so a browser
//! revalidates after an upgrade instead of mixing old scripts with a new API.

use axum::extract::Path;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;

use crate::error::CloudError;
use crate::server::Shared;

/// The policy of every console answer. `style-src 'self'` still lets scripts set
/// `element.style` properties (CSSOM), but no `style="..."` attribute or `<style>` block.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; \
     style-src 'self'; img-src 'self' data:; connect-src 'self'; font-src 'self'; \
     object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

/// `(name, content type, bytes)` of every embedded file.
const FILES: &[(&str, &str, &str)] = &[
    (
        "index.html",
        "text/html; charset=utf-8",
        include_str!("assets/index.html"),
    ),
    (
        "app.css",
        "text/css; charset=utf-8",
        include_str!("assets/app.css"),
    ),
    (
        "app.js",
        "text/javascript; charset=utf-8",
        include_str!("assets/app.js"),
    ),
    (
        "runs.js",
        "text/javascript; charset=utf-8",
        include_str!("assets/runs.js"),
    ),
    (
        "recovery.js",
        "text/javascript; charset=utf-8",
        include_str!("assets/recovery.js"),
    ),
    (
        "energy.js",
        "text/javascript; charset=utf-8",
        include_str!("assets/energy.js"),
    ),
];

fn serve(name: &str) -> Response {
    let Some((_, content_type, body)) = FILES.iter().find(|(n, _, _)| *n == name) else {
        return CloudError::NotFound(format!(
            "no console asset `{}`",
            name.chars().take(100).collect::<String>()
        ))
        .into_response();
    };
    (
        StatusCode::OK,
        [
            (header::CONTENT_TYPE, HeaderValue::from_static(content_type)),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
            (
                header::CONTENT_SECURITY_POLICY,
                HeaderValue::from_static(CONTENT_SECURITY_POLICY),
            ),
        ],
        *body,
    )
        .into_response()
}

async fn index() -> Response {
    serve("index.html")
}

async fn asset(Path(name): Path<String>) -> Response {
    // The page itself is only served at `/`.
    if name == "index.html" {
        return serve("");
    }
    serve(&name)
}

pub(super) fn routes() -> Router<Shared> {
    Router::new()
        .route("/", get(index))
        .route("/console/assets/{name}", get(asset))
}
