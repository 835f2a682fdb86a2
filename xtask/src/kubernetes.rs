//! kubernetes-validate (from PyPI, in a venv under target/) for the manifests in
//! deploy/kubernetes/: the tests validate them against the Kubernetes schemas with it.

use std::path::{Path, PathBuf};

use anyhow::Result;

use crate::toolchain::pypi_tool;

/// Pinned: its schemas decide what passes, so an update is a deliberate change.
const VERSION: &str = "1.37.0";

/// The validator's path, installed into target/kubernetes-validate when missing (about 30 s
/// once, then nothing).
pub fn validator(root: &Path) -> Result<PathBuf> {
    pypi_tool(
        &root.join("target/kubernetes-validate"),
        &format!("kubernetes-validate=={VERSION}"),
        "kubernetes-validate",
    )
}
