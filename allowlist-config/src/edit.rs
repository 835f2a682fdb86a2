//! Changes to the config file made on the admin's behalf (by allowlistctl through the
//! daemon). toml_edit keeps the admin's comments, order and formatting around the change, and
//! the new text replaces the old atomically, so a crash leaves either the old file or the new.

use std::collections::BTreeSet;
use std::fs::File;
use std::io::Write;
use std::path::Path;
use std::time::SystemTime;

use ipnet::IpNet;
use toml_edit::{ArrayOfTables, DocumentMut, InlineTable, Item, Table, TableLike, Value, value};

use crate::rules::Mode;

use super::parse_net;

#[derive(Debug, thiserror::Error)]
pub enum EditError {
    #[error("the config file does not parse: {0}")]
    Parse(#[from] toml_edit::TomlError),
    #[error("no entry `{0}` in the list's entries of the config file")]
    NotFound(IpNet),
    #[error("no [lists.{0}] table in the config file")]
    NoList(String),
    #[error(
        "the list `default` written with top-level keys has no UDP ports: move its keys into \
         [lists.default] (mode, tcp_ports, udp_ports, [[lists.default.entries]])"
    )]
    TopLevelUdp,
    #[error(
        "`entries` in the config file is neither [[entries]] tables nor a list of inline tables"
    )]
    Shape,
}

/// A parsed config file with the entry tables findable by their (normalised) network.
pub struct ConfigDoc {
    doc: DocumentMut,
}

impl ConfigDoc {
    pub fn parse(text: &str) -> Result<ConfigDoc, EditError> {
        Ok(ConfigDoc { doc: text.parse()? })
    }

    pub fn to_text(&self) -> String {
        self.doc.to_string()
    }

    /// The table holding a list's keys and entries: the file's top level for `None` (the list
    /// `default` written with top-level keys), else `[lists.NAME]`.
    fn list_table(&mut self, list: Option<&str>) -> Result<&mut dyn TableLike, EditError> {
        Ok(self.list_item(list)?.0)
    }

    /// `list_table`, and whether it is an inline table (which cannot hold `[[...]]` tables).
    fn list_item(&mut self, list: Option<&str>) -> Result<(&mut dyn TableLike, bool), EditError> {
        let Some(name) = list else {
            return Ok((self.doc.as_table_mut(), false));
        };
        let item = self
            .doc
            .get_mut("lists")
            .and_then(|lists| lists.get_mut(name))
            .ok_or_else(|| EditError::NoList(name.to_owned()))?;
        let inline = item.is_inline_table();
        let table = item
            .as_table_like_mut()
            .ok_or_else(|| EditError::NoList(name.to_owned()))?;
        Ok((table, inline))
    }

    /// Makes room in a drop-in for entries of the list `name`, defined in another file of the
    /// set: an implicit `[lists.NAME]`, so that only `[[lists.NAME.entries]]` is written.
    pub fn make_list_room(&mut self, name: &str) -> Result<(), EditError> {
        let implicit = || {
            let mut table = Table::new();
            table.set_implicit(true);
            Item::Table(table)
        };
        let lists = self
            .doc
            .as_table_mut()
            .entry("lists")
            .or_insert_with(implicit);
        let lists = lists.as_table_like_mut().ok_or(EditError::Shape)?;
        if lists.get(name).is_none() {
            lists.insert(name, implicit());
        }
        Ok(())
    }

    pub fn add_entry(&mut self, net: IpNet, comment: &str) -> Result<(), EditError> {
        self.add_entry_in(None, net, comment)
    }

    /// Adds an entry to `list` (see `list_table`).
    pub fn add_entry_in(
        &mut self,
        list: Option<&str>,
        net: IpNet,
        comment: &str,
    ) -> Result<(), EditError> {
        let (table, inline) = self.list_item(list)?;
        match table.get_mut("entries") {
            None if inline => {
                let mut entry = InlineTable::new();
                entry.insert("cidr", net.to_string().into());
                if !comment.is_empty() {
                    entry.insert("comment", comment.into());
                }
                let mut array = toml_edit::Array::new();
                array.push(entry);
                table.insert("entries", Item::Value(Value::Array(array)));
            }
            None => {
                let mut tables = ArrayOfTables::new();
                tables.push(entry_table(net, comment));
                table.insert("entries", Item::ArrayOfTables(tables));
            }
            Some(Item::ArrayOfTables(tables)) => tables.push(entry_table(net, comment)),
            Some(Item::Value(Value::Array(list))) => {
                let mut table = InlineTable::new();
                table.insert("cidr", net.to_string().into());
                if !comment.is_empty() {
                    table.insert("comment", comment.into());
                }
                list.push(table);
            }
            Some(_) => return Err(EditError::Shape),
        }
        Ok(())
    }

    /// Changes the network and/or comment of the entry for `net`, in place.
    pub fn edit_entry(
        &mut self,
        net: IpNet,
        new_net: Option<IpNet>,
        comment: Option<&str>,
    ) -> Result<(), EditError> {
        self.edit_entry_in(None, net, new_net, comment)
    }

    /// `edit_entry` in `list` (see `list_table`).
    pub fn edit_entry_in(
        &mut self,
        list: Option<&str>,
        net: IpNet,
        new_net: Option<IpNet>,
        comment: Option<&str>,
    ) -> Result<(), EditError> {
        let set = |cidr: &mut Value, comment_slot: Option<&mut Value>| {
            if let Some(new_net) = new_net {
                replace_keeping_decor(cidr, new_net.to_string().into());
            }
            if let (Some(text), Some(slot)) = (comment, comment_slot) {
                replace_keeping_decor(slot, text.into());
            }
        };
        match self.list_table(list)?.get_mut("entries") {
            Some(Item::ArrayOfTables(tables)) => {
                let table = tables
                    .iter_mut()
                    .find(|t| table_net(t.get("cidr").and_then(Item::as_value)) == Some(net))
                    .ok_or(EditError::NotFound(net))?;
                if let Some(text) = comment
                    && !table.contains_key("comment")
                {
                    table.insert("comment", value(text));
                }
                let mut comment_value = None;
                let mut cidr_value = None;
                for (key, item) in table.iter_mut() {
                    match key.get() {
                        "cidr" => cidr_value = item.as_value_mut(),
                        "comment" => comment_value = item.as_value_mut(),
                        _ => {}
                    }
                }
                set(cidr_value.ok_or(EditError::Shape)?, comment_value);
            }
            Some(Item::Value(Value::Array(list))) => {
                let table = list
                    .iter_mut()
                    .filter_map(Value::as_inline_table_mut)
                    .find(|t| table_net(t.get("cidr")) == Some(net))
                    .ok_or(EditError::NotFound(net))?;
                if let Some(text) = comment
                    && !table.contains_key("comment")
                {
                    table.insert("comment", text.into());
                }
                let mut comment_value = None;
                let mut cidr_value = None;
                for (key, item) in table.iter_mut() {
                    match key.get() {
                        "cidr" => cidr_value = Some(item),
                        "comment" => comment_value = Some(item),
                        _ => {}
                    }
                }
                set(cidr_value.ok_or(EditError::Shape)?, comment_value);
            }
            _ => return Err(EditError::NotFound(net)),
        }
        Ok(())
    }

    /// Gives the entry for `net` in `list` an end (`expires`), or with `None` makes it
    /// lasting.
    pub fn set_end_in(
        &mut self,
        list: Option<&str>,
        net: IpNet,
        end: Option<SystemTime>,
    ) -> Result<(), EditError> {
        let table: &mut dyn TableLike = match self.list_table(list)?.get_mut("entries") {
            Some(Item::ArrayOfTables(tables)) => tables
                .iter_mut()
                .find(|t| table_net(t.get("cidr").and_then(Item::as_value)) == Some(net))
                .map(|t| t as &mut dyn TableLike),
            Some(Item::Value(Value::Array(list))) => list
                .iter_mut()
                .filter_map(Value::as_inline_table_mut)
                .find(|t| table_net(t.get("cidr")) == Some(net))
                .map(|t| t as &mut dyn TableLike),
            _ => None,
        }
        .ok_or(EditError::NotFound(net))?;
        match end {
            Some(end) => {
                let new = Value::Datetime(toml_edit::Formatted::new(toml_datetime(end)));
                match table.get_mut("expires").and_then(Item::as_value_mut) {
                    Some(slot) => replace_keeping_decor(slot, new),
                    None => {
                        table.insert("expires", Item::Value(new));
                    }
                }
            }
            None => {
                table.remove("expires");
            }
        }
        Ok(())
    }

    pub fn remove_entry(&mut self, net: IpNet) -> Result<(), EditError> {
        self.remove_entry_in(None, net)
    }

    /// `remove_entry` from `list` (see `list_table`).
    pub fn remove_entry_in(&mut self, list: Option<&str>, net: IpNet) -> Result<(), EditError> {
        let mut trailing = self.doc.trailing().as_str().unwrap_or_default().to_owned();
        let mut trailing_changed = false;
        match self.list_table(list)?.get_mut("entries") {
            Some(Item::ArrayOfTables(tables)) => {
                let index = tables
                    .iter()
                    .position(|t| table_net(t.get("cidr").and_then(Item::as_value)) == Some(net))
                    .ok_or(EditError::NotFound(net))?;
                // Text above the table up to its last blank line belongs to what is above (a
                // section heading, say), not to this entry: keep it.
                let prefix = tables
                    .get(index)
                    .and_then(|t| t.decor().prefix())
                    .and_then(|p| p.as_str())
                    .unwrap_or_default()
                    .to_owned();
                let kept = prefix.rfind("\n\n").map(|end| prefix[..end + 2].to_owned());
                tables.remove(index);
                if let Some(kept) = kept {
                    match tables.get_mut(index) {
                        Some(next) => {
                            let next_prefix = next
                                .decor()
                                .prefix()
                                .and_then(|p| p.as_str())
                                .unwrap_or_default()
                                .to_owned();
                            next.decor_mut()
                                .set_prefix(kept + next_prefix.trim_start_matches('\n'));
                        }
                        None => {
                            trailing = kept.trim_end_matches('\n').to_owned() + "\n" + &trailing;
                            trailing_changed = true;
                        }
                    }
                }
            }
            Some(Item::Value(Value::Array(list))) => {
                let index = list
                    .iter()
                    .position(|v| {
                        v.as_inline_table().and_then(|t| table_net(t.get("cidr"))) == Some(net)
                    })
                    .ok_or(EditError::NotFound(net))?;
                list.remove(index);
            }
            _ => return Err(EditError::NotFound(net)),
        }
        if trailing_changed {
            self.doc.set_trailing(trailing);
        }
        Ok(())
    }

    /// Sets a list's mode: `active` for the top-level `default` (`None`; enforce or off),
    /// `mode` in `[lists.NAME]`.
    pub fn set_mode(&mut self, list: Option<&str>, mode: Mode) -> Result<(), EditError> {
        if list.is_none() {
            self.set_active(mode == Mode::Enforce);
            return Ok(());
        }
        let table = self.list_table(list)?;
        match table.get_mut("mode").and_then(Item::as_value_mut) {
            Some(current) => replace_keeping_decor(current, mode.name().into()),
            None => {
                table.insert("mode", value(mode.name()));
            }
        }
        Ok(())
    }

    /// Adds `[lists.NAME]` with its mode and ports (after the other lists).
    pub fn add_list(
        &mut self,
        name: &str,
        mode: Mode,
        tcp_ports: &BTreeSet<u16>,
        udp_ports: &BTreeSet<u16>,
    ) -> Result<(), EditError> {
        let lists = self.doc.entry("lists").or_insert_with(|| {
            let mut lists = Table::new();
            lists.set_implicit(true);
            Item::Table(lists)
        });
        let lists = lists.as_table_like_mut().ok_or(EditError::Shape)?;
        let mut table = Table::new();
        table.insert("mode", value(mode.name()));
        if !tcp_ports.is_empty() {
            table.insert("tcp_ports", value(ports_array(tcp_ports)));
        }
        if !udp_ports.is_empty() {
            table.insert("udp_ports", value(ports_array(udp_ports)));
        }
        lists.insert(name, Item::Table(table));
        Ok(())
    }

    /// Removes `[lists.NAME]` and its entries.
    pub fn remove_list(&mut self, name: &str) -> Result<(), EditError> {
        self.doc
            .get_mut("lists")
            .and_then(Item::as_table_like_mut)
            .and_then(|lists| lists.remove(name))
            .map(drop)
            .ok_or_else(|| EditError::NoList(name.to_owned()))
    }

    /// Replaces a list's TCP or UDP ports (`protected_tcp_ports` for the top-level `default`,
    /// which has no UDP ports).
    pub fn set_ports(
        &mut self,
        list: Option<&str>,
        udp: bool,
        ports: &BTreeSet<u16>,
    ) -> Result<(), EditError> {
        let key = match (list, udp) {
            (None, true) => return Err(EditError::TopLevelUdp),
            (None, false) => "protected_tcp_ports",
            (Some(_), false) => "tcp_ports",
            (Some(_), true) => "udp_ports",
        };
        let table = self.list_table(list)?;
        match table.get_mut(key).and_then(Item::as_value_mut) {
            Some(current) => replace_keeping_decor(current, Value::Array(ports_array(ports))),
            None => {
                table.insert(key, value(ports_array(ports)));
            }
        }
        Ok(())
    }

    pub fn set_active(&mut self, active: bool) {
        match self.doc.get_mut("active").and_then(Item::as_value_mut) {
            Some(current) => replace_keeping_decor(current, active.into()),
            None => {
                self.doc.insert("active", value(active));
            }
        }
    }
}

fn ports_array(ports: &BTreeSet<u16>) -> toml_edit::Array {
    ports.iter().map(|&p| i64::from(p)).collect()
}

fn entry_table(net: IpNet, comment: &str) -> Table {
    let mut table = Table::new();
    table.insert("cidr", value(net.to_string()));
    if !comment.is_empty() {
        table.insert("comment", value(comment));
    }
    table
}

/// `end` as a TOML date-time in UTC, to the second: `2026-12-24T18:00:00Z`. Cut down, not
/// rounded: an entry never lasts longer than it was given.
fn toml_datetime(end: SystemTime) -> toml_edit::Datetime {
    let end = jiff::Timestamp::try_from(end)
        .unwrap_or(jiff::Timestamp::MAX)
        .round(
            jiff::TimestampRound::new()
                .smallest(jiff::Unit::Second)
                .mode(jiff::RoundMode::Trunc),
        )
        .unwrap_or(jiff::Timestamp::MAX);
    end.strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
        .parse()
        .expect("a UTC date-time is a TOML date-time")
}

fn table_net(cidr: Option<&Value>) -> Option<IpNet> {
    parse_net(cidr?.as_str()?).ok()
}

/// Replaces a value but keeps the whitespace and comments around it.
fn replace_keeping_decor(slot: &mut Value, mut new: Value) {
    *new.decor_mut() = slot.decor().clone();
    *slot = new;
}

/// Replaces `path` with `text`: temp file in the same directory, fsync, rename over the
/// original, fsync the directory. Keeps the original file's permissions.
pub fn write_atomic(path: &Path, text: &str) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.tmp-{}", std::process::id()));
    let result = (|| {
        let mut file = File::create(&tmp)?;
        if let Ok(meta) = std::fs::metadata(path) {
            file.set_permissions(meta.permissions())?;
        }
        file.write_all(text.as_bytes())?;
        file.sync_all()?;
        std::fs::rename(&tmp, path)?;
        File::open(dir)?.sync_all()
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    const FILE: &str = r#"# Hosts allowed to reach SSH.
active = true   # enforce
interfaces = ["eth0"]
protected_tcp_ports = [22]

# The office.
[[entries]]
cidr = "198.18.1.0/24"   # NAT range
comment = "office"

[[entries]]
cidr = "2001:db8::a"
"#;

    fn net(s: &str) -> IpNet {
        s.parse().unwrap()
    }

    #[test]
    fn add_appends_and_keeps_everything_else() {
        let mut doc = ConfigDoc::parse(FILE).unwrap();
        doc.add_entry(net("198.18.2.0/24"), "lab B").unwrap();
        let text = doc.to_text();
        assert!(
            text.starts_with(FILE),
            "the original bytes are untouched:\n{text}"
        );
        assert!(
            text.ends_with("[[entries]]\ncidr = \"198.18.2.0/24\"\ncomment = \"lab B\"\n"),
            "{text}"
        );
    }

    #[test]
    fn edit_changes_only_the_values() {
        let mut doc = ConfigDoc::parse(FILE).unwrap();
        doc.edit_entry(
            net("198.18.1.0/24"),
            Some(net("198.18.4.0/22")),
            Some("office, wider"),
        )
        .unwrap();
        let expected = FILE
            .replace(
                "\"198.18.1.0/24\"   # NAT range",
                "\"198.18.4.0/22\"   # NAT range",
            )
            .replace("comment = \"office\"", "comment = \"office, wider\"");
        assert_eq!(doc.to_text(), expected);

        // Matching is by network, so a single address written without /128 is found.
        let mut doc = ConfigDoc::parse(FILE).unwrap();
        doc.edit_entry(net("2001:db8::a/128"), None, Some("jump host"))
            .unwrap();
        assert!(
            doc.to_text()
                .ends_with("cidr = \"2001:db8::a\"\ncomment = \"jump host\"\n")
        );
    }

    #[test]
    fn an_end_is_set_changed_and_taken_away() {
        let end = |text: &str| SystemTime::from(text.parse::<jiff::Timestamp>().unwrap());
        let mut doc = ConfigDoc::parse(FILE).unwrap();
        doc.set_end_in(
            None,
            net("2001:db8::a/128"),
            Some(end("2026-12-24T18:00:00.4Z")),
        )
        .unwrap();
        assert!(
            doc.to_text()
                .ends_with("cidr = \"2001:db8::a\"\nexpires = 2026-12-24T18:00:00Z\n"),
            "{}",
            doc.to_text()
        );
        doc.set_end_in(
            None,
            net("2001:db8::a/128"),
            Some(end("2026-12-25T08:00:00Z")),
        )
        .unwrap();
        assert!(doc.to_text().ends_with("expires = 2026-12-25T08:00:00Z\n"));
        doc.set_end_in(None, net("2001:db8::a/128"), None).unwrap();
        assert_eq!(doc.to_text(), FILE);
        assert!(matches!(
            doc.set_end_in(None, net("198.18.99.0/24"), None),
            Err(EditError::NotFound(_))
        ));
    }

    #[test]
    fn remove_and_activate() {
        let mut doc = ConfigDoc::parse(FILE).unwrap();
        doc.remove_entry(net("2001:db8::a/128")).unwrap();
        doc.set_active(false);
        let text = doc.to_text();
        assert!(text.contains("active = false   # enforce"), "{text}");
        assert!(!text.contains("2001:db8::a"));
        assert!(
            text.contains("# The office.\n[[entries]]\ncidr = \"198.18.1.0/24\"   # NAT range")
        );
        assert!(matches!(
            doc.remove_entry(net("198.18.9.0/24")),
            Err(EditError::NotFound(_))
        ));
    }

    #[test]
    fn removing_an_entry_keeps_the_heading_above_it() {
        let text = "# hosts\nactive = false\n\n# ---- entries ----\n\n# office\n[[entries]]\ncidr = \"198.18.1.0/24\"\n\n[[entries]]\ncidr = \"198.18.2.0/24\"\n";
        let mut doc = ConfigDoc::parse(text).unwrap();
        doc.remove_entry(net("198.18.1.0/24")).unwrap();
        assert_eq!(
            doc.to_text(),
            "# hosts\nactive = false\n\n# ---- entries ----\n\n[[entries]]\ncidr = \"198.18.2.0/24\"\n"
        );
        let mut doc = ConfigDoc::parse(text).unwrap();
        doc.remove_entry(net("198.18.2.0/24")).unwrap();
        doc.remove_entry(net("198.18.1.0/24")).unwrap();
        assert_eq!(
            doc.to_text(),
            "# hosts\nactive = false\n\n# ---- entries ----\n"
        );
    }

    #[test]
    fn inline_entries_are_edited_too() {
        let text = "entries = [{ cidr = \"198.18.1.0/24\", comment = \"a\" }]\n";
        let mut doc = ConfigDoc::parse(text).unwrap();
        doc.add_entry(net("198.18.2.0/24"), "b").unwrap();
        doc.edit_entry(net("198.18.1.0/24"), None, Some("A"))
            .unwrap();
        let out = doc.to_text();
        assert!(out.contains("comment = \"A\""), "{out}");
        assert!(out.contains("cidr = \"198.18.2.0/24\""), "{out}");
        doc.remove_entry(net("198.18.1.0/24")).unwrap();
        assert!(!doc.to_text().contains("198.18.1.0"));
    }

    #[test]
    fn atomic_write_replaces_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("allowlist.toml");
        std::fs::write(&path, "old").unwrap();
        write_atomic(&path, "new").unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "new");
        assert_eq!(
            std::fs::read_dir(dir.path()).unwrap().count(),
            1,
            "no temp file left"
        );
    }
}
