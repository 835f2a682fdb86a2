//! `cargo xtask package`: a .deb built with debhelper (`dh`, `dh_installsystemd`) under
//! target/debian/.
//!
//! The payload is what `cargo xtask install --prefix /usr --destdir STAGE` lays out (binaries
//! stripped, man pages gzipped), staged into `root/` of a binary-only source tree whose
//! `debian/` is packaging/debian/: control, changelog, copyright, rules, lintian overrides and
//! maintainer scripts that never enable or start the service on install, never stop it on
//! upgrade (postinst hands over with SIGUSR2) and stop it (detaching the filter) on removal.
//! The config in /etc is a conffile (dh_installdeb), so dpkg never overwrites an admin's edits.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

use crate::build;
use crate::exec::{self, query};
use crate::install::{self, Layout, Options};
use crate::toolchain;

const VERSION: &str = env!("CARGO_PKG_VERSION");
/// dh and its helpers; lintian to check the result (the package test runs it).
const PACKAGES: &[&str] = &["debhelper", "lintian"];

/// Builds the .deb and returns its path. Release binaries are built unless `bin_dir` names
/// binaries already built (the tests package debug ones that way, to stay fast). With
/// `deb_version`, the package says that version instead of the workspace's (the newest
/// changelog entry is rewritten in the staged copy): a previous release to upgrade from.
pub fn package(
    root: &Path,
    bin_dir: Option<&Path>,
    out_dir: Option<&Path>,
    deb_version: Option<&str>,
) -> Result<PathBuf> {
    toolchain::install_packages(PACKAGES)?;
    let source = root.join("packaging/debian");
    let changelog = read(&source.join("changelog"))?;
    let changelog_version = changelog_version(&changelog)?;
    if changelog_version != VERSION {
        bail!(
            "packaging/debian/changelog's newest entry is {changelog_version}, the workspace is \
             {VERSION}: add an entry for {VERSION} (dch -v {VERSION}, or by hand)"
        );
    }
    let version = deb_version.unwrap_or(VERSION);
    if !version.starts_with(|c: char| c.is_ascii_digit())
        || !version
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || ".+~-".contains(c))
    {
        bail!(
            "--deb-version `{version}` is not a Debian version: a digit first, then letters, \
             digits and . + ~ - (e.g. 0.1.0~rc1, which sorts before 0.1.0)"
        );
    }
    let bin_dir = match bin_dir {
        Some(dir) => dir.to_path_buf(),
        None => build::build(root, true)?.bin_dir,
    };
    let out_dir = out_dir.map_or_else(|| root.join("target/debian"), Path::to_path_buf);
    let arch = architecture()?;
    let name = format!("allowlist_{version}_{arch}");
    // dh builds in `tree` and writes the .deb to its parent, `out_dir`.
    let tree = out_dir.join(&name);
    if tree.exists() {
        fs::remove_dir_all(&tree).with_context(|| format!("removing {}", tree.display()))?;
    }
    let layout = Layout {
        prefix: PathBuf::from("/usr"),
        sysconfdir: PathBuf::from("/etc"),
        destdir: Some(tree.join("root")),
    };
    let options = Options {
        strip: true,
        gzip_man: true,
    };
    install::stage(root, &bin_dir, &layout, &options)?;
    copy_debian_dir(&source, &tree.join("debian"))?;
    if version != VERSION {
        let first = changelog.lines().next().unwrap_or_default();
        let renamed = first.replacen(&format!("({VERSION})"), &format!("({version})"), 1);
        let staged = tree.join("debian/changelog");
        fs::write(&staged, changelog.replacen(first, &renamed, 1))
            .with_context(|| format!("writing {}", staged.display()))?;
    }

    let deb = out_dir.join(format!("{name}.deb"));
    if deb.exists() {
        fs::remove_file(&deb).with_context(|| format!("removing {}", deb.display()))?;
    }
    exec::run(
        Command::new("debian/rules")
            .arg("binary")
            .current_dir(&tree)
            // As control says (Rules-Requires-Root: no): files root-owned in the .deb without
            // fakeroot or root (dpkg-buildpackage sets this; debian/rules is run directly).
            .env("DEB_RULES_REQUIRES_ROOT", "no"),
    )?;
    if !deb.is_file() {
        bail!("dh did not write {}", deb.display());
    }
    eprintln!("xtask: package written: {}", deb.display());
    Ok(deb)
}

/// packaging/debian/ as the tree's debian/, debian/rules executable.
fn copy_debian_dir(from: &Path, to: &Path) -> Result<()> {
    fs::create_dir_all(to).with_context(|| format!("creating {}", to.display()))?;
    for entry in fs::read_dir(from).with_context(|| format!("listing {}", from.display()))? {
        let entry = entry?;
        if !entry.file_type()?.is_file() {
            continue;
        }
        let target = to.join(entry.file_name());
        fs::copy(entry.path(), &target)
            .with_context(|| format!("copying {}", entry.path().display()))?;
        let mode = if entry.file_name() == "rules" || is_script(&entry.file_name()) {
            0o755
        } else {
            0o644
        };
        fs::set_permissions(&target, fs::Permissions::from_mode(mode))
            .with_context(|| format!("chmod {mode:o} {}", target.display()))?;
    }
    Ok(())
}

fn is_script(name: &std::ffi::OsStr) -> bool {
    ["preinst", "postinst", "prerm", "postrm"]
        .iter()
        .any(|script| name == *script)
}

/// The version of the newest entry: `allowlist (VERSION) DIST; urgency=...`.
fn changelog_version(changelog: &str) -> Result<String> {
    let first = changelog.lines().next().unwrap_or_default();
    first
        .split_once('(')
        .and_then(|(_, rest)| rest.split_once(')'))
        .map(|(version, _)| version.to_owned())
        .with_context(|| format!("packaging/debian/changelog starts with `{first}`"))
}

fn read(path: &Path) -> Result<String> {
    fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))
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
