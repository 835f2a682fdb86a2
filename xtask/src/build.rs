//! Building: the XDP object with the eBPF toolchain, then the userspace binaries, whose build
//! embeds that object.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Result, bail};

use crate::exec::run;
use crate::toolchain::{self, EbpfToolchain};

/// Where a build left its results.
pub struct Built {
    /// The compiled XDP program (always a release build: the verifier wants optimised code).
    pub ebpf_object: PathBuf,
    /// `target/debug` or `target/release`, holding allowlistd, allowlistctl and allowlist-demo.
    pub bin_dir: PathBuf,
}

/// Sets the machine up, then builds the XDP object and every userspace binary.
pub fn build(root: &Path, release: bool) -> Result<Built> {
    let toolchain = toolchain::setup()?;
    let ebpf_object = build_ebpf(root, toolchain)?;
    let mut cmd = userspace_cargo(root, "build", &ebpf_object);
    cmd.arg("--bins");
    if release {
        cmd.arg("--release");
    }
    run(&mut cmd)?;
    let profile = if release { "release" } else { "debug" };
    Ok(Built {
        ebpf_object,
        bin_dir: root.join("target").join(profile),
    })
}

fn build_ebpf(root: &Path, toolchain: EbpfToolchain) -> Result<PathBuf> {
    // A target directory of its own: another compiler and target than the host builds.
    build_ebpf_package(root, toolchain, "allowlist-ebpf", &[], "target/ebpf")
}

/// Builds the eBPF crate `package` (with `features`) in release into `target_dir` (relative to
/// `root`) and returns the object's path.
pub fn build_ebpf_package(
    root: &Path,
    toolchain: EbpfToolchain,
    package: &str,
    features: &[&str],
    target_dir: &str,
) -> Result<PathBuf> {
    let target_dir = root.join(target_dir);
    let mut cmd = toolchain.cargo()?;
    cmd.current_dir(root)
        .args(["build", "--release", "-p", package])
        .args(["--target", "bpfel-unknown-none", "-Z", "build-std=core"])
        .arg("--target-dir")
        .arg(&target_dir);
    if !features.is_empty() {
        cmd.arg("--features").arg(features.join(","));
    }
    run(&mut cmd)?;
    let object = target_dir.join("bpfel-unknown-none/release").join(package);
    if !object.is_file() {
        bail!("the eBPF build succeeded but left no {}", object.display());
    }
    Ok(object)
}

/// `cargo <subcommand>` over every host crate (all but allowlist-ebpf, which only builds for
/// bpfel-unknown-none) with rustup's cargo, given the object the daemon's build script embeds.
pub fn userspace_cargo(root: &Path, subcommand: &str, ebpf_object: &Path) -> Command {
    let mut cmd = Command::new("cargo");
    cmd.current_dir(root)
        .env("ALLOWLIST_EBPF_OBJECT", ebpf_object)
        .args([subcommand, "--workspace"])
        .args(["--exclude", "allowlist-ebpf", "--exclude", "bench-ebpf"])
        // Explicit, so the binaries are where `bin_dir` says whatever CARGO_TARGET_DIR holds.
        .arg("--target-dir")
        .arg(root.join("target"));
    cmd
}
