//! What went wrong with a configuration, located precisely enough that an admin can go
//! straight to the offending line.

use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};

use crate::words::plural;

/// Stored problems are capped: past this, a broken million-line list file would only bury
/// the first (usually representative) mistakes.
pub const MAX_PROBLEMS: usize = 50;

/// One thing wrong with the configuration.
///
/// Displayed as `FILE:LINE[:COLUMN]: key `K`: ENTRY: MESSAGE`, leaving out the parts that
/// don't apply.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Problem {
    pub file: PathBuf,
    /// 1-based; `None` when the problem concerns the file as a whole.
    pub line: Option<usize>,
    /// 1-based, in characters; only TOML syntax errors have one.
    pub column: Option<usize>,
    /// The top-level key involved, e.g. `protected_tcp_ports`.
    pub key: Option<String>,
    /// Which element, e.g. ``entry 3 `10.0.0.5/24` `` (list files: just `` `10.0.0.5/24` ``).
    pub entry: Option<String>,
    /// What is wrong, with the fix where one is obvious.
    pub message: String,
}

impl Problem {
    pub fn new(file: &Path, line: Option<usize>, message: impl Into<String>) -> Problem {
        Problem {
            file: file.to_path_buf(),
            line,
            message: message.into(),
            ..Problem::default()
        }
    }

    pub fn key(mut self, key: &str) -> Problem {
        self.key = Some(key.to_owned());
        self
    }

    pub fn entry(mut self, entry: String) -> Problem {
        self.entry = Some(entry);
        self
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
            if let Some(column) = self.column {
                write!(f, ":{column}")?;
            }
        }
        if let Some(key) = &self.key {
            write!(f, ": key `{key}`")?;
        }
        if let Some(entry) = &self.entry {
            write!(f, ": {entry}")?;
        }
        write!(f, ": {}", self.message)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The configuration file itself could not be read (list files are problems instead, so
    /// that they can name the config line that lists them).
    #[error("reading {}: {error}", path.display())]
    Io {
        path: PathBuf,
        error: std::io::Error,
    },
    /// Everything found wrong, in file order; `omitted` more were found past the cap, and
    /// `overlaps` of all of them were entries repeating or inside another.
    #[error("{}", render(problems, *omitted, *overlaps))]
    Invalid {
        problems: Vec<Problem>,
        omitted: usize,
        overlaps: usize,
    },
    /// The configuration file itself is not one to trust (see [`crate::trusted_file`]).
    #[error(transparent)]
    Untrusted(#[from] crate::trusted_file::Untrusted),
}

impl ConfigError {
    /// The located problems; empty for [`ConfigError::Io`].
    pub fn problems(&self) -> &[Problem] {
        match self {
            ConfigError::Io { .. } | ConfigError::Untrusted(_) => &[],
            ConfigError::Invalid { problems, .. } => problems,
        }
    }
}

fn render(problems: &[Problem], omitted: usize, overlaps: usize) -> String {
    let mut lines: Vec<String> = problems.iter().map(Problem::to_string).collect();
    if omitted > 0 {
        let total = problems.len() + omitted;
        let overlaps = match overlaps {
            0 => String::new(),
            n => format!(
                ", {n} of them {} repeating or inside another entry",
                plural(n, "entry", "entries")
            ),
        };
        lines.push(format!(
            "... and {omitted} more {} ({total} in all{overlaps}); \
             `allowlistd --check --all-problems --config FILE` lists every one",
            plural(omitted, "problem", "problems")
        ));
    }
    lines.join("\n")
}

/// Collects problems up to a cap ([`MAX_PROBLEMS`] by default), counting the rest.
#[derive(Debug)]
pub struct Report {
    problems: Vec<Problem>,
    cap: usize,
    omitted: usize,
    overlaps: usize,
}

impl Default for Report {
    fn default() -> Report {
        Report::with_cap(MAX_PROBLEMS)
    }
}

impl Report {
    pub fn with_cap(cap: usize) -> Report {
        Report {
            problems: Vec::new(),
            cap,
            omitted: 0,
            overlaps: 0,
        }
    }

    pub fn push(&mut self, problem: Problem) {
        if self.problems.len() < self.cap {
            self.problems.push(problem);
        } else {
            self.omitted += 1;
        }
    }

    /// Pushes a problem about an entry that repeats or lies inside another, counted apart:
    /// a list file overlapping the inline entries can bring hundreds at once.
    pub fn push_overlap(&mut self, problem: Problem) {
        self.overlaps += 1;
        self.push(problem);
    }

    pub fn finish<T>(self, value: T) -> Result<T, ConfigError> {
        if self.problems.is_empty() {
            Ok(value)
        } else {
            Err(ConfigError::Invalid {
                problems: self.problems,
                omitted: self.omitted,
                overlaps: self.overlaps,
            })
        }
    }
}

/// Backquotes user text for a message, shortened so one bad line can't flood the report.
pub fn quoted(text: &str) -> String {
    const MAX_CHARS: usize = 64;
    match text.char_indices().nth(MAX_CHARS) {
        Some((cut, _)) => format!("`{}...`", &text[..cut]),
        None => format!("`{text}`"),
    }
}

/// Turns byte offsets into 1-based line and column numbers.
#[derive(Debug)]
pub struct LineIndex<'t> {
    text: &'t str,
    starts: Vec<usize>,
}

impl<'t> LineIndex<'t> {
    pub fn new(text: &'t str) -> LineIndex<'t> {
        let starts = std::iter::once(0)
            .chain(text.match_indices('\n').map(|(i, _)| i + 1))
            .collect();
        LineIndex { text, starts }
    }

    pub fn line(&self, offset: usize) -> usize {
        self.starts.partition_point(|&start| start <= offset)
    }

    /// Line of the start of `span`, if there is one.
    pub fn line_of(&self, span: Option<Range<usize>>) -> Option<usize> {
        span.map(|span| self.line(span.start))
    }

    pub fn column(&self, offset: usize) -> usize {
        let start = self.starts[self.line(offset) - 1];
        let end = offset.min(self.text.len());
        self.text.get(start..end).map_or(0, |s| s.chars().count()) + 1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_index_maps_offsets() {
        let text = "a = 1\nbb = 2\n\nü = 3";
        let index = LineIndex::new(text);
        assert_eq!(index.line(0), 1);
        assert_eq!(index.line(5), 1); // the newline belongs to its line
        assert_eq!(index.line(6), 2);
        assert_eq!(index.line(13), 3);
        assert_eq!(index.line(14), 4);
        assert_eq!(index.column(7), 2);
        // Columns count characters, not bytes: the last `=` (byte 17) follows "ü ".
        assert_eq!(index.column(17), 3);
        assert_eq!(index.line_of(Some(6..8)), Some(2));
        assert_eq!(index.line_of(None), None);
    }

    #[test]
    fn problem_display_includes_available_parts() {
        let p = Problem::new(Path::new("/etc/a.toml"), Some(3), "ports are 1..=65535")
            .key("protected_tcp_ports")
            .entry("entry 2 `0`".to_owned());
        assert_eq!(
            p.to_string(),
            "/etc/a.toml:3: key `protected_tcp_ports`: entry 2 `0`: ports are 1..=65535"
        );
        let p = Problem {
            column: Some(7),
            ..Problem::new(Path::new("a.toml"), Some(1), "bad")
        };
        assert_eq!(p.to_string(), "a.toml:1:7: bad");
        assert_eq!(
            Problem::new(Path::new("x.list"), None, "gone").to_string(),
            "x.list: gone"
        );
    }

    #[test]
    fn report_caps_and_renders_one_problem_per_line() {
        let mut report = Report::default();
        for i in 0..MAX_PROBLEMS + 3 {
            report.push(Problem::new(Path::new("f"), Some(i + 1), "bad"));
        }
        let err = report.finish(()).expect_err("problems were reported");
        assert_eq!(err.problems().len(), MAX_PROBLEMS);
        let text = err.to_string();
        assert_eq!(text.lines().count(), MAX_PROBLEMS + 1);
        assert!(text.starts_with("f:1: bad\nf:2: bad\n"));
        assert!(text.ends_with(&format!(
            "... and 3 more problems ({} in all); `allowlistd --check --all-problems --config FILE` lists every one",
            MAX_PROBLEMS + 3
        )));
        assert!(Report::default().finish(7).is_ok_and(|v| v == 7));
    }

    #[test]
    fn report_counts_overlaps_and_can_keep_everything() {
        let mut report = Report::with_cap(1);
        report.push(Problem::new(Path::new("f"), Some(1), "bad"));
        for i in 0..2 {
            report.push_overlap(Problem::new(Path::new("f"), Some(i + 2), "covered"));
        }
        let text = report.finish(()).expect_err("problems").to_string();
        assert!(
            text.ends_with("... and 2 more problems (3 in all, 2 of them entries repeating or inside another entry); `allowlistd --check --all-problems --config FILE` lists every one"),
            "{text}"
        );
        let mut report = Report::with_cap(usize::MAX);
        for i in 0..MAX_PROBLEMS + 3 {
            report.push_overlap(Problem::new(Path::new("f"), Some(i + 1), "covered"));
        }
        let err = report.finish(()).expect_err("problems");
        assert_eq!(err.problems().len(), MAX_PROBLEMS + 3);
        assert!(!err.to_string().contains("more problem"));
    }

    #[test]
    fn quoted_shortens_long_text() {
        assert_eq!(quoted("198.18.0.0/24"), "`198.18.0.0/24`");
        let long = "ü".repeat(100);
        assert_eq!(quoted(&long), format!("`{}...`", "ü".repeat(64)));
        assert_eq!(quoted(&long[..128]), format!("`{}`", "ü".repeat(64)));
    }

    #[test]
    fn io_error_names_the_file() {
        let err = ConfigError::Io {
            path: PathBuf::from("/etc/allowlist/allowlist.toml"),
            error: std::io::Error::from(std::io::ErrorKind::NotFound),
        };
        assert!(
            err.to_string()
                .starts_with("reading /etc/allowlist/allowlist.toml: ")
        );
        assert!(err.problems().is_empty());
    }
}
