//! Timed entries end to end: the real daemon in a network namespace, real TCP connects. A
//! contractor added `--for` a few seconds gets in at once and is shut out at the end by the
//! kernel alone (the daemon SIGKILLed meanwhile); the next daemon takes the entry out of the
//! config and audits the expiry as having happened while it was down. With the daemon
//! running, the entry leaves the file at its end. Bad ends are refused and change nothing.

use std::time::{Duration, Instant};

use allowlist_tests::daemon::Config;
use allowlist_tests::fixture::Running;
use allowlist_tests::netns::{A4, B4, B6, PROTECTED, to};
use allowlist_tests::require_root;
use allowlist_tests::tcp::{assert_connects, assert_times_out};
use serde_json::Value;

fn start() -> Running {
    Running::start(|dir, iface| {
        Config::new(dir, iface)
            .entry("198.18.1.0/24", "office")
            .render()
    })
}

/// The `expire` records of the audit log.
fn expiries(run: &Running) -> Vec<Value> {
    run.audit()
        .into_iter()
        .filter(|r| r["action"] == "expire")
        .collect()
}

/// When the entry of the latest `add` ends, as its audit record says (the kernel enforces
/// that very time: the one written in the file).
fn end_of_last_add(run: &Running) -> Instant {
    let audit = run.audit();
    let add = audit
        .iter()
        .rev()
        .find(|r| r["action"] == "add")
        .expect("an add record");
    let end: jiff::Timestamp = add["after"]["entries"][0]["expires"]
        .as_str()
        .expect("the entry's end")
        .parse()
        .expect("an RFC 3339 end");
    let left = end.duration_since(jiff::Timestamp::now());
    Instant::now() + Duration::try_from(left).unwrap_or_default()
}

fn sleep_until(deadline: Instant) {
    std::thread::sleep(deadline.saturating_duration_since(Instant::now()));
}

#[test]
fn a_timed_entry_ends_in_the_kernel_with_the_daemon_dead() {
    if !require_root("a_timed_entry_ends_in_the_kernel_with_the_daemon_dead") {
        return;
    }
    let mut run = start();
    let client = run.client();
    assert_times_out(client, B4, to(B4, PROTECTED), "not listed yet");
    run.ctl(&[
        "add",
        "198.18.2.2",
        "--for",
        "6s",
        "--comment",
        "contractor",
    ])
    .ok()
    .stdout_has("add 198.18.2.2/32 until ");
    let ends = end_of_last_add(&run);
    assert_connects(client, B4, to(B4, PROTECTED), "within its time");
    assert_times_out(client, B6, to(B6, PROTECTED), "only the address added");
    run.ctl(&["list"])
        .ok()
        .stdout_has("contractor")
        .stdout_has("expires in ");
    run.ctl(&["list", "--timed"])
        .ok()
        .stdout_has("198.18.2.2/32")
        .stdout_has("1 of 2 entries match");
    let text = std::fs::read_to_string(&run.path).unwrap();
    assert!(
        text.contains("expires = 20"),
        "the end is in the file:\n{text}"
    );

    run.daemon.kill9();
    assert!(
        Instant::now() < ends,
        "the checks before the end took too long"
    );
    sleep_until(ends + Duration::from_millis(300));
    let client = run.client();
    assert_times_out(
        client,
        B4,
        to(B4, PROTECTED),
        "ended, with no daemon running",
    );
    assert_connects(client, A4, to(A4, PROTECTED), "the office lasts");

    run.restart();
    let text = std::fs::read_to_string(&run.path).unwrap();
    assert!(
        !text.contains("198.18.2.2"),
        "the next daemon takes the ended entry out of the file:\n{text}"
    );
    let expired = expiries(&run);
    assert_eq!(expired.len(), 1, "one expiry: {expired:#?}");
    assert_eq!(expired[0]["actor"]["via"], "expiry");
    assert_eq!(expired[0]["after"]["while_down"], true);
    assert_eq!(expired[0]["before"]["entries"][0]["cidr"], "198.18.2.2/32");
    assert_eq!(expired[0]["before"]["entries"][0]["comment"], "contractor");
    run.ctl(&["list", "--expired"])
        .ok()
        .stdout_has("198.18.2.2/32")
        .stdout_has("contractor")
        .stdout_has("ended ");
    assert_times_out(run.client(), B4, to(B4, PROTECTED), "still ended");
}

#[test]
fn the_running_daemon_takes_an_ended_entry_out() {
    if !require_root("the_running_daemon_takes_an_ended_entry_out") {
        return;
    }
    let run = start();
    let client = run.client();
    run.ctl(&["add", "2001:db8::b", "--for", "3s"]).ok();
    let ends = Instant::now() + Duration::from_secs(3);
    assert_connects(client, B6, to(B6, PROTECTED), "within its time");
    // An edit moves the end; --permanent would take it away.
    run.ctl(&["edit", "2001:db8::b", "--for", "4s"])
        .ok()
        .stdout_has("until ");
    let ends = ends.max(Instant::now() + Duration::from_secs(4));
    sleep_until(ends + Duration::from_millis(300));
    assert_times_out(client, B6, to(B6, PROTECTED), "ended");
    // The daemon's timer has fired by now, or does so within a second.
    let deadline = Instant::now() + Duration::from_secs(5);
    while std::fs::read_to_string(&run.path)
        .unwrap()
        .contains("2001:db8::b")
    {
        assert!(
            Instant::now() < deadline,
            "the ended entry stayed in the file"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let expired = expiries(&run);
    assert_eq!(expired.len(), 1, "{expired:#?}");
    assert!(expired[0]["after"].get("while_down").is_none());
    run.ctl(&["list"]).ok();
    assert!(!run.ctl(&["list"]).stdout.contains("2001:db8::b"));
}

#[test]
fn bad_ends_are_refused_and_change_nothing() {
    if !require_root("bad_ends_are_refused_and_change_nothing") {
        return;
    }
    let run = start();
    let before = std::fs::read_to_string(&run.path).unwrap();
    let refused = |args: &[&str], says: &str| {
        let out = run.ctl(args);
        assert_ne!(out.code, 0, "{out}");
        assert!(out.stderr.contains(says), "should say {says:?}: {out}");
    };
    refused(
        &["add", "198.18.2.2", "--for", "31d"],
        "--for 31d is longer than 30d, the longest a timed entry may last",
    );
    refused(
        &["add", "198.18.2.2", "--until", "2020-01-01T00:00:00Z"],
        "has passed",
    );
    refused(
        &["add", "198.18.2.2", "--until", "tomorrow"],
        "give a time with its offset",
    );
    refused(
        &["edit", "198.18.1.0/24", "--for", "40d"],
        "the longest a timed entry may last",
    );
    assert_eq!(std::fs::read_to_string(&run.path).unwrap(), before);
    // A permanent entry made lasting again is no change; a timed one loses its end.
    run.ctl(&["add", "198.18.2.2", "--for", "1h"]).ok();
    run.ctl(&["edit", "198.18.2.2", "--permanent"])
        .ok()
        .stdout_has("now lasting");
    assert!(
        !std::fs::read_to_string(&run.path)
            .unwrap()
            .contains("expires")
    );
    assert_connects(run.client(), B4, to(B4, PROTECTED), "lasting now");
}
