//! The files of the config set (the config file and the drop-ins its `include` matches) as
//! the daemon knows them: which changed on disk behind its back, and edits that touch one or
//! several of them (a change through allowlistctl goes to the file holding the entry; timed
//! entries that ended are taken out of every file holding one).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use allowlist_config::edit::{ConfigDoc, write_atomic};
use allowlist_config::{Config, ConfigError, MAX_PROBLEMS};

use super::Daemon;

/// New texts for files of the set, by path.
pub(super) type Edits = BTreeMap<PathBuf, String>;

impl Daemon {
    /// The text of `file` of the set as the daemon last read or wrote it.
    pub(super) fn known_text(&self, file: &Path) -> Option<&str> {
        if file == self.config.path {
            return Some(&self.config_text);
        }
        self.config.drop_in(file).map(|d| d.text.as_str())
    }

    /// The document of `file` of the set, to edit: with the edits made so far, else as known.
    pub(super) fn doc_of(&self, file: &Path, edits: &Edits) -> Result<ConfigDoc, String> {
        let text = match edits.get(file) {
            Some(text) => text.as_str(),
            None => self
                .known_text(file)
                .ok_or_else(|| format!("{} is not a file of the config set", file.display()))?,
        };
        ConfigDoc::parse(text).map_err(|e| format!("{}: {e}", file.display()))
    }

    /// The files of the set that are not what the daemon knows: edited or removed, and the
    /// drop-ins `include` matches now that it did not read.
    pub(super) fn changed_on_disk(&self) -> Vec<PathBuf> {
        let files =
            std::iter::once(&self.config.path).chain(self.config.drop_ins.iter().map(|d| &d.path));
        let mut changed: Vec<PathBuf> = files
            .filter(|file| Config::read_text(file).ok().as_deref() != self.known_text(file))
            .cloned()
            .collect();
        changed.extend(
            self.config
                .drop_ins_on_disk()
                .into_iter()
                .filter(|file| self.config.drop_in(file).is_none()),
        );
        changed
    }

    /// Refuses to edit files that changed on disk: the edit would overwrite what the admin
    /// wrote, or apply rules the daemon never checked.
    pub(super) fn refuse_if_changed_on_disk(&self) -> Result<(), String> {
        let changed = self.changed_on_disk();
        if changed.is_empty() {
            return Ok(());
        }
        Err(format!(
            "config changed on disk; run `allowlistctl reload` first (or `reload --dry-run` to \
             see how): {}",
            names(&changed)
        ))
    }

    /// The config with `edits` made, checked as the daemon checks the files, and the config
    /// file's text.
    pub(super) fn parse_edited(&self, edits: &Edits) -> Result<(Config, String), ConfigError> {
        let path = &self.config.path;
        let text = edits
            .get(path)
            .cloned()
            .unwrap_or_else(|| self.config_text.clone());
        let drop_ins: Vec<(&Path, &str)> = edits
            .iter()
            .filter(|(file, _)| *file != path)
            .map(|(file, text)| (file.as_path(), text.as_str()))
            .collect();
        let config = Config::parse_checked_with(path, &text, &drop_ins, MAX_PROBLEMS)?;
        Ok((config, text))
    }

    /// Whether `edits` leave every file as the daemon knows it.
    pub(super) fn edits_change_nothing(&self, edits: &Edits) -> bool {
        edits
            .iter()
            .all(|(file, text)| self.known_text(file) == Some(text.as_str()))
    }

    /// Writes `edits`, each file atomically; if one fails, those written are put back.
    /// Returns the texts they had, to put back later.
    pub(super) fn write_edits(&self, edits: &Edits) -> Result<Edits, String> {
        refuse_symlinked(edits)?;
        let mut old = Edits::new();
        for (file, text) in edits {
            let before = self.known_text(file).unwrap_or_default().to_owned();
            if let Err(e) = write_atomic(file, text) {
                let _ = restore(&old);
                return Err(format!("writing {}: {e}", file.display()));
            }
            old.insert(file.clone(), before);
        }
        Ok(old)
    }
}

/// Refuses to edit a file reached through a symlink (a ConfigMap volume's): the write would
/// replace the link with a copy the next update of the volume would not touch.
pub(super) fn refuse_symlinked(edits: &Edits) -> Result<(), String> {
    for file in edits.keys() {
        if std::fs::symlink_metadata(file).is_ok_and(|m| m.file_type().is_symlink()) {
            return Err(format!(
                "{} is a symlink (a ConfigMap volume?): change it where it comes from, not \
                 through allowlistctl",
                file.display()
            ));
        }
    }
    Ok(())
}

/// Writes back the texts `write_edits` returned.
pub(super) fn restore(old: &Edits) -> Result<(), String> {
    for (file, text) in old {
        write_atomic(file, text).map_err(|e| format!("writing {}: {e}", file.display()))?;
    }
    Ok(())
}

/// The files of the set that differ between two configs, for the audit record of a reload or
/// change: the config file, and drop-ins changed, added or gone.
pub(super) fn changed_files(
    old: &Config,
    old_text: &str,
    new: &Config,
    new_text: &str,
) -> Vec<String> {
    let mut files = Vec::new();
    if old_text != new_text {
        files.push(new.path.display().to_string());
    }
    for drop_in in &new.drop_ins {
        if old
            .drop_in(&drop_in.path)
            .is_none_or(|o| o.text != drop_in.text)
        {
            files.push(drop_in.path.display().to_string());
        }
    }
    for drop_in in &old.drop_ins {
        if new.drop_in(&drop_in.path).is_none() {
            files.push(drop_in.path.display().to_string());
        }
    }
    files
}

/// `a, b and c`.
pub(super) fn names(files: &[PathBuf]) -> String {
    allowlist_config::words::list(files.iter().map(|f| f.display().to_string()))
}
