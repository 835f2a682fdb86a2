//! `watch = true`: the daemon reloads by itself when a file of the config set changes on
//! disk (the config file, a drop-in, a list file, or a directory holding them: a new drop-in,
//! a ConfigMap volume's `..data` swapped by rename), once the writes have been quiet for
//! [`QUIET`], through the same path as SIGHUP (`reload.rs`), audited `via: watch`.
//!
//! inotify (through the `notify` crate) watches the directories, not the files: editors and
//! `allowlistctl` replace files by rename, and a ConfigMap update replaces a symlink. An event
//! only says "look": the daemon reloads when what it finds on disk differs from the last state
//! it saw (its own writes, the audit log beside the config, or a refused file that nobody
//! touched since, are not reloaded again).

use std::collections::BTreeSet;
use std::hash::{Hash as _, Hasher as _};
use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use notify::event::{AccessKind, AccessMode, EventKind};
use notify::{RecursiveMode, Watcher as _};
use tokio::sync::mpsc;
use tracing::{error, info, warn};

use allowlist_config::Config;
use allowlist_control::audit::{Actor, Via};

use super::Daemon;
use crate::notify as sd_notify;

/// How long the files must stay untouched before the reload: a burst of writes (a
/// config-management run, `cp -r` of a directory) makes one reload.
pub(super) const QUIET: Duration = Duration::from_secs(1);
/// The longest a reload waits for the writes to stop.
const MOST: Duration = Duration::from_secs(5);

pub(super) struct FileWatch {
    watcher: notify::RecommendedWatcher,
    dirs: BTreeSet<PathBuf>,
    /// When the quiet time after the last event ends, and when the burst's first event came.
    due: Option<(tokio::time::Instant, tokio::time::Instant)>,
    /// What the files looked like when last applied or tried (see [`fingerprint`]).
    seen: u64,
}

impl FileWatch {
    /// Watches the directories of `config`'s files; events are sent to `events`.
    fn new(config: &Config, events: mpsc::Sender<()>) -> notify::Result<FileWatch> {
        let watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
            let look = match event {
                // The daemon's own reads open files; only writes and renames count.
                Ok(event) => match event.kind {
                    EventKind::Access(AccessKind::Close(AccessMode::Write)) => true,
                    EventKind::Access(_) => false,
                    _ => event.paths.iter().any(|p| relevant(p)),
                },
                // Events lost (the queue overflowed): look anyway.
                Err(_) => true,
            };
            if look {
                // A full channel already says "look".
                let _ = events.try_send(());
            }
        })?;
        let mut watch = FileWatch {
            watcher,
            dirs: BTreeSet::new(),
            due: None,
            seen: fingerprint(config),
        };
        watch.watch_dirs(config);
        Ok(watch)
    }

    /// Watches the directories `config` needs, and no others.
    fn watch_dirs(&mut self, config: &Config) {
        let wanted = directories(config);
        for gone in self.dirs.difference(&wanted) {
            let _ = self.watcher.unwatch(gone);
        }
        let mut watched = BTreeSet::new();
        for dir in &wanted {
            if self.dirs.contains(dir) {
                watched.insert(dir.clone());
                continue;
            }
            match self.watcher.watch(dir, RecursiveMode::NonRecursive) {
                Ok(()) => {
                    watched.insert(dir.clone());
                }
                Err(e) => warn!("watch: not watching {}: {e}", dir.display()),
            }
        }
        self.dirs = watched;
    }
}

/// Whether an event about `path` may be about the config set: not a hidden file (an
/// editor's swap file, a temporary file before its rename), except a ConfigMap volume's
/// `..data` and `..2026_...` entries.
fn relevant(path: &Path) -> bool {
    let name = path.file_name().map(|n| n.to_string_lossy());
    name.is_none_or(|n| !n.starts_with('.') || n.starts_with(".."))
}

/// The directories holding the files of `config`'s set, and those its `include` patterns
/// look in (where a new drop-in would appear).
fn directories(config: &Config) -> BTreeSet<PathBuf> {
    let parent = |p: &Path| p.parent().map(Path::to_path_buf);
    let mut dirs: BTreeSet<PathBuf> = std::iter::once(&config.path)
        .chain(config.drop_ins.iter().map(|d| &d.path))
        .chain(&config.list_files)
        .filter_map(|p| parent(p))
        .collect();
    for pattern in &config.include {
        // The part of the pattern before its first wildcard.
        let fixed: PathBuf = pattern
            .components()
            .take_while(|c| !c.as_os_str().to_string_lossy().contains(['*', '?', '[']))
            .collect();
        let dir = if fixed == *pattern {
            parent(&fixed)
        } else {
            Some(fixed)
        };
        dirs.extend(dir);
    }
    dirs.retain(|d| d.is_dir());
    dirs
}

/// What the files of the set hold now: the text of the config file and of every drop-in the
/// patterns match, and the identity, size and time of every list file.
fn fingerprint(config: &Config) -> u64 {
    let mut hash = std::collections::hash_map::DefaultHasher::new();
    let files = std::iter::once(config.path.clone()).chain(config.drop_ins_on_disk());
    for file in files {
        file.hash(&mut hash);
        Config::read_text(&file).ok().hash(&mut hash);
    }
    for file in &config.list_files {
        file.hash(&mut hash);
        let meta = std::fs::metadata(file).ok();
        meta.map(|m| (m.ino(), m.len(), m.mtime(), m.mtime_nsec()))
            .hash(&mut hash);
    }
    hash.finish()
}

impl Daemon {
    /// Starts, follows or stops watching as `watch` says, after start and after every change
    /// of the enforced config: the directories follow the set, and the files as they are now
    /// are the ones applied.
    pub(super) fn follow_files(&mut self) {
        match (&mut self.file_watch, self.config.watch) {
            (Some(watch), true) => {
                watch.watch_dirs(&self.config);
                watch.seen = fingerprint(&self.config);
            }
            (Some(_), false) => {
                self.file_watch = None;
                info!("watch = false: no longer watching the config's files");
            }
            (None, true) => match FileWatch::new(&self.config, self.watch_events.clone()) {
                Ok(watch) => {
                    info!(
                        "watching the config's files for changes (in {})",
                        allowlist_config::words::list(watch.dirs.iter().map(|d| d.display()))
                    );
                    self.file_watch = Some(watch);
                }
                Err(e) => error!("watch = true, but watching the config's files failed: {e}"),
            },
            (None, false) => {}
        }
    }

    /// An event: reload once the files have been quiet for [`QUIET`].
    pub(super) fn files_touched(&mut self) {
        let Some(watch) = &mut self.file_watch else {
            return;
        };
        let now = tokio::time::Instant::now();
        let first = watch.due.map_or(now, |(_, first)| first);
        watch.due = Some(((now + QUIET).min(first + MOST), first));
    }

    /// When the pending reload is due.
    pub(super) fn watch_due(&self) -> Option<tokio::time::Instant> {
        self.file_watch.as_ref()?.due.map(|(due, _)| due)
    }

    /// The writes are over: reload if the files differ from what was last applied or tried.
    pub(super) fn reload_on_watch(&mut self) {
        let Some(watch) = &mut self.file_watch else {
            return;
        };
        watch.due = None;
        // A directory `include` looks in may have appeared (conf.d made, then filled).
        watch.watch_dirs(&self.config);
        let now = fingerprint(&self.config);
        if now == watch.seen {
            return;
        }
        // Tried once: refused files stay refused until they change again.
        watch.seen = now;
        sd_notify::reloading();
        match self.reload(Actor::daemon(Via::Watch)) {
            Ok((summary, _)) => info!("files changed on disk: reload applied: {summary}"),
            Err(e) => error!(
                "files changed on disk: reload failed, still enforcing the previous config: {e}"
            ),
        }
        sd_notify::ready(&self.config, self.revision, self.emergency.as_ref());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hidden_files_are_not_the_sets_but_config_map_entries_are() {
        assert!(relevant(Path::new("/etc/allowlist/conf.d/team.toml")));
        assert!(relevant(Path::new("/etc/allowlist/conf.d/..data")));
        assert!(relevant(Path::new(
            "/etc/allowlist/conf.d/..2026_12_06_10_00_00.1"
        )));
        assert!(!relevant(Path::new("/etc/allowlist/.team.toml.swp")));
    }

    #[test]
    fn watches_the_directories_of_the_set_and_of_the_patterns() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("conf.d")).unwrap();
        std::fs::create_dir_all(dir.path().join("lists")).unwrap();
        let path = dir.path().join("allowlist.toml");
        let mut config = Config::defaults(&path);
        config.include = vec![
            dir.path().join("conf.d/*.toml"),
            dir.path().join("missing/*.toml"),
            dir.path().join("one.toml"),
        ];
        config.list_files = vec![dir.path().join("lists/a.list")];
        let dirs: Vec<PathBuf> = directories(&config).into_iter().collect();
        assert_eq!(
            dirs,
            [
                dir.path().to_path_buf(),
                dir.path().join("conf.d"),
                dir.path().join("lists")
            ]
        );
    }
}
