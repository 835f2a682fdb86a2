//! Per-entry hits as `list` shows them and as they outlive the daemon: the kernel's counters,
//! plus the hits saved in `state_dir` at the last stop when this daemon's counters are new.

use std::collections::HashMap;

use anyhow::Result;
use ipnet::IpNet;
use tracing::{info, warn};

use super::Daemon;
use crate::hit_history::{self, Entry, Saved};
use allowlist_config::Config;
use allowlist_loader::filter::Filter;

/// At start, once the maps hold the config and before the program sees traffic: new counters
/// get the saved counts back (inherited ones already have them). Returns the saved last-hit
/// times, which the kernel's monotonic stamps cannot hold.
pub(super) fn restore(filter: &mut Filter, config: &Config) -> HashMap<Entry, jiff::Timestamp> {
    let saved = hit_history::load(&config.state_dir);
    if !filter.hits_inherited() && !saved.is_empty() {
        let counts = saved
            .iter()
            .map(|((net, list), s)| (*net, list.as_deref(), s.hits));
        match filter.restore_hits(counts) {
            Ok(()) => info!(
                "restored the hits of {} entries from {}",
                saved.len(),
                hit_history::path(&config.state_dir).display()
            ),
            Err(e) => warn!("{e:#}; per-entry hits start from zero"),
        }
    }
    saved
        .into_iter()
        .filter_map(|(entry, s)| Some((entry, s.last?)))
        .collect()
}

/// Hits by entry, as `list` shows them: by network, then list (a few at most).
#[derive(Default)]
pub(super) struct EntryHits(HashMap<IpNet, Vec<(Option<String>, Saved)>>);

impl EntryHits {
    /// The hits of the entry `net` of `list`; with those counted before lists were told
    /// apart, which belong to each list of the network.
    pub(super) fn of(&self, net: IpNet, list: &str) -> Saved {
        let lists = self.0.get(&net).map_or(&[][..], Vec::as_slice);
        lists
            .iter()
            .filter(|(l, _)| l.as_deref().is_none_or(|l| l == list))
            .fold(Saved::default(), |sum, (_, s)| Saved {
                hits: sum.hits + s.hits,
                last: sum.last.max(s.last),
            })
    }

    fn each(&self) -> impl Iterator<Item = (IpNet, Option<&str>, Saved)> + '_ {
        self.0.iter().flat_map(|(net, lists)| {
            lists
                .iter()
                .map(move |(list, saved)| (*net, list.as_deref(), *saved))
        })
    }
}

impl Daemon {
    /// Hits per entry with any, and the wall-clock time of the latest.
    pub(super) fn entry_hits(&self) -> Result<EntryHits> {
        Ok(self.with_times(self.filter.hits()?))
    }

    /// [`Daemon::entry_hits`] of just `entries`, reading only their counters.
    pub(super) fn entry_hits_of(&self, entries: &[&allowlist_config::Entry]) -> Result<EntryHits> {
        let asked = entries
            .iter()
            .map(|e| (e.net, super::changes::list_name(&self.config, e)));
        Ok(self.with_times(self.filter.hits_of(asked)?))
    }

    fn with_times(&self, hits: allowlist_loader::filter::ListHits) -> EntryHits {
        let mut out = EntryHits::default();
        for (entry, stat) in hits {
            // Counts restored at start carry no kernel stamp until the entry's next hit:
            // until then, the saved time is the latest.
            let last = hit_history::wall_time(stat.last_seen_ns)
                .or_else(|| self.earlier_hits.get(&entry).copied());
            let hits = stat.packets();
            let (net, list) = entry;
            out.0
                .entry(net)
                .or_default()
                .push((list, Saved { hits, last }));
        }
        out
    }

    /// Saves the hits to `state_dir` (on stop, and every `SAVE_INTERVAL`).
    pub(super) fn save_hits(&mut self) {
        self.hits_saved = std::time::Instant::now();
        let state_dir = &self.config.state_dir;
        let saved = self.entry_hits().and_then(|hits| {
            hit_history::save(state_dir, hits.each()).map_err(anyhow::Error::from)
        });
        if let Err(e) = saved {
            warn!(
                "saving the hits to {}: {e:#}",
                hit_history::path(state_dir).display()
            );
        }
    }
}
