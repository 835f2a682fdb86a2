//! Lockout protection.

use super::*;

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
