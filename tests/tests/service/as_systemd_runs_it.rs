//! The real daemon, run as systemd runs it.

use super::*;

/// The notification socket systemd would listen on, and every message received on it.
struct NotifySocket {
    socket: UnixDatagram,
    path: PathBuf,
    received: Vec<String>,
}

impl NotifySocket {
    fn bind(path: PathBuf) -> Self {
        let socket =
            UnixDatagram::bind(&path).unwrap_or_else(|e| panic!("binding {}: {e}", path.display()));
        socket
            .set_read_timeout(Some(Duration::from_millis(100)))
            .expect("setting a read timeout");
        NotifySocket {
            socket,
            path,
            received: Vec::new(),
        }
    }

    fn next(&mut self) -> Option<String> {
        let mut buf = [0u8; 4096];
        match self.socket.recv(&mut buf) {
            Ok(n) => {
                let message = String::from_utf8_lossy(&buf[..n]).into_owned();
                self.received.push(message.clone());
                Some(message)
            }
            // A signal to the test process (a child's SIGCHLD) interrupts the wait: callers
            // ask again until their deadline, as after a timeout.
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock
                        | std::io::ErrorKind::TimedOut
                        | std::io::ErrorKind::Interrupted
                ) =>
            {
                None
            }
            Err(e) => panic!("receiving on {}: {e}", self.path.display()),
        }
    }

    /// The next message with a line `line` (e.g. `READY=1`); others are kept in `received`.
    #[track_caller]
    fn wait_for(&mut self, line: &str, timeout: Duration, service: &Daemon) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(message) = self.next()
                && message.lines().any(|l| l == line)
            {
                return message;
            }
            assert!(
                Instant::now() < deadline,
                "no {line} within {timeout:?}; received {:?}; log:\n{}",
                self.received,
                service.log()
            );
        }
    }

    /// How many messages with `line` arrive within `period`.
    fn count(&mut self, line: &str, period: Duration) -> usize {
        let deadline = Instant::now() + period;
        let mut n = 0;
        while Instant::now() < deadline {
            if self.next().is_some_and(|m| m.lines().any(|l| l == line)) {
                n += 1;
            }
        }
        n
    }
}

/// `--bounding-set` for setpriv(1): exactly the unit's capabilities.
fn unit_bounding_set() -> String {
    let settings = unit_settings(&read(&unit_path()));
    let caps = setting(&settings, "CapabilityBoundingSet")
        .first()
        .expect("the unit sets CapabilityBoundingSet=")
        .clone();
    let mut spec = String::from("-all");
    for cap in caps.split_whitespace() {
        let name = cap
            .strip_prefix("CAP_")
            .unwrap_or_else(|| panic!("`{cap}` is not a capability name"));
        spec.push_str(&format!(",+{}", name.to_lowercase()));
    }
    spec
}

#[test]
fn daemon_speaks_sd_notify_under_the_units_capabilities() {
    if !require_root("daemon_speaks_sd_notify_under_the_units_capabilities") {
        return;
    }
    let lab = Lab::new();
    let dir = TestDir::new();
    let config = Config::new(&dir, lab.server_if())
        .entry("198.18.1.0/24", "allowed client, IPv4")
        .entry("2001:db8::a/128", "allowed client, IPv6");
    let config_path = dir.join("allowlist.toml");
    config.write(&config_path);
    let mut notify = NotifySocket::bind(dir.join("notify.sock"));
    let notify_path = notify.path.to_string_lossy().into_owned();

    // As systemd would: NOTIFY_SOCKET, WATCHDOG_USEC, and WATCHDOG_PID naming the daemon
    // itself (sd-notify ignores the watchdog without it). Its pid is only known once it
    // runs, so a shell exports its own pid and execs the daemon, keeping that pid. setpriv
    // limits it to the unit's capabilities, with no_new_privs, as the unit does.
    let daemon = allowlist_tests::daemon::allowlistd();
    let daemon_str = daemon.to_str().expect("utf-8 daemon path");
    let config_str = config_path.to_str().expect("utf-8 config path");
    let script = "export WATCHDOG_PID=$$; exec \"$@\"";
    let bounding = unit_bounding_set();
    let mut args: Vec<&str> = Vec::new();
    let program = if find_tool("setpriv").is_some() {
        args.extend(["--bounding-set", &bounding, "--no-new-privs", "--", "sh"]);
        PathBuf::from("setpriv")
    } else {
        eprintln!("note: setpriv is not installed; running with every capability");
        PathBuf::from("sh")
    };
    args.extend([
        "-c",
        script,
        "allowlistd",
        daemon_str,
        "--config",
        config_str,
    ]);
    let env = [
        ("NOTIFY_SOCKET", notify_path.as_str()),
        ("WATCHDOG_USEC", "500000"),
    ];
    let mut service = spawn_service(&lab.server, &program, &args, &env);

    // READY=1 comes with the status, once the program is attached and the maps are full.
    let ready = notify.wait_for("READY=1", READY_TIMEOUT, &service);
    assert!(
        xdp_attached(&lab),
        "READY=1 arrived but no XDP program is attached to {}",
        lab.server_if()
    );
    let pins = dir.bpffs_entries();
    assert!(
        pins.iter().any(|p| p.starts_with("allowlist/links")),
        "READY=1 arrived but the links are not pinned: {pins:?}"
    );
    assert!(
        ready.contains("STATUS=enforcing: 2 entries on "),
        "READY=1 without the status: {ready:?}"
    );
    assert!(
        !notify.received[..notify.received.len() - 1]
            .iter()
            .any(|m| m.contains("READY=1")),
        "READY=1 sent twice: {:?}",
        notify.received
    );

    // WATCHDOG=1 at half of WATCHDOG_USEC (250 ms): about 8 in 2 s.
    let pings = notify.count("WATCHDOG=1", Duration::from_secs(2));
    assert!(
        (4..=12).contains(&pings),
        "expected about 8 WATCHDOG=1 in 2 s at a 500 ms watchdog, got {pings}"
    );

    // A SIGHUP reload: RELOADING=1 (with MONOTONIC_USEC) first, then READY=1 and the new count.
    let config = config.entry("198.18.7.0/24", "added for the reload");
    config.write(&config_path);
    service.signal(Signal::SIGHUP);
    let reloading = notify.wait_for("RELOADING=1", RELOAD_TIMEOUT, &service);
    assert!(
        reloading.lines().any(|l| l.starts_with("MONOTONIC_USEC=")),
        "RELOADING=1 without MONOTONIC_USEC: {reloading:?}"
    );
    let ready = notify.wait_for("READY=1", RELOAD_TIMEOUT, &service);
    assert!(
        ready.contains("STATUS=enforcing: 3 entries on "),
        "READY=1 after the reload without the new count: {ready:?}"
    );
    service
        .wait_for_log("reload applied", RELOAD_TIMEOUT)
        .unwrap_or_else(|e| panic!("{e:#}"));

    // Still pinging after the reload.
    notify.wait_for("WATCHDOG=1", Duration::from_secs(2), &service);

    // SIGTERM: STOPPING=1, then a clean exit that detaches.
    service.signal(Signal::SIGTERM);
    notify.wait_for("STOPPING=1", RELOAD_TIMEOUT, &service);
    let status = service
        .wait_exit(RELOAD_TIMEOUT)
        .unwrap_or_else(|e| panic!("{e:#}"));
    assert!(status.success(), "exit {status}; log:\n{}", service.log());
    assert!(!xdp_attached(&lab), "still attached after SIGTERM");
    assert!(
        dir.bpffs_entries().is_empty(),
        "pins left: {:?}",
        dir.bpffs_entries()
    );
}
