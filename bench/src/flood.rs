//! Part 2: a SYN flood over veth between two namespaces, against allowlist and its peers.
//!
//! Receive path, the same for every filter: the receiver's veth has GRO on (so veth uses
//! NAPI, with or without XDP), the generator's veth has TSO/GSO off (so every frame is
//! eligible for it), and the NAPI poll runs in a threaded-NAPI kernel thread pinned to CPU 1;
//! the generator (an AF_PACKET socket with PACKET_QDISC_BYPASS and sendmmsg, protocol 0 so it
//! receives nothing) runs on CPU 0. Receiver CPU = system + irq + softirq time of CPU 1 from
//! /proc/stat over the flood, divided by the filter's own drop counter; the NAPI thread's own
//! CPU time is reported next to it (insensitive to other load on CPU 1). ARP is replaced by
//! permanent neighbour entries, and both namespaces have blackhole default routes, so nothing
//! addressed to a spoofed source can leave the lab.
//!
//! The allowlisted client shares CPU 0 with the generator, at real-time priority: on a real
//! network the flood comes from other machines, and at normal priority the client's own
//! wake-up waited behind the generator (p99 0.3–0.8 ms where the receiver added 0.1), which
//! would say nothing about the filter. Its connects are timed with each filter installed,
//! first without the flood and then during it.

use std::fs;
use std::io::Write as _;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd as _;
use std::os::unix::process::CommandExt as _;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use allowlist_common::verdict::Reason;
use allowlist_config::rules::Rules;
use allowlist_loader::filter::Filter;
use anyhow::{Context as _, Result, bail};
use aya::programs::XdpMode;
use ipnet::IpNet;
use nix::sched::{CloneFlags, CpuSet, sched_setaffinity, setns};
use nix::unistd::Pid;
use serde_json::{Value, json};

use super::lists::{self, List};
use super::stats::Summary;
use allowlist_tests::netns::{Netns, PROTECTED, next_id, run_cmd};

const RECV_V4: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);
const CLIENT_V4: Ipv4Addr = Ipv4Addr::new(198, 18, 1, 2);
const GEN_CPU: usize = 0;
const RECV_CPU: usize = 1;

pub struct Settings {
    pub entries: usize,
    pub seconds: f64,
    pub connects: usize,
    pub pool: usize,
    pub seed: u64,
    pub filters: Vec<String>,
}

#[derive(Debug, Clone, Default)]
pub struct Row {
    pub filter: String,
    pub sent: u64,
    /// Frames the receiver's veth refused because its ring was full (not in `sent`): they never
    /// reached the filter. A connect whose SYN is among them waits for TCP's one-second
    /// retransmission.
    pub ring_lost: u64,
    pub dropped: u64,
    pub seconds: f64,
    pub cpu_ns_per_drop: f64,
    pub napi_ns_per_drop: f64,
    /// Connects with the filter installed and no flood, the row's own baseline.
    pub idle_connect_ms: Summary,
    pub connect_ms: Summary,
    pub connect_failed: usize,
    pub note: String,
}

impl Row {
    pub fn json(&self) -> Value {
        json!({
            "filter": self.filter, "sent": self.sent, "dropped": self.dropped,
            "seconds": self.seconds, "drop_mpps": self.dropped as f64 / self.seconds / 1e6,
            "sent_mpps": self.sent as f64 / self.seconds / 1e6,
            "ring_lost": self.ring_lost,
            "ring_lost_pct": 100.0 * self.ring_lost as f64 / (self.sent + self.ring_lost).max(1) as f64,
            "cpu_ns_per_drop": self.cpu_ns_per_drop, "napi_ns_per_drop": self.napi_ns_per_drop,
            "idle_connect_ms": self.idle_connect_ms.json(),
            "connect_ms": self.connect_ms.json(), "connect_failed": self.connect_failed,
            "connect_p99_vs_idle": self.connect_ms.p99 / self.idle_connect_ms.p99,
            "note": self.note,
        })
    }
}

#[derive(Debug, Default)]
pub struct Outcome {
    pub rows: Vec<Row>,
    pub conntrack: String,
    pub pool: usize,
}

struct Lab {
    recv: Netns,
    gen_ns: Netns,
    recv_if: String,
    gen_if: String,
    recv_mac: [u8; 6],
    gen_mac: [u8; 6],
}

fn mac_of(ns: &Netns, dev: &str) -> Result<[u8; 6]> {
    let text = ns.ip(&["-o", "link", "show", "dev", dev])?;
    let mac = text
        .split_whitespace()
        .skip_while(|w| *w != "link/ether")
        .nth(1)
        .context("no link/ether")?;
    let mut out = [0u8; 6];
    for (slot, byte) in out.iter_mut().zip(mac.split(':')) {
        *slot = u8::from_str_radix(byte, 16)?;
    }
    Ok(out)
}

fn mac_text(mac: [u8; 6]) -> String {
    mac.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// A command run with its network namespace set by setns (keeping the host's mount
/// namespace, so bpffs at /sys/fs/bpf stays visible, which xdp-filter needs).
fn in_ns(ns: &Netns, program: &str, args: &[&str]) -> Result<String> {
    let file = ns.open()?;
    let fd = file.as_raw_fd();
    let mut cmd = Command::new(program);
    cmd.args(args).stdin(Stdio::null());
    // SAFETY: only setns(2) between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            if libc::setns(fd, libc::CLONE_NEWNET) == 0 {
                Ok(())
            } else {
                Err(std::io::Error::last_os_error())
            }
        });
    }
    run_cmd(&mut cmd)
}

fn sh(ns: &Netns, script: &str) -> Result<String> {
    run_cmd(Command::new("ip").args(["netns", "exec", ns.name(), "sh", "-c", script]))
}

impl Lab {
    fn new() -> Result<Lab> {
        let recv = Netns::new();
        let gen_ns = Netns::new();
        let id = next_id();
        let (recv_if, gen_if) = (format!("flr{id}"), format!("flg{id}"));
        recv.ip(&[
            "link",
            "add",
            &recv_if,
            "type",
            "veth",
            "peer",
            "name",
            &gen_if,
            "netns",
            gen_ns.name(),
        ])?;
        recv.ip(&["addr", "add", "198.18.0.1/16", "dev", &recv_if])?;
        gen_ns.ip(&["addr", "add", "198.18.1.2/16", "dev", &gen_if])?;
        for (ns, dev) in [(&recv, &recv_if), (&gen_ns, &gen_if)] {
            ns.ip(&["link", "set", "lo", "up"])?;
            ns.ip(&["link", "set", dev, "up"])?;
            // Nothing addressed outside the lab can leave it.
            ns.ip(&["route", "add", "blackhole", "default"])?;
            ns.ip(&["-6", "route", "add", "blackhole", "default"])?;
        }
        let recv_mac = mac_of(&recv, &recv_if)?;
        let gen_mac = mac_of(&gen_ns, &gen_if)?;
        recv.ip(&[
            "neigh",
            "replace",
            "198.18.1.2",
            "lladdr",
            &mac_text(gen_mac),
            "dev",
            &recv_if,
            "nud",
            "permanent",
        ])?;
        gen_ns.ip(&[
            "neigh",
            "replace",
            "198.18.0.1",
            "lladdr",
            &mac_text(recv_mac),
            "dev",
            &gen_if,
            "nud",
            "permanent",
        ])?;
        sh(&gen_ns, &format!("ethtool -K {gen_if} tso off gso off"))?;
        sh(&recv, &format!("ethtool -K {recv_if} gro on"))?;
        sh(
            &recv,
            &format!("echo 1 > /sys/class/net/{recv_if}/threaded"),
        )?;
        Ok(Lab {
            recv,
            gen_ns,
            recv_if,
            gen_if,
            recv_mac,
            gen_mac,
        })
    }

    /// Pins the receiver's NAPI threads to CPU 1; returns their pids.
    fn pin_napi(&self) -> Result<Vec<i32>> {
        let prefix = format!("napi/{}-", self.recv_if);
        let mut pids = Vec::new();
        for entry in fs::read_dir("/proc")? {
            let entry = entry?;
            let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
                continue;
            };
            if fs::read_to_string(entry.path().join("comm"))
                .is_ok_and(|c| c.trim_end().starts_with(&prefix))
            {
                pids.push(pid);
            }
        }
        if pids.is_empty() {
            bail!("no threaded NAPI thread {prefix}* found");
        }
        let mut set = CpuSet::new();
        set.set(RECV_CPU)?;
        for pid in &pids {
            sched_setaffinity(Pid::from_raw(*pid), &set)?;
        }
        Ok(pids)
    }
}

/// (sys+irq+softirq of `cpu`, in seconds) from /proc/stat.
fn cpu_busy(cpu: usize) -> Result<f64> {
    let stat = fs::read_to_string("/proc/stat")?;
    let line = stat
        .lines()
        .find(|l| l.starts_with(&format!("cpu{cpu} ")))
        .context("no cpu line")?;
    let f: Vec<f64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|v| v.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq
    Ok((f[2] + f[5] + f[6]) / clock_ticks())
}

fn clock_ticks() -> f64 {
    // SAFETY: sysconf has no preconditions.
    (unsafe { libc::sysconf(libc::_SC_CLK_TCK) }) as f64
}

fn thread_cpu(pids: &[i32]) -> f64 {
    pids.iter()
        .filter_map(|pid| fs::read_to_string(format!("/proc/{pid}/stat")).ok())
        .map(|s| {
            let after = s.rsplit_once(')').map_or("", |(_, a)| a);
            let f: Vec<f64> = after
                .split_whitespace()
                .filter_map(|v| v.parse().ok())
                .collect();
            // After ") ": state(0, not numeric so skipped)... utime and stime are fields 14/15.
            f.get(10).copied().unwrap_or(0.0) + f.get(11).copied().unwrap_or(0.0)
        })
        .sum::<f64>()
        / clock_ticks()
}

fn checksum(bytes: &[u8], initial: u32) -> u16 {
    let mut sum = initial;
    for pair in bytes.chunks(2) {
        let word = u16::from_be_bytes([pair[0], *pair.get(1).unwrap_or(&0)]);
        sum += u32::from(word);
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// A 60-byte SYN from `src` to the receiver's protected port, with valid checksums.
fn syn_frame(lab: &Lab, src: [u8; 4], sport: u16) -> [u8; 60] {
    let mut f = [0u8; 60];
    f[0..6].copy_from_slice(&lab.recv_mac);
    f[6..12].copy_from_slice(&lab.gen_mac);
    f[12..14].copy_from_slice(&0x0800u16.to_be_bytes());
    let ip = &mut f[14..34];
    ip[0] = 0x45;
    ip[2..4].copy_from_slice(&40u16.to_be_bytes());
    ip[8] = 64;
    ip[9] = 6;
    ip[12..16].copy_from_slice(&src);
    ip[16..20].copy_from_slice(&RECV_V4.octets());
    let c = checksum(&f[14..34], 0);
    f[24..26].copy_from_slice(&c.to_be_bytes());
    let tcp = &mut f[34..54];
    tcp[0..2].copy_from_slice(&sport.to_be_bytes());
    tcp[2..4].copy_from_slice(&PROTECTED.to_be_bytes());
    tcp[4..8].copy_from_slice(&u32::from(sport).wrapping_mul(2_654_435_761).to_be_bytes());
    tcp[12] = 5 << 4;
    tcp[13] = 0x02;
    tcp[14..16].copy_from_slice(&64240u16.to_be_bytes());
    let mut pseudo = 0u32;
    for w in [&src[..], &RECV_V4.octets()[..]] {
        for pair in w.chunks(2) {
            pseudo += u32::from(u16::from_be_bytes([pair[0], pair[1]]));
        }
    }
    pseudo += 6 + 20;
    let c = checksum(&f[34..54], pseudo);
    f[50..52].copy_from_slice(&c.to_be_bytes());
    f
}

/// Frames with sources uniform over 1.0.0.0–223.255.255.255, redrawn when the list covers
/// them (every frame is one to drop).
fn frame_pool(lab: &Lab, list: &List, n: usize, seed: u64) -> Vec<[u8; 60]> {
    let mut rng = lists::Rng::new(seed);
    let mut out = Vec::with_capacity(n);
    while out.len() < n {
        let addr = (1u32 << 24) + rng.below(u64::from(0xE000_0000u32 - (1 << 24))) as u32;
        if list.covers(u128::from(addr)) {
            continue;
        }
        out.push(syn_frame(
            lab,
            addr.to_be_bytes(),
            1024 + (out.len() % 60000) as u16,
        ));
    }
    out
}

fn pin_self(cpu: usize) -> Result<()> {
    let mut set = CpuSet::new();
    set.set(cpu)?;
    sched_setaffinity(Pid::from_raw(0), &set)?;
    Ok(())
}

/// Sends the pool round and round from the generator's veth until `stop`; returns frames sent.
fn generate(lab: &Lab, pool: &[[u8; 60]], stop: &AtomicBool) -> Result<u64> {
    setns(lab.gen_ns.open()?, CloneFlags::CLONE_NEWNET)?;
    pin_self(GEN_CPU)?;
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
                let frame = &pool[(next + i) % pool.len()];
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
                next = (next + n as usize) % pool.len();
            }
        }
        libc::close(fd);
        Ok(sent)
    }
}

/// `n` connects of the allowlisted client to the receiver's protected port, in ms, from CPU 0
/// at real-time priority (see the module comment).
fn connects(lab: &Lab, n: usize, stop: Option<&AtomicBool>) -> Result<(Vec<f64>, usize)> {
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
    let to = SocketAddr::new(IpAddr::V4(RECV_V4), PROTECTED);
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

enum Installed {
    Allowlist(Box<Filter>),
    Nft { family: &'static str },
    Iptables,
    XdpFilter,
}

fn install(
    lab: &Lab,
    filter: &str,
    list: &List,
    dir: &std::path::Path,
) -> Result<(Installed, String)> {
    let v4: Vec<IpNet> = list.nets.clone();
    Ok(match filter {
        "allowlist" => {
            let capacity = u32::try_from(v4.len().max(1024))?;
            let mut f = Filter::load(capacity)?;
            f.apply(&Rules::single(
                true,
                [PROTECTED].into(),
                v4.iter().copied().collect(),
            ))?;
            // This thread is in the receiver's namespace: the name resolves there.
            f.program().attach(&lab.recv_if, XdpMode::Driver)?;
            (
                Installed::Allowlist(Box::new(f)),
                "XDP driver mode on veth".into(),
            )
        }
        "nft-netdev" | "nft-inet" => {
            let netdev = filter == "nft-netdev";
            let (family, hook) = if netdev {
                (
                    "netdev",
                    format!(
                        "type filter hook ingress device \"{}\" priority 0;",
                        lab.recv_if
                    ),
                )
            } else {
                ("inet", "type filter hook input priority 0;".to_owned())
            };
            let chain = format!(
                "  chain flood {{\n    {hook}\n    meta protocol ip ip protocol tcp tcp dport {PROTECTED} tcp flags & (syn | ack) == syn ip saddr != @allow4 counter drop\n  }}\n"
            );
            let path = dir.join(format!("{family}.nft"));
            fs::write(&path, lists::nft_file(family, "bench", &v4, &[], &chain))?;
            let started = Instant::now();
            run_cmd(
                Command::new("ip")
                    .args(["netns", "exec", lab.recv.name(), "nft", "-f"])
                    .arg(&path),
            )?;
            (
                Installed::Nft { family },
                format!(
                    "interval set, {} chain; loaded in {:.1} s",
                    if netdev {
                        "netdev ingress"
                    } else {
                        "inet input"
                    },
                    started.elapsed().as_secs_f64()
                ),
            )
        }
        "iptables-ipset" => {
            let path = dir.join("sets.ipset");
            fs::write(&path, lists::ipset_file(&v4, &[]))?;
            run_cmd(
                Command::new("ip")
                    .args(["netns", "exec", lab.recv.name(), "ipset", "restore", "-f"])
                    .arg(&path),
            )?;
            let port = PROTECTED.to_string();
            lab.recv.exec("iptables", &["-V"])?;
            run_cmd(Command::new("ip").args([
                "netns",
                "exec",
                lab.recv.name(),
                "iptables",
                "-A",
                "INPUT",
                "-p",
                "tcp",
                "--dport",
                &port,
                "--syn",
                "-m",
                "set",
                "!",
                "--match-set",
                "allow4",
                "src",
                "-j",
                "DROP",
            ]))?;
            let version = String::from_utf8_lossy(&lab.recv.exec("iptables", &["-V"])?.stdout)
                .trim()
                .to_owned();
            (
                Installed::Iptables,
                format!("hash:net set, INPUT rule; {version}"),
            )
        }
        "xdp-filter" => {
            in_ns(
                &lab.recv,
                "xdp-filter",
                &[
                    "load",
                    "-m",
                    "native",
                    "-p",
                    "deny",
                    "-f",
                    "tcp,ipv4",
                    &lab.recv_if,
                ],
            )?;
            in_ns(
                &lab.recv,
                "xdp-filter",
                &["ip", &CLIENT_V4.to_string(), "-m", "src"],
            )?;
            (
                Installed::XdpFilter,
                "deny policy + the client's /32 only: xdp-filter matches exact addresses, \
                 so it cannot hold the prefixes of the list, and cannot tie a source rule to \
                 SYNs or to a port (every TCP/IPv4 frame from other sources is dropped)"
                    .into(),
            )
        }
        other => bail!("unknown filter {other}"),
    })
}

/// Frames the generator's veth could not hand over (its tx_dropped: veth counts a full peer
/// ring there).
fn ring_lost(lab: &Lab) -> Result<u64> {
    let text = in_ns(
        &lab.gen_ns,
        "ip",
        &["-j", "-s", "link", "show", "dev", &lab.gen_if],
    )?;
    let links: Value = serde_json::from_str(&text).context("`ip -j -s link` output")?;
    links[0]["stats64"]["tx"]["dropped"]
        .as_u64()
        .context("no tx dropped count for the generator's veth")
}

fn drops(lab: &Lab, installed: &Installed) -> Result<u64> {
    Ok(match installed {
        Installed::Allowlist(f) => f
            .counters()?
            .values()
            .map(|c| c.by_reason[Reason::DropSynV4 as usize])
            .sum(),
        Installed::Nft { family } => {
            let text = run_cmd(Command::new("ip").args([
                "netns",
                "exec",
                lab.recv.name(),
                "nft",
                "list",
                "chain",
                family,
                "bench",
                "flood",
            ]))?;
            counter_after(&text, "counter packets")
        }
        Installed::Iptables => {
            let text = run_cmd(Command::new("ip").args([
                "netns",
                "exec",
                lab.recv.name(),
                "iptables",
                "-nvxL",
                "INPUT",
            ]))?;
            text.lines()
                .nth(2)
                .and_then(|l| l.split_whitespace().next())
                .and_then(|v| v.parse().ok())
                .unwrap_or(0)
        }
        Installed::XdpFilter => {
            let text = in_ns(&lab.recv, "xdp-filter", &["status"])?;
            text.lines()
                .find(|l| l.trim_start().starts_with("XDP_DROP"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
                .unwrap_or(0)
        }
    })
}

fn counter_after(text: &str, key: &str) -> u64 {
    text.find(key)
        .and_then(|i| text[i + key.len()..].split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn uninstall(lab: &Lab, installed: Installed) -> Result<()> {
    match installed {
        Installed::Allowlist(f) => drop(f),
        Installed::Nft { family } => {
            run_cmd(Command::new("ip").args([
                "netns",
                "exec",
                lab.recv.name(),
                "nft",
                "delete",
                "table",
                family,
                "bench",
            ]))?;
        }
        Installed::Iptables => {
            run_cmd(Command::new("ip").args([
                "netns",
                "exec",
                lab.recv.name(),
                "iptables",
                "-F",
                "INPUT",
            ]))?;
            run_cmd(Command::new("ip").args([
                "netns",
                "exec",
                lab.recv.name(),
                "ipset",
                "destroy",
            ]))?;
        }
        Installed::XdpFilter => {
            in_ns(&lab.recv, "xdp-filter", &["unload", &lab.recv_if])?;
            // libxdp leaves its (now empty) pin directory behind; remove_dir keeps it if
            // anything else is pinned there.
            let _ = std::fs::remove_dir("/sys/fs/bpf/xdp");
        }
    }
    Ok(())
}

fn flood_once(
    lab: &Lab,
    settings: &Settings,
    pool: &[[u8; 60]],
    napi: &[i32],
    installed: &Installed,
) -> Result<Row> {
    // The baseline first: the same connects with the filter installed and no flood.
    let (idle, _) = std::thread::scope(|s| {
        s.spawn(|| connects(lab, settings.connects, None))
            .join()
            .map_err(|_| anyhow::anyhow!("client panicked"))?
    })?;
    let stop = AtomicBool::new(false);
    let stop_connects = AtomicBool::new(false);
    let dropped_before = drops(lab, installed)?;
    let lost_before = ring_lost(lab)?;
    let (cpu0, napi0) = (cpu_busy(RECV_CPU)?, thread_cpu(napi));
    let started = Instant::now();
    let (sent, (ms, failed)) = std::thread::scope(|s| -> Result<_> {
        let generator = s.spawn(|| generate(lab, pool, &stop));
        let client = s.spawn(|| {
            std::thread::sleep(Duration::from_millis(300));
            connects(lab, settings.connects, Some(&stop_connects))
        });
        std::thread::sleep(Duration::from_secs_f64(settings.seconds));
        stop_connects.store(true, Ordering::Relaxed);
        stop.store(true, Ordering::Relaxed);
        let sent = generator
            .join()
            .map_err(|_| anyhow::anyhow!("generator panicked"))??;
        let probes = client
            .join()
            .map_err(|_| anyhow::anyhow!("client panicked"))??;
        Ok((sent, probes))
    })?;
    let seconds = started.elapsed().as_secs_f64();
    let (cpu1, napi1) = (cpu_busy(RECV_CPU)?, thread_cpu(napi));
    // Let the last frames drain before reading the counters.
    std::thread::sleep(Duration::from_millis(200));
    let dropped = drops(lab, installed)? - dropped_before;
    let ring_lost = ring_lost(lab)? - lost_before;
    let per = |cpu: f64| {
        if dropped == 0 {
            f64::NAN
        } else {
            cpu * 1e9 / dropped as f64
        }
    };
    Ok(Row {
        filter: String::new(),
        sent,
        ring_lost,
        dropped,
        seconds,
        cpu_ns_per_drop: per(cpu1 - cpu0),
        napi_ns_per_drop: per(napi1 - napi0),
        idle_connect_ms: Summary::of(&idle),
        connect_ms: Summary::of(&ms),
        connect_failed: failed,
        note: String::new(),
    })
}

pub fn run(settings: &Settings) -> Result<Outcome> {
    let home = fs::File::open("/proc/self/ns/net")?;
    let result = std::thread::scope(|s| {
        s.spawn(|| run_in_lab(settings))
            .join()
            .map_err(|_| anyhow::anyhow!("flood thread panicked"))?
    });
    drop(home);
    result
}

fn run_in_lab(settings: &Settings) -> Result<Outcome> {
    let lab = Lab::new()?;
    setns(lab.recv.open()?, CloneFlags::CLONE_NEWNET)?;
    let napi = lab.pin_napi()?;
    let dir = tempfile::tempdir()?;
    let list = List::v4(settings.entries, settings.seed);
    let pool = frame_pool(&lab, &list, settings.pool, settings.seed ^ 0xf100d);
    let listener = TcpListener::bind(SocketAddr::new(IpAddr::V4(RECV_V4), PROTECTED))?;
    listener.set_nonblocking(true)?;
    let accepting = Arc::new(AtomicBool::new(true));
    let acceptor = {
        let accepting = Arc::clone(&accepting);
        std::thread::spawn(move || {
            while accepting.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((stream, _)) => drop(stream),
                    Err(_) => std::thread::sleep(Duration::from_millis(1)),
                }
            }
        })
    };
    let mut out = Outcome {
        pool: pool.len(),
        conntrack: conntrack_state(&lab),
        ..Outcome::default()
    };
    for filter in &settings.filters {
        let (installed, note) = match install(&lab, filter, &list, dir.path()) {
            Ok(i) => i,
            Err(e) => {
                eprintln!("bench: flood: {filter} skipped: {e:#}");
                out.rows.push(Row {
                    filter: filter.clone(),
                    note: format!("not run: {e:#}"),
                    ..Row::default()
                });
                continue;
            }
        };
        let result = flood_once(&lab, settings, &pool, &napi, &installed);
        uninstall(&lab, installed)?;
        let mut row = result?;
        row.filter = filter.clone();
        row.note = note;
        eprintln!(
            "bench: flood {filter}: sent {:.2} Mpps, dropped {:.2} Mpps, {:.0} ns CPU per drop (NAPI thread {:.0}), connect p99 {:.2} ms (idle {:.2})",
            row.sent as f64 / row.seconds / 1e6,
            row.dropped as f64 / row.seconds / 1e6,
            row.cpu_ns_per_drop,
            row.napi_ns_per_drop,
            row.connect_ms.p99,
            row.idle_connect_ms.p99
        );
        out.rows.push(row);
    }
    accepting.store(false, Ordering::Relaxed);
    let _ = acceptor.join();
    out.conntrack = format!(
        "{}; after the floods: {}",
        out.conntrack,
        conntrack_state(&lab)
    );
    let _ = std::io::stderr().flush();
    Ok(out)
}

fn conntrack_state(lab: &Lab) -> String {
    let built_in = std::path::Path::new("/proc/net/nf_conntrack").exists();
    let entries = lab
        .recv
        .exec("sh", &["-c", "wc -l < /proc/net/nf_conntrack"])
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default();
    format!(
        "nf_conntrack {} (no loadable modules on this kernel); {} entries in the receiver's namespace",
        if built_in { "built in" } else { "absent" },
        if entries.is_empty() {
            "?".to_owned()
        } else {
            entries
        }
    )
}

pub fn table(out: &Outcome) -> String {
    use std::fmt::Write as _;
    let mut s = String::new();
    let _ = writeln!(
        s,
        "{:<15} {:>9} {:>7} {:>9} {:>11} {:>11} {:>9} {:>9} {:>9} {:>9} {:>6}",
        "filter",
        "sent Mpps",
        "lost %",
        "drop Mpps",
        "CPU ns/drop",
        "NAPI ns/drop",
        "idle p50",
        "idle p99",
        "conn p50",
        "conn p99",
        "failed"
    );
    for r in &out.rows {
        let _ = writeln!(
            s,
            "{:<15} {:>9.3} {:>7.2} {:>9.3} {:>11.0} {:>11.0} {:>9.3} {:>9.3} {:>9.3} {:>9.3} {:>6}",
            r.filter,
            r.sent as f64 / r.seconds.max(1e-9) / 1e6,
            100.0 * r.ring_lost as f64 / (r.sent + r.ring_lost).max(1) as f64,
            r.dropped as f64 / r.seconds.max(1e-9) / 1e6,
            r.cpu_ns_per_drop,
            r.napi_ns_per_drop,
            r.idle_connect_ms.median,
            r.idle_connect_ms.p99,
            r.connect_ms.median,
            r.connect_ms.p99,
            r.connect_failed
        );
    }
    let _ = writeln!(s, "{}", out.conntrack);
    s
}
