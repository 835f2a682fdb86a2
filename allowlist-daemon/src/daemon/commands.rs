//! Requests from allowlistctl. A change is validated exactly as the config file is (it *is*
//! the config file, edited), checked against the caller's own address, written to disk
//! atomically, and only then applied and acknowledged.

use std::net::IpAddr;
use std::time::Duration;

use allowlist_common::verdict::Reason;
use ipnet::IpNet;
use tracing::info;

use serde_json::json;

use super::diff::{self, entry_info};
use super::{Daemon, PendingChange, read_config, totals};
use crate::audit::{self, Actor, Outcome, Via};
use crate::config::edit::{ConfigDoc, write_atomic};
use crate::config::{Config, Entry, check_comment, parse_net};
use crate::control::protocol::{
    AuditReport, BlockedReport, ChangeOptions, Changed, Command, EmergencyStatus, EntryList,
    ErrorKind, InterfaceStatus, Pending, PortVerdict, ReloadReport, Reply, Response, SessionInfo,
    SessionsReport, Status, TestReport,
};
use crate::control::server::Peer;
use crate::emergency;

/// The longest `--confirm-within` accepted: a forgotten confirmation should not hold the
/// list hostage for long.
const MAX_CONFIRM_WINDOW: Duration = Duration::from_secs(3600);

type Refusal = (ErrorKind, String);

fn invalid(message: impl Into<String>) -> Refusal {
    (ErrorKind::Invalid, message.into())
}

fn parse_cidr(text: &str) -> Result<IpNet, Refusal> {
    parse_net(text).map_err(|e| invalid(format!("`{text}`: {e}")))
}

impl Daemon {
    pub(super) fn handle(
        &mut self,
        command: Command,
        options: ChangeOptions,
        peer: &Peer,
    ) -> Response {
        let result = match command {
            Command::Status => Ok(Reply::Status(Box::new(self.status()))),
            Command::List { unused_for_secs } => self.list(unused_for_secs),
            Command::Test { ip, port } => self.test(&ip, port),
            Command::Reload { dry_run } => self.reload_request(dry_run, peer),
            Command::Confirm => self.confirm(peer),
            Command::EmergencyDisable { reason, for_secs } => self
                .emergency_disable(&reason, for_secs, peer)
                .map(Reply::Changed),
            Command::EmergencyEnd => self.emergency_end(peer).map(Reply::Changed),
            Command::Audit { since, action } => {
                self.audit_records(since.as_deref(), action.as_deref())
            }
            Command::AuditVerify => self.audit_verify(),
            Command::Blocked { top } => self.blocked_report(top.unwrap_or(20)),
            Command::Sessions {
                port,
                kill_unlisted,
            } => self.sessions(port, kill_unlisted, &options, peer),
            Command::Activate {
                add_current,
                kill_unlisted: true,
            } => self
                .change(
                    Command::Activate {
                        add_current,
                        kill_unlisted: true,
                    },
                    &options,
                    peer,
                )
                .and_then(|mut changed| {
                    let Reply::Sessions(report) = self.sessions(None, true, &options, peer)? else {
                        unreachable!("sessions() answers with Reply::Sessions");
                    };
                    changed.summary += &format!(
                        "; ended {} connections from unlisted sources",
                        report.killed
                    );
                    Ok(changed)
                })
                .map(Reply::Changed),
            change => self.change(change, &options, peer).map(Reply::Changed),
        };
        match result {
            Ok(reply) => Response::ok(reply),
            Err((kind, message)) => Response::error(kind, message),
        }
    }

    fn status(&self) -> Status {
        let counters = self.filter.counters().unwrap_or_default();
        let mut by_reason = std::collections::BTreeMap::new();
        for c in counters.values() {
            for reason in Reason::ALL {
                *by_reason.entry(reason.name().to_owned()).or_insert(0) +=
                    c.by_reason[reason as usize];
            }
        }
        let mut interfaces: Vec<InterfaceStatus> = self
            .config
            .interfaces
            .iter()
            .map(|name| {
                let attached = self.attachments.describe().find(|(n, _, _)| n == name);
                let counts = attached.and_then(|(_, ifindex, _)| counters.get(&ifindex));
                let (passed, dropped) = counts.map_or((0, 0), totals);
                let by_reason = counts
                    .map(|c| {
                        Reason::ALL
                            .iter()
                            .map(|r| (r.name().to_owned(), c.by_reason[*r as usize]))
                            .collect()
                    })
                    .unwrap_or_default();
                InterfaceStatus {
                    name: name.clone(),
                    xdp_mode: attached.map_or("detached".into(), |(_, _, mode)| mode.to_string()),
                    passed,
                    dropped,
                    by_reason,
                }
            })
            .collect();
        interfaces.sort_by(|a, b| a.name.cmp(&b.name));
        let v4 = self
            .config
            .entries
            .iter()
            .filter(|e| e.net.addr().is_ipv4())
            .count();
        Status {
            active: self.config.active,
            entries: self.config.entries.len(),
            entries_v4: v4,
            entries_v6: self.config.entries.len() - v4,
            capacity: self.filter.capacity(),
            protected_tcp_ports: self.config.protected_tcp_ports.iter().copied().collect(),
            passed: interfaces.iter().map(|i| i.passed).sum(),
            dropped: interfaces.iter().map(|i| i.dropped).sum(),
            interfaces,
            revision: self.revision,
            config: self.config.path.display().to_string(),
            uptime_secs: self.started.elapsed().as_secs(),
            counters: by_reason,
            pending_confirmation: self.pending_info(),
            emergency: self.emergency.as_ref().and_then(|e| {
                Some(EmergencyStatus {
                    remaining_secs: e.remaining()?.as_secs(),
                    until: e.until_utc(),
                    until_local: e.until_local(),
                    reason: e.reason.clone(),
                    by: e.by.clone(),
                })
            }),
        }
    }

    /// Entries with their hit counts; with `unused_for_secs`, only those not hit for that
    /// long.
    fn list(&self, unused_for_secs: Option<u64>) -> Result<Reply, Refusal> {
        let hits = self
            .filter
            .hits()
            .map_err(|e| (ErrorKind::Internal, format!("{e:#}")))?;
        let now_boot = crate::emergency::boot_ns();
        let now = jiff::Timestamp::now();
        let mut entries = Vec::new();
        for entry in &self.config.entries {
            let stat = hits.get(&entry.net).copied().unwrap_or_default();
            // Boot-time ns of the hit, turned into wall time by its age.
            let age = (stat.last_seen_ns != 0)
                .then(|| Duration::from_nanos(now_boot.saturating_sub(stat.last_seen_ns)));
            if let Some(limit) = unused_for_secs
                && age.is_some_and(|age| age < Duration::from_secs(limit))
            {
                continue;
            }
            let mut info = entry_info(entry);
            info.hits = stat.packets;
            info.last_hit = age.and_then(|age| {
                let age = jiff::SignedDuration::try_from(age).ok()?;
                Some(
                    now.checked_sub(age)
                        .ok()?
                        .round(jiff::Unit::Second)
                        .ok()?
                        .to_string(),
                )
            });
            entries.push(info);
        }
        Ok(Reply::List(EntryList {
            revision: self.revision,
            active: self.config.active,
            entries,
        }))
    }

    fn pending_info(&self) -> Option<Pending> {
        self.pending.as_ref().map(|p| Pending {
            change: p.description.clone(),
            rollback_in_secs: p
                .deadline
                .saturating_duration_since(tokio::time::Instant::now())
                .as_secs(),
        })
    }

    /// The live verdict from the kernel's maps for a SYN from `ip`, per port.
    fn test(&self, ip: &str, port: Option<u16>) -> Result<Reply, Refusal> {
        let addr: IpAddr = ip
            .trim()
            .parse()
            .map_err(|_| invalid(format!("`{ip}` is not an IP address")))?;
        let ports: Vec<u16> = match port {
            Some(p) => vec![p],
            None => self.filter.rules().ports.iter().copied().collect(),
        };
        let mut verdicts = Vec::new();
        for port in ports {
            let (reason, covering) = self
                .filter
                .verdict(addr, port)
                .map_err(|e| (ErrorKind::Internal, format!("{e:#}")))?;
            let entry = covering.and_then(|net| self.config.entries.iter().find(|e| e.net == net));
            let explanation = match (reason, entry) {
                (Reason::PassAllowedV4 | Reason::PassAllowedV6, Some(e))
                    if e.comment.is_empty() =>
                {
                    format!("allowed by {}", e.net)
                }
                (Reason::PassAllowedV4 | Reason::PassAllowedV6, Some(e)) => {
                    format!("allowed by {} ({})", e.net, e.comment)
                }
                (Reason::PassInactive, _) => "allowed: the list is inactive".to_owned(),
                (Reason::PassEmergency, _) => format!(
                    "allowed by the emergency disable{} (no entry covers {addr}; port {port} is protected)",
                    self.emergency
                        .as_ref()
                        .map_or(String::new(), |e| format!(" until {}", e.until_local()))
                ),
                (Reason::PassUnprotectedPort, _) => {
                    format!("allowed: port {port} is not protected")
                }
                (r, _) if r.is_drop() => {
                    format!(
                        "blocked: no entry covers {addr}; port {port} is protected; list active"
                    )
                }
                (r, _) => format!("allowed ({})", r.name()),
            };
            verdicts.push(PortVerdict {
                port,
                protected: reason != Reason::PassUnprotectedPort,
                allowed: !reason.is_drop(),
                entry: entry.map(entry_info),
                explanation,
            });
        }
        Ok(Reply::Test(TestReport {
            ip: addr.to_string(),
            active: self.filter.rules().active,
            verdicts,
        }))
    }

    fn reload_request(&mut self, dry_run: bool, peer: &Peer) -> Result<Reply, Refusal> {
        if dry_run {
            let (new, _) = read_config(&self.config.path).map_err(|e| invalid(format!("{e:#}")))?;
            let (added, removed) = diff::entries(&self.config, &new);
            let summary = format!("would apply {}", diff::summary(&self.config, &new));
            return Ok(Reply::Reload(ReloadReport {
                dry_run,
                revision: self.revision,
                added,
                removed,
                summary,
            }));
        }
        let actor = Actor::new(peer.uid, peer.pid, Via::Cli);
        let (summary, old) = self.reload(actor).map_err(invalid)?;
        info!(uid = peer.uid, pid = peer.pid, "reload applied: {summary}");
        let (added, removed) = diff::entries(&old, &self.config);
        Ok(Reply::Reload(ReloadReport {
            dry_run,
            revision: self.revision,
            added,
            removed,
            summary,
        }))
    }

    fn confirm(&mut self, peer: &Peer) -> Result<Reply, Refusal> {
        let actor = Actor::new(peer.uid, peer.pid, Via::Cli);
        let Some(description) = self.pending.as_ref().map(|p| p.description.clone()) else {
            self.record_refusal(actor, "confirm", "nothing awaits confirmation");
            return Err(invalid("nothing awaits confirmation"));
        };
        self.record(
            actor,
            "confirm",
            json!({ "pending": description }),
            json!({ "pending": null }),
            Outcome::Ok,
            self.revision,
        )
        .map_err(|m| (ErrorKind::Internal, m))?;
        let pending = self.pending.take().expect("checked above");
        info!(uid = peer.uid, "confirmed `{}`", pending.description);
        Ok(Reply::Changed(Changed {
            revision: self.revision,
            summary: format!("confirmed: {}", pending.description),
            pending_confirmation: None,
        }))
    }

    fn change(
        &mut self,
        command: Command,
        options: &ChangeOptions,
        peer: &Peer,
    ) -> Result<Changed, Refusal> {
        let actor = Actor::new(peer.uid, peer.pid, Via::Cli);
        let action = match &command {
            Command::Add { .. } => "add",
            Command::Edit { .. } => "edit",
            Command::Remove { .. } => "remove",
            Command::Activate { .. } => "activate",
            _ => "deactivate",
        };
        let (new, new_text, description) = match self.prepare_change(&command, options) {
            Ok(prepared) => prepared,
            Err(refusal) => {
                self.record_refusal(actor, action, &refusal.1);
                return Err(refusal);
            }
        };
        if new_text == self.config_text {
            return Ok(Changed {
                revision: self.revision,
                summary: format!(
                    "{description}: nothing to change, revision {}",
                    self.revision
                ),
                pending_confirmation: self.pending_info(),
            });
        }
        let (before, after) = diff::audit_values(&self.config, &new);
        self.record(
            actor.clone(),
            action,
            before,
            after,
            Outcome::Ok,
            self.revision + 1,
        )
        .map_err(|m| (ErrorKind::Internal, m))?;
        let failed = |daemon: &mut Daemon, refusal: Refusal| {
            let reason = Outcome::Failed {
                reason: refusal.1.clone(),
            };
            let revision = daemon.revision;
            let _ = daemon.record(
                actor.clone(),
                action,
                json!(null),
                json!(null),
                reason,
                revision,
            );
            refusal
        };
        let path = self.config.path.clone();
        if let Err(e) = write_atomic(&path, &new_text) {
            let refusal = (
                ErrorKind::Internal,
                format!("writing {}: {e}; nothing changed", path.display()),
            );
            return Err(failed(self, refusal));
        }
        let old_config = self.config.clone();
        let old_text = self.config_text.clone();
        let summary = match self.switch_to(new, new_text) {
            Ok(summary) => summary,
            Err(e) => {
                // Put the file back so that it keeps describing what the kernel enforces.
                let restored = write_atomic(&path, &old_text);
                let reapplied = self.filter.apply(&old_config.rules());
                let refusal = (
                    ErrorKind::Internal,
                    format!(
                        "applying `{description}` failed: {e:#}; {}",
                        match (restored, reapplied) {
                            (Ok(()), Ok(_)) => "the config file and maps were restored".to_owned(),
                            (r, a) =>
                                format!("restoring also failed: file {r:?}, maps {:?}", a.err()),
                        }
                    ),
                );
                return Err(failed(self, refusal));
            }
        };
        info!(uid = peer.uid, pid = peer.pid, "{description}: {summary}");
        if let Some(secs) = options.confirm_within_secs {
            let window = Duration::from_secs(secs);
            self.pending = Some(PendingChange {
                deadline: tokio::time::Instant::now() + window,
                description: description.clone(),
                restore_text: old_text,
                restore_config: old_config,
            });
            info!(
                "`{description}` rolls back in {}s unless confirmed",
                window.as_secs()
            );
        }
        Ok(Changed {
            revision: self.revision,
            summary: format!("{description}: {summary}"),
            pending_confirmation: self.pending_info(),
        })
    }

    /// Every check a change must pass, and what it would make of the config file.
    fn prepare_change(
        &self,
        command: &Command,
        options: &ChangeOptions,
    ) -> Result<(Config, String, String), Refusal> {
        if let Some(pending) = &self.pending {
            return Err((
                ErrorKind::Pending,
                format!(
                    "`{}` awaits confirmation: run `allowlistctl confirm` (or let it roll back) before the next change",
                    pending.description
                ),
            ));
        }
        if let Some(secs) = options.confirm_within_secs
            && Duration::from_secs(secs) > MAX_CONFIRM_WINDOW
        {
            return Err(invalid(format!(
                "--confirm-within is at most {}: a forgotten confirmation should not hold the list for long",
                humantime::format_duration(MAX_CONFIRM_WINDOW)
            )));
        }
        if let Some(expected) = options.if_revision
            && expected != self.revision
        {
            return Err((
                ErrorKind::Conflict,
                format!(
                    "the list is at revision {}, not {expected}: it changed since you looked; review it with `allowlistctl list`",
                    self.revision
                ),
            ));
        }
        let path = self.config.path.clone();
        let on_disk = std::fs::read_to_string(&path).map_err(|e| {
            (
                ErrorKind::Internal,
                format!("reading {}: {e}", path.display()),
            )
        })?;
        if on_disk != self.config_text {
            return Err((
                ErrorKind::Conflict,
                "config changed on disk; run `allowlistctl reload` first (or `reload --dry-run` to see how)".into(),
            ));
        }
        let (new_text, description) = self.edited_text(command, options)?;
        let new = Config::parse(&path, &new_text).map_err(|e| invalid(e.to_string()))?;
        new.check_interfaces_exist()
            .map_err(|e| invalid(e.to_string()))?;
        if let Some(caller) = options.caller
            && !options.force
            && let Some(port) = self
                .config
                .rules()
                .locks_out(&new.rules(), caller.ip, caller.port)
        {
            let own = IpNet::from(caller.ip);
            return Err((
                ErrorKind::Lockout,
                format!(
                    "refused: `{description}` would block your own address {} on port {port}; add {own} first, or pass --force",
                    caller.ip
                ),
            ));
        }
        Ok((new, new_text, description))
    }

    /// The config text after `command`, and a one-line description of the change.
    fn edited_text(
        &self,
        command: &Command,
        options: &ChangeOptions,
    ) -> Result<(String, String), Refusal> {
        let mut doc = ConfigDoc::parse(&self.config_text).map_err(|e| invalid(e.to_string()))?;
        let description = match command {
            Command::Add { cidr, comment } => {
                let net = parse_cidr(cidr)?;
                if let Some(comment) = comment {
                    check_comment(comment).map_err(|e| invalid(format!("--comment: {e}")))?;
                }
                self.check_overlap(net, None)?;
                doc.add_entry(net, comment.as_deref().unwrap_or_default())
                    .map_err(|e| invalid(e.to_string()))?;
                format!("add {net}")
            }
            Command::Edit {
                cidr,
                new_cidr,
                comment,
            } => {
                let net = self.own_entry(cidr)?;
                let new_net = new_cidr.as_deref().map(parse_cidr).transpose()?;
                if let Some(comment) = comment {
                    check_comment(comment).map_err(|e| invalid(format!("--comment: {e}")))?;
                }
                if let Some(new_net) = new_net {
                    self.check_overlap(new_net, Some(net))?;
                }
                if new_net.is_none() && comment.is_none() {
                    return Err(invalid("nothing to change: give --cidr and/or --comment"));
                }
                doc.edit_entry(net, new_net, comment.as_deref())
                    .map_err(|e| invalid(e.to_string()))?;
                match new_net {
                    Some(new_net) => format!("edit {net} -> {new_net}"),
                    None => format!("edit {net}"),
                }
            }
            Command::Remove { cidr } => {
                let net = self.own_entry(cidr)?;
                doc.remove_entry(net).map_err(|e| invalid(e.to_string()))?;
                format!("remove {net}")
            }
            Command::Activate { add_current, .. } => {
                if *add_current {
                    let caller = options.caller.ok_or_else(|| {
                        invalid("--add-current needs your address: run it from your SSH session or pass --current-ip")
                    })?;
                    let own = IpNet::from(caller.ip);
                    if !self
                        .config
                        .entries
                        .iter()
                        .any(|e| e.net.contains(&caller.ip))
                    {
                        doc.add_entry(own, "added by activate --add-current")
                            .map_err(|e| invalid(e.to_string()))?;
                    }
                }
                doc.set_active(true);
                "activate".to_owned()
            }
            Command::Deactivate => {
                doc.set_active(false);
                "deactivate".to_owned()
            }
            Command::Status
            | Command::List { .. }
            | Command::Test { .. }
            | Command::Reload { .. }
            | Command::Confirm
            | Command::EmergencyDisable { .. }
            | Command::EmergencyEnd
            | Command::Audit { .. }
            | Command::AuditVerify
            | Command::Blocked { .. }
            | Command::Sessions { .. } => unreachable!("handle() routes these elsewhere"),
        };
        Ok((doc.to_text(), description))
    }

    /// Names the entry `net` duplicates or overlaps, in the admin's terms (the full config
    /// check would refuse it too, but worded for a file).
    fn check_overlap(&self, net: IpNet, except: Option<IpNet>) -> Result<(), Refusal> {
        let describe = |e: &Entry| {
            if e.comment.is_empty() {
                format!("{} [{}]", e.net, e.origin)
            } else {
                format!("{} ({}) [{}]", e.net, e.comment, e.origin)
            }
        };
        for e in self.config.entries.iter().filter(|e| Some(e.net) != except) {
            if e.net == net {
                return Err(invalid(format!(
                    "`{net}` is already listed: {}",
                    describe(e)
                )));
            }
            if e.net.contains(&net) {
                return Err(invalid(format!(
                    "`{net}` is already covered by {}",
                    describe(e)
                )));
            }
            if net.contains(&e.net) {
                return Err(invalid(format!(
                    "`{net}` would cover the existing entry {}; remove or edit that entry first",
                    describe(e)
                )));
            }
        }
        Ok(())
    }

    /// The network of an entry written in the main config file (list files are the admin's
    /// own files, edited by hand).
    fn own_entry(&self, cidr: &str) -> Result<IpNet, Refusal> {
        let net = parse_cidr(cidr)?;
        let entry = self
            .config
            .entries
            .iter()
            .find(|e| e.net == net)
            .ok_or_else(|| invalid(format!("no entry `{net}`; `allowlistctl list` shows them")))?;
        if entry.origin.file != self.config.path {
            return Err(invalid(format!(
                "`{net}` comes from the list file {}; edit that file and run `allowlistctl reload`",
                entry.origin
            )));
        }
        Ok(net)
    }
}

impl Daemon {
    fn emergency_disable(
        &mut self,
        reason: &str,
        for_secs: u64,
        peer: &Peer,
    ) -> Result<Changed, Refusal> {
        let actor = Actor::new(peer.uid, peer.pid, Via::Cli);
        let duration = Duration::from_secs(for_secs);
        if let Err(rule) = emergency::check(duration, reason) {
            self.record_refusal(actor, "emergency-start", &rule);
            return Err(invalid(rule));
        }
        let new = self
            .begin_emergency(actor, duration, reason)
            .map_err(|m| (ErrorKind::Internal, m))?;
        let summary = format!(
            "EMERGENCY DISABLE until {} ({}): new connections from any source are let in; reason: {}",
            new.until_local(),
            humantime::format_duration(duration),
            new.reason
        );
        tracing::warn!(uid = peer.uid, "{summary}");
        Ok(Changed {
            revision: self.revision,
            summary,
            pending_confirmation: None,
        })
    }

    fn emergency_end(&mut self, peer: &Peer) -> Result<Changed, Refusal> {
        let actor = Actor::new(peer.uid, peer.pid, Via::Cli);
        let Some(current) = self.emergency.clone() else {
            self.record_refusal(actor, "emergency-end", "no emergency disable is in force");
            return Err(invalid("no emergency disable is in force"));
        };
        self.record(
            actor,
            "emergency-end",
            json!({ "emergency": current.describe() }),
            json!({ "emergency": null }),
            Outcome::Ok,
            self.revision,
        )
        .map_err(|m| (ErrorKind::Internal, m))?;
        self.set_emergency(None)
            .map_err(|e| (ErrorKind::Internal, format!("{e:#}")))?;
        info!(
            uid = peer.uid,
            "emergency disable ended early; enforcing again"
        );
        Ok(Changed {
            revision: self.revision,
            summary: format!(
                "emergency disable ended (reason was: {}); enforcing again",
                current.reason
            ),
            pending_confirmation: None,
        })
    }

    fn audit_records(&self, since: Option<&str>, action: Option<&str>) -> Result<Reply, Refusal> {
        let since = since
            .map(|text| {
                text.parse::<jiff::Timestamp>()
                    .or_else(|_| {
                        let ago = humantime::parse_duration(text).map_err(|_| ())?;
                        let ago = jiff::SignedDuration::try_from(ago).map_err(|_| ())?;
                        jiff::Timestamp::now().checked_sub(ago).map_err(|_| ())
                    })
                    .map_err(|()| invalid(format!("--since `{text}`: give an RFC 3339 time (2026-11-23T14:00:00Z) or a duration ago (2h)")))
            })
            .transpose()?;
        let files = self.audit.files();
        let records = audit::read(&files)
            .map_err(|e| (ErrorKind::Internal, e.to_string()))?
            .into_iter()
            .filter(|r| action.is_none_or(|a| r.event.action == a))
            .filter(|r| {
                since
                    .is_none_or(|since| r.time.parse::<jiff::Timestamp>().is_ok_and(|t| t >= since))
            })
            .collect();
        Ok(Reply::Audit(AuditReport {
            files: files.iter().map(|f| f.display().to_string()).collect(),
            records,
        }))
    }

    /// Verifies the daemon's own files, and that they end where the daemon's chain ends (so
    /// records cut off the end are caught too).
    fn audit_verify(&self) -> Result<Reply, Refusal> {
        let mut verification =
            audit::verify(&self.audit.files()).map_err(|e| (ErrorKind::Internal, e.to_string()))?;
        if verification.first_break.is_none() && verification.last_hash != self.audit.last_hash() {
            let path = self.audit.path().display().to_string();
            verification.first_break = Some(audit::Break {
                line: std::fs::read_to_string(self.audit.path())
                    .map_or(0, |t| t.lines().count() + 1),
                file: path,
                seq: Some(self.audit.last_seq()),
                why: format!(
                    "the log ends before seq {}, the last record allowlistd wrote (records cut off the end)",
                    self.audit.last_seq()
                ),
            });
        }
        Ok(Reply::Verify(verification))
    }

    fn blocked_report(&self, top: usize) -> Result<Reply, Refusal> {
        let budget = self
            .filter
            .event_budget()
            .map_err(|e| (ErrorKind::Internal, format!("{e:#}")))?;
        Ok(Reply::Blocked(BlockedReport {
            sources: self.blocked.top(top),
            events_received: self.blocked.events(),
            events_sent: budget.sent,
            events_suppressed: budget.suppressed,
        }))
    }

    /// Established connections to protected ports with the entry covering each peer; with
    /// `kill`, ends (and audits) those no entry covers.
    fn sessions(
        &mut self,
        port: Option<u16>,
        kill: bool,
        options: &ChangeOptions,
        peer: &Peer,
    ) -> Result<Reply, Refusal> {
        let ports = match port {
            Some(p) => std::collections::BTreeSet::from([p]),
            None => self.config.protected_tcp_ports.clone(),
        };
        let found = crate::sessions::established(&ports)
            .map_err(|e| (ErrorKind::Internal, e.to_string()))?;
        self.note_sessions(&found);
        let mut infos = Vec::new();
        for session in &found {
            let (_, covering) = self
                .filter
                .verdict(session.peer.ip(), session.local.port())
                .map_err(|e| (ErrorKind::Internal, format!("{e:#}")))?;
            let covered_by = covering
                .and_then(|net| self.config.entries.iter().find(|e| e.net == net))
                .map(entry_info);
            infos.push(SessionInfo {
                local: session.local,
                peer: session.peer,
                since: self.session_since(session),
                idle_ms: session.idle_ms,
                covered_by,
                killed: false,
            });
        }
        let mut killed = 0;
        if kill {
            let actor = Actor::new(peer.uid, peer.pid, Via::Cli);
            if let Some(caller) = options.caller
                && !options.force
                && infos
                    .iter()
                    .any(|i| i.covered_by.is_none() && i.peer.ip() == caller.ip)
            {
                let why = format!(
                    "refused: your own connection from {} is not covered by any entry and would be ended; add {} first, or pass --force",
                    caller.ip,
                    IpNet::from(caller.ip)
                );
                self.record_refusal(actor, "kill-unlisted", &why);
                return Err((ErrorKind::Lockout, why));
            }
            let unlisted: Vec<serde_json::Value> = infos
                .iter()
                .filter(|i| i.covered_by.is_none())
                .map(|i| json!({ "peer": i.peer.to_string(), "local": i.local.to_string() }))
                .collect();
            if !unlisted.is_empty() {
                self.record(
                    actor,
                    "kill-unlisted",
                    json!({ "sessions": unlisted }),
                    json!({ "sessions": [] }),
                    Outcome::Ok,
                    self.revision,
                )
                .map_err(|m| (ErrorKind::Internal, m))?;
            }
            for (session, info) in found.iter().zip(infos.iter_mut()) {
                if info.covered_by.is_some() {
                    continue;
                }
                match crate::sessions::destroy(session) {
                    Ok(()) => {
                        info.killed = true;
                        killed += 1;
                    }
                    // Ended meanwhile by itself: nothing left to do.
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => return Err((ErrorKind::Internal, e.to_string())),
                }
            }
            info!(
                uid = peer.uid,
                "ended {killed} connections from unlisted sources"
            );
        }
        Ok(Reply::Sessions(SessionsReport {
            sessions: infos,
            killed,
        }))
    }
}
