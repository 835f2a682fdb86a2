//! The Cockpit page (`cockpit/`): its npm dependencies installed from the lockfile, the page
//! built into `cockpit/dist/` (not committed), and what its browser test needs from Debian.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

use crate::exec::{query, run};
use crate::toolchain;

/// Node.js and npm, to build the page (Debian's, where the machine has none of its own).
const BUILD_PACKAGES: &[&str] = &["nodejs", "npm"];
/// cockpit-ws serves the page in the browser test, cockpit-bridge runs allowlistctl for it,
/// cockpit-system brings Cockpit's shell (the menu and frame around the page), Chromium is
/// the browser, sudo gives the test's non-root admin Cockpit's administrative access (the
/// login itself needs only useradd and chpasswd, which every Debian has).
const TEST_PACKAGES: &[&str] = &[
    "cockpit-ws",
    "cockpit-bridge",
    "cockpit-system",
    "chromium",
    "sudo",
];

/// Builds the page and returns its directory (`cockpit/dist`).
pub fn build(root: &Path) -> Result<PathBuf> {
    let dir = root.join("cockpit");
    if !has(Command::new("npm").arg("--version")) {
        toolchain::install_packages(BUILD_PACKAGES)?;
    }
    if npm_ci_needed(&dir)? {
        eprintln!("xtask: installing the page's npm packages from cockpit/package-lock.json");
        run(Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund"])
            .current_dir(&dir))?;
    } else {
        eprintln!("xtask: the page's npm packages are those of cockpit/package-lock.json");
    }
    run(Command::new("node").arg("build.mjs").current_dir(&dir))?;
    let dist = dir.join("dist");
    if !dist.join("index.html").is_file() {
        bail!(
            "cockpit/build.mjs did not write {}",
            dist.join("index.html").display()
        );
    }
    Ok(dist)
}

/// What the browser test runs, installed with apt when missing.
pub fn test_tools() -> Result<()> {
    toolchain::install_packages(TEST_PACKAGES)
}

/// Whether node_modules/ is missing or older than the lockfile (npm writes its own copy of
/// the lockfile, node_modules/.package-lock.json, at every install).
fn npm_ci_needed(dir: &Path) -> Result<bool> {
    let modified = |path: &Path| fs::metadata(path).and_then(|m| m.modified());
    let lock =
        modified(&dir.join("package-lock.json")).context("reading cockpit/package-lock.json")?;
    Ok(
        match modified(&dir.join("node_modules/.package-lock.json")) {
            Ok(installed) => installed < lock,
            Err(_) => true,
        },
    )
}

fn has(cmd: &mut Command) -> bool {
    query(cmd).is_ok_and(|output| output.status.success())
}
