//! The files that decide who gets in (the config file and its list files) must be the files
//! themselves and writable only by their owner and group: a symlink would be replaced by a
//! copy at the first edit through `allowlistctl` (edits are atomic renames), and a file or
//! directory anyone may write would let any local user open the protected ports.

use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum Untrusted {
    #[error("{what} {path} is a symlink; point at the file itself")]
    Symlink { what: &'static str, path: PathBuf },
    #[error("{what} {path} is writable by others (mode {mode:o}); run `chmod o-w {path}`")]
    WritableByOthers {
        what: &'static str,
        path: PathBuf,
        mode: u32,
    },
    #[error(
        "{what} {path} is in {dir}, which others may write to (mode {mode:o}) without the sticky bit; run `chmod o-w {dir}`"
    )]
    DirWritableByOthers {
        what: &'static str,
        path: PathBuf,
        dir: PathBuf,
        mode: u32,
    },
}

/// Refuses `path` (described as `what`, e.g. "config file") if it is a symlink, or if it or
/// its directory is writable by others. A missing file passes: reading it says so.
pub fn check(path: &Path, what: &'static str) -> Result<(), Untrusted> {
    let Ok(meta) = std::fs::symlink_metadata(path) else {
        return Ok(());
    };
    if meta.file_type().is_symlink() {
        return Err(Untrusted::Symlink {
            what,
            path: path.to_path_buf(),
        });
    }
    if meta.mode() & 0o002 != 0 {
        return Err(Untrusted::WritableByOthers {
            what,
            path: path.to_path_buf(),
            mode: meta.mode() & 0o7777,
        });
    }
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    if let Ok(meta) = std::fs::metadata(dir)
        && meta.mode() & 0o002 != 0
        && meta.mode() & 0o1000 == 0
    {
        return Err(Untrusted::DirWritableByOthers {
            what,
            path: path.to_path_buf(),
            dir: dir.to_path_buf(),
            mode: meta.mode() & 0o7777,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt as _;

    use super::*;

    fn chmod(path: &Path, mode: u32) {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
    }

    #[test]
    fn refuses_symlinks_and_files_or_directories_others_may_write() {
        let dir = tempfile::tempdir().unwrap();
        chmod(dir.path(), 0o755);
        let file = dir.path().join("allowlist.toml");
        std::fs::write(&file, "").unwrap();
        chmod(&file, 0o644);
        check(&file, "config file").unwrap();
        check(&dir.path().join("missing.toml"), "config file").unwrap();

        chmod(&file, 0o666);
        let e = check(&file, "config file").unwrap_err().to_string();
        assert!(e.contains("writable by others (mode 666)"), "{e}");
        assert!(e.contains("chmod o-w"), "{e}");
        chmod(&file, 0o640);

        let link = dir.path().join("link.toml");
        std::os::unix::fs::symlink(&file, &link).unwrap();
        let e = check(&link, "config file").unwrap_err().to_string();
        assert!(e.contains("is a symlink; point at the file itself"), "{e}");

        chmod(dir.path(), 0o777);
        let e = check(&file, "list file").unwrap_err().to_string();
        assert!(e.starts_with("list file "), "{e}");
        assert!(e.contains("others may write to (mode 777)"), "{e}");
        // Sticky, like /tmp: others cannot replace a file they do not own.
        chmod(dir.path(), 0o1777);
        check(&file, "config file").unwrap();
        chmod(dir.path(), 0o755);
    }
}
