//! The package on this machine: installed with dpkg, upgraded from a previous version while a
//! daemon run from the installed binary enforces (the SIGUSR2 handover: no moment without
//! enforcement), removed (the config kept) and purged (config, state and audit log gone).
//!
//! PID 1 is not systemd here, and the maintainer scripts do what they do without it: the
//! postinst only prints (debhelper's systemd code checks for /run/systemd/system), the prerm
//! sends SIGTERM to a running allowlistd. So the test plays systemd's part: it starts
//! /usr/sbin/allowlistd on the default config as the unit would, and on the upgrade sends
//! SIGUSR2 and starts the new binary, as `systemctl kill -s USR2` and
//! `RestartForceExitStatus=75` do.

use std::os::unix::fs::PermissionsExt as _;

use allowlist_tests::daemon::write_atomically;
use allowlist_tests::netns::{A4, B4, PROTECTED, to};
use allowlist_tests::package::{self, Machine, NAME};
use allowlist_tests::probe;
use allowlist_tests::tcp::{Listener, assert_connects, assert_times_out};

use super::*;

const DAEMON: &str = "/usr/sbin/allowlistd";
const COCKPIT_PAGE: &str = "/usr/share/cockpit/allowlist";
const CONFIG: &str = "/etc/allowlist/allowlist.toml";
/// The default state and audit directories, which purge removes.
const STATE_DIR: &str = "/var/lib/allowlist";
const AUDIT_LOG: &str = "/var/log/allowlist/audit.jsonl";

fn mode(path: &str) -> u32 {
    std::fs::metadata(path)
        .unwrap_or_else(|e| panic!("{path}: {e}"))
        .permissions()
        .mode()
        & 0o7777
}

/// What /proc/PID/exe says of `daemon`: the binary it runs, `(deleted)` once replaced.
fn exe(daemon: &Daemon) -> String {
    let link = format!("/proc/{}/exe", daemon.pid());
    std::fs::read_link(&link)
        .unwrap_or_else(|e| panic!("{link}: {e}"))
        .display()
        .to_string()
}

/// Starts the installed daemon on the default config, as the unit does, and waits for it.
fn start(lab: &Lab) -> Daemon {
    let daemon = spawn_service(&lab.server, Path::new(DAEMON), &[], &[]);
    daemon.wait_ready();
    daemon
}

#[test]
fn install_upgrade_remove_and_purge_on_this_machine() {
    let test = "install_upgrade_remove_and_purge_on_this_machine";
    if !require_root(test) || !require_tool(test, "dpkg-deb") {
        return;
    }
    let machine = Machine::take();
    let tmp = tempfile::tempdir().expect("creating a temporary directory");
    let version = env!("CARGO_PKG_VERSION");
    let old_version = format!("{version}~previous");
    let previous = package::build(tmp.path(), Some(&old_version));
    let current = package::build(tmp.path(), None);

    // Install: files in place, root's alone where they say who gets in; nothing started.
    let said = machine.dpkg_ok(&["-i", previous.to_str().expect("utf-8 path")]);
    assert!(
        said.contains("allowlistd.service is NOT enabled and NOT started"),
        "{said}"
    );
    assert_eq!(machine.installed_version(), Some(old_version.clone()));
    assert_eq!(mode("/etc/allowlist"), 0o750);
    assert_eq!(mode(CONFIG), 0o640);
    for binary in [DAEMON, "/usr/bin/allowlistctl"] {
        assert_eq!(mode(binary), 0o755, "{binary}");
    }
    // The web console's page, where Cockpit finds its packages.
    let manifest = read(&Path::new(COCKPIT_PAGE).join("manifest.json"));
    assert!(manifest.contains("\"IP allowlist\""), "{manifest}");
    assert!(Path::new(COCKPIT_PAGE).join("index.html").is_file());

    // The admin's config, at the conffile's path, with the default state and audit paths.
    let lab = Lab::new();
    let dir = TestDir::new();
    let _listener = Listener::start(
        &lab.server,
        std::net::SocketAddr::new("::".parse().unwrap(), PROTECTED),
    );
    let mut config = Config::new(&dir, lab.server_if())
        .entry("198.18.1.0/24", "allowed client, IPv4")
        .entry("2001:db8::a/128", "allowed client, IPv6");
    config.state_dir = STATE_DIR.into();
    config.audit_log = AUDIT_LOG.into();
    let admin_text = config.render();
    write_atomically(Path::new(CONFIG), &admin_text);
    std::fs::set_permissions(CONFIG, std::fs::Permissions::from_mode(0o640))
        .expect("chmod 640 the config");
    let mut old = start(&lab);
    assert_eq!(exe(&old), DAEMON);
    assert_times_out(
        &lab.client,
        B4,
        to(B4, PROTECTED),
        "the old version enforces",
    );
    assert_connects(
        &lab.client,
        A4,
        to(A4, PROTECTED),
        "the old version enforces",
    );

    // Upgrade: dpkg replaces the binary under the running daemon, then the handover.
    let (probes, (said, replaced, old_exit, handed_at, new, ready_at)) =
        probe::during(&lab, |started| {
            let said = machine.dpkg_ok(&["-i", current.to_str().expect("utf-8 path")]);
            let replaced = exe(&old);
            old.signal(Signal::SIGUSR2);
            let old_exit = old
                .wait_exit(RELOAD_TIMEOUT)
                .unwrap_or_else(|e| panic!("{e:#}"));
            let handed_at = started.elapsed();
            let new = start(&lab);
            (said, replaced, old_exit, handed_at, new, started.elapsed())
        });
    assert!(said.contains("upgraded without systemd"), "{said}");
    assert_eq!(machine.installed_version(), Some(version.to_owned()));
    assert_eq!(
        replaced,
        format!("{DAEMON} (deleted)"),
        "dpkg replaced the binary"
    );
    assert_eq!(old_exit.code(), Some(75), "log:\n{}", old.log());
    assert_eq!(exe(&new), DAEMON, "the new daemon runs the new binary");
    assert!(
        new.log().contains("adopted the pinned XDP link"),
        "the new daemon adopts the filter; log:\n{}",
        new.log()
    );
    let wrong = probe::wrong(&probes);
    let (_, daemonless_blocked) = probe::between(&probes, handed_at, ready_at);
    assert!(
        wrong.is_empty() && daemonless_blocked > 0,
        "{} probes during the upgrade ({daemonless_blocked} blocked ones with no daemon \
         running, from {handed_at:?} to {ready_at:?}), {} wrong: {wrong:?}",
        probes.len(),
        wrong.len()
    );
    let slowest = probe::slowest_allowed(&probes);
    eprintln!(
        "upgrade: {} probes from the blocked clients (all dropped), {} from the allowed ones \
         (all connected); no daemon from {handed_at:?} to {ready_at:?} ({daemonless_blocked} \
         blocked probes then); slowest allowed connect {slowest:?}",
        probe::count(&probes, true),
        probe::count(&probes, false),
    );

    // Remove: the prerm stops the daemon, which detaches; the admin's config stays.
    let mut new = new;
    let said = machine.dpkg_ok(&["-r", NAME]);
    assert!(said.contains("sending SIGTERM to allowlistd"), "{said}");
    let status = new
        .wait_exit(RELOAD_TIMEOUT)
        .unwrap_or_else(|e| panic!("{e:#}"));
    assert!(status.success(), "exit {status}; log:\n{}", new.log());
    assert!(!xdp_attached(&lab), "still attached after dpkg -r");
    assert!(
        dir.bpffs_entries().is_empty(),
        "pins left after dpkg -r: {:?}",
        dir.bpffs_entries()
    );
    assert_connects(
        &lab.client,
        B4,
        to(B4, PROTECTED),
        "removed: nothing filters",
    );
    assert_eq!(machine.state(), "config-files");
    assert!(!Path::new(DAEMON).exists(), "{DAEMON} left after dpkg -r");
    assert!(
        !Path::new(COCKPIT_PAGE).exists(),
        "{COCKPIT_PAGE} left after dpkg -r"
    );
    assert_eq!(read(Path::new(CONFIG)), admin_text, "the config is kept");
    assert!(Path::new(STATE_DIR).is_dir() && Path::new(AUDIT_LOG).is_file());

    // Purge: the config, the state and the audit log go too.
    machine.dpkg_ok(&["--purge", NAME]);
    assert_eq!(machine.state(), "not-installed");
    for gone in ["/etc/allowlist", STATE_DIR, "/var/log/allowlist"] {
        assert!(!Path::new(gone).exists(), "{gone} left after dpkg --purge");
    }
}
