//! Renders `results.json` (written by `allowlist-bench`) into BENCHMARKS.md, CSV files and two
//! hand-written SVG plots: data-path cost against list size, and receiver CPU per dropped SYN
//! per filter.

use std::fmt::Write as _;
use std::path::Path;
use std::process::Command;

use anyhow::{Context as _, Result};
use serde_json::Value;

fn f(v: &Value) -> f64 {
    v.as_f64().unwrap_or(f64::NAN)
}

fn s(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => "-".into(),
        other => other.to_string(),
    }
}

fn num(v: f64) -> String {
    if v.is_nan() {
        "-".into()
    } else if v.abs() >= 100.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.2}")
    }
}

fn command_output(program: &str, args: &[&str]) -> String {
    Command::new(program)
        .args(args)
        .output()
        .ok()
        .map(|o| {
            let text = if o.stdout.is_empty() {
                o.stderr
            } else {
                o.stdout
            };
            String::from_utf8_lossy(&text)
                .lines()
                .next()
                .unwrap_or("")
                .trim()
                .to_owned()
        })
        .filter(|t| !t.is_empty())
        .unwrap_or_else(|| "(not available)".into())
}

fn machine() -> Vec<(String, String)> {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .map(|v| v.trim_start_matches([' ', '\t', ':']).to_owned())
        .unwrap_or_default();
    let cpus = cpuinfo
        .lines()
        .filter(|l| l.starts_with("processor"))
        .count();
    let mem = std::fs::read_to_string("/proc/meminfo")
        .unwrap_or_default()
        .lines()
        .next()
        .unwrap_or("")
        .to_owned();
    let os = std::fs::read_to_string("/etc/os-release")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("PRETTY_NAME="))
        .unwrap_or("")
        .trim_matches('"')
        .to_owned();
    vec![
        ("CPU".into(), format!("{model}, {cpus} vCPU")),
        ("memory".into(), mem),
        ("kernel".into(), command_output("uname", &["-r"])),
        ("OS".into(), os),
        ("rustc (userspace)".into(), command_output("rustc", &["-V"])),
        (
            "rustc (eBPF)".into(),
            command_output("/usr/bin/rustc", &["-V"]),
        ),
        (
            "bpf-linker".into(),
            command_output("bpf-linker", &["--version"]),
        ),
        ("aya / aya-ebpf".into(), "0.14 / 0.2 (Cargo.lock)".into()),
        ("nft".into(), command_output("nft", &["--version"])),
        ("ipset".into(), command_output("ipset", &["--version"])),
        ("iptables".into(), command_output("iptables", &["-V"])),
        // xdp-filter has no --version; its package has.
        (
            "xdp-filter".into(),
            format!(
                "xdp-tools {}",
                command_output("dpkg-query", &["-W", "-f", "${Version}", "xdp-tools"])
            ),
        ),
    ]
}

/// Writes the report; returns the headline lines (to print last).
pub fn write(
    root: &Path,
    out_dir: &Path,
    md_path: &Path,
    quick: bool,
    seconds: f64,
) -> Result<Vec<String>> {
    let path = out_dir.join("results.json");
    let results: Value = serde_json::from_str(
        &std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?,
    )
    .with_context(|| format!("parsing {}", path.display()))?;
    let null = Value::Null;
    let empty = Vec::new();
    let arr = |v: &Value| v.as_array().cloned().unwrap_or_default();

    // CSV files.
    let testrun = &results["testrun"];
    let mut csv =
        String::from("program,case,source,entries,median_ns,min_ns,max_ns,net_ns,x_empty\n");
    for r in arr(&testrun["rows"]) {
        let _ = writeln!(
            csv,
            "{},{},{},{},{},{},{},{},{}",
            s(&r["program"]),
            s(&r["case"]),
            s(&r["source"]),
            r["entries"],
            r["ns"]["median"],
            r["ns"]["min"],
            r["ns"]["max"],
            r["net_ns"],
            r["x_empty"]
        );
    }
    std::fs::write(out_dir.join("testrun.csv"), csv)?;
    let flood = &results["flood"];
    let mut csv = String::from(
        "path,family,filter,sent,dropped,seconds,cpu_ns_per_drop,napi_ns_per_drop,mpps_per_core,as_xdp_frames,as_skbs,idle_connect_p50_ms,idle_connect_p99_ms,connect_p50_ms,connect_p99_ms,connect_failed\n",
    );
    for r in arr(&flood["rows"]) {
        let _ = writeln!(
            csv,
            "{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{}",
            s(&r["path"]),
            s(&r["family"]),
            s(&r["filter"]),
            r["sent"],
            r["dropped"],
            r["seconds"],
            r["cpu_ns_per_drop"],
            r["napi_ns_per_drop"],
            r["mpps_per_core"],
            r["as_xdp_frames"],
            r["as_skbs"],
            r["idle_connect_ms"]["median"],
            r["idle_connect_ms"]["p99"],
            r["connect_ms"]["median"],
            r["connect_ms"]["p99"],
            r["connect_failed"]
        );
    }
    std::fs::write(out_dir.join("flood.csv"), csv)?;
    let control = &results["control"];
    let mut csv = String::from("tool,what,entries,seconds,peak_rss_mib,kernel_mib\n");
    for r in arr(&control["rows"]) {
        let _ = writeln!(
            csv,
            "{},{},{},{},{},{}",
            s(&r["tool"]),
            s(&r["what"]),
            r["entries"],
            r["seconds"],
            r["peak_rss_mib"],
            r["kernel_mib"]
        );
    }
    std::fs::write(out_dir.join("control.csv"), csv)?;

    // Plots.
    let mut series: Vec<(String, Vec<(f64, f64)>)> = Vec::new();
    for (label, program, case, source) in [
        ("allowlist, random IPv4", "allowlist", "syn_v4", "random"),
        ("allowlist, random IPv6", "allowlist", "syn_v6", "random"),
        ("plain LPM, random IPv4", "lpm", "syn_v4", "random"),
        ("plain LPM, random IPv6", "lpm", "syn_v6", "random"),
        (
            "allowlist, blocked IPv4, fixed",
            "allowlist",
            "syn_blocked_v4",
            "fixed",
        ),
        ("empty program", "empty", "any", "fixed"),
    ] {
        let points: Vec<(f64, f64)> = arr(&testrun["rows"])
            .iter()
            .filter(|r| r["program"] == program && r["case"] == case && r["source"] == source)
            .map(|r| (f(&r["entries"]), f(&r["net_ns"])))
            .collect();
        if !points.is_empty() {
            series.push((label.into(), points));
        }
    }
    std::fs::write(out_dir.join("cost-vs-list-size.svg"), line_plot(&series))?;
    for (path, file, title) in [
        (
            "skb",
            "cpu-per-dropped-syn.svg",
            "receiver CPU (ns) per dropped IPv4 SYN, arriving as skbs",
        ),
        (
            "nic",
            "nic-path-cpu-per-dropped-syn.svg",
            "receiver CPU (ns) per dropped IPv4 SYN, arriving as xdp_frames",
        ),
    ] {
        let bars: Vec<(String, f64)> = arr(&flood["rows"])
            .iter()
            .filter(|r| r["path"] == path && r["family"] == "v4")
            .filter(|r| f(&r["cpu_ns_per_drop"]).is_finite())
            .map(|r| (s(&r["filter"]), f(&r["cpu_ns_per_drop"])))
            .collect();
        std::fs::write(out_dir.join(file), bar_plot(title, &bars))?;
    }

    // The report.
    let rel = out_dir
        .strip_prefix(root)
        .unwrap_or(out_dir)
        .display()
        .to_string();
    let md_dir = md_path.parent().unwrap_or(root);
    let link = |name: &str| {
        out_dir
            .join(name)
            .strip_prefix(md_dir)
            .map(|p| p.display().to_string())
            .unwrap_or_else(|_| name.to_owned())
    };
    let mut md = String::new();
    let _ = writeln!(md, "# Benchmarks\n");
    let _ = writeln!(
        md,
        "Written by `cargo xtask bench{}` ({:.0} s of measuring). Raw results: `{rel}/results.json` \
         and `{rel}/*.csv`. Every number below was measured in that one run.\n",
        if quick { " --quick" } else { "" },
        seconds
    );
    // The reading guide is written by hand about a run it names: carried over, not lost.
    if let Some(guide) = std::fs::read_to_string(md_path)
        .ok()
        .as_deref()
        .and_then(reading_guide)
    {
        let _ = writeln!(md, "{guide}\n");
    }
    let _ = writeln!(
        md,
        "## Headlines\n\n| headline | value | goal | met | measured as |\n|---|---|---|---|---|"
    );
    let mut lines = Vec::new();
    for h in arr(&results["headlines"]) {
        let value = f(&h["value"]);
        let goal = f(&h["goal"]);
        let relation = h["relation"].as_str().unwrap_or("<=");
        let _ = writeln!(
            md,
            "| {} | {} | {relation} {} | {} | {} |",
            s(&h["name"]),
            num(value),
            num(goal),
            match h["met"].as_bool() {
                Some(true) => "yes".to_owned(),
                Some(false) => format!("**no** ({:.1}x the goal)", value / goal),
                None => "-".into(),
            },
            headline_method(h["name"].as_str().unwrap_or(""))
        );
        lines.push(format!(
            "headline: {} = {} (goal {relation} {})",
            s(&h["name"]),
            if value.is_nan() {
                "n/a".into()
            } else {
                num(value)
            },
            num(goal)
        ));
    }
    let _ = writeln!(md, "\n## Machine and versions\n\n| | |\n|---|---|");
    for (k, v) in machine() {
        let _ = writeln!(md, "| {k} | {v} |");
    }

    let _ = writeln!(md, "\n## 1. Data path (BPF_PROG_TEST_RUN)\n");
    let _ = writeln!(md, "{}", DATA_PATH_METHOD);
    let _ = writeln!(
        md,
        "Median of {} rounds of {} repeats each (all cases interleaved in each round); spread = (max − min) / median. \
         `net ns` subtracts the drawing cost (draw − empty, same size, same run) from random rows; `x empty` = net ns / empty.\n",
        testrun["rounds"], testrun["repeat"]
    );
    let _ = writeln!(
        md,
        "![cost against list size]({})\n",
        link("cost-vs-list-size.svg")
    );
    let _ = writeln!(
        md,
        "| program | case | source | entries | median ns | spread % | net ns | x empty |\n|---|---|---|---|---|---|---|---|"
    );
    for r in arr(&testrun["rows"]) {
        let _ = writeln!(
            md,
            "| {} | {} | {} | {} | {} | {:.0} | {} | {} |",
            s(&r["program"]),
            s(&r["case"]),
            s(&r["source"]),
            r["entries"],
            num(f(&r["ns"]["median"])),
            f(&r["ns"]["spread_pct"]),
            num(f(&r["net_ns"])),
            num(f(&r["x_empty"]))
        );
    }
    let _ = writeln!(
        md,
        "\nWhat the random sources got from the random-source build (its own counters, all rounds):\n"
    );
    for r in arr(&testrun["random_reasons"]) {
        let _ = writeln!(
            md,
            "- {} entries, {}: `{}`",
            r["entries"],
            s(&r["program"]),
            r["reasons"]
        );
    }
    let _ = writeln!(md, "\nFixed sources: `{}`.", testrun["warm_sources"]);

    let _ = writeln!(md, "\n## 2. SYN flood over veth\n");
    let _ = writeln!(md, "{}", FLOOD_METHOD);
    let loads: Vec<String> = arr(&flood["loads"])
        .iter()
        .map(|l| format!("{} {:.1} s", s(&l["what"]), f(&l["seconds"])))
        .collect();
    let _ = writeln!(
        md,
        "Lists: {} IPv4 and as many IPv6 entries (same generator), loaded once for every row (sets loaded in: {}); {} s per row; {} distinct spoofed sources per family, none covered by the list. {}\n",
        flood["entries"],
        if loads.is_empty() {
            "-".to_owned()
        } else {
            loads.join(", ")
        },
        flood["seconds_each"],
        flood["pool"],
        s(&flood["conntrack"])
    );
    let _ = writeln!(
        md,
        "![CPU per dropped SYN, skbs]({}) ![CPU per dropped SYN, xdp_frames]({})\n",
        link("cpu-per-dropped-syn.svg"),
        link("nic-path-cpu-per-dropped-syn.svg")
    );
    let _ = writeln!(
        md,
        "| path | family | filter | sent Mpps | lost at the ring % | dropped Mpps | CPU ns / drop | x drop floor | Mpps per core | NAPI thread ns / drop | arrived as xdp_frames / skbs | idle connect p50 / p99 ms | connect p50 / p99 ms | p99 / idle | failed connects | configuration |\n|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"
    );
    let rows = arr(&flood["rows"]);
    for r in &rows {
        let floor = rows
            .iter()
            .find(|d| d["filter"] == "drop" && d["path"] == r["path"] && d["family"] == r["family"])
            .map_or(f64::NAN, |d| f(&d["cpu_ns_per_drop"]));
        let _ = writeln!(
            md,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} / {} | {} / {} | {} / {} | {} | {} | {} |",
            s(&r["path"]),
            s(&r["family"]),
            s(&r["filter"]),
            num(f(&r["sent_mpps"])),
            num(f(&r["ring_lost_pct"])),
            num(f(&r["drop_mpps"])),
            num(f(&r["cpu_ns_per_drop"])),
            num(f(&r["cpu_ns_per_drop"]) / floor),
            num(f(&r["mpps_per_core"])),
            num(f(&r["napi_ns_per_drop"])),
            r["as_xdp_frames"],
            r["as_skbs"],
            num(f(&r["idle_connect_ms"]["median"])),
            num(f(&r["idle_connect_ms"]["p99"])),
            num(f(&r["connect_ms"]["median"])),
            num(f(&r["connect_ms"]["p99"])),
            num(f(&r["connect_p99_vs_idle"])),
            r["connect_failed"],
            s(&r["note"])
        );
    }
    let _ = writeln!(md, "\n{FLOOD_MEANING}");

    let _ = writeln!(md, "\n## 3. Control plane\n");
    let _ = writeln!(md, "{}", CONTROL_METHOD);
    let _ = writeln!(
        md,
        "| tool | what | entries | seconds | peak RSS MiB | kernel MiB | note |\n|---|---|---|---|---|---|---|"
    );
    for r in arr(&control["rows"]) {
        let _ = writeln!(
            md,
            "| {} | {} | {} | {} | {} | {} | {} |",
            s(&r["tool"]),
            s(&r["what"]),
            r["entries"],
            num(f(&r["seconds"])),
            num(f(&r["peak_rss_mib"])),
            num(f(&r["kernel_mib"])),
            s(&r["note"]).replace('|', "/")
        );
    }
    let rows = arr(&control["rows"]);
    let find = |tool: &str| {
        rows.iter()
            .filter(|r| r["tool"] == tool && r["what"] != "reload 1%")
            .max_by_key(|r| r["entries"].as_u64().unwrap_or(0))
            .map(|r| f(&r["seconds"]))
    };
    if let (Some(a), Some(n)) = (find("allowlistd"), find("nft -f")) {
        let _ = writeln!(
            md,
            "\nAt the largest size, `nft -f` took {:.1}x as long as allowlistd's start (goal: at least 5x).",
            n / a
        );
    }
    for m in arr(&control["maps"]) {
        let _ = writeln!(
            md,
            "\nMaps of allowlistd at {} entries (fdinfo): ",
            m["entries"]
        );
        for map in m["maps"].as_array().unwrap_or(&empty) {
            let _ = write!(
                md,
                "type {} max {} memlock {} B; ",
                s(&map["map_type"]),
                s(&map["max_entries"]),
                map["memlock_bytes"]
            );
        }
        let _ = writeln!(md);
    }
    let _ = writeln!(
        md,
        "\n## 4. allowlistctl answer time\n\nWall time of one `allowlistctl` process (start, connect, request, answer, exit).\n\n| command | entries | p50 ms | p99 ms | n |\n|---|---|---|---|---|"
    );
    for c in arr(&control["ctl"]) {
        let _ = writeln!(
            md,
            "| {} | {} | {} | {} | {} |",
            s(&c["command"]),
            c["entries"],
            num(f(&c["ms"]["median"])),
            num(f(&c["ms"]["p99"])),
            c["ms"]["n"]
        );
    }
    let knock = &results["knock"];
    if knock.is_object() {
        let mut csv = String::from("case,datagram,median_us,min_us,max_us\n");
        let _ = writeln!(
            md,
            "\n## 5. Knock (single packet authorization)\n\n{KNOCK_METHOD} Median of {} rounds \
             ({} datagrams a round, {} grants).\n\n| case | datagram | µs per datagram | spread % |\n|---|---|---|---|",
            knock["rounds"], knock["per_round"], knock["grants_per_round"]
        );
        for r in arr(&knock["rows"]) {
            let _ = writeln!(
                md,
                "| knock-{} | {} | {} | {:.0} |",
                s(&r["case"]),
                s(&r["datagram"]),
                num(f(&r["us"]["median"])),
                f(&r["us"]["spread_pct"])
            );
            let _ = writeln!(
                csv,
                "{},{},{},{},{}",
                s(&r["case"]),
                s(&r["datagram"]),
                r["us"]["median"],
                r["us"]["min"],
                r["us"]["max"]
            );
        }
        std::fs::write(out_dir.join("knock.csv"), csv)?;
    }
    let web = &results["web"];
    if web.is_object() {
        let loads: Vec<String> = arr(&web["loads_ms"]).iter().map(|v| num(f(v))).collect();
        let _ = writeln!(
            md,
            "\n## 6. Web console first screen\n\n{WEB_METHOD}\n\nAt {} entries: median {} ms \
             (loads, ms: {}).",
            web["entries"],
            num(f(&web["median_ms"])),
            loads.join(", ")
        );
    }
    let _ = &null;
    std::fs::write(md_path, md).with_context(|| format!("writing {}", md_path.display()))?;
    Ok(lines)
}

/// The hand-written "## Read this first" section of a BENCHMARKS.md, up to the next section.
fn reading_guide(md: &str) -> Option<&str> {
    let start = md.find("## Read this first\n")?;
    let rest = &md[start..];
    let end = rest[1..].find("\n## ").map_or(rest.len(), |i| i + 2);
    Some(rest[..end].trim_end())
}

/// How each headline is measured, in one line (the sections below have the details).
fn headline_method(name: &str) -> &'static str {
    match name {
        "non-syn-path" => "`established_v4` (fixed ACK) at 1000 entries, x empty",
        "syn-flood-1k-v4" => "`syn_v4` (random sources) at 1000 entries, x empty",
        "syn-flood-1m-v4" => "`syn_v4` (random sources) at 1048576 entries, x empty",
        "syn-flood-1m-v6" => "`syn_v6` (random sources) at 1048576 entries, x empty",
        "syn-flood-1m-v4-32lists" => {
            "`syn_v4_32lists`: the same entries spread over 32 lists, SYNs to every list's \
             port, 4 lists a round, random sources, at 1048576 entries, x empty"
        }
        "udp-flood-1m-v4" => {
            "`udp_v4`: datagrams to the protected UDP port, random sources, at 1048576 \
             entries, x empty"
        }
        "udp-allowed-path" => {
            "`udp_allowed_v4`: datagrams to the protected UDP port from a covered source \
             (fixed), at 1000 entries, x empty"
        }
        "web-console-first-screen-1m-ms" => {
            "the Cockpit page navigated to, until its entries table shows a row, at 1048576 \
             entries (median)"
        }
        "apply-1m-seconds" => "allowlistd's start to READY=1 with 1048576 entries (median)",
        "reload-1pct-1m-ms" => "SIGHUP to READY=1 after 1% of 1048576 entries changed (median)",
        "peak-rss-1m-mb" => "allowlistd's VmHWM after the reloads at 1048576 entries",
        "flood-cpu-vs-nftables" => {
            "receiver CPU per dropped IPv4 SYN arriving as skbs, allowlist / the better nft"
        }
        "flood-cpu-vs-drop-floor" => {
            "receiver CPU per dropped IPv4 SYN arriving as skbs, allowlist / the program that \
             drops everything"
        }
        "nic-path-flood-cpu-vs-nftables" => {
            "receiver CPU per dropped IPv4 SYN arriving as xdp_frames, allowlist / nft netdev \
             ingress"
        }
        "nic-path-mpps-per-core" => {
            "IPv4 SYNs arriving as xdp_frames that one fully busy receiver core drops with \
             allowlist, in millions a second (1000 / CPU ns per drop); goal: at least 70% of \
             the drop-everything program's"
        }
        _ => "-",
    }
}

const KNOCK_METHOD: &str = "One core of the bench machine, in the `allowlist-bench` process. \
`knock-verify` decodes a datagram and checks its Ed25519 signature (valid, or with one bit of the signed bytes \
changed, so the whole check runs and fails); `knock-guard` is all the daemon does with a datagram (decode, key, \
rates, signature, time window, rights, nonce), rates unlimited so every forgery reaches the signature check; \
a grant also rewrites and fsyncs the nonce file. The rates (`total`, 20 a second by default) bound how many \
signature checks a flood can cause.";

const DATA_PATH_METHOD: &str = "Every program is loaded in the same run and fed a 54-byte frame through \
BPF_PROG_TEST_RUN with `repeat` (the kernel reports the mean ns per run). `allowlist` is the real compiled \
object, its maps filled by `Filter::apply` exactly as the daemon fills them; `fixed` rows repeat one frame \
(every cache warm). `random` rows use the same program built with `--features random-source`, whose only \
change is that the parsed source address is replaced by one drawn with `bpf_get_prandom_u32` for every packet \
(IPv4: uniform over 0.0.0.0–223.255.255.255 by multiply-shift; IPv6: 2000::/3, 61 drawn bits below the fixed \
3, low 64 bits a multiplicative mix of the same draw), as the kernel's own LPM benchmark does. `empty` is an \
XDP_PASS program (the floor), `draw` draws the same way and passes (its cost over `empty` is subtracted), \
`lpm` is a plain LPM trie with the same entries. Lists (seeded): IPv4 80% /32, 15% /24, 5% /16–/23, \
uniform over 1.0.0.0–223.255.255.255; IPv6 40% /128, 30% /64, 15% /56, 15% /48 over 2000::/3; no overlaps; \
the lab networks 198.18.1.0/24 and 2001:db8::a/128 added; `entries` is per address family. \
The list protects TCP port 2222 and UDP port 51820: `udp_*` rows send 45-byte frames (3 bytes of payload) to 51820 \
(`non_tcp_v4` one to 2222, unprotected for UDP). `syn_v4_32lists` runs a second random-source \
program whose maps hold the same entries spread round robin over 32 enforcing lists, list j \
protecting TCP port 2222 + j; each round sends it SYNs to the ports of the next 4 lists in turn \
(32 / rounds, rounded up, so that the rounds reach every list), a full `repeat` each, and counts \
their mean. Before any timing, every frame is run once and must get \
the reason its row is about (each of the 32 lists judging one of its SYNs), so that no row \
times another path.\n";

const FLOOD_METHOD: &str = "Two network namespaces joined by veth (198.18.0.0/16 and 2001:db8::/64 on-link; \
blackhole default routes and permanent neighbour entries in both, so nothing addressed to a spoofed source \
leaves the lab). The generator runs on CPU 0 and sends SYNs with valid checksums to the protected port, each \
from another source (IPv4 uniform over 1.0.0.0–223.255.255.255, IPv6 uniform over 2000::/3, redrawn when the \
list covers it). The receiver's veth has GRO on and the sender's TSO/GSO off, so veth receives through NAPI for \
every filter, XDP or not; NAPI is threaded and its thread pinned to CPU 1.\n\n\
The frames arrive two ways (`path`). **skb**: an AF_PACKET socket (protocol 0: it receives nothing; \
PACKET_QDISC_BYPASS, sendmmsg of 64) hands veth socket buffers, so every frame has cost an skb before any \
filter sees it, XDP included (veth runs XDP on the skb). **nic**: `bench-ebpf`'s generator program, run by \
BPF_PROG_TEST_RUN in live-frame mode (BPF_F_TEST_XDP_LIVE_FRAMES, as xdp-trafficgen does), writes the next \
source into the frame and redirects it into the generator's veth, whose ndo_xdp_xmit puts the xdp_frame on the \
receiver's ring: the receiver's native XDP program runs on it before any skb exists, as it runs on a NIC's \
receive ring, and only the frames it passes become skbs (so nftables' netdev ingress, the first hook netfilter \
has, sees them only after that). Every row counts how its frames arrived, from veth's own counters (`ethtool \
-S`: the generator's `xdp_xmit`, handed over as xdp_frames, and the receiver's `xdp_packets`, all it took from \
its ring; the rest came as skbs), and a row whose frames did not arrive as its path says is not reported.\n\n\
Rows: allowlist (the real program, both families' lists in its maps, attached in driver mode), the floors \
`drop` (an XDP program that drops every frame: no filter can cost the receiver less) and `parse-drop` (parses \
Ethernet, IPv4/IPv6 and TCP to the flags and drops SYNs: the least a filter that must find a SYN does), \
nftables (interval sets, netdev ingress and inet input chains), iptables with ipset (hash:net, INPUT; \
ip6tables for IPv6) and xdp-filter. Every set is loaded once and kept for all rows; a row adds only what makes \
its filter act (an XDP program attached, a chain, a rule) and takes it away after. Receiver CPU per dropped \
SYN = (system + irq + softirq time of CPU 1 from /proc/stat) / the filter's own drop counter (allowlist's \
COUNTERS map, nft rule counter, iptables rule counter, xdp-filter status, veth's `xdp_drops` for the floors, \
which count nothing themselves); `x drop floor` divides it by the `drop` row's of the same path and family; \
`Mpps per core` = 1000 / CPU ns per drop, the drops a second one fully busy receiver core would make. The NAPI \
thread's own CPU time over the drops is shown next to it (it ignores other load on CPU 1). Connect latency: an \
allowlisted client (198.18.1.2, 2001:db8::a) in the generator's namespace connects to a listener on the \
protected port, sequentially, with each filter installed: first without a flood (idle), then during the flood \
(goal: p99 within 2x idle); a connect that takes over 1 s counts as failed and is left out of the percentiles. \
The floors drop the client's SYNs too, so their rows have no connects. The client runs on CPU 0 beside the \
generator at real-time priority (SCHED_FIFO): on a real network the flood comes from other machines, and at \
normal priority the client's own wake-up waited behind the generator (p99 0.3–0.8 ms where the receiver added \
about 0.1), which says nothing about the filter. \"Lost at the ring\" is the share of the generator's frames \
the receiver's veth refused because its ring (256 frames) was full (the generator veth's tx_dropped; \"sent\" \
counts the others, on the nic path veth's `xdp_xmit`): they never reached the filter, and a client SYN among \
them waits for TCP's one-second retransmission, so a filter that falls behind the flood shows up there and in \
failed connects. No raw socket is open in the receiver's namespace. Numbers taken on a shared machine swing \
with the other load: the generator's rate is the first to suffer.\n";

const FLOOD_MEANING: &str = "What the numbers mean for an admin whose server has a NIC with native XDP \
support (most 10G+ drivers: mlx5, ice, i40e, ixgbe, bnxt, virtio-net, ena): the **nic** rows are the closer \
picture. There the receiver's cost per dropped SYN is the XDP program plus the little the driver and veth do \
around it, so allowlist against `drop` says how much of a core the filter itself takes, and `Mpps per core` \
how large a flood one core of this machine absorbs with it (a NIC spreads a flood of many sources over its \
receive queues, one core each, so a machine absorbs about that times its queues). The **skb** rows are what a \
NIC without native XDP gives (XDP then runs in generic mode on skbs, as it did here on veth's skbs): the skb \
every frame costs first dominates, so every XDP filter, the floors included, costs about the same, and nftables \
falls behind by its set lookup and the hooks before it. veth is not a NIC: its ring holds 256 frames, the frames \
come from the other core's cache rather than from DMA, and a dropped frame goes back to the generator's page \
pool on the other core, so the nic path's floor is higher than a real NIC's (the XDP paper measured about 24 \
Mpps on one core, ~42 ns a frame); the ratios within one path and one run are what carry over.\n";

const WEB_METHOD: &str = "The release `allowlistd` started as in part 3 (list files, 80% IPv4), the built \
page under Debian's cockpit-ws (the local session, no login) in the server's namespace, and Debian's Chromium \
driven by playwright-core (`cockpit/test/driver.mjs`, as the page's browser test) in the client's. After the \
first open, each load navigates to the shell's URL again (the browser's cache warm) and is timed by the driver \
until the entries table shows its first row: the shell, the page, `allowlistctl --json status` and \
`list --limit 500` through the bridge. 9 loads (5 in `--quick`).";

const CONTROL_METHOD: &str = "The release `allowlistd` in a lab namespace with a private bpffs, reading its \
entries from two list files (80% IPv4, the rest IPv6; `max_entries` just above the larger family). Start = \
spawn to the daemon's sd_notify `READY=1` on a NOTIFY_SOCKET the bench provides (sent once the program is \
attached and the maps are full); each start in a fresh namespace and directory. Reload = SIGHUP after the \
files were rewritten with 1% of the entries removed and as many new ones added, to the `READY=1` after \
`RELOADING=1` (re-reading and validating the files included); each reload a new 1%. Starts and reloads are \
repeated (5 times, 3 in `--quick`): the rows show the median and list every sample. Peak RSS = VmHWM of the \
daemon (after start, then after the last reload). Kernel MiB = memlock of the \
daemon's map fds from /proc/PID/fdinfo: an LPM trie's memlock under-counts its real use about 4x (~130–140 B \
per entry). `nft -f` loads the same networks into two interval sets of an inet table in a fresh namespace; \
`ipset restore` into hash:net sets (its kernel MiB is ipset's own \"Size in memory\"); their peak RSS is GNU \
time's (%M).\n";

const W: f64 = 720.0;
const H: f64 = 420.0;
const PAD: f64 = 60.0;
const COLORS: [&str; 6] = [
    "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#7f7f7f",
];

fn svg_head(title: &str) -> String {
    format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{W}\" height=\"{H}\" font-family=\"sans-serif\" font-size=\"12\">\n\
         <rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n\
         <text x=\"{}\" y=\"20\" text-anchor=\"middle\" font-size=\"14\">{title}</text>\n",
        W / 2.0
    )
}

/// Log-log lines of (entries, ns).
fn line_plot(series: &[(String, Vec<(f64, f64)>)]) -> String {
    let mut svg = svg_head("ns per packet against entries per family (BPF_PROG_TEST_RUN, log-log)");
    let pts = series.iter().flat_map(|(_, p)| p.iter());
    let (mut x0, mut x1, mut y0, mut y1) = (f64::MAX, f64::MIN, f64::MAX, f64::MIN);
    for &(x, y) in pts {
        x0 = x0.min(x.max(1.0).log10());
        x1 = x1.max(x.max(1.0).log10());
        y0 = y0.min(y.max(1.0).log10());
        y1 = y1.max(y.max(1.0).log10());
    }
    if x0 > x1 {
        return svg + "</svg>\n";
    }
    let (x0, x1) = (x0.floor(), x1.ceil().max(x0.floor() + 1.0));
    let (y0, y1) = (y0.floor(), y1.ceil().max(y0.floor() + 1.0));
    let px = |x: f64| PAD + (x.max(1.0).log10() - x0) / (x1 - x0) * (W - 2.0 * PAD - 150.0);
    let py = |y: f64| H - PAD - (y.max(1.0).log10() - y0) / (y1 - y0) * (H - 2.0 * PAD);
    let _ = writeln!(
        svg,
        "<line x1=\"{PAD}\" y1=\"{}\" x2=\"{}\" y2=\"{}\" stroke=\"black\"/>",
        H - PAD,
        W - PAD - 150.0,
        H - PAD
    );
    let _ = writeln!(
        svg,
        "<line x1=\"{PAD}\" y1=\"{PAD}\" x2=\"{PAD}\" y2=\"{}\" stroke=\"black\"/>",
        H - PAD
    );
    let mut e = x0;
    while e <= x1 {
        let x = px(10f64.powf(e));
        let _ = writeln!(
            svg,
            "<text x=\"{x}\" y=\"{}\" text-anchor=\"middle\">1e{e}</text>",
            H - PAD + 16.0
        );
        e += 1.0;
    }
    let mut e = y0;
    while e <= y1 {
        let y = py(10f64.powf(e));
        let _ = writeln!(
            svg,
            "<text x=\"{}\" y=\"{}\" text-anchor=\"end\">{}</text>",
            PAD - 4.0,
            y + 4.0,
            10f64.powf(e)
        );
        let _ = writeln!(
            svg,
            "<line x1=\"{PAD}\" y1=\"{y}\" x2=\"{}\" y2=\"{y}\" stroke=\"#ddd\"/>",
            W - PAD - 150.0
        );
        e += 1.0;
    }
    let _ = writeln!(
        svg,
        "<text x=\"{}\" y=\"{}\" text-anchor=\"middle\">entries</text>",
        (W - 150.0) / 2.0,
        H - 20.0
    );
    for (i, (label, points)) in series.iter().enumerate() {
        let color = COLORS[i % COLORS.len()];
        let path: Vec<String> = points
            .iter()
            .map(|&(x, y)| format!("{:.1},{:.1}", px(x), py(y)))
            .collect();
        let _ = writeln!(
            svg,
            "<polyline fill=\"none\" stroke=\"{color}\" stroke-width=\"2\" points=\"{}\"/>",
            path.join(" ")
        );
        for &(x, y) in points {
            let _ = writeln!(
                svg,
                "<circle cx=\"{:.1}\" cy=\"{:.1}\" r=\"3\" fill=\"{color}\"><title>{label}: {y:.0} ns at {x}</title></circle>",
                px(x),
                py(y)
            );
        }
        let ly = PAD + 18.0 * i as f64;
        let _ = writeln!(
            svg,
            "<rect x=\"{}\" y=\"{}\" width=\"12\" height=\"12\" fill=\"{color}\"/><text x=\"{}\" y=\"{}\">{label}</text>",
            W - 200.0,
            ly - 10.0,
            W - 184.0,
            ly
        );
    }
    svg + "</svg>\n"
}

fn bar_plot(title: &str, bars: &[(String, f64)]) -> String {
    let mut svg = svg_head(title);
    let max = bars.iter().map(|b| b.1).fold(1.0, f64::max);
    let bw = (W - 2.0 * PAD) / bars.len().max(1) as f64;
    for (i, (label, v)) in bars.iter().enumerate() {
        let h = v / max * (H - 2.0 * PAD - 20.0);
        let x = PAD + bw * i as f64 + bw * 0.15;
        let _ = writeln!(
            svg,
            "<rect x=\"{x:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{h:.1}\" fill=\"{}\"/>",
            H - PAD - h,
            bw * 0.7,
            COLORS[i % COLORS.len()]
        );
        let _ = writeln!(
            svg,
            "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{v:.0}</text>",
            x + bw * 0.35,
            H - PAD - h - 4.0
        );
        let _ = writeln!(
            svg,
            "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{label}</text>",
            x + bw * 0.35,
            H - PAD + 16.0
        );
    }
    let _ = writeln!(
        svg,
        "<line x1=\"{PAD}\" y1=\"{}\" x2=\"{}\" y2=\"{}\" stroke=\"black\"/>",
        H - PAD,
        W - PAD,
        H - PAD
    );
    svg + "</svg>\n"
}

#[cfg(test)]
mod tests {
    use super::reading_guide;

    #[test]
    fn the_hand_written_guide_is_found_up_to_the_next_section() {
        let md = "# Benchmarks\n\nWritten by ...\n\n## Read this first\n\nThis run (code of \
                  86d4f38) ...\n- NIC path ...\n\n## Headlines\n\n| headline |\n";
        assert_eq!(
            reading_guide(md),
            Some("## Read this first\n\nThis run (code of 86d4f38) ...\n- NIC path ...")
        );
        assert_eq!(reading_guide("# Benchmarks\n\n## Headlines\n"), None);
        let last = "## Read this first\n\nonly this\n";
        assert_eq!(reading_guide(last), Some("## Read this first\n\nonly this"));
    }
}
