//! The filters the flood measures: their sets loaded once for every row (allowlist's maps,
//! nftables' interval sets, ipset's hash:net sets, both families in each), then for each row
//! the one piece that makes the filter act (an XDP program attached, a chain, an iptables
//! rule) installed, counted and taken away.

use std::fs;
use std::path::Path;
use std::process::Command;
use std::time::Instant;

use allowlist_common::verdict::Reason;
use allowlist_config::rules::Rules;
use allowlist_loader::filter::Filter;
use anyhow::{Context as _, Result, bail};
use aya::maps::Array;
use aya::programs::{Xdp, XdpMode, xdp::XdpLinkId};
use aya::{Ebpf, EbpfLoader};
use ipnet::IpNet;

use super::lab::{Family, GEN_CPU, Lab, in_ns, pin_self};
use super::traffic::Pool;
use crate::lists::{self, List};
use allowlist_tests::netns::{PROTECTED, run_cmd};

/// The floors of the flood, from `bench-ebpf`.
const FLOORS: [(&str, &str); 2] = [("drop", "bench_drop"), ("parse-drop", "bench_parse_drop")];

/// What every row shares: allowlist's program with both lists in its maps, and `bench-ebpf`
/// with the floors and the NIC-path generator (its pools filled, its target set).
pub struct Loaded {
    pub allowlist: Filter,
    pub bench: Ebpf,
}

impl Loaded {
    pub fn new(
        lab: &Lab,
        v4: &List,
        v6: &List,
        pools: &[Pool],
        bench_object: &[u8],
    ) -> Result<Loaded> {
        let capacity = u32::try_from(v4.nets.len().max(v6.nets.len()).max(1024))?;
        let mut allowlist = Filter::load(capacity)?;
        allowlist.apply(&Rules::single(
            true,
            [PROTECTED].into(),
            v4.nets.iter().chain(&v6.nets).copied().collect(),
        ))?;
        let len = |family| {
            pools
                .iter()
                .find(|p| p.family == family)
                .map_or(1, |p| p.frames.len() as u32)
        };
        let mut bench = EbpfLoader::new()
            .map_max_entries("GEN_POOL_V4", len(Family::V4))
            .map_max_entries("GEN_POOL_V6", len(Family::V6))
            .load(bench_object)
            .context("loading the bench object")?;
        for name in [
            "bench_drop",
            "bench_parse_drop",
            "bench_gen_v4",
            "bench_gen_v6",
        ] {
            program_mut(&mut bench, name)?
                .load()
                .with_context(|| format!("loading {name}"))?;
        }
        for pool in pools {
            match pool.family {
                Family::V4 => {
                    let mut map: Array<_, [u8; 8]> =
                        Array::try_from(bench.map_mut("GEN_POOL_V4").context("GEN_POOL_V4")?)?;
                    for (i, e) in pool.entries_v4().into_iter().enumerate() {
                        map.set(i as u32, e, 0)?;
                    }
                }
                Family::V6 => {
                    let mut map: Array<_, [u8; 20]> =
                        Array::try_from(bench.map_mut("GEN_POOL_V6").context("GEN_POOL_V6")?)?;
                    for (i, e) in pool.entries_v6().into_iter().enumerate() {
                        map.set(i as u32, e, 0)?;
                    }
                }
            }
        }
        let mut config: Array<_, u32> =
            Array::try_from(bench.map_mut("GEN_CONFIG").context("GEN_CONFIG")?)?;
        config.set(0, lab.gen_ifindex()?, 0)?;
        config.set(1, len(Family::V4), 0)?;
        config.set(2, len(Family::V6), 0)?;
        Ok(Loaded { allowlist, bench })
    }

    /// The NIC-path generator of `family`.
    pub fn generator(&self, family: Family) -> Result<&Xdp> {
        let name = match family {
            Family::V4 => "bench_gen_v4",
            Family::V6 => "bench_gen_v6",
        };
        Ok(self
            .bench
            .program(name)
            .with_context(|| format!("bench object has no program {name}"))?
            .try_into()?)
    }
}

fn program_mut<'a>(ebpf: &'a mut Ebpf, name: &str) -> Result<&'a mut Xdp> {
    Ok(ebpf
        .program_mut(name)
        .with_context(|| format!("bench object has no program {name}"))?
        .try_into()?)
}

/// Loads nftables' tables (netdev and inet, each with both sets) and ipset's sets into the
/// receiver's namespace, from CPU 0 (the generator's) so that a load running beside a row
/// does not take the receiver's CPU. Returns a note per table: how long it took.
pub fn load_sets(lab: &Lab, v4: &[IpNet], v6: &[IpNet], dir: &Path) -> Result<Vec<(String, f64)>> {
    pin_self(GEN_CPU)?;
    let mut notes = Vec::new();
    for family in ["netdev", "inet"] {
        let path = dir.join(format!("{family}.nft"));
        fs::write(&path, lists::nft_file(family, "bench", v4, v6, ""))?;
        let started = Instant::now();
        run_cmd(
            Command::new("ip")
                .args(["netns", "exec", lab.recv.name(), "nft", "-f"])
                .arg(&path),
        )?;
        notes.push((format!("nft-{family}"), started.elapsed().as_secs_f64()));
    }
    let path = dir.join("sets.ipset");
    fs::write(&path, lists::ipset_file(v4, v6))?;
    let started = Instant::now();
    run_cmd(
        Command::new("ip")
            .args(["netns", "exec", lab.recv.name(), "ipset", "restore", "-f"])
            .arg(&path),
    )?;
    notes.push(("iptables-ipset".into(), started.elapsed().as_secs_f64()));
    Ok(notes)
}

/// Whether `filter` needs the sets of [`load_sets`].
pub fn needs_sets(filter: &str) -> bool {
    filter.starts_with("nft-") || filter == "iptables-ipset"
}

/// Whether `filter` is a floor (it drops the client's SYNs too: no connects).
pub fn is_floor(filter: &str) -> bool {
    FLOORS.iter().any(|(f, _)| *f == filter)
}

pub enum Installed {
    Allowlist(XdpLinkId),
    Floor(&'static str, XdpLinkId),
    Nft(&'static str),
    Iptables(&'static str),
    XdpFilter,
}

/// Makes `filter` act on `family`'s SYNs; returns what to count and take away, and the row's
/// note.
pub fn install(
    lab: &Lab,
    loaded: &mut Loaded,
    filter: &str,
    family: Family,
    dir: &Path,
) -> Result<(Installed, String)> {
    let port = PROTECTED;
    Ok(match filter {
        "allowlist" => {
            // This thread is in the receiver's namespace: the name resolves there.
            let link = loaded
                .allowlist
                .program()
                .attach(&lab.recv_if, XdpMode::Driver)?;
            (Installed::Allowlist(link), "XDP driver mode on veth".into())
        }
        floor if is_floor(floor) => {
            let (_, name) = FLOORS
                .iter()
                .find(|(f, _)| *f == floor)
                .context("a floor")?;
            let link =
                program_mut(&mut loaded.bench, name)?.attach(&lab.recv_if, XdpMode::Driver)?;
            let what = if floor == "drop" {
                "drops every frame"
            } else {
                "parses Ethernet, IPv4/IPv6 and TCP to the flags and drops SYNs"
            };
            (
                Installed::Floor(name, link),
                format!(
                    "XDP driver mode on veth: {what} (no lists); counted by veth's xdp_drops; no connects, it drops the client's SYNs too"
                ),
            )
        }
        "nft-netdev" | "nft-inet" => {
            let netdev = filter == "nft-netdev";
            let (table_family, hook) = if netdev {
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
            let rule = match family {
                Family::V4 => format!(
                    "meta protocol ip ip protocol tcp tcp dport {port} tcp flags & (syn | ack) == syn ip saddr != @allow4 counter name \"drops\" drop"
                ),
                Family::V6 => format!(
                    "meta protocol ip6 ip6 nexthdr tcp tcp dport {port} tcp flags & (syn | ack) == syn ip6 saddr != @allow6 counter name \"drops\" drop"
                ),
            };
            // The row's own counter, new with the chain, so that one reading after the flood
            // is its count.
            nft(
                lab,
                dir,
                &format!(
                    "table {table_family} bench {{\n  counter drops {{\n    packets 0 bytes 0\n  }}\n  chain flood {{\n    {hook}\n    {rule}\n  }}\n}}\n"
                ),
            )?;
            (
                Installed::Nft(table_family),
                format!(
                    "interval set, {} chain",
                    if netdev {
                        "netdev ingress"
                    } else {
                        "inet input"
                    }
                ),
            )
        }
        "iptables-ipset" => {
            let (tool, set) = match family {
                Family::V4 => ("iptables", "allow4"),
                Family::V6 => ("ip6tables", "allow6"),
            };
            run_cmd(Command::new("ip").args([
                "netns",
                "exec",
                lab.recv.name(),
                tool,
                "-A",
                "INPUT",
                "-p",
                "tcp",
                "--dport",
                &port.to_string(),
                "--syn",
                "-m",
                "set",
                "!",
                "--match-set",
                set,
                "src",
                "-j",
                "DROP",
            ]))?;
            let version = String::from_utf8_lossy(&lab.recv.exec(tool, &["-V"])?.stdout)
                .trim()
                .to_owned();
            (
                Installed::Iptables(tool),
                format!("hash:net set, INPUT rule; {version}"),
            )
        }
        "xdp-filter" => {
            let (features, client) = match family {
                Family::V4 => ("tcp,ipv4", family.client()),
                Family::V6 => ("tcp,ipv6", family.client()),
            };
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
                    features,
                    &lab.recv_if,
                ],
            )?;
            in_ns(
                &lab.recv,
                "xdp-filter",
                &["ip", &client.to_string(), "-m", "src"],
            )?;
            (
                Installed::XdpFilter,
                "deny policy + the client's address only: xdp-filter matches exact addresses, \
                 so it cannot hold the prefixes of the list, and cannot tie a source rule to \
                 SYNs or to a port (every TCP frame of the family from other sources is dropped)"
                    .into(),
            )
        }
        other => bail!("unknown filter {other}"),
    })
}

fn nft(lab: &Lab, dir: &Path, script: &str) -> Result<String> {
    let path = dir.join("chain.nft");
    fs::write(&path, script)?;
    run_cmd(
        Command::new("ip")
            .args(["netns", "exec", lab.recv.name(), "nft", "-f"])
            .arg(&path),
    )
}

impl Installed {
    /// Whether the filter's count starts at zero with the row (no reading before the flood).
    pub fn counts_from_zero(&self) -> bool {
        matches!(self, Installed::Nft(_))
    }
}

/// The filter's own count of dropped SYNs of `family`.
pub fn drops(lab: &Lab, loaded: &Loaded, installed: &Installed, family: Family) -> Result<u64> {
    Ok(match installed {
        Installed::Allowlist(_) => {
            let reason = match family {
                Family::V4 => Reason::DropSynV4,
                Family::V6 => Reason::DropSynV6,
            };
            loaded
                .allowlist
                .counters()?
                .values()
                .map(|c| c.by_reason[reason as usize])
                .sum()
        }
        Installed::Floor(..) => lab.arrivals()?.xdp_drops,
        Installed::Nft(table_family) => {
            // `reset` prints the count as `list` does, without the minute `list` spends
            // fetching the million elements of the table's sets first.
            let text = run_cmd(Command::new("ip").args([
                "netns",
                "exec",
                lab.recv.name(),
                "nft",
                "reset",
                "counter",
                table_family,
                "bench",
                "drops",
            ]))?;
            counter_after(&text, "packets")
        }
        Installed::Iptables(tool) => {
            let text = run_cmd(Command::new("ip").args([
                "netns",
                "exec",
                lab.recv.name(),
                tool,
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

/// Takes away what [`install`] added; the sets stay for the next row.
pub fn uninstall(lab: &Lab, loaded: &mut Loaded, installed: Installed, dir: &Path) -> Result<()> {
    match installed {
        Installed::Allowlist(link) => loaded.allowlist.program().detach(link)?,
        Installed::Floor(name, link) => program_mut(&mut loaded.bench, name)?.detach(link)?,
        Installed::Nft(table_family) => {
            nft(
                lab,
                dir,
                &format!(
                    "flush chain {table_family} bench flood\ndelete chain {table_family} bench flood\ndelete counter {table_family} bench drops\n"
                ),
            )?;
        }
        Installed::Iptables(tool) => {
            run_cmd(Command::new("ip").args([
                "netns",
                "exec",
                lab.recv.name(),
                tool,
                "-F",
                "INPUT",
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
