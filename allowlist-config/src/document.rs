//! Reading the TOML document into a [`Config`]: every key type-checked, and every problem
//! located at the line it comes from.

mod drop_ins;
mod entry_tables;
mod knock;
mod lists;

pub use drop_ins::DROP_IN_KEYS;
pub(crate) use drop_ins::GLOB;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use toml_edit::{Document, Item, Value};

use super::error::{LineIndex, Problem, Report, quoted};
use super::{Config, LogFormat, MAX_ENTRIES_LIMIT, XdpModeSetting};

const KEYS: &[&str] = &[
    "active",
    "interfaces",
    "protected_tcp_ports",
    "max_entries",
    "control_socket",
    "control_group",
    "state_dir",
    "audit_log",
    "audit_max_bytes",
    "audit_keep_files",
    "bpffs_dir",
    "xdp_mode",
    "detach_on_exit",
    "metrics_listen",
    "metrics_entry_series",
    "list_files",
    "entries",
    "lists",
    "knock_listen",
    "knock_keys",
    "knock_window",
    "log_format",
    "include",
    "watch",
];
const ENTRY_KEYS: &[&str] = &["cidr", "comment", "expires"];

/// Where things are in the file, for the checks that combine several keys.
#[derive(Debug, Default)]
pub struct Layout {
    /// Line of each known top-level key present.
    lines: BTreeMap<String, Option<usize>>,
    /// Keys with a problem already reported, so that follow-on checks stay quiet.
    invalid: BTreeSet<String>,
    /// For each of `Config::list_files`: where it is listed, how to name it, and its list.
    pub list_files: Vec<ListFileAt>,
    /// For each `[[entries]]` entry at the start of `Config::entries`: its 1-based number.
    pub inline: Vec<usize>,
    /// The `expires` of timed `[[entries]]`, by their file's number (see
    /// `Config::file_number`) and the line of their `cidr`.
    pub ends: BTreeMap<(u32, u32), SystemTime>,
    /// For each of `Config::drop_ins`: the line of the `include` pattern that matched it.
    pub drop_in_lines: Vec<Option<usize>>,
}

/// Where a list file is named.
#[derive(Debug)]
pub struct ListFileAt {
    /// The config file or drop-in naming it.
    pub file: PathBuf,
    pub line: Option<usize>,
    /// How problems name it, e.g. ``entry 2 `cloud.list` ``.
    pub label: String,
    /// Its list.
    pub list: u8,
}

impl Layout {
    pub fn line(&self, key: &str) -> Option<usize> {
        self.lines.get(key).copied().flatten()
    }

    pub fn is_set(&self, key: &str) -> bool {
        self.lines.contains_key(key)
    }

    pub fn is_valid(&self, key: &str) -> bool {
        !self.invalid.contains(key)
    }
}

/// Fills `config` (already holding the defaults) from `doc`, the parsed text of `path`.
/// List files are only listed here, not read.
/// `drop_ins`: drop-ins whose text is given rather than read from disk.
pub fn read(
    doc: &Document<&str>,
    path: &Path,
    drop_ins: &[(&Path, &str)],
    config: &mut Config,
    report: &mut Report,
) -> Layout {
    let mut reader = Reader {
        path,
        text: doc.raw(),
        lines: LineIndex::new(doc.raw()),
        report,
        layout: Layout::default(),
        file_number: 0,
    };
    let root = doc.as_table();
    let mut named = Vec::new();
    let mut include = Vec::new();
    for (key, item) in root.iter() {
        let key_line = reader.lines.line_of(root.key(key).and_then(|k| k.span()));
        if KEYS.contains(&key) {
            reader.layout.lines.insert(key.to_owned(), key_line);
        }
        match key {
            "active" => config.active = reader.boolean(key, item).unwrap_or(config.active),
            "detach_on_exit" => {
                config.detach_on_exit = reader.boolean(key, item).unwrap_or(config.detach_on_exit);
            }
            "metrics_listen" => config.metrics_listen = reader.socket_address(item),
            "knock_listen" => config.knock_listen = reader.knock_listen(item),
            "log_format" => config.log_format = reader.log_format(item).unwrap_or_default(),
            "knock_keys" => reader.absolute_path(key, item, &mut config.knock_keys),
            "knock_window" => {
                config.knock_window = reader.knock_window(item).unwrap_or(config.knock_window);
            }
            "metrics_entry_series" => {
                config.metrics_entry_series = reader
                    .whole_number(key, item, 0..=100_000, "entries with their own hits series")
                    .map_or(config.metrics_entry_series, |n| n as usize);
            }
            "interfaces" => config.interfaces = reader.interfaces(item),
            "protected_tcp_ports" => config.protected_tcp_ports = reader.ports(key, item),
            "max_entries" => {
                config.max_entries = reader.max_entries(item).unwrap_or(config.max_entries)
            }
            "control_socket" => reader.absolute_path(key, item, &mut config.control_socket),
            "control_group" => reader.group_name(item, &mut config.control_group),
            "state_dir" => reader.absolute_path(key, item, &mut config.state_dir),
            "audit_log" => reader.absolute_path(key, item, &mut config.audit_log),
            "audit_max_bytes" => {
                config.audit_max_bytes = reader
                    .whole_number(key, item, 0..=1 << 40, "0 keeps one file forever")
                    .unwrap_or(config.audit_max_bytes);
            }
            "audit_keep_files" => {
                config.audit_keep_files = reader
                    .whole_number(key, item, 1..=1000, "rotated files to keep")
                    .map_or(config.audit_keep_files, |n| n as u32);
            }
            "bpffs_dir" => reader.absolute_path(key, item, &mut config.bpffs_dir),
            "xdp_mode" => config.xdp_mode = reader.xdp_mode(item).unwrap_or(config.xdp_mode),
            "list_files" => {
                let base = path.parent().unwrap_or(Path::new(""));
                config.list_files = reader.list_files(key, item, base, 0);
            }
            "entries" => reader.entries("entries", item, &mut config.entries),
            "lists" => named = reader.lists(item, path.parent().unwrap_or(Path::new(""))),
            "include" => include = reader.include(item, path.parent().unwrap_or(Path::new(""))),
            "watch" => config.watch = reader.boolean(key, item).unwrap_or(config.watch),
            _ => reader
                .report
                .push(Problem::new(path, key_line, unknown_key(key, KEYS))),
        }
    }
    config.include = include.iter().map(|(pattern, _)| pattern.clone()).collect();
    reader.read_drop_ins(&include, drop_ins, config, &mut named);
    reader.assemble_lists(config, named);
    reader.check_list_files_once(config);
    reader.layout
}

/// "unknown key `activ`; did you mean `active`?", or the known keys if none is close.
pub fn unknown_key(key: &str, known: &[&str]) -> String {
    let lower = key.to_lowercase();
    // Part of a longer key ("ports") or a near miss ("activ", "interface").
    // A near miss ("activ", "entry") first, then part of a longer key ("ports").
    let close = known
        .iter()
        .map(|k| (strsim::jaro_winkler(&lower, k), k))
        .filter(|(score, _)| *score >= 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, k)| k)
        .or_else(|| {
            known
                .iter()
                .find(|k| lower.len() >= 4 && k.contains(lower.as_str()))
        });
    match close {
        Some(k) => format!("unknown key `{key}`; did you mean `{k}`?"),
        None => format!("unknown key `{key}` (known keys: {})", known.join(", ")),
    }
}

struct Reader<'a> {
    path: &'a Path,
    text: &'a str,
    lines: LineIndex<'a>,
    report: &'a mut Report,
    layout: Layout,
    /// This file's number in the set (see `Config::file_number`).
    file_number: u32,
}

impl Reader<'_> {
    fn fail(
        &mut self,
        key: &str,
        span: Option<Range<usize>>,
        entry: Option<String>,
        message: String,
    ) {
        self.layout.invalid.insert(key.to_owned());
        let mut problem = Problem::new(self.path, self.lines.line_of(span), message).key(key);
        problem.entry = entry;
        self.report.push(problem);
    }

    /// The source text of `value`, as the admin wrote it.
    fn raw(&self, value: &Value) -> &str {
        value
            .span()
            .and_then(|span| self.text.get(span))
            .unwrap_or_default()
            .trim()
    }

    /// What was found instead of what a key needs, e.g. "not `\"yes\"`".
    fn found(&self, item: &Item) -> String {
        match item {
            Item::Value(value) => format!("not {}", quoted(self.raw(value))),
            other => format!("not a {}", other.type_name()),
        }
    }

    /// How problems name list element `number`: by its string content, or its source text.
    fn label(&self, number: usize, value: &Value) -> String {
        let text = value.as_str().unwrap_or_else(|| self.raw(value));
        format!("entry {number} {}", quoted(text))
    }

    fn boolean(&mut self, key: &str, item: &Item) -> Option<bool> {
        let value = item.as_bool();
        if value.is_none() {
            let message = format!("must be true or false, {}", self.found(item));
            self.fail(key, item.span(), None, message);
        }
        value
    }

    /// The elements of the list at `key`, numbered from 1; anything else is reported with
    /// `expected`.
    fn array<'i>(&mut self, key: &str, item: &'i Item, expected: &str) -> Vec<(usize, &'i Value)> {
        match item.as_array() {
            Some(array) => array.iter().enumerate().map(|(i, v)| (i + 1, v)).collect(),
            None => {
                let message = format!("{expected}, {}", self.found(item));
                self.fail(key, item.span(), None, message);
                Vec::new()
            }
        }
    }

    fn interfaces(&mut self, item: &Item) -> Vec<String> {
        const KEY: &str = "interfaces";
        let expected = "must be a list of interface names, e.g. interfaces = [\"eth0\"]";
        let mut names = Vec::new();
        let mut seen = HashMap::new();
        for (number, value) in self.array(KEY, item, expected) {
            let label = Some(self.label(number, value));
            let checked = match value.as_str() {
                None => Err("must be a quoted interface name, e.g. \"eth0\"".to_owned()),
                Some(name) => check_interface_name(name).and_then(|()| match seen.get(name) {
                    Some(first) => Err(format!(
                        "listed twice (entries {first} and {number}); remove one"
                    )),
                    None => Ok(name),
                }),
            };
            match checked {
                Ok(name) => {
                    seen.insert(name, number);
                    names.push(name.to_owned());
                }
                Err(message) => self.fail(KEY, value.span(), label, message),
            }
        }
        names
    }

    /// The ports at `key` (`protected_tcp_ports`, or a list's `tcp_ports` or `udp_ports`).
    fn ports(&mut self, key: &str, item: &Item) -> BTreeSet<u16> {
        let short = key.rsplit('.').next().unwrap_or(key);
        let expected = format!("must be a list of port numbers, e.g. {short} = [22, 443]");
        let mut seen = BTreeMap::new();
        for (number, value) in self.array(key, item, &expected) {
            let checked = match value.as_integer() {
                None if value.is_str() => {
                    Err("must be a port number without quotes, e.g. 22".to_owned())
                }
                None => Err("must be a port number, e.g. 22".to_owned()),
                Some(port) => match u16::try_from(port) {
                    Ok(port) if port > 0 => match seen.get(&port) {
                        Some(first) => Err(format!(
                            "listed twice (entries {first} and {number}); remove one"
                        )),
                        None => Ok(port),
                    },
                    _ => Err("ports are 1..=65535".to_owned()),
                },
            };
            match checked {
                Ok(port) => {
                    seen.insert(port, number);
                }
                Err(message) => {
                    let label = Some(self.label(number, value));
                    self.fail(key, value.span(), label, message);
                }
            }
        }
        seen.into_keys().collect()
    }

    fn max_entries(&mut self, item: &Item) -> Option<u32> {
        let value = item.as_integer().and_then(|n| u32::try_from(n).ok());
        match value {
            Some(n) if (1..=MAX_ENTRIES_LIMIT).contains(&n) => Some(n),
            _ => {
                let message = format!(
                    "must be a whole number in 1..={MAX_ENTRIES_LIMIT} (the capacity of each \
                     address family's map), {}",
                    self.found(item)
                );
                self.fail("max_entries", item.span(), None, message);
                None
            }
        }
    }

    /// "127.0.0.1:9469" or "[::1]:9469".
    fn socket_address(&mut self, item: &Item) -> Option<std::net::SocketAddr> {
        let parsed = item.as_str().and_then(|t| t.parse().ok());
        if parsed.is_none() {
            let message = format!(
                "must be a quoted address and port, e.g. \"127.0.0.1:9469\", {}",
                self.found(item)
            );
            self.fail("metrics_listen", item.span(), None, message);
        }
        parsed
    }

    fn whole_number(
        &mut self,
        key: &str,
        item: &Item,
        range: std::ops::RangeInclusive<u64>,
        what: &str,
    ) -> Option<u64> {
        match item.as_integer().and_then(|n| u64::try_from(n).ok()) {
            Some(n) if range.contains(&n) => Some(n),
            _ => {
                let message = format!(
                    "must be a whole number in {}..={} ({what}), {}",
                    range.start(),
                    range.end(),
                    self.found(item)
                );
                self.fail(key, item.span(), None, message);
                None
            }
        }
    }

    /// Replaces `path` with the absolute path at `key`; its current value (the default) is
    /// the example in the error.
    fn absolute_path(&mut self, key: &str, item: &Item, path: &mut PathBuf) {
        match item.as_str() {
            Some(text) if Path::new(text).is_absolute() => *path = PathBuf::from(text),
            _ => {
                let message = format!(
                    "must be a quoted absolute path, e.g. \"{}\", {}",
                    path.display(),
                    self.found(item)
                );
                self.fail(key, item.span(), None, message);
            }
        }
    }

    /// A group name as getgrnam(3) takes it; whether it exists is checked when binding.
    fn group_name(&mut self, item: &Item, group: &mut String) {
        match item.as_str() {
            Some(name)
                if !name.is_empty()
                    && name
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"_-.".contains(&b)) =>
            {
                *group = name.to_owned();
            }
            _ => {
                let message = format!(
                    "must be a quoted group name, e.g. \"adm\", {}",
                    self.found(item)
                );
                self.fail("control_group", item.span(), None, message);
            }
        }
    }

    fn xdp_mode(&mut self, item: &Item) -> Option<XdpModeSetting> {
        let text = item.as_str().unwrap_or_default();
        let mode = match text {
            "auto" => return Some(XdpModeSetting::Auto),
            "driver" => return Some(XdpModeSetting::Driver),
            "generic" => return Some(XdpModeSetting::Generic),
            _ => match text.to_lowercase().as_str() {
                "auto" => Some("auto"),
                "driver" | "native" | "drv" => Some("driver"),
                "generic" | "skb" => Some("generic"),
                _ => None,
            },
        };
        let hint = mode.map_or_else(String::new, |m| format!("; did you mean \"{m}\"?"));
        let message = format!(
            "must be \"auto\", \"driver\" or \"generic\", {}{hint}",
            self.found(item)
        );
        self.fail("xdp_mode", item.span(), None, message);
        None
    }

    fn log_format(&mut self, item: &Item) -> Option<LogFormat> {
        match item.as_str() {
            Some("text") => Some(LogFormat::Text),
            Some("json") => Some(LogFormat::Json),
            _ => {
                let message = format!("must be \"text\" or \"json\", {}", self.found(item));
                self.fail("log_format", item.span(), None, message);
                None
            }
        }
    }

    /// The files at `key` (`list_files`, or a list's), for list `list` (see `Layout`).
    fn list_files(&mut self, key: &str, item: &Item, base: &Path, list: u8) -> Vec<PathBuf> {
        let expected = "must be a list of file paths, e.g. list_files = [\"partners.list\"]";
        let mut files: Vec<PathBuf> = Vec::new();
        let mut numbers = Vec::new();
        for (number, value) in self.array(key, item, expected) {
            let label = self.label(number, value);
            let file = match value.as_str().map(str::trim) {
                None => Err("must be a quoted file path, e.g. \"partners.list\"".to_owned()),
                Some("") => Err("empty file path".to_owned()),
                Some(name) => {
                    let file = base.join(name);
                    match files.iter().position(|f| *f == file) {
                        Some(i) => Err(format!(
                            "listed twice (entries {} and {number}); remove one",
                            numbers[i]
                        )),
                        None => Ok(file),
                    }
                }
            };
            match file {
                Ok(file) => {
                    let line = self.lines.line_of(value.span());
                    self.layout.list_files.push(ListFileAt {
                        file: self.path.to_path_buf(),
                        line,
                        label,
                        list,
                    });
                    files.push(file);
                    numbers.push(number);
                }
                Err(message) => self.fail(key, value.span(), Some(label), message),
            }
        }
        files
    }
}

/// The kernel's rules for a network interface name (`dev_valid_name`).
fn check_interface_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name == "." || name == ".." {
        return Err("not an interface name; see `ip -br link` for the names".to_owned());
    }
    if name.len() >= 16 {
        return Err(format!(
            "is {} bytes long; interface names are at most 15 (IFNAMSIZ)",
            name.len()
        ));
    }
    if name
        .chars()
        .any(|c| c == '/' || c == ':' || c.is_whitespace() || c.is_control())
    {
        return Err("interface names cannot contain '/', ':' or whitespace".to_owned());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_keys_get_the_closest_known_key() {
        let cases = [
            ("activ", "did you mean `active`?"),
            ("Active", "did you mean `active`?"),
            ("interface", "did you mean `interfaces`?"),
            ("ports", "did you mean `protected_tcp_ports`?"),
            ("protected_ports", "did you mean `protected_tcp_ports`?"),
            ("max_entry", "did you mean `max_entries`?"),
            ("mode", "did you mean `xdp_mode`?"),
            ("list_file", "did you mean `list_files`?"),
            ("entry", "did you mean `entries`?"),
        ];
        for (key, hint) in cases {
            let message = unknown_key(key, KEYS);
            assert!(
                message.starts_with(&format!("unknown key `{key}`; ")),
                "{message}"
            );
            assert!(message.ends_with(hint), "{key}: {message}");
        }
        assert_eq!(
            unknown_key("cidrr", ENTRY_KEYS),
            "unknown key `cidrr`; did you mean `cidr`?"
        );
        assert_eq!(
            unknown_key("network", ENTRY_KEYS),
            "unknown key `network` (known keys: cidr, comment, expires)"
        );
        assert!(unknown_key("zzz", KEYS).contains("(known keys: active, interfaces, "));
    }

    #[test]
    fn interface_names_follow_kernel_rules() {
        assert_eq!(check_interface_name("eth0"), Ok(()));
        assert_eq!(check_interface_name("enp3s0f1.100"), Ok(()));
        assert_eq!(check_interface_name("a23456789012345"), Ok(()));
        let too_long = check_interface_name("a234567890123456").expect_err("16 bytes");
        assert!(too_long.contains("at most 15 (IFNAMSIZ)"), "{too_long}");
        for name in [
            "",
            ".",
            "..",
            "eth/0",
            "eth0:1",
            "eth 0",
            "eth0\n",
            "\u{a0}eth",
        ] {
            assert!(check_interface_name(name).is_err(), "{name:?}");
        }
    }
}
