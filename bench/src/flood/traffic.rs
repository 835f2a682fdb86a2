//! What the flood sends: SYNs from sources the list does not cover, through an AF_PACKET
//! socket (they reach the receiver as skbs) or through `BPF_PROG_TEST_RUN` in live-frame mode
//! (as xdp_frames), and the allowlisted client's connects.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use aya::programs::{TestRunAttrs, Xdp};
use aya::{TestRun, TestRunOptions};
use nix::sched::{CloneFlags, setns};

use super::lab::{Family, GEN_CPU, Lab, pin_self};
use crate::lists::{self, List};
use allowlist_tests::frames::{Frame, SYN};
use allowlist_tests::netns::PROTECTED;

/// The generator's pool: every frame it sends, and for the NIC path the bytes in which they
/// differ from the first (see `bench-ebpf`'s `GEN_POOL_V4`/`GEN_POOL_V6`).
pub struct Pool {
    pub family: Family,
    pub frames: Vec<Vec<u8>>,
}

/// Port the SYNs come from: the same for every frame, so that only the source and the
/// checksums differ between them.
const SPORT: u16 = 40000;

/// A SYN from `src` to the receiver's protected port with valid checksums, addressed from the
/// generator's veth to the receiver's, at least 60 bytes.
pub fn syn_frame(lab: &Lab, src: IpAddr, dst: IpAddr) -> Vec<u8> {
    let mut frame = Frame::tcp(src, dst, SPORT, PROTECTED)
        .flags(SYN)
        .pad_to(60)
        .build();
    frame[0..6].copy_from_slice(&lab.recv_mac);
    frame[6..12].copy_from_slice(&lab.gen_mac);
    frame
}

impl Pool {
    /// `n` frames with sources the list does not cover: IPv4 uniform over
    /// 1.0.0.0–223.255.255.255, IPv6 uniform over 2000::/3 (redrawn when covered, so every
    /// frame is one to drop).
    pub fn new(lab: &Lab, family: Family, list: &List, n: usize, seed: u64) -> Pool {
        let mut rng = lists::Rng::new(seed);
        let mut frames = Vec::with_capacity(n);
        while frames.len() < n {
            let (key, src) = match family {
                Family::V4 => {
                    let a = (1u32 << 24) + rng.below(u64::from(0xE000_0000u32 - (1 << 24))) as u32;
                    (u128::from(a), IpAddr::V4(Ipv4Addr::from(a)))
                }
                Family::V6 => {
                    let high = 0x2000_0000_0000_0000u64 | (rng.next_u64() >> 3);
                    let a = u128::from(high) << 64 | u128::from(rng.next_u64());
                    (a, IpAddr::V6(Ipv6Addr::from(a)))
                }
            };
            if list.covers(key) {
                continue;
            }
            frames.push(syn_frame(lab, src, family.receiver()));
        }
        Pool { family, frames }
    }

    /// The generator program's pool entries: for IPv4 source, IP and TCP checksums (8 bytes);
    /// for IPv6 source, TCP checksum and 2 bytes of padding (20).
    pub fn entries_v4(&self) -> Vec<[u8; 8]> {
        self.frames
            .iter()
            .map(|f| {
                let mut e = [0u8; 8];
                e[0..4].copy_from_slice(&f[26..30]);
                e[4..6].copy_from_slice(&f[24..26]);
                e[6..8].copy_from_slice(&f[50..52]);
                e
            })
            .collect()
    }

    pub fn entries_v6(&self) -> Vec<[u8; 20]> {
        self.frames
            .iter()
            .map(|f| {
                let mut e = [0u8; 20];
                e[0..16].copy_from_slice(&f[22..38]);
                e[16..18].copy_from_slice(&f[70..72]);
                e
            })
            .collect()
    }
}

/// Sends the pool round and round from the generator's veth through an AF_PACKET socket until
/// `stop`; returns frames sent.
pub fn send_skbs(lab: &Lab, pool: &Pool, stop: &AtomicBool) -> Result<u64> {
    setns(lab.gen_ns.open()?, CloneFlags::CLONE_NEWNET)?;
    pin_self(GEN_CPU)?;
    let frames = &pool.frames;
    // SAFETY: plain socket calls on a descriptor this function owns and closes.
    unsafe {
        let fd = libc::socket(libc::AF_PACKET, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 0);
        if fd < 0 {
            bail!("AF_PACKET socket: {}", std::io::Error::last_os_error());
        }
        let one: libc::c_int = 1;
        libc::setsockopt(
            fd,
            libc::SOL_PACKET,
            libc::PACKET_QDISC_BYPASS,
            (&raw const one).cast(),
            4,
        );
        let name = std::ffi::CString::new(lab.gen_if.as_str())?;
        let mut addr: libc::sockaddr_ll = std::mem::zeroed();
        addr.sll_family = libc::AF_PACKET as u16;
        addr.sll_ifindex = libc::if_nametoindex(name.as_ptr()) as i32;
        addr.sll_halen = 6;
        addr.sll_addr[..6].copy_from_slice(&lab.recv_mac);
        const BATCH: usize = 64;
        let mut sent = 0u64;
        let mut next = 0usize;
        let mut iov: Vec<libc::iovec> = vec![std::mem::zeroed(); BATCH];
        let mut msgs: Vec<libc::mmsghdr> = vec![std::mem::zeroed(); BATCH];
        while !stop.load(Ordering::Relaxed) {
            for i in 0..BATCH {
                let frame = &frames[(next + i) % frames.len()];
                iov[i] = libc::iovec {
                    iov_base: frame.as_ptr() as *mut _,
                    iov_len: frame.len(),
                };
                msgs[i].msg_hdr.msg_name = (&raw mut addr).cast();
                msgs[i].msg_hdr.msg_namelen = size_of::<libc::sockaddr_ll>() as u32;
                msgs[i].msg_hdr.msg_iov = &raw mut iov[i];
                msgs[i].msg_hdr.msg_iovlen = 1;
            }
            let n = libc::sendmmsg(fd, msgs.as_mut_ptr(), BATCH as u32, 0);
            if n > 0 {
                sent += n as u64;
                next = (next + n as usize) % frames.len();
            }
        }
        libc::close(fd);
        Ok(sent)
    }
}

/// Runs the generator program (its pool and target already in its maps) in live-frame mode
/// from the generator's namespace until `stop`: every run redirects one frame into the
/// generator's veth, which hands it to the receiver's as an xdp_frame. Returns the runs.
pub fn send_xdp_frames(lab: &Lab, program: &Xdp, pool: &Pool, stop: &AtomicBool) -> Result<u64> {
    // bpf_redirect resolves the ifindex in the namespace of the caller.
    setns(lab.gen_ns.open()?, CloneFlags::CLONE_NEWNET)?;
    pin_self(GEN_CPU)?;
    /// Runs per call: short enough that `stop` is seen within a few tens of ms.
    const REPEAT: u32 = 1 << 16;
    let mut runs = 0u64;
    while !stop.load(Ordering::Relaxed) {
        program.test_run(TestRunOptions {
            data_in: Some(&pool.frames[0]),
            repeat: REPEAT,
            attrs: TestRunAttrs::new().xdp_live_frames(64),
            ..TestRunOptions::default()
        })?;
        runs += u64::from(REPEAT);
    }
    Ok(runs)
}

/// `n` connects of the allowlisted client to the receiver's protected port, in ms, from CPU 0
/// at real-time priority (see the module comment of `flood`).
pub fn connects(
    lab: &Lab,
    family: Family,
    n: usize,
    stop: Option<&AtomicBool>,
) -> Result<(Vec<f64>, usize)> {
    setns(lab.gen_ns.open()?, CloneFlags::CLONE_NEWNET)?;
    pin_self(GEN_CPU)?;
    let param = libc::sched_param { sched_priority: 10 };
    // SAFETY: sched_setscheduler on the calling thread with a valid parameter block.
    if unsafe { libc::sched_setscheduler(0, libc::SCHED_FIFO, &param) } != 0 {
        bail!(
            "SCHED_FIFO for the client: {}",
            std::io::Error::last_os_error()
        );
    }
    let to = SocketAddr::new(family.receiver(), PROTECTED);
    let mut ms = Vec::with_capacity(n);
    let mut failed = 0;
    for _ in 0..n {
        if stop.is_some_and(|s| s.load(Ordering::Relaxed)) {
            break;
        }
        let started = Instant::now();
        match TcpStream::connect_timeout(&to, Duration::from_secs(1)) {
            Ok(stream) => {
                ms.push(started.elapsed().as_secs_f64() * 1000.0);
                drop(stream);
            }
            Err(_) => failed += 1,
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    Ok((ms, failed))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The ones' complement sum of `words` folded to 16 bits.
    fn fold(mut sum: u32) -> u16 {
        while sum > 0xffff {
            sum = (sum & 0xffff) + (sum >> 16);
        }
        sum as u16
    }

    fn sum(bytes: &[u8]) -> u32 {
        bytes
            .chunks(2)
            .map(|p| u32::from(u16::from_be_bytes([p[0], *p.get(1).unwrap_or(&0)])))
            .sum()
    }

    /// The pool entries hold exactly the bytes in which two frames differ, at the offsets the
    /// generator program writes them, and the checksums in them verify.
    #[test]
    fn pool_entries_are_what_the_generator_writes() {
        for (a, b) in [
            (
                IpAddr::V4(Ipv4Addr::new(1, 2, 3, 4)),
                IpAddr::V4(Ipv4Addr::new(200, 9, 8, 7)),
            ),
            (
                IpAddr::V6("2a00::1".parse().unwrap()),
                IpAddr::V6("3fff:1:2::9".parse().unwrap()),
            ),
        ] {
            let dst = match a {
                IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::new(198, 18, 0, 1)),
                IpAddr::V6(_) => IpAddr::V6("2001:db8::1".parse().unwrap()),
            };
            let build = |src| {
                Frame::tcp(src, dst, SPORT, PROTECTED)
                    .flags(SYN)
                    .pad_to(60)
                    .build()
            };
            let (fa, fb) = (build(a), build(b));
            let pool = Pool {
                family: if a.is_ipv4() { Family::V4 } else { Family::V6 },
                frames: vec![fa.clone(), fb.clone()],
            };
            // The first frame rewritten with the second's entry, as the program does.
            let mut rewritten = fa.clone();
            if a.is_ipv4() {
                let e = pool.entries_v4()[1];
                rewritten[26..30].copy_from_slice(&e[0..4]);
                rewritten[24..26].copy_from_slice(&e[4..6]);
                rewritten[50..52].copy_from_slice(&e[6..8]);
                assert_eq!(
                    fold(sum(&rewritten[14..34])),
                    0xffff,
                    "IPv4 header checksum"
                );
                let pseudo = sum(&rewritten[26..34]) + 6 + 20;
                assert_eq!(
                    fold(pseudo + sum(&rewritten[34..54])),
                    0xffff,
                    "TCP checksum"
                );
            } else {
                let e = pool.entries_v6()[1];
                rewritten[22..38].copy_from_slice(&e[0..16]);
                rewritten[70..72].copy_from_slice(&e[16..18]);
                let pseudo = sum(&rewritten[22..54]) + 6 + 20;
                assert_eq!(
                    fold(pseudo + sum(&rewritten[54..74])),
                    0xffff,
                    "TCP checksum"
                );
            }
            assert_eq!(rewritten, fb);
        }
    }
}
