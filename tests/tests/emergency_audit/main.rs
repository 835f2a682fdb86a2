//! End-to-end tests of the emergency disable and the audit log, against the real `allowlistd`
//! and `allowlistctl` in network namespaces, judged by what a user notices: whether a blocked
//! client's real TCP connect gets through, what `status`, `test` and `audit` print, what the
//! audit log file holds, and what `audit verify` says about it.
//!
//! Emergency disable: it lets everyone in, shows in `status` and `test`, ends by itself on
//! time (also with the daemon dead: the kernel compares the deadline), `emergency-end` ends it
//! early, the 24h / zero / no-reason rules refuse, a restart keeps the deadline, and the
//! break-glass `allowlistd --emergency-disable-on-start`.
//!
//! Audit log: a record with before/after for every kind of change, refusal, start and stop;
//! the hash chain (`audit verify`) catches edits, deletions, reordering and records cut off
//! the end; an unwritable log refuses changes; rotation keeps the chain; the file's mode and
//! unsafe paths.
//!
//! Needs root and the built binaries (`cargo xtask build`, then
//! `ALLOWLIST_BIN_DIR=target/debug cargo test -p allowlist-tests --test emergency_audit`).
//! Every `allowlistctl` runs with `SSH_CONNECTION` and `SSH_CLIENT` removed.

use std::io::Write as _;
use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt as _;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use allowlist_control::protocol;
use allowlist_tests::bpffs::TestDir;
use allowlist_tests::ctl::{ctl_command, run};
use allowlist_tests::daemon::{
    Config, Daemon, READY_TIMEOUT, RELOAD_TIMEOUT, SpawnOptions, with_top_level, write_atomically,
};
use allowlist_tests::fixture::{Running, Start};
use allowlist_tests::netns::{A4, B4, Lab, PROTECTED, to};
use allowlist_tests::pace::patient;
use allowlist_tests::tcp::{self, Listener};
use allowlist_tests::tmpfs::fill;
use allowlist_tests::{require_root, running_fixture};
use nix::sys::signal::Signal;
use serde_json::Value;

/// `prev_hash` of the very first record of a log.
const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// Slack after a deadline before a probe expects enforcement back.
const AFTER_DEADLINE: Duration = Duration::from_millis(300);

fn now_ms() -> i64 {
    let since = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("the clock is after 1970");
    i64::try_from(since.as_millis()).expect("milliseconds fit in i64")
}

/// An emergency disable's length in these tests: `secs` on the host, longer on a slower
/// machine ([`patient`]), so that what a test does inside it fits.
fn span(secs: u64) -> Duration {
    patient(Duration::from_secs(secs))
}

fn ms(span: Duration) -> i64 {
    i64::try_from(span.as_millis()).expect("milliseconds fit in i64")
}

fn sleep_until(deadline: Instant) {
    let left = deadline.saturating_duration_since(Instant::now());
    std::thread::sleep(left);
}

mod audit;
mod emergency;

// The fixture
running_fixture!(
    /// A lab, a config file (198.18.1.0/24 listed, so the "allowed" client connects and the
    /// "blocked" one does not) and a ready daemon whose audit log is `audit`.
    Fx { audit: PathBuf }
);

impl Fx {
    /// The usual fixture, with `extra` top-level config lines; the audit log is
    /// `<dir>/audit.jsonl`.
    fn start(extra: &str) -> Fx {
        Fx::build(extra, None)
    }

    /// The audit log on a 64 KiB tmpfs mounted at `<dir>/auditfs`.
    fn start_on_tmpfs() -> Fx {
        Fx::build("", Some("auditfs"))
    }

    fn build(extra: &str, tmpfs: Option<&str>) -> Fx {
        let start = Start {
            tmpfs: tmpfs.map(|name| (name, "64k")),
            ..Start::default()
        };
        let mut audit = PathBuf::new();
        let run = Running::start_with(&start, |dir, iface| {
            let mut config = Config::new(dir, iface).entry("198.18.1.0/24", "lab A");
            config.audit_log = match tmpfs {
                Some(name) => dir.join(name).join("audit.jsonl"),
                None => dir.join("audit.jsonl"),
            };
            audit.clone_from(&config.audit_log);
            with_top_level(&config.render(), extra)
        });
        Fx { run, audit }
    }

    #[track_caller]
    fn status(&self) -> Value {
        let json = self.ctl(&["--json", "status"]).ok().json();
        assert_eq!(json["kind"].as_str(), Some("status"), "{json:?}");
        json
    }

    #[track_caller]
    fn revision(&self) -> u64 {
        self.status()["revision"].as_u64().unwrap()
    }

    #[track_caller]
    fn cidrs(&self) -> Vec<String> {
        let json = self.ctl(&["--json", "list"]).ok().json();
        json["entries"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["cidr"].as_str().unwrap().to_owned())
            .collect()
    }

    fn file(&self) -> String {
        std::fs::read_to_string(&self.path)
            .unwrap_or_else(|e| panic!("reading {}: {e}", self.path.display()))
    }

    /// Every record of the current audit log file, parsed by this test (not by the daemon).
    #[track_caller]
    fn records(&self) -> Vec<Value> {
        records_of(&self.audit)
    }

    #[track_caller]
    fn last_record(&self) -> Value {
        self.records()
            .pop()
            .unwrap_or_else(|| panic!("{} holds no records", self.audit.display()))
    }

    /// The records of `action`, oldest first.
    #[track_caller]
    fn records_of(&self, action: &str) -> Vec<Value> {
        self.records()
            .into_iter()
            .filter(|r| r["action"].as_str().unwrap() == action)
            .collect()
    }

    /// Panics unless the "blocked" client's connect times out (its SYN dropped).
    #[track_caller]
    fn assert_blocked(&self, why: &str) {
        tcp::assert_times_out(&self.lab.client, B4, to(B4, PROTECTED), why);
    }

    /// Panics unless the "blocked" client connects.
    #[track_caller]
    fn assert_let_in(&self, why: &str) {
        tcp::assert_connects(&self.lab.client, B4, to(B4, PROTECTED), why);
    }

    #[track_caller]
    fn assert_no_emergency(&self, why: &str) {
        let s = self.status();
        assert!(
            s["emergency"].is_null(),
            "{why}: status --json still shows {s:?}"
        );
        self.ctl(&["status"]).ok().stdout_lacks("EMERGENCY");
    }
}

/// Every non-blank line of `path`, parsed.
#[track_caller]
fn records_of(path: &Path) -> Vec<Value> {
    let text =
        std::fs::read_to_string(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| {
            serde_json::from_str::<Value>(l).unwrap_or_else(|e| {
                panic!("{} line {}: not JSON ({e}): {l}", path.display(), i + 1)
            })
        })
        .collect()
}

/// Milliseconds since 1970 of an RFC 3339 UTC time (`2026-11-23T14:00:00.123Z`), or `None`
/// if it is not one (other offsets included).
fn rfc3339_utc_ms(text: &str) -> Option<i64> {
    let rest = text.strip_suffix('Z')?;
    let (date, time) = rest.split_once('T')?;
    let num = |s: &str, len: usize| -> Option<i64> {
        (s.len() == len && s.bytes().all(|b| b.is_ascii_digit())).then(|| s.parse().ok())?
    };
    let mut d = date.split('-');
    let (y, m, day) = (num(d.next()?, 4)?, num(d.next()?, 2)?, num(d.next()?, 2)?);
    let (hms, frac) = time.split_once('.').unwrap_or((time, ""));
    let mut t = hms.split(':');
    let (h, min, s) = (num(t.next()?, 2)?, num(t.next()?, 2)?, num(t.next()?, 2)?);
    if d.next().is_some()
        || t.next().is_some()
        || !(1..=12).contains(&m)
        || !(1..=31).contains(&day)
    {
        return None;
    }
    if h > 23 || min > 59 || s > 60 || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let ms = format!("{frac:0<3}")[..3].parse::<i64>().ok()?;
    // Days from civil (Howard Hinnant's algorithm).
    let yy = if m <= 2 { y - 1 } else { y };
    let era = yy.div_euclid(400);
    let yoe = yy - era * 400;
    let doy = (153 * ((m + 9) % 12) + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(((days * 24 + h) * 60 + min) * 60_000 + s * 1000 + ms)
}

#[test]
fn rfc3339_reader() {
    assert_eq!(rfc3339_utc_ms("1970-01-01T00:00:00Z"), Some(0));
    assert_eq!(
        rfc3339_utc_ms("2000-03-01T00:00:01.5Z"),
        Some(951_868_801_500)
    );
    assert_eq!(
        rfc3339_utc_ms("2026-11-23T14:00:00.123Z"),
        Some(1_795_442_400_123)
    );
    assert_eq!(rfc3339_utc_ms("2026-11-23T14:00:00+01:00"), None);
    assert_eq!(rfc3339_utc_ms("2026-11-23 14:00:00Z"), None);
}

#[track_caller]
fn assert_json(actual: &Value, expected: &str, what: &str) {
    let expected: Value = serde_json::from_str(expected)
        .unwrap_or_else(|e| panic!("bad expected JSON ({e}): {expected}"));
    assert!(
        *actual == expected,
        "{what}: expected {expected:?}\n   got {actual:?}"
    );
}

/// `result` of a record: "ok", "refused" or "failed".
fn status_of(record: &Value) -> &str {
    record["result"]["status"].as_str().unwrap()
}

/// Who a record names as the actor: root, through `via`, process `pid`.
#[track_caller]
fn assert_actor(record: &Value, via: &str, pid: u32) {
    let actor = &record["actor"];
    assert_eq!(actor["via"].as_str(), Some(via), "actor.via of {record:?}");
    assert_eq!(actor["uid"].as_u64(), Some(0), "actor.uid of {record:?}");
    assert_eq!(
        actor["user"].as_str(),
        Some("root"),
        "actor.user of {record:?}"
    );
    assert_eq!(
        actor["pid"].as_u64(),
        Some(u64::from(pid)),
        "actor.pid of {record:?}"
    );
}
