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
//! They are streamed, never read whole: a runaway generator's file (ten million lines, or one
//! line of a hundred megabytes) is refused with bounded memory, as soon as it is clear.

use arcstr::ArcStr;
use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use ipnet::IpNet;

use super::Entry;
use super::entries::{check_comment, parse_net};
use super::error::{Problem, Report, quoted};

/// Longer lines are not an address with a comment (a comment is at most 256 characters).
pub const MAX_LINE_BYTES: usize = 4096;

/// How many entries of each family the config holds so far, against `max_entries`.
pub struct Capacity {
    pub max: u32,
    /// `max` is the default, not written in the config.
    pub default: bool,
    pub v4: usize,
    pub v6: usize,
    /// Set once a list file went past `max`; the rest of that file was not read.
    pub exceeded: bool,
}

impl Capacity {
    pub fn new(max: u32, default: bool, entries: &[Entry]) -> Capacity {
        let v4 = entries.iter().filter(|e| e.net.addr().is_ipv4()).count();
        Capacity {
            max,
            default,
            v4,
            v6: entries.len() - v4,
            exceeded: false,
        }
    }

    /// Counts `net`; the family's name when that takes it past `max`.
    fn count(&mut self, net: &IpNet) -> Option<&'static str> {
        let (count, family) = match net {
            IpNet::V4(_) => (&mut self.v4, "IPv4"),
            IpNet::V6(_) => (&mut self.v6, "IPv6"),
        };
        *count += 1;
        (*count > self.max as usize).then_some(family)
    }
}

/// Reads the list file at `path`, appending its entries and reporting bad lines. The `Err`
/// is for the caller to report against the config line that names the file.
pub fn read(
    path: &Path,
    capacity: &mut Capacity,
    entries: &mut Vec<Entry>,
    report: &mut Report,
) -> std::io::Result<()> {
    let file = std::fs::File::open(path)?;
    // Room for as many entries as the file could hold (the shortest line, `1.2.3.4`, takes
    // 8 bytes), within `max_entries` of each family, so that a long list does not grow the
    // vector by copying. Pages never written are never resident.
    let lines = file.metadata()?.len() as usize / 8;
    let room = (2 * capacity.max as usize).saturating_sub(capacity.v4 + capacity.v6);
    entries.reserve(lines.min(room));
    read_from(
        path,
        std::io::BufReader::with_capacity(1 << 16, file),
        capacity,
        entries,
        report,
    )
}

/// Reads the lines of the list file at `path` from `reader`.
pub fn read_from(
    path: &Path,
    mut reader: impl BufRead,
    capacity: &mut Capacity,
    entries: &mut Vec<Entry>,
    report: &mut Report,
) -> std::io::Result<()> {
    let names = Names {
        path,
        file_name: path.file_name().map_or_else(
            || ArcStr::from(path.display().to_string()),
            |name| ArcStr::from(name.to_string_lossy()),
        ),
        file: Arc::new(path.to_path_buf()),
    };
    let mut batch = Batch::default();
    let mut bytes = Vec::with_capacity(256);
    let mut before = 0; // lines before the batch
    loop {
        let more = read_line(&mut reader, &mut bytes)?;
        if more {
            batch.push(&bytes);
        }
        if batch.is_full() || !more {
            let parsed = batch.parse(&names, before);
            before += batch.len();
            batch.clear();
            for line in parsed {
                match line {
                    Line::Blank => {}
                    Line::Bad(problem) => report.push(problem),
                    Line::Entry(entry) => {
                        if let Some(family) = capacity.count(&entry.net) {
                            // Stop here: the file may be far too long to hold in memory.
                            capacity.exceeded = true;
                            report.push(over_capacity(&entry, family, capacity));
                            return Ok(());
                        }
                        entries.push(entry);
                    }
                }
            }
        }
        if !more {
            return Ok(());
        }
    }
}

fn over_capacity(entry: &Entry, family: &str, capacity: &Capacity) -> Problem {
    let net = entry.net;
    let written = if net.prefix_len() == net.max_prefix_len() {
        net.addr().to_string()
    } else {
        net.to_string()
    };
    let message = format!(
        "more than max_entries = {}{} {family} entries (lines count before duplicate and \
         covered ones are merged); the rest of the file was not read. Raise max_entries (up to \
         {}) or shorten the list",
        capacity.max,
        if capacity.default {
            " (the default)"
        } else {
            ""
        },
        super::MAX_ENTRIES_LIMIT
    );
    Problem::new(&entry.file, Some(entry.line as usize), message).entry(quoted(&written))
}

/// What every entry of one file shares.
struct Names<'a> {
    path: &'a Path,
    file_name: ArcStr,
    file: Arc<PathBuf>,
}

enum Line {
    Blank,
    Bad(Problem),
    Entry(Entry),
}

/// Lines read but not parsed yet: parsing (addresses, comments) is what a million-line file
/// costs, so a batch is parsed on two threads while reading stays in order.
#[derive(Default)]
struct Batch {
    bytes: Vec<u8>,
    /// Where each line ends in `bytes`.
    ends: Vec<usize>,
}

impl Batch {
    const LINES: usize = 1 << 15;
    /// Lines are kept to MAX_LINE_BYTES + 1 bytes, so this bounds a batch's memory.
    const BYTES: usize = 1 << 20;
    /// Fewer lines are not worth a thread.
    const SPLIT: usize = 1 << 10;

    fn push(&mut self, line: &[u8]) {
        self.bytes.extend_from_slice(line);
        self.ends.push(self.bytes.len());
    }

    fn is_full(&self) -> bool {
        self.ends.len() >= Self::LINES || self.bytes.len() >= Self::BYTES
    }

    fn len(&self) -> usize {
        self.ends.len()
    }

    fn clear(&mut self) {
        self.bytes.clear();
        self.ends.clear();
    }

    /// Line `i` of the batch (0-based).
    fn line(&self, i: usize) -> &[u8] {
        let start = if i == 0 { 0 } else { self.ends[i - 1] };
        &self.bytes[start..self.ends[i]]
    }

    /// The lines parsed, in order; `before` lines of the file came before the batch.
    fn parse(&self, names: &Names, before: usize) -> Vec<Line> {
        let parse = |range: std::ops::Range<usize>| -> Vec<Line> {
            range
                .map(|i| parse_line(self.line(i), before + i + 1, names))
                .collect()
        };
        let n = self.len();
        if n < Self::SPLIT {
            return parse(0..n);
        }
        std::thread::scope(|s| {
            let first = s.spawn(|| parse(0..n / 2));
            let second = parse(n / 2..n);
            let mut lines = first.join().expect("parsing list-file lines");
            lines.extend(second);
            lines
        })
    }
}

fn parse_line(bytes: &[u8], line: usize, names: &Names) -> Line {
    let problem = |message: String| Problem::new(names.path, Some(line), message);
    if bytes.len() > MAX_LINE_BYTES {
        return Line::Bad(problem(format!(
            "line longer than {MAX_LINE_BYTES} bytes; a list file holds one address or network \
             per line"
        )));
    }
    let Ok(text) = std::str::from_utf8(bytes) else {
        return Line::Bad(problem(
            "not valid UTF-8; list files are plain text".to_owned(),
        ));
    };
    let (addr, comment) = match text.split_once('#') {
        Some((addr, comment)) => (addr.trim(), Some(comment.trim())),
        None => (text.trim(), None),
    };
    if addr.is_empty() {
        return Line::Blank; // blank, or only a comment
    }
    let problem = |message: String| Line::Bad(problem(message).entry(quoted(addr)));
    let net = match parse_net(addr) {
        Ok(net) => net,
        Err(message) => return problem(message),
    };
    let comment = match comment {
        Some(comment) if !comment.is_empty() => {
            if let Err(message) = check_comment(comment) {
                return problem(message);
            }
            ArcStr::from(comment)
        }
        _ => names.file_name.clone(),
    };
    Line::Entry(Entry {
        net,
        comment,
        file: Arc::clone(&names.file),
        line: u32::try_from(line).unwrap_or(u32::MAX),
        list: 0,
    })
}

/// Reads one line (without its `\n`) into `bytes`, keeping at most `MAX_LINE_BYTES + 1` bytes
/// of it: enough to tell that it is too long. False at the end of the input.
fn read_line(reader: &mut impl BufRead, bytes: &mut Vec<u8>) -> std::io::Result<bool> {
    bytes.clear();
    let mut any = false;
    loop {
        let buf = reader.fill_buf()?;
        if buf.is_empty() {
            return Ok(any);
        }
        any = true;
        let (chunk, used, done) = match memchr::memchr(b'\n', buf) {
            Some(end) => (&buf[..end], end + 1, true),
            None => (buf, buf.len(), false),
        };
        let room = (MAX_LINE_BYTES + 1).saturating_sub(bytes.len());
        bytes.extend_from_slice(&chunk[..chunk.len().min(room)]);
        reader.consume(used);
        if done {
            return Ok(true);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;

    fn parse_bytes(text: &[u8], max: u32) -> (Vec<Entry>, Vec<String>) {
        let mut entries = Vec::new();
        let mut report = Report::default();
        let mut capacity = Capacity::new(max, false, &[]);
        read_from(
            Path::new("/etc/allowlist/partners.list"),
            text,
            &mut capacity,
            &mut entries,
            &mut report,
        )
        .expect("reading from memory");
        let problems = match report.finish(()) {
            Ok(()) => Vec::new(),
            Err(err) => err.problems().iter().map(Problem::to_string).collect(),
        };
        (entries, problems)
    }

    fn parse_str(text: &str) -> (Vec<Entry>, Vec<String>) {
        parse_bytes(text.as_bytes(), 1024)
    }

    fn summary(entries: &[Entry]) -> Vec<(String, &str, u32)> {
        entries
            .iter()
            .map(|e| (e.net.to_string(), &*e.comment, e.line))
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
                .all(|e| *e.file == *Path::new("/etc/allowlist/partners.list"))
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
        read(
            &path,
            &mut Capacity::new(1024, false, &[]),
            &mut entries,
            &mut report,
        )?;
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
        let err = read(
            &missing,
            &mut Capacity::new(1024, false, &[]),
            &mut entries,
            &mut report,
        )
        .expect_err("missing file");
        assert_eq!(err.kind(), std::io::ErrorKind::NotFound);
        assert!(report.finish(()).is_ok());
    }

    #[test]
    fn invalid_utf8_is_reported_per_line_and_the_rest_still_read() {
        let (entries, problems) = parse_bytes(b"198.18.0.0/24 # caf\xe9\n198.18.1.0/24\n", 1024);
        assert_eq!(
            problems,
            ["/etc/allowlist/partners.list:1: not valid UTF-8; list files are plain text"]
        );
        assert_eq!(
            summary(&entries),
            [("198.18.1.0/24".to_owned(), "partners.list", 2)]
        );
    }

    #[test]
    fn overlong_lines_are_refused_without_being_kept() {
        let mut text = b"198.18.0.1\n198.18.0.2 # ".to_vec();
        text.extend(std::iter::repeat_n(b'x', 10 << 20));
        text.extend_from_slice(b"\n198.18.0.3\n");
        let (entries, problems) = parse_bytes(&text, 1024);
        assert_eq!(
            problems,
            [format!(
                "/etc/allowlist/partners.list:2: line longer than {MAX_LINE_BYTES} bytes; a list \
                 file holds one address or network per line"
            )]
        );
        let lines: Vec<u32> = entries.iter().map(|e| e.line).collect();
        assert_eq!(lines, [1, 3]);
    }

    #[test]
    fn reading_stops_at_the_first_entry_past_max_entries() {
        // Lines after the limit are never looked at: this one would be an error otherwise.
        let text = "198.18.0.1\n2001:db8::1\n198.18.0.2\n2001:db8::2\n198.18.0.3\nnot an address\n";
        let (entries, problems) = parse_str_max(text, 2);
        assert_eq!(entries.len(), 4);
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(
            problems[0].starts_with(
                "/etc/allowlist/partners.list:5: `198.18.0.3`: more than max_entries = 2 IPv4 \
                 entries (lines count before duplicate and covered ones are merged); the rest of \
                 the file was not read. Raise max_entries"
            ),
            "{}",
            problems[0]
        );
    }

    fn parse_str_max(text: &str, max: u32) -> (Vec<Entry>, Vec<String>) {
        parse_bytes(text.as_bytes(), max)
    }
}
