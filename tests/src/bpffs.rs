//! A test directory with a private bpffs mounted in it.
//!
//! The bpffs is mounted on the host, outside /sys, before any daemon starts, so a daemon
//! started in a network namespace (which shares the host's mount namespace) sees it, and pins
//! made there outlive the daemon and can be adopted by the next one. Unmounting it on drop
//! releases whatever pins were left, which detaches a program a test left attached.

use std::path::{Path, PathBuf};

use nix::mount::{MntFlags, MsFlags, mount, umount2};

/// Files a kernel built with `CONFIG_BPF_PRELOAD` puts at the root of every new bpffs
/// (iterators, not anybody's pins).
pub const KERNEL_PRELOADED: [&str; 2] = ["maps.debug", "progs.debug"];

/// A temporary directory holding `bpffs/` (a bpffs mount) and `state/`; config files, the
/// control socket and the audit log of a test go here too. Unmounted and removed on drop.
#[derive(Debug)]
pub struct TestDir {
    dir: tempfile::TempDir,
    bpffs: PathBuf,
}

impl TestDir {
    /// Creates the directory and mounts the bpffs; panics with the reason if it cannot.
    #[expect(
        clippy::new_without_default,
        reason = "creates kernel objects; a `Default` would hide that"
    )]
    pub fn new() -> TestDir {
        let dir = tempfile::Builder::new()
            .prefix("allowlist-e2e-")
            .tempdir()
            .expect("creating a temporary test directory");
        let bpffs = dir.path().join("bpffs");
        std::fs::create_dir(&bpffs).unwrap_or_else(|e| panic!("creating {}: {e}", bpffs.display()));
        std::fs::create_dir(dir.path().join("state")).expect("creating the state directory");
        mount(
            Some("bpf"),
            &bpffs,
            Some("bpf"),
            MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
            None::<&str>,
        )
        .unwrap_or_else(|e| panic!("mounting a bpffs on {}: {e}", bpffs.display()));
        TestDir { dir, bpffs }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// `<dir>/NAME`.
    pub fn join(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// The mount point of the private bpffs.
    pub fn bpffs(&self) -> &Path {
        &self.bpffs
    }

    /// Where a daemon of this test pins: `<dir>/bpffs/allowlist`.
    pub fn pin_dir(&self) -> PathBuf {
        self.bpffs.join("allowlist")
    }

    /// Everything under the bpffs (pins and directories), as paths relative to the mount,
    /// sorted, except the files the kernel puts in every new bpffs ([`KERNEL_PRELOADED`]).
    /// Empty once a daemon has detached and removed its pins.
    pub fn bpffs_entries(&self) -> Vec<PathBuf> {
        let mut entries = list_tree(&self.bpffs)
            .unwrap_or_else(|e| panic!("listing {}: {e}", self.bpffs.display()));
        entries.retain(|p| !KERNEL_PRELOADED.iter().any(|k| p == Path::new(k)));
        entries
    }
}

impl Drop for TestDir {
    fn drop(&mut self) {
        // MNT_DETACH: a daemon still holding a file there must not keep the mount alive.
        if let Err(e) = umount2(&self.bpffs, MntFlags::MNT_DETACH) {
            eprintln!("warning: unmounting {}: {e}", self.bpffs.display());
        }
        // The TempDir field removes the directory after this.
    }
}

/// Every entry under `root`, recursively, relative to `root` and sorted.
pub fn list_tree(root: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir)? {
            let entry = entry?;
            let path = entry.path();
            if entry.file_type()?.is_dir() {
                stack.push(path.clone());
            }
            out.push(path.strip_prefix(root).unwrap_or(&path).to_path_buf());
        }
    }
    out.sort();
    Ok(out)
}
