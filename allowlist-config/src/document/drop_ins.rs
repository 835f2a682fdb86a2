//! Drop-ins: the files `include = ["conf.d/*.toml"]` matches, read into the same `Config` as
//! the main file. They may add entries, lists and list files, never the keys that set up the
//! daemon; what would conflict within one file conflicts across files, named with both.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use toml_edit::{Document, Item};

use super::lists::Named;
use super::{KEYS, Reader, unknown_key};
use crate::error::{LineIndex, Problem};
use crate::{Config, ConfigError, DropIn};

/// What a drop-in may hold: entries and lists, never the keys that set up the daemon.
pub const DROP_IN_KEYS: &[&str] = &["entries", "list_files", "lists"];

/// How `include` patterns match: sorted, and never hidden files (an editor's temporary
/// files, a ConfigMap volume's `..data`).
pub(crate) const GLOB: glob::MatchOptions = glob::MatchOptions {
    case_sensitive: true,
    require_literal_separator: true,
    require_literal_leading_dot: true,
};

impl Reader<'_> {
    /// The `include` patterns, resolved against `base`, with their lines.
    pub(super) fn include(&mut self, item: &Item, base: &Path) -> Vec<(PathBuf, Option<usize>)> {
        let expected = "must be a list of file patterns, e.g. include = [\"conf.d/*.toml\"]";
        let mut patterns = Vec::new();
        for (number, value) in self.array("include", item, expected) {
            let label = Some(self.label(number, value));
            let pattern = match value.as_str().map(str::trim) {
                None | Some("") => Err("must be a quoted file pattern, e.g. \"conf.d/*.toml\""),
                Some(text) => Ok(base.join(text)),
            };
            let checked = pattern.map_err(str::to_owned).and_then(|pattern| {
                let text = pattern.to_str().ok_or("not UTF-8")?;
                glob::Pattern::new(text).map_err(|e| format!("not a valid pattern: {e}"))?;
                Ok(pattern)
            });
            match checked {
                Ok(pattern) => patterns.push((pattern, self.lines.line_of(value.span()))),
                Err(message) => self.fail("include", value.span(), label, message),
            }
        }
        patterns
    }

    /// Reads every drop-in the `include` patterns match, in sorted order pattern by pattern,
    /// each file once: its entries join `config`, its lists `named`.
    pub(super) fn read_drop_ins(
        &mut self,
        include: &[(PathBuf, Option<usize>)],
        given: &[(&Path, &str)],
        config: &mut Config,
        named: &mut Vec<Named>,
    ) {
        let mut seen = BTreeSet::from([self.path.to_path_buf()]);
        for (pattern, line) in include {
            let text = pattern.to_str().unwrap_or_default();
            let (Ok(found), Ok(matcher)) = (glob::glob_with(text, GLOB), glob::Pattern::new(text))
            else {
                continue; // reported by `include`
            };
            let mut files = Vec::new();
            for file in found {
                match file {
                    Ok(file) => files.push(file),
                    Err(e) => {
                        let message = format!("reading {}: {}", e.path().display(), e.error());
                        self.report
                            .push(Problem::new(self.path, *line, message).key("include"));
                    }
                }
            }
            // A drop-in given but not on disk yet (`allowlistd --check --candidate`, a config
            // management tool's validate step) is read where it is going to be.
            let unwritten: Vec<PathBuf> = given
                .iter()
                .map(|(path, _)| path.to_path_buf())
                .filter(|path| matcher.matches_path_with(path, GLOB) && !files.contains(path))
                .collect();
            if !unwritten.is_empty() {
                files.extend(unwritten);
                files.sort();
            }
            for file in files {
                if file.is_dir() || !seen.insert(file.clone()) {
                    continue;
                }
                let text = match given.iter().find(|(path, _)| *path == file) {
                    Some((_, text)) => Ok(text.to_string()),
                    None => Config::read_text(&file),
                };
                let text = match text {
                    Ok(text) => text,
                    Err(ConfigError::Io { path, error }) => {
                        let message = format!("reading {}: {error}", path.display());
                        self.report
                            .push(Problem::new(self.path, *line, message).key("include"));
                        continue;
                    }
                    Err(other) => {
                        other
                            .problems()
                            .iter()
                            .for_each(|p| self.report.push(p.clone()));
                        continue;
                    }
                };
                self.drop_in(&file, &text, config, named);
                self.layout.drop_in_lines.push(*line);
                config.drop_ins.push(DropIn { path: file, text });
            }
        }
    }

    /// One drop-in, `file`, whose text is `text`.
    fn drop_in(&mut self, file: &Path, text: &str, config: &mut Config, named: &mut Vec<Named>) {
        let doc = match Document::parse(text) {
            Ok(doc) => doc,
            Err(err) => {
                let err = crate::syntax_error(file, text, &err);
                err.problems()
                    .iter()
                    .for_each(|p| self.report.push(p.clone()));
                return;
            }
        };
        let main = self.path;
        let base = file.parent().unwrap_or(Path::new(""));
        let mut reader = Reader {
            path: file,
            text: doc.raw(),
            lines: LineIndex::new(doc.raw()),
            report: &mut *self.report,
            layout: std::mem::take(&mut self.layout),
            file_number: config.drop_ins.len() as u32 + 1,
        };
        let root = doc.as_table();
        for (key, item) in root.iter() {
            let key_line = reader.lines.line_of(root.key(key).and_then(|k| k.span()));
            match key {
                "entries" => {
                    reader.layout.lines.entry(key.to_owned()).or_insert(None);
                    reader.entries("entries", item, &mut config.entries);
                }
                "list_files" => {
                    reader.layout.lines.entry(key.to_owned()).or_insert(None);
                    let files = reader.list_files(key, item, base, 0);
                    config.list_files.extend(files);
                }
                "lists" => named.extend(reader.lists(item, base)),
                _ if KEYS.contains(&key) => {
                    let message = format!(
                        "`{key}` belongs in the main config file {}: a drop-in may only add \
                         [[entries]], list_files and [lists.NAME]",
                        main.display()
                    );
                    reader
                        .report
                        .push(Problem::new(file, key_line, message).key(key));
                }
                _ => {
                    let message = format!("{} in a drop-in", unknown_key(key, DROP_IN_KEYS));
                    reader.report.push(Problem::new(file, key_line, message));
                }
            }
        }
        let Reader { layout, .. } = reader;
        self.layout = layout;
    }

    /// A list file named twice, in two files of the set or for two lists, would be read
    /// twice: refused, naming both places.
    pub(super) fn check_list_files_once(&mut self, config: &Config) {
        let mut first: BTreeMap<PathBuf, usize> = BTreeMap::new();
        for (i, file) in config.list_files.iter().enumerate() {
            // `conf.d/../cloud.list` is `cloud.list`.
            let real = std::fs::canonicalize(file).unwrap_or_else(|_| file.clone());
            let Some(&j) = first.get(&real) else {
                first.insert(real, i);
                continue;
            };
            let (this, other) = (&self.layout.list_files[i], &self.layout.list_files[j]);
            let at = other.line.map_or(String::new(), |line| format!(":{line}"));
            let message = format!(
                "list file {} is already listed at {}{at}; list it once",
                file.display(),
                other.file.display()
            );
            let problem = Problem::new(&this.file, this.line, message).key("list_files");
            self.report.push(problem.entry(this.label.clone()));
        }
    }
}
