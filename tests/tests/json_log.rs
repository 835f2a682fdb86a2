//! `log_format = "json"`: the real daemon's log is one JSON object a line, for a log shipper,
//! and an audit record arrives with its fields (the same record, hash and all, as the audit
//! log's).

use std::time::Duration;

use allowlist_tests::daemon::Config;
use allowlist_tests::fixture::Running;
use allowlist_tests::require_root;
use serde_json::Value;

#[test]
fn every_line_is_json_and_audit_records_carry_their_fields() {
    if !require_root("every_line_is_json_and_audit_records_carry_their_fields") {
        return;
    }
    let run = Running::start(|dir, iface| {
        let text = Config::new(dir, iface)
            .entry("198.18.1.0/24", "office")
            .render();
        format!("log_format = \"json\"\n{text}")
    });
    run.ctl(&["add", "198.18.2.0/24", "--comment", "lab \"B\""])
        .ok();
    run.daemon
        .wait_for_log("\"action\":\"add\"", Duration::from_secs(5))
        .unwrap_or_else(|e| panic!("{e:#}"));
    let log = run.daemon.log();
    let lines: Vec<Value> = log
        .lines()
        .map(|line| {
            serde_json::from_str(line)
                .unwrap_or_else(|e| panic!("not a JSON line ({e}): {line}\nlog:\n{log}"))
        })
        .collect();
    assert!(lines.len() > 3, "{log}");
    for line in &lines {
        assert!(
            line["timestamp"].is_string() && line["level"].is_string(),
            "{line}"
        );
    }
    assert!(
        lines.iter().any(|l| l["message"]
            .as_str()
            .is_some_and(|m| m.starts_with("allowlistd ready"))),
        "{log}"
    );
    let add = lines
        .iter()
        .find(|l| l["target"] == "audit" && l["action"] == "add")
        .unwrap_or_else(|| panic!("no audit record of the add:\n{log}"));
    assert_eq!(add["user"], "root");
    assert_eq!(add["via"], "cli");
    let after: Value = serde_json::from_str(add["after"].as_str().unwrap()).unwrap();
    assert_eq!(after["entries"][0]["cidr"], "198.18.2.0/24");
    assert_eq!(after["entries"][0]["comment"], "lab \"B\"");
    let file = run.audit();
    let same = file
        .iter()
        .find(|r| r["seq"] == add["seq"])
        .expect("the record in the audit log");
    assert_eq!(
        same["hash"], add["hash"],
        "the logged record is the audit log's"
    );
}
