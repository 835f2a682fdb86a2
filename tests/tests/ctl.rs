//! End-to-end tests of `allowlistctl` against the real `allowlistd`: every command and its
//! JSON, the refusals and their messages, comment-preserving edits of the config file,
//! concurrent changes, revision and on-disk conflicts, lockout protection, commit-confirmed
//! changes, access control on the control socket, misbehaving clients, and `test` agreeing
//! with real TCP connects. Each test builds its own lab (namespaces, veth, private bpffs,
//! daemon), removed when the test ends, even on failure.
//!
//! Needs root and the built binaries (`cargo xtask build`, then
//! `ALLOWLIST_BIN_DIR=target/debug cargo test -p allowlist-tests --test ctl`).
//!
//! Every `allowlistctl` runs with `SSH_CONNECTION` and `SSH_CLIENT` removed (or set
//! explicitly), so the caller address never depends on how the tests are run.

use std::io::Write as _;
use std::net::IpAddr;
use std::os::unix::fs::PermissionsExt as _;
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt as _;
use std::path::Path;
use std::process::Command;
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use allowlist_control::protocol;
use allowlist_tests::bpffs::TestDir;
use allowlist_tests::ctl::{Out, allowlistctl, ctl_command, ctl_command_with, run};
use allowlist_tests::daemon::{Config, with_top_level, write_atomically};
use allowlist_tests::fixture::Running;
use allowlist_tests::netns::{A4, A6, B4, B6, PROTECTED, UNPROTECTED, to};
use allowlist_tests::tcp::{self, assert_connects, assert_times_out};
use allowlist_tests::{require_root, running_fixture};
use serde_json::Value;

// ---------------------------------------------------------------------------------------
// The fixture
// ---------------------------------------------------------------------------------------

running_fixture!(Fx {});

/// The fixture's usual config: port 2222 protected, the lab's "allowed" clients listed.
fn standard(dir: &TestDir, iface: &str) -> Config {
    Config::new(dir, iface)
        .entry("198.18.1.0/24", "lab A")
        .entry("2001:db8::a", "lab A v6")
}

/// Everything the admin sees of the list, to show that a refused command changed nothing.
struct Snapshot {
    file: String,
    revision: u64,
    list: String,
}

impl Fx {
    /// Starts a daemon on the config text `build` writes for the test directory and the
    /// server's interface, and waits until it is ready. The control socket must be the
    /// harness's `<dir>/control.sock`.
    fn start(build: impl FnOnce(&TestDir, &str) -> String) -> Fx {
        Fx {
            run: Running::start(build),
        }
    }

    fn standard() -> Fx {
        Fx::start(|dir, iface| standard(dir, iface).render())
    }

    fn cmd(&self, args: &[&str]) -> Command {
        ctl_command(&self.socket, args)
    }

    /// `allowlistctl ARGS...` as uid and gid 65534, with the test directory (and so the
    /// socket) reachable for it. The binary is copied into the test directory first: the
    /// build tree may sit below a 0700 directory (CI clones into one), where uid 65534 could
    /// not even start it.
    fn cmd_as_nobody(&self, args: &[&str]) -> Command {
        std::fs::set_permissions(self.dir.path(), std::fs::Permissions::from_mode(0o711))
            .expect("chmod the test directory");
        let bin = self.dir.join("allowlistctl-as-nobody");
        if !bin.exists() {
            std::fs::copy(allowlistctl(), &bin).expect("copying allowlistctl");
            std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o755))
                .expect("chmod the copy of allowlistctl");
        }
        let mut cmd = ctl_command_with(&bin, &self.socket, args);
        cmd.current_dir("/").uid(65534).gid(65534);
        cmd
    }

    /// `allowlistctl ARGS...` with `KEY=VALUE` in its environment.
    fn ctl_env(&self, env: (&str, &str), args: &[&str]) -> Out {
        run(self.cmd(args).env(env.0, env.1))
    }

    #[track_caller]
    fn status(&self) -> Value {
        let json = self.ctl(&["--json", "status"]).ok().json();
        assert_eq!(json["kind"].as_str(), Some("status"));
        json
    }

    #[track_caller]
    fn revision(&self) -> u64 {
        self.status()["revision"].as_u64().unwrap()
    }

    /// `(cidr, comment, origin)` of every entry, from `list --json`.
    #[track_caller]
    fn entries(&self) -> Vec<(String, String, String)> {
        let json = self.ctl(&["--json", "list"]).ok().json();
        assert_eq!(json["kind"].as_str(), Some("list"));
        json["entries"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| {
                (
                    e["cidr"].as_str().unwrap().to_owned(),
                    e["comment"].as_str().unwrap().to_owned(),
                    e["origin"].as_str().unwrap().to_owned(),
                )
            })
            .collect()
    }

    #[track_caller]
    fn cidrs(&self) -> Vec<String> {
        self.entries().into_iter().map(|(c, _, _)| c).collect()
    }

    fn file(&self) -> String {
        std::fs::read_to_string(&self.path)
            .unwrap_or_else(|e| panic!("reading {}: {e}", self.path.display()))
    }

    /// `PATH:LINE` of the first line of `text` containing `needle` (as `list` shows origins).
    #[track_caller]
    fn origin(&self, text: &str, needle: &str) -> String {
        format!("{}:{}", self.path.display(), line_of(text, needle))
    }

    /// Asserts that `entries` (from [`Fx::entries`]) hold `cidr` with `comment`, its origin
    /// the line of `text` (the config file) where `"CIDR"` is written.
    #[track_caller]
    fn assert_listed(
        &self,
        entries: &[(String, String, String)],
        text: &str,
        cidr: &str,
        comment: &str,
    ) {
        let origin = self.origin(text, &format!("\"{cidr}\""));
        assert!(
            entries.contains(&entry(cidr, comment, &origin)),
            "{entries:?}"
        );
    }

    #[track_caller]
    fn snapshot(&self) -> Snapshot {
        Snapshot {
            file: self.file(),
            revision: self.revision(),
            list: self.ctl(&["--json", "list"]).ok().stdout.clone(),
        }
    }

    #[track_caller]
    fn assert_unchanged(&self, before: &Snapshot, after: &str) {
        assert_eq!(
            self.file(),
            before.file,
            "the config file changed after {after}"
        );
        assert_eq!(
            self.revision(),
            before.revision,
            "the revision changed after {after}"
        );
        assert_eq!(
            self.ctl(&["--json", "list"]).ok().stdout,
            before.list,
            "the list changed after {after}"
        );
    }

    /// Whether a real connect from `src` to `port` succeeds (`true`) or times out (`false`).
    fn connects(&self, src: IpAddr, port: u16) -> bool {
        let outcome = tcp::connect(self.client(), src, to(src, port), tcp::BLOCKED_PROBE);
        if outcome.is_connected() {
            true
        } else if outcome.is_timed_out() {
            false
        } else {
            panic!("{src} -> port {port}: neither connected nor timed out: {outcome}")
        }
    }
}

/// 1-based number of the first line of `text` containing `needle`.
#[track_caller]
fn line_of(text: &str, needle: &str) -> usize {
    text.lines()
        .position(|l| l.contains(needle))
        .map(|i| i + 1)
        .unwrap_or_else(|| panic!("no line contains {needle:?} in:\n{text}"))
}

fn entry(cidr: &str, comment: &str, origin: &str) -> (String, String, String) {
    (cidr.to_owned(), comment.to_owned(), origin.to_owned())
}

// ---------------------------------------------------------------------------------------
// 1. Each command and its JSON
// ---------------------------------------------------------------------------------------

#[test]
fn ctl_status_list_and_changes_with_their_json() {
    if !require_root("ctl_status_list_and_changes_with_their_json") {
        return;
    }
    let fx = Fx::start(|dir, iface| {
        let mut config = standard(dir, iface);
        config.protected_tcp_ports = vec![PROTECTED, 2223];
        config.render()
    });
    let path = fx.path.display().to_string();
    let text0 = fx.file();

    // Some traffic, so that the counters move.
    assert_connects(fx.client(), A4, to(A4, PROTECTED), "listed");
    assert_times_out(fx.client(), B4, to(B4, PROTECTED), "not listed");

    // status
    let s = fx.status();
    assert_eq!(s["active"].as_bool(), Some(true), "{s:?}");
    assert_eq!(s["entries"].as_u64(), Some(2));
    assert_eq!(s["entries_v4"].as_u64(), Some(1));
    assert_eq!(s["entries_v6"].as_u64(), Some(1));
    assert_eq!(
        s["capacity"].as_u64(),
        Some(1024),
        "the default max_entries"
    );
    let ports: Vec<Option<u64>> = s["protected_tcp_ports"]
        .as_array()
        .unwrap()
        .iter()
        .map(Value::as_u64)
        .collect();
    assert_eq!(ports, [Some(2222), Some(2223)]);
    let interfaces = s["interfaces"].as_array().unwrap();
    assert_eq!(interfaces.len(), 1, "{s:?}");
    assert_eq!(interfaces[0]["name"].as_str(), Some(fx.lab.server_if()));
    let mode = interfaces[0]["xdp_mode"].as_str().unwrap();
    assert!(
        mode == "driver" || mode == "generic",
        "attached in driver or generic mode, got {mode:?}"
    );
    assert_eq!(
        s["revision"].as_u64(),
        Some(1),
        "a fresh state_dir starts at revision 1"
    );
    assert_eq!(s["config"].as_str(), Some(path.as_str()));
    assert!(s["pending_confirmation"].is_null(), "{s:?}");
    assert!(
        s["dropped"].as_u64().unwrap() >= 1,
        "the blocked SYN was counted: {s:?}"
    );
    assert!(
        s["passed"].as_u64().unwrap() >= 1,
        "the allowed SYN was counted: {s:?}"
    );
    assert!(interfaces[0]["dropped"].as_u64().unwrap() >= 1, "{s:?}");
    assert!(s["uptime_secs"].as_u64().unwrap() < 600, "{s:?}");
    let counters = s["counters"].as_object().unwrap();
    assert!(!counters.is_empty(), "counters by reason: {s:?}");
    let by_reason: u64 = counters.iter().map(|(_, n)| n.as_u64().unwrap()).sum();
    assert_eq!(
        by_reason,
        s["passed"].as_u64().unwrap() + s["dropped"].as_u64().unwrap(),
        "the counters by reason add up to passed + dropped: {s:?}"
    );

    let out = fx.ctl(&["status"]);
    out.ok()
        .stdout_has("allowlist:  ACTIVE")
        .stdout_has("entries:    2 (1 IPv4, 1 IPv6); capacity 1024 per address family")
        .stdout_has("ports:      2222, 2223")
        .stdout_has(&format!("interface:  {} (XDP {mode})", fx.lab.server_if()))
        .stdout_has(&format!("revision:   1 ({path})"));

    // list: comments and where each entry is written; a single address shown as /128.
    let a_origin = fx.origin(&text0, "\"198.18.1.0/24\"");
    let a6_origin = fx.origin(&text0, "\"2001:db8::a\"");
    assert_eq!(
        fx.entries(),
        [
            entry("198.18.1.0/24", "lab A", &a_origin),
            entry("2001:db8::a/128", "lab A v6", &a6_origin),
        ]
    );
    let list = fx.ctl(&["--json", "list"]).ok().json();
    assert_eq!(list["revision"].as_u64(), Some(1));
    assert_eq!(list["active"].as_bool(), Some(true));
    let out = fx.ctl(&["list"]);
    out.ok().stdout_has("revision 1, active, 2 entries\n");
    let line = out
        .stdout
        .lines()
        .find(|l| l.starts_with("198.18.1.0/24"))
        .unwrap_or_else(|| panic!("no line for 198.18.1.0/24: {out}"));
    assert!(
        line.contains("  lab A  ") && line.contains(&format!("[{a_origin}]  hits ")),
        "{line}"
    );

    // add: a single address is stored as /32; IPv6 networks and addresses too.
    fx.ctl(&["add", "198.18.7.7", "--comment", "single host"])
        .ok()
        .stdout_has("add 198.18.7.7/32: +1 -0 entries, revision 2");
    let changed = fx
        .ctl(&["--json", "add", "2001:db8:5::/48", "--comment", "v6 net"])
        .ok()
        .json();
    assert_eq!(changed["kind"].as_str(), Some("changed"));
    assert_eq!(changed["revision"].as_u64(), Some(3));
    assert!(
        changed["summary"]
            .as_str()
            .is_some_and(|s| s.starts_with("add 2001:db8:5::/48: +1 -0 entries")),
        "{changed:?}"
    );
    assert!(changed["pending_confirmation"].is_null());
    fx.ctl(&["add", "2001:db8::c"])
        .ok()
        .stdout_has("add 2001:db8::c/128");
    let text = fx.file();
    for needle in [
        "cidr = \"198.18.7.7/32\"",
        "comment = \"single host\"",
        "cidr = \"2001:db8:5::/48\"",
        "cidr = \"2001:db8::c/128\"",
    ] {
        assert!(
            text.contains(needle),
            "the file should have {needle}:\n{text}"
        );
    }
    assert!(text.starts_with(&text0), "adding only appends:\n{text}");
    let entries = fx.entries();
    fx.assert_listed(&entries, &text, "198.18.7.7/32", "single host");
    fx.assert_listed(&entries, &text, "2001:db8:5::/48", "v6 net");
    fx.assert_listed(&entries, &text, "2001:db8::c/128", "");
    let out = fx.ctl(&["list"]);
    let line = out
        .stdout
        .lines()
        .find(|l| l.starts_with("2001:db8::c/128"))
        .unwrap_or_else(|| panic!("{out}"));
    assert!(line.contains("  -  "), "no comment shows as `-`: {line}");
    let s = fx.status();
    assert_eq!(
        (
            s["entries"].as_u64(),
            s["entries_v4"].as_u64(),
            s["entries_v6"].as_u64()
        ),
        (Some(5), Some(2), Some(3))
    );
    fx.ctl(&["test", "198.18.7.7", "--port", "2222"])
        .ok()
        .stdout_has("allowed by 198.18.7.7/32 (single host)");

    // edit: --cidr and --comment
    fx.ctl(&[
        "edit",
        "198.18.7.7/32",
        "--cidr",
        "198.18.7.0/24",
        "--comment",
        "lab G",
    ])
    .ok()
    .stdout_has("edit 198.18.7.7/32 -> 198.18.7.0/24: ");
    fx.ctl(&["edit", "2001:db8::c", "--comment", "host C"])
        .ok()
        .stdout_has("edit 2001:db8::c/128: ");
    let text = fx.file();
    let entries = fx.entries();
    fx.assert_listed(&entries, &text, "198.18.7.0/24", "lab G");
    fx.assert_listed(&entries, &text, "2001:db8::c/128", "host C");
    assert!(
        !text.contains("198.18.7.7") && !text.contains("single host"),
        "{text}"
    );
    assert!(text.contains("comment = \"lab G\""), "{text}");
    assert_eq!(fx.revision(), 6);

    // remove
    fx.ctl(&["remove", "198.18.7.0/24"])
        .ok()
        .stdout_has("remove 198.18.7.0/24: +0 -1 entries, revision 7");
    assert!(!fx.cidrs().contains(&"198.18.7.0/24".to_owned()));
    assert!(!fx.file().contains("198.18.7.0"), "{}", fx.file());

    // deactivate / activate
    fx.ctl(&["deactivate"]).ok().stdout_has("now inactive");
    assert_eq!(fx.status()["active"].as_bool(), Some(false));
    assert!(fx.file().contains("active = false"), "{}", fx.file());
    fx.ctl(&["list"]).ok().stdout_has(", inactive, ");
    fx.ctl(&["status"]).ok().stdout_has("allowlist:  INACTIVE");
    fx.ctl(&["test", "198.18.2.2", "--port", "2222"])
        .ok()
        .stdout_has("198.18.2.2 port 2222: allowed: the list is inactive");
    assert_connects(fx.client(), B4, to(B4, PROTECTED), "the list is inactive");
    fx.ctl(&["activate"]).ok().stdout_has("now active");
    assert_eq!(fx.status()["active"].as_bool(), Some(true));
    assert!(fx.file().contains("active = true"), "{}", fx.file());
    assert_eq!(fx.revision(), 9);

    // test
    let out = fx.ctl(&["test", "198.18.1.2", "--port", "2222"]);
    out.ok();
    assert_eq!(
        out.stdout,
        "198.18.1.2 port 2222: allowed by 198.18.1.0/24 (lab A)\n"
    );
    let out = fx.ctl(&["test", "198.18.2.2", "--port", "2222"]);
    out.code(1);
    assert_eq!(
        out.stdout,
        "198.18.2.2 port 2222: blocked: no entry covers 198.18.2.2; port 2222 is protected; list active\n"
    );
    let out = fx.ctl(&["test", "198.18.2.2", "--port", "8080"]);
    out.ok();
    assert_eq!(
        out.stdout,
        "198.18.2.2 port 8080: allowed: port 8080 is not protected\n"
    );
    let out = fx.ctl(&["test", "198.18.2.2"]);
    out.code(1);
    assert_eq!(
        out.stdout,
        "198.18.2.2 port 2222: blocked: no entry covers 198.18.2.2; port 2222 is protected; list active\n\
         198.18.2.2 port 2223: blocked: no entry covers 198.18.2.2; port 2223 is protected; list active\n",
        "one line per protected port"
    );
    let out = fx.ctl(&["test", "198.18.1.2"]);
    out.ok();
    assert_eq!(
        out.stdout,
        "198.18.1.2 port 2222: allowed by 198.18.1.0/24 (lab A)\n\
         198.18.1.2 port 2223: allowed by 198.18.1.0/24 (lab A)\n"
    );
    fx.ctl(&["test", "2001:db8::a", "--port", "2222"])
        .ok()
        .stdout_has("2001:db8::a port 2222: allowed by 2001:db8::a/128 (lab A v6)");
    fx.ctl(&["test", "2001:db8::b", "--port", "2222"])
        .code(1)
        .stdout_has("blocked: no entry covers 2001:db8::b; port 2222 is protected");
    // The kernel judges IPv4-mapped sources as IPv4; `test` says the same.
    fx.ctl(&["test", "::ffff:198.18.1.2", "--port", "2222"])
        .ok()
        .stdout_has("allowed by 198.18.1.0/24 (lab A)");
    fx.ctl(&["test", "not-an-ip"])
        .refused("`not-an-ip` is not an IP address");
    let t = fx
        .ctl(&["--json", "test", "198.18.1.2", "--port", "2222"])
        .ok()
        .json();
    assert_eq!(t["kind"].as_str(), Some("test"));
    assert_eq!(t["ip"].as_str(), Some("198.18.1.2"));
    assert_eq!(t["active"].as_bool(), Some(true));
    let v = &t["verdicts"][0];
    assert_eq!(t["verdicts"].as_array().unwrap().len(), 1);
    assert_eq!(v["port"].as_u64(), Some(2222));
    assert_eq!(
        (v["protected"].as_bool(), v["allowed"].as_bool()),
        (Some(true), Some(true)),
        "{t:?}"
    );
    assert_eq!(v["entry"]["cidr"].as_str(), Some("198.18.1.0/24"));
    assert_eq!(v["entry"]["comment"].as_str(), Some("lab A"));
    assert_eq!(
        v["explanation"].as_str(),
        Some("allowed by 198.18.1.0/24 (lab A)")
    );
    let t = fx
        .ctl(&["--json", "test", "198.18.2.2", "--port", "8080"])
        .ok()
        .json();
    let v = &t["verdicts"][0];
    assert_eq!(
        (v["protected"].as_bool(), v["allowed"].as_bool()),
        (Some(false), Some(true)),
        "{t:?}"
    );
    assert!(v["entry"].is_null(), "{t:?}");
    let t = fx
        .ctl(&["--json", "test", "198.18.2.2", "--port", "2222"])
        .code(1)
        .json();
    let v = &t["verdicts"][0];
    assert_eq!(
        (v["protected"].as_bool(), v["allowed"].as_bool()),
        (Some(true), Some(false)),
        "{t:?}"
    );

    // reload --dry-run and reload, after an edit by hand: one entry added, one removed.
    let before = fx.file();
    let v6_block = "\n[[entries]]\ncidr = \"2001:db8::a\"\ncomment = \"lab A v6\"\n";
    assert!(before.contains(v6_block), "{before}");
    let hand = before.replacen(v6_block, "", 1)
        + "\n[[entries]]\ncidr = \"198.18.8.0/24\"\ncomment = \"lab H\"\n";
    write_atomically(&fx.path, &hand);
    let rev = fx.revision();
    let list_before = fx.entries();
    let out = fx.ctl(&["reload", "--dry-run"]);
    out.ok();
    assert_eq!(
        out.stdout,
        format!(
            "+ 198.18.8.0/24  lab H  [{}]\n- 2001:db8::a/128  lab A v6  [{}]\nwould apply +1 -1 entries (dry run: nothing changed)\n",
            fx.origin(&hand, "\"198.18.8.0/24\""),
            fx.origin(&before, "\"2001:db8::a\""),
        )
    );
    let dry = fx.ctl(&["--json", "reload", "--dry-run"]).ok().json();
    assert_eq!(dry["kind"].as_str(), Some("reload"));
    assert_eq!(dry["dry_run"].as_bool(), Some(true));
    assert_eq!(dry["revision"].as_u64(), Some(rev));
    assert_eq!(dry["added"][0]["cidr"].as_str(), Some("198.18.8.0/24"));
    assert_eq!(dry["removed"][0]["cidr"].as_str(), Some("2001:db8::a/128"));
    assert_eq!(fx.file(), hand, "a dry run does not touch the file");
    assert_eq!(fx.revision(), rev, "a dry run does not move the revision");
    assert_eq!(
        fx.entries(),
        list_before,
        "a dry run does not change the list"
    );
    fx.ctl(&["test", "2001:db8::a", "--port", "2222"]).ok();

    let out = fx.ctl(&["reload"]);
    out.ok()
        .stdout_has("+ 198.18.8.0/24  lab H  [")
        .stdout_has("- 2001:db8::a/128  lab A v6  [")
        .stdout_has(&format!("+1 -1 entries, revision {}", rev + 1));
    assert!(!out.stdout.contains("dry run"), "{out}");
    assert_eq!(fx.revision(), rev + 1);
    let cidrs = fx.cidrs();
    assert!(
        cidrs.contains(&"198.18.8.0/24".to_owned())
            && !cidrs.contains(&"2001:db8::a/128".to_owned()),
        "{cidrs:?}"
    );
    assert_eq!(
        fx.file(),
        hand,
        "reload reads the file, it does not rewrite it"
    );
    fx.ctl(&["test", "2001:db8::a", "--port", "2222"]).code(1);
}

// ---------------------------------------------------------------------------------------
// 2. Refusals, and that they change nothing
// ---------------------------------------------------------------------------------------

#[test]
fn ctl_refusals_name_the_problem_and_change_nothing() {
    if !require_root("ctl_refusals_name_the_problem_and_change_nothing") {
        return;
    }
    let fx = Fx::standard();
    let before = fx.snapshot();
    let cases: &[(&[&str], &str)] = &[
        (
            &["add", "198.18.2.5/24"],
            "host bits set; did you mean 198.18.2.0/24?",
        ),
        (&["add", "198.18.1.0/33"], "prefix longer than 32"),
        (&["add", "2001:db8::/129"], "prefix longer than 128"),
        (&["add", "*"], "allows everyone"),
        (&["add", "0.0.0.0/0"], "allows everyone"),
        (&["add", "::/0"], "allows everyone"),
        (&["add", "garbage"], "not an IP address or CIDR"),
        (
            &["add", "198.18.1.0/24"],
            "`198.18.1.0/24` is already listed",
        ),
        (
            &["add", "2001:db8::a/128"],
            "`2001:db8::a/128` is already listed",
        ),
        (
            &["add", "198.18.1.7"],
            "`198.18.1.7/32` is already covered by 198.18.1.0/24",
        ),
        (
            &["add", "198.18.0.0/16"],
            "would cover the existing entry 198.18.1.0/24",
        ),
        (
            &["add", "198.18.4.0/24", "--comment", "two\nlines"],
            "control character",
        ),
        (&["add", "--current"], "--current needs your address"),
        (
            &["edit", "198.18.9.0/24", "--comment", "x"],
            "no entry `198.18.9.0/24`",
        ),
        (&["remove", "198.18.9.0/24"], "no entry `198.18.9.0/24`"),
        (&["remove", "garbage"], "not an IP address or CIDR"),
        (&["edit", "198.18.1.0/24"], "nothing to change"),
        (
            &["edit", "198.18.1.0/24", "--cidr", "198.18.2.5/24"],
            "did you mean 198.18.2.0/24?",
        ),
        (
            &["edit", "198.18.1.0/24", "--cidr", "2001:db8::/32"],
            "would cover the existing entry 2001:db8::a/128",
        ),
        (&["confirm"], "nothing awaits confirmation"),
    ];
    for (args, needle) in cases {
        let out = fx.ctl(args);
        out.refused(needle);
        fx.assert_unchanged(&before, &out.shown);
    }

    // With --json the refusal is also on stdout, as an object.
    let out = fx.ctl(&["--json", "add", "198.18.2.5/24"]);
    out.code(2).stderr_has("did you mean 198.18.2.0/24?");
    let json = out.json();
    assert_eq!(json["error"]["kind"].as_str(), Some("invalid"), "{out}");
    assert!(
        json["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("did you mean 198.18.2.0/24?")),
        "{out}"
    );
    fx.assert_unchanged(&before, "add --json");

    // Bad arguments never reach the daemon (clap's own exit code is 2 too).
    fx.ctl(&["add", "198.18.4.0/24", "--confirm-within", "0s"])
        .code(2);
    fx.ctl(&["frobnicate"]).code(2);
    fx.assert_unchanged(&before, "bad arguments");
}

#[test]
fn ctl_capacity_is_per_address_family() {
    if !require_root("ctl_capacity_is_per_address_family") {
        return;
    }
    let fx = Fx::start(|dir, iface| {
        let text = Config::new(dir, iface)
            .entry("198.18.1.0/24", "lab A")
            .entry("198.18.5.0/24", "lab E")
            .entry("2001:db8::a", "lab A v6")
            .render();
        with_top_level(&text, "max_entries = 2\n")
    });
    let s = fx.status();
    assert_eq!(s["capacity"].as_u64(), Some(2));
    let before = fx.snapshot();
    fx.ctl(&["add", "198.18.6.0/24"])
        .refused("3 IPv4 entries but max_entries = 2");
    fx.assert_unchanged(&before, "add beyond capacity");

    // The other family has room of its own.
    fx.ctl(&["add", "2001:db8::b"]).ok();
    let before = fx.snapshot();
    fx.ctl(&["add", "2001:db8::c"])
        .refused("3 IPv6 entries but max_entries = 2");
    fx.assert_unchanged(&before, "add beyond the IPv6 capacity");
}

// ---------------------------------------------------------------------------------------
// 3. Comments and formatting survive, byte for byte
// ---------------------------------------------------------------------------------------

/// Splits `new` into what it shares with `old` at the start and at the end, and what was
/// inserted between; `None` unless `new` is exactly `old` with one contiguous insertion.
fn insertion<'a>(old: &str, new: &'a str) -> Option<(usize, &'a str)> {
    let prefix = old
        .bytes()
        .zip(new.bytes())
        .take_while(|(a, b)| a == b)
        .count();
    let room = old.len().min(new.len()) - prefix;
    let suffix = old
        .bytes()
        .rev()
        .zip(new.bytes().rev())
        .take(room)
        .take_while(|(a, b)| a == b)
        .count();
    (prefix + suffix == old.len()).then(|| (prefix, &new[prefix..new.len() - suffix]))
}

#[test]
fn ctl_edits_keep_comments_and_formatting_byte_for_byte() {
    if !require_root("ctl_edits_keep_comments_and_formatting_byte_for_byte") {
        return;
    }
    // Comments everywhere, odd spacing and key order, a literal string, and no newline at
    // the end of the file.
    let fx = Fx::start(|dir, iface| {
        format!(
            r#"# allowlist for the ctl comment test
{tab}# an indented comment; odd spacing and key order follow

protected_tcp_ports = [ 2222 ]   # the lab's ssh port
active=true
state_dir   = "{state}"
interfaces = [ "{iface}" ]  # the server side of the veth
bpffs_dir = "{bpffs}"
audit_log= "{audit}"
control_socket = "{socket}"

# ---- entries ----

[[entries]]
comment = "lab A"     # comment first
cidr    =   "198.18.1.0/24"  # the lab network

# the v6 host
[[entries]]
cidr = "2001:db8::a"
comment='single quotes'

[[entries]]
cidr = "198.18.5.0/24"
comment = "to be removed"   # temporary

# trailing comment, and no newline at the end"#,
            tab = "\t",
            state = dir.join("state").display(),
            iface = iface,
            bpffs = dir.pin_dir().display(),
            audit = dir.join("audit.log").display(),
            socket = dir.join("control.sock").display(),
        )
    });
    let f0 = fx.file();

    // add: the original bytes stay, the new table is one insertion after the last entry.
    fx.ctl(&["add", "198.18.6.0/24", "--comment", "added by ctl"])
        .ok();
    let f1 = fx.file();
    let (at, inserted) = insertion(&f0, &f1).unwrap_or_else(|| {
        panic!("add should only insert a table; before:\n{f0}\n--- after:\n{f1}")
    });
    assert_eq!(
        inserted.trim(),
        "[[entries]]\ncidr = \"198.18.6.0/24\"\ncomment = \"added by ctl\"",
        "after:\n{f1}"
    );
    let last_entry_end = f0.find("# temporary\n").unwrap() + "# temporary\n".len();
    assert!(
        at >= last_entry_end,
        "the new table goes after the last entry:\n{f1}"
    );

    // edit a comment: only the value changes, its spacing and trailing comment stay.
    fx.ctl(&["edit", "198.18.1.0/24", "--comment", "lab A, edited"])
        .ok();
    let f2 = fx.file();
    assert_eq!(
        f2,
        f1.replacen(
            "comment = \"lab A\"     # comment first",
            "comment = \"lab A, edited\"     # comment first",
            1
        )
    );

    // edit a network.
    fx.ctl(&["edit", "198.18.5.0/24", "--cidr", "198.18.4.0/24"])
        .ok();
    let f3 = fx.file();
    assert_eq!(
        f3,
        f2.replacen("cidr = \"198.18.5.0/24\"", "cidr = \"198.18.4.0/24\"", 1)
    );

    // edit the comment written as a literal string without spaces around `=`.
    fx.ctl(&["edit", "2001:db8::a", "--comment", "v6, edited"])
        .ok();
    let f4 = fx.file();
    assert_eq!(
        f4,
        f3.replacen("comment='single quotes'", "comment=\"v6, edited\"", 1)
    );

    // remove: exactly that table goes.
    fx.ctl(&["remove", "198.18.4.0/24"]).ok();
    let f5 = fx.file();
    let table =
        "\n[[entries]]\ncidr = \"198.18.4.0/24\"\ncomment = \"to be removed\"   # temporary\n";
    assert!(f4.contains(table), "{f4}");
    assert_eq!(f5, f4.replacen(table, "", 1));

    // Every entry's origin follows the edits.
    assert_eq!(
        fx.entries(),
        [
            entry(
                "198.18.1.0/24",
                "lab A, edited",
                &fx.origin(&f5, "\"198.18.1.0/24\"")
            ),
            entry(
                "2001:db8::a/128",
                "v6, edited",
                &fx.origin(&f5, "\"2001:db8::a\"")
            ),
            entry(
                "198.18.6.0/24",
                "added by ctl",
                &fx.origin(&f5, "\"198.18.6.0/24\"")
            ),
        ]
    );

    // remove the first entry: the section comment above it, set off by a blank line, is
    // not part of that entry and stays.
    fx.ctl(&["remove", "198.18.1.0/24"]).ok();
    let f6 = fx.file();
    let first = "[[entries]]\ncomment = \"lab A, edited\"     # comment first\ncidr    =   \"198.18.1.0/24\"  # the lab network\n\n";
    assert!(f5.contains(first), "{f5}");
    assert!(
        f6.contains("# ---- entries ----\n\n"),
        "removing the first entry deleted the section comment above it (separated by a blank \
         line); before:\n{f5}\n--- after:\n{f6}"
    );
    assert_eq!(f6, f5.replacen(first, "", 1));
}

// ---------------------------------------------------------------------------------------
// 4. Concurrent changes
// ---------------------------------------------------------------------------------------

#[test]
fn ctl_concurrent_adds_all_apply_one_revision_each() {
    if !require_root("ctl_concurrent_adds_all_apply_one_revision_each") {
        return;
    }
    const N: usize = 20;
    let fx = Fx::standard();
    let r0 = fx.revision();
    let barrier = Arc::new(Barrier::new(N));
    let outs: Vec<Out> = std::thread::scope(|s| {
        let handles: Vec<_> = (1..=N)
            .map(|i| {
                let barrier = Arc::clone(&barrier);
                let mut cmd = fx.cmd(&[
                    "--json",
                    "add",
                    &format!("198.18.3.{i}"),
                    "--comment",
                    &format!("concurrent {i}"),
                ]);
                s.spawn(move || {
                    barrier.wait();
                    run(&mut cmd)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let mut revisions = Vec::new();
    for out in &outs {
        let json = out.ok().json();
        revisions.push(json["revision"].as_u64().unwrap());
    }
    revisions.sort_unstable();
    let expected: Vec<u64> = (r0 + 1..=r0 + N as u64).collect();
    assert_eq!(
        revisions, expected,
        "each add reports its own revision, one step each"
    );
    assert_eq!(fx.revision(), r0 + N as u64);
    let entries = fx.entries();
    let text = fx.file();
    for i in 1..=N {
        let cidr = format!("198.18.3.{i}/32");
        assert!(
            entries
                .iter()
                .any(|(c, comment, _)| *c == cidr && *comment == format!("concurrent {i}")),
            "{cidr} missing from the list: {entries:?}"
        );
        assert!(
            text.contains(&format!("cidr = \"{cidr}\"")),
            "{cidr} missing from the file:\n{text}"
        );
    }
    assert_eq!(entries.len(), 2 + N);
}

// ---------------------------------------------------------------------------------------
// 5. Revision and on-disk conflicts
// ---------------------------------------------------------------------------------------

#[test]
fn ctl_if_revision_and_hand_edits_conflict() {
    if !require_root("ctl_if_revision_and_hand_edits_conflict") {
        return;
    }
    let fx = Fx::standard();
    let r = fx.revision();
    let rs = r.to_string();
    fx.ctl(&["add", "198.18.4.0/24", "--if-revision", &rs]).ok();
    assert_eq!(fx.revision(), r + 1);

    let before = fx.snapshot();
    fx.ctl(&["add", "198.18.5.0/24", "--if-revision", &rs])
        .refused(&format!("the list is at revision {}, not {r}", r + 1));
    fx.ctl(&["remove", "198.18.4.0/24", "--if-revision", &rs])
        .refused(&format!("not {r}"));
    fx.assert_unchanged(&before, "stale --if-revision");

    // An edit by hand, without SIGHUP.
    let hand = fx.file()
        + "\n# edited by hand\n[[entries]]\ncidr = \"198.18.6.0/24\"\ncomment = \"by hand\"\n";
    write_atomically(&fx.path, &hand);
    let msg = "config changed on disk; run `allowlistctl reload` first";
    for args in [
        &["add", "198.18.7.0/24"][..],
        &["remove", "198.18.4.0/24"],
        &["edit", "198.18.4.0/24", "--comment", "x"],
        &["deactivate"],
    ] {
        let out = fx.ctl(args);
        out.refused(msg);
        assert_eq!(fx.file(), hand, "the hand edit survives {}", out.shown);
        assert_eq!(fx.revision(), r + 1);
    }
    let cidrs = fx.cidrs();
    assert!(
        !cidrs.contains(&"198.18.6.0/24".to_owned())
            && !cidrs.contains(&"198.18.7.0/24".to_owned()),
        "{cidrs:?}"
    );

    fx.ctl(&["reload"])
        .ok()
        .stdout_has("+ 198.18.6.0/24  by hand  [");
    fx.ctl(&["add", "198.18.7.0/24", "--comment", "after reload"])
        .ok();
    let text = fx.file();
    assert!(text.starts_with(&hand), "the hand edit is kept:\n{text}");
    assert!(text.contains("cidr = \"198.18.7.0/24\""), "{text}");
    let cidrs = fx.cidrs();
    assert!(
        cidrs.contains(&"198.18.6.0/24".to_owned()) && cidrs.contains(&"198.18.7.0/24".to_owned()),
        "{cidrs:?}"
    );
    assert_eq!(fx.revision(), r + 3);
}

// ---------------------------------------------------------------------------------------
// 6. Lockout protection
// ---------------------------------------------------------------------------------------

#[test]
fn ctl_refuses_changes_that_lock_the_caller_out() {
    if !require_root("ctl_refuses_changes_that_lock_the_caller_out") {
        return;
    }
    let fx = Fx::standard();
    let before = fx.snapshot();
    let refusal = "refused: `remove 198.18.1.0/24` would block your own address 198.18.1.2 on port 2222; run `allowlistctl edit 198.18.1.0/24 --cidr 198.18.1.2/32` instead (it narrows the entry to your address in one change, keeping its comment), or pass --force";

    let out = fx.ctl(&["remove", "198.18.1.0/24", "--current-ip", "198.18.1.2"]);
    out.refused(refusal);
    assert_eq!(
        fx.ctl_env(
            ("SSH_CONNECTION", "198.18.1.2 50000 198.18.0.1 2222"),
            &["remove", "198.18.1.0/24"]
        )
        .refused(refusal)
        .stderr,
        out.stderr,
        "SSH_CONNECTION gives the same refusal"
    );
    fx.ctl_env(
        ("SSH_CLIENT", "198.18.1.2 50000 2222"),
        &["remove", "198.18.1.0/24"],
    )
    .refused(refusal);
    fx.ctl(&[
        "edit",
        "198.18.1.0/24",
        "--cidr",
        "198.18.3.0/24",
        "--current-ip",
        "198.18.1.2",
    ])
    .refused("would block your own address 198.18.1.2 on port 2222");
    fx.assert_unchanged(&before, "the lockout refusals");

    fx.ctl(&[
        "remove",
        "198.18.1.0/24",
        "--current-ip",
        "198.18.1.2",
        "--force",
    ])
    .ok()
    .stdout_has("remove 198.18.1.0/24");
    assert!(!fx.cidrs().contains(&"198.18.1.0/24".to_owned()));
    assert!(!fx.file().contains("198.18.1.0/24"));

    // Activating while the caller is not covered.
    fx.ctl(&["deactivate"]).ok();
    let before = fx.snapshot();
    fx.ctl(&["activate", "--current-ip", "198.18.9.9"])
        .refused("would block your own address 198.18.9.9 on port 2222; run `allowlistctl activate --add-current --current-ip 198.18.9.9` instead");
    fx.assert_unchanged(&before, "activate while uncovered");
    assert_eq!(fx.status()["active"].as_bool(), Some(false));

    fx.ctl(&["activate", "--add-current", "--current-ip", "198.18.9.9"])
        .ok();
    assert_eq!(fx.status()["active"].as_bool(), Some(true));
    let text = fx.file();
    assert!(text.contains("cidr = \"198.18.9.9/32\""), "{text}");
    assert!(
        fx.entries()
            .iter()
            .any(|(c, comment, _)| c == "198.18.9.9/32"
                && comment == "added by activate --add-current"),
        "{:?}",
        fx.entries()
    );

    fx.ctl(&["add", "--current", "--current-ip", "198.18.9.10"])
        .ok()
        .stdout_has("add 198.18.9.10/32");
    fx.ctl_env(
        ("SSH_CONNECTION", "198.18.9.11 50000 198.18.0.1 2222"),
        &["add", "--current"],
    )
    .ok()
    .stdout_has("add 198.18.9.11/32");
    let cidrs = fx.cidrs();
    for c in ["198.18.9.9/32", "198.18.9.10/32", "198.18.9.11/32"] {
        assert!(cidrs.contains(&c.to_owned()), "{c} missing: {cidrs:?}");
    }
}

/// The `allowlistctl ...` commands a refusal suggests, in order, as argument lists.
fn suggested(out: &Out) -> Vec<Vec<String>> {
    let commands: Vec<Vec<String>> = out
        .stderr
        .split('`')
        .skip(1)
        .step_by(2)
        .filter_map(|quoted| quoted.strip_prefix("allowlistctl "))
        .map(|args| args.split_whitespace().map(str::to_owned).collect())
        .collect();
    assert!(!commands.is_empty(), "no command suggested: {out}");
    commands
}

/// Runs what the lockout refusal `out` suggests, from the same SSH session.
#[track_caller]
fn follow(fx: &Fx, ssh: (&str, &str), out: &Out) {
    for args in suggested(out) {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        fx.ctl_env(ssh, &args).ok();
    }
}

/// Whatever a lockout refusal suggests is accepted, keeps the admin's address allowed (in
/// the maps and for a real connect) and does what the refused command meant.
#[test]
fn ctl_lockout_advice_can_be_followed() {
    if !require_root("ctl_lockout_advice_can_be_followed") {
        return;
    }
    let fx = Fx::standard();
    let ssh = ("SSH_CONNECTION", "198.18.1.2 50000 198.18.0.1 2222");
    let still_allowed = |after: &str| {
        fx.ctl(&["test", "198.18.1.2", "--port", "2222"])
            .ok()
            .stdout_has("allowed");
        assert!(
            fx.connects(A4, PROTECTED),
            "198.18.1.2 blocked after {after}"
        );
    };

    // Removing the wide entry that covers the admin: narrowed to the admin's address.
    let out = fx.ctl_env(ssh, &["remove", "198.18.1.0/24"]);
    out.refused("would block your own address 198.18.1.2");
    follow(&fx, ssh, &out);
    still_allowed("following the advice for remove");
    let entries = fx.entries();
    assert!(
        !entries.iter().any(|(c, _, _)| c == "198.18.1.0/24"),
        "the wide entry is gone: {entries:?}"
    );
    assert!(
        entries
            .iter()
            .any(|(c, comment, _)| c == "198.18.1.2/32" && comment == "lab A"),
        "{entries:?}"
    );

    // Editing the admin's own entry away: the new network is added beside it.
    let out = fx.ctl_env(ssh, &["edit", "198.18.1.2/32", "--cidr", "198.18.3.0/24"]);
    out.refused("would block your own address 198.18.1.2");
    follow(&fx, ssh, &out);
    still_allowed("following the advice for editing the own entry");
    let cidrs = fx.cidrs();
    assert!(cidrs.contains(&"198.18.3.0/24".to_owned()), "{cidrs:?}");

    // Removing it outright needs --force: nothing else would do what was asked.
    fx.ctl_env(ssh, &["remove", "198.18.1.2/32"])
        .refused("that entry is your own address: pass --force to remove it anyway");

    // Moving a wide entry that covers the admin elsewhere: narrowed, then the new one added.
    fx.ctl_env(ssh, &["remove", "198.18.1.2/32", "--force"])
        .ok();
    fx.ctl(&["add", "198.18.1.0/24", "--comment", "lab-A"]).ok();
    let out = fx.ctl_env(ssh, &["edit", "198.18.1.0/24", "--cidr", "198.18.4.0/24"]);
    out.refused("would block your own address 198.18.1.2");
    follow(&fx, ssh, &out);
    still_allowed("following the advice for edit --cidr");
    let cidrs = fx.cidrs();
    for c in ["198.18.1.2/32", "198.18.3.0/24", "198.18.4.0/24"] {
        assert!(cidrs.contains(&c.to_owned()), "{c} missing: {cidrs:?}");
    }
    assert!(!cidrs.contains(&"198.18.1.0/24".to_owned()), "{cidrs:?}");

    // Activating while uncovered: --add-current, in the same change.
    fx.ctl_env(ssh, &["remove", "198.18.1.2/32", "--force"])
        .ok();
    fx.ctl(&["deactivate"]).ok();
    let out = fx.ctl_env(ssh, &["activate", "--kill-unlisted"]);
    out.refused("would block your own address 198.18.1.2");
    follow(&fx, ssh, &out);
    assert_eq!(fx.status()["active"].as_bool(), Some(true));
    still_allowed("following the advice for activate");
}

/// Entries from list files are the admin's own files: `edit` and `remove` refuse them,
/// naming the file and line, and the advice (edit the file, reload) works.
#[test]
fn ctl_list_file_entries_are_edited_in_their_file() {
    if !require_root("ctl_list_file_entries_are_edited_in_their_file") {
        return;
    }
    let fx = Fx::start(|dir, iface| {
        write_atomically(
            &dir.join("partners.list"),
            "198.18.4.0/24  # partner A\n198.18.5.0/24  # partner B\n",
        );
        with_top_level(
            &standard(dir, iface).render(),
            "list_files = [\"partners.list\"]\n",
        )
    });
    let list = fx.dir.join("partners.list");
    let before = fx.snapshot();
    let refusal = format!(
        "`198.18.5.0/24` comes from the list file {}:2; edit that file and run `allowlistctl reload`",
        list.display()
    );
    fx.ctl(&["edit", "198.18.5.0/24", "--comment", "renamed"])
        .refused(&refusal);
    fx.ctl(&["edit", "198.18.5.0/24", "--cidr", "198.18.6.0/24"])
        .refused(&refusal);
    fx.ctl(&["remove", "198.18.5.0/24"]).refused(&refusal);
    fx.assert_unchanged(&before, "changes to a list-file entry");
    assert_eq!(
        std::fs::read_to_string(&list).unwrap(),
        "198.18.4.0/24  # partner A\n198.18.5.0/24  # partner B\n"
    );

    write_atomically(&list, "198.18.4.0/24  # partner A\n");
    fx.ctl(&["reload"]).ok();
    let cidrs = fx.cidrs();
    assert!(cidrs.contains(&"198.18.4.0/24".to_owned()), "{cidrs:?}");
    assert!(!cidrs.contains(&"198.18.5.0/24".to_owned()), "{cidrs:?}");
}

/// Counts take the right noun, `list` lines up its columns, durations read `1d 2h`.
#[test]
fn ctl_wording_counts_columns_and_durations() {
    if !require_root("ctl_wording_counts_columns_and_durations") {
        return;
    }
    let fx = Fx::standard();
    fx.ctl(&["remove", "2001:db8::a/128"]).ok();
    fx.ctl(&["list"]).ok().stdout_has(", active, 1 entry\n");
    fx.ctl(&["edit", "198.18.1.0/24", "--comment", "lab A, ground floor"])
        .ok()
        .stdout_has("+0 -0 entries, 1 comment changed, revision");
    fx.ctl(&["add", "198.18.20.0/24", "--comment", "B"]).ok();
    fx.ctl(&["add", "2001:db8:7::/48"]).ok();

    let list = fx.ctl(&["list"]).ok().stdout.clone();
    let lines: Vec<&str> = list.lines().skip(1).collect();
    assert_eq!(lines.len(), 3, "{list}");
    let column = |needle: &str| -> Vec<usize> {
        lines
            .iter()
            .map(|l| {
                let at = l
                    .find(needle)
                    .unwrap_or_else(|| panic!("{needle:?} in {l:?}"));
                l[..at].chars().count()
            })
            .collect()
    };
    for needle in [" [", "  hits "] {
        let at = column(needle);
        assert!(
            at.iter().all(|&c| c == at[0]),
            "{needle:?} should start at one column, not {at:?}:\n{list}"
        );
    }

    fx.ctl(&[
        "emergency-disable",
        "--reason",
        "wording test",
        "--for",
        "24h",
    ])
    .ok()
    .stdout_has(" (1d): new connections from any source are let in");
    fx.ctl(&["status"]).ok().stdout_has("(23h 59m ");
    fx.ctl(&["emergency-end"]).ok();
    fx.ctl(&[
        "emergency-disable",
        "--reason",
        "wording test",
        "--for",
        "25h",
    ])
    .refused("1d 1h is longer than 24h");
}

// ---------------------------------------------------------------------------------------
// 7. Commit-confirmed changes
// ---------------------------------------------------------------------------------------

#[test]
fn ctl_confirm_within_rolls_back_unless_confirmed() {
    if !require_root("ctl_confirm_within_rolls_back_unless_confirmed") {
        return;
    }
    let fx = Fx::start(|dir, iface| {
        Config::new(dir, iface)
            .entry("198.18.1.0/24", "lab A")
            .render()
    });
    let f0 = fx.file();
    let r0 = fx.revision();
    assert_times_out(fx.client(), B4, to(B4, PROTECTED), "not listed yet");

    // Not confirmed: rolled back.
    let t0 = Instant::now();
    fx.ctl(&[
        "add",
        "198.18.2.0/24",
        "--comment",
        "lab B, on trial",
        "--confirm-within",
        "3s",
    ])
    .ok()
    .stdout_has("add 198.18.2.0/24: +1 -0 entries")
    .stdout_has("pending:    `add 198.18.2.0/24` rolls back in ")
    .stdout_has("unless you run `allowlistctl confirm`");
    assert_connects(
        fx.client(),
        B4,
        to(B4, PROTECTED),
        "added, pending confirmation",
    );
    let s = fx.status();
    let pending = &s["pending_confirmation"];
    assert_eq!(
        pending["change"].as_str(),
        Some("add 198.18.2.0/24"),
        "{s:?}"
    );
    assert!(pending["rollback_in_secs"].as_u64().unwrap() <= 3, "{s:?}");
    fx.ctl(&["status"])
        .ok()
        .stdout_has("pending:    `add 198.18.2.0/24` rolls back in");
    assert!(fx.cidrs().contains(&"198.18.2.0/24".to_owned()));
    let pending_file = fx.file();
    assert!(pending_file.contains("198.18.2.0/24"), "{pending_file}");
    fx.ctl(&["add", "198.18.4.0/24"])
        .refused("`add 198.18.2.0/24` awaits confirmation");
    fx.ctl(&["reload"]).refused("awaits confirmation");
    assert_eq!(fx.file(), pending_file, "the refused change wrote nothing");

    std::thread::sleep(Duration::from_secs(4).saturating_sub(t0.elapsed()));
    let give_up = t0 + Duration::from_secs(6);
    while fx.cidrs().contains(&"198.18.2.0/24".to_owned()) {
        assert!(
            Instant::now() < give_up,
            "not rolled back 6 s after `--confirm-within 3s`; log:\n{}",
            fx.daemon.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(fx.file(), f0, "the rollback restores the file");
    let s = fx.status();
    assert!(s["pending_confirmation"].is_null(), "{s:?}");
    assert!(
        s["revision"].as_u64().unwrap() > r0 + 1,
        "the rollback is a new revision: {s:?}"
    );
    assert_times_out(fx.client(), B4, to(B4, PROTECTED), "rolled back");
    fx.ctl(&["confirm"]).refused("nothing awaits confirmation");

    // Confirmed: kept.
    let t1 = Instant::now();
    fx.ctl(&[
        "add",
        "198.18.2.0/24",
        "--comment",
        "lab B, on trial",
        "--confirm-within",
        "3s",
    ])
    .ok();
    fx.ctl(&["confirm"])
        .ok()
        .stdout_has("confirmed: add 198.18.2.0/24");
    assert!(fx.status()["pending_confirmation"].is_null());
    let kept = fx.file();
    std::thread::sleep(Duration::from_millis(4500).saturating_sub(t1.elapsed()));
    assert!(fx.cidrs().contains(&"198.18.2.0/24".to_owned()));
    assert_eq!(fx.file(), kept);
    assert!(kept.contains("cidr = \"198.18.2.0/24\""), "{kept}");
    assert_connects(fx.client(), B4, to(B4, PROTECTED), "confirmed");
    fx.ctl(&["add", "198.18.4.0/24"]).ok();
}

// ---------------------------------------------------------------------------------------
// 8. Who may use the control socket
// ---------------------------------------------------------------------------------------

#[test]
fn ctl_unauthorized_users_are_refused() {
    if !require_root("ctl_unauthorized_users_are_refused") {
        return;
    }
    let fx = Fx::standard();
    let mode = std::fs::metadata(&fx.socket)
        .expect("the control socket exists")
        .permissions()
        .mode();
    assert_eq!(mode & 0o7777, 0o660, "the control socket's mode");
    let before = fx.snapshot();
    // The test directory is opened to everyone, so that the socket's own mode decides.
    let as_nobody = |args: &[&str]| run(&mut fx.cmd_as_nobody(args));

    for args in [&["status"][..], &["add", "198.18.4.0/24"]] {
        as_nobody(args)
            .code(3)
            .stderr_has("Permission denied")
            .stderr_has("only root and members of control_group");
    }
    fx.assert_unchanged(&before, "refused connections");

    // Test only: open the socket's mode, so that SO_PEERCRED is what refuses.
    std::fs::set_permissions(&fx.socket, std::fs::Permissions::from_mode(0o666))
        .expect("chmod the socket");
    for args in [
        &["status"][..],
        &["list"],
        &["add", "198.18.4.0/24"],
        &["remove", "198.18.1.0/24"],
        &["deactivate"],
    ] {
        as_nobody(args).refused("permission denied");
    }
    assert_eq!(
        error_kind(&as_nobody(&["--json", "status"])),
        "permission-denied"
    );
    fx.assert_unchanged(&before, "requests from uid 65534");
}

/// The daemon answers an unauthorized peer without reading its request and closes; a
/// request bigger than the socket buffer (still far below the 1 MiB limit) then cannot be
/// written, and the answer must still reach the user. (Small requests hit the same race
/// whenever the CLI is slower to write than the daemon is to refuse.)
#[test]
fn ctl_unauthorized_large_request_still_gets_permission_denied() {
    if !require_root("ctl_unauthorized_large_request_still_gets_permission_denied") {
        return;
    }
    let fx = Fx::standard();
    let mut nobody = fx.cmd_as_nobody(&[]);
    std::fs::set_permissions(&fx.socket, std::fs::Permissions::from_mode(0o666))
        .expect("chmod the socket");
    let before = fx.snapshot();
    // Three arguments of 120 kB each (one argument may not exceed 128 kB): a 360 kB request.
    let big = "x".repeat(120_000);
    let args = ["edit", big.as_str(), "--cidr", &big, "--comment", &big];
    // Root is answered after the daemon has read it all.
    fx.ctl(&args).refused("not an IP address or CIDR");
    let out = run(nobody.args(args));
    assert_eq!(
        out.code, 2,
        "uid 65534 should be told \"permission denied\" (exit 2), not that the daemon is \
         unreachable: {out}"
    );
    out.refused("permission denied");
    fx.assert_unchanged(&before, "large requests");
}

// ---------------------------------------------------------------------------------------
// 9. Misbehaving clients
// ---------------------------------------------------------------------------------------

/// Reads one framed answer from `stream`: `Ok(None)` if the daemon closed without one.
fn read_answer(stream: &mut UnixStream) -> std::io::Result<Option<Value>> {
    match protocol::read_frame(stream, protocol::MAX_REPLY) {
        Ok(body) => {
            let text = String::from_utf8_lossy(&body);
            serde_json::from_str::<Value>(&text)
                .map(Some)
                .map_err(|e| std::io::Error::other(format!("answer {text:?}: {e}")))
        }
        Err(protocol::FrameError::Truncated) => Ok(None),
        Err(protocol::FrameError::Io(e)) => Err(e),
        Err(e) => Err(std::io::Error::other(e.to_string())),
    }
}

/// Sends `body` as one frame on a fresh connection and returns the daemon's answer.
#[track_caller]
fn raw_request(socket: &Path, body: &[u8]) -> Value {
    let mut stream = UnixStream::connect(socket).expect("connecting to the control socket");
    stream
        .set_read_timeout(Some(Duration::from_secs(3)))
        .unwrap();
    let mut frame = u32::try_from(body.len()).unwrap().to_be_bytes().to_vec();
    frame.extend_from_slice(body);
    stream.write_all(&frame).expect("sending the request");
    read_answer(&mut stream)
        .unwrap_or_else(|e| panic!("no answer to {:?}: {e}", String::from_utf8_lossy(body)))
        .unwrap_or_else(|| {
            panic!(
                "closed without answering {:?}",
                String::from_utf8_lossy(body)
            )
        })
}

#[track_caller]
fn assert_error(answer: &Value, kind: &str, needle: &str) {
    assert_eq!(answer["outcome"].as_str(), Some("error"), "{answer:?}");
    assert_eq!(answer["kind"].as_str(), Some(kind), "{answer:?}");
    assert!(
        answer["message"]
            .as_str()
            .is_some_and(|m| m.contains(needle)),
        "the message should contain {needle:?}: {answer:?}"
    );
}

#[test]
fn ctl_garbage_clients_do_not_block_good_ones() {
    if !require_root("ctl_garbage_clients_do_not_block_good_ones") {
        return;
    }
    let fx = Fx::standard();
    let connect = || {
        let s = UnixStream::connect(&fx.socket).expect("connecting to the control socket");
        s.set_read_timeout(Some(Duration::from_secs(8))).unwrap();
        s
    };
    let t0 = Instant::now();
    // Sends nothing.
    let mut silent = connect();
    // Announces 100 bytes, sends 5, stalls.
    let mut stalled = connect();
    stalled.write_all(&[0, 0, 0, 100]).unwrap();
    stalled.write_all(b"{\"ver").unwrap();
    // Announces 2 MiB.
    let mut oversized = connect();
    oversized.write_all(&(2u32 << 20).to_be_bytes()).unwrap();
    // Connects and goes away.
    drop(connect());

    let started = Instant::now();
    let out = fx.ctl(&["status"]);
    let took = started.elapsed();
    out.ok().stdout_has("allowlist:  ACTIVE");
    assert!(
        took < Duration::from_secs(1),
        "status took {took:?} while other clients stall"
    );

    oversized
        .set_read_timeout(Some(Duration::from_secs(2)))
        .unwrap();
    let answer = read_answer(&mut oversized)
        .expect("an answer to the oversized frame")
        .expect("an answer, not a bare close");
    assert_error(
        &answer,
        "bad-request",
        "2097152 bytes is larger than the limit of 1048576",
    );
    assert_eq!(answer["version"].as_u64(), Some(1));

    assert_error(
        &raw_request(
            &fx.socket,
            br#"{"version": 99, "command": {"name": "status"}}"#,
        ),
        "unsupported-version",
        "unsupported protocol version 99; this allowlistd speaks [1]",
    );
    assert_error(
        &raw_request(&fx.socket, br#"{"command": {"name": "status"}}"#),
        "unsupported-version",
        "[1]",
    );
    assert_error(
        &raw_request(&fx.socket, b"{not json"),
        "bad-request",
        "malformed request",
    );
    assert_error(
        &raw_request(&fx.socket, b""),
        "bad-request",
        "malformed request",
    );
    assert_error(
        &raw_request(
            &fx.socket,
            br#"{"version": 1, "command": {"name": "explode"}}"#,
        ),
        "bad-request",
        "not understood",
    );
    // A well-formed raw request works.
    let answer = raw_request(
        &fx.socket,
        br#"{"version": 1, "command": {"name": "list"}}"#,
    );
    assert_eq!(answer["outcome"].as_str(), Some("ok"), "{answer:?}");
    assert_eq!(answer["reply"]["kind"].as_str(), Some("list"), "{answer:?}");

    // The stalled clients get an error (or are closed) after the 5 s read deadline.
    for (name, stream) in [("silent", &mut silent), ("stalled", &mut stalled)] {
        match read_answer(stream) {
            Ok(Some(answer)) => {
                assert_error(&answer, "bad-request", "no complete request within 5s");
            }
            Ok(None) => {}
            Err(e) => panic!("the {name} client saw neither an answer nor a close: {e}"),
        }
        let after = t0.elapsed();
        assert!(
            after < Duration::from_millis(6500),
            "the {name} client was dealt with only after {after:?}"
        );
    }
    fx.ctl(&["status"]).ok();
}

// ---------------------------------------------------------------------------------------
// 10. `test` agrees with real connects
// ---------------------------------------------------------------------------------------

#[test]
fn ctl_test_agrees_with_real_connects() {
    if !require_root("ctl_test_agrees_with_real_connects") {
        return;
    }
    let fx = Fx::standard();
    let check = |state: &str, expected_allowed: &dyn Fn(IpAddr, u16) -> bool| {
        for src in [A4, B4, A6, B6] {
            for port in [PROTECTED, UNPROTECTED] {
                let out = fx.ctl(&["test", &src.to_string(), "--port", &port.to_string()]);
                assert!(out.code == 0 || out.code == 1, "{out}");
                let connected = fx.connects(src, port);
                assert_eq!(
                    out.code == 0,
                    connected,
                    "{state}: `test {src} --port {port}` disagrees with a real connect (which {}): {out}",
                    if connected { "connected" } else { "timed out" }
                );
                assert_eq!(
                    connected,
                    expected_allowed(src, port),
                    "{state}: {src} -> port {port}"
                );
            }
        }
    };
    check("initial", &|src, port| {
        port == UNPROTECTED || src == A4 || src == A6
    });
    fx.ctl(&["add", "198.18.2.0/24", "--comment", "lab B"]).ok();
    check("after adding 198.18.2.0/24", &|src, port| {
        port == UNPROTECTED || src != B6
    });
    fx.ctl(&["deactivate"]).ok();
    check("inactive", &|_, _| true);
}

// ---------------------------------------------------------------------------------------
// Beyond the happy paths: unreachable daemon, large lists, dry runs, rollbacks
// ---------------------------------------------------------------------------------------

#[test]
fn ctl_unreachable_daemon_exits_3() {
    if !require_root("ctl_unreachable_daemon_exits_3") {
        return;
    }
    let dir = tempfile::tempdir().expect("a temporary directory");
    let missing = dir.path().join("missing.sock");
    run(&mut ctl_command(&missing, &["status"]))
        .code(3)
        .stderr_has(&format!("cannot reach allowlistd at {}", missing.display()))
        .stderr_has("is allowlistd running?");
    // A socket file left behind, nobody listening.
    let stale = dir.path().join("stale.sock");
    drop(std::os::unix::net::UnixListener::bind(&stale).expect("binding a socket"));
    run(&mut ctl_command(&stale, &["add", "198.18.4.0/24"]))
        .code(3)
        .stderr_has("is allowlistd running?");
}

/// The `kind` of a refusal printed with `--json`.
#[track_caller]
fn error_kind(out: &Out) -> String {
    out.code(2);
    out.json()["error"]["kind"].as_str().unwrap().to_owned()
}

#[test]
fn ctl_refusals_carry_a_kind_for_scripts() {
    if !require_root("ctl_refusals_carry_a_kind_for_scripts") {
        return;
    }
    let fx = Fx::standard();
    let before = fx.snapshot();
    let stale = (before.revision + 7).to_string();
    assert_eq!(
        error_kind(&fx.ctl(&["--json", "add", "198.18.4.0/24", "--if-revision", &stale])),
        "conflict"
    );
    assert_eq!(
        error_kind(&fx.ctl(&[
            "--json",
            "remove",
            "198.18.1.0/24",
            "--current-ip",
            "198.18.1.2"
        ])),
        "lockout"
    );
    assert_eq!(
        error_kind(&fx.ctl(&["--json", "add", "garbage"])),
        "invalid"
    );
    fx.assert_unchanged(&before, "refusals");

    fx.ctl(&["add", "198.18.4.0/24", "--confirm-within", "1m"])
        .ok();
    assert_eq!(
        error_kind(&fx.ctl(&["--json", "add", "198.18.5.0/24"])),
        "pending"
    );
    fx.ctl(&["confirm"]).ok();

    write_atomically(&fx.path, &(fx.file() + "# by hand\n"));
    assert_eq!(
        error_kind(&fx.ctl(&["--json", "add", "198.18.5.0/24"])),
        "conflict"
    );
}

#[test]
fn ctl_list_works_for_a_large_allowlist() {
    if !require_root("ctl_list_works_for_a_large_allowlist") {
        return;
    }
    // 4000 entries with long comments: well within max_entries, and the daemon loads them.
    const N: u32 = 4000;
    let fx = Fx::start(|dir, iface| {
        let mut text = with_top_level(&standard(dir, iface).render(), "max_entries = 4096\n");
        let comment = "c".repeat(250);
        for i in 0..N {
            text += &format!(
                "\n[[entries]]\ncidr = \"198.19.{}.{}\"\ncomment = \"{comment}\"\n",
                i / 250,
                i % 250 + 1
            );
        }
        text
    });
    assert_eq!(fx.status()["entries"].as_u64(), Some(u64::from(N) + 2));
    let out = fx.ctl(&["--json", "list"]);
    assert_eq!(
        out.code, 0,
        "`list` of a list the daemon accepted (max_entries = 4096) should work: {out}"
    );
    assert_eq!(
        out.json()["entries"].as_array().unwrap().len(),
        N as usize + 2
    );
    fx.ctl(&["list"]).ok().stdout_has("198.19.15.250/32");
}

#[test]
fn ctl_reload_dry_run_shows_port_and_comment_changes() {
    if !require_root("ctl_reload_dry_run_shows_port_and_comment_changes") {
        return;
    }
    let fx = Fx::standard();
    let before = fx.file();
    let hand = before
        .replacen(
            "protected_tcp_ports = [2222]",
            "protected_tcp_ports = [2222, 2223]",
            1,
        )
        .replacen("comment = \"lab A\"", "comment = \"lab A, renamed\"", 1);
    assert!(
        hand.contains("2223") && hand.contains("renamed"),
        "{before}"
    );
    write_atomically(&fx.path, &hand);
    let rev = fx.revision();

    let dry = fx.ctl(&["reload", "--dry-run"]);
    dry.ok();
    assert_eq!(fx.revision(), rev, "a dry run changes nothing");
    fx.ctl(&["test", "198.18.2.2", "--port", "2223"])
        .ok()
        .stdout_has("port 2223 is not protected");

    let real = fx.ctl(&["reload"]);
    real.ok().stdout_has("2223");
    fx.ctl(&["test", "198.18.2.2", "--port", "2223"]).code(1);

    let mut unshown = Vec::new();
    if !dry.stdout.contains("2223") {
        unshown.push("port 2223 becoming protected");
    }
    if !dry.stdout.contains("comment") && !dry.stdout.contains("lab A, renamed") {
        unshown.push("the changed comment of 198.18.1.0/24");
    }
    assert!(
        unshown.is_empty(),
        "`reload --dry-run` (\"show what would change\") did not show {unshown:?}, which the \
         reload then applied;\ndry run:\n{}reload:\n{}",
        dry.stdout,
        real.stdout
    );
}

#[test]
fn ctl_rollback_does_not_discard_a_hand_edit() {
    if !require_root("ctl_rollback_does_not_discard_a_hand_edit") {
        return;
    }
    let fx = Fx::standard();
    let t0 = Instant::now();
    fx.ctl(&["add", "198.18.2.0/24", "--confirm-within", "2s"])
        .ok();
    // Meanwhile someone edits the file by hand.
    let note = "# noted by hand while the change was on trial\n";
    let hand = fx.file() + note;
    write_atomically(&fx.path, &hand);
    let give_up = t0 + Duration::from_secs(5);
    while !fx.status()["pending_confirmation"].is_null() {
        assert!(Instant::now() < give_up, "no rollback after 5 s");
        std::thread::sleep(Duration::from_millis(100));
    }
    fx.ctl(&["test", "198.18.2.2", "--port", "2222"]).code(1);
    let after = fx.file();
    assert!(
        after.contains(note),
        "the rollback silently overwrote an edit made by hand; before the rollback:\n{hand}\n--- after:\n{after}"
    );
}
