//! The OCI image (`cargo xtask image`) run for real with podman: the container filters the
//! veth of a test namespace (`--network ns:...`) with the test's bpffs mounted, under the
//! least capabilities, a rolling update (the old container stopped, the new one started)
//! leaves no moment without enforcement, removing it for good (`detach_on_exit = true`
//! first) detaches, and a ConfigMap-style swap in the mounted config directory is in force
//! within 2 s (`watch = true`).
//!
//! The image is built from the binaries the suite already built (`--bin-dir`, stripped), so
//! it costs a podman build of a few seconds, not a release build.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use allowlist_tests::bpffs::TestDir;
use allowlist_tests::config_map::{ConfigMap, in_force};
use allowlist_tests::daemon::{Config, READY_TIMEOUT, RELOAD_TIMEOUT, bin_dir};
use allowlist_tests::netns::{A4, A6, B4, B6, Lab, PROTECTED, next_id, to};
use allowlist_tests::probe;
use allowlist_tests::require_root;
use allowlist_tests::tcp::{Listener, assert_connects, assert_times_out};

/// The tag the tests build, apart from the one `cargo xtask image` makes by default.
const TAG: &str = "localhost/allowlist-test:latest";
/// The capabilities the container gets, all others dropped: the least that work (BPF for
/// bpf(), NET_ADMIN for the XDP attach, PERFMON for the verifier; without any one of them
/// the daemon fails to start, as `least_capabilities` shows). Kept equal to xtask's.
const CAPABILITIES: &str = "BPF,NET_ADMIN,PERFMON";

fn podman(args: &[&str]) -> Output {
    Command::new("podman")
        .args(args)
        .output()
        .unwrap_or_else(|e| {
            panic!("running podman {args:?}: {e} (`cargo xtask image` installs it)")
        })
}

fn podman_ok(args: &[&str]) -> String {
    let out = podman(args);
    assert!(
        out.status.success(),
        "podman {args:?} failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The profile `cargo xtask image` writes beside the image: podman's default with `bpf`
/// allowed under CAP_BPF (podman's own allows it only with CAP_SYS_ADMIN).
fn seccomp_profile() -> PathBuf {
    image_dir().join("seccomp.json")
}

/// The image's build context and seccomp profile: apart from `cargo xtask image`'s.
fn image_dir() -> PathBuf {
    workspace().join("target/image-test")
}

fn workspace() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ is in the workspace")
}

/// The test image, built once per run of this file (its tests share it).
fn image() {
    static BUILT: OnceLock<()> = OnceLock::new();
    BUILT.get_or_init(|| {
        let took = build_image();
        let size = podman_ok(&["image", "inspect", "--format", "{{.Size}}", TAG]);
        eprintln!("image {TAG} built in {took:?}: {} bytes", size.trim());
    });
}

/// Builds the test image with `cargo xtask image --bin-dir` from the binaries under test.
fn build_image() -> Duration {
    let started = Instant::now();
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let status = Command::new(cargo)
        .current_dir(workspace())
        .args([
            "run",
            "--quiet",
            "--package",
            "xtask",
            "--",
            "image",
            "--bin-dir",
        ])
        .arg(bin_dir())
        .args(["--tag", TAG, "--out-dir"])
        .arg(image_dir())
        .status()
        .expect("running cargo xtask image");
    assert!(status.success(), "cargo xtask image failed: {status}");
    started.elapsed()
}

/// podman's default rlimits are above this machine's hard limits, which a process without
/// CAP_SYS_RESOURCE cannot raise: ask for the hard limit itself, at most `cap`.
fn ulimit(name: &str, resource: libc::__rlimit_resource_t, cap: u64) -> String {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit(2) writes only into `limit`.
    let rc = unsafe { libc::getrlimit(resource, &mut limit) };
    assert_eq!(
        rc,
        0,
        "getrlimit({name}): {}",
        std::io::Error::last_os_error()
    );
    let n = limit.rlim_max.min(cap);
    format!("{name}={n}:{n}")
}

/// A container, removed (killed if need be) on drop, even when the test fails.
struct Container {
    name: String,
}

impl Container {
    /// Creates (without starting) a container of the test image in `lab`'s server namespace,
    /// seeing `dir` (config, state, audit log, control socket, bpffs) at the same path.
    fn create(lab: &Lab, dir: &TestDir, config: &Path) -> Container {
        Container::create_with(lab, dir, config, CAPABILITIES)
    }

    /// [`Container::create`] with only `capabilities` (comma-separated).
    fn create_with(lab: &Lab, dir: &TestDir, config: &Path, capabilities: &str) -> Container {
        let name = format!("allowlist-test-{}-{}", std::process::id(), next_id());
        let network = format!("ns:{}", lab.server.path().display());
        let volume = format!("{0}:{0}", dir.path().display());
        let bpffs = format!("{0}:{0}", dir.bpffs().display());
        let nofile = ulimit("nofile", libc::RLIMIT_NOFILE, 16384);
        let nproc = ulimit("nproc", libc::RLIMIT_NPROC, 4096);
        podman_ok(&[
            "create",
            "--name",
            &name,
            "--runtime",
            "runc",
            "--ulimit",
            &nofile,
            "--ulimit",
            &nproc,
            "--network",
            &network,
            "--cap-drop",
            "all",
            "--cap-add",
            capabilities,
            "--security-opt",
            &format!("seccomp={}", seccomp_profile().display()),
            "--read-only",
            "--volume",
            &volume,
            "--volume",
            &bpffs,
            TAG,
            "--config",
            &config.to_string_lossy(),
        ]);
        Container { name }
    }

    fn start(&self) {
        podman_ok(&["start", &self.name]);
    }

    fn logs(&self) -> String {
        let out = podman(&["logs", &self.name]);
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    }

    fn running(&self) -> bool {
        podman_ok(&["inspect", "--format", "{{.State.Running}}", &self.name]).trim() == "true"
    }

    /// Waits until the log holds `needle`; panics with the log if the container stops or
    /// `timeout` passes first.
    fn wait_for_log(&self, needle: &str, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            let logs = self.logs();
            if logs.contains(needle) {
                return;
            }
            assert!(
                self.running() && Instant::now() < deadline,
                "container {} never logged {needle:?} (running: {}); log:\n{logs}",
                self.name,
                self.running()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// `podman stop`: SIGTERM, as a pod's termination sends, and its exit code.
    fn stop(&self) -> i32 {
        podman_ok(&["stop", "--time", "10", &self.name]);
        podman_ok(&["inspect", "--format", "{{.State.ExitCode}}", &self.name])
            .trim()
            .parse()
            .expect("an exit code")
    }

    fn signal(&self, signal: &str) {
        podman_ok(&["kill", "--signal", signal, &self.name]);
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        let out = podman(&["rm", "--force", "--time", "0", &self.name]);
        if !out.status.success() {
            eprintln!(
                "warning: removing container {}: {}",
                self.name,
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
}

#[test]
fn container_enforces_and_a_rolling_update_leaves_no_gap() {
    if !require_root("container_enforces_and_a_rolling_update_leaves_no_gap") {
        return;
    }
    image();

    let lab = Lab::new();
    let dir = TestDir::new();
    let _listener = Listener::start(
        &lab.server,
        SocketAddr::new("::".parse().unwrap(), PROTECTED),
    );
    let config_path: PathBuf = dir.join("allowlist.toml");
    let mut config = Config::new(&dir, lab.server_if())
        .entry("198.18.1.0/24", "allowed client, IPv4")
        .entry("2001:db8::a/128", "allowed client, IPv6");
    // What a fleet runs with: a stopped container leaves the filter for the next to adopt.
    config.detach_on_exit = Some(false);
    config.write(&config_path);

    // Before any container: nothing filters.
    assert_connects(&lab.client, B4, to(B4, PROTECTED), "before the container");

    let first = Container::create(&lab, &dir, &config_path);
    first.start();
    first.wait_for_log("allowlistd ready", READY_TIMEOUT);
    for src in [B4, B6] {
        assert_times_out(
            &lab.client,
            src,
            to(src, PROTECTED),
            "the container enforces",
        );
    }
    for src in [A4, A6] {
        assert_connects(
            &lab.client,
            src,
            to(src, PROTECTED),
            "the container enforces",
        );
    }

    // The rolling update: the new container is created while the old one runs, then the old
    // one is stopped (SIGTERM, as Kubernetes stops a pod) and the new one started; it adopts
    // the pins. Probes from both clients run from before the stop until after the new one is
    // ready.
    let second = Container::create(&lab, &dir, &config_path);
    let (probes, (old_exit, stopped_at, ready_at)) = probe::during(&lab, |started| {
        let old_exit = first.stop();
        let stopped_at = started.elapsed();
        second.start();
        second.wait_for_log("allowlistd ready", READY_TIMEOUT);
        (old_exit, stopped_at, started.elapsed())
    });
    let wrong = probe::wrong(&probes);
    let (daemonless, daemonless_blocked) = probe::between(&probes, stopped_at, ready_at);
    assert!(
        wrong.is_empty() && daemonless_blocked > 0,
        "{} probes during the rolling update ({daemonless} with no daemon running, from \
         {stopped_at:?} to {ready_at:?}), {} wrong: {wrong:?}\nold container's log:\n{}\nnew container's log:\n{}",
        probes.len(),
        wrong.len(),
        first.logs(),
        second.logs()
    );
    let slowest = probe::slowest_allowed(&probes);
    eprintln!(
        "rolling update: {} probes from the blocked clients (all dropped) and {} from the \
         allowed ones (all connected); old stopped at {stopped_at:?} (exit {old_exit}), new \
         ready at {ready_at:?}: {:?} without a daemon, {daemonless} probes then \
         ({daemonless_blocked} blocked), the pinned filter enforcing; slowest allowed \
         connect {slowest:?}",
        probe::count(&probes, true),
        probe::count(&probes, false),
        ready_at.saturating_sub(stopped_at)
    );
    assert_eq!(old_exit, 0, "the old container's log:\n{}", first.logs());
    assert!(
        first.logs().contains("leaving the filter enforcing"),
        "the old container should have left the filter enforcing; log:\n{}",
        first.logs()
    );

    // Removing it for good: detach_on_exit = true first (a reload takes it), then the stop
    // detaches and removes the pins.
    config.detach_on_exit = Some(true);
    config.write(&config_path);
    second.signal("HUP");
    second.wait_for_log("reload applied", RELOAD_TIMEOUT);
    assert_eq!(
        second.stop(),
        0,
        "the new container's log:\n{}",
        second.logs()
    );
    assert!(
        second.logs().contains("detached from every interface"),
        "log:\n{}",
        second.logs()
    );
    assert_eq!(
        dir.bpffs_entries(),
        Vec::<PathBuf>::new(),
        "pins left after the removal"
    );
    assert_connects(
        &lab.client,
        B4,
        to(B4, PROTECTED),
        "removed for good: nothing filters",
    );
}

/// BPF, NET_ADMIN and PERFMON are each needed: without any one of them the container does not
/// start enforcing (and with all three it does, as the test above shows).
#[test]
fn least_capabilities_are_bpf_net_admin_and_perfmon() {
    if !require_root("least_capabilities_are_bpf_net_admin_and_perfmon") {
        return;
    }
    image();
    let lab = Lab::new();
    let dir = TestDir::new();
    let _listener = Listener::start(
        &lab.server,
        SocketAddr::new("::".parse().unwrap(), PROTECTED),
    );
    let config_path = dir.join("allowlist.toml");
    Config::new(&dir, lab.server_if()).write(&config_path);
    for (missing, rest, error) in [
        ("BPF", "NET_ADMIN,PERFMON", "failed to create map"),
        ("NET_ADMIN", "BPF,PERFMON", "refused the XDP program"),
        ("PERFMON", "BPF,NET_ADMIN", "refused the XDP program"),
    ] {
        let container = Container::create_with(&lab, &dir, &config_path, rest);
        container.start();
        let deadline = Instant::now() + READY_TIMEOUT;
        while container.running() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        let logs = container.logs();
        assert!(
            !container.running() && logs.contains(error) && !logs.contains("allowlistd ready"),
            "without {missing} the daemon should fail with {error:?}; log:\n{logs}"
        );
        eprintln!(
            "without {missing}: {}",
            logs.lines()
                .find(|l| l.contains("ERROR"))
                .unwrap_or_default()
        );
    }
    // A failed start leaves the pin directory with the counters (COUNTERS, HITS), which the
    // next daemon reuses, but never a program or a link: nothing was attached.
    let left = dir.bpffs_entries();
    assert!(
        !left
            .iter()
            .any(|p| p.starts_with("allowlist/links") || p.ends_with("prog")),
        "a failed start left a program or link pinned: {left:?}"
    );
    assert_connects(&lab.client, B4, to(B4, PROTECTED), "nothing attached");
}

/// A Kubernetes-style config: the container's config is a ConfigMap volume (`..data` swapped
/// by a rename) with `watch = true`; a new version published in the mounted directory is in
/// force within 2 s, with no signal sent into the container.
#[test]
fn a_config_map_swap_in_the_mounted_directory_is_in_force_within_2s() {
    if !require_root("a_config_map_swap_in_the_mounted_directory_is_in_force_within_2s") {
        return;
    }
    image();
    let lab = Lab::new();
    let dir = TestDir::new();
    let _listener = Listener::start(
        &lab.server,
        SocketAddr::new("::".parse().unwrap(), PROTECTED),
    );
    let volume = dir.join("config-map");
    std::fs::create_dir(&volume).expect("the ConfigMap's directory");
    let mut config_map = ConfigMap::new(&volume);
    let version = |config: Config| format!("watch = true\n{}", config.render());
    let office = Config::new(&dir, lab.server_if()).entry("198.18.1.0/24", "office");
    config_map.publish(&[("allowlist.toml", &version(office.clone()))]);
    let container = Container::create(&lab, &dir, &volume.join("allowlist.toml"));
    container.start();
    container.wait_for_log("allowlistd ready", READY_TIMEOUT);
    assert_times_out(
        &lab.client,
        B4,
        to(B4, PROTECTED),
        "not in the first version",
    );
    assert_connects(&lab.client, A4, to(A4, PROTECTED), "the office");

    let partner = office.entry("198.18.2.0/24", "partner");
    let swapped = Instant::now();
    config_map.publish(&[("allowlist.toml", &version(partner))]);
    in_force(
        &lab.client,
        B4,
        true,
        swapped,
        "the partner, after the swap",
    );
    container.wait_for_log("reload applied", RELOAD_TIMEOUT);
    assert_connects(&lab.client, A4, to(A4, PROTECTED), "the office, still");
}
