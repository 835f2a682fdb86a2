//! List files: one address or network per line, for lists too long (or too generated) to keep
//! in the TOML file.
//!
//! ```text
//! # partner networks
//! 198.18.0.0/24      # partner A
//! 2001:db8:42::/48
//! ```
//!
//! An entry's comment is the text after `#`, or the file name if there is none. Lines are
//! split by hand rather than with a general parser: these files may have a million lines.

use std::path::Path;
use std::sync::Arc;

use super::entries::{check_comment, parse_net};
use super::error::{Problem, Report, quoted};
use super::{Entry, Origin};

/// Reads the list file at `path`, appending its entries and reporting bad lines. The `Err`
/// is for the caller to report against the config line that names the file.
pub fn read(path: &Path, entries: &mut Vec<Entry>, report: &mut Report) -> std::io::Result<()> {
    let bytes = std::fs::read(path)?;
    match std::str::from_utf8(&bytes) {
        Ok(text) => parse(path, text, entries, report),
        Err(err) => {
            let valid = bytes.get(..err.valid_up_to()).unwrap_or_default();
            let line = valid.iter().filter(|&&b| b == b'\n').count() + 1;
            report.push(Problem::new(
                path,
                Some(line),
                "not valid UTF-8; list files are plain text",
            ));
        }
    }
    Ok(())
}

/// Parses the text of the list file at `path`.
pub fn parse(path: &Path, text: &str, entries: &mut Vec<Entry>, report: &mut Report) {
    let file_name = path.file_name().map_or_else(
        || path.display().to_string(),
        |name| name.to_string_lossy().into_owned(),
    );
    let file: Arc<Path> = Arc::from(path);
    for (index, line) in text.split('\n').enumerate() {
        let (addr, comment) = match line.split_once('#') {
            Some((addr, comment)) => (addr.trim(), Some(comment.trim())),
            None => (line.trim(), None),
        };
        if addr.is_empty() {
            continue; // blank, or only a comment
        }
        let line = index + 1;
        let problem = |message: String| Problem::new(path, Some(line), message).entry(quoted(addr));
        let net = match parse_net(addr) {
            Ok(net) => net,
            Err(message) => {
                report.push(problem(message));
                continue;
            }
        };
        let comment = match comment {
            Some(comment) if !comment.is_empty() => {
                if let Err(message) = check_comment(comment) {
                    report.push(problem(message));
                    continue;
                }
                comment.to_owned()
            }
            _ => file_name.clone(),
        };
        entries.push(Entry {
            net,
            comment,
            origin: Origin {
                file: Arc::clone(&file),
                line,
            },
        });
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;

    fn parse_str(text: &str) -> (Vec<Entry>, Vec<String>) {
        let mut entries = Vec::new();
        let mut report = Report::default();
        parse(
            Path::new("/etc/allowlist/partners.list"),
            text,
            &mut entries,
            &mut report,
        );
        let problems = match report.finish(()) {
            Ok(()) => Vec::new(),
            Err(err) => err.problems().iter().map(Problem::to_string).collect(),
        };
        (entries, problems)
    }

    fn summary(entries: &[Entry]) -> Vec<(String, &str, usize)> {
        entries
            .iter()
            .map(|e| (e.net.to_string(), e.comment.as_str(), e.origin.line))
            .collect()
    }

    #[test]
    fn parses_entries_comments_and_skips_blank_lines() {
        let text = "# partner networks\n\
                    \n\
                    198.18.0.0/24      # partner A\n\
                    \t2001:db8:42::/48\n   \n\
                    198.18.1.5 #\r\n\
                    2001:db8::1#  ops laptop  \r\n\
                    # trailing comment";
        let (entries, problems) = parse_str(text);
        assert_eq!(problems, Vec::<String>::new());
        assert_eq!(
            summary(&entries),
            [
                ("198.18.0.0/24".to_owned(), "partner A", 3),
                ("2001:db8:42::/48".to_owned(), "partners.list", 4),
                ("198.18.1.5/32".to_owned(), "partners.list", 6),
                ("2001:db8::1/128".to_owned(), "ops laptop", 7),
            ]
        );
        assert!(
            entries
                .iter()
                .all(|e| *e.origin.file == *Path::new("/etc/allowlist/partners.list"))
        );
    }

    #[test]
    fn empty_file_has_no_entries() {
        assert_eq!(parse_str("").0, Vec::new());
        assert_eq!(parse_str("\n\n# nothing yet\n").0, Vec::new());
    }

    #[test]
    fn reports_bad_lines_with_file_and_line_and_keeps_going() {
        let text = "198.18.0.0/24\n\
                    10.0.0.5/24 # typo\n\
                    any\n\
                    198.18.0.0/33\n\
                    partner-a.example\n\
                    ::ffff:198.18.0.0/112\n\
                    2001:db8::/32\n";
        let (entries, problems) = parse_str(text);
        assert_eq!(
            problems,
            [
                "/etc/allowlist/partners.list:2: `10.0.0.5/24`: host bits set; did you mean \
                 10.0.0.0/24?",
                "/etc/allowlist/partners.list:3: `any`: allows everyone; to lift the restriction \
                 set active = false",
                "/etc/allowlist/partners.list:4: `198.18.0.0/33`: prefix longer than 32",
                "/etc/allowlist/partners.list:5: `partner-a.example`: not an IP address or CIDR \
                 (write e.g. 198.18.0.5, 198.18.0.0/24 or 2001:db8::/32)",
                "/etc/allowlist/partners.list:6: `::ffff:198.18.0.0/112`: IPv4-mapped addresses \
                 are judged as IPv4: write 198.18.0.0/16",
            ]
        );
        assert_eq!(entries.len(), 2);
    }

    #[test]
    fn refuses_bad_comments() {
        let long = format!(
            "198.18.0.0/24 # {}\n198.18.1.0/24 # a\tb\n",
            "x".repeat(300)
        );
        let (entries, problems) = parse_str(&long);
        assert!(entries.is_empty());
        assert_eq!(problems.len(), 2);
        assert!(problems[0].starts_with("/etc/allowlist/partners.list:1: `198.18.0.0/24`: "));
        assert!(problems[0].contains("300 characters"), "{}", problems[0]);
        assert!(problems[1].starts_with("/etc/allowlist/partners.list:2: `198.18.1.0/24`: "));
        assert!(problems[1].contains("control character"), "{}", problems[1]);
    }

    #[test]
    fn read_reports_invalid_utf8_with_its_line() -> std::io::Result<()> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("bad.list");
        std::fs::write(&path, b"198.18.0.0/24\n198.18.1.0/24 # caf\xe9\n")?;
        let (mut entries, mut report) = (Vec::new(), Report::default());
        read(&path, &mut entries, &mut report)?;
        let err = report.finish(()).expect_err("invalid UTF-8");
        assert_eq!(err.problems()[0].line, Some(2));
        assert_eq!(err.problems()[0].file, path);
        assert!(err.to_string().contains("not valid UTF-8"));
        Ok(())
    }

    #[test]
    fn read_passes_io_errors_to_the_caller() {
        let (mut entries, mut report) = (Vec::new(), Report::default());
        let missing = PathBuf::from("/nonexistent/allowlist/missing.list");
        let err = read(&missing, &mut entries, &mut report).expect_err("missing file");
        assert_eq!(err.kind(), std::io::ErrorKind::NotFound);
        assert!(report.finish(()).is_ok());
    }
}
