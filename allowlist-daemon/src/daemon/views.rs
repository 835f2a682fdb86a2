//! Read-only views for allowlistctl (status, list with hits, the live verdict, blocked
//! sources, the audit log) and the sessions view with its one action, ending unlisted
//! connections.

use std::collections::BTreeMap;
use std::net::IpAddr;

use allowlist_common::maps::Counters;
use allowlist_common::verdict::Reason;
use tracing::warn;

use super::changes::entry_info;
use super::commands::{Refusal, invalid};
use super::{Daemon, list_query, totals};
use allowlist_config::rules::{DEFAULT_LIST, Protocol};
use allowlist_config::{Entry, ListConfig};
use allowlist_control::audit::{self, Action};
use allowlist_control::protocol::{
    AuditReport, BlockedReport, EmergencyStatus, EntryInfo, EntryList, ErrorKind, InterfaceStatus,
    KnockStatus, ListQuery, ListStatus, Pending, PortVerdict, Reply, Status, TestReport,
};

impl Daemon {
    /// The list protecting `port`, and its most specific entry covering `ip`: the one that
    /// lets it in.
    pub(super) fn deciding(
        &self,
        ip: IpAddr,
        protocol: Protocol,
        port: u16,
    ) -> (Option<&ListConfig>, Option<&Entry>) {
        let Some((number, list)) =
            (self.config.lists.iter().enumerate()).find(|(_, l)| l.ports(protocol).contains(&port))
        else {
            return (None, None);
        };
        // IPv4-mapped IPv6 addresses are judged as IPv4, as the kernel does.
        let ip = ip.to_canonical();
        let entry = self
            .config
            .entries
            .iter()
            .filter(|e| usize::from(e.list) == number && e.net.contains(&ip))
            .max_by_key(|e| e.net.prefix_len());
        (Some(list), entry)
    }

    pub(super) fn status(&self) -> Status {
        let counters = self.filter.counters().unwrap_or_default();
        // Every reason is listed, zeros included, so scripts find each key from the start.
        let named = |c: &Counters| -> BTreeMap<String, u64> {
            Reason::ALL
                .iter()
                .map(|r| (r.name().to_owned(), c.by_reason[*r as usize]))
                .collect()
        };
        let all = Counters::total(counters.values());
        let by_reason = named(&all);
        let mut interfaces: Vec<InterfaceStatus> = self
            .config
            .interfaces
            .iter()
            .map(|name| {
                let attached = self.attachments.describe().find(|(n, _, _)| n == name);
                let counts = attached
                    .and_then(|(_, ifindex, _)| counters.get(&ifindex))
                    .copied()
                    .unwrap_or_default();
                let (passed, dropped) = totals(&counts);
                let by_reason = named(&counts);
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
        let lists = self.list_status(&named);
        Status {
            lists,
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
            knocks: self.knocks.as_ref().map(|knocks| {
                let counters = knocks.counters();
                KnockStatus {
                    listen: self
                        .config
                        .knock_listen
                        .iter()
                        .map(|a| a.to_string())
                        .collect(),
                    granted: counters.granted(),
                    refused: counters
                        .refusals()
                        .into_iter()
                        .map(|(kind, n)| (kind.to_owned(), n))
                        .collect(),
                }
            }),
        }
    }

    /// Each list: its mode, ports, entries, and what the kernel counted for it.
    fn list_status(&self, named: &dyn Fn(&Counters) -> BTreeMap<String, u64>) -> Vec<ListStatus> {
        let counters = self.filter.list_counters().unwrap_or_else(|e| {
            warn!("reading the list counters: {e:#}");
            BTreeMap::new()
        });
        let mut entries = vec![0usize; self.config.lists.len()];
        for entry in &self.config.entries {
            entries[usize::from(entry.list)] += 1;
        }
        self.config
            .lists
            .iter()
            .zip(entries)
            .map(|(list, entries)| {
                let counts = counters.get(&list.name).copied().unwrap_or_default();
                let sum = |pick: fn(Reason) -> bool| -> u64 {
                    Reason::ALL
                        .iter()
                        .filter(|r| pick(**r))
                        .map(|r| counts.by_reason[*r as usize])
                        .sum()
                };
                ListStatus {
                    name: list.name.clone(),
                    mode: list.mode.name().to_owned(),
                    tcp_ports: list.tcp_ports.iter().copied().collect(),
                    udp_ports: list.udp_ports.iter().copied().collect(),
                    entries,
                    allowed: sum(|r| matches!(r, Reason::PassAllowedV4 | Reason::PassAllowedV6)),
                    dropped: sum(Reason::is_drop),
                    would_drop: sum(Reason::is_would_drop),
                    by_reason: named(&counts),
                }
            })
            .collect()
    }

    /// Entries with their hit counts; with `unused_for_secs`, only those not hit for that
    /// long; and only those `query` keeps, up to its limit.
    pub(super) fn list(
        &self,
        unused_for_secs: Option<u64>,
        query: &ListQuery,
    ) -> Result<Reply, Refusal> {
        let filter = list_query::Filter::new(query, &self.config)?;
        if let Some(within) = query.expired_within_secs {
            return self.expired(within, &filter);
        }
        let internal = |e: anyhow::Error| (ErrorKind::Internal, format!("{e:#}"));
        // --unused judges every entry by its hits; otherwise only the shown ones need theirs.
        let all_hits = unused_for_secs
            .map(|_| self.entry_hits())
            .transpose()
            .map_err(internal)?;
        let now = jiff::Timestamp::now();
        let unused = |entry: &Entry| match (&all_hits, unused_for_secs) {
            (Some(hits), Some(limit)) => !hits
                .of(entry.net, super::changes::list_name(&self.config, entry))
                .last
                .is_some_and(|last| {
                    now.duration_since(last) < jiff::SignedDuration::from_secs(limit as i64)
                }),
            _ => true,
        };
        let mut matched = 0;
        let mut shown = Vec::new();
        let kept = self.config.entries.iter().filter(|e| {
            filter.keeps(e) && (!query.timed || self.config.end_of(e).is_some()) && unused(e)
        });
        for entry in kept {
            matched += 1;
            if !query.count && query.limit.is_none_or(|n| (shown.len() as u64) < n) {
                shown.push(entry);
            }
        }
        let hits = match all_hits {
            Some(hits) => hits,
            None => self.entry_hits_of(&shown).map_err(internal)?,
        };
        let entries = shown
            .into_iter()
            .map(|entry| {
                let saved = hits.of(entry.net, super::changes::list_name(&self.config, entry));
                let mut info = entry_info(&self.config, entry);
                info.hits = saved.hits;
                info.last_hit = saved
                    .last
                    .and_then(|t| Some(t.round(jiff::Unit::Second).ok()?.to_string()));
                info
            })
            .collect();
        Ok(Reply::List(EntryList {
            revision: self.revision,
            active: self.config.active,
            entries,
            matched,
            total: self.config.entries.len() as u64,
        }))
    }

    /// The timed entries that ended within the last `within_secs`, newest first, as the
    /// audit log's `expire` records list them.
    fn expired(&self, within_secs: u64, filter: &list_query::Filter) -> Result<Reply, Refusal> {
        let since = jiff::Timestamp::now()
            .checked_sub(jiff::SignedDuration::from_secs(within_secs as i64))
            .unwrap_or(jiff::Timestamp::MIN);
        let records =
            audit::read(&self.audit.files()).map_err(|e| (ErrorKind::Internal, e.to_string()))?;
        let mut entries = Vec::new();
        for record in records.iter().rev() {
            if record.event.action != Action::Expire
                || record
                    .time
                    .parse::<jiff::Timestamp>()
                    .is_ok_and(|t| t < since)
            {
                continue;
            }
            let listed = record.event.before["entries"].as_array();
            for value in listed.into_iter().flatten() {
                let info = EntryInfo {
                    cidr: value["cidr"].as_str().unwrap_or_default().to_owned(),
                    comment: value["comment"].as_str().unwrap_or_default().to_owned(),
                    origin: String::new(),
                    hits: 0,
                    last_hit: None,
                    list: value["list"].as_str().unwrap_or(DEFAULT_LIST).to_owned(),
                    expires: value["expires"].as_str().map(str::to_owned),
                    in_list_file: false,
                };
                if filter.keeps_info(&info) {
                    entries.push(info);
                }
            }
        }
        Ok(Reply::List(EntryList {
            revision: self.revision,
            active: self.config.active,
            matched: entries.len() as u64,
            total: entries.len() as u64,
            entries,
        }))
    }

    pub(super) fn pending_info(&self) -> Option<Pending> {
        self.pending.as_ref().map(|p| Pending {
            change: p.description.clone(),
            rollback_in_secs: p
                .deadline
                .saturating_duration_since(tokio::time::Instant::now())
                .as_secs(),
        })
    }

    /// The live verdict from the kernel's maps for a SYN (or with `udp` a datagram) from
    /// `ip`, per port: `port`, or every protected port (of that protocol with `udp`).
    pub(super) fn test(
        &self,
        ip: &str,
        port: Option<u16>,
        udp: bool,
        list: Option<&str>,
    ) -> Result<Reply, Refusal> {
        let addr: IpAddr = ip
            .trim()
            .parse()
            .map_err(|_| invalid(format!("`{ip}` is not an IP address")))?;
        let only = list
            .map(|name| {
                super::commands::list_named(&self.config, name).map(|(_, l)| l.name.as_str())
            })
            .transpose()?;
        let ports: Vec<(Protocol, u16)> = match port {
            Some(p) if udp => vec![(Protocol::Udp, p)],
            Some(p) => vec![(Protocol::Tcp, p)],
            None => {
                let lists = self.filter.lists();
                let lists: Vec<_> = lists
                    .iter()
                    .filter(|l| only.is_none_or(|name| l.name == name))
                    .collect();
                let tcp = lists
                    .iter()
                    .flat_map(|l| l.tcp_ports.iter().map(|&p| (Protocol::Tcp, p)));
                let udp_ports = lists
                    .iter()
                    .flat_map(|l| l.udp_ports.iter().map(|&p| (Protocol::Udp, p)));
                let mut all: Vec<_> = if udp {
                    udp_ports.collect()
                } else {
                    tcp.chain(udp_ports).collect()
                };
                all.sort();
                all
            }
        };
        let several = self.config.lists.len() > 1;
        let mut verdicts = Vec::new();
        for (protocol, port) in ports {
            let (reason, _) = self
                .filter
                .verdict(addr, protocol, port)
                .map_err(|e| (ErrorKind::Internal, format!("{e:#}")))?;
            let (list, entry) = self.deciding(addr, protocol, port);
            let port_name = match protocol {
                Protocol::Tcp => format!("port {port}"),
                Protocol::Udp => format!("UDP port {port}"),
            };
            let of_list = match list {
                Some(l) if several => format!(" of list `{}`", l.name),
                _ => String::new(),
            };
            let explanation = match (reason, entry) {
                (Reason::PassAllowedV4 | Reason::PassAllowedV6, Some(e))
                    if e.comment.is_empty() =>
                {
                    let until = super::expiry::until_words(self.config.end_of(e));
                    format!("allowed by {}{of_list}{until}", e.net)
                }
                (Reason::PassAllowedV4 | Reason::PassAllowedV6, Some(e)) => {
                    let until = super::expiry::until_words(self.config.end_of(e));
                    format!("allowed by {} ({}){of_list}{until}", e.net, e.comment)
                }
                (Reason::PassInactive, _) if several => format!(
                    "allowed: list `{}` is off",
                    list.map_or("?", |l| l.name.as_str())
                ),
                (Reason::PassInactive, _) => "allowed: the list is inactive".to_owned(),
                (Reason::PassEmergency, _) => format!(
                    "allowed by the emergency disable{} (no entry{of_list} covers {addr}; {port_name} is protected)",
                    self.emergency
                        .as_ref()
                        .map_or(String::new(), |e| format!(" until {}", e.until_local()))
                ),
                (Reason::PassUnprotectedPort, _) => {
                    format!("allowed: {port_name} is not protected")
                }
                (r, _) if r.is_would_drop() => format!(
                    "allowed for now: list `{}` is in monitor mode; enforcing it would block {addr} \
                     (no entry of it covers {addr})",
                    list.map_or("?", |l| l.name.as_str())
                ),
                (r, _) if r.is_drop() && several => {
                    format!(
                        "blocked: no entry{of_list} covers {addr}; {port_name} is protected by it"
                    )
                }
                (r, _) if r.is_drop() => {
                    format!(
                        "blocked: no entry covers {addr}; {port_name} is protected; list active"
                    )
                }
                (r, _) => format!("allowed ({})", r.name()),
            };
            verdicts.push(PortVerdict {
                port,
                protocol: match protocol {
                    Protocol::Tcp => "tcp",
                    Protocol::Udp => "udp",
                }
                .to_owned(),
                list: list.map(|l| l.name.clone()),
                protected: reason != Reason::PassUnprotectedPort,
                allowed: !reason.is_drop(),
                entry: entry.map(|e| entry_info(&self.config, e)),
                explanation,
            });
        }
        Ok(Reply::Test(TestReport {
            ip: addr.to_string(),
            active: self.filter.active(),
            verdicts,
        }))
    }

    pub(super) fn audit_records(
        &self,
        since: Option<&str>,
        action: Option<&str>,
    ) -> Result<Reply, Refusal> {
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
        let action = action.map(Action::parse).transpose().map_err(invalid)?;
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
    pub(super) fn audit_verify(&self) -> Result<Reply, Refusal> {
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

    pub(super) fn blocked_report(&self, top: usize, list: Option<&str>) -> Result<Reply, Refusal> {
        let only = list
            .map(|name| {
                super::commands::list_named(&self.config, name).map(|(_, l)| l.name.clone())
            })
            .transpose()?;
        let budget = self
            .filter
            .event_budget()
            .map_err(|e| (ErrorKind::Internal, format!("{e:#}")))?;
        Ok(Reply::Blocked(BlockedReport {
            sources: self.blocked.top(top, only.as_deref()),
            events_received: self.blocked.events(),
            events_sent: budget.sent,
            events_suppressed: budget.suppressed,
        }))
    }
}
