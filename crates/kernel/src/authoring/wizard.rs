//! The interactive `pack author` wizard.
//!
//! Why over `BufRead`/`Write`: the CLI passes stdin and stderr (so stdout stays clean for
//! `--json`), and tests pass byte buffers with scripted answers, so the question flow is tested
//! without a terminal.
//!
//! Questions, in order: pack id; version (default `1.0.0`); task types, comma separated (default
//! `task`; trimmed, empties dropped, duplicates dropped, order kept); then per tool: template (by
//! number 1-3 or id), tool name, scope pattern (file templates) or comma-separated https URLs
//! (`http.get_json`), and "Add another tool?" (default no). An invalid answer prints the
//! validation message and asks again, at most [`MAX_ATTEMPTS`] times per question; then the
//! wizard fails with [`AuthoringError::Invalid`]. End of input cancels
//! ([`AuthoringError::Cancelled`]).

use super::request::{
    check_pack_id, check_scope_pattern, check_tool_name, check_urls, check_version, tool_file,
    validate_request, AuthoringRequest, FileTemplate, HttpGetJsonTemplate, TemplateRequest,
    FILE_MAX_BYTES_DEFAULT, HTTP_MAX_BYTES_DEFAULT, HTTP_TIMEOUT_MS_DEFAULT, TEMPLATE_IDS,
};
use super::{AuthoringError, AuthoringIssue};
use std::io::{BufRead, Write};

/// Answers tried per question before the wizard gives up.
pub const MAX_ATTEMPTS: usize = 5;

const TEMPLATE_HELP: [&str; 3] = [
    "read UTF-8 text files under a path scope",
    "write UTF-8 text files under a path scope",
    "GET JSON from a fixed list of https URLs",
];

/// Runs the wizard: questions go to `output`, answers come from `input` (one per line).
pub fn run_wizard(
    input: &mut dyn BufRead,
    output: &mut dyn Write,
) -> Result<AuthoringRequest, AuthoringError> {
    let mut wizard = Wizard { input, output };

    let pack_id = wizard.ask_until_valid("Pack id: ", "pack_id", |answer| {
        check_pack_id(answer).map_or(Ok(answer.to_owned()), Err)
    })?;
    let version = wizard.ask_until_valid("Version [1.0.0]: ", "version", |answer| {
        let version = if answer.is_empty() { "1.0.0" } else { answer };
        check_version(version).map_or(Ok(version.to_owned()), Err)
    })?;
    let task_types = wizard.ask_until_valid(
        "Task types, comma separated [task]: ",
        "task_types",
        |answer| {
            let answer = if answer.is_empty() { "task" } else { answer };
            let types = split_list(answer);
            if types.is_empty() {
                Err("task_types must list at least one task type".to_owned())
            } else {
                Ok(types)
            }
        },
    )?;

    let mut templates: Vec<TemplateRequest> = Vec::new();
    loop {
        let i = templates.len();
        let mut prompt = format!("Template for tool {}:\n", i + 1);
        for (n, (id, help)) in TEMPLATE_IDS.iter().zip(TEMPLATE_HELP).enumerate() {
            prompt.push_str(&format!("  {}) {id:<16} {help}\n", n + 1));
        }
        prompt.push_str("Choose 1-3 or a template id: ");
        let template_id =
            wizard.ask_until_valid(&prompt, &format!("templates[{i}].template_id"), |answer| {
                let by_number = answer
                    .parse::<usize>()
                    .ok()
                    .and_then(|n| n.checked_sub(1))
                    .and_then(|n| TEMPLATE_IDS.get(n));
                by_number
                    .or_else(|| TEMPLATE_IDS.iter().find(|id| **id == answer))
                    .copied()
                    .ok_or_else(|| {
                        format!(
                            "unknown template `{answer}`; choose 1-3 or one of `{}`",
                            TEMPLATE_IDS.join("`, `")
                        )
                    })
            })?;

        let tool_name = wizard.ask_until_valid(
            "Tool name: ",
            &format!("templates[{i}].tool_name"),
            |answer| {
                if let Some(m) = check_tool_name(answer) {
                    return Err(m);
                }
                if let Some(other) = templates.iter().find(|t| {
                    t.tool_name() == answer || tool_file(t.tool_name()) == tool_file(answer)
                }) {
                    return Err(if other.tool_name() == answer {
                        format!("duplicate tool_name `{answer}`")
                    } else {
                        format!(
                            "tool_name `{answer}` would share the implementation file `{}` with `{}`",
                            tool_file(answer),
                            other.tool_name()
                        )
                    });
                }
                Ok(answer.to_owned())
            },
        )?;

        let template = if template_id == TEMPLATE_IDS[2] {
            let allowed_urls = wizard.ask_until_valid(
                "HTTPS URLs, comma separated: ",
                &format!("templates[{i}].allowed_urls"),
                |answer| {
                    let urls = split_list(answer);
                    match check_urls(&urls).into_iter().next() {
                        Some((_, message)) => Err(message),
                        None => Ok(urls),
                    }
                },
            )?;
            TemplateRequest::HttpGetJson(HttpGetJsonTemplate {
                tool_name,
                description: None,
                allowed_urls,
                timeout_ms: HTTP_TIMEOUT_MS_DEFAULT,
                max_bytes: HTTP_MAX_BYTES_DEFAULT,
            })
        } else {
            let write = template_id == TEMPLATE_IDS[1];
            let example = if write {
                "reports/**/*.md"
            } else {
                "notes/**/*.md"
            };
            let scope_pattern = wizard.ask_until_valid(
                &format!("Scope pattern (for example {example}): "),
                &format!("templates[{i}].scope_pattern"),
                |answer| match check_scope_pattern(answer, write).into_iter().next() {
                    Some(message) => Err(message),
                    None => Ok(answer.to_owned()),
                },
            )?;
            let file = FileTemplate {
                tool_name,
                description: None,
                scope_pattern,
                max_bytes: FILE_MAX_BYTES_DEFAULT,
            };
            if write {
                TemplateRequest::WriteText(file)
            } else {
                TemplateRequest::ReadText(file)
            }
        };
        templates.push(template);

        let another =
            wizard.ask_until_valid("Add another tool? [y/N]: ", "add_another", |answer| {
                match answer.to_ascii_lowercase().as_str() {
                    "y" | "yes" => Ok(true),
                    "" | "n" | "no" => Ok(false),
                    _ => Err(format!("answer `y` or `n`, got `{answer}`")),
                }
            })?;
        if !another {
            break;
        }
    }

    let request = AuthoringRequest {
        pack_id,
        version,
        task_types,
        description: None,
        templates,
    };
    validate_request(&request)?;
    Ok(request)
}

/// Comma-separated answers: trimmed, empties dropped, duplicates dropped, order kept.
fn split_list(answer: &str) -> Vec<String> {
    let mut items: Vec<String> = Vec::new();
    for item in answer.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        if !items.iter().any(|seen| seen == item) {
            items.push(item.to_owned());
        }
    }
    items
}

struct Wizard<'a> {
    input: &'a mut dyn BufRead,
    output: &'a mut dyn Write,
}

impl Wizard<'_> {
    fn say(&mut self, text: &str) -> Result<(), AuthoringError> {
        self.output
            .write_all(text.as_bytes())
            .and_then(|()| self.output.flush())
            .map_err(|e| AuthoringError::io("<wizard output>", e))
    }

    /// One answer, trimmed; end of input cancels.
    fn ask(&mut self, prompt: &str) -> Result<String, AuthoringError> {
        self.say(prompt)?;
        let mut line = String::new();
        let read = self
            .input
            .read_line(&mut line)
            .map_err(|e| AuthoringError::io("<wizard input>", e))?;
        if read == 0 {
            self.say("\n")?;
            return Err(AuthoringError::Cancelled);
        }
        Ok(line.trim().to_owned())
    }

    /// Asks until `check` accepts the answer, at most [`MAX_ATTEMPTS`] times.
    fn ask_until_valid<T>(
        &mut self,
        prompt: &str,
        field: &str,
        mut check: impl FnMut(&str) -> Result<T, String>,
    ) -> Result<T, AuthoringError> {
        let mut last_problem = String::new();
        for _ in 0..MAX_ATTEMPTS {
            let answer = self.ask(prompt)?;
            match check(&answer) {
                Ok(value) => return Ok(value),
                Err(problem) => {
                    self.say(&format!("  {problem}\n"))?;
                    last_problem = problem;
                }
            }
        }
        Err(AuthoringError::Invalid(vec![AuthoringIssue::new(
            field,
            format!("{last_problem} (gave up after {MAX_ATTEMPTS} answers)"),
        )]))
    }
}
