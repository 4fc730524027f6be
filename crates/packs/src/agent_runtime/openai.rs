//! A model behind an OpenAI-compatible chat-completions server (`POST {base_url}/chat/completions`):
//! OpenAI itself, or any server speaking the same API (vLLM, llama.cpp, Ollama, LiteLLM, ...).
//!
//! Each request carries the whole turn so far: a system message, the goal, then for every step
//! the assistant's tool call and a `tool` message with what the dispatch path returned. The tools
//! are offered as function definitions built from the manifests (name, description,
//! `input_schema` as `parameters`); tool names contain `:`, which function names may not, so
//! `software-delivery:gates` is offered as `software-delivery__gates` and mapped back. One call
//! per reply (`parallel_tool_calls: false`; extra calls in a reply are ignored), a reply without
//! a tool call finishes the turn with its text as the summary, and the `lumenflow_abort_turn`
//! function lets the model give up with a reason.
//!
//! Safety of the endpoint: the URL and model come from `workspace.yaml` (operator), the API key
//! from the environment variable the config names (never stored, never logged, never in an
//! error). The key is sent only over `https`, or plain `http` to a loopback address (a local
//! server). Servers and proxies often echo the credential in an error body ("Incorrect API key
//! provided: sk-..."), and every provider text ends up in the turn file, the evidence, the
//! `turn_aborted` event and a remote caller's response, so [`redact`] removes the key and any
//! `Authorization`/bearer-looking value from every text that comes back before it is quoted.
//! Replies are read up to [`MAX_REPLY_BYTES`] and tool arguments accepted up to
//! [`MAX_ARGUMENT_BYTES`] (the sidecar's own body limit), so a model cannot make a turn hold or
//! store an unbounded input. Transient failures (HTTP 429 and 5xx, timeouts, refused
//! connections) are retried with a doubling backoff or the server's short `Retry-After`
//! ([`DEFAULT_MAX_RETRIES`], [`RETRY_BASE_DELAY`], [`MAX_RETRY_AFTER`]). The request runs on its own thread, so a caller inside an async runtime (the
//! sidecar) cannot trip over the blocking client.

use lumenflow_contracts::error_text::with_causes;
use std::collections::HashMap;
use std::io::Read;
use std::time::Duration;

use serde_json::{json, Map, Value};

use super::config::{ProviderConfig, DEFAULT_TIMEOUT_MS};
use super::provider::{Expect, ModelProvider, ProviderError, Step, ToolSpec, TurnView};
use super::state::{StepOutcome, StepRecord};

/// The function a model calls to give up.
pub const ABORT_FUNCTION: &str = "lumenflow_abort_turn";

/// A tool result longer than this is cut before it goes back to the model.
pub const MAX_RESULT_CHARS: usize = 16 * 1024;

/// Error bodies are quoted up to this many characters.
const MAX_ERROR_BODY: usize = 512;

/// The largest model reply read; a larger one aborts the turn (`MODEL_REPLY_INVALID`).
pub const MAX_REPLY_BYTES: usize = 4 * 1024 * 1024;

/// The largest tool-call arguments accepted from a model: the sidecar's limit on a caller's
/// body, so a model cannot send a tool what no caller could.
pub const MAX_ARGUMENT_BYTES: usize = 1024 * 1024;

/// What replaces a secret in a quoted text.
pub const REDACTED: &str = "[redacted]";

/// Retries of a transient failure (HTTP 429 or 5xx, a timeout, a refused or dropped connection)
/// when `agent_runtime.provider.max_retries` does not say: three attempts in all (walk-E
/// finding 6). A rate limit or a restarting server is the common case, and one hiccup should
/// not stop a turn; a server that stays down is not hammered either.
pub const DEFAULT_MAX_RETRIES: u32 = 2;

/// The most retries the workspace may ask for.
pub const MAX_RETRIES_LIMIT: u32 = 5;

/// The wait before the first retry; it doubles before each further one (0.5 s, 1 s, 2 s, ...).
pub const RETRY_BASE_DELAY: Duration = Duration::from_millis(500);

/// The longest `Retry-After` this client waits. A server asking for longer is not retried at
/// once: the turn stops `provider_failed`, and calling it again later resumes it.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(10);

/// The client. `Debug` does not show the key.
pub struct OpenAiCompatible {
    endpoint: reqwest::Url,
    model: String,
    api_key: Option<String>,
    timeout: Duration,
    temperature: Option<f64>,
    max_retries: u32,
}

/// One HTTP answer: its status, its body, and the `Retry-After` it asked for (in whole seconds,
/// the form rate limiters send; an HTTP date is ignored and the client's own backoff applies).
struct Reply {
    status: u16,
    text: String,
    retry_after: Option<Duration>,
}

/// A failure worth another attempt: the server may answer the same request a moment later.
fn transient(e: &ProviderError) -> bool {
    match e {
        ProviderError::Transport(_) => true,
        ProviderError::Http { status, .. } => *status == 429 || (500..600).contains(status),
        _ => false,
    }
}

/// The API key a provider block names, read from its environment variable: `None` without
/// `api_key_env`, an error naming the variable when it is unset or empty. Checked before a
/// turn is created (so a missing key does not use up a turn id) and again when a turn resumes.
pub fn api_key(config: &ProviderConfig) -> Result<Option<String>, ProviderError> {
    match &config.api_key_env {
        None => Ok(None),
        Some(name) => match std::env::var(name) {
            Ok(v) if !v.trim().is_empty() => Ok(Some(v)),
            _ => Err(ProviderError::NotConfigured(format!(
                "the environment variable `{name}` named by `agent_runtime.provider.api_key_env` is not set; expected the model server's API key in it"
            ))),
        },
    }
}

impl std::fmt::Debug for OpenAiCompatible {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpenAiCompatible")
            .field("endpoint", &self.endpoint.as_str())
            .field("model", &self.model)
            .field("api_key", &self.api_key.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

/// `base_url` + `/chat/completions`, refusing anything but `https` (or `http` to loopback).
pub fn endpoint(base_url: &str) -> Result<reqwest::Url, ProviderError> {
    let shown = without_userinfo(base_url);
    let bad = |why: String| {
        ProviderError::NotConfigured(format!("`agent_runtime.provider.base_url` `{shown}` {why}"))
    };
    let base =
        reqwest::Url::parse(base_url.trim()).map_err(|e| bad(format!("is not a URL: {e}")))?;
    let loopback = match base.host() {
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        None => false,
    };
    match base.scheme() {
        "https" => {}
        "http" if loopback => {}
        "http" => {
            return Err(bad(
                "uses plain http to a host that is not loopback; use https (the API key and tool results travel in the request)".into(),
            ))
        }
        other => return Err(bad(format!("has scheme `{other}`; expected https"))),
    }
    if !base.username().is_empty() || base.password().is_some() {
        return Err(bad(
            "carries credentials; name the key's environment variable in `api_key_env` instead"
                .into(),
        ));
    }
    // The path is extended, not the whole string: a query (`?api-version=...`, Azure-style)
    // stays a query instead of swallowing `/chat/completions`.
    let mut joined = base.clone();
    joined.set_path(&format!(
        "{}/chat/completions",
        base.path().trim_end_matches('/')
    ));
    joined.set_fragment(None);
    Ok(joined)
}

/// `base_url` as it may be quoted in an error: anything between `://` and the `@` that ends a
/// URL's authority (a user and password) becomes `[redacted]` (walk-E finding 12).
fn without_userinfo(url: &str) -> String {
    let Some(start) = url.find("://").map(|i| i + 3) else {
        return url.to_string();
    };
    let rest = &url[start..];
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    match rest[..authority_end].rfind('@') {
        Some(at) => format!("{}{REDACTED}{}", &url[..start], &rest[at..]),
        None => url.to_string(),
    }
}

/// `text` with the API key and anything that looks like a credential replaced by
/// `[redacted]`: the key's value (wherever it appears), the word after `Bearer`, the value of
/// an `Authorization` or `api_key`/`api-key` field (`name: value`, `"name":"value"`,
/// `name=value`, with or without an auth scheme), and `sk-...` tokens (the OpenAI key shape).
/// Applied to every provider text before it is quoted anywhere (walk-E finding 2).
pub fn redact(text: &str, key: Option<&str>) -> String {
    let mut out = text.to_string();
    if let Some(k) = key.map(str::trim).filter(|k| k.len() >= 4) {
        // A server that echoes the key may encode it: as a JSON string (`/` as `\/`), or in a
        // URL. Each spelling is cut, the longest first so a shorter one cannot split it.
        let mut spellings = vec![
            k.to_string(),
            serde_json::to_string(k)
                .map(|q| q.trim_matches('"').to_string())
                .unwrap_or_default(),
            k.replace('/', "\\/"),
            percent_encoded(k, false),
            percent_encoded(k, true),
        ];
        spellings.retain(|v| v.len() >= 4);
        spellings.sort_by_key(|v| std::cmp::Reverse(v.len()));
        spellings.dedup();
        for spelling in spellings {
            out = out.replace(&spelling, REDACTED);
        }
    }
    for marker in [
        "bearer ",
        "authorization",
        "api_key",
        "api-key",
        "apikey",
        "sk-",
    ] {
        out = redact_after(&out, marker);
    }
    out
}

/// `text` with every byte outside RFC 3986's unreserved set as `%XX` (`lower` hex or upper).
fn percent_encoded(text: &str, lower: bool) -> String {
    let mut out = String::with_capacity(text.len() * 3);
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else if lower {
            out.push_str(&format!("%{b:02x}"));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Characters a credential is made of (base64, base64url, hex, JWT dots).
fn token_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '~' | '+' | '/' | '=')
}

/// Replace the credential after each case-insensitive `marker`:
/// - `bearer `: the next word (after an optional `token `);
/// - a field name: only when a `:` or `=` follows it (so `api_key_env` is left alone), then
///   quotes and spaces and an auth scheme word are skipped;
/// - `sk-`: the token itself, when it starts a word and has at least 8 more characters (so
///   prose like `task-1` or `sk-learn` stays).
fn redact_after(text: &str, marker: &str) -> String {
    // ASCII lower-casing keeps every byte offset, so positions found in `lower` index `text`.
    let lower = text.to_ascii_lowercase();
    let mut out = String::with_capacity(text.len());
    let mut pos = 0;
    while let Some(found) = lower[pos..].find(marker) {
        let at = pos + found;
        let after = at + marker.len();
        let value_start = if marker == "sk-" {
            let starts_word = !text[..at].chars().next_back().is_some_and(token_char);
            starts_word.then_some(at)
        } else if marker == "bearer " {
            Some(skip_word(&lower, after, "token "))
        } else {
            let rest = &text[after..];
            let separators = rest
                .chars()
                .take_while(|c| matches!(c, '"' | '\'' | ':' | '=' | ' ' | '\\'))
                .collect::<String>();
            (separators.contains(':') || separators.contains('=')).then(|| {
                let v = after + separators.len();
                let v = skip_word(&lower, v, "bearer ");
                let v = skip_word(&lower, v, "basic ");
                skip_word(&lower, v, "token ")
            })
        };
        let Some(value_start) = value_start else {
            out.push_str(&text[pos..after]);
            pos = after;
            continue;
        };
        let value_len = text[value_start..]
            .find(|c: char| !token_char(c))
            .unwrap_or(text.len() - value_start);
        let minimum = if marker == "sk-" { 3 + 8 } else { 1 };
        out.push_str(&text[pos..value_start]);
        let value_end = value_start + value_len;
        if value_len >= minimum {
            out.push_str(REDACTED);
        } else {
            out.push_str(&text[value_start..value_end]);
        }
        // `value_end` is never before the marker's end, so the scan always moves on.
        pos = value_end;
    }
    out.push_str(&text[pos..]);
    out
}

/// `at` moved past `word` when `lower[at..]` starts with it.
fn skip_word(lower: &str, at: usize, word: &str) -> usize {
    if lower[at..].starts_with(word) {
        at + word.len()
    } else {
        at
    }
}

impl OpenAiCompatible {
    /// The client for a configured provider, reading the API key from its environment variable.
    pub fn from_config(config: &ProviderConfig) -> Result<Self, ProviderError> {
        Ok(OpenAiCompatible {
            endpoint: endpoint(&config.base_url)?,
            model: config.model.clone(),
            api_key: api_key(config)?,
            timeout: Duration::from_millis(config.timeout_ms.unwrap_or(DEFAULT_TIMEOUT_MS)),
            temperature: config.temperature,
            max_retries: config
                .max_retries
                .unwrap_or(DEFAULT_MAX_RETRIES)
                .min(MAX_RETRIES_LIMIT),
        })
    }

    /// [`post`](Self::post) with the retries of a transient failure: after `RETRY_BASE_DELAY`,
    /// doubled each time, or after the server's `Retry-After` when it asks for at most
    /// [`MAX_RETRY_AFTER`]. The last error is returned with the number of attempts made.
    fn post_with_retries(&self, body: &Value) -> Result<Reply, ProviderError> {
        let mut delay = RETRY_BASE_DELAY;
        let mut attempt = 0;
        loop {
            attempt += 1;
            let (error, retry_after) = match self.post(body.clone()) {
                Ok(reply) if (200..300).contains(&reply.status) => return Ok(reply),
                Ok(reply) => {
                    let key = self.api_key.as_deref();
                    let error = ProviderError::Http {
                        status: reply.status,
                        // Redacted before it is cut, so a key at the cut cannot leak half of it.
                        body: excerpt(&redact(&reply.text, key)),
                    };
                    (error, reply.retry_after)
                }
                Err(e) => (e, None),
            };
            if !transient(&error) || attempt > self.max_retries {
                return Err(after_attempts(error, attempt));
            }
            let wait = match retry_after {
                Some(asked) if asked > MAX_RETRY_AFTER => {
                    return Err(after_attempts(
                        with_note(
                            error,
                            &format!(
                                "the server asked to retry after {} s, longer than the {} s this client waits",
                                asked.as_secs(),
                                MAX_RETRY_AFTER.as_secs()
                            ),
                        ),
                        attempt,
                    ))
                }
                Some(asked) => asked,
                None => delay,
            };
            std::thread::sleep(wait);
            delay = delay.saturating_mul(2);
        }
    }

    /// The request body for the next step (public so tests and tools can show it).
    pub fn request_body(&self, view: &TurnView<'_>) -> Value {
        let functions = FunctionNames::new(view.tools);
        let mut tools: Vec<Value> = view
            .tools
            .iter()
            .filter_map(|t| {
                let name = functions.by_tool.get(&t.name)?;
                let mut parameters = t
                    .input_schema
                    .clone()
                    .unwrap_or_else(|| Map::from_iter([("type".into(), json!("object"))]));
                if !parameters.contains_key("properties") {
                    parameters.insert("properties".into(), json!({}));
                }
                Some(json!({
                    "type": "function",
                    "function": {
                        "name": name,
                        "description": t.description.clone().unwrap_or_else(|| format!("LumenFlow tool `{}`", t.name)),
                        "parameters": parameters,
                    }
                }))
            })
            .collect();
        tools.push(json!({
            "type": "function",
            "function": {
                "name": ABORT_FUNCTION,
                "description": "Give up on the goal: the turn stops and the operator sees the reason.",
                "parameters": {
                    "type": "object",
                    "properties": {"reason": {"type": "string"}},
                    "required": ["reason"],
                },
            }
        }));

        let mut messages = vec![
            json!({"role": "system", "content": SYSTEM_PROMPT}),
            json!({"role": "user", "content": view.goal}),
        ];
        for step in view.transcript {
            let name = functions
                .by_tool
                .get(&step.tool)
                .cloned()
                .unwrap_or_else(|| step.tool.clone());
            messages.push(json!({
                "role": "assistant",
                "content": Value::Null,
                "tool_calls": [{
                    "id": step.call_id,
                    "type": "function",
                    "function": {"name": name, "arguments": step.input.to_string()},
                }],
            }));
            messages.push(json!({
                "role": "tool",
                "tool_call_id": step.call_id,
                "content": result_text(step),
            }));
        }
        let mut body = json!({
            "model": self.model,
            "messages": messages,
            "tools": tools,
            "tool_choice": "auto",
            "parallel_tool_calls": false,
        });
        if let (Some(t), Some(obj)) = (self.temperature, body.as_object_mut()) {
            obj.insert("temperature".into(), json!(t));
        }
        body
    }

    fn post(&self, body: Value) -> Result<Reply, ProviderError> {
        let endpoint = self.endpoint.clone();
        let key = self.api_key.clone();
        let timeout = self.timeout;
        // Its own thread: the blocking client must not run inside an async runtime's worker.
        let worker = std::thread::Builder::new()
            .name("agent-runtime-model".into())
            .spawn(move || -> Result<Reply, ProviderError> {
                let client = reqwest::blocking::Client::builder()
                    .timeout(timeout)
                    .redirect(reqwest::redirect::Policy::none())
                    .build()
                    .map_err(|e| ProviderError::Transport(e.to_string()))?;
                let mut request = client
                    .post(endpoint)
                    .header("content-type", "application/json")
                    .body(body.to_string());
                if let Some(key) = key {
                    request = request.bearer_auth(key);
                }
                let response = request
                    .send()
                    .map_err(|e| ProviderError::Transport(describe_transport(e)))?;
                let status = response.status().as_u16();
                let retry_after = response
                    .headers()
                    .get(reqwest::header::RETRY_AFTER)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.trim().parse::<u64>().ok())
                    .map(Duration::from_secs);
                if response
                    .content_length()
                    .is_some_and(|n| n > MAX_REPLY_BYTES as u64)
                {
                    return Err(too_large());
                }
                // Read one byte more than the limit: a body that fills it is too large, and a
                // server cannot make the turn hold more than that in memory.
                let mut raw = Vec::new();
                response
                    .take(MAX_REPLY_BYTES as u64 + 1)
                    .read_to_end(&mut raw)
                    .map_err(|e| ProviderError::Transport(format!("cannot read the reply: {e}")))?;
                if raw.len() > MAX_REPLY_BYTES {
                    return Err(too_large());
                }
                Ok(Reply {
                    status,
                    text: String::from_utf8_lossy(&raw).into_owned(),
                    retry_after,
                })
            })
            .map_err(|e| {
                ProviderError::Transport(format!("cannot start the request thread: {e}"))
            })?;
        worker
            .join()
            .map_err(|_| ProviderError::Transport("the request thread panicked".into()))?
    }
}

/// `error` saying how many attempts were made, when there was more than one (so an operator
/// reading "HTTP 429" knows the client did not give up at the first refusal).
fn after_attempts(error: ProviderError, attempts: u32) -> ProviderError {
    if attempts <= 1 {
        return error;
    }
    with_note(error, &format!("gave up after {attempts} attempts"))
}

/// `error` with `note` appended to its text.
fn with_note(error: ProviderError, note: &str) -> ProviderError {
    match error {
        ProviderError::Transport(t) => ProviderError::Transport(format!("{t} ({note})")),
        ProviderError::Http { status, body } => ProviderError::Http {
            status,
            body: format!("{body} ({note})"),
        },
        other => other,
    }
}

fn too_large() -> ProviderError {
    ProviderError::InvalidReply(format!(
        "the reply is larger than {} MiB; expected a chat-completions response",
        MAX_REPLY_BYTES / (1024 * 1024)
    ))
}

/// A transport error without the URL: the text reaches remote callers, who have no business
/// learning the operator's internal endpoint (the operator has it in `workspace.yaml`).
fn describe_transport(e: reqwest::Error) -> String {
    let e = e.without_url();
    if e.is_timeout() {
        "the request timed out".into()
    } else if e.is_connect() {
        format!("cannot connect: {}", with_causes(&e))
    } else {
        with_causes(&e)
    }
}

const SYSTEM_PROMPT: &str = "You are the agent of a LumenFlow workspace. Reach the user's goal by calling the \
tools offered, one call per reply. Every call is checked by the workspace's scopes, rules and approvals; a \
refused call is final, do not try to work around it. When the goal is reached, reply with a one-paragraph \
summary and no tool call. If the goal cannot be reached, call lumenflow_abort_turn with the reason.";

/// Tool names to function names and back.
struct FunctionNames {
    by_tool: HashMap<String, String>,
    by_function: HashMap<String, String>,
}

impl FunctionNames {
    fn new(tools: &[ToolSpec]) -> Self {
        let mut by_tool = HashMap::new();
        let mut by_function = HashMap::new();
        for t in tools {
            let f = function_name(&t.name);
            // Function names must be unique and at most 64 characters; a tool that cannot be
            // named is not offered (it can still never run without the dispatch path's consent).
            if f.len() > 64 || f == ABORT_FUNCTION || by_function.contains_key(&f) {
                continue;
            }
            by_tool.insert(t.name.clone(), f.clone());
            by_function.insert(f, t.name.clone());
        }
        FunctionNames {
            by_tool,
            by_function,
        }
    }
}

/// `pack:tool` → `pack__tool`; anything else outside `[A-Za-z0-9_-]` → `_`.
pub fn function_name(tool: &str) -> String {
    let mut out = String::with_capacity(tool.len() + 1);
    for c in tool.chars() {
        match c {
            ':' => out.push_str("__"),
            c if c.is_ascii_alphanumeric() || c == '_' || c == '-' => out.push(c),
            _ => out.push('_'),
        }
    }
    out
}

/// What a step returned, as the `tool` message the model reads.
fn result_text(step: &StepRecord) -> String {
    let outcome = match step.outcome {
        Some(StepOutcome::Success) => "success",
        Some(StepOutcome::Failure) => "failure",
        Some(StepOutcome::Denied) => "denied",
        Some(StepOutcome::ApprovalRequired) => "approval_required",
        None => "unknown",
    };
    let mut v = json!({"outcome": outcome});
    if let Some(obj) = v.as_object_mut() {
        if let Some(data) = &step.data {
            obj.insert("data".into(), data.clone());
        }
        if let Some(code) = &step.error_code {
            obj.insert(
                "error".into(),
                json!({"code": code, "message": step.error_message}),
            );
        }
    }
    let text = v.to_string();
    if text.chars().count() <= MAX_RESULT_CHARS {
        return text;
    }
    let cut: String = text.chars().take(MAX_RESULT_CHARS).collect();
    format!("{cut}… [truncated: the result is longer than {MAX_RESULT_CHARS} characters]")
}

fn excerpt(s: &str) -> String {
    let s = s.trim();
    if s.chars().count() <= MAX_ERROR_BODY {
        return s.to_string();
    }
    let cut: String = s.chars().take(MAX_ERROR_BODY).collect();
    format!("{cut}…")
}

/// Read a chat-completions response body into the next step.
pub fn parse_reply(body: &str, tools: &[ToolSpec]) -> Result<Step, ProviderError> {
    let invalid = |why: String| ProviderError::InvalidReply(why);
    let value: Value = serde_json::from_str(body).map_err(|e| {
        invalid(format!(
            "the response body is not JSON ({e}): {}",
            excerpt(body)
        ))
    })?;
    let message = value
        .get("choices")
        .and_then(Value::as_array)
        .and_then(|c| c.first())
        .and_then(|c| c.get("message"))
        .ok_or_else(|| invalid("the response has no `choices[0].message`".into()))?;
    let calls = message
        .get("tool_calls")
        .and_then(Value::as_array)
        .filter(|c| !c.is_empty());
    if let Some(call) = calls.and_then(|c| c.first()) {
        let function = call
            .get("function")
            .ok_or_else(|| invalid("a tool call has no `function`".into()))?;
        let name = function
            .get("name")
            .and_then(Value::as_str)
            .filter(|n| !n.is_empty())
            .ok_or_else(|| invalid("a tool call has no function `name`".into()))?;
        let size = match function.get("arguments") {
            Some(Value::String(s)) => s.len(),
            Some(other) => other.to_string().len(),
            None => 0,
        };
        if size > MAX_ARGUMENT_BYTES {
            return Err(invalid(format!(
                "the arguments of the call to `{}` are {size} bytes; at most {MAX_ARGUMENT_BYTES} bytes (1 MiB) are accepted",
                excerpt(name)
            )));
        }
        let input = match function.get("arguments") {
            None | Some(Value::Null) => Value::Object(Map::new()),
            Some(Value::String(s)) if s.trim().is_empty() => Value::Object(Map::new()),
            Some(Value::String(s)) => serde_json::from_str::<Value>(s).map_err(|e| {
                invalid(format!(
                    "the arguments of the call to `{name}` are not valid JSON ({e}): {}",
                    excerpt(s)
                ))
            })?,
            Some(other) => other.clone(),
        };
        if !input.is_object() {
            return Err(invalid(format!(
                "the arguments of the call to `{name}` must be a JSON object, got {}",
                excerpt(&input.to_string())
            )));
        }
        if name == ABORT_FUNCTION {
            let reason = input
                .get("reason")
                .and_then(Value::as_str)
                .filter(|r| !r.trim().is_empty())
                .unwrap_or("the model gave up without a reason")
                .to_string();
            return Ok(Step::Abort { reason });
        }
        let functions = FunctionNames::new(tools);
        // An unknown function keeps its name: the dispatch path refuses it with a receipt.
        let tool = functions
            .by_function
            .get(name)
            .cloned()
            .unwrap_or_else(|| name.to_string());
        let call_id = call
            .get("id")
            .and_then(Value::as_str)
            .filter(|id| !id.is_empty())
            .map(str::to_string);
        return Ok(Step::Call {
            call_id,
            tool,
            input,
            expect: Expect::Success,
        });
    }
    match message.get("content").and_then(Value::as_str) {
        Some(text) if !text.trim().is_empty() => Ok(Step::Finish {
            summary: text.trim().to_string(),
        }),
        _ => Err(invalid(
            "the reply has neither a tool call nor a summary (`content`)".into(),
        )),
    }
}

/// The error with every text it quotes passed through [`redact`].
fn redact_error(e: ProviderError, key: Option<&str>) -> ProviderError {
    match e {
        ProviderError::NotConfigured(t) => ProviderError::NotConfigured(redact(&t, key)),
        ProviderError::Plan(t) => ProviderError::Plan(redact(&t, key)),
        ProviderError::Transport(t) => ProviderError::Transport(redact(&t, key)),
        ProviderError::Http { status, body } => ProviderError::Http {
            status,
            body: redact(&body, key),
        },
        ProviderError::InvalidReply(t) => ProviderError::InvalidReply(redact(&t, key)),
    }
}

impl ModelProvider for OpenAiCompatible {
    fn kind(&self) -> &'static str {
        "openai_compatible"
    }

    fn next_step(&mut self, view: &TurnView<'_>) -> Result<Step, ProviderError> {
        let key = self.api_key.as_deref();
        let text = self
            .post_with_retries(&self.request_body(view))
            .map_err(|e| redact_error(e, key))?
            .text;
        // The key's value never reaches a tool input, a summary or a stored reply either.
        let text = match key.map(str::trim).filter(|k| k.len() >= 4) {
            Some(k) if text.contains(k) => text.replace(k, REDACTED),
            _ => text,
        };
        let step = parse_reply(&text, view.tools).map_err(|e| redact_error(e, key))?;
        Ok(match step {
            Step::Finish { summary } => Step::Finish {
                summary: redact(&summary, key),
            },
            Step::Abort { reason } => Step::Abort {
                reason: redact(&reason, key),
            },
            call => call,
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn tools() -> Vec<ToolSpec> {
        vec![ToolSpec {
            name: "software-delivery:gates".into(),
            description: None,
            input_schema: None,
            mutating: true,
        }]
    }

    #[test]
    fn function_names_map_back_to_tool_names() {
        assert_eq!(
            function_name("software-delivery:gates"),
            "software-delivery__gates"
        );
        let body = r#"{"choices":[{"message":{"tool_calls":[{"id":"c1","type":"function","function":{"name":"software-delivery__gates","arguments":"{\"wu_id\":\"WU-042\"}"}}]}}]}"#;
        match parse_reply(body, &tools()).unwrap() {
            Step::Call {
                tool,
                input,
                call_id,
                ..
            } => {
                assert_eq!(tool, "software-delivery:gates");
                assert_eq!(input, json!({"wu_id": "WU-042"}));
                assert_eq!(call_id.as_deref(), Some("c1"));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn replies_that_are_not_usable_are_clear_errors() {
        for (body, needle) in [
            ("not json", "not JSON"),
            ("{}", "choices[0].message"),
            (
                r#"{"choices":[{"message":{"content":""}}]}"#,
                "neither a tool call",
            ),
            (
                r#"{"choices":[{"message":{"tool_calls":[{"function":{"name":"x","arguments":"{oops"}}]}}]}"#,
                "not valid JSON",
            ),
            (
                r#"{"choices":[{"message":{"tool_calls":[{"function":{"name":"x","arguments":"[1]"}}]}}]}"#,
                "must be a JSON object",
            ),
        ] {
            let err = parse_reply(body, &tools()).unwrap_err();
            assert_eq!(err.code(), "MODEL_REPLY_INVALID");
            assert!(err.to_string().contains(needle), "{err}");
        }
    }

    #[test]
    fn endpoints_need_https_unless_loopback() {
        assert_eq!(
            endpoint("https://api.example.com/v1/").unwrap().as_str(),
            "https://api.example.com/v1/chat/completions"
        );
        assert!(endpoint("http://127.0.0.1:8080/v1").is_ok());
        assert!(endpoint("http://localhost:8080").is_ok());
        assert!(endpoint("http://api.example.com/v1").is_err());
        assert!(endpoint("ftp://x").is_err());
        assert!(endpoint("https://user:pw@api.example.com").is_err());
    }

    /// Walk-E finding 12: a query stays a query, and credentials are never quoted back.
    #[test]
    fn a_query_stays_a_query_and_credentials_are_not_echoed() {
        assert_eq!(
            endpoint("https://x.example.com/openai/v1/?api-version=2024")
                .unwrap()
                .as_str(),
            "https://x.example.com/openai/v1/chat/completions?api-version=2024"
        );
        let err = endpoint("http://user:sk-SECRET-1@127.0.0.1:41001/v1")
            .unwrap_err()
            .to_string();
        assert!(!err.contains("SECRET"), "{err}");
        assert!(
            err.contains("http://[redacted]@127.0.0.1:41001/v1"),
            "{err}"
        );
    }

    /// Walk-E finding 2: the key and anything shaped like a credential are removed; ordinary
    /// prose is left alone.
    #[test]
    fn provider_texts_are_redacted() {
        let key = Some("sk-WALK-SECRET-123");
        for (text, expected) in [
            (
                "Incorrect API key provided: sk-WALK-SECRET-123. See the docs.",
                "Incorrect API key provided: [redacted]. See the docs.",
            ),
            (
                "Invalid bearer token sk-other-0123456789",
                "Invalid bearer token [redacted]",
            ),
            (
                r#"{"headers":{"Authorization":"Bearer abc.def.ghi"}}"#,
                r#"{"headers":{"Authorization":"Bearer [redacted]"}}"#,
            ),
            (
                "authorization: Basic dXNlcjpwdw==",
                "authorization: Basic [redacted]",
            ),
            ("api_key=hunter2 rest", "api_key=[redacted] rest"),
            // Not credentials: a variable name, a task id, a short sk- word.
            (
                "set api_key_env to AGENT_RUNTIME_API_KEY",
                "set api_key_env to AGENT_RUNTIME_API_KEY",
            ),
            ("task-0123456789abc failed", "task-0123456789abc failed"),
            ("use sk-learn here", "use sk-learn here"),
        ] {
            assert_eq!(redact(text, key), expected, "{text}");
        }
        // Walk-E recheck N1: the key echoed in an encoded spelling, with no `sk-` to find.
        let plain = Some("MyKey/abc+def==");
        for echoed in [
            r#"{"error":"bad key MyKey\/abc+def=="}"#,
            "key=MyKey%2Fabc%2Bdef%3D%3D rejected",
            "key=MyKey%2fabc%2bdef%3d%3d rejected",
            "key MyKey/abc+def== rejected",
        ] {
            let cleaned = redact(echoed, plain);
            assert!(
                cleaned.contains("[redacted]") && !cleaned.contains("abc"),
                "{echoed} -> {cleaned}"
            );
        }
        // Redacted before an error body is cut.
        let err = redact_error(
            ProviderError::Http {
                status: 401,
                body: "bad key sk-WALK-SECRET-123".into(),
            },
            key,
        );
        assert_eq!(
            err.to_string(),
            "model provider answered HTTP 401: bad key [redacted]"
        );
    }

    /// Walk-E finding 8: arguments beyond 1 MiB are refused without quoting them.
    #[test]
    fn oversized_arguments_are_refused() {
        let args = json!({"x": "A".repeat(MAX_ARGUMENT_BYTES)}).to_string();
        let body = json!({"choices": [{"message": {"tool_calls": [
            {"id": "c1", "function": {"name": "software-delivery__gates", "arguments": args}}
        ]}}]})
        .to_string();
        let err = parse_reply(&body, &tools()).unwrap_err().to_string();
        assert!(err.contains("at most 1048576 bytes"), "{err}");
        assert!(err.len() < 400, "{err}");
    }
}
