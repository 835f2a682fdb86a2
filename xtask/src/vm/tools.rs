//! What booting a kernel needs: QEMU, kmod (virtme-ng runs depmod over the unpacked modules),
//! busybox (virtme-ng's initramfs) from Debian, ethtool (the guest runs the host's programs,
//! and `vm_devices` turns a veth's VLAN offloads off with it), and virtme-ng from PyPI in a
//! virtualenv of its own under target/vm/venv, so the system's Python is left alone.

use std::path::{Path, PathBuf};

use anyhow::Result;

use crate::toolchain::{install_packages, pypi_tool};

const PACKAGES: &[&str] = &[
    "qemu-system-x86",
    "kmod",
    "busybox-static",
    "python3-venv",
    "file",
    "ethtool",
];
/// The version these runs were measured with; a newer one changes how guests boot.
const VIRTME_NG: &str = "virtme-ng==1.42";

/// Installs what is missing and returns the `vng` to run.
pub fn setup(root: &Path) -> Result<PathBuf> {
    install_packages(PACKAGES)?;
    pypi_tool(&root.join("target/vm/venv"), VIRTME_NG, "vng")
}
