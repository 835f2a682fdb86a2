//! Faults the daemon survives, with the real `allowlistd` in network namespaces: SIGKILL in
//! the middle of a big reload and of a CLI change, an interface deleted and re-created, a
//! burst of SIGHUPs, and the program replaced by the next daemon, while clients probe the
//! protected port the whole time. Each test builds its own lab, removed when it ends.
//!
//! Needs root and the built binaries (`cargo xtask test`, or `cargo xtask build` then
//! `ALLOWLIST_BIN_DIR=target/debug cargo test -p allowlist-tests --test faults`).

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use allowlist_common::maps as names;
use allowlist_tests::bpffs::TestDir;
use allowlist_tests::ctl::ctl_command;
use allowlist_tests::daemon::{
    Config, Daemon, READY_TIMEOUT, RELOAD_TIMEOUT, with_top_level, write_atomically,
};
use allowlist_tests::fixture::Running;
use allowlist_tests::netns::{A4, A6, B4, B6, Netns, PROTECTED, to};
use allowlist_tests::pace::patient;
use allowlist_tests::require_root;
use allowlist_tests::tcp::{self, Outcome, assert_connects, assert_times_out};
use aya::maps::lpm_trie::LpmTrie;
use aya::maps::{HashMap, Map, MapData};
use nix::sys::signal::{Signal, kill};
use serde_json::Value;

/// The lab's allowed clients, listed.
fn standard(dir: &TestDir, iface: &str) -> Config {
    Config::new(dir, iface)
        .entry("198.18.1.0/24", "allowed client, IPv4")
        .entry("2001:db8::a/128", "allowed client, IPv6")
}

/// Whether the kernel's maps (`allowlistctl test`) let `ip` through on the protected port.
fn allowed(fx: &Running, ip: &str) -> bool {
    let out = fx.ctl(&["test", ip, "--port", &PROTECTED.to_string()]);
    match out.code {
        0 => true,
        1 => false,
        _ => panic!("unexpected answer: {out}"),
    }
}

/// Connects from each of `srcs` in turn to the protected port until `stop` (for at most
/// two minutes), each attempt waiting at most `wait`, a connected one followed by a 10 ms
/// pause; returns every outcome.
/// Probes until `stop`, and at least `min` times (a fast change must not leave the verdict
/// resting on a probe or two).
fn probe_until(
    ns: &Netns,
    srcs: &[IpAddr],
    wait: Duration,
    stop: &AtomicBool,
    min: usize,
) -> Vec<(IpAddr, Outcome)> {
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut outcomes = Vec::new();
    while (!stop.load(Ordering::Relaxed) || outcomes.len() < min) && Instant::now() < deadline {
        let src = srcs[outcomes.len() % srcs.len()];
        let outcome = tcp::connect(ns, src, to(src, PROTECTED), wait);
        if outcome.is_connected() {
            std::thread::sleep(Duration::from_millis(10));
        }
        outcomes.push((src, outcome));
    }
    outcomes
}

/// Runs `during` while the allowed clients (A4, A6) and the blocked ones (B4, B6) probe
/// continuously; panics if an allowed probe ever failed to connect or a blocked one ever
/// got through.
fn while_probing<R>(client: &Netns, what: &str, during: impl FnOnce() -> R) -> R {
    /// Stops the probers even when `during` panics, so the failure shows at once.
    struct StopOnDrop<'a>(&'a AtomicBool);
    impl Drop for StopOnDrop<'_> {
        fn drop(&mut self) {
            self.0.store(true, Ordering::Relaxed);
        }
    }
    let stop = AtomicBool::new(false);
    let (result, allowed, blocked) = std::thread::scope(|s| {
        // Generous for the allowed: a dropped SYN never gets an answer, however long one
        // waits, while a busy machine may be slow to answer.
        let allowed = s.spawn(|| {
            probe_until(
                client,
                &[A4, A6],
                patient(Duration::from_secs(2)),
                &stop,
                10,
            )
        });
        // Several at once, so that a blocked SYN is in flight most of the time (each waits
        // for an answer that never comes).
        let blocked: Vec<_> = [[B4, B6], [B6, B4], [B4, B6], [B6, B4]]
            .map(|srcs| {
                let stop = &stop;
                s.spawn(move || probe_until(client, &srcs, Duration::from_millis(150), stop, 0))
            })
            .into_iter()
            .collect();
        let stopper = StopOnDrop(&stop);
        let result = during();
        // A few more once it is over.
        std::thread::sleep(Duration::from_millis(300));
        drop(stopper);
        (
            result,
            allowed.join().expect("the allowed prober"),
            blocked
                .into_iter()
                .flat_map(|b| b.join().expect("a blocked prober"))
                .collect::<Vec<_>>(),
        )
    });
    let refused: Vec<_> = allowed.iter().filter(|(_, o)| !o.is_connected()).collect();
    let through: Vec<_> = blocked.iter().filter(|(_, o)| !o.is_timed_out()).collect();
    assert!(
        refused.is_empty() && allowed.len() >= 10,
        "{what}: {} probes from allowed clients, these did not connect: {refused:?}",
        allowed.len()
    );
    assert!(
        through.is_empty() && blocked.len() >= 4,
        "{what}: {} probes from blocked clients, these were not dropped: {through:?}",
        blocked.len()
    );
    eprintln!(
        "{what}: {} allowed probes all connected, {} blocked probes all dropped",
        allowed.len(),
        blocked.len()
    );
    result
}

/// The networks in the pinned tries and hash maps under `pin_dir`, as `addr/len`.
fn pinned_networks(pin_dir: &Path) -> BTreeSet<String> {
    let maps = pin_dir.join("maps");
    let open = |name: &str| {
        MapData::from_pin(maps.join(name)).unwrap_or_else(|e| panic!("the pinned {name}: {e}"))
    };
    let mut nets = BTreeSet::new();
    let trie: LpmTrie<_, [u8; 4], u32> =
        LpmTrie::try_from(Map::LpmTrie(open(names::ALLOW_V4))).expect("an LPM trie");
    for key in trie.keys() {
        let key = key.expect("reading the IPv4 trie");
        nets.insert(format!(
            "{}/{}",
            Ipv4Addr::from(key.data()),
            key.prefix_len()
        ));
    }
    let trie: LpmTrie<_, [u8; 16], u32> =
        LpmTrie::try_from(Map::LpmTrie(open(names::ALLOW_V6))).expect("an LPM trie");
    for key in trie.keys() {
        let key = key.expect("reading the IPv6 trie");
        nets.insert(format!(
            "{}/{}",
            Ipv6Addr::from(key.data()),
            key.prefix_len()
        ));
    }
    let exact: HashMap<_, [u8; 4], u32> =
        HashMap::try_from(Map::HashMap(open(names::EXACT_V4))).expect("a hash map");
    for key in exact.keys() {
        nets.insert(format!(
            "{}/32",
            Ipv4Addr::from(key.expect("reading EXACT_V4"))
        ));
    }
    let exact: HashMap<_, [u8; 16], u32> =
        HashMap::try_from(Map::HashMap(open(names::EXACT_V6))).expect("a hash map");
    for key in exact.keys() {
        nets.insert(format!(
            "{}/128",
            Ipv6Addr::from(key.expect("reading EXACT_V6"))
        ));
    }
    nets
}

// ---------------------------------------------------------------------------------------
// SIGKILL in the middle of a reload of 100k entries
// ---------------------------------------------------------------------------------------

const BULK_V4: u32 = 30_000;
const BULK_V6: u32 = 70_000;

/// 100k single addresses, a different set for each `set`: IPv4 in 198.19.0.0/17 or
/// 198.19.128.0/17, IPv6 in 2001:db8:100::/48 or 2001:db8:101::/48.
fn bulk(set: u32) -> (String, BTreeSet<String>) {
    let mut text = String::new();
    let mut nets = BTreeSet::new();
    for i in 0..BULK_V4 {
        let ip = Ipv4Addr::from(u32::from(Ipv4Addr::new(198, 19, 0, 0)) + set * 32_768 + i);
        let _ = writeln!(text, "{ip}");
        nets.insert(format!("{ip}/32"));
    }
    for i in 0..BULK_V6 {
        let ip = Ipv6Addr::new(
            0x2001,
            0xdb8,
            0x100 + set as u16,
            0,
            0,
            0,
            (i >> 16) as u16,
            i as u16,
        );
        let _ = writeln!(text, "{ip}");
        nets.insert(format!("{ip}/128"));
    }
    (text, nets)
}

/// Whether the kernel's maps pinned under `pin_dir` hold any of `singles` (single
/// addresses live in the EXACT hash maps).
fn pinned_any(pin_dir: &Path, singles: &[IpAddr]) -> bool {
    let maps = pin_dir.join("maps");
    let (Ok(v4), Ok(v6)) = (
        MapData::from_pin(maps.join(names::EXACT_V4)),
        MapData::from_pin(maps.join(names::EXACT_V6)),
    ) else {
        return false;
    };
    let v4: HashMap<_, [u8; 4], u32> = HashMap::try_from(Map::HashMap(v4)).expect("a hash map");
    let v6: HashMap<_, [u8; 16], u32> = HashMap::try_from(Map::HashMap(v6)).expect("a hash map");
    singles.iter().any(|ip| match ip {
        IpAddr::V4(a) => v4.get(&a.octets(), 0).is_ok(),
        IpAddr::V6(a) => v6.get(&a.octets(), 0).is_ok(),
    })
}

#[test]
fn sigkill_mid_reload_of_100k_entries_keeps_allowed_clients_and_restarts_on_the_config() {
    if !require_root(
        "sigkill_mid_reload_of_100k_entries_keeps_allowed_clients_and_restarts_on_the_config",
    ) {
        return;
    }
    let (set0, nets0) = bulk(0);
    let (set1, nets1) = bulk(1);
    let mut fx = Running::start(|dir, iface| {
        write_atomically(&dir.join("bulk.list"), &set0);
        // Room for both sets at once: a reload inserts before it removes.
        with_top_level(
            &standard(dir, iface).render(),
            "max_entries = 150000\nlist_files = [\"bulk.list\"]\n",
        )
    });
    let pin_dir = fx.dir.pin_dir();
    // A few of the new set's addresses, from its start, middle and end: once one is in the
    // kernel's maps, the reload is inserting.
    let markers: Vec<IpAddr> = [0, BULK_V4 / 2, BULK_V4 - 1]
        .map(|i| {
            IpAddr::V4(Ipv4Addr::from(
                u32::from(Ipv4Addr::new(198, 19, 128, 0)) + i,
            ))
        })
        .into_iter()
        .chain([0, BULK_V6 / 2, BULK_V6 - 1].map(|i| {
            IpAddr::V6(Ipv6Addr::new(
                0x2001,
                0xdb8,
                0x101,
                0,
                0,
                0,
                (i >> 16) as u16,
                i as u16,
            ))
        }))
        .collect();
    while_probing(&fx.lab.client, "SIGKILL mid-reload and restart", || {
        write_atomically(&fx.dir.join("bulk.list"), &set1);
        let t0 = Instant::now();
        fx.daemon.signal(Signal::SIGHUP);
        while !pinned_any(&pin_dir, &markers) {
            assert!(
                t0.elapsed() < patient(Duration::from_secs(40)),
                "the reload never reached the kernel's maps; log:\n{}",
                fx.daemon.log()
            );
            std::thread::sleep(Duration::from_millis(2));
        }
        fx.daemon.kill9();
        let left = pinned_networks(&pin_dir);
        let (old, new) = (
            left.intersection(&nets0).count(),
            left.intersection(&nets1).count(),
        );
        eprintln!(
            "killed {:?} after SIGHUP: the kernel's tries held {old} of the old set and {new} of the new",
            t0.elapsed()
        );
        // Inserts come first, removals after them: some new and all old means the reload
        // was cut short between its first insert and its first removal.
        assert!(
            old == nets0.len() && new > 0,
            "the kill should land in the middle of the reload ({old} old, {new} new)"
        );
        fx.daemon = Daemon::spawn(&fx.lab.server, &fx.path);
        fx.daemon.wait_ready();
    });
    let mut expected = nets1;
    expected.extend(["198.18.1.0/24".to_owned(), "2001:db8::a/128".to_owned()]);
    let pinned = pinned_networks(&pin_dir);
    assert!(
        pinned == expected,
        "after the restart the kernel's tries should equal the config: {} missing (e.g. {:?}), {} extra (e.g. {:?})",
        expected.difference(&pinned).count(),
        expected.difference(&pinned).next(),
        pinned.difference(&expected).count(),
        pinned.difference(&expected).next()
    );
    assert!(allowed(&fx, "198.19.128.7"), "an entry of the config");
    assert!(!allowed(&fx, "198.19.0.7"), "an entry of the old set");
    assert!(allowed(&fx, "2001:db8:101::1:7"));
    assert!(!allowed(&fx, "2001:db8:100::1:7"));
}

// ---------------------------------------------------------------------------------------
// SIGKILL during `allowlistctl add`
// ---------------------------------------------------------------------------------------

/// Whether the audit trail says `cidr` was added: an `add` recorded ok with it, not
/// followed by a `failed` record for the same revision.
fn audited_add(records: &[Value], cidr: &str) -> bool {
    let Some((at, ok)) = records.iter().enumerate().find(|(_, r)| {
        r["action"] == "add"
            && r["result"]["status"] == "ok"
            && r["after"]["entries"][0]["cidr"].as_str() == Some(cidr)
    }) else {
        return false;
    };
    !records[at + 1..].iter().any(|r| {
        r["action"] == "add" && r["result"]["status"] == "failed" && r["revision"] == ok["revision"]
    })
}

#[test]
fn sigkill_during_cli_add_leaves_it_all_there_or_not_at_all() {
    if !require_root("sigkill_during_cli_add_leaves_it_all_there_or_not_at_all") {
        return;
    }
    let mut fx = Running::start(|dir, iface| standard(dir, iface).render());
    // One add, timed, to spread the kills over its length.
    let t0 = Instant::now();
    fx.ctl(&["add", "198.18.9.0/24"]).ok();
    let whole = t0.elapsed();
    let mut seen = (0, 0);
    for i in 0..8u32 {
        let cidr = format!("198.18.{}.0/24", 10 + i);
        let probe = format!("198.18.{}.1", 10 + i);
        let mut add = ctl_command(&fx.socket, &["add", &cidr]);
        let child = add
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("starting allowlistctl add");
        std::thread::sleep(whole * i / 6);
        fx.daemon.kill9();
        let acked = child
            .wait_with_output()
            .expect("allowlistctl add")
            .status
            .success();
        fx.restart();
        let in_file = std::fs::read_to_string(&fx.path).unwrap().contains(&cidr);
        let in_maps = allowed(&fx, &probe);
        let in_audit = audited_add(&fx.audit(), &cidr);
        assert!(
            in_file == in_maps && in_maps == in_audit,
            "kill {i} ({:?} into an add of {whole:?}): {cidr} in the file {in_file}, in the maps {in_maps}, in the audit trail {in_audit}; log:\n{}",
            whole * i / 6,
            fx.daemon.log()
        );
        assert!(
            !acked || in_file,
            "kill {i}: `add {cidr}` was acknowledged but is lost"
        );
        if in_file { seen.0 += 1 } else { seen.1 += 1 }
    }
    eprintln!(
        "8 kills during an add: {} left it applied, {} left nothing",
        seen.0, seen.1
    );
    fx.ctl(&["audit", "verify"]).ok().stdout_has("intact");
    // The revision never repeats: every acknowledged change has its own.
    let revisions: Vec<u64> = fx
        .audit()
        .iter()
        .filter(|r| r["result"]["status"] == "ok" && r["action"] == "add")
        .map(|r| r["revision"].as_u64().unwrap())
        .collect();
    let distinct: BTreeSet<_> = revisions.iter().collect();
    assert_eq!(
        distinct.len(),
        revisions.len(),
        "revisions of the adds: {revisions:?}"
    );
}

// ---------------------------------------------------------------------------------------
// An interface deleted and re-created
// ---------------------------------------------------------------------------------------

#[test]
fn a_recreated_interface_is_reattached_at_once_and_logged() {
    if !require_root("a_recreated_interface_is_reattached_at_once_and_logged") {
        return;
    }
    let fx = Running::start(|dir, iface| standard(dir, iface).render());
    let iface = fx.lab.server_if().to_owned();
    let links = fx.dir.pin_dir().join("links");
    let pins = || {
        std::fs::read_dir(&links)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect::<Vec<_>>()
    };
    let before = pins();
    assert_eq!(before.len(), 1, "one pinned link: {before:?}");
    // Both are noticed on the link event, within a second; the periodic look (every 2 s)
    // alone would often take longer.
    let within = Duration::from_secs(1);
    for round in 0..2 {
        fx.lab.delete_link().expect("deleting the veth pair");
        let t0 = Instant::now();
        let line = fx
            .daemon
            .wait_for_log("interface vanished", within)
            .unwrap_or_else(|e| panic!("round {round}: {e:#}"));
        let noticed = t0.elapsed();
        assert!(line.contains(&iface), "the log names the interface: {line}");
        let shown = fx.ctl(&["--json", "status"]).ok().json()["interfaces"].to_string();
        assert!(shown.contains("detached"), "status shows the loss: {shown}");
        fx.lab.restore_link().expect("re-creating the veth pair");
        let t0 = Instant::now();
        let line = fx
            .daemon
            .wait_for_log("re-attached", within)
            .unwrap_or_else(|e| panic!("round {round}: {e:#}"));
        eprintln!(
            "round {round}: loss noticed after {noticed:?}, re-attached {:?} after the interface came back",
            t0.elapsed()
        );
        assert!(line.contains(&iface), "the log names the interface: {line}");
        assert_eq!(pins(), before, "round {round}: the link is pinned again");
        let status = fx.ctl(&["--json", "status"]).ok().json();
        let shown = status["interfaces"].to_string();
        assert!(
            shown.contains(&iface) && !shown.contains("detached"),
            "status shows it attached again: {shown}"
        );
        for src in [B4, B6] {
            assert_times_out(
                fx.client(),
                src,
                to(src, PROTECTED),
                "on the re-created interface",
            );
        }
        for src in [A4, A6] {
            assert_connects(
                fx.client(),
                src,
                to(src, PROTECTED),
                "on the re-created interface",
            );
        }
    }
}

// ---------------------------------------------------------------------------------------
// 1,000 SIGHUPs in a burst
// ---------------------------------------------------------------------------------------

#[test]
fn a_burst_of_1000_sighups_is_coalesced_and_ends_on_the_final_config() {
    if !require_root("a_burst_of_1000_sighups_is_coalesced_and_ends_on_the_final_config") {
        return;
    }
    let fx = Running::start(|dir, iface| standard(dir, iface).render());
    let final_config = standard(&fx.dir, fx.lab.server_if()).entry("198.18.2.0/24", "B, at last");
    let pid = fx.daemon.pid();
    let reloads_before = fx
        .audit()
        .iter()
        .filter(|r| r["action"] == "reload")
        .count();
    let answered_so_far = AtomicUsize::new(0);
    let slowest = std::thread::scope(|s| {
        let burst = s.spawn(|| {
            for i in 0..1000 {
                if i == 500 {
                    final_config.write(&fx.path);
                }
                // Each quarter after the first waits for a status answered during the burst
                // (at once on the host; a slower machine's statuses may outlast the pacing).
                let due = Instant::now() + patient(RELOAD_TIMEOUT);
                while answered_so_far.load(Ordering::Relaxed) < i / 250 && Instant::now() < due {
                    std::thread::sleep(Duration::from_millis(5));
                }
                kill(pid, Signal::SIGHUP).expect("sending SIGHUP");
                // Spread over about half a second, so that statuses run in the middle.
                if i % 10 == 0 {
                    std::thread::sleep(patient(Duration::from_millis(5)));
                }
            }
        });
        let (mut slowest, mut answered) = (Duration::ZERO, 0);
        while !burst.is_finished() {
            let t0 = Instant::now();
            fx.ctl(&["status"]).ok();
            slowest = slowest.max(t0.elapsed());
            answered += 1;
            answered_so_far.store(answered, Ordering::Relaxed);
        }
        burst.join().expect("the SIGHUP sender");
        assert!(
            answered >= 3,
            "only {answered} statuses ran during the burst"
        );
        slowest
    });
    assert!(
        slowest < patient(Duration::from_secs(2)),
        "status took {slowest:?} during the burst"
    );
    // Let the last reload finish, then the final config must be in force.
    let deadline = Instant::now() + patient(RELOAD_TIMEOUT);
    while !allowed(&fx, "198.18.2.2") {
        assert!(
            Instant::now() < deadline,
            "the final config was not applied; log:\n{}",
            fx.daemon.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_connects(fx.client(), B4, to(B4, PROTECTED), "the final config");
    assert_times_out(fx.client(), B6, to(B6, PROTECTED), "still unlisted");
    let reloads = fx
        .audit()
        .iter()
        .filter(|r| r["action"] == "reload")
        .count()
        - reloads_before;
    eprintln!("1000 SIGHUPs led to {reloads} reloads; status answered within {slowest:?}");
    assert!(
        (1..1000).contains(&reloads),
        "1000 SIGHUPs should be coalesced into fewer reloads, got {reloads}"
    );
    assert!(
        fx.daemon.log().contains("reload applied: +1 -0"),
        "the change was applied once"
    );
}

// ---------------------------------------------------------------------------------------
// The program replaced by the next daemon (upgrade)
// ---------------------------------------------------------------------------------------

/// The id of the program in the pinned XDP link of `iface`.
fn linked_program(fx: &Running) -> u32 {
    let links = fx.dir.pin_dir().join("links");
    let pin = std::fs::read_dir(&links)
        .unwrap()
        .next()
        .expect("a pinned link")
        .unwrap()
        .path();
    let link = aya::programs::links::PinnedLink::from_pin(&pin).expect("opening the pinned link");
    let fd = aya::programs::links::FdLink::from(link);
    let info = fd.info().expect("the link's info");
    info.program_id()
}

#[test]
fn upgrading_the_program_never_opens_a_window() {
    if !require_root("upgrading_the_program_never_opens_a_window") {
        return;
    }
    let mut fx = Running::start(|dir, iface| standard(dir, iface).render());
    let old_program = linked_program(&fx);
    while_probing(
        &fx.lab.client,
        "the upgrade (SIGUSR2, then the next daemon adopts)",
        || {
            fx.daemon.signal(Signal::SIGUSR2);
            let status = fx
                .daemon
                .wait_exit(RELOAD_TIMEOUT)
                .unwrap_or_else(|e| panic!("{e:#}"));
            assert_eq!(status.code(), Some(75), "the handover status");
            std::thread::sleep(Duration::from_millis(500));
            fx.daemon = Daemon::spawn(&fx.lab.server, &fx.path);
            fx.daemon
                .wait_for_log("adopted the pinned XDP link", READY_TIMEOUT)
                .unwrap_or_else(|e| panic!("{e:#}"));
            fx.daemon.wait_ready();
        },
    );
    let new_program = linked_program(&fx);
    assert_ne!(
        old_program, new_program,
        "the pinned link should run the new daemon's program"
    );
}
