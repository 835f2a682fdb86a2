//! Who is being blocked: the drops the XDP program reports through its ring buffer (within
//! its per-CPU event budget), aggregated by source and port in bounded memory.
//!
//! When the table is full, the source with the fewest events (the oldest of those, on a tie)
//! makes room: under a flood of spoofed one-off sources the table churns at its bottom while
//! sources that keep knocking stay, so the top of the list is what an admin needs.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use allowlist_common::maps::BlockedEvent;
use allowlist_common::verdict::Reason;
use allowlist_control::protocol::BlockedSource;

/// Sources remembered at most.
pub const CAPACITY: usize = 4096;

struct Tally {
    count: u64,
    first_seen: jiff::Timestamp,
    last_seen: jiff::Timestamp,
    reason: u8,
    list: String,
}

/// A source knocking on a port, over TCP or (`true`) UDP.
type Key = (IpAddr, u16, bool);

#[derive(Default)]
pub struct Blocked {
    sources: HashMap<Key, Tally>,
    events: u64,
}

fn reason_of(event: &BlockedEvent) -> Option<Reason> {
    Reason::ALL.get(usize::from(event.reason)).copied()
}

fn source(event: &BlockedEvent) -> IpAddr {
    if event.family == 4 {
        IpAddr::V4(Ipv4Addr::new(
            event.addr[0],
            event.addr[1],
            event.addr[2],
            event.addr[3],
        ))
    } else {
        IpAddr::V6(Ipv6Addr::from(event.addr))
    }
}

impl Blocked {
    /// Records a drop (or monitor mode's would-be drop) by list `list`.
    pub fn record(&mut self, event: &BlockedEvent, list: &str, now: jiff::Timestamp) {
        self.events += 1;
        let udp = matches!(
            reason_of(event),
            Some(
                Reason::DropUdpV4
                    | Reason::DropUdpV6
                    | Reason::WouldDropUdpV4
                    | Reason::WouldDropUdpV6
            )
        );
        let key = (source(event), event.port, udp);
        if let Some(tally) = self.sources.get_mut(&key) {
            tally.count += 1;
            tally.last_seen = now;
            tally.reason = event.reason;
            if tally.list != list {
                list.clone_into(&mut tally.list);
            }
            return;
        }
        if self.sources.len() >= CAPACITY
            && let Some(victim) = self
                .sources
                .iter()
                .min_by_key(|(_, t)| (t.count, t.last_seen))
                .map(|(k, _)| *k)
        {
            self.sources.remove(&victim);
        }
        self.sources.insert(
            key,
            Tally {
                count: 1,
                first_seen: now,
                last_seen: now,
                reason: event.reason,
                list: list.to_owned(),
            },
        );
    }

    /// Events received since the daemon started.
    pub fn events(&self) -> u64 {
        self.events
    }

    /// The `n` sources with the most events, most first.
    pub fn top(&self, n: usize) -> Vec<BlockedSource> {
        let mut all: Vec<_> = self.sources.iter().collect();
        all.sort_by(|a, b| {
            b.1.count
                .cmp(&a.1.count)
                .then(b.1.last_seen.cmp(&a.1.last_seen))
        });
        all.into_iter()
            .take(n)
            .map(|((source, port, udp), t)| {
                let reason = Reason::ALL.get(usize::from(t.reason));
                BlockedSource {
                    source: *source,
                    port: *port,
                    count: t.count,
                    first_seen: allowlist_control::time::utc_millis(t.first_seen),
                    last_seen: allowlist_control::time::utc_millis(t.last_seen),
                    reason: reason.map_or("unknown", |r| r.name()).to_owned(),
                    list: t.list.clone(),
                    would_be: reason.is_some_and(|r| r.is_would_drop()),
                    udp: *udp,
                }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(last: u8, port: u16) -> BlockedEvent {
        let mut e = BlockedEvent {
            port,
            family: 4,
            reason: Reason::DropSynV4 as u8,
            ..BlockedEvent::default()
        };
        e.addr[..4].copy_from_slice(&[198, 18, 2, last]);
        e
    }

    #[test]
    fn top_sources_survive_a_churning_flood() {
        let mut blocked = Blocked::default();
        let t = jiff::Timestamp::now();
        for _ in 0..50 {
            blocked.record(&event(2, 22), "default", t);
        }
        for _ in 0..10 {
            blocked.record(&event(3, 2222), "default", t);
        }
        // Far more one-off sources than the table holds.
        for i in 0..(CAPACITY as u32 * 3) {
            let mut e = event(0, 23);
            e.addr[..4].copy_from_slice(&(0xc612_0000 | (i + 256)).to_be_bytes());
            blocked.record(&e, "default", t);
        }
        assert_eq!(blocked.sources.len(), CAPACITY);
        let top = blocked.top(2);
        assert_eq!(
            (top[0].source.to_string(), top[0].port, top[0].count),
            ("198.18.2.2".into(), 22, 50)
        );
        assert_eq!(
            (top[1].source.to_string(), top[1].port, top[1].count),
            ("198.18.2.3".into(), 2222, 10)
        );
        assert_eq!(top[0].reason, "drop_syn_v4");
        assert!(!top[0].would_be && !top[0].udp);
        // Monitor mode's would-be drops are marked, and UDP is its own port space.
        let mut udp = event(2, 22);
        udp.reason = Reason::WouldDropUdpV4 as u8;
        for _ in 0..60 {
            blocked.record(&udp, "dns", t);
        }
        let top = blocked.top(1);
        assert!(top[0].would_be && top[0].udp, "{top:?}");
        assert_eq!((top[0].count, top[0].list.as_str()), (60, "dns"));
        assert_eq!(blocked.events(), 120 + CAPACITY as u64 * 3);
    }
}
