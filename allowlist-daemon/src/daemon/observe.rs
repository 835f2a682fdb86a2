//! What the daemon shows about itself: the /metrics snapshot, counters in its log, interface
//! names, and when each session to a protected port was first seen.

use allowlist_common::verdict::Reason;
use tracing::{info, warn};

use super::{Daemon, totals};
use crate::emergency::Emergency;
use crate::metrics;
use crate::sessions::Session;

impl Daemon {
    /// Takes what /metrics shows.
    pub(super) fn snapshot(&self) -> metrics::Snapshot {
        let counters = self.filter.counters().unwrap_or_default();
        let hits = self.entry_hits().unwrap_or_default();
        let budget = self.filter.event_budget().unwrap_or_default();
        let list_counters = self.filter.list_counters().unwrap_or_default();
        let v4 = self
            .config
            .entries
            .iter()
            .filter(|e| e.net.addr().is_ipv4())
            .count() as u64;
        metrics::Snapshot {
            // Every attached interface, zeros included, as `status` shows them.
            interfaces: self
                .attachments
                .describe()
                .map(|(name, ifindex, _)| metrics::InterfaceCounters {
                    name: name.to_owned(),
                    by_reason: counters
                        .get(&ifindex)
                        .copied()
                        .unwrap_or_default()
                        .by_reason,
                })
                .collect(),
            lists: self
                .config
                .lists
                .iter()
                .map(|l| metrics::ListCounters {
                    name: l.name.clone(),
                    mode: l.mode.name(),
                    by_reason: list_counters
                        .get(&l.name)
                        .copied()
                        .unwrap_or_default()
                        .by_reason,
                })
                .collect(),
            entries: self
                .config
                .entries
                .iter()
                .map(|e| {
                    let list = super::changes::list_name(&self.config, e);
                    metrics::EntryHits {
                        cidr: e.net,
                        list: list.to_owned(),
                        comment: e.comment.to_string(),
                        hits: hits.of(e.net, list).hits,
                    }
                })
                .collect(),
            entries_v4: v4,
            entries_v6: self.config.entries.len() as u64 - v4,
            capacity: u64::from(self.filter.capacity()),
            active: self.config.active,
            emergency_remaining_secs: self
                .emergency
                .as_ref()
                .and_then(Emergency::remaining)
                .map_or(0, |d| d.as_secs()),
            reloads_total: self.reloads.total,
            last_reload_success: self.reloads.last_ok,
            last_reload_timestamp_secs: self.reloads.last_at.as_millisecond() as f64 / 1000.0,
            audit_records: self.audit.last_seq(),
            revision: self.revision,
            blocked_events_total: self.blocked.events(),
            blocked_events_suppressed_total: budget.suppressed,
            timed_entries: self.config.ends.len() as u64,
            knocks: self.knocks.as_ref().map_or_else(Vec::new, |knocks| {
                let counters = knocks.counters();
                let mut results = vec![("granted", counters.granted())];
                results.extend(counters.refusals());
                results
            }),
        }
    }

    /// Remembers when each connection was first seen; forgets ended ones.
    pub(super) fn note_sessions(&mut self, found: &[Session]) {
        let now = jiff::Timestamp::now();
        let live: std::collections::HashSet<_> =
            found.iter().map(|s| (s.local, s.peer, s.inode)).collect();
        self.sessions_seen.retain(|key, _| live.contains(key));
        for key in live {
            self.sessions_seen.entry(key).or_insert(now);
        }
    }

    pub(super) fn session_since(&self, session: &Session) -> String {
        self.sessions_seen
            .get(&(session.local, session.peer, session.inode))
            .map_or_else(String::new, |t| {
                t.round(jiff::Unit::Second).unwrap_or(*t).to_string()
            })
    }

    pub(super) fn describe_interfaces(&self) -> String {
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

    pub(super) fn interface_name(&self, ifindex: u32) -> String {
        self.attachments
            .describe()
            .find(|(_, i, _)| *i == ifindex)
            .map_or_else(|| format!("ifindex {ifindex}"), |(n, _, _)| n.to_string())
    }

    pub(super) fn log_counters(&self) {
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
}
