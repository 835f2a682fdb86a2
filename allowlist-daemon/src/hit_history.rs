//! Per-entry hits across a stop and a start: `<state_dir>/hits`, one line per entry with any
//! (`CIDR HITS LAST LIST`, the last hit in RFC 3339 UTC or `-`; files from before lists
//! have no LIST), written on every stop and every [`SAVE_INTERVAL`], read at start.
//!
//! The kernel stamps hits with CLOCK_MONOTONIC, which restarts at zero with each boot,
//! so the file holds wall-clock times: they survive a reboot, and a hit from before this boot
//! (which no monotonic stamp can express) stays a wall-clock time in the daemon.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use ipnet::IpNet;

use allowlist_config::edit::write_atomic;

/// How often a running daemon saves the file: what a power loss can cost at most.
pub const SAVE_INTERVAL: Duration = Duration::from_secs(600);

/// An entry: its network and list (None: a count from before lists were told apart).
pub type Entry = (IpNet, Option<String>);

/// One entry's hits as the file keeps them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Saved {
    pub hits: u64,
    pub last: Option<jiff::Timestamp>,
}

pub fn path(state_dir: &Path) -> PathBuf {
    state_dir.join("hits")
}

/// The wall-clock time of a kernel hit stamp (CLOCK_MONOTONIC ns, 0 for none), from
/// its age now.
pub fn wall_time(last_seen_ns: u64) -> Option<jiff::Timestamp> {
    if last_seen_ns == 0 {
        return None;
    }
    let age =
        Duration::from_nanos(allowlist_loader::clock::hit_clock_ns().saturating_sub(last_seen_ns));
    jiff::Timestamp::now()
        .checked_sub(jiff::SignedDuration::try_from(age).ok()?)
        .ok()
}

/// The saved hits, by entry. A missing file is no hits; an unreadable line is skipped with
/// a warning (hits are statistics: they never stop a start).
pub fn load(state_dir: &Path) -> HashMap<Entry, Saved> {
    let path = path(state_dir);
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return HashMap::new(),
        Err(e) => {
            tracing::warn!("{}: {e}; per-entry hits start from zero", path.display());
            return HashMap::new();
        }
    };
    let mut saved = HashMap::new();
    for (index, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        match parse_line(line) {
            Some((entry, hits)) => {
                saved.insert(entry, hits);
            }
            None => tracing::warn!(
                "{}:{}: not `CIDR HITS LAST LIST`; that entry's hits start from zero",
                path.display(),
                index + 1
            ),
        }
    }
    saved
}

fn parse_line(line: &str) -> Option<(Entry, Saved)> {
    let mut fields = line.split_whitespace();
    let net = fields.next()?.parse().ok()?;
    let hits = fields.next()?.parse().ok()?;
    let last = match fields.next()? {
        "-" => None,
        time => Some(time.parse().ok()?),
    };
    let list = fields.next().map(str::to_owned);
    fields
        .next()
        .is_none()
        .then_some(((net, list), Saved { hits, last }))
}

/// Writes the hits of `entries` (those with none are left out), atomically.
pub fn save<'a>(
    state_dir: &Path,
    entries: impl Iterator<Item = (IpNet, Option<&'a str>, Saved)>,
) -> std::io::Result<()> {
    let mut text = String::from(
        "# allowlistd: hits per entry (CIDR HITS LAST-HIT-UTC LIST), kept across stops and \
         reboots\n",
    );
    for (net, list, saved) in entries.filter(|(_, _, s)| s.hits > 0) {
        let last = saved
            .last
            .map_or_else(|| "-".to_owned(), allowlist_control::time::utc_millis);
        let list = list.unwrap_or_default();
        let _ = writeln!(text, "{net} {} {last} {list}", saved.hits);
    }
    write_atomic(&path(state_dir), &text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_skips_what_it_cannot_read() {
        let dir = tempfile::tempdir().unwrap();
        let entry = |net: &str, list: Option<&str>| -> Entry {
            (net.parse().unwrap(), list.map(str::to_owned))
        };
        let long_ago: jiff::Timestamp = "2026-01-02T03:04:05.678Z".parse().unwrap();
        let entries = [
            (
                entry("198.18.1.0/24", Some("ssh")),
                Saved {
                    hits: 5,
                    last: Some(long_ago),
                },
            ),
            (
                entry("198.18.1.0/24", Some("api")),
                Saved {
                    hits: 2,
                    last: None,
                },
            ),
            (entry("198.18.3.0/24", Some("ssh")), Saved::default()),
        ];
        save(
            dir.path(),
            entries.iter().map(|((n, l), s)| (*n, l.as_deref(), *s)),
        )
        .unwrap();
        let mut text = std::fs::read_to_string(path(dir.path())).unwrap();
        assert!(
            text.contains("198.18.1.0/24 5 2026-01-02T03:04:05.678Z ssh\n"),
            "{text}"
        );
        assert!(!text.contains("198.18.3.0/24"), "no hits, no line: {text}");
        // A file from before lists, and what no version wrote.
        text += "2001:db8::a/128 7 -\ngarbage line\n198.18.9.0/24 x -\n";
        std::fs::write(path(dir.path()), text).unwrap();
        let loaded = load(dir.path());
        assert_eq!(loaded.len(), 3, "{loaded:?}");
        assert_eq!(loaded[&entries[0].0], entries[0].1);
        assert_eq!(loaded[&entries[1].0], entries[1].1);
        assert_eq!(loaded[&entry("2001:db8::a/128", None)].hits, 7);
        assert!(load(&dir.path().join("missing")).is_empty());
    }
}
