//! The daemon's pin directory: on a BPF filesystem (mounted at /sys/fs/bpf when missing),
//! locked so that two daemons never share one, and removed whole on a deliberate stop.

use std::fs::File;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use nix::fcntl::{Flock, FlockArg};
use nix::mount::{MsFlags, mount};
use nix::sys::statfs::{BPF_FS_MAGIC, statfs};
use tracing::info;

const SYS_FS_BPF: &str = "/sys/fs/bpf";

/// Holds the lock on the pin directory for the daemon's lifetime.
pub struct PinDir {
    path: PathBuf,
    _lock: Flock<File>,
}

fn on_bpffs(path: &Path) -> Result<bool> {
    Ok(statfs(path)
        .with_context(|| format!("statfs {}", path.display()))?
        .filesystem_type()
        == BPF_FS_MAGIC)
}

impl PinDir {
    pub fn open(path: &Path) -> Result<PinDir> {
        let existing = path
            .ancestors()
            .find(|p| p.exists())
            .context("no existing ancestor of bpffs_dir")?;
        if !on_bpffs(existing)? {
            if path.starts_with(SYS_FS_BPF) && !on_bpffs(Path::new(SYS_FS_BPF))? {
                info!("mounting a BPF filesystem at {SYS_FS_BPF} (it was missing)");
                mount(
                    Some("bpf"),
                    SYS_FS_BPF,
                    Some("bpf"),
                    MsFlags::empty(),
                    None::<&str>,
                )
                .with_context(|| format!("mounting bpffs at {SYS_FS_BPF}"))?;
            } else {
                bail!(
                    "bpffs_dir {} is not on a BPF filesystem; mount one (`mount -t bpf bpf DIR`) \
                     or choose a directory under {SYS_FS_BPF}",
                    path.display()
                );
            }
        }
        std::fs::create_dir_all(path).with_context(|| format!("creating {}", path.display()))?;
        let dir = File::open(path).with_context(|| format!("opening {}", path.display()))?;
        let lock = Flock::lock(dir, FlockArg::LockExclusiveNonblock).map_err(|(_, e)| {
            anyhow::anyhow!(
                "another allowlistd is using bpffs_dir {} ({e}); give each daemon its own",
                path.display()
            )
        })?;
        Ok(PinDir {
            path: path.to_path_buf(),
            _lock: lock,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Removes every pin and the directory itself. Links must be detached first.
    pub fn remove(self) -> Result<()> {
        std::fs::remove_dir_all(&self.path)
            .with_context(|| format!("removing pins under {}", self.path.display()))
    }
}
