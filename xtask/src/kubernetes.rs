//! kubernetes-validate (from PyPI, in a venv under target/) for the manifests in
//! deploy/kubernetes/: the tests validate them against the Kubernetes schemas with it.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Result, bail};

use crate::exec::{query, run};

/// Pinned: its schemas decide what passes, so an update is a deliberate change.
const VERSION: &str = "1.37.0";

/// The validator's path, installed into target/kubernetes-validate when missing (about 30 s
/// once, then nothing).
pub fn validator(root: &Path) -> Result<PathBuf> {
    let venv = root.join("target/kubernetes-validate");
    let bin = venv.join("bin/kubernetes-validate");
    if bin.is_file() {
        let out = query(Command::new(&bin).arg("--version"))?;
        if String::from_utf8_lossy(&out.stdout).contains(VERSION) {
            return Ok(bin);
        }
    }
    eprintln!(
        "xtask: installing kubernetes-validate {VERSION} from PyPI into {}",
        venv.display()
    );
    run(Command::new("python3")
        .args(["-m", "venv", "--clear"])
        .arg(&venv))?;
    run(Command::new(venv.join("bin/pip")).args([
        "install",
        "--quiet",
        "--disable-pip-version-check",
        &format!("kubernetes-validate=={VERSION}"),
    ]))?;
    if !bin.is_file() {
        bail!(
            "pip installed kubernetes-validate but left no {}",
            bin.display()
        );
    }
    Ok(bin)
}
