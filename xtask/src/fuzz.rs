//! `cargo xtask fuzz`: long runs of the differential test (the XDP program against the
//! reference model) and of the config, control protocol and knock fuzz targets, in release
//! mode, and replays of what they report. The tests read their parameters from
//! ALLOWLIST_FUZZ_* variables (see tests/tests/differential.rs and tests/src/fuzz.rs).

use std::path::Path;
use std::process::Command;

use anyhow::{Result, bail};
use clap::{Args, ValueEnum};

use crate::build;
use crate::exec::run;

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Target {
    /// The compiled XDP program against the reference model (needs root)
    Verdicts,
    /// The config file and list file parser
    Config,
    /// The control protocol's framing and request/response decoders
    Protocol,
    /// The knock datagram's decoder and the daemon's guard (no grant for a changed knock)
    Knock,
}

#[derive(Args)]
pub struct FuzzArgs {
    /// What to fuzz
    #[arg(long, value_enum, default_value_t = Target::Verdicts)]
    target: Target,
    /// Seed of the generators (default: the fixed seed CI runs use)
    #[arg(long)]
    seed: Option<u64>,
    /// verdicts: how many frames (CI runs 100,000)
    #[arg(long)]
    frames: Option<u64>,
    /// verdicts: check only this case of the seed's run, after applying every allowlist
    /// before it (as a disagreement prints)
    #[arg(long)]
    case: Option<u64>,
    /// verdicts: one frame, in hex, to judge under --config (as a disagreement prints)
    #[arg(long, requires = "config")]
    replay: Option<String>,
    /// verdicts: the setup line for --replay (`emergency=… list=MODE tcp=… udp=… entries=… …`,
    /// a timed entry as NET@END with its end in ns from the frame's instant)
    #[arg(long, requires = "replay")]
    config: Option<String>,
    /// config, protocol, knock: how long to run
    #[arg(long)]
    seconds: Option<u64>,
    /// config, protocol, knock: one input to check, its parts in hex joined by `:` (as a failure
    /// prints)
    #[arg(long)]
    input: Option<String>,
}

pub fn fuzz(root: &Path, args: &FuzzArgs) -> Result<()> {
    let verdicts = args.target == Target::Verdicts;
    let misplaced = if verdicts {
        [
            ("--seconds", args.seconds.is_some()),
            ("--input", args.input.is_some()),
        ]
    } else {
        [
            ("--frames", args.frames.is_some()),
            ("--replay", args.replay.is_some()),
        ]
    };
    if let Some((flag, _)) = misplaced.iter().find(|(_, given)| *given) {
        bail!("{flag} does not apply to this --target");
    }
    if !verdicts && args.case.is_some() {
        bail!("--case applies to --target verdicts only");
    }
    let object = build::ebpf_object(root)?;
    let test = match args.target {
        Target::Verdicts => "differential",
        Target::Config => "fuzz_config",
        Target::Protocol => "fuzz_protocol",
        Target::Knock => "fuzz_knock",
    };
    let mut cmd = Command::new("cargo");
    cmd.current_dir(root)
        .env("ALLOWLIST_EBPF_OBJECT", &object)
        .args(["test", "--release", "-p", "allowlist-tests", "--test", test])
        .arg("--target-dir")
        .arg(root.join("target"))
        .args(["--", "--nocapture"]);
    let vars = [
        ("ALLOWLIST_FUZZ_SEED", args.seed.map(|n| n.to_string())),
        ("ALLOWLIST_FUZZ_FRAMES", args.frames.map(|n| n.to_string())),
        ("ALLOWLIST_FUZZ_CASE", args.case.map(|n| n.to_string())),
        ("ALLOWLIST_FUZZ_REPLAY", args.replay.clone()),
        ("ALLOWLIST_FUZZ_CONFIG", args.config.clone()),
        (
            "ALLOWLIST_FUZZ_SECONDS",
            args.seconds.map(|n| n.to_string()),
        ),
        ("ALLOWLIST_FUZZ_INPUT", args.input.clone()),
    ];
    for (name, value) in vars {
        match value {
            Some(value) => cmd.env(name, value),
            // Not inherited: the command line says everything about the run.
            None => cmd.env_remove(name),
        };
    }
    run(&mut cmd)
}
