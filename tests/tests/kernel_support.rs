//! `allowlistd` on the kernel it runs on. On one too old for the program (before Linux 5.8,
//! which brought ring buffers and `bpf_ktime_get_boot_ns`) it refuses to start with one line
//! naming what is missing and the kernel that has it, instead of the verifier's dump, and
//! `--check` says the same; on a newer kernel that refusal never appears and it starts. Every
//! kernel Debian ships since 11 (5.10) is new enough: `cargo xtask vm-test --kernel 5.10
//! kernel_support` runs this there; the refusal's wording is a unit test of
//! `allowlist_loader::kernel`.
//!
//! Needs root and the built binaries (`cargo xtask test`).

use allowlist_tests::bpffs::TestDir;
use allowlist_tests::daemon::{self, Config, Daemon, READY_TIMEOUT};
use allowlist_tests::netns::Netns;
use allowlist_tests::require_root;

/// The running kernel's (major, minor), read independently of the daemon's probes.
fn kernel_version() -> (u32, u32) {
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").expect("osrelease");
    let mut parts = release
        .trim()
        .split(|c: char| !c.is_ascii_digit())
        .map(|part| part.parse::<u32>().expect("a numeric kernel release"));
    (
        parts.next().expect("a major version"),
        parts.next().expect("a minor version"),
    )
}

#[test]
fn refuses_a_kernel_too_old_in_one_line_or_starts() {
    if !require_root("refuses_a_kernel_too_old_in_one_line_or_starts") {
        return;
    }
    let dir = TestDir::new();
    let ns = Netns::new();
    let path = dir.join("allowlist.toml");
    Config::new(&dir, "lo")
        .entry("198.18.1.0/24", "lab")
        .write(&path);
    let refusal = "which the filter needs";
    let checked = daemon::check(&path);
    let check_err = String::from_utf8_lossy(&checked.stderr);
    let old_kernel = kernel_version() < (5, 8);
    if old_kernel {
        assert_eq!(checked.status.code(), Some(1), "--check: {check_err}");
        assert_eq!(
            check_err.trim().lines().count(),
            1,
            "--check: one line: {check_err}"
        );
        assert!(check_err.contains(refusal), "--check: {check_err}");
    } else {
        assert!(checked.status.success(), "--check: {check_err}");
        assert!(!check_err.contains(refusal), "--check: {check_err}");
    }
    let mut daemon = Daemon::spawn(&ns, &path);
    if old_kernel {
        let status = daemon
            .wait_exit(READY_TIMEOUT)
            .unwrap_or_else(|e| panic!("{e:#}"));
        let log = daemon.log();
        assert_eq!(status.code(), Some(1), "{log}");
        let lines: Vec<&str> = log.lines().filter(|line| !line.trim().is_empty()).collect();
        assert_eq!(lines.len(), 1, "one line, not a verifier dump:\n{log}");
        assert!(
            lines[0].contains(refusal) && lines[0].contains("(Debian 11's kernel 5.10 has it)"),
            "the line names what is missing and where it is: {}",
            lines[0]
        );
        assert!(
            dir.bpffs_entries().is_empty(),
            "nothing pinned: {:?}",
            dir.bpffs_entries()
        );
    } else {
        daemon.wait_ready();
        assert!(!daemon.log().contains(refusal), "{}", daemon.log());
    }
}
