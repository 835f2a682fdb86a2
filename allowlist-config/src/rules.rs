//! What the filter should enforce, whatever the config said it with: the one input the
//! loader synchronises the kernel maps to.

use std::collections::BTreeSet;
use std::net::IpAddr;

use ipnet::IpNet;

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Rules {
    pub active: bool,
    pub ports: BTreeSet<u16>,
    /// Every entry's network, normalised (host bits clear). IPv4 networks are `IpNet::V4`;
    /// IPv4-mapped IPv6 networks never appear here (the config refuses them). Comments stay
    /// with the config: the kernel does not need them.
    pub entries: BTreeSet<IpNet>,
}

impl Rules {
    /// Whether a SYN from `ip` to `port` passes these rules (IPv4-mapped IPv6 addresses are
    /// judged as IPv4, as the kernel does).
    pub fn allows(&self, ip: IpAddr, port: u16) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        !self.active
            || !self.ports.contains(&port)
            || self.entries.iter().any(|net| net.contains(&ip))
    }

    /// The first port (of `port`, or of every protected port when unknown) on which `ip` is
    /// allowed by `self` but would be blocked by `new`: a change that locks the caller out.
    pub fn locks_out(&self, new: &Rules, ip: IpAddr, port: Option<u16>) -> Option<u16> {
        let ports: Vec<u16> = match port {
            Some(p) => vec![p],
            None => self.ports.union(&new.ports).copied().collect(),
        };
        ports
            .into_iter()
            .find(|&p| self.allows(ip, p) && !new.allows(ip, p))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(active: bool, entries: &[&str]) -> Rules {
        Rules {
            active,
            ports: BTreeSet::from([22, 443]),
            entries: entries.iter().map(|e| e.parse().unwrap()).collect(),
        }
    }

    #[test]
    fn lockout_is_a_change_from_allowed_to_blocked() {
        let me: IpAddr = "198.18.1.2".parse().unwrap();
        let now = rules(true, &["198.18.1.0/24"]);
        assert_eq!(now.locks_out(&rules(true, &[]), me, Some(22)), Some(22));
        assert_eq!(
            now.locks_out(&rules(true, &["198.18.1.2/32"]), me, Some(22)),
            None
        );
        assert_eq!(
            now.locks_out(&rules(true, &[]), me, Some(8080)),
            None,
            "unprotected port"
        );
        assert_eq!(
            now.locks_out(&rules(true, &[]), me, None),
            Some(22),
            "every protected port"
        );
        // Activating while not covered; deactivating never locks out.
        assert_eq!(
            rules(false, &[]).locks_out(&rules(true, &[]), me, None),
            Some(22)
        );
        assert_eq!(now.locks_out(&rules(false, &[]), me, None), None);
        // Already blocked: the change does not make it worse.
        assert_eq!(
            rules(true, &[]).locks_out(&rules(true, &[]), me, None),
            None
        );
        let mapped: IpAddr = "::ffff:198.18.1.2".parse().unwrap();
        assert_eq!(now.locks_out(&rules(true, &[]), mapped, Some(22)), Some(22));
    }
}
