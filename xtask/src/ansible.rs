//! ansible-core (from PyPI, in a venv under target/) for the Ansible role in deploy/ansible/:
//! the tests run its example playbook with it against this machine.

use std::path::{Path, PathBuf};

use anyhow::Result;

use crate::toolchain::{install_packages, pypi_tool};

/// Pinned: the modules the role uses and their output are this version's.
const VERSION: &str = "2.19.14";
/// The role's `apt` module (installing the .deb) runs under Debian's python3 and needs its
/// apt bindings.
const PACKAGES: &[&str] = &["python3-apt"];

/// `ansible-playbook`'s path, installed into target/ansible when missing (about a minute
/// once, then nothing).
pub fn playbook(root: &Path) -> Result<PathBuf> {
    install_packages(PACKAGES)?;
    pypi_tool(
        &root.join("target/ansible"),
        &format!("ansible-core=={VERSION}"),
        "ansible-playbook",
    )
}
