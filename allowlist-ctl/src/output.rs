//! Plain-text rendering of the daemon's replies, for people (`--json` is for scripts).

use std::fmt::Write;
use std::time::Duration;

use allowlist_config::words;
use allowlist_control::audit::Outcome;
use allowlist_control::protocol::{EntryInfo, ListStatus, Pending, Reply};

pub fn render(reply: &Reply) -> String {
    let mut out = String::new();
    match reply {
        Reply::Status(s) => {
            if let Some(e) = &s.emergency {
                let _ = writeln!(
                    out,
                    "EMERGENCY DISABLE until {} ({} left), reason: {}, by {}\n  new connections from any source are let in; `allowlistctl emergency-end` ends it now",
                    e.until_local,
                    words::duration(Duration::from_secs(e.remaining_secs)),
                    e.reason,
                    e.by
                );
            }
            let only_default =
                matches!(s.lists.as_slice(), [l] if l.name == "default") || s.lists.is_empty();
            let state = if !only_default {
                let count = |mode| s.lists.iter().filter(|l| l.mode == mode).count();
                format!(
                    "{}: {} enforcing, {} monitoring, {} off",
                    words::count(s.lists.len(), "list", "lists"),
                    count("enforce"),
                    count("monitor"),
                    count("off")
                )
            } else if s.active {
                "ACTIVE: new connections to protected ports need a matching entry".to_owned()
            } else {
                "INACTIVE: all traffic passes (entries are kept)".to_owned()
            };
            let ports: Vec<String> = s
                .lists
                .iter()
                .flat_map(|l| {
                    let tcp = l.tcp_ports.iter().map(u16::to_string);
                    tcp.chain(l.udp_ports.iter().map(|p| format!("{p}/udp")))
                })
                .collect();
            let ports = if s.lists.is_empty() {
                s.protected_tcp_ports.iter().map(u16::to_string).collect()
            } else {
                ports
            };
            let _ = writeln!(out, "allowlist:  {state}");
            let _ = writeln!(
                out,
                "entries:    {} ({} IPv4, {} IPv6); capacity {} per address family",
                s.entries, s.entries_v4, s.entries_v6, s.capacity
            );
            let _ = writeln!(
                out,
                "ports:      {}",
                if ports.is_empty() {
                    "none".to_owned()
                } else {
                    ports.join(", ")
                }
            );
            if !only_default {
                for line in render_lists(&s.lists).lines().skip(1) {
                    let _ = writeln!(out, "list:       {}", line.trim_end());
                }
            }
            for i in &s.interfaces {
                let _ = writeln!(
                    out,
                    "interface:  {} (XDP {}): passed {}, dropped {}",
                    i.name, i.xdp_mode, i.passed, i.dropped
                );
            }
            let _ = writeln!(out, "revision:   {} ({})", s.revision, s.config);
            let _ = writeln!(
                out,
                "counters:   passed {}, dropped {}",
                s.passed, s.dropped
            );
            let nonzero: Vec<String> = s
                .counters
                .iter()
                .filter(|(_, n)| **n > 0)
                .map(|(reason, n)| format!("{reason} {n}"))
                .collect();
            if !nonzero.is_empty() {
                let _ = writeln!(out, "by reason:  {}", nonzero.join(", "));
            }
            if let Some(k) = &s.knocks {
                let refused: Vec<String> = k
                    .refused
                    .iter()
                    .filter(|(_, n)| **n > 0)
                    .map(|(kind, n)| format!("{kind} {n}"))
                    .collect();
                let total: u64 = k.refused.values().sum();
                let _ = writeln!(
                    out,
                    "knocks:     on {}: granted {}, refused {total}{}",
                    k.listen.join(", "),
                    k.granted,
                    if refused.is_empty() {
                        String::new()
                    } else {
                        format!(" ({})", refused.join(", "))
                    }
                );
            }
            let _ = writeln!(
                out,
                "uptime:     {}",
                words::duration(Duration::from_secs(s.uptime_secs))
            );
            if let Some(p) = &s.pending_confirmation {
                render_pending(&mut out, p);
            }
        }
        Reply::List(list) => {
            let shown = list.entries.len() as u64;
            // A daemon too old to count sends zeros.
            let total = if list.total == 0 { shown } else { list.total };
            let _ = writeln!(
                out,
                "revision {}, {}, {}",
                list.revision,
                if list.active { "active" } else { "inactive" },
                match (list.matched.max(shown), total) {
                    (m, t) if m == t && shown == m =>
                        words::count(shown as usize, "entry", "entries"),
                    (m, t) if shown == m => format!(
                        "{m} of {} match",
                        words::count(t as usize, "entry", "entries")
                    ),
                    (m, t) => format!(
                        "{m} of {} match, the first {shown} shown (--limit)",
                        words::count(t as usize, "entry", "entries")
                    ),
                }
            );
            render_entries(&mut out, &list.entries, "", true);
        }
        Reply::Changed(changed) => {
            let _ = writeln!(out, "{}", changed.summary);
            if let Some(p) = &changed.pending_confirmation {
                render_pending(&mut out, p);
            }
        }
        Reply::Test(report) => {
            if report.verdicts.is_empty() {
                let _ = writeln!(out, "{}: allowed: no port is protected", report.ip);
            }
            for v in &report.verdicts {
                let udp = if v.protocol == "udp" { "/udp" } else { "" };
                let _ = writeln!(out, "{} port {}{udp}: {}", report.ip, v.port, v.explanation);
            }
        }
        Reply::Reload(report) => {
            render_entries(&mut out, &report.added, "+ ", false);
            render_entries(&mut out, &report.removed, "- ", false);
            if report.more_added + report.more_removed > 0 {
                let _ = writeln!(
                    out,
                    "... and {} more added, {} more removed (--full lists every one)",
                    report.more_added, report.more_removed
                );
            }
            if !report.merged_files.is_empty() {
                let files = report.merged_files.iter().map(|m| {
                    let name = words::file_name(std::path::Path::new(&m.file));
                    (name, m.lines as usize)
                });
                let _ = writeln!(out, "{}", words::merged_lines(files));
            }
            let _ = writeln!(
                out,
                "{}{}",
                report.summary,
                if report.dry_run {
                    " (dry run: nothing changed)"
                } else {
                    ""
                }
            );
        }
        Reply::Audit(report) => {
            for r in &report.records {
                let result = match &r.event.result {
                    Outcome::Ok => "ok".to_owned(),
                    Outcome::Refused { reason } => format!("REFUSED ({reason})"),
                    Outcome::Failed { reason } => format!("FAILED ({reason})"),
                };
                let _ = writeln!(
                    out,
                    "#{} {} {} (uid {}, pid {}, {}) {} {} rev {}: {} -> {}",
                    r.seq,
                    r.time,
                    r.event.actor.who(),
                    r.event.actor.uid,
                    r.event.actor.pid.map_or("-".to_owned(), |p| p.to_string()),
                    serde_json::to_string(&r.event.actor.via)
                        .unwrap_or_default()
                        .trim_matches('"'),
                    r.event.action,
                    result,
                    r.event.revision,
                    r.event.before,
                    r.event.after
                );
            }
            if report.records.is_empty() {
                let _ = writeln!(out, "no matching records in {}", report.files.join(", "));
            }
        }
        Reply::Sessions(report) => {
            for session in &report.sessions {
                let covered = match &session.covered_by {
                    Some(e) if e.comment.is_empty() => format!("covered by {}", e.cidr),
                    Some(e) => format!("covered by {} ({})", e.cidr, e.comment),
                    None => "NOT covered by any entry".to_owned(),
                };
                let _ = writeln!(
                    out,
                    "{} -> {}: {covered}; since {}{}{}",
                    session.peer,
                    session.local,
                    session.since,
                    session
                        .idle_ms
                        .map_or(String::new(), |ms| format!(", idle {}s", ms / 1000)),
                    if session.killed { "; ENDED" } else { "" }
                );
            }
            let _ = writeln!(
                out,
                "{} to protected ports{}",
                words::count(
                    report.sessions.len(),
                    "established connection",
                    "established connections"
                ),
                if report.killed > 0 {
                    format!("; ended {} from unlisted sources", report.killed)
                } else {
                    String::new()
                }
            );
        }
        Reply::Blocked(report) => {
            for source in &report.sources {
                let _ = writeln!(out, "{}", blocked_line(source));
            }
            let _ = writeln!(
                out,
                "{} shown; {} received by allowlistd, {} sent and {} held back by the kernel's per-CPU budget",
                words::count(report.sources.len(), "source", "sources"),
                words::count(report.events_received as usize, "event", "events"),
                report.events_sent,
                report.events_suppressed
            );
        }
        Reply::Verify(v) => match &v.first_break {
            None => {
                let _ = writeln!(
                    out,
                    "intact: {} in {}; the chain ends at {}",
                    words::count(v.records as usize, "record", "records"),
                    v.files.join(", "),
                    v.last_hash
                );
            }
            Some(b) => {
                let _ = writeln!(
                    out,
                    "BROKEN at {} line {}{}: {} ({} before it {} intact)",
                    b.file,
                    b.line,
                    b.seq.map_or(String::new(), |s| format!(" (seq {s})")),
                    b.why,
                    words::count(v.records as usize, "record", "records"),
                    words::plural(v.records as usize, "is", "are")
                );
            }
        },
    }
    out
}

/// One blocked source: who, to which port, how often, when.
pub fn blocked_line(s: &allowlist_control::protocol::BlockedSource) -> String {
    let port = if s.port == 0 {
        "?".to_owned()
    } else {
        s.port.to_string()
    };
    let udp = if s.udp { "/udp" } else { "" };
    let blocked = if s.would_be {
        "would be blocked (monitor mode)"
    } else {
        "blocked"
    };
    let list = if s.list.is_empty() || s.list == "default" {
        String::new()
    } else {
        format!(" by list `{}`", s.list)
    };
    format!(
        "{} -> port {port}{udp}: {} {blocked}{list} ({}), first {}, last {}",
        s.source, s.count, s.reason, s.first_seen, s.last_seen
    )
}

fn render_pending(out: &mut String, p: &Pending) {
    let _ = writeln!(
        out,
        "pending:    `{}` rolls back in {}s unless you run `allowlistctl confirm`",
        p.change, p.rollback_in_secs
    );
}

/// One line per entry, in aligned columns; with `hits`, the new connections it let in and
/// the latest one.
fn render_entries(out: &mut String, entries: &[EntryInfo], prefix: &str, hits: bool) {
    let comment = |e: &EntryInfo| {
        if e.comment.is_empty() {
            "-".to_owned()
        } else {
            e.comment.clone()
        }
    };
    let origin = |e: &EntryInfo| match e.origin.is_empty() {
        true => String::new(),
        false => format!("[{}]", e.origin),
    };
    // Widths in characters, not bytes: comments may be any language.
    let width = |column: &dyn Fn(&EntryInfo) -> String| {
        entries
            .iter()
            .map(|e| column(e).chars().count())
            .max()
            .unwrap_or(0)
    };
    let cidr_width = width(&|e| e.cidr.clone());
    let comment_width = width(&comment);
    let origin_width = width(&origin);
    // A column of list names once there is more than `default`.
    let lists = entries
        .iter()
        .any(|e| !e.list.is_empty() && e.list != "default");
    let list_width = width(&|e| e.list.clone());
    for e in entries {
        let list = if lists {
            format!("{:list_width$}  ", e.list)
        } else {
            String::new()
        };
        let mut line = format!(
            "{prefix}{list}{:cidr_width$}  {:comment_width$}  {}",
            e.cidr,
            comment(e),
            origin(e)
        );
        // An entry `list --expired` shows is in no file, and counts no hits any more.
        if hits && !e.origin.is_empty() {
            let pad = origin_width - origin(e).chars().count();
            let _ = write!(
                line,
                "{:pad$}  hits {} (last {})",
                "",
                e.hits,
                e.last_hit.as_deref().unwrap_or("never")
            );
        }
        if let Some(end) = &e.expires {
            let _ = write!(line, "  {}", end_words(end));
        }
        let _ = writeln!(out, "{}", line.trim_end());
    }
}

/// "expires in 7h 59m (2026-12-24T18:00:00Z)", or "ended 2026-12-24T18:00:00Z (3m ago)".
fn end_words(end: &str) -> String {
    let Ok(at) = end.parse::<jiff::Timestamp>() else {
        return format!("expires {end}");
    };
    let now = jiff::Timestamp::now();
    let span = |d: jiff::SignedDuration| {
        let secs = d.as_millis().unsigned_abs().div_ceil(1000).max(1) as u64;
        // Minutes are enough once it is more than a few.
        let secs = if secs > 600 {
            secs.div_ceil(60) * 60
        } else {
            secs
        };
        words::duration(std::time::Duration::from_secs(secs))
    };
    if at > now {
        format!("expires in {} ({end})", span(at.duration_since(now)))
    } else {
        format!("ended {end} ({} ago)", span(now.duration_since(at)))
    }
}

/// The lists as a table: name, mode, ports, entries, and what each judged.
pub fn render_lists(lists: &[ListStatus]) -> String {
    let ports = |l: &ListStatus| {
        let mut parts = Vec::new();
        if !l.tcp_ports.is_empty() {
            let tcp: Vec<String> = l.tcp_ports.iter().map(u16::to_string).collect();
            parts.push(format!("tcp {}", tcp.join(",")));
        }
        if !l.udp_ports.is_empty() {
            let udp: Vec<String> = l.udp_ports.iter().map(u16::to_string).collect();
            parts.push(format!("udp {}", udp.join(",")));
        }
        if parts.is_empty() {
            "none".to_owned()
        } else {
            parts.join(" ")
        }
    };
    let rows: Vec<[String; 5]> = lists
        .iter()
        .map(|l| {
            let mut judged = format!("allowed {}, dropped {}", l.allowed, l.dropped);
            if l.would_drop > 0 || l.mode == "monitor" {
                let _ = write!(judged, ", would drop {}", l.would_drop);
            }
            [
                l.name.clone(),
                l.mode.clone(),
                ports(l),
                l.entries.to_string(),
                judged,
            ]
        })
        .collect();
    let header = ["LIST", "MODE", "PORTS", "ENTRIES", "NEW CONNECTIONS"].map(str::to_owned);
    let mut widths = [0; 4];
    for row in std::iter::once(&header).chain(&rows) {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    for row in std::iter::once(&header).chain(&rows) {
        let _ = writeln!(
            out,
            "{:<w0$}  {:<w1$}  {:<w2$}  {:>w3$}  {}",
            row[0],
            row[1],
            row[2],
            row[3],
            row[4],
            w0 = widths[0],
            w1 = widths[1],
            w2 = widths[2],
            w3 = widths[3],
        );
    }
    out
}
