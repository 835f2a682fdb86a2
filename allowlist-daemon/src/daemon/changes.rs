//! What a change changed, between two configs: the entries added and removed (for reload
//! reports) and the before/after values of audit records.

use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};

use allowlist_config::rules::DEFAULT_LIST;
use allowlist_config::words;
use allowlist_config::{Config, Entry};
use allowlist_control::protocol::{EntryInfo, MergedFile};

pub fn entry_info(config: &Config, entry: &Entry) -> EntryInfo {
    EntryInfo {
        cidr: entry.net.to_string(),
        comment: entry.comment.to_string(),
        origin: entry.origin().to_string(),
        hits: 0,
        last_hit: None,
        list: list_name(config, entry).to_owned(),
        expires: config.end_of(entry).map(super::expiry::rfc3339),
        in_list_file: config.file_number(&entry.file).is_none(),
    }
}

/// The name of `entry`'s list.
pub fn list_name<'a>(config: &'a Config, entry: &Entry) -> &'a str {
    config
        .lists
        .get(usize::from(entry.list))
        .map_or(DEFAULT_LIST, |l| l.name.as_str())
}

/// The list files of `config` whose lines were merged into other entries, and how many each.
pub fn merged_files(config: &Config) -> Vec<MergedFile> {
    config
        .merged
        .iter()
        .map(|m| MergedFile {
            file: m.file.display().to_string(),
            lines: m.lines as u64,
        })
        .collect()
}

/// One network of either config, met in network order.
enum Side<'a> {
    Old(&'a Entry),
    New(&'a Entry),
    Both(&'a Entry, &'a Entry),
}

/// Calls `each` for every entry of `old` and `new` (an entry is a network in a list, lists
/// matched by name), in network order and, within a network, in list-name order: one merge
/// of the two, so that comparing million-entry configs builds nothing.
fn walk<'a>(old: &'a Config, new: &'a Config, mut each: impl FnMut(Side<'a>)) {
    let mut olds = in_entry_order(old).peekable();
    let mut news = in_entry_order(new).peekable();
    let key = |config: &'a Config, e: &'a Entry| (e.net, list_name(config, e));
    loop {
        let side = match (olds.peek(), news.peek()) {
            (None, None) => break,
            (Some(_), None) => Side::Old(olds.next().expect("peeked")),
            (None, Some(_)) => Side::New(news.next().expect("peeked")),
            (Some(o), Some(n)) => match key(old, o).cmp(&key(new, n)) {
                std::cmp::Ordering::Less => Side::Old(olds.next().expect("peeked")),
                std::cmp::Ordering::Greater => Side::New(news.next().expect("peeked")),
                std::cmp::Ordering::Equal => {
                    Side::Both(olds.next().expect("peeked"), news.next().expect("peeked"))
                }
            },
        };
        each(side);
    }
}

/// `config`'s entries in network order and, within a network, in list-name order.
fn in_entry_order(config: &Config) -> Box<dyn Iterator<Item = &Entry> + '_> {
    // One list holds each network once: network order is the order.
    if config.lists.len() <= 1 {
        return Box::new(config.entries_by_net());
    }
    let mut by_net = config.entries_by_net().peekable();
    // The entries of one network (one per list it is in), reused from network to network.
    let mut run: Vec<&Entry> = Vec::new();
    Box::new(std::iter::from_fn(move || {
        if run.is_empty() {
            let first = by_net.next()?;
            run.push(first);
            run.extend(std::iter::from_fn(|| {
                by_net.next_if(|e| e.net == first.net)
            }));
            if run.len() > 1 {
                run.sort_by(|a, b| list_name(config, b).cmp(list_name(config, a)));
            }
        }
        run.pop()
    }))
}

/// Entries only in `new`, and entries only in `old`.
pub fn entries(old: &Config, new: &Config) -> (Vec<EntryInfo>, Vec<EntryInfo>) {
    let (mut added, mut removed) = (Vec::new(), Vec::new());
    walk(old, new, |side| match side {
        Side::New(e) => added.push(entry_info(new, e)),
        Side::Old(e) => removed.push(entry_info(old, e)),
        Side::Both(..) => {}
    });
    (added, removed)
}

/// One line saying what going from `old` to `new` changes: the summary of every change and
/// reload, and of a dry run.
pub fn summary(old: &Config, new: &Config) -> String {
    changes(old, new).summary
}

/// The summary line, given how many entries were added, removed and recommented.
fn summary_line(
    old: &Config,
    new: &Config,
    added: usize,
    removed: usize,
    (recommented, retimed): (usize, usize),
) -> String {
    let mut parts = vec![format!("+{added} -{removed} entries")];
    if recommented > 0 {
        parts.push(format!(
            "{} changed",
            words::count(recommented, "comment", "comments")
        ));
    }
    if retimed > 0 {
        parts.push(format!("{} changed", words::count(retimed, "end", "ends")));
    }
    let ports_added: Vec<u16> = new
        .protected_tcp_ports
        .difference(&old.protected_tcp_ports)
        .copied()
        .collect();
    let ports_removed: Vec<u16> = old
        .protected_tcp_ports
        .difference(&new.protected_tcp_ports)
        .copied()
        .collect();
    if !ports_added.is_empty() || !ports_removed.is_empty() {
        parts.push(format!(
            "ports +[{}] -[{}]",
            words::list(&ports_added),
            words::list(&ports_removed)
        ));
    }
    if old.active != new.active {
        parts.push(
            if new.active {
                "now active"
            } else {
                "now inactive"
            }
            .to_owned(),
        );
    }
    parts.extend(list_changes(old, new));
    let attach: Vec<&String> = new
        .interfaces
        .iter()
        .filter(|i| !old.interfaces.contains(i))
        .collect();
    let detach: Vec<&String> = old
        .interfaces
        .iter()
        .filter(|i| !new.interfaces.contains(i))
        .collect();
    if !attach.is_empty() || !detach.is_empty() {
        parts.push(format!(
            "interfaces attached [{}] detached [{}]",
            words::list(&attach),
            words::list(&detach)
        ));
    }
    parts.join(", ")
}

/// An entry as an audit record lists it; its list is named unless it is `default`.
/// What changed about the lists themselves: added, removed, a new mode or new ports.
fn list_changes(old: &Config, new: &Config) -> Vec<String> {
    if !old.has_named_lists() && !new.has_named_lists() {
        return Vec::new();
    }
    let mut parts = Vec::new();
    for list in &new.lists {
        let Some(was) = old.lists.iter().find(|l| l.name == list.name) else {
            parts.push(format!("list `{}` added ({})", list.name, list.mode.name()));
            continue;
        };
        if was.mode != list.mode {
            parts.push(format!(
                "list `{}` now {} (was {})",
                list.name,
                list.mode.name(),
                was.mode.name()
            ));
        }
        for (protocol, before, after) in [
            ("tcp", &was.tcp_ports, &list.tcp_ports),
            ("udp", &was.udp_ports, &list.udp_ports),
        ] {
            if before != after {
                let added: Vec<u16> = after.difference(before).copied().collect();
                let removed: Vec<u16> = before.difference(after).copied().collect();
                parts.push(format!(
                    "list `{}` {protocol} ports +[{}] -[{}]",
                    list.name,
                    words::list(&added),
                    words::list(&removed)
                ));
            }
        }
    }
    for list in old.lists.iter().filter(|l| new.list(&l.name).is_none()) {
        parts.push(format!("list `{}` removed", list.name));
    }
    parts
}

/// Every list's mode and ports, as audit records show them.
pub fn lists_value(config: &Config) -> Value {
    config
        .lists
        .iter()
        .map(|l| {
            json!({
                "name": l.name,
                "mode": l.mode.name(),
                "tcp_ports": l.tcp_ports,
                "udp_ports": l.udp_ports,
            })
        })
        .collect()
}

fn entry_value(config: &Config, entry: &Entry) -> Value {
    let mut value = json!({ "cidr": entry.net.to_string(), "comment": &*entry.comment });
    let list = list_name(config, entry);
    if list != DEFAULT_LIST {
        value["list"] = list.into();
    }
    if let Some(end) = config.end_of(entry) {
        value["expires"] = super::expiry::rfc3339(end).into();
    }
    value
}

/// Entries an audit record lists each way. A change with more lists only the first ones (in
/// network order), how many there are, and the count and digest of the whole set before and
/// after: a reload of 100,000 entries is one line of a few KB, not of megabytes, and the
/// chain still pins down both sets (the files hold the entries).
pub const AUDIT_LISTED: usize = 20;

/// One side of a change's entries: the first [`AUDIT_LISTED`] and how many.
#[derive(Default)]
struct Listed {
    first: Vec<Value>,
    count: usize,
}

impl Listed {
    fn push(&mut self, config: &Config, entry: &Entry) {
        if self.first.len() < AUDIT_LISTED {
            self.first.push(entry_value(config, entry));
        }
        self.count += 1;
    }
}

/// SHA-256 of an entry set, fed in network order (IPv4 before IPv6, then by address, then
/// by prefix length, then by list name), each entry as: its family (one byte, 4 or 6), its network address (4
/// or 16 bytes), its prefix length (one byte), its comment (UTF-8) and a newline (comments
/// hold no control characters); an entry of a list other than `default` has a tab and its
/// list's name before the newline. Bytes rather than text, so that hashing a million entries
/// costs no formatting; the README shows how to recompute it.
#[derive(Default)]
struct SetDigest {
    sha: Sha256,
    /// Entries gathered for the hash: a million small updates cost more than the hashing.
    pending: Vec<u8>,
    count: usize,
}

impl SetDigest {
    const FLUSH_AT: usize = 1 << 16;

    fn add(&mut self, config: &Config, entry: &Entry) {
        let pending = &mut self.pending;
        match entry.net {
            ipnet::IpNet::V4(n) => {
                pending.push(4);
                pending.extend_from_slice(&n.network().octets());
                pending.push(n.prefix_len());
            }
            ipnet::IpNet::V6(n) => {
                pending.push(6);
                pending.extend_from_slice(&n.network().octets());
                pending.push(n.prefix_len());
            }
        }
        pending.extend_from_slice(entry.comment.as_bytes());
        let list = list_name(config, entry);
        if list != DEFAULT_LIST {
            pending.push(b'\t');
            pending.extend_from_slice(list.as_bytes());
        }
        pending.push(b'\n');
        self.count += 1;
        if pending.len() >= Self::FLUSH_AT {
            self.sha.update(&self.pending);
            self.pending.clear();
        }
    }

    fn finish(mut self) -> String {
        self.sha.update(&self.pending);
        allowlist_control::audit::hex(&self.sha.finalize())
    }
}

/// The digest of `config`'s entries an audit record of a large change carries.
pub fn set_sha256(config: &Config) -> String {
    let mut digest = SetDigest::default();
    in_entry_order(config).for_each(|e| digest.add(config, e));
    digest.finish()
}

/// What going from one config to another changes, from one walk over both.
pub struct Changes {
    /// `before` and `after` for an audit record: the entries as they were and became
    /// (removed and changed ones before, added and changed ones after) and every setting
    /// that changed. Keys that did not change are left out, so an `add` reads
    /// `{"entries": []}` -> `{"entries": [{"cidr": ..., "comment": ...}]}` and an `activate`
    /// `{"active": false}` -> `{"active": true}`.
    pub before: Value,
    pub after: Value,
    /// See [`summary`].
    pub summary: String,
}

pub fn changes(old: &Config, new: &Config) -> Changes {
    let (mut before_entries, mut after_entries) = (Listed::default(), Listed::default());
    // Both sets are hashed in the same walk: a second walk over a million entries, only
    // once the change turns out large, would cost more than the hashing.
    let (mut old_set, mut new_set) = (SetDigest::default(), SetDigest::default());
    let (mut recommented, mut retimed, mut changed) = (0, 0, 0);
    walk(old, new, |side| match side {
        Side::Old(o) => {
            old_set.add(old, o);
            before_entries.push(old, o);
        }
        Side::New(n) => {
            new_set.add(new, n);
            after_entries.push(new, n);
        }
        Side::Both(o, n) => {
            old_set.add(old, o);
            new_set.add(new, n);
            let recomment = o.comment != n.comment;
            let retime = old.end_of(o) != new.end_of(n);
            if recomment || retime {
                recommented += usize::from(recomment);
                retimed += usize::from(retime);
                changed += 1;
                before_entries.push(old, o);
                after_entries.push(new, n);
            }
        }
    });
    let summary = summary_line(
        old,
        new,
        after_entries.count - changed,
        before_entries.count - changed,
        (recommented, retimed),
    );
    let mut before = Map::new();
    let mut after = Map::new();
    let large = before_entries.count.max(after_entries.count) > AUDIT_LISTED;
    let any = before_entries.count + after_entries.count > 0;
    for (map, listed, set) in [
        (&mut before, before_entries, old_set),
        (&mut after, after_entries, new_set),
    ] {
        if large {
            map.insert("entries".into(), listed.first.into());
            map.insert("entries_count".into(), listed.count.into());
            map.insert("set_count".into(), set.count.into());
            map.insert("set_sha256".into(), set.finish().into());
        } else if any {
            map.insert("entries".into(), listed.first.into());
        }
    }
    let mut setting = |key: &str, old_value: Value, new_value: Value| {
        if old_value != new_value {
            before.insert(key.into(), old_value);
            after.insert(key.into(), new_value);
        }
    };
    setting("active", old.active.into(), new.active.into());
    setting(
        "protected_tcp_ports",
        json!(old.protected_tcp_ports),
        json!(new.protected_tcp_ports),
    );
    setting("interfaces", json!(old.interfaces), json!(new.interfaces));
    if old.has_named_lists() || new.has_named_lists() {
        setting("lists", lists_value(old), lists_value(new));
    }
    Changes {
        before: Value::Object(before),
        after: Value::Object(after),
        summary,
    }
}

/// Whether `config` is what a change recorded by [`audit_values`] as `before` -> `after`
/// produced: the entries of `after` present with their comments, those only in `before`
/// gone, and every changed setting at its new value.
pub fn shows(config: &Config, before: &Value, after: &Value) -> bool {
    let comments: std::collections::HashMap<(String, &str), &str> = config
        .entries
        .iter()
        .map(|e| ((e.net.to_string(), list_name(config, e)), &*e.comment))
        .collect();
    // An entry as the record names it: its network and list.
    fn key(e: &Value) -> Option<(String, &str)> {
        let list = e["list"].as_str().unwrap_or(DEFAULT_LIST);
        Some((e["cidr"].as_str()?.to_owned(), list))
    }
    let listed = |e: &Value| {
        key(e)
            .and_then(|k| comments.get(&k))
            .is_some_and(|comment| e["comment"].as_str() == Some(comment))
    };
    let added = after["entries"].as_array().map_or(&[][..], Vec::as_slice);
    let removed = before["entries"].as_array().map_or(&[][..], Vec::as_slice);
    let settings_match = after.as_object().is_none_or(|map| {
        map.iter().all(|(key, value)| match key.as_str() {
            "active" => *value == json!(config.active),
            "protected_tcp_ports" => *value == json!(config.protected_tcp_ports),
            "interfaces" => *value == json!(config.interfaces),
            "lists" => *value == lists_value(config),
            _ => true,
        })
    });
    if let Some(sha) = after["set_sha256"].as_str() {
        // A large change lists only its first entries; the digest settles it.
        return settings_match && set_sha256(config) == sha;
    }
    settings_match
        && added.iter().all(listed)
        && removed.iter().filter_map(key).all(|k| {
            !comments.contains_key(&k) || added.iter().any(|a| key(a).as_ref() == Some(&k))
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn config(text: &str) -> Config {
        Config::parse(
            Path::new("/etc/allowlist/allowlist.toml"),
            &format!("active = false\n{text}"),
        )
        .unwrap()
    }

    #[test]
    fn shows_whether_a_recorded_change_reached_a_config() {
        let a = config("[[entries]]\ncidr = \"198.18.1.0/24\"\ncomment = \"a\"\n");
        let b = config(
            "[[entries]]\ncidr = \"198.18.1.0/24\"\ncomment = \"A\"\n[[entries]]\ncidr = \"2001:db8::/48\"\n",
        );
        let c = config("[[entries]]\ncidr = \"198.18.2.0/24\"\n");
        let Changes { before, after, .. } = changes(&a, &b);
        assert!(shows(&b, &before, &after));
        assert!(
            !shows(&a, &before, &after),
            "the old comment and no IPv6 entry"
        );
        let Changes { before, after, .. } = changes(&a, &c);
        assert!(shows(&c, &before, &after));
        assert!(!shows(&b, &before, &after), "198.18.1.0/24 still listed");
    }

    #[test]
    fn a_large_change_lists_its_first_entries_with_counts_and_digests() {
        let a = config("[[entries]]\ncidr = \"198.18.1.0/24\"\ncomment = \"a\"\n");
        let mut text = String::from("[[entries]]\ncidr = \"198.18.1.0/24\"\ncomment = \"a\"\n");
        for i in 0..(AUDIT_LISTED + 5) {
            text += &format!("[[entries]]\ncidr = \"2001:db8:{i:x}::/48\"\n");
        }
        let b = config(&text);
        let Changes {
            before,
            after,
            summary,
        } = changes(&a, &b);
        assert_eq!(summary, "+25 -0 entries");
        assert_eq!(before["entries"], json!([]));
        assert_eq!(before["entries_count"], 0);
        assert_eq!(before["set_count"], 1);
        assert_eq!(after["entries"].as_array().unwrap().len(), AUDIT_LISTED);
        assert_eq!(after["entries"][0]["cidr"], "2001:db8::/48");
        assert_eq!(after["entries_count"], 25);
        assert_eq!(after["set_count"], 26);
        assert_eq!(before["set_sha256"], set_sha256(&a));
        assert_eq!(after["set_sha256"], set_sha256(&b));
        // The input as documented: family, address, prefix length, comment, newline.
        let mut sha = Sha256::new();
        sha.update([4, 198, 18, 1, 0, 24]);
        sha.update(b"a\n");
        assert_eq!(
            set_sha256(&a),
            allowlist_control::audit::hex(&sha.finalize())
        );
        // An interrupted large change is recognised by the digest of the whole set.
        assert!(shows(&b, &before, &after));
        assert!(!shows(&a, &before, &after));
        let c = config(&text.replace("2001:db8:3::/48", "2001:db8:ff::/48"));
        assert!(!shows(&c, &before, &after), "one entry of the 25 differs");
    }

    #[test]
    fn audit_values_name_what_changed() {
        let a = config("[[entries]]\ncidr = \"198.18.1.0/24\"\ncomment = \"a\"\n");
        let b = config(
            "[[entries]]\ncidr = \"198.18.1.0/24\"\ncomment = \"A\"\n[[entries]]\ncidr = \"2001:db8::/48\"\n",
        );
        let Changes { before, after, .. } = changes(&a, &b);
        assert_eq!(
            before,
            json!({ "entries": [{ "cidr": "198.18.1.0/24", "comment": "a" }] })
        );
        assert_eq!(
            after,
            json!({ "entries": [
                { "cidr": "198.18.1.0/24", "comment": "A" },
                { "cidr": "2001:db8::/48", "comment": "" }
            ] })
        );
        let (added, removed) = entries(&a, &b);
        assert_eq!((added.len(), removed.len()), (1, 0));
        let Changes { before, after, .. } = changes(&a, &a);
        assert_eq!((before, after), (json!({}), json!({})));
        assert_eq!(summary(&a, &b), "+1 -0 entries, 1 comment changed");
    }
}
