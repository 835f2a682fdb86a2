//! Requests from allowlistctl. A change is validated exactly as the config file is (it *is*
//! the config file, edited), checked against the caller's own address, written to disk
//! atomically, and only then applied and acknowledged.

use std::time::Duration;

use ipnet::IpNet;
use tracing::info;

use serde_json::json;

use super::set_files::{self, Edits};
use super::{Daemon, PendingChange, read_config};
use super::{changes, expiry, lockout};
use crate::server::Peer;
use allowlist_config::edit::ConfigDoc;
use allowlist_config::rules::{DEFAULT_LIST, Mode, Protocol};
use allowlist_config::words;
use allowlist_config::{Config, Entry, check_comment, parse_net};
use allowlist_control::audit::{Action, Actor, Outcome};
use allowlist_control::protocol::{
    ChangeOptions, Changed, Command, EntryInfo, ErrorKind, RELOAD_SHOWN_EACH_WAY,
    RELOAD_SUMMARY_ABOVE, ReloadReport, Reply, Response,
};

/// The longest `--confirm-within` accepted: a forgotten confirmation should not hold the
/// list hostage for long.
const MAX_CONFIRM_WINDOW: Duration = Duration::from_secs(3600);

pub(super) type Refusal = (ErrorKind, String);

pub(super) fn invalid(message: impl Into<String>) -> Refusal {
    (ErrorKind::Invalid, message.into())
}

/// What a reload report lists of `added` and `removed`: everything with `full` or up to
/// [`RELOAD_SUMMARY_ABOVE`] changes, otherwise the first few each way and how many more.
fn shown(
    mut added: Vec<EntryInfo>,
    mut removed: Vec<EntryInfo>,
    full: bool,
) -> (Vec<EntryInfo>, Vec<EntryInfo>, u64, u64) {
    if full || added.len() + removed.len() <= RELOAD_SUMMARY_ABOVE {
        return (added, removed, 0, 0);
    }
    let cut = |list: &mut Vec<EntryInfo>| {
        let more = list.len().saturating_sub(RELOAD_SHOWN_EACH_WAY);
        list.truncate(RELOAD_SHOWN_EACH_WAY);
        more as u64
    };
    let (more_added, more_removed) = (cut(&mut added), cut(&mut removed));
    (added, removed, more_added, more_removed)
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
            Command::List {
                unused_for_secs,
                query,
            } => self.list(unused_for_secs, &query),
            Command::Test {
                ip,
                port,
                udp,
                list,
            } => self.test(&ip, port, udp, list.as_deref()),
            Command::Reload { dry_run, full } => self.reload_request(dry_run, full, peer),
            Command::Confirm => self.confirm(peer),
            Command::EmergencyDisable {
                reason,
                for_secs,
                in_force,
            } => self
                .emergency_disable(&reason, for_secs, in_force, peer)
                .map(Reply::Changed),
            Command::EmergencyEnd => self.emergency_end(peer).map(Reply::Changed),
            Command::Audit { since, action } => {
                self.audit_records(since.as_deref(), action.as_deref())
            }
            Command::AuditVerify => self.audit_verify(),
            Command::Blocked { top, list } => {
                self.blocked_report(top.unwrap_or(20), list.as_deref())
            }
            Command::Sessions {
                port,
                end: Some(target),
                list,
                ..
            } => self.end_session(port, target, list.as_deref(), &options, peer),
            Command::Sessions {
                port,
                kill_unlisted,
                end: None,
                list,
            } => self.sessions(port, kill_unlisted, list.as_deref(), &options, peer),
            Command::Activate {
                add_current,
                kill_unlisted: true,
                list,
            } => self
                .change(
                    Command::Activate {
                        add_current,
                        kill_unlisted: true,
                        list: list.clone(),
                    },
                    &options,
                    peer,
                )
                .and_then(|mut changed| {
                    let sessions = self.sessions(None, true, list.as_deref(), &options, peer)?;
                    let Reply::Sessions(report) = sessions else {
                        unreachable!("sessions() answers with Reply::Sessions");
                    };
                    changed.summary += &format!(
                        "; ended {} from unlisted sources",
                        words::count(report.killed, "connection", "connections")
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

    fn reload_request(&mut self, dry_run: bool, full: bool, peer: &Peer) -> Result<Reply, Refusal> {
        let (added, removed, summary, merged) = if dry_run {
            let (new, _) = read_config(&self.config.path).map_err(|e| invalid(format!("{e:#}")))?;
            let (added, removed) = changes::entries(&self.config, &new);
            let summary = format!("would apply {}", changes::summary(&self.config, &new));
            (added, removed, summary, changes::merged_files(&new))
        } else {
            let actor = peer.actor();
            let (summary, old) = self.reload(actor).map_err(invalid)?;
            info!(uid = peer.uid, pid = peer.pid, "reload applied: {summary}");
            let (added, removed) = old
                .map(|old| changes::entries(&old, &self.config))
                .unwrap_or_default();
            (added, removed, summary, changes::merged_files(&self.config))
        };
        let (added, removed, more_added, more_removed) = shown(added, removed, full);
        Ok(Reply::Reload(ReloadReport {
            dry_run,
            revision: self.revision,
            added,
            removed,
            summary,
            more_added,
            more_removed,
            merged_lines: merged.iter().map(|m| m.lines).sum(),
            merged_files: merged,
        }))
    }

    fn confirm(&mut self, peer: &Peer) -> Result<Reply, Refusal> {
        let actor = peer.actor();
        let Some(description) = self.pending.as_ref().map(|p| p.description.clone()) else {
            self.record_refusal(actor, Action::Confirm, "nothing awaits confirmation");
            return Err(invalid("nothing awaits confirmation"));
        };
        self.record(
            actor,
            Action::Confirm,
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
        let actor = peer.actor();
        self.change_as(command, options, actor)
    }

    /// A change made for `actor`: a client, or the daemon itself for a knock.
    pub(super) fn change_as(
        &mut self,
        command: Command,
        options: &ChangeOptions,
        actor: Actor,
    ) -> Result<Changed, Refusal> {
        let action = match &command {
            Command::Add { .. } => Action::Add,
            Command::Edit { .. } => Action::Edit,
            Command::Remove { .. } => Action::Remove,
            Command::Activate { .. } => Action::Activate,
            Command::AddList { .. } => Action::AddList,
            Command::RemoveList { .. } => Action::RemoveList,
            Command::SetPorts { .. } => Action::SetPorts,
            _ => Action::Deactivate,
        };
        // What monitor mode saw, said before a list in monitor mode starts to enforce.
        let monitored = match &command {
            Command::Activate { list, .. } => self.monitor_report(list.as_deref()),
            _ => None,
        };
        let (new, edits, description) = match self.prepare_change(&command, options) {
            Ok(prepared) => prepared,
            Err(refusal) => {
                self.record_refusal(actor, action, &refusal.1);
                return Err(refusal);
            }
        };
        if self.edits_change_nothing(&edits) {
            return Ok(Changed {
                revision: self.revision,
                summary: format!(
                    "{description}: nothing to change, revision {}",
                    self.revision
                ),
                pending_confirmation: self.pending_info(),
            });
        }
        let changes::Changes {
            before,
            mut after,
            summary,
        } = changes::changes(&self.config, &new);
        let new_text = edits
            .get(&self.config.path)
            .cloned()
            .unwrap_or_else(|| self.config_text.clone());
        if !new.drop_ins.is_empty() || !self.config.drop_ins.is_empty() {
            // Which file of the set the change went to.
            after["files"] = edits.keys().map(|f| f.display().to_string()).collect();
        }
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
        let old_texts = match self.write_edits(&edits) {
            Ok(old) => old,
            Err(e) => {
                let refusal = (ErrorKind::Internal, format!("{e}; nothing changed"));
                return Err(failed(self, refusal));
            }
        };
        let old_config = self.config.clone();
        let summary = match self.switch_to(new, new_text, summary) {
            Ok((summary, _)) => summary,
            Err(e) => {
                // Put the files back so that they keep describing what the kernel enforces.
                let restored = set_files::restore(&old_texts);
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
        info!(
            uid = actor.uid,
            pid = actor.pid,
            user = actor.user,
            "{description}: {summary}"
        );
        if let Some(secs) = options.confirm_within_secs {
            let window = Duration::from_secs(secs);
            self.pending = Some(PendingChange {
                deadline: tokio::time::Instant::now() + window,
                description: description.clone(),
                restore_texts: old_texts,
                restore_config: old_config,
            });
            info!(
                "`{description}` rolls back in {}s unless confirmed",
                window.as_secs()
            );
        }
        Ok(Changed {
            revision: self.revision,
            summary: match monitored {
                Some(report) => format!("{report}\n{description}: {summary}"),
                None => format!("{description}: {summary}"),
            },
            pending_confirmation: self.pending_info(),
        })
    }

    /// For a list in monitor mode: whom it would have blocked recently, and which established
    /// sessions to its ports it does not cover (they stay up; new ones from there will not).
    fn monitor_report(&mut self, list: Option<&str>) -> Option<String> {
        let (index, config) = list_named(&self.config, list.unwrap_or(DEFAULT_LIST)).ok()?;
        if config.mode != Mode::Monitor {
            return None;
        }
        let name = config.name.clone();
        let ports: std::collections::BTreeSet<u16> = config.tcp_ports.clone();
        let would = self.blocked.top(10, Some(&name));
        let covered = |ip: std::net::IpAddr| {
            let ip = ip.to_canonical();
            self.config
                .entries
                .iter()
                .any(|e| e.list == index && e.net.contains(&ip))
        };
        // Those the list covers by now are no news.
        let would: Vec<String> = would
            .iter()
            .filter(|s| s.would_be && !covered(s.source))
            .map(|s| {
                let udp = if s.udp { "/udp" } else { "" };
                let times = words::count(s.count as usize, "time", "times");
                format!("{} (port {}{udp}, {times})", s.source, s.port)
            })
            .collect();
        let sessions = crate::sessions::established(&ports).unwrap_or_default();
        let uncovered: Vec<String> = sessions
            .iter()
            .filter(|s| !covered(s.peer.ip()))
            .map(|s| format!("{} -> port {}", s.peer.ip(), s.local.port()))
            .collect();
        let say = |items: &[String]| {
            if items.is_empty() {
                "none".to_owned()
            } else {
                items.join(", ")
            }
        };
        Some(format!(
            "list `{name}` was in monitor mode; it would have blocked recently: {}; established \
             sessions it does not cover (kept; new ones from there will be blocked): {}",
            say(&would),
            say(&uncovered)
        ))
    }

    /// Every check a change must pass, and what it would make of the config file.
    fn prepare_change(
        &self,
        command: &Command,
        options: &ChangeOptions,
    ) -> Result<(Config, Edits, String), Refusal> {
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
                words::duration(MAX_CONFIRM_WINDOW)
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
        self.refuse_if_changed_on_disk()
            .map_err(|why| (ErrorKind::Conflict, why))?;
        let (edits, description) = self.edited_text(command, options)?;
        set_files::refuse_symlinked(&edits).map_err(invalid)?;
        let (new, _) = self
            .parse_edited(&edits)
            .map_err(|e| invalid(e.to_string()))?;
        if let Some(caller) = options.caller
            && !options.force
            && let Some((protocol, port)) = self.config.rules().locks_out(
                &new.rules(),
                caller.ip,
                caller.port.map(|p| (Protocol::Tcp, p)),
            )
        {
            let list = new
                .rules()
                .protecting(protocol, port)
                .map_or(DEFAULT_LIST.to_owned(), |l| l.name.clone());
            let port = match protocol {
                Protocol::Tcp => format!("port {port}"),
                Protocol::Udp => format!("UDP port {port}"),
            };
            return Err((
                ErrorKind::Lockout,
                format!(
                    "refused: `{description}` would block your own address {} on {port}; {}",
                    caller.ip,
                    lockout::advice(&self.config, command, caller, &list)
                ),
            ));
        }
        Ok((new, edits, description))
    }

    /// The texts of the files `command` edits (the config file, or the drop-in holding the
    /// entry it edits), and a one-line description of the change.
    fn edited_text(
        &self,
        command: &Command,
        options: &ChangeOptions,
    ) -> Result<(Edits, String), Refusal> {
        let mut doc = ConfigDoc::parse(&self.config_text).map_err(|e| invalid(e.to_string()))?;
        let mut file = self.config.path.clone();
        let description = match command {
            Command::Add {
                cidr,
                comment,
                lists,
                ends,
                file: named,
            } => {
                let net = parse_cidr(cidr)?;
                if let Some(named) = named {
                    self.named_file(named, "entries", &mut doc, &mut file)?;
                }
                let end = ends.as_ref().map(expiry::end_time).transpose()?.flatten();
                if let Some(comment) = comment {
                    check_comment(comment).map_err(|e| invalid(format!("--comment: {e}")))?;
                }
                let names: Vec<Option<&str>> = if lists.is_empty() {
                    vec![None]
                } else {
                    lists.iter().map(|l| Some(l.as_str())).collect()
                };
                let mut targets = Vec::new();
                for name in names {
                    let target = self.target(name)?;
                    if targets.iter().any(|t: &Target| t.index == target.index) {
                        continue;
                    }
                    self.check_overlap(net, None, target.index)?;
                    if let Some(name) = target.selector
                        && file != self.config.path
                    {
                        // A list defined in another file of the set.
                        doc.make_list_room(name)
                            .map_err(|e| invalid(e.to_string()))?;
                    }
                    doc.add_entry_in(target.selector, net, comment.as_deref().unwrap_or_default())
                        .map_err(|e| invalid(e.to_string()))?;
                    if end.is_some() {
                        doc.set_end_in(target.selector, net, end)
                            .map_err(|e| invalid(e.to_string()))?;
                    }
                    targets.push(target);
                }
                format!(
                    "add {net}{}{}",
                    of_lists(&targets),
                    expiry::until_words(end)
                )
            }
            Command::Edit {
                cidr,
                new_cidr,
                comment,
                list,
                ends,
            } => {
                let (net, target, held_in) = self.own_entry(cidr, list.as_deref())?;
                if held_in != file {
                    doc = self.doc_of(&held_in, &Edits::new()).map_err(invalid)?;
                    file = held_in;
                }
                let new_net = new_cidr.as_deref().map(parse_cidr).transpose()?;
                let end = ends.as_ref().map(expiry::end_time).transpose()?;
                if let Some(comment) = comment {
                    check_comment(comment).map_err(|e| invalid(format!("--comment: {e}")))?;
                }
                if let Some(new_net) = new_net {
                    self.check_overlap(new_net, Some(net), target.index)?;
                }
                if new_net.is_none() && comment.is_none() && end.is_none() {
                    return Err(invalid(
                        "nothing to change: give --cidr, --comment, --for, --until or --permanent",
                    ));
                }
                if new_net.is_some() || comment.is_some() {
                    doc.edit_entry_in(target.selector, net, new_net, comment.as_deref())
                        .map_err(|e| invalid(e.to_string()))?;
                }
                if let Some(end) = end {
                    doc.set_end_in(target.selector, new_net.unwrap_or(net), end)
                        .map_err(|e| invalid(e.to_string()))?;
                }
                let of = of_lists(std::slice::from_ref(&target));
                let until = match end {
                    Some(None) => ", now lasting".to_owned(),
                    Some(end) => expiry::until_words(end),
                    None => String::new(),
                };
                match new_net {
                    Some(new_net) => format!("edit {net} -> {new_net}{of}{until}"),
                    None => format!("edit {net}{of}{until}"),
                }
            }
            Command::Remove { cidr, list } => {
                let (net, target, held_in) = self.own_entry(cidr, list.as_deref())?;
                if held_in != file {
                    doc = self.doc_of(&held_in, &Edits::new()).map_err(invalid)?;
                    file = held_in;
                }
                doc.remove_entry_in(target.selector, net)
                    .map_err(|e| invalid(e.to_string()))?;
                format!("remove {net}{}", of_lists(std::slice::from_ref(&target)))
            }
            Command::Activate {
                add_current, list, ..
            } => {
                let target = self.target(list.as_deref())?;
                self.defining_file(&target, &mut doc, &mut file)?;
                if *add_current {
                    let caller = options.caller.ok_or_else(|| {
                        invalid("--add-current needs your address: run it from your SSH session or pass --current-ip")
                    })?;
                    let own = lockout::own_net(caller.ip);
                    if !self
                        .config
                        .entries
                        .iter()
                        .any(|e| e.list == target.index && e.net.contains(&own))
                    {
                        doc.add_entry_in(target.selector, own, "added by activate --add-current")
                            .map_err(|e| invalid(e.to_string()))?;
                    }
                }
                doc.set_mode(target.selector, Mode::Enforce)
                    .map_err(|e| invalid(e.to_string()))?;
                format!("activate{}", list_word(&target))
            }
            Command::Deactivate { list } => {
                let target = self.target(list.as_deref())?;
                self.defining_file(&target, &mut doc, &mut file)?;
                doc.set_mode(target.selector, Mode::Off)
                    .map_err(|e| invalid(e.to_string()))?;
                format!("deactivate{}", list_word(&target))
            }
            Command::AddList {
                list,
                mode,
                tcp_ports,
                udp_ports,
                file: named,
            } => {
                if let Some(named) = named {
                    self.named_file(named, "lists", &mut doc, &mut file)?;
                }
                if self.config.list(list).is_some() {
                    return Err(invalid(format!(
                        "list `{list}` exists already; `allowlistctl set-ports {list}` changes its ports"
                    )));
                }
                let mode = Mode::parse(mode).ok_or_else(|| {
                    invalid(format!(
                        "--mode `{mode}`: a list's mode is enforce, monitor or off"
                    ))
                })?;
                let (tcp, udp) = (
                    tcp_ports.iter().copied().collect(),
                    udp_ports.iter().copied().collect(),
                );
                doc.add_list(list, mode, &tcp, &udp)
                    .map_err(|e| invalid(e.to_string()))?;
                format!("add list {list} ({})", mode.name())
            }
            Command::RemoveList { list } => {
                let target = self.target(Some(list))?;
                self.defining_file(&target, &mut doc, &mut file)?;
                let Some(name) = target.selector else {
                    return Err(invalid(
                        "the list `default` is written with the config file's top-level keys \
                         (active, protected_tcp_ports, [[entries]], list_files): remove them by hand, \
                         or deactivate it",
                    ));
                };
                let protected = &self.config.lists[usize::from(target.index)].tcp_ports;
                if let Some(caller) = options.caller
                    && let Some(port) = caller.port.filter(|p| protected.contains(p))
                    && !options.force
                {
                    return Err((
                        ErrorKind::Lockout,
                        format!(
                            "refused: list `{name}` protects port {port} of your own session; \
                             removing it leaves that port open to every source: pass --force \
                             if that is what you want"
                        ),
                    ));
                }
                doc.remove_list(name).map_err(|e| invalid(e.to_string()))?;
                format!("remove list {name}")
            }
            Command::SetPorts {
                list,
                tcp_ports,
                udp_ports,
            } => {
                let target = self.target(Some(list))?;
                self.defining_file(&target, &mut doc, &mut file)?;
                let mut said = Vec::new();
                for (udp, ports) in [(false, tcp_ports), (true, udp_ports)] {
                    let Some(ports) = ports else { continue };
                    let ports: std::collections::BTreeSet<u16> = ports.iter().copied().collect();
                    doc.set_ports(target.selector, udp, &ports)
                        .map_err(|e| invalid(e.to_string()))?;
                    said.push(format!(
                        "{} [{}]",
                        if udp { "udp" } else { "tcp" },
                        words::list(ports.iter().copied().collect::<Vec<_>>())
                    ));
                }
                format!("set ports of list {list}: {}", said.join(", "))
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
        Ok((Edits::from([(file, doc.to_text())]), description))
    }

    /// Names the entry `net` duplicates or overlaps, in the admin's terms (the full config
    /// check would refuse it too, but worded for a file). Covering list-file entries is
    /// fine: as in the file, they are merged into the new entry.
    fn check_overlap(&self, net: IpNet, except: Option<IpNet>, list: u8) -> Result<(), Refusal> {
        let describe = |e: &Entry| {
            if e.comment.is_empty() {
                format!("{} [{}]", e.net, e.origin())
            } else {
                format!("{} ({}) [{}]", e.net, e.comment, e.origin())
            }
        };
        let of_list = self
            .config
            .entries
            .iter()
            .filter(|e| e.list == list && Some(e.net) != except);
        for e in of_list {
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
            if net.contains(&e.net) && self.config.file_number(&e.file).is_some() {
                return Err(invalid(format!(
                    "`{net}` would cover the existing entry {}; remove or edit that entry first",
                    describe(e)
                )));
            }
        }
        Ok(())
    }

    /// The network of an entry written in the config file or a drop-in (list files are the
    /// admin's own files, edited by hand), its list (`list`, or the one list holding it) and
    /// the file holding it.
    fn own_entry(
        &self,
        cidr: &str,
        list: Option<&str>,
    ) -> Result<(IpNet, Target<'_>, std::path::PathBuf), Refusal> {
        let net = parse_cidr(cidr)?;
        let wanted = list.map(|name| self.target(Some(name))).transpose()?;
        let mut found = self
            .config
            .entries
            .iter()
            .filter(|e| e.net == net && wanted.as_ref().is_none_or(|t| t.index == e.list));
        let entry = found.next().ok_or_else(|| {
            invalid(format!(
                "no entry `{net}`{}; `allowlistctl list` shows them",
                list.map_or(String::new(), |l| format!(" in list `{l}`"))
            ))
        })?;
        if let Some(other) = found.next() {
            let name = |e: &Entry| changes::list_name(&self.config, e).to_owned();
            return Err(invalid(format!(
                "`{net}` is in lists `{}` and `{}`: say which with --list",
                name(entry),
                name(other)
            )));
        }
        if self.config.file_number(&entry.file).is_none() {
            return Err(invalid(format!(
                "`{net}` comes from the list file {}; edit that file and run `allowlistctl reload`",
                entry.origin()
            )));
        }
        let target = match wanted {
            Some(target) => target,
            None => self.target(Some(changes::list_name(&self.config, entry)))?,
        };
        Ok((net, target, entry.file.to_path_buf()))
    }

    /// Switches `doc` and `file` to the drop-in defining `target` (its mode and ports), if a
    /// drop-in does.
    /// Switches `doc` and `file` to the file `--file` names: the config file or one of its
    /// drop-ins, where new `what` (entries, lists) may be written; a list file is refused.
    fn named_file(
        &self,
        named: &str,
        what: &str,
        doc: &mut ConfigDoc,
        file: &mut std::path::PathBuf,
    ) -> Result<(), Refusal> {
        let drop_in = super::list_query::file_named(named, &self.config)?;
        if self.config.drop_in(&drop_in).is_none() && drop_in != *file {
            return Err(invalid(format!(
                "--file {}: new {what} go to the config file or one of its drop-ins \
                 (`include`); {} is a list file: edit it and run `allowlistctl reload`",
                drop_in.display(),
                drop_in.display()
            )));
        }
        if drop_in != *file {
            *doc = self.doc_of(&drop_in, &Edits::new()).map_err(invalid)?;
            *file = drop_in;
        }
        Ok(())
    }

    fn defining_file(
        &self,
        target: &Target,
        doc: &mut ConfigDoc,
        file: &mut std::path::PathBuf,
    ) -> Result<(), Refusal> {
        let list = &self.config.lists[usize::from(target.index)];
        if let Some(defined_in) = &list.file
            && defined_in != file
        {
            *doc = self.doc_of(defined_in, &Edits::new()).map_err(invalid)?;
            file.clone_from(defined_in);
        }
        Ok(())
    }

    /// The list a change names (`None`: `default`), and where the config file writes it.
    fn target(&self, name: Option<&str>) -> Result<Target<'_>, Refusal> {
        let (index, list) = list_named(&self.config, name.unwrap_or(DEFAULT_LIST))?;
        Ok(Target {
            index,
            name: &list.name,
            selector: list.line.map(|_| list.name.as_str()),
        })
    }

    fn emergency_end(&mut self, peer: &Peer) -> Result<Changed, Refusal> {
        let actor = peer.actor();
        let Some(current) = self.emergency.clone() else {
            self.record_refusal(
                actor,
                Action::EmergencyEnd,
                "no emergency disable is in force",
            );
            return Err(invalid("no emergency disable is in force"));
        };
        self.record(
            actor,
            Action::EmergencyEnd,
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
}

/// A list a change is made to.
pub(super) struct Target<'a> {
    /// Its index in the config.
    index: u8,
    name: &'a str,
    /// Where the config file writes it: `None` for the top-level `default`.
    selector: Option<&'a str>,
}

/// " to list a", " to lists a, b", or nothing for `default` alone.
fn of_lists(targets: &[Target]) -> String {
    match targets {
        [] => String::new(),
        [only] if only.name == DEFAULT_LIST => String::new(),
        [only] => format!(" (list {})", only.name),
        many => {
            let names: Vec<&str> = many.iter().map(|t| t.name).collect();
            format!(" (lists {})", names.join(", "))
        }
    }
}

/// " list NAME", or nothing for `default`.
fn list_word(target: &Target) -> String {
    if target.name == DEFAULT_LIST {
        String::new()
    } else {
        format!(" list {}", target.name)
    }
}

/// The list named `name` in `config` (its index), or a refusal naming the lists there are.
pub(super) fn list_named<'a>(
    config: &'a Config,
    name: &str,
) -> Result<(u8, &'a allowlist_config::ListConfig), Refusal> {
    config.list(name).ok_or_else(|| {
        let names: Vec<&str> = config.lists.iter().map(|l| l.name.as_str()).collect();
        let hint = if name == DEFAULT_LIST {
            "this config has no list `default` (only [lists.NAME] tables): name one with --list"
                .to_owned()
        } else {
            format!("no list `{name}`")
        };
        invalid(format!(
            "{hint}; the lists are: {} (`allowlistctl lists`)",
            names.join(", ")
        ))
    })
}
