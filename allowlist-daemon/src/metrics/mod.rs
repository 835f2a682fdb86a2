//! Prometheus metrics. On each scrape of `GET /metrics` the daemon's main loop hands over a
//! [`Snapshot`] of its state, and it is rendered in the OpenMetrics text format, which
//! Prometheus reads (content type `application/openmetrics-text; version=1.0.0`).
//!
//! | metric | type | labels | meaning |
//! | --- | --- | --- | --- |
//! | `allowlist_packets_total` | counter | `interface`, `reason`, `verdict` (`pass` or `drop`) | packets the XDP program judged on the interface, by reason (the names `allowlistctl status` shows) |
//! | `allowlist_list_packets_total` | counter | `list`, `reason`, `verdict` | what each list judged (new connections, UDP datagrams, hidden fragments), by reason: `pass_allowed_*`, `drop_*`, `would_drop_*` (monitor mode), `pass_inactive`, `pass_emergency` |
//! | `allowlist_list_mode` | gauge | `list`, `mode` | 1 for each list's mode (`enforce`, `monitor` or `off`) |
//! | `allowlist_entry_hits_total` | counter | `cidr`, `list`, `comment` | new connections an entry let in for its list; see below |
//! | `allowlist_entries` | gauge | `family` (`ipv4` or `ipv6`) | entries loaded |
//! | `allowlist_capacity` | gauge | | capacity of each family's map (`max_entries`) |
//! | `allowlist_active` | gauge | | 1 when the list is enforced, 0 when inactive |
//! | `allowlist_emergency_remaining_seconds` | gauge | | time left of an emergency disable, 0 when none |
//! | `allowlist_reloads_total` | counter | | config reloads attempted |
//! | `allowlist_last_reload_success` | gauge | | 1 when the last reload succeeded, 0 when it failed |
//! | `allowlist_last_reload_timestamp_seconds` | gauge | | Unix time of the last reload |
//! | `allowlist_audit_records_total` | counter | | audit records written |
//! | `allowlist_revision` | gauge | | revision of the running list |
//! | `allowlist_blocked_events_total` | counter | | drop events the XDP program sent to the daemon (`allowlistctl blocked`) |
//! | `allowlist_blocked_events_suppressed_total` | counter | | drop events it held back to stay within its per-CPU event budget |
//! | `allowlist_timed_entries` | gauge | | entries with an end (`expires`), knocks' included |
//! | `allowlist_knocks_total` | counter | `result` (`granted`, or why not: `bad_signature`, `replayed_nonce`, ...) | knocks received, when `knock_listen` is set |
//!
//! `allowlist_entry_hits_total` is bounded so that a list of many thousands of entries does
//! not become as many series: only the `max_entry_series` entries with the most hits get a
//! series of their own (ties go to the lower address), and the hits of all the others are
//! summed into one series with `cidr="other"` and an empty list and comment, present only when some
//! entry is left out. As entries move in and out of the top, `other` can go down, which
//! Prometheus takes for a counter reset: read trends of single entries from their own series.

use std::fmt;

use allowlist_common::verdict::{REASON_COUNT, Reason};
use ipnet::IpNet;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeGaugeValue, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::{Registry, Unit};

mod http;

pub use http::serve;

/// What [`render`] emits, as the crate's HTTP examples send it.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Everything /metrics shows, taken by the daemon's main loop on request.
#[derive(Clone, Debug, Default)]
pub struct Snapshot {
    pub interfaces: Vec<InterfaceCounters>,
    pub lists: Vec<ListCounters>,
    pub entries: Vec<EntryHits>,
    pub entries_v4: u64,
    pub entries_v6: u64,
    /// Capacity of each family's map.
    pub capacity: u64,
    pub active: bool,
    /// 0 when no emergency disable is in force.
    pub emergency_remaining_secs: u64,
    pub reloads_total: u64,
    pub last_reload_success: bool,
    /// Unix time.
    pub last_reload_timestamp_secs: f64,
    pub audit_records: u64,
    pub revision: u64,
    pub blocked_events_total: u64,
    pub blocked_events_suppressed_total: u64,
    pub timed_entries: u64,
    /// Knocks by result (`granted` or a refusal's kind); empty when knocks are off.
    pub knocks: Vec<(&'static str, u64)>,
}

/// One interface's packet counters, summed over CPUs.
#[derive(Clone, Debug, PartialEq)]
pub struct InterfaceCounters {
    pub name: String,
    /// Indexed by [`Reason`] as `usize`, like `allowlist_common::maps::Counters`.
    pub by_reason: [u64; REASON_COUNT],
}

/// One list's mode and packet counters, summed over CPUs.
#[derive(Clone, Debug, PartialEq)]
pub struct ListCounters {
    pub name: String,
    pub mode: &'static str,
    /// Indexed by [`Reason`] as `usize`.
    pub by_reason: [u64; REASON_COUNT],
}

#[derive(Clone, Debug, PartialEq)]
pub struct EntryHits {
    pub cidr: IpNet,
    pub list: String,
    pub comment: String,
    /// New connections the entry let in.
    pub hits: u64,
}

/// The snapshot in the OpenMetrics text format, with at most `max_entry_series` entries
/// getting their own `allowlist_entry_hits_total` series (see the module docs).
pub fn render(snapshot: &Snapshot, max_entry_series: usize) -> String {
    let exposition = Exposition {
        entry_series: entry_series(&snapshot.entries, max_entry_series),
        snapshot: Snapshot {
            interfaces: snapshot.interfaces.clone(),
            lists: snapshot.lists.clone(),
            entries: Vec::new(),
            knocks: snapshot.knocks.clone(),
            ..*snapshot
        },
    };
    let mut registry = Registry::with_prefix("allowlist");
    registry.register_collector(Box::new(exposition));
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &registry)
        .expect("writing to a String cannot fail");
    text
}

/// One `allowlist_entry_hits_total` series: (cidr label, list label, comment label, hits).
type EntrySeries = (String, String, String, u64);

/// The entries with the most hits, most first, then the sum of the rest as `other`.
fn entry_series(entries: &[EntryHits], max: usize) -> Vec<EntrySeries> {
    // Ties go to the lower address, so that the same entries are shown from scrape to scrape.
    let rank = |a: &&EntryHits, b: &&EntryHits| {
        (b.hits.cmp(&a.hits))
            .then(a.cidr.cmp(&b.cidr))
            .then(a.list.cmp(&b.list))
    };
    let mut ranked: Vec<&EntryHits> = entries.iter().collect();
    let other = (ranked.len() > max).then(|| {
        // Linear, where sorting a list of millions would hold up the scrape.
        ranked.select_nth_unstable_by(max, rank);
        ranked.split_off(max).iter().map(|e| e.hits).sum::<u64>()
    });
    ranked.sort_unstable_by(rank);
    let mut series: Vec<EntrySeries> = ranked
        .into_iter()
        .map(|e| {
            (
                e.cidr.to_string(),
                e.list.clone(),
                e.comment.clone(),
                e.hits,
            )
        })
        .collect();
    series.extend(other.map(|hits| ("other".to_owned(), String::new(), String::new(), hits)));
    series
}

/// The data of one scrape, owned because a registry only takes `'static` collectors.
#[derive(Debug)]
struct Exposition {
    /// Without its entries: `entry_series` stands for them.
    snapshot: Snapshot,
    entry_series: Vec<EntrySeries>,
}

impl Collector for Exposition {
    fn encode(&self, mut encoder: DescriptorEncoder) -> fmt::Result {
        let s = &self.snapshot;
        // A family without series is left out, as the crate's registry does: parsers differ
        // on descriptors with no samples.
        if !s.interfaces.is_empty() {
            let mut packets = encoder.encode_descriptor(
                "packets",
                "Packets the XDP program judged, by interface and reason.",
                None,
                MetricType::Counter,
            )?;
            for interface in &s.interfaces {
                for reason in Reason::ALL {
                    let verdict = if reason.is_drop() { "drop" } else { "pass" };
                    let labels = [
                        ("interface", interface.name.as_str()),
                        ("reason", reason.name()),
                        ("verdict", verdict),
                    ];
                    ConstCounter::new(interface.by_reason[reason as usize])
                        .encode(packets.encode_family(&labels)?)?;
                }
            }
        }

        if !s.lists.is_empty() {
            let mut packets = encoder.encode_descriptor(
                "list_packets",
                "What each list judged, by reason (would_drop_*: monitor mode).",
                None,
                MetricType::Counter,
            )?;
            // Only what a list decides: the reasons from pass_inactive on.
            let judged = Reason::ALL
                .into_iter()
                .filter(|r| *r as u32 >= Reason::PassInactive as u32);
            for list in &s.lists {
                for reason in judged.clone() {
                    let verdict = if reason.is_drop() { "drop" } else { "pass" };
                    let labels = [
                        ("list", list.name.as_str()),
                        ("reason", reason.name()),
                        ("verdict", verdict),
                    ];
                    ConstCounter::new(list.by_reason[reason as usize])
                        .encode(packets.encode_family(&labels)?)?;
                }
            }
            let mut modes = encoder.encode_descriptor(
                "list_mode",
                "1 for each list's mode: enforce, monitor or off.",
                None,
                MetricType::Gauge,
            )?;
            for list in &s.lists {
                let labels = [("list", list.name.as_str()), ("mode", list.mode)];
                ConstGauge::new(1u64).encode(modes.encode_family(&labels)?)?;
            }
        }

        if !self.entry_series.is_empty() {
            let mut hits = encoder.encode_descriptor(
                "entry_hits",
                "New connections an entry let in; the least hit entries are summed as cidr=other.",
                None,
                MetricType::Counter,
            )?;
            for (cidr, list, comment, count) in &self.entry_series {
                let labels = [
                    ("cidr", cidr.as_str()),
                    ("list", list.as_str()),
                    ("comment", comment.as_str()),
                ];
                ConstCounter::new(*count).encode(hits.encode_family(&labels)?)?;
            }
        }

        let mut entries = encoder.encode_descriptor(
            "entries",
            "Entries loaded, by address family.",
            None,
            MetricType::Gauge,
        )?;
        for (family, count) in [("ipv4", s.entries_v4), ("ipv6", s.entries_v6)] {
            ConstGauge::new(count).encode(entries.encode_family(&[("family", family)])?)?;
        }

        let seconds = Some(&Unit::Seconds);
        gauge(
            &mut encoder,
            "capacity",
            "Capacity of each address family's map (max_entries).",
            None,
            s.capacity,
        )?;
        gauge(
            &mut encoder,
            "active",
            "1 when the list is enforced, 0 when it is inactive.",
            None,
            u64::from(s.active),
        )?;
        gauge(
            &mut encoder,
            "emergency_remaining",
            "Time left of an emergency disable, 0 when none is in force.",
            seconds,
            s.emergency_remaining_secs,
        )?;
        counter(
            &mut encoder,
            "reloads",
            "Config reloads attempted.",
            s.reloads_total,
        )?;
        gauge(
            &mut encoder,
            "last_reload_success",
            "1 when the last reload succeeded, 0 when it failed.",
            None,
            u64::from(s.last_reload_success),
        )?;
        gauge(
            &mut encoder,
            "last_reload_timestamp",
            "Unix time of the last reload.",
            seconds,
            s.last_reload_timestamp_secs,
        )?;
        counter(
            &mut encoder,
            "audit_records",
            "Audit records written.",
            s.audit_records,
        )?;
        gauge(
            &mut encoder,
            "revision",
            "Revision of the running list.",
            None,
            s.revision,
        )?;
        counter(
            &mut encoder,
            "blocked_events",
            "Drop events the XDP program sent to the daemon.",
            s.blocked_events_total,
        )?;
        counter(
            &mut encoder,
            "blocked_events_suppressed",
            "Drop events the XDP program held back to stay within its event budget.",
            s.blocked_events_suppressed_total,
        )?;
        gauge(
            &mut encoder,
            "timed_entries",
            "Entries with an end (expires), knocks' included.",
            None,
            s.timed_entries,
        )?;
        if !s.knocks.is_empty() {
            let mut knocks = encoder.encode_descriptor(
                "knocks",
                "Knocks received: granted, or the reason they were refused.",
                None,
                MetricType::Counter,
            )?;
            for (result, count) in &s.knocks {
                ConstCounter::new(*count).encode(knocks.encode_family(&[("result", *result)])?)?;
            }
        }
        Ok(())
    }
}

fn gauge(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    unit: Option<&Unit>,
    value: impl EncodeGaugeValue,
) -> fmt::Result {
    ConstGauge::new(value).encode(encoder.encode_descriptor(name, help, unit, MetricType::Gauge)?)
}

fn counter(encoder: &mut DescriptorEncoder, name: &str, help: &str, value: u64) -> fmt::Result {
    ConstCounter::new(value).encode(encoder.encode_descriptor(
        name,
        help,
        None,
        MetricType::Counter,
    )?)
}

#[cfg(test)]
mod tests {
    use openmetrics_parser::openmetrics::parse_openmetrics;
    use openmetrics_parser::{MetricsExposition, OpenMetricsType, OpenMetricsValue};

    use super::*;

    pub(super) type Parsed = MetricsExposition<OpenMetricsType, OpenMetricsValue>;

    fn entry(cidr: &str, comment: &str, hits: u64) -> EntryHits {
        EntryHits {
            cidr: cidr.parse().unwrap(),
            list: "default".to_owned(),
            comment: comment.to_owned(),
            hits,
        }
    }

    pub(super) fn sample() -> Snapshot {
        let mut eth0 = [0; REASON_COUNT];
        eth0[Reason::DropSynV4 as usize] = 42;
        eth0[Reason::PassAllowedV4 as usize] = 7;
        let mut eth1 = [0; REASON_COUNT];
        eth1[Reason::DropFragmentEvasion as usize] = 3;
        let mut api = [0; REASON_COUNT];
        api[Reason::WouldDropUdpV4 as usize] = 11;
        Snapshot {
            lists: vec![
                ListCounters {
                    name: "ssh".into(),
                    mode: "enforce",
                    by_reason: eth0,
                },
                ListCounters {
                    name: "api".into(),
                    mode: "monitor",
                    by_reason: api,
                },
            ],
            interfaces: vec![
                InterfaceCounters {
                    name: "eth0".into(),
                    by_reason: eth0,
                },
                InterfaceCounters {
                    name: "eth1".into(),
                    by_reason: eth1,
                },
            ],
            entries: vec![
                entry("10.0.0.0/8", "office \"HQ\" C:\\vpn", 5),
                entry("2001:db8::/32", "line\nbreak", 2),
            ],
            entries_v4: 1,
            entries_v6: 1,
            capacity: 1024,
            active: true,
            emergency_remaining_secs: 90,
            reloads_total: 4,
            last_reload_success: false,
            last_reload_timestamp_secs: 1_700_000_000.5,
            audit_records: 12,
            revision: 9,
            blocked_events_total: 30,
            blocked_events_suppressed_total: 6,
            timed_entries: 2,
            knocks: vec![("granted", 3), ("bad_signature", 1)],
        }
    }

    pub(super) fn parse(text: &str) -> Parsed {
        parse_openmetrics(text).unwrap_or_else(|e| panic!("{e}\n{text}"))
    }

    /// The value of the one series of `family` whose labels include `labels`.
    pub(super) fn value(parsed: &Parsed, family: &str, labels: &[(&str, &str)]) -> f64 {
        let family = &parsed.families[family];
        let matching: Vec<_> = family
            .iter_samples()
            .filter(|s| {
                let set = s.get_labelset().unwrap();
                labels
                    .iter()
                    .all(|(k, v)| set.get_label_value(k) == Some(*v))
            })
            .collect();
        assert_eq!(matching.len(), 1, "{labels:?} in {}", family.family_name);
        match &matching[0].value {
            OpenMetricsValue::Counter(c) => c.value.as_f64(),
            OpenMetricsValue::Gauge(n) => n.as_f64(),
            other => panic!("unexpected {other:?}"),
        }
    }

    /// (cidr, comment, hits) of every entry series.
    fn entry_hits(parsed: &Parsed) -> Vec<(String, String, f64)> {
        let mut series: Vec<_> = parsed.families["allowlist_entry_hits"]
            .iter_samples()
            .map(|s| {
                let set = s.get_labelset().unwrap();
                let OpenMetricsValue::Counter(c) = &s.value else {
                    panic!("not a counter")
                };
                (
                    set.get_label_value("cidr").unwrap().to_owned(),
                    set.get_label_value("comment").unwrap().to_owned(),
                    c.value.as_f64(),
                )
            })
            .collect();
        series.sort_by(|a, b| a.0.cmp(&b.0));
        series
    }

    #[test]
    fn a_network_in_two_lists_has_a_series_per_list() {
        let mut snapshot = sample();
        let mut api = entry("10.0.0.0/8", "partners", 3);
        api.list = "api".to_owned();
        snapshot.entries.push(api);
        let parsed = parse(&render(&snapshot, 10));
        let hits = |list| {
            value(
                &parsed,
                "allowlist_entry_hits",
                &[("list", list), ("cidr", "10.0.0.0/8")],
            )
        };
        assert_eq!((hits("default"), hits("api")), (5.0, 3.0));
    }

    #[test]
    fn renders_every_metric() {
        let text = render(&sample(), 10);
        let parsed = parse(&text);
        let packets = &parsed.families["allowlist_packets"];
        assert_eq!(packets.family_type, OpenMetricsType::Counter);
        assert_eq!(packets.iter_samples().count(), 2 * REASON_COUNT);
        let drop_v4 = [
            ("interface", "eth0"),
            ("reason", "drop_syn_v4"),
            ("verdict", "drop"),
        ];
        assert_eq!(value(&parsed, "allowlist_packets", &drop_v4), 42.0);
        let allowed = [("interface", "eth0"), ("reason", "pass_allowed_v4")];
        assert_eq!(value(&parsed, "allowlist_packets", &allowed), 7.0);
        let evasion = [("interface", "eth1"), ("reason", "drop_fragment_evasion")];
        assert_eq!(value(&parsed, "allowlist_packets", &evasion), 3.0);
        let emergency = [
            ("interface", "eth1"),
            ("reason", "pass_emergency"),
            ("verdict", "pass"),
        ];
        assert_eq!(value(&parsed, "allowlist_packets", &emergency), 0.0);
        let would = [
            ("list", "api"),
            ("reason", "would_drop_udp_v4"),
            ("verdict", "pass"),
        ];
        assert_eq!(value(&parsed, "allowlist_list_packets", &would), 11.0);
        let ssh_drops = [("list", "ssh"), ("reason", "drop_syn_v4")];
        assert_eq!(value(&parsed, "allowlist_list_packets", &ssh_drops), 42.0);
        let monitor = [("list", "api"), ("mode", "monitor")];
        assert_eq!(value(&parsed, "allowlist_list_mode", &monitor), 1.0);

        let family = |f| [("family", f)];
        assert_eq!(value(&parsed, "allowlist_entries", &family("ipv4")), 1.0);
        assert_eq!(value(&parsed, "allowlist_entries", &family("ipv6")), 1.0);
        let scalars = [
            ("allowlist_capacity", 1024.0),
            ("allowlist_active", 1.0),
            ("allowlist_emergency_remaining_seconds", 90.0),
            ("allowlist_reloads", 4.0),
            ("allowlist_last_reload_success", 0.0),
            ("allowlist_last_reload_timestamp_seconds", 1_700_000_000.5),
            ("allowlist_audit_records", 12.0),
            ("allowlist_revision", 9.0),
            ("allowlist_blocked_events", 30.0),
            ("allowlist_blocked_events_suppressed", 6.0),
            ("allowlist_timed_entries", 2.0),
        ];
        for (name, expected) in scalars {
            assert_eq!(value(&parsed, name, &[]), expected, "{name}");
        }
        let granted = [("result", "granted")];
        assert_eq!(value(&parsed, "allowlist_knocks", &granted), 3.0);
        let forged = [("result", "bad_signature")];
        assert_eq!(value(&parsed, "allowlist_knocks", &forged), 1.0);
        // Knocks off: no family at all.
        let off = render(
            &Snapshot {
                knocks: Vec::new(),
                ..sample()
            },
            10,
        );
        assert!(!off.contains("allowlist_knocks"), "{off}");
        // The names scrapers see, counters with their suffix.
        for line in [
            "allowlist_reloads_total 4",
            "allowlist_audit_records_total 12",
            "allowlist_blocked_events_suppressed_total 6",
            "allowlist_emergency_remaining_seconds 90",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} missing:\n{text}");
        }
        assert!(text.ends_with("# EOF\n"));
    }

    #[test]
    fn label_values_are_escaped() {
        let text = render(&sample(), 10);
        assert!(
            text.contains(r#"comment="office \"HQ\" C:\\vpn""#),
            "{text}"
        );
        assert!(text.contains(r#"comment="line\nbreak""#), "{text}");
        assert_eq!(
            entry_hits(&parse(&text)),
            [
                ("10.0.0.0/8".into(), "office \"HQ\" C:\\vpn".into(), 5.0),
                ("2001:db8::/32".into(), "line\nbreak".into(), 2.0),
            ]
        );
    }

    #[test]
    fn entry_series_are_capped() {
        let snapshot = Snapshot {
            entries: vec![
                entry("192.0.2.1/32", "a", 1),
                entry("192.0.2.2/32", "b", 50),
                entry("192.0.2.3/32", "c", 7),
                entry("192.0.2.4/32", "d", 50),
                entry("192.0.2.5/32", "e", 0),
            ],
            ..Snapshot::default()
        };
        let series = |max| entry_hits(&parse(&render(&snapshot, max)));
        // The tie at 50 keeps both; the rest (7 + 1 + 0) is summed.
        assert_eq!(
            series(2),
            [
                ("192.0.2.2/32".into(), "b".into(), 50.0),
                ("192.0.2.4/32".into(), "d".into(), 50.0),
                ("other".into(), String::new(), 8.0),
            ]
        );
        // Ties at the cut go to the lower address.
        assert_eq!(
            series(1),
            [
                ("192.0.2.2/32".into(), "b".into(), 50.0),
                ("other".into(), String::new(), 58.0),
            ]
        );
        assert_eq!(series(0), [("other".into(), String::new(), 108.0)]);
        // Nothing is left out, so there is no "other".
        assert_eq!(series(5).len(), 5);
        assert!(series(100).iter().all(|(cidr, _, _)| cidr != "other"));
    }

    #[test]
    fn empty_snapshot_is_valid() {
        let parsed = parse(&render(&Snapshot::default(), 10));
        assert!(!parsed.families.contains_key("allowlist_packets"));
        assert!(!parsed.families.contains_key("allowlist_entry_hits"));
        assert_eq!(value(&parsed, "allowlist_active", &[]), 0.0);
    }
}
