//! `allowlistctl` for an admin with a non-default socket, a long list, a second emergency,
//! or a script reading `--json`: finding the socket (`--config`, `ALLOWLIST_SOCKET`), `list`
//! filters and counts, reload summaries, `emergency-disable` refusing to replace one in
//! force silently, and a JSON object on stdout for every failure. Against the real daemon.
//!
//! Needs root and the built binaries (`cargo xtask test -- --test ctl_ergonomics`).

use allowlist_tests::bpffs::TestDir;
use allowlist_tests::ctl::{Out, ctl_command_without_socket, run};
use allowlist_tests::daemon::{Config, with_top_level, write_atomically};
use allowlist_tests::fixture::Running;
use allowlist_tests::require_root;
use serde_json::Value;

/// Two inline entries as in the ctl tests, one more with a mixed-case comment, and a list
/// file of three.
fn with_list_file(dir: &TestDir, iface: &str) -> String {
    std::fs::write(
        dir.join("partners.list"),
        "198.18.8.0/24  # Partner one\n198.18.9.0/24  # partner two\n198.18.10.7\n",
    )
    .expect("writing the list file");
    let config = Config::new(dir, iface)
        .entry("198.18.1.0/24", "lab A")
        .entry("2001:db8::a", "lab A v6")
        .entry("198.18.5.0/24", "Office Berlin");
    with_top_level(&config.render(), "list_files = [\"partners.list\"]\n")
}

fn standard() -> Running {
    Running::start(|dir, iface| {
        Config::new(dir, iface)
            .entry("198.18.1.0/24", "lab A")
            .render()
    })
}

/// The CIDRs of `list --json ARGS...`.
#[track_caller]
fn listed(run: &Running, args: &[&str]) -> Vec<String> {
    let mut argv = vec!["--json", "list"];
    argv.extend_from_slice(args);
    run.ctl(&argv).ok().json()["entries"]
        .as_array()
        .expect("entries")
        .iter()
        .map(|e| e["cidr"].as_str().unwrap().to_owned())
        .collect()
}

/// The `{"error": {...}}` object a failure printed with `--json`, checked for its exit code.
#[track_caller]
fn json_error(out: &Out, kind: &str, exit_code: i32) -> Value {
    out.code(exit_code);
    let error = out.json()["error"].clone();
    assert_eq!(error["kind"].as_str(), Some(kind), "{out}");
    assert_eq!(
        error["exit_code"].as_i64(),
        Some(i64::from(exit_code)),
        "{out}"
    );
    // The same words on stderr (clap breaks its message over lines there).
    let words = |t: &str| t.split_whitespace().collect::<Vec<_>>().join(" ");
    let message = error["message"].as_str().expect("a message");
    assert!(
        words(&out.stderr).contains(&words(message)),
        "stderr should carry the same message: {out}"
    );
    error
}

// ---------------------------------------------------------------------------------------
// Finding the socket
// ---------------------------------------------------------------------------------------

#[test]
fn ctl_finds_the_socket_from_config_or_environment() {
    if !require_root("ctl_finds_the_socket_from_config_or_environment") {
        return;
    }
    let fx = standard();
    let config = fx.path.to_str().unwrap();
    let socket = fx.socket.to_str().unwrap();
    let missing = fx.dir.join("missing.sock");
    let missing = missing.to_str().unwrap();

    // --config: its control_socket.
    run(&mut ctl_command_without_socket(&[
        "--config", config, "status",
    ]))
    .ok()
    .stdout_has("ACTIVE");
    // ALLOWLIST_SOCKET.
    run(ctl_command_without_socket(&["list"]).env("ALLOWLIST_SOCKET", socket))
        .ok()
        .stdout_has("198.18.1.0/24");
    // --socket beats --config; --config beats the environment.
    run(&mut ctl_command_without_socket(&[
        "--socket", missing, "--config", config, "status",
    ]))
    .code(3)
    .stderr_has(&format!("cannot reach allowlistd at {missing}"))
    .stderr_has("this socket is --socket");
    run(ctl_command_without_socket(&["--config", config, "status"])
        .env("ALLOWLIST_SOCKET", missing))
    .ok();
    run(ctl_command_without_socket(&["status"]).env("ALLOWLIST_SOCKET", missing))
        .code(3)
        .stderr_has(&format!("cannot reach allowlistd at {missing}"))
        .stderr_has("this socket is $ALLOWLIST_SOCKET");

    // A config with problems elsewhere still names the socket: `reload --dry-run` must work
    // while the admin fixes the file.
    let broken = fx.dir.join("broken.toml");
    write_atomically(
        &broken,
        &format!("control_socket = \"{socket}\"\nactive = \"yes\"\n"),
    );
    run(&mut ctl_command_without_socket(&[
        "--config",
        broken.to_str().unwrap(),
        "status",
    ]))
    .ok();
}

#[test]
fn ctl_bad_config_names_the_file_and_the_problem() {
    if !require_root("ctl_bad_config_names_the_file_and_the_problem") {
        return;
    }
    let fx = standard();
    let before = std::fs::read_to_string(&fx.path).unwrap();
    let bad = |name: &str, text: Option<&str>| {
        let path = fx.dir.join(name);
        if let Some(text) = text {
            write_atomically(&path, text);
        }
        path.to_str().unwrap().to_owned()
    };
    let cases = [
        (bad("absent.toml", None), "No such file"),
        (
            bad(
                "relative.toml",
                Some("active = true\ncontrol_socket = \"ctl.sock\"\n"),
            ),
            ":2: key `control_socket`: must be a quoted absolute path",
        ),
        (bad("syntax.toml", Some("control_socket = \n")), ":1:"),
    ];
    for (path, problem) in &cases {
        let out = run(&mut ctl_command_without_socket(&[
            "--config",
            path,
            "add",
            "198.18.4.0/24",
        ]));
        out.refused(&format!("--config {path}: "))
            .stderr_has(problem)
            .stderr_has("--socket PATH");
        let out = run(&mut ctl_command_without_socket(&[
            "--json", "--config", path, "status",
        ]));
        json_error(&out, "invalid", 2);
    }
    assert_eq!(std::fs::read_to_string(&fx.path).unwrap(), before);
    fx.ctl(&["list"]).ok().stdout_lacks("198.18.4.0/24");
}

// ---------------------------------------------------------------------------------------
// `list` filters, `reload` summaries
// ---------------------------------------------------------------------------------------

#[test]
fn ctl_list_filters_limits_and_counts_in_the_daemon() {
    if !require_root("ctl_list_filters_limits_and_counts_in_the_daemon") {
        return;
    }
    let fx = Running::start(with_list_file);
    let list_file = fx.dir.join("partners.list");
    let config = fx.path.to_str().unwrap();

    assert_eq!(
        listed(&fx, &["--contains", "198.18.9.77"]),
        ["198.18.9.0/24"]
    );
    assert_eq!(
        listed(&fx, &["--contains", "2001:db8::a"]),
        ["2001:db8::a/128"]
    );
    // An IPv4-mapped address is judged by the IPv4 entries, as the filter judges it.
    assert_eq!(
        listed(&fx, &["--contains", "::ffff:198.18.1.9"]),
        ["198.18.1.0/24"]
    );
    fx.ctl(&["list", "--contains", "198.18.9.77"])
        .ok()
        .stdout_has("1 of 6 entries match")
        .stdout_has("partner two")
        .stdout_lacks("198.18.1.0/24");
    assert!(listed(&fx, &["--contains", "198.18.200.1"]).is_empty());

    assert_eq!(
        // Case-insensitive; the line without a comment has its file's name as its comment.
        listed(&fx, &["--comment", "PARTNER "]),
        ["198.18.8.0/24", "198.18.9.0/24"]
    );
    assert_eq!(listed(&fx, &["--comment", "berlin"]), ["198.18.5.0/24"]);

    let from_list = ["198.18.8.0/24", "198.18.9.0/24", "198.18.10.7/32"];
    assert_eq!(listed(&fx, &["--file", "partners.list"]), from_list);
    assert_eq!(
        listed(&fx, &["--file", list_file.to_str().unwrap()]),
        from_list
    );
    assert_eq!(
        listed(&fx, &["--file", config]),
        ["198.18.1.0/24", "2001:db8::a/128", "198.18.5.0/24"]
    );
    assert_eq!(
        listed(&fx, &["--file", "partners.list", "--comment", "two"]),
        ["198.18.9.0/24"]
    );

    let out = fx.ctl(&["--json", "list", "--limit", "2"]);
    let json = out.ok().json();
    assert_eq!(json["entries"].as_array().unwrap().len(), 2, "{out}");
    assert_eq!(json["matched"].as_u64(), Some(6));
    assert_eq!(json["total"].as_u64(), Some(6));
    fx.ctl(&["list", "--limit", "2"])
        .ok()
        .stdout_has("6 of 6 entries match, the first 2 shown");

    assert_eq!(fx.ctl(&["list", "--count"]).ok().stdout, "6\n");
    assert_eq!(
        fx.ctl(&["list", "--count", "--comment", "partner"])
            .ok()
            .stdout,
        "3\n"
    );
    let json = fx.ctl(&["--json", "list", "--count"]).ok().json();
    assert_eq!(json["matched"].as_u64(), Some(6));
    assert_eq!(json["entries"].as_array().unwrap().len(), 0);

    fx.ctl(&["list", "--contains", "garbage"])
        .refused("--contains `garbage` is not an IP address");
    fx.ctl(&["list", "--file", "nope.list"])
        .refused("--file `nope.list` is neither the config file nor one of its list files")
        .stderr_has(&list_file.display().to_string());
    fx.ctl(&["list", "--limit", "0"]).code(2);
}

#[test]
fn ctl_large_reload_prints_a_summary_unless_full() {
    if !require_root("ctl_large_reload_prints_a_summary_unless_full") {
        return;
    }
    let fx = standard();
    let mut text = std::fs::read_to_string(&fx.path).unwrap();
    for i in 0..60 {
        text += &format!("\n[[entries]]\ncidr = \"198.19.0.{i}\"\n");
    }
    write_atomically(&fx.path, &text);
    let added = |out: &Out| out.stdout.lines().filter(|l| l.starts_with("+ ")).count();

    let dry = fx.ctl(&["reload", "--dry-run"]);
    dry.ok()
        .stdout_has("... and 50 more added, 0 more removed (--full lists every one)")
        .stdout_has("+60 -0");
    assert_eq!(added(&dry), 10, "{dry}");
    let full = fx.ctl(&["reload", "--dry-run", "--full"]);
    assert_eq!(added(full.ok()), 60, "{full}");
    full.stdout_lacks("more added");
    let json = fx.ctl(&["--json", "reload", "--dry-run"]).ok().json();
    assert_eq!(json["added"].as_array().unwrap().len(), 10);
    assert_eq!(json["more_added"].as_u64(), Some(50));

    let real = fx.ctl(&["reload"]);
    assert_eq!(added(real.ok()), 10, "{real}");
    real.stdout_has("50 more added");
    assert_eq!(fx.ctl(&["list", "--count"]).ok().stdout, "61\n");
}

/// A list file that overlaps (a repeat, a line inside an inline entry, one inside another
/// line) is merged: `reload --dry-run` and the reload say how many lines on one line, and
/// `--json` carries the number; the merged lines never become entries, and `add` may cover
/// list-file lines as the file may.
#[test]
fn ctl_reload_counts_merged_list_file_lines() {
    if !require_root("ctl_reload_counts_merged_list_file_lines") {
        return;
    }
    let fx = Running::start(with_list_file);
    let merged = "merged 3 duplicate or covered list-file lines (partners.list: 3)";
    write_atomically(
        &fx.dir.join("partners.list"),
        "198.18.8.0/24  # Partner one\n198.18.9.0/24  # partner two\n198.18.10.7\n\
         198.18.8.0/24  # Partner one, again\n198.18.1.9  # inside lab A\n198.18.9.128/25\n",
    );
    let dry = fx.ctl(&["reload", "--dry-run"]);
    dry.ok()
        .stdout_has(merged)
        .stdout_has("would apply +0 -0 entries");
    assert_eq!(
        dry.stdout.lines().filter(|l| l.contains("merged")).count(),
        1,
        "{dry}"
    );
    let json = fx.ctl(&["--json", "reload", "--dry-run"]).ok().json();
    assert_eq!(json["merged_lines"].as_u64(), Some(3), "{json}");
    let file = json["merged_files"][0]["file"].as_str().unwrap_or_default();
    assert!(file.ends_with("/partners.list"), "{json}");
    assert_eq!(json["merged_files"][0]["lines"].as_u64(), Some(3), "{json}");

    fx.ctl(&["reload"]).ok().stdout_has(merged);
    assert_eq!(fx.ctl(&["list", "--count"]).ok().stdout, "6\n");
    assert_eq!(
        listed(&fx, &["--contains", "198.18.1.9"]),
        ["198.18.1.0/24"],
        "the inline entry covers the merged line"
    );

    // As in the file, a hand-written entry covering list-file lines merges them.
    fx.ctl(&["add", "198.18.8.0/23", "--comment", "both partners"])
        .ok()
        .stdout_has("+1 -2 entries");
    assert_eq!(fx.ctl(&["list", "--count"]).ok().stdout, "5\n");
    assert_eq!(
        listed(&fx, &["--contains", "198.18.9.5"]),
        ["198.18.8.0/23"]
    );
    fx.ctl(&["reload", "--dry-run"])
        .ok()
        .stdout_has("merged 5 duplicate or covered list-file lines (partners.list: 5)");
}

// ---------------------------------------------------------------------------------------
// A second emergency disable
// ---------------------------------------------------------------------------------------

/// The last audit record.
fn last_record(run: &Running) -> Value {
    run.audit().pop().expect("an audit record")
}

#[track_caller]
fn emergency(run: &Running) -> Value {
    run.ctl(&["--json", "status"]).ok().json()["emergency"].clone()
}

#[test]
fn ctl_second_emergency_disable_is_refused_unless_replace_or_extend() {
    if !require_root("ctl_second_emergency_disable_is_refused_unless_replace_or_extend") {
        return;
    }
    let fx = standard();
    fx.ctl(&["emergency-disable", "--reason", "vpn down", "--for", "10m"])
        .ok();
    let first = emergency(&fx);

    let out = fx.ctl(&["emergency-disable", "--reason", "other", "--for", "1h"]);
    out.refused("an emergency disable is already in force")
        .stderr_has("reason: vpn down")
        .stderr_has(first["until_local"].as_str().unwrap())
        .stderr_has("--replace")
        .stderr_has("--extend");
    assert_eq!(
        emergency(&fx)["until"],
        first["until"],
        "the refusal changed it"
    );
    assert_eq!(emergency(&fx)["reason"].as_str(), Some("vpn down"));
    let r = last_record(&fx);
    assert_eq!(r["action"].as_str(), Some("emergency-start"), "{r}");
    assert_eq!(r["result"]["status"].as_str(), Some("refused"), "{r}");
    json_error(
        &fx.ctl(&["--json", "emergency-disable", "--reason", "other"]),
        "conflict",
        2,
    );

    // --extend: same reason, a later end.
    fx.ctl(&["emergency-disable", "--extend", "--for", "2h"])
        .ok()
        .stdout_has("extended");
    let extended = emergency(&fx);
    assert_eq!(extended["reason"].as_str(), Some("vpn down"));
    assert!(
        extended["remaining_secs"].as_u64().unwrap() > 3600,
        "{extended}"
    );
    let r = last_record(&fx);
    assert_eq!(r["action"].as_str(), Some("emergency-extend"), "{r}");
    assert_eq!(r["before"]["emergency"]["until"], first["until"], "{r}");
    assert_eq!(r["after"]["emergency"]["until"], extended["until"], "{r}");
    // Never sooner than it ends now.
    fx.ctl(&["emergency-disable", "--extend", "--for", "1m"])
        .refused("sooner");
    assert_eq!(emergency(&fx)["until"], extended["until"]);
    assert_eq!(
        last_record(&fx)["action"].as_str(),
        Some("emergency-extend")
    );
    // --extend keeps the reason: one given too is a usage error.
    fx.ctl(&["emergency-disable", "--extend", "--reason", "x"])
        .code(2)
        .stderr_has("--reason");

    // --replace: the new reason and duration.
    fx.ctl(&[
        "emergency-disable",
        "--replace",
        "--reason",
        "dns down",
        "--for",
        "30m",
    ])
    .ok()
    .stdout_has("in place of the one until");
    let replaced = emergency(&fx);
    assert_eq!(replaced["reason"].as_str(), Some("dns down"));
    assert!(replaced["remaining_secs"].as_u64().unwrap() <= 1800);
    let r = last_record(&fx);
    assert_eq!(r["action"].as_str(), Some("emergency-replace"), "{r}");
    assert_eq!(
        r["before"]["emergency"]["reason"].as_str(),
        Some("vpn down")
    );
    assert_eq!(r["after"]["emergency"]["reason"].as_str(), Some("dns down"));

    fx.ctl(&["emergency-end"]).ok();
    fx.ctl(&["emergency-disable", "--extend", "--for", "1h"])
        .refused("no emergency disable is in force to extend");
    assert!(emergency(&fx).is_null());
}

// ---------------------------------------------------------------------------------------
// `--json` failures
// ---------------------------------------------------------------------------------------

#[test]
fn ctl_json_failures_print_an_error_object() {
    if !require_root("ctl_json_failures_print_an_error_object") {
        return;
    }
    let fx = standard();
    // The daemon's refusal.
    let error = json_error(&fx.ctl(&["--json", "add", "garbage"]), "invalid", 2);
    assert!(error["message"].as_str().unwrap().contains("`garbage`"));
    // A local check.
    json_error(&fx.ctl(&["--json", "add", "--current"]), "invalid", 2);
    // The command line (clap); --json anywhere before `--`.
    let out = fx.ctl(&["emergency-disable", "--for", "1h", "--json"]);
    let error = json_error(&out, "usage", 2);
    assert!(
        error["message"].as_str().unwrap().contains("--reason"),
        "{out}"
    );
    out.stderr_has("Usage:");
    // Help is not a failure.
    let help = fx.ctl(&["--json", "list", "--help"]);
    help.ok().stdout_has("Usage:");
    // Unreachable.
    let missing = fx.dir.join("gone.sock");
    let out = run(&mut allowlist_tests::ctl::ctl_command(
        &missing,
        &["--json", "status"],
    ));
    let error = json_error(&out, "unreachable", 3);
    assert!(
        error["message"]
            .as_str()
            .unwrap()
            .contains(&format!("cannot reach allowlistd at {}", missing.display())),
        "{out}"
    );
    // Without --json, stdout stays empty.
    let out = run(&mut allowlist_tests::ctl::ctl_command(
        &missing,
        &["status"],
    ));
    out.code(3);
    assert!(out.stdout.is_empty(), "{out}");
    let out = fx.ctl(&["emergency-disable", "--for", "1h"]);
    out.code(2).stderr_has("--reason");
    assert!(out.stdout.is_empty(), "{out}");
}
