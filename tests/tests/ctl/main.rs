//! End-to-end tests of `allowlistctl` against the real `allowlistd`: every command and its
//! JSON, the refusals and their messages, comment-preserving edits of the config file,
//! concurrent changes, revision and on-disk conflicts, lockout protection, commit-confirmed
//! changes, access control on the control socket, misbehaving clients, and `test` agreeing
//! with real TCP connects. Each test builds its own lab (namespaces, veth, private bpffs,
//! daemon), removed when the test ends, even on failure.
//!
//! Needs root and the built binaries (`cargo xtask build`, then
//! `ALLOWLIST_BIN_DIR=target/debug cargo test -p allowlist-tests --test ctl`).
//!
//! Every `allowlistctl` runs with `SSH_CONNECTION` and `SSH_CLIENT` removed (or set
//! explicitly), so the caller address never depends on how the tests are run.

use std::io::Write as _;
use std::net::IpAddr;
use std::os::unix::fs::PermissionsExt as _;
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt as _;
use std::path::Path;
use std::process::Command;
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use allowlist_control::protocol;
use allowlist_tests::bpffs::TestDir;
use allowlist_tests::ctl::{Out, allowlistctl, ctl_command, ctl_command_with, run};
use allowlist_tests::daemon::{Config, with_top_level, write_atomically};
use allowlist_tests::fixture::Running;
use allowlist_tests::netns::{A4, A6, B4, B6, PROTECTED, UNPROTECTED, to};
use allowlist_tests::tcp::{self, assert_connects, assert_times_out};
use allowlist_tests::{require_root, running_fixture};
use serde_json::Value;

mod access;
mod commands;
mod concurrency;
mod confirm;
mod edges;
mod formatting;
mod live_verdict;
mod lockout;
mod misbehaving;
mod refusals;
mod revisions;

// The fixture
running_fixture!(Fx {});

/// The fixture's usual config: port 2222 protected, the lab's "allowed" clients listed.
fn standard(dir: &TestDir, iface: &str) -> Config {
    Config::new(dir, iface)
        .entry("198.18.1.0/24", "lab A")
        .entry("2001:db8::a", "lab A v6")
}

/// Everything the admin sees of the list, to show that a refused command changed nothing.
struct Snapshot {
    file: String,
    revision: u64,
    list: String,
}

impl Fx {
    /// Starts a daemon on the config text `build` writes for the test directory and the
    /// server's interface, and waits until it is ready. The control socket must be the
    /// harness's `<dir>/control.sock`.
    fn start(build: impl FnOnce(&TestDir, &str) -> String) -> Fx {
        Fx {
            run: Running::start(build),
        }
    }

    fn standard() -> Fx {
        Fx::start(|dir, iface| standard(dir, iface).render())
    }

    fn cmd(&self, args: &[&str]) -> Command {
        ctl_command(&self.socket, args)
    }

    /// `allowlistctl ARGS...` as uid and gid 65534, with the test directory (and so the
    /// socket) reachable for it. The binary is copied into the test directory first: the
    /// build tree may sit below a 0700 directory (CI clones into one), where uid 65534 could
    /// not even start it.
    fn cmd_as_nobody(&self, args: &[&str]) -> Command {
        std::fs::set_permissions(self.dir.path(), std::fs::Permissions::from_mode(0o711))
            .expect("chmod the test directory");
        let bin = self.dir.join("allowlistctl-as-nobody");
        if !bin.exists() {
            std::fs::copy(allowlistctl(), &bin).expect("copying allowlistctl");
            std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o755))
                .expect("chmod the copy of allowlistctl");
        }
        let mut cmd = ctl_command_with(&bin, &self.socket, args);
        cmd.current_dir("/").uid(65534).gid(65534);
        cmd
    }

    /// `allowlistctl ARGS...` with `KEY=VALUE` in its environment.
    fn ctl_env(&self, env: (&str, &str), args: &[&str]) -> Out {
        run(self.cmd(args).env(env.0, env.1))
    }

    #[track_caller]
    fn status(&self) -> Value {
        let json = self.ctl(&["--json", "status"]).ok().json();
        assert_eq!(json["kind"].as_str(), Some("status"));
        json
    }

    #[track_caller]
    fn revision(&self) -> u64 {
        self.status()["revision"].as_u64().unwrap()
    }

    /// `(cidr, comment, origin)` of every entry, from `list --json`.
    #[track_caller]
    fn entries(&self) -> Vec<(String, String, String)> {
        let json = self.ctl(&["--json", "list"]).ok().json();
        assert_eq!(json["kind"].as_str(), Some("list"));
        json["entries"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| {
                (
                    e["cidr"].as_str().unwrap().to_owned(),
                    e["comment"].as_str().unwrap().to_owned(),
                    e["origin"].as_str().unwrap().to_owned(),
                )
            })
            .collect()
    }

    #[track_caller]
    fn cidrs(&self) -> Vec<String> {
        self.entries().into_iter().map(|(c, _, _)| c).collect()
    }

    fn file(&self) -> String {
        std::fs::read_to_string(&self.path)
            .unwrap_or_else(|e| panic!("reading {}: {e}", self.path.display()))
    }

    /// `PATH:LINE` of the first line of `text` containing `needle` (as `list` shows origins).
    #[track_caller]
    fn origin(&self, text: &str, needle: &str) -> String {
        format!("{}:{}", self.path.display(), line_of(text, needle))
    }

    /// Asserts that `entries` (from [`Fx::entries`]) hold `cidr` with `comment`, its origin
    /// the line of `text` (the config file) where `"CIDR"` is written.
    #[track_caller]
    fn assert_listed(
        &self,
        entries: &[(String, String, String)],
        text: &str,
        cidr: &str,
        comment: &str,
    ) {
        let origin = self.origin(text, &format!("\"{cidr}\""));
        assert!(
            entries.contains(&entry(cidr, comment, &origin)),
            "{entries:?}"
        );
    }

    #[track_caller]
    fn snapshot(&self) -> Snapshot {
        Snapshot {
            file: self.file(),
            revision: self.revision(),
            list: self.ctl(&["--json", "list"]).ok().stdout.clone(),
        }
    }

    #[track_caller]
    fn assert_unchanged(&self, before: &Snapshot, after: &str) {
        assert_eq!(
            self.file(),
            before.file,
            "the config file changed after {after}"
        );
        assert_eq!(
            self.revision(),
            before.revision,
            "the revision changed after {after}"
        );
        assert_eq!(
            self.ctl(&["--json", "list"]).ok().stdout,
            before.list,
            "the list changed after {after}"
        );
    }

    /// Whether a real connect from `src` to `port` succeeds (`true`) or times out (`false`).
    fn connects(&self, src: IpAddr, port: u16) -> bool {
        let outcome = tcp::connect(self.client(), src, to(src, port), tcp::BLOCKED_PROBE);
        if outcome.is_connected() {
            true
        } else if outcome.is_timed_out() {
            false
        } else {
            panic!("{src} -> port {port}: neither connected nor timed out: {outcome}")
        }
    }
}

/// 1-based number of the first line of `text` containing `needle`.
#[track_caller]
fn line_of(text: &str, needle: &str) -> usize {
    text.lines()
        .position(|l| l.contains(needle))
        .map(|i| i + 1)
        .unwrap_or_else(|| panic!("no line contains {needle:?} in:\n{text}"))
}

fn entry(cidr: &str, comment: &str, origin: &str) -> (String, String, String) {
    (cidr.to_owned(), comment.to_owned(), origin.to_owned())
}

/// The `kind` of a refusal printed with `--json`.
#[track_caller]
fn error_kind(out: &Out) -> String {
    out.code(2);
    out.json()["error"]["kind"].as_str().unwrap().to_owned()
}
