//! Drop-ins and `watch = true` end to end: the real daemon in a network namespace, real TCP
//! connects. A drop-in is added, changed through a ConfigMap-style swap of its `..data`
//! symlink, and removed, each in force within 2 s with its `via: watch` reload record; a bad
//! drop-in is refused and the old rules stay; a burst of 50 writes makes one reload, and the
//! daemon's own writes (a change through allowlistctl) none.

use std::time::{Duration, Instant};

use allowlist_tests::config_map::{ConfigMap, IN_FORCE_WITHIN, in_force};
use allowlist_tests::daemon::{Config, allowlistd, with_top_level, write_atomically};
use allowlist_tests::fixture::Running;
use allowlist_tests::netns::{A4, B4, B6, PROTECTED, to};
use allowlist_tests::require_root;
use allowlist_tests::tcp::{assert_connects, assert_times_out};
use serde_json::Value;

fn start() -> Running {
    let run = start_with("watch = true\n", true);
    let log = run.daemon.log();
    assert!(log.contains("watching the config's files"), "{log}");
    run
}

/// A daemon on a config with `include = ["conf.d/*.toml"]` (an empty `conf.d` if `conf_d`),
/// the office listed, and `extra` top-level lines.
fn start_with(extra: &str, conf_d: bool) -> Running {
    Running::start(|dir, iface| {
        if conf_d {
            std::fs::create_dir(dir.join("conf.d")).expect("conf.d");
        }
        let text = Config::new(dir, iface)
            .entry("198.18.1.0/24", "office")
            .render();
        with_top_level(&text, &format!("include = [\"conf.d/*.toml\"]\n{extra}"))
    })
}

/// The `reload` records made by the watch.
fn watch_reloads(run: &Running) -> Vec<Value> {
    run.audit()
        .into_iter()
        .filter(|r| r["action"] == "reload" && r["actor"]["via"] == "watch")
        .collect()
}

#[test]
fn drop_ins_added_swapped_and_removed_are_in_force_within_2s() {
    if !require_root("drop_ins_added_swapped_and_removed_are_in_force_within_2s") {
        return;
    }
    let run = start();
    let client = run.client();
    assert_times_out(client, B4, to(B4, PROTECTED), "no drop-in yet");
    let conf_d = run.dir.join("conf.d");
    let team = conf_d.join("team.toml");
    let mut volume = ConfigMap::new(&conf_d);

    // Added: a new key of the ConfigMap.
    let since = Instant::now();
    volume.publish(&[(
        "team.toml",
        "[[entries]]\ncidr = \"198.18.2.2\"\ncomment = \"team B\"\n",
    )]);
    in_force(client, B4, true, since, "the drop-in added");
    assert_connects(client, A4, to(A4, PROTECTED), "the main file's entry stays");
    let reloads = watch_reloads(&run);
    assert_eq!(reloads.len(), 1, "one reload: {reloads:#?}");
    assert_eq!(reloads[0]["result"]["status"], "ok");
    assert_eq!(reloads[0]["after"]["entries"][0]["cidr"], "198.18.2.2/32");
    assert_eq!(reloads[0]["after"]["files"][0], team.display().to_string());
    run.ctl(&["list"])
        .ok()
        .stdout_has(&format!("[{}:2]", team.display()));
    run.ctl(&["list", "--file", &team.display().to_string()])
        .ok()
        .stdout_has("198.18.2.2/32")
        .stdout_has("1 of 2 entries match");

    // Changed: a new version swapped in under `..data`.
    let since = Instant::now();
    volume.publish(&[(
        "team.toml",
        "[[entries]]\ncidr = \"2001:db8::b\"\ncomment = \"team B, IPv6 now\"\n",
    )]);
    in_force(client, B6, true, since, "the swapped version");
    in_force(client, B4, false, since, "the old version's entry");
    let reloads = watch_reloads(&run);
    assert_eq!(reloads.len(), 2, "one more reload: {reloads:#?}");
    assert_eq!(reloads[1]["after"]["entries"][0]["cidr"], "2001:db8::b/128");
    assert_eq!(reloads[1]["before"]["entries"][0]["cidr"], "198.18.2.2/32");
    // A file of a ConfigMap is changed where it comes from.
    run.ctl(&["remove", "2001:db8::b"])
        .refused("is a symlink (a ConfigMap volume?)");

    // Removed: the key gone from the ConfigMap.
    let since = Instant::now();
    std::fs::remove_file(&team).unwrap();
    in_force(client, B6, false, since, "the drop-in removed");
    let reloads = watch_reloads(&run);
    assert_eq!(reloads.len(), 3, "one more reload: {reloads:#?}");
    assert_eq!(
        reloads[2]["before"]["entries"][0]["cidr"],
        "2001:db8::b/128"
    );
    assert_eq!(reloads[2]["after"]["files"][0], team.display().to_string());

    // A bad drop-in: refused with the reason, the old rules stay.
    let bad = conf_d.join("bad.toml");
    write_atomically(
        &bad,
        "interfaces = [\"eth9\"]\n\n[[entries]]\ncidr = \"198.18.2.2\"\n",
    );
    let line = run
        .daemon
        .wait_for_log(
            "files changed on disk: reload failed",
            Duration::from_secs(5),
        )
        .expect("the refusal is logged");
    assert!(
        line.contains(&format!("{}:1: key `interfaces`", bad.display()))
            && line.contains("belongs in the main config file"),
        "{line}"
    );
    let reloads = watch_reloads(&run);
    assert_eq!(reloads.len(), 4, "{reloads:#?}");
    assert_eq!(reloads[3]["result"]["status"], "refused");
    assert_times_out(
        client,
        B4,
        to(B4, PROTECTED),
        "the refused drop-in is not in force",
    );
    assert_connects(client, A4, to(A4, PROTECTED), "the old rules stay");
    // Refused once: nothing is retried until the files change again.
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(watch_reloads(&run).len(), 4);
    // Fixed: in force.
    let since = Instant::now();
    write_atomically(&bad, "[[entries]]\ncidr = \"198.18.2.2\"\n");
    in_force(client, B4, true, since, "the fixed drop-in");
}

#[test]
fn a_burst_of_writes_makes_one_reload_and_own_writes_none() {
    if !require_root("a_burst_of_writes_makes_one_reload_and_own_writes_none") {
        return;
    }
    let run = start();
    let client = run.client();
    let drop_in = run.dir.join("conf.d/burst.toml");
    let since = Instant::now();
    for i in 0..50 {
        let text = format!("[[entries]]\ncidr = \"198.18.2.2\"\ncomment = \"write {i}\"\n");
        write_atomically(&drop_in, &text);
        std::thread::sleep(Duration::from_millis(10));
    }
    eprintln!("50 writes in {:?}", since.elapsed());
    in_force(client, B4, true, since, "the burst's last write");
    std::thread::sleep(Duration::from_secs(2));
    let reloads = watch_reloads(&run);
    assert_eq!(reloads.len(), 1, "one reload for the burst: {reloads:#?}");
    run.ctl(&["list"]).ok().stdout_has("write 49");

    // The daemon's own writes are no change to reload: an entry edited in the drop-in
    // holding it, a new one added to the main file.
    run.ctl(&["edit", "198.18.2.2", "--comment", "edited"]).ok();
    let text = std::fs::read_to_string(&drop_in).unwrap();
    assert!(
        text.contains("comment = \"edited\""),
        "edited in the drop-in:\n{text}"
    );
    run.ctl(&["add", "2001:db8::b"]).ok();
    run.ctl(&[
        "add",
        "198.18.7.7",
        "--file",
        &drop_in.display().to_string(),
    ])
    .ok();
    // A list too, where the config file is a read-only ConfigMap's.
    run.ctl(&[
        "add-list",
        "api",
        "--tcp",
        "8443",
        "--file",
        &drop_in.display().to_string(),
    ])
    .ok();
    let text = std::fs::read_to_string(&drop_in).unwrap();
    assert!(
        text.contains("198.18.7.7") && text.contains("[lists.api]"),
        "the entry and the list added to the drop-in:\n{text}"
    );
    let main = std::fs::read_to_string(&run.path).unwrap();
    assert!(
        main.contains("2001:db8::b") && !main.contains("198.18.7.7") && !main.contains("api"),
        "{main}"
    );
    run.ctl(&["lists"]).ok().stdout_has("api");
    assert_connects(client, B6, to(B6, PROTECTED), "added through allowlistctl");
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(
        watch_reloads(&run).len(),
        1,
        "no reload for the daemon's own writes"
    );
    let changes: Vec<Value> = run
        .audit()
        .into_iter()
        .filter(|r| r["action"] == "edit" || r["action"] == "add")
        .collect();
    let files: Vec<&Value> = changes.iter().map(|r| &r["after"]["files"][0]).collect();
    let (drop_in, main) = (
        drop_in.display().to_string(),
        run.path.display().to_string(),
    );
    assert_eq!(files, [&drop_in, &main, &drop_in], "{changes:#?}");
}

#[test]
fn check_dry_run_and_timed_entries_cover_the_drop_ins() {
    if !require_root("check_dry_run_and_timed_entries_cover_the_drop_ins") {
        return;
    }
    let run = start_with("", true);
    let client = run.client();
    let vendor = run.dir.join("conf.d/vendor.toml");
    // Far enough ahead for two `--check` runs, two dry runs and a reload on a busy machine.
    let ends = Instant::now() + Duration::from_secs(10);
    let end = jiff::Timestamp::now() + jiff::SignedDuration::from_secs(10);
    write_atomically(
        &vendor,
        &format!(
            "[[entries]]\ncidr = \"198.18.9.0/24\"\ncomment = \"vendor office\"\n\n\
             [[entries]]\ncidr = \"198.18.2.2\"\ncomment = \"vendor's engineer\"\n\
             expires = {end}\n"
        ),
    );
    // `--check` and `reload --dry-run` read the whole set.
    let bad = run.dir.join("conf.d/bad.toml");
    write_atomically(&bad, "\nmax_entries = 10\n");
    // In the server's namespace, where its interface is.
    let check = || {
        let (bin, config) = (allowlistd(), run.path.display().to_string());
        let args = ["--check", "--config", config.as_str()];
        run.lab
            .server
            .exec(&bin.display().to_string(), &args)
            .expect("allowlistd --check")
    };
    let checked = check();
    let said = String::from_utf8_lossy(&checked.stderr);
    assert!(!checked.status.success(), "{said}");
    assert!(
        said.contains(&format!("{}:2: key `max_entries`", bad.display())),
        "{said}"
    );
    run.ctl(&["reload", "--dry-run"])
        .refused(&format!("{}:2: key `max_entries`", bad.display()));
    std::fs::remove_file(&bad).unwrap();
    let checked = check();
    assert!(checked.status.success(), "{checked:?}");
    let said = String::from_utf8_lossy(&checked.stdout);
    assert!(
        said.contains("ok: 3 entries") && said.contains("; 1 drop-in (vendor.toml)"),
        "{said}"
    );
    run.ctl(&["reload", "--dry-run"])
        .ok()
        .stdout_has(&format!(
            "+ 198.18.2.2/32  vendor's engineer  [{}:6]",
            vendor.display()
        ))
        .stdout_has("would apply +2 -0 entries");
    assert_times_out(client, B4, to(B4, PROTECTED), "a dry run changes nothing");
    run.ctl(&["reload"]).ok();
    assert_connects(client, B4, to(B4, PROTECTED), "within its time");
    run.ctl(&["list", "--timed"])
        .ok()
        .stdout_has("198.18.2.2/32")
        .stdout_has("expires in ");

    // At its end the kernel stops admitting it, and the daemon takes it out of the drop-in.
    std::thread::sleep(ends.saturating_duration_since(Instant::now()) + Duration::from_millis(500));
    assert_times_out(client, B4, to(B4, PROTECTED), "ended");
    let text = std::fs::read_to_string(&vendor).unwrap();
    assert!(
        !text.contains("198.18.2.2") && text.contains("198.18.9.0/24"),
        "the ended entry left the drop-in, the rest stayed:\n{text}"
    );
    let expired: Vec<Value> = run
        .audit()
        .into_iter()
        .filter(|r| r["action"] == "expire")
        .collect();
    assert_eq!(expired.len(), 1, "{expired:#?}");
    assert_eq!(expired[0]["before"]["entries"][0]["cidr"], "198.18.2.2/32");
    assert_eq!(
        expired[0]["after"]["files"][0],
        vendor.display().to_string()
    );
    assert_connects(client, A4, to(A4, PROTECTED), "the office stays");

    // A list defined in a drop-in: allowlistctl changes its mode there.
    let api = run.dir.join("conf.d/api.toml");
    write_atomically(
        &api,
        "[lists.api]\ntcp_ports = [8080]\n\n[[lists.api.entries]]\ncidr = \"198.18.1.0/24\"\n",
    );
    run.ctl(&["reload"]).ok();
    assert_connects(client, A4, to(A4, 8080), "listed in api");
    assert_times_out(client, B4, to(B4, 8080), "api protects 8080");
    run.ctl(&["deactivate", "--list", "api"]).ok();
    let text = std::fs::read_to_string(&api).unwrap();
    assert!(
        text.contains("mode = \"off\""),
        "in the drop-in defining it:\n{text}"
    );
    assert_connects(client, B4, to(B4, 8080), "api is off");
}

#[test]
fn a_drop_in_directory_made_later_is_watched_too() {
    if !require_root("a_drop_in_directory_made_later_is_watched_too") {
        return;
    }
    let run = start_with("watch = true\n", false);
    let client = run.client();
    // Made empty first (nothing to reload), then filled.
    std::fs::create_dir(run.dir.join("conf.d")).unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(
        watch_reloads(&run).len(),
        0,
        "an empty directory changes nothing"
    );
    let since = Instant::now();
    write_atomically(
        &run.dir.join("conf.d/late.toml"),
        "[[entries]]\ncidr = \"198.18.2.2\"\n",
    );
    in_force(
        client,
        B4,
        true,
        since,
        "a drop-in in a directory made after the start",
    );
    assert_eq!(watch_reloads(&run).len(), 1);
}

#[test]
fn a_timed_entry_of_a_config_map_ends_in_the_kernel_and_stays_in_its_file() {
    if !require_root("a_timed_entry_of_a_config_map_ends_in_the_kernel_and_stays_in_its_file") {
        return;
    }
    let run = start();
    let client = run.client();
    let mut volume = ConfigMap::new(&run.dir.join("conf.d"));
    let ends = Instant::now() + Duration::from_secs(6);
    let end = jiff::Timestamp::now() + jiff::SignedDuration::from_secs(6);
    let since = Instant::now();
    volume.publish(&[(
        "vendor.toml",
        &format!("[[entries]]\ncidr = \"198.18.2.2\"\nexpires = {end}\n"),
    )]);
    in_force(client, B4, true, since, "the timed entry");
    std::thread::sleep(ends.saturating_duration_since(Instant::now()) + Duration::from_millis(500));
    assert_times_out(client, B4, to(B4, PROTECTED), "ended, in the kernel");
    run.daemon
        .wait_for_log("is a symlink (a ConfigMap volume?)", Duration::from_secs(5))
        .expect("the daemon says why the entry stays in the file");
    let expired = run
        .audit()
        .into_iter()
        .filter(|r| r["action"] == "expire")
        .count();
    assert_eq!(expired, 0, "nothing was taken out, so nothing is recorded");
    // Taken out at the source: the next version no longer has it.
    let since = Instant::now();
    volume.publish(&[("vendor.toml", "")]);
    while watch_reloads(&run).len() < 2 {
        assert!(
            since.elapsed() <= IN_FORCE_WITHIN,
            "the new version reloaded within 2 s"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_times_out(client, B4, to(B4, PROTECTED), "still out");
}
