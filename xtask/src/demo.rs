//! `cargo xtask demo`: runs the allowlist-demo binary (the demo crate).

use std::path::Path;
use std::process::{self, Command};

use anyhow::Result;

use crate::{build, exec};

pub fn demo(root: &Path) -> Result<()> {
    // Checked before building: without root the demo cannot create namespaces or attach XDP.
    if !exec::is_root()? {
        eprintln!("xtask: the demo needs root (network namespaces, XDP); run it as root");
        process::exit(2);
    }
    let built = build::build(root, false)?;
    exec::run(
        Command::new(built.bin_dir.join("allowlist-demo"))
            .env("ALLOWLIST_BIN_DIR", &built.bin_dir)
            .env("ALLOWLIST_EBPF_OBJECT", &built.ebpf_object),
    )
}
