//! The unit file.

use super::*;

#[test]
fn unit_exposure_is_at_most_2_5() {
    if !require_tool("unit_exposure_is_at_most_2_5", "systemd-analyze") {
        return;
    }
    let score = exposure(&unit_path());
    eprintln!("systemd-analyze security --offline=true allowlistd.service: {score}");
    assert!(
        score <= MAX_EXPOSURE,
        "exposure {score} is above {MAX_EXPOSURE}: a hardening option was lost (see \
         `systemd-analyze security --offline=true {}`)",
        unit_path().display()
    );
}

#[test]
fn unit_grants_only_what_the_daemon_needs_and_keeps_its_paths_writable() {
    let settings = unit_settings(&read(&unit_path()));
    let one = |key: &str| -> String {
        match setting(&settings, key) {
            [value] => value.clone(),
            other => panic!("{key}= should be set once, got {other:?}"),
        }
    };
    assert_eq!(one("Type"), "notify");
    assert!(
        one("ExecStartPre").contains("allowlistd --check --config /etc/allowlist/allowlist.toml")
    );
    assert_eq!(
        one("ExecStart"),
        "/usr/sbin/allowlistd --config /etc/allowlist/allowlist.toml"
    );
    assert_eq!(one("ExecReload"), "/bin/kill -HUP $MAINPID");
    assert_eq!(one("Restart"), "on-failure");
    assert!(!one("WatchdogSec").is_empty());

    let caps = one("CapabilityBoundingSet");
    let caps: BTreeSet<&str> = caps.split_whitespace().collect();
    assert_eq!(caps, UNIT_CAPABILITIES.into_iter().collect());
    assert!(
        setting(&settings, "AmbientCapabilities")
            .iter()
            .all(String::is_empty)
    );
    for key in [
        "NoNewPrivileges",
        "PrivateTmp",
        "ProtectHome",
        "LockPersonality",
    ] {
        assert_eq!(one(key), "yes", "{key}");
    }
    assert_eq!(one("ProtectSystem"), "strict");
    // ProtectKernelTunables=yes would mount /sys/fs/bpf read-only, and ReadWritePaths=
    // cannot undo that for the same path: the daemon could not pin anything.
    assert_ne!(
        setting(&settings, "ProtectKernelTunables"),
        ["yes".to_owned()],
        "ProtectKernelTunables=yes makes /sys/fs/bpf read-only"
    );
    let filter = setting(&settings, "SystemCallFilter").join(" ");
    assert!(
        filter.split_whitespace().any(|w| w == "bpf"),
        "bpf() must be allowed: {filter}"
    );
    let families = one("RestrictAddressFamilies");
    let families: BTreeSet<&str> = families.split_whitespace().collect();
    // Unix sockets, netlink, and IP only for the optional metrics endpoint, from this host.
    assert!(
        families.is_subset(&BTreeSet::from([
            "AF_UNIX",
            "AF_NETLINK",
            "AF_INET",
            "AF_INET6"
        ])),
        "{families:?}"
    );
    assert_eq!(one("IPAddressDeny"), "any");

    // Every place the daemon writes by default is writable under ProtectSystem=strict.
    let mut writable: Vec<PathBuf> = one("ReadWritePaths")
        .split_whitespace()
        .map(PathBuf::from)
        .collect();
    for (key, base) in [
        ("RuntimeDirectory", "/run"),
        ("StateDirectory", "/var/lib"),
        ("LogsDirectory", "/var/log"),
    ] {
        writable.push(Path::new(base).join(one(key)));
    }
    let defaults = allowlist_config::Config::parse(
        Path::new("/etc/allowlist/allowlist.toml"),
        "active = false\n",
    )
    .expect("an empty inactive config is valid");
    for (what, path) in [
        ("config file's directory", Path::new("/etc/allowlist/x")),
        ("control_socket", defaults.control_socket.as_path()),
        ("state_dir", defaults.state_dir.as_path()),
        ("audit_log", defaults.audit_log.as_path()),
        ("bpffs_dir", defaults.bpffs_dir.as_path()),
    ] {
        assert!(
            writable.iter().any(|w| path.starts_with(w)),
            "the default {what} {} is not writable in the unit (writable: {writable:?})",
            path.display()
        );
    }
}
