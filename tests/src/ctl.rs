//! Running `allowlistctl` against a test daemon: the command line, a run bounded in time,
//! and what it printed, with assertions on it.
//!
//! Every `allowlistctl` runs with `SSH_CONNECTION` and `SSH_CLIENT` removed (callers may set
//! them explicitly), so the caller address never depends on how the tests are run.

use std::fmt;
use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::daemon::bin_dir;
use crate::pace::patient;

/// No single `allowlistctl` may take longer than this (it has no timeout of its own).
pub const CTL_TIMEOUT: Duration = Duration::from_secs(15);

/// What one `allowlistctl` run printed and how it exited, and its pid (the daemon records
/// the pid of the client in the audit log).
pub struct Out {
    /// The command line, as shown in failure messages.
    pub shown: String,
    pub pid: u32,
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl fmt::Display for Out {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "`{}` (pid {}) exited {}\n--- stdout:\n{}--- stderr:\n{}---",
            self.shown, self.pid, self.code, self.stdout, self.stderr
        )
    }
}

impl Out {
    #[track_caller]
    pub fn code(&self, expected: i32) -> &Out {
        assert_eq!(self.code, expected, "unexpected exit code: {self}");
        self
    }

    #[track_caller]
    pub fn ok(&self) -> &Out {
        self.code(0)
    }

    #[track_caller]
    pub fn stdout_has(&self, needle: &str) -> &Out {
        assert!(
            self.stdout.contains(needle),
            "stdout should contain {needle:?}: {self}"
        );
        self
    }

    #[track_caller]
    pub fn stdout_lacks(&self, needle: &str) -> &Out {
        assert!(
            !self.stdout.contains(needle),
            "stdout should not contain {needle:?}: {self}"
        );
        self
    }

    #[track_caller]
    pub fn stderr_has(&self, needle: &str) -> &Out {
        assert!(
            self.stderr.contains(needle),
            "stderr should contain {needle:?}: {self}"
        );
        self
    }

    /// Exit 2, the reason on stderr (prefixed `allowlistctl: `), nothing on stdout.
    #[track_caller]
    pub fn refused(&self, needle: &str) -> &Out {
        self.code(2).stderr_has(needle);
        assert!(
            self.stderr.starts_with("allowlistctl: "),
            "the reason should be on stderr, prefixed `allowlistctl: `: {self}"
        );
        assert!(
            self.stdout.is_empty(),
            "a refusal prints nothing on stdout: {self}"
        );
        self
    }

    /// Stdout, parsed as one JSON value.
    #[track_caller]
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {self}"))
    }
}

/// `cmd` as shown in failure messages: its environment, `allowlistctl` and its arguments
/// after a leading `--socket PATH` (the same in every call), long ones cut short.
fn show(cmd: &Command) -> String {
    let mut parts = Vec::new();
    for (key, value) in cmd.get_envs() {
        if let Some(value) = value {
            parts.push(format!(
                "{}={:?}",
                key.to_string_lossy(),
                value.to_string_lossy()
            ));
        }
    }
    parts.push("allowlistctl".to_owned());
    let skip = if cmd.get_args().next().is_some_and(|a| a == "--socket") {
        2
    } else {
        0
    };
    parts.extend(cmd.get_args().skip(skip).map(|a| {
        let a = a.to_string_lossy();
        match a.char_indices().nth(40) {
            Some((cut, _)) => format!("{}...({} bytes)", &a[..cut], a.len()),
            None => a.into_owned(),
        }
    }));
    parts.join(" ")
}

/// `allowlistctl --socket SOCKET ARGS...` with no SSH environment.
pub fn ctl_command(socket: &Path, args: &[&str]) -> Command {
    ctl_command_with(&allowlistctl(), socket, args)
}

/// `allowlistctl ARGS...` with no `--socket`, no `ALLOWLIST_SOCKET` and no SSH environment:
/// for tests of how it finds the socket.
pub fn ctl_command_without_socket(args: &[&str]) -> Command {
    let mut cmd = Command::new(allowlistctl());
    cmd.args(args)
        .env_remove("ALLOWLIST_SOCKET")
        .env_remove("SSH_CONNECTION")
        .env_remove("SSH_CLIENT");
    cmd
}

/// The built allowlistctl binary.
pub fn allowlistctl() -> PathBuf {
    let bin = bin_dir().join("allowlistctl");
    assert!(
        bin.exists(),
        "{} does not exist: build it first (`cargo xtask build`) or set ALLOWLIST_BIN_DIR",
        bin.display()
    );
    bin
}

/// Like [`ctl_command`], with the allowlistctl binary at `bin`.
pub fn ctl_command_with(bin: &Path, socket: &Path, args: &[&str]) -> Command {
    let mut cmd = Command::new(bin);
    cmd.arg("--socket")
        .arg(socket)
        .args(args)
        .env_remove("SSH_CONNECTION")
        .env_remove("SSH_CLIENT");
    cmd
}

/// Runs `cmd` (from [`ctl_command`]) to completion within [`CTL_TIMEOUT`] (killing it and
/// panicking otherwise).
pub fn run(cmd: &mut Command) -> Out {
    let shown = show(cmd);
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("starting `{shown}`: {e}"));
    let pid = child.id();
    let mut stdout = child.stdout.take().expect("piped");
    let mut stderr = child.stderr.take().expect("piped");
    let out_reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stdout.read_to_string(&mut s);
        s
    });
    let err_reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stderr.read_to_string(&mut s);
        s
    });
    let status = wait_child(&mut child, CTL_TIMEOUT)
        .unwrap_or_else(|| panic!("`{shown}` did not finish within {:?}", patient(CTL_TIMEOUT)));
    Out {
        shown,
        pid,
        code: status.code().unwrap_or(-1),
        stdout: out_reader.join().expect("stdout reader"),
        stderr: err_reader.join().expect("stderr reader"),
    }
}

/// Waits for `child` to exit (`timeout` as [`patient`] scales it); on timeout kills and reaps it and returns `None`.
pub fn wait_child(child: &mut Child, timeout: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + patient(timeout);
    loop {
        if let Some(status) = child.try_wait().expect("polling a child") {
            return Some(status);
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            return None;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}
