//! Random frames as raw bytes, from well-formed SYNs and datagrams to garbage: 0–3 VLAN tags,
//! IPv4 with options and every fragment shape, IPv6 with extension header chains of any length
//! (nested fragment headers, odd AH lengths, headers longer than the packet, unknown next
//! headers), TCP with any flags and data offset, UDP (to the setup's UDP ports mostly, with
//! lengths that lie), ICMP, other protocols, non-IP; then first fragments cut inside the
//! transport header, transport headers shorter than they should be, length fields that lie,
//! trailers, padding, cuts at header boundaries and flipped bytes. Nothing here knows the
//! expected verdict: the model reads the bytes.

use std::net::{IpAddr, Ipv6Addr};

use super::{Rng, addresses, bytes, percent, pick, weighted};
use crate::model::Setup;

/// `BPF_PROG_TEST_RUN` refuses XDP frames longer than a page less head- and tailroom.
const MAX_FRAME: usize = 3000;

/// A frame and what the generator put in it, for the coverage summary.
pub struct Generated {
    pub bytes: Vec<u8>,
    pub traits: Vec<&'static str>,
}

/// The frame under construction, with the offsets where a cut is most telling.
struct Builder {
    out: Vec<u8>,
    boundaries: Vec<usize>,
    traits: Vec<&'static str>,
}

impl Builder {
    fn push16(&mut self, value: u16) {
        self.out.extend_from_slice(&value.to_be_bytes());
    }

    /// Marks the current end, and `extra` offsets after `base`, as boundaries.
    fn mark(&mut self, base: usize, extra: &[usize]) {
        self.boundaries.push(self.out.len());
        self.boundaries.extend(extra.iter().map(|o| base + o));
    }
}

pub fn frame(rng: &mut Rng, setup: &Setup) -> Generated {
    let mut b = Builder {
        out: bytes(rng, 12),
        boundaries: Vec::new(),
        traits: Vec::new(),
    };
    let tags = weighted(rng, &[70, 14, 10, 6]);
    b.traits
        .push(["untagged", "1 tag", "2 tags", "3 tags"][tags]);
    for _ in 0..tags {
        let tpid = match weighted(rng, &[48, 48, 4]) {
            0 => 0x8100,
            1 => 0x88a8,
            _ => 0x9100,
        };
        b.push16(tpid);
        b.push16(rng.u16(..));
        b.mark(0, &[]);
    }
    match weighted(rng, &[42, 46, 12]) {
        0 => {
            b.push16(0x0800);
            b.mark(0, &[]);
            ipv4(rng, setup, &mut b);
        }
        1 => {
            b.push16(0x86dd);
            b.mark(0, &[]);
            ipv6(rng, setup, &mut b);
        }
        _ => {
            b.traits.push("non-IP");
            let ethertype = pick([0x0806, 0x88cc, 0x0842, 0x8847, rng.u16(..)], rng);
            b.push16(ethertype);
            let n = rng.usize(0..64);
            b.out.extend(bytes(rng, n));
        }
    }
    after_the_packet(rng, &mut b);
    Generated {
        bytes: b.out,
        traits: b.traits,
    }
}

/// A plain, well-formed SYN (or, with `udp`, a UDP datagram) from `src` to `port`, untagged:
/// what the differential test sends at the instants around an end.
pub fn probe(src: IpAddr, port: u16, udp: bool) -> Vec<u8> {
    let mut seg = vec![0x9c, 0x40];
    seg.extend_from_slice(&port.to_be_bytes());
    if udp {
        seg.extend_from_slice(&[0, 12, 0, 0, 1, 2, 3, 4]);
    } else {
        // Sequence and acknowledgement numbers, data offset 5, SYN, window, checksum, urgent.
        seg.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 0, 0x50, 0x02, 0xff, 0xff, 0, 0, 0, 0]);
    }
    let protocol = if udp { 17 } else { 6 };
    let mut out = vec![0x02, 0, 0, 0, 0, 1, 0x02, 0, 0, 0, 0, 2];
    match src {
        IpAddr::V4(src) => {
            out.extend_from_slice(&[0x08, 0x00, 0x45, 0]);
            out.extend_from_slice(&(20 + seg.len() as u16).to_be_bytes());
            out.extend_from_slice(&[0, 0, 0, 0, 64, protocol, 0, 0]);
            out.extend_from_slice(&src.octets());
            out.extend_from_slice(&[198, 18, 0, 1]);
        }
        IpAddr::V6(src) => {
            out.extend_from_slice(&[0x86, 0xdd, 0x60, 0, 0, 0]);
            out.extend_from_slice(&(seg.len() as u16).to_be_bytes());
            out.extend_from_slice(&[protocol, 64]);
            out.extend_from_slice(&src.octets());
            out.extend_from_slice(&Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1).octets());
        }
    }
    out.extend(seg);
    out
}

/// Trailers, padding, cuts and flipped bytes.
fn after_the_packet(rng: &mut Rng, b: &mut Builder) {
    if percent(rng, 15) {
        b.traits.push("trailer");
        let n = rng.usize(1..=24);
        b.out.extend(bytes(rng, n));
    }
    if percent(rng, 10) && b.out.len() < 60 {
        b.traits.push("padded to 60");
        b.out.resize(60, 0);
    }
    if b.out.len() > MAX_FRAME {
        b.out.truncate(MAX_FRAME);
    }
    if percent(rng, 12) {
        b.traits.push("cut");
        let len = b.out.len();
        let at = if !b.boundaries.is_empty() && percent(rng, 75) {
            let at = b.boundaries[rng.usize(..b.boundaries.len())];
            match rng.u32(0..4) {
                0 => at.saturating_sub(1),
                1 => at + 1,
                _ => at,
            }
        } else {
            rng.usize(0..=len)
        };
        b.out.truncate(at.min(len));
    }
    if percent(rng, 8) && !b.out.is_empty() {
        b.traits.push("flipped bytes");
        for _ in 0..rng.usize(1..=3) {
            // Mostly in the headers, where a flip changes the parse.
            let span = if percent(rng, 80) {
                b.out.len().min(90)
            } else {
                b.out.len()
            };
            let at = rng.usize(..span);
            b.out[at] = if percent(rng, 50) {
                b.out[at] ^ (1 << rng.u32(0..8))
            } else {
                rng.u8(..)
            };
        }
    }
}

/// A transport segment: its protocol number, bytes, and the offsets where a cut matters.
fn segment(rng: &mut Rng, setup: &Setup, b: &mut Builder) -> (u8, Vec<u8>, Vec<usize>) {
    match weighted(rng, &[58, 28, 5, 9]) {
        0 => {
            b.traits.push("TCP");
            let options = if percent(rng, 40) {
                4 * rng.usize(1..=10)
            } else {
                0
            };
            let data_offset = if percent(rng, 85) {
                (5 + options / 4) as u8
            } else {
                b.traits.push("TCP data offset lies");
                rng.u8(0..16)
            };
            let flags = match weighted(rng, &[30, 35, 35]) {
                0 => pick([0x02, 0x42 | 0x80, 0x0a, 0x22, 0x03, 0x06], rng),
                1 => rng.u8(..),
                _ => pick([0x10, 0x12, 0x04, 0x14, 0x11, 0x18, 0x00, 0xff], rng),
            };
            let mut seg = Vec::with_capacity(20 + options);
            seg.extend_from_slice(&rng.u16(..).to_be_bytes());
            seg.extend_from_slice(&addresses::port(rng, setup, false).to_be_bytes());
            seg.extend(bytes(rng, 8)); // sequence and acknowledgement numbers
            let reserved = if percent(rng, 10) { rng.u8(0..16) } else { 0 };
            seg.push(data_offset << 4 | reserved);
            seg.push(flags);
            seg.extend(bytes(rng, 6)); // window, checksum, urgent pointer
            seg.extend(bytes(rng, options));
            let payload = if percent(rng, 70) {
                0
            } else {
                rng.usize(1..64)
            };
            seg.extend(bytes(rng, payload));
            (6, seg, vec![2, 4, 13, 14, 20])
        }
        1 => {
            b.traits.push("UDP");
            let payload = rng.usize(0..32);
            let mut seg = Vec::with_capacity(8 + payload);
            seg.extend_from_slice(&rng.u16(..).to_be_bytes());
            seg.extend_from_slice(&addresses::port(rng, setup, true).to_be_bytes());
            // The UDP length is not read; a lie must change nothing.
            let length = if percent(rng, 8) {
                b.traits.push("UDP length lies");
                pick([0, 1, 7, 8, 9, 0xffff, rng.u16(..)], rng)
            } else {
                (8 + payload) as u16
            };
            seg.extend_from_slice(&length.to_be_bytes());
            seg.extend(bytes(rng, 2 + payload));
            (17, seg, vec![4, 8])
        }
        2 => {
            b.traits.push("ICMP");
            // An echo request (ipv6() turns it into ICMPv6's).
            let mut seg = vec![8, 0];
            let n = 6 + rng.usize(0..32);
            seg.extend(bytes(rng, n));
            (1, seg, vec![8])
        }
        _ => {
            b.traits.push("other protocol");
            let protocol = pick([0, 2, 41, 47, 50, 58, 59, 132, 255, rng.u8(..)], rng);
            let n = rng.usize(0..40);
            (protocol, bytes(rng, n), vec![])
        }
    }
}

/// Keeps a tiny piece of a first fragment's segment: the sizes around the ports and flags.
fn tiny(rng: &mut Rng, b: &mut Builder, protocol: u8, seg: &mut Vec<u8>) {
    b.traits.push(match protocol {
        6 => "tiny TCP first fragment",
        17 => "tiny UDP first fragment",
        _ => "tiny first fragment",
    });
    let keep = pick(
        [
            0,
            1,
            3,
            4,
            5,
            8,
            12,
            13,
            14,
            15,
            20,
            rng.usize(0..=seg.len()),
        ],
        rng,
    );
    seg.truncate(keep);
}

/// Sometimes cuts a whole packet's segment inside its transport header (a UDP header of fewer
/// than 8 bytes, a TCP header without its flags), with the IP lengths telling the truth.
fn short(rng: &mut Rng, b: &mut Builder, seg: &mut Vec<u8>) {
    if percent(rng, 4) {
        b.traits.push("short transport header");
        let keep = pick([0, 1, 3, 4, 5, 7, 8, 13, 14], rng);
        seg.truncate(keep);
    }
}

/// A length field's value: the real one, or a lie near a boundary or anywhere.
fn length_field(rng: &mut Rng, b: &mut Builder, real: usize, boundaries: &[usize]) -> u16 {
    if !percent(rng, 10) {
        return real as u16;
    }
    b.traits.push("length field lies");
    let near = boundaries[rng.usize(..boundaries.len())];
    let value = match rng.u32(0..6) {
        0 => real.saturating_sub(1),
        1 => real + 1,
        2 => real + rng.usize(1..64),
        3 => rng.usize(..=0xffff),
        _ => match rng.u32(0..3) {
            0 => near.saturating_sub(1),
            1 => near + 1,
            _ => near,
        },
    };
    value.min(0xffff) as u16
}

fn ipv4(rng: &mut Rng, setup: &Setup, b: &mut Builder) {
    b.traits.push("IPv4");
    let start = b.out.len();
    let (protocol, mut seg, seg_marks) = segment(rng, setup, b);
    let options = if percent(rng, 25) {
        b.traits.push("IPv4 options");
        4 * rng.usize(1..=10)
    } else {
        0
    };
    let (fragment, first) = match weighted(rng, &[60, 20, 12, 8]) {
        0 => (0, false),
        1 => {
            b.traits.push("IPv4 first fragment");
            (0x2000, true)
        }
        2 => {
            b.traits.push("IPv4 later fragment");
            let offset = pick([1, 2, 3, 0x1fff, rng.u16(1..0x2000)], rng);
            (offset | if percent(rng, 50) { 0x2000 } else { 0 }, false)
        }
        // DF, the reserved bit, or both, with MF or not.
        _ => {
            let bits = rng.u16(0..8) << 13;
            (bits, bits & 0x2000 != 0)
        }
    };
    if first && percent(rng, 60) {
        tiny(rng, b, protocol, &mut seg);
    } else if !first {
        short(rng, b, &mut seg);
    }
    let header_len = 20 + options;
    let ihl = if percent(rng, 95) {
        (header_len / 4) as u8
    } else {
        b.traits.push("IHL lies");
        rng.u8(0..16)
    };
    let version = if percent(rng, 97) { 4 } else { rng.u8(0..16) };
    let real = header_len + seg.len();
    let total = length_field(rng, b, real, &[20, usize::from(ihl) * 4, header_len]);
    b.out.push(version << 4 | ihl);
    b.out.push(rng.u8(..));
    b.push16(total);
    b.push16(rng.u16(..));
    b.push16(fragment);
    b.out.push(rng.u8(..));
    b.out.push(protocol);
    b.out.extend(bytes(rng, 2));
    b.out.extend_from_slice(&addresses::v4(rng, setup).octets());
    b.out.extend_from_slice(&[198, 18, 0, 1]);
    b.mark(start, &[]);
    b.out.extend(bytes(rng, options));
    b.mark(start, &[]);
    let seg_start = b.out.len();
    b.out.extend_from_slice(&seg);
    b.mark(seg_start, &seg_marks);
}

/// An IPv6 extension header: its next-header number and its bytes (next header byte left
/// for the caller).
fn extension(rng: &mut Rng, b: &mut Builder) -> (u8, Vec<u8>) {
    match weighted(rng, &[20, 15, 20, 30, 15]) {
        kind @ 0..=2 => {
            let len = if percent(rng, 92) {
                rng.u8(0..4)
            } else {
                b.traits
                    .push("IPv6 extension header longer than the packet");
                rng.u8(..)
            };
            let mut header = vec![0, len];
            header.extend(bytes(rng, (usize::from(len) + 1) * 8 - 2));
            ([0, 43, 60][kind], header)
        }
        3 => {
            b.traits.push("IPv6 fragment header");
            let offset = if percent(rng, 70) {
                0
            } else {
                pick([1, 0x1fff, rng.u16(1..0x2000)], rng)
            };
            let more = u16::from(percent(rng, 60));
            let reserved = if percent(rng, 10) {
                rng.u16(0..4) << 1
            } else {
                0
            };
            let mut header = vec![0, if percent(rng, 10) { rng.u8(..) } else { 0 }];
            header.extend_from_slice(&(offset << 3 | reserved | more).to_be_bytes());
            header.extend(bytes(rng, 4));
            (44, header)
        }
        _ => {
            let len = if percent(rng, 80) {
                pick([1, 2, 4], rng)
            } else {
                b.traits.push("odd AH length");
                rng.u8(..)
            };
            let mut header = vec![0, len];
            header.extend(bytes(rng, (usize::from(len) + 2) * 4 - 2));
            (51, header)
        }
    }
}

fn ipv6(rng: &mut Rng, setup: &Setup, b: &mut Builder) {
    b.traits.push("IPv6");
    let start = b.out.len();
    let (mut protocol, mut seg, seg_marks) = segment(rng, setup, b);
    if protocol == 1 {
        protocol = 58;
        // An echo request, when the segment was not cut to nothing.
        if let Some(kind) = seg.first_mut() {
            *kind = 128;
        }
    }
    let count = match weighted(rng, &[55, 20, 10, 8, 7]) {
        0 => 0,
        1 => 1,
        2 => rng.usize(2..=3),
        3 => rng.usize(4..=6),
        _ => rng.usize(7..=9),
    };
    if count > 6 {
        b.traits.push("IPv6 chain longer than 6");
    } else if count > 0 {
        b.traits.push("IPv6 extension headers");
    }
    let chain: Vec<(u8, Vec<u8>)> = (0..count).map(|_| extension(rng, b)).collect();
    if count > 0 && percent(rng, 10) {
        b.traits.push("unknown IPv6 next header");
        protocol = pick([59, 50, 135, 139, 140, 253, rng.u8(..)], rng);
    }
    let fragmented = chain
        .iter()
        .any(|(kind, header)| *kind == 44 && header[3] & 1 != 0);
    if fragmented && percent(rng, 60) {
        tiny(rng, b, protocol, &mut seg);
    } else if !fragmented {
        short(rng, b, &mut seg);
    }
    let mut ext_marks = Vec::new();
    let mut ext_len = 0;
    for (_, header) in &chain {
        ext_marks.extend([ext_len, ext_len + 1, ext_len + 2, ext_len + 8]);
        ext_len += header.len();
    }
    ext_marks.push(ext_len);
    let payload_len = length_field(rng, b, ext_len + seg.len(), &ext_marks);
    let version = if percent(rng, 97) { 6 } else { rng.u8(0..16) };
    b.out
        .extend_from_slice(&[version << 4, rng.u8(..), rng.u8(..), rng.u8(..)]);
    b.push16(payload_len);
    b.out
        .push(chain.first().map_or(protocol, |(kind, _)| *kind));
    b.out.push(rng.u8(..));
    let src = addresses::v6(rng, setup);
    if src.to_ipv4_mapped().is_some() {
        b.traits.push("IPv4-mapped source");
    }
    b.out.extend_from_slice(&src.octets());
    b.out
        .extend_from_slice(&Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1).octets());
    b.mark(start, &[]);
    let chain_start = b.out.len();
    for (i, (_, header)) in chain.iter().enumerate() {
        let next = chain.get(i + 1).map_or(protocol, |(kind, _)| *kind);
        b.out.push(next);
        b.out.extend_from_slice(&header[1..]);
    }
    b.mark(chain_start, &ext_marks);
    let seg_start = b.out.len();
    b.out.extend_from_slice(&seg);
    b.mark(seg_start, &seg_marks);
}
