//! Parts 3 and 4: the control plane. The real release `allowlistd` in a lab namespace loads
//! list files; start to enforcing is timed to its sd_notify `READY=1` (sent once the program
//! is attached and its maps are full), a SIGHUP reload from the signal to the `READY=1` after
//! `RELOADING=1` (re-reading the files included); peak RSS is VmHWM; kernel memory is the
//! memlock of the daemon's map fds (fdinfo). Side by side: `nft -f` and `ipset restore` loading
//! the same networks into an interval set / hash:net set in a fresh namespace.

use std::ffi::OsStr;
use std::fs;
use std::io::ErrorKind;
use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};
use ipnet::IpNet;
use nix::sys::signal::Signal;
use serde_json::{Value, json};

use super::lists::{self, List};
use super::stats::Summary;
use allowlist_tests::bpffs::TestDir;
use allowlist_tests::daemon::{self, Config, Daemon, SpawnOptions, with_top_level};
use allowlist_tests::netns::{ALLOWED_V4, BLOCKED_V4, Lab, Netns};

pub struct Settings {
    pub sizes: Vec<usize>,
    /// Sizes that also get a 1% reload and the `allowlistctl` latencies.
    pub reload_sizes: Vec<usize>,
    pub ctl_runs: usize,
    /// Starts, and 1% reloads, per size: a single one swings with the machine's other load,
    /// so the rows report the median.
    pub repeats: usize,
    pub seed: u64,
}

fn listed_ms(values: &[f64]) -> String {
    let ms: Vec<String> = values
        .iter()
        .map(|s| format!("{:.0}", s * 1000.0))
        .collect();
    ms.join(", ")
}

/// Share of IPv4 among the entries (the rest is IPv6).
pub const V4_SHARE: f64 = 0.8;

#[derive(Debug, Default, Clone)]
pub struct Row {
    pub tool: &'static str,
    pub what: &'static str,
    pub entries: usize,
    pub seconds: f64,
    pub peak_rss_mib: Option<f64>,
    pub kernel_mib: Option<f64>,
    pub note: String,
}

impl Row {
    pub fn json(&self) -> Value {
        json!({
            "tool": self.tool, "what": self.what, "entries": self.entries,
            "seconds": self.seconds, "peak_rss_mib": self.peak_rss_mib,
            "kernel_mib": self.kernel_mib, "note": self.note,
        })
    }
}

#[derive(Debug, Default)]
pub struct Outcome {
    pub rows: Vec<Row>,
    /// (command, entries, latency ms summary)
    pub ctl: Vec<(String, usize, Summary)>,
    pub maps: Vec<(usize, Value)>,
}

impl Outcome {
    pub fn find(&self, tool: &str, what: &str, entries: usize) -> Option<&Row> {
        self.rows
            .iter()
            .find(|r| r.tool == tool && r.what == what && r.entries == entries)
    }
}

pub fn split(size: usize) -> (usize, usize) {
    let v4 = ((size as f64) * V4_SHARE).round() as usize;
    (v4.max(1), (size - v4).max(1))
}

/// Peak and current RSS of `pid` in MiB.
fn rss_mib(pid: i32) -> Result<(f64, f64)> {
    let status = fs::read_to_string(format!("/proc/{pid}/status"))?;
    let kib = |key: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(f64::NAN)
    };
    Ok((kib("VmHWM:") / 1024.0, kib("VmRSS:") / 1024.0))
}

/// The BPF maps `pid` holds: per map, type, max_entries and memlock (fdinfo), summed.
fn map_memory(pid: i32) -> Result<(f64, Value)> {
    let mut total = 0u64;
    let mut maps = Vec::new();
    let mut seen = std::collections::BTreeSet::new();
    for entry in fs::read_dir(format!("/proc/{pid}/fdinfo"))? {
        let Ok(text) = fs::read_to_string(entry?.path()) else {
            continue;
        };
        let field = |key: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(key))
                .map(|v| v.trim().to_owned())
        };
        let (Some(ty), Some(memlock), Some(id)) =
            (field("map_type:"), field("memlock:"), field("map_id:"))
        else {
            continue;
        };
        if !seen.insert(id.clone()) {
            continue;
        }
        let memlock: u64 = memlock.parse().unwrap_or(0);
        total += memlock;
        maps.push(json!({
            "map_id": id, "map_type": ty, "max_entries": field("max_entries:"),
            "memlock_bytes": memlock,
        }));
    }
    Ok((total as f64 / 1048576.0, Value::Array(maps)))
}

/// Waits for a datagram on the notify socket containing `needle`.
fn wait_notify(sock: &UnixDatagram, needle: &str, timeout: Duration) -> Result<Instant> {
    let deadline = Instant::now() + timeout;
    let mut buf = vec![0u8; 4096];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            bail!("no {needle} from the daemon within {timeout:?}");
        }
        sock.set_read_timeout(Some(left))?;
        match sock.recv(&mut buf) {
            Ok(n) => {
                let at = Instant::now();
                if String::from_utf8_lossy(&buf[..n])
                    .lines()
                    .any(|l| l == needle)
                {
                    return Ok(at);
                }
            }
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(e) => return Err(e.into()),
        }
    }
}

fn write_lists(dir: &Path, v4: &[IpNet], v6: &[IpNet]) -> Result<()> {
    for (name, nets) in [("v4.list", v4), ("v6.list", v6)] {
        let path = dir.join(name);
        let tmp = dir.join(format!("{name}.tmp"));
        fs::write(&tmp, lists::list_file(nets))?;
        fs::rename(&tmp, &path)?;
    }
    Ok(())
}

/// Runs `program args` in network namespace `ns` and returns wall seconds and its peak RSS
/// (MiB). GNU time measures it: the peak wait4 reports for a child of this process would
/// include this process's own memory, which a spawned child shares until it execs.
pub fn timed(ns: &str, program: &str, args: &[&OsStr]) -> Result<(f64, f64)> {
    let report = tempfile::NamedTempFile::new()?;
    let mut cmd = Command::new("/usr/bin/time");
    cmd.args(["-f", "%M", "-o"])
        .arg(report.path())
        .args(["ip", "netns", "exec", ns, program])
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let started = Instant::now();
    let out = cmd.output().with_context(|| format!("running {cmd:?}"))?;
    let seconds = started.elapsed().as_secs_f64();
    if !out.status.success() {
        bail!(
            "{cmd:?} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    let text = fs::read_to_string(report.path())?;
    let kib: f64 = text
        .lines()
        .last()
        .and_then(|l| l.trim().parse().ok())
        .with_context(|| format!("GNU time wrote {text:?}, not a peak RSS in KiB"))?;
    Ok((seconds, kib / 1024.0))
}

fn ctl_latency(socket: &Path, args: &[&str], runs: usize) -> Result<Summary> {
    let ctl = daemon::bin_dir().join("allowlistctl");
    let mut ms = Vec::with_capacity(runs);
    for _ in 0..runs {
        let started = Instant::now();
        let out = Command::new(&ctl)
            .arg("--socket")
            .arg(socket)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .with_context(|| format!("running {}", ctl.display()))?;
        ms.push(started.elapsed().as_secs_f64() * 1000.0);
        // `test` exits 1 for a blocked source: only 2 and 3 are failures.
        if matches!(out.status.code(), Some(2 | 3) | None) {
            bail!(
                "allowlistctl {args:?}: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
    }
    Ok(Summary::of(&ms))
}

/// `max_entries` for `n4` IPv4 and `n6` IPv6 entries, with 2% to spare for the reloads.
fn capacity(n4: usize, n6: usize) -> usize {
    (n4.max(n6) + n4.max(n6) / 50).max(1024)
}

/// A daemon [`start`] made; fields drop in order, the daemon first.
pub struct Started {
    pub daemon: Daemon,
    pub notify: UnixDatagram,
    pub dir: TestDir,
    pub lab: Lab,
    /// From the spawn to its READY=1.
    pub seconds: f64,
}

/// The release allowlistd in a fresh lab and directory on list files of `v4` and `v6`
/// (`size` in all), ready.
pub fn start(size: usize, v4: &[IpNet], v6: &[IpNet]) -> Result<Started> {
    let capacity = capacity(v4.len(), v6.len());
    let lab = Lab::new();
    let dir = TestDir::new();
    write_lists(dir.path(), v4, v6)?;
    let config = Config::new(&dir, lab.server_if());
    let text = with_top_level(
        &config.render(),
        &format!("max_entries = {capacity}\nlist_files = [\"v4.list\", \"v6.list\"]\n"),
    );
    let config_path = dir.join("allowlist.toml");
    fs::write(&config_path, text)?;
    let notify_path = dir.join("notify.sock");
    let notify = UnixDatagram::bind(&notify_path)?;
    let mut cmd = Daemon::command(&config_path);
    cmd.env("NOTIFY_SOCKET", &notify_path);
    let spawned = Instant::now();
    let daemon = Daemon::spawn_command(
        &lab.server,
        cmd,
        &SpawnOptions {
            tag: Some(format!("allowlistd-{size}")),
            echo: false,
        },
    );
    let ready = wait_notify(&notify, "READY=1", Duration::from_secs(300))
        .with_context(|| format!("daemon log:\n{}", daemon.log()))?;
    Ok(Started {
        daemon,
        notify,
        dir,
        lab,
        seconds: (ready - spawned).as_secs_f64(),
    })
}

fn daemon_run(settings: &Settings, size: usize, out: &mut Outcome) -> Result<()> {
    let (n4, n6) = split(size);
    let mut v4 = List::v4(n4, settings.seed);
    let mut v6 = List::v6(n6, settings.seed);
    let capacity = capacity(n4, n6);
    // Each start in a fresh namespace and directory, so that none adopts the last one's maps;
    // the last daemon stays for the rest.
    let mut applies = Vec::new();
    // Bound in this order so that the daemon drops first, the lab last.
    let Started {
        lab: _lab,
        dir,
        notify,
        mut daemon,
        ..
    } = loop {
        let started = start(size, &v4.nets, &v6.nets)?;
        applies.push(started.seconds);
        if applies.len() >= settings.repeats {
            break started;
        }
        let mut daemon = started.daemon;
        daemon.signal(Signal::SIGTERM);
        daemon.wait_exit(Duration::from_secs(60))?;
    };
    let apply = Summary::of(&applies).median;
    let pid = daemon.pid().as_raw();
    let (peak, _) = rss_mib(pid)?;
    let (kernel, maps) = map_memory(pid)?;
    out.maps.push((size, maps));
    out.rows.push(Row {
        tool: "allowlistd",
        what: "start",
        entries: size,
        seconds: apply,
        peak_rss_mib: Some(peak),
        kernel_mib: Some(kernel),
        note: format!(
            "{n4} IPv4 + {n6} IPv6 from list files, max_entries {capacity}; to sd_notify READY=1; median of {} starts (ms: {})",
            applies.len(),
            listed_ms(&applies)
        ),
    });
    eprintln!(
        "bench: allowlistd with {size} entries: enforcing after {apply:.2} s, peak RSS {peak:.0} MiB"
    );

    if settings.reload_sizes.contains(&size) {
        let socket = dir.join("control.sock");
        let test = ctl_latency(
            &socket,
            &["test", &ALLOWED_V4.to_string(), "--port", "2222"],
            settings.ctl_runs,
        )?;
        let blocked = ctl_latency(
            &socket,
            &["test", &BLOCKED_V4.to_string(), "--port", "2222"],
            settings.ctl_runs,
        )?;
        let status = ctl_latency(&socket, &["status"], settings.ctl_runs)?;
        // What the web console's first screen asks for.
        let first_page = ctl_latency(
            &socket,
            &["--json", "list", "--limit", "500"],
            settings.ctl_runs.min(20),
        )?;
        out.ctl.push(("test (allowed)".into(), size, test));
        out.ctl.push(("test (blocked)".into(), size, blocked));
        out.ctl.push(("status".into(), size, status));
        out.ctl
            .push(("list --limit 500 --json".into(), size, first_page));

        // 1%: that many removed and as many added, per family in proportion; each reload a
        // new 1%.
        let (r4, r6) = split(size / 100);
        let mut reloads = Vec::new();
        let mut line = String::new();
        for _ in 0..settings.repeats {
            v4.shrink(r4);
            v4.grow(r4);
            v6.shrink(r6);
            v6.grow(r6);
            write_lists(dir.path(), &v4.nets, &v6.nets)?;
            let signalled = Instant::now();
            daemon.signal(Signal::SIGHUP);
            wait_notify(&notify, "RELOADING=1", Duration::from_secs(120))?;
            let applied = wait_notify(&notify, "READY=1", Duration::from_secs(300))
                .with_context(|| format!("daemon log:\n{}", daemon.log()))?;
            reloads.push((applied - signalled).as_secs_f64());
            line = daemon
                .wait_for_log("reload applied", Duration::from_secs(10))
                .unwrap_or_else(|e| format!("(no reload line: {e:#})"));
        }
        let reload = Summary::of(&reloads).median;
        let (peak, _) = rss_mib(pid)?;
        let (kernel, _) = map_memory(pid)?;
        out.rows.push(Row {
            tool: "allowlistd",
            what: "reload 1%",
            entries: size,
            seconds: reload,
            peak_rss_mib: Some(peak),
            kernel_mib: Some(kernel),
            note: format!(
                "+{} -{} entries; SIGHUP to READY=1; median of {} reloads (ms: {}); {}",
                r4 + r6,
                r4 + r6,
                reloads.len(),
                listed_ms(&reloads),
                line.trim()
            ),
        });
        eprintln!(
            "bench: allowlistd reload of 1% of {size}: {:.0} ms",
            reload * 1000.0
        );
    }
    daemon.signal(Signal::SIGTERM);
    daemon.wait_exit(Duration::from_secs(60))?;
    Ok(())
}

fn peers_run(settings: &Settings, size: usize, out: &mut Outcome) -> Result<()> {
    let (n4, n6) = split(size);
    let v4 = List::v4(n4, settings.seed);
    let v6 = List::v6(n6, settings.seed);
    let dir = tempfile::tempdir()?;
    let ns = Netns::new();
    let nft = dir.path().join("sets.nft");
    fs::write(
        &nft,
        lists::nft_file("inet", "bench", &v4.nets, &v6.nets, ""),
    )?;
    if which("nft") {
        let (seconds, rss) = timed(ns.name(), "nft", &["-f".as_ref(), nft.as_os_str()])?;
        out.rows.push(Row {
            tool: "nft -f",
            what: "load",
            entries: size,
            seconds,
            peak_rss_mib: Some(rss),
            kernel_mib: None,
            note: "interval sets (inet family), one file".into(),
        });
        eprintln!("bench: nft -f with {size} entries: {seconds:.2} s");
    }
    if which("ipset") {
        let restore = dir.path().join("sets.ipset");
        fs::write(&restore, lists::ipset_file(&v4.nets, &v6.nets))?;
        let (seconds, rss) = timed(
            ns.name(),
            "ipset",
            &["restore".as_ref(), "-f".as_ref(), restore.as_os_str()],
        )?;
        let listing = ns.exec("ipset", &["list", "-t"])?;
        let kernel: f64 = String::from_utf8_lossy(&listing.stdout)
            .lines()
            .filter_map(|l| l.strip_prefix("Size in memory:"))
            .filter_map(|v| v.trim().parse::<f64>().ok())
            .sum::<f64>()
            / 1048576.0;
        out.rows.push(Row {
            tool: "ipset restore",
            what: "load",
            entries: size,
            seconds,
            peak_rss_mib: Some(rss),
            kernel_mib: Some(kernel),
            note: "hash:net sets (inet, inet6)".into(),
        });
        let _ = ns.exec("ipset", &["destroy"]);
        eprintln!("bench: ipset restore with {size} entries: {seconds:.2} s");
    }
    Ok(())
}

pub fn which(tool: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|dir| dir.join(tool).is_file()))
        || Path::new("/usr/sbin").join(tool).is_file()
}

pub fn run(settings: &Settings) -> Result<Outcome> {
    let mut out = Outcome::default();
    for &size in &settings.sizes {
        daemon_run(settings, size, &mut out)
            .with_context(|| format!("allowlistd with {size} entries"))?;
        peers_run(settings, size, &mut out)
            .with_context(|| format!("nft/ipset with {size} entries"))?;
    }
    Ok(out)
}

pub fn table(out: &Outcome) -> String {
    use std::fmt::Write as _;
    let mut s = String::new();
    let opt = |v: Option<f64>| v.map_or_else(|| "-".to_owned(), |v| format!("{v:.1}"));
    let _ = writeln!(
        s,
        "{:<14} {:<10} {:>9} {:>9} {:>10} {:>11}  note",
        "tool", "what", "entries", "seconds", "peak MiB", "kernel MiB"
    );
    for r in &out.rows {
        let _ = writeln!(
            s,
            "{:<14} {:<10} {:>9} {:>9.3} {:>10} {:>11}  {}",
            r.tool,
            r.what,
            r.entries,
            r.seconds,
            opt(r.peak_rss_mib),
            opt(r.kernel_mib),
            r.note
        );
    }
    let _ = writeln!(s, "\nallowlistctl round trip (process start included), ms:");
    for (cmd, size, sum) in &out.ctl {
        let _ = writeln!(
            s,
            "  {cmd:<16} {size:>9} entries: p50 {:.2}  p99 {:.2}  (n={})",
            sum.median, sum.p99, sum.n
        );
    }
    s
}
