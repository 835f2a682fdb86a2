//! Emergency disable.

use super::*;

#[test]
fn emergency_disable_lets_everyone_in_and_ends_by_itself() {
    if !require_root("emergency_disable_lets_everyone_in_and_ends_by_itself") {
        return;
    }
    let fx = Fx::start("");
    tcp::assert_connects(&fx.lab.client, A4, to(A4, PROTECTED), "listed");
    fx.assert_blocked("before the emergency disable");
    fx.assert_no_emergency("before the emergency disable");

    let before_ms = now_ms();
    let four = span(4);
    let out = fx.ctl(&[
        "emergency-disable",
        "--reason",
        "vpn down",
        "--for",
        &format!("{}s", four.as_secs()),
    ]);
    let started = Instant::now();
    let after_ms = now_ms();
    out.ok()
        .stdout_has("EMERGENCY DISABLE until")
        .stdout_has("vpn down");
    fx.assert_let_in("the emergency disable is in force");

    let s = fx.status();
    let e = &s["emergency"];
    let until = e["until"].as_str().unwrap();
    let until_ms = rfc3339_utc_ms(until)
        .unwrap_or_else(|| panic!("emergency.until is not an RFC 3339 UTC time: {s:?}"));
    assert!(
        (before_ms + ms(four) - 2..=after_ms + ms(four) + 2).contains(&until_ms),
        "emergency.until {until} should be {four:?} after the command (between {before_ms} and {after_ms} + that)"
    );
    let remaining = e["remaining_secs"].as_u64().unwrap();
    assert!(
        (1..=four.as_secs()).contains(&remaining),
        "remaining_secs {remaining}: {s:?}"
    );
    assert_eq!(e["reason"].as_str(), Some("vpn down"));
    assert_eq!(e["by"].as_str(), Some("root"));
    let until_local = e["until_local"].as_str().unwrap().to_owned();
    assert!(!until_local.is_empty(), "{s:?}");
    fx.ctl(&["status"])
        .ok()
        .stdout_has(&format!("EMERGENCY DISABLE until {until_local}"))
        .stdout_has("reason: vpn down")
        .stdout_has("by root");
    fx.ctl(&["test", "198.18.2.2"])
        .ok()
        .stdout_has("198.18.2.2 port 2222: allowed by the emergency disable");
    fx.ctl(&["test", "198.18.1.2"])
        .ok()
        .stdout_has("allowed by 198.18.1.0/24");

    // Still in force a second before its end...
    sleep_until(started + four - span(1));
    fx.assert_let_in("3 s into a 4 s emergency disable");
    // ... and over right after it, with nothing done.
    sleep_until(started + four + AFTER_DEADLINE);
    fx.assert_blocked("the 4 s emergency disable ended by itself");
    fx.assert_no_emergency("after the emergency disable ended");
    fx.ctl(&["test", "198.18.2.2"])
        .code(1)
        .stdout_has("blocked");
    assert!(
        !fx.dir.join("state/emergency.json").exists(),
        "the ended emergency disable is still in state_dir"
    );

    let starts = fx.records_of("emergency-start");
    assert_eq!(starts.len(), 1, "{starts:?}");
    let start = &starts[0];
    assert_eq!(status_of(start), "ok");
    assert_eq!(start["actor"]["via"].as_str(), Some("cli"));
    assert!(start["before"]["emergency"].is_null(), "{start:?}");
    assert_eq!(
        start["after"]["emergency"]["reason"].as_str(),
        Some("vpn down")
    );
    assert_eq!(start["after"]["emergency"]["until"].as_str(), Some(until));
    assert_eq!(start["after"]["emergency"]["by"].as_str(), Some("root"));
    let expiries = fx.records_of("emergency-expiry");
    assert_eq!(expiries.len(), 1, "{expiries:?}");
    let expiry = &expiries[0];
    assert_eq!(status_of(expiry), "ok");
    assert_actor(expiry, "expiry", fx.daemon.pid().as_raw().unsigned_abs());
    assert_eq!(expiry["before"]["emergency"]["until"].as_str(), Some(until));
    assert!(expiry["after"]["emergency"].is_null(), "{expiry:?}");
    assert!(
        expiry["seq"].as_u64().unwrap() > start["seq"].as_u64().unwrap(),
        "the expiry is recorded after the start"
    );
}

#[test]
fn emergency_disable_ends_in_the_kernel_with_the_daemon_dead() {
    if !require_root("emergency_disable_ends_in_the_kernel_with_the_daemon_dead") {
        return;
    }
    let mut fx = Fx::start("");
    let four = span(4);
    fx.ctl(&[
        "emergency-disable",
        "--reason",
        "vpn down",
        "--for",
        &format!("{}s", four.as_secs()),
    ])
    .ok();
    let started = Instant::now();
    let until = fx.status()["emergency"]["until"]
        .as_str()
        .unwrap()
        .to_owned();
    fx.daemon.kill9();

    fx.assert_let_in("emergency disable in force, allowlistd killed");
    assert!(
        fx.dir.join("state/emergency.json").exists(),
        "the emergency disable should be kept in state_dir"
    );
    sleep_until(started + four + AFTER_DEADLINE);
    fx.assert_blocked("the kernel ended the emergency disable with no allowlistd running");
    assert!(
        fx.records_of("emergency-expiry").is_empty(),
        "nobody could have recorded the end yet"
    );

    fx.restart();
    let expiries = fx.records_of("emergency-expiry");
    assert_eq!(expiries.len(), 1, "{expiries:?}");
    let expiry = &expiries[0];
    assert_eq!(status_of(expiry), "ok");
    assert_actor(expiry, "expiry", fx.daemon.pid().as_raw().unsigned_abs());
    assert_eq!(
        expiry["before"]["emergency"]["until"].as_str(),
        Some(until.as_str())
    );
    assert!(expiry["after"]["emergency"].is_null(), "{expiry:?}");
    assert!(
        expiry["after"]["note"]
            .as_str()
            .is_some_and(|n| n.contains("ended while allowlistd was not running")),
        "{expiry:?}"
    );
    let start = fx.records_of("start").pop().expect("a start record");
    assert!(
        expiry["seq"].as_u64().unwrap() < start["seq"].as_u64().unwrap(),
        "the expiry is recorded before the new daemon's start record"
    );
    fx.assert_no_emergency("after a restart past the deadline");
    fx.assert_blocked("enforcing after the restart");
    assert!(!fx.dir.join("state/emergency.json").exists());
}

#[test]
fn emergency_end_ends_it_early_and_is_audited() {
    if !require_root("emergency_end_ends_it_early_and_is_audited") {
        return;
    }
    let fx = Fx::start("");
    fx.ctl(&[
        "emergency-disable",
        "--reason",
        "maintenance",
        "--for",
        "10m",
    ])
    .ok();
    fx.assert_let_in("emergency disable in force");

    let out = fx.ctl(&["emergency-end"]);
    out.ok()
        .stdout_has("emergency disable ended")
        .stdout_has("maintenance");
    fx.assert_blocked("right after emergency-end");
    fx.assert_no_emergency("after emergency-end");
    let end = fx.last_record();
    assert_eq!(end["action"].as_str(), Some("emergency-end"));
    assert_eq!(status_of(&end), "ok");
    assert_actor(&end, "cli", out.pid);
    assert_eq!(
        end["before"]["emergency"]["reason"].as_str(),
        Some("maintenance")
    );
    assert!(end["after"]["emergency"].is_null(), "{end:?}");

    let out = fx.ctl(&["emergency-end"]);
    out.code(2).stderr_has("no emergency disable is in force");
    let refusal = fx.last_record();
    assert_eq!(refusal["action"].as_str(), Some("emergency-end"));
    assert_eq!(status_of(&refusal), "refused");
    assert_actor(&refusal, "cli", out.pid);
    assert!(
        refusal["result"]["reason"]
            .as_str()
            .is_some_and(|r| r.contains("no emergency disable is in force")),
        "{refusal:?}"
    );
    assert_eq!(
        refusal["seq"].as_u64().unwrap(),
        end["seq"].as_u64().unwrap() + 1
    );
}

#[test]
fn emergency_disable_refuses_what_breaks_its_rules() {
    if !require_root("emergency_disable_refuses_what_breaks_its_rules") {
        return;
    }
    let fx = Fx::start("");
    let file = fx.file();
    let revision = fx.revision();
    let cases: [(&[&str], &str); 3] = [
        (&["--reason", "vpn down", "--for", "25h"], "longer than 24h"),
        (&["--reason", "vpn down", "--for", "0s"], "above zero"),
        (&["--reason", "", "--for", "1h"], "a reason is required"),
    ];
    for (args, rule) in cases {
        let mut argv = vec!["emergency-disable"];
        argv.extend_from_slice(args);
        let out = fx.ctl(&argv);
        out.code(2).stderr_has(rule);
        fx.assert_blocked(&format!("after the refused {argv:?}"));
        fx.assert_no_emergency(&format!("after the refused {argv:?}"));
        let r = fx.last_record();
        assert_eq!(
            r["action"].as_str(),
            Some("emergency-start"),
            "{argv:?}: {r:?}"
        );
        assert_eq!(status_of(&r), "refused", "{argv:?}: {r:?}");
        assert!(
            r["result"]["reason"]
                .as_str()
                .is_some_and(|r| r.contains(rule)),
            "{argv:?}: the refusal's reason should state the rule ({rule}): {r:?}"
        );
        assert_actor(&r, "cli", out.pid);
    }
    assert_eq!(fx.file(), file, "a refusal changed the config file");
    assert_eq!(fx.revision(), revision, "a refusal moved the revision");
    assert!(!fx.dir.join("state/emergency.json").exists());
    let refused = fx
        .records()
        .iter()
        .filter(|r| r["action"].as_str().unwrap() == "emergency-start" && status_of(r) == "refused")
        .count();
    assert_eq!(refused, 3);
}

#[test]
fn a_restart_keeps_the_emergency_deadline() {
    if !require_root("a_restart_keeps_the_emergency_deadline") {
        return;
    }
    let mut fx = Fx::start("");
    fx.ctl(&[
        "emergency-disable",
        "--reason",
        "restart test",
        "--for",
        &format!("{}s", span(6).as_secs()),
    ])
    .ok();
    let started = Instant::now();
    let until = fx.status()["emergency"]["until"]
        .as_str()
        .unwrap()
        .to_owned();

    fx.daemon.kill9();
    let restarting = Instant::now();
    fx.restart();
    eprintln!("restarted in {:?}", restarting.elapsed());
    let s = fx.status();
    assert_eq!(
        s["emergency"]["until"].as_str(),
        Some(until.as_str()),
        "the restarted daemon moved the deadline: {s:?}"
    );
    assert_eq!(s["emergency"]["reason"].as_str(), Some("restart test"));
    assert!(
        s["emergency"]["remaining_secs"].as_u64().unwrap() <= span(6).as_secs(),
        "{s:?}"
    );
    fx.assert_let_in("the emergency disable continues after the restart");

    sleep_until(started + span(5));
    fx.assert_let_in("5 s into a 6 s emergency disable");
    sleep_until(started + span(6) + AFTER_DEADLINE);
    fx.assert_blocked("6 s after the emergency-disable, not 6 s after the restart");
    fx.assert_no_emergency("after the deadline");
    let expiry = fx
        .records_of("emergency-expiry")
        .pop()
        .expect("an emergency-expiry record from the restarted daemon");
    assert_actor(&expiry, "expiry", fx.daemon.pid().as_raw().unsigned_abs());
    assert_eq!(
        expiry["before"]["emergency"]["until"].as_str(),
        Some(until.as_str())
    );
    assert!(
        expiry["after"]["note"].is_null(),
        "it ended while running: {expiry:?}"
    );
}

#[test]
fn emergency_disable_on_start_breaks_glass_from_the_console() {
    if !require_root("emergency_disable_on_start_breaks_glass_from_the_console") {
        return;
    }
    let lab = Lab::new();
    let dir = TestDir::new();
    let _listener = Listener::start(
        &lab.server,
        SocketAddr::new("::".parse().unwrap(), PROTECTED),
    );
    let mut config = Config::new(&dir, lab.server_if()).entry("198.18.1.0/24", "lab A");
    config.audit_log = dir.join("audit.jsonl");
    let path = dir.join("allowlist.toml");
    config.write(&path);
    let fx_ctl = |args: &[&str]| run(&mut ctl_command(&config.control_socket, args));

    let mut cmd = Daemon::command(&path);
    cmd.args([
        "--emergency-disable-on-start",
        "--reason",
        "console",
        "--for",
        &format!("{}s", span(3).as_secs()),
    ]);
    let daemon = Daemon::spawn_command(&lab.server, cmd, &SpawnOptions::default());
    daemon.wait_ready();
    let ready = Instant::now();
    tcp::assert_connects(
        &lab.client,
        B4,
        to(B4, PROTECTED),
        "started with an emergency disable",
    );
    let s = fx_ctl(&["--json", "status"]).ok().json();
    assert_eq!(s["emergency"]["reason"].as_str(), Some("console"), "{s:?}");
    assert_eq!(s["emergency"]["by"].as_str(), Some("root"), "{s:?}");
    fx_ctl(&["status"])
        .ok()
        .stdout_has("EMERGENCY DISABLE until")
        .stdout_has("reason: console");

    let records = records_of(&config.audit_log);
    let start = records
        .iter()
        .find(|r| r["action"].as_str().unwrap() == "emergency-start")
        .unwrap_or_else(|| panic!("no emergency-start record: {records:?}"));
    assert_eq!(status_of(start), "ok");
    assert_actor(start, "startup", daemon.pid().as_raw().unsigned_abs());
    assert_eq!(
        start["after"]["emergency"]["reason"].as_str(),
        Some("console")
    );
    assert_eq!(
        start["after"]["emergency"]["until"].as_str().unwrap(),
        s["emergency"]["until"].as_str().unwrap()
    );
    assert!(
        daemon.log().contains("EMERGENCY DISABLE"),
        "the daemon's log should say so loudly:\n{}",
        daemon.log()
    );

    // The deadline was set before `ready`: 3 s after it at the latest.
    sleep_until(ready + span(3) + AFTER_DEADLINE);
    tcp::assert_times_out(
        &lab.client,
        B4,
        to(B4, PROTECTED),
        "the 3 s emergency disable ended",
    );
    let s = fx_ctl(&["--json", "status"]).ok().json();
    assert!(s["emergency"].is_null(), "{s:?}");
    let expiry = records_of(&config.audit_log)
        .into_iter()
        .find(|r| r["action"].as_str().unwrap() == "emergency-expiry")
        .expect("an emergency-expiry record");
    assert_actor(&expiry, "expiry", daemon.pid().as_raw().unsigned_abs());
    drop(daemon);

    // Longer than a day: refused before anything starts, naming the rule.
    let lines_before = records_of(&config.audit_log).len();
    let mut cmd = Daemon::command(&path);
    cmd.args([
        "--emergency-disable-on-start",
        "--for",
        "25h",
        "--reason",
        "x",
    ]);
    let mut refused = Daemon::spawn_command(&lab.server, cmd, &SpawnOptions::default());
    let status = refused
        .wait_exit(RELOAD_TIMEOUT)
        .unwrap_or_else(|e| panic!("{e:#}"));
    let log = refused.log();
    assert!(
        !status.success(),
        "allowlistd --emergency-disable-on-start --for 25h should fail; log:\n{log}"
    );
    assert!(
        log.contains("24h"),
        "the error should name the 24h rule:\n{log}"
    );
    assert!(!log.contains("allowlistd ready"), "{log}");
    assert_eq!(records_of(&config.audit_log).len(), lines_before);
    tcp::assert_times_out(
        &lab.client,
        B4,
        to(B4, PROTECTED),
        "no emergency disable from the refused start",
    );
}
