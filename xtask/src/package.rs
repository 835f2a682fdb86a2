//! `cargo xtask package`: a .deb built with dpkg-deb (no cargo-deb) under target/debian/.
//!
//! The tree is what `cargo xtask install --prefix /usr --destdir STAGE` lays out (binaries
//! stripped, man pages gzipped), plus packaging/debian/: control, conffiles (the config, so
//! dpkg never overwrites an admin's edits) and maintainer scripts that never enable or start
//! the service on install and stop it (detaching the filter) on removal.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

use crate::build;
use crate::exec::{self, query};
use crate::install::{self, Layout, Options};

const VERSION: &str = env!("CARGO_PKG_VERSION");
const SCRIPTS: [&str; 3] = ["postinst", "prerm", "postrm"];

/// Builds the .deb and returns its path. Release binaries are built unless `bin_dir` names
/// binaries already built (the tests package debug ones that way, to stay fast).
pub fn package(root: &Path, bin_dir: Option<&Path>, out_dir: Option<&Path>) -> Result<PathBuf> {
    let bin_dir = match bin_dir {
        Some(dir) => dir.to_path_buf(),
        None => build::build(root, true)?.bin_dir,
    };
    let out_dir = out_dir.map_or_else(|| root.join("target/debian"), Path::to_path_buf);
    let arch = architecture()?;
    let name = format!("allowlist_{VERSION}_{arch}");
    let stage = out_dir.join(&name);
    if stage.exists() {
        fs::remove_dir_all(&stage).with_context(|| format!("removing {}", stage.display()))?;
    }
    let layout = Layout {
        prefix: PathBuf::from("/usr"),
        sysconfdir: PathBuf::from("/etc"),
        destdir: Some(stage.clone()),
    };
    let options = Options {
        strip: true,
        gzip_man: true,
    };
    install::stage(root, &bin_dir, &layout, &options)?;
    control_files(root, &stage, &arch)?;

    let deb = out_dir.join(format!("{name}.deb"));
    exec::run(
        Command::new("dpkg-deb")
            .arg("--root-owner-group")
            .arg("--build")
            .arg(&stage)
            .arg(&deb),
    )?;
    eprintln!("xtask: package written: {}", deb.display());
    Ok(deb)
}

/// DEBIAN/: control (version, architecture, size filled in), conffiles and the scripts.
fn control_files(root: &Path, stage: &Path, arch: &str) -> Result<()> {
    let source = root.join("packaging/debian");
    let debian = stage.join("DEBIAN");
    fs::create_dir_all(&debian).with_context(|| format!("creating {}", debian.display()))?;
    // Counted before DEBIAN/ has content: dpkg's Installed-Size is the payload, in KiB.
    let installed_kib = tree_size(stage)?.div_ceil(1024);
    let control = read(&source.join("control"))?
        .replace("@VERSION@", VERSION)
        .replace("@ARCH@", arch)
        .replace("@INSTALLED_SIZE@", &installed_kib.to_string());
    fs::write(debian.join("control"), control).context("writing DEBIAN/control")?;
    fs::copy(source.join("conffiles"), debian.join("conffiles"))
        .context("copying DEBIAN/conffiles")?;
    for script in SCRIPTS {
        let to = debian.join(script);
        fs::copy(source.join(script), &to).with_context(|| format!("copying {script}"))?;
        fs::set_permissions(&to, fs::Permissions::from_mode(0o755))
            .with_context(|| format!("chmod 0755 {}", to.display()))?;
    }
    // dpkg-deb refuses a control directory that others may write to (umask 002 machines).
    fs::set_permissions(&debian, fs::Permissions::from_mode(0o755)).context("chmod 0755 DEBIAN")?;
    Ok(())
}

fn read(path: &Path) -> Result<String> {
    fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))
}

/// Bytes in the regular files under `dir`.
fn tree_size(dir: &Path) -> Result<u64> {
    let mut total = 0;
    for entry in fs::read_dir(dir).with_context(|| format!("listing {}", dir.display()))? {
        let entry = entry?;
        let kind = entry.file_type()?;
        if kind.is_dir() {
            total += tree_size(&entry.path())?;
        } else if kind.is_file() {
            total += entry.metadata()?.len();
        }
    }
    Ok(total)
}

/// Debian's name for this machine's architecture.
fn architecture() -> Result<String> {
    let out = query(Command::new("dpkg").arg("--print-architecture"))?;
    let arch = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    if !out.status.success() || arch.is_empty() {
        bail!(
            "`dpkg --print-architecture` failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(arch)
}
