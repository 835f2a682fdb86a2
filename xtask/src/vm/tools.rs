//! What booting a kernel needs: QEMU, kmod (virtme-ng runs depmod over the unpacked modules),
//! busybox (virtme-ng's initramfs) from Debian, and virtme-ng from PyPI in a virtualenv of its
//! own under target/vm/venv, so the system's Python is left alone.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::Result;

use crate::exec::{query, run};
use crate::toolchain::install_packages;

const PACKAGES: &[&str] = &[
    "qemu-system-x86",
    "kmod",
    "busybox-static",
    "python3-venv",
    "file",
];
/// The version these runs were measured with; a newer one changes how guests boot.
const VIRTME_NG: &str = "virtme-ng==1.42";

/// Installs what is missing and returns the `vng` to run.
pub fn setup(root: &Path) -> Result<PathBuf> {
    install_packages(PACKAGES)?;
    let venv = root.join("target/vm/venv");
    let vng = venv.join("bin/vng");
    let version = VIRTME_NG.trim_start_matches("virtme-ng==");
    if vng.is_file() {
        let output = query(Command::new(&vng).arg("--version"))?;
        let said = String::from_utf8_lossy(&output.stdout);
        if output.status.success() && said.contains(version) {
            eprintln!("xtask: virtme-ng {version} present: {}", vng.display());
            return Ok(vng);
        }
    }
    eprintln!(
        "xtask: installing {VIRTME_NG} from PyPI into {}",
        venv.display()
    );
    // Debian's python3, not whatever a shell's PATH prefers: python3-venv above is for it.
    run(Command::new("/usr/bin/python3")
        .args(["-m", "venv", "--clear"])
        .arg(&venv))?;
    run(Command::new(venv.join("bin/pip")).args([
        "install",
        "-q",
        "--disable-pip-version-check",
        VIRTME_NG,
    ]))?;
    Ok(vng)
}
