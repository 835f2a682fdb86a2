//! What the filter should enforce, whatever the config said it with: the one input the
//! loader synchronises the kernel maps to.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::time::SystemTime;

use ipnet::IpNet;

/// How many lists a config may have (the kernel's list masks are 32 bits wide).
pub const MAX_LISTS: usize = 32;

/// Whether `name` may name a list: 1 to 32 of `a-z`, `0-9`, `_` and `-`.
pub fn valid_list_name(name: &str) -> bool {
    (1..=32).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
}

/// The list the present single-list config (top-level `active`, `protected_tcp_ports`,
/// `[[entries]]`) is.
pub const DEFAULT_LIST: &str = "default";

/// How a list treats a source none of its entries covers.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Mode {
    /// Dropped.
    Enforce,
    /// Passed, and counted as what enforcement would drop.
    Monitor,
    /// Passed (`active = false`).
    #[default]
    Off,
}

impl Mode {
    /// The mode named `name` as the config and allowlistctl write it.
    pub fn parse(name: &str) -> Option<Mode> {
        [Mode::Enforce, Mode::Monitor, Mode::Off]
            .into_iter()
            .find(|m| m.name() == name)
    }

    pub const fn name(self) -> &'static str {
        match self {
            Mode::Enforce => "enforce",
            Mode::Monitor => "monitor",
            Mode::Off => "off",
        }
    }
}

/// The transport protocol of a protected port (as `verdict::Proto`, which this crate cannot
/// see).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Protocol {
    Tcp,
    Udp,
}

/// One named list: the ports it protects and the networks it lets in.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ListRules {
    pub name: String,
    pub mode: Mode,
    pub tcp_ports: BTreeSet<u16>,
    pub udp_ports: BTreeSet<u16>,
    /// Every entry's network, normalised (host bits clear). IPv4 networks are `IpNet::V4`;
    /// IPv4-mapped IPv6 networks never appear here (the config refuses them). Comments stay
    /// with the config: the kernel does not need them.
    pub entries: BTreeSet<IpNet>,
    /// The timed ones among `entries`, and when each ends.
    pub ends: BTreeMap<IpNet, SystemTime>,
}

impl ListRules {
    pub fn ports(&self, protocol: Protocol) -> &BTreeSet<u16> {
        match protocol {
            Protocol::Tcp => &self.tcp_ports,
            Protocol::Udp => &self.udp_ports,
        }
    }

    /// Whether its entries cover `ip` (IPv4-mapped IPv6 addresses judged as IPv4).
    pub fn covers(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        let now = SystemTime::now();
        self.entries
            .iter()
            .any(|net| net.contains(&ip) && self.ends.get(net).is_none_or(|end| *end > now))
    }
}

/// Every list, in the config's order; no two protect the same port (the config refuses that).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Rules {
    pub lists: Vec<ListRules>,
}

impl Rules {
    /// The present single-list config: one list, `default`, protecting TCP ports.
    pub fn single(active: bool, tcp_ports: BTreeSet<u16>, entries: BTreeSet<IpNet>) -> Rules {
        Rules {
            lists: vec![ListRules {
                name: DEFAULT_LIST.to_owned(),
                mode: if active { Mode::Enforce } else { Mode::Off },
                tcp_ports,
                udp_ports: BTreeSet::new(),
                entries,
                ends: BTreeMap::new(),
            }],
        }
    }

    pub fn list(&self, name: &str) -> Option<&ListRules> {
        self.lists.iter().find(|list| list.name == name)
    }

    /// The list protecting `port` of `protocol`.
    pub fn protecting(&self, protocol: Protocol, port: u16) -> Option<&ListRules> {
        self.lists
            .iter()
            .find(|list| list.ports(protocol).contains(&port))
    }

    /// Whether a connection from `ip` to `port` passes these rules: the port is unprotected,
    /// its list is off or in monitor mode, or the list covers `ip`.
    pub fn allows(&self, ip: IpAddr, protocol: Protocol, port: u16) -> bool {
        self.protecting(protocol, port)
            .is_none_or(|list| list.mode != Mode::Enforce || list.covers(ip))
    }

    /// The first port (of `port`, or of every protected port when unknown) on which `ip` is
    /// allowed by `self` but would be blocked by `new`: a change that locks the caller out.
    pub fn locks_out(
        &self,
        new: &Rules,
        ip: IpAddr,
        port: Option<(Protocol, u16)>,
    ) -> Option<(Protocol, u16)> {
        let ports: BTreeSet<(Protocol, u16)> = match port {
            Some(p) => BTreeSet::from([p]),
            None => [self, new]
                .iter()
                .flat_map(|rules| &rules.lists)
                .flat_map(|list| {
                    let tcp = list.tcp_ports.iter().map(|&p| (Protocol::Tcp, p));
                    tcp.chain(list.udp_ports.iter().map(|&p| (Protocol::Udp, p)))
                })
                .collect(),
        };
        ports
            .into_iter()
            .find(|&(proto, p)| self.allows(ip, proto, p) && !new.allows(ip, proto, p))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SSH: Option<(Protocol, u16)> = Some((Protocol::Tcp, 22));

    fn rules(active: bool, entries: &[&str]) -> Rules {
        Rules::single(
            active,
            BTreeSet::from([22, 443]),
            entries.iter().map(|e| e.parse().unwrap()).collect(),
        )
    }

    #[test]
    fn lockout_is_a_change_from_allowed_to_blocked() {
        let me: IpAddr = "198.18.1.2".parse().unwrap();
        let now = rules(true, &["198.18.1.0/24"]);
        assert_eq!(now.locks_out(&rules(true, &[]), me, SSH), SSH);
        assert_eq!(
            now.locks_out(&rules(true, &["198.18.1.2/32"]), me, SSH),
            None
        );
        assert_eq!(
            now.locks_out(&rules(true, &[]), me, Some((Protocol::Tcp, 8080))),
            None,
            "unprotected port"
        );
        assert_eq!(
            now.locks_out(&rules(true, &[]), me, None),
            SSH,
            "every protected port"
        );
        // Activating while not covered; deactivating never locks out.
        assert_eq!(
            rules(false, &[]).locks_out(&rules(true, &[]), me, None),
            SSH
        );
        assert_eq!(now.locks_out(&rules(false, &[]), me, None), None);
        // Already blocked: the change does not make it worse.
        assert_eq!(
            rules(true, &[]).locks_out(&rules(true, &[]), me, None),
            None
        );
        let mapped: IpAddr = "::ffff:198.18.1.2".parse().unwrap();
        assert_eq!(now.locks_out(&rules(true, &[]), mapped, SSH), SSH);
    }

    #[test]
    fn each_port_answers_to_its_own_list() {
        let office: IpAddr = "198.18.1.2".parse().unwrap();
        let mut rules = rules(true, &["198.18.1.0/24"]);
        rules.lists.push(ListRules {
            name: "wireguard".into(),
            mode: Mode::Monitor,
            udp_ports: BTreeSet::from([51820]),
            ..ListRules::default()
        });
        assert!(rules.allows(office, Protocol::Tcp, 22));
        assert!(
            rules.allows(office, Protocol::Udp, 51820),
            "monitor mode drops nothing"
        );
        let mut enforced = rules.clone();
        enforced.lists[1].mode = Mode::Enforce;
        assert!(!enforced.allows(office, Protocol::Udp, 51820));
        assert!(
            enforced.allows(office, Protocol::Udp, 22),
            "UDP 22 is unprotected"
        );
        assert_eq!(
            rules.locks_out(&enforced, office, None),
            Some((Protocol::Udp, 51820))
        );
    }
}
