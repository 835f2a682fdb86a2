//! `cargo xtask install`: the binaries, the systemd unit, the default config (only where none
//! exists: an admin's config is never overwritten), man pages, shell completions and the
//! Cockpit page, under a prefix and optionally a staging directory (`--destdir`, which
//! `cargo xtask package` uses).

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

use crate::{build, cockpit, exec};

/// The unit as shipped names the Debian package's paths; an install elsewhere rewrites them.
const UNIT_SBIN: &str = "/usr/sbin/";
const UNIT_SYSCONF: &str = "/etc/allowlist";

/// Where things go.
pub struct Layout {
    /// Where the installed files will be used from, e.g. /usr/local or /usr.
    pub prefix: PathBuf,
    /// Where the config directory `allowlist/` goes, normally /etc.
    pub sysconfdir: PathBuf,
    /// Prepended to every path written (a staging tree), not to the paths in the unit.
    pub destdir: Option<PathBuf>,
}

/// How to install, beyond where.
#[derive(Default)]
pub struct Options {
    /// Strip the binaries (for a package).
    pub strip: bool,
    /// Compress the man pages with gzip (Debian's layout).
    pub gzip_man: bool,
}

impl Layout {
    /// `path` (absolute, as used at run time) under the staging directory, if any.
    fn staged(&self, path: &Path) -> PathBuf {
        match &self.destdir {
            Some(dest) => dest.join(path.strip_prefix("/").unwrap_or(path)),
            None => path.to_path_buf(),
        }
    }

    fn prefixed(&self, relative: &str) -> PathBuf {
        self.prefix.join(relative)
    }

    /// zsh's directory for completions that come with the system, or a local one.
    fn zsh_dir(&self) -> &'static str {
        if self.prefix == Path::new("/usr") {
            "share/zsh/vendor-completions"
        } else {
            "share/zsh/site-functions"
        }
    }
}

/// `cargo xtask install`: builds release binaries unless `bin_dir` names built ones.
pub fn install(root: &Path, layout: &Layout, bin_dir: Option<&Path>) -> Result<()> {
    for (what, path) in [
        ("--prefix", &layout.prefix),
        ("--sysconfdir", &layout.sysconfdir),
    ] {
        if !path.is_absolute() {
            bail!("{what} must be an absolute path, not {}", path.display());
        }
    }
    let bin_dir = match bin_dir {
        Some(dir) => dir.to_path_buf(),
        None => build::build(root, true)?.bin_dir,
    };
    stage(root, &bin_dir, layout, &Options::default())?;
    let live = layout.destdir.is_none();
    if live && Path::new("/run/systemd/system").is_dir() {
        exec::run(Command::new("systemctl").arg("daemon-reload"))?;
    }
    let config = layout.sysconfdir.join("allowlist/allowlist.toml");
    eprintln!(
        "xtask: installed. The service is neither enabled nor started, and {} enforces nothing \
         until you set it up: see \"Installing as a service\" in README.md",
        config.display()
    );
    Ok(())
}

/// Copies everything into place; the package and the install share this.
pub fn stage(root: &Path, bin_dir: &Path, layout: &Layout, options: &Options) -> Result<()> {
    for (name, dir) in [("allowlistd", "sbin"), ("allowlistctl", "bin")] {
        let from = bin_dir.join(name);
        if !from.is_file() {
            bail!(
                "{} does not exist: run `cargo xtask build --release` first, or pass --bin-dir",
                from.display()
            );
        }
        let to = layout.staged(&layout.prefixed(dir).join(name));
        copy(&from, &to, 0o755)?;
        if options.strip {
            exec::run(Command::new("strip").arg("--strip-unneeded").arg(&to))?;
        }
    }

    let unit = fs::read_to_string(root.join("packaging/systemd/allowlistd.service"))
        .context("reading packaging/systemd/allowlistd.service")?;
    let unit = rewrite_unit(&unit, layout)?;
    let unit_path = layout.staged(&layout.prefixed("lib/systemd/system/allowlistd.service"));
    write(&unit_path, unit.as_bytes(), 0o644)?;

    install_config(root, layout)?;
    install_docs(root, bin_dir, layout, options)?;
    install_cockpit_page(root, layout)
}

/// The built page, where Cockpit looks for its packages (`share/cockpit/NAME`).
fn install_cockpit_page(root: &Path, layout: &Layout) -> Result<()> {
    let dist = cockpit::build(root)?;
    let to = layout.staged(&layout.prefixed("share/cockpit/allowlist"));
    if to.is_dir() {
        // What an older build left (files since renamed) must not linger.
        fs::remove_dir_all(&to).with_context(|| format!("removing {}", to.display()))?;
    }
    for entry in fs::read_dir(&dist).with_context(|| format!("listing {}", dist.display()))? {
        let entry = entry?;
        copy(&entry.path(), &to.join(entry.file_name()), 0o644)?;
    }
    Ok(())
}

/// The unit with its paths moved to `layout`'s.
fn rewrite_unit(unit: &str, layout: &Layout) -> Result<String> {
    if !unit.contains(UNIT_SBIN) || !unit.contains(UNIT_SYSCONF) {
        bail!(
            "the unit no longer names {UNIT_SBIN} and {UNIT_SYSCONF}; update xtask/src/install.rs"
        );
    }
    let sbin = format!("{}/", layout.prefixed("sbin").display());
    let sysconf = layout.sysconfdir.join("allowlist");
    Ok(unit
        .replace(UNIT_SBIN, &sbin)
        .replace(UNIT_SYSCONF, &sysconf.to_string_lossy()))
}

/// The default config, inactive, unless a config is already there.
fn install_config(root: &Path, layout: &Layout) -> Result<()> {
    let dir = layout.staged(&layout.sysconfdir.join("allowlist"));
    if !dir.is_dir() {
        fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        // allowlistctl's changes go through temporary files here; only root needs to see them.
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o750))
            .with_context(|| format!("chmod 0750 {}", dir.display()))?;
    }
    let config = dir.join("allowlist.toml");
    if config.exists() {
        eprintln!(
            "xtask: keeping the existing {} (never overwritten)",
            config.display()
        );
        return Ok(());
    }
    copy(&root.join("packaging/allowlist.toml"), &config, 0o640)
}

/// Man pages and completions from `allowlist-docs`, plus the README.
fn install_docs(root: &Path, bin_dir: &Path, layout: &Layout, options: &Options) -> Result<()> {
    let generator = bin_dir.join("allowlist-docs");
    if !generator.is_file() {
        bail!(
            "{} does not exist: it is built with the other binaries (`cargo xtask build`)",
            generator.display()
        );
    }
    // Private to this run: an install and a package may run at the same time.
    let scratch = root
        .join("target")
        .join(format!("xtask-docs-{}", std::process::id()));
    let _ = fs::remove_dir_all(&scratch);
    exec::run(Command::new(&generator).arg(&scratch))?;
    let result = (|| {
        for (section, page) in [
            ("man8", "allowlistd.8"),
            ("man8", "allowlistctl.8"),
            ("man5", "allowlist.toml.5"),
        ] {
            let from = scratch.join("man").join(section).join(page);
            let to = layout.staged(&layout.prefixed("share/man").join(section).join(page));
            copy(&from, &to, 0o644)?;
            if options.gzip_man {
                // -n: no name or time stamp in the file, so builds are reproducible.
                exec::run(Command::new("gzip").args(["-9nf"]).arg(&to))?;
            }
        }
        for name in ["allowlistd", "allowlistctl"] {
            let zsh = format!("{}/_{name}", layout.zsh_dir());
            for (from, to) in [
                (
                    format!("bash/{name}"),
                    format!("share/bash-completion/completions/{name}"),
                ),
                (format!("zsh/_{name}"), zsh),
                (
                    format!("fish/{name}.fish"),
                    format!("share/fish/vendor_completions.d/{name}.fish"),
                ),
            ] {
                let to = layout.staged(&layout.prefixed(&to));
                copy(&scratch.join("completions").join(from), &to, 0o644)?;
            }
        }
        let readme = layout.staged(&layout.prefixed("share/doc/allowlist/README.md"));
        copy(&root.join("README.md"), &readme, 0o644)
    })();
    let _ = fs::remove_dir_all(&scratch);
    result
}

fn copy(from: &Path, to: &Path, mode: u32) -> Result<()> {
    let bytes = fs::read(from).with_context(|| format!("reading {}", from.display()))?;
    eprintln!("xtask: install {} -> {}", from.display(), to.display());
    write(to, &bytes, mode)
}

/// Writes through a temporary file and a rename, so that replacing a running binary works
/// (the running process keeps the old file).
fn write(to: &Path, bytes: &[u8], mode: u32) -> Result<()> {
    let dir = to
        .parent()
        .context("installing to a path without a directory")?;
    fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let name = to.file_name().unwrap_or_default().to_string_lossy();
    let tmp = dir.join(format!(".{name}.xtask-{}", std::process::id()));
    let result = fs::write(&tmp, bytes)
        .and_then(|()| fs::set_permissions(&tmp, fs::Permissions::from_mode(mode)))
        .and_then(|()| fs::rename(&tmp, to));
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result.with_context(|| format!("writing {}", to.display()))
}
