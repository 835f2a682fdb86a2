//! Part 1: the data path through BPF_PROG_TEST_RUN on the real compiled object, against the
//! floor (an empty XDP program) and a plain LPM trie, all loaded in the same run.
//!
//! "fixed" rows repeat one frame (every cache warm); "random" rows use the `random-source`
//! build, which draws a new source for every packet, and have the cost of drawing it
//! (`draw` − `empty`, measured in the same round) subtracted in the `net_ns` column.
//!
//! Every frame is run once before it is timed and must get the reason its row is about, so
//! that a row cannot silently time another path (a port left unprotected, a source that is
//! not covered).

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::Instant;

use allowlist_common::maps::Counters;
use allowlist_common::verdict::Reason;
use allowlist_config::rules::{ListRules, Mode, Rules};
use allowlist_loader::filter::Filter;
use anyhow::{Context as _, Result, bail};
use aya::{
    Ebpf, EbpfLoader, TestRun, TestRunOptions,
    maps::{LpmTrie, lpm_trie::Key},
    programs::Xdp,
};
use ipnet::IpNet;
use serde_json::{Value, json};

use super::lists::List;
use super::stats::Summary;
use allowlist_tests::frames::{ACK, Frame, SYN};
use allowlist_tests::netns::{
    ALLOWED_V4, ALLOWED_V6, BLOCKED_V4, BLOCKED_V6, PROTECTED, UNPROTECTED,
};
use allowlist_tests::test_run;

const DST4: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);
const DST6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1);
/// Outside every generated list (as `bench-ebpf`'s warm sources are).
const BLOCKED6_WARM: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 2, 0, 0, 0, 0, 2);
/// The UDP port the list protects besides TCP's `PROTECTED` (WireGuard's); the `non_tcp_v4`
/// row sends to `PROTECTED` over UDP, which stays unprotected.
const UDP_PROTECTED: u16 = 51820;
/// Lists of the `syn_v4_32lists` rows: the entries spread over them, list `j` protecting TCP
/// port `PROTECTED + j`.
const LISTS: usize = 32;

pub struct Settings {
    pub sizes: Vec<usize>,
    /// Sizes at which the fixed-source cases of the real program run too (filling a second
    /// copy of the maps at 1M entries takes a while).
    pub fixed_sizes: Vec<usize>,
    pub rounds: usize,
    pub repeat: u32,
    pub seed: u64,
}

/// One measured (program, case) at one list size.
#[derive(Debug, Clone)]
pub struct Row {
    pub program: &'static str,
    pub case: &'static str,
    pub source: &'static str,
    pub entries: usize,
    pub ns: Summary,
    /// For random rows: median with the drawing cost subtracted.
    pub net_ns: Option<f64>,
}

impl Row {
    pub fn json(&self, floor: f64) -> Value {
        let net = self.net_ns.unwrap_or(self.ns.median);
        json!({
            "program": self.program, "case": self.case, "source": self.source,
            "entries": self.entries, "ns": self.ns.json(), "net_ns": net,
            "x_empty": net / floor,
        })
    }
}

pub struct Outcome {
    pub rows: Vec<Row>,
    /// Reason counters of each random-source program per size (what random sources got).
    pub random_reasons: Vec<(usize, &'static str, Value)>,
    pub load_seconds: Vec<(usize, f64)>,
}

impl Outcome {
    pub fn median(&self, program: &str, case: &str, entries: usize) -> Option<&Row> {
        self.rows
            .iter()
            .find(|r| r.program == program && r.case == case && r.entries == entries)
    }

    /// Net ns of (program, case) at `entries` over the empty program's median at that size.
    pub fn ratio(&self, program: &str, case: &str, entries: usize) -> Option<f64> {
        let row = self.median(program, case, entries)?;
        let floor = self.median("empty", "any", entries)?.ns.median;
        Some(row.net_ns.unwrap_or(row.ns.median) / floor)
    }
}

/// What to run: a label, where the program is, the frames.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Target {
    Real,
    Random,
    /// The random-source build with the entries spread over [`LISTS`] lists.
    Lists,
    Bench(&'static str),
}

struct Case {
    program: &'static str,
    case: &'static str,
    source: &'static str,
    target: Target,
    /// Several frames take turns: each round runs the next `frames.len() / rounds` (rounded
    /// up, so that the rounds reach every frame), a full `repeat` each, and counts their mean.
    /// A full `repeat` each, not a share: a shorter run measured tens of ns more per packet
    /// at 1M entries on a busy machine, whatever the frame.
    frames: Vec<Vec<u8>>,
    /// For random rows: which draw program's extra cost to subtract.
    draw: Option<&'static str>,
    /// The reasons each frame may get (random sources are covered or not); empty for the
    /// bench programs, which count nothing.
    expect: &'static [Reason],
}

fn cases() -> Vec<Case> {
    let syn4 = |src: Ipv4Addr, port| Frame::tcp_v4(src, DST4, 40000, port).flags(SYN).build();
    let syn6 = |src: Ipv6Addr, port| Frame::tcp_v6(src, DST6, 40000, port).flags(SYN).build();
    let udp4 = |src: Ipv4Addr, port| Frame::udp_v4(src, DST4, 40000, port).build();
    let blocked4 = syn4(BLOCKED_V4, PROTECTED);
    let blocked6 = syn6(BLOCKED6_WARM, PROTECTED);
    let real = |case, source, frame, expect| Case {
        program: "allowlist",
        case,
        source,
        target: Target::Real,
        frames: vec![frame],
        draw: None,
        expect,
    };
    let random = |case, target, frames, family, expect| Case {
        program: "allowlist",
        case,
        source: "random",
        target,
        frames,
        draw: Some(family),
        expect,
    };
    let bench = |program, name, case, source, frame: &Vec<u8>, draw| Case {
        program,
        case,
        source,
        target: Target::Bench(name),
        frames: vec![frame.clone()],
        draw,
        expect: &[],
    };
    let _ = BLOCKED_V6;
    use Reason::*;
    vec![
        bench("empty", "bench_empty", "any", "fixed", &blocked4, None),
        bench("draw", "bench_draw_v4", "v4", "random", &blocked4, None),
        bench("draw", "bench_draw_v6", "v6", "random", &blocked6, None),
        real(
            "non_tcp_v4",
            "fixed",
            udp4(ALLOWED_V4, PROTECTED),
            &[PassUnprotectedPort],
        ),
        real(
            "established_v4",
            "fixed",
            Frame::tcp_v4(ALLOWED_V4, DST4, 40000, PROTECTED)
                .flags(ACK)
                .build(),
            &[PassNotSyn],
        ),
        real(
            "established_v6",
            "fixed",
            Frame::tcp_v6(ALLOWED_V6, DST6, 40000, PROTECTED)
                .flags(ACK)
                .build(),
            &[PassNotSyn],
        ),
        real(
            "syn_unprotected_v4",
            "fixed",
            syn4(BLOCKED_V4, UNPROTECTED),
            &[PassUnprotectedPort],
        ),
        real(
            "syn_allowed_v4",
            "fixed",
            syn4(ALLOWED_V4, PROTECTED),
            &[PassAllowedV4],
        ),
        real("syn_blocked_v4", "fixed", blocked4.clone(), &[DropSynV4]),
        real(
            "syn_allowed_v6",
            "fixed",
            syn6(ALLOWED_V6, PROTECTED),
            &[PassAllowedV6],
        ),
        real("syn_blocked_v6", "fixed", blocked6.clone(), &[DropSynV6]),
        real(
            "udp_allowed_v4",
            "fixed",
            udp4(ALLOWED_V4, UDP_PROTECTED),
            &[PassAllowedV4],
        ),
        real(
            "udp_blocked_v4",
            "fixed",
            udp4(BLOCKED_V4, UDP_PROTECTED),
            &[DropUdpV4],
        ),
        random(
            "syn_v4",
            Target::Random,
            vec![blocked4.clone()],
            "v4",
            &[DropSynV4, PassAllowedV4],
        ),
        random(
            "syn_v6",
            Target::Random,
            vec![blocked6.clone()],
            "v6",
            &[DropSynV6, PassAllowedV6],
        ),
        random(
            "udp_v4",
            Target::Random,
            vec![udp4(BLOCKED_V4, UDP_PROTECTED)],
            "v4",
            &[DropUdpV4, PassAllowedV4],
        ),
        // A SYN to the port of every list in turn.
        random(
            "syn_v4_32lists",
            Target::Lists,
            (0..LISTS as u16)
                .map(|j| syn4(BLOCKED_V4, PROTECTED + j))
                .collect(),
            "v4",
            &[DropSynV4, PassAllowedV4],
        ),
        bench(
            "lpm",
            "bench_lpm_v4_warm",
            "syn_v4",
            "fixed",
            &blocked4,
            None,
        ),
        bench(
            "lpm",
            "bench_lpm_v6_warm",
            "syn_v6",
            "fixed",
            &blocked6,
            None,
        ),
        bench(
            "lpm",
            "bench_lpm_v4",
            "syn_v4",
            "random",
            &blocked4,
            Some("v4"),
        ),
        bench(
            "lpm",
            "bench_lpm_v6",
            "syn_v6",
            "random",
            &blocked6,
            Some("v6"),
        ),
    ]
}

/// The same entries spread over [`LISTS`] enforcing lists, round robin, list `j` protecting
/// TCP port `PROTECTED + j`.
fn spread(nets: &[IpNet]) -> Rules {
    Rules {
        lists: (0..LISTS)
            .map(|j| ListRules {
                name: format!("l{j}"),
                mode: Mode::Enforce,
                tcp_ports: BTreeSet::from([PROTECTED + j as u16]),
                udp_ports: BTreeSet::new(),
                entries: nets.iter().skip(j).step_by(LISTS).copied().collect(),
                ..ListRules::default()
            })
            .collect(),
    }
}

/// Runs each frame of `case` once through `filter` and fails unless it got one of the
/// reasons the row is about; with several lists, unless each list judged one frame.
fn check(filter: &mut Filter, case: &Case) -> Result<()> {
    let lists_before = filter.list_counters()?;
    for frame in &case.frames {
        let before = test_run::totals(filter);
        test_run(filter.program(), frame, 1)?;
        let after = test_run::totals(filter);
        let got: Vec<Reason> = Reason::ALL
            .into_iter()
            .filter(|r| after[*r as usize] != before[*r as usize])
            .collect();
        if got.len() != 1 || !case.expect.contains(&got[0]) {
            bail!(
                "{} {}: a frame got {got:?}, not one of {:?}",
                case.program,
                case.case,
                case.expect
            );
        }
    }
    if case.frames.len() > 1 {
        let judged = |c: &Counters| c.by_reason.iter().sum::<u64>();
        for (name, after) in filter.list_counters()? {
            let before = lists_before.get(&name).map_or(0, judged);
            if judged(&after) - before != 1 {
                bail!("{}: list {name} did not judge one frame", case.case);
            }
        }
    }
    Ok(())
}

fn test_run(program: &mut Xdp, frame: &[u8], repeat: u32) -> Result<f64> {
    let result = program
        .test_run(TestRunOptions {
            data_in: Some(frame),
            repeat,
            ..Default::default()
        })
        .context("BPF_PROG_TEST_RUN")?;
    Ok(result.duration.as_nanos() as f64)
}

fn bench_program<'a>(ebpf: &'a mut Ebpf, name: &str) -> Result<&'a mut Xdp> {
    let program: &mut Xdp = ebpf
        .program_mut(name)
        .with_context(|| format!("bench object has no program {name}"))?
        .try_into()?;
    Ok(program)
}

/// Loads the bench object with its tries sized for `capacity` and filled with `nets`.
fn load_bench(object: &[u8], capacity: u32, nets: &[IpNet]) -> Result<Ebpf> {
    let mut ebpf = EbpfLoader::new()
        .map_max_entries("BENCH_V4", capacity)
        .map_max_entries("BENCH_V6", capacity)
        .load(object)
        .context("loading the bench object")?;
    let names: Vec<String> = ebpf.programs().map(|(n, _)| n.to_owned()).collect();
    for name in names {
        bench_program(&mut ebpf, &name)?
            .load()
            .with_context(|| format!("loading {name}"))?;
    }
    {
        let mut v4: LpmTrie<_, [u8; 4], u32> =
            LpmTrie::try_from(ebpf.map_mut("BENCH_V4").context("BENCH_V4")?)?;
        for (i, net) in nets.iter().enumerate() {
            if let IpNet::V4(n) = net {
                v4.insert(
                    &Key::new(u32::from(n.prefix_len()), n.network().octets()),
                    i as u32,
                    0,
                )?;
            }
        }
    }
    let mut v6: LpmTrie<_, [u8; 16], u32> =
        LpmTrie::try_from(ebpf.map_mut("BENCH_V6").context("BENCH_V6")?)?;
    for (i, net) in nets.iter().enumerate() {
        if let IpNet::V6(n) = net {
            v6.insert(
                &Key::new(u32::from(n.prefix_len()), n.network().octets()),
                i as u32,
                0,
            )?;
        }
    }
    Ok(ebpf)
}

pub fn run(settings: &Settings, bench_object: &[u8], random_object: &[u8]) -> Result<Outcome> {
    let mut out = Outcome {
        rows: Vec::new(),
        random_reasons: Vec::new(),
        load_seconds: Vec::new(),
    };
    for &size in &settings.sizes {
        let started = Instant::now();
        let v4 = List::v4(size, settings.seed);
        let v6 = List::v6(size, settings.seed);
        let nets: Vec<IpNet> = v4.nets.iter().chain(&v6.nets).copied().collect();
        let mut rules = Rules::single(
            true,
            BTreeSet::from([PROTECTED]),
            nets.iter().copied().collect(),
        );
        rules.lists[0].udp_ports.insert(UDP_PROTECTED);
        let capacity = u32::try_from(size.max(16)).context("size")?;
        let with_fixed = settings.fixed_sizes.contains(&size);
        let mut real = Filter::load(capacity).context("loading allowlist's program")?;
        if with_fixed {
            real.apply(&rules).context("filling allowlist's maps")?;
        }
        let mut random = Filter::load_object(random_object, capacity)
            .context("loading the random-source build")?;
        random.apply(&rules).context("filling its maps")?;
        let mut lists = Filter::load_object(random_object, capacity)
            .context("loading the random-source build for the lists")?;
        lists
            .apply(&spread(&nets))
            .context("filling its maps with 32 lists")?;
        let mut bench = load_bench(bench_object, capacity, &nets)?;
        let loaded = started.elapsed().as_secs_f64();
        eprintln!(
            "bench: data path, {size} entries per family: lists generated and 4 programs filled in {loaded:.1} s"
        );
        out.load_seconds.push((size, loaded));

        let cases: Vec<Case> = cases()
            .into_iter()
            .filter(|c| with_fixed || c.target != Target::Real)
            .collect();
        for case in &cases {
            match case.target {
                Target::Real => check(&mut real, case)?,
                Target::Random => check(&mut random, case)?,
                Target::Lists => check(&mut lists, case)?,
                Target::Bench(_) => {}
            }
        }
        let mut samples: Vec<Vec<f64>> = vec![Vec::new(); cases.len()];
        let before = [test_run::totals(&random), test_run::totals(&lists)];
        for round in 0..settings.rounds {
            for (case, slot) in cases.iter().zip(samples.iter_mut()) {
                let turn = case.frames.len().div_ceil(settings.rounds);
                let mut ns = 0.0;
                for i in 0..turn {
                    let frame = &case.frames[(round * turn + i) % case.frames.len()];
                    ns += match case.target {
                        Target::Real => test_run(real.program(), frame, settings.repeat)?,
                        Target::Random => test_run(random.program(), frame, settings.repeat)?,
                        Target::Lists => test_run(lists.program(), frame, settings.repeat)?,
                        Target::Bench(name) => {
                            test_run(bench_program(&mut bench, name)?, frame, settings.repeat)?
                        }
                    };
                }
                slot.push(ns / turn as f64);
            }
        }
        let after = [test_run::totals(&random), test_run::totals(&lists)];
        for ((before, after), program) in before.iter().zip(&after).zip(["1 list", "32 lists"]) {
            let got: serde_json::Map<String, Value> = Reason::ALL
                .iter()
                .filter(|r| after[**r as usize] > before[**r as usize])
                .map(|r| {
                    (
                        r.name().to_owned(),
                        json!(after[*r as usize] - before[*r as usize]),
                    )
                })
                .collect();
            out.random_reasons.push((size, program, Value::Object(got)));
        }

        let summaries: Vec<Summary> = samples.iter().map(|s| Summary::of(s)).collect();
        let empty = summaries[0].median;
        let draw_extra = |family: &str| {
            let i = if family == "v4" { 1 } else { 2 };
            summaries[i].median - empty
        };
        for (case, ns) in cases.iter().zip(summaries.iter()) {
            out.rows.push(Row {
                program: case.program,
                case: case.case,
                source: case.source,
                entries: size,
                ns: *ns,
                net_ns: case.draw.map(|family| ns.median - draw_extra(family)),
            });
        }
    }
    Ok(out)
}

/// The table printed for part 1.
pub fn table(out: &Outcome) -> String {
    use std::fmt::Write as _;
    let mut s = String::new();
    let _ = writeln!(
        s,
        "{:<10} {:<20} {:<7} {:>9} {:>9} {:>9} {:>8} {:>8}",
        "program", "case", "source", "entries", "ns", "net ns", "spread%", "x empty"
    );
    for row in &out.rows {
        let floor = out
            .median("empty", "any", row.entries)
            .map_or(f64::NAN, |r| r.ns.median);
        let net = row.net_ns.unwrap_or(row.ns.median);
        let _ = writeln!(
            s,
            "{:<10} {:<20} {:<7} {:>9} {:>9.1} {:>9.1} {:>8.1} {:>8.2}",
            row.program,
            row.case,
            row.source,
            row.entries,
            row.ns.median,
            net,
            row.ns.spread_pct(),
            net / floor
        );
    }
    s
}

/// Addresses of the warm rows, for the report.
pub fn warm_sources() -> Value {
    json!({
        "allowed_v4": IpAddr::V4(ALLOWED_V4).to_string(),
        "blocked_v4": IpAddr::V4(BLOCKED_V4).to_string(),
        "allowed_v6": IpAddr::V6(ALLOWED_V6).to_string(),
        "blocked_v6": IpAddr::V6(BLOCKED6_WARM).to_string(),
    })
}
