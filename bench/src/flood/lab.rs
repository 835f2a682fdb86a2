//! The flood's lab: two namespaces joined by veth, what it takes to keep spoofed traffic inside
//! them, and the counters the rows are computed from (CPU time, veth's own counters).

use std::collections::BTreeMap;
use std::fs;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::fd::AsRawFd as _;
use std::os::unix::process::CommandExt as _;
use std::process::{Command, Stdio};

use anyhow::{Context as _, Result, bail};
use nix::sched::{CpuSet, sched_setaffinity};
use nix::unistd::Pid;
use serde_json::Value;

use allowlist_tests::netns::{Netns, next_id, run_cmd};

pub const RECV_V4: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);
pub const CLIENT_V4: Ipv4Addr = Ipv4Addr::new(198, 18, 1, 2);
pub const RECV_V6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1);
pub const CLIENT_V6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0xa);
pub const GEN_CPU: usize = 0;
pub const RECV_CPU: usize = 1;

/// An address family of the flood.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    V4,
    V6,
}

impl Family {
    pub fn name(self) -> &'static str {
        match self {
            Family::V4 => "v4",
            Family::V6 => "v6",
        }
    }

    pub fn receiver(self) -> IpAddr {
        match self {
            Family::V4 => IpAddr::V4(RECV_V4),
            Family::V6 => IpAddr::V6(RECV_V6),
        }
    }

    pub fn client(self) -> IpAddr {
        match self {
            Family::V4 => IpAddr::V4(CLIENT_V4),
            Family::V6 => IpAddr::V6(CLIENT_V6),
        }
    }
}

pub struct Lab {
    pub recv: Netns,
    pub gen_ns: Netns,
    pub recv_if: String,
    pub gen_if: String,
    pub recv_mac: [u8; 6],
    pub gen_mac: [u8; 6],
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
pub fn in_ns(ns: &Netns, program: &str, args: &[&str]) -> Result<String> {
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

pub fn sh(ns: &Netns, script: &str) -> Result<String> {
    run_cmd(Command::new("ip").args(["netns", "exec", ns.name(), "sh", "-c", script]))
}

impl Lab {
    pub fn new() -> Result<Lab> {
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
        recv.ip(&["addr", "add", "2001:db8::1/64", "dev", &recv_if, "nodad"])?;
        gen_ns.ip(&["addr", "add", "2001:db8::a/64", "dev", &gen_if, "nodad"])?;
        for (ns, dev) in [(&recv, &recv_if), (&gen_ns, &gen_if)] {
            ns.ip(&["link", "set", "lo", "up"])?;
            ns.ip(&["link", "set", dev, "up"])?;
            // Nothing addressed outside the lab can leave it.
            ns.ip(&["route", "add", "blackhole", "default"])?;
            ns.ip(&["-6", "route", "add", "blackhole", "default"])?;
        }
        let recv_mac = mac_of(&recv, &recv_if)?;
        let gen_mac = mac_of(&gen_ns, &gen_if)?;
        for (ns, dev, peer, mac) in [
            (&recv, &recv_if, "198.18.1.2", gen_mac),
            (&recv, &recv_if, "2001:db8::a", gen_mac),
            (&gen_ns, &gen_if, "198.18.0.1", recv_mac),
            (&gen_ns, &gen_if, "2001:db8::1", recv_mac),
        ] {
            ns.ip(&[
                "neigh",
                "replace",
                peer,
                "lladdr",
                &mac_text(mac),
                "dev",
                dev,
                "nud",
                "permanent",
            ])?;
        }
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

    /// The generator veth's ifindex (in its namespace).
    pub fn gen_ifindex(&self) -> Result<u32> {
        let text = self
            .gen_ns
            .ip(&["-o", "link", "show", "dev", &self.gen_if])?;
        text.split(':')
            .next()
            .and_then(|i| i.trim().parse().ok())
            .with_context(|| format!("no ifindex in `ip -o link show`: {text}"))
    }

    /// Pins the receiver's NAPI threads to CPU 1; returns their pids.
    pub fn pin_napi(&self) -> Result<Vec<i32>> {
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

    /// Frames the generator's veth could not hand over (its tx_dropped: veth counts a full peer
    /// ring there, for skbs and xdp_frames alike).
    pub fn ring_lost(&self) -> Result<u64> {
        let text = in_ns(
            &self.gen_ns,
            "ip",
            &["-j", "-s", "link", "show", "dev", &self.gen_if],
        )?;
        let links: Value = serde_json::from_str(&text).context("`ip -j -s link` output")?;
        links[0]["stats64"]["tx"]["dropped"]
            .as_u64()
            .context("no tx dropped count for the generator's veth")
    }

    /// How frames reached the receiver: (handed over as xdp_frames by ndo_xdp_xmit, the
    /// generator veth's `xdp_xmit`; taken from the receiver's ring in all, its `xdp_packets`,
    /// skbs and xdp_frames), and its `xdp_drops` (frames an XDP program dropped).
    pub fn arrivals(&self) -> Result<Arrivals> {
        let sent = veth_stats(&self.gen_ns, &self.gen_if)?;
        let got = veth_stats(&self.recv, &self.recv_if)?;
        let sum = |stats: &BTreeMap<String, u64>, prefix: &str, suffix: &str| {
            stats
                .iter()
                .filter(|(k, _)| k.starts_with(prefix) && k.ends_with(suffix))
                .map(|(_, v)| v)
                .sum::<u64>()
        };
        Ok(Arrivals {
            xdp_frames: sum(&sent, "tx_queue_", "_xdp_xmit"),
            received: sum(&got, "rx_queue_", "_xdp_packets"),
            xdp_drops: sum(&got, "rx_queue_", "_xdp_drops"),
        })
    }
}

/// Counters of veth's receive ring (see [`Lab::arrivals`]).
#[derive(Debug, Clone, Copy, Default)]
pub struct Arrivals {
    pub xdp_frames: u64,
    pub received: u64,
    pub xdp_drops: u64,
}

impl Arrivals {
    pub fn since(self, before: Arrivals) -> Arrivals {
        Arrivals {
            xdp_frames: self.xdp_frames - before.xdp_frames,
            received: self.received - before.received,
            xdp_drops: self.xdp_drops - before.xdp_drops,
        }
    }

    /// What arrived as skbs (veth_xmit): everything received that was not an xdp_frame.
    pub fn skbs(self) -> u64 {
        self.received.saturating_sub(self.xdp_frames)
    }
}

/// `ethtool -S DEV` as name -> value.
fn veth_stats(ns: &Netns, dev: &str) -> Result<BTreeMap<String, u64>> {
    let text = in_ns(ns, "ethtool", &["-S", dev])?;
    Ok(parse_ethtool_stats(&text))
}

fn parse_ethtool_stats(text: &str) -> BTreeMap<String, u64> {
    text.lines()
        .filter_map(|l| {
            let (k, v) = l.split_once(':')?;
            Some((k.trim().to_owned(), v.trim().parse().ok()?))
        })
        .collect()
}

/// (sys+irq+softirq of `cpu`, in seconds) from /proc/stat.
pub fn cpu_busy(cpu: usize) -> Result<f64> {
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

pub fn thread_cpu(pids: &[i32]) -> f64 {
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

pub fn pin_self(cpu: usize) -> Result<()> {
    let mut set = CpuSet::new();
    set.set(cpu)?;
    sched_setaffinity(Pid::from_raw(0), &set)?;
    Ok(())
}

pub fn conntrack_state(lab: &Lab) -> String {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ethtool_statistics_are_read_by_name() {
        let text = "NIC statistics:\n     peer_ifindex: 7\n     rx_queue_0_xdp_packets: 1200\n     \
                    rx_queue_0_xdp_drops: 1100\n     tx_queue_0_xdp_xmit: 1000\n";
        let stats = parse_ethtool_stats(text);
        assert_eq!(stats.get("rx_queue_0_xdp_drops"), Some(&1100));
        assert_eq!(stats.get("tx_queue_0_xdp_xmit"), Some(&1000));
        assert!(!stats.contains_key("NIC statistics"));
        let a = Arrivals {
            xdp_frames: 1000,
            received: 1200,
            xdp_drops: 1100,
        };
        assert_eq!(a.skbs(), 200);
    }
}
