//! The Python 3 text of generated tools.
//!
//! Why Python: an external tool here is any executable speaking JSON on stdin/stdout, and the
//! kernel runs script entries under their interpreter. A stdlib-only Python script is readable,
//! runs wherever the sandbox has `python3`, and needs no build step or dependency install.
//!
//! Every value that comes from the request (names, patterns, URLs, descriptions) enters the script
//! only as an escaped, ASCII-only Python string literal ([`py_str`]) or inside an escaped docstring
//! ([`py_docstring`]), so no request can inject code. The bodies below are fixed text.

/// A Python string literal for `text`, ASCII only: quotes, backslashes, control and non-ASCII
/// characters are escaped (`\uXXXX` / `\UXXXXXXXX`, never surrogate pairs).
pub(crate) fn py_str(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    out.push_str(&py_escape(text, false));
    out.push('"');
    out
}

/// Escapes `text` for the inside of a Python string literal. With `keep_newlines`, `\n` stays a
/// real line break (for docstrings).
fn py_escape(text: &str, keep_newlines: bool) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' if keep_newlines => out.push('\n'),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            ' '..='~' => out.push(c),
            c if u32::from(c) <= 0xffff => out.push_str(&format!("\\u{:04x}", u32::from(c))),
            c => out.push_str(&format!("\\U{:08x}", u32::from(c))),
        }
    }
    out
}

/// A triple-quoted docstring; every `"` inside is escaped, so the text cannot close it early.
pub(crate) fn py_docstring(text: &str) -> String {
    format!("\"\"\"{}\n\"\"\"\n", py_escape(text.trim_end(), true))
}

/// Imports and helpers shared by every generated tool.
pub(crate) const COMMON: &str = r#"

class ToolError(Exception):
    """A failure reported to the kernel as the error of a ToolOutput."""

    def __init__(self, code, message):
        super().__init__(message)
        self.code = code
        self.message = message


def read_request():
    """Read the one JSON request object from stdin; return (input, request)."""
    try:
        request = json.loads(sys.stdin.buffer.read())
    except ValueError as exc:
        raise ToolError("INVALID_INPUT", "stdin is not a JSON object: %s" % exc)
    if not isinstance(request, dict):
        raise ToolError("INVALID_INPUT", "stdin is not a JSON object")
    tool_input = request.get("input")
    if not isinstance(tool_input, dict):
        raise ToolError("INVALID_INPUT", "input must be a JSON object")
    return tool_input, request


def check_fields(tool_input, allowed):
    """Refuse fields that the input schema does not declare (additionalProperties: false)."""
    for key in sorted(tool_input):
        if key not in allowed:
            raise ToolError("INVALID_INPUT", "unknown input field %s" % json.dumps(key))


def too_large(what, size):
    return ToolError(
        "PAYLOAD_TOO_LARGE", "%s is %d bytes, more than the limit of %d" % (what, size, MAX_BYTES)
    )
"#;

/// Path helpers shared by the file templates.
pub(crate) const FILE_HELPERS: &str = r#"

def workspace_root(cwd):
    """The real path of the working directory the kernel gave us."""
    if not isinstance(cwd, str) or not os.path.isabs(cwd):
        raise ToolError("INVALID_INPUT", "cwd must be an absolute path")
    return os.path.realpath(cwd)


def resolve_in_scope(root, raw_path):
    """Resolve raw_path against root; return (real path, path relative to root with / separators).

    Refuses a path that leaves root once .. and symlinks are resolved, and a path that is not under
    the literal prefix of the scope pattern.
    """
    if not isinstance(raw_path, str) or not raw_path:
        raise ToolError("INVALID_INPUT", "path must be a non-empty string")
    if "\x00" in raw_path:
        raise ToolError("INVALID_INPUT", "path must not contain a null byte")
    target = os.path.realpath(os.path.join(root, raw_path))
    rel = os.path.relpath(target, root)
    if rel in (os.curdir, os.pardir) or rel.startswith(os.pardir + os.sep) or os.path.isabs(rel):
        raise ToolError(
            "INVALID_INPUT", "path %s resolves outside the working directory" % json.dumps(raw_path)
        )
    rel = rel.replace(os.sep, "/")
    if PREFIX_IS_DIRECTORY:
        inside = rel == SCOPE_PREFIX or rel.startswith(SCOPE_PREFIX + "/")
    else:
        inside = rel.startswith(SCOPE_PREFIX)
    if not inside:
        raise ToolError(
            "INVALID_INPUT",
            "path %s is outside this tool's scope %s" % (json.dumps(raw_path), json.dumps(SCOPE_PATTERN)),
        )
    return target, rel
"#;

/// `run()` of `file.read_text`.
pub(crate) const READ_TEXT_RUN: &str = r#"

def run():
    tool_input, request = read_request()
    check_fields(tool_input, ("path",))
    root = workspace_root(request.get("cwd"))
    target, rel = resolve_in_scope(root, tool_input.get("path"))
    try:
        info = os.stat(target)
    except (FileNotFoundError, NotADirectoryError):
        raise ToolError("NOT_FOUND", "file %s does not exist" % json.dumps(rel))
    if not stat.S_ISREG(info.st_mode):
        raise ToolError("INVALID_INPUT", "path %s is not a regular file" % json.dumps(rel))
    if info.st_size > MAX_BYTES:
        raise too_large("file %s" % json.dumps(rel), info.st_size)
    with open(target, "rb") as handle:
        data = handle.read(MAX_BYTES + 1)
    if len(data) > MAX_BYTES:
        raise too_large("file %s" % json.dumps(rel), len(data))
    try:
        content = data.decode("utf-8")
    except UnicodeDecodeError:
        raise ToolError("INVALID_INPUT", "file %s is not UTF-8 text" % json.dumps(rel))
    return {"success": True, "data": {"content": content, "bytes": len(data)}}
"#;

/// `run()` of `file.write_text`.
pub(crate) const WRITE_TEXT_RUN: &str = r#"

def run():
    tool_input, request = read_request()
    check_fields(tool_input, ("path", "content"))
    content = tool_input.get("content")
    if not isinstance(content, str):
        raise ToolError("INVALID_INPUT", "content must be a string")
    root = workspace_root(request.get("cwd"))
    target, rel = resolve_in_scope(root, tool_input.get("path"))
    try:
        data = content.encode("utf-8")
    except UnicodeEncodeError:
        raise ToolError("INVALID_INPUT", "content is not valid Unicode text")
    if len(data) > MAX_BYTES:
        raise too_large("content", len(data))
    if os.path.isdir(target):
        raise ToolError("INVALID_INPUT", "path %s is a directory" % json.dumps(rel))
    os.makedirs(os.path.dirname(target), exist_ok=True)
    # O_NOFOLLOW: never write through a symlink that appeared after the path was checked.
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_NOFOLLOW", 0)
    with os.fdopen(os.open(target, flags, 0o644), "wb") as handle:
        handle.write(data)
    return {
        "success": True,
        "data": {"bytes_written": len(data)},
        "metadata": {"artifacts_written": [rel]},
    }
"#;

/// `run()` of `http.get_json`.
pub(crate) const HTTP_GET_JSON_RUN: &str = r#"

class NoRedirect(urllib.request.HTTPRedirectHandler):
    """Report redirects instead of following them: the allow-list names exact URLs."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        return None


def http_error(url, status):
    return {
        "success": False,
        "data": {"status": status},
        "error": {"code": "HTTP_ERROR", "message": "GET %s returned HTTP %d" % (url, status)},
    }


def run():
    tool_input, _request = read_request()
    check_fields(tool_input, ("url",))
    url = tool_input.get("url")
    if not isinstance(url, str) or url not in ALLOWED_URLS:
        raise ToolError("INVALID_INPUT", "url %s is not in this tool's allow-list" % json.dumps(url))
    opener = urllib.request.build_opener(NoRedirect)
    request = urllib.request.Request(url, headers={"Accept": "application/json"}, method="GET")
    try:
        response = opener.open(request, timeout=TIMEOUT_MS / 1000.0)
    except urllib.error.HTTPError as exc:
        status = exc.code
        exc.close()
        return http_error(url, status)
    except (urllib.error.URLError, OSError, ValueError) as exc:
        raise ToolError("TOOL_EXECUTION_FAILED", "GET %s failed: %s" % (url, getattr(exc, "reason", exc)))
    with response:
        status = response.status
        if not 200 <= status < 300:
            return http_error(url, status)
        content_type = response.headers.get("Content-Type", "")
        if "application/json" not in content_type.lower():
            raise ToolError(
                "INVALID_OUTPUT",
                "GET %s returned content-type %s, not application/json" % (url, json.dumps(content_type)),
            )
        declared = response.headers.get("Content-Length", "")
        if declared.isdigit() and int(declared) > MAX_BYTES:
            raise too_large("response body", int(declared))
        raw = response.read(MAX_BYTES + 1)
    if len(raw) > MAX_BYTES:
        raise too_large("response body", len(raw))
    try:
        body = json.loads(raw.decode("utf-8"))
    except ValueError as exc:
        raise ToolError("INVALID_OUTPUT", "GET %s returned invalid JSON: %s" % (url, exc))
    if not isinstance(body, dict):
        raise ToolError("INVALID_OUTPUT", "GET %s returned JSON that is not an object" % url)
    return {"success": True, "data": {"status": status, "body": body}}
"#;

/// The entry point shared by every generated tool.
pub(crate) const MAIN: &str = r#"

def main():
    try:
        result = run()
    except ToolError as exc:
        result = {"success": False, "error": {"code": exc.code, "message": exc.message}}
    except Exception as exc:  # every failure must come back as a ToolOutput
        result = {
            "success": False,
            "error": {"code": "TOOL_EXECUTION_FAILED", "message": "%s: %s" % (type(exc).__name__, exc)},
        }
    sys.stdout.write(json.dumps(result) + "\n")
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
"#;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn python_literals_are_ascii_and_escaped() {
        assert_eq!(py_str("notes/**/*.md"), r#""notes/**/*.md""#);
        assert_eq!(py_str("a\"b\\c\nd"), r#""a\"b\\c\nd""#);
        assert_eq!(py_str("é😀"), r#""\u00e9\U0001f600""#);
        assert_eq!(
            py_docstring("x \"\"\" y\nz"),
            "\"\"\"x \\\"\\\"\\\" y\nz\n\"\"\"\n"
        );
    }
}
