//! `cargo xtask`: sets the machine up for the eBPF build, builds, tests and runs the demo.
//!
//! Depends on no other workspace crate: it has to build before the XDP object exists.

mod build;
mod checks;
mod demo;
mod exec;
mod toolchain;

use std::path::Path;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(bin_name = "cargo xtask", about = "Build, test and demo allowlist")]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Install what building and testing need (Debian packages, bpf-linker), only when missing
    Setup,
    /// Set up, build the XDP object, then the userspace binaries that embed it
    Build {
        /// Build the userspace binaries with the release profile (the XDP object always is)
        #[arg(long)]
        release: bool,
    },
    /// Build, then run clippy, rustfmt --check and cargo test
    Test {
        /// Arguments for `cargo test`, after `--` (e.g. `cargo xtask test -- e2e`)
        #[arg(last = true)]
        cargo_test_args: Vec<String>,
    },
    /// Build, then run the demo (needs root)
    Demo,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // xtask/ sits in the workspace root; the current directory may be anywhere in it.
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask's manifest directory has a parent");
    let (name, result) = match &cli.command {
        Cmd::Setup => ("setup", toolchain::setup().map(drop)),
        Cmd::Build { release } => ("build", build::build(root, *release).map(drop)),
        Cmd::Test { cargo_test_args } => ("test", checks::test(root, cargo_test_args)),
        Cmd::Demo => ("demo", demo::demo(root)),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("xtask: {name} failed: {err:#}");
            ExitCode::FAILURE
        }
    }
}
