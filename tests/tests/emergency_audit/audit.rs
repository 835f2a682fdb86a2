//! Audit log.

use super::*;

/// The checks every record of a whole log must pass: seq from 1 up by one, the chain of
/// hashes, RFC 3339 UTC times in order, root as the actor.
#[track_caller]
fn assert_well_formed(records: &[Value], first_seq: u64, earliest_ms: i64) {
    let mut prev_hash = GENESIS.to_owned();
    let mut prev_ms = earliest_ms;
    for (i, r) in records.iter().enumerate() {
        let seq = r["seq"].as_u64().unwrap();
        assert_eq!(seq, first_seq + i as u64, "seq of record {i}: {r:?}");
        if i > 0 || first_seq == 1 {
            assert_eq!(
                r["prev_hash"].as_str(),
                Some(prev_hash.as_str()),
                "prev_hash of seq {seq}"
            );
        }
        let hash = r["hash"].as_str().unwrap();
        assert!(
            hash.len() == 64 && hash.bytes().all(|b| b.is_ascii_hexdigit()),
            "hash of seq {seq}: {hash:?}"
        );
        prev_hash = hash.to_owned();
        let time = r["time"].as_str().unwrap();
        let ms = rfc3339_utc_ms(time)
            .unwrap_or_else(|| panic!("time of seq {seq} is not RFC 3339 UTC: {time:?}"));
        assert!(
            ms >= prev_ms - 1 && ms <= now_ms() + 1000,
            "time of seq {seq} ({time}) out of order or in the future"
        );
        prev_ms = ms;
        let actor = &r["actor"];
        assert_eq!(actor["uid"].as_u64(), Some(0), "seq {seq}");
        assert_eq!(actor["user"].as_str(), Some("root"), "seq {seq}");
        assert!(actor["pid"].as_u64().unwrap() > 0, "seq {seq}: {r:?}");
        assert!(
            ["cli", "signal", "startup", "expiry"].contains(&actor["via"].as_str().unwrap()),
            "seq {seq}: {r:?}"
        );
        assert!(r["revision"].is_u64(), "seq {seq}: {r:?}");
    }
}

#[test]
fn every_change_is_audited_with_before_and_after() {
    if !require_root("every_change_is_audited_with_before_and_after") {
        return;
    }
    let test_start_ms = now_ms();
    let mut fx = Fx::start("");
    let dpid = fx.daemon.pid().as_raw().unsigned_abs();

    // start
    let records = fx.records();
    assert_eq!(records.len(), 1, "{records:?}");
    let start = &records[0];
    assert_eq!(start["action"].as_str(), Some("start"));
    assert_eq!(status_of(start), "ok");
    assert_actor(start, "startup", dpid);
    assert_eq!(start["prev_hash"].as_str(), Some(GENESIS));
    assert_eq!(start["revision"].as_u64(), Some(fx.revision()));
    assert_eq!(start["after"]["active"].as_bool(), Some(true), "{start:?}");

    // A change through allowlistctl: the record's actor is the client, its revision the new
    // one.
    let change = |args: &[&str], action: &str, before: &str, after: &str| {
        let out = fx.ctl(args);
        out.ok();
        let r = fx.last_record();
        assert_eq!(r["action"].as_str(), Some(action), "{args:?}: {r:?}");
        assert_eq!(status_of(&r), "ok", "{args:?}: {r:?}");
        assert_actor(&r, "cli", out.pid);
        assert_json(&r["before"], before, &format!("before of {args:?}"));
        assert_json(&r["after"], after, &format!("after of {args:?}"));
        assert_eq!(
            r["revision"].as_u64(),
            Some(fx.revision()),
            "{args:?}: {r:?}"
        );
        r
    };
    change(
        &["add", "198.18.5.0/24", "--comment", "x"],
        "add",
        r#"{"entries": []}"#,
        r#"{"entries": [{"cidr": "198.18.5.0/24", "comment": "x"}]}"#,
    );
    change(
        &["edit", "198.18.5.0/24", "--comment", "y"],
        "edit",
        r#"{"entries": [{"cidr": "198.18.5.0/24", "comment": "x"}]}"#,
        r#"{"entries": [{"cidr": "198.18.5.0/24", "comment": "y"}]}"#,
    );
    change(
        &["remove", "198.18.5.0/24"],
        "remove",
        r#"{"entries": [{"cidr": "198.18.5.0/24", "comment": "y"}]}"#,
        r#"{"entries": []}"#,
    );
    // A moment apart from the records before: `audit --since` below cuts here.
    std::thread::sleep(Duration::from_millis(50));
    let deactivate = change(
        &["deactivate"],
        "deactivate",
        r#"{"active": true}"#,
        r#"{"active": false}"#,
    );
    change(
        &["activate"],
        "activate",
        r#"{"active": false}"#,
        r#"{"active": true}"#,
    );

    // Reload on SIGHUP: the daemon is the actor, via "signal".
    let text = fx.file();
    write_atomically(
        &fx.path,
        &format!("{text}\n[[entries]]\ncidr = \"198.18.6.0/24\"\ncomment = \"by hand\"\n"),
    );
    fx.daemon.signal(Signal::SIGHUP);
    fx.daemon
        .wait_for_log("reload applied", RELOAD_TIMEOUT)
        .unwrap_or_else(|e| panic!("{e:#}"));
    let r = fx.last_record();
    assert_eq!(r["action"].as_str(), Some("reload"), "{r:?}");
    assert_eq!(status_of(&r), "ok");
    assert_actor(&r, "signal", dpid);
    assert_json(
        &r["before"],
        r#"{"entries": []}"#,
        "before of the SIGHUP reload",
    );
    assert_json(
        &r["after"],
        r#"{"entries": [{"cidr": "198.18.6.0/24", "comment": "by hand"}]}"#,
        "after of the SIGHUP reload",
    );
    assert_eq!(r["revision"].as_u64(), Some(fx.revision()));

    // Reload through allowlistctl: the client is the actor, via "cli".
    write_atomically(&fx.path, &text);
    change(
        &["reload"],
        "reload",
        r#"{"entries": [{"cidr": "198.18.6.0/24", "comment": "by hand"}]}"#,
        r#"{"entries": []}"#,
    );

    // Commit-confirmed, confirmed.
    change(
        &["add", "198.18.7.0/24", "--confirm-within", "30s"],
        "add",
        r#"{"entries": []}"#,
        r#"{"entries": [{"cidr": "198.18.7.0/24", "comment": ""}]}"#,
    );
    let revision = fx.revision();
    let out = fx.ctl(&["confirm"]);
    out.ok();
    let r = fx.last_record();
    assert_eq!(r["action"].as_str(), Some("confirm"), "{r:?}");
    assert_eq!(status_of(&r), "ok");
    assert_actor(&r, "cli", out.pid);
    assert_json(
        &r["before"],
        r#"{"pending": "add 198.18.7.0/24"}"#,
        "before of confirm",
    );
    assert_json(&r["after"], r#"{"pending": null}"#, "after of confirm");
    assert_eq!(r["revision"].as_u64(), Some(revision));

    // Commit-confirmed, not confirmed: rolled back by the daemon, via "expiry".
    change(
        &["add", "198.18.8.0/24", "--confirm-within", "2s"],
        "add",
        r#"{"entries": []}"#,
        r#"{"entries": [{"cidr": "198.18.8.0/24", "comment": ""}]}"#,
    );
    let give_up = Instant::now() + Duration::from_secs(6);
    while !fx.status()["pending_confirmation"].is_null() {
        assert!(
            Instant::now() < give_up,
            "no rollback within 6 s of a 2 s window"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let r = fx.last_record();
    assert_eq!(r["action"].as_str(), Some("rollback"), "{r:?}");
    assert_eq!(status_of(&r), "ok");
    assert_actor(&r, "expiry", dpid);
    assert_json(
        &r["before"],
        r#"{"entries": [{"cidr": "198.18.8.0/24", "comment": ""}]}"#,
        "before of the rollback",
    );
    assert_json(
        &r["after"],
        r#"{"entries": [], "rolled_back": {"unconfirmed": "add 198.18.8.0/24"}}"#,
        "after of the rollback",
    );
    assert_eq!(r["revision"].as_u64(), Some(fx.revision()));
    assert!(!fx.cidrs().contains(&"198.18.8.0/24".to_owned()));

    // A refused change: recorded with the reason, nothing else moves.
    let revision = fx.revision();
    let out = fx.ctl(&["add", "198.18.2.1/24"]);
    out.code(2).stderr_has("host bits set");
    let r = fx.last_record();
    assert_eq!(r["action"].as_str(), Some("add"), "{r:?}");
    assert_eq!(status_of(&r), "refused", "{r:?}");
    assert_actor(&r, "cli", out.pid);
    assert!(
        r["result"]["reason"]
            .as_str()
            .is_some_and(|r| r.contains("host bits set")),
        "the refusal's reason: {r:?}"
    );
    assert_eq!(r["revision"].as_u64(), Some(revision));
    assert_eq!(fx.revision(), revision);

    // `audit --action add --json`: exactly the add records of the file.
    let adds: Vec<u64> = fx
        .records_of("add")
        .iter()
        .map(|r| r["seq"].as_u64().unwrap())
        .collect();
    assert_eq!(adds.len(), 4, "add x, add with confirm twice, refused add");
    let report = fx.ctl(&["audit", "--action", "add", "--json"]).ok().json();
    assert_eq!(report["kind"].as_str(), Some("audit"), "{report:?}");
    let shown: Vec<u64> = report["records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["seq"].as_u64().unwrap())
        .collect();
    assert_eq!(shown, adds, "audit --action add");
    assert!(
        report["records"]
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["action"].as_str().unwrap() == "add"),
        "{report:?}"
    );
    // The daemon shows the very records the file holds.
    let all = fx.records();
    let shown_all = fx.ctl(&["audit", "--json"]).ok().json();
    assert_eq!(shown_all["records"].as_array().unwrap().len(), all.len());
    for (shown, stored) in shown_all["records"].as_array().unwrap().iter().zip(&all) {
        assert!(
            shown == stored,
            "audit --json shows {shown:?}\nthe file holds {stored:?}"
        );
    }

    // `audit --since TIME`: the records from that time on.
    let since = deactivate["time"].as_str().unwrap();
    let since_ms = rfc3339_utc_ms(since).unwrap();
    let expected: Vec<u64> = all
        .iter()
        .filter(|r| rfc3339_utc_ms(r["time"].as_str().unwrap()).unwrap() >= since_ms)
        .map(|r| r["seq"].as_u64().unwrap())
        .collect();
    assert!(expected.first() <= Some(&deactivate["seq"].as_u64().unwrap()));
    assert!(!expected.contains(&1), "the start record is older");
    let shown: Vec<u64> = fx.ctl(&["--json", "audit", "--since", since]).ok().json()["records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["seq"].as_u64().unwrap())
        .collect();
    assert_eq!(shown, expected, "audit --since {since}");
    let shown = fx.ctl(&["--json", "audit", "--since", "1h"]).ok().json();
    assert_eq!(
        shown["records"].as_array().unwrap().len(),
        all.len(),
        "audit --since 1h"
    );
    fx.ctl(&["audit", "--since", "2099-01-01T00:00:00Z"])
        .ok()
        .stdout_has("no matching records");
    fx.ctl(&["audit", "--since", "yesterday-ish"])
        .code(2)
        .stderr_has("--since");
    // The text form: one line per record.
    let out = fx.ctl(&["audit", "--action", "confirm"]);
    out.ok()
        .stdout_has("root (uid 0, pid ")
        .stdout_has(" cli) confirm ok rev ");
    assert_eq!(out.stdout.lines().count(), 1, "{out}");

    // stop
    fx.daemon.signal(Signal::SIGTERM);
    let status = fx
        .daemon
        .wait_exit(RELOAD_TIMEOUT)
        .unwrap_or_else(|e| panic!("{e:#}"));
    assert!(status.success(), "{status}");
    let r = fx.last_record();
    assert_eq!(r["action"].as_str(), Some("stop"), "{r:?}");
    assert_eq!(status_of(&r), "ok");
    assert_actor(&r, "signal", dpid);
    assert_eq!(r["after"]["signal"].as_str(), Some("SIGTERM"), "{r:?}");

    // The whole log, and its mirror in the daemon's own log: each record as one line.
    let all = fx.records();
    assert_well_formed(&all, 1, test_start_ms);
    let log = fx.daemon.log();
    let text = std::fs::read_to_string(&fx.audit).unwrap();
    for line in text.lines() {
        assert!(
            log.lines().any(|l| l.contains(line)),
            "the daemon's log does not carry the record on one line: {line}\nlog:\n{log}"
        );
    }
}

#[test]
fn audit_verify_catches_edits_deletions_reordering_and_a_cut_off_end() {
    if !require_root("audit_verify_catches_edits_deletions_reordering_and_a_cut_off_end") {
        return;
    }
    let fx = Fx::start("");
    for (cidr, comment) in [
        ("198.18.10.0/24", "alpha"),
        ("198.18.11.0/24", "beta"),
        ("198.18.12.0/24", "gamma"),
        ("198.18.13.0/24", "delta"),
    ] {
        fx.ctl(&["add", cidr, "--comment", comment]).ok();
    }
    let audit = fx.audit.display().to_string();
    let original = std::fs::read_to_string(&fx.audit).unwrap();
    let lines: Vec<&str> = original.lines().collect();
    assert_eq!(lines.len(), 5, "start and four adds:\n{original}");
    let last_hash = fx.last_record()["hash"].as_str().unwrap().to_owned();

    // Untouched: intact, through the daemon and from the file.
    fx.ctl(&["audit", "verify"]).ok().stdout_has(&format!(
        "intact: 5 records in {audit}; the chain ends at {last_hash}"
    ));
    let v = fx.ctl(&["--json", "audit", "verify"]).ok().json();
    assert_eq!(v["records"].as_u64(), Some(5));
    assert!(v["first_break"].is_null(), "{v:?}");
    assert_eq!(v["last_hash"].as_str(), Some(last_hash.as_str()));
    fx.ctl(&["audit", "verify", &audit])
        .ok()
        .stdout_has("intact: 5 records");

    let copy = fx.dir.join("copy.jsonl");
    let copy_s = copy.display().to_string();
    let seq_at = |i: usize| {
        serde_json::from_str::<Value>(lines[i]).unwrap()["seq"]
            .as_u64()
            .unwrap()
    };
    let check_copy = |tampered: Vec<String>, line: usize, seq: u64, why: &str, what: &str| {
        std::fs::write(&copy, tampered.join("\n") + "\n").unwrap();
        let out = fx.ctl(&["audit", "verify", &copy_s]);
        out.code(1)
            .stdout_has(&format!("BROKEN at {copy_s} line {line} (seq {seq})"))
            .stdout_has(why);
        let v = fx
            .ctl(&["--json", "audit", "verify", &copy_s])
            .code(1)
            .json();
        assert_eq!(
            v["first_break"]["line"].as_u64(),
            Some(line as u64),
            "{what}: {v:?}"
        );
        assert_eq!(v["first_break"]["seq"].as_u64(), Some(seq), "{what}: {v:?}");
    };

    // One record's comment edited.
    let i = lines.iter().position(|l| l.contains("\"beta\"")).unwrap();
    let mut edited: Vec<String> = lines.iter().map(|l| (*l).to_owned()).collect();
    edited[i] = edited[i].replace("\"beta\"", "\"BETA\"");
    assert_ne!(edited[i], lines[i]);
    check_copy(edited, i + 1, seq_at(i), "edited", "an edited comment");

    // A middle line deleted: the break is where the next record now is.
    let mut deleted: Vec<String> = lines.iter().map(|l| (*l).to_owned()).collect();
    deleted.remove(2);
    check_copy(
        deleted,
        3,
        seq_at(3),
        "deleted or reordered",
        "a deleted line",
    );

    // Two lines swapped.
    let mut swapped: Vec<String> = lines.iter().map(|l| (*l).to_owned()).collect();
    swapped.swap(2, 3);
    check_copy(
        swapped,
        3,
        seq_at(3),
        "deleted or reordered",
        "two swapped lines",
    );

    // The live log's last line removed: a file alone cannot tell, the daemon can.
    let cut = lines[..4].join("\n") + "\n";
    std::fs::OpenOptions::new()
        .write(true)
        .truncate(true)
        .open(&fx.audit)
        .and_then(|mut f| f.write_all(cut.as_bytes()))
        .unwrap();
    fx.ctl(&["audit", "verify"])
        .code(1)
        .stdout_has("BROKEN")
        .stdout_has("cut off the end");
    let v = fx.ctl(&["--json", "audit", "verify"]).code(1).json();
    assert_eq!(v["first_break"]["seq"].as_u64(), Some(5), "{v:?}");
}

#[test]
fn an_unwritable_audit_log_refuses_the_change() {
    if !require_root("an_unwritable_audit_log_refuses_the_change") {
        return;
    }
    let fx = Fx::start_on_tmpfs();
    let filler = fx.dir.join("auditfs/filler");
    fill(&filler);
    // The log's last page may still have room: fill it with refused (and recorded)
    // emergency-ends until a record no longer fits.
    for _ in 0..20 {
        let size = std::fs::metadata(&fx.audit).unwrap().len();
        fx.ctl(&["emergency-end"]).code(2);
        if std::fs::metadata(&fx.audit).unwrap().len() == size {
            break;
        }
    }

    let file = fx.file();
    let revision = fx.revision();
    let out = fx.ctl(&["add", "198.18.2.0/24"]);
    out.code(2).stderr_has("audit log cannot be written");
    assert_eq!(
        fx.file(),
        file,
        "the config file changed although the change was refused"
    );
    assert_eq!(fx.revision(), revision);
    assert!(!fx.cidrs().contains(&"198.18.2.0/24".to_owned()));
    fx.assert_blocked("the refused add must not take effect");
    fx.ctl(&["test", "198.18.2.2"]).code(1);

    // Room again: the same change works, recorded.
    std::fs::remove_file(&filler).unwrap();
    fx.ctl(&["add", "198.18.2.0/24"]).ok();
    assert!(fx.cidrs().contains(&"198.18.2.0/24".to_owned()));
    fx.assert_let_in("added once the audit log could be written");
    let verify = fx.ctl(&["audit", "verify"]);
    assert_eq!(
        verify.code,
        0,
        "after the disk filled up and was freed, the audit log should still verify: {verify}\nlog file:\n{}",
        String::from_utf8_lossy(&std::fs::read(&fx.audit).unwrap())
    );
    let r = records_of(&fx.audit).pop().unwrap();
    assert_eq!(r["action"].as_str(), Some("add"));
    assert_eq!(
        r["after"]["entries"][0]["cidr"].as_str(),
        Some("198.18.2.0/24")
    );
}

#[test]
fn rotation_keeps_the_chain_verifiable() {
    if !require_root("rotation_keeps_the_chain_verifiable") {
        return;
    }
    let fx = Fx::start("audit_max_bytes = 2000\naudit_keep_files = 3\n");
    for n in 10..25 {
        fx.ctl(&["add", &format!("198.18.{n}.0/24"), "--comment", "rotation"])
            .ok();
    }
    for n in 10..25 {
        fx.ctl(&["remove", &format!("198.18.{n}.0/24")]).ok();
    }
    let rotated = |n: u32| PathBuf::from(format!("{}.{n}", fx.audit.display()));
    for n in 1..=3 {
        assert!(rotated(n).exists(), "{} is missing", rotated(n).display());
    }
    assert!(!rotated(4).exists(), "audit_keep_files = 3 keeps no .4");
    for path in [fx.audit.clone(), rotated(1), rotated(2), rotated(3)] {
        let size = std::fs::metadata(&path).unwrap().len();
        assert!(
            size > 0 && size < 2000 + 1000,
            "{}: {size} bytes",
            path.display()
        );
    }

    let out = fx.ctl(&["audit", "verify"]);
    out.ok().stdout_has("intact");
    let files: Vec<String> = [rotated(3), rotated(2), rotated(1), fx.audit.clone()]
        .iter()
        .map(|p| p.display().to_string())
        .collect();
    let mut args = vec!["audit", "verify"];
    args.extend(files.iter().map(String::as_str));
    fx.ctl(&args).ok().stdout_has("intact");

    // The chain runs across the files, seq without gaps, up to the newest record.
    let mut chain = Vec::new();
    for f in &files {
        chain.extend(records_of(Path::new(f)));
    }
    let first_seq = chain[0]["seq"].as_u64().unwrap();
    assert!(first_seq > 1, "the oldest files were dropped");
    assert_well_formed(&chain, first_seq, 0);
    assert_eq!(
        chain.last().unwrap()["seq"].as_u64(),
        Some(31),
        "start and 30 changes"
    );
    let first_current = &records_of(&fx.audit)[0];
    let last_previous = records_of(&rotated(1)).pop().unwrap();
    assert_eq!(
        first_current["prev_hash"].as_str().unwrap(),
        last_previous["hash"].as_str().unwrap()
    );
    assert_eq!(
        std::fs::metadata(&fx.audit).unwrap().permissions().mode() & 0o777,
        0o640
    );

    // The files out of order, or one left out: broken.
    fx.ctl(&["audit", "verify", &files[0], &files[2], &files[3]])
        .code(1)
        .stdout_has("BROKEN");
    fx.ctl(&["audit", "verify", &files[1], &files[0]])
        .code(1)
        .stdout_has("BROKEN");
}

#[test]
fn the_audit_log_is_0640_and_unsafe_paths_stop_the_daemon() {
    if !require_root("the_audit_log_is_0640_and_unsafe_paths_stop_the_daemon") {
        return;
    }
    let mut fx = Fx::start("");
    let mode = std::fs::metadata(&fx.audit).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o640, "mode of {}: {mode:o}", fx.audit.display());
    fx.daemon.signal(Signal::SIGTERM);
    fx.daemon
        .wait_exit(RELOAD_TIMEOUT)
        .unwrap_or_else(|e| panic!("{e:#}"));

    // A symlink in place of the log.
    let real = fx.dir.join("real.jsonl");
    std::fs::rename(&fx.audit, &real).unwrap();
    std::os::unix::fs::symlink(&real, &fx.audit).unwrap();
    let size = std::fs::metadata(&real).unwrap().len();
    let mut daemon = Daemon::spawn(&fx.lab.server, &fx.path);
    let status = daemon
        .wait_exit(READY_TIMEOUT)
        .unwrap_or_else(|e| panic!("{e:#}"));
    let log = daemon.log();
    assert!(
        !status.success(),
        "allowlistd should refuse a symlinked audit_log:\n{log}"
    );
    assert!(
        log.contains("is a symlink") && log.contains(&fx.audit.display().to_string()),
        "the error should name the symlink:\n{log}"
    );
    assert!(!log.contains("allowlistd ready"), "{log}");
    assert_eq!(
        std::fs::metadata(&real).unwrap().len(),
        size,
        "written through the symlink"
    );

    // A log anybody may write.
    std::fs::remove_file(&fx.audit).unwrap();
    std::fs::rename(&real, &fx.audit).unwrap();
    std::fs::set_permissions(&fx.audit, std::fs::Permissions::from_mode(0o666)).unwrap();
    let mut daemon = Daemon::spawn(&fx.lab.server, &fx.path);
    let status = daemon
        .wait_exit(READY_TIMEOUT)
        .unwrap_or_else(|e| panic!("{e:#}"));
    let log = daemon.log();
    assert!(
        !status.success(),
        "allowlistd should refuse a world-writable audit_log:\n{log}"
    );
    assert!(
        log.contains("writable by others") && log.contains("chmod 640"),
        "the error should name the problem and the fix:\n{log}"
    );
    assert_eq!(std::fs::metadata(&fx.audit).unwrap().len(), size);

    // Fixed as told: it starts again and continues the chain.
    std::fs::set_permissions(&fx.audit, std::fs::Permissions::from_mode(0o640)).unwrap();
    fx.restart();
    fx.ctl(&["audit", "verify"]).ok().stdout_has("intact");
}

#[test]
fn audit_refuses_unknown_actions_and_prints_whole_milliseconds() {
    if !require_root("audit_refuses_unknown_actions_and_prints_whole_milliseconds") {
        return;
    }
    let fx = Fx::start("");
    // A typo is refused with the valid names, not answered with "no matching records".
    let out = fx.ctl(&["audit", "--action", "bogus"]);
    out.code(2)
        .stderr_has("bogus")
        .stderr_has("emergency-expiry")
        .stderr_has("kill-unlisted");
    assert!(out.stdout.is_empty(), "{out}");
    // The daemon refuses it too, from a client that skips the CLI's check.
    let mut stream = UnixStream::connect(&fx.socket).expect("connecting to the daemon");
    let request = protocol::Request {
        version: protocol::VERSION,
        command: protocol::Command::Audit {
            since: None,
            action: Some("bogus".into()),
        },
        options: protocol::ChangeOptions::default(),
    };
    protocol::write_frame(&mut stream, &request).unwrap();
    let body = protocol::read_frame(&mut stream, protocol::MAX_REPLY).unwrap();
    let reply: Value = serde_json::from_slice(&body).unwrap();
    let message = reply["message"].as_str().unwrap_or_default();
    assert!(
        reply["kind"] == "invalid"
            && message.contains("`bogus`")
            && message.contains("kill-unlisted"),
        "the daemon's answer to --action bogus: {reply}"
    );
    // Every action the daemon records can be asked for, kill-unlisted included.
    fx.ctl(&["audit", "--action", "kill-unlisted"])
        .ok()
        .stdout_has("no matching records");
    fx.ctl(&["audit", "--help"])
        .ok()
        .stdout_has("kill-unlisted");

    // Times always carry three fractional digits, so `.670Z` never prints as `.67Z`: with
    // enough records, some fall on a millisecond ending in 0.
    for i in 0..30 {
        fx.ctl(&["add", &format!("198.18.{}.0/24", 100 + i)]).ok();
    }
    let out = fx.ctl(&["audit"]);
    out.ok();
    for line in out.stdout.lines() {
        let time = line.split(' ').nth(1).unwrap_or_default();
        let frac = time
            .strip_suffix('Z')
            .and_then(|t| t.rsplit_once('.'))
            .map(|(_, f)| f);
        assert!(
            frac.is_some_and(|f| f.len() == 3 && f.bytes().all(|b| b.is_ascii_digit())),
            "{time:?} should end in three fractional digits and Z: {line}"
        );
    }
    for r in fx.records() {
        let time = r["time"].as_str().unwrap();
        assert_eq!(time.len(), "2026-11-23T14:12:51.670Z".len(), "{r}");
    }
}

/// The digest an audit record of a large change gives an entry set, computed here from the
/// README's description: entries in network order (IPv4 first, then by address, then by
/// prefix length), each as family byte, address bytes, prefix length byte, comment, newline.
fn set_sha256(entries: &[(String, String)]) -> String {
    use sha2::Digest as _;
    let mut keyed: Vec<(Vec<u8>, &str)> = entries
        .iter()
        .map(|(cidr, comment)| {
            let (addr, len) = cidr.split_once('/').expect("a CIDR");
            let mut key = match addr.parse::<std::net::IpAddr>().expect("an address") {
                std::net::IpAddr::V4(a) => [&[4u8][..], &a.octets()].concat(),
                std::net::IpAddr::V6(a) => [&[6u8][..], &a.octets()].concat(),
            };
            key.push(len.parse().expect("a prefix length"));
            (key, comment.as_str())
        })
        .collect();
    keyed.sort();
    let mut sha = sha2::Sha256::new();
    for (key, comment) in keyed {
        sha.update(&key);
        sha.update(comment.as_bytes());
        sha.update(b"\n");
    }
    sha.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

#[test]
fn a_large_reload_is_audited_as_counts_digests_and_its_first_entries() {
    if !require_root("a_large_reload_is_audited_as_counts_digests_and_its_first_entries") {
        return;
    }
    const V4: usize = 4000;
    const V6: usize = 1000;
    let mut fx = Fx::start("max_entries = 8192\n");
    let inline = vec![("198.18.1.0/24".to_owned(), "lab A".to_owned())];
    // 5,000 entries from a list file, IPv6 before IPv4 and out of order in the file: the
    // digest's order is the network order, not the file's.
    let mut listed = Vec::new();
    let mut lines = String::new();
    for i in (0..V6).rev() {
        let cidr = format!("2001:db8:{i:x}::/48");
        lines += &format!("{cidr}  # partner {i}\n");
        listed.push((cidr, format!("partner {i}")));
    }
    for i in (0..V4).rev() {
        let cidr = format!("100.64.{}.{}/32", i / 256, i % 256);
        lines += &format!("{}\n", cidr.trim_end_matches("/32"));
        // Without a `#`, an entry's comment is the list file's name.
        listed.push((cidr, "big.list".to_owned()));
    }
    std::fs::write(fx.dir.join("big.list"), lines).unwrap();
    let small = fx.file();
    write_atomically(
        &fx.path,
        &with_top_level(&small, "list_files = [\"big.list\"]\n"),
    );
    let out = fx.ctl(&["reload"]);
    out.ok();

    let added = fx.last_record();
    assert_eq!(added["action"].as_str(), Some("reload"), "{added}");
    let line = std::fs::read_to_string(&fx.audit)
        .unwrap()
        .lines()
        .last()
        .unwrap()
        .to_owned();
    assert!(
        line.len() < 4096,
        "a reload of 5,000 entries should be audited in a few KB, not {} bytes",
        line.len()
    );
    let all: Vec<(String, String)> = inline.iter().chain(&listed).cloned().collect();
    let (before, after) = (&added["before"], &added["after"]);
    assert_eq!(before["entries"], serde_json::json!([]), "{before}");
    assert_eq!(before["entries_count"].as_u64(), Some(0), "{before}");
    assert_eq!(before["set_count"].as_u64(), Some(1), "{before}");
    assert_eq!(
        before["set_sha256"].as_str(),
        Some(set_sha256(&inline).as_str())
    );
    assert_eq!(after["entries_count"].as_u64(), Some(5000), "{after}");
    assert_eq!(after["set_count"].as_u64(), Some(5001), "{after}");
    assert_eq!(
        after["set_sha256"].as_str(),
        Some(set_sha256(&all).as_str())
    );
    // The first 20 added, in network order: the lowest IPv4 addresses.
    let first: Vec<&str> = after["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["cidr"].as_str().unwrap())
        .collect();
    let expected: Vec<String> = (0..20).map(|i| format!("100.64.0.{i}/32")).collect();
    assert_eq!(first, expected);
    // What `audit` prints and the daemon logs are as short.
    let shown = fx.ctl(&["audit", "--action", "reload"]);
    shown.ok();
    assert!(shown.stdout.len() < 4096, "{} bytes", shown.stdout.len());
    assert!(
        fx.daemon
            .log()
            .lines()
            .filter(|l| l.contains("\"action\":\"reload\""))
            .all(|l| l.len() < 4096),
        "the daemon's log line of the reload is short too"
    );

    // Back to the inline entry: the digests chain, the new set's is the first one's old.
    write_atomically(&fx.path, &small);
    fx.ctl(&["reload"]).ok();
    let removed = fx.last_record();
    assert_eq!(removed["before"]["entries_count"].as_u64(), Some(5000));
    assert_eq!(
        removed["before"]["set_sha256"], after["set_sha256"],
        "{removed}"
    );
    assert_eq!(
        removed["after"]["set_sha256"], before["set_sha256"],
        "{removed}"
    );
    // A small change is recorded in full, as before.
    fx.ctl(&["add", "198.18.5.0/24"]).ok();
    let small_change = fx.last_record();
    assert_json(
        &small_change["after"],
        r#"{"entries": [{"cidr": "198.18.5.0/24", "comment": ""}]}"#,
        "a small change",
    );
    fx.ctl(&["audit", "verify"]).ok().stdout_has("intact");
    fx.daemon.signal(Signal::SIGTERM);
    fx.daemon.wait_exit(RELOAD_TIMEOUT).unwrap();
}
