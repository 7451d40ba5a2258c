//! Reads a TOML table key by key, with spans, collecting every problem.
//!
//! serde stops at the first error; users fixing a file want all of them at
//! once, each at its `line:col`. So files are parsed with `toml_edit`, which
//! keeps spans, and read through [`Fields`], which records a diagnostic for
//! every missing, mistyped or unknown key and carries on.

use std::ops::Range;

use toml_edit::{Item, Table, Value};

use crate::codes::ErrorCode;
use crate::diag::{Diagnostic, Source};

/// A value read from the file with where it stood.
#[derive(Clone, Debug, PartialEq)]
pub struct Spanned<T> {
    /// The value.
    pub value: T,
    /// Its byte span in the file.
    pub span: Option<Range<usize>>,
}

/// Reads the keys of one table.
pub struct Fields<'a, 'd> {
    source: &'a Source,
    table: &'a Table,
    /// Where the table starts (for "missing key" errors).
    at: Option<Range<usize>>,
    /// `[daemon]`, `[[instances]] #2` and the like, for messages.
    context: String,
    seen: Vec<&'static str>,
    diags: &'d mut Vec<Diagnostic>,
}

impl<'a, 'd> Fields<'a, 'd> {
    /// Starts reading `table`.
    pub fn new(
        source: &'a Source,
        table: &'a Table,
        at: Option<Range<usize>>,
        context: impl Into<String>,
        diags: &'d mut Vec<Diagnostic>,
    ) -> Self {
        Self {
            source,
            table,
            at,
            context: context.into(),
            seen: Vec::new(),
            diags,
        }
    }

    fn where_(&self, key: &str) -> String {
        if self.context.is_empty() {
            format!("`{key}`")
        } else {
            format!("`{key}` in {}", self.context)
        }
    }

    /// The directory relative paths in this file are resolved against.
    pub fn base_dir(&self) -> std::path::PathBuf {
        self.source
            .file
            .parent()
            .map_or_else(|| ".".into(), std::path::Path::to_path_buf)
    }

    /// Records a problem at `span`.
    pub fn error(&mut self, span: Option<Range<usize>>, code: ErrorCode, message: impl Into<String>) {
        self.diags.push(self.source.diag(span, code, message));
    }

    fn item(&mut self, key: &'static str, required: bool) -> Option<&'a Item> {
        self.seen.push(key);
        match self.table.get(key) {
            Some(item) if !item.is_none() => Some(item),
            _ => {
                if required {
                    let message = format!("missing required key {}", self.where_(key));
                    self.error(self.at.clone(), ErrorCode::MissingParameter, message);
                }
                None
            }
        }
    }

    fn mistyped(&mut self, key: &str, item: &Item, expected: &str) {
        let message = format!("{} must be {expected}, found {}", self.where_(key), item.type_name());
        self.error(item.span(), ErrorCode::InvalidParameter, message);
    }

    /// A string value.
    pub fn string(&mut self, key: &'static str, required: bool) -> Option<Spanned<String>> {
        let item = self.item(key, required)?;
        match item.as_str() {
            Some(s) => Some(Spanned {
                value: s.to_string(),
                span: item.span(),
            }),
            None => {
                self.mistyped(key, item, "a string");
                None
            }
        }
    }

    /// A non-empty string value.
    pub fn non_empty(&mut self, key: &'static str, required: bool) -> Option<Spanned<String>> {
        let value = self.string(key, required)?;
        if value.value.trim().is_empty() {
            let message = format!("{} must not be empty", self.where_(key));
            self.error(value.span.clone(), ErrorCode::InvalidParameter, message);
            return None;
        }
        Some(value)
    }

    /// An integer value within `range`.
    pub fn integer(&mut self, key: &'static str, required: bool, range: Range<i64>) -> Option<Spanned<i64>> {
        let item = self.item(key, required)?;
        let Some(n) = item.as_integer() else {
            self.mistyped(key, item, "an integer");
            return None;
        };
        if !range.contains(&n) {
            let message = format!(
                "{} must be between {} and {}, found {n}",
                self.where_(key),
                range.start,
                range.end - 1
            );
            self.error(item.span(), ErrorCode::InvalidParameter, message);
            return None;
        }
        Some(Spanned {
            value: n,
            span: item.span(),
        })
    }

    /// A number (integer or float) that must be positive.
    pub fn positive_number(&mut self, key: &'static str, required: bool) -> Option<Spanned<f64>> {
        let item = self.item(key, required)?;
        let n = match item.as_value() {
            Some(Value::Integer(i)) => *i.value() as f64,
            Some(Value::Float(f)) => *f.value(),
            _ => {
                self.mistyped(key, item, "a number");
                return None;
            }
        };
        if !(n.is_finite() && n > 0.0) {
            let message = format!("{} must be a positive number, found {n}", self.where_(key));
            self.error(item.span(), ErrorCode::InvalidParameter, message);
            return None;
        }
        Some(Spanned {
            value: n,
            span: item.span(),
        })
    }

    /// One of `choices`.
    pub fn choice(&mut self, key: &'static str, required: bool, choices: &[&str]) -> Option<Spanned<String>> {
        let value = self.string(key, required)?;
        if !choices.contains(&value.value.as_str()) {
            let message = format!(
                "{} must be one of {}, found \"{}\"",
                self.where_(key),
                choices
                    .iter()
                    .map(|c| format!("\"{c}\""))
                    .collect::<Vec<_>>()
                    .join(", "),
                value.value
            );
            self.error(value.span.clone(), ErrorCode::InvalidParameter, message);
            return None;
        }
        Some(value)
    }

    /// A sub-table (`[options]`).
    pub fn table(&mut self, key: &'static str) -> Option<(&'a Table, Option<Range<usize>>)> {
        let item = self.item(key, false)?;
        match item.as_table() {
            Some(table) => Some((table, item.span())),
            None => {
                self.mistyped(key, item, "a table");
                None
            }
        }
    }

    /// An array of tables (`[[instances]]`).
    pub fn tables(&mut self, key: &'static str) -> Vec<(&'a Table, Option<Range<usize>>)> {
        let Some(item) = self.item(key, false) else {
            return Vec::new();
        };
        match item.as_array_of_tables() {
            Some(array) => array.iter().map(|t| (t, t.span())).collect(),
            None => {
                self.mistyped(key, item, "an array of tables ([[...]])");
                Vec::new()
            }
        }
    }

    /// A key that must not be there, with the reason.
    pub fn forbid(&mut self, key: &'static str, why: &str) {
        self.seen.push(key);
        if let Some((k, _)) = self.table.get_key_value(key) {
            let message = format!("{} is not allowed: {why}", self.where_(key));
            self.error(k.span(), ErrorCode::InvalidParameter, message);
        }
    }

    /// Reports every key that was not read.
    pub fn finish(self) {
        let unknown: Vec<_> = self
            .table
            .iter()
            .filter(|(k, _)| !self.seen.contains(k))
            .map(|(k, _)| k.to_string())
            .collect();
        for key in unknown {
            let span = self.table.get_key_value(&key).and_then(|(k, _)| k.span());
            let mut known: Vec<_> = self.seen.clone();
            known.sort_unstable();
            known.dedup();
            let message = format!(
                "unknown key {}; expected one of: {}",
                self.where_(&key),
                known.join(", ")
            );
            self.diags
                .push(self.source.diag(span, ErrorCode::InvalidParameter, message));
        }
    }
}

/// Parses a TOML file, or returns its syntax error as a diagnostic.
pub fn parse(source: &Source) -> Result<toml_edit::ImDocument<String>, Diagnostic> {
    toml_edit::ImDocument::parse(source.text.clone()).map_err(|e| {
        let message = e.message().trim().to_string();
        source.diag(
            e.span(),
            ErrorCode::InvalidParameter,
            format!("invalid TOML: {message}"),
        )
    })
}
