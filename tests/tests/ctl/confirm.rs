//! Commit-confirmed changes.

use super::*;

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
