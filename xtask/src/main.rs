//! `cargo xtask`: sets the machine up for the eBPF build, builds, tests and runs the demo.
//!
//! Depends on no other workspace crate: it has to build before the XDP object exists.

mod ansible;
mod bench;
mod build;
mod checks;
mod cockpit;
mod demo;
mod exec;
mod fuzz;
mod image;
mod install;
mod kubernetes;
mod package;
mod report;
mod toolchain;
mod vm;

use std::path::{Path, PathBuf};
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
    /// Measure the data path, a SYN flood against nftables/iptables/xdp-filter and the control
    /// plane; write BENCHMARKS.md, benchmarks/ (raw results, plots). Needs root.
    Bench {
        /// A shorter run (about 10 minutes; the flood still at 1M entries) into target/bench/quick
        #[arg(long)]
        quick: bool,
        /// Only these parts, comma-separated (testrun, control, flood, knock, web). Their report
        /// goes to target/bench/quick, or target/bench/parts: never over the whole run's
        /// BENCHMARKS.md
        #[arg(long)]
        parts: Option<String>,
    },
    /// Long fuzz runs in release mode (the XDP program against the reference model, the config
    /// parser, the control protocol), and replays of what they report
    Fuzz(fuzz::FuzzArgs),
    /// Build release binaries and the Cockpit page, then install them with the systemd unit,
    /// the default config (only if none exists), man pages, shell completions and the page
    /// (PREFIX/share/cockpit/allowlist)
    Install {
        /// Where the files are used from: PREFIX/sbin/allowlistd, PREFIX/bin/allowlistctl,
        /// PREFIX/lib/systemd/system, PREFIX/share/man, ...
        #[arg(long, default_value = "/usr/local")]
        prefix: PathBuf,
        /// Write everything under this directory instead of / (a staging tree)
        #[arg(long)]
        destdir: Option<PathBuf>,
        /// Where the config directory allowlist/ goes
        #[arg(long, default_value = "/etc")]
        sysconfdir: PathBuf,
        /// Install the binaries already built in DIR (e.g. target/release) instead of building
        #[arg(long, value_name = "DIR")]
        bin_dir: Option<PathBuf>,
    },
    /// Run the kernel-facing test suites inside QEMU on Debian's own kernels (fetched from
    /// Debian's archive into target/vm/), printing per kernel which suites passed. Needs root.
    VmTest(vm::VmTestArgs),
    /// Build release binaries, then a .deb with debhelper (dh) under target/debian/
    Package {
        /// Package the binaries already built in DIR (e.g. target/debug) instead of building
        #[arg(long, value_name = "DIR")]
        bin_dir: Option<PathBuf>,
        /// Where the .deb and its staging tree go (default target/debian)
        #[arg(long, value_name = "DIR")]
        out_dir: Option<PathBuf>,
        /// Say this version in the package instead of the workspace's, e.g. 0.1.0~rc1 (sorts
        /// before 0.1.0): a previous release to test an upgrade from
        #[arg(long, value_name = "VERSION")]
        deb_version: Option<String>,
    },
    /// Build release binaries, then an OCI image with podman (FROM scratch: the two binaries
    /// and the shared libraries they need); installs podman and runc when missing. Needs root.
    Image {
        /// Put the binaries already built in DIR (e.g. target/debug) in the image instead of
        /// building release ones
        #[arg(long, value_name = "DIR")]
        bin_dir: Option<PathBuf>,
        /// The image's name and tag
        #[arg(long, default_value = image::DEFAULT_TAG)]
        tag: String,
        /// Where the build context and the seccomp profile (seccomp.json) go (default
        /// target/image)
        #[arg(long, value_name = "DIR")]
        out_dir: Option<PathBuf>,
    },
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
        Cmd::Bench { quick, parts } => ("bench", bench::bench(root, *quick, parts.as_deref())),
        Cmd::Fuzz(args) => ("fuzz", fuzz::fuzz(root, args)),
        Cmd::Install {
            prefix,
            destdir,
            sysconfdir,
            bin_dir,
        } => {
            let layout = install::Layout {
                prefix: prefix.clone(),
                sysconfdir: sysconfdir.clone(),
                destdir: destdir.clone(),
            };
            (
                "install",
                install::install(root, &layout, bin_dir.as_deref()),
            )
        }
        Cmd::VmTest(args) => ("vm-test", vm::vm_test(root, args)),
        Cmd::Package {
            bin_dir,
            out_dir,
            deb_version,
        } => (
            "package",
            package::package(
                root,
                bin_dir.as_deref(),
                out_dir.as_deref(),
                deb_version.as_deref(),
            )
            .map(drop),
        ),
        Cmd::Image {
            bin_dir,
            tag,
            out_dir,
        } => (
            "image",
            image::image(root, bin_dir.as_deref(), out_dir.as_deref(), tag),
        ),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("xtask: {name} failed: {err:#}");
            ExitCode::FAILURE
        }
    }
}
