//! The Ansible role (deploy/ansible/) run for real: ansible-playbook (ansible-core from PyPI;
//! `cargo xtask test` installs it into a venv and names it in `ALLOWLIST_ANSIBLE_PLAYBOOK`)
//! runs the example playbook against this machine with the local connection, inside the
//! server's network namespace (the host the daemon filters, where its interface exists for
//! `allowlistd --check`). The role installs the real .deb with dpkg (purged at the end) and
//! writes the config and a drop-in into the test's directory, which the real daemon, started
//! on it before the first run, reloads. PID 1 is not systemd here, so the role's fact-based
//! fallback, `allowlistctl reload`, is what reloads.
//!
//! The first run changes things (a drop-in removed too) and its entries are in force with one
//! audited reload; the second changes nothing and reloads nothing; a bad entry fails at `validate` with
//! allowlistd's own words and changes nothing on disk or in the daemon.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use allowlist_tests::daemon::{Config, with_top_level};
use allowlist_tests::fixture::Running;
use allowlist_tests::netns::{A4, B4, B6, PROTECTED, to};
use allowlist_tests::package::{self, Machine, workspace_root};
use allowlist_tests::tcp::{assert_connects, assert_times_out};
use allowlist_tests::{path_from_xtask, require_root};
use serde_json::{Value, json};

/// ansible-playbook's settings for these runs: its home (`HOME` too: a module may fall back
/// to `~/.ansible`), temporary files and inventory under `dir`, so nothing is left in root's
/// home.
struct Ansible {
    bin: PathBuf,
    dir: tempfile::TempDir,
}

/// What one run of the playbook said.
struct Run {
    out: String,
    took: Duration,
    success: bool,
    /// The recap's counts for the host: ok, changed, failed, ...
    recap: BTreeMap<String, u32>,
}

impl Ansible {
    fn new(bin: PathBuf) -> Ansible {
        let dir = tempfile::tempdir().expect("a directory for ansible");
        std::fs::write(
            dir.path().join("hosts"),
            "[allowlist]\nlocalhost ansible_connection=local \
             ansible_python_interpreter=/usr/bin/python3\n",
        )
        .expect("writing the inventory");
        Ansible { bin, dir }
    }

    /// The example playbook with `vars` as extra variables, on the host inside `run`'s server
    /// namespace.
    fn play(&self, run: &Running, vars: &Value) -> Run {
        let vars_file = self.dir.path().join("vars.json");
        std::fs::write(&vars_file, vars.to_string()).expect("writing the variables");
        let home = self.dir.path().join("home");
        let begun = Instant::now();
        let out: Output = Command::new("ip")
            .args(["netns", "exec", run.lab.server.name()])
            .arg(&self.bin)
            .arg("-i")
            .arg(self.dir.path().join("hosts"))
            .arg("-e")
            .arg(format!("@{}", vars_file.display()))
            .arg(workspace_root().join("deploy/ansible/playbook.yml"))
            .current_dir(self.dir.path())
            .env("HOME", &home)
            .env("ANSIBLE_HOME", &home)
            .env("ANSIBLE_LOCAL_TEMP", home.join("tmp"))
            .env("ANSIBLE_REMOTE_TMP", home.join("remote-tmp"))
            .env("ANSIBLE_NOCOLOR", "1")
            .env("PYTHONWARNINGS", "ignore")
            .stdin(std::process::Stdio::null())
            .output()
            .expect("running ansible-playbook");
        let out_text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let line = out_text
            .lines()
            .find(|l| l.starts_with("localhost") && l.contains(" changed="))
            .unwrap_or_else(|| panic!("no recap line:\n{out_text}"));
        let recap = line
            .split_whitespace()
            .filter_map(|w| w.split_once('='))
            .map(|(k, v)| (k.to_owned(), v.parse().expect("a count")))
            .collect();
        Run {
            out: out_text,
            took: begun.elapsed(),
            success: out.status.success(),
            recap,
        }
    }
}

/// The role's variables for `run`'s daemon: its paths and interface, the office in the main
/// file, and the drop-ins `drop_ins`.
fn vars(run: &Running, deb: &Path, debs: &Path, drop_ins: Value) -> Value {
    let config = Config::new(&run.dir, run.lab.server_if());
    json!({
        "allowlist_deb": deb,
        "allowlist_deb_dir": debs,
        "allowlist_config_dir": run.dir.path(),
        "allowlist_config": {
            "active": true,
            "interfaces": config.interfaces,
            "protected_tcp_ports": config.protected_tcp_ports,
            "control_socket": config.control_socket,
            "state_dir": config.state_dir,
            "audit_log": config.audit_log,
            "bpffs_dir": config.bpffs_dir,
            "include": ["conf.d/*.toml"],
            "entries": [{"cidr": "198.18.1.0/24", "comment": "office"}],
        },
        "allowlist_drop_ins": drop_ins,
    })
}

/// The config files as they are on disk: the main file and the drop-ins, by path.
fn files(run: &Running) -> BTreeMap<PathBuf, String> {
    let mut files = BTreeMap::from([(
        run.path.clone(),
        std::fs::read_to_string(&run.path).expect("the main file"),
    )]);
    if let Ok(entries) = std::fs::read_dir(run.dir.join("conf.d")) {
        for entry in entries {
            let path = entry.expect("a drop-in").path();
            let text = std::fs::read_to_string(&path).expect("a drop-in");
            files.insert(path, text);
        }
    }
    files
}

#[test]
fn the_role_installs_writes_checked_files_and_reloads_only_on_change() {
    let test = "the_role_installs_writes_checked_files_and_reloads_only_on_change";
    if !require_root(test) {
        return;
    }
    let Some(bin) = path_from_xtask(test, "ALLOWLIST_ANSIBLE_PLAYBOOK", "installs ansible-core")
    else {
        return;
    };
    let machine = Machine::take();
    let debs = tempfile::tempdir().expect("a directory for the .deb");
    let begun = Instant::now();
    let deb = package::build(debs.path(), None);
    let built = begun.elapsed();
    let ansible = Ansible::new(bin);

    // Running before the role, on a config of its own: no entries in the main file, and a
    // drop-in the role is told to remove.
    let run = Running::start(|dir, iface| {
        std::fs::create_dir(dir.join("conf.d")).expect("conf.d");
        let old = "[[entries]]\ncidr = \"2001:db8::b\"\ncomment = \"old team\"\n";
        std::fs::write(dir.join("conf.d/10-old.toml"), old).expect("a drop-in");
        let text = Config::new(dir, iface).render();
        with_top_level(&text, "include = [\"conf.d/*.toml\"]\n")
    });
    let client = run.client();
    assert_times_out(client, B4, to(B4, PROTECTED), "not listed yet");
    assert_connects(client, B6, to(B6, PROTECTED), "the old drop-in");
    let team = json!({"20-team": {"entries": [{"cidr": "198.18.2.2", "comment": "team B"}]}});
    let mut good = vars(&run, &deb, debs.path(), team);
    good["allowlist_drop_ins_absent"] = json!(["10-old"]);
    let audited = run.audit().len();

    // First run: the package installed, the files written, one reload, the entries in force.
    let first = ansible.play(&run, &good);
    assert!(first.success, "{}", first.out);
    assert!(first.recap["changed"] > 0, "{}", first.out);
    assert_eq!(
        machine.installed_version().as_deref(),
        Some(env!("CARGO_PKG_VERSION"))
    );
    assert!(
        first
            .out
            .contains("RUNNING HANDLER [allowlist : Reload allowlistd through its control socket]"),
        "no systemd here: the role reloads through allowlistctl\n{}",
        first.out
    );
    assert_connects(client, B4, to(B4, PROTECTED), "the drop-in's entry");
    assert_connects(client, A4, to(A4, PROTECTED), "the main file's entry");
    assert_times_out(client, B6, to(B6, PROTECTED), "the old drop-in removed");
    assert!(!run.dir.join("conf.d/10-old.toml").exists());
    let records = run.audit();
    let new: Vec<&Value> = records[audited..].iter().collect();
    assert_eq!(new.len(), 1, "one reload for three files: {new:#?}");
    assert_eq!(new[0]["action"], "reload");
    assert_eq!(new[0]["actor"]["via"], "cli");
    assert_eq!(new[0]["result"]["status"], "ok");
    assert_eq!(new[0]["before"]["entries"][0]["cidr"], "2001:db8::b/128");
    let drop_in = run.dir.join("conf.d/20-team.toml");
    run.ctl(&["list"])
        .ok()
        .stdout_has(&format!("198.18.2.2/32  team B  [{}:", drop_in.display()));
    for (path, mode) in [
        (run.path.clone(), 0o640),
        (drop_in.clone(), 0o640),
        (run.dir.join("conf.d"), 0o750),
    ] {
        let meta = std::fs::metadata(&path).expect("a file the role wrote");
        assert_eq!(
            std::os::unix::fs::PermissionsExt::mode(&meta.permissions()) & 0o7777,
            mode,
            "{}",
            path.display()
        );
    }

    // Second run: nothing changes, nothing is reloaded.
    let written = files(&run);
    let second = ansible.play(&run, &good);
    assert!(second.success, "{}", second.out);
    assert_eq!(second.recap["changed"], 0, "{}", second.out);
    assert!(!second.out.contains("RUNNING HANDLER"), "{}", second.out);
    assert_eq!(run.audit().len(), records.len(), "no new audit record");
    assert_eq!(files(&run), written);

    // Bad entries fail at `validate` with allowlistd's words, each where it is written: a
    // host-bits mistake, and an entry a new drop-in repeats from the main file (checked
    // against the set on disk). Nothing is written, nothing reloaded.
    let bad = json!({
        "20-team": {"entries": [
            {"cidr": "198.18.2.2", "comment": "team B"},
            {"cidr": "198.18.3.9/24", "comment": "typo"},
        ]},
        "30-again": {"entries": [{"cidr": "198.18.1.0/24", "comment": "office again"}]},
    });
    let third = ansible.play(&run, &vars(&run, &deb, debs.path(), bad));
    assert!(!third.success, "{}", third.out);
    assert_eq!(third.recap["failed"], 1, "{}", third.out);
    let again = run.dir.join("conf.d/30-again.toml");
    for said in [
        format!("{}:", drop_in.display()),
        "`198.18.3.9/24`: host bits set; did you mean 198.18.3.0/24?".to_owned(),
        format!("{}:", again.display()),
        format!("`198.18.1.0/24`: listed twice: {}:", run.path.display()),
        format!(" and {}:", again.display()),
        "failed to validate".to_owned(),
    ] {
        assert!(
            third.out.contains(&said),
            "`{said}` missing:\n{}",
            third.out
        );
    }
    assert_eq!(files(&run), written, "nothing written");
    assert_eq!(run.audit().len(), records.len(), "no new audit record");
    assert_connects(client, B4, to(B4, PROTECTED), "the old rules stay");
    let refusals: Vec<&str> = third
        .out
        .lines()
        .filter(|l| l.starts_with("failed: "))
        .collect();
    eprintln!(
        "the .deb built in {built:?}; ansible-playbook runs: {:?} (installs, writes, reloads), \
         {:?} (no change), {:?} (refused at validate):\n{}",
        first.took,
        second.took,
        third.took,
        refusals.join("\n")
    );
}
