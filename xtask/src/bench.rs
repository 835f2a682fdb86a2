//! `cargo xtask bench [--quick]`: builds the release binaries, the `random-source` build of
//! the XDP program and the floor/peer programs (bench-ebpf), installs the peers it compares
//! against when missing, runs `allowlist-bench`, and renders the report (see report.rs).

use std::path::Path;
use std::process::Command;
use std::time::Instant;

use anyhow::{Context as _, Result};

use crate::build::{self, build_ebpf_package};
use crate::cockpit;
use crate::exec::{self, run};
use crate::report;
use crate::toolchain;

/// What the flood and the control-plane comparison run: nft, ipset, iptables, xdp-filter,
/// ethtool for the veth offloads, and GNU time for the peers' peak RSS.
const PEER_PACKAGES: &[&str] = &[
    "nftables",
    "ipset",
    "iptables",
    "xdp-tools",
    "ethtool",
    "time",
];

pub fn bench(root: &Path, quick: bool, parts: Option<&str>) -> Result<()> {
    let started = Instant::now();
    if !exec::is_root()? {
        anyhow::bail!("the bench needs root (BPF, XDP, network namespaces)");
    }
    let built = build::build(root, true)?;
    let toolchain = toolchain::setup()?;
    let random = build_ebpf_package(
        root,
        toolchain,
        "allowlist-ebpf",
        &["random-source"],
        "target/ebpf/bench",
    )?;
    let floor = build_ebpf_package(root, toolchain, "bench-ebpf", &[], "target/ebpf")?;
    toolchain::install_packages(PEER_PACKAGES)?;
    // xdp-filter pins under /sys/fs/bpf (the host's, which the bench's setns children see).
    if !Path::new("/sys/fs/bpf/").join(".").exists() || !is_bpffs("/sys/fs/bpf")? {
        run(Command::new("mount").args(["-t", "bpf", "bpf", "/sys/fs/bpf"]))?;
    }
    let out_dir = match (quick, parts) {
        (true, _) => root.join("target/bench/quick"),
        (false, Some(_)) => root.join("target/bench/parts"),
        (false, None) => root.join("benchmarks"),
    };
    std::fs::create_dir_all(&out_dir).with_context(|| format!("creating {}", out_dir.display()))?;
    let mut cmd = Command::new(built.bin_dir.join("allowlist-bench"));
    cmd.env("ALLOWLIST_BIN_DIR", &built.bin_dir)
        .arg("--out")
        .arg(&out_dir)
        .arg("--bench-object")
        .arg(&floor)
        .arg("--random-object")
        .arg(&random);
    // The web console's part: the built page, cockpit-ws and Chromium, as its test has them.
    if parts.is_none_or(|p| p.split(',').any(|p| p == "web")) {
        cmd.env("ALLOWLIST_COCKPIT_DIST", cockpit::build(root)?);
        cockpit::test_tools()?;
    }
    if quick {
        cmd.arg("--quick");
    }
    if let Some(parts) = parts {
        cmd.arg("--parts").arg(parts);
    }
    let measured = Instant::now();
    run(&mut cmd)?;
    let measure_seconds = measured.elapsed().as_secs_f64();
    let md = if quick || parts.is_some() {
        out_dir.join("BENCHMARKS.md")
    } else {
        root.join("BENCHMARKS.md")
    };
    let headlines = report::write(root, &out_dir, &md, quick, measure_seconds)?;
    eprintln!(
        "xtask: bench done in {:.0} s ({:.0} s measuring); report {}, raw results in {}",
        started.elapsed().as_secs_f64(),
        measure_seconds,
        md.display(),
        out_dir.display()
    );
    for line in headlines {
        println!("{line}");
    }
    Ok(())
}

fn is_bpffs(path: &str) -> Result<bool> {
    let mounts = std::fs::read_to_string("/proc/mounts").context("reading /proc/mounts")?;
    Ok(mounts.lines().any(|l| {
        let mut f = l.split_whitespace();
        let (_, at, ty) = (f.next(), f.next(), f.next());
        at == Some(path) && ty == Some("bpf")
    }))
}
