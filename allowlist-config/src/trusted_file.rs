//! The files that decide who gets in (the config file, its drop-ins and its list files) must
//! be writable only by their owner and group: a file or directory anyone may write would let
//! any local user open the protected ports. A symlink is accepted only as a chain whose every
//! link, and the file at its end, is root's and writable by root alone, in directories
//! writable by root alone: what a Kubernetes ConfigMap volume mounts (`x.toml -> ..data/x.toml`,
//! `..data -> ..2026_12_06_...`, swapped atomically by the kubelet). Any other symlink is
//! refused: whoever may change one link or its directory may point the chain anywhere.

use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum Untrusted {
    #[error(
        "{what} {path} is a symlink and {link} {why}; point at the file itself, or make every \
         link, the file and their directories root's and writable by root alone"
    )]
    Symlink {
        what: &'static str,
        path: PathBuf,
        /// The link, file or directory of the chain that is not trusted.
        link: PathBuf,
        why: String,
    },
    #[error("{what} {path}: following its symlinks: {error}")]
    Unresolved {
        what: &'static str,
        path: PathBuf,
        error: String,
    },
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

/// Refuses `path` (described as `what`, e.g. "config file") if it or its directory is
/// writable by others, or if it is reached through a symlink that is not root's chain (see
/// the module's description). A missing file passes: reading it says so.
pub fn check(path: &Path, what: &'static str) -> Result<(), Untrusted> {
    let Ok(absolute) = std::path::absolute(path) else {
        return Ok(());
    };
    let mut links = Vec::new();
    let resolved = match resolve(&absolute, &mut links) {
        Ok(resolved) => resolved,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => {
            return Err(Untrusted::Unresolved {
                what,
                path: path.to_path_buf(),
                error: e.to_string(),
            });
        }
    };
    if !links.is_empty() {
        return check_chain(path, what, &links, &resolved);
    }
    let Ok(meta) = std::fs::symlink_metadata(path) else {
        return Ok(());
    };
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

/// Symlinks a chain may hold: the kernel's limit.
const MAX_LINKS: usize = 40;

/// `path` (absolute) with every symlink followed, component by component; each link met is
/// added to `links`.
fn resolve(path: &Path, links: &mut Vec<PathBuf>) -> std::io::Result<PathBuf> {
    use std::path::Component;
    let mut resolved = PathBuf::from("/");
    for component in path.components() {
        match component {
            Component::RootDir | Component::Prefix(_) | Component::CurDir => {}
            Component::ParentDir => {
                resolved.pop();
            }
            Component::Normal(name) => {
                let next = resolved.join(name);
                if !std::fs::symlink_metadata(&next)?.file_type().is_symlink() {
                    resolved = next;
                    continue;
                }
                if links.len() >= MAX_LINKS {
                    return Err(std::io::Error::other("too many levels of symbolic links"));
                }
                links.push(next.clone());
                // Relative targets are relative to the link's directory, `resolved`.
                let target = resolved.join(std::fs::read_link(&next)?);
                resolved = resolve(&target, links)?;
            }
        }
    }
    Ok(resolved)
}

/// Every link of the chain, the file at its end and the directories holding them must be
/// root's and writable by root alone.
fn check_chain(
    path: &Path,
    what: &'static str,
    links: &[PathBuf],
    file: &Path,
) -> Result<(), Untrusted> {
    let refuse = |link: &Path, why: String| Untrusted::Symlink {
        what,
        path: path.to_path_buf(),
        link: link.to_path_buf(),
        why,
    };
    let root_only = |at: &Path, meta: &std::fs::Metadata, kind: &str| {
        if meta.uid() != 0 {
            return Err(refuse(
                at,
                format!("({kind}) belongs to uid {}, not root", meta.uid()),
            ));
        }
        if !meta.file_type().is_symlink() && meta.mode() & 0o022 != 0 {
            let mode = meta.mode() & 0o7777;
            return Err(refuse(
                at,
                format!("({kind}) is writable by group or others (mode {mode:o})"),
            ));
        }
        Ok(())
    };
    let meta = |at: &Path| {
        std::fs::symlink_metadata(at).map_err(|e| refuse(at, format!("cannot be read: {e}")))
    };
    let directory = |at: &Path| at.parent().unwrap_or(Path::new("/")).to_path_buf();
    for link in links {
        root_only(link, &meta(link)?, "a link")?;
        let dir = directory(link);
        root_only(&dir, &meta(&dir)?, "the directory of a link")?;
    }
    let file_meta = meta(file)?;
    if !file_meta.is_file() {
        return Err(refuse(
            file,
            "(its target) is not a regular file".to_owned(),
        ));
    }
    root_only(file, &file_meta, "its target")?;
    let dir = directory(file);
    root_only(&dir, &meta(&dir)?, "the directory of its target")
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

        // A symlink to a file its group may write: refused (a plain file may be).
        let link = dir.path().join("link.toml");
        std::os::unix::fs::symlink(&file, &link).unwrap();
        chmod(&file, 0o660);
        check(&file, "config file").unwrap();
        let e = check(&link, "config file").unwrap_err().to_string();
        assert!(e.contains("is a symlink and "), "{e}");
        assert!(
            e.contains("(its target) is writable by group or others (mode 660)"),
            "{e}"
        );
        assert!(e.contains("point at the file itself"), "{e}");
        chmod(&file, 0o640);

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

#[cfg(test)]
mod chain_tests {
    use std::os::unix::fs::{PermissionsExt as _, symlink};

    use super::*;

    fn chmod(path: &Path, mode: u32) {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
    }

    /// A ConfigMap volume as the kubelet writes it: `team.toml -> ..data/team.toml`,
    /// `..data -> ..2026_12_06_10_00_00.1`, the file in that directory.
    fn config_map() -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        chmod(dir.path(), 0o755);
        let volume = dir.path().join("conf.d");
        let version = volume.join("..2026_12_06_10_00_00.1");
        std::fs::create_dir_all(&version).unwrap();
        chmod(&volume, 0o755);
        chmod(&version, 0o755);
        std::fs::write(version.join("team.toml"), "").unwrap();
        chmod(&version.join("team.toml"), 0o644);
        symlink("..2026_12_06_10_00_00.1", volume.join("..data")).unwrap();
        symlink("..data/team.toml", volume.join("team.toml")).unwrap();
        (dir, volume.join("team.toml"))
    }

    fn running_as_root() -> bool {
        nix::unistd::Uid::effective().is_root()
    }

    #[test]
    fn accepts_a_config_map_chain_that_is_roots_alone() {
        if !running_as_root() {
            // Files made by another user can only be refused (not root's).
            let (_dir, link) = config_map();
            let e = check(&link, "drop-in").unwrap_err().to_string();
            assert!(e.contains("not root"), "{e}");
            return;
        }
        let (_dir, link) = config_map();
        check(&link, "drop-in").unwrap();
        // A chain of links to a link.
        let again = link.with_file_name("again.toml");
        symlink("team.toml", &again).unwrap();
        check(&again, "drop-in").unwrap();
    }

    #[test]
    fn refuses_a_chain_anyone_but_root_could_change() {
        if !running_as_root() {
            return; // needs chown
        }
        let (dir, link) = config_map();
        let volume = link.parent().unwrap().to_path_buf();
        let version = volume.join("..2026_12_06_10_00_00.1");
        let refused = |what: &str| {
            let e = check(&link, "drop-in").unwrap_err().to_string();
            assert!(e.starts_with(&format!("drop-in {} is a symlink and ", link.display())));
            assert!(e.contains(what), "{what}: {e}");
        };
        // The target writable by its group.
        chmod(&version.join("team.toml"), 0o664);
        refused("(its target) is writable by group or others (mode 664)");
        chmod(&version.join("team.toml"), 0o644);
        // The target's directory writable by others.
        chmod(&version, 0o757);
        refused("(the directory of its target) is writable by group or others (mode 757)");
        chmod(&version, 0o755);
        // A link's directory writable by its group: anyone in it could swap `..data`.
        chmod(&volume, 0o775);
        refused("(the directory of a link) is writable by group or others (mode 775)");
        chmod(&volume, 0o755);
        // A link that is not root's.
        let nobody = nix::unistd::Uid::from_raw(65534);
        nix::unistd::fchownat(
            nix::fcntl::AT_FDCWD,
            &volume.join("..data"),
            Some(nobody),
            None,
            nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW,
        )
        .unwrap();
        refused("(a link) belongs to uid 65534, not root");
        // A link to a directory, not a file.
        let to_dir = dir.path().join("dir.toml");
        symlink(&version, &to_dir).unwrap();
        let e = check(&to_dir, "drop-in").unwrap_err().to_string();
        assert!(e.contains("(its target) is not a regular file"), "{e}");
        // A loop.
        let looped = dir.path().join("loop.toml");
        symlink("loop.toml", &looped).unwrap();
        let e = check(&looped, "drop-in").unwrap_err().to_string();
        assert!(e.contains("too many levels of symbolic links"), "{e}");
        // Still fine once the link is root's again.
        nix::unistd::fchownat(
            nix::fcntl::AT_FDCWD,
            &volume.join("..data"),
            Some(nix::unistd::Uid::from_raw(0)),
            None,
            nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW,
        )
        .unwrap();
        check(&link, "drop-in").unwrap();
    }
}
