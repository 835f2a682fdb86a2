//! The `[lists.NAME]` tables: each list's mode, ports, entries and list files; and the list
//! `default`, which the top-level `active`, `protected_tcp_ports`, `[[entries]]` and
//! `list_files` write.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use toml_edit::Item;

use super::{ListFileAt, Reader, unknown_key};
use crate::error::{Problem, quoted};
use crate::rules::{DEFAULT_LIST, MAX_LISTS, Mode, valid_list_name};
use crate::{Config, Entry, ListConfig};

const LIST_KEYS: &[&str] = &["mode", "tcp_ports", "udp_ports", "entries", "list_files"];
/// The top-level keys that write the list `default`.
const DEFAULT_KEYS: [&str; 4] = ["active", "protected_tcp_ports", "entries", "list_files"];

/// A `[lists.NAME]` table as read, before the lists are numbered.
pub(super) struct Named {
    list: ListConfig,
    entries: Vec<Entry>,
    inline: Vec<usize>,
    files: Vec<ListFileAt>,
    /// Lines of its `tcp_ports` and `udp_ports`.
    port_lines: [Option<usize>; 2],
    /// The file of the set it is written in.
    file: PathBuf,
    /// Whether it says what the list is (`mode`, `tcp_ports` or `udp_ports`), rather than
    /// only adding entries or list files to a list defined in another file of the set.
    defines: bool,
}

/// The keys that define a list: only one file of the set may write them for a list.
const DEFINING_KEYS: [&str; 3] = ["mode", "tcp_ports", "udp_ports"];

impl Reader<'_> {
    /// Every `[lists.NAME]` table of `item` (the `lists` table).
    pub(super) fn lists(&mut self, item: &Item, base: &Path) -> Vec<Named> {
        let Some(table) = item.as_table_like() else {
            let message = format!(
                "must be tables such as [lists.ssh] with tcp_ports = [22], {}",
                self.found(item)
            );
            self.fail("lists", item.span(), None, message);
            return Vec::new();
        };
        let mut named = Vec::new();
        for (name, item) in table.iter() {
            let key = format!("lists.{name}");
            let header = table.key(name).and_then(|k| k.span());
            if !valid_list_name(name) {
                let message = format!(
                    "list name {} must be 1 to 32 of a-z, 0-9, `_` and `-`, e.g. [lists.ssh]",
                    quoted(name)
                );
                self.fail(&key, header, None, message);
                continue;
            }
            let Some(fields) = item.as_table_like() else {
                let message = format!(
                    "must be a table, e.g. [lists.{name}] with tcp_ports = [22], {}",
                    self.found(item)
                );
                self.fail(&key, item.span().or(header), None, message);
                continue;
            };
            let mut list = ListConfig {
                name: name.to_owned(),
                mode: Mode::Enforce,
                tcp_ports: Default::default(),
                udp_ports: Default::default(),
                list_files: Vec::new(),
                line: self.lines.line_of(header),
                file: (self.file_number != 0).then(|| self.path.to_path_buf()),
            };
            let defines = fields
                .iter()
                .any(|(field, _)| DEFINING_KEYS.contains(&field));
            let (mut entries, mut port_lines) = (Vec::new(), [None, None]);
            let (inline_from, files_from) =
                (self.layout.inline.len(), self.layout.list_files.len());
            for (field, value) in fields.iter() {
                let field_key = format!("{key}.{field}");
                let field_span = fields.key(field).and_then(|k| k.span());
                match field {
                    "mode" => {
                        if let Some(mode) = self.mode(&field_key, value) {
                            list.mode = mode;
                        }
                    }
                    "tcp_ports" => {
                        port_lines[0] = self.lines.line_of(field_span);
                        list.tcp_ports = self.ports(&field_key, value);
                    }
                    "udp_ports" => {
                        port_lines[1] = self.lines.line_of(field_span);
                        list.udp_ports = self.ports(&field_key, value);
                    }
                    "entries" => self.entries(&field_key, value, &mut entries),
                    "list_files" => {
                        list.list_files = self.list_files(&field_key, value, base, 0);
                    }
                    _ => {
                        let message = format!("{} in [{key}]", unknown_key(field, LIST_KEYS));
                        self.fail(&field_key, field_span, None, message);
                    }
                }
            }
            named.push(Named {
                list,
                entries,
                inline: self.layout.inline.split_off(inline_from),
                files: self.layout.list_files.split_off(files_from),
                port_lines,
                file: self.path.to_path_buf(),
                defines,
            });
        }
        named
    }

    fn mode(&mut self, key: &str, item: &Item) -> Option<Mode> {
        match item.as_str().and_then(Mode::parse) {
            Some(mode) => Some(mode),
            None => {
                let message = format!(
                    "must be \"enforce\", \"monitor\" or \"off\", {}",
                    self.found(item)
                );
                self.fail(key, item.span(), None, message);
                None
            }
        }
    }

    /// Numbers the lists (`default` first, when the top-level keys write it or no list is
    /// named), puts the named lists' entries and files after `default`'s, and checks what
    /// takes all lists to see: how many there are and that no port is in two.
    pub(super) fn assemble_lists(&mut self, config: &mut Config, named: Vec<Named>) {
        let default_written = DEFAULT_KEYS.iter().any(|k| self.layout.is_set(k));
        let mut port_lines = Vec::new();
        if default_written || named.is_empty() {
            if let Some(clash) = named.iter().find(|n| n.list.name == DEFAULT_LIST) {
                let message = "[lists.default] and the top-level `active`, \
                               `protected_tcp_ports`, [[entries]] or `list_files` both write \
                               the list `default`: move those keys into [lists.default]"
                    .to_owned();
                let problem = Problem::new(&clash.file, clash.list.line, message);
                self.report.push(problem.key("lists.default"));
            }
            config.lists.push(ListConfig {
                name: DEFAULT_LIST.to_owned(),
                mode: if config.active {
                    Mode::Enforce
                } else {
                    Mode::Off
                },
                tcp_ports: config.protected_tcp_ports.clone(),
                udp_ports: Default::default(),
                list_files: config.list_files.clone(),
                line: None,
                file: None,
            });
            port_lines.push([self.layout.line("protected_tcp_ports"), None]);
        }
        // Whether each list's definition was read yet (`default` is the top-level keys').
        let mut defined = vec![true; config.lists.len()];
        for n in named {
            let held = config.lists.iter().position(|l| l.name == n.list.name);
            if held.is_some_and(|i| config.lists[i].line.is_none()) {
                continue; // `default`, refused above
            }
            let index = held.unwrap_or(config.lists.len());
            if let Some(i) = held {
                if n.defines && defined[i] {
                    self.defined_twice(&config.lists[i], &n);
                } else if n.defines {
                    let list = &mut config.lists[i];
                    (list.mode, list.tcp_ports, list.udp_ports) = (
                        n.list.mode,
                        n.list.tcp_ports.clone(),
                        n.list.udp_ports.clone(),
                    );
                    (list.line, list.file) = (n.list.line, n.list.file.clone());
                    port_lines[i] = n.port_lines;
                    defined[i] = true;
                }
                config.lists[i]
                    .list_files
                    .extend(n.list.list_files.iter().cloned());
            }
            let index_u8 = index as u8;
            config.entries.extend(n.entries.into_iter().map(|e| Entry {
                list: index_u8,
                ..e
            }));
            self.layout.inline.extend(n.inline);
            config.list_files.extend(n.list.list_files.iter().cloned());
            self.layout
                .list_files
                .extend(n.files.into_iter().map(|at| ListFileAt {
                    list: index_u8,
                    ..at
                }));
            if held.is_none() {
                port_lines.push(n.port_lines);
                defined.push(n.defines);
                config.lists.push(n.list);
            }
        }
        if config.lists.len() > MAX_LISTS {
            let extra = &config.lists[MAX_LISTS];
            let message = format!(
                "{} lists, more than the {MAX_LISTS} the filter tells apart; merge some",
                config.lists.len()
            );
            let file = extra.file.as_deref().unwrap_or(self.path);
            let problem = Problem::new(file, extra.line, message);
            self.report
                .push(problem.key(&format!("lists.{}", extra.name)));
        }
        self.check_ports_in_one_list(config, &port_lines);
    }

    /// `n` defines `list`, which another file of the set (or the same) defines already.
    fn defined_twice(&mut self, list: &ListConfig, n: &Named) {
        let first = list.file.as_deref().unwrap_or(self.path);
        let at = list.line.map_or(String::new(), |line| format!(":{line}"));
        let message = format!(
            "list `{}` is already defined at {}{at}; define a list (its mode and ports) in one \
             file and add to it from the others with only [[lists.{}.entries]] or list_files",
            list.name,
            first.display(),
            list.name
        );
        let problem = Problem::new(&n.file, n.list.line, message);
        self.report
            .push(problem.key(&format!("lists.{}", list.name)));
    }

    /// A port belongs to one list: the second list naming it is refused, naming the first.
    fn check_ports_in_one_list(&mut self, config: &Config, lines: &[[Option<usize>; 2]]) {
        let mut first: BTreeMap<(usize, u16), usize> = BTreeMap::new();
        for (index, list) in config.lists.iter().enumerate() {
            for (proto, ports) in [&list.tcp_ports, &list.udp_ports].into_iter().enumerate() {
                for &port in ports {
                    let Some(&other_index) = first.get(&(proto, port)) else {
                        first.insert((proto, port), index);
                        continue;
                    };
                    let (protocol, key) = [("TCP", "tcp_ports"), ("UDP", "udp_ports")][proto];
                    let other = &config.lists[other_index];
                    let other_file = other.file.as_deref().unwrap_or(self.path);
                    let at = if list.file.as_deref().unwrap_or(self.path) == other_file {
                        other
                            .line
                            .map_or(String::new(), |line| format!(", line {line}"))
                    } else {
                        // In another file of the set: which, and where it lists the port.
                        let line = lines[other_index][proto].or(other.line);
                        let line = line.map_or(String::new(), |line| format!(":{line}"));
                        format!(" ({}{line})", other_file.display())
                    };
                    let message = format!(
                        "{protocol} port {port} is already protected by list `{}`{at}; a port \
                         belongs to one list: remove it from one of them",
                        other.name
                    );
                    let key = if list.line.is_none() {
                        "protected_tcp_ports".to_owned()
                    } else {
                        format!("lists.{}.{key}", list.name)
                    };
                    let line = lines[index][proto].or(list.line);
                    let file = list.file.as_deref().unwrap_or(self.path);
                    self.report
                        .push(Problem::new(file, line, message).key(&key));
                }
            }
        }
    }
}
