//! allowlistd's life: start (load, fill, attach or adopt, pin), serve the control socket,
//! reload on SIGHUP, watch the interfaces, and stop on SIGTERM/SIGINT, detaching unless told
//! to leave the filter enforcing. Everything stateful lives in [`Daemon`], owned by one loop,
//! so changes from signals and from clients are applied one at a time.

mod commands;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use allowlist_common::verdict::Reason;
use anyhow::{Context, Result};
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::mpsc;
use tracing::{error, info, warn};

use crate::attach::Attachments;
use crate::bpffs::PinDir;
use crate::config::{Config, edit::write_atomic};
use crate::control::server;
use crate::filter::{Changes, Filter};

/// How often vanished or returning interfaces are noticed.
const WATCH_INTERVAL: Duration = Duration::from_secs(2);

struct Daemon {
    config: Config,
    /// The file's text as last read or written by the daemon: a CLI change refuses to
    /// overwrite a file that no longer matches it (an edit by hand).
    config_text: String,
    filter: Filter,
    attachments: Attachments,
    pins: PinDir,
    revision: u64,
    started: Instant,
    /// A change made with `--confirm-within`, rolled back unless confirmed in time.
    pending: Option<PendingChange>,
}

struct PendingChange {
    deadline: tokio::time::Instant,
    description: String,
    restore_text: String,
    restore_config: Config,
}

/// Reads and validates the config file, keeping its text.
fn read_config(path: &Path) -> Result<(Config, String)> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let config = Config::parse(path, &text)?;
    config.check_interfaces_exist()?;
    Ok((config, text))
}

pub async fn run(config_path: &Path) -> Result<()> {
    // Handlers first: a signal that arrives while starting must not kill the daemon with the
    // default action, leaving pins and links behind.
    let mut hup = signal(SignalKind::hangup())?;
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let mut usr1 = signal(SignalKind::user_defined1())?;
    let (config, config_text) = read_config(config_path)?;
    std::fs::create_dir_all(&config.state_dir)
        .with_context(|| format!("creating state_dir {}", config.state_dir.display()))?;
    let pins = PinDir::open(&config.bpffs_dir)?;
    let (listener, gid) = server::bind(&config.control_socket, &config.control_group)?;
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
    let revision = read_revision(&config.state_dir) + 1;
    let mut daemon = Daemon {
        config,
        config_text,
        filter,
        attachments,
        pins,
        revision,
        started: Instant::now(),
        pending: None,
    };
    daemon.save_revision();
    let (tx, mut requests) = mpsc::channel(64);
    let socket = daemon.config.control_socket.clone();
    tokio::spawn(server::serve(listener, gid, socket.clone(), tx));
    info!(
        "allowlistd ready: {} entries, ports {:?}, {}, interfaces {}, revision {}, control socket {}",
        daemon.config.entries.len(),
        daemon.config.protected_tcp_ports,
        if daemon.config.active {
            "active"
        } else {
            "inactive"
        },
        daemon.describe_interfaces(),
        daemon.revision,
        socket.display(),
    );

    let mut watch = tokio::time::interval(WATCH_INTERVAL);
    let stop = loop {
        let rollback_at = daemon.pending.as_ref().map(|p| p.deadline);
        tokio::select! {
            Some(incoming) = requests.recv() => {
                let request = incoming.request;
                let response = daemon.handle(request.command, request.options, &incoming.peer);
                let _ = incoming.reply.send(response);
            }
            () = sleep_until(rollback_at) => daemon.roll_back(),
            _ = hup.recv() => daemon.reload_on_signal(),
            _ = usr1.recv() => daemon.log_counters(),
            _ = watch.tick() => daemon.watch(),
            _ = term.recv() => break "SIGTERM",
            _ = int.recv() => break "SIGINT",
        }
    };
    let _ = std::fs::remove_file(&socket);
    daemon.stop(stop)
}

async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

fn revision_path(state_dir: &Path) -> PathBuf {
    state_dir.join("revision")
}

/// The last revision a daemon on this host reached, so revisions never repeat across
/// restarts (`--if-revision` would otherwise accept a stale number).
fn read_revision(state_dir: &Path) -> u64 {
    std::fs::read_to_string(revision_path(state_dir))
        .ok()
        .and_then(|text| text.trim().parse().ok())
        .unwrap_or(0)
}

impl Daemon {
    fn save_revision(&self) {
        let path = revision_path(&self.config.state_dir);
        if let Err(e) = write_atomic(&path, &format!("{}\n", self.revision)) {
            warn!("saving the revision to {}: {e}", path.display());
        }
    }

    /// Makes `new` the enforced config: maps, then interfaces. On success the revision moves.
    fn switch_to(&mut self, new: Config, text: String) -> Result<String> {
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
            summary += if active {
                ", now active"
            } else {
                ", now inactive"
            };
        }
        if !attached.is_empty() || !detached.is_empty() {
            summary += &format!(", interfaces attached {attached:?} detached {detached:?}");
        }
        self.config = new;
        self.config_text = text;
        self.revision += 1;
        self.save_revision();
        Ok(format!("{summary}, revision {}", self.revision))
    }

    /// Re-reads the file; `Err` says why nothing changed.
    fn reload(&mut self) -> Result<String> {
        if let Some(pending) = &self.pending {
            anyhow::bail!(
                "a change awaits confirmation ({}); run `allowlistctl confirm` or wait for its rollback first",
                pending.description
            );
        }
        let (new, text) = read_config(&self.config.path)?;
        if let Some(why) = needs_restart(&self.config, &new) {
            anyhow::bail!(why);
        }
        self.switch_to(new, text)
    }

    fn reload_on_signal(&mut self) {
        match self.reload() {
            Ok(summary) => info!("reload applied: {summary}"),
            // Maps and links keep whatever state they reached: every step of apply keeps
            // allowed sources allowed, and the next reload converges from there.
            Err(e) => error!("reload failed, still enforcing the previous config: {e:#}"),
        }
    }

    fn roll_back(&mut self) {
        let Some(pending) = self.pending.take() else {
            return;
        };
        let result = write_atomic(&pending.restore_config.path, &pending.restore_text)
            .context("restoring the config file")
            .and_then(|()| self.switch_to(pending.restore_config, pending.restore_text));
        match result {
            Ok(summary) => warn!(
                "not confirmed in time: rolled back `{}` ({summary})",
                pending.description
            ),
            Err(e) => error!("rolling back `{}` failed: {e:#}", pending.description),
        }
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

    fn interface_name(&self, ifindex: u32) -> String {
        self.attachments
            .describe()
            .find(|(_, i, _)| *i == ifindex)
            .map_or_else(|| format!("ifindex {ifindex}"), |(n, _, _)| n.to_string())
    }

    fn log_counters(&self) {
        let counters = match self.filter.counters() {
            Ok(c) => c,
            Err(e) => {
                warn!("reading counters: {e:#}");
                return;
            }
        };
        let (mut passed, mut dropped) = (0, 0);
        for (ifindex, c) in &counters {
            let (p, d) = totals(c);
            let drops: Vec<String> = Reason::ALL
                .iter()
                .filter(|r| r.is_drop() && c.by_reason[**r as usize] > 0)
                .map(|r| format!("{} {}", r.name(), c.by_reason[*r as usize]))
                .collect();
            info!(
                "counters {}: passed {p}, dropped {d}{}",
                self.interface_name(*ifindex),
                if drops.is_empty() {
                    String::new()
                } else {
                    format!(" ({})", drops.join(", "))
                }
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
        self.attachments.detach_all().context("detaching on exit")?;
        let dir = self.pins.path().display().to_string();
        self.pins.remove()?;
        info!("{signal}: detached from every interface and removed the pins under {dir}");
        Ok(())
    }
}

/// (passed, dropped) packets in one set of counters.
fn totals(c: &allowlist_common::maps::Counters) -> (u64, u64) {
    Reason::ALL.iter().fold((0, 0), |(p, d), r| {
        let n = c.by_reason[*r as usize];
        if r.is_drop() { (p, d + n) } else { (p + n, d) }
    })
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
    if old.control_socket != new.control_socket || old.control_group != new.control_group {
        return Some("control_socket or control_group changed: restart allowlistd".into());
    }
    None
}
