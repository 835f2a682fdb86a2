//! The reference model of the differential test: the verdict a frame should get, read from
//! its raw bytes and written from the README's verdict table alone. It shares no code with the
//! XDP program, `verdict::decide` or the frame builders, so a disagreement points at one side
//! or the other, never at a helper both use.
//!
//! How the table is read where it leaves room:
//! - Tags: up to two VLAN tags (802.1Q or 802.1ad, any order); a third tag is a non-IP frame.
//! - "Shorter than its headers, or a malformed IP header": IPv4 needs its 20-byte header,
//!   version 4, IHL >= 5 and a total length from the header length up to what the frame holds;
//!   IPv6 needs its 40-byte header, version 6 and its payload length in the frame. Nothing after
//!   the IP packet (padding, trailers) is part of any header.
//! - IPv4: a protocol other than TCP is "other protocols" whatever its fragment fields; then a
//!   non-zero fragment offset is a non-first fragment; MF with offset 0 is a first fragment.
//! - IPv6: hop-by-hop, routing, destination options, fragment and AH headers are followed
//!   (lengths per RFC 8200 and RFC 4302); a 7th extension header makes the chain "longer than
//!   6" whether or not its bytes are there. Any fragment header with offset 0 and M set makes
//!   the packet a first fragment: the bytes after it are only the start of what reassembly
//!   yields, whatever later headers in the chain say. A chain cut short by the packet's end is
//!   opaque in a first fragment and malformed otherwise. Other next headers are "other
//!   protocols".
//! - TCP: the first 14 bytes show the flags; SYN without ACK opens a connection. A first
//!   fragment with fewer is the tiny fragment of the table (with its port when it holds 4
//!   bytes); any other packet with fewer is shorter than its headers.
//! - Reasons, when several rows apply: what the frame is (not IP, malformed, not TCP, not a
//!   SYN, a non-first fragment, an unprotected port) comes first, then the list being inactive,
//!   then a covered source, then an emergency disable (`pass_emergency` only for what would be
//!   dropped).

use std::collections::BTreeSet;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use allowlist_common::verdict::Reason;
use anyhow::{Context, Result, bail};
use ipnet::IpNet;

/// Everything the verdict depends on besides the frame.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Setup {
    pub active: bool,
    pub ports: BTreeSet<u16>,
    /// No entry covers another (the config refuses that), so at most one covers a source.
    pub entries: Vec<IpNet>,
    /// An emergency disable is in force.
    pub emergency: bool,
}

/// What the model expects the program to do with a frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Expected {
    pub drop: bool,
    pub reason: Reason,
    /// The entry a let-in SYN counts as a hit.
    pub entry: Option<IpNet>,
}

/// What a frame is, as far as the table cares.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    NotIp,
    Malformed,
    NotTcp,
    NotSyn,
    LaterFragment,
    Syn {
        src: IpAddr,
        port: u16,
    },
    /// A first fragment or over-long chain that hides the flags (and maybe the port).
    Hidden {
        src: IpAddr,
        port: Option<u16>,
    },
}

/// The expected verdict, or `None` for a frame shorter than an Ethernet header (the kernel
/// refuses to run a program on it).
pub fn expected(frame: &[u8], setup: &Setup) -> Option<Expected> {
    if frame.len() < 14 {
        return None;
    }
    let pass = |reason| Expected {
        drop: false,
        reason,
        entry: None,
    };
    let (src, port, hidden) = match classify(frame) {
        Kind::NotIp => return Some(pass(Reason::PassNotIp)),
        Kind::Malformed => return Some(pass(Reason::PassTruncated)),
        Kind::NotTcp => return Some(pass(Reason::PassNotTcp)),
        Kind::NotSyn => return Some(pass(Reason::PassNotSyn)),
        Kind::LaterFragment => return Some(pass(Reason::PassNonFirstFragment)),
        Kind::Syn { src, port } => (src, Some(port), false),
        Kind::Hidden { src, port } => (src, port, true),
    };
    let could_reach_protected = match port {
        Some(port) => setup.ports.contains(&port),
        None => !setup.ports.is_empty(),
    };
    if !could_reach_protected {
        return Some(pass(Reason::PassUnprotectedPort));
    }
    if !setup.active {
        return Some(pass(Reason::PassInactive));
    }
    if let Some(entry) = setup.entries.iter().find(|net| covers(net, src)) {
        let reason = match src {
            IpAddr::V4(_) => Reason::PassAllowedV4,
            IpAddr::V6(_) => Reason::PassAllowedV6,
        };
        return Some(Expected {
            entry: Some(*entry),
            ..pass(reason)
        });
    }
    if setup.emergency {
        return Some(pass(Reason::PassEmergency));
    }
    let reason = match src {
        _ if hidden => Reason::DropFragmentEvasion,
        IpAddr::V4(_) => Reason::DropSynV4,
        IpAddr::V6(_) => Reason::DropSynV6,
    };
    Some(Expected {
        drop: true,
        reason,
        entry: None,
    })
}

/// Prefix containment by plain integer masks (not `ipnet`'s, so that nothing is shared with
/// the daemon's own checks); IPv4 sources only by IPv4 entries.
fn covers(net: &IpNet, src: IpAddr) -> bool {
    match (net, src) {
        (IpNet::V4(net), IpAddr::V4(src)) => {
            let mask = u32::MAX
                .checked_shl(32 - u32::from(net.prefix_len()))
                .unwrap_or(0);
            u32::from(src) & mask == u32::from(net.network())
        }
        (IpNet::V6(net), IpAddr::V6(src)) => {
            let mask = u128::MAX
                .checked_shl(128 - u32::from(net.prefix_len()))
                .unwrap_or(0);
            u128::from(src) & mask == u128::from(net.network())
        }
        _ => false,
    }
}

fn be16(bytes: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([bytes[at], bytes[at + 1]])
}

fn classify(frame: &[u8]) -> Kind {
    let mut ethertype = be16(frame, 12);
    let mut at = 14;
    for _ in 0..2 {
        if ethertype != 0x8100 && ethertype != 0x88a8 {
            break;
        }
        if frame.len() < at + 4 {
            return Kind::Malformed;
        }
        ethertype = be16(frame, at + 2);
        at += 4;
    }
    match ethertype {
        0x0800 => ipv4(&frame[at..]),
        0x86dd => ipv6(&frame[at..]),
        _ => Kind::NotIp,
    }
}

/// `rest`: the frame from the IPv4 header on.
fn ipv4(rest: &[u8]) -> Kind {
    if rest.len() < 20 {
        return Kind::Malformed;
    }
    let header_len = usize::from(rest[0] & 0x0f) * 4;
    let total_len = usize::from(be16(rest, 2));
    if rest[0] >> 4 != 4 || header_len < 20 || total_len < header_len || total_len > rest.len() {
        return Kind::Malformed;
    }
    let packet = &rest[..total_len];
    if packet[9] != 6 {
        return Kind::NotTcp;
    }
    let fragment = be16(packet, 6);
    if fragment & 0x1fff != 0 {
        return Kind::LaterFragment;
    }
    let src = IpAddr::V4(Ipv4Addr::new(
        packet[12], packet[13], packet[14], packet[15],
    ));
    tcp(&packet[header_len..], fragment & 0x2000 != 0, src)
}

/// `rest`: the frame from the IPv6 header on.
fn ipv6(rest: &[u8]) -> Kind {
    if rest.len() < 40 {
        return Kind::Malformed;
    }
    let end = 40 + usize::from(be16(rest, 4));
    if rest[0] >> 4 != 6 || end > rest.len() {
        return Kind::Malformed;
    }
    let packet = &rest[..end];
    let mut addr = [0u8; 16];
    addr.copy_from_slice(&packet[8..24]);
    let addr = Ipv6Addr::from(addr);
    let src = match addr.segments() {
        [0, 0, 0, 0, 0, 0xffff, ..] => IpAddr::V4(Ipv4Addr::new(
            addr.octets()[12],
            addr.octets()[13],
            addr.octets()[14],
            addr.octets()[15],
        )),
        _ => IpAddr::V6(addr),
    };
    let mut next = packet[6];
    let mut at = 40;
    let mut headers = 0;
    let mut first_fragment = false;
    loop {
        let (read, len): (usize, fn(u8) -> usize) = match next {
            6 => return tcp(packet.get(at..).unwrap_or(&[]), first_fragment, src),
            // Hop-by-hop, routing, destination options: 8-byte units after the first 8.
            0 | 43 | 60 => (2, |l| (usize::from(l) + 1) * 8),
            // AH: 4-byte units, less 2.
            51 => (2, |l| (usize::from(l) + 2) * 4),
            44 => (8, |_| 8),
            _ => return Kind::NotTcp,
        };
        if headers == 6 {
            return Kind::Hidden { src, port: None };
        }
        headers += 1;
        if at + read > end {
            return if first_fragment {
                Kind::Hidden { src, port: None }
            } else {
                Kind::Malformed
            };
        }
        if next == 44 {
            if be16(packet, at + 2) >> 3 != 0 {
                return Kind::LaterFragment;
            }
            let more = packet[at + 3] & 1 != 0;
            // Any fragment header with offset 0 and M set makes a first fragment.
            first_fragment |= more;
        }
        let header_len = len(packet[at + 1]);
        next = packet[at];
        at += header_len;
    }
}

/// `segment`: the TCP bytes in the packet.
fn tcp(segment: &[u8], first_fragment: bool, src: IpAddr) -> Kind {
    if segment.len() >= 14 {
        let flags = segment[13];
        return if flags & 0x02 != 0 && flags & 0x10 == 0 {
            Kind::Syn {
                src,
                port: be16(segment, 2),
            }
        } else {
            Kind::NotSyn
        };
    }
    if !first_fragment {
        return Kind::Malformed;
    }
    Kind::Hidden {
        src,
        port: (segment.len() >= 4).then(|| be16(segment, 2)),
    }
}

/// One line, `active=… emergency=… ports=… entries=…`, that [`Setup::from_str`] reads back:
/// what a replay command carries.
impl fmt::Display for Setup {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ports: Vec<String> = self.ports.iter().map(u16::to_string).collect();
        let entries: Vec<String> = self.entries.iter().map(IpNet::to_string).collect();
        write!(
            f,
            "active={} emergency={} ports={} entries={}",
            self.active,
            self.emergency,
            ports.join(","),
            entries.join(",")
        )
    }
}

impl std::str::FromStr for Setup {
    type Err = anyhow::Error;

    fn from_str(text: &str) -> Result<Setup> {
        let mut setup = Setup::default();
        for field in text.split_whitespace() {
            let (key, value) = field
                .split_once('=')
                .with_context(|| format!("`{field}`: expected key=value"))?;
            let list = value.split(',').filter(|item| !item.is_empty());
            match key {
                "active" => setup.active = value.parse().context("active")?,
                "emergency" => setup.emergency = value.parse().context("emergency")?,
                "ports" => {
                    setup.ports = list
                        .map(|p| p.parse().with_context(|| format!("port `{p}`")))
                        .collect::<Result<_>>()?;
                }
                "entries" => {
                    setup.entries = list
                        .map(|e| e.parse().with_context(|| format!("entry `{e}`")))
                        .collect::<Result<_>>()?;
                }
                _ => bail!("unknown key `{key}` (active, emergency, ports, entries)"),
            }
        }
        Ok(setup)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn setup() -> Setup {
        "active=true emergency=false ports=22 entries=198.18.1.0/24,2001:db8::/48"
            .parse()
            .unwrap()
    }

    /// Ethernet, IPv4 (IHL 5, total length 40), TCP with `flags` to port 22 from `src`.
    fn syn4(src: [u8; 4], flags: u8) -> Vec<u8> {
        let mut frame = vec![0u8; 12];
        frame.extend_from_slice(&[0x08, 0x00, 0x45, 0, 0, 40, 0, 0, 0, 0, 64, 6, 0, 0]);
        frame.extend_from_slice(&src);
        frame.extend_from_slice(&[198, 18, 0, 1, 0x9c, 0x40, 0, 22]);
        frame.extend_from_slice(&[0; 8]);
        frame.extend_from_slice(&[0x50, flags, 0xff, 0xff, 0, 0, 0, 0]);
        frame
    }

    #[test]
    fn the_table_on_hand_made_frames() {
        let reason = |frame: &[u8], setup: &Setup| expected(frame, setup).unwrap().reason;
        let s = setup();
        assert_eq!(
            reason(&syn4([198, 18, 1, 9], 0x02), &s),
            Reason::PassAllowedV4
        );
        assert_eq!(reason(&syn4([198, 18, 2, 9], 0x02), &s), Reason::DropSynV4);
        assert_eq!(reason(&syn4([198, 18, 2, 9], 0x12), &s), Reason::PassNotSyn);
        let mut short = syn4([198, 18, 2, 9], 0x02);
        short.truncate(50);
        assert_eq!(reason(&short, &s), Reason::PassTruncated);
        let emergency = Setup {
            emergency: true,
            ..s.clone()
        };
        assert_eq!(
            reason(&syn4([198, 18, 2, 9], 0x02), &emergency),
            Reason::PassEmergency
        );
        assert_eq!(expected(&[0; 13], &s), None);
    }

    #[test]
    fn setup_round_trips_through_its_line() {
        let s = setup();
        assert_eq!(s.to_string().parse::<Setup>().unwrap(), s);
        assert!("colour=blue".parse::<Setup>().is_err());
    }
}
