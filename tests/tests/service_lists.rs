//! Service lists end to end: the real daemon with named lists in a network namespace, real
//! TCP connects and real UDP datagrams from a client namespace. The office reaches SSH but
//! not the API, a partner the API but not SSH, a UDP port answers only to its list, and a
//! list in monitor mode passes what enforcing it drops.

use std::net::{IpAddr, SocketAddr};

use allowlist_tests::daemon::{Config, RELOAD_TIMEOUT, write_atomically};
use allowlist_tests::fixture::Running;
use allowlist_tests::netns::{A4, A6, B4, B6, PROTECTED, UNPROTECTED, to};
use allowlist_tests::require_root;
use allowlist_tests::tcp::{assert_connects, assert_times_out};
use allowlist_tests::udp::{Echo, assert_dropped, assert_echoed};
use nix::sys::signal::Signal;

/// The API's UDP port, and the port of a list rolled out in monitor mode.
const API_UDP: u16 = 5353;
const WG_UDP: u16 = 51820;

/// `ssh` (TCP 2222) lets in the office (the lab's "allowed" clients), `api` (TCP 8080, UDP
/// 5353) the partner (the "blocked" ones), `wg` (UDP 51820) nobody yet, in `wg_mode`.
fn config(config: &Config, wg_mode: &str) -> String {
    format!(
        r#"{settings}
[lists.ssh]
mode = "enforce"
tcp_ports = [{PROTECTED}]
[[lists.ssh.entries]]
cidr = "198.18.1.0/24"
comment = "office"
[[lists.ssh.entries]]
cidr = "2001:db8::a"
comment = "office v6"

[lists.api]
tcp_ports = [{UNPROTECTED}]
udp_ports = [{API_UDP}]
[[lists.api.entries]]
cidr = "198.18.2.2"
comment = "partner"
[[lists.api.entries]]
cidr = "2001:db8::b"
comment = "partner v6"

[lists.wg]
mode = "{wg_mode}"
udp_ports = [{WG_UDP}]
"#,
        settings = settings(config),
    )
}

/// The lab's interface and the daemon's files, before any list.
fn settings(config: &Config) -> String {
    let path = |p: &std::path::Path| format!("{:?}", p.to_string_lossy());
    format!(
        "interfaces = [{interface:?}]\ncontrol_socket = {socket}\nstate_dir = {state}\n\
         audit_log = {audit}\nbpffs_dir = {bpffs}\n",
        interface = config.interfaces[0],
        socket = path(&config.control_socket),
        state = path(&config.state_dir),
        audit = path(&config.audit_log),
        bpffs = path(&config.bpffs_dir),
    )
}

struct Lists {
    run: Running,
    lab_config: Config,
    _echoes: [Echo; 2],
}

impl Lists {
    fn start(wg_mode: &str) -> Lists {
        let mut lab_config = None;
        let run = Running::start(|dir, iface| {
            let c = Config::new(dir, iface);
            let text = config(&c, wg_mode);
            lab_config = Some(c);
            text
        });
        let any = |port| SocketAddr::new("::".parse().unwrap(), port);
        let echoes = [API_UDP, WG_UDP].map(|port| Echo::start(&run.lab.server, any(port)));
        Lists {
            run,
            lab_config: lab_config.expect("written"),
            _echoes: echoes,
        }
    }

    fn reload(&self, wg_mode: &str) {
        write_atomically(&self.run.path, &config(&self.lab_config, wg_mode));
        self.run.daemon.signal(Signal::SIGHUP);
        let (which, line) = self
            .run
            .daemon
            .wait_for_any(&["reload applied", "reload failed"], RELOAD_TIMEOUT)
            .unwrap_or_else(|e| panic!("{e:#}"));
        assert_eq!(which, 0, "reload should apply, got: {line}");
    }
}

#[test]
fn each_service_answers_to_its_own_list() {
    if !require_root("each_service_answers_to_its_own_list") {
        return;
    }
    let lists = Lists::start("monitor");
    let client = lists.run.client();
    for (office, partner) in [(A4, B4), (A6, B6)] {
        assert_connects(
            client,
            office,
            to(office, PROTECTED),
            "the office is in ssh",
        );
        assert_times_out(
            client,
            office,
            to(office, UNPROTECTED),
            "the office is not in api",
        );
        assert_connects(
            client,
            partner,
            to(partner, UNPROTECTED),
            "the partner is in api",
        );
        assert_times_out(
            client,
            partner,
            to(partner, PROTECTED),
            "the partner is not in ssh",
        );
        assert_echoed(
            client,
            partner,
            to(partner, API_UDP),
            "the partner is in api",
        );
        assert_dropped(
            client,
            office,
            to(office, API_UDP),
            "api protects its UDP port too",
        );
        // wg covers nobody, but monitor mode only counts.
        assert_echoed(client, office, to(office, WG_UDP), "wg is in monitor mode");
    }

    let lists_out = lists.run.ctl(&["--json", "lists"]).ok().json();
    let by_name = |name: &str| {
        lists_out
            .as_array()
            .expect("an array of lists")
            .iter()
            .find(|l| l["name"] == name)
            .unwrap_or_else(|| panic!("{name} in {lists_out}"))
            .clone()
    };
    assert_eq!(by_name("wg")["mode"], "monitor");
    assert_eq!(by_name("wg")["would_drop"], 2, "{lists_out}");
    assert_eq!(by_name("wg")["dropped"], 0, "{lists_out}");
    assert_eq!(by_name("ssh")["allowed"], 2, "{lists_out}");
    assert!(by_name("ssh")["dropped"].as_u64() >= Some(2), "{lists_out}");
    assert_eq!(by_name("api")["udp_ports"], serde_json::json!([API_UDP]));
    lists
        .run
        .ctl(&["lists"])
        .ok()
        .stdout_has("wg    monitor  udp 51820");
    lists
        .run
        .ctl(&["blocked"])
        .ok()
        .stdout_has(&format!(
            "port {WG_UDP}/udp: 1 would be blocked (monitor mode) by list `wg`"
        ))
        .stdout_has(&format!("-> port {API_UDP}/udp: 1 blocked by list `api`"));
    lists
        .run
        .ctl(&[
            "test",
            "198.18.1.2",
            "--port",
            &API_UDP.to_string(),
            "--udp",
        ])
        .code(1)
        .stdout_has("blocked: no entry of list `api` covers 198.18.1.2");
    lists
        .run
        .ctl(&["test", "198.18.2.2"])
        .code(1)
        .stdout_has(&format!(
            "port {UNPROTECTED}: allowed by 198.18.2.2/32 (partner) of list `api`"
        ))
        .stdout_has(&format!(
            "port {WG_UDP}/udp: allowed for now: list `wg` is in monitor mode"
        ));

    // Enforcing wg now drops what monitor mode counted.
    lists.reload("enforce");
    let client = lists.run.client();
    assert_dropped(client, A4, to(A4, WG_UDP), "wg enforces and covers nobody");
    assert_connects(client, A4, to(A4, PROTECTED), "ssh is unchanged");
    let status = lists.run.ctl(&["--json", "status"]).ok().json();
    let wg = status["lists"]
        .as_array()
        .and_then(|l| l.iter().find(|l| l["name"] == "wg"))
        .unwrap_or_else(|| panic!("{status}"));
    assert_eq!(wg["mode"], "enforce");
    assert_eq!(wg["dropped"], 1, "{status}");
    let _: IpAddr = A4;
}

#[test]
fn allowlistctl_changes_lists_live() {
    if !require_root("allowlistctl_changes_lists_live") {
        return;
    }
    let lists = Lists::start("monitor");
    let (run, client) = (&lists.run, lists.run.client());
    let probe_wg = |why| assert_echoed(client, A4, to(A4, WG_UDP), why);

    // One entry in two lists; each list shows it with its own list.
    run.ctl(&[
        "add",
        "198.18.1.2",
        "--list",
        "api",
        "--list",
        "wg",
        "--comment",
        "laptop",
    ])
    .ok()
    .stdout_has("add 198.18.1.2/32 (lists api, wg)");
    assert_connects(client, A4, to(A4, UNPROTECTED), "now in api");
    let api = run.ctl(&["--json", "list", "--list", "api"]).ok().json();
    let cidrs: Vec<&str> = api["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["cidr"].as_str().unwrap())
        .collect();
    assert_eq!(
        cidrs,
        ["198.18.2.2/32", "2001:db8::b/128", "198.18.1.2/32"],
        "file order"
    );
    run.ctl(&["list"]).ok().stdout_has("wg   198.18.1.2/32");

    // Activating wg from monitor mode says first whom it would have blocked.
    probe_wg("wg is still in monitor mode");
    assert_echoed(client, B4, to(B4, WG_UDP), "monitor mode");
    run.ctl(&["activate", "--list", "wg", "--current-ip", "198.18.1.2"])
        .ok()
        .stdout_has("list `wg` was in monitor mode; it would have blocked recently: 198.18.2.2 (port 51820/udp, 1 time)")
        .stdout_has("activate list wg");
    probe_wg("the laptop is in wg");
    assert_dropped(client, B4, to(B4, WG_UDP), "wg enforces now");

    // The lockout guard: taking the laptop out of wg while it says it is the caller.
    run.ctl(&[
        "remove",
        "198.18.1.2",
        "--list",
        "wg",
        "--current-ip",
        "198.18.1.2",
    ])
    .code(2)
    .refused("would block your own address 198.18.1.2 on UDP port 51820")
    .stderr_has("that entry is your own address: pass --force");
    run.ctl(&["remove", "198.18.1.2", "--current-ip", "198.18.1.2"])
        .code(2)
        .stderr_has("is in lists `api` and `wg`: say which with --list");

    // A new list, its ports moved, and one that cannot be removed from under a session.
    run.ctl(&["add-list", "db", "--tcp", "5432"])
        .ok()
        .stdout_has("add list db (monitor)");
    run.ctl(&["set-ports", "db", "--tcp", &PROTECTED.to_string()])
        .code(2)
        .stderr_has("TCP port 2222 is already protected by list `ssh`");
    run.ctl(&["set-ports", "wg", "--udp", "51821", "--tcp", "none"])
        .ok()
        .stdout_has("set ports of list wg");
    assert_echoed(client, B4, to(B4, WG_UDP), "51820 is no longer protected");
    run.ctl(&["deactivate", "--list", "api"]).ok();
    assert_connects(client, A6, to(A6, UNPROTECTED), "api is off");
    run.ctl(&["add", "198.18.9.9", "--list", "nope"])
        .code(2)
        .stderr_has("no list `nope`; the lists are: ssh, api, wg, db");

    let audit = run.audit();
    let actions: Vec<&str> = audit.iter().filter_map(|r| r["action"].as_str()).collect();
    for action in ["add", "activate", "add-list", "set-ports", "deactivate"] {
        assert!(actions.contains(&action), "{action} in {actions:?}");
    }
    let add = audit.iter().find(|r| r["action"] == "add").unwrap();
    let added: Vec<&str> = add["after"]["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["list"].as_str().unwrap())
        .collect();
    assert_eq!(added, ["api", "wg"], "{add}");
    run.ctl(&["audit", "verify"]).ok();
    let _ = B6;
}

/// `ssh` holds the whole lab, `api` the office inside it; both hold the office's IPv6
/// address. `first`: lists written before them.
fn nested_config(config: &Config, first: &str) -> String {
    format!(
        r#"{settings}{first}
[lists.ssh]
tcp_ports = [{PROTECTED}]
[[lists.ssh.entries]]
cidr = "198.18.0.0/16"
comment = "the lab"
[[lists.ssh.entries]]
cidr = "2001:db8::a"
comment = "office host"

[lists.api]
tcp_ports = [{UNPROTECTED}]
[[lists.api.entries]]
cidr = "198.18.1.0/24"
comment = "office"
[[lists.api.entries]]
cidr = "2001:db8::a"
comment = "office host"
"#,
        settings = settings(config),
    )
}

/// Hits of `cidr` in `list`, as `allowlistctl list --list` shows them.
fn hits(run: &Running, list: &str, cidr: &str) -> u64 {
    let out = run.ctl(&["--json", "list", "--list", list]).ok().json();
    let entries = out["entries"].as_array().unwrap_or_else(|| panic!("{out}"));
    let entry = entries
        .iter()
        .find(|e| e["cidr"] == cidr)
        .unwrap_or_else(|| panic!("{cidr} in list {list}: {out}"));
    entry["hits"].as_u64().unwrap_or_else(|| panic!("{entry}"))
}

#[test]
fn hits_count_for_the_entry_of_the_list_that_let_it_in() {
    if !require_root("hits_count_for_the_entry_of_the_list_that_let_it_in") {
        return;
    }
    let mut lab_config = None;
    let mut run = Running::start(|dir, iface| {
        let config = Config::new(dir, iface);
        let text = nested_config(&config, "");
        lab_config = Some(config);
        text
    });
    let connects = [
        // The kernel finds api's /24 for the office, but ssh lets it in by its /16.
        (A4, PROTECTED, 2),
        (A4, UNPROTECTED, 1),
        // One address, an entry of both lists.
        (A6, PROTECTED, 1),
        (A6, UNPROTECTED, 3),
    ];
    for (src, port, times) in connects {
        for _ in 0..times {
            assert_connects(run.client(), src, to(src, port), "listed");
        }
    }
    let expected = [
        ("ssh", "198.18.0.0/16", 2),
        ("api", "198.18.1.0/24", 1),
        ("ssh", "2001:db8::a/128", 1),
        ("api", "2001:db8::a/128", 3),
    ];
    let shown = |run: &Running| expected.map(|(list, cidr, _)| (list, cidr, hits(run, list, cidr)));
    assert_eq!(shown(&run), expected, "after the connects");
    // Saved per list at a stop, and back at the next start.
    run.daemon.signal(Signal::SIGTERM);
    run.daemon
        .wait_exit(RELOAD_TIMEOUT)
        .unwrap_or_else(|e| panic!("{e:#}"));
    run.restart();
    assert_eq!(shown(&run), expected, "after a restart");
    // A new list written first, taken up by a daemon that inherits the counters: each list
    // keeps its number, so its hits stay its own.
    let first =
        "[lists.admin]\ntcp_ports = [9090]\n[[lists.admin.entries]]\ncidr = \"198.18.9.0/24\"\n";
    let lab_config = lab_config.expect("written");
    write_atomically(&run.path, &nested_config(&lab_config, first));
    run.daemon.kill9();
    run.restart();
    assert_eq!(shown(&run), expected, "after a new list and a SIGKILL");
    assert_eq!(hits(&run, "admin", "198.18.9.0/24"), 0);
}
