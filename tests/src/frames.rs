//! Crafted Ethernet frames for `BPF_PROG_TEST_RUN`, each with the parse the XDP program should
//! reach on it.
//!
//! A [`Frame`] is a description (VLAN tags, an IPv4 or IPv6 header with options, extension
//! headers and fragment fields, a TCP/UDP/ICMP segment, or a non-IP payload) that
//! [`Frame::build`] turns into bytes. [`Frame::expected_parsed`] is the reference parse: it is
//! derived from the builder's own parameters and byte offsets, never by reading the built
//! bytes back, so it shares no parsing code with the program. Tests compare the kernel's
//! verdict with `decide(frame.expected_parsed(), &ReferenceRules(&rules))`.
//!
//! What the reference parse follows (the program's specification):
//! - Ethernet, then at most two VLAN tags (802.1Q or 802.1ad, any order); a third tag is not IP.
//! - IPv4: the fixed 20-byte header in the frame, version 4, IHL >= 5, a total length at least
//!   the header length (IHL * 4), and the whole packet (IP offset + total length) in the frame,
//!   else truncated: a frame shorter than the packet it claims is discarded by the kernel's IP
//!   layer, so a frame cut anywhere inside the packet (options included) is truncated, whatever
//!   else it is. Then: a protocol other than TCP and UDP is another protocol; for TCP and UDP a
//!   non-zero fragment offset is a non-first fragment.
//! - IPv6: the fixed header in the frame, version 6, and the whole packet (IP offset + 40 +
//!   payload length) in the frame, else truncated; `::ffff:a.b.c.d` sources count as IPv4;
//!   hop-by-hop, routing, destination options, fragment and AH headers are followed, at most
//!   [`MAX_V6_EXT_HEADERS`]; a longer chain is opaque (it could reach any TCP or UDP port). A
//!   parser reads the first 2 bytes of a hop-by-hop, routing, destination options or AH header
//!   (next header and length) and all 8 bytes of a fragment header: a packet that ends (by its
//!   payload length) before those bytes is "cut short": in a first fragment (M set) opaque to
//!   any TCP or UDP port, otherwise truncated. A packet that ends before the transport bytes
//!   that follow the chain is judged by those bytes (none), as below. As the whole packet is in the frame, only a payload length
//!   ([`Frame::ipv6_payload_len`]) can end a packet inside its chain, never a [`Frame::cut`].
//! - TCP: the first 14 bytes (through the flags) decide: SYN without ACK is a SYN, anything
//!   else is not. Fewer than 14 bytes in a first fragment (IPv4 MF, IPv6 M) is opaque, with the
//!   destination port when at least 4 bytes are there (else any TCP port); otherwise truncated.
//! - UDP: a datagram when its 8-byte header is in the packet, or in a first fragment when the
//!   4 bytes of the ports are; a first fragment with fewer is opaque to any UDP port, any other
//!   packet with fewer is truncated. The UDP length is not read.
//! - Nothing past the end of the IP packet (IPv4 total length, IPv6 payload length) is read:
//!   Ethernet padding and trailers ([`Frame::pad_to`], [`Frame::trailer`]) never change the
//!   parse, so a tiny first fragment padded to 60 bytes is still opaque.
//!
//! Lengths in the headers (IPv4 total length, IPv6 payload length, UDP length) describe the
//! packet as built, before [`Frame::cut`], unless [`Frame::ipv4_total_len`] or
//! [`Frame::ipv6_payload_len`] writes another value; they never count a trailer or padding.
//! A length written shorter than the built packet leaves the rest of the built bytes in the
//! frame after the packet, like a trailer. Checksums are computed (XDP ignores them, but the
//! frames stay valid for a real interface; checked with tcpdump).

use std::fmt::{self, Write as _};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use allowlist_common::verdict::{self, ListMask, Parsed, Proto, Reach, Reason, Source};
use allowlist_config::rules::{ListRules, Mode, Protocol, Rules};
use ipnet::IpNet;

pub const FIN: u8 = 0x01;
pub const SYN: u8 = 0x02;
pub const RST: u8 = 0x04;
pub const PSH: u8 = 0x08;
pub const ACK: u8 = 0x10;
pub const URG: u8 = 0x20;
pub const ECE: u8 = 0x40;
pub const CWR: u8 = 0x80;

pub const ETH_HLEN: usize = 14;
pub const ETHERTYPE_IPV4: u16 = 0x0800;
pub const ETHERTYPE_IPV6: u16 = 0x86dd;
pub const ETHERTYPE_ARP: u16 = 0x0806;
pub const ETHERTYPE_LLDP: u16 = 0x88cc;
/// 802.1Q (customer VLAN tag).
pub const TPID_8021Q: u16 = 0x8100;
/// 802.1ad (service tag, the outer one in QinQ).
pub const TPID_8021AD: u16 = 0x88a8;

pub const PROTO_ICMP: u8 = 1;
pub const PROTO_TCP: u8 = 6;
pub const PROTO_UDP: u8 = 17;
pub const PROTO_ESP: u8 = 50;
pub const PROTO_ICMPV6: u8 = 58;
/// IPv6 "no next header".
pub const PROTO_NONE: u8 = 59;

/// The parser's bound on IPv6 extension headers (the specification's number, restated here
/// so that the reference does not import it from the program).
pub const MAX_V6_EXT_HEADERS: usize = 6;

/// Bytes of a TCP header up to and including the flags byte.
const TCP_THROUGH_FLAGS: usize = 14;
/// Bytes of a TCP header holding both ports.
const TCP_PORTS: usize = 4;
/// Bytes of a UDP header up to and including the destination port.
const UDP_PORTS: usize = 4;
/// A whole UDP header.
const UDP_HEADER: usize = 8;

const SRC_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x01];
const DST_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x02];

/// One VLAN tag, outermost first in [`Frame::vlans`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Vlan {
    pub tpid: u16,
    pub vid: u16,
}

/// What follows the Ethernet header and tags.
#[derive(Clone, Debug)]
pub enum Net {
    V4(Ipv4),
    V6(Ipv6),
    /// An ARP request (who-has `target`, tell `sender`).
    Arp {
        sender: Ipv4Addr,
        target: Ipv4Addr,
    },
    /// Any other ethertype (LLDP, ...) with an opaque payload. Never IP or a VLAN tag.
    Other {
        ethertype: u16,
        payload: Vec<u8>,
    },
}

#[derive(Clone, Debug)]
pub struct Ipv4 {
    pub src: Ipv4Addr,
    pub dst: Ipv4Addr,
    /// Written into the version nibble (4 unless a test makes the header malformed).
    pub version: u8,
    /// An IHL below 5 written instead of the real one (malformed header).
    pub bad_ihl: Option<u8>,
    /// Options, a multiple of 4 bytes, at most 40.
    pub options: Vec<u8>,
    pub ident: u16,
    pub dont_fragment: bool,
    pub more_fragments: bool,
    /// In 8-byte units (13 bits).
    pub fragment_offset: u16,
    pub ttl: u8,
    pub l4: L4,
    /// Only this many bytes of the L4 segment are in the packet (a fragment); the IPv4 total
    /// length says so.
    pub l4_len: Option<usize>,
    /// Written as the total length instead of the packet's real one (a malformed or shortened
    /// packet): see [`Frame::ipv4_total_len`].
    pub total_len: Option<u16>,
}

#[derive(Clone, Debug)]
pub struct Ipv6 {
    pub src: Ipv6Addr,
    pub dst: Ipv6Addr,
    /// Written into the version nibble (6 unless a test makes the header malformed).
    pub version: u8,
    /// Extension headers in order; the last one's next header is the L4 protocol.
    pub ext: Vec<Ext>,
    pub l4: L4,
    /// Only this many bytes of the L4 segment are in the packet (a fragment); the payload
    /// length says so.
    pub l4_len: Option<usize>,
    /// Written as the payload length instead of the packet's real one: see
    /// [`Frame::ipv6_payload_len`].
    pub payload_len: Option<u16>,
}

/// An IPv6 extension header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ext {
    /// Hop-by-hop options: `(len + 1) * 8` bytes of PadN.
    HopByHop { len: u8 },
    /// Routing header (type 253, experimental): `(len + 1) * 8` bytes.
    Routing { len: u8, segments_left: u8 },
    /// Destination options: `(len + 1) * 8` bytes of PadN.
    DestOpts { len: u8 },
    /// Fragment header: `offset` in 8-byte units, `more` is the M flag.
    Fragment { offset: u16, more: bool, id: u32 },
    /// Authentication header: payload length `len` (`(len + 2) * 4` bytes, even for IPv6).
    Ah { len: u8 },
}

impl Ext {
    pub const fn protocol(self) -> u8 {
        match self {
            Ext::HopByHop { .. } => 0,
            Ext::Routing { .. } => 43,
            Ext::Fragment { .. } => 44,
            Ext::Ah { .. } => 51,
            Ext::DestOpts { .. } => 60,
        }
    }

    /// Length on the wire.
    pub const fn wire_len(self) -> usize {
        match self {
            Ext::HopByHop { len } | Ext::Routing { len, .. } | Ext::DestOpts { len } => {
                (len as usize + 1) * 8
            }
            Ext::Fragment { .. } => 8,
            Ext::Ah { len } => (len as usize + 2) * 4,
        }
    }

    /// Bytes a parser must read to go past this header: the next-header and length bytes, or
    /// the whole fragment header (its offset and M flag are in bytes 2..4).
    const fn bytes_read(self) -> usize {
        match self {
            Ext::Fragment { .. } => 8,
            _ => 2,
        }
    }

    fn write(self, next: u8, out: &mut Vec<u8>) {
        let start = out.len();
        match self {
            Ext::HopByHop { len } | Ext::DestOpts { len } => {
                // One PadN option fills the rest: type 1, its data length, zeros.
                let pad = (usize::from(len) + 1) * 8 - 4;
                out.extend_from_slice(&[next, len, 1, pad as u8]);
                out.resize(start + 4 + pad, 0);
            }
            Ext::Routing { len, segments_left } => {
                out.extend_from_slice(&[next, len, 253, segments_left]);
                out.resize(start + self.wire_len(), 0);
            }
            Ext::Fragment { offset, more, id } => {
                assert!(
                    offset < 1 << 13,
                    "fragment offset {offset} needs more than 13 bits"
                );
                let field = offset << 3 | u16::from(more);
                out.extend_from_slice(&[next, 0]);
                out.extend_from_slice(&field.to_be_bytes());
                out.extend_from_slice(&id.to_be_bytes());
            }
            Ext::Ah { len } => {
                assert!(
                    len >= 1 && len.is_multiple_of(2),
                    "IPv6 AH payload length {len} must be even and >= 1"
                );
                out.extend_from_slice(&[next, len, 0, 0]);
                out.extend_from_slice(&0x0000_1000u32.to_be_bytes()); // SPI
                out.extend_from_slice(&1u32.to_be_bytes()); // sequence number
                out.resize(start + self.wire_len(), 0); // ICV
            }
        }
        debug_assert_eq!(out.len() - start, self.wire_len());
    }
}

/// The transport segment.
#[derive(Clone, Debug)]
pub enum L4 {
    Tcp(Tcp),
    Udp {
        sport: u16,
        dport: u16,
        payload: Vec<u8>,
    },
    /// Echo request: ICMP over IPv4, ICMPv6 over IPv6.
    Icmp {
        payload: Vec<u8>,
    },
    /// Any other protocol number (never TCP) with raw bytes, e.g. [`PROTO_NONE`] or ESP.
    Other {
        protocol: u8,
        payload: Vec<u8>,
    },
}

#[derive(Clone, Debug)]
pub struct Tcp {
    pub sport: u16,
    pub dport: u16,
    pub flags: u8,
    pub seq: u32,
    pub ack: u32,
    /// Options, padded with NOPs to a multiple of 4 bytes when built.
    pub options: Vec<u8>,
    pub payload: Vec<u8>,
}

/// An Ethernet frame under construction; see the module documentation.
#[derive(Clone, Debug)]
pub struct Frame {
    /// Outermost first.
    pub vlans: Vec<Vlan>,
    pub net: Net,
    /// Keep only this many bytes of the built frame (headers keep their full lengths).
    pub cut: Option<usize>,
    /// Bytes after the IP packet, outside every length field (as a sender may append). The
    /// parser never reads past the IP packet, so they do not change the reference parse.
    pub trailer: Vec<u8>,
    /// Zero bytes appended (after the trailer) up to this frame length, as an Ethernet sender
    /// pads short frames to 60 bytes. Ignored by the parse, like the trailer.
    pub pad_to: Option<usize>,
}

impl Frame {
    fn new(net: Net) -> Frame {
        Frame {
            vlans: Vec::new(),
            net,
            cut: None,
            trailer: Vec::new(),
            pad_to: None,
        }
    }

    /// An IPv4 packet carrying `l4`.
    pub fn ipv4(src: Ipv4Addr, dst: Ipv4Addr, l4: L4) -> Frame {
        Frame::new(Net::V4(Ipv4 {
            src,
            dst,
            version: 4,
            bad_ihl: None,
            options: Vec::new(),
            ident: 0x1234,
            dont_fragment: false,
            more_fragments: false,
            fragment_offset: 0,
            ttl: 64,
            l4,
            l4_len: None,
            total_len: None,
        }))
    }

    /// An IPv6 packet carrying `l4`.
    pub fn ipv6(src: Ipv6Addr, dst: Ipv6Addr, l4: L4) -> Frame {
        Frame::new(Net::V6(Ipv6 {
            src,
            dst,
            version: 6,
            ext: Vec::new(),
            l4,
            l4_len: None,
            payload_len: None,
        }))
    }

    fn tcp_segment(sport: u16, dport: u16) -> L4 {
        L4::Tcp(Tcp {
            sport,
            dport,
            flags: SYN,
            seq: 0x0102_0304,
            ack: 0,
            options: Vec::new(),
            payload: Vec::new(),
        })
    }

    /// A TCP segment over IPv4; flags default to SYN.
    pub fn tcp_v4(src: Ipv4Addr, dst: Ipv4Addr, sport: u16, dport: u16) -> Frame {
        Frame::ipv4(src, dst, Frame::tcp_segment(sport, dport))
    }

    /// A TCP segment over IPv6; flags default to SYN.
    pub fn tcp_v6(src: Ipv6Addr, dst: Ipv6Addr, sport: u16, dport: u16) -> Frame {
        Frame::ipv6(src, dst, Frame::tcp_segment(sport, dport))
    }

    /// A TCP segment over IPv4 or IPv6 (both addresses of one family).
    pub fn tcp(src: IpAddr, dst: IpAddr, sport: u16, dport: u16) -> Frame {
        match (src, dst) {
            (IpAddr::V4(src), IpAddr::V4(dst)) => Frame::tcp_v4(src, dst, sport, dport),
            (IpAddr::V6(src), IpAddr::V6(dst)) => Frame::tcp_v6(src, dst, sport, dport),
            _ => panic!("tcp({src}, {dst}): mixed address families"),
        }
    }

    pub fn udp_v4(src: Ipv4Addr, dst: Ipv4Addr, sport: u16, dport: u16) -> Frame {
        Frame::ipv4(
            src,
            dst,
            L4::Udp {
                sport,
                dport,
                payload: b"udp".to_vec(),
            },
        )
    }

    pub fn udp_v6(src: Ipv6Addr, dst: Ipv6Addr, sport: u16, dport: u16) -> Frame {
        Frame::ipv6(
            src,
            dst,
            L4::Udp {
                sport,
                dport,
                payload: b"udp".to_vec(),
            },
        )
    }

    pub fn icmp_v4(src: Ipv4Addr, dst: Ipv4Addr) -> Frame {
        Frame::ipv4(
            src,
            dst,
            L4::Icmp {
                payload: b"ping".to_vec(),
            },
        )
    }

    pub fn icmp_v6(src: Ipv6Addr, dst: Ipv6Addr) -> Frame {
        Frame::ipv6(
            src,
            dst,
            L4::Icmp {
                payload: b"ping".to_vec(),
            },
        )
    }

    pub fn arp(sender: Ipv4Addr, target: Ipv4Addr) -> Frame {
        Frame::new(Net::Arp { sender, target })
    }

    /// A non-IP frame of any other ethertype.
    pub fn ethertype(ethertype: u16, payload: &[u8]) -> Frame {
        assert!(
            ![ETHERTYPE_IPV4, ETHERTYPE_IPV6, TPID_8021Q, TPID_8021AD].contains(&ethertype),
            "Frame::ethertype({ethertype:#06x}) is for non-IP, untagged payloads"
        );
        Frame::new(Net::Other {
            ethertype,
            payload: payload.to_vec(),
        })
    }

    fn tcp_mut(&mut self, what: &str) -> &mut Tcp {
        let l4 = match &mut self.net {
            Net::V4(ip) => &mut ip.l4,
            Net::V6(ip) => &mut ip.l4,
            _ => panic!("{what}: not an IP frame"),
        };
        match l4 {
            L4::Tcp(tcp) => tcp,
            _ => panic!("{what}: not a TCP frame"),
        }
    }

    fn v4_mut(&mut self, what: &str) -> &mut Ipv4 {
        match &mut self.net {
            Net::V4(ip) => ip,
            _ => panic!("{what}: not an IPv4 frame"),
        }
    }

    fn v6_mut(&mut self, what: &str) -> &mut Ipv6 {
        match &mut self.net {
            Net::V6(ip) => ip,
            _ => panic!("{what}: not an IPv6 frame"),
        }
    }

    /// TCP flags (`SYN | ACK`, ...).
    pub fn flags(mut self, flags: u8) -> Frame {
        self.tcp_mut("flags").flags = flags;
        self
    }

    /// TCP options, padded with NOPs to a multiple of 4 bytes (at most 40).
    pub fn tcp_options(mut self, options: &[u8]) -> Frame {
        let mut options = options.to_vec();
        while !options.len().is_multiple_of(4) {
            options.push(1);
        }
        assert!(options.len() <= 40, "TCP options longer than 40 bytes");
        self.tcp_mut("tcp_options").options = options;
        self
    }

    /// Payload of the TCP, UDP or ICMP segment, or of a non-IP frame.
    pub fn payload(mut self, payload: &[u8]) -> Frame {
        let l4 = match &mut self.net {
            Net::V4(ip) => &mut ip.l4,
            Net::V6(ip) => &mut ip.l4,
            Net::Other { payload: p, .. } => {
                *p = payload.to_vec();
                return self;
            }
            Net::Arp { .. } => panic!("payload: ARP has none"),
        };
        match l4 {
            L4::Tcp(tcp) => tcp.payload = payload.to_vec(),
            L4::Udp { payload: p, .. } | L4::Icmp { payload: p } | L4::Other { payload: p, .. } => {
                *p = payload.to_vec();
            }
        }
        self
    }

    /// Replaces the transport segment.
    pub fn l4(mut self, l4: L4) -> Frame {
        match &mut self.net {
            Net::V4(ip) => ip.l4 = l4,
            Net::V6(ip) => ip.l4 = l4,
            _ => panic!("l4: not an IP frame"),
        }
        self
    }

    /// Adds a VLAN tag inside those already added (call outermost first).
    pub fn vlan(mut self, tpid: u16, vid: u16) -> Frame {
        assert!(vid < 4096, "VLAN id {vid} needs more than 12 bits");
        self.vlans.push(Vlan { tpid, vid });
        self
    }

    /// IPv4 options, padded with End-of-Options to a multiple of 4 bytes (at most 40).
    pub fn ipv4_options(mut self, options: &[u8]) -> Frame {
        let mut options = options.to_vec();
        while !options.len().is_multiple_of(4) {
            options.push(0);
        }
        assert!(options.len() <= 40, "IPv4 options longer than 40 bytes");
        self.v4_mut("ipv4_options").options = options;
        self
    }

    /// IPv4 options of NOPs making the IHL `ihl` (5..=15).
    pub fn ipv4_ihl(self, ihl: u8) -> Frame {
        assert!((5..=15).contains(&ihl), "IHL {ihl} outside 5..=15");
        let options = vec![1u8; (usize::from(ihl) - 5) * 4];
        self.ipv4_options(&options)
    }

    /// Writes an IHL below 5 (a malformed header).
    pub fn ipv4_bad_ihl(mut self, ihl: u8) -> Frame {
        assert!(
            ihl < 5,
            "ipv4_bad_ihl({ihl}): only values below 5 are malformed"
        );
        self.v4_mut("ipv4_bad_ihl").bad_ihl = Some(ihl);
        self
    }

    /// Writes `version` into the IP header's version nibble.
    pub fn ip_version(mut self, version: u8) -> Frame {
        assert!(version < 16);
        match &mut self.net {
            Net::V4(ip) => ip.version = version,
            Net::V6(ip) => ip.version = version,
            _ => panic!("ip_version: not an IP frame"),
        }
        self
    }

    /// Sets the IPv4 DF bit.
    pub fn dont_fragment(mut self) -> Frame {
        self.v4_mut("dont_fragment").dont_fragment = true;
        self
    }

    /// IPv4: sets the fragment offset (8-byte units) and MF. IPv6: appends a fragment header.
    pub fn fragment(mut self, offset: u16, more: bool) -> Frame {
        assert!(
            offset < 1 << 13,
            "fragment offset {offset} needs more than 13 bits"
        );
        match &mut self.net {
            Net::V4(ip) => {
                ip.fragment_offset = offset;
                ip.more_fragments = more;
            }
            Net::V6(ip) => ip.ext.push(Ext::Fragment {
                offset,
                more,
                id: 0xabcd_0001,
            }),
            _ => panic!("fragment: not an IP frame"),
        }
        self
    }

    /// Appends an IPv6 extension header.
    pub fn ext(mut self, ext: Ext) -> Frame {
        self.v6_mut("ext").ext.push(ext);
        self
    }

    /// Puts only the first `n` bytes of the L4 segment in the packet, as in a fragment; the IP
    /// length fields describe the shorter packet.
    pub fn l4_bytes(mut self, n: usize) -> Frame {
        match &mut self.net {
            Net::V4(ip) => ip.l4_len = Some(n),
            Net::V6(ip) => ip.l4_len = Some(n),
            _ => panic!("l4_bytes: not an IP frame"),
        }
        self
    }

    /// Writes `n` as the IPv4 total length instead of the packet's real length (header plus
    /// the L4 bytes in the packet); the bytes built stay the same. Below the header length the
    /// header is malformed; above the header length but below the real length the packet ends
    /// early and the rest of the built bytes follow it in the frame, outside the packet, like a
    /// trailer. Above the real length only for frames shorter than the packet then claims (the
    /// reference parse cannot judge bytes that the builder did not lay out as the packet, and
    /// panics).
    pub fn ipv4_total_len(mut self, n: u16) -> Frame {
        self.v4_mut("ipv4_total_len").total_len = Some(n);
        self
    }

    /// Writes `n` as the IPv6 payload length instead of the real length (extension headers
    /// plus the L4 bytes in the packet), as [`Frame::ipv4_total_len`] does for IPv4: shorter,
    /// the packet can end inside its extension header chain (a first fragment whose chain
    /// continues in the next fragment), and the rest of the built bytes follow it in the frame.
    pub fn ipv6_payload_len(mut self, n: u16) -> Frame {
        self.v6_mut("ipv6_payload_len").payload_len = Some(n);
        self
    }

    /// Keeps only the first `n` bytes of the built frame (at most its full length).
    pub fn cut(mut self, n: usize) -> Frame {
        self.cut = Some(n);
        self
    }

    /// Appends bytes after the packet (and after any bytes an [`Frame::ipv4_total_len`] or
    /// [`Frame::ipv6_payload_len`] left outside it) that no length field counts.
    pub fn trailer(mut self, bytes: &[u8]) -> Frame {
        self.trailer = bytes.to_vec();
        self
    }

    /// Appends zero bytes up to `n` bytes, as Ethernet pads frames shorter than 60 bytes.
    pub fn pad_to(mut self, n: usize) -> Frame {
        self.pad_to = Some(n);
        self
    }

    /// The frame's bytes.
    pub fn build(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(128);
        out.extend_from_slice(&DST_MAC);
        out.extend_from_slice(&SRC_MAC);
        for vlan in &self.vlans {
            out.extend_from_slice(&vlan.tpid.to_be_bytes());
            out.extend_from_slice(&vlan.vid.to_be_bytes()); // PCP 0, DEI 0
        }
        match &self.net {
            Net::V4(ip) => {
                out.extend_from_slice(&ETHERTYPE_IPV4.to_be_bytes());
                ip.write(&mut out);
            }
            Net::V6(ip) => {
                out.extend_from_slice(&ETHERTYPE_IPV6.to_be_bytes());
                ip.write(&mut out);
            }
            Net::Arp { sender, target } => {
                out.extend_from_slice(&ETHERTYPE_ARP.to_be_bytes());
                out.extend_from_slice(&[0, 1, 0x08, 0x00, 6, 4, 0, 1]);
                out.extend_from_slice(&SRC_MAC);
                out.extend_from_slice(&sender.octets());
                out.extend_from_slice(&[0; 6]);
                out.extend_from_slice(&target.octets());
            }
            Net::Other { ethertype, payload } => {
                out.extend_from_slice(&ethertype.to_be_bytes());
                out.extend_from_slice(payload);
            }
        }
        out.extend_from_slice(&self.trailer);
        if let Some(n) = self.pad_to
            && out.len() < n
        {
            out.resize(n, 0);
        }
        if let Some(n) = self.cut {
            assert!(
                n <= out.len(),
                "cut({n}) past the frame's {} bytes",
                out.len()
            );
            out.truncate(n);
        }
        out
    }

    /// Length of [`Frame::build`]'s output.
    pub fn len(&self) -> usize {
        self.build().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The frame's length before any [`Frame::cut`], trailer or padding.
    pub fn full_len(&self) -> usize {
        Frame {
            cut: None,
            trailer: Vec::new(),
            pad_to: None,
            ..self.clone()
        }
        .len()
    }

    /// Offset of the L4 segment in the frame (for IP frames).
    pub fn l4_offset(&self) -> usize {
        let base = ETH_HLEN + 4 * self.vlans.len();
        match &self.net {
            Net::V4(ip) => base + ip.header_len(),
            Net::V6(ip) => base + 40 + ip.ext.iter().map(|e| e.wire_len()).sum::<usize>(),
            _ => panic!("l4_offset: not an IP frame"),
        }
    }

    /// Length of the whole L4 segment (before [`Frame::l4_bytes`] shortens it).
    pub fn l4_segment_len(&self) -> usize {
        match &self.net {
            Net::V4(ip) => ip.l4.len(),
            Net::V6(ip) => ip.l4.len(),
            _ => panic!("l4_segment_len: not an IP frame"),
        }
    }

    /// Length of the IP packet as built (header, extension headers and the L4 bytes in the
    /// packet): what the IPv4 total length, or 40 + the IPv6 payload length, says unless
    /// [`Frame::ipv4_total_len`] or [`Frame::ipv6_payload_len`] writes another value.
    pub fn ip_len(&self) -> usize {
        match &self.net {
            Net::V4(ip) => ip.built_len(),
            Net::V6(ip) => 40 + ip.built_payload_len(),
            _ => panic!("ip_len: not an IP frame"),
        }
    }

    /// The reference parse of this frame (see the module documentation), from the builder's
    /// parameters and the frame's length (cut, trailer and padding included). Frames shorter
    /// than the Ethernet header are `Truncated` here; the kernel refuses to run a program on
    /// them at all.
    pub fn expected_parsed(&self) -> Parsed {
        let len = self.len();
        if len < ETH_HLEN {
            return Parsed::Truncated;
        }
        let mut offset = ETH_HLEN;
        for _ in self.vlans.iter().take(2) {
            if len < offset + 4 {
                return Parsed::Truncated;
            }
            offset += 4;
        }
        if self.vlans.len() > 2 {
            // The ethertype after two tags is a third tag.
            return Parsed::NotIp;
        }
        match &self.net {
            Net::V4(ip) => ip.expected(len, offset),
            Net::V6(ip) => ip.expected(len, offset),
            Net::Arp { .. } | Net::Other { .. } => Parsed::NotIp,
        }
    }

    /// The reason the reference model gives this frame under `rules`.
    pub fn expected_reason(&self, rules: &impl verdict::Lookups) -> Reason {
        verdict::decide(self.expected_parsed(), rules)
    }
}

/// One line: tags, addresses, header fields, flags, lengths; for failure messages.
impl fmt::Display for Frame {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for vlan in &self.vlans {
            write!(f, "tag {:04x}:{} | ", vlan.tpid, vlan.vid)?;
        }
        match &self.net {
            Net::V4(ip) => {
                write!(f, "IPv4 {} > {}", ip.src, ip.dst)?;
                if ip.version != 4 {
                    write!(f, " version {}", ip.version)?;
                }
                match ip.bad_ihl {
                    Some(ihl) => write!(f, " IHL {ihl} (bad)")?,
                    None => write!(f, " IHL {}", ip.header_len() / 4)?,
                }
                if let Some(n) = ip.total_len {
                    write!(f, " total length {n} (built {})", ip.built_len())?;
                }
                if ip.dont_fragment {
                    write!(f, " DF")?;
                }
                if ip.more_fragments || ip.fragment_offset != 0 {
                    write!(
                        f,
                        " frag offset {}{}",
                        ip.fragment_offset,
                        if ip.more_fragments { " MF" } else { "" }
                    )?;
                }
                write!(f, " | ")?;
                ip.l4.describe(f, ip.l4_len)?;
            }
            Net::V6(ip) => {
                write!(f, "IPv6 {} > {}", ip.src, ip.dst)?;
                if ip.version != 6 {
                    write!(f, " version {}", ip.version)?;
                }
                if let Some(n) = ip.payload_len {
                    write!(f, " payload length {n} (built {})", ip.built_payload_len())?;
                }
                for ext in &ip.ext {
                    match ext {
                        Ext::HopByHop { len } => write!(f, " | hop-by-hop {len}")?,
                        Ext::Routing { len, segments_left } => {
                            write!(f, " | routing {len} left {segments_left}")?
                        }
                        Ext::DestOpts { len } => write!(f, " | dest-opts {len}")?,
                        Ext::Fragment { offset, more, .. } => write!(
                            f,
                            " | fragment offset {offset}{}",
                            if *more { " M" } else { "" }
                        )?,
                        Ext::Ah { len } => write!(f, " | AH {len}")?,
                    }
                }
                write!(f, " | ")?;
                ip.l4.describe(f, ip.l4_len)?;
            }
            Net::Arp { sender, target } => write!(f, "ARP who-has {target} tell {sender}")?,
            Net::Other { ethertype, payload } => {
                write!(f, "ethertype {ethertype:04x}, {} bytes", payload.len())?
            }
        }
        if !self.trailer.is_empty() {
            write!(f, " | trailer {:02x?}", self.trailer)?;
        }
        if let Some(n) = self.pad_to {
            write!(f, " | padded to {n}")?;
        }
        if let Some(n) = self.cut {
            write!(f, " | cut to {n} of {}", self.full_len())?;
        }
        Ok(())
    }
}

impl Ipv4 {
    fn header_len(&self) -> usize {
        20 + self.options.len()
    }

    /// The L4 bytes in the packet as built.
    fn l4_in_packet(&self) -> usize {
        self.l4_len.unwrap_or(self.l4.len())
    }

    /// The packet's length as built (its real total length).
    fn built_len(&self) -> usize {
        self.header_len() + self.l4_in_packet()
    }

    /// The total length as written.
    fn total_len(&self) -> usize {
        self.total_len.map_or(self.built_len(), usize::from)
    }

    fn write(&self, out: &mut Vec<u8>) {
        assert!(self.options.len().is_multiple_of(4) && self.options.len() <= 40);
        let segment = self.l4.segment(
            &self.src.octets(),
            &self.dst.octets(),
            false,
            self.l4.protocol(false),
        );
        let l4_len = self.l4_len.unwrap_or(segment.len());
        assert!(
            l4_len <= segment.len(),
            "l4_bytes({l4_len}) past the segment's {} bytes",
            segment.len()
        );
        let total = self.total_len();
        assert!(total <= 0xffff);
        let ihl = self.bad_ihl.unwrap_or((self.header_len() / 4) as u8);
        let mut frag = self.fragment_offset;
        if self.dont_fragment {
            frag |= 0x4000;
        }
        if self.more_fragments {
            frag |= 0x2000;
        }
        let start = out.len();
        out.push(self.version << 4 | ihl);
        out.push(0);
        out.extend_from_slice(&(total as u16).to_be_bytes());
        out.extend_from_slice(&self.ident.to_be_bytes());
        out.extend_from_slice(&frag.to_be_bytes());
        out.push(self.ttl);
        out.push(self.l4.protocol(false));
        out.extend_from_slice(&[0, 0]);
        out.extend_from_slice(&self.src.octets());
        out.extend_from_slice(&self.dst.octets());
        out.extend_from_slice(&self.options);
        let sum = checksum(&[&out[start..]]);
        out[start + 10..start + 12].copy_from_slice(&sum.to_be_bytes());
        out.extend_from_slice(&segment[..l4_len]);
    }

    /// `len`: the frame's length; `offset`: where the IP header starts.
    fn expected(&self, len: usize, offset: usize) -> Parsed {
        if len < offset + 20 {
            return Parsed::Truncated;
        }
        let header_len = match self.bad_ihl {
            Some(ihl) => usize::from(ihl) * 4,
            None => self.header_len(),
        };
        let total = self.total_len();
        // Malformed, or a frame shorter than the packet it claims (options included).
        if self.version != 4 || header_len < 20 || total < header_len || offset + total > len {
            return Parsed::Truncated;
        }
        assert!(
            total <= self.built_len(),
            "ipv4_total_len({total}) past the {} bytes built, in a frame that holds them: the \
             reference cannot tell what the bytes after the built packet would say",
            self.built_len()
        );
        if !matches!(self.l4, L4::Tcp(_) | L4::Udp { .. }) {
            return Parsed::OtherProtocol;
        }
        if self.fragment_offset != 0 {
            return Parsed::NonFirstFragment;
        }
        // Only the packet's own bytes count: nothing after `offset + total` is read.
        self.l4.expected(
            total - header_len,
            self.more_fragments,
            Source::V4(self.src.octets()),
        )
    }
}

impl Ipv6 {
    /// The payload length as built (extension headers and the L4 bytes in the packet).
    fn built_payload_len(&self) -> usize {
        let ext_len: usize = self.ext.iter().map(|e| e.wire_len()).sum();
        ext_len + self.l4_len.unwrap_or(self.l4.len())
    }

    /// The payload length as written.
    fn payload_len(&self) -> usize {
        self.payload_len
            .map_or(self.built_payload_len(), usize::from)
    }

    fn write(&self, out: &mut Vec<u8>) {
        let protocol = self.l4.protocol(true);
        let segment = self
            .l4
            .segment(&self.src.octets(), &self.dst.octets(), true, protocol);
        let l4_len = self.l4_len.unwrap_or(segment.len());
        assert!(
            l4_len <= segment.len(),
            "l4_bytes({l4_len}) past the segment's {} bytes",
            segment.len()
        );
        let payload_len = self.payload_len();
        assert!(payload_len <= 0xffff);
        let first_next = self.ext.first().map_or(protocol, |e| e.protocol());
        out.extend_from_slice(&[self.version << 4, 0, 0, 0]);
        out.extend_from_slice(&(payload_len as u16).to_be_bytes());
        out.push(first_next);
        out.push(64);
        out.extend_from_slice(&self.src.octets());
        out.extend_from_slice(&self.dst.octets());
        for (i, ext) in self.ext.iter().enumerate() {
            let next = self.ext.get(i + 1).map_or(protocol, |e| e.protocol());
            ext.write(next, out);
        }
        out.extend_from_slice(&segment[..l4_len]);
    }

    /// `len`: the frame's length; `offset`: where the IP header starts.
    fn expected(&self, len: usize, offset: usize) -> Parsed {
        if len < offset + 40 {
            return Parsed::Truncated;
        }
        // The end of the packet: nothing after it is read.
        let end = offset + 40 + self.payload_len();
        if self.version != 6 || end > len {
            return Parsed::Truncated;
        }
        assert!(
            self.payload_len() <= self.built_payload_len(),
            "ipv6_payload_len({}) past the {} bytes built, in a frame that holds them: the \
             reference cannot tell what the bytes after the built packet would say",
            self.payload_len(),
            self.built_payload_len()
        );
        let src = Source::from_v6(self.src.octets());
        let opaque = Parsed::Opaque {
            src,
            reach: Reach::Any,
        };
        let cut = |more: bool| if more { opaque } else { Parsed::Truncated };
        let mut offset = offset + 40;
        let mut more = false;
        for (i, ext) in self.ext.iter().enumerate() {
            if i == MAX_V6_EXT_HEADERS {
                // Still an extension header after the bound: whatever follows could be TCP or
                // UDP.
                return opaque;
            }
            if end < offset + ext.bytes_read() {
                return cut(more);
            }
            if let Ext::Fragment {
                offset: frag_offset,
                more: m,
                ..
            } = *ext
            {
                if frag_offset != 0 {
                    return Parsed::NonFirstFragment;
                }
                more = m;
            }
            offset += ext.wire_len();
        }
        // A packet ending inside the last extension header's body has no transport bytes.
        self.l4.expected(end.saturating_sub(offset), more, src)
    }
}

impl Tcp {
    /// `available`: bytes of the TCP header in the packet (not past its end).
    fn expected(&self, available: usize, more_fragments: bool, src: Source) -> Parsed {
        if available >= TCP_THROUGH_FLAGS {
            return if self.flags & SYN != 0 && self.flags & ACK == 0 {
                Parsed::Syn {
                    src,
                    dport: self.dport,
                }
            } else {
                Parsed::NotSyn
            };
        }
        if !more_fragments {
            return Parsed::Truncated;
        }
        let reach = if available >= TCP_PORTS {
            Reach::TcpPort(self.dport)
        } else {
            Reach::AnyTcp
        };
        Parsed::Opaque { src, reach }
    }
}

impl L4 {
    /// The parse of a segment of which `available` bytes are in the packet.
    fn expected(&self, available: usize, more_fragments: bool, src: Source) -> Parsed {
        match self {
            L4::Tcp(tcp) => tcp.expected(available, more_fragments, src),
            L4::Udp { dport, .. } => {
                let needed = if more_fragments {
                    UDP_PORTS
                } else {
                    UDP_HEADER
                };
                if available >= needed {
                    Parsed::Datagram { src, dport: *dport }
                } else if more_fragments {
                    Parsed::Opaque {
                        src,
                        reach: Reach::AnyUdp,
                    }
                } else {
                    Parsed::Truncated
                }
            }
            _ => Parsed::OtherProtocol,
        }
    }

    /// Length of the whole segment.
    fn len(&self) -> usize {
        match self {
            L4::Tcp(tcp) => 20 + tcp.options.len() + tcp.payload.len(),
            L4::Udp { payload, .. } | L4::Icmp { payload } => 8 + payload.len(),
            L4::Other { payload, .. } => payload.len(),
        }
    }

    fn describe(&self, f: &mut fmt::Formatter<'_>, l4_len: Option<usize>) -> fmt::Result {
        match self {
            L4::Tcp(tcp) => {
                write!(f, "TCP {} > {} [", tcp.sport, tcp.dport)?;
                for (bit, name) in [
                    (SYN, 'S'),
                    (ACK, 'A'),
                    (FIN, 'F'),
                    (RST, 'R'),
                    (PSH, 'P'),
                    (URG, 'U'),
                    (ECE, 'E'),
                    (CWR, 'C'),
                ] {
                    if tcp.flags & bit != 0 {
                        write!(f, "{name}")?;
                    }
                }
                write!(f, "]")?;
                if !tcp.options.is_empty() {
                    write!(f, " options {}", tcp.options.len())?;
                }
                if !tcp.payload.is_empty() {
                    write!(f, " payload {}", tcp.payload.len())?;
                }
            }
            L4::Udp { sport, dport, .. } => write!(f, "UDP {sport} > {dport}")?,
            L4::Icmp { .. } => write!(f, "ICMP echo")?,
            L4::Other { protocol, payload } => {
                write!(f, "protocol {protocol}, {} bytes", payload.len())?
            }
        }
        if let Some(n) = l4_len {
            write!(f, " (only {n} bytes in the packet)")?;
        }
        Ok(())
    }

    pub fn protocol(&self, v6: bool) -> u8 {
        match self {
            L4::Tcp(_) => PROTO_TCP,
            L4::Udp { .. } => PROTO_UDP,
            L4::Icmp { .. } if v6 => PROTO_ICMPV6,
            L4::Icmp { .. } => PROTO_ICMP,
            L4::Other { protocol, .. } => {
                assert!(
                    *protocol != PROTO_TCP,
                    "L4::Other cannot be TCP: use L4::Tcp"
                );
                *protocol
            }
        }
    }

    /// The whole segment with its checksum (over the whole segment, as before fragmentation).
    fn segment(&self, src: &[u8], dst: &[u8], v6: bool, protocol: u8) -> Vec<u8> {
        let mut seg = Vec::new();
        let checksum_at = match self {
            L4::Tcp(tcp) => {
                assert!(tcp.options.len().is_multiple_of(4) && tcp.options.len() <= 40);
                let data_offset = (20 + tcp.options.len()) / 4;
                seg.extend_from_slice(&tcp.sport.to_be_bytes());
                seg.extend_from_slice(&tcp.dport.to_be_bytes());
                seg.extend_from_slice(&tcp.seq.to_be_bytes());
                seg.extend_from_slice(&tcp.ack.to_be_bytes());
                seg.push((data_offset as u8) << 4);
                seg.push(tcp.flags);
                seg.extend_from_slice(&0xffffu16.to_be_bytes()); // window
                seg.extend_from_slice(&[0, 0, 0, 0]); // checksum, urgent pointer
                seg.extend_from_slice(&tcp.options);
                seg.extend_from_slice(&tcp.payload);
                Some(16)
            }
            L4::Udp {
                sport,
                dport,
                payload,
            } => {
                seg.extend_from_slice(&sport.to_be_bytes());
                seg.extend_from_slice(&dport.to_be_bytes());
                seg.extend_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
                seg.extend_from_slice(&[0, 0]);
                seg.extend_from_slice(payload);
                Some(6)
            }
            L4::Icmp { payload } => {
                let kind = if v6 { 128 } else { 8 };
                seg.extend_from_slice(&[kind, 0, 0, 0, 0x12, 0x34, 0, 1]);
                seg.extend_from_slice(payload);
                Some(2)
            }
            L4::Other { payload, .. } => {
                seg.extend_from_slice(payload);
                None
            }
        };
        if let Some(at) = checksum_at {
            let len = seg.len() as u32;
            let mut pseudo = Vec::with_capacity(40);
            pseudo.extend_from_slice(src);
            pseudo.extend_from_slice(dst);
            if v6 {
                pseudo.extend_from_slice(&len.to_be_bytes());
                pseudo.extend_from_slice(&[0, 0, 0, protocol]);
            } else {
                pseudo.extend_from_slice(&[0, protocol]);
                pseudo.extend_from_slice(&(len as u16).to_be_bytes());
            }
            // ICMP over IPv4 has no pseudo-header.
            let sum = if !v6 && protocol == PROTO_ICMP {
                checksum(&[&seg])
            } else {
                checksum(&[&pseudo, &seg])
            };
            let sum = if sum == 0 && protocol == PROTO_UDP {
                0xffff
            } else {
                sum
            };
            seg[at..at + 2].copy_from_slice(&sum.to_be_bytes());
        }
        seg
    }
}

/// The Internet checksum over the concatenation of `parts` (each of even length except the
/// last).
fn checksum(parts: &[&[u8]]) -> u16 {
    let mut sum = 0u32;
    for part in parts {
        for pair in part.chunks(2) {
            let word = u16::from_be_bytes([pair[0], pair.get(1).copied().unwrap_or(0)]);
            sum += u32::from(word);
        }
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// The reference decision's view of a [`Rules`]: list `i` is bit `i`; ports from the lists'
/// sets, coverage by `ipnet` containment over each list's entries (IPv4 sources by IPv4
/// entries, IPv6 by IPv6).
#[derive(Clone, Copy, Debug)]
pub struct ReferenceRules<'a>(pub &'a Rules);

impl ReferenceRules<'_> {
    fn mask(&self, mut which: impl FnMut(&ListRules) -> bool) -> ListMask {
        self.0
            .lists
            .iter()
            .enumerate()
            .filter(|(_, list)| which(list))
            .fold(0, |mask, (i, _)| mask | 1 << i)
    }
}

fn protocol(proto: Proto) -> Protocol {
    match proto {
        Proto::Tcp => Protocol::Tcp,
        Proto::Udp => Protocol::Udp,
    }
}

impl verdict::Lookups for ReferenceRules<'_> {
    fn port_list(&self, proto: Proto, port: u16) -> ListMask {
        self.mask(|list| list.ports(protocol(proto)).contains(&port))
    }

    fn lists_with_ports(&self, proto: Proto) -> ListMask {
        self.mask(|list| !list.ports(protocol(proto)).is_empty())
    }

    fn enforcing(&self) -> ListMask {
        self.mask(|list| list.mode == Mode::Enforce)
    }

    fn monitoring(&self) -> ListMask {
        self.mask(|list| list.mode == Mode::Monitor)
    }

    /// A timed entry covers until its end, judged now.
    fn covering(&self, src: &Source) -> ListMask {
        let now = std::time::SystemTime::now();
        self.mask(|list| {
            list.entries.iter().any(|net| {
                let contains = match (net, src) {
                    (IpNet::V4(net), Source::V4(addr)) => net.contains(&Ipv4Addr::from(*addr)),
                    (IpNet::V6(net), Source::V6(addr)) => net.contains(&Ipv6Addr::from(*addr)),
                    _ => false,
                };
                contains && list.ends.get(net).is_none_or(|end| *end > now)
            })
        })
    }

    /// The reference model never runs under an emergency disable; tests that set one check
    /// the kernel against `PassEmergency` directly.
    fn emergency(&self) -> bool {
        false
    }
}

/// Lowercase hex, a space every 2 bytes and a line break every 16, for failure messages.
pub fn hex(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() * 3);
    for (i, byte) in bytes.iter().enumerate() {
        if i > 0 && i % 16 == 0 {
            out.push('\n');
        } else if i > 0 && i % 2 == 0 {
            out.push(' ');
        }
        let _ = write!(out, "{byte:02x}");
    }
    out
}
