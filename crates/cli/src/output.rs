//! How results and errors reach a person or a script.
//!
//! Every command returns either a JSON value (printed as-is with `--json`) plus human text, or a
//! [`CliError`]. Errors are rendered once, here: as miette reports with the offending line shown,
//! or as `{"error": {"code", "message", "diagnostics"}}` with `--json`.

use std::fmt;
use std::io::IsTerminal;

use lumenflow_kernel::diagnostics::{Diagnostics, FileDiagnostic};
use miette::{GraphicalReportHandler, GraphicalTheme};
use serde_json::{json, Value};

/// A failed command: a stable code, a message, and the file diagnostics behind it (if any).
#[derive(Debug)]
pub struct CliError {
    pub code: String,
    pub message: String,
    pub help: Option<String>,
    pub diagnostics: Vec<FileDiagnostic>,
    /// The command already explained the failure on the terminal; print nothing more.
    pub reported: bool,
}

impl CliError {
    pub fn already_reported(mut self, reported: bool) -> Self {
        self.reported = reported;
        self
    }

    pub fn new(code: impl Into<String>, message: impl Into<String>) -> Self {
        CliError {
            code: code.into(),
            message: message.into(),
            help: None,
            diagnostics: Vec::new(),
            reported: false,
        }
    }

    pub fn with_help(mut self, help: impl Into<String>) -> Self {
        self.help = Some(help.into());
        self
    }

    pub fn from_diagnostics(
        code: impl Into<String>,
        message: impl Into<String>,
        diagnostics: Diagnostics,
    ) -> Self {
        CliError {
            code: code.into(),
            message: message.into(),
            help: None,
            diagnostics: diagnostics.0,
            reported: false,
        }
    }

    pub fn to_json(&self) -> Value {
        json!({"error": {
            "code": self.code,
            "message": self.message,
            "help": self.help,
            "diagnostics": self.diagnostics.iter().map(FileDiagnostic::to_json).collect::<Vec<_>>(),
        }})
    }
}

impl fmt::Display for CliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl From<Diagnostics> for CliError {
    fn from(d: Diagnostics) -> Self {
        let code = d.0.first().map(|x| x.code).unwrap_or("INVALID_INPUT");
        let message = match d.0.len() {
            1 => d.0[0].one_line(),
            n => format!("{n} problems found"),
        };
        CliError::from_diagnostics(code, message, d)
    }
}

impl From<FileDiagnostic> for CliError {
    fn from(d: FileDiagnostic) -> Self {
        Diagnostics::from(d).into()
    }
}

/// Render file diagnostics the way miette does, with the source line underlined. Colour and
/// Unicode only on a terminal, so piped output and golden files stay plain.
pub fn render_diagnostic(d: &FileDiagnostic, terminal: bool) -> String {
    let theme = if terminal {
        GraphicalTheme::unicode()
    } else {
        GraphicalTheme::unicode_nocolor()
    };
    let handler = GraphicalReportHandler::new_themed(theme).with_width(100);
    let mut out = String::new();
    if handler.render_report(&mut out, d).is_err() {
        out = d.one_line();
    }
    out
}

pub fn print_error(err: &CliError, json_mode: bool) {
    if err.reported {
        return;
    }
    if json_mode {
        // Not `stdout_line`: a reader that went away must not turn the failure into status 0.
        use std::io::Write;
        let text = serde_json::to_string_pretty(&err.to_json()).unwrap_or_default();
        let _ = writeln!(std::io::stdout(), "{text}");
        return;
    }
    let terminal = std::io::stderr().is_terminal();
    if err.diagnostics.is_empty() || err.diagnostics.len() > 1 {
        // Line breaks are the message's own layout; every other control character is shown
        // escaped, so no text a tool or a model wrote can move the cursor or recolour the line.
        eprintln!(
            "error[{}]: {}",
            escape_controls(&err.code, false),
            escape_controls(&err.message, true)
        );
    }
    for d in &err.diagnostics {
        eprintln!("{}", render_diagnostic(d, terminal));
    }
    if let Some(help) = &err.help {
        eprintln!("help: {}", escape_controls(help, true));
    }
}

/// `s` with its control characters (ANSI escapes, `\r`, backspace, ...) written as `\u{..}`
/// escapes, keeping `\n` when `keep_newlines`. Text a model or a tool chose is printed through
/// this, so it cannot overwrite the `error[...]` line or hide what follows (walk-E finding 9).
pub fn escape_controls(s: &str, keep_newlines: bool) -> String {
    let hostile = |c: char| (c.is_control() && !(keep_newlines && c == '\n')) || is_bidi(c);
    if !s.chars().any(hostile) {
        return s.to_string();
    }
    s.chars()
        .map(|c| match c {
            '\n' if keep_newlines => "\n".to_string(),
            c if c.is_control() || is_bidi(c) => c.escape_default().to_string(),
            c => c.to_string(),
        })
        .collect()
}

/// Unicode's bidirectional formatting characters: not controls to `char::is_control`, but a
/// right-to-left override makes a terminal show the rest of the line reversed.
fn is_bidi(c: char) -> bool {
    matches!(c, '\u{200E}' | '\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
}

/// Print a success: the JSON document with `--json`, else the human text.
pub fn print_ok(json_mode: bool, value: &Value, human: &str) {
    if json_mode {
        stdout_line(&serde_json::to_string_pretty(value).unwrap_or_default());
    } else if !human.is_empty() {
        stdout_text(human);
        if !human.ends_with('\n') {
            stdout_text("\n");
        }
    }
}

/// `text` and a newline on stdout, as [`stdout_text`].
pub fn stdout_line(text: &str) {
    stdout_text(&format!("{text}\n"));
}

/// Write `text` to stdout and flush. `print!` panics when the reader has gone (`lumenflow …
/// | head`); here a closed pipe ends the process quietly with status 0, as grep or ripgrep do,
/// since everything the reader wanted was written. Any other failure to write is reported on
/// stderr with status 1.
pub fn stdout_text(text: &str) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    if let Err(e) = out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            std::process::exit(0);
        }
        eprintln!("error[IO_ERROR]: cannot write to stdout: {e}");
        std::process::exit(1);
    }
}

/// Print a warning to stderr (never in `--json` mode, where warnings are fields).
pub fn warn(json_mode: bool, message: &str) {
    if !json_mode {
        eprintln!("warning: {message}");
    }
}

#[cfg(test)]
mod tests {
    use super::escape_controls;

    /// Walk-E finding 9: a model's abort reason cannot rewrite the terminal line.
    #[test]
    fn control_characters_are_shown_escaped() {
        let reason = "gave up\r\x1b[2K\x1b[32mAll good\x1b[0m\nstatus: completed";
        assert_eq!(
            escape_controls(reason, false),
            r"gave up\r\u{1b}[2K\u{1b}[32mAll good\u{1b}[0m\nstatus: completed"
        );
        assert_eq!(
            escape_controls(reason, true),
            "gave up\\r\\u{1b}[2K\\u{1b}[32mAll good\\u{1b}[0m\nstatus: completed"
        );
        assert_eq!(escape_controls("plain text: ok", false), "plain text: ok");
        // Walk-E recheck N2: a right-to-left override would reverse the rest of the line.
        assert_eq!(
            escape_controls("ok \u{202E}deliaf", false),
            "ok \\u{202e}deliaf"
        );
    }
}
