//! End-to-end: the real `allowlistd` in a network namespace, filtering what a client in
//! another namespace sees. Each test builds its own lab (namespaces, veth, private bpffs),
//! which is removed when the test ends, even on failure.
//!
//! Needs root and the built binaries (`cargo xtask test`, or `cargo xtask build` then
//! `ALLOWLIST_BIN_DIR=target/debug cargo test -p allowlist-tests --test e2e`).

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use allowlist_tests::bpffs::TestDir;
use allowlist_tests::daemon::{self, Config, Daemon, READY_TIMEOUT, RELOAD_TIMEOUT};
use allowlist_tests::fixture::{Running, Start};
use allowlist_tests::netns::{
    A4, A6, ALLOWED_V4, ALLOWED_V6, B4, B6, BLOCKED_V4, BLOCKED_V6, Lab, Netns, PROTECTED,
    SERVER_V4, SERVER_V6, UNPROTECTED, next_id, to,
};
use allowlist_tests::pace::patient;
use allowlist_tests::tcp::{self, assert_connects, assert_times_out};
use allowlist_tests::{require_root, running_fixture};
use nix::sys::signal::Signal;

/// The entries that allow the lab's "allowed" clients.
fn allow_allowed_clients(config: Config) -> Config {
    config
        .entry("198.18.1.0/24", "allowed client, IPv4")
        .entry("2001:db8::a/128", "allowed client, IPv6")
}

running_fixture!(
    /// A running daemon and the config it runs on.
    Fixture { config: Config }
);

impl Fixture {
    /// Starts a daemon on a config that `configure` shapes (from the defaults: active,
    /// port 2222 protected, no entries) and waits until it is ready.
    fn start(configure: impl FnOnce(Config) -> Config) -> Fixture {
        let mut config = None;
        let run = Running::start(|dir, iface| {
            let shaped = configure(Config::new(dir, iface));
            let text = shaped.render();
            config = Some(shaped);
            text
        });
        Fixture {
            run,
            config: config.expect("Running::start writes the config"),
        }
    }

    /// Writes `config`, sends SIGHUP and returns the `reload applied` line (panics on
    /// `reload failed`, with the log).
    fn reload(&mut self, config: Config) -> String {
        config.write(&self.path);
        self.config = config;
        self.daemon.signal(Signal::SIGHUP);
        let (which, line) = self
            .daemon
            .wait_for_any(&["reload applied", "reload failed"], RELOAD_TIMEOUT)
            .unwrap_or_else(|e| panic!("{e:#}"));
        assert_eq!(which, 0, "reload should apply, got: {line}");
        line
    }

    /// Sends `signal` and expects a clean exit (status 0).
    fn stop(&mut self, signal: Signal) {
        self.daemon.signal(signal);
        let status = self
            .daemon
            .wait_exit(RELOAD_TIMEOUT)
            .unwrap_or_else(|e| panic!("{e:#}"));
        assert!(
            status.success(),
            "{} should exit 0 on {signal}, got {status}; log:\n{}",
            self.daemon.tag(),
            self.daemon.log()
        );
    }

    #[track_caller]
    fn assert_bpffs_empty(&self, why: &str) {
        let left = self.dir.bpffs_entries();
        assert!(
            left.is_empty(),
            "{why}: {} still holds {left:?}; log:\n{}",
            self.dir.bpffs().display(),
            self.daemon.log()
        );
    }
}

#[test]
fn filters_v4_and_v6_by_source_and_port_and_spares_icmp_and_established() {
    if !require_root("filters_v4_and_v6_by_source_and_port_and_spares_icmp_and_established") {
        return;
    }
    let mut fx = Fixture::start(allow_allowed_clients);
    let client = fx.client();

    for src in [A4, A6] {
        assert_connects(client, src, to(src, PROTECTED), "listed source");
    }
    for src in [B4, B6] {
        assert_times_out(client, src, to(src, PROTECTED), "unlisted source");
        assert_connects(client, src, to(src, UNPROTECTED), "unprotected port");
        let dst = Lab::server_addr_for(src);
        let answered = tcp::ping(client, src, dst, patient(Duration::from_secs(1)))
            .unwrap_or_else(|e| panic!("ping {src} -> {dst}: {e}"));
        assert!(answered, "ICMP echo {src} -> {dst} must pass the filter");
    }

    // Connections made while allowed survive a reload that removes their entries.
    let mut established: Vec<_> = [A4, A6]
        .into_iter()
        .map(|src| {
            let mut stream = tcp::open(client, src, to(src, PROTECTED), tcp::allowed_probe())
                .unwrap_or_else(|e| panic!("{src} -> {PROTECTED}: {e}"));
            tcp::exchange(&mut stream, b"before reload").expect("echo before the reload");
            (src, stream)
        })
        .collect();
    let mut without = fx.config.clone();
    without.entries = vec![("198.18.3.0/24".into(), "nobody in the lab".into())];
    fx.reload(without);
    let client = fx.client();
    for (src, stream) in &mut established {
        tcp::exchange(stream, b"after reload").unwrap_or_else(|e| {
            panic!("established connection from {src} broke after the reload: {e}")
        });
    }
    for src in [A4, A6] {
        assert_times_out(
            client,
            src,
            to(src, PROTECTED),
            "entry removed by the reload",
        );
    }
}

#[test]
fn sighup_adds_and_removes_entries() {
    if !require_root("sighup_adds_and_removes_entries") {
        return;
    }
    let mut fx = Fixture::start(|c| c.entry("198.18.1.0/24", "allowed client"));
    assert_connects(fx.client(), A4, to(A4, PROTECTED), "listed");
    assert_times_out(fx.client(), B4, to(B4, PROTECTED), "not listed yet");

    let mut swapped = fx.config.clone();
    swapped.entries = vec![("198.18.2.0/24".into(), "was blocked".into())];
    let line = fx.reload(swapped);
    assert!(
        line.contains("+1") && line.contains("-1"),
        "the reload summary should count one added and one removed entry: {line}"
    );
    assert_connects(fx.client(), B4, to(B4, PROTECTED), "added by SIGHUP");
    assert_times_out(fx.client(), A4, to(A4, PROTECTED), "removed by SIGHUP");
}

#[test]
fn invalid_config_on_sighup_keeps_the_old_rules() {
    if !require_root("invalid_config_on_sighup_keeps_the_old_rules") {
        return;
    }
    let mut fx = Fixture::start(|c| c.entry("198.18.1.0/24", "allowed client"));

    let bad = fx
        .config
        .clone()
        .entry("198.18.2.5/24", "host bits set: invalid");
    bad.write(&fx.path);
    fx.daemon.signal(Signal::SIGHUP);
    let (which, line) = fx
        .daemon
        .wait_for_any(&["reload failed", "reload applied"], RELOAD_TIMEOUT)
        .unwrap_or_else(|e| panic!("{e:#}"));
    assert_eq!(which, 0, "an invalid file must not be applied: {line}");
    let log = fx.daemon.log();
    assert!(
        log.contains("198.18.2.5/24"),
        "the failure should name the bad entry; log:\n{log}"
    );
    assert!(
        fx.daemon.try_status().is_none(),
        "the daemon must keep running after a failed reload; log:\n{log}"
    );
    assert_connects(fx.client(), A4, to(A4, PROTECTED), "old rules kept");
    assert_times_out(fx.client(), B4, to(B4, PROTECTED), "old rules kept");

    let fixed = fx
        .config
        .clone()
        .entry("198.18.2.0/24", "fixed: the blocked client's network");
    fx.reload(fixed);
    assert_connects(fx.client(), B4, to(B4, PROTECTED), "fixed file applied");
}

#[test]
fn sigkill_keeps_enforcing_and_a_restart_adopts_the_pins() {
    if !require_root("sigkill_keeps_enforcing_and_a_restart_adopts_the_pins") {
        return;
    }
    let mut fx = Fixture::start(allow_allowed_clients);
    fx.daemon.kill9();
    assert_times_out(fx.client(), B4, to(B4, PROTECTED), "pinned after SIGKILL");
    assert_connects(fx.client(), A4, to(A4, PROTECTED), "pinned after SIGKILL");

    // While the new daemon starts, no SYN from the blocked client may get through: a prober
    // keeps trying from before the spawn until the daemon is ready.
    let stop = AtomicBool::new(false);
    // Fields of `fx.run`, borrowed apart: the prober reads the lab while the daemon is replaced.
    let run = &mut fx.run;
    let client = &run.lab.client;
    let outcomes = std::thread::scope(|s| {
        let prober = s.spawn(|| {
            let mut outcomes = Vec::new();
            while !stop.load(Ordering::Relaxed) && outcomes.len() < 500 {
                let src = if outcomes.len() % 2 == 0 { B4 } else { B6 };
                let probe = Duration::from_millis(200);
                outcomes.push((src, tcp::connect(client, src, to(src, PROTECTED), probe)));
            }
            outcomes
        });
        std::thread::sleep(Duration::from_millis(50));
        run.daemon = Daemon::spawn(&run.lab.server, &run.path);
        let ready = run.daemon.wait_for_log("allowlistd ready", READY_TIMEOUT);
        // A few more probes once it is ready.
        std::thread::sleep(Duration::from_millis(500));
        stop.store(true, Ordering::Relaxed);
        let outcomes = prober.join().expect("the prober thread");
        ready.unwrap_or_else(|e| panic!("restarted daemon: {e:#}"));
        outcomes
    });
    let through: Vec<_> = outcomes.iter().filter(|(_, o)| !o.is_timed_out()).collect();
    assert!(
        through.is_empty() && !outcomes.is_empty(),
        "{} probes during the restart, not dropped: {through:?}; log:\n{}",
        outcomes.len(),
        fx.daemon.log()
    );
    eprintln!(
        "{} probes from the blocked clients during the restart, all dropped",
        outcomes.len()
    );
    for src in [B4, B6] {
        assert_times_out(fx.client(), src, to(src, PROTECTED), "after adoption");
    }
    for src in [A4, A6] {
        assert_connects(fx.client(), src, to(src, PROTECTED), "after adoption");
    }

    fx.stop(Signal::SIGTERM);
    fx.assert_bpffs_empty("after SIGTERM");
    assert_connects(fx.client(), B4, to(B4, PROTECTED), "filter detached");
}

/// VLAN devices are usually named `<parent>.<vid>`; bpffs refuses a dot in a pin's name, which
/// once made the daemon fail to attach to such a device at all.
#[test]
fn an_interface_named_like_a_vlan_device_is_pinned_and_adopted_after_a_crash() {
    if !require_root("an_interface_named_like_a_vlan_device_is_pinned_and_adopted_after_a_crash") {
        return;
    }
    let mut run = Running::start_in(
        Lab::with_server_suffix(".100"),
        &Start::default(),
        |dir, iface| allow_allowed_clients(Config::new(dir, iface)).render(),
    );
    let iface = run.lab.server_if().to_owned();
    assert!(iface.ends_with(".100"), "{iface}");
    run.ctl(&["status"])
        .ok()
        .stdout_has(&format!("interface:  {iface} (XDP driver)"));
    assert_times_out(
        run.client(),
        B4,
        to(B4, PROTECTED),
        &format!("unlisted, on {iface}"),
    );
    assert_connects(
        run.client(),
        A4,
        to(A4, PROTECTED),
        &format!("listed, on {iface}"),
    );

    run.daemon.kill9();
    assert_times_out(run.client(), B6, to(B6, PROTECTED), "pinned after SIGKILL");
    run.restart();
    let log = run.daemon.log();
    assert!(
        log.contains("adopted the pinned XDP link") && log.contains(&iface),
        "the new daemon adopts the link pinned for {iface}; log:\n{log}"
    );
    assert_times_out(run.client(), B4, to(B4, PROTECTED), "after adoption");
    assert_connects(run.client(), A6, to(A6, PROTECTED), "after adoption");
}

/// SIGUSR2 is the handover for restarts and upgrades: the daemon exits with status 75 and
/// leaves the filter enforcing, and the next daemon adopts it, so there is no gap.
#[test]
fn sigusr2_hands_over_without_a_gap() {
    if !require_root("sigusr2_hands_over_without_a_gap") {
        return;
    }
    let mut fx = Fixture::start(allow_allowed_clients);
    // Pins where the previous release kept the IPv4 prefilter levels, as an upgrade from it
    // leaves them: the daemon that takes over must not keep them.
    let maps = fx.dir.pin_dir().join("maps");
    let previous = ["SUMMARY_V4", "BLOCKS_V4", "TOUCHED_V4", "PREFILTER_V4"];
    for (old, new) in previous.iter().zip([
        "PER16_BITS_V4",
        "PER22_BITS_V4",
        "PER24_BITS_V4",
        "PER24_STATES_V4",
    ]) {
        aya::maps::MapData::from_pin(maps.join(new))
            .unwrap_or_else(|e| panic!("the running daemon's pin {new}: {e}"))
            .pin(maps.join(old))
            .unwrap_or_else(|e| panic!("pinning {old} as the previous release did: {e}"));
    }
    fx.daemon.signal(Signal::SIGUSR2);
    let status = fx
        .daemon
        .wait_exit(RELOAD_TIMEOUT)
        .unwrap_or_else(|e| panic!("{e:#}"));
    assert_eq!(
        status.code(),
        Some(75),
        "SIGUSR2 should exit with the handover status 75; log:\n{}",
        fx.daemon.log()
    );
    assert!(
        !fx.dir.bpffs_entries().is_empty(),
        "a handover keeps the pins"
    );
    assert_times_out(
        fx.client(),
        B4,
        to(B4, PROTECTED),
        "between the two daemons",
    );
    assert_connects(
        fx.client(),
        A4,
        to(A4, PROTECTED),
        "between the two daemons",
    );
    fx.daemon = Daemon::spawn(&fx.lab.server, &fx.path);
    let adopted = fx
        .daemon
        .wait_for_log("adopted the pinned XDP link", READY_TIMEOUT)
        .unwrap_or_else(|e| panic!("the next daemon: {e:#}"));
    eprintln!("{adopted}");
    fx.daemon
        .wait_for_log("allowlistd ready", READY_TIMEOUT)
        .unwrap_or_else(|e| panic!("the next daemon: {e:#}"));
    assert_times_out(fx.client(), B6, to(B6, PROTECTED), "after the handover");
    assert_connects(fx.client(), A6, to(A6, PROTECTED), "after the handover");
    for old in previous {
        assert!(
            !maps.join(old).exists(),
            "the previous release's pin {old} is still there after the handover"
        );
    }
    assert!(
        maps.join("PER16_BITS_V4").exists(),
        "the new daemon pins its own maps"
    );
    fx.stop(Signal::SIGTERM);
    fx.assert_bpffs_empty("after SIGTERM");
}

#[test]
fn sigterm_detaches_and_removes_the_pins() {
    if !require_root("sigterm_detaches_and_removes_the_pins") {
        return;
    }
    let mut fx = Fixture::start(allow_allowed_clients);
    assert_times_out(fx.client(), B4, to(B4, PROTECTED), "while running");
    fx.stop(Signal::SIGTERM);
    fx.assert_bpffs_empty("after SIGTERM");
    for src in [B4, B6] {
        assert_connects(fx.client(), src, to(src, PROTECTED), "filter detached");
    }
}

#[test]
fn detach_on_exit_false_keeps_enforcing_after_sigterm() {
    if !require_root("detach_on_exit_false_keeps_enforcing_after_sigterm") {
        return;
    }
    let mut fx = Fixture::start(|c| {
        let mut c = allow_allowed_clients(c);
        c.detach_on_exit = Some(false);
        c
    });
    fx.stop(Signal::SIGTERM);
    let left = fx.dir.bpffs_entries();
    assert!(
        !left.is_empty(),
        "with detach_on_exit = false the pins must stay; log:\n{}",
        fx.daemon.log()
    );
    for src in [B4, B6] {
        assert_times_out(fx.client(), src, to(src, PROTECTED), "left attached");
    }
    assert_connects(fx.client(), A4, to(A4, PROTECTED), "left attached");
    // Dropping the fixture unmounts the bpffs (releasing the pins) and deletes the lab.
}

/// `--check` accepts a good file, rejects bad ones naming file and line, and never pins.
#[test]
fn check_validates_without_touching_the_kernel() {
    if !require_root("check_validates_without_touching_the_kernel") {
        return;
    }
    let dir = TestDir::new();
    // `lo` exists wherever `--check` runs, should it look the interfaces up.
    let good = allow_allowed_clients(Config::new(&dir, "lo"));
    let good_path = dir.join("good.toml");
    good.write(&good_path);
    let out = daemon::check(&good_path);
    assert!(
        out.status.success(),
        "--check rejected a valid file ({}): {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr),
        good.render()
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        format!(
            "{}: ok: 2 entries (1 IPv4, 1 IPv6); ports {PROTECTED}; interfaces lo; active\n",
            good_path.display()
        )
    );
    let one = Config::new(&dir, "lo").entry("198.18.1.0/24", "one");
    let one_path = dir.join("one.toml");
    one.write(&one_path);
    let out = daemon::check(&one_path);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains(": ok: 1 entry (1 IPv4, 0 IPv6); "),
        "{out:?}"
    );

    let host_bits = good.clone().entry("198.18.2.5/24", "host bits set");
    let long_prefix = good.clone().entry("2001:db8::/129", "prefix too long");
    let mut bad_mode = good.clone();
    bad_mode.xdp_mode = Some("turbo".into());
    let bad_value = good.render().replace("active = true", "active = maybe");
    let cases = [
        ("host-bits", host_bits.render(), "198.18.2.5/24"),
        ("long-prefix", long_prefix.render(), "2001:db8::/129"),
        ("bad-mode", bad_mode.render(), "turbo"),
        ("bad-value", bad_value, "maybe"),
    ];
    for (name, text, needle) in cases {
        let path = dir.join(&format!("{name}.toml"));
        daemon::write_atomically(&path, &text);
        let line = 1 + text
            .lines()
            .position(|l| l.contains(needle))
            .expect("the case's text has its bad line");
        let out = daemon::check(&path);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(
            out.status.code(),
            Some(1),
            "--check on {name} should exit 1; stderr:\n{stderr}"
        );
        let file = path.display().to_string();
        assert!(
            stderr.contains(&file)
                && (stderr.contains(&format!(":{line}"))
                    || stderr.contains(&format!("line {line}"))),
            "--check on {name} should name {file} and line {line}; stderr:\n{stderr}"
        );
    }
    let left = dir.bpffs_entries();
    assert!(left.is_empty(), "--check left {left:?} in the bpffs");
}

/// A config with a host-bits entry and a missing interface: every place that checks a
/// config (`--check`, start, SIGHUP, `allowlistctl reload`) names both problems at once.
#[test]
fn every_problem_is_reported_at_once() {
    if !require_root("every_problem_is_reported_at_once") {
        return;
    }
    let missing = format!("alnone{}", next_id());
    let problems = [
        "entry 2 `198.18.2.5/24`: host bits set; did you mean 198.18.2.0/24?",
        &format!("key `interfaces`: entry 1 `{missing}`: no such network interface"),
    ];
    #[track_caller]
    fn names_both(what: &str, said: &str, problems: &[&str]) {
        for problem in problems {
            assert!(
                said.contains(problem),
                "{what} should say {problem:?}:\n{said}"
            );
        }
    }
    let bad = |config: &Config| {
        let mut bad = config.clone().entry("198.18.2.5/24", "host bits set");
        bad.interfaces = vec![missing.clone()];
        bad
    };

    let mut fx = Fixture::start(|c| c.entry("198.18.1.0/24", "allowed client"));
    let bad = bad(&fx.config);
    bad.write(&fx.path);
    let out = daemon::check(&fx.path);
    assert_eq!(out.status.code(), Some(1));
    names_both("--check", &String::from_utf8_lossy(&out.stderr), &problems);

    let refusal = fx.ctl(&["reload"]);
    refusal.refused("host bits set");
    names_both("allowlistctl reload", &refusal.stderr, &problems);
    fx.daemon.signal(Signal::SIGHUP);
    fx.daemon
        .wait_for_log("reload failed", RELOAD_TIMEOUT)
        .unwrap_or_else(|e| panic!("{e:#}"));
    names_both("the reload failure", &fx.daemon.log(), &problems);
    assert_connects(fx.client(), A4, to(A4, PROTECTED), "old rules kept");

    fx.stop(Signal::SIGTERM);
    let mut daemon = Daemon::spawn(&fx.lab.server, &fx.path);
    let status = daemon
        .wait_exit(READY_TIMEOUT)
        .unwrap_or_else(|e| panic!("{e:#}"));
    assert!(!status.success(), "log:\n{}", daemon.log());
    names_both("the refused start", &daemon.log(), &problems);
}

/// List-file lines repeating an entry or inside another are merged, and `--check` counts
/// them at the end of its one line. Hand-written entries stay strict: inside a list-file line
/// they are refused with the total and the way to see every problem; `--check
/// --all-problems` shows each one, file and line.
#[test]
fn check_counts_merged_lines_and_overlaps_and_can_list_every_problem() {
    if !require_root("check_counts_merged_lines_and_overlaps_and_can_list_every_problem") {
        return;
    }
    let dir = TestDir::new();
    let path = dir.join("allowlist.toml");
    let list_path = dir.join("partners.list");
    let overlapping = 120;
    let with_list = |config: Config| {
        let text = daemon::with_top_level(&config.render(), "list_files = [\"partners.list\"]\n");
        daemon::write_atomically(&path, &text);
    };

    // The inline /24 covers 120 lines, and the list repeats its own /24: all merged.
    with_list(Config::new(&dir, "lo").entry("198.18.1.0/24", "lab"));
    let inside: String = (1..=overlapping)
        .map(|i| format!("198.18.1.{i}\n"))
        .collect();
    daemon::write_atomically(
        &list_path,
        &format!("198.18.9.0/24\n{inside}198.18.9.0/24 # again\n"),
    );
    let out = daemon::check(&path);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        format!(
            "{}: ok: 2 entries (2 IPv4, 0 IPv6); ports {PROTECTED}; interfaces lo; active; \
             merged 121 duplicate or covered list-file lines (partners.list: 121)\n",
            path.display()
        )
    );

    // 120 hand-written addresses inside one list-file line.
    let mut config = Config::new(&dir, "lo");
    for i in 1..=overlapping {
        config = config.entry(&format!("198.18.1.{i}"), "hand-written");
    }
    with_list(config);
    daemon::write_atomically(&list_path, "198.18.1.0/24 # partner\n");
    let out = daemon::check(&path);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    let shown = allowlist_config::MAX_PROBLEMS;
    assert!(
        stderr.trim_end().ends_with(&format!(
            "... and {} more problems ({overlapping} in all, {overlapping} of them entries \
             repeating or inside another entry); `allowlistd --check --all-problems --config \
             FILE` lists every one",
            overlapping - shown
        )),
        "{stderr}"
    );

    let out = std::process::Command::new(daemon::allowlistd())
        .args(["--check", "--all-problems", "--config"])
        .arg(&path)
        .output()
        .expect("running allowlistd --check --all-problems");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), overlapping, "{stderr}");
    for (i, line) in (1..).zip(&lines) {
        let expected = format!(
            ": key `entries`: entry {i} `198.18.1.{i}/32`: already covered by `198.18.1.0/24` \
             of list file {}:1; remove this entry",
            list_path.display()
        );
        assert!(
            line.starts_with(&format!("{}:", path.display())) && line.contains(&expected),
            "{line}\nshould name {} and say {expected}",
            path.display()
        );
    }
}

#[test]
fn two_daemons_side_by_side_each_enforce_their_own_list() {
    if !require_root("two_daemons_side_by_side_each_enforce_their_own_list") {
        return;
    }
    let mut first = Fixture::start(allow_allowed_clients);
    let mut second = Fixture::start(|c| {
        c.entry("198.18.2.0/24", "the other lab's blocked client")
            .entry("2001:db8::b/128", "the other lab's blocked client")
    });
    assert_ne!(first.lab.server_if(), second.lab.server_if());

    for src in [A4, A6] {
        assert_connects(first.client(), src, to(src, PROTECTED), "first list");
        assert_times_out(second.client(), src, to(src, PROTECTED), "second list");
    }
    for src in [B4, B6] {
        assert_times_out(first.client(), src, to(src, PROTECTED), "first list");
        assert_connects(second.client(), src, to(src, PROTECTED), "second list");
    }

    first.stop(Signal::SIGTERM);
    first.assert_bpffs_empty("first daemon after SIGTERM");
    assert_connects(first.client(), B4, to(B4, PROTECTED), "first detached");
    assert_times_out(
        second.client(),
        A4,
        to(A4, PROTECTED),
        "the second daemon must not notice the first one leaving",
    );
    second.stop(Signal::SIGINT);
    second.assert_bpffs_empty("second daemon after SIGINT");
}

#[test]
fn inactive_config_does_not_filter() {
    if !require_root("inactive_config_does_not_filter") {
        return;
    }
    let mut fx = Fixture::start(|c| {
        let mut c = allow_allowed_clients(c);
        c.active = false;
        c
    });
    for src in [B4, B6, A4] {
        assert_connects(fx.client(), src, to(src, PROTECTED), "active = false");
    }
    // The same daemon enforces once the file says so: it was loaded, only inactive.
    let mut active = fx.config.clone();
    active.active = true;
    fx.reload(active);
    assert_times_out(fx.client(), B4, to(B4, PROTECTED), "active = true again");
    assert_connects(fx.client(), A4, to(A4, PROTECTED), "active = true again");
}

#[test]
fn missing_interface_at_start_exits_nonzero_naming_it() {
    if !require_root("missing_interface_at_start_exits_nonzero_naming_it") {
        return;
    }
    let ns = Netns::new();
    let dir = TestDir::new();
    let missing = format!("alnone{}", next_id());
    let config = allow_allowed_clients(Config::new(&dir, &missing));
    let path = dir.join("allowlist.toml");
    config.write(&path);
    let mut daemon = Daemon::spawn(&ns, &path);
    let status = daemon
        .wait_exit(READY_TIMEOUT)
        .unwrap_or_else(|e| panic!("{e:#}"));
    let log = daemon.log();
    assert!(
        !status.success(),
        "a daemon without its interface should fail, got {status}; log:\n{log}"
    );
    assert!(
        log.contains(&missing),
        "the error should name {missing}; log:\n{log}"
    );
    assert!(
        !log.contains("allowlistd ready"),
        "it must not claim to be ready; log:\n{log}"
    );
}

#[test]
fn lab_addresses_are_in_the_test_ranges() {
    // Guards the harness itself: the tests must never address anything outside
    // 198.18.0.0/15 and 2001:db8::/32.
    let v4: ipnet::Ipv4Net = "198.18.0.0/15".parse().unwrap();
    let v6: ipnet::Ipv6Net = "2001:db8::/32".parse().unwrap();
    for a in [SERVER_V4, ALLOWED_V4, BLOCKED_V4] {
        assert!(v4.contains(&a), "{a}");
    }
    for a in [SERVER_V6, ALLOWED_V6, BLOCKED_V6] {
        assert!(v6.contains(&a), "{a}");
    }
}
