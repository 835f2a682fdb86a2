//! A small tmpfs mounted for one test, to run a file system out of space (or make it
//! read-only) under the daemon. Unmounted on drop.

use std::fs::File;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use nix::mount::{MntFlags, MsFlags, mount, umount2};

#[derive(Debug)]
pub struct Tmpfs {
    path: PathBuf,
}

impl Tmpfs {
    /// Mounts a tmpfs of `size` (e.g. "64k") with mode 0755 on `path`, creating it.
    pub fn mount(path: &Path, size: &str) -> Tmpfs {
        std::fs::create_dir_all(path)
            .unwrap_or_else(|e| panic!("creating {}: {e}", path.display()));
        mount(
            Some("allowlist-e2e-tmpfs"),
            path,
            Some("tmpfs"),
            MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
            Some(format!("size={size},mode=0755").as_str()),
        )
        .unwrap_or_else(|e| panic!("mounting a tmpfs on {}: {e}", path.display()));
        Tmpfs {
            path: path.to_path_buf(),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Remounts it read-only (`true`) or read-write (`false`); root's writes then fail with
    /// EROFS, which permissions alone would not do.
    pub fn set_read_only(&self, read_only: bool) {
        let mut flags = MsFlags::MS_REMOUNT | MsFlags::MS_NOSUID | MsFlags::MS_NODEV;
        flags |= MsFlags::MS_NOEXEC;
        if read_only {
            flags |= MsFlags::MS_RDONLY;
        }
        mount(None::<&str>, &self.path, None::<&str>, flags, None::<&str>).unwrap_or_else(|e| {
            panic!(
                "remounting {} (read-only {read_only}): {e}",
                self.path.display()
            )
        });
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        // MNT_DETACH: a daemon still holding a file there must not keep it mounted.
        if let Err(e) = umount2(&self.path, MntFlags::MNT_DETACH) {
            eprintln!("warning: unmounting {}: {e}", self.path.display());
        }
    }
}

/// Writes zeros to `path` until the file system is full.
pub fn fill(path: &Path) {
    let mut f = File::create(path).unwrap_or_else(|e| panic!("creating {}: {e}", path.display()));
    let chunk = vec![0u8; 4096];
    loop {
        match f.write(&chunk) {
            Ok(0) => break,
            Ok(_) => {}
            Err(e) if e.raw_os_error() == Some(libc::ENOSPC) => break,
            Err(e) => panic!("filling {}: {e}", path.display()),
        }
    }
}
