//! `cargo xtask vm-test`: the kernel-facing test suites on Debian's own kernels, each booted
//! in QEMU under software emulation (TCG: nested KVM hangs on these machines) by virtme-ng,
//! which shares the host's root file system read-only with the guest. The test binaries are
//! the ones `cargo test --no-run` builds here; the guest runs them with its runtime files on
//! a tmpfs (9p can hold neither sockets nor a bpffs) and writes each suite's log and exit
//! status into a directory shared read-write, which is what is judged: virtme-ng's own exit
//! status does not carry the guest's. Every guest has a virtio-net NIC with several queues
//! whose other end is outside the VM (`outside`), for `vm_devices`' native XDP test.

mod kernel;
mod outside;
mod tools;

use std::env;
use std::fmt::Write as _;
use std::fs;
use std::io::{self, Read as _, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use clap::Args;
use serde_json::Value;

use crate::build::{self, userspace_cargo};
use crate::exec::echo;
pub use kernel::Kernel;

/// Suites run when none are named, and what they are given inside the VM.
const DEFAULT_SUITES: &[&str] = &["xdp_verdicts", "differential"];
/// The differential test's frames in a VM (100,000 on the host; emulation is about 10x slower),
/// unless ALLOWLIST_FUZZ_FRAMES says otherwise.
const VM_FRAMES: &str = "10000";
/// How much longer the tests wait inside a VM for what they expect to happen (a daemon's start,
/// a reload, an allowed connect), unless ALLOWLIST_TEST_TIME_SCALE says otherwise: emulation is
/// about 10x slower than the host, and slower still with the host's cores busy.
const VM_TIME_SCALE: &str = "10";
/// A guest that has not finished by then is hung (a boot takes about 20 s, the default suites
/// about 2.5 minutes on 6.1 with 2 busy cores).
const GUEST_TIMEOUT_SECS: u32 = 1800;

#[derive(Args)]
pub struct VmTestArgs {
    /// Which Debian kernel: 5.10 (Debian 11), 6.1 (Debian 12), 6.12 (Debian 13), or all
    #[arg(long, default_value = "6.1", value_name = "5.10|6.1|6.12|all")]
    kernel: String,
    /// Test targets of the tests crate to run inside (default: xdp_verdicts differential)
    suites: Vec<String>,
}

/// What the whole `cargo xtask test` (CI) runs in VMs: the verdict suite, the differential
/// test and the namespace end-to-end suite (which starts the real daemon, so `kernel_support`
/// adds nothing on these kernels) on every Debian kernel, and the real devices (VLANs, the
/// multiqueue virtio-net NIC) on Debian 11's, the oldest. About 15 minutes on 2 cores (README,
/// "Supported kernels"); the rest of the matrix is the README's `--kernel all` command, which
/// would take CI past 30 minutes.
const CI_PLAN: &[(Kernel, &[&str])] = &[
    (Kernel::V6_1, &["xdp_verdicts", "differential", "e2e"]),
    (
        Kernel::V5_10,
        &["xdp_verdicts", "differential", "e2e", "vm_devices"],
    ),
    (Kernel::V6_12, &["xdp_verdicts", "differential", "e2e"]),
];

impl VmTestArgs {
    fn kernels(&self) -> Result<Vec<Kernel>> {
        if self.kernel == "all" {
            return Ok(Kernel::ALL.to_vec());
        }
        Kernel::ALL
            .into_iter()
            .find(|kernel| kernel.name() == self.kernel)
            .map(|kernel| vec![kernel])
            .with_context(|| format!("--kernel {}: not one of 5.10, 6.1, 6.12, all", self.kernel))
    }
}

/// One suite's result on one kernel.
struct Outcome {
    suite: String,
    /// The test binary's exit status, or None when the guest never recorded one.
    status: Option<i32>,
    seconds: Option<i32>,
}

/// `cargo xtask vm-test`: the suites asked for (or the default ones) on each kernel asked for.
pub fn vm_test(root: &Path, args: &VmTestArgs) -> Result<()> {
    let suites: Vec<String> = if args.suites.is_empty() {
        DEFAULT_SUITES.iter().map(|s| s.to_string()).collect()
    } else {
        args.suites.clone()
    };
    let plan: Vec<(Kernel, Vec<String>)> = args
        .kernels()?
        .into_iter()
        .map(|kernel| (kernel, suites.clone()))
        .collect();
    run_plan(root, &plan)
}

/// The VM part of `cargo xtask test`: [`CI_PLAN`].
pub fn ci(root: &Path) -> Result<()> {
    let plan: Vec<(Kernel, Vec<String>)> = CI_PLAN
        .iter()
        .map(|(kernel, suites)| (*kernel, suites.iter().map(|s| s.to_string()).collect()))
        .collect();
    run_plan(root, &plan)
}

fn run_plan(root: &Path, plan: &[(Kernel, Vec<String>)]) -> Result<()> {
    let vng = tools::setup(root)?;
    let built = build::build(root, false)?;
    let mut wanted: Vec<String> = Vec::new();
    for suite in plan.iter().flat_map(|(_, suites)| suites) {
        if !wanted.contains(suite) {
            wanted.push(suite.clone());
        }
    }
    let (binaries, peer) = test_binaries(root, &built.ebpf_object, &wanted)?;

    let mut report = String::new();
    let mut failed = false;
    for (kernel, suites) in plan {
        let kernel = *kernel;
        let unpacked = kernel::fetch(root, kernel)?;
        let started = Instant::now();
        let these: Vec<(String, PathBuf)> = binaries
            .iter()
            .filter(|(suite, _)| suites.contains(suite))
            .cloned()
            .collect();
        let outcomes = boot_and_run(root, &vng, kernel, &unpacked, &these, &built.bin_dir, &peer)?;
        let _ = writeln!(
            report,
            "{} ({}, {}, {} s in the VM):",
            kernel.name(),
            kernel.debian(),
            unpacked.package,
            started.elapsed().as_secs()
        );
        for outcome in &outcomes {
            let verdict = match outcome.status {
                Some(0) => "passed".to_owned(),
                Some(code) => {
                    failed = true;
                    format!("FAILED (exit status {code})")
                }
                None => {
                    failed = true;
                    "DID NOT RUN (the guest recorded no status: see its console above)".to_owned()
                }
            };
            let time = outcome
                .seconds
                .map(|s| format!(" in {s} s"))
                .unwrap_or_default();
            let _ = writeln!(report, "  {} {verdict}{time}", outcome.suite);
        }
    }
    eprint!("xtask: vm-test results\n{report}");
    if failed {
        bail!("some suites did not pass in the VM (logs under target/vm/run/)");
    }
    Ok(())
}

/// The test binaries `cargo test --no-run` builds for `suites`, by suite, and the tests
/// crate's `vm-peer`, which it builds with them.
fn test_binaries(
    root: &Path,
    ebpf_object: &Path,
    suites: &[String],
) -> Result<(Vec<(String, PathBuf)>, PathBuf)> {
    let mut cmd = userspace_cargo(root, "test", ebpf_object);
    cmd.args(["--no-run", "--message-format=json-render-diagnostics"]);
    for suite in suites {
        cmd.args(["--test", suite]);
    }
    echo(&cmd);
    let output = cmd
        .stderr(Stdio::inherit())
        .output()
        .context("could not start cargo test --no-run")?;
    if !output.status.success() {
        bail!("`cargo test --no-run` failed: {}", output.status);
    }
    let mut binaries = Vec::new();
    let mut peer = None;
    for line in String::from_utf8_lossy(&output.stdout).lines() {
        let Ok(message) = serde_json::from_str::<Value>(line) else {
            continue;
        };
        let kind_is = |wanted: &str| {
            message["target"]["kind"]
                .as_array()
                .is_some_and(|kinds| kinds.iter().any(|kind| kind == wanted))
        };
        if message["reason"] != "compiler-artifact" {
            continue;
        }
        if let (Some(name), Some(executable)) = (
            message["target"]["name"].as_str(),
            message["executable"].as_str(),
        ) {
            if kind_is("test") {
                binaries.push((name.to_owned(), PathBuf::from(executable)));
            } else if kind_is("bin") && name == "vm-peer" {
                peer = Some(PathBuf::from(executable));
            }
        }
    }
    let peer = peer.context("cargo built no vm-peer (the tests crate's outside peer)")?;
    // In the order asked for.
    let binaries = suites
        .iter()
        .map(|suite| {
            binaries
                .iter()
                .find(|(name, _)| name == suite)
                .cloned()
                .with_context(|| format!("cargo built no test binary named {suite}"))
        })
        .collect::<Result<_>>()?;
    Ok((binaries, peer))
}

fn boot_and_run(
    root: &Path,
    vng: &Path,
    kernel: Kernel,
    unpacked: &kernel::Unpacked,
    binaries: &[(String, PathBuf)],
    bin_dir: &Path,
    peer: &Path,
) -> Result<Vec<Outcome>> {
    let run_dir = root.join("target/vm/run").join(kernel.name());
    if run_dir.exists() {
        fs::remove_dir_all(&run_dir)?;
    }
    let out = run_dir.join("out");
    fs::create_dir_all(&out)?;
    let script = run_dir.join("guest.sh");
    fs::write(&script, guest_script(root, &out, binaries, bin_dir))?;

    eprintln!(
        "xtask: booting {} ({}) under QEMU TCG; suites: {}",
        unpacked.package,
        kernel.debian(),
        binaries
            .iter()
            .map(|(s, _)| s.as_str())
            .collect::<Vec<_>>()
            .join(" ")
    );
    let console = run_dir.join("console.log");
    // A boot that never reaches the script is retried once: seen once on 6.12, virtme-ng
    // exiting with 255 and not a line on the console, and the next boot fine.
    for attempt in 1..=2 {
        let outside = outside::Outside::create(peer)?;
        let mut cmd = Command::new("timeout");
        cmd.current_dir(root)
            .args(["--kill-after=10", &GUEST_TIMEOUT_SECS.to_string()])
            .args(["ip", "netns", "exec", outside.netns()])
            .arg(vng)
            .arg("--disable-kvm")
            .arg("--run")
            .arg(&unpacked.vmlinuz)
            .args(["--memory", "2G", "--cpus", "2"])
            // One argument: argparse takes a separate value starting with '-' for an option.
            .arg(format!("--qemu-opts={}", outside::Outside::qemu_opts()))
            .arg("--rwdir")
            .arg(&out)
            .arg("--exec")
            .arg(format!("sh {}", script.display()))
            .stdin(Stdio::null());
        let status = run_teed(&mut cmd, &console)?;
        drop(outside);
        // Judged by the status files below, not by this (see the module's comment).
        if !status.success() {
            eprintln!(
                "xtask: virtme-ng exited with {status} (it does so even when the guest's script \
                 succeeds); judging by what the guest recorded"
            );
        }
        let guest_kernel = fs::read_to_string(out.join("uname")).unwrap_or_default();
        if !guest_kernel.trim().is_empty() {
            break;
        }
        if attempt == 2 {
            bail!(
                "{} never ran the test script, twice (no {}); the console above says why",
                unpacked.package,
                out.join("uname").display()
            );
        }
        eprintln!(
            "xtask: {} never ran the test script (no {}); booting it once more",
            unpacked.package,
            out.join("uname").display()
        );
    }
    Ok(binaries
        .iter()
        .map(|(suite, _)| {
            let read = |ext: &str| {
                fs::read_to_string(out.join(format!("{suite}.{ext}")))
                    .ok()
                    .and_then(|text| text.trim().parse().ok())
            };
            Outcome {
                suite: suite.clone(),
                status: read("status"),
                seconds: read("seconds"),
            }
        })
        .collect())
}

/// Runs `cmd` with its output (the guest's console) copied to our stderr and to `log`: QEMU
/// writes its console at its own file offset, so a redirect to a file would garble it.
fn run_teed(cmd: &mut Command, log: &Path) -> Result<ExitStatus> {
    echo(cmd);
    let (mut reader, writer) = io::pipe()?;
    cmd.stdout(writer.try_clone()?).stderr(writer);
    let mut child = cmd
        .spawn()
        .with_context(|| format!("could not start {}", cmd.get_program().display()))?;
    // Our copies of the pipe's writing end must go, or the reader never sees its end.
    cmd.stdout(Stdio::null()).stderr(Stdio::null());
    let mut file = fs::File::create(log).with_context(|| format!("creating {}", log.display()))?;
    let mut buffer = [0u8; 8192];
    loop {
        let read = reader.read(&mut buffer)?;
        if read == 0 {
            break;
        }
        file.write_all(&buffer[..read])?;
        io::stderr().write_all(&buffer[..read])?;
    }
    Ok(child.wait()?)
}

/// The script the guest runs: a tmpfs for everything the tests write, bpffs, and each suite
/// with its log, exit status and duration written to `out`. The tmpfs is not mounted over
/// /tmp: the checkout, and `out` in it, may live there (CI clones into a temporary directory).
fn guest_script(root: &Path, out: &Path, binaries: &[(String, PathBuf)], bin_dir: &Path) -> String {
    let quote = |path: &Path| format!("'{}'", path.display().to_string().replace('\'', r"'\''"));
    let frames = env::var("ALLOWLIST_FUZZ_FRAMES").unwrap_or_else(|_| VM_FRAMES.to_owned());
    let scale = env::var("ALLOWLIST_TEST_TIME_SCALE").unwrap_or_else(|_| VM_TIME_SCALE.to_owned());
    let mut script = format!(
        "#!/bin/sh\n\
         # Written by cargo xtask vm-test.\n\
         out={out}\n\
         uname -r > \"$out/uname\"\n\
         mkdir -p /run/vm-tmp && mount -t tmpfs tmpfs /run/vm-tmp\n\
         mountpoint -q /sys/fs/bpf || mount -t bpf bpf /sys/fs/bpf\n\
         mkdir -p /run/netns\n\
         export TMPDIR=/run/vm-tmp RUST_BACKTRACE=1 ALLOWLIST_BIN_DIR={bin_dir} \
         ALLOWLIST_FUZZ_FRAMES={frames} ALLOWLIST_TEST_TIME_SCALE={scale}{nocapture}\n\
         cd {tests}\n",
        // The tests' own output (timings), as `cargo test -- --nocapture` shows it.
        nocapture = match env::var_os("RUST_TEST_NOCAPTURE") {
            Some(_) => " RUST_TEST_NOCAPTURE=1",
            None => "",
        },
        out = quote(out),
        bin_dir = quote(bin_dir),
        frames = quote(Path::new(&frames)),
        scale = quote(Path::new(&scale)),
        tests = quote(&root.join("tests")),
    );
    for (suite, binary) in binaries {
        let _ = write!(
            script,
            "echo \"== {suite} on $(uname -r)\"\n\
             start=$(date +%s)\n\
             {{ {binary}; echo $? > \"$out/{suite}.status\"; }} 2>&1 | tee \"$out/{suite}.log\"\n\
             echo $(( $(date +%s) - start )) > \"$out/{suite}.seconds\"\n",
            binary = quote(binary),
        );
    }
    script
}
