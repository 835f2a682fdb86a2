//! The configuration file (TOML, [`DEFAULT_PATH`]) and the list files it names.
//!
//! ```toml
//! active = true
//! interfaces = ["eth0"]
//! protected_tcp_ports = [22, 443]
//! list_files = ["partners.list"]   # relative to this file's directory
//!
//! [[entries]]
//! cidr = "198.18.0.0/24"
//! comment = "office"
//!
//! [lists.api]                      # a list of its own, beside the one above (`default`)
//! mode = "monitor"
//! tcp_ports = [8443]
//! udp_ports = [443]
//! ```
//!
//! Loading validates everything it can without touching the system and reports every problem
//! at once, each located at its file and line: a config that is refused leaves the running
//! filter as it was, so the admin should be able to fix all of it in one go.

mod document;
pub mod edit;
mod entries;
mod error;
mod in_order;
mod list_file;
mod overlaps;
pub mod rules;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_drop_ins;
#[cfg(test)]
mod tests_entries;
#[cfg(test)]
mod tests_lists;
#[cfg(test)]
mod tests_values;
pub mod trusted_file;
pub mod words;

use arcstr::ArcStr;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use ipnet::IpNet;
use toml_edit::{Document, Item, Value};

use crate::rules::{ListRules, Mode, Protocol, Rules};
pub use document::DROP_IN_KEYS;
use document::Layout;
pub use entries::{check_comment, parse_net};
pub use error::{ConfigError, MAX_PROBLEMS, Problem};
use error::{LineIndex, Report, quoted};

pub const DEFAULT_PATH: &str = "/etc/allowlist/allowlist.toml";

/// Larger config files are refused before parsing: long lists belong in list files, which
/// are streamed.
pub const MAX_CONFIG_BYTES: u64 = 16 << 20;

/// Largest accepted `max_entries`: beyond this the per-family maps would pin an unreasonable
/// amount of kernel memory.
pub const MAX_ENTRIES_LIMIT: u32 = 16_777_216;

/// How to attach the XDP program.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum XdpModeSetting {
    /// Driver mode where the driver supports it, generic mode otherwise.
    Auto,
    /// Driver (native) mode only; attaching fails if the driver lacks XDP support.
    Driver,
    /// Generic (skb) mode: works everywhere, slower.
    Generic,
}

/// How allowlistd writes its log (stderr, for the journal or a log shipper).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum LogFormat {
    /// One line of text an event.
    #[default]
    Text,
    /// One JSON object a line (tracing's JSON layer); audit records with their fields.
    Json,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Config {
    /// The file this was read from.
    pub path: PathBuf,
    /// Whether to enforce at all; `false` lets everything through.
    pub active: bool,
    pub interfaces: Vec<String>,
    pub protected_tcp_ports: BTreeSet<u16>,
    /// Capacity of each address family's map (IPv4 and IPv6 separately).
    pub max_entries: u32,
    pub control_socket: PathBuf,
    /// Members of this group (and root) may use the control socket.
    pub control_group: String,
    pub state_dir: PathBuf,
    pub audit_log: PathBuf,
    /// Rotate the audit log when it reaches this size (0: never).
    pub audit_max_bytes: u64,
    /// How many rotated audit files to keep.
    pub audit_keep_files: u32,
    pub bpffs_dir: PathBuf,
    pub xdp_mode: XdpModeSetting,
    /// Whether to detach the program when the daemon exits (otherwise it keeps enforcing).
    pub detach_on_exit: bool,
    /// Where to serve Prometheus metrics (off when unset).
    pub metrics_listen: Option<std::net::SocketAddr>,
    /// Entries with the most hits that get their own `allowlist_entry_hits_total` series.
    pub metrics_entry_series: usize,
    /// Where to receive knocks (single packet authorization); empty: off.
    pub knock_listen: Vec<std::net::SocketAddr>,
    /// Who may knock: one key a line (see `allowlistctl knock keygen`).
    pub knock_keys: PathBuf,
    /// How far a knock's time may be from the daemon's clock, either way.
    pub knock_window: std::time::Duration,
    pub log_format: LogFormat,
    /// The `include` patterns, resolved against the config file's directory.
    pub include: Vec<PathBuf>,
    /// Whether the daemon reloads by itself when a file of the set changes.
    pub watch: bool,
    /// The drop-ins `include` matched, in the order they were read (sorted, pattern by
    /// pattern), with their text: the daemon compares it to notice edits behind its back.
    pub drop_ins: Vec<DropIn>,
    /// Every list file of every list, resolved against the directory of the file naming it.
    pub list_files: Vec<PathBuf>,
    /// The lists: `default` first when the top-level keys write it, then each `[lists.NAME]`
    /// in the file's order.
    pub lists: Vec<ListConfig>,
    /// Every list's `[[entries]]` first, then each list file's, in file order; list-file
    /// lines that repeat an entry of their list or lie inside another are not here (see
    /// `merged`).
    pub entries: Vec<Entry>,
    /// The list files whose lines were merged into other entries, in `list_files` order.
    pub merged: Vec<MergedLines>,
    /// Indices into `entries` in network order: comparing two configs is then one merge.
    pub(crate) by_net: Vec<u32>,
    /// When each timed entry ends, by its file (0: the config file, `k`: `drop_ins[k - 1]`)
    /// and its line there (list files have none).
    pub ends: BTreeMap<(u32, u32), SystemTime>,
}

/// A drop-in file of the set (see `include`).
#[derive(Clone, Debug, PartialEq)]
pub struct DropIn {
    pub path: PathBuf,
    pub text: String,
}

/// One allowlisted network.
#[derive(Clone, Debug, PartialEq)]
pub struct Entry {
    /// Normalised: host bits clear; single addresses are /32 or /128; never IPv4-mapped.
    pub net: IpNet,
    /// Shared with the entry's file name where a list-file line has no comment of its own.
    pub comment: ArcStr,
    /// Where it was written (see `origin`), shared by every entry of the file: a list file
    /// can hold a million.
    pub file: Arc<PathBuf>,
    /// 1-based.
    pub line: u32,
    /// Its list: an index into `Config::lists`.
    pub list: u8,
}

/// One list: what it protects and how (its entries are those of `Config::entries` with its
/// index).
#[derive(Clone, Debug, PartialEq)]
pub struct ListConfig {
    pub name: String,
    pub mode: Mode,
    pub tcp_ports: BTreeSet<u16>,
    pub udp_ports: BTreeSet<u16>,
    /// Its own list files (also in `Config::list_files`).
    pub list_files: Vec<PathBuf>,
    /// The line of its `[lists.NAME]` header; for `default` written with the top-level
    /// keys, none.
    pub line: Option<usize>,
    /// The drop-in whose `[lists.NAME]` defines it (its mode or ports); `None`: the config
    /// file.
    pub file: Option<PathBuf>,
}

/// How many lines of a list file repeated an entry or lay inside another entry's network,
/// and were merged into it (see [`Config::merged_summary`]).
#[derive(Clone, Debug, PartialEq)]
pub struct MergedLines {
    pub file: PathBuf,
    pub lines: usize,
}

impl ListConfig {
    pub fn ports(&self, protocol: Protocol) -> &BTreeSet<u16> {
        match protocol {
            Protocol::Tcp => &self.tcp_ports,
            Protocol::Udp => &self.udp_ports,
        }
    }
}

// Thin pointers, and the line beside them rather than in a struct of its own (which would
// be padded): a reload holds two configs of a million entries.
const _: () = assert!(std::mem::size_of::<Entry>() == 40);

impl Entry {
    pub fn origin(&self) -> Origin<'_> {
        Origin {
            file: &self.file,
            line: self.line,
        }
    }
}

/// Where an entry was written.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Origin<'a> {
    pub file: &'a Path,
    pub line: u32,
}

impl fmt::Display for Origin<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.file.display(), self.line)
    }
}

impl Config {
    /// Every key at its default, for a file at `path`.
    pub fn defaults(path: &Path) -> Config {
        Config {
            path: path.to_path_buf(),
            active: true,
            interfaces: Vec::new(),
            protected_tcp_ports: BTreeSet::new(),
            max_entries: 1024,
            control_socket: PathBuf::from(allowlist_control::DEFAULT_SOCKET),
            control_group: "root".to_owned(),
            state_dir: PathBuf::from("/var/lib/allowlist"),
            audit_log: PathBuf::from("/var/log/allowlist/audit.jsonl"),
            audit_max_bytes: 10 << 20,
            audit_keep_files: 10,
            bpffs_dir: PathBuf::from("/sys/fs/bpf/allowlist"),
            xdp_mode: XdpModeSetting::Auto,
            detach_on_exit: true,
            metrics_listen: None,
            metrics_entry_series: 100,
            knock_listen: Vec::new(),
            knock_keys: PathBuf::from("/etc/allowlist/knock_keys"),
            knock_window: std::time::Duration::from_secs(30),
            log_format: LogFormat::Text,
            include: Vec::new(),
            watch: false,
            drop_ins: Vec::new(),
            list_files: Vec::new(),
            lists: Vec::new(),
            entries: Vec::new(),
            merged: Vec::new(),
            by_net: Vec::new(),
            ends: BTreeMap::new(),
        }
    }

    /// Reads and validates the config file at `path` and the list files it names.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = Config::read_text(path)?;
        Config::parse(path, &text)
    }

    /// The config file's text, refused by its size before it is read, and read no further
    /// than the limit should it grow meanwhile: memory stays bounded whatever the file.
    pub fn read_text(path: &Path) -> Result<String, ConfigError> {
        let io = |error| ConfigError::Io {
            path: path.to_path_buf(),
            error,
        };
        let too_large = |size: u64| {
            let message = format!(
                "{size} bytes, more than the {} MiB a config file may have; put long lists \
                 in list files (list_files = [...])",
                MAX_CONFIG_BYTES >> 20
            );
            ConfigError::Invalid {
                problems: vec![Problem::new(path, None, message)],
                omitted: 0,
                overlaps: 0,
            }
        };
        let file = std::fs::File::open(path).map_err(io)?;
        let size = file.metadata().map_err(io)?.len();
        if size > MAX_CONFIG_BYTES {
            return Err(too_large(size));
        }
        let mut text = String::new();
        std::io::Read::read_to_string(
            &mut std::io::Read::take(file, MAX_CONFIG_BYTES + 1),
            &mut text,
        )
        .map_err(io)?;
        if text.len() as u64 > MAX_CONFIG_BYTES {
            return Err(too_large(text.len() as u64));
        }
        Ok(text)
    }

    /// Validates `text` as the contents of the config file at `path`. List files are still
    /// read from disk, relative to `path`'s directory.
    pub fn parse(path: &Path, text: &str) -> Result<Config, ConfigError> {
        let mut report = Report::default();
        let (config, _) = Config::parse_into(path, text, &[], &mut report)?;
        report.finish(config)
    }

    /// The config file at `path`, and its text, as the daemon takes it at start, on reload and
    /// for `allowlistd --check`: the file trusted, read, and [`Config::parse_checked`].
    pub fn read_checked(path: &Path, max_problems: usize) -> Result<(Config, String), ConfigError> {
        trusted_file::check(path, "config file")?;
        let text = Config::read_text(path)?;
        let config = Config::parse_checked(path, &text, max_problems)?;
        Ok((config, text))
    }

    /// What the daemon checks before it uses a config (start, reload, `--check`, a change
    /// through allowlistctl): [`Config::parse`], and also that the list files are trusted
    /// ([`trusted_file::check`]) and the listed interfaces exist now. Every problem is
    /// reported together, at most `max_problems` of them (the rest are counted).
    pub fn parse_checked(
        path: &Path,
        text: &str,
        max_problems: usize,
    ) -> Result<Config, ConfigError> {
        Config::parse_checked_with(path, text, &[], max_problems)
    }

    /// [`Config::parse_checked`] with some drop-ins taken from `drop_ins` (path, text)
    /// rather than from disk: a change to a drop-in, checked before it is written, or a new
    /// drop-in at a path an `include` pattern matches.
    pub fn parse_checked_with(
        path: &Path,
        text: &str,
        drop_ins: &[(&Path, &str)],
        max_problems: usize,
    ) -> Result<Config, ConfigError> {
        let mut report = Report::with_cap(max_problems);
        let (config, layout) = Config::parse_into(path, text, drop_ins, &mut report)?;
        for (file, at) in config.list_files.iter().zip(&layout.list_files) {
            if let Err(untrusted) = trusted_file::check(file, "list file") {
                let problem = Problem::new(&at.file, at.line, untrusted.to_string());
                report.push(problem.key("list_files").entry(at.label.clone()));
            }
        }
        for (drop_in, line) in config.drop_ins.iter().zip(&layout.drop_in_lines) {
            if let Err(untrusted) = trusted_file::check(&drop_in.path, "drop-in") {
                let problem = Problem::new(path, *line, untrusted.to_string()).key("include");
                report.push(problem);
            }
        }
        config.check_interfaces(text, &mut report);
        report.finish(config)
    }

    /// [`Config::parse`]'s work, its problems left in `report`; `Err` only for a file that is
    /// not TOML at all.
    fn parse_into(
        path: &Path,
        text: &str,
        drop_ins: &[(&Path, &str)],
        report: &mut Report,
    ) -> Result<(Config, Layout), ConfigError> {
        let doc = Document::parse(text).map_err(|err| syntax_error(path, text, &err))?;
        let mut config = Config::defaults(path);
        let mut layout = document::read(&doc, path, drop_ins, &mut config, report);
        config.ends = std::mem::take(&mut layout.ends);
        let max = if layout.is_valid("max_entries") {
            config.max_entries
        } else {
            MAX_ENTRIES_LIMIT
        };
        let default = !layout.is_set("max_entries");
        let mut capacity = list_file::Capacity::new(max, default, &config.entries);
        // Where each list file's entries start in `entries`.
        let mut starts = Vec::with_capacity(config.list_files.len());
        for (file, at) in config.list_files.iter().zip(&layout.list_files) {
            if capacity.exceeded {
                break;
            }
            let first = config.entries.len();
            starts.push(first);
            let read = list_file::read(file, &mut capacity, &mut config.entries, report);
            for entry in &mut config.entries[first..] {
                entry.list = at.list;
            }
            if let Err(err) = read {
                let message = format!("reading {}: {err}", file.display());
                let problem = Problem::new(&at.file, at.line, message).key("list_files");
                report.push(problem.entry(at.label.clone()));
            }
        }
        let mut swept = overlaps::check_overlaps(&config.entries, &layout.inline, report);
        if swept.merged.count() > 0 {
            let ends = starts.iter().skip(1).copied().chain([config.entries.len()]);
            for ((file, start), end) in config.list_files.iter().zip(&starts).zip(ends) {
                let lines = swept.merged.rank(end) - swept.merged.rank(*start);
                if lines > 0 {
                    let file = file.clone();
                    config.merged.push(MergedLines { file, lines });
                }
            }
            swept.merged.remove(&mut config.entries, &mut swept.by_net);
        }
        config.by_net = swept.by_net;
        if !capacity.exceeded {
            config.check_capacity(&layout, report);
        }
        config.check_protection(&layout, report);
        Ok((config, layout))
    }

    /// Only the `control_socket` of the config file at `path`, for allowlistctl to find the
    /// daemon: the file must be readable TOML and that key valid. Problems with other keys
    /// are the daemon's to report (`reload --dry-run` must work while a file is being fixed),
    /// and list files are not read.
    pub fn read_control_socket(path: &Path) -> Result<PathBuf, ConfigError> {
        let text = Config::read_text(path)?;
        let doc = Document::parse(text.as_str()).map_err(|err| syntax_error(path, &text, &err))?;
        let mut report = Report::default();
        let mut config = Config::defaults(path);
        document::read(&doc, path, &[], &mut config, &mut report);
        let mut socket_problems = Report::default();
        if let Err(e) = report.finish(()) {
            e.problems()
                .iter()
                .filter(|p| p.key.as_deref() == Some("control_socket"))
                .for_each(|p| socket_problems.push(p.clone()));
        }
        socket_problems.finish(config.control_socket)
    }

    /// Only the `log_format` of the file at `path`, for allowlistd to set its log up before
    /// anything is logged: text when the file cannot be read or the key is wrong (reading
    /// the whole file then reports it).
    pub fn read_log_format(path: &Path) -> LogFormat {
        let Ok(text) = Config::read_text(path) else {
            return LogFormat::Text;
        };
        let Ok(doc) = Document::parse(text.as_str()) else {
            return LogFormat::Text;
        };
        match doc.get("log_format").and_then(|item| item.as_str()) {
            Some("json") => LogFormat::Json,
            _ => LogFormat::Text,
        }
    }

    /// What the filter should enforce.
    pub fn rules(&self) -> Rules {
        let mut lists: Vec<ListRules> = self
            .lists
            .iter()
            .map(|list| ListRules {
                name: list.name.clone(),
                mode: list.mode,
                tcp_ports: list.tcp_ports.clone(),
                udp_ports: list.udp_ports.clone(),
                entries: BTreeSet::new(),
                ends: BTreeMap::new(),
            })
            .collect();
        // In order already: the sets are built without sorting.
        for entry in self.entries_by_net() {
            lists[usize::from(entry.list)].entries.insert(entry.net);
        }
        for entry in self.timed_entries() {
            let end = self.end_of(entry).expect("timed");
            lists[usize::from(entry.list)].ends.insert(entry.net, end);
        }
        Rules { lists }
    }

    /// When `entry` ends, if it is timed.
    pub fn end_of(&self, entry: &Entry) -> Option<SystemTime> {
        if self.ends.is_empty() {
            return None;
        }
        let file = self.file_number(&entry.file)?;
        self.ends.get(&(file, entry.line)).copied()
    }

    /// Which file of the set `file` is: 0 for the config file, `k` for `drop_ins[k - 1]`.
    pub fn file_number(&self, file: &Path) -> Option<u32> {
        // Compared as bytes (entries record the paths the set was read by): this runs for
        // each of a million entries when some are timed.
        let same = |a: &Path, b: &Path| a.as_os_str() == b.as_os_str();
        if same(file, &self.path) {
            return Some(0);
        }
        let k = self.drop_ins.iter().position(|d| same(&d.path, file))?;
        Some(k as u32 + 1)
    }

    /// The file of the set numbered `number` (see [`Config::file_number`]).
    pub fn file_of_number(&self, number: u32) -> Option<&Path> {
        match number {
            0 => Some(&self.path),
            k => self.drop_ins.get(k as usize - 1).map(|d| d.path.as_path()),
        }
    }

    /// The drop-ins `include` matches on disk now, in the order they would be read.
    pub fn drop_ins_on_disk(&self) -> Vec<PathBuf> {
        let mut found: Vec<PathBuf> = Vec::new();
        for pattern in &self.include {
            let Some(Ok(paths)) = pattern.to_str().map(|p| glob::glob_with(p, document::GLOB))
            else {
                continue;
            };
            for file in paths.flatten() {
                if !file.is_dir() && file != self.path && !found.contains(&file) {
                    found.push(file);
                }
            }
        }
        found
    }

    /// The text of the file `file` of the set, as it was read, if it is a drop-in.
    pub fn drop_in(&self, file: &Path) -> Option<&DropIn> {
        self.drop_ins.iter().find(|d| d.path == file)
    }

    /// The timed entries, in file order.
    pub fn timed_entries(&self) -> impl Iterator<Item = &Entry> {
        // `[[entries]]` of every file of the set come first in `entries`, before any list
        // file's.
        let inline = if self.ends.is_empty() {
            0
        } else {
            self.entries.len()
        };
        self.entries[..inline]
            .iter()
            .map(|e| (self.file_number(&e.file), e))
            .take_while(|(file, _)| file.is_some())
            .filter(|(file, e)| self.ends.contains_key(&(file.unwrap_or(0), e.line)))
            .map(|(_, e)| e)
    }

    /// The earliest end of a timed entry.
    pub fn next_end(&self) -> Option<SystemTime> {
        self.ends.values().min().copied()
    }

    /// Whether the config names lists of its own (`[lists.NAME]`).
    pub fn has_named_lists(&self) -> bool {
        self.lists.iter().any(|l| l.line.is_some())
    }

    /// Each list in a few words, for one-line summaries: `ssh enforce tcp 22; api monitor
    /// tcp 8443 udp 443`.
    pub fn lists_summary(&self) -> String {
        let ports = |protocol: &str, ports: &BTreeSet<u16>| {
            if ports.is_empty() {
                String::new()
            } else {
                let list: Vec<String> = ports.iter().map(u16::to_string).collect();
                format!(" {protocol} {}", list.join(","))
            }
        };
        let lists: Vec<String> = self
            .lists
            .iter()
            .map(|l| {
                format!(
                    "{} {}{}{}",
                    l.name,
                    l.mode.name(),
                    ports("tcp", &l.tcp_ports),
                    ports("udp", &l.udp_ports)
                )
            })
            .collect();
        lists.join("; ")
    }

    /// The list named `name`.
    pub fn list(&self, name: &str) -> Option<(u8, &ListConfig)> {
        self.lists
            .iter()
            .position(|l| l.name == name)
            .map(|i| (i as u8, &self.lists[i]))
    }

    /// How many list-file lines were merged into other entries, in all.
    pub fn merged_lines(&self) -> usize {
        self.merged.iter().map(|m| m.lines).sum()
    }

    /// One line saying how many list-file lines were merged, and from which files, e.g.
    /// `merged 1,234 duplicate or covered list-file lines (cloud.txt: 1,200; partners.txt: 34)`;
    /// `None` if there were none.
    pub fn merged_summary(&self) -> Option<String> {
        (!self.merged.is_empty()).then(|| {
            words::merged_lines(
                self.merged
                    .iter()
                    .map(|m| (words::file_name(&m.file), m.lines)),
            )
        })
    }

    /// The entries in network order (IPv4 first).
    pub fn entries_by_net(&self) -> impl Iterator<Item = &Entry> {
        in_order::InOrder::new(&self.by_net, &self.entries)
    }

    /// Checks that every listed interface exists now (`text` is the config file's, for the
    /// lines). Only [`Config::parse_checked`] asks: interfaces come and go, and tests parse
    /// configs on machines without them.
    fn check_interfaces(&self, text: &str, report: &mut Report) {
        for (i, name) in self.interfaces.iter().enumerate() {
            if nix::net::if_::if_nametoindex(name.as_str()).is_ok() {
                continue;
            }
            let line = interface_line(text, name);
            let message = "no such network interface (`ip -br link` lists them)";
            let problem = Problem::new(&self.path, line, message).key("interfaces");
            report.push(problem.entry(format!("entry {} {}", i + 1, quoted(name))));
        }
    }

    /// Each family's map holds at most `max_entries`.
    fn check_capacity(&self, layout: &Layout, report: &mut Report) {
        if !layout.is_valid("max_entries") {
            return;
        }
        let v4 = self
            .entries
            .iter()
            .filter(|e| matches!(e.net, IpNet::V4(_)))
            .count();
        let v6 = self.entries.len() - v4;
        let default = if layout.is_set("max_entries") {
            ""
        } else {
            " (the default)"
        };
        for (count, family) in [(v4, "IPv4"), (v6, "IPv6")] {
            if count > self.max_entries as usize {
                let message = format!(
                    "{count} {family} entries but max_entries = {}{default}; raise max_entries",
                    self.max_entries
                );
                let line = layout.line("max_entries");
                report.push(Problem::new(&self.path, line, message).key("max_entries"));
            }
        }
    }

    /// A list that is on with nothing to protect is almost certainly a mistake.
    fn check_protection(&self, layout: &Layout, report: &mut Report) {
        // Said once, by `default` when it is on.
        let mut interfaces_said = self
            .lists
            .iter()
            .any(|l| l.line.is_none() && l.mode != Mode::Off);
        for list in &self.lists {
            let on = list.mode != Mode::Off;
            let unprotected = list.tcp_ports.is_empty() && list.udp_ports.is_empty();
            let Some(line) = list.line else {
                // `default`, written with the top-level keys.
                if on && layout.is_valid("active") {
                    self.check_default(layout, report);
                }
                continue;
            };
            let key = format!("lists.{}", list.name);
            if on && unprotected && layout.is_valid(&format!("{key}.tcp_ports")) {
                let message = format!(
                    "list `{}` is on (mode = \"{}\") but protects no port: add tcp_ports = \
                     [...] or udp_ports = [...], or set mode = \"off\"",
                    list.name,
                    list.mode.name()
                );
                let file = list.file.as_deref().unwrap_or(&self.path);
                report.push(Problem::new(file, Some(line), message).key(&key));
            }
            if on && !interfaces_said && self.interfaces.is_empty() && layout.is_valid("interfaces")
            {
                interfaces_said = true;
                let message = format!(
                    "no interfaces to protect: list them, e.g. interfaces = [\"eth0\"], or set \
                     mode = \"off\" in [{key}]"
                );
                let (file, line) = match layout.line("interfaces") {
                    Some(line) => (&self.path, Some(line)),
                    None => (list.file.as_ref().unwrap_or(&self.path), Some(line)),
                };
                report.push(Problem::new(file, line, message).key("interfaces"));
            }
        }
        self.check_knock_port(layout, report);
    }

    /// A knock must reach the daemon from addresses no list covers: its port is refused as a
    /// protected UDP port.
    fn check_knock_port(&self, layout: &Layout, report: &mut Report) {
        let ports: BTreeSet<u16> = self.knock_listen.iter().map(|a| a.port()).collect();
        for port in ports {
            if let Some(list) = self.lists.iter().find(|l| l.udp_ports.contains(&port)) {
                let message = format!(
                    "port {port} receives knocks but list `{}` protects UDP port {port}: knocks \
                     from addresses it does not cover would be dropped before allowlistd sees \
                     them; take {port} out of its udp_ports or knock on another port",
                    list.name
                );
                let problem = Problem::new(&self.path, layout.line("knock_listen"), message);
                report.push(problem.key("knock_listen"));
            }
        }
    }

    fn check_default(&self, layout: &Layout, report: &mut Report) {
        let checks = [
            (
                "interfaces",
                self.interfaces.is_empty(),
                "no interfaces to protect: list them, e.g. interfaces = [\"eth0\"], or set \
                 active = false",
            ),
            (
                "protected_tcp_ports",
                self.protected_tcp_ports.is_empty(),
                "no ports to protect: list them, e.g. protected_tcp_ports = [22], or set \
                 active = false",
            ),
        ];
        for (key, empty, message) in checks {
            if empty && layout.is_valid(key) {
                let line = layout.line(key).or_else(|| layout.line("active"));
                report.push(Problem::new(&self.path, line, message).key(key));
            }
        }
    }
}

pub(crate) fn syntax_error(path: &Path, text: &str, err: &toml_edit::TomlError) -> ConfigError {
    let lines = LineIndex::new(text);
    let offset = err.span().map(|span| span.start);
    let problem = Problem {
        line: offset.map(|o| lines.line(o)),
        column: offset.map(|o| lines.column(o)),
        ..Problem::new(path, None, err.message().replace('\n', " "))
    };
    ConfigError::Invalid {
        problems: vec![problem],
        omitted: 0,
        overlaps: 0,
    }
}

/// The line of `name` in the `interfaces` list of `text`, else of the `interfaces` key.
fn interface_line(text: &str, name: &str) -> Option<usize> {
    let doc = Document::parse(text).ok()?;
    let root = doc.as_table();
    let span = root
        .get("interfaces")
        .and_then(Item::as_array)
        .and_then(|list| list.iter().find(|v| v.as_str() == Some(name)))
        .and_then(Value::span)
        .or_else(|| root.key("interfaces").and_then(|key| key.span()));
    LineIndex::new(text).line_of(span)
}
