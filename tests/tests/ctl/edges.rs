//! Beyond the happy paths: unreachable daemon, large lists, dry runs, rollbacks.

use super::*;

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
