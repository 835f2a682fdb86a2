//! allowlistd's life: start (load, fill, attach or adopt, pin), reload on SIGHUP, watch the
//! interfaces, and stop on SIGTERM/SIGINT, detaching unless told to leave the filter enforcing.

use std::path::{Path, PathBuf};
use std::time::Duration;

use allowlist_common::verdict::Reason;
use anyhow::{Context, Result};
use tokio::signal::unix::{SignalKind, signal};
use tracing::{error, info, warn};

use crate::attach::Attachments;
use crate::bpffs::PinDir;
use crate::config::Config;
use crate::filter::{Changes, Filter};

/// How often vanished or returning interfaces are noticed.
const WATCH_INTERVAL: Duration = Duration::from_secs(2);

struct Daemon {
    config_path: PathBuf,
    config: Config,
    filter: Filter,
    attachments: Attachments,
    pins: PinDir,
}

pub async fn run(config_path: &Path) -> Result<()> {
    let config = Config::load(config_path)?;
    config.check_interfaces_exist()?;
    let pins = PinDir::open(&config.bpffs_dir)?;
    let mut filter = Filter::load(config.max_entries)?;
    filter.apply(&config.rules())?;
    // The maps are complete before the program reaches any interface (or replaces a previous
    // daemon's program), so there is no moment of partial enforcement.
    let attachments = Attachments::adopt_or_attach(
        pins.path(),
        filter.program(),
        &config.interfaces,
        config.xdp_mode,
    )?;
    filter.pin(pins.path())?;
    let mut daemon = Daemon {
        config_path: config_path.to_path_buf(),
        config,
        filter,
        attachments,
        pins,
    };
    info!(
        "allowlistd ready: {} entries, ports {:?}, {}, interfaces {}",
        daemon.config.entries.len(),
        daemon.config.protected_tcp_ports,
        if daemon.config.active { "active" } else { "inactive" },
        daemon.describe_interfaces(),
    );

    let mut hup = signal(SignalKind::hangup())?;
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let mut usr1 = signal(SignalKind::user_defined1())?;
    let mut watch = tokio::time::interval(WATCH_INTERVAL);
    let stop = loop {
        tokio::select! {
            _ = hup.recv() => daemon.reload(),
            _ = usr1.recv() => daemon.log_counters(),
            _ = watch.tick() => daemon.watch(),
            _ = term.recv() => break "SIGTERM",
            _ = int.recv() => break "SIGINT",
        }
    };
    daemon.stop(stop)
}

impl Daemon {
    fn reload(&mut self) {
        let new = match Config::load(&self.config_path).and_then(|c| {
            c.check_interfaces_exist()?;
            Ok(c)
        }) {
            Ok(new) => new,
            Err(e) => {
                error!("reload failed, still enforcing the previous config: {e}");
                return;
            }
        };
        if let Some(why) = needs_restart(&self.config, &new) {
            error!("reload failed, still enforcing the previous config: {why}");
            return;
        }
        match self.apply(&new) {
            Ok(summary) => {
                info!("reload applied: {summary}");
                self.config = new;
            }
            // Maps and links are left as far as apply got: every step keeps allowed sources
            // allowed, and the next reload converges from there.
            Err(e) => error!("reload failed part-way: {e:#}"),
        }
    }

    fn apply(&mut self, new: &Config) -> Result<String> {
        let Changes {
            added,
            removed,
            recommented,
            ports_added,
            ports_removed,
            active,
        } = self.filter.apply(&new.rules())?;
        let (attached, detached) =
            self.attachments
                .sync(self.filter.program(), &new.interfaces, new.xdp_mode)?;
        let mut summary = format!("+{added} -{removed} entries");
        if recommented > 0 {
            summary += &format!(", {recommented} comments changed");
        }
        if !ports_added.is_empty() || !ports_removed.is_empty() {
            summary += &format!(", ports +{ports_added:?} -{ports_removed:?}");
        }
        if let Some(active) = active {
            summary += if active { ", now active" } else { ", now inactive" };
        }
        if !attached.is_empty() || !detached.is_empty() {
            summary += &format!(", interfaces attached {attached:?} detached {detached:?}");
        }
        Ok(summary)
    }

    fn watch(&mut self) {
        self.attachments.watch(
            self.filter.program(),
            &self.config.interfaces,
            self.config.xdp_mode,
        );
    }

    fn describe_interfaces(&self) -> String {
        let list: Vec<String> = self
            .attachments
            .describe()
            .map(|(name, _, mode)| format!("{name} ({mode})"))
            .collect();
        if list.is_empty() {
            "none".into()
        } else {
            list.join(", ")
        }
    }

    fn log_counters(&self) {
        let counters = match self.filter.counters() {
            Ok(c) => c,
            Err(e) => {
                warn!("reading counters: {e:#}");
                return;
            }
        };
        let name_of = |ifindex: u32| {
            self.attachments
                .describe()
                .find(|(_, i, _)| *i == ifindex)
                .map_or_else(|| format!("ifindex {ifindex}"), |(n, _, _)| n.to_string())
        };
        let (mut passed, mut dropped) = (0, 0);
        for (ifindex, c) in &counters {
            let mut drops = Vec::new();
            let (mut p, mut d) = (0, 0);
            for reason in Reason::ALL {
                let n = c.by_reason[reason as usize];
                if reason.is_drop() {
                    d += n;
                    if n > 0 {
                        drops.push(format!("{} {n}", reason.name()));
                    }
                } else {
                    p += n;
                }
            }
            info!(
                "counters {}: passed {p}, dropped {d}{}",
                name_of(*ifindex),
                if drops.is_empty() { String::new() } else { format!(" ({})", drops.join(", ")) }
            );
            passed += p;
            dropped += d;
        }
        info!("counters total: passed {passed}, dropped {dropped}");
    }

    fn stop(mut self, signal: &str) -> Result<()> {
        self.log_counters();
        if !self.config.detach_on_exit {
            info!("{signal}: exiting and leaving the filter enforcing (detach_on_exit = false)");
            return Ok(());
        }
        self.attachments
            .detach_all()
            .context("detaching on exit")?;
        let dir = self.pins.path().display().to_string();
        self.pins.remove()?;
        info!("{signal}: detached from every interface and removed the pins under {dir}");
        Ok(())
    }
}

/// Settings that only take effect at start: refusing the reload says so, instead of
/// silently running with a config that differs from the file.
fn needs_restart(old: &Config, new: &Config) -> Option<String> {
    if old.max_entries != new.max_entries {
        return Some(format!(
            "max_entries changed from {} to {}: map sizes are fixed while running; restart allowlistd",
            old.max_entries, new.max_entries
        ));
    }
    if old.bpffs_dir != new.bpffs_dir {
        return Some(format!(
            "bpffs_dir changed from {} to {}: restart allowlistd to move the pins",
            old.bpffs_dir.display(),
            new.bpffs_dir.display()
        ));
    }
    if old.xdp_mode != new.xdp_mode {
        return Some(
            "xdp_mode changed: attached interfaces keep their mode; stop allowlistd (which detaches) and start it again".into(),
        );
    }
    None
}
