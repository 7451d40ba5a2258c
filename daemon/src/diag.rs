//! Diagnostics for config and job files: `FILE:LINE:COL: message`, each with
//! the contract error code (CONTRACT §5) a rejection of it carries.

use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};

use crate::codes::ErrorCode;

/// One problem found in a file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Diagnostic {
    /// The file.
    pub file: PathBuf,
    /// 1-based line.
    pub line: usize,
    /// 1-based column, in characters.
    pub col: usize,
    /// What is wrong and, where it helps, how to fix it.
    pub message: String,
    /// The code a rejection for this problem carries.
    pub code: ErrorCode,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}:{}: {}",
            self.file.display(),
            self.line,
            self.col,
            self.message
        )
    }
}

/// A file's text, to turn byte spans into lines and columns.
#[derive(Clone, Debug)]
pub struct Source {
    /// Where it came from.
    pub file: PathBuf,
    /// Its text.
    pub text: String,
}

impl Source {
    /// Wraps a file's text.
    pub fn new(file: &Path, text: String) -> Self {
        Self {
            file: file.to_path_buf(),
            text,
        }
    }

    /// A diagnostic at `span` (the start of the file when unknown).
    pub fn diag(&self, span: Option<Range<usize>>, code: ErrorCode, message: impl Into<String>) -> Diagnostic {
        let offset = span.map_or(0, |s| s.start).min(self.text.len());
        let before = &self.text[..floor_char_boundary(&self.text, offset)];
        let line = before.matches('\n').count() + 1;
        let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
        Diagnostic {
            file: self.file.clone(),
            line,
            col,
            message: message.into(),
            code,
        }
    }
}

fn floor_char_boundary(text: &str, mut index: usize) -> usize {
    while index > 0 && !text.is_char_boundary(index) {
        index -= 1;
    }
    index
}

/// Every problem found in one or more files.
#[derive(Clone, Debug, Default, PartialEq, Eq, thiserror::Error)]
#[error("{}", render(.0))]
pub struct Diagnostics(pub Vec<Diagnostic>);

fn render(diags: &[Diagnostic]) -> String {
    diags.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n")
}

impl Diagnostics {
    /// The code of the first problem: the one a rejection reports.
    pub fn code(&self) -> ErrorCode {
        self.0.first().map_or(ErrorCode::InvalidParameter, |d| d.code)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spans_become_one_based_lines_and_character_columns() {
        let source = Source::new(Path::new("job.toml"), "a = 1\nb = “x”\n".into());
        let at = source.text.find('x').expect("x");
        let diag = source.diag(Some(at..at + 1), ErrorCode::InvalidParameter, "bad");
        assert_eq!((diag.line, diag.col), (2, 6));
        assert_eq!(diag.to_string(), "job.toml:2:6: bad");
    }
}
