//! `cargo xtask image`: an OCI image built with podman (Debian's, installed when missing, with
//! runc) from scratch: the two binaries, exactly the shared libraries `ldd` names for them, and
//! /etc/passwd and /etc/group with root only (the daemon resolves `control_group`). No shell, no
//! package manager: nothing in the image but what allowlistd and allowlistctl run on.

use std::collections::BTreeSet;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

use crate::build;
use crate::exec::{self, query};
use crate::toolchain;

const VERSION: &str = env!("CARGO_PKG_VERSION");
/// The image's name when none is given: podman's local registry, tagged with the version.
pub const DEFAULT_TAG: &str = concat!("localhost/allowlist:", env!("CARGO_PKG_VERSION"));
/// podman and the runtime that works on these machines (crun does not: cgroup hybrid mode).
pub const PACKAGES: &[&str] = &["podman", "runc"];
/// The capabilities the container needs, all others dropped: BPF for bpf(), NET_ADMIN for the
/// XDP attach, PERFMON for the verifier (it refuses the program's packet bounds arithmetic
/// without). Each was tried without the others: the daemon fails to start.
pub const CAPABILITIES: &str = "BPF,NET_ADMIN,PERFMON";
/// podman's own seccomp profile (containers-common).
const DEFAULT_SECCOMP: &str = "/usr/share/containers/seccomp.json";

const CONTAINERFILE: &str = r#"FROM scratch
COPY rootfs/ /
LABEL org.opencontainers.image.title="allowlist" \
      org.opencontainers.image.description="allowlistd (XDP IP allowlist) and allowlistctl" \
      org.opencontainers.image.version="@VERSION@"
# SIGTERM stops; whether that detaches is the config's detach_on_exit (false for a fleet:
# see "Running on a fleet" in README.md). SIGUSR2 hands over without a gap.
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/sbin/allowlistd"]
CMD ["--config", "/etc/allowlist/allowlist.toml"]
"#;

/// Builds the image `tag` from release binaries (or those in `bin_dir`), its build context and
/// seccomp profile in `out_dir` (default target/image).
pub fn image(root: &Path, bin_dir: Option<&Path>, out_dir: Option<&Path>, tag: &str) -> Result<()> {
    toolchain::install_packages(PACKAGES)?;
    let bin_dir = match bin_dir {
        Some(dir) => dir.to_path_buf(),
        None => build::build(root, true)?.bin_dir,
    };
    let context = out_dir.map_or_else(|| root.join("target/image"), Path::to_path_buf);
    if context.exists() {
        fs::remove_dir_all(&context).with_context(|| format!("removing {}", context.display()))?;
    }
    let rootfs = context.join("rootfs");
    stage(&bin_dir, &rootfs)?;
    let containerfile = context.join("Containerfile");
    fs::write(&containerfile, CONTAINERFILE.replace("@VERSION@", VERSION))
        .with_context(|| format!("writing {}", containerfile.display()))?;
    exec::run(
        Command::new("podman")
            .args(["build", "--runtime", "runc", "--tag", tag, "--file"])
            .arg(&containerfile)
            .arg(&context),
    )?;
    let profile = context.join("seccomp.json");
    seccomp_profile(&profile)?;
    let size =
        query(Command::new("podman").args(["image", "inspect", "--format", "{{.Size}}", tag]))?;
    let size = String::from_utf8_lossy(&size.stdout).trim().to_owned();
    let mib = size
        .parse::<f64>()
        .map_or_else(|_| size.clone(), |b| format!("{:.1} MiB", b / 1_048_576.0));
    eprintln!("xtask: image built: {tag} ({mib})");
    eprintln!(
        "xtask: run it with --cap-drop all --cap-add {CAPABILITIES} --security-opt seccomp={} \
         (podman's default seccomp profile allows bpf() only with CAP_SYS_ADMIN; this one also \
         with CAP_BPF, as Docker's and containerd's do)",
        profile.display()
    );
    Ok(())
}

/// Writes podman's default seccomp profile with `bpf` allowed under CAP_BPF to `to`.
///
/// The containers-common profile of Debian 12's podman allows `bpf` only with CAP_SYS_ADMIN
/// and answers EPERM otherwise; Docker's and containerd's defaults allow it with CAP_BPF too.
/// The rest of the profile is kept as it is.
fn seccomp_profile(to: &Path) -> Result<()> {
    let text = fs::read_to_string(DEFAULT_SECCOMP)
        .with_context(|| format!("reading podman's seccomp profile {DEFAULT_SECCOMP}"))?;
    let mut profile: serde_json::Value =
        serde_json::from_str(&text).with_context(|| format!("parsing {DEFAULT_SECCOMP}"))?;
    let rules = profile
        .get_mut("syscalls")
        .and_then(serde_json::Value::as_array_mut)
        .with_context(|| format!("{DEFAULT_SECCOMP} has no syscalls array"))?;
    let mut refusals = 0;
    for rule in rules.iter_mut() {
        let refuses = rule["action"] != "SCMP_ACT_ALLOW";
        if let Some(names) = rule
            .get_mut("names")
            .and_then(serde_json::Value::as_array_mut)
            .filter(|_| refuses)
        {
            let before = names.len();
            names.retain(|name| name != "bpf");
            refusals += before - names.len();
        }
    }
    rules.retain(|rule| {
        rule["names"]
            .as_array()
            .is_none_or(|names| !names.is_empty())
    });
    rules.push(serde_json::json!({
        "names": ["bpf"],
        "action": "SCMP_ACT_ALLOW",
        "includes": { "caps": ["CAP_BPF"] },
    }));
    eprintln!(
        "xtask: seccomp profile: {DEFAULT_SECCOMP} with bpf allowed under CAP_BPF ({refusals} \
         refusing rule(s) for bpf taken out)"
    );
    let text = serde_json::to_string_pretty(&profile).context("writing the seccomp profile")?;
    write(to, &text)
}

/// The image's files under `rootfs`.
fn stage(bin_dir: &Path, rootfs: &Path) -> Result<()> {
    let mut libraries = BTreeSet::new();
    for (name, dir) in [("allowlistd", "usr/sbin"), ("allowlistctl", "usr/bin")] {
        let from = bin_dir.join(name);
        if !from.is_file() {
            bail!(
                "{} does not exist: run `cargo xtask build --release` first, or pass --bin-dir",
                from.display()
            );
        }
        let to = rootfs.join(dir).join(name);
        copy(&from, &to, 0o755)?;
        exec::run(Command::new("strip").arg("--strip-unneeded").arg(&to))?;
        libraries.extend(shared_libraries(&from)?);
    }
    for library in &libraries {
        // Where the binaries look: the path ldd printed (the loader's is the ELF interpreter).
        let to = rootfs.join(library.strip_prefix("/").unwrap_or(library));
        copy(library, &to, 0o755)?;
    }
    write(
        &rootfs.join("etc/passwd"),
        "root:x:0:0:root:/:/usr/sbin/nologin\n",
    )?;
    write(&rootfs.join("etc/group"), "root:x:0:\n")?;
    // Mount points and the defaults' directories, present even where nothing is mounted.
    for dir in [
        "etc/allowlist",
        "run/allowlist",
        "var/lib/allowlist",
        "var/log/allowlist",
        "sys/fs/bpf",
        "tmp",
    ] {
        let path = rootfs.join(dir);
        fs::create_dir_all(&path).with_context(|| format!("creating {}", path.display()))?;
    }
    Ok(())
}

/// The absolute paths of the shared libraries (and the loader) `binary` needs, from `ldd`.
fn shared_libraries(binary: &Path) -> Result<Vec<PathBuf>> {
    let out = query(Command::new("ldd").arg(binary))?;
    let text = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        bail!(
            "`ldd {}` failed: {}{}",
            binary.display(),
            text.trim(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    let mut found = Vec::new();
    for line in text.lines() {
        // "libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x...)", "/lib64/ld-linux-x86-64.so.2
        // (0x...)", or the vDSO, which the kernel provides.
        let line = line.trim();
        if line.contains("not found") {
            bail!("{}: a shared library is missing: {line}", binary.display());
        }
        let path = line.split_once("=>").map_or(line, |(_, path)| path.trim());
        if let Some(path) = path
            .split_whitespace()
            .next()
            .filter(|p| p.starts_with('/'))
        {
            found.push(PathBuf::from(path));
        }
    }
    if found.is_empty() {
        bail!(
            "`ldd {}` named no library: {}",
            binary.display(),
            text.trim()
        );
    }
    Ok(found)
}

fn copy(from: &Path, to: &Path, mode: u32) -> Result<()> {
    if let Some(dir) = to.parent() {
        fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    // Follows symlinks: the image holds each library as a plain file at the path asked for.
    fs::copy(from, to)
        .with_context(|| format!("copying {} to {}", from.display(), to.display()))?;
    fs::set_permissions(to, fs::Permissions::from_mode(mode))
        .with_context(|| format!("chmod {mode:o} {}", to.display()))
}

fn write(to: &Path, text: &str) -> Result<()> {
    if let Some(dir) = to.parent() {
        fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    fs::write(to, text).with_context(|| format!("writing {}", to.display()))?;
    fs::set_permissions(to, fs::Permissions::from_mode(0o644))
        .with_context(|| format!("chmod 644 {}", to.display()))
}
