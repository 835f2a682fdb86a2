//! Debian's own kernel packages, fetched with apt through a private sources list under
//! `target/vm/apt/<suite>/` (its own lists, cache and lock), so the machine's apt sources and
//! state are never touched. The package name is looked up on every run (`linux-image-amd64`'s
//! dependency in that suite), because Debian moves it with every kernel update.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};
use clap::ValueEnum;

use crate::exec::{query, run};

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Kernel {
    /// Debian 11 (bullseye)
    #[value(name = "5.10")]
    V5_10,
    /// Debian 12 (bookworm), the README's target
    #[value(name = "6.1")]
    V6_1,
    /// Debian 13 (trixie)
    #[value(name = "6.12")]
    V6_12,
}

impl Kernel {
    pub const ALL: [Kernel; 3] = [Kernel::V5_10, Kernel::V6_1, Kernel::V6_12];

    pub fn name(self) -> &'static str {
        match self {
            Kernel::V5_10 => "5.10",
            Kernel::V6_1 => "6.1",
            Kernel::V6_12 => "6.12",
        }
    }

    pub fn debian(self) -> &'static str {
        match self {
            Kernel::V5_10 => "Debian 11",
            Kernel::V6_1 => "Debian 12",
            Kernel::V6_12 => "Debian 13",
        }
    }

    fn suite(self) -> &'static str {
        match self {
            Kernel::V5_10 => "bullseye",
            Kernel::V6_1 => "bookworm",
            Kernel::V6_12 => "trixie",
        }
    }
}

/// An unpacked kernel package: `boot/vmlinuz-<release>` and `lib/modules/<release>/`.
pub struct Unpacked {
    /// The package, e.g. linux-image-6.1.0-57-amd64.
    pub package: String,
    pub vmlinuz: PathBuf,
}

/// Looks up the suite's current kernel package, downloads and unpacks it unless that exact
/// package is already unpacked.
pub fn fetch(root: &Path, kernel: Kernel) -> Result<Unpacked> {
    let dir = root.join("target/vm/apt").join(kernel.suite());
    let apt = PrivateApt::create(&dir, kernel.suite())?;
    run(apt.command("apt-get").args(["update", "-q"]))?;
    let package = apt.current_kernel()?;

    let unpacked = dir.join(&package);
    if let Some(vmlinuz) = find_vmlinuz(&unpacked)? {
        eprintln!(
            "xtask: {package} already unpacked in {}",
            unpacked.display()
        );
        return Ok(Unpacked { package, vmlinuz });
    }
    let debs = dir.join("debs");
    fs::create_dir_all(&debs)?;
    run(apt
        .command("apt-get")
        .current_dir(&debs)
        .args(["download", "-q", &package]))?;
    let deb = fs::read_dir(&debs)?
        .filter_map(|entry| entry.ok().map(|entry| entry.path()))
        .find(|path| {
            path.file_name()
                .and_then(|name| name.to_str())
                .is_some_and(|name| {
                    name.starts_with(&format!("{package}_")) && name.ends_with(".deb")
                })
        })
        .with_context(|| {
            format!(
                "apt-get download left no {package}_*.deb in {}",
                debs.display()
            )
        })?;
    // Unpacked beside, then renamed: an interrupted unpack is never taken for a finished one.
    let partial = dir.join(format!("{package}.partial"));
    if partial.exists() {
        fs::remove_dir_all(&partial)?;
    }
    run(Command::new("dpkg-deb").arg("-x").arg(&deb).arg(&partial))?;
    fs::rename(&partial, &unpacked)?;
    fs::remove_file(&deb)?;
    let vmlinuz =
        find_vmlinuz(&unpacked)?.with_context(|| format!("{package} holds no boot/vmlinuz-*"))?;
    Ok(Unpacked { package, vmlinuz })
}

fn find_vmlinuz(unpacked: &Path) -> Result<Option<PathBuf>> {
    let boot = unpacked.join("boot");
    if !boot.is_dir() {
        return Ok(None);
    }
    for entry in fs::read_dir(&boot)? {
        let path = entry?.path();
        if path
            .file_name()
            .and_then(|name| name.to_str())
            .is_some_and(|name| name.starts_with("vmlinuz-"))
        {
            return Ok(Some(path));
        }
    }
    Ok(None)
}

/// apt pointed at a sources list, lists and cache of its own.
struct PrivateApt {
    options: Vec<String>,
}

impl PrivateApt {
    fn create(dir: &Path, suite: &str) -> Result<PrivateApt> {
        let lists = dir.join("lists");
        let cache = dir.join("cache");
        fs::create_dir_all(lists.join("partial"))?;
        fs::create_dir_all(cache.join("archives/partial"))?;
        let sources = dir.join("sources.list");
        // Kernel updates reach bookworm and older through the security archive first.
        let keyring = "signed-by=/usr/share/keyrings/debian-archive-keyring.gpg";
        fs::write(
            &sources,
            format!(
                "deb [{keyring}] http://deb.debian.org/debian {suite} main\n\
                 deb [{keyring}] http://deb.debian.org/debian-security {suite}-security main\n"
            ),
        )
        .with_context(|| format!("writing {}", sources.display()))?;
        let option = |name: &str, value: &Path| format!("{name}={}", value.display());
        Ok(PrivateApt {
            options: [
                option("Dir::Etc::sourcelist", &sources),
                "Dir::Etc::sourceparts=-".to_owned(),
                option("Dir::State::Lists", &lists),
                option("Dir::Cache", &cache),
                // The download goes into target/, which the _apt user may not be able to write.
                "APT::Sandbox::User=root".to_owned(),
            ]
            .into_iter()
            .flat_map(|option| ["-o".to_owned(), option])
            .collect(),
        })
    }

    fn command(&self, program: &str) -> Command {
        let mut cmd = Command::new(program);
        cmd.env("DEBIAN_FRONTEND", "noninteractive")
            .args(&self.options);
        cmd
    }

    /// The package `linux-image-amd64` depends on in this suite.
    fn current_kernel(&self) -> Result<String> {
        let output = query(
            self.command("apt-cache")
                .args(["depends", "linux-image-amd64"]),
        )?;
        if !output.status.success() {
            bail!(
                "apt-cache depends linux-image-amd64 failed: {}",
                String::from_utf8_lossy(&output.stderr).trim()
            );
        }
        String::from_utf8_lossy(&output.stdout)
            .lines()
            .filter_map(|line| line.trim().strip_prefix("Depends: "))
            .find(|name| name.starts_with("linux-image-"))
            .map(str::to_owned)
            .context("linux-image-amd64 depends on no linux-image-* package")
    }
}
