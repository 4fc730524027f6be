//! Errors about a file the user wrote, pointing at the file, line, column and field.
//!
//! A [`FileDiagnostic`] is a `miette` diagnostic: the binary renders it with the offending line
//! underlined, and `--json` callers get the same facts as fields. Library code builds them from a
//! [`SourceFile`] and either a byte span or a field path, so the rule that found a problem never
//! has to know where in the text it is.

use std::fmt;
use std::path::Path;
use std::sync::Arc;

use miette::{Diagnostic, LabeledSpan, NamedSource, SourceSpan};
use serde_json::{json, Value};

use crate::yaml::{self, de::DeError, FieldPath, Node, Span, YamlError};

/// The text of a file as it was read, with the name it is shown under.
#[derive(Debug, Clone)]
pub struct SourceFile {
    pub name: String,
    pub text: Arc<String>,
}

impl SourceFile {
    pub fn new(name: impl Into<String>, text: impl Into<String>) -> Self {
        SourceFile {
            name: name.into(),
            text: Arc::new(text.into()),
        }
    }

    /// Read a file as UTF-8; the error names the path.
    pub fn read(path: &Path) -> Result<Self, FileDiagnostic> {
        let name = path.display().to_string();
        let bytes = std::fs::read(path).map_err(|e| {
            let what = if e.kind() == std::io::ErrorKind::NotFound {
                "file not found".to_string()
            } else {
                format!("cannot read file: {e}")
            };
            FileDiagnostic::without_source("FILE_NOT_READABLE", &name, what)
        })?;
        let text = String::from_utf8(bytes).map_err(|e| {
            FileDiagnostic::without_source(
                "FILE_NOT_UTF8",
                &name,
                format!(
                    "file is not valid UTF-8 (invalid byte at offset {})",
                    e.utf8_error().valid_up_to()
                ),
            )
        })?;
        Ok(SourceFile::new(name, text))
    }

    /// 1-based line and column of a byte offset (column in characters).
    pub fn line_col(&self, offset: usize) -> (usize, usize) {
        let offset = offset.min(self.text.len());
        let before = &self.text[..floor_char_boundary(&self.text, offset)];
        let line = before.matches('\n').count() + 1;
        let line_start = before.rfind('\n').map(|i| i + 1).unwrap_or(0);
        let column = before[line_start..].chars().count() + 1;
        (line, column)
    }
}

fn floor_char_boundary(s: &str, mut i: usize) -> usize {
    while i > 0 && !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

/// One problem in one file.
#[derive(Debug, Clone)]
pub struct FileDiagnostic {
    pub code: &'static str,
    pub file: String,
    /// 1-based; 0 when the problem is about the file as a whole.
    pub line: usize,
    pub column: usize,
    pub field: Option<String>,
    pub message: String,
    pub help: Option<String>,
    source: Option<NamedSource<Arc<String>>>,
    span: Option<SourceSpan>,
    label: String,
    related: Vec<(SourceSpan, String)>,
}

impl FileDiagnostic {
    /// A problem with no position (the file is missing, unreadable, ...).
    pub fn without_source(code: &'static str, file: &str, message: impl Into<String>) -> Self {
        FileDiagnostic {
            code,
            file: file.to_string(),
            line: 0,
            column: 0,
            field: None,
            message: message.into(),
            help: None,
            source: None,
            span: None,
            label: String::new(),
            related: Vec::new(),
        }
    }

    /// A problem at a byte span of `src`.
    pub fn at_span(
        code: &'static str,
        src: &SourceFile,
        span: Span,
        message: impl Into<String>,
    ) -> Self {
        let (line, column) = src.line_col(span.start);
        FileDiagnostic {
            code,
            file: src.name.clone(),
            line,
            column,
            field: None,
            message: message.into(),
            help: None,
            source: Some(NamedSource::new(src.name.clone(), src.text.clone())),
            span: Some(SourceSpan::new(span.start.into(), span.len())),
            label: "here".to_string(),
            related: Vec::new(),
        }
    }

    /// A problem about the field at `path` of the document `root` parsed from `src`.
    pub fn at_field(
        code: &'static str,
        src: &SourceFile,
        root: &Node,
        path: &FieldPath,
        at_key: bool,
        message: impl Into<String>,
    ) -> Self {
        let span = root.locate(path.segs(), at_key);
        let mut d = Self::at_span(code, src, span, message);
        if !path.is_root() {
            d.field = Some(path.to_string());
        }
        d
    }

    pub fn with_help(mut self, help: impl Into<String>) -> Self {
        self.help = Some(help.into());
        self
    }

    pub fn with_label(mut self, label: impl Into<String>) -> Self {
        self.label = label.into();
        self
    }

    pub fn with_related(mut self, span: Span, label: impl Into<String>) -> Self {
        self.related
            .push((SourceSpan::new(span.start.into(), span.len()), label.into()));
        self
    }

    /// Show this diagnostic under another file name (a staged copy reported as its source).
    pub fn with_file_name(mut self, name: impl Into<String>) -> Self {
        let name = name.into();
        if let Some(src) = self.source.take() {
            let text = src.inner().clone();
            self.source = Some(NamedSource::new(name.clone(), text));
        }
        self.file = name;
        self
    }

    /// `file:line:col` (or just the file when there is no position).
    pub fn location(&self) -> String {
        if self.line == 0 {
            self.file.clone()
        } else {
            format!("{}:{}:{}", self.file, self.line, self.column)
        }
    }

    /// The facts of this diagnostic for `--json` output.
    pub fn to_json(&self) -> Value {
        json!({
            "code": self.code,
            "file": self.file,
            "line": (self.line > 0).then_some(self.line),
            "column": (self.column > 0).then_some(self.column),
            "field": self.field,
            "message": self.message,
            "help": self.help,
        })
    }

    /// One line for logs and plain output: `file:line:col: field: message`.
    pub fn one_line(&self) -> String {
        let mut s = format!("{}: ", self.location());
        if let Some(field) = &self.field {
            s.push_str(&format!("`{field}`: "));
        }
        s.push_str(&self.message);
        s
    }
}

impl fmt::Display for FileDiagnostic {
    // With a source attached, miette shows `file:line:col` above the snippet, so the headline
    // stays short; without one, the file is the only place there is to name.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.field, &self.source) {
            (Some(field), Some(_)) => write!(f, "`{field}`: {}", self.message),
            (None, Some(_)) => f.write_str(&self.message),
            (Some(field), None) => write!(f, "{}: `{field}`: {}", self.file, self.message),
            (None, None) => write!(f, "{}: {}", self.file, self.message),
        }
    }
}

impl std::error::Error for FileDiagnostic {}

impl Diagnostic for FileDiagnostic {
    fn code<'a>(&'a self) -> Option<Box<dyn fmt::Display + 'a>> {
        Some(Box::new(self.code))
    }

    fn help<'a>(&'a self) -> Option<Box<dyn fmt::Display + 'a>> {
        self.help
            .as_ref()
            .map(|h| Box::new(h) as Box<dyn fmt::Display>)
    }

    fn source_code(&self) -> Option<&dyn miette::SourceCode> {
        self.source.as_ref().map(|s| s as &dyn miette::SourceCode)
    }

    fn labels(&self) -> Option<Box<dyn Iterator<Item = LabeledSpan> + '_>> {
        let span = self.span?;
        let primary = LabeledSpan::new_primary_with_span(Some(self.label.clone()), span);
        let related = self
            .related
            .iter()
            .map(|(s, l)| LabeledSpan::new_with_span(Some(l.clone()), *s));
        Some(Box::new(std::iter::once(primary).chain(related)))
    }
}

/// Several problems found in one pass (validation reports all it can, not just the first).
#[derive(Debug, Clone, Default)]
pub struct Diagnostics(pub Vec<FileDiagnostic>);

impl Diagnostics {
    pub fn push(&mut self, d: FileDiagnostic) {
        self.0.push(d);
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn into_result(self) -> Result<(), Diagnostics> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(self)
        }
    }

    pub fn iter(&self) -> impl Iterator<Item = &FileDiagnostic> {
        self.0.iter()
    }
}

impl From<FileDiagnostic> for Diagnostics {
    fn from(d: FileDiagnostic) -> Self {
        Diagnostics(vec![d])
    }
}

impl fmt::Display for Diagnostics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, d) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            f.write_str(&d.one_line())?;
        }
        Ok(())
    }
}

impl std::error::Error for Diagnostics {}

/// Parse `src` as YAML, or say where it is malformed.
pub fn parse_yaml(src: &SourceFile) -> Result<Node, FileDiagnostic> {
    yaml::parse(&src.text).map_err(|e| yaml_error(src, e))
}

pub fn yaml_error(src: &SourceFile, e: YamlError) -> FileDiagnostic {
    let mut d = FileDiagnostic::at_span("YAML_SYNTAX", src, e.span, e.message);
    if let Some((span, label)) = e.related {
        d = d.with_related(span, label);
    }
    d
}

/// Typed deserialization of a parsed document, with the error placed on the field.
pub fn from_yaml<T: serde::de::DeserializeOwned>(
    src: &SourceFile,
    root: &Node,
    code: &'static str,
) -> Result<T, FileDiagnostic> {
    yaml::de::from_node(root).map_err(|e| de_error(src, root, code, e))
}

pub fn de_error(src: &SourceFile, root: &Node, code: &'static str, e: DeError) -> FileDiagnostic {
    let path = e.path.clone().unwrap_or_default();
    let label = if e.at_key { "unknown key" } else { "here" };
    let mut d =
        FileDiagnostic::at_field(code, src, root, &path, e.at_key, e.message).with_label(label);
    d.help = e.help;
    d
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_and_column_are_one_based_characters() {
        let src = SourceFile::new("x.yaml", "a: 1\nbé: 2\n");
        assert_eq!(src.line_col(0), (1, 1));
        assert_eq!(src.line_col(5), (2, 1));
        assert_eq!(src.line_col(9), (2, 4));
    }

    #[test]
    fn type_errors_land_on_the_field() {
        #[derive(serde::Deserialize, Debug)]
        #[allow(dead_code)]
        struct T {
            version: String,
        }
        let src = SourceFile::new("m.yaml", "id: x\nversion: 1.0\n");
        let root = parse_yaml(&src).expect("yaml");
        let d = from_yaml::<T>(&src, &root, "MANIFEST_INVALID").expect_err("type");
        assert_eq!((d.line, d.column), (2, 10));
        assert_eq!(d.field.as_deref(), Some("version"));
        assert_eq!(
            d.one_line(),
            "m.yaml:2:10: `version`: expected a string, found number `1.0`"
        );
    }
}
