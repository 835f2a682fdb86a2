//! What the filter should enforce, independent of where it came from (config file, and later
//! the control socket): the one input the kernel maps are synchronised to.

use std::collections::{BTreeMap, BTreeSet};

use ipnet::IpNet;

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Rules {
    pub active: bool,
    pub ports: BTreeSet<u16>,
    /// Every entry, normalised (host bits clear), with its comment. IPv4 networks are
    /// `IpNet::V4`; IPv4-mapped IPv6 networks never appear here (the config refuses them).
    pub entries: BTreeMap<IpNet, String>,
}
