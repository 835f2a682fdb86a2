//! `cargo xtask test`: lints, formatting and the test suite over a fresh debug build, then,
//! for a whole run (no test arguments, what CI does), the kernel-facing suites in VMs on
//! Debian's kernels (`vm::CI_PLAN`).

use std::path::Path;
use std::process::Command;

use anyhow::{Result, bail};

use crate::build::{self, userspace_cargo};
use crate::exec::run;
use crate::{ansible, cockpit, kubernetes, vm};

/// Builds, then runs every check even after one fails, so one run reports all of them.
pub fn test(root: &Path, test_args: &[String]) -> Result<()> {
    let built = build::build(root, false)?;
    // The manifests' test validates deploy/kubernetes/ with it.
    let kubernetes_validate = kubernetes::validator(root)?;
    // The browser test serves the built page with cockpit-ws to Chromium.
    let cockpit_dist = cockpit::build(root)?;
    cockpit::test_tools()?;
    // The Ansible role's test runs its example playbook with it.
    let ansible_playbook = ansible::playbook(root)?;

    let mut clippy = userspace_cargo(root, "clippy", &built.ebpf_object);
    clippy.args(["--all-targets", "--", "-D", "warnings"]);
    // `--all-targets` leaves out `test = false` targets, and ignores a `--test` beside it: the
    // VM-only suite is linted on its own.
    let mut clippy_vm = userspace_cargo(root, "clippy", &built.ebpf_object);
    clippy_vm.args(["--test", "vm_devices", "--", "-D", "warnings"]);
    let mut fmt = Command::new("cargo");
    fmt.current_dir(root)
        .args(["fmt", "--all", "--", "--check"]);
    let mut tests = userspace_cargo(root, "test", &built.ebpf_object);
    // The end-to-end tests start the allowlistd found here.
    tests
        .env("ALLOWLIST_BIN_DIR", &built.bin_dir)
        .env("ALLOWLIST_KUBERNETES_VALIDATE", &kubernetes_validate)
        .env("ALLOWLIST_COCKPIT_DIST", &cockpit_dist)
        .env("ALLOWLIST_ANSIBLE_PLAYBOOK", &ansible_playbook)
        .env("RUST_BACKTRACE", "1")
        .args(test_args);

    let mut failed = Vec::new();
    for (name, mut cmd) in [
        ("clippy", clippy),
        ("clippy (vm_devices)", clippy_vm),
        ("rustfmt", fmt),
        ("cargo test", tests),
    ] {
        if let Err(err) = run(&mut cmd) {
            eprintln!("xtask: {err:#}");
            failed.push(name);
        }
    }
    // Only for the whole suite: a filtered run is someone iterating on one test. A VM that
    // cannot be fetched or booted is a failure like any other, never a skip.
    let whole = test_args.is_empty();
    if whole && let Err(err) = vm::ci(root) {
        eprintln!("xtask: vm-test: {err:#}");
        failed.push("vm-test (Debian 11's, 12's and 13's kernels)");
    }
    if !failed.is_empty() {
        bail!("{} did not pass", failed.join(", "));
    }
    if whole {
        eprintln!(
            "xtask: test passed: clippy, rustfmt, cargo test and the kernel-facing suites in \
             VMs (Debian 11's, 12's and 13's kernels) all succeeded"
        );
    } else {
        eprintln!("xtask: test passed: clippy, rustfmt and cargo test all succeeded");
    }
    Ok(())
}
