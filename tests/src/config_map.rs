//! Kubernetes ConfigMap volumes as the kubelet writes them, and how soon a change written to
//! one is in force (for the tests of `watch = true`: the daemon's, and the container's).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::netns::{Netns, PROTECTED, to};
use crate::tcp::connect;

/// How soon a change on disk must be enforced.
pub const IN_FORCE_WITHIN: Duration = Duration::from_secs(2);

/// Waits until connecting from `src` succeeds (`allowed`) or times out (not), trying every
/// quarter second; returns how long it took from `since`, panicking past [`IN_FORCE_WITHIN`].
#[track_caller]
pub fn in_force(client: &Netns, src: std::net::IpAddr, allowed: bool, since: Instant, why: &str) {
    let probe = Duration::from_millis(250);
    loop {
        let outcome = connect(client, src, to(src, PROTECTED), probe);
        if outcome.is_connected() == allowed && (allowed || outcome.is_timed_out()) {
            let took = since.elapsed();
            assert!(took <= IN_FORCE_WITHIN, "{why}: in force after {took:?}");
            eprintln!("{why}: in force after {took:?}");
            return;
        }
        assert!(
            since.elapsed() <= IN_FORCE_WITHIN,
            "{why}: not in force within {IN_FORCE_WITHIN:?} ({src}: {outcome})"
        );
        if outcome.is_connected() {
            std::thread::sleep(probe);
        }
    }
}

/// A ConfigMap volume at `dir`, as the kubelet writes one: each version in a directory of
/// its own, `..data` pointing at the current one (replaced by a rename), and each key a
/// symlink through `..data`.
pub struct ConfigMap {
    dir: PathBuf,
    versions: u32,
}

impl ConfigMap {
    pub fn new(dir: &Path) -> ConfigMap {
        ConfigMap {
            dir: dir.to_path_buf(),
            versions: 0,
        }
    }

    /// Publishes `files` (name, text) as the new version, in one atomic swap.
    pub fn publish(&mut self, files: &[(&str, &str)]) {
        self.versions += 1;
        let version = format!("..2026_12_06_10_00_00.{}", self.versions);
        let version_dir = self.dir.join(&version);
        std::fs::create_dir(&version_dir).unwrap();
        for (name, text) in files {
            std::fs::write(version_dir.join(name), text).unwrap();
        }
        let tmp = self.dir.join("..data_tmp");
        std::os::unix::fs::symlink(&version, &tmp).unwrap();
        std::fs::rename(&tmp, self.dir.join("..data")).unwrap();
        for (name, _) in files {
            let link = self.dir.join(name);
            if std::fs::symlink_metadata(&link).is_err() {
                std::os::unix::fs::symlink(Path::new("..data").join(name), &link).unwrap();
            }
        }
    }
}
