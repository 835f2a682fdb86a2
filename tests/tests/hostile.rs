//! Hostile input refused and nothing lost, against the real `allowlistd`: crowds of idle
//! and slow clients on the control socket, config files that are symlinks, writable by
//! others or not UTF-8, a config directory that is full or read-only, and list and config
//! files far beyond any sane size. (Garbage, oversized and truncated frames and unauthorized
//! users are in `ctl.rs`; an unsafe or unwritable audit log in `emergency_audit.rs`.)
//!
//! Needs root and the built binaries (`cargo xtask test`, or `cargo xtask build` then
//! `ALLOWLIST_BIN_DIR=target/debug cargo test -p allowlist-tests --test hostile`).

use std::io::{Read as _, Write as _};
use std::os::unix::fs::PermissionsExt as _;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use allowlist_control::protocol;
use allowlist_tests::bpffs::TestDir;
use allowlist_tests::daemon::{
    Config, Daemon, READY_TIMEOUT, RELOAD_TIMEOUT, allowlistd, with_top_level, write_atomically,
};
use allowlist_tests::fixture::{Running, Start};
use allowlist_tests::netns::{A4, B4, Netns, PROTECTED, to};
use allowlist_tests::tcp::{assert_connects, assert_times_out};
use allowlist_tests::tmpfs::fill;
use allowlist_tests::{require_root, running_fixture};
use nix::sys::signal::Signal;
use serde_json::Value;

fn standard(dir: &TestDir, iface: &str) -> Config {
    Config::new(dir, iface).entry("198.18.1.0/24", "allowed client")
}

running_fixture!(Fx {});

impl Fx {
    fn start() -> Fx {
        Fx::launch(&Start::default())
    }

    /// The config file in `<dir>/NAME` on a tmpfs of `size`.
    fn start_in(name: &str, size: &str) -> Fx {
        let config = format!("{name}/allowlist.toml");
        Fx::launch(&Start {
            tmpfs: Some((name, size)),
            config: &config,
            ..Start::default()
        })
    }

    fn launch(start: &Start) -> Fx {
        Fx {
            run: Running::start_with(start, |dir, iface| standard(dir, iface).render()),
        }
    }

    fn list(&self) -> String {
        self.ctl(&["--json", "list"]).ok().stdout.clone()
    }

    fn file(&self) -> Vec<u8> {
        std::fs::read(&self.path).expect("reading the config file")
    }

    /// SIGHUP; returns the `reload failed` line (panics if the reload applied).
    fn reload_fails(&self) -> String {
        self.daemon.signal(Signal::SIGHUP);
        let (which, line) = self
            .daemon
            .wait_for_any(&["reload failed", "reload applied"], RELOAD_TIMEOUT)
            .unwrap_or_else(|e| panic!("{e:#}"));
        assert_eq!(which, 0, "the reload should fail: {line}");
        line
    }
}

/// The daemon's open file descriptors.
fn open_fds(daemon: &Daemon) -> usize {
    std::fs::read_dir(format!("/proc/{}/fd", daemon.pid()))
        .expect("the daemon's /proc/PID/fd")
        .count()
}

/// A field of /proc/PID/status in kB (VmRSS, VmHWM).
fn status_kb(pid: nix::unistd::Pid, field: &str) -> u64 {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("/proc/PID/status");
    text.lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches(" kB").parse().ok())
        .unwrap_or_else(|| panic!("no {field} in /proc/{pid}/status"))
}

/// The answer to a client that sent nothing or too little: an error frame or a bare close.
fn read_error_or_close(stream: &mut UnixStream) -> Option<Value> {
    match protocol::read_frame(stream, protocol::MAX_REPLY) {
        Ok(body) => Some(serde_json::from_slice(&body).expect("an answer is JSON")),
        Err(protocol::FrameError::Truncated) => None,
        Err(e) => panic!("neither an answer nor a close: {e}"),
    }
}

// ---------------------------------------------------------------------------------------
// The control socket
// ---------------------------------------------------------------------------------------

#[test]
fn hostile_500_idle_clients_and_a_one_byte_a_second_client_do_not_starve_others() {
    if !require_root("hostile_500_idle_clients_and_a_one_byte_a_second_client_do_not_starve_others")
    {
        return;
    }
    // Started with too low a soft limit for the crowd (systemd's default soft limit is 1024,
    // its hard one 524288): the daemon raises it to the hard limit.
    let fx = Fx::launch(&Start {
        nofile: Some((256, 4096)),
        ..Start::default()
    });
    let pid = fx.daemon.pid();
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).unwrap();
    let nofile: Vec<&str> = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .unwrap()
        .split_whitespace()
        .collect();
    assert_eq!(
        nofile[3..5],
        ["4096", "4096"],
        "the soft open-files limit is raised to the hard one: {limits}"
    );
    let fds_before = open_fds(&fx.daemon);
    let rss_before = status_kb(pid, "VmRSS");
    let t0 = Instant::now();
    let mut idle: Vec<UnixStream> = (0..500)
        .map(|_| UnixStream::connect(&fx.socket).expect("connecting an idle client"))
        .collect();
    // Announces a 1 MiB request, then sends it one byte a second.
    let mut slow = UnixStream::connect(&fx.socket).unwrap();
    slow.write_all(&(1u32 << 20).to_be_bytes()).unwrap();
    let slow_sender = {
        let mut slow = slow.try_clone().unwrap();
        std::thread::spawn(move || {
            for _ in 0..10 {
                if slow.write_all(b"{").is_err() {
                    return;
                }
                std::thread::sleep(Duration::from_secs(1));
            }
        })
    };
    std::thread::sleep(Duration::from_millis(300));
    let held = open_fds(&fx.daemon);
    assert!(
        held > fds_before + 400,
        "the daemon accepted the crowd: {fds_before} -> {held} fds"
    );
    // Legitimate clients, reading and changing, are served at once.
    for args in [
        &["status"][..],
        &["add", "198.18.3.0/24"],
        &["test", "198.18.3.1"],
    ] {
        let t = Instant::now();
        fx.ctl(args).ok();
        assert!(
            t.elapsed() < Duration::from_secs(2),
            "`{args:?}` took {:?} among 501 idle clients",
            t.elapsed()
        );
    }
    let rss = status_kb(pid, "VmRSS");
    assert!(
        rss < rss_before + 32 * 1024,
        "501 idle clients (one announcing 1 MiB) cost {} kB",
        rss - rss_before
    );
    // Every one of them is cut off at the 5 s read deadline, the slow one too.
    slow.set_read_timeout(Some(Duration::from_secs(8))).unwrap();
    if let Some(answer) = read_error_or_close(&mut slow) {
        assert!(
            answer["message"]
                .as_str()
                .is_some_and(|m| m.contains("no complete request within 5s")),
            "{answer}"
        );
    }
    let cut = t0.elapsed();
    assert!(
        cut < Duration::from_secs(7),
        "the slow client was cut off only after {cut:?}"
    );
    for stream in &mut idle {
        stream
            .set_read_timeout(Some(Duration::from_secs(3)))
            .unwrap();
        read_error_or_close(stream);
    }
    drop(idle);
    slow_sender.join().unwrap();
    let deadline = Instant::now() + Duration::from_secs(3);
    while open_fds(&fx.daemon) > fds_before + 2 {
        assert!(
            Instant::now() < deadline,
            "fds not released: {} then {}",
            fds_before,
            open_fds(&fx.daemon)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    fx.ctl(&["status"]).ok();
}

#[test]
fn hostile_a_crowd_beyond_1024_is_told_busy_and_the_daemon_recovers() {
    if !require_root("hostile_a_crowd_beyond_1024_is_told_busy_and_the_daemon_recovers") {
        return;
    }
    let fx = Fx::start();
    let fds_before = open_fds(&fx.daemon);
    let crowd: Vec<UnixStream> = (0..1100)
        .map(|_| UnixStream::connect(&fx.socket).expect("connecting an idle client"))
        .collect();
    let t0 = Instant::now();
    let out = fx.ctl(&["status"]);
    let took = t0.elapsed();
    // The crowd is accepted in order: the last 76 (and this one) are told at once.
    assert!(took < Duration::from_secs(2), "a busy answer took {took:?}");
    out.code(2)
        .stderr_has("allowlistd is busy: 1024 connections open");
    let held = open_fds(&fx.daemon);
    assert!(
        held <= fds_before + 1024 + 8,
        "{held} fds held with at most 1024 clients served"
    );
    drop(crowd);
    // Once the idle ones are gone (closed or cut at 5 s), it serves again.
    let deadline = Instant::now() + Duration::from_secs(8);
    loop {
        let out = fx.ctl(&["status"]);
        if out.code == 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "still refusing after the crowd left: {out}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

// ---------------------------------------------------------------------------------------
// Files
// ---------------------------------------------------------------------------------------

/// Starts a daemon on `path` and expects it to refuse, logging `needle`.
#[track_caller]
fn refused_at_start(ns: &Netns, path: &Path, needle: &str) {
    let mut daemon = Daemon::spawn(ns, path);
    let status = daemon
        .wait_exit(READY_TIMEOUT)
        .unwrap_or_else(|e| panic!("{e:#}"));
    let log = daemon.log();
    assert!(!status.success(), "it should refuse to start; log:\n{log}");
    assert!(
        log.contains(needle),
        "the log should say {needle:?}; log:\n{log}"
    );
    assert!(!log.contains("allowlistd ready"), "{log}");
    let check = Command::new(allowlistd())
        .args(["--check", "--config"])
        .arg(path)
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&check.stderr);
    assert!(
        !check.status.success() && said.contains(needle),
        "--check should refuse too: {said}"
    );
}

#[test]
fn hostile_config_that_is_a_symlink_or_writable_by_others_is_refused() {
    if !require_root("hostile_config_that_is_a_symlink_or_writable_by_others_is_refused") {
        return;
    }
    let fx = Fx::start();
    let before = fx.list();
    let chmod = |path: &Path, mode: u32| {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
    };
    // While running: each unsafe state fails the reload with the reason, nothing changes.
    standard(&fx.dir, fx.lab.server_if())
        .entry("198.18.2.0/24", "B")
        .write(&fx.path);
    chmod(&fx.path, 0o666);
    let line = fx.reload_fails();
    assert!(
        line.contains("is writable by others (mode 666)") && line.contains("chmod o-w"),
        "{line}"
    );
    chmod(&fx.path, 0o644);
    chmod(fx.dir.path(), 0o777);
    let line = fx.reload_fails();
    assert!(
        line.contains("which others may write to (mode 777)"),
        "{line}"
    );
    fx.ctl(&["reload"]).refused("which others may write to");
    chmod(fx.dir.path(), 0o700);
    let real = fx.dir.join("real.toml");
    std::fs::rename(&fx.path, &real).unwrap();
    std::os::unix::fs::symlink(&real, &fx.path).unwrap();
    // A symlink is followed only through root's files writable by root alone (a ConfigMap
    // volume); a target its group may write is refused.
    chmod(&real, 0o664);
    let line = fx.reload_fails();
    assert!(
        line.contains("is a symlink and ")
            && line.contains("writable by group or others (mode 664)")
            && line.contains("point at the file itself"),
        "{line}"
    );
    assert_eq!(fx.list(), before, "the refused reloads changed nothing");
    assert_times_out(
        fx.client(),
        B4,
        to(B4, PROTECTED),
        "the refused config lists B",
    );

    // At start: refused, and by --check.
    let ns = Netns::new();
    refused_at_start(&ns, &fx.path, "is a symlink");
    std::fs::remove_file(&fx.path).unwrap();
    std::fs::rename(&real, &fx.path).unwrap();
    chmod(&fx.path, 0o646);
    refused_at_start(&ns, &fx.path, "is writable by others (mode 646)");
    // List files get the same rule.
    chmod(&fx.path, 0o644);
    let list = fx.dir.join("more.list");
    std::fs::write(&list, "198.18.7.0/24\n").unwrap();
    chmod(&list, 0o666);
    let text = with_top_level(
        &standard(&fx.dir, fx.lab.server_if()).render(),
        "list_files = [\"more.list\"]\n",
    );
    write_atomically(&fx.path, &text);
    refused_at_start(&ns, &fx.path, "list file");
}

#[test]
fn hostile_non_utf8_config_and_list_file_are_refused_naming_the_file() {
    if !require_root("hostile_non_utf8_config_and_list_file_are_refused_naming_the_file") {
        return;
    }
    let fx = Fx::start();
    let before = fx.list();
    let mut text = standard(&fx.dir, fx.lab.server_if())
        .entry("198.18.2.0/24", "B")
        .render()
        .into_bytes();
    text.extend_from_slice(b"# caf\xe9 in Latin-1\n");
    std::fs::write(&fx.path, &text).unwrap();
    let line = fx.reload_fails();
    assert!(
        line.contains(&fx.path.display().to_string()) && line.contains("UTF-8"),
        "{line}"
    );
    refused_at_start(&Netns::new(), &fx.path, "UTF-8");

    let list = fx.dir.join("latin1.list");
    std::fs::write(&list, b"198.18.2.0/24 # caf\xe9\n").unwrap();
    let text = with_top_level(
        &standard(&fx.dir, fx.lab.server_if()).render(),
        "list_files = [\"latin1.list\"]\n",
    );
    write_atomically(&fx.path, &text);
    let line = fx.reload_fails();
    assert!(
        line.contains("latin1.list"),
        "the error names the list file: {line}"
    );
    assert_eq!(fx.list(), before);
    assert_times_out(
        fx.client(),
        B4,
        to(B4, PROTECTED),
        "the refused configs list B",
    );
}

#[test]
fn hostile_full_or_read_only_config_directory_refuses_changes_and_loses_nothing() {
    if !require_root("hostile_full_or_read_only_config_directory_refuses_changes_and_loses_nothing")
    {
        return;
    }
    let fx = Fx::start_in("etc", "64k");
    let before = (fx.file(), fx.list());
    let filler = fx.path.with_file_name("filler");
    fill(&filler);
    fx.ctl(&["add", "198.18.2.0/24"])
        .refused("No space left on device");
    fx.ctl(&["add", "198.18.2.0/24"]).refused("nothing changed");
    std::fs::remove_file(&filler).unwrap();
    let tmpfs = fx.tmpfs.as_ref().unwrap();
    tmpfs.set_read_only(true);
    fx.ctl(&["remove", "198.18.1.0/24", "--force"])
        .refused("Read-only file system");
    tmpfs.set_read_only(false);
    assert_eq!(
        (fx.file(), fx.list()),
        before,
        "the refused changes left file and list alone"
    );
    assert_times_out(
        fx.client(),
        B4,
        to(B4, PROTECTED),
        "198.18.2.0/24 was never added",
    );
    assert_connects(
        fx.client(),
        A4,
        to(A4, PROTECTED),
        "198.18.1.0/24 was never removed",
    );
    let failed = fx
        .audit()
        .into_iter()
        .filter(|r| r["result"]["status"] == "failed")
        .count();
    assert_eq!(failed, 3, "each failed change is audited as failed");
    // And the directory, writable again, takes the change.
    fx.ctl(&["add", "198.18.2.0/24"]).ok();
    assert_connects(
        fx.client(),
        B4,
        to(B4, PROTECTED),
        "added once the disk had room",
    );
}

// ---------------------------------------------------------------------------------------
// Files far beyond any sane size
// ---------------------------------------------------------------------------------------

/// What `allowlistd --check --config PATH` said, how long it took and its peak memory.
struct Checked {
    ok: bool,
    stderr: String,
    took: Duration,
    max_rss_kb: i64,
}

/// Runs `allowlistd --check` on `path`, measuring the child alone (wait4's rusage).
#[expect(
    clippy::zombie_processes,
    reason = "reaped by wait4, which also gives the child's own rusage"
)]
fn check_measured(path: &Path) -> Checked {
    let t0 = Instant::now();
    let mut child = Command::new(allowlistd())
        .args(["--check", "--config"])
        .arg(path)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting allowlistd --check");
    let mut stderr = child.stderr.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stderr.read_to_string(&mut s);
        s
    });
    let pid = i32::try_from(child.id()).unwrap();
    let mut status = 0;
    // SAFETY: an all-zero rusage is valid; wait4 fills it for our own child, reaping it.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let deadline = t0 + Duration::from_secs(60);
    loop {
        // SAFETY: valid pointers to locals; WNOHANG so the deadline can be checked.
        let reaped = unsafe { libc::wait4(pid, &mut status, libc::WNOHANG, &mut usage) };
        if reaped == pid {
            break;
        }
        assert!(reaped == 0, "wait4: {}", std::io::Error::last_os_error());
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!(
                "allowlistd --check on {} still runs after 60 s",
                path.display()
            );
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    Checked {
        ok: libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        stderr: reader.join().unwrap(),
        took: t0.elapsed(),
        max_rss_kb: usage.ru_maxrss,
    }
}

/// Refused by `--check` within `within`, under 64 MiB of memory, saying every one of `needles`.
#[track_caller]
fn refused_quickly(path: &Path, within: Duration, needles: &[&str]) {
    let checked = check_measured(path);
    eprintln!(
        "{}: refused in {:?} with {} MiB at most",
        path.display(),
        checked.took,
        checked.max_rss_kb / 1024
    );
    assert!(!checked.ok, "--check should refuse {}", path.display());
    for needle in needles {
        assert!(
            checked.stderr.contains(needle),
            "the refusal should say {needle:?}: {}",
            checked.stderr
        );
    }
    assert!(
        checked.took < within,
        "refused only after {:?}",
        checked.took
    );
    assert!(
        checked.max_rss_kb < 64 * 1024,
        "peak memory {} kB",
        checked.max_rss_kb
    );
}

#[test]
fn hostile_huge_list_and_config_files_are_refused_quickly_in_bounded_memory() {
    if !require_root("hostile_huge_list_and_config_files_are_refused_quickly_in_bounded_memory") {
        return;
    }
    let fx = Fx::start();
    let before = fx.list();
    let base = standard(&fx.dir, fx.lab.server_if()).render();
    let with_list = |name: &str| with_top_level(&base, &format!("list_files = [\"{name}\"]\n"));

    // Ten million addresses (198.19.0.0/16, over and over) against max_entries = 1024.
    let huge = fx.dir.join("huge.list");
    let mut w = std::io::BufWriter::new(std::fs::File::create(&huge).unwrap());
    for i in 0..10_000_000u32 {
        let ip = std::net::Ipv4Addr::from(
            u32::from(std::net::Ipv4Addr::new(198, 19, 0, 0)) + i % 65_536,
        );
        writeln!(w, "{ip}").unwrap();
    }
    w.flush().unwrap();
    drop(w);
    let config = fx.dir.join("huge-list.toml");
    write_atomically(&config, &with_list("huge.list"));
    // The config's own entry is the first IPv4 one, so the list's 1024th is one too many.
    let at = format!("{}:1024:", huge.display());
    refused_quickly(
        &config,
        Duration::from_secs(5),
        &[&at, "more than max_entries = 1024", "Raise max_entries"],
    );
    write_atomically(&fx.path, &with_list("huge.list"));
    let line = fx.reload_fails();
    assert!(line.contains(&at), "the reload names file and line: {line}");

    // One line of 100 MB.
    let long = fx.dir.join("long.list");
    let mut w = std::io::BufWriter::new(std::fs::File::create(&long).unwrap());
    let chunk = vec![b'1'; 1 << 20];
    for _ in 0..100 {
        w.write_all(&chunk).unwrap();
    }
    w.write_all(b"\n198.18.2.0/24\n").unwrap();
    w.flush().unwrap();
    drop(w);
    write_atomically(&config, &with_list("long.list"));
    let at = format!("{}:1:", long.display());
    refused_quickly(
        &config,
        Duration::from_secs(5),
        &[&at, "line longer than 4096 bytes"],
    );
    write_atomically(&fx.path, &with_list("long.list"));
    let line = fx.reload_fails();
    assert!(line.contains(&at), "{line}");

    // A 17 MiB config file (one long comment: valid TOML, refused for its size alone).
    let mut text = base.clone();
    text.push_str("# ");
    text.push_str(&"x".repeat(17 << 20));
    text.push_str("\n[[entries]]\ncidr = \"198.18.2.0/24\"\n");
    std::fs::write(&config, &text).unwrap();
    let size = text.len().to_string();
    refused_quickly(
        &config,
        Duration::from_secs(5),
        &[&size, "more than the 16 MiB", "list_files"],
    );
    std::fs::write(&fx.path, &text).unwrap();
    let line = fx.reload_fails();
    assert!(line.contains(&size) && line.contains("16 MiB"), "{line}");

    assert_eq!(fx.list(), before, "the refused files changed nothing");
    assert_times_out(
        fx.client(),
        B4,
        to(B4, PROTECTED),
        "none of the refused files took effect",
    );
    for path in [&huge, &long] {
        std::fs::remove_file(path).unwrap();
    }
}
