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
use allowlist_tests::tcp::{self, ALLOWED_PROBE, assert_connects, assert_times_out};
use allowlist_tests::{require_root, running_fixture};
use nix::sys::signal::Signal;
use openmetrics_parser::{MetricsExposition, OpenMetricsType, OpenMetricsValue};
use serde_json::Value;

/// Where /metrics listens, inside the server namespace (each test has its own).
const METRICS: &str = "127.0.0.1:9469";

/// `EVENTS_PER_SEC_PER_CPU`: the XDP program's per-CPU event budget (and burst).
const EVENTS_PER_SEC_PER_CPU: u64 = allowlist_common::maps::EVENTS_PER_SEC_PER_CPU;

// ---------------------------------------------------------------------------------------
// The fixture
// ---------------------------------------------------------------------------------------

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
    client.set_read_timeout(Some(ALLOWED_PROBE)).unwrap();
    match client.read(&mut [0; 16]) {
        Ok(0) => {}
        Err(e) if e.kind() == io::ErrorKind::ConnectionReset => {}
        other => panic!("{what}: the connection should have been ended, but read gave {other:?}"),
    }
}

/// Opens a connection and waits for one echo, so the server side is established.
#[track_caller]
fn open_echoing(ns: &Netns, src: IpAddr) -> TcpStream {
    let mut stream = tcp::open(ns, src, to(src, PROTECTED), ALLOWED_PROBE)
        .unwrap_or_else(|e| panic!("{src} -> {}: {e}", to(src, PROTECTED)));
    tcp::exchange(&mut stream, b"hello").unwrap_or_else(|e| panic!("{src}: echo: {e}"));
    stream
}

// ---------------------------------------------------------------------------------------
// 1. Hit counters
// ---------------------------------------------------------------------------------------

#[track_caller]
fn assert_hits(list: &BTreeMap<String, Value>, cidr: &str, hits: u64, when: &str) {
    let entry = list
        .get(cidr)
        .unwrap_or_else(|| panic!("{when}: `list` lacks {cidr}: {list:#?}"));
    assert_eq!(
        entry["hits"].as_u64(),
        Some(hits),
        "{when}: hits of {cidr}: {entry}"
    );
    if hits == 0 {
        assert!(
            entry.get("last_hit").is_none_or(Value::is_null),
            "{when}: {cidr} was never hit, so it has no last_hit: {entry}"
        );
    } else {
        assert_recent(
            &format!("{when}: last_hit of {cidr}"),
            &entry["last_hit"],
            Duration::from_secs(60),
        );
    }
}

/// The entries of the hit counter tests: one hit over IPv4, one over IPv6, one never.
const HIT_ENTRIES: [(&str, &str); 3] = [
    ("198.18.1.0/24", "lab A"),
    ("198.18.3.0/24", "never used"),
    ("2001:db8::a", "lab A v6"),
];

#[test]
fn hit_counters_follow_real_connects_and_survive_a_sigkill() {
    if !require_root("hit_counters_follow_real_connects_and_survive_a_sigkill") {
        return;
    }
    let mut fx = Fx::start(&HIT_ENTRIES, "");
    const N: u64 = 5;
    for _ in 0..N {
        assert_connects(
            fx.client(),
            A4,
            to(A4, PROTECTED),
            "198.18.1.0/24 is listed",
        );
    }
    for _ in 0..2 {
        assert_connects(fx.client(), A6, to(A6, PROTECTED), "2001:db8::a is listed");
    }
    // A dropped attempt is nobody's hit.
    assert_times_out(
        fx.client(),
        B4,
        to(B4, PROTECTED),
        "198.18.2.2 is not listed",
    );

    let list = fx.list(&[]);
    assert_eq!(list.len(), 3, "{list:#?}");
    assert_hits(&list, "198.18.1.0/24", N, "after the connects");
    assert_hits(&list, "2001:db8::a/128", 2, "after the connects");
    assert_hits(&list, "198.18.3.0/24", 0, "after the connects");
    let unused = fx.list(&["--unused", "1h"]);
    assert_eq!(
        unused.keys().collect::<Vec<_>>(),
        ["198.18.3.0/24"],
        "`list --unused 1h` should show only the never-hit entry: {unused:#?}"
    );
    assert_hits(&unused, "198.18.3.0/24", 0, "list --unused 1h");

    // The counters live in a pinned map: a daemon killed without any cleanup, and its
    // successor, lose nothing.
    fx.restart_after_sigkill();
    let list = fx.list(&[]);
    assert_hits(&list, "198.18.1.0/24", N, "after SIGKILL and restart");
    assert_hits(&list, "2001:db8::a/128", 2, "after SIGKILL and restart");
    assert_hits(&list, "198.18.3.0/24", 0, "after SIGKILL and restart");
    assert_connects(fx.client(), A4, to(A4, PROTECTED), "after the restart");
    let list = fx.list(&[]);
    assert_hits(
        &list,
        "198.18.1.0/24",
        N + 1,
        "one more connect after the restart",
    );
    assert_hits(
        &list,
        "2001:db8::a/128",
        2,
        "one more connect after the restart",
    );
    let unused = fx.list(&["--unused", "1h"]);
    assert_eq!(
        unused.keys().collect::<Vec<_>>(),
        ["198.18.3.0/24"],
        "after the restart: {unused:#?}"
    );

    // Once the last hit is older than the limit, a hit entry counts as unused too.
    std::thread::sleep(Duration::from_millis(1500));
    let unused = fx.list(&["--unused", "1s"]);
    assert_eq!(
        unused.keys().collect::<Vec<_>>(),
        ["198.18.1.0/24", "198.18.3.0/24", "2001:db8::a/128"],
        "`list --unused 1s`, 1.5 s after the last hit: {unused:#?}"
    );
    assert_hits(&unused, "198.18.1.0/24", N + 1, "list --unused 1s");
}

#[test]
fn hits_survive_a_stop_a_handover_a_reload_and_a_long_stop() {
    if !require_root("hits_survive_a_stop_a_handover_a_reload_and_a_long_stop") {
        return;
    }
    let mut fx = Fx::start(&HIT_ENTRIES, "");
    for _ in 0..3 {
        assert_connects(fx.client(), A4, to(A4, PROTECTED), "198.18.1.0/24");
    }
    for _ in 0..2 {
        assert_connects(fx.client(), A6, to(A6, PROTECTED), "2001:db8::a");
    }

    // SIGTERM detaches and removes the pinned counters; the next daemon has them back.
    fx.restart_after(Signal::SIGTERM, 0);
    let list = fx.list(&[]);
    assert_hits(&list, "198.18.1.0/24", 3, "after SIGTERM and a start");
    assert_hits(&list, "2001:db8::a/128", 2, "after SIGTERM and a start");
    assert_hits(&list, "198.18.3.0/24", 0, "after SIGTERM and a start");
    let unused = fx.list(&["--unused", "1h"]);
    assert_eq!(
        unused.keys().collect::<Vec<_>>(),
        ["198.18.3.0/24"],
        "`list --unused 1h` after a restart: {unused:#?}"
    );
    assert_connects(fx.client(), A4, to(A4, PROTECTED), "after the start");
    assert_hits(&fx.list(&[]), "198.18.1.0/24", 4, "one more connect");

    // A handover keeps them; so do a reload and a comment edit. A new network starts fresh.
    fx.restart_after(Signal::SIGUSR2, 75);
    assert_hits(&fx.list(&[]), "198.18.1.0/24", 4, "after a handover");
    fx.ctl(&["edit", "198.18.1.0/24", "--comment", "lab A, 2nd floor"])
        .ok();
    fx.ctl(&["edit", "2001:db8::a", "--cidr", "2001:db8::b"])
        .ok();
    fx.ctl(&["reload"]).ok();
    let list = fx.list(&[]);
    assert_hits(&list, "198.18.1.0/24", 4, "after edit --comment and reload");
    assert_hits(&list, "2001:db8::b/128", 0, "edit --cidr: a new network");
    fx.restart_after(Signal::SIGTERM, 0);
    let list = fx.list(&[]);
    assert_hits(&list, "198.18.1.0/24", 4, "after the edits and a restart");
    assert_hits(&list, "2001:db8::b/128", 0, "after the edits and a restart");

    // Stopped for 40 days (a reboot between: the kernel's hit clock starts again at zero).
    // The saved times are wall-clock times, so the entry reads as last used 40 days ago.
    fx.daemon.signal(Signal::SIGTERM);
    fx.daemon.wait_exit(RELOAD_TIMEOUT).unwrap();
    let saved = fx.dir.join("state").join("hits");
    let forty_days = jiff::SignedDuration::from_hours(40 * 24);
    let mut text = String::new();
    let mut last = None;
    for line in std::fs::read_to_string(&saved).unwrap().lines() {
        let fields: Vec<&str> = line.split(' ').collect();
        if fields[0] == "198.18.1.0/24" {
            let t: jiff::Timestamp = fields[2].parse().unwrap();
            let earlier = t.checked_sub(forty_days).unwrap();
            last = Some(earlier);
            text += &format!("{} {} {}\n", fields[0], fields[1], earlier);
        } else {
            text += &format!("{line}\n");
        }
    }
    let last = last.unwrap_or_else(|| panic!("{} lacks 198.18.1.0/24", saved.display()));
    std::fs::write(&saved, text).unwrap();
    fx.restart();
    let list = fx.list(&[]);
    let entry = &list["198.18.1.0/24"];
    assert_eq!(entry["hits"].as_u64(), Some(4), "{entry}");
    let shown: jiff::Timestamp = entry["last_hit"].as_str().unwrap().parse().unwrap();
    assert!(
        shown.duration_since(last).abs() <= jiff::SignedDuration::from_secs(1),
        "last_hit {shown}, saved as {last}"
    );
    let unused = fx.list(&["--unused", "30d"]);
    assert!(
        unused.contains_key("198.18.1.0/24") && unused.contains_key("198.18.3.0/24"),
        "`list --unused 30d`, 40 days after the last hit: {unused:#?}"
    );
    assert!(
        !fx.list(&["--unused", "60d"]).contains_key("198.18.1.0/24"),
        "used within 60 days"
    );
    // Its next hit is the latest again.
    assert_connects(fx.client(), A4, to(A4, PROTECTED), "after the long stop");
    assert_hits(
        &fx.list(&[]),
        "198.18.1.0/24",
        5,
        "a hit after the long stop",
    );
}

// ---------------------------------------------------------------------------------------
// 2. A flood of blocked SYNs
// ---------------------------------------------------------------------------------------

/// The MAC address of `dev` in `ns`.
fn mac_of(ns: &Netns, dev: &str) -> [u8; 6] {
    let out = ns
        .ip(&["-j", "link", "show", "dev", dev])
        .unwrap_or_else(|e| panic!("{e:#}"));
    let json: Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
    let text = json[0]["address"]
        .as_str()
        .unwrap_or_else(|| panic!("no address in {out}"));
    let bytes: Vec<u8> = text
        .split(':')
        .map(|b| u8::from_str_radix(b, 16).unwrap())
        .collect();
    bytes.try_into().unwrap()
}

/// An `AF_PACKET` socket on the client's veth, which puts crafted frames on the wire: the
/// server's XDP program sees them as if a host with that source address had sent them.
struct Injector {
    fd: OwnedFd,
    to: libc::sockaddr_ll,
    /// (destination, source) MAC of every frame.
    macs: ([u8; 6], [u8; 6]),
}

impl Injector {
    fn open(lab: &Lab) -> Injector {
        let client_if = lab.client_if().to_owned();
        let dst = mac_of(&lab.server, lab.server_if());
        let src = mac_of(&lab.client, lab.client_if());
        let (fd, ifindex) = lab.client.run_in(|| {
            // Protocol 0: this socket only sends.
            // SAFETY: plain socket(2); the descriptor is owned right away.
            let raw =
                unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 0) };
            assert!(raw >= 0, "AF_PACKET socket: {}", io::Error::last_os_error());
            // SAFETY: a fresh descriptor nobody else owns.
            let fd = unsafe { OwnedFd::from_raw_fd(raw) };
            let ifindex = nix::net::if_::if_nametoindex(client_if.as_str())
                .unwrap_or_else(|e| panic!("ifindex of {client_if}: {e}"));
            (fd, ifindex)
        });
        // SAFETY: sockaddr_ll is plain data; all zeroes is a valid value.
        let mut to: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        to.sll_family = libc::AF_PACKET as u16;
        to.sll_protocol = (libc::ETH_P_IP as u16).to_be();
        to.sll_ifindex = i32::try_from(ifindex).unwrap();
        to.sll_halen = 6;
        to.sll_addr[..6].copy_from_slice(&dst);
        Injector {
            fd,
            to,
            macs: (dst, src),
        }
    }

    /// A TCP SYN from `src`:`sport` to the server's protected port.
    fn syn(&self, src: Ipv4Addr, sport: u16) -> Vec<u8> {
        let mut frame = Frame::tcp_v4(src, SERVER_V4, sport, PROTECTED).build();
        frame[..6].copy_from_slice(&self.macs.0);
        frame[6..12].copy_from_slice(&self.macs.1);
        frame
    }

    /// Sends one frame, retrying briefly while the veth is busy; false if it never went.
    fn send(&self, frame: &[u8]) -> bool {
        for _ in 0..100 {
            // SAFETY: the buffer and the address are valid for the lengths given.
            let n = unsafe {
                libc::sendto(
                    self.fd.as_raw_fd(),
                    frame.as_ptr().cast(),
                    frame.len(),
                    0,
                    (&raw const self.to).cast(),
                    size_of::<libc::sockaddr_ll>() as libc::socklen_t,
                )
            };
            if n >= 0 {
                return true;
            }
            match io::Error::last_os_error().raw_os_error() {
                Some(libc::ENOBUFS | libc::EAGAIN | libc::EINTR) => std::thread::yield_now(),
                _ => return false,
            }
        }
        false
    }
}

/// A deterministic shuffle (xorshift), so that no source's frames come in runs the token
/// bucket could alias with.
fn shuffle<T>(items: &mut [T]) {
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    for i in (1..items.len()).rev() {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        let j = usize::try_from(state % (i as u64 + 1)).unwrap();
        items.swap(i, j);
    }
}

/// CPUs the kernel keeps per-CPU map values for.
fn possible_cpus() -> u64 {
    // SAFETY: sysconf has no memory-safety preconditions.
    let n = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_CONF) };
    u64::try_from(n).unwrap_or(1).max(1)
}

fn u64_at(value: &Value, pointer: &str) -> u64 {
    value
        .pointer(pointer)
        .and_then(Value::as_u64)
        .unwrap_or_else(|| panic!("no number at {pointer} in {value}"))
}

#[test]
fn a_flood_of_blocked_syns_gives_a_bounded_event_rate_and_the_right_top_sources() {
    if !require_root("a_flood_of_blocked_syns_gives_a_bounded_event_rate_and_the_right_top_sources")
    {
        return;
    }
    let fx = Fx::start(&[("198.18.1.0/24", "lab A")], "");
    let injector = Injector::open(&fx.lab);

    // 20,000 SYNs: 40 % from 198.18.2.2, 20 % from .3, 10 % from .4, and 6,000 one-off
    // spoofed sources in 198.19.0.0/16, in a shuffled order.
    let heavy: [(Ipv4Addr, usize); 3] = [
        (Ipv4Addr::new(198, 18, 2, 2), 8000),
        (Ipv4Addr::new(198, 18, 2, 3), 4000),
        (Ipv4Addr::new(198, 18, 2, 4), 2000),
    ];
    const ONE_OFF: u16 = 6000;
    let mut plan: Vec<Ipv4Addr> = heavy
        .iter()
        .flat_map(|&(src, n)| std::iter::repeat_n(src, n))
        .collect();
    plan.extend((0..ONE_OFF).map(|i| {
        let [hi, lo] = i.to_be_bytes();
        Ipv4Addr::new(198, 19, hi, lo)
    }));
    shuffle(&mut plan);
    let frames: Vec<Vec<u8>> = plan
        .iter()
        .enumerate()
        .map(|(i, &src)| injector.syn(src, 1024 + u16::try_from(i % 60_000).unwrap()))
        .collect();

    let status0 = fx.json(&["status"]);
    let blocked0 = fx.json(&["blocked"]);
    let started = Instant::now();
    // In ten bursts over about a second, so that the budget's refill rate shows too.
    let mut sent = 0;
    for (i, burst) in frames.chunks(frames.len() / 10).enumerate() {
        if i > 0 {
            std::thread::sleep(Duration::from_millis(100));
        }
        sent += burst.iter().filter(|f| injector.send(f)).count();
    }
    let flood_time = started.elapsed();
    eprintln!("sent {sent} of {} frames in {flood_time:?}", frames.len());
    assert!(
        sent >= frames.len() * 9 / 10,
        "only {sent} of {} frames could be sent",
        frames.len()
    );
    assert!(
        flood_time < Duration::from_secs(5),
        "the flood took {flood_time:?}"
    );

    // The daemon drains the ring buffer: every event sent arrives.
    std::thread::sleep(Duration::from_millis(300));
    let deadline = Instant::now() + Duration::from_secs(3);
    let blocked1 = loop {
        let b = fx.json(&["blocked", "--top", "5"]);
        let (received, sent) = (u64_at(&b, "/events_received"), u64_at(&b, "/events_sent"));
        assert!(
            received <= sent,
            "events_received {received} > events_sent {sent}: {b}"
        );
        if received == sent || Instant::now() >= deadline {
            break b;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let elapsed = started.elapsed();
    let status1 = fx.json(&["status"]);
    eprintln!("blocked after the flood: {blocked1:#}");

    let delta = |a: &Value, b: &Value, p: &str| u64_at(b, p) - u64_at(a, p);
    let events_sent = delta(&blocked0, &blocked1, "/events_sent");
    let events_suppressed = delta(&blocked0, &blocked1, "/events_suppressed");
    let events_received = delta(&blocked0, &blocked1, "/events_received");
    let dropped = delta(&status0, &status1, "/counters/drop_syn_v4");
    let dropped_on_if = delta(&status0, &status1, "/interfaces/0/by_reason/drop_syn_v4");
    eprintln!(
        "dropped {dropped}, events sent {events_sent}, suppressed {events_suppressed}, received {events_received}, in {elapsed:?}"
    );
    assert_eq!(
        dropped, dropped_on_if,
        "status counters and the interface's by_reason disagree"
    );
    assert!(
        dropped >= sent as u64 * 9 / 10 && dropped <= sent as u64,
        "{sent} SYNs were sent but status shows {dropped} drop_syn_v4 drops"
    );
    assert_eq!(
        events_sent + events_suppressed,
        dropped,
        "every dropped SYN is either reported or counted as suppressed (sent {events_sent}, suppressed {events_suppressed}, drop_syn_v4 {dropped})"
    );
    assert_eq!(
        events_received, events_sent,
        "the daemon should have received every event the kernel sent: {blocked1}"
    );
    let secs = elapsed.as_secs() + u64::from(elapsed.subsec_nanos() > 0);
    let bound = 2 * EVENTS_PER_SEC_PER_CPU * possible_cpus() * (secs + 1);
    assert!(
        events_sent <= bound,
        "{events_sent} events in {elapsed:?} exceeds the budget's bound {bound}"
    );
    assert!(
        events_suppressed > 0 && events_sent > 0,
        "a flood of {dropped} drops should be partly reported, partly suppressed: sent {events_sent}, suppressed {events_suppressed}"
    );

    // The heavy sources are on top, the heaviest first, all with the right port.
    let sources = blocked1["sources"].as_array().unwrap();
    assert_eq!(sources.len(), 5, "--top 5: {blocked1}");
    let top3: BTreeSet<&str> = sources[..3]
        .iter()
        .map(|s| s["source"].as_str().unwrap())
        .collect();
    assert_eq!(
        top3,
        BTreeSet::from(["198.18.2.2", "198.18.2.3", "198.18.2.4"]),
        "the top three should be the heavy sources: {blocked1:#}"
    );
    assert_eq!(sources[0]["source"].as_str(), Some("198.18.2.2"));
    for s in &sources[..3] {
        assert_eq!(s["port"].as_u64(), Some(u64::from(PROTECTED)), "{s}");
        assert_eq!(s["reason"].as_str(), Some("drop_syn_v4"), "{s}");
        assert!(u64_at(s, "/count") > u64_at(&sources[3], "/count"), "{s}");
        assert_recent("first_seen", &s["first_seen"], Duration::from_secs(30));
        assert_recent("last_seen", &s["last_seen"], Duration::from_secs(30));
    }
    // The rest are one-off spoofed sources, seen once each.
    for s in &sources[3..] {
        let source: Ipv4Addr = s["source"].as_str().unwrap().parse().unwrap();
        assert_eq!(source.octets()[..2], [198, 19], "{s}");
        assert_eq!(s["count"].as_u64(), Some(1), "{s}");
    }
    let counted: u64 = sources.iter().map(|s| u64_at(s, "/count")).sum();
    assert!(counted <= events_received, "{blocked1}");

    // `blocked --follow` prints what it has at once, then sources as they are blocked.
    let mut follow = ctl_command(
        &fx.socket,
        &["--json", "blocked", "--follow", "--top", "10"],
    )
    .stdin(Stdio::null())
    .stdout(Stdio::piped())
    .stderr(Stdio::null())
    .spawn()
    .expect("starting allowlistctl blocked --follow");
    let (tx, lines) = mpsc::channel::<String>();
    let stdout = follow.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut seen = Vec::new();
    let mut next_line = |within: Duration| match lines.recv_timeout(within) {
        Ok(line) => {
            let json: Value = serde_json::from_str(&line)
                .unwrap_or_else(|e| panic!("`blocked --follow --json` printed {line:?}: {e}"));
            seen.push(json.clone());
            Some(json)
        }
        Err(_) => None,
    };
    let first = next_line(Duration::from_secs(3));
    let late = Ipv4Addr::new(198, 18, 2, 9);
    let mut late_line = None;
    if first.is_some() {
        for i in 0..5 {
            assert!(injector.send(&injector.syn(late, 40_000 + i)));
        }
        let deadline = Instant::now() + Duration::from_secs(4);
        while late_line.is_none() && Instant::now() < deadline {
            match next_line(Duration::from_millis(200)) {
                Some(json) if json["source"].as_str() == Some("198.18.2.9") => {
                    late_line = Some(json);
                }
                _ => {}
            }
        }
    }
    let _ = follow.kill();
    let _ = wait_child(&mut follow, Duration::from_secs(5));
    reader.join().unwrap();
    let first = first.expect("`blocked --follow` printed nothing within 3 s");
    assert!(
        first.get("source").is_some() && first.get("count").is_some(),
        "{first}"
    );
    assert!(
        seen.iter()
            .any(|s| s["source"].as_str() == Some("198.18.2.2")),
        "the follow output should include the heaviest source: {seen:#?}"
    );
    let late_line = late_line.unwrap_or_else(|| {
        panic!("`blocked --follow` did not show 198.18.2.9, blocked while it ran: {seen:#?}")
    });
    assert_eq!(late_line["port"].as_u64(), Some(u64::from(PROTECTED)));
    assert_eq!(late_line["reason"].as_str(), Some("drop_syn_v4"));
}

// ---------------------------------------------------------------------------------------
// 3. Sessions
// ---------------------------------------------------------------------------------------

/// The session in `report` whose peer is `client`'s local address.
fn session_of<'a>(report: &'a Value, client: &TcpStream) -> &'a Value {
    let peer = client.local_addr().unwrap().to_string();
    let found: Vec<&Value> = report["sessions"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["peer"].as_str() == Some(peer.as_str()))
        .collect();
    assert_eq!(found.len(), 1, "sessions of {peer}: {report:#}");
    found[0]
}

#[test]
fn sessions_show_who_is_connected_and_kill_unlisted_ends_only_the_unlisted() {
    if !require_root("sessions_show_who_is_connected_and_kill_unlisted_ends_only_the_unlisted") {
        return;
    }
    let fx = Fx::start(&[("198.18.1.0/24", "lab A")], "");
    fx.ctl(&["add", "198.18.2.0/24", "--comment", "temporary"])
        .ok();
    let mut covered = open_echoing(fx.client(), A4);
    let mut unlisted = open_echoing(fx.client(), B4);
    fx.ctl(&["remove", "198.18.2.0/24"]).ok();
    assert_times_out(
        fx.client(),
        B4,
        to(B4, PROTECTED),
        "198.18.2.0/24 was removed",
    );

    // Both are listed, with the covering entry only for the first.
    let report = fx.json(&["sessions"]);
    assert_eq!(report["kind"].as_str(), Some("sessions"), "{report}");
    assert_eq!(
        report["sessions"].as_array().unwrap().len(),
        2,
        "{report:#}"
    );
    let server = to(A4, PROTECTED).to_string();
    let c = session_of(&report, &covered);
    let u = session_of(&report, &unlisted);
    for s in [c, u] {
        assert_eq!(s["local"].as_str(), Some(server.as_str()), "{s}");
        assert_eq!(s["killed"].as_bool(), Some(false), "{s}");
        assert_recent("since", &s["since"], Duration::from_secs(60));
    }
    assert_eq!(
        c["covered_by"]["cidr"].as_str(),
        Some("198.18.1.0/24"),
        "{c}"
    );
    assert_eq!(c["covered_by"]["comment"].as_str(), Some("lab A"), "{c}");
    assert!(u["covered_by"].is_null(), "{u}");
    let other_port = fx.json(&["sessions", "--port", "2223"]);
    assert_eq!(other_port["sessions"].as_array().unwrap().len(), 0);

    // Ending your own unlisted connection is refused, and nothing is ended.
    fx.ctl(&["sessions", "--kill-unlisted", "--current-ip", "198.18.2.2"])
        .refused("your own connection from 198.18.2.2 is not covered by any entry and would be ended; run `allowlistctl add 198.18.2.2/32` first, or pass --force");
    tcp::exchange(&mut unlisted, b"still here").expect("the refused kill ended nothing");
    tcp::exchange(&mut covered, b"still here").expect("the refused kill ended nothing");
    let refused = fx.audit_records("kill-unlisted");
    assert_eq!(refused.len(), 1, "{refused:#?}");
    assert_eq!(refused[0]["result"]["status"].as_str(), Some("refused"));

    // Without it, the unlisted one ends and the covered one stays.
    let killed = fx.json(&["sessions", "--kill-unlisted"]);
    assert_eq!(killed["killed"].as_u64(), Some(1), "{killed:#}");
    assert_eq!(
        session_of(&killed, &unlisted)["killed"].as_bool(),
        Some(true)
    );
    assert_eq!(
        session_of(&killed, &covered)["killed"].as_bool(),
        Some(false)
    );
    assert_ended(&mut unlisted, "198.18.2.2 after sessions --kill-unlisted");
    tcp::exchange(&mut covered, b"covered").expect("the covered connection should stay");
    let after = fx.json(&["sessions"]);
    assert_eq!(after["sessions"].as_array().unwrap().len(), 1, "{after:#}");
    session_of(&after, &covered);

    let records = fx.audit_records("kill-unlisted");
    assert_eq!(records.len(), 2, "{records:#?}");
    let record = &records[1];
    assert_eq!(record["result"]["status"].as_str(), Some("ok"), "{record}");
    let ended = unlisted.local_addr().unwrap().to_string();
    assert_eq!(
        record["before"]["sessions"],
        serde_json::json!([{ "peer": ended, "local": server }]),
        "{record}"
    );

    // `activate --kill-unlisted` after a deactivate ends those let in meanwhile.
    fx.ctl(&["deactivate"]).ok();
    let mut late = open_echoing(fx.client(), B4);
    let changed = fx.json(&["activate", "--kill-unlisted"]);
    assert!(
        changed["summary"]
            .as_str()
            .is_some_and(|s| s.contains("ended 1 ")),
        "{changed:#}"
    );
    assert_ended(&mut late, "198.18.2.2 after activate --kill-unlisted");
    tcp::exchange(&mut covered, b"covered").expect("the covered connection should stay");
    assert_times_out(fx.client(), B4, to(B4, PROTECTED), "active again");
    let records = fx.audit_records("kill-unlisted");
    assert_eq!(records.len(), 3, "{records:#?}");
    assert_eq!(
        records[2]["before"]["sessions"],
        serde_json::json!([{ "peer": late.local_addr().unwrap().to_string(), "local": server }]),
        "{:#}",
        records[2]
    );
    assert_eq!(fx.audit_records("activate").len(), 1);
}

// ---------------------------------------------------------------------------------------
// 4. /metrics
// ---------------------------------------------------------------------------------------

struct Http {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl Http {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// `GET path` from inside the server namespace.
fn http_get(ns: &Netns, path: &str) -> Http {
    let addr: SocketAddr = METRICS.parse().unwrap();
    let raw = ns
        .run_in(|| -> io::Result<String> {
            let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
            stream.set_read_timeout(Some(Duration::from_secs(10)))?;
            write!(
                stream,
                "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
            )?;
            let mut raw = String::new();
            stream.read_to_string(&mut raw)?;
            Ok(raw)
        })
        .unwrap_or_else(|e| panic!("GET http://{addr}{path}: {e}"));
    let (head, body) = raw
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("no end of head: {raw:?}"));
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status line: {raw:?}"));
    Http {
        status,
        headers: lines
            .filter_map(|l| l.split_once(':'))
            .map(|(n, v)| (n.trim().to_owned(), v.trim().to_owned()))
            .collect(),
        body: body.to_owned(),
    }
}

type Parsed = MetricsExposition<OpenMetricsType, OpenMetricsValue>;

fn scrape(ns: &Netns) -> (String, Parsed) {
    let response = http_get(ns, "/metrics");
    assert_eq!(response.status, 200, "{}", response.body);
    assert!(
        response
            .header("content-type")
            .is_some_and(|t| t.starts_with("application/openmetrics-text")),
        "content type {:?}",
        response.header("content-type")
    );
    let parsed = openmetrics_parser::openmetrics::parse_openmetrics(&response.body)
        .unwrap_or_else(|e| panic!("/metrics does not parse: {e}\n{}", response.body));
    (response.body, parsed)
}

/// Every sample of `family` as (labels, value).
fn samples(parsed: &Parsed, family: &str) -> Vec<(BTreeMap<String, String>, f64)> {
    let Some(family) = parsed.families.get(family) else {
        return Vec::new();
    };
    family
        .iter_samples()
        .map(|s| {
            let set = s.get_labelset().unwrap();
            let labels = set.iter().map(|(n, v)| (n.clone(), v.clone())).collect();
            let value = match &s.value {
                OpenMetricsValue::Counter(c) => c.value.as_f64(),
                OpenMetricsValue::Gauge(n) => n.as_f64(),
                other => panic!("unexpected {other:?}"),
            };
            (labels, value)
        })
        .collect()
}

/// The value of the one series of `family` whose labels include `labels`.
#[track_caller]
fn value(parsed: &Parsed, family: &str, labels: &[(&str, &str)]) -> f64 {
    let matching: Vec<f64> = samples(parsed, family)
        .into_iter()
        .filter(|(set, _)| {
            labels
                .iter()
                .all(|(k, v)| set.get(*k).map(String::as_str) == Some(*v))
        })
        .map(|(_, v)| v)
        .collect();
    assert_eq!(
        matching.len(),
        1,
        "{family} {labels:?}: {:?}",
        samples(parsed, family)
    );
    matching[0]
}

#[track_caller]
fn as_f64(value: &Value, pointer: &str) -> f64 {
    u64_at(value, pointer) as f64
}

#[test]
fn metrics_parse_and_agree_with_status_list_blocked_and_audit() {
    if !require_root("metrics_parse_and_agree_with_status_list_blocked_and_audit") {
        return;
    }
    let fx = Fx::start(
        &[
            ("198.18.1.0/24", "lab A"),
            ("198.18.3.0/24", "never used"),
            ("2001:db8::a", "lab \"A\" v6"),
        ],
        &format!("metrics_listen = \"{METRICS}\"\nmetrics_entry_series = 1\n"),
    );
    for _ in 0..3 {
        assert_connects(fx.client(), A4, to(A4, PROTECTED), "listed");
    }
    for _ in 0..2 {
        assert_connects(fx.client(), A6, to(A6, PROTECTED), "listed");
    }
    assert_times_out(fx.client(), B4, to(B4, PROTECTED), "not listed");
    fx.ctl(&["add", "198.18.5.5", "--comment", "brief"]).ok();
    fx.ctl(&["remove", "198.18.5.5/32"]).ok();
    // Events of the blocked connect reach the daemon.
    std::thread::sleep(Duration::from_millis(200));

    // Neighbour discovery and the like may move the counters meanwhile: take the scrape
    // between two equal reads of `status`.
    let mut observed = None;
    for _ in 0..5 {
        let before = fx.json(&["status"]);
        let (text, parsed) = scrape(&fx.lab.server);
        let list = fx.list(&[]);
        let blocked = fx.json(&["blocked"]);
        let audit = fx.json(&["audit"]);
        let after = fx.json(&["status"]);
        if before["interfaces"] == after["interfaces"] && before["counters"] == after["counters"] {
            observed = Some((after, text, parsed, list, blocked, audit));
            break;
        }
    }
    let (status, text, parsed, list, blocked, audit) =
        observed.expect("the counters never held still between two `status` reads");
    eprintln!("/metrics:\n{text}");

    // Packets per interface and reason.
    let interfaces = status["interfaces"].as_array().unwrap();
    assert_eq!(interfaces.len(), 1, "{status:#}");
    let mut expected_series = 0;
    for interface in interfaces {
        let name = interface["name"].as_str().unwrap();
        let by_reason = interface["by_reason"].as_object().unwrap();
        assert!(!by_reason.is_empty(), "{interface}");
        for (reason, count) in by_reason {
            let verdict = if reason.starts_with("drop_") {
                "drop"
            } else {
                "pass"
            };
            let labels = [
                ("interface", name),
                ("reason", reason.as_str()),
                ("verdict", verdict),
            ];
            assert_eq!(
                value(&parsed, "allowlist_packets", &labels),
                count.as_u64().unwrap() as f64,
                "allowlist_packets {labels:?} vs status"
            );
            expected_series += 1;
        }
    }
    assert_eq!(
        samples(&parsed, "allowlist_packets").len(),
        expected_series,
        "allowlist_packets has series status does not show"
    );
    assert!(
        value(
            &parsed,
            "allowlist_packets",
            &[("reason", "pass_allowed_v4")]
        ) >= 3.0
            && value(&parsed, "allowlist_packets", &[("reason", "drop_syn_v4")]) >= 1.0,
        "the connects should show"
    );

    // Entries, capacity, active, revision, emergency.
    for (family, key) in [("ipv4", "/entries_v4"), ("ipv6", "/entries_v6")] {
        assert_eq!(
            value(&parsed, "allowlist_entries", &[("family", family)]),
            as_f64(&status, key),
            "allowlist_entries{{family={family}}}"
        );
    }
    assert_eq!(as_f64(&status, "/entries_v4"), 2.0);
    assert_eq!(as_f64(&status, "/entries_v6"), 1.0);
    assert_eq!(
        value(&parsed, "allowlist_capacity", &[]),
        as_f64(&status, "/capacity")
    );
    assert_eq!(value(&parsed, "allowlist_active", &[]), 1.0);
    assert_eq!(status["active"].as_bool(), Some(true));
    assert_eq!(
        value(&parsed, "allowlist_revision", &[]),
        as_f64(&status, "/revision")
    );
    assert_eq!(
        value(&parsed, "allowlist_emergency_remaining_seconds", &[]),
        0.0
    );

    // Audit records: the last seq.
    let records = audit["records"].as_array().unwrap();
    let last_seq = records.last().map_or(0, |r| u64_at(r, "/seq"));
    assert!(last_seq >= 3, "start, add, remove: {audit:#}");
    assert_eq!(
        value(&parsed, "allowlist_audit_records", &[]),
        last_seq as f64,
        "allowlist_audit_records_total vs the last seq of `audit`"
    );

    // Entry hits: metrics_entry_series = 1, so the most hit entry has its own series and the
    // others are summed as "other".
    let hits = |cidr: &str| u64_at(&list[cidr], "/hits") as f64;
    assert_eq!(hits("198.18.1.0/24"), 3.0);
    assert_eq!(hits("2001:db8::a/128"), 2.0);
    let mut series: Vec<(String, String, f64)> = samples(&parsed, "allowlist_entry_hits")
        .into_iter()
        .map(|(l, v)| (l["cidr"].clone(), l["comment"].clone(), v))
        .collect();
    series.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(
        series,
        [
            (
                "198.18.1.0/24".to_owned(),
                "lab A".to_owned(),
                hits("198.18.1.0/24")
            ),
            (
                "other".to_owned(),
                String::new(),
                hits("2001:db8::a/128") + hits("198.18.3.0/24")
            ),
        ],
        "allowlist_entry_hits_total vs `list`"
    );

    // Blocked events.
    assert_eq!(
        value(&parsed, "allowlist_blocked_events", &[]),
        as_f64(&blocked, "/events_received")
    );
    assert_eq!(
        value(&parsed, "allowlist_blocked_events_suppressed", &[]),
        as_f64(&blocked, "/events_suppressed")
    );
    assert!(as_f64(&blocked, "/events_received") >= 1.0, "{blocked}");

    // The names scrapers see.
    for prefix in [
        "allowlist_packets_total{",
        "allowlist_entry_hits_total{",
        "allowlist_audit_records_total ",
        "allowlist_revision ",
    ] {
        assert!(
            text.lines().any(|l| l.starts_with(prefix)),
            "no line starting with {prefix:?}"
        );
    }
    assert!(text.ends_with("# EOF\n"), "{text}");

    // Other paths are not found.
    for path in ["/", "/other", "/metricsx"] {
        let response = http_get(&fx.lab.server, path);
        assert_eq!(response.status, 404, "GET {path}: {}", response.body);
    }

    // Reloads: a good one, a failed one, and the fix.
    let (_, parsed) = scrape(&fx.lab.server);
    let reloads0 = value(&parsed, "allowlist_reloads", &[]);
    assert_eq!(value(&parsed, "allowlist_last_reload_success", &[]), 1.0);
    let good = std::fs::read_to_string(&fx.path).unwrap();
    let changed = format!("{good}\n[[entries]]\ncidr = \"198.18.4.0/24\"\ncomment = \"new\"\n");
    write_atomically(&fx.path, &changed);
    let before_reload = jiff::Timestamp::now().as_second() as f64;
    fx.ctl(&["reload"]).ok();
    let (_, parsed) = scrape(&fx.lab.server);
    assert_eq!(
        value(&parsed, "allowlist_reloads", &[]),
        reloads0 + 1.0,
        "a reload that changed the list"
    );
    assert_eq!(value(&parsed, "allowlist_last_reload_success", &[]), 1.0);
    assert!(
        value(&parsed, "allowlist_last_reload_timestamp_seconds", &[]) >= before_reload - 1.0,
        "the last reload's time"
    );
    assert_eq!(
        value(&parsed, "allowlist_entries", &[("family", "ipv4")]),
        3.0
    );

    write_atomically(&fx.path, &format!("{changed}\nthis is = not [valid toml\n"));
    fx.ctl(&["reload"]).code(2);
    let (_, failed) = scrape(&fx.lab.server);
    write_atomically(&fx.path, &changed);
    fx.ctl(&["reload"]).ok();
    let (_, fixed) = scrape(&fx.lab.server);
    assert_eq!(
        (
            value(&failed, "allowlist_last_reload_success", &[]),
            value(&failed, "allowlist_reloads", &[])
        ),
        (0.0, reloads0 + 2.0),
        "after `allowlistctl reload` of an invalid config (exit 2): (last_reload_success, reloads_total)"
    );
    assert_eq!(
        value(&fixed, "allowlist_last_reload_success", &[]),
        1.0,
        "after fixing the file and reloading it successfully"
    );
}
