//! Part 2: a SYN flood over veth between two namespaces, against allowlist, its peers and the
//! floors, arriving two ways, for IPv4 and IPv6.
//!
//! Receive path, the same for every filter: the receiver's veth has GRO on (so veth uses
//! NAPI, with or without XDP), the generator's veth has TSO/GSO off (so every frame is
//! eligible for it), and the NAPI poll runs in a threaded-NAPI kernel thread pinned to CPU 1;
//! the generator runs on CPU 0. Receiver CPU = system + irq + softirq time of CPU 1 from
//! /proc/stat over the flood, divided by the filter's own drop counter; the NAPI thread's own
//! CPU time is reported next to it (insensitive to other load on CPU 1). ARP is replaced by
//! permanent neighbour entries, and both namespaces have blackhole default routes, so nothing
//! addressed to a spoofed source can leave the lab.
//!
//! The two arrival paths ([`Path`]): `skb`, an AF_PACKET socket (PACKET_QDISC_BYPASS,
//! sendmmsg, protocol 0 so it receives nothing) whose frames reach the receiver as skbs, built
//! before any filter runs; `nic`, `bench-ebpf`'s generator run by `BPF_PROG_TEST_RUN` in
//! live-frame mode, redirecting each frame into the generator's veth, whose `ndo_xdp_xmit`
//! hands the receiver xdp_frames: its XDP program runs before any skb exists, as native XDP on
//! a NIC's receive ring does, and only the frames it passes become skbs. Every row counts how
//! its frames arrived (veth's counters), so a row cannot silently measure the other path.
//!
//! The allowlisted client shares CPU 0 with the generator, at real-time priority: on a real
//! network the flood comes from other machines, and at normal priority the client's own
//! wake-up waited behind the generator (p99 0.3–0.8 ms where the receiver added 0.1), which
//! would say nothing about the filter. Its connects are timed with each filter installed,
//! first without the flood and then during it.

mod filters;
mod lab;
mod traffic;

use std::io::Write as _;
use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::Result;
use ipnet::IpNet;
use nix::sched::{CloneFlags, setns};
use serde_json::{Value, json};

use super::lists::List;
use super::stats::Summary;
use allowlist_tests::netns::PROTECTED;
use filters::{Installed, Loaded};
pub use lab::Family;
use lab::{Arrivals, Lab, RECV_CPU, conntrack_state, cpu_busy, thread_cpu};
use traffic::Pool;

/// How the flood's frames reach the receiver.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Path {
    /// As skbs (AF_PACKET into veth): every frame costs an skb before any filter runs.
    Skb,
    /// As xdp_frames (XDP_REDIRECT into veth): XDP runs before any skb, as on a NIC.
    Nic,
}

impl Path {
    pub fn name(self) -> &'static str {
        match self {
            Path::Skb => "skb",
            Path::Nic => "nic",
        }
    }
}

pub struct Settings {
    pub entries: usize,
    pub seconds: f64,
    pub connects: usize,
    pub pool: usize,
    pub seed: u64,
    /// The rows: each filter on each path, for each family.
    pub rows: Vec<(Path, Family, String)>,
    /// Load the netfilter sets beside the first rows instead of before them.
    pub background_loads: bool,
    pub bench_object: Vec<u8>,
}

#[derive(Debug, Clone, Default)]
pub struct Row {
    pub path: &'static str,
    pub family: &'static str,
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
    /// How the frames arrived: as xdp_frames, and as skbs (veth's counters).
    pub as_xdp_frames: u64,
    pub as_skbs: u64,
    /// Connects with the filter installed and no flood, the row's own baseline.
    pub idle_connect_ms: Summary,
    pub connect_ms: Summary,
    pub connect_failed: usize,
    pub note: String,
}

impl Row {
    /// Drops one fully busy receiver core would make per second, in millions.
    pub fn mpps_per_core(&self) -> f64 {
        1e3 / self.cpu_ns_per_drop
    }

    pub fn json(&self) -> Value {
        json!({
            "path": self.path, "family": self.family,
            "filter": self.filter, "sent": self.sent, "dropped": self.dropped,
            "seconds": self.seconds, "drop_mpps": self.dropped as f64 / self.seconds / 1e6,
            "sent_mpps": self.sent as f64 / self.seconds / 1e6,
            "ring_lost": self.ring_lost,
            "ring_lost_pct": 100.0 * self.ring_lost as f64 / (self.sent + self.ring_lost).max(1) as f64,
            "cpu_ns_per_drop": self.cpu_ns_per_drop, "napi_ns_per_drop": self.napi_ns_per_drop,
            "mpps_per_core": self.mpps_per_core(),
            "as_xdp_frames": self.as_xdp_frames, "as_skbs": self.as_skbs,
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
    /// How long each set took to load (nft tables, ipset).
    pub loads: Vec<(String, f64)>,
}

impl Outcome {
    /// Receiver CPU per drop of a row that dropped something.
    pub fn cpu(&self, path: Path, family: Family, filter: &str) -> Option<f64> {
        self.rows
            .iter()
            .find(|r| {
                r.path == path.name()
                    && r.family == family.name()
                    && r.filter == filter
                    && r.dropped > 0
            })
            .map(|r| r.cpu_ns_per_drop)
    }
}

#[expect(
    clippy::too_many_arguments,
    reason = "the row's lab, loaded sets and choices"
)]
fn flood_once(
    lab: &Lab,
    settings: &Settings,
    path: Path,
    pool: &Pool,
    loaded: &Loaded,
    napi: &[i32],
    installed: &Installed,
    connects: usize,
) -> Result<Row> {
    let family = pool.family;
    // The baseline first: the same connects with the filter installed and no flood.
    let (idle, _) = std::thread::scope(|s| {
        s.spawn(|| traffic::connects(lab, family, connects, None))
            .join()
            .map_err(|_| anyhow::anyhow!("client panicked"))?
    })?;
    let generator = match path {
        Path::Nic => Some(loaded.generator(family)?),
        Path::Skb => None,
    };
    let stop = AtomicBool::new(false);
    let stop_connects = AtomicBool::new(false);
    let dropped_before = if installed.counts_from_zero() {
        0
    } else {
        filters::drops(lab, loaded, installed, family)?
    };
    let lost_before = lab.ring_lost()?;
    let arrived_before = lab.arrivals()?;
    let (cpu0, napi0) = (cpu_busy(RECV_CPU)?, thread_cpu(napi));
    let started = Instant::now();
    let (sent, (ms, failed)) = std::thread::scope(|s| -> Result<_> {
        let sender = s.spawn(|| match generator {
            Some(program) => traffic::send_xdp_frames(lab, program, pool, &stop),
            None => traffic::send_skbs(lab, pool, &stop),
        });
        let client = s.spawn(|| {
            std::thread::sleep(Duration::from_millis(300));
            traffic::connects(lab, family, connects, Some(&stop_connects))
        });
        std::thread::sleep(Duration::from_secs_f64(settings.seconds));
        stop_connects.store(true, Ordering::Relaxed);
        stop.store(true, Ordering::Relaxed);
        let sent = sender
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
    let dropped = filters::drops(lab, loaded, installed, family)? - dropped_before;
    let ring_lost = lab.ring_lost()? - lost_before;
    let arrived = lab.arrivals()?.since(arrived_before);
    let per = |cpu: f64| {
        if dropped == 0 {
            f64::NAN
        } else {
            cpu * 1e9 / dropped as f64
        }
    };
    Ok(Row {
        path: path.name(),
        family: family.name(),
        filter: String::new(),
        // The live-frame runs count frames the redirect may have lost before veth; veth's own
        // count of what it handed over is the one to compare with the skb path's.
        sent: match path {
            Path::Nic => arrived.xdp_frames,
            Path::Skb => sent,
        },
        ring_lost,
        dropped,
        seconds,
        cpu_ns_per_drop: per(cpu1 - cpu0),
        napi_ns_per_drop: per(napi1 - napi0),
        as_xdp_frames: arrived.xdp_frames,
        as_skbs: arrived.skbs(),
        idle_connect_ms: Summary::of(&idle),
        connect_ms: Summary::of(&ms),
        connect_failed: failed,
        note: String::new(),
    })
}

/// Why a row did not arrive the way its path says, if it did not: on the NIC path almost every
/// frame must have come as an xdp_frame (the client's connects come as skbs), on the skb path
/// none.
fn arrival_problem(path: Path, arrived: Arrivals) -> Option<String> {
    let (frames, skbs) = (arrived.xdp_frames, arrived.skbs());
    let wrong = match path {
        Path::Nic => frames == 0 || skbs * 100 > frames,
        Path::Skb => frames > 0,
    };
    wrong.then(|| {
        format!(
            "frames did not arrive as the {} path says: {frames} as xdp_frames, {skbs} as skbs",
            path.name()
        )
    })
}

pub fn run(settings: &Settings) -> Result<Outcome> {
    let home = std::fs::File::open("/proc/self/ns/net")?;
    let result = std::thread::scope(|s| {
        s.spawn(|| run_in_lab(settings))
            .join()
            .map_err(|_| anyhow::anyhow!("flood thread panicked"))?
    });
    drop(home);
    result
}

/// Accepts and closes connections on the protected port of both of the receiver's addresses
/// until dropped.
struct Acceptor {
    accepting: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Acceptor {
    fn new() -> Result<Acceptor> {
        let listeners = [Family::V4, Family::V6]
            .into_iter()
            .map(|f| {
                let l = TcpListener::bind(SocketAddr::new(f.receiver(), PROTECTED))?;
                l.set_nonblocking(true)?;
                Ok(l)
            })
            .collect::<Result<Vec<_>>>()?;
        let accepting = Arc::new(AtomicBool::new(true));
        let thread = {
            let accepting = Arc::clone(&accepting);
            std::thread::spawn(move || {
                while accepting.load(Ordering::Relaxed) {
                    let mut idle = true;
                    for l in &listeners {
                        if let Ok((stream, _)) = l.accept() {
                            drop(stream);
                            idle = false;
                        }
                    }
                    if idle {
                        std::thread::sleep(Duration::from_millis(1));
                    }
                }
            })
        };
        Ok(Acceptor {
            accepting,
            thread: Some(thread),
        })
    }
}

impl Drop for Acceptor {
    fn drop(&mut self) {
        self.accepting.store(false, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn run_in_lab(settings: &Settings) -> Result<Outcome> {
    let lab = Lab::new()?;
    setns(lab.recv.open()?, CloneFlags::CLONE_NEWNET)?;
    let napi = lab.pin_napi()?;
    let dir = tempfile::tempdir()?;
    let started = Instant::now();
    let v4 = List::v4(settings.entries, settings.seed);
    let v6 = List::v6(settings.entries, settings.seed);
    let pools = [Family::V4, Family::V6].map(|family| {
        Pool::new(
            &lab,
            family,
            if family == Family::V4 { &v4 } else { &v6 },
            settings.pool,
            settings.seed ^ 0xf100d,
        )
    });
    let mut loaded = Loaded::new(&lab, &v4, &v6, &pools, &settings.bench_object)?;
    eprintln!(
        "bench: flood: lists, pools and allowlist's maps ready in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    let _acceptor = Acceptor::new()?;
    let mut out = Outcome {
        pool: settings.pool,
        conntrack: conntrack_state(&lab),
        ..Outcome::default()
    };
    // The rows that need no netfilter set first, so that a background load overlaps them.
    let mut order: Vec<&(Path, Family, String)> = settings.rows.iter().collect();
    order.sort_by_key(|(_, _, f)| filters::needs_sets(f));
    let sets_needed = order.iter().any(|(_, _, f)| filters::needs_sets(f));
    // IPv6 sets only for IPv6 rows that use them.
    let v6_sets: &[IpNet] = if order
        .iter()
        .any(|(_, family, f)| *family == Family::V6 && filters::needs_sets(f))
    {
        &v6.nets
    } else {
        &[]
    };
    std::thread::scope(|s| -> Result<()> {
        let mut sets = sets_needed
            .then(|| s.spawn(|| filters::load_sets(&lab, &v4.nets, v6_sets, dir.path())));
        for (path, family, filter) in order {
            if (filters::needs_sets(filter) || !settings.background_loads)
                && let Some(handle) = sets.take()
            {
                out.loads = handle
                    .join()
                    .map_err(|_| anyhow::anyhow!("set loader panicked"))??;
                eprintln!("bench: flood: sets loaded: {:?}", out.loads);
            }
            let pool = &pools[usize::from(*family == Family::V6)];
            let row = run_row(
                &lab,
                settings,
                &mut loaded,
                *path,
                pool,
                &napi,
                filter,
                &dir,
            );
            out.rows.push(row?);
        }
        Ok(())
    })?;
    let rank = |r: &Row| {
        settings.rows.iter().position(|(p, f, name)| {
            p.name() == r.path && f.name() == r.family && *name == r.filter
        })
    };
    out.rows.sort_by_key(rank);
    out.conntrack = format!(
        "{}; after the floods: {}",
        out.conntrack,
        conntrack_state(&lab)
    );
    let _ = std::io::stderr().flush();
    Ok(out)
}

#[expect(
    clippy::too_many_arguments,
    reason = "the row's lab, loaded sets and choices"
)]
fn run_row(
    lab: &Lab,
    settings: &Settings,
    loaded: &mut Loaded,
    path: Path,
    pool: &Pool,
    napi: &[i32],
    filter: &str,
    dir: &tempfile::TempDir,
) -> Result<Row> {
    let family = pool.family;
    let not_run = |e: anyhow::Error| {
        eprintln!(
            "bench: flood {} {} {filter} not run: {e:#}",
            path.name(),
            family.name()
        );
        Row {
            path: path.name(),
            family: family.name(),
            filter: filter.to_owned(),
            note: format!("not run: {e:#}"),
            ..Row::default()
        }
    };
    let (installed, note) = match filters::install(lab, loaded, filter, family, dir.path()) {
        Ok(i) => i,
        Err(e) => return Ok(not_run(e)),
    };
    let connects = if filters::is_floor(filter) {
        0
    } else {
        settings.connects
    };
    let result = flood_once(
        lab, settings, path, pool, loaded, napi, &installed, connects,
    );
    filters::uninstall(lab, loaded, installed, dir.path())?;
    let mut row = match result {
        Ok(row) => row,
        Err(e) => return Ok(not_run(e)),
    };
    row.filter = filter.to_owned();
    row.note = note;
    let arrived = Arrivals {
        xdp_frames: row.as_xdp_frames,
        received: row.as_xdp_frames + row.as_skbs,
        xdp_drops: 0,
    };
    if let Some(problem) = arrival_problem(path, arrived) {
        return Ok(not_run(anyhow::anyhow!(problem)));
    }
    eprintln!(
        "bench: flood {} {} {filter}: sent {:.2} Mpps, dropped {:.2} Mpps, {:.0} ns CPU per drop (NAPI thread {:.0}), {} as xdp_frames, {} as skbs, connect p99 {:.2} ms (idle {:.2})",
        path.name(),
        family.name(),
        row.sent as f64 / row.seconds / 1e6,
        row.dropped as f64 / row.seconds / 1e6,
        row.cpu_ns_per_drop,
        row.napi_ns_per_drop,
        row.as_xdp_frames,
        row.as_skbs,
        row.connect_ms.p99,
        row.idle_connect_ms.p99
    );
    Ok(row)
}

pub fn table(out: &Outcome) -> String {
    use std::fmt::Write as _;
    let mut s = String::new();
    let _ = writeln!(
        s,
        "{:<4} {:<3} {:<15} {:>9} {:>7} {:>9} {:>11} {:>11} {:>9} {:>9} {:>9} {:>9} {:>9} {:>6}",
        "path",
        "fam",
        "filter",
        "sent Mpps",
        "lost %",
        "drop Mpps",
        "CPU ns/drop",
        "NAPI ns/drop",
        "Mpps/core",
        "idle p50",
        "idle p99",
        "conn p50",
        "conn p99",
        "failed"
    );
    for r in &out.rows {
        let _ = writeln!(
            s,
            "{:<4} {:<3} {:<15} {:>9.3} {:>7.2} {:>9.3} {:>11.0} {:>11.0} {:>9.2} {:>9.3} {:>9.3} {:>9.3} {:>9.3} {:>6}",
            r.path,
            r.family,
            r.filter,
            r.sent as f64 / r.seconds.max(1e-9) / 1e6,
            100.0 * r.ring_lost as f64 / (r.sent + r.ring_lost).max(1) as f64,
            r.dropped as f64 / r.seconds.max(1e-9) / 1e6,
            r.cpu_ns_per_drop,
            r.napi_ns_per_drop,
            r.mpps_per_core(),
            r.idle_connect_ms.median,
            r.idle_connect_ms.p99,
            r.connect_ms.median,
            r.connect_ms.p99,
            r.connect_failed
        );
    }
    for (what, seconds) in &out.loads {
        let _ = writeln!(s, "{what}: sets loaded in {seconds:.1} s");
    }
    let _ = writeln!(s, "{}", out.conntrack);
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_row_that_arrived_the_other_way_is_refused() {
        let arrived = |xdp_frames, skbs| Arrivals {
            xdp_frames,
            received: xdp_frames + skbs,
            xdp_drops: 0,
        };
        assert_eq!(arrival_problem(Path::Nic, arrived(1_000_000, 300)), None);
        assert!(arrival_problem(Path::Nic, arrived(0, 1_000_000)).is_some());
        assert!(arrival_problem(Path::Nic, arrived(1_000, 900_000)).is_some());
        assert_eq!(arrival_problem(Path::Skb, arrived(0, 1_000_000)), None);
        assert!(arrival_problem(Path::Skb, arrived(10, 1_000_000)).is_some());
    }
}
