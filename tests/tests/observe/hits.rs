//! Hit counters.

use super::*;

#[track_caller]
fn assert_hits(list: &BTreeMap<String, Value>, cidr: &str, hits: u64, when: &str) {
    let entry = list
        .get(cidr)
        .unwrap_or_else(|| panic!("{when}: `list` lacks {cidr}: {list:#?}"));
    assert_eq!(
        entry["hits"].as_u64(),
        Some(hits),
        "{when}: hits of {cidr}: {entry}"
    );
    if hits == 0 {
        assert!(
            entry.get("last_hit").is_none_or(Value::is_null),
            "{when}: {cidr} was never hit, so it has no last_hit: {entry}"
        );
    } else {
        assert_recent(
            &format!("{when}: last_hit of {cidr}"),
            &entry["last_hit"],
            Duration::from_secs(60),
        );
    }
}

/// The entries of the hit counter tests: one hit over IPv4, one over IPv6, one never.
const HIT_ENTRIES: [(&str, &str); 3] = [
    ("198.18.1.0/24", "lab A"),
    ("198.18.3.0/24", "never used"),
    ("2001:db8::a", "lab A v6"),
];

#[test]
fn hit_counters_follow_real_connects_and_survive_a_sigkill() {
    if !require_root("hit_counters_follow_real_connects_and_survive_a_sigkill") {
        return;
    }
    let mut fx = Fx::start(&HIT_ENTRIES, "");
    const N: u64 = 5;
    for _ in 0..N {
        assert_connects(
            fx.client(),
            A4,
            to(A4, PROTECTED),
            "198.18.1.0/24 is listed",
        );
    }
    for _ in 0..2 {
        assert_connects(fx.client(), A6, to(A6, PROTECTED), "2001:db8::a is listed");
    }
    // A dropped attempt is nobody's hit.
    assert_times_out(
        fx.client(),
        B4,
        to(B4, PROTECTED),
        "198.18.2.2 is not listed",
    );

    let list = fx.list(&[]);
    assert_eq!(list.len(), 3, "{list:#?}");
    assert_hits(&list, "198.18.1.0/24", N, "after the connects");
    assert_hits(&list, "2001:db8::a/128", 2, "after the connects");
    assert_hits(&list, "198.18.3.0/24", 0, "after the connects");
    let unused = fx.list(&["--unused", "1h"]);
    assert_eq!(
        unused.keys().collect::<Vec<_>>(),
        ["198.18.3.0/24"],
        "`list --unused 1h` should show only the never-hit entry: {unused:#?}"
    );
    assert_hits(&unused, "198.18.3.0/24", 0, "list --unused 1h");

    // The counters live in a pinned map: a daemon killed without any cleanup, and its
    // successor, lose nothing.
    fx.restart_after_sigkill();
    let list = fx.list(&[]);
    assert_hits(&list, "198.18.1.0/24", N, "after SIGKILL and restart");
    assert_hits(&list, "2001:db8::a/128", 2, "after SIGKILL and restart");
    assert_hits(&list, "198.18.3.0/24", 0, "after SIGKILL and restart");
    assert_connects(fx.client(), A4, to(A4, PROTECTED), "after the restart");
    let list = fx.list(&[]);
    assert_hits(
        &list,
        "198.18.1.0/24",
        N + 1,
        "one more connect after the restart",
    );
    assert_hits(
        &list,
        "2001:db8::a/128",
        2,
        "one more connect after the restart",
    );
    let unused = fx.list(&["--unused", "1h"]);
    assert_eq!(
        unused.keys().collect::<Vec<_>>(),
        ["198.18.3.0/24"],
        "after the restart: {unused:#?}"
    );

    // Once the last hit is older than the limit, a hit entry counts as unused too.
    std::thread::sleep(Duration::from_millis(1500));
    let unused = fx.list(&["--unused", "1s"]);
    assert_eq!(
        unused.keys().collect::<Vec<_>>(),
        ["198.18.1.0/24", "198.18.3.0/24", "2001:db8::a/128"],
        "`list --unused 1s`, 1.5 s after the last hit: {unused:#?}"
    );
    assert_hits(&unused, "198.18.1.0/24", N + 1, "list --unused 1s");
}

#[test]
fn hits_survive_a_stop_a_handover_a_reload_and_a_long_stop() {
    if !require_root("hits_survive_a_stop_a_handover_a_reload_and_a_long_stop") {
        return;
    }
    let mut fx = Fx::start(&HIT_ENTRIES, "");
    for _ in 0..3 {
        assert_connects(fx.client(), A4, to(A4, PROTECTED), "198.18.1.0/24");
    }
    for _ in 0..2 {
        assert_connects(fx.client(), A6, to(A6, PROTECTED), "2001:db8::a");
    }

    // SIGTERM detaches and removes the pinned counters; the next daemon has them back.
    fx.restart_after(Signal::SIGTERM, 0);
    let list = fx.list(&[]);
    assert_hits(&list, "198.18.1.0/24", 3, "after SIGTERM and a start");
    assert_hits(&list, "2001:db8::a/128", 2, "after SIGTERM and a start");
    assert_hits(&list, "198.18.3.0/24", 0, "after SIGTERM and a start");
    let unused = fx.list(&["--unused", "1h"]);
    assert_eq!(
        unused.keys().collect::<Vec<_>>(),
        ["198.18.3.0/24"],
        "`list --unused 1h` after a restart: {unused:#?}"
    );
    assert_connects(fx.client(), A4, to(A4, PROTECTED), "after the start");
    assert_hits(&fx.list(&[]), "198.18.1.0/24", 4, "one more connect");

    // A handover keeps them; so do a reload and a comment edit. A new network starts fresh.
    fx.restart_after(Signal::SIGUSR2, 75);
    assert_hits(&fx.list(&[]), "198.18.1.0/24", 4, "after a handover");
    fx.ctl(&["edit", "198.18.1.0/24", "--comment", "lab A, 2nd floor"])
        .ok();
    fx.ctl(&["edit", "2001:db8::a", "--cidr", "2001:db8::b"])
        .ok();
    fx.ctl(&["reload"]).ok();
    let list = fx.list(&[]);
    assert_hits(&list, "198.18.1.0/24", 4, "after edit --comment and reload");
    assert_hits(&list, "2001:db8::b/128", 0, "edit --cidr: a new network");
    fx.restart_after(Signal::SIGTERM, 0);
    let list = fx.list(&[]);
    assert_hits(&list, "198.18.1.0/24", 4, "after the edits and a restart");
    assert_hits(&list, "2001:db8::b/128", 0, "after the edits and a restart");

    // Stopped for 40 days (a reboot between: the kernel's hit clock starts again at zero).
    // The saved times are wall-clock times, so the entry reads as last used 40 days ago.
    fx.daemon.signal(Signal::SIGTERM);
    fx.daemon.wait_exit(RELOAD_TIMEOUT).unwrap();
    let saved = fx.dir.join("state").join("hits");
    let forty_days = jiff::SignedDuration::from_hours(40 * 24);
    let mut text = String::new();
    let mut last = None;
    for line in std::fs::read_to_string(&saved).unwrap().lines() {
        let fields: Vec<&str> = line.split(' ').collect();
        if fields[0] == "198.18.1.0/24" {
            let t: jiff::Timestamp = fields[2].parse().unwrap();
            let earlier = t.checked_sub(forty_days).unwrap();
            last = Some(earlier);
            let rest = fields[3..].join(" ");
            text += &format!("{} {} {earlier} {rest}\n", fields[0], fields[1]);
        } else {
            text += &format!("{line}\n");
        }
    }
    let last = last.unwrap_or_else(|| panic!("{} lacks 198.18.1.0/24", saved.display()));
    std::fs::write(&saved, text).unwrap();
    fx.restart();
    let list = fx.list(&[]);
    let entry = &list["198.18.1.0/24"];
    assert_eq!(entry["hits"].as_u64(), Some(4), "{entry}");
    let shown: jiff::Timestamp = entry["last_hit"].as_str().unwrap().parse().unwrap();
    assert!(
        shown.duration_since(last).abs() <= jiff::SignedDuration::from_secs(1),
        "last_hit {shown}, saved as {last}"
    );
    let unused = fx.list(&["--unused", "30d"]);
    assert!(
        unused.contains_key("198.18.1.0/24") && unused.contains_key("198.18.3.0/24"),
        "`list --unused 30d`, 40 days after the last hit: {unused:#?}"
    );
    assert!(
        !fx.list(&["--unused", "60d"]).contains_key("198.18.1.0/24"),
        "used within 60 days"
    );
    // Its next hit is the latest again.
    assert_connects(fx.client(), A4, to(A4, PROTECTED), "after the long stop");
    assert_hits(
        &fx.list(&[]),
        "198.18.1.0/24",
        5,
        "a hit after the long stop",
    );
}
