//! Who may use the control socket.

use super::*;

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

    // Refused as the daemon refuses (exit 2, permission-denied), saying what to do.
    for args in [&["status"][..], &["add", "198.18.4.0/24"]] {
        as_nobody(args)
            .code(2)
            .stderr_has("permission denied")
            .stderr_has("only to root and members of control_group; run as root (sudo)");
    }
    assert_eq!(
        error_kind(&as_nobody(&["--json", "status"])),
        "permission-denied"
    );
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

/// `--on-behalf-of`: root (a front end such as the Cockpit page, running allowlistctl for its
/// logged-in user) names the person in the audit record; a member of control_group may not
/// claim anyone else's name, and naming itself adds nothing to its uid.
#[test]
fn ctl_on_behalf_of_names_the_user_only_from_root() {
    if !require_root("ctl_on_behalf_of_names_the_user_only_from_root") {
        return;
    }
    // nobody's group may use the socket.
    let fx = Fx::start(|dir, iface| {
        with_top_level(
            &standard(dir, iface).render(),
            "control_group = \"nogroup\"\n",
        )
    });
    let last = |fx: &Fx| fx.audit().last().cloned().expect("an audit record");

    fx.ctl(&["add", "198.18.4.0/24", "--on-behalf-of", "alice"])
        .ok();
    let record = last(&fx);
    assert_eq!(record["actor"]["user"], "root", "{record:#}");
    assert_eq!(record["actor"]["uid"], 0, "{record:#}");
    assert_eq!(record["actor"]["on_behalf_of"], "alice", "{record:#}");
    fx.ctl(&["audit", "--action", "add"])
        .ok()
        .stdout_has("root for alice (uid 0, pid ");

    let before = fx.snapshot();
    let records = fx.audit().len();
    run(&mut fx.cmd_as_nobody(&["add", "198.18.5.0/24", "--on-behalf-of", "root"])).refused(
        "only root may act on behalf of another user (this request comes from nobody, uid 65534)",
    );
    fx.assert_unchanged(&before, "a claim of another user's name");
    assert_eq!(
        fx.audit().len(),
        records,
        "a refused claim reached the audit log"
    );
    run(&mut fx.cmd_as_nobody(&["add", "198.18.5.0/24", "--on-behalf-of", "bad name"]))
        .refused("a user name is 1 to 128 bytes without spaces or control characters");

    run(&mut fx.cmd_as_nobody(&["add", "198.18.5.0/24", "--on-behalf-of", "nobody"])).ok();
    let record = last(&fx);
    assert_eq!(record["actor"]["user"], "nobody", "{record:#}");
    assert_eq!(record["actor"]["uid"], 65534, "{record:#}");
    assert!(record["actor"].get("on_behalf_of").is_none(), "{record:#}");
}
