//! What a lockout refusal suggests instead: commands the daemon accepts as the very next
//! changes, that keep the caller's own address allowed and still do what the admin meant.
//!
//! "Add your address first" is no advice when an entry being removed or narrowed covers that
//! address: the add is refused as already covered. Then the entry itself is narrowed to the
//! address (one change, its comment kept), and anything else the admin asked for follows.

use std::net::IpAddr;

use ipnet::IpNet;

use allowlist_config::Config;
use allowlist_control::protocol::{Caller, Command};

/// The caller's address as an entry: IPv4-mapped IPv6 written as IPv4, as the config wants.
pub(super) fn own_net(ip: IpAddr) -> IpNet {
    IpNet::from(ip.to_canonical())
}

/// The end of a lockout refusal for `command` (already refused), which would block the
/// caller on a port of list `list`: what to run instead.
pub(super) fn advice(config: &Config, command: &Command, caller: Caller, list: &str) -> String {
    let own = own_net(caller.ip);
    let index = config.list(list).map(|(index, _)| index);
    let covering = config
        .entries
        .iter()
        .find(|e| Some(e.list) == index && e.net.contains(&own))
        .map(|e| e.net);
    // Every suggested command names the list, unless it is `default`.
    let on = if list == allowlist_config::rules::DEFAULT_LIST {
        String::new()
    } else {
        format!(" --list {list}")
    };
    let instead = match (command, covering) {
        (
            Command::Activate {
                add_current: false,
                kill_unlisted,
                ..
            },
            None,
        ) => {
            // Without a session port the address came from --current-ip; say it again.
            let current_ip = match caller.port {
                Some(_) => String::new(),
                None => format!(" --current-ip {}", caller.ip),
            };
            let kill = if *kill_unlisted {
                " --kill-unlisted"
            } else {
                ""
            };
            format!(
                "run `allowlistctl activate --add-current{kill}{current_ip}{on}` instead (it adds {own} in the same change)"
            )
        }
        (Command::Remove { .. }, Some(net)) if net == own => {
            return "that entry is your own address: pass --force to remove it anyway".to_owned();
        }
        (Command::Remove { .. }, Some(net)) => format!(
            "run `allowlistctl edit {net} --cidr {own}{on}` instead (it narrows the entry to your address in one change, keeping its comment)"
        ),
        (
            Command::Edit {
                new_cidr: Some(new_cidr),
                comment,
                ..
            },
            Some(net),
        ) => {
            let comment = comment
                .as_deref()
                .map(|c| format!(" --comment {}", shell_word(c)))
                .unwrap_or_default();
            let add = format!("allowlistctl add {new_cidr}{comment}{on}");
            if net == own {
                format!("run `{add}` instead (it keeps your own entry {own})")
            } else {
                format!(
                    "run `allowlistctl edit {net} --cidr {own}{on}` (it narrows the entry to your address) and then `{add}`"
                )
            }
        }
        _ => format!("run `allowlistctl add {own}{on}` first"),
    };
    format!("{instead}, or pass --force")
}

/// `text` as one shell word: as it is when that is safe, otherwise in single quotes.
fn shell_word(text: &str) -> String {
    let plain = !text.is_empty()
        && text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./:,+@%=".contains(c));
    if plain {
        text.to_owned()
    } else {
        format!("'{}'", text.replace('\'', r"'\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shell_words_are_quoted_only_when_needed() {
        assert_eq!(shell_word("lab-A"), "lab-A");
        assert_eq!(shell_word("lab B"), "'lab B'");
        assert_eq!(shell_word("Bob's"), r"'Bob'\''s'");
        assert_eq!(shell_word(""), "''");
    }

    #[test]
    fn mapped_addresses_are_advised_as_ipv4() {
        let mapped: IpAddr = "::ffff:198.18.1.2".parse().unwrap();
        assert_eq!(own_net(mapped).to_string(), "198.18.1.2/32");
    }
}
