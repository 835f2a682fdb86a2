//! The Cockpit page in a real browser: cockpit-ws from Debian's packages (no systemd) serving
//! the local session in the server's namespace, the page built from `cockpit/`, the real
//! daemon filtering the lab's veth, and Debian's Chromium in the client's namespace (so the
//! browser's address is a lab client's) clicking through every action of the page. Each
//! action is checked against the daemon (`allowlistctl --json`), the config file, the audit
//! log and, for activation and entries, real connects from the client's namespace. The
//! screenshots land in docs/web-console/, which the README shows. `login`: a real login
//! through Cockpit's login form as a non-root admin, who needs administrative access.
//!
//! `cargo xtask test` builds the page (`npm ci`, esbuild), installs cockpit-ws,
//! cockpit-bridge, cockpit-system, chromium and sudo, and names the built page in
//! `ALLOWLIST_COCKPIT_DIST`.

mod login;

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};

use allowlist_tests::cockpit::{self, Browser, CockpitWs, Session};
use allowlist_tests::daemon::{Config, RELOAD_TIMEOUT};
use allowlist_tests::fixture::Running;
use allowlist_tests::netns::{A4, ALLOWED_V4, B4, PROTECTED, SERVER_V4, to};
use allowlist_tests::require_root;
use allowlist_tests::tcp::{self, allowed_probe, assert_connects, assert_times_out};
use nix::sys::signal::Signal;
use serde_json::Value;

/// cockpit-ws's port on the server: not protected, like Cockpit's 9090 on a real host.
const COCKPIT_PORT: u16 = 9090;

/// What a browser test needs first: root, and the built page, which it returns. `None` is a
/// visible skip (not root, or outside `cargo xtask test`); under CI=true a skip is a failure.
fn root_and_page(test: &str) -> Option<PathBuf> {
    if !require_root(test) {
        return None;
    }
    allowlist_tests::path_from_xtask(
        test,
        "ALLOWLIST_COCKPIT_DIST",
        "builds the page and installs cockpit-ws and chromium",
    )
}

fn screenshots() -> PathBuf {
    let dir = cockpit::module_dir()
        .parent()
        .expect("the workspace")
        .join("docs/web-console");
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("creating {}: {e}", dir.display()));
    dir
}

/// The server's protected port.
fn protected() -> SocketAddr {
    to(IpAddr::V4(SERVER_V4), PROTECTED)
}

/// The entries as the daemon has them: `(cidr, comment)`.
fn entries(run: &Running) -> Vec<(String, String)> {
    let list = run.ctl(&["--json", "list"]).ok().json();
    list["entries"]
        .as_array()
        .expect("entries")
        .iter()
        .map(|e| {
            (
                e["cidr"].as_str().unwrap_or_default().to_owned(),
                e["comment"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect()
}

fn status(run: &Running) -> Value {
    run.ctl(&["--json", "status"]).ok().json()
}

/// The newest audit record, which must be `action` with `result`.
#[track_caller]
fn last_audit(run: &Running, action: &str, result: &str) -> Value {
    let records = run.audit();
    let last = records.last().expect("an audit record").clone();
    assert_eq!(last["action"], action, "newest audit record: {last:#}");
    assert_eq!(
        last["result"]["status"], result,
        "newest audit record: {last:#}"
    );
    last
}

/// Polls `done` every 100 ms for up to 10 s; panics naming `what` if it never holds.
#[track_caller]
fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let start = std::time::Instant::now();
    while !done() {
        assert!(
            start.elapsed() < std::time::Duration::from_secs(10),
            "not within 10 s: {what}"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

fn config_text(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

#[test]
fn every_action_of_the_page_reaches_the_daemon_and_the_network() {
    let test = "every_action_of_the_page_reaches_the_daemon_and_the_network";
    let Some(dist) = root_and_page(test) else {
        return;
    };
    let shots = screenshots();
    // Inactive, with one entry that does not cover the browser's address (ALLOWED_V4).
    // A list file's line, edited in that file; a drop-in's entry, edited here whatever the
    // drop-in's name.
    let mut run = Running::start(|dir, iface| {
        let mut config = Config::new(dir, iface).entry("198.18.9.0/24", "backup site");
        config.active = false;
        allowlist_tests::daemon::write_atomically(
            &dir.join("partners.list"),
            "198.18.5.0/24  # partner VPN\n",
        );
        std::fs::create_dir(dir.join("conf.d")).expect("creating conf.d");
        allowlist_tests::daemon::write_atomically(
            &dir.join("conf.d/office.conf"),
            "[[entries]]\ncidr = \"198.18.6.0/24\"\ncomment = \"office\"\n",
        );
        allowlist_tests::daemon::with_top_level(
            &config.render(),
            "list_files = [\"partners.list\"]\ninclude = [\"conf.d/*.conf\"]\n",
        )
    });
    let socket = run.socket.to_string_lossy().into_owned();
    let bin_dir = allowlist_tests::daemon::bin_dir();
    let path = format!(
        "{}:{}",
        bin_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let browser_ip = ALLOWED_V4.to_string();
    // A login through cockpit-session hands the browser's address to the session as
    // COCKPIT_REMOTE_PEER; the local session has no login, so the test hands it over.
    let ws = CockpitWs::start(
        Session::Local,
        &run.lab.server,
        &SERVER_V4.to_string(),
        COCKPIT_PORT,
        &dist,
        &[
            ("ALLOWLIST_SOCKET", &socket),
            ("PATH", &path),
            ("COCKPIT_REMOTE_PEER", &browser_ip),
        ],
    );
    // Cockpit's shell, with the page in its frame, as an admin sees it.
    let shell = format!("{}/allowlist", ws.url);
    let mut b = Browser::open(run.client(), &shell, Some("cockpit1:localhost/allowlist"));

    // The state at a glance, and the entries.
    b.wait("[data-list=default][data-mode=off]", "Inactive");
    b.wait("[data-test=state]", &format!("your address: {browser_ip}"));
    b.wait("[data-cidr='198.18.9.0/24']", "backup site");
    b.wait("[data-cidr='198.18.9.0/24']", "allowlist.toml:");
    // The list file's line: no Edit or Delete, where to edit it instead.
    b.wait(
        "[data-cidr='198.18.5.0/24']",
        "in a list file: edit it there",
    );
    b.wait("[data-cidr='198.18.5.0/24']", "partners.list:1");
    b.gone("[data-cidr='198.18.5.0/24'] [data-test=edit]");
    b.gone("[data-cidr='198.18.5.0/24'] [data-test=delete]");
    b.wait("[data-cidr='198.18.6.0/24'] [data-test=edit]", "Edit");
    b.wait("[data-cidr='198.18.6.0/24']", "office.conf:");

    // Add, with a comment: in the daemon, the file and the audit log.
    b.click("[data-test=add]");
    b.fill("#entry-cidr", "198.18.2.0/24");
    b.fill("#entry-comment", "lab B");
    b.click("[data-test=dialog-action]");
    b.gone(".pf-v5-c-modal-box");
    b.wait("[data-cidr='198.18.2.0/24']", "lab B");
    assert!(entries(&run).contains(&("198.18.2.0/24".into(), "lab B".into())));
    assert!(config_text(&run.path).contains("cidr = \"198.18.2.0/24\""));
    let record = last_audit(&run, "add", "ok");
    assert_eq!(record["actor"]["via"], "cli", "{record:#}");

    // A bad one: refused in the dialog, in the daemon's words; nothing changes.
    let before = config_text(&run.path);
    b.click("[data-test=add]");
    b.fill("#entry-cidr", "198.18.3.9/24");
    b.click("[data-test=dialog-action]");
    b.wait(
        ".pf-v5-c-modal-box",
        "host bits set; did you mean 198.18.3.0/24?",
    );
    b.screenshot(&shots.join("add-refused.png"));
    b.click(".pf-v5-c-modal-box .pf-m-link");
    b.gone(".pf-v5-c-modal-box");
    assert_eq!(
        config_text(&run.path),
        before,
        "a refused add changed the file"
    );

    // Edit the comment.
    b.click("[data-cidr='198.18.2.0/24'] [data-test=edit]");
    b.fill("#entry-comment", "lab B (2nd floor)");
    b.click("[data-test=dialog-action]");
    b.gone(".pf-v5-c-modal-box");
    b.wait("[data-cidr='198.18.2.0/24']", "lab B (2nd floor)");
    assert!(entries(&run).contains(&("198.18.2.0/24".into(), "lab B (2nd floor)".into())));
    assert!(config_text(&run.path).contains("comment = \"lab B (2nd floor)\""));
    last_audit(&run, "edit", "ok");

    // Inactive: the unlisted browser address still connects.
    assert_connects(run.client(), A4, protected(), "inactive: everything passes");

    // Activate: refused, as it would block the browser's own address; the fix offered.
    b.click("[data-test=activate-default]");
    b.wait(
        ".alw-row-error",
        &format!("would block your own address {browser_ip}"),
    );
    b.screenshot(&shots.join("activate-refused.png"));
    assert_eq!(
        status(&run)["active"],
        false,
        "a refused activate changed the state"
    );
    last_audit(&run, "activate", "refused");
    b.click("[data-test=add-current-activate]");
    b.wait("[data-list=default][data-mode=enforce]", "Active");
    assert_eq!(status(&run)["active"], true);
    assert!(
        entries(&run)
            .iter()
            .any(|(cidr, _)| cidr == &format!("{browser_ip}/32")),
        "activate --add-current did not add {browser_ip}/32: {:?}",
        entries(&run)
    );
    last_audit(&run, "activate", "ok");
    assert_connects(
        run.client(),
        A4,
        protected(),
        "the browser's address was added",
    );
    assert_connects(run.client(), B4, protected(), "198.18.2.0/24 is listed");

    // The filter: the daemon filters by comment.
    b.fill("[data-test=filter]", "2nd floor");
    b.wait("[data-test=entries-summary]", "1 of 5 entries match");
    b.gone("[data-cidr='198.18.9.0/24']");
    b.fill("[data-test=filter]", "");
    b.wait("[data-cidr='198.18.9.0/24']", "backup site");
    // Sorting by a column's header, both ways.
    b.click("[data-sort=Network]");
    b.wait(
        "[data-test=entries-table] tbody tr:first-child",
        "198.18.1.2/32",
    );
    b.click("[data-sort=Network]");
    b.wait(
        "[data-test=entries-table] tbody tr:first-child",
        "198.18.9.0/24",
    );
    b.screenshot(&shots.join("overview.png"));

    // Test IP: the live verdict and the deciding entry.
    b.click("[data-test='tab-Test IP']");
    b.fill("#test-ip", &B4.to_string());
    b.fill("#test-port", &PROTECTED.to_string());
    b.click("[data-test=test-run]");
    b.wait("[data-test=verdict]", "Allowed");
    b.wait("[data-test=deciding]", "198.18.2.0/24 (lab B (2nd floor))");
    b.screenshot(&shots.join("test-ip.png"));
    b.click("[data-test=tab-Entries]");

    // Two established sessions to the protected port: one from the browser's address, one
    // from the network about to be deleted.
    let mut listed = tcp::open(run.client(), A4, protected(), allowed_probe())
        .expect("the browser's address connects");
    let mut unlisted = tcp::open(run.client(), B4, protected(), allowed_probe())
        .expect("198.18.2.0/24 is still listed");
    let unlisted_peer = unlisted.local_addr().expect("a local address").to_string();
    let mut chosen = tcp::open(run.client(), B4, protected(), allowed_probe())
        .expect("198.18.2.0/24 is still listed");
    let chosen_peer = chosen.local_addr().expect("a local address").to_string();
    let listed_peer = listed.local_addr().expect("a local address").to_string();

    // Delete, after a confirmation: the network is blocked at once.
    b.click("[data-cidr='198.18.2.0/24'] [data-test=delete]");
    b.wait(".pf-v5-c-modal-box", "will be blocked");
    b.click("[data-test=dialog-action]");
    b.gone(".pf-v5-c-modal-box");
    b.gone("[data-cidr='198.18.2.0/24']");
    assert!(
        !entries(&run)
            .iter()
            .any(|(cidr, _)| cidr == "198.18.2.0/24")
    );
    assert!(!config_text(&run.path).contains("198.18.2.0/24"));
    last_audit(&run, "remove", "ok");
    assert_times_out(run.client(), B4, protected(), "198.18.2.0/24 was deleted");
    assert_connects(run.client(), A4, protected(), "the browser's address stays");
    b.click("[data-test='tab-Test IP']");
    b.click("[data-test=test-run]");
    b.wait("[data-test=verdict]", "Blocked");
    b.click("[data-test=tab-Entries]");

    // Blocked sources: the deleted network's attempt, as the daemon counted it.
    wait_until("the daemon lists 198.18.2.2 as blocked", || {
        run.ctl(&["--json", "blocked"]).ok().json()["sources"]
            .as_array()
            .is_some_and(|s| s.iter().any(|s| s["source"] == B4.to_string()))
    });
    b.click("[data-test=tab-Blocked]");
    b.wait("[data-source='198.18.2.2']", &PROTECTED.to_string());

    // Sessions: the one from the deleted network is NOT covered; ending the unlisted ones
    // resets it and keeps the other.
    wait_until("the daemon lists the three sessions", || {
        run.ctl(&["--json", "sessions"]).ok().json()["sessions"]
            .as_array()
            .is_some_and(|s| s.len() == 3)
    });
    b.click("[data-test=tab-Sessions]");
    b.wait(
        &format!("[data-peer='{unlisted_peer}']"),
        "NOT covered by any entry",
    );
    b.wait("[data-test=sessions]", "198.18.1.2/32");
    b.screenshot(&shots.join("sessions.png"));
    // End on one: refused for the browser's own address, done for another.
    b.click(&format!(
        "[data-peer='{listed_peer}'] [data-test=end-session]"
    ));
    b.wait(
        "[data-test=sessions] .pf-v5-c-alert",
        "comes from your own address 198.18.1.2",
    );
    last_audit(&run, "end-session", "refused");
    b.click(&format!(
        "[data-peer='{chosen_peer}'] [data-test=end-session]"
    ));
    b.gone(&format!("[data-peer='{chosen_peer}']"));
    assert!(
        tcp::exchange(&mut chosen, b"still there?").is_err(),
        "the chosen session survived"
    );
    last_audit(&run, "end-session", "ok");
    b.click("[data-test=kill-unlisted]");
    b.wait("[data-test=sessions-summary]", "1 ended");
    b.gone(&format!("[data-peer='{unlisted_peer}']"));
    assert!(
        tcp::exchange(&mut unlisted, b"still there?").is_err(),
        "the unlisted session survived"
    );
    tcp::exchange(&mut listed, b"still there?").expect("the covered session was ended");
    last_audit(&run, "kill-unlisted", "ok");

    // The emergency dialog: a reason is required (refused in the dialog, in the daemon's
    // words); with one, enforcement is lifted, shown with a live countdown; End now.
    b.click("[data-test=emergency-open]");
    b.click("[data-test=dialog-action]");
    b.wait(".pf-v5-c-modal-box .pf-v5-c-alert", "a reason is required");
    last_audit(&run, "emergency-start", "refused");
    assert!(
        status(&run)["emergency"].is_null(),
        "an emergency without a reason started"
    );
    b.fill("#emergency-reason", "VPN down, ticket 4711");
    b.select("#emergency-for", "1h");
    b.screenshot(&shots.join("emergency-dialog.png"));
    b.click("[data-test=dialog-action]");
    b.gone(".pf-v5-c-modal-box");
    b.wait("[data-test=emergency]", "VPN down, ticket 4711");
    assert_eq!(status(&run)["emergency"]["reason"], "VPN down, ticket 4711");
    last_audit(&run, "emergency-start", "ok");
    assert_connects(run.client(), B4, protected(), "enforcement is lifted");
    let first = b.text("[data-test=emergency-left]");
    std::thread::sleep(std::time::Duration::from_millis(2100));
    let later = b.text("[data-test=emergency-left]");
    assert_ne!(first, later, "the countdown does not move");
    b.screenshot(&shots.join("emergency.png"));
    b.click("[data-test=emergency-end]");
    b.gone("[data-test=emergency]");
    assert!(status(&run)["emergency"].is_null());
    last_audit(&run, "emergency-end", "ok");

    // The audit log, newest first, by action; its chain verified.
    b.click("[data-test='tab-Audit log']");
    b.wait("[data-test=audit] tbody tr:first-child", "emergency-end");
    b.select("[data-test=audit-action]", "add");
    b.gone("[data-action=emergency-end]");
    b.wait("[data-action=add]", "198.18.2.0/24");
    b.click("[data-test=verify]");
    let records = run.audit().len();
    b.wait(
        "[data-test=verify-result]",
        &format!("Intact: {records} records"),
    );
    b.screenshot(&shots.join("audit.png"));
    b.click("[data-test=tab-Entries]");

    // Deactivate: everything passes again.
    b.click("[data-test=deactivate-default]");
    b.wait("[data-list=default][data-mode=off]", "Inactive");
    assert_eq!(status(&run)["active"], false);
    last_audit(&run, "deactivate", "ok");
    assert_connects(run.client(), B4, protected(), "inactive again");

    // A timed entry brings the expiry column.
    run.ctl(&["add", "198.18.7.7", "--for", "8h", "--comment", "vendor"])
        .ok();
    let list = run.ctl(&["--json", "list", "--timed"]).ok().json();
    let expires = list["entries"][0]["expires"]
        .as_str()
        .expect("the timed entry's end")
        .to_owned();
    b.click("[data-test='tab-Test IP']");
    b.click("[data-test=tab-Entries]");
    b.wait("[data-test=entries-table] thead", "Expires");
    b.wait("[data-cidr='198.18.7.7/32']", &expires);

    // The daemon gone: said plainly, with what to do.
    run.daemon.signal(Signal::SIGTERM);
    run.daemon
        .wait_exit(RELOAD_TIMEOUT)
        .unwrap_or_else(|e| panic!("{e:#}"));
    b.reload();
    b.wait("[data-test=unreachable]", "cannot reach allowlistd");
    b.wait(".pf-v5-c-alert", "systemctl start allowlistd");
    b.screenshot(&shots.join("unreachable.png"));
}
