//! Part 1: the data path through BPF_PROG_TEST_RUN on the real compiled object, against the
//! floor (an empty XDP program) and a plain LPM trie, all loaded in the same run.
//!
//! "fixed" rows repeat one frame (every cache warm); "random" rows use the `random-source`
//! build, which draws a new source for every packet, and have the cost of drawing it
//! (`draw` − `empty`, measured in the same round) subtracted in the `net_ns` column.

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::Instant;

use allowlist_common::verdict::Reason;
use allowlist_config::rules::Rules;
use allowlist_loader::filter::Filter;
use anyhow::{Context as _, Result};
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
    /// Reason counters of the random-source program per size (what random sources got).
    pub random_reasons: Vec<(usize, Value)>,
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

/// What to run: a label, where the program is, the frame.
enum Target {
    Real,
    Random,
    Bench(&'static str),
}

struct Case {
    program: &'static str,
    case: &'static str,
    source: &'static str,
    target: Target,
    frame: Vec<u8>,
    /// For random rows: which draw program's extra cost to subtract.
    draw: Option<&'static str>,
}

fn cases() -> Vec<Case> {
    let syn4 = |src: Ipv4Addr, port| Frame::tcp_v4(src, DST4, 40000, port).flags(SYN).build();
    let syn6 = |src: Ipv6Addr, port| Frame::tcp_v6(src, DST6, 40000, port).flags(SYN).build();
    let blocked4 = syn4(BLOCKED_V4, PROTECTED);
    let blocked6 = syn6(BLOCKED6_WARM, PROTECTED);
    let real = |case, source, frame| Case {
        program: "allowlist",
        case,
        source,
        target: Target::Real,
        frame,
        draw: None,
    };
    let bench = |program, name, case, source, frame: &Vec<u8>, draw| Case {
        program,
        case,
        source,
        target: Target::Bench(name),
        frame: frame.clone(),
        draw,
    };
    let _ = BLOCKED_V6;
    vec![
        bench("empty", "bench_empty", "any", "fixed", &blocked4, None),
        bench("draw", "bench_draw_v4", "v4", "random", &blocked4, None),
        bench("draw", "bench_draw_v6", "v6", "random", &blocked6, None),
        real(
            "non_tcp_v4",
            "fixed",
            Frame::udp_v4(ALLOWED_V4, DST4, 40000, PROTECTED).build(),
        ),
        real(
            "established_v4",
            "fixed",
            Frame::tcp_v4(ALLOWED_V4, DST4, 40000, PROTECTED)
                .flags(ACK)
                .build(),
        ),
        real(
            "established_v6",
            "fixed",
            Frame::tcp_v6(ALLOWED_V6, DST6, 40000, PROTECTED)
                .flags(ACK)
                .build(),
        ),
        real("syn_unprotected_v4", "fixed", syn4(BLOCKED_V4, UNPROTECTED)),
        real("syn_allowed_v4", "fixed", syn4(ALLOWED_V4, PROTECTED)),
        real("syn_blocked_v4", "fixed", blocked4.clone()),
        real("syn_allowed_v6", "fixed", syn6(ALLOWED_V6, PROTECTED)),
        real("syn_blocked_v6", "fixed", blocked6.clone()),
        Case {
            program: "allowlist",
            case: "syn_v4",
            source: "random",
            target: Target::Random,
            frame: blocked4.clone(),
            draw: Some("v4"),
        },
        Case {
            program: "allowlist",
            case: "syn_v6",
            source: "random",
            target: Target::Random,
            frame: blocked6.clone(),
            draw: Some("v6"),
        },
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
        let rules = Rules::single(
            true,
            BTreeSet::from([PROTECTED]),
            nets.iter().copied().collect(),
        );
        let capacity = u32::try_from(size.max(16)).context("size")?;
        let with_fixed = settings.fixed_sizes.contains(&size);
        let mut real = Filter::load(capacity).context("loading allowlist's program")?;
        if with_fixed {
            real.apply(&rules).context("filling allowlist's maps")?;
        }
        let mut random = Filter::load_object(random_object, capacity)
            .context("loading the random-source build")?;
        random.apply(&rules).context("filling its maps")?;
        let mut bench = load_bench(bench_object, capacity, &nets)?;
        let loaded = started.elapsed().as_secs_f64();
        eprintln!(
            "bench: data path, {size} entries per family: lists generated and 3 programs filled in {loaded:.1} s"
        );
        out.load_seconds.push((size, loaded));

        let cases: Vec<Case> = cases()
            .into_iter()
            .filter(|c| with_fixed || !matches!(c.target, Target::Real))
            .collect();
        let mut samples: Vec<Vec<f64>> = vec![Vec::new(); cases.len()];
        let before = test_run::totals(&random);
        for _ in 0..settings.rounds {
            for (case, slot) in cases.iter().zip(samples.iter_mut()) {
                let ns = match case.target {
                    Target::Real => test_run(real.program(), &case.frame, settings.repeat)?,
                    Target::Random => test_run(random.program(), &case.frame, settings.repeat)?,
                    Target::Bench(name) => test_run(
                        bench_program(&mut bench, name)?,
                        &case.frame,
                        settings.repeat,
                    )?,
                };
                slot.push(ns);
            }
        }
        let after = test_run::totals(&random);
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
        out.random_reasons.push((size, Value::Object(got)));

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
