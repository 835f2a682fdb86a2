//! The starting point of the tests that drive a running daemon: a lab with listeners on the
//! protected and the unprotected port, a test directory, a config file and a ready daemon.

use std::net::SocketAddr;
use std::os::unix::process::CommandExt as _;
use std::path::PathBuf;

use serde_json::Value;

use crate::bpffs::TestDir;
use crate::ctl::{Out, ctl_command, run};
use crate::daemon::{Daemon, SpawnOptions, write_atomically};
use crate::netns::{Lab, Netns, PROTECTED, UNPROTECTED};
use crate::tcp::Listener;
use crate::tmpfs::Tmpfs;

/// A daemon started by [`Running::start`]. Fields drop in order: the daemon first, the lab
/// last.
pub struct Running {
    pub daemon: Daemon,
    /// The config file.
    pub path: PathBuf,
    /// `<dir>/control.sock`, where [`crate::daemon::Config`] puts it.
    pub socket: PathBuf,
    _listeners: [Listener; 2],
    /// The one [`Start::tmpfs`] asked for.
    pub tmpfs: Option<Tmpfs>,
    pub dir: TestDir,
    pub lab: Lab,
}

/// What a test changes about the start.
pub struct Start<'a> {
    /// A tmpfs `(name, size)` mounted at `<dir>/<name>` before the config is written.
    pub tmpfs: Option<(&'a str, &'a str)>,
    /// The config file, relative to the test directory.
    pub config: &'a str,
    /// The daemon's open-files limit `(soft, hard)`.
    pub nofile: Option<(u64, u64)>,
}

impl Default for Start<'_> {
    fn default() -> Self {
        Start {
            tmpfs: None,
            config: "allowlist.toml",
            nofile: None,
        }
    }
}

impl Running {
    /// Starts a daemon on the config text `build` writes for the test directory and the
    /// server's interface (at `<dir>/allowlist.toml`), and waits until it is ready.
    pub fn start(build: impl FnOnce(&TestDir, &str) -> String) -> Running {
        Running::start_with(&Start::default(), build)
    }

    pub fn start_with(start: &Start, build: impl FnOnce(&TestDir, &str) -> String) -> Running {
        Running::start_in(Lab::new(), start, build)
    }

    /// [`Running::start_with`] on a lab the test built, e.g. with devices of its own on top of
    /// the veth pair (which must exist before the daemon, as a listed interface must).
    pub fn start_in(
        lab: Lab,
        start: &Start,
        build: impl FnOnce(&TestDir, &str) -> String,
    ) -> Running {
        let dir = TestDir::new();
        let listeners = [PROTECTED, UNPROTECTED].map(|port| {
            // `[::]` takes IPv4 connections too.
            Listener::start(&lab.server, SocketAddr::new("::".parse().unwrap(), port))
        });
        let tmpfs = start
            .tmpfs
            .map(|(name, size)| Tmpfs::mount(&dir.join(name), size));
        let path = dir.join(start.config);
        write_atomically(&path, &build(&dir, lab.server_if()));
        let mut cmd = Daemon::command(&path);
        if let Some((soft, hard)) = start.nofile {
            // SAFETY: only setrlimit(2), async-signal-safe, between fork and exec.
            unsafe {
                cmd.pre_exec(move || {
                    let limit = libc::rlimit {
                        rlim_cur: soft,
                        rlim_max: hard,
                    };
                    if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) == 0 {
                        Ok(())
                    } else {
                        Err(std::io::Error::last_os_error())
                    }
                });
            }
        }
        let daemon = Daemon::spawn_command(&lab.server, cmd, &SpawnOptions::default());
        daemon.wait_ready();
        Running {
            daemon,
            path,
            socket: dir.join("control.sock"),
            _listeners: listeners,
            tmpfs,
            dir,
            lab,
        }
    }

    /// `allowlistctl ARGS...` on the daemon's socket.
    pub fn ctl(&self, args: &[&str]) -> Out {
        run(&mut ctl_command(&self.socket, args))
    }

    pub fn client(&self) -> &Netns {
        &self.lab.client
    }

    /// A new daemon on the same config (the previous one must be gone), ready.
    pub fn restart(&mut self) {
        self.daemon = Daemon::spawn(&self.lab.server, &self.path);
        self.daemon.wait_ready();
    }

    /// The records of the audit log at `<dir>/audit.log`, where [`crate::daemon::Config`]
    /// puts it.
    pub fn audit(&self) -> Vec<Value> {
        std::fs::read_to_string(self.dir.join("audit.log"))
            .expect("the audit log")
            .lines()
            .map(|l| serde_json::from_str(l).expect("audit records are JSON"))
            .collect()
    }
}

/// `struct NAME { run: Running, FIELDS }`, dereferencing to its [`Running`], for a test file
/// whose fixture adds helpers or state of its own.
#[macro_export]
macro_rules! running_fixture {
    ($(#[$meta:meta])* $name:ident { $($field:ident: $ty:ty),* $(,)? }) => {
        $(#[$meta])*
        struct $name {
            run: $crate::fixture::Running,
            $($field: $ty,)*
        }

        impl std::ops::Deref for $name {
            type Target = $crate::fixture::Running;

            fn deref(&self) -> &Self::Target {
                &self.run
            }
        }

        impl std::ops::DerefMut for $name {
            fn deref_mut(&mut self) -> &mut Self::Target {
                &mut self.run
            }
        }
    };
}
