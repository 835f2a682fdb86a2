//! Running allowlistd as a system service: the systemd unit (hardening, least privilege,
//! `systemd-analyze verify` on an installed tree, the exposure score), the sd_notify protocol
//! of the real daemon (READY, STATUS, RELOADING, WATCHDOG, STOPPING) under exactly the unit's
//! capabilities, `cargo xtask install` and `cargo xtask package` (.deb contents, conffile,
//! maintainer scripts), the package's prerm detaching a running daemon, and the generated man
//! pages and completions.
//!
//! PID 1 is not systemd on the machines these run on, so the unit is never started for real:
//! it is checked with `systemd-analyze verify` and `systemd-analyze security --offline=true`,
//! and the daemon is run the way systemd would run it (NOTIFY_SOCKET, WATCHDOG_USEC,
//! WATCHDOG_PID, the unit's capability bounding set, no_new_privs).
//!
//! Needs the built binaries (`cargo xtask build`, then
//! `ALLOWLIST_BIN_DIR=target/debug cargo test -p allowlist-tests --test service`); the tests
//! that run the daemon need root. `cargo xtask install` and `package` are run through cargo
//! (`cargo run -p xtask`) with `--bin-dir` set to those binaries, so no release build happens.

use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use allowlist_tests::bpffs::TestDir;
use allowlist_tests::daemon::{
    Config, Daemon, READY_TIMEOUT, RELOAD_TIMEOUT, SpawnOptions, bin_dir,
};
use allowlist_tests::netns::{Lab, Netns};
use allowlist_tests::require_root;
use nix::sys::signal::Signal;

/// The budget for `systemd-analyze security --offline=true allowlistd.service`.
const MAX_EXPOSURE: f64 = 2.5;

/// What the daemon needs, and all the unit grants (CAP_CHOWN: the control socket's group).
const UNIT_CAPABILITIES: [&str; 4] = ["CAP_BPF", "CAP_NET_ADMIN", "CAP_PERFMON", "CAP_CHOWN"];

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the tests crate sits in the workspace")
        .to_path_buf()
}

fn unit_path() -> PathBuf {
    workspace_root().join("packaging/systemd/allowlistd.service")
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

/// `name` on PATH, if there.
fn find_tool(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|path| {
        std::env::split_paths(&path)
            .map(|dir| dir.join(name))
            .find(|p| p.is_file())
    })
}

/// Like [`require_root`] for a tool: a visible skip outside CI, a failure under CI=true.
fn require_tool(test: &str, name: &str) -> bool {
    if find_tool(name).is_some() {
        return true;
    }
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("{test} needs `{name}`, which is not installed; under CI=true a skip is a failure");
    }
    eprintln!("SKIPPED {test}: needs `{name}`, which is not installed");
    false
}

#[track_caller]
fn run_ok(cmd: &mut Command) -> Output {
    let shown = format!("{cmd:?}");
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("running {shown}: {e}"));
    assert!(
        out.status.success(),
        "{shown} failed ({}):\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `cargo xtask ARGS...` (through `cargo run`, as the alias does).
#[track_caller]
fn xtask(args: &[&str]) -> Output {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let root = workspace_root();
    run_ok(
        Command::new(cargo)
            .current_dir(&root)
            .args(["run", "--quiet", "--package", "xtask", "--"])
            .args(args),
    )
}

/// The unit's `Key=value` lines, each key with its values in order.
fn unit_settings(text: &str) -> BTreeMap<String, Vec<String>> {
    let mut settings: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for line in text.lines().map(str::trim) {
        if line.starts_with('#') || line.starts_with('[') {
            continue;
        }
        if let Some((key, value)) = line.split_once('=') {
            settings
                .entry(key.trim().to_owned())
                .or_default()
                .push(value.trim().to_owned());
        }
    }
    settings
}

fn setting<'a>(settings: &'a BTreeMap<String, Vec<String>>, key: &str) -> &'a [String] {
    settings.get(key).map_or(&[], Vec::as_slice)
}

/// The exposure `systemd-analyze security --offline=true` gives `unit`.
fn exposure(unit: &Path) -> f64 {
    let out = Command::new("systemd-analyze")
        .args(["security", "--offline=true"])
        .arg(unit)
        .stdin(Stdio::null())
        .output()
        .expect("running systemd-analyze security");
    let text = stdout(&out);
    let marker = "Overall exposure level for allowlistd.service:";
    let line = text
        .lines()
        .find(|l| l.contains(marker))
        .unwrap_or_else(|| {
            panic!(
                "no `{marker}` line from systemd-analyze security ({}):\n{text}\n{}",
                out.status,
                String::from_utf8_lossy(&out.stderr)
            )
        });
    let after = line.split(marker).nth(1).unwrap_or_default();
    after
        .split_whitespace()
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no number in `{line}`"))
}

// ---------------------------------------------------------------------------------------
// The unit file
// ---------------------------------------------------------------------------------------

#[test]
fn unit_exposure_is_at_most_2_5() {
    if !require_tool("unit_exposure_is_at_most_2_5", "systemd-analyze") {
        return;
    }
    let score = exposure(&unit_path());
    eprintln!("systemd-analyze security --offline=true allowlistd.service: {score}");
    assert!(
        score <= MAX_EXPOSURE,
        "exposure {score} is above {MAX_EXPOSURE}: a hardening option was lost (see \
         `systemd-analyze security --offline=true {}`)",
        unit_path().display()
    );
}

#[test]
fn unit_grants_only_what_the_daemon_needs_and_keeps_its_paths_writable() {
    let settings = unit_settings(&read(&unit_path()));
    let one = |key: &str| -> String {
        match setting(&settings, key) {
            [value] => value.clone(),
            other => panic!("{key}= should be set once, got {other:?}"),
        }
    };
    assert_eq!(one("Type"), "notify");
    assert!(
        one("ExecStartPre").contains("allowlistd --check --config /etc/allowlist/allowlist.toml")
    );
    assert_eq!(
        one("ExecStart"),
        "/usr/sbin/allowlistd --config /etc/allowlist/allowlist.toml"
    );
    assert_eq!(one("ExecReload"), "/bin/kill -HUP $MAINPID");
    assert_eq!(one("Restart"), "on-failure");
    assert!(!one("WatchdogSec").is_empty());

    let caps = one("CapabilityBoundingSet");
    let caps: BTreeSet<&str> = caps.split_whitespace().collect();
    assert_eq!(caps, UNIT_CAPABILITIES.into_iter().collect());
    assert!(
        setting(&settings, "AmbientCapabilities")
            .iter()
            .all(String::is_empty)
    );
    for key in [
        "NoNewPrivileges",
        "PrivateTmp",
        "ProtectHome",
        "LockPersonality",
    ] {
        assert_eq!(one(key), "yes", "{key}");
    }
    assert_eq!(one("ProtectSystem"), "strict");
    // ProtectKernelTunables=yes would mount /sys/fs/bpf read-only, and ReadWritePaths=
    // cannot undo that for the same path: the daemon could not pin anything.
    assert_ne!(
        setting(&settings, "ProtectKernelTunables"),
        ["yes".to_owned()],
        "ProtectKernelTunables=yes makes /sys/fs/bpf read-only"
    );
    let filter = setting(&settings, "SystemCallFilter").join(" ");
    assert!(
        filter.split_whitespace().any(|w| w == "bpf"),
        "bpf() must be allowed: {filter}"
    );
    let families = one("RestrictAddressFamilies");
    let families: BTreeSet<&str> = families.split_whitespace().collect();
    // Unix sockets, netlink, and IP only for the optional metrics endpoint, from this host.
    assert!(
        families.is_subset(&BTreeSet::from([
            "AF_UNIX",
            "AF_NETLINK",
            "AF_INET",
            "AF_INET6"
        ])),
        "{families:?}"
    );
    assert_eq!(one("IPAddressDeny"), "any");

    // Every place the daemon writes by default is writable under ProtectSystem=strict.
    let mut writable: Vec<PathBuf> = one("ReadWritePaths")
        .split_whitespace()
        .map(PathBuf::from)
        .collect();
    for (key, base) in [
        ("RuntimeDirectory", "/run"),
        ("StateDirectory", "/var/lib"),
        ("LogsDirectory", "/var/log"),
    ] {
        writable.push(Path::new(base).join(one(key)));
    }
    let defaults = allowlist_config::Config::parse(
        Path::new("/etc/allowlist/allowlist.toml"),
        "active = false\n",
    )
    .expect("an empty inactive config is valid");
    for (what, path) in [
        ("config file's directory", Path::new("/etc/allowlist/x")),
        ("control_socket", defaults.control_socket.as_path()),
        ("state_dir", defaults.state_dir.as_path()),
        ("audit_log", defaults.audit_log.as_path()),
        ("bpffs_dir", defaults.bpffs_dir.as_path()),
    ] {
        assert!(
            writable.iter().any(|w| path.starts_with(w)),
            "the default {what} {} is not writable in the unit (writable: {writable:?})",
            path.display()
        );
    }
}

// ---------------------------------------------------------------------------------------
// cargo xtask install, and the installed unit under systemd-analyze verify
// ---------------------------------------------------------------------------------------

#[test]
fn installed_unit_verifies_and_install_keeps_an_existing_config() {
    let test = "installed_unit_verifies_and_install_keeps_an_existing_config";
    if !require_tool(test, "systemd-analyze") {
        return;
    }
    let tmp = tempfile::tempdir().expect("creating a temporary directory");
    // A real prefix (no --destdir): the unit then names binaries that exist, so verify's
    // check of the Exec paths is a real one.
    let prefix = tmp.path().join("usr");
    let sysconf = tmp.path().join("etc");
    let bins = bin_dir();
    let install = || {
        xtask(&[
            "install",
            "--prefix",
            prefix.to_str().expect("utf-8 temp path"),
            "--sysconfdir",
            sysconf.to_str().expect("utf-8 temp path"),
            "--bin-dir",
            bins.to_str().expect("utf-8 bin dir"),
        ])
    };
    install();

    let expected = [
        "sbin/allowlistd",
        "bin/allowlistctl",
        "lib/systemd/system/allowlistd.service",
        "share/man/man8/allowlistd.8",
        "share/man/man8/allowlistctl.8",
        "share/man/man5/allowlist.toml.5",
        "share/bash-completion/completions/allowlistctl",
        "share/bash-completion/completions/allowlistd",
        "share/zsh/site-functions/_allowlistctl",
        "share/zsh/site-functions/_allowlistd",
        "share/fish/vendor_completions.d/allowlistctl.fish",
        "share/fish/vendor_completions.d/allowlistd.fish",
    ];
    for file in expected {
        assert!(prefix.join(file).is_file(), "{file} was not installed");
    }
    let config = sysconf.join("allowlist/allowlist.toml");
    assert!(config.is_file(), "the default config was not installed");

    let unit = prefix.join("lib/systemd/system/allowlistd.service");
    let text = read(&unit);
    let daemon = prefix.join("sbin/allowlistd");
    assert!(
        text.contains(&format!(
            "ExecStart={} --config {}",
            daemon.display(),
            config.display()
        )),
        "the installed unit should start {} with {}:\n{text}",
        daemon.display(),
        config.display()
    );

    // Clean: no unknown keys, no bad values, executables and man pages found.
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&unit)
        .env("MANPATH", prefix.join("share/man"))
        .stdin(Stdio::null())
        .output()
        .expect("running systemd-analyze verify");
    let said = format!("{}{}", stdout(&out), String::from_utf8_lossy(&out.stderr));
    assert!(
        out.status.success() && said.trim().is_empty(),
        "systemd-analyze verify {} ({}):\n{said}",
        unit.display(),
        out.status
    );
    let score = exposure(&unit);
    assert!(score <= MAX_EXPOSURE, "installed unit's exposure {score}");

    // The unit's ExecStartPre accepts the config as installed (inactive, so it starts).
    let settings = unit_settings(&text);
    let pre = setting(&settings, "ExecStartPre")
        .first()
        .expect("ExecStartPre")
        .clone();
    let words: Vec<&str> = pre.split_whitespace().collect();
    let out = run_ok(Command::new(words[0]).args(&words[1..]));
    assert!(stdout(&out).contains("inactive"), "{}", stdout(&out));

    // A second install never overwrites the admin's config.
    let mine = format!("{}\n# the admin's own line\n", read(&config));
    std::fs::write(&config, &mine).expect("editing the installed config");
    let out = install();
    assert_eq!(read(&config), mine, "install overwrote an existing config");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("keeping the existing"),
        "install should say it kept the config"
    );
}

// ---------------------------------------------------------------------------------------
// cargo xtask package
// ---------------------------------------------------------------------------------------

#[test]
fn package_has_the_files_a_conffile_and_scripts_that_never_start_enforcing() {
    let test = "package_has_the_files_a_conffile_and_scripts_that_never_start_enforcing";
    if !require_tool(test, "dpkg-deb") {
        return;
    }
    let tmp = tempfile::tempdir().expect("creating a temporary directory");
    let bins = bin_dir();
    xtask(&[
        "package",
        "--bin-dir",
        bins.to_str().expect("utf-8 bin dir"),
        "--out-dir",
        tmp.path().to_str().expect("utf-8 temp path"),
    ]);
    let debs: Vec<PathBuf> = std::fs::read_dir(tmp.path())
        .expect("listing the output directory")
        .map(|e| e.expect("a directory entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "deb"))
        .collect();
    let [deb] = &debs[..] else {
        panic!(
            "expected one .deb in {}, found {debs:?}",
            tmp.path().display()
        );
    };

    let contents = stdout(&run_ok(Command::new("dpkg-deb").arg("--contents").arg(deb)));
    for file in [
        "./usr/sbin/allowlistd",
        "./usr/bin/allowlistctl",
        "./usr/lib/systemd/system/allowlistd.service",
        "./etc/allowlist/allowlist.toml",
        "./usr/share/man/man8/allowlistd.8.gz",
        "./usr/share/man/man8/allowlistctl.8.gz",
        "./usr/share/man/man5/allowlist.toml.5.gz",
        "./usr/share/bash-completion/completions/allowlistctl",
        "./usr/share/zsh/vendor-completions/_allowlistctl",
        "./usr/share/fish/vendor_completions.d/allowlistctl.fish",
        "./usr/share/doc/allowlist/README.md",
    ] {
        assert!(
            contents.lines().any(|l| l.ends_with(&format!(" {file}"))),
            "{file} missing from the package:\n{contents}"
        );
    }
    for line in contents.lines() {
        assert!(line.contains(" root/root "), "not root-owned: {line}");
    }
    // Not enabled by the package: no symlink into a .wants directory.
    assert!(
        !contents.contains(".wants/"),
        "the package enables the unit"
    );

    let info = stdout(&run_ok(Command::new("dpkg-deb").arg("--info").arg(deb)));
    for needle in [
        "Package: allowlist",
        "Architecture: ",
        "conffiles",
        "postinst",
        "prerm",
        "postrm",
    ] {
        assert!(
            info.contains(needle),
            "`{needle}` missing from --info:\n{info}"
        );
    }

    let control = tmp.path().join("control");
    run_ok(
        Command::new("dpkg-deb")
            .arg("--control")
            .arg(deb)
            .arg(&control),
    );
    assert_eq!(
        read(&control.join("conffiles")).trim(),
        "/etc/allowlist/allowlist.toml"
    );
    for script in ["postinst", "prerm", "postrm"] {
        let path = control.join(script);
        run_ok(Command::new("sh").arg("-n").arg(&path));
        assert_eq!(
            read(&path),
            read(&workspace_root().join("packaging/debian").join(script)),
            "{script} differs from packaging/debian/{script}"
        );
    }
    // Installing never enables or starts the service (it only tells the admin how to).
    let postinst = read(&control.join("postinst"));
    let code = code_lines(&postinst);
    for forbidden in ["enable", "start", "restart", "deb-systemd-invoke"] {
        assert!(
            !code
                .iter()
                .any(|l| l.split_whitespace().any(|w| w == forbidden)),
            "postinst runs `{forbidden}`:\n{}",
            code.join("\n")
        );
    }
    // Removing stops the daemon (which detaches), with or without systemd.
    let prerm = read(&control.join("prerm"));
    assert!(prerm.contains("systemctl stop allowlistd.service"));
    assert!(prerm.contains("kill -TERM"));

    // The payload: the config is the safe default, and the packaged (stripped) daemon
    // accepts it.
    let root = tmp.path().join("root");
    run_ok(
        Command::new("dpkg-deb")
            .arg("--extract")
            .arg(deb)
            .arg(&root),
    );
    let config = root.join("etc/allowlist/allowlist.toml");
    let doc = read(&config);
    assert!(doc.lines().any(|l| l.trim() == "active = false"), "{doc}");
    assert!(doc.lines().any(|l| l.trim() == "interfaces = []"), "{doc}");
    let out = run_ok(
        Command::new(root.join("usr/sbin/allowlistd"))
            .arg("--check")
            .arg("--config")
            .arg(&config),
    );
    assert!(stdout(&out).contains("inactive"), "{}", stdout(&out));
}

// ---------------------------------------------------------------------------------------
// Man pages and completions
// ---------------------------------------------------------------------------------------

/// The lines of a shell script that run something: no comments, no here-document text,
/// no `echo`ed advice.
fn code_lines(script: &str) -> Vec<String> {
    let mut code = Vec::new();
    let mut heredoc: Option<String> = None;
    for line in script.lines() {
        let trimmed = line.trim();
        if let Some(end) = &heredoc {
            if trimmed == end {
                heredoc = None;
            }
            continue;
        }
        if let Some((_, rest)) = trimmed.split_once("<<") {
            heredoc = Some(
                rest.trim()
                    .trim_matches(|c| c == '\'' || c == '"')
                    .to_owned(),
            );
        }
        if trimmed.starts_with('#') || trimmed.starts_with("echo ") {
            continue;
        }
        code.push(trimmed.to_owned());
    }
    code
}

/// What `BIN SUBCOMMAND... --help` lists, recursively: every subcommand path (e.g. `audit
/// verify`) and every long option; and, in `undocumented`, each option or argument shown
/// without a description. Taken from the binary, not from the docs generator.
fn walk(
    bin: &Path,
    path: &mut Vec<String>,
    subcommands: &mut Vec<String>,
    options: &mut BTreeSet<String>,
    undocumented: &mut Vec<String>,
) {
    let out = run_ok(Command::new(bin).args(path.iter()).arg("--help"));
    let help = stdout(&out);
    let mut section = "";
    let mut children = Vec::new();
    for line in help.lines() {
        if !line.starts_with(' ') {
            section = line.trim_end_matches(':');
            continue;
        }
        let words: Vec<&str> = line.split_whitespace().collect();
        match section {
            "Commands" => {
                if let Some(name) = words.first().filter(|w| **w != "help") {
                    children.push((*name).to_owned());
                }
            }
            "Options" => {
                let names = words
                    .iter()
                    .take_while(|w| w.starts_with('-') || w.starts_with('<'))
                    .count();
                for word in &words[..names] {
                    if let Some(long) = word.trim_end_matches(',').strip_prefix("--") {
                        options.insert(format!("--{long}"));
                    }
                }
                if names == words.len() {
                    undocumented.push(format!("{} {}", path.join(" "), words.join(" ")));
                }
            }
            "Arguments" if words.len() == 1 => {
                undocumented.push(format!("{} {}", path.join(" "), words[0]));
            }
            _ => {}
        }
    }
    for child in children {
        path.push(child);
        subcommands.push(path.join(" "));
        walk(bin, path, subcommands, options, undocumented);
        path.pop();
    }
}

/// The keys `allowlistd --check` knows, from its "unknown key" message.
fn known_keys(dir: &Path, text: &str) -> Vec<String> {
    let path = dir.join("unknown.toml");
    std::fs::write(&path, text).expect("writing a config with an unknown key");
    let out = Command::new(allowlist_tests::daemon::allowlistd())
        .arg("--check")
        .arg("--config")
        .arg(&path)
        .output()
        .expect("running allowlistd --check");
    let said = String::from_utf8_lossy(&out.stderr);
    let list = said
        .split("(known keys: ")
        .nth(1)
        .and_then(|rest| rest.split(')').next())
        .unwrap_or_else(|| panic!("no known keys listed in:\n{said}"));
    list.split(", ").map(str::to_owned).collect()
}

/// The page as text a reader sees (roff's `\-` is a plain hyphen).
fn plain(roff: &str) -> String {
    roff.replace("\\-", "-")
}

#[test]
fn man_pages_and_completions_cover_every_command_option_and_config_key() {
    let tmp = tempfile::tempdir().expect("creating a temporary directory");
    let generator = bin_dir().join("allowlist-docs");
    assert!(
        generator.is_file(),
        "{} does not exist: `cargo xtask build` builds it",
        generator.display()
    );
    run_ok(Command::new(&generator).arg(tmp.path()));
    let man = |page: &str| plain(&read(&tmp.path().join("man").join(page)));
    let ctl_page = man("man8/allowlistctl.8");
    let daemon_page = man("man8/allowlistd.8");
    let config_page = man("man5/allowlist.toml.5");

    let mut subcommands = Vec::new();
    let mut options = BTreeSet::new();
    let mut undocumented = Vec::new();
    walk(
        &bin_dir().join("allowlistctl"),
        &mut Vec::new(),
        &mut subcommands,
        &mut options,
        &mut undocumented,
    );
    assert!(
        subcommands.len() > 5,
        "allowlistctl has subcommands: {subcommands:?}"
    );
    assert!(
        subcommands.iter().any(|s| s == "audit verify"),
        "{subcommands:?}"
    );
    for sub in &subcommands {
        assert!(
            ctl_page.contains(&format!(".SS \"allowlistctl {sub}\"")),
            "allowlistctl(8) has no section for `{sub}`"
        );
    }
    assert!(
        options.contains("--socket") && options.contains("--confirm-within"),
        "{options:?}"
    );
    for option in &options {
        assert!(
            ctl_page.contains(option.as_str()),
            "allowlistctl(8) lacks {option}"
        );
    }
    let mut daemon_subs = Vec::new();
    let mut daemon_options = BTreeSet::new();
    walk(
        &allowlist_tests::daemon::allowlistd(),
        &mut Vec::new(),
        &mut daemon_subs,
        &mut daemon_options,
        &mut undocumented,
    );
    assert_eq!(
        undocumented,
        Vec::<String>::new(),
        "options and arguments without a description in --help"
    );
    assert!(daemon_options.contains("--check") && daemon_options.contains("--config"));
    for option in &daemon_options {
        assert!(
            daemon_page.contains(option.as_str()),
            "allowlistd(8) lacks {option}"
        );
    }
    for section in ["SIGNALS", "SYSTEMD", "FILES", "SEE ALSO"] {
        assert!(
            daemon_page.contains(section),
            "allowlistd(8) lacks {section}"
        );
    }

    // Every key the parser knows (it lists them for an unknown one) is documented.
    let mut keys = known_keys(tmp.path(), "zzzzqqqq = 1\nactive = false\n");
    keys.extend(known_keys(
        tmp.path(),
        "active = false\n[[entries]]\ncidr = \"198.18.0.0/24\"\nzzzzqqqq = 1\n",
    ));
    assert!(keys.len() > 10, "{keys:?}");
    for key in &keys {
        assert!(
            config_page.contains(&format!(".BR {key} "))
                || config_page.contains(&format!("[[{key}]]")),
            "allowlist.toml(5) does not document `{key}`"
        );
    }

    // The pages render without warnings.
    for page in [
        "man8/allowlistctl.8",
        "man8/allowlistd.8",
        "man5/allowlist.toml.5",
    ] {
        let path = tmp.path().join("man").join(page);
        if find_tool("groff").is_some() {
            let out = run_ok(
                Command::new("groff")
                    .args(["-mandoc", "-Tutf8", "-ww", "-z"])
                    .arg(&path)
                    .env("LC_ALL", "C.UTF-8"),
            );
            let warnings = String::from_utf8_lossy(&out.stderr);
            assert!(
                warnings.trim().is_empty(),
                "groff warns about {page}:\n{warnings}"
            );
        } else {
            eprintln!("note: groff is not installed; {page} was checked as roff text only");
        }
        if find_tool("man").is_some() {
            let out = run_ok(
                Command::new("man")
                    .args(["-P", "cat", "-l"])
                    .arg(&path)
                    .env("MANWIDTH", "100"),
            );
            assert!(
                stdout(&out).contains("SEE ALSO"),
                "man -l {page}:\n{}",
                stdout(&out)
            );
        }
    }

    // Completions: every subcommand, in every shell; the daemon's options.
    let completion = |file: &str| read(&tmp.path().join("completions").join(file));
    for file in [
        "bash/allowlistctl",
        "zsh/_allowlistctl",
        "fish/allowlistctl.fish",
    ] {
        let text = completion(file);
        for sub in &subcommands {
            let last = sub.rsplit(' ').next().unwrap_or(sub);
            assert!(text.contains(last), "{file} does not complete `{sub}`");
        }
    }
    for file in ["bash/allowlistd", "zsh/_allowlistd", "fish/allowlistd.fish"] {
        let text = completion(file);
        for option in ["config", "check"] {
            assert!(text.contains(option), "{file} does not complete --{option}");
        }
    }
    for (shell, files) in [
        ("bash", ["bash/allowlistctl", "bash/allowlistd"]),
        ("zsh", ["zsh/_allowlistctl", "zsh/_allowlistd"]),
    ] {
        if find_tool(shell).is_none() {
            eprintln!("note: {shell} is not installed; its completions were not syntax-checked");
            continue;
        }
        for file in files {
            run_ok(
                Command::new(shell)
                    .arg("-n")
                    .arg(tmp.path().join("completions").join(file)),
            );
        }
    }
}

/// The usage printed after a mistake shows optional options as optional, whatever was typed.
#[test]
fn usage_after_an_error_keeps_optional_options_optional() {
    for (bin, args, usage) in [
        (
            bin_dir().join("allowlistctl"),
            &["emergency-disable", "--for", "2h"][..],
            "Usage: allowlistctl emergency-disable [OPTIONS] --reason <REASON> [--for <DURATION>]\n",
        ),
        (
            allowlist_tests::daemon::allowlistd(),
            &["--emergency-disable-on-start", "--for", "2h"][..],
            "allowlistd --emergency-disable-on-start --reason <REASON> [--for <DURATION>]",
        ),
    ] {
        let out = Command::new(&bin).args(args).output().expect("running it");
        let said = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{said}");
        assert!(said.contains("--reason <REASON>"), "{said}");
        assert!(
            said.contains(usage),
            "the usage should read {usage:?}:\n{said}"
        );
        assert!(!said.contains("<REASON> --for"), "{said}");
    }
}

// ---------------------------------------------------------------------------------------
// The real daemon, run as systemd runs it
// ---------------------------------------------------------------------------------------

/// Starts `program args...` inside `ns` as the daemon (not only `allowlistd --config`: these
/// tests need their own environment and binary path), with `env` and without `WATCHDOG_PID`.
fn spawn_service(ns: &Netns, program: &Path, args: &[&str], env: &[(&str, &str)]) -> Daemon {
    let mut cmd = Command::new(program);
    cmd.args(args)
        .envs(env.iter().copied())
        .env_remove("WATCHDOG_PID");
    Daemon::spawn_command(ns, cmd, &SpawnOptions::default())
}

/// The notification socket systemd would listen on, and every message received on it.
struct NotifySocket {
    socket: UnixDatagram,
    path: PathBuf,
    received: Vec<String>,
}

impl NotifySocket {
    fn bind(path: PathBuf) -> Self {
        let socket =
            UnixDatagram::bind(&path).unwrap_or_else(|e| panic!("binding {}: {e}", path.display()));
        socket
            .set_read_timeout(Some(Duration::from_millis(100)))
            .expect("setting a read timeout");
        NotifySocket {
            socket,
            path,
            received: Vec::new(),
        }
    }

    fn next(&mut self) -> Option<String> {
        let mut buf = [0u8; 4096];
        match self.socket.recv(&mut buf) {
            Ok(n) => {
                let message = String::from_utf8_lossy(&buf[..n]).into_owned();
                self.received.push(message.clone());
                Some(message)
            }
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                None
            }
            Err(e) => panic!("receiving on {}: {e}", self.path.display()),
        }
    }

    /// The next message with a line `line` (e.g. `READY=1`); others are kept in `received`.
    #[track_caller]
    fn wait_for(&mut self, line: &str, timeout: Duration, service: &Daemon) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(message) = self.next()
                && message.lines().any(|l| l == line)
            {
                return message;
            }
            assert!(
                Instant::now() < deadline,
                "no {line} within {timeout:?}; received {:?}; log:\n{}",
                self.received,
                service.log()
            );
        }
    }

    /// How many messages with `line` arrive within `period`.
    fn count(&mut self, line: &str, period: Duration) -> usize {
        let deadline = Instant::now() + period;
        let mut n = 0;
        while Instant::now() < deadline {
            if self.next().is_some_and(|m| m.lines().any(|l| l == line)) {
                n += 1;
            }
        }
        n
    }
}

/// `--bounding-set` for setpriv(1): exactly the unit's capabilities.
fn unit_bounding_set() -> String {
    let settings = unit_settings(&read(&unit_path()));
    let caps = setting(&settings, "CapabilityBoundingSet")
        .first()
        .expect("the unit sets CapabilityBoundingSet=")
        .clone();
    let mut spec = String::from("-all");
    for cap in caps.split_whitespace() {
        let name = cap
            .strip_prefix("CAP_")
            .unwrap_or_else(|| panic!("`{cap}` is not a capability name"));
        spec.push_str(&format!(",+{}", name.to_lowercase()));
    }
    spec
}

fn xdp_attached(lab: &Lab) -> bool {
    let link = lab
        .server
        .ip(&["link", "show", "dev", lab.server_if()])
        .expect("ip link show");
    link.contains("xdp")
}

#[test]
fn daemon_speaks_sd_notify_under_the_units_capabilities() {
    if !require_root("daemon_speaks_sd_notify_under_the_units_capabilities") {
        return;
    }
    let lab = Lab::new();
    let dir = TestDir::new();
    let config = Config::new(&dir, lab.server_if())
        .entry("198.18.1.0/24", "allowed client, IPv4")
        .entry("2001:db8::a/128", "allowed client, IPv6");
    let config_path = dir.join("allowlist.toml");
    config.write(&config_path);
    let mut notify = NotifySocket::bind(dir.join("notify.sock"));
    let notify_path = notify.path.to_string_lossy().into_owned();

    // As systemd would: NOTIFY_SOCKET, WATCHDOG_USEC, and WATCHDOG_PID naming the daemon
    // itself (sd-notify ignores the watchdog without it). Its pid is only known once it
    // runs, so a shell exports its own pid and execs the daemon, keeping that pid. setpriv
    // limits it to the unit's capabilities, with no_new_privs, as the unit does.
    let daemon = allowlist_tests::daemon::allowlistd();
    let daemon_str = daemon.to_str().expect("utf-8 daemon path");
    let config_str = config_path.to_str().expect("utf-8 config path");
    let script = "export WATCHDOG_PID=$$; exec \"$@\"";
    let bounding = unit_bounding_set();
    let mut args: Vec<&str> = Vec::new();
    let program = if find_tool("setpriv").is_some() {
        args.extend(["--bounding-set", &bounding, "--no-new-privs", "--", "sh"]);
        PathBuf::from("setpriv")
    } else {
        eprintln!("note: setpriv is not installed; running with every capability");
        PathBuf::from("sh")
    };
    args.extend([
        "-c",
        script,
        "allowlistd",
        daemon_str,
        "--config",
        config_str,
    ]);
    let env = [
        ("NOTIFY_SOCKET", notify_path.as_str()),
        ("WATCHDOG_USEC", "500000"),
    ];
    let mut service = spawn_service(&lab.server, &program, &args, &env);

    // READY=1 comes with the status, once the program is attached and the maps are full.
    let ready = notify.wait_for("READY=1", READY_TIMEOUT, &service);
    assert!(
        xdp_attached(&lab),
        "READY=1 arrived but no XDP program is attached to {}",
        lab.server_if()
    );
    let pins = dir.bpffs_entries();
    assert!(
        pins.iter().any(|p| p.starts_with("allowlist/links")),
        "READY=1 arrived but the links are not pinned: {pins:?}"
    );
    assert!(
        ready.contains("STATUS=enforcing: 2 entries on "),
        "READY=1 without the status: {ready:?}"
    );
    assert!(
        !notify.received[..notify.received.len() - 1]
            .iter()
            .any(|m| m.contains("READY=1")),
        "READY=1 sent twice: {:?}",
        notify.received
    );

    // WATCHDOG=1 at half of WATCHDOG_USEC (250 ms): about 8 in 2 s.
    let pings = notify.count("WATCHDOG=1", Duration::from_secs(2));
    assert!(
        (4..=12).contains(&pings),
        "expected about 8 WATCHDOG=1 in 2 s at a 500 ms watchdog, got {pings}"
    );

    // A SIGHUP reload: RELOADING=1 (with MONOTONIC_USEC) first, then READY=1 and the new count.
    let config = config.entry("198.18.7.0/24", "added for the reload");
    config.write(&config_path);
    service.signal(Signal::SIGHUP);
    let reloading = notify.wait_for("RELOADING=1", RELOAD_TIMEOUT, &service);
    assert!(
        reloading.lines().any(|l| l.starts_with("MONOTONIC_USEC=")),
        "RELOADING=1 without MONOTONIC_USEC: {reloading:?}"
    );
    let ready = notify.wait_for("READY=1", RELOAD_TIMEOUT, &service);
    assert!(
        ready.contains("STATUS=enforcing: 3 entries on "),
        "READY=1 after the reload without the new count: {ready:?}"
    );
    service
        .wait_for_log("reload applied", RELOAD_TIMEOUT)
        .unwrap_or_else(|e| panic!("{e:#}"));

    // Still pinging after the reload.
    notify.wait_for("WATCHDOG=1", Duration::from_secs(2), &service);

    // SIGTERM: STOPPING=1, then a clean exit that detaches.
    service.signal(Signal::SIGTERM);
    notify.wait_for("STOPPING=1", RELOAD_TIMEOUT, &service);
    let status = service
        .wait_exit(RELOAD_TIMEOUT)
        .unwrap_or_else(|e| panic!("{e:#}"));
    assert!(status.success(), "exit {status}; log:\n{}", service.log());
    assert!(!xdp_attached(&lab), "still attached after SIGTERM");
    assert!(
        dir.bpffs_entries().is_empty(),
        "pins left: {:?}",
        dir.bpffs_entries()
    );
}

// ---------------------------------------------------------------------------------------
// The package's prerm, on a running daemon
// ---------------------------------------------------------------------------------------

/// Runs packaging/debian/prerm `remove` against a daemon started from a copy of the binary at
/// a path of this test's own (so other tests' daemons are not touched), with the config and
/// the bpffs of this test in place of /etc/allowlist and /sys/fs/bpf, and no systemd.
fn prerm_removes_a_running_daemon(test: &str, detach_on_exit: Option<bool>) {
    if !require_root(test) {
        return;
    }
    let lab = Lab::new();
    let dir = TestDir::new();
    let mut config = Config::new(&dir, lab.server_if()).entry("198.18.1.0/24", "allowed");
    config.detach_on_exit = detach_on_exit;
    let config_path = dir.join("allowlist.toml");
    config.write(&config_path);
    let daemon = dir.join("sbin/allowlistd");
    std::fs::create_dir_all(dir.join("sbin")).expect("creating sbin/");
    std::fs::copy(allowlist_tests::daemon::allowlistd(), &daemon).expect("copying allowlistd");

    let mut service = spawn_service(
        &lab.server,
        &daemon,
        &["--config", config_path.to_str().expect("utf-8 path")],
        &[],
    );
    service.wait_ready();
    assert!(xdp_attached(&lab));

    let mut prerm = read(&workspace_root().join("packaging/debian/prerm"));
    let bpffs = dir.bpffs().to_string_lossy().into_owned();
    for (from, to) in [
        (
            "DAEMON=/usr/sbin/allowlistd",
            format!("DAEMON={}", daemon.display()),
        ),
        (
            "CONFIG=/etc/allowlist/allowlist.toml",
            format!("CONFIG={}", config_path.display()),
        ),
        (
            "SYSTEMD_RUNNING=/run/systemd/system",
            "SYSTEMD_RUNNING=/nonexistent/systemd".to_owned(),
        ),
        ("/sys/fs/bpf", bpffs),
    ] {
        assert!(prerm.contains(from), "prerm no longer has `{from}`");
        prerm = prerm.replace(from, &to);
    }
    let script = dir.join("prerm");
    std::fs::write(&script, prerm).expect("writing the prerm copy");
    let out = run_ok(Command::new("sh").arg(&script).arg("remove"));
    eprintln!("prerm: {}", stdout(&out));

    // prerm waits for the daemon to be gone; only the reaping is left to its parent.
    let status = service
        .wait_exit(Duration::from_secs(2))
        .unwrap_or_else(|e| panic!("{e:#}"));
    assert!(status.success(), "exit {status}; log:\n{}", service.log());
    assert!(!xdp_attached(&lab), "still attached after prerm remove");
    assert!(
        dir.bpffs_entries().is_empty(),
        "pins left after prerm remove: {:?}",
        dir.bpffs_entries()
    );
}

#[test]
fn prerm_stops_a_daemon_without_systemd_which_detaches() {
    prerm_removes_a_running_daemon("prerm_stops_a_daemon_without_systemd_which_detaches", None);
}

#[test]
fn prerm_removes_the_pins_a_daemon_left_enforcing() {
    prerm_removes_a_running_daemon(
        "prerm_removes_the_pins_a_daemon_left_enforcing",
        Some(false),
    );
}
