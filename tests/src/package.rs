//! The .deb on this machine, for the tests that install it (the package's lifecycle, the
//! Ansible role): built by `cargo xtask package` from the binaries under test, installed with
//! dpkg, and purged when the test ends, even on a panic. One such test at a time (a lock
//! under target/), and never over an allowlist package somebody installed.

use std::fs::File;
use std::os::fd::AsRawFd as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use crate::daemon::bin_dir;

/// The package's name, as dpkg knows it.
pub const NAME: &str = "allowlist";

pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the tests crate sits in the workspace")
        .to_path_buf()
}

/// Runs `cmd` and panics with its output unless it succeeds.
#[track_caller]
pub fn run_ok(cmd: &mut Command) -> Output {
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

/// `cargo xtask ARGS...` (through `cargo run`, as the alias does), to be run.
pub fn xtask_command(args: &[&str]) -> Command {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(workspace_root())
        .args(["run", "--quiet", "--package", "xtask", "--"])
        .args(args);
    cmd
}

/// `cargo xtask ARGS...`, which must succeed.
#[track_caller]
pub fn xtask(args: &[&str]) -> Output {
    run_ok(&mut xtask_command(args))
}

/// Builds the .deb of the binaries under test into `out_dir`, saying `version` if given
/// (`--deb-version`), and returns its path.
#[track_caller]
pub fn build(out_dir: &Path, version: Option<&str>) -> PathBuf {
    let (bins, out) = (bin_dir(), out_dir.to_path_buf());
    let mut args = vec![
        "package",
        "--bin-dir",
        bins.to_str().expect("utf-8 bin dir"),
        "--out-dir",
        out.to_str().expect("utf-8 out dir"),
    ];
    if let Some(version) = version {
        args.extend(["--deb-version", version]);
    }
    // gzip -1 rather than dpkg-deb's xz: the same payload, in a sixth of the time.
    let mut cmd = xtask_command(&args);
    cmd.env("DPKG_DEB_COMPRESSOR_TYPE", "gzip")
        .env("DPKG_DEB_COMPRESSOR_LEVEL", "1");
    let said = String::from_utf8_lossy(&run_ok(&mut cmd).stderr).into_owned();
    let deb = said
        .lines()
        .find_map(|l| l.strip_prefix("xtask: package written: "))
        .unwrap_or_else(|| panic!("no .deb named by cargo xtask package:\n{said}"));
    PathBuf::from(deb)
}

/// This machine's package database for one test: the package is purged on drop.
pub struct Machine {
    _lock: File,
}

impl Machine {
    /// Waits for the other tests that install the package, then checks that this machine has
    /// none installed (nor its config directory): a test must not purge an admin's install.
    pub fn take() -> Machine {
        let path = workspace_root().join("target/package-tests.lock");
        let lock = File::create(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        // SAFETY: flock(2) on a descriptor this function owns.
        let locked = unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX) };
        assert_eq!(locked, 0, "locking {}", path.display());
        let machine = Machine { _lock: lock };
        assert_eq!(
            machine.installed_version(),
            None,
            "the {NAME} package is installed on this machine; the test installs and purges \
             it: remove it first (dpkg --purge {NAME})"
        );
        assert!(
            !Path::new("/etc/allowlist").exists(),
            "/etc/allowlist exists on this machine; the test's purge would remove it: move it \
             away first"
        );
        machine
    }

    /// `dpkg ARGS...`, never asking anything; its output whatever its exit status.
    pub fn dpkg(&self, args: &[&str]) -> Output {
        Command::new("dpkg")
            .args(args)
            .env("DEBIAN_FRONTEND", "noninteractive")
            .stdin(Stdio::null())
            .output()
            .expect("running dpkg")
    }

    /// `dpkg ARGS...`, which must succeed; its standard output and error, together.
    #[track_caller]
    pub fn dpkg_ok(&self, args: &[&str]) -> String {
        let out = self.dpkg(args);
        let said = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            out.status.success(),
            "dpkg {args:?} ({}):\n{said}",
            out.status
        );
        said
    }

    /// The version dpkg has installed (not merely its config files left), if any.
    pub fn installed_version(&self) -> Option<String> {
        let out = self.dpkg(&["-s", NAME]);
        let status = String::from_utf8_lossy(&out.stdout).into_owned();
        if !status.contains("Status: install ok installed") {
            return None;
        }
        status
            .lines()
            .find_map(|l| l.strip_prefix("Version: "))
            .map(str::to_owned)
    }

    /// dpkg's state for the package: `installed`, `config-files`, or `not-installed`.
    pub fn state(&self) -> String {
        let out = self.dpkg(&["-s", NAME]);
        let status = String::from_utf8_lossy(&out.stdout).into_owned();
        status
            .lines()
            .find_map(|l| l.strip_prefix("Status: install ok "))
            .or_else(|| {
                status
                    .lines()
                    .find_map(|l| l.strip_prefix("Status: deinstall ok "))
            })
            .unwrap_or("not-installed")
            .to_owned()
    }
}

impl Drop for Machine {
    fn drop(&mut self) {
        if self.state() == "not-installed" {
            return;
        }
        let out = self.dpkg(&["--purge", NAME]);
        if !out.status.success() {
            eprintln!(
                "warning: dpkg --purge {NAME} failed ({}): {}{}",
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
}
