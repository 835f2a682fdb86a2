//! End-to-end tests of what an admin observes, against the real `allowlistd` and
//! `allowlistctl` in network namespaces: per-entry hit counters moved by real connects (and
//! kept across a SIGKILL, a SIGTERM and a start, a handover, a reload, a comment edit, and a
//! long stop, but not given to the new network of `edit --cidr`), a flood of blocked SYNs seen through `blocked` with a bounded event
//! rate and the right top sources, established sessions and `--kill-unlisted`, and the
//! Prometheus endpoint agreeing with `status`, `list`, `blocked` and `audit`.
//!
//! Needs root and the built binaries (`cargo xtask build`, then
//! `ALLOWLIST_BIN_DIR=target/debug cargo test -p allowlist-tests --test observe`).
//! Every `allowlistctl` runs with `SSH_CONNECTION` and `SSH_CLIENT` removed.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{self, BufRead as _, BufReader, Read as _, Write as _};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpStream};
use std::os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd};
use std::process::Stdio;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use allowlist_tests::ctl::{ctl_command, wait_child};
use allowlist_tests::daemon::{Config, RELOAD_TIMEOUT, with_top_level, write_atomically};
use allowlist_tests::fixture::Running;
use allowlist_tests::frames::Frame;
use allowlist_tests::netns::{A4, A6, B4, Lab, Netns, PROTECTED, SERVER_V4, to};
use allowlist_tests::tcp::{self, allowed_probe, assert_connects, assert_times_out};
use allowlist_tests::{require_root, running_fixture};
use nix::sys::signal::Signal;
use openmetrics_parser::{MetricsExposition, OpenMetricsType, OpenMetricsValue};
use serde_json::Value;

/// Where /metrics listens, inside the server namespace (each test has its own).
const METRICS: &str = "127.0.0.1:9469";

/// `EVENTS_PER_SEC_PER_CPU`: the XDP program's per-CPU event budget (and burst).
const EVENTS_PER_SEC_PER_CPU: u64 = allowlist_common::maps::EVENTS_PER_SEC_PER_CPU;

mod blocked;
mod hits;
mod metrics;
mod sessions;

// The fixture
running_fixture!(Fx {});

impl Fx {
    /// Port 2222 protected, the list active, with `entries` and the top-level keys `top`.
    fn start(entries: &[(&str, &str)], top: &str) -> Fx {
        let run = Running::start(|dir, iface| {
            let mut config = Config::new(dir, iface);
            for (cidr, comment) in entries {
                config = config.entry(cidr, comment);
            }
            with_top_level(&config.render(), top)
        });
        Fx { run }
    }

    /// `allowlistctl --json ARGS...`, which must succeed; its JSON.
    #[track_caller]
    fn json(&self, args: &[&str]) -> Value {
        let mut full = vec!["--json"];
        full.extend_from_slice(args);
        let out = self.ctl(&full);
        out.ok();
        out.json()
    }

    /// `list --json` (with `extra` arguments), as cidr -> entry.
    #[track_caller]
    fn list(&self, extra: &[&str]) -> BTreeMap<String, Value> {
        let mut args = vec!["list"];
        args.extend_from_slice(extra);
        let json = self.json(&args);
        assert_eq!(json["kind"].as_str(), Some("list"), "{json}");
        json["entries"]
            .as_array()
            .unwrap_or_else(|| panic!("no entries in {json}"))
            .iter()
            .map(|e| (e["cidr"].as_str().unwrap().to_owned(), e.clone()))
            .collect()
    }

    /// SIGKILL (the maps and the attachment stay pinned), then a new daemon on the same
    /// config and bpffs.
    fn restart_after_sigkill(&mut self) {
        self.daemon.kill9();
        self.restart();
    }

    /// Ends the daemon with `signal` and waits for it to exit with `status`, then starts a
    /// new one on the same config.
    fn restart_after(&mut self, signal: Signal, status: i32) {
        self.daemon.signal(signal);
        let exit = self
            .daemon
            .wait_exit(RELOAD_TIMEOUT)
            .unwrap_or_else(|e| panic!("{e:#}"));
        assert_eq!(exit.code(), Some(status), "{signal}: {exit}");
        self.restart();
    }

    /// The records of `action` in `audit --json`.
    fn audit_records(&self, action: &str) -> Vec<Value> {
        self.json(&["audit", "--action", action])["records"]
            .as_array()
            .unwrap()
            .clone()
    }
}

/// Panics unless `time` (RFC 3339) lies within the last `within` (2 s of slack into the
/// future for rounding to the second).
#[track_caller]
fn assert_recent(what: &str, time: &Value, within: Duration) {
    let text = time
        .as_str()
        .unwrap_or_else(|| panic!("{what}: expected an RFC 3339 time, got {time}"));
    let t: jiff::Timestamp = text
        .parse()
        .unwrap_or_else(|e| panic!("{what}: `{text}` is not an RFC 3339 time: {e}"));
    let age = jiff::Timestamp::now().duration_since(t);
    assert!(
        age >= jiff::SignedDuration::from_secs(-2)
            && age <= jiff::SignedDuration::try_from(within).unwrap(),
        "{what}: {text} is {age:?} ago, expected within the last {within:?}"
    );
}

/// Panics unless the server side of `client` was ended: its read ends at once (with a reset,
/// or end of file) instead of waiting.
#[track_caller]
fn assert_ended(client: &mut TcpStream, what: &str) {
    client.set_read_timeout(Some(allowed_probe())).unwrap();
    match client.read(&mut [0; 16]) {
        Ok(0) => {}
        Err(e) if e.kind() == io::ErrorKind::ConnectionReset => {}
        other => panic!("{what}: the connection should have been ended, but read gave {other:?}"),
    }
}

/// Opens a connection and waits for one echo, so the server side is established.
#[track_caller]
fn open_echoing(ns: &Netns, src: IpAddr) -> TcpStream {
    let mut stream = tcp::open(ns, src, to(src, PROTECTED), allowed_probe())
        .unwrap_or_else(|e| panic!("{src} -> {}: {e}", to(src, PROTECTED)));
    tcp::exchange(&mut stream, b"hello").unwrap_or_else(|e| panic!("{src}: echo: {e}"));
    stream
}

fn u64_at(value: &Value, pointer: &str) -> u64 {
    value
        .pointer(pointer)
        .and_then(Value::as_u64)
        .unwrap_or_else(|| panic!("no number at {pointer} in {value}"))
}
