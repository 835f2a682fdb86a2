//! What a change changed, between two configs: the entries added and removed (for reload
//! reports) and the before/after values of audit records.

use std::collections::HashMap;

use ipnet::IpNet;
use serde_json::{Map, Value, json};

use crate::config::{Config, Entry};
use crate::control::protocol::EntryInfo;

pub fn entry_info(entry: &Entry) -> EntryInfo {
    EntryInfo {
        cidr: entry.net.to_string(),
        comment: entry.comment.clone(),
        origin: entry.origin.to_string(),
        hits: 0,
        last_hit: None,
    }
}

/// Entries only in `new`, and entries only in `old`.
pub fn entries(old: &Config, new: &Config) -> (Vec<EntryInfo>, Vec<EntryInfo>) {
    let old_nets: HashMap<IpNet, &Entry> = old.entries.iter().map(|e| (e.net, e)).collect();
    let new_nets: HashMap<IpNet, &Entry> = new.entries.iter().map(|e| (e.net, e)).collect();
    let added = new
        .entries
        .iter()
        .filter(|e| !old_nets.contains_key(&e.net))
        .map(entry_info)
        .collect();
    let removed = old
        .entries
        .iter()
        .filter(|e| !new_nets.contains_key(&e.net))
        .map(entry_info)
        .collect();
    (added, removed)
}

/// One line saying what going from `old` to `new` changes: the summary of every change and
/// reload, and of a dry run.
pub fn summary(old: &Config, new: &Config) -> String {
    // One map of the old entries: a million-entry reload builds nothing more.
    let old_comments: HashMap<IpNet, &str> = old
        .entries
        .iter()
        .map(|e| (e.net, e.comment.as_str()))
        .collect();
    let (mut added, mut recommented) = (0, 0);
    for e in &new.entries {
        match old_comments.get(&e.net) {
            None => added += 1,
            Some(comment) if *comment != e.comment => recommented += 1,
            Some(_) => {}
        }
    }
    // Networks are unique on each side, so the rest of the old ones are gone.
    let removed = old.entries.len() - (new.entries.len() - added);
    let mut parts = vec![format!("+{added} -{removed} entries")];
    if recommented > 0 {
        parts.push(format!("{recommented} comments changed"));
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
        parts.push(format!("ports +{ports_added:?} -{ports_removed:?}"));
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
            "interfaces attached {attach:?} detached {detach:?}"
        ));
    }
    parts.join(", ")
}

fn entry_value(entry: &Entry) -> Value {
    json!({ "cidr": entry.net.to_string(), "comment": entry.comment })
}

/// `before` and `after` for an audit record: the entries as they were and became (removed
/// and changed ones before, added and changed ones after) and every setting that changed.
/// Keys that did not change are left out, so an `add` reads `{"entries": []}` ->
/// `{"entries": [{"cidr": ..., "comment": ...}]}` and an `activate` `{"active": false}` ->
/// `{"active": true}`.
pub fn audit_values(old: &Config, new: &Config) -> (Value, Value) {
    let old_by_net: HashMap<IpNet, &Entry> = old.entries.iter().map(|e| (e.net, e)).collect();
    let new_by_net: HashMap<IpNet, &Entry> = new.entries.iter().map(|e| (e.net, e)).collect();
    let before_entries: Vec<Value> = old
        .entries
        .iter()
        .filter(|e| {
            new_by_net
                .get(&e.net)
                .is_none_or(|n| n.comment != e.comment)
        })
        .map(entry_value)
        .collect();
    let after_entries: Vec<Value> = new
        .entries
        .iter()
        .filter(|e| {
            old_by_net
                .get(&e.net)
                .is_none_or(|o| o.comment != e.comment)
        })
        .map(entry_value)
        .collect();
    let mut before = Map::new();
    let mut after = Map::new();
    if !before_entries.is_empty() || !after_entries.is_empty() {
        before.insert("entries".into(), before_entries.into());
        after.insert("entries".into(), after_entries.into());
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
    (Value::Object(before), Value::Object(after))
}

/// Whether `config` is what a change recorded by [`audit_values`] as `before` -> `after`
/// produced: the entries of `after` present with their comments, those only in `before`
/// gone, and every changed setting at its new value.
pub fn shows(config: &Config, before: &Value, after: &Value) -> bool {
    let comments: HashMap<String, &str> = config
        .entries
        .iter()
        .map(|e| (e.net.to_string(), e.comment.as_str()))
        .collect();
    let listed = |e: &Value| {
        e["cidr"]
            .as_str()
            .and_then(|cidr| comments.get(cidr))
            .is_some_and(|comment| e["comment"].as_str() == Some(comment))
    };
    let added = after["entries"].as_array().map_or(&[][..], Vec::as_slice);
    let removed = before["entries"].as_array().map_or(&[][..], Vec::as_slice);
    let settings_match = after.as_object().is_none_or(|map| {
        map.iter().all(|(key, value)| match key.as_str() {
            "active" => *value == json!(config.active),
            "protected_tcp_ports" => *value == json!(config.protected_tcp_ports),
            "interfaces" => *value == json!(config.interfaces),
            _ => true,
        })
    });
    settings_match
        && added.iter().all(listed)
        && removed
            .iter()
            .filter_map(|e| e["cidr"].as_str())
            .all(|cidr| !comments.contains_key(cidr) || added.iter().any(|a| a["cidr"] == cidr))
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
    fn audit_values_name_what_changed() {
        let a = config("[[entries]]\ncidr = \"198.18.1.0/24\"\ncomment = \"a\"\n");
        let b = config(
            "[[entries]]\ncidr = \"198.18.1.0/24\"\ncomment = \"A\"\n[[entries]]\ncidr = \"2001:db8::/48\"\n",
        );
        let (before, after) = audit_values(&a, &b);
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
        let (before, after) = audit_values(&a, &a);
        assert_eq!((before, after), (json!({}), json!({})));
        assert_eq!(summary(&a, &b), "+1 -0 entries, 1 comments changed");
    }
}
