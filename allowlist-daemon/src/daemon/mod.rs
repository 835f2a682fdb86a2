//! allowlistd's life: start (load, fill, attach or adopt, pin), serve the control socket,
//! reload on SIGHUP, watch the interfaces, and stop on SIGTERM/SIGINT, detaching unless told
//! to leave the filter enforcing. Everything stateful lives in [`Daemon`], owned by one loop,
//! so changes from signals and from clients are applied one at a time.

mod audit_trail;
mod changes;
mod commands;
mod emergency;
mod expiry;
mod file_watch;
mod hits;
mod knocked;
mod list_query;
mod lockout;
mod observe;
mod reload;
mod sessions_view;
mod set_files;
mod views;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use allowlist_common::maps::BlockedEvent;
use allowlist_common::verdict::Reason;
use anyhow::{Context, Result};
use serde_json::json;
use tokio::io::Interest;
use tokio::io::unix::AsyncFd;
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::mpsc;
use tracing::{error, info, warn};

use allowlist_control::audit::{Action, Actor, AuditLog, Outcome, Via};
use allowlist_loader::attach::Attachments;
use std::collections::HashMap;
use std::net::SocketAddr;

use crate::blocked::Blocked;
use crate::emergency::Emergency;
use crate::knock::{Grant, Guard, KnockHandle, KnockKeys, KnockSettings, Listener};
use crate::metrics;
use crate::notify;
use crate::server;
use allowlist_config::{Config, MAX_PROBLEMS, edit::write_atomic};
use allowlist_loader::bpffs::PinDir;
use allowlist_loader::filter::{Filter, ListSpec};
use allowlist_loader::link_events::LinkEvents;

/// How often sessions are sampled and interfaces looked at even without a link event (the
/// fallback should events be lost).
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
    audit: AuditLog,
    emergency: Option<Emergency>,
    blocked: Blocked,
    /// When each established connection to a protected port was first seen (sampled on the
    /// watch tick), for `allowlistctl sessions`.
    sessions_seen: HashMap<(SocketAddr, SocketAddr, u32), jiff::Timestamp>,
    reloads: ReloadStats,
    /// Last-hit times saved by an earlier daemon (see `hits`).
    earlier_hits: HashMap<crate::hit_history::Entry, jiff::Timestamp>,
    hits_saved: Instant,
    /// When to try again to take ended timed entries out, after a failure.
    expiry_retry: Option<tokio::time::Instant>,
    /// The knock listener's keys and counters, when `knock_listen` is set.
    knocks: Option<KnockHandle>,
    /// The config's files watched for changes, when `watch = true`.
    file_watch: Option<file_watch::FileWatch>,
    /// Where the watch sends its events (the main loop receives them).
    watch_events: mpsc::Sender<()>,
}

/// For /metrics.
struct ReloadStats {
    total: u64,
    last_ok: bool,
    last_at: jiff::Timestamp,
}

/// Start-up requests from the command line.
#[derive(Default)]
pub struct StartOptions {
    /// The break-glass path: an emergency disable from the console, with its reason.
    pub emergency: Option<(Duration, String)>,
}

struct PendingChange {
    deadline: tokio::time::Instant,
    description: String,
    /// The texts of the files the change wrote, as they were before it.
    restore_texts: set_files::Edits,
    restore_config: Config,
}

/// Reads and validates the config file, keeping its text.
fn read_config(path: &Path) -> Result<(Config, String)> {
    let (config, text) = Config::read_checked(path, MAX_PROBLEMS)?;
    // The parser's scratch would otherwise stay resident beside both configs through the
    // diff and apply (the heap keeps it once glibc's mmap threshold has risen).
    give_back_free_heap();
    Ok((config, text))
}

/// How the daemon ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Exit {
    /// SIGTERM or SIGINT: detached (unless `detach_on_exit = false`).
    Stopped,
    /// SIGUSR2: exited leaving the filter enforcing, for the next daemon to adopt (an upgrade
    /// or restart without a gap).
    HandedOver,
}

/// The exit status of a handover: the unit restarts the daemon on it
/// (`RestartForceExitStatus=`), and the new one adopts the pinned filter.
pub const HANDOVER_EXIT_STATUS: u8 = 75;

pub async fn run(config_path: &Path, start: StartOptions) -> Result<Exit> {
    // Handlers first: a signal that arrives while starting must not kill the daemon with the
    // default action, leaving pins and links behind.
    let mut hup = signal(SignalKind::hangup())?;
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let mut usr1 = signal(SignalKind::user_defined1())?;
    let mut usr2 = signal(SignalKind::user_defined2())?;
    let started_at = std::time::SystemTime::now();
    let (config, config_text) = read_config(config_path)?;
    // Before anything is created: on a kernel too old for the program, one line saying so.
    allowlist_loader::kernel::require_features()?;
    if let Some((duration, reason)) = &start.emergency {
        crate::emergency::check(*duration, reason).map_err(anyhow::Error::msg)?;
    }
    std::fs::create_dir_all(&config.state_dir)
        .with_context(|| format!("creating state_dir {}", config.state_dir.display()))?;
    let audit = AuditLog::open(
        &config.audit_log,
        config.audit_max_bytes,
        config.audit_keep_files,
    )?;
    let pins = PinDir::open(&config.bpffs_dir)?;
    let fd_limit = server::raise_fd_limit();
    if fd_limit < server::MAX_CONNECTIONS as u64 + 256 {
        warn!(
            "the open-files limit is {fd_limit}: fewer than {} control clients may be served at once",
            server::MAX_CONNECTIONS
        );
    }
    let (listener, gid) = server::bind(&config.control_socket, &config.control_group)?;
    let mut filter = Filter::load_with(config.max_entries, Some(pins.path()))?;
    apply(&mut filter, &config)?;
    let earlier_hits = hits::restore(&mut filter, &config);
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
    // One slot: an event waiting already says "look at the files".
    let (watch_events, mut file_events) = mpsc::channel(1);
    let mut daemon = Daemon {
        config,
        config_text,
        filter,
        attachments,
        pins,
        revision,
        started: Instant::now(),
        pending: None,
        audit,
        emergency: None,
        blocked: Blocked::default(),
        sessions_seen: HashMap::new(),
        reloads: ReloadStats {
            total: 0,
            last_ok: true,
            last_at: jiff::Timestamp::now(),
        },
        earlier_hits,
        hits_saved: Instant::now(),
        expiry_retry: None,
        knocks: None,
        file_watch: None,
        watch_events,
    };
    // SAFETY: the ring buffer owns its map fd for as long as the AsyncFd owns the ring buffer.
    let mut events = unsafe {
        AsyncFd::register_with_interest(daemon.filter.take_blocked_events()?, Interest::READABLE)
    }
    .map_err(|e| anyhow::anyhow!("watching the blocked-events ring buffer: {e}"))?;
    let link_events = LinkEvents::subscribe()?;
    daemon.save_revision();
    daemon.start_records(start)?;
    // Timed entries that ended while no daemon ran (the kernel stopped admitting them then).
    daemon.expire_ended(Some(started_at));
    let (snapshot_tx, mut snapshots) = mpsc::channel(8);
    if let Some(addr) = daemon.config.metrics_listen {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("binding metrics_listen {addr}"))?;
        info!("serving Prometheus metrics on http://{addr}/metrics");
        tokio::spawn(metrics::serve(
            listener,
            snapshot_tx,
            daemon.config.metrics_entry_series,
        ));
    }
    let (tx, mut requests) = mpsc::channel(64);
    let socket = daemon.config.control_socket.clone();
    tokio::spawn(server::serve(listener, gid, socket.clone(), tx));
    let (grant_tx, mut grants) = mpsc::channel(64);
    daemon.knocks = start_knocks(&daemon.config, grant_tx)?;
    daemon.follow_files();
    let protection = if daemon.config.has_named_lists() {
        format!("lists: {}", daemon.config.lists_summary())
    } else {
        format!(
            "ports {}; {}",
            allowlist_config::words::ports(&daemon.config.protected_tcp_ports),
            if daemon.config.active {
                "active"
            } else {
                "inactive"
            }
        )
    };
    info!(
        "allowlistd ready: {}; {protection}; interfaces {}; revision {}; control socket {}",
        allowlist_config::words::count(daemon.config.entries.len(), "entry", "entries"),
        daemon.describe_interfaces(),
        daemon.revision,
        socket.display(),
    );

    notify::ready(&daemon.config, daemon.revision, daemon.emergency.as_ref());
    let mut watchdog = notify::Watchdog::from_env();
    let mut watch = tokio::time::interval(WATCH_INTERVAL);
    let stop = loop {
        let rollback_at = daemon.pending.as_ref().map(|p| p.deadline);
        let expiry_at = daemon.next_expiry();
        let watch_due = daemon.watch_due();
        let emergency_ends_at = daemon
            .emergency
            .as_ref()
            .map(|e| tokio::time::Instant::now() + e.remaining().unwrap_or_default());
        tokio::select! {
            Some(incoming) = requests.recv() => {
                let request = incoming.request;
                let response = daemon.handle(request.command, request.options, &incoming.peer);
                let _ = incoming.reply.send(response);
            }
            ready = events.readable_mut() => {
                let mut ready = ready.context("waiting on the blocked-events ring buffer")?;
                let now = jiff::Timestamp::now();
                let ring = ready.get_inner_mut();
                while let Some(item) = ring.next() {
                    if item.len() >= std::mem::size_of::<BlockedEvent>() {
                        // SAFETY: the program writes whole BlockedEvents (plain integers);
                        // the ring buffer's records need not be aligned for it.
                        let event = unsafe { item.as_ptr().cast::<BlockedEvent>().read_unaligned() };
                        let list = daemon
                            .filter
                            .lists()
                            .iter()
                            .find(|l| u32::from(l.number) == u32::from(event.list))
                            .map_or("", |l| l.name.as_str());
                        daemon.blocked.record(&event, list, now);
                    }
                }
                ready.clear_ready();
            }
            ready = link_events.readable() => {
                let mut ready = ready.context("waiting on rtnetlink link events")?;
                if ready.get_inner().drain() {
                    daemon.watch_interfaces();
                }
                ready.clear_ready();
            }
            Some(grant) = grants.recv() => daemon.knock_granted(grant),
            Some(reply) = snapshots.recv() => {
                let _ = reply.send(daemon.snapshot());
            }
            () = sleep_until(rollback_at) => daemon.roll_back(),
            () = sleep_until(emergency_ends_at) => daemon.emergency_expired(),
            () = sleep_until(expiry_at) => daemon.expire_ended(None),
            _ = hup.recv() => daemon.reload_on_signal(),
            Some(()) = file_events.recv() => daemon.files_touched(),
            () = sleep_until(watch_due) => daemon.reload_on_watch(),
            _ = usr1.recv() => daemon.log_counters(),
            _ = watch.tick() => daemon.watch(),
            () = watchdog.tick() => notify::watchdog(),
            _ = term.recv() => break ("SIGTERM", Exit::Stopped),
            _ = int.recv() => break ("SIGINT", Exit::Stopped),
            _ = usr2.recv() => break ("SIGUSR2", Exit::HandedOver),
        }
        // Only sent when it changed (a client's change, a rollback, an emergency's end).
        notify::status(&daemon.config, daemon.revision, daemon.emergency.as_ref());
    };
    let (signal, exit) = stop;
    notify::stopping(signal);
    let _ = std::fs::remove_file(&socket);
    daemon.stop(signal, exit)?;
    Ok(exit)
}

/// Listens for knocks where `knock_listen` says (none: off), sending grants to `grants`.
fn start_knocks(config: &Config, grants: mpsc::Sender<Grant>) -> Result<Option<KnockHandle>> {
    let settings = KnockSettings::of(config);
    if settings.listen.is_empty() {
        return Ok(None);
    }
    let keys = KnockKeys::load(&settings.keys_file)?;
    let guard = Guard::new(keys, &settings, &config.state_dir)?;
    let listener = Listener::bind(&settings.listen, guard).with_context(|| {
        format!(
            "binding knock_listen {}",
            allowlist_config::words::list(&settings.listen)
        )
    })?;
    let handle = listener.handle();
    info!(
        "receiving knocks on {} (keys: {})",
        allowlist_config::words::list(&settings.listen),
        settings.keys_file.display()
    );
    tokio::spawn(listener.run(grants));
    Ok(Some(handle))
}

async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

/// Brings the maps to what `config` says, straight from its entries.
fn apply(filter: &mut Filter, config: &Config) -> Result<()> {
    let lists: Vec<ListSpec> = config
        .lists
        .iter()
        .map(|l| ListSpec {
            name: &l.name,
            mode: l.mode,
            tcp_ports: &l.tcp_ports,
            udp_ports: &l.udp_ports,
        })
        .collect();
    // A network in several lists comes once, with all of them (its entries are next to
    // each other in network order).
    let mut entries = config
        .entries_by_net()
        .map(|e| (e.net, 1u32 << e.list))
        .peekable();
    let merged = std::iter::from_fn(move || {
        let (net, mut lists) = entries.next()?;
        while let Some((_, more)) = entries.next_if(|(next, _)| *next == net) {
            lists |= more;
        }
        Some((net, lists))
    });
    let mut ends = allowlist_loader::filter::Timed::new();
    for entry in config.timed_entries() {
        let end = config.end_of(entry).expect("a timed entry");
        ends.entry(entry.net)
            .or_default()
            .push((1 << entry.list, end));
    }
    let applied = filter.apply_parts(&lists, merged, &ends);
    // Loading and comparing a million entries leaves tens of MB of freed heap behind; give it
    // back rather than hold it until the next reload.
    give_back_free_heap();
    applied
}

fn give_back_free_heap() {
    // SAFETY: malloc_trim only returns free memory to the system.
    unsafe { libc::malloc_trim(0) };
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

    fn watch(&mut self) {
        if self.hits_saved.elapsed() >= crate::hit_history::SAVE_INTERVAL {
            self.save_hits();
        }
        if !self.config.protected_tcp_ports.is_empty() {
            match crate::sessions::established(&self.config.protected_tcp_ports) {
                Ok(found) => self.note_sessions(&found),
                Err(e) => warn!("{e}"),
            }
        }
        self.watch_interfaces();
    }

    fn watch_interfaces(&mut self) {
        self.attachments.watch(
            self.filter.program(),
            &self.config.interfaces,
            self.config.xdp_mode,
        );
    }

    fn stop(mut self, signal: &str, exit: Exit) -> Result<()> {
        self.log_counters();
        // Before a detach removes the counters with the pins.
        self.save_hits();
        let detach = exit == Exit::Stopped && self.config.detach_on_exit;
        let after = json!({ "detached": detach, "signal": signal });
        let _ = self.record(
            Actor::daemon(Via::Signal),
            Action::Stop,
            serde_json::Value::Null,
            after,
            Outcome::Ok,
            self.revision,
        );
        if exit == Exit::HandedOver {
            info!(
                "{signal}: handing over: exiting with the filter enforcing, for the next allowlistd to adopt"
            );
            return Ok(());
        }
        if !detach {
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
    if old.metrics_listen != new.metrics_listen {
        return Some("metrics_listen changed: restart allowlistd".into());
    }
    if old.control_socket != new.control_socket || old.control_group != new.control_group {
        return Some("control_socket or control_group changed: restart allowlistd".into());
    }
    if (&old.knock_listen, &old.knock_keys, old.knock_window)
        != (&new.knock_listen, &new.knock_keys, new.knock_window)
    {
        return Some(
            "knock_listen, knock_keys or knock_window changed: restart allowlistd (a reload \
             re-reads the knock_keys file itself)"
                .into(),
        );
    }
    None
}
