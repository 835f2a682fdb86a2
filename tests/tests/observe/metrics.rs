//! /metrics.

use super::*;

struct Http {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl Http {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// `GET path` from inside the server namespace.
fn http_get(ns: &Netns, path: &str) -> Http {
    let addr: SocketAddr = METRICS.parse().unwrap();
    let raw = ns
        .run_in(|| -> io::Result<String> {
            let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
            stream.set_read_timeout(Some(Duration::from_secs(10)))?;
            write!(
                stream,
                "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
            )?;
            let mut raw = String::new();
            stream.read_to_string(&mut raw)?;
            Ok(raw)
        })
        .unwrap_or_else(|e| panic!("GET http://{addr}{path}: {e}"));
    let (head, body) = raw
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("no end of head: {raw:?}"));
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status line: {raw:?}"));
    Http {
        status,
        headers: lines
            .filter_map(|l| l.split_once(':'))
            .map(|(n, v)| (n.trim().to_owned(), v.trim().to_owned()))
            .collect(),
        body: body.to_owned(),
    }
}

type Parsed = MetricsExposition<OpenMetricsType, OpenMetricsValue>;

fn scrape(ns: &Netns) -> (String, Parsed) {
    let response = http_get(ns, "/metrics");
    assert_eq!(response.status, 200, "{}", response.body);
    assert!(
        response
            .header("content-type")
            .is_some_and(|t| t.starts_with("application/openmetrics-text")),
        "content type {:?}",
        response.header("content-type")
    );
    let parsed = openmetrics_parser::openmetrics::parse_openmetrics(&response.body)
        .unwrap_or_else(|e| panic!("/metrics does not parse: {e}\n{}", response.body));
    (response.body, parsed)
}

/// Every sample of `family` as (labels, value).
fn samples(parsed: &Parsed, family: &str) -> Vec<(BTreeMap<String, String>, f64)> {
    let Some(family) = parsed.families.get(family) else {
        return Vec::new();
    };
    family
        .iter_samples()
        .map(|s| {
            let set = s.get_labelset().unwrap();
            let labels = set.iter().map(|(n, v)| (n.clone(), v.clone())).collect();
            let value = match &s.value {
                OpenMetricsValue::Counter(c) => c.value.as_f64(),
                OpenMetricsValue::Gauge(n) => n.as_f64(),
                other => panic!("unexpected {other:?}"),
            };
            (labels, value)
        })
        .collect()
}

/// The value of the one series of `family` whose labels include `labels`.
#[track_caller]
fn value(parsed: &Parsed, family: &str, labels: &[(&str, &str)]) -> f64 {
    let matching: Vec<f64> = samples(parsed, family)
        .into_iter()
        .filter(|(set, _)| {
            labels
                .iter()
                .all(|(k, v)| set.get(*k).map(String::as_str) == Some(*v))
        })
        .map(|(_, v)| v)
        .collect();
    assert_eq!(
        matching.len(),
        1,
        "{family} {labels:?}: {:?}",
        samples(parsed, family)
    );
    matching[0]
}

#[track_caller]
fn as_f64(value: &Value, pointer: &str) -> f64 {
    u64_at(value, pointer) as f64
}

#[test]
fn metrics_parse_and_agree_with_status_list_blocked_and_audit() {
    if !require_root("metrics_parse_and_agree_with_status_list_blocked_and_audit") {
        return;
    }
    let fx = Fx::start(
        &[
            ("198.18.1.0/24", "lab A"),
            ("198.18.3.0/24", "never used"),
            ("2001:db8::a", "lab \"A\" v6"),
        ],
        &format!("metrics_listen = \"{METRICS}\"\nmetrics_entry_series = 1\n"),
    );
    for _ in 0..3 {
        assert_connects(fx.client(), A4, to(A4, PROTECTED), "listed");
    }
    for _ in 0..2 {
        assert_connects(fx.client(), A6, to(A6, PROTECTED), "listed");
    }
    assert_times_out(fx.client(), B4, to(B4, PROTECTED), "not listed");
    fx.ctl(&["add", "198.18.5.5", "--comment", "brief"]).ok();
    fx.ctl(&["remove", "198.18.5.5/32"]).ok();
    // Events of the blocked connect reach the daemon.
    std::thread::sleep(Duration::from_millis(200));

    // Neighbour discovery and the like may move the counters meanwhile: take the scrape
    // between two equal reads of `status`.
    let mut observed = None;
    for _ in 0..5 {
        let before = fx.json(&["status"]);
        let (text, parsed) = scrape(&fx.lab.server);
        let list = fx.list(&[]);
        let blocked = fx.json(&["blocked"]);
        let audit = fx.json(&["audit"]);
        let after = fx.json(&["status"]);
        if before["interfaces"] == after["interfaces"] && before["counters"] == after["counters"] {
            observed = Some((after, text, parsed, list, blocked, audit));
            break;
        }
    }
    let (status, text, parsed, list, blocked, audit) =
        observed.expect("the counters never held still between two `status` reads");
    eprintln!("/metrics:\n{text}");

    // Packets per interface and reason.
    let interfaces = status["interfaces"].as_array().unwrap();
    assert_eq!(interfaces.len(), 1, "{status:#}");
    let mut expected_series = 0;
    for interface in interfaces {
        let name = interface["name"].as_str().unwrap();
        let by_reason = interface["by_reason"].as_object().unwrap();
        assert!(!by_reason.is_empty(), "{interface}");
        for (reason, count) in by_reason {
            let verdict = if reason.starts_with("drop_") {
                "drop"
            } else {
                "pass"
            };
            let labels = [
                ("interface", name),
                ("reason", reason.as_str()),
                ("verdict", verdict),
            ];
            assert_eq!(
                value(&parsed, "allowlist_packets", &labels),
                count.as_u64().unwrap() as f64,
                "allowlist_packets {labels:?} vs status"
            );
            expected_series += 1;
        }
    }
    assert_eq!(
        samples(&parsed, "allowlist_packets").len(),
        expected_series,
        "allowlist_packets has series status does not show"
    );
    assert!(
        value(
            &parsed,
            "allowlist_packets",
            &[("reason", "pass_allowed_v4")]
        ) >= 3.0
            && value(&parsed, "allowlist_packets", &[("reason", "drop_syn_v4")]) >= 1.0,
        "the connects should show"
    );

    // Entries, capacity, active, revision, emergency.
    for (family, key) in [("ipv4", "/entries_v4"), ("ipv6", "/entries_v6")] {
        assert_eq!(
            value(&parsed, "allowlist_entries", &[("family", family)]),
            as_f64(&status, key),
            "allowlist_entries{{family={family}}}"
        );
    }
    assert_eq!(as_f64(&status, "/entries_v4"), 2.0);
    assert_eq!(as_f64(&status, "/entries_v6"), 1.0);
    assert_eq!(
        value(&parsed, "allowlist_capacity", &[]),
        as_f64(&status, "/capacity")
    );
    assert_eq!(value(&parsed, "allowlist_active", &[]), 1.0);
    assert_eq!(status["active"].as_bool(), Some(true));
    assert_eq!(
        value(&parsed, "allowlist_revision", &[]),
        as_f64(&status, "/revision")
    );
    assert_eq!(
        value(&parsed, "allowlist_emergency_remaining_seconds", &[]),
        0.0
    );

    // Audit records: the last seq.
    let records = audit["records"].as_array().unwrap();
    let last_seq = records.last().map_or(0, |r| u64_at(r, "/seq"));
    assert!(last_seq >= 3, "start, add, remove: {audit:#}");
    assert_eq!(
        value(&parsed, "allowlist_audit_records", &[]),
        last_seq as f64,
        "allowlist_audit_records_total vs the last seq of `audit`"
    );

    // Entry hits: metrics_entry_series = 1, so the most hit entry has its own series and the
    // others are summed as "other".
    let hits = |cidr: &str| u64_at(&list[cidr], "/hits") as f64;
    assert_eq!(hits("198.18.1.0/24"), 3.0);
    assert_eq!(hits("2001:db8::a/128"), 2.0);
    let mut series: Vec<(String, String, f64)> = samples(&parsed, "allowlist_entry_hits")
        .into_iter()
        .map(|(l, v)| (l["cidr"].clone(), l["comment"].clone(), v))
        .collect();
    series.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(
        series,
        [
            (
                "198.18.1.0/24".to_owned(),
                "lab A".to_owned(),
                hits("198.18.1.0/24")
            ),
            (
                "other".to_owned(),
                String::new(),
                hits("2001:db8::a/128") + hits("198.18.3.0/24")
            ),
        ],
        "allowlist_entry_hits_total vs `list`"
    );

    // Blocked events.
    assert_eq!(
        value(&parsed, "allowlist_blocked_events", &[]),
        as_f64(&blocked, "/events_received")
    );
    assert_eq!(
        value(&parsed, "allowlist_blocked_events_suppressed", &[]),
        as_f64(&blocked, "/events_suppressed")
    );
    assert!(as_f64(&blocked, "/events_received") >= 1.0, "{blocked}");

    // The names scrapers see.
    for prefix in [
        "allowlist_packets_total{",
        "allowlist_entry_hits_total{",
        "allowlist_audit_records_total ",
        "allowlist_revision ",
    ] {
        assert!(
            text.lines().any(|l| l.starts_with(prefix)),
            "no line starting with {prefix:?}"
        );
    }
    assert!(text.ends_with("# EOF\n"), "{text}");

    // Other paths are not found.
    for path in ["/", "/other", "/metricsx"] {
        let response = http_get(&fx.lab.server, path);
        assert_eq!(response.status, 404, "GET {path}: {}", response.body);
    }

    // Reloads: a good one, a failed one, and the fix.
    let (_, parsed) = scrape(&fx.lab.server);
    let reloads0 = value(&parsed, "allowlist_reloads", &[]);
    assert_eq!(value(&parsed, "allowlist_last_reload_success", &[]), 1.0);
    let good = std::fs::read_to_string(&fx.path).unwrap();
    let changed = format!("{good}\n[[entries]]\ncidr = \"198.18.4.0/24\"\ncomment = \"new\"\n");
    write_atomically(&fx.path, &changed);
    let before_reload = jiff::Timestamp::now().as_second() as f64;
    fx.ctl(&["reload"]).ok();
    let (_, parsed) = scrape(&fx.lab.server);
    assert_eq!(
        value(&parsed, "allowlist_reloads", &[]),
        reloads0 + 1.0,
        "a reload that changed the list"
    );
    assert_eq!(value(&parsed, "allowlist_last_reload_success", &[]), 1.0);
    assert!(
        value(&parsed, "allowlist_last_reload_timestamp_seconds", &[]) >= before_reload - 1.0,
        "the last reload's time"
    );
    assert_eq!(
        value(&parsed, "allowlist_entries", &[("family", "ipv4")]),
        3.0
    );

    write_atomically(&fx.path, &format!("{changed}\nthis is = not [valid toml\n"));
    fx.ctl(&["reload"]).code(2);
    let (_, failed) = scrape(&fx.lab.server);
    write_atomically(&fx.path, &changed);
    fx.ctl(&["reload"]).ok();
    let (_, fixed) = scrape(&fx.lab.server);
    assert_eq!(
        (
            value(&failed, "allowlist_last_reload_success", &[]),
            value(&failed, "allowlist_reloads", &[])
        ),
        (0.0, reloads0 + 2.0),
        "after `allowlistctl reload` of an invalid config (exit 2): (last_reload_success, reloads_total)"
    );
    assert_eq!(
        value(&fixed, "allowlist_last_reload_success", &[]),
        1.0,
        "after fixing the file and reloading it successfully"
    );
}
