//! The measurements of `cargo xtask bench` (run that, not this: it builds the objects this
//! reads, installs the peers and renders BENCHMARKS.md from `results.json`).
//!
//! allowlist-bench [--quick] --out DIR --bench-object PATH --random-object PATH [--parts LIST]

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context as _, Result, bail};
use serde_json::{Map, Value, json};

mod control;
mod flood;
mod headline;
mod knock;
mod lists;
mod stats;
mod testrun;
mod web;

use headline::Headline;

struct Args {
    quick: bool,
    out: PathBuf,
    bench_object: PathBuf,
    random_object: PathBuf,
    parts: Vec<String>,
}

fn args() -> Result<Args> {
    let mut quick = false;
    let mut out = None;
    let mut bench_object = None;
    let mut random_object = None;
    let mut parts = vec![
        "testrun".to_owned(),
        "control".to_owned(),
        "flood".to_owned(),
        "knock".to_owned(),
        "web".to_owned(),
    ];
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut value = || it.next().with_context(|| format!("{arg} needs a value"));
        match arg.as_str() {
            "--quick" => quick = true,
            "--out" => out = Some(PathBuf::from(value()?)),
            "--bench-object" => bench_object = Some(PathBuf::from(value()?)),
            "--random-object" => random_object = Some(PathBuf::from(value()?)),
            "--parts" => parts = value()?.split(',').map(str::to_owned).collect(),
            other => bail!("unknown argument {other}"),
        }
    }
    Ok(Args {
        quick,
        out: out.context("--out DIR is required")?,
        bench_object: bench_object.context("--bench-object is required")?,
        random_object: random_object.context("--random-object is required")?,
        parts,
    })
}

fn main() -> Result<()> {
    let args = args()?;
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("creating {}", args.out.display()))?;
    let started = Instant::now();
    let mut results = Map::new();
    let mut headlines: Vec<Headline> = Vec::new();
    results.insert(
        "settings".into(),
        json!({ "quick": args.quick, "parts": args.parts }),
    );

    if args.parts.iter().any(|p| p == "testrun") {
        let bench = std::fs::read(&args.bench_object)
            .with_context(|| format!("reading {}", args.bench_object.display()))?;
        let random = std::fs::read(&args.random_object)
            .with_context(|| format!("reading {}", args.random_object.display()))?;
        let settings = if args.quick {
            testrun::Settings {
                sizes: vec![1000, 1 << 20],
                fixed_sizes: vec![1000],
                // Enough rounds that a burst of load from the machine's neighbours moves
                // the medians little.
                rounds: 9,
                repeat: 500_000,
                seed: 1,
            }
        } else {
            testrun::Settings {
                sizes: vec![1, 1000, 1 << 16, 1 << 20],
                fixed_sizes: vec![1, 1000, 1 << 16, 1 << 20],
                rounds: 9,
                repeat: 1_000_000,
                seed: 1,
            }
        };
        let t = Instant::now();
        let out = testrun::run(&settings, &bench, &random)?;
        println!(
            "\n== 1. data path: BPF_PROG_TEST_RUN, ns per packet (median of {} rounds of {} repeats)\n{}",
            settings.rounds,
            settings.repeat,
            testrun::table(&out)
        );
        let floor_of = |size| {
            out.median("empty", "any", size)
                .map_or(f64::NAN, |r| r.ns.median)
        };
        let rows: Vec<Value> = out
            .rows
            .iter()
            .map(|r| r.json(floor_of(r.entries)))
            .collect();
        results.insert(
            "testrun".into(),
            json!({
                "rounds": settings.rounds, "repeat": settings.repeat, "rows": rows,
                "random_reasons": out.random_reasons.iter().map(|(s, p, v)| json!({"entries": s, "program": p, "reasons": v})).collect::<Vec<_>>(),
                "load_seconds": out.load_seconds,
                "warm_sources": testrun::warm_sources(),
                "seconds": t.elapsed().as_secs_f64(),
            }),
        );
        headlines.push(Headline {
            name: "non-syn-path",
            value: out.ratio("allowlist", "established_v4", 1000),
            goal: 1.15,
            at_least: false,
        });
        headlines.push(Headline {
            name: "syn-flood-1k-v4",
            value: out.ratio("allowlist", "syn_v4", 1000),
            goal: 2.5,
            at_least: false,
        });
        headlines.push(Headline {
            name: "syn-flood-1m-v4",
            value: out.ratio("allowlist", "syn_v4", 1 << 20),
            goal: 5.0,
            at_least: false,
        });
        headlines.push(Headline {
            name: "syn-flood-1m-v6",
            value: out.ratio("allowlist", "syn_v6", 1 << 20),
            goal: 5.0,
            at_least: false,
        });
        headlines.push(Headline {
            name: "syn-flood-1m-v4-32lists",
            value: out.ratio("allowlist", "syn_v4_32lists", 1 << 20),
            goal: 5.0,
            at_least: false,
        });
        headlines.push(Headline {
            name: "udp-flood-1m-v4",
            value: out.ratio("allowlist", "udp_v4", 1 << 20),
            goal: 5.0,
            at_least: false,
        });
        headlines.push(Headline {
            name: "udp-allowed-path",
            value: out.ratio("allowlist", "udp_allowed_v4", 1000),
            goal: 3.0,
            at_least: false,
        });
    }

    if args.parts.iter().any(|p| p == "control") {
        let settings = control::Settings {
            sizes: if args.quick {
                vec![1000, 1 << 20]
            } else {
                vec![1000, 100_000, 1 << 20]
            },
            reload_sizes: vec![1 << 20],
            ctl_runs: if args.quick { 30 } else { 200 },
            repeats: if args.quick { 3 } else { 5 },
            seed: 2,
        };
        let t = Instant::now();
        let out = control::run(&settings)?;
        println!(
            "\n== 3./4. control plane (entries: {:.0}% IPv4, the rest IPv6)\n{}",
            control::V4_SHARE * 100.0,
            control::table(&out)
        );
        let m = 1 << 20;
        let apply = out.find("allowlistd", "start", m);
        let reload = out.find("allowlistd", "reload 1%", m);
        let peak = reload.or(apply).and_then(|r| r.peak_rss_mib);
        results.insert(
            "control".into(),
            json!({
                "rows": out.rows.iter().map(control::Row::json).collect::<Vec<_>>(),
                "ctl": out.ctl.iter().map(|(c, n, s)| json!({"command": c, "entries": n, "ms": s.json()})).collect::<Vec<_>>(),
                "maps": out.maps.iter().map(|(n, v)| json!({"entries": n, "maps": v})).collect::<Vec<_>>(),
                "v4_share": control::V4_SHARE,
                "seconds": t.elapsed().as_secs_f64(),
            }),
        );
        headlines.push(Headline {
            name: "apply-1m-seconds",
            value: apply.map(|r| r.seconds),
            goal: 2.0,
            at_least: false,
        });
        headlines.push(Headline {
            name: "reload-1pct-1m-ms",
            value: reload.map(|r| r.seconds * 1000.0),
            goal: 500.0,
            at_least: false,
        });
        headlines.push(Headline {
            name: "peak-rss-1m-mb",
            value: peak,
            goal: 200.0,
            at_least: false,
        });
    }

    if args.parts.iter().any(|p| p == "flood") {
        use flood::{Family, Path};
        let bench_object = std::fs::read(&args.bench_object)
            .with_context(|| format!("reading {}", args.bench_object.display()))?;
        let skb = [
            "allowlist",
            "drop",
            "parse-drop",
            "nft-netdev",
            "nft-inet",
            "iptables-ipset",
            "xdp-filter",
        ];
        // On the NIC path netfilter sees frames only once they became skbs: nftables' netdev
        // ingress is the first hook there.
        let nic = [
            "allowlist",
            "drop",
            "parse-drop",
            "nft-netdev",
            "xdp-filter",
        ];
        // The quick run keeps netfilter only where its headlines need it (nftables, IPv4):
        // loading a million IPv6 intervals into each of nftables' two tables takes minutes;
        // the XDP rows of every path stay.
        let netfilter = |f: &str| f.starts_with("nft-") || f == "iptables-ipset";
        let quick_skips =
            |family, f: &str| netfilter(f) && (family == Family::V6 || f == "iptables-ipset");
        let mut rows = Vec::new();
        for (path, filters) in [(Path::Skb, &skb[..]), (Path::Nic, &nic[..])] {
            for family in [Family::V4, Family::V6] {
                rows.extend(
                    filters
                        .iter()
                        .filter(|f| !(args.quick && quick_skips(family, f)))
                        .map(|f| (path, family, (*f).to_owned())),
                );
            }
        }
        let settings = flood::Settings {
            // The same million entries as the full run: the sets are loaded once for every
            // row (in the quick run beside the first rows), and the floods are shorter.
            entries: 1 << 20,
            seconds: if args.quick { 2.0 } else { 10.0 },
            connects: if args.quick { 100 } else { 1000 },
            pool: if args.quick { 1 << 18 } else { 1 << 21 },
            seed: 3,
            rows,
            background_loads: args.quick,
            bench_object,
        };
        let t = Instant::now();
        let out = flood::run(&settings)?;
        println!(
            "\n== 2. SYN flood over veth, {} entries per family, {} s per filter, {} distinct uncovered sources per family\n{}",
            settings.entries,
            settings.seconds,
            out.pool,
            flood::table(&out)
        );
        let v4 = Family::V4;
        let best_nft = [
            out.cpu(Path::Skb, v4, "nft-netdev"),
            out.cpu(Path::Skb, v4, "nft-inet"),
        ]
        .into_iter()
        .flatten()
        .reduce(f64::min);
        let ratio = |a: Option<f64>, b: Option<f64>| a.zip(b).map(|(a, b)| a / b);
        let mpps = |filter| out.cpu(Path::Nic, v4, filter).map(|ns| 1e3 / ns);
        results.insert(
            "flood".into(),
            json!({
                "entries": settings.entries, "seconds_each": settings.seconds,
                "pool": out.pool, "conntrack": out.conntrack,
                "loads": out.loads.iter().map(|(w, s)| json!({"what": w, "seconds": s})).collect::<Vec<_>>(),
                "rows": out.rows.iter().map(flood::Row::json).collect::<Vec<_>>(),
                "seconds": t.elapsed().as_secs_f64(),
            }),
        );
        headlines.push(Headline {
            name: "flood-cpu-vs-nftables",
            value: ratio(out.cpu(Path::Skb, v4, "allowlist"), best_nft),
            goal: 0.5,
            at_least: false,
        });
        headlines.push(Headline {
            name: "flood-cpu-vs-drop-floor",
            value: ratio(
                out.cpu(Path::Skb, v4, "allowlist"),
                out.cpu(Path::Skb, v4, "drop"),
            ),
            goal: 1.3,
            at_least: false,
        });
        headlines.push(Headline {
            name: "nic-path-flood-cpu-vs-nftables",
            value: ratio(
                out.cpu(Path::Nic, v4, "allowlist"),
                out.cpu(Path::Nic, v4, "nft-netdev"),
            ),
            goal: 0.15,
            at_least: false,
        });
        headlines.push(Headline {
            name: "nic-path-mpps-per-core",
            value: mpps("allowlist"),
            // Within 30% of the drop floor's figure, measured in the same run.
            goal: mpps("drop").map_or(f64::NAN, |floor| floor * 0.7),
            at_least: true,
        });
    }

    if args.parts.iter().any(|p| p == "knock") {
        let settings = knock::Settings {
            rounds: 9,
            per_round: if args.quick { 500 } else { 2000 },
            grants_per_round: if args.quick { 20 } else { 50 },
        };
        let t = Instant::now();
        let rows = knock::run(&settings)?;
        println!(
            "\n== 5. knock: µs of one core per datagram (median of {} rounds)\n{}",
            settings.rounds,
            knock::table(&rows)
        );
        results.insert(
            "knock".into(),
            json!({
                "rounds": settings.rounds, "per_round": settings.per_round,
                "grants_per_round": settings.grants_per_round,
                "rows": rows.iter().map(knock::Row::json).collect::<Vec<_>>(),
                "seconds": t.elapsed().as_secs_f64(),
            }),
        );
    }

    if args.parts.iter().any(|p| p == "web") {
        let dist = std::env::var_os("ALLOWLIST_COCKPIT_DIST").context(
            "ALLOWLIST_COCKPIT_DIST is not set: run `cargo xtask bench`, which builds the page",
        )?;
        let settings = web::Settings {
            entries: 1 << 20,
            loads: if args.quick { 5 } else { 9 },
            seed: 2,
        };
        let t = Instant::now();
        let out = web::run(&settings, std::path::Path::new(&dist))?;
        let listed: Vec<String> = out.loads_ms.iter().map(|ms| format!("{ms:.0}")).collect();
        println!(
            "\n== 6. web console: navigation to the first row of entries at {} entries\nms: {} (median {:.0})",
            out.entries,
            listed.join(", "),
            out.median_ms
        );
        let mut web = out.json();
        web["seconds"] = json!(t.elapsed().as_secs_f64());
        results.insert("web".into(), web);
        headlines.push(Headline {
            name: "web-console-first-screen-1m-ms",
            value: Some(out.median_ms),
            goal: 2000.0,
            at_least: false,
        });
    }

    results.insert(
        "headlines".into(),
        Value::Array(headlines.iter().map(Headline::json).collect()),
    );
    results.insert("seconds".into(), json!(started.elapsed().as_secs_f64()));
    let path = args.out.join("results.json");
    std::fs::write(
        &path,
        serde_json::to_string_pretty(&Value::Object(results))?,
    )
    .with_context(|| format!("writing {}", path.display()))?;
    println!();
    for h in &headlines {
        println!("{}", h.line());
    }
    Ok(())
}
