//! Running allowlistd as a system service: the systemd unit (hardening, least privilege,
//! `systemd-analyze verify` on an installed tree, the exposure score), the sd_notify protocol
//! of the real daemon (READY, STATUS, RELOADING, WATCHDOG, STOPPING) under exactly the unit's
//! capabilities, `cargo xtask install` and `cargo xtask package` (.deb contents, conffile,
//! maintainer scripts), the package's prerm detaching a running daemon, the package installed,
//! upgraded (the handover without a gap), removed and purged on this machine (`lifecycle`),
//! and the generated man pages and completions.
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
use allowlist_tests::package::{run_ok, workspace_root, xtask};
use allowlist_tests::require_root;
use nix::sys::signal::Signal;

/// The budget for `systemd-analyze security --offline=true allowlistd.service`.
const MAX_EXPOSURE: f64 = 2.5;

/// What the daemon needs, and all the unit grants (CAP_CHOWN: the control socket's group).
const UNIT_CAPABILITIES: [&str; 4] = ["CAP_BPF", "CAP_NET_ADMIN", "CAP_PERFMON", "CAP_CHOWN"];

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

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
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

mod as_systemd_runs_it;
mod docs;
mod install;
mod lifecycle;
mod package;
mod prerm;
mod unit;

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

/// Starts `program args...` inside `ns` as the daemon (not only `allowlistd --config`: these
/// tests need their own environment and binary path), with `env` and without `WATCHDOG_PID`.
fn spawn_service(ns: &Netns, program: &Path, args: &[&str], env: &[(&str, &str)]) -> Daemon {
    let mut cmd = Command::new(program);
    cmd.args(args)
        .envs(env.iter().copied())
        .env_remove("WATCHDOG_PID");
    Daemon::spawn_command(ns, cmd, &SpawnOptions::default())
}

fn xdp_attached(lab: &Lab) -> bool {
    let link = lab
        .server
        .ip(&["link", "show", "dev", lab.server_if()])
        .expect("ip link show");
    link.contains("xdp")
}
