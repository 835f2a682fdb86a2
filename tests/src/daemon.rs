//! The real `allowlistd` as a child process inside a test's network namespace, its captured
//! log, and a writer for the config files the tests hand it.
//!
//! The child joins the namespace with `setns` between fork and exec (not `ip netns exec`,
//! which remounts /sys and would hide the host's bpffs: pins made under it could not be
//! adopted by a restarted daemon). It keeps the host's mount namespace, so it sees the test's
//! private bpffs.

use std::fmt::Write as _;
use std::io::{BufRead as _, BufReader, Read};
use std::os::fd::AsRawFd as _;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use anyhow::bail;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::bpffs::TestDir;
use crate::netns::{Netns, PROTECTED, next_id, show_command};
use crate::pace::patient;

/// How long a daemon may take to load, attach and fill its maps.
pub const READY_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a reload or a shutdown may take.
pub const RELOAD_TIMEOUT: Duration = Duration::from_secs(10);

/// Where the binaries are: `$ALLOWLIST_BIN_DIR` (set by `cargo xtask test`), else the
/// directory of the running executable if it holds `allowlistd` (a binary in target/debug),
/// else its parent (a test binary in target/debug/deps).
pub fn bin_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("ALLOWLIST_BIN_DIR") {
        return PathBuf::from(dir);
    }
    let exe = std::env::current_exe().expect("finding the running executable");
    let dir = exe.parent().expect("the executable has a directory");
    if dir.join("allowlistd").exists() {
        return dir.to_path_buf();
    }
    dir.parent().unwrap_or(dir).to_path_buf()
}

/// The `allowlistd` binary to test; panics with a hint if it is missing.
pub fn allowlistd() -> PathBuf {
    let path = bin_dir().join("allowlistd");
    assert!(
        path.exists(),
        "{} does not exist: build it first (`cargo xtask build`) or set ALLOWLIST_BIN_DIR",
        path.display()
    );
    path
}

/// Runs `allowlistd --check --config CONFIG` on the host and returns its output.
pub fn check(config: &Path) -> Output {
    let bin = allowlistd();
    Command::new(&bin)
        .arg("--check")
        .arg("--config")
        .arg(config)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("running {} --check: {e}", bin.display()))
}

/// How to start a daemon beyond the defaults of [`Daemon::spawn`].
#[derive(Debug, Clone)]
pub struct SpawnOptions {
    /// Prefix of the echoed log lines; `allowlistd#<n>` when `None`.
    pub tag: Option<String>,
    /// Echo each log line to this process's stderr (tests: yes, so failures are readable;
    /// the demo: no, it narrates instead).
    pub echo: bool,
}

impl Default for SpawnOptions {
    fn default() -> Self {
        SpawnOptions {
            tag: None,
            echo: true,
        }
    }
}

/// The log captured from the daemon's stdout and stderr, line by line.
#[derive(Debug, Default)]
struct LogState {
    lines: Vec<String>,
    /// Lines before this index were consumed by an earlier `wait_for_*`.
    cursor: usize,
    /// Output pipes not yet at end of file.
    open_streams: usize,
}

#[derive(Debug, Default)]
struct SharedLog {
    state: Mutex<LogState>,
    changed: Condvar,
}

impl SharedLog {
    fn lock(&self) -> MutexGuard<'_, LogState> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// A running `allowlistd`. Dropping it kills the process (SIGKILL) if it still runs.
#[derive(Debug)]
pub struct Daemon {
    tag: String,
    child: Child,
    status: Option<ExitStatus>,
    log: Arc<SharedLog>,
}

impl Daemon {
    /// Starts `allowlistd --config CONFIG` inside `ns`, echoing its log. Panics if it cannot
    /// be started at all.
    pub fn spawn(ns: &Netns, config: &Path) -> Daemon {
        Daemon::spawn_with(ns, config, &SpawnOptions::default())
    }

    /// [`Daemon::spawn`] with options.
    pub fn spawn_with(ns: &Netns, config: &Path, options: &SpawnOptions) -> Daemon {
        Daemon::spawn_command(ns, Daemon::command(config), options)
    }

    /// `allowlistd --config CONFIG`, the command [`Daemon::spawn`] runs: add arguments or
    /// environment to it and start it with [`Daemon::spawn_command`].
    pub fn command(config: &Path) -> Command {
        let mut cmd = Command::new(allowlistd());
        cmd.arg("--config").arg(config);
        cmd
    }

    /// Starts `cmd` inside `ns` as a daemon: its program, arguments and environment as the
    /// caller set them (anything that ends up exec'ing `allowlistd`, e.g. a wrapper such as
    /// setpriv), stdin from /dev/null, stdout and stderr captured as the log. Panics if it
    /// cannot be started at all.
    pub fn spawn_command(ns: &Netns, mut cmd: Command, options: &SpawnOptions) -> Daemon {
        let tag = options
            .tag
            .clone()
            .unwrap_or_else(|| format!("allowlistd#{}", next_id()));
        let ns_file = ns
            .open()
            .unwrap_or_else(|e| panic!("starting {tag}: {e:#}"));
        let ns_fd = ns_file.as_raw_fd();
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        // SAFETY: only setns(2), which is async-signal-safe, runs between fork and exec; the
        // namespace file stays open until spawn returns (it is close-on-exec).
        unsafe {
            cmd.pre_exec(move || {
                if libc::setns(ns_fd, libc::CLONE_NEWNET) == 0 {
                    Ok(())
                } else {
                    Err(std::io::Error::last_os_error())
                }
            });
        }
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("starting `{}` in {}: {e}", show_command(&cmd), ns.name()));
        drop(ns_file);

        let log = Arc::new(SharedLog::default());
        log.lock().open_streams = 2;
        let stdout = child.stdout.take().expect("stdout is piped");
        let stderr = child.stderr.take().expect("stderr is piped");
        for (stream, name) in [
            (Box::new(stdout) as Box<dyn Read + Send>, "stdout"),
            (Box::new(stderr), "stderr"),
        ] {
            let log = Arc::clone(&log);
            let prefix = format!("[{tag} {name}]");
            let echo = options.echo;
            std::thread::spawn(move || read_lines(stream, &log, &prefix, echo));
        }
        Daemon {
            tag,
            child,
            status: None,
            log,
        }
    }

    pub fn tag(&self) -> &str {
        &self.tag
    }

    pub fn pid(&self) -> Pid {
        Pid::from_raw(i32::try_from(self.child.id()).expect("pids fit in i32"))
    }

    /// Everything the daemon printed so far.
    pub fn log(&self) -> String {
        let state = self.log.lock();
        let mut out = String::new();
        for line in &state.lines {
            let _ = writeln!(out, "{line}");
        }
        out
    }

    /// Waits for a log line containing `needle` and returns it (`timeout` as
    /// [`patient`] scales it). Only lines after the one the
    /// previous successful wait returned are searched, so waiting twice for `reload applied`
    /// waits for two reloads. Fails early if the daemon closes its output (exits); the error
    /// carries the whole log.
    pub fn wait_for_log(&self, needle: &str, timeout: Duration) -> anyhow::Result<String> {
        self.wait_for_any(&[needle], timeout).map(|(_, line)| line)
    }

    /// Like [`Daemon::wait_for_log`] for the first line containing any of `needles`; returns
    /// the index of the needle found and the line.
    pub fn wait_for_any(
        &self,
        needles: &[&str],
        timeout: Duration,
    ) -> anyhow::Result<(usize, String)> {
        let timeout = patient(timeout);
        let deadline = Instant::now() + timeout;
        let mut state = self.log.lock();
        loop {
            let found = state.lines[state.cursor..]
                .iter()
                .enumerate()
                .find_map(|(i, line)| {
                    needles
                        .iter()
                        .position(|n| line.contains(n))
                        .map(|which| (i, which))
                });
            if let Some((i, which)) = found {
                let at = state.cursor + i;
                state.cursor = at + 1;
                return Ok((which, state.lines[at].clone()));
            }
            if state.open_streams == 0 {
                drop(state);
                bail!(
                    "{} closed its output (exited?) without logging any of {needles:?}; log:\n{}",
                    self.tag,
                    self.log()
                );
            }
            let now = Instant::now();
            if now >= deadline {
                drop(state);
                bail!(
                    "{} logged none of {needles:?} within {timeout:?}; log:\n{}",
                    self.tag,
                    self.log()
                );
            }
            state = self
                .log
                .changed
                .wait_timeout(state, deadline - now)
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .0;
        }
    }

    /// Waits for `allowlistd ready`; panics with the log if it does not come.
    #[track_caller]
    pub fn wait_ready(&self) -> String {
        match self.wait_for_log("allowlistd ready", READY_TIMEOUT) {
            Ok(line) => line,
            Err(e) => panic!("{e:#}"),
        }
    }

    /// Sends `signal`; panics (with the log) if the process is gone.
    #[track_caller]
    pub fn signal(&self, signal: Signal) {
        if let Err(e) = kill(self.pid(), signal) {
            panic!(
                "sending {signal} to {} (pid {}): {e}; log:\n{}",
                self.tag,
                self.pid(),
                self.log()
            );
        }
    }

    /// SIGKILL, and reap it.
    pub fn kill9(&mut self) -> ExitStatus {
        if let Some(status) = self.status {
            return status;
        }
        let _ = self.child.kill();
        let status = self.child.wait().expect("reaping the daemon");
        self.status = Some(status);
        status
    }

    /// The exit status if it has exited (reaping it), `None` while it runs.
    pub fn try_status(&mut self) -> Option<ExitStatus> {
        if self.status.is_none() {
            self.status = self.child.try_wait().expect("polling the daemon");
        }
        self.status
    }

    /// Waits up to `timeout` ([`patient`]) for the daemon to exit; the error carries the log. Once it has
    /// exited, also waits briefly for its last output to be captured.
    pub fn wait_exit(&mut self, timeout: Duration) -> anyhow::Result<ExitStatus> {
        let timeout = patient(timeout);
        let deadline = Instant::now() + timeout;
        let status = loop {
            if let Some(status) = self.try_status() {
                break status;
            }
            if Instant::now() >= deadline {
                bail!(
                    "{} still runs after {timeout:?}; log:\n{}",
                    self.tag,
                    self.log()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        // The pipes close with the process unless it left children holding them.
        let drain_deadline = Instant::now() + Duration::from_secs(2);
        let mut state = self.log.lock();
        while state.open_streams > 0 {
            let now = Instant::now();
            if now >= drain_deadline {
                break;
            }
            state = self
                .log
                .changed
                .wait_timeout(state, drain_deadline - now)
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .0;
        }
        Ok(status)
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if self.try_status().is_none() {
            self.kill9();
        }
    }
}

fn read_lines(stream: Box<dyn Read + Send>, log: &SharedLog, prefix: &str, echo: bool) {
    let mut reader = BufReader::new(stream);
    let mut buf = Vec::new();
    loop {
        buf.clear();
        match reader.read_until(b'\n', &mut buf) {
            Ok(0) | Err(_) => break,
            Ok(_) => {
                let line = String::from_utf8_lossy(&buf).trim_end().to_owned();
                if echo {
                    eprintln!("{prefix} {line}");
                }
                log.lock().lines.push(line);
                log.changed.notify_all();
            }
        }
    }
    log.lock().open_streams -= 1;
    log.changed.notify_all();
}

/// A config file for one daemon, with the paths of a [`TestDir`]: the control socket, the
/// state directory and the audit log under the test directory, `bpffs_dir` under its bpffs.
#[derive(Debug, Clone)]
pub struct Config {
    pub active: bool,
    pub interfaces: Vec<String>,
    pub protected_tcp_ports: Vec<u16>,
    /// `(cidr, comment)` for each `[[entries]]` table.
    pub entries: Vec<(String, String)>,
    /// Left out of the file when `None` (the daemon's default applies).
    pub detach_on_exit: Option<bool>,
    /// Left out of the file when `None`.
    pub xdp_mode: Option<String>,
    pub bpffs_dir: PathBuf,
    pub control_socket: PathBuf,
    pub state_dir: PathBuf,
    pub audit_log: PathBuf,
}

impl Config {
    /// Active, protecting TCP port 2222 on `interface`, with no entries yet.
    pub fn new(dir: &TestDir, interface: &str) -> Config {
        Config {
            active: true,
            interfaces: vec![interface.to_owned()],
            protected_tcp_ports: vec![PROTECTED],
            entries: Vec::new(),
            detach_on_exit: None,
            xdp_mode: None,
            bpffs_dir: dir.pin_dir(),
            control_socket: dir.join("control.sock"),
            state_dir: dir.join("state"),
            audit_log: dir.join("audit.log"),
        }
    }

    /// Adds an `[[entries]]` table.
    #[must_use]
    pub fn entry(mut self, cidr: &str, comment: &str) -> Config {
        self.entries.push((cidr.to_owned(), comment.to_owned()));
        self
    }

    /// The TOML text.
    pub fn render(&self) -> String {
        let list = |items: Vec<String>| items.join(", ");
        let mut out = String::new();
        let _ = writeln!(out, "active = {}", self.active);
        let _ = writeln!(
            out,
            "interfaces = [{}]",
            list(self.interfaces.iter().map(|i| quote(i)).collect())
        );
        let _ = writeln!(
            out,
            "protected_tcp_ports = [{}]",
            list(
                self.protected_tcp_ports
                    .iter()
                    .map(ToString::to_string)
                    .collect()
            )
        );
        for (key, path) in [
            ("control_socket", &self.control_socket),
            ("state_dir", &self.state_dir),
            ("audit_log", &self.audit_log),
            ("bpffs_dir", &self.bpffs_dir),
        ] {
            let _ = writeln!(out, "{key} = {}", quote(&path.to_string_lossy()));
        }
        if let Some(mode) = &self.xdp_mode {
            let _ = writeln!(out, "xdp_mode = {}", quote(mode));
        }
        if let Some(detach) = self.detach_on_exit {
            let _ = writeln!(out, "detach_on_exit = {detach}");
        }
        for (cidr, comment) in &self.entries {
            let _ = write!(
                out,
                "\n[[entries]]\ncidr = {}\ncomment = {}\n",
                quote(cidr),
                quote(comment)
            );
        }
        out
    }

    /// Writes the file atomically (temporary file in the same directory, then rename), so a
    /// daemon reloading at that moment never reads half a file. Panics on failure.
    pub fn write(&self, path: &Path) {
        write_atomically(path, &self.render());
    }
}

/// Writes `text` to `path` through a temporary file and a rename. Panics on failure.
pub fn write_atomically(path: &Path, text: &str) {
    let tmp = path.with_extension("tmp-write");
    std::fs::write(&tmp, text)
        .and_then(|()| std::fs::rename(&tmp, path))
        .unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
}

/// A TOML basic string.
fn quote(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => {
                let _ = write!(out, "\\u{:04X}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// `text` (a rendered config) with `extra` (whole lines) inserted before the first
/// `[[entries]]` table, where it is still a top-level key.
pub fn with_top_level(text: &str, extra: &str) -> String {
    match text.find("\n[[entries]]") {
        Some(i) => format!("{}\n{extra}{}", &text[..i], &text[i..]),
        None => format!("{text}{extra}"),
    }
}
