//! Operator sessions: login, logout, the session cookie and the CSRF check.
//!
//! A login exchanges a name and password for a random session id in the `lf_session` cookie
//! (HttpOnly, SameSite=Strict, Secure) and a CSRF token in the response body. The database keeps
//! only the SHA-256 of the session id. A session ends after 12 hours without a request, at
//! logout, or when its operator is removed or disabled. Every state-changing console request
//! must carry the token in `X-CSRF-Token` and, when the browser sends `Origin` or `Referer`,
//! come from this very host: SameSite alone does not cover older browsers or same-site
//! subdomains.
//!
//! Failed logins are limited per name and client address (in memory: a restart forgets them,
//! which only ever helps the operator); an unknown name costs the same argon2 work as a wrong
//! password, so response times do not reveal which names exist.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Mutex;

use axum::body::Bytes;
use axum::extract::{ConnectInfo, FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::Engine as _;
use lumenflow_contracts::digest::sha256_hex;
use lumenflow_contracts::time::Timestamp;
use serde::Deserialize;
use serde_json::json;
use subtle::ConstantTimeEq;

use super::password;
use crate::error::{CloudError, CloudResult};
use crate::server::Shared;
use crate::store::{now_ms, AuditEntry};

/// The session cookie's name.
pub const COOKIE: &str = "lf_session";
/// The header a state-changing request carries the CSRF token in.
pub const CSRF_HEADER: &str = "x-csrf-token";
/// A session ends after this long without a request.
pub const IDLE_MS: i64 = 12 * 3600 * 1000;
/// Failed logins allowed per name and client address within [`FAILURE_WINDOW_MS`].
pub const MAX_FAILURES: u32 = 5;
/// The window failed logins are counted in; a locked-out pair may try again when it ends.
pub const FAILURE_WINDOW_MS: i64 = 15 * 60 * 1000;
/// Above this many tracked pairs, entries whose window ended are dropped (bounds memory).
const MAX_TRACKED: usize = 10_000;
/// The longest operator name accepted.
pub const MAX_NAME_CHARS: usize = 64;

/// Console state kept in memory by one control-plane process.
#[derive(Debug, Default)]
pub struct ConsoleState {
    failures: Mutex<HashMap<(String, IpAddr), Failures>>,
}

#[derive(Debug, Clone, Copy)]
struct Failures {
    count: u32,
    first_ms: i64,
}

impl ConsoleState {
    /// Seconds until `name` may try again from `ip`, when it is locked out.
    fn locked_for(&self, name: &str, ip: IpAddr, now: i64) -> Option<i64> {
        let map = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        let f = map.get(&(name.to_string(), ip))?;
        let ends = f.first_ms + FAILURE_WINDOW_MS;
        (f.count >= MAX_FAILURES && ends > now).then(|| (ends - now + 999) / 1000)
    }

    fn record_failure(&self, name: &str, ip: IpAddr, now: i64) {
        let mut map = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        if map.len() >= MAX_TRACKED {
            map.retain(|_, f| f.first_ms + FAILURE_WINDOW_MS > now);
        }
        let f = map.entry((name.to_string(), ip)).or_insert(Failures {
            count: 0,
            first_ms: now,
        });
        if f.first_ms + FAILURE_WINDOW_MS <= now {
            *f = Failures {
                count: 0,
                first_ms: now,
            };
        }
        f.count += 1;
    }

    fn clear(&self, name: &str, ip: IpAddr) {
        let mut map = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        map.remove(&(name.to_string(), ip));
    }
}

/// A logged-in operator, extracted from the session cookie. For a method other than GET/HEAD the
/// request must also carry the session's CSRF token in `X-CSRF-Token`.
#[derive(Debug, Clone)]
pub struct Operator {
    /// The operator's login name (audit subject `operator:<name>`).
    pub name: String,
    /// The SHA-256 of the session id the request came with (a stream re-checks it).
    pub(crate) session_hash: String,
}

impl Operator {
    /// The audit subject of this operator's actions.
    pub fn subject(&self) -> String {
        format!("operator:{}", self.name)
    }
}

impl FromRequestParts<Shared> for Operator {
    type Rejection = CloudError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Shared,
    ) -> Result<Self, Self::Rejection> {
        let session = authenticate(parts, state).await?;
        Ok(Operator {
            name: session.operator,
            session_hash: session.id_hash,
        })
    }
}

/// The session behind a request, after the cookie, expiry, operator and (for a state-changing
/// method) origin and CSRF checks.
struct Session {
    id_hash: String,
    operator: String,
    csrf_token: String,
    expires_at_ms: i64,
}

async fn authenticate(parts: &Parts, state: &Shared) -> CloudResult<Session> {
    let id = session_cookie(&parts.headers).ok_or_else(|| {
        CloudError::SessionRequired("log in to the console (no session cookie)".into())
    })?;
    let id_hash = sha256_hex(id.as_bytes());
    let row = state
        .store
        .touch_session(&id_hash, now_ms(), IDLE_MS)
        .await?
        .ok_or_else(|| {
            CloudError::SessionRequired(
                "your console session has expired or ended; log in again".into(),
            )
        })?;
    if !matches!(parts.method, Method::GET | Method::HEAD) {
        check_same_origin(parts)?;
        let sent = parts
            .headers
            .get(CSRF_HEADER)
            .map(HeaderValue::as_bytes)
            .unwrap_or_default();
        if !bool::from(sent.ct_eq(row.csrf_token.as_bytes())) {
            return Err(CloudError::CsrfRejected(
                "missing or wrong `X-CSRF-Token` header (reload the console)".into(),
            ));
        }
    }
    Ok(Session {
        id_hash,
        operator: row.operator,
        csrf_token: row.csrf_token,
        expires_at_ms: row.expires_at_ms,
    })
}

/// The value of the `lf_session` cookie, if the request has one.
fn session_cookie(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == COOKIE)
        .map(|(_, v)| v.trim().to_string())
        .filter(|v| !v.is_empty())
}

/// The host the request was sent to (`Host`, or the URI's authority under HTTP/2).
fn request_host(parts: &Parts) -> Option<String> {
    parts
        .headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
        .or_else(|| parts.uri.authority().map(|a| a.to_string()))
}

/// Refuse a request whose `Origin` (or, without one, `Referer`) names another host than the
/// one it was sent to. Requests with neither (curl, the CLI) pass: the CSRF token still binds.
fn check_same_origin(parts: &Parts) -> CloudResult<()> {
    let host = request_host(parts).unwrap_or_default();
    for name in [header::ORIGIN, header::REFERER] {
        let Some(value) = parts.headers.get(&name) else {
            continue;
        };
        let text = value.to_str().unwrap_or("");
        let authority = text
            .split_once("://")
            .map(|(_, rest)| rest.split('/').next().unwrap_or(""));
        if authority.is_none() || authority != Some(host.as_str()) {
            return Err(CloudError::CsrfRejected(format!(
                "`{name}` `{}` is not this console's origin (`{host}`)",
                text.chars().take(200).collect::<String>()
            )));
        }
        return Ok(());
    }
    Ok(())
}

/// Whether the browser will keep a `Secure` cookie from this request: it came over HTTPS (the
/// public URL says so, or a TLS-terminating proxy set `X-Forwarded-Proto: https`), or it was
/// sent to a loopback host, which browsers treat as a secure context.
fn secure_context(parts: &Parts, public_url: &str) -> bool {
    if public_url.starts_with("https://") {
        return true;
    }
    let forwarded_https = parts
        .headers
        .get("x-forwarded-proto")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("https"));
    if forwarded_https {
        return true;
    }
    let host = request_host(parts).unwrap_or_default();
    let name = match host.rsplit_once(':') {
        Some((h, port)) if port.chars().all(|c| c.is_ascii_digit()) => h.to_string(),
        _ => host,
    };
    let name = name.trim_start_matches('[').trim_end_matches(']');
    name.eq_ignore_ascii_case("localhost")
        || name.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

fn random_token() -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(rand::random::<[u8; 32]>())
}

fn session_cookie_header(value: &str, max_age: Option<i64>) -> CloudResult<HeaderValue> {
    let mut text = format!("{COOKIE}={value}; Path=/; HttpOnly; SameSite=Strict; Secure");
    if let Some(age) = max_age {
        text.push_str(&format!("; Max-Age={age}"));
    }
    HeaderValue::from_str(&text)
        .map_err(|e| CloudError::Internal(format!("cannot build the session cookie: {e}")))
}

/// The client address (the TCP peer; `X-Forwarded-For` is not trusted, since any client can set
/// it and would so escape the failed-login limit).
fn client_ip(parts: &Parts) -> IpAddr {
    parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip())
        .unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED))
}

async fn audit(
    state: &Shared,
    subject: &str,
    action: &str,
    error: Option<&CloudError>,
    ip: IpAddr,
) {
    let entry = AuditEntry {
        workspace_id: None,
        subject: subject.to_string(),
        device_name: None,
        action: action.to_string(),
        outcome: if error.is_some() { "refused" } else { "ok" }.to_string(),
        code: error.map(|e| e.code().to_string()),
        detail: Some(match error {
            Some(e) => format!(
                "from {ip}: {}",
                e.to_string().chars().take(300).collect::<String>()
            ),
            None => format!("from {ip}"),
        }),
    };
    if let Err(e) = state.store.audit(&entry).await {
        tracing::error!(error = %e, "cannot write the console audit line");
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LoginRequest {
    name: String,
    password: String,
}

async fn login(State(state): State<Shared>, request: axum::extract::Request) -> Response {
    let (parts, body) = request.into_parts();
    let ip = client_ip(&parts);
    let body = match axum::body::to_bytes(body, 64 * 1024).await {
        Ok(b) => b,
        Err(_) => {
            return CloudError::TooLarge("the login body is larger than 64 KiB".into())
                .into_response()
        }
    };
    let name = serde_json::from_slice::<LoginRequest>(&body)
        .map(|r| r.name)
        .unwrap_or_default();
    let subject = format!(
        "operator:{}",
        name.chars().take(MAX_NAME_CHARS).collect::<String>()
    );
    match login_inner(&state, &parts, &body, ip).await {
        Ok(response) => {
            audit(&state, &subject, "console.login", None, ip).await;
            response
        }
        Err(e) => {
            audit(&state, &subject, "console.login", Some(&e), ip).await;
            let limited = matches!(e, CloudError::RateLimited(_));
            let mut response = e.into_response();
            if limited {
                if let Some(secs) = state.console.locked_for(&name, ip, now_ms()) {
                    if let Ok(v) = HeaderValue::from_str(&secs.to_string()) {
                        response.headers_mut().insert(header::RETRY_AFTER, v);
                    }
                }
            }
            response
        }
    }
}

async fn login_inner(
    state: &Shared,
    parts: &Parts,
    body: &Bytes,
    ip: IpAddr,
) -> CloudResult<Response> {
    check_same_origin(parts)?;
    let req: LoginRequest = serde_json::from_slice(body).map_err(|e| {
        CloudError::BadRequest(format!(
            "the login body must be {{\"name\", \"password\"}}: {e}"
        ))
    })?;
    if req.name.is_empty() || req.name.chars().count() > MAX_NAME_CHARS {
        return Err(CloudError::BadRequest(format!(
            "`name` must be 1 to {MAX_NAME_CHARS} characters"
        )));
    }
    if !secure_context(parts, &state.public_url) {
        return Err(CloudError::BadRequest(
            "the console needs HTTPS (its session cookie is Secure): serve it behind TLS and set \
             `--public-url https://...`, or open it on a loopback address"
                .into(),
        ));
    }
    let now = now_ms();
    if let Some(secs) = state.console.locked_for(&req.name, ip, now) {
        return Err(CloudError::RateLimited(format!(
            "too many failed logins for `{}` from this address; try again in {secs} s",
            req.name
        )));
    }
    let stored = state.store.operator(&req.name).await?;
    let usable = stored.as_ref().filter(|o| !o.disabled);
    let phc = usable
        .map(|o| o.password_hash.clone())
        .unwrap_or_else(|| password::dummy_hash().to_string());
    let password = req.password;
    let matches = tokio::task::spawn_blocking(move || password::verify(&password, &phc))
        .await
        .map_err(|e| CloudError::Internal(format!("password check failed: {e}")))?;
    if !(matches && usable.is_some()) {
        state.console.record_failure(&req.name, ip, now);
        return Err(CloudError::LoginFailed(
            "wrong operator name or password".into(),
        ));
    }
    state.console.clear(&req.name, ip);
    let id = random_token();
    let csrf = random_token();
    state
        .store
        .create_session(&sha256_hex(id.as_bytes()), &req.name, &csrf, now, IDLE_MS)
        .await?;
    let cookie = session_cookie_header(&id, None)?;
    let body = json!({
        "operator": req.name,
        "csrf_token": csrf,
        "expires_at": Timestamp::from_unix_millis(now + IDLE_MS).to_rfc3339(),
        "idle_timeout_seconds": IDLE_MS / 1000,
    });
    Ok((StatusCode::OK, [(header::SET_COOKIE, cookie)], Json(body)).into_response())
}

async fn logout(State(state): State<Shared>, request: axum::extract::Request) -> Response {
    let (parts, _) = request.into_parts();
    let ip = client_ip(&parts);
    let session = match authenticate(&parts, &state).await {
        Ok(s) => s,
        Err(e) => return e.into_response(),
    };
    let subject = format!("operator:{}", session.operator);
    let result = async {
        state.store.delete_session(&session.id_hash).await?;
        let cookie = session_cookie_header("", Some(0))?;
        Ok::<_, CloudError>(
            (
                StatusCode::OK,
                [(header::SET_COOKIE, cookie)],
                Json(json!({"logged_out": true})),
            )
                .into_response(),
        )
    }
    .await;
    match result {
        Ok(r) => {
            audit(&state, &subject, "console.logout", None, ip).await;
            r
        }
        Err(e) => {
            audit(&state, &subject, "console.logout", Some(&e), ip).await;
            e.into_response()
        }
    }
}

async fn me(State(state): State<Shared>, request: axum::extract::Request) -> Response {
    let (parts, _) = request.into_parts();
    match authenticate(&parts, &state).await {
        Ok(s) => Json(json!({
            "operator": s.operator,
            "csrf_token": s.csrf_token,
            "expires_at": Timestamp::from_unix_millis(s.expires_at_ms).to_rfc3339(),
        }))
        .into_response(),
        Err(e) => e.into_response(),
    }
}

pub(super) fn routes() -> Router<Shared> {
    Router::new()
        .route("/console/api/login", post(login))
        .route("/console/api/logout", post(logout))
        .route("/console/api/me", get(me))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn parts(headers: &[(&str, &str)]) -> Parts {
        let mut b = axum::http::Request::builder()
            .method("POST")
            .uri("/console/api/logout");
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        b.body(()).unwrap().into_parts().0
    }

    #[test]
    fn the_cookie_is_found_among_others() {
        let p = parts(&[("cookie", "a=1; lf_session=abc ; b=2")]);
        assert_eq!(session_cookie(&p.headers).as_deref(), Some("abc"));
        assert_eq!(
            session_cookie(&parts(&[("cookie", "lf_session=")]).headers),
            None
        );
    }

    #[test]
    fn cross_origin_posts_are_refused() {
        let host = ("host", "127.0.0.1:8787");
        assert!(check_same_origin(&parts(&[host])).is_ok());
        assert!(check_same_origin(&parts(&[host, ("origin", "http://127.0.0.1:8787")])).is_ok());
        assert!(check_same_origin(&parts(&[host, ("origin", "http://evil.test")])).is_err());
        assert!(check_same_origin(&parts(&[host, ("origin", "null")])).is_err());
        assert!(check_same_origin(&parts(&[
            host,
            ("referer", "http://127.0.0.1:8787/#/approvals")
        ]))
        .is_ok());
        assert!(check_same_origin(&parts(&[host, ("referer", "http://127.0.0.1:9/")])).is_err());
    }

    #[test]
    fn secure_cookies_need_https_or_loopback() {
        let p = |host| parts(&[("host", host)]);
        assert!(secure_context(
            &p("127.0.0.1:8787"),
            "http://127.0.0.1:8787"
        ));
        assert!(secure_context(
            &p("localhost:8787"),
            "http://localhost:8787"
        ));
        assert!(secure_context(&p("[::1]:8787"), "http://[::1]:8787"));
        assert!(!secure_context(&p("10.0.0.5:8787"), "http://10.0.0.5:8787"));
        assert!(secure_context(
            &p("cp.example.com"),
            "https://cp.example.com"
        ));
        let proxied = parts(&[("host", "cp.internal"), ("x-forwarded-proto", "https")]);
        assert!(secure_context(&proxied, "http://cp.internal"));
    }

    #[test]
    fn failures_lock_a_name_and_address_for_the_window() {
        let state = ConsoleState::default();
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        for _ in 0..MAX_FAILURES {
            assert_eq!(state.locked_for("alice", ip, 1_000), None);
            state.record_failure("alice", ip, 1_000);
        }
        assert_eq!(
            state.locked_for("alice", ip, 1_000),
            Some(FAILURE_WINDOW_MS / 1000)
        );
        assert_eq!(state.locked_for("bob", ip, 1_000), None);
        assert_eq!(
            state.locked_for("alice", "192.0.2.2".parse().unwrap(), 1_000),
            None
        );
        assert_eq!(
            state.locked_for("alice", ip, 1_000 + FAILURE_WINDOW_MS),
            None
        );
        state.clear("alice", ip);
        assert_eq!(state.locked_for("alice", ip, 1_000), None);
    }
}
