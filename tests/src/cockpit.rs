//! The Cockpit page's processes, for its browser test and the bench, each in a process group
//! of its own that is killed when it drops (even on a failed assertion): cockpit-ws in one
//! namespace, and Debian's Chromium, driven by playwright-core through
//! `cockpit/test/driver.mjs`, in another.

use std::io::{BufRead as _, BufReader, Write as _};
use std::net::TcpStream;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::netns::Netns;
use serde_json::{Value, json};

/// A browser command may wait this long itself (the driver's own bound is 10 s).
const ANSWER_TIMEOUT: Duration = Duration::from_secs(40);

/// A child in its own process group, killed with the group on drop.
struct Group {
    child: Child,
    what: &'static str,
}

impl Drop for Group {
    fn drop(&mut self) {
        let pgid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        let _ = nix::sys::signal::killpg(pgid, nix::sys::signal::Signal::SIGKILL);
        let _ = self.child.wait();
        eprintln!("cockpit: {} stopped", self.what);
    }
}

fn spawn(mut cmd: Command, what: &'static str) -> Group {
    cmd.process_group(0);
    let child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("starting {what}: {e}"));
    Group { child, what }
}

/// The repository's `cockpit/` directory.
pub fn module_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ is in the workspace")
        .join("cockpit")
}

/// How cockpit-ws starts a session.
pub enum Session {
    /// No login: a bridge as this user (root).
    Local,
    /// Cockpit's login form: cockpit-session authenticates through PAM and starts the bridge
    /// as the user who logged in.
    Login,
}

/// cockpit-ws without systemd on `addr:port` inside `ns`, with the page found through
/// XDG_DATA_DIRS (by the local session's bridge: a login's bridge has the user's environment
/// and finds it among the user's packages).
pub struct CockpitWs {
    _process: Group,
    _data: tempfile::TempDir,
    pub url: String,
}

impl CockpitWs {
    /// `env` is handed to the local session's bridge, and so to every allowlistctl the page
    /// runs; cockpit-session clears it for a login.
    pub fn start(
        session: Session,
        ns: &Netns,
        addr: &str,
        port: u16,
        dist: &Path,
        env: &[(&str, &str)],
    ) -> CockpitWs {
        let data = tempfile::Builder::new()
            .prefix("allowlist-cockpit-")
            .tempdir()
            .expect("a directory for XDG_DATA_DIRS");
        std::fs::create_dir(data.path().join("cockpit")).expect("creating cockpit/");
        std::os::unix::fs::symlink(dist, data.path().join("cockpit/allowlist"))
            .expect("linking the built page");
        let mut cmd = Command::new("ip");
        cmd.args([
            "netns",
            "exec",
            ns.name(),
            "/usr/lib/cockpit/cockpit-ws",
            "--no-tls",
        ])
        .args(match session {
            Session::Local => Some("--local-session=cockpit-bridge"),
            Session::Login => None,
        })
        .args(["--address", addr, "--port", &port.to_string()])
        .env(
            "XDG_DATA_DIRS",
            format!("{}:/usr/local/share:/usr/share", data.path().display()),
        )
        .envs(env.iter().copied())
        .stdin(Stdio::null());
        let process = spawn(cmd, "cockpit-ws");
        let started = Instant::now();
        let target = format!("{addr}:{port}");
        // Up once it accepts a connection (checked from inside its namespace).
        while ns
            .run_in(|| {
                TcpStream::connect_timeout(
                    &target.parse().expect("address"),
                    Duration::from_millis(200),
                )
            })
            .is_err()
        {
            assert!(
                started.elapsed() < Duration::from_secs(15),
                "cockpit-ws did not listen on {target} within 15 s"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        CockpitWs {
            _process: process,
            _data: data,
            url: format!("http://{target}"),
        }
    }
}

/// Chromium under playwright-core, one command at a time.
pub struct Browser {
    stdin: Option<ChildStdin>,
    answers: mpsc::Receiver<String>,
    process: Option<Group>,
    profile: tempfile::TempDir,
}

impl Drop for Browser {
    /// Closing stdin ends the driver, which closes Chromium; then whatever is left goes:
    /// the driver's group, and (Playwright starts it in a group of its own) any process
    /// whose command line names this test's fresh profile directory.
    fn drop(&mut self) {
        drop(self.stdin.take());
        if let Some(mut process) = self.process.take() {
            let deadline = Instant::now() + Duration::from_secs(5);
            while Instant::now() < deadline && matches!(process.child.try_wait(), Ok(None)) {
                std::thread::sleep(Duration::from_millis(50));
            }
            drop(process);
        }
        let profile = self.profile.path().to_string_lossy().into_owned();
        for pid in processes_naming(&profile) {
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
        }
    }
}

/// The processes whose command line contains `needle`.
fn processes_naming(needle: &str) -> Vec<nix::unistd::Pid> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(Result::ok)
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .is_ok_and(|c| String::from_utf8_lossy(&c).contains(needle))
        })
        .map(nix::unistd::Pid::from_raw)
        .collect()
}

impl Browser {
    /// Opens `url` in a fresh profile inside `ns`; `frame`: the page's iframe in Cockpit's
    /// shell, if `url` is the shell.
    pub fn open(ns: &Netns, url: &str, frame: Option<&str>) -> Browser {
        Browser::start(ns, url, frame, None)
    }

    /// Opens the shell's `url` and logs in through Cockpit's login form as `(user, password)`.
    pub fn log_in(ns: &Netns, url: &str, frame: &str, login: (&str, &str)) -> Browser {
        Browser::start(ns, url, Some(frame), Some(login))
    }

    fn start(ns: &Netns, url: &str, frame: Option<&str>, login: Option<(&str, &str)>) -> Browser {
        let profile = tempfile::Builder::new()
            .prefix("allowlist-chromium-")
            .tempdir()
            .expect("a fresh --user-data-dir");
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", ns.name(), "node", "test/driver.mjs", url])
            .arg(profile.path())
            .args(frame)
            .envs(login.into_iter().flat_map(|(user, password)| {
                [("COCKPIT_USER", user), ("COCKPIT_PASSWORD", password)]
            }))
            .current_dir(module_dir())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped());
        let mut process = spawn(cmd, "chromium and its driver");
        let stdin = process.child.stdin.take().expect("piped stdin");
        let stdout = process.child.stdout.take().expect("piped stdout");
        let (tx, answers) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut browser = Browser {
            stdin: Some(stdin),
            answers,
            process: Some(process),
            profile,
        };
        browser.answer("opening the page");
        browser
    }

    fn answer(&mut self, what: &str) -> Value {
        let line = self
            .answers
            .recv_timeout(ANSWER_TIMEOUT)
            .unwrap_or_else(|e| {
                panic!("the browser did not answer {what} within {ANSWER_TIMEOUT:?}: {e}")
            });
        let answer: Value = serde_json::from_str(&line)
            .unwrap_or_else(|e| panic!("the driver's answer to {what} is not JSON ({e}): {line}"));
        assert_eq!(answer["ok"], true, "browser: {what} failed: {answer:#}");
        answer["value"].clone()
    }

    fn send(&mut self, command: Value) -> Value {
        let what = command.to_string();
        let stdin = self.stdin.as_mut().expect("the driver's stdin is open");
        writeln!(stdin, "{command}").unwrap_or_else(|e| panic!("sending {what}: {e}"));
        self.answer(&what)
    }

    pub fn click(&mut self, sel: &str) {
        self.send(json!({"op": "click", "sel": sel}));
    }

    pub fn fill(&mut self, sel: &str, text: &str) {
        self.send(json!({"op": "fill", "sel": sel, "text": text}));
    }

    /// Picks the option of value `value` in the `<select>` at `sel`.
    pub fn select(&mut self, sel: &str, value: &str) {
        self.send(json!({"op": "select", "sel": sel, "text": value}));
    }

    pub fn text(&mut self, sel: &str) -> String {
        let value = self.send(json!({"op": "text", "sel": sel}));
        value.as_str().unwrap_or_default().to_owned()
    }

    /// Waits until `sel` is visible and contains `text`.
    pub fn wait(&mut self, sel: &str, text: &str) {
        self.send(json!({"op": "wait", "sel": sel, "text": text}));
    }

    pub fn gone(&mut self, sel: &str) {
        self.send(json!({"op": "gone", "sel": sel}));
    }

    /// Navigates to the page's URL again; the milliseconds until `sel` is visible.
    pub fn load_ms(&mut self, sel: &str) -> f64 {
        let value = self.send(json!({"op": "load", "sel": sel}));
        value
            .as_f64()
            .expect("the driver answers load with milliseconds")
    }

    pub fn reload(&mut self) {
        self.send(json!({"op": "reload"}));
    }

    /// Turns on administrative access in Cockpit's shell (sudo, with `password`), which
    /// reloads the page.
    pub fn superuser(&mut self, password: &str) {
        self.send(json!({"op": "superuser", "text": password}));
    }

    pub fn screenshot(&mut self, path: &Path) {
        self.send(json!({"op": "screenshot", "path": path}));
    }
}
