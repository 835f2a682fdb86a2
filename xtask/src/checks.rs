//! `cargo xtask test`: lints, formatting and the test suite over a fresh debug build.

use std::path::Path;
use std::process::Command;

use anyhow::{Result, bail};

use crate::build::{self, userspace_cargo};
use crate::exec::run;

/// Builds, then runs every check even after one fails, so one run reports all of them.
pub fn test(root: &Path, test_args: &[String]) -> Result<()> {
    let built = build::build(root, false)?;

    let mut clippy = userspace_cargo(root, "clippy", &built.ebpf_object);
    clippy.args(["--all-targets", "--", "-D", "warnings"]);
    let mut fmt = Command::new("cargo");
    fmt.current_dir(root)
        .args(["fmt", "--all", "--", "--check"]);
    let mut tests = userspace_cargo(root, "test", &built.ebpf_object);
    // The end-to-end tests start the allowlistd found here.
    tests
        .env("ALLOWLIST_BIN_DIR", &built.bin_dir)
        .env("RUST_BACKTRACE", "1")
        .args(test_args);

    let mut failed = Vec::new();
    for (name, mut cmd) in [("clippy", clippy), ("rustfmt", fmt), ("cargo test", tests)] {
        if let Err(err) = run(&mut cmd) {
            eprintln!("xtask: {err:#}");
            failed.push(name);
        }
    }
    if !failed.is_empty() {
        bail!("{} did not pass", failed.join(", "));
    }
    eprintln!("xtask: test passed: clippy, rustfmt and cargo test all succeeded");
    Ok(())
}
