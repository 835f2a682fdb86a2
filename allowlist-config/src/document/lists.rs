//! The `[lists.NAME]` tables: each list's mode, ports, entries and list files; and the list
//! `default`, which the top-level `active`, `protected_tcp_ports`, `[[entries]]` and
//! `list_files` write.

use std::collections::BTreeMap;
use std::path::Path;

use toml_edit::Item;

use super::{Reader, unknown_key};
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
    files: Vec<(Option<usize>, String, u8)>,
    /// Lines of its `tcp_ports` and `udp_ports`.
    port_lines: [Option<usize>; 2],
}

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
            };
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
                let problem = Problem::new(self.path, clash.list.line, message);
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
            });
            port_lines.push([self.layout.line("protected_tcp_ports"), None]);
        }
        for n in named {
            if config.lists.iter().any(|l| l.name == n.list.name) {
                continue;
            }
            let index = config.lists.len() as u8;
            config
                .entries
                .extend(n.entries.into_iter().map(|e| Entry { list: index, ..e }));
            self.layout.inline.extend(n.inline);
            config.list_files.extend(n.list.list_files.iter().cloned());
            self.layout.list_files.extend(
                n.files
                    .into_iter()
                    .map(|(line, label, _)| (line, label, index)),
            );
            port_lines.push(n.port_lines);
            config.lists.push(n.list);
        }
        if config.lists.len() > MAX_LISTS {
            let extra = &config.lists[MAX_LISTS];
            let message = format!(
                "{} lists, more than the {MAX_LISTS} the filter tells apart; merge some",
                config.lists.len()
            );
            let problem = Problem::new(self.path, extra.line, message);
            self.report
                .push(problem.key(&format!("lists.{}", extra.name)));
        }
        self.check_ports_in_one_list(config, &port_lines);
    }

    /// A port belongs to one list: the second list naming it is refused, naming the first.
    fn check_ports_in_one_list(&mut self, config: &Config, lines: &[[Option<usize>; 2]]) {
        let mut first: BTreeMap<(usize, u16), usize> = BTreeMap::new();
        for (index, list) in config.lists.iter().enumerate() {
            for (proto, ports) in [&list.tcp_ports, &list.udp_ports].into_iter().enumerate() {
                for &port in ports {
                    let Some(&other) = first.get(&(proto, port)) else {
                        first.insert((proto, port), index);
                        continue;
                    };
                    let (protocol, key) = [("TCP", "tcp_ports"), ("UDP", "udp_ports")][proto];
                    let other = &config.lists[other];
                    let at = other
                        .line
                        .map_or(String::new(), |line| format!(", line {line}"));
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
                    self.report
                        .push(Problem::new(self.path, line, message).key(&key));
                }
            }
        }
    }
}
