//! The package's prerm, on a running daemon.

use super::*;

/// Runs packaging/debian/prerm `remove` against a daemon started from a copy of the binary at
/// a path of this test's own (so other tests' daemons are not touched), with the config and
/// the bpffs of this test in place of /etc/allowlist and /sys/fs/bpf, and no systemd.
fn prerm_removes_a_running_daemon(test: &str, detach_on_exit: Option<bool>) {
    if !require_root(test) {
        return;
    }
    let lab = Lab::new();
    let dir = TestDir::new();
    let mut config = Config::new(&dir, lab.server_if()).entry("198.18.1.0/24", "allowed");
    config.detach_on_exit = detach_on_exit;
    let config_path = dir.join("allowlist.toml");
    config.write(&config_path);
    let daemon = dir.join("sbin/allowlistd");
    std::fs::create_dir_all(dir.join("sbin")).expect("creating sbin/");
    std::fs::copy(allowlist_tests::daemon::allowlistd(), &daemon).expect("copying allowlistd");

    let mut service = spawn_service(
        &lab.server,
        &daemon,
        &["--config", config_path.to_str().expect("utf-8 path")],
        &[],
    );
    service.wait_ready();
    assert!(xdp_attached(&lab));

    let mut prerm = read(&workspace_root().join("packaging/debian/prerm"));
    let bpffs = dir.bpffs().to_string_lossy().into_owned();
    for (from, to) in [
        (
            "DAEMON=/usr/sbin/allowlistd",
            format!("DAEMON={}", daemon.display()),
        ),
        (
            "CONFIG=/etc/allowlist/allowlist.toml",
            format!("CONFIG={}", config_path.display()),
        ),
        (
            "SYSTEMD_RUNNING=/run/systemd/system",
            "SYSTEMD_RUNNING=/nonexistent/systemd".to_owned(),
        ),
        ("/sys/fs/bpf", bpffs),
    ] {
        assert!(prerm.contains(from), "prerm no longer has `{from}`");
        prerm = prerm.replace(from, &to);
    }
    let script = dir.join("prerm");
    std::fs::write(&script, prerm).expect("writing the prerm copy");
    let out = run_ok(Command::new("sh").arg(&script).arg("remove"));
    eprintln!("prerm: {}", stdout(&out));

    // prerm waits for the daemon to be gone; only the reaping is left to its parent.
    let status = service
        .wait_exit(Duration::from_secs(2))
        .unwrap_or_else(|e| panic!("{e:#}"));
    assert!(status.success(), "exit {status}; log:\n{}", service.log());
    assert!(!xdp_attached(&lab), "still attached after prerm remove");
    assert!(
        dir.bpffs_entries().is_empty(),
        "pins left after prerm remove: {:?}",
        dir.bpffs_entries()
    );
}

#[test]
fn prerm_stops_a_daemon_without_systemd_which_detaches() {
    prerm_removes_a_running_daemon("prerm_stops_a_daemon_without_systemd_which_detaches", None);
}

#[test]
fn prerm_removes_the_pins_a_daemon_left_enforcing() {
    prerm_removes_a_running_daemon(
        "prerm_removes_the_pins_a_daemon_left_enforcing",
        Some(false),
    );
}
