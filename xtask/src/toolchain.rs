//! What building the XDP program needs: finding a Rust toolchain that can build `core` for
//! bpfel-unknown-none, bpf-linker, and the Debian packages behind them and behind the tests,
//! installing whatever is missing.
//!
//! The rustup toolchains on these machines have no rust-src and cannot download it, so Debian's
//! rustc-web (which ships its library source as rust-web-src) is preferred; a rustup nightly that
//! does have rust-src, the usual aya setup, works too.

use std::collections::BTreeSet;
use std::env;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context, Result, bail};

use crate::exec::{self, query, run};

/// Tools the tests run (`ip`, `ps`/`sysctl`): always needed.
const RUNTIME_PACKAGES: &[&str] = &["iproute2", "procps"];
/// Debian's Rust, whose sysroot (/usr) holds the library source `-Z build-std=core` compiles.
const RUST_PACKAGES: &[&str] = &["rustc-web", "cargo-web", "rust-web-src"];
/// What `cargo install bpf-linker --features llvm-22` builds and links against.
const LLVM_PACKAGES: &[&str] = &[
    "llvm-22-dev",
    "libpolly-22-dev",
    "libzstd-dev",
    "zlib1g-dev",
];
const LLVM_PREFIX: &str = "/usr/lib/llvm-22";

/// Variables that `cargo xtask` (run through rustup's cargo) or the user may have set for host
/// builds; inherited, they would point the nested eBPF cargo at rustup's stable compiler, another
/// target directory or host flags.
const HOST_BUILD_VARS: &[&str] = &[
    "RUSTUP_TOOLCHAIN",
    "RUSTC",
    "RUSTDOC",
    "CARGO",
    "CARGO_TARGET_DIR",
    "RUSTFLAGS",
    "CARGO_ENCODED_RUSTFLAGS",
];

#[derive(Clone, Copy)]
pub enum EbpfToolchain {
    /// /usr/bin/rustc and /usr/bin/cargo from rustc-web/cargo-web, with rust-web-src.
    Debian,
    /// rustup's nightly with its rust-src component.
    RustupNightly,
}

impl EbpfToolchain {
    fn detect() -> Option<Self> {
        // /usr is /usr/bin/rustc's sysroot, so this is where it looks for the library source.
        let debian = ["/usr/bin/rustc", "/usr/bin/cargo"]
            .iter()
            .all(|path| Path::new(path).is_file())
            && Path::new("/usr/lib/rustlib/src/rust/library").is_dir();
        if debian {
            Some(Self::Debian)
        } else if nightly_has_rust_src() {
            Some(Self::RustupNightly)
        } else {
            None
        }
    }

    fn describe(self) -> &'static str {
        match self {
            Self::Debian => {
                "Debian's rustc and cargo (/usr/bin) with rust-web-src, -Z unlocked by RUSTC_BOOTSTRAP=1"
            }
            Self::RustupNightly => "rustup nightly with rust-src (cargo +nightly)",
        }
    }

    /// `cargo` of this toolchain, with bpf-linker on PATH and no host-build variables.
    pub fn cargo(self) -> Result<Command> {
        let cargo_bin = cargo_home()?.join("bin");
        let inherited = env::var_os("PATH").unwrap_or_default();
        let mut path: Vec<PathBuf> = Vec::new();
        let mut cmd = match self {
            Self::Debian => {
                // /usr/bin first, so whatever cargo runs by name is Debian's, not rustup's proxies.
                path.push("/usr/bin".into());
                Command::new("/usr/bin/cargo")
            }
            Self::RustupNightly => Command::new("cargo"),
        };
        path.push(cargo_bin);
        path.extend(env::split_paths(&inherited));
        for var in HOST_BUILD_VARS {
            cmd.env_remove(var);
        }
        cmd.env("PATH", env::join_paths(path).context("joining PATH")?);
        match self {
            Self::Debian => {
                // Debian's rustc is a stable release: RUSTC_BOOTSTRAP lets it take -Z build-std.
                cmd.env("RUSTC", "/usr/bin/rustc")
                    .env("RUSTC_BOOTSTRAP", "1");
            }
            // The PATH above puts rustup's proxy first, which understands `+nightly`.
            Self::RustupNightly => {
                cmd.arg("+nightly");
            }
        }
        Ok(cmd)
    }
}

/// Makes this machine able to build and test everything, installing only what is missing, and
/// returns the toolchain to build the XDP program with.
pub fn setup() -> Result<EbpfToolchain> {
    let found = EbpfToolchain::detect();
    let linker = cargo_home()?.join("bin/bpf-linker");

    let mut needed = RUNTIME_PACKAGES.to_vec();
    if found.is_none() {
        needed.extend(RUST_PACKAGES);
    }
    if !linker.is_file() {
        needed.extend(LLVM_PACKAGES);
    }
    install_packages(&needed)?;

    if linker.is_file() {
        eprintln!("xtask: bpf-linker present: {}", linker.display());
    } else {
        install_bpf_linker(&linker)?;
    }

    let toolchain = match found {
        Some(toolchain) => toolchain,
        None => EbpfToolchain::detect().context(
            "Debian's toolchain is still incomplete after installing rustc-web cargo-web rust-web-src \
             (expected /usr/bin/rustc, /usr/bin/cargo, /usr/lib/rustlib/src/rust/library)",
        )?,
    };
    eprintln!("xtask: eBPF toolchain: {}", toolchain.describe());
    Ok(toolchain)
}

pub fn install_packages(needed: &[&str]) -> Result<()> {
    let missing = missing_packages(needed)?;
    if missing.is_empty() {
        eprintln!("xtask: Debian packages present: {}", needed.join(" "));
        return Ok(());
    }
    let list = missing.join(" ");
    if !exec::is_root()? {
        bail!(
            "missing Debian packages: {list}; install them as root \
             (`apt-get update && apt-get install {list}`) or run `cargo xtask setup` as root"
        );
    }
    eprintln!(
        "xtask: installing Debian packages: {list} \
         (apt-get update first: a fresh machine's package lists are stale)"
    );
    let apt_get = || {
        let mut cmd = Command::new("apt-get");
        cmd.env("DEBIAN_FRONTEND", "noninteractive")
            .stdin(Stdio::null());
        cmd
    };
    run(apt_get().args(["update", "-q"]))?;
    run(apt_get().args(["install", "-y", "-q"]).args(&missing))
}

/// The packages in `needed` that dpkg does not report as installed.
fn missing_packages<'a>(needed: &[&'a str]) -> Result<Vec<&'a str>> {
    // Exits 1 when some package is unknown to dpkg; the listing is still complete for the others.
    let output = query(
        Command::new("dpkg-query")
            .args(["-W", "-f", "${Package} ${db:Status-Status}\\n"])
            .args(needed),
    )?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    let installed: BTreeSet<&str> = stdout
        .lines()
        .filter_map(|line| line.strip_suffix(" installed"))
        .collect();
    Ok(needed
        .iter()
        .copied()
        .filter(|package| !installed.contains(package))
        .collect())
}

fn install_bpf_linker(linker: &Path) -> Result<()> {
    eprintln!(
        "xtask: installing bpf-linker as {} (built against Debian's LLVM 22, about a minute)",
        linker.display()
    );
    let install = |locked: bool| {
        let mut cmd = Command::new("cargo");
        // Without it, bpf-linker's build finds Debian's default llvm-config (14) and fails to link.
        cmd.env("LLVM_PREFIX", LLVM_PREFIX).args([
            "install",
            "bpf-linker",
            "--no-default-features",
            "--features",
            "llvm-22",
        ]);
        if locked {
            cmd.arg("--locked");
        }
        run(&mut cmd)
    };
    if let Err(err) = install(true) {
        eprintln!("xtask: {err:#}; trying again without --locked");
        install(false)?;
    }
    Ok(())
}

fn nightly_has_rust_src() -> bool {
    // Without RUSTUP_AUTO_INSTALL=0, rustup would download a missing nightly just to answer.
    let listing = query(
        Command::new("rustup")
            .env("RUSTUP_AUTO_INSTALL", "0")
            .args(["+nightly", "component", "list", "--installed"]),
    );
    // No rustup, or no nightly: no nightly with rust-src.
    listing.is_ok_and(|output| {
        output.status.success()
            && String::from_utf8_lossy(&output.stdout)
                .lines()
                .any(|line| line.starts_with("rust-src"))
    })
}

/// Where cargo installs binaries (`bin/`) for this user.
fn cargo_home() -> Result<PathBuf> {
    if let Some(home) = env::var_os("CARGO_HOME") {
        return Ok(home.into());
    }
    let home = env::var_os("HOME").context("neither CARGO_HOME nor HOME is set")?;
    Ok(PathBuf::from(home).join(".cargo"))
}

/// The `bin` of a pinned PyPI `requirement` (`name==version`), installed into the venv `venv`
/// (under target/, so the system's Python is left alone) when missing or of another version.
pub fn pypi_tool(venv: &Path, requirement: &str, bin: &str) -> Result<PathBuf> {
    install_packages(&["python3-venv"])?;
    let (name, version) = requirement
        .split_once("==")
        .unwrap_or((requirement, requirement));
    let path = venv.join("bin").join(bin);
    if path.is_file() {
        // pip's record rather than the tool's --version: running a tool may write to the
        // user's home (ansible-playbook makes ~/.ansible).
        let output = query(Command::new(venv.join("bin/python3")).args([
            "-m",
            "pip",
            "show",
            "--disable-pip-version-check",
            name,
        ]))?;
        let shown = String::from_utf8_lossy(&output.stdout);
        if output.status.success() && shown.lines().any(|l| l == format!("Version: {version}")) {
            eprintln!("xtask: {requirement} present: {}", path.display());
            return Ok(path);
        }
    }
    eprintln!(
        "xtask: installing {requirement} from PyPI into {}",
        venv.display()
    );
    // Debian's python3, not whatever a shell's PATH prefers: python3-venv above is for it.
    run(Command::new("/usr/bin/python3")
        .args(["-m", "venv", "--clear"])
        .arg(venv))?;
    run(Command::new(venv.join("bin/pip")).args([
        "install",
        "--quiet",
        "--disable-pip-version-check",
        requirement,
    ]))?;
    if !path.is_file() {
        bail!("pip installed {requirement} but left no {}", path.display());
    }
    Ok(path)
}
