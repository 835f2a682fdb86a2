//! Each command and its JSON.

use super::*;

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
