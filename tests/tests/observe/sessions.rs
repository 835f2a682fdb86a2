//! Sessions.

use super::*;

/// The session in `report` whose peer is `client`'s local address.
fn session_of<'a>(report: &'a Value, client: &TcpStream) -> &'a Value {
    let peer = client.local_addr().unwrap().to_string();
    let found: Vec<&Value> = report["sessions"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["peer"].as_str() == Some(peer.as_str()))
        .collect();
    assert_eq!(found.len(), 1, "sessions of {peer}: {report:#}");
    found[0]
}

#[test]
fn sessions_show_who_is_connected_and_kill_unlisted_ends_only_the_unlisted() {
    if !require_root("sessions_show_who_is_connected_and_kill_unlisted_ends_only_the_unlisted") {
        return;
    }
    let fx = Fx::start(&[("198.18.1.0/24", "lab A")], "");
    fx.ctl(&["add", "198.18.2.0/24", "--comment", "temporary"])
        .ok();
    let mut covered = open_echoing(fx.client(), A4);
    let mut unlisted = open_echoing(fx.client(), B4);
    fx.ctl(&["remove", "198.18.2.0/24"]).ok();
    assert_times_out(
        fx.client(),
        B4,
        to(B4, PROTECTED),
        "198.18.2.0/24 was removed",
    );

    // Both are listed, with the covering entry only for the first.
    let report = fx.json(&["sessions"]);
    assert_eq!(report["kind"].as_str(), Some("sessions"), "{report}");
    assert_eq!(
        report["sessions"].as_array().unwrap().len(),
        2,
        "{report:#}"
    );
    let server = to(A4, PROTECTED).to_string();
    let c = session_of(&report, &covered);
    let u = session_of(&report, &unlisted);
    for s in [c, u] {
        assert_eq!(s["local"].as_str(), Some(server.as_str()), "{s}");
        assert_eq!(s["killed"].as_bool(), Some(false), "{s}");
        assert_recent("since", &s["since"], Duration::from_secs(60));
    }
    assert_eq!(
        c["covered_by"]["cidr"].as_str(),
        Some("198.18.1.0/24"),
        "{c}"
    );
    assert_eq!(c["covered_by"]["comment"].as_str(), Some("lab A"), "{c}");
    assert!(u["covered_by"].is_null(), "{u}");
    let other_port = fx.json(&["sessions", "--port", "2223"]);
    assert_eq!(other_port["sessions"].as_array().unwrap().len(), 0);

    // Ending your own unlisted connection is refused, and nothing is ended.
    fx.ctl(&["sessions", "--kill-unlisted", "--current-ip", "198.18.2.2"])
        .refused("your own connection from 198.18.2.2 is not covered by any entry and would be ended; run `allowlistctl add 198.18.2.2/32` first, or pass --force");
    tcp::exchange(&mut unlisted, b"still here").expect("the refused kill ended nothing");
    tcp::exchange(&mut covered, b"still here").expect("the refused kill ended nothing");
    let refused = fx.audit_records("kill-unlisted");
    assert_eq!(refused.len(), 1, "{refused:#?}");
    assert_eq!(refused[0]["result"]["status"].as_str(), Some("refused"));

    // Without it, the unlisted one ends and the covered one stays.
    let killed = fx.json(&["sessions", "--kill-unlisted"]);
    assert_eq!(killed["killed"].as_u64(), Some(1), "{killed:#}");
    assert_eq!(
        session_of(&killed, &unlisted)["killed"].as_bool(),
        Some(true)
    );
    assert_eq!(
        session_of(&killed, &covered)["killed"].as_bool(),
        Some(false)
    );
    assert_ended(&mut unlisted, "198.18.2.2 after sessions --kill-unlisted");
    tcp::exchange(&mut covered, b"covered").expect("the covered connection should stay");
    let after = fx.json(&["sessions"]);
    assert_eq!(after["sessions"].as_array().unwrap().len(), 1, "{after:#}");
    session_of(&after, &covered);

    let records = fx.audit_records("kill-unlisted");
    assert_eq!(records.len(), 2, "{records:#?}");
    let record = &records[1];
    assert_eq!(record["result"]["status"].as_str(), Some("ok"), "{record}");
    let ended = unlisted.local_addr().unwrap().to_string();
    assert_eq!(
        record["before"]["sessions"],
        serde_json::json!([{ "peer": ended, "local": server }]),
        "{record}"
    );

    // `activate --kill-unlisted` after a deactivate ends those let in meanwhile.
    fx.ctl(&["deactivate"]).ok();
    let mut late = open_echoing(fx.client(), B4);
    let changed = fx.json(&["activate", "--kill-unlisted"]);
    assert!(
        changed["summary"]
            .as_str()
            .is_some_and(|s| s.contains("ended 1 ")),
        "{changed:#}"
    );
    assert_ended(&mut late, "198.18.2.2 after activate --kill-unlisted");
    tcp::exchange(&mut covered, b"covered").expect("the covered connection should stay");
    assert_times_out(fx.client(), B4, to(B4, PROTECTED), "active again");
    let records = fx.audit_records("kill-unlisted");
    assert_eq!(records.len(), 3, "{records:#?}");
    assert_eq!(
        records[2]["before"]["sessions"],
        serde_json::json!([{ "peer": late.local_addr().unwrap().to_string(), "local": server }]),
        "{:#}",
        records[2]
    );
    assert_eq!(fx.audit_records("activate").len(), 1);
}

#[test]
fn sessions_end_ends_the_one_chosen_connection_covered_or_not() {
    if !require_root("sessions_end_ends_the_one_chosen_connection_covered_or_not") {
        return;
    }
    let fx = Fx::start(&[("198.18.1.0/24", "lab A")], "");
    let mut chosen = open_echoing(fx.client(), A4);
    let mut other = open_echoing(fx.client(), A4);
    let peer = chosen.local_addr().unwrap().to_string();
    let server = to(A4, PROTECTED).to_string();

    // Not a session, or the caller's own address: refused, audited, nothing ended.
    fx.ctl(&["sessions", "--end", "198.18.1.2:1"]).refused(
        "no established connection from 198.18.1.2:1 to a protected port; `allowlistctl sessions` lists them",
    );
    fx.ctl(&["sessions", "--end", &peer, "--current-ip", "198.18.1.2"])
        .refused(&format!("the connection from {peer} comes from your own address 198.18.1.2; ending it may end your own session; pass --force"));
    fx.ctl(&["sessions", "--end", "198.18.1.2:1", "--kill-unlisted"])
        .code(2)
        .stderr_has("cannot be used with");
    tcp::exchange(&mut chosen, b"still here").expect("a refused end ended nothing");
    let refused = fx.audit_records("end-session");
    assert_eq!(refused.len(), 2, "{refused:#?}");

    // The chosen one ends though an entry covers it; the other stays.
    let ended = fx.json(&["sessions", "--end", &peer]);
    assert_eq!(ended["killed"].as_u64(), Some(1), "{ended:#}");
    assert_eq!(session_of(&ended, &chosen)["killed"].as_bool(), Some(true));
    assert_ended(&mut chosen, "the session chosen by sessions --end");
    tcp::exchange(&mut other, b"other").expect("the other connection should stay");
    let records = fx.audit_records("end-session");
    let record = records.last().unwrap();
    assert_eq!(record["result"]["status"].as_str(), Some("ok"), "{record}");
    assert_eq!(
        record["before"]["sessions"],
        serde_json::json!([{ "peer": peer, "local": server, "covered_by": "198.18.1.0/24" }]),
        "{record}"
    );
    fx.ctl(&["audit", "--action", "end-session"])
        .ok()
        .stdout_has(" end-session ok ");
}
