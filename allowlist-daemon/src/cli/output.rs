//! Plain-text rendering of the daemon's replies, for people (`--json` is for scripts).

use std::fmt::Write;

use crate::control::protocol::{EntryInfo, Pending, Reply};

pub fn render(reply: &Reply) -> String {
    let mut out = String::new();
    match reply {
        Reply::Status(s) => {
            let state = if s.active {
                "ACTIVE: new connections to protected ports need a matching entry"
            } else {
                "INACTIVE: all traffic passes (entries are kept)"
            };
            let ports: Vec<String> = s.protected_tcp_ports.iter().map(u16::to_string).collect();
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
            let _ = writeln!(
                out,
                "uptime:     {}",
                humantime::format_duration(std::time::Duration::from_secs(s.uptime_secs))
            );
            if let Some(p) = &s.pending_confirmation {
                render_pending(&mut out, p);
            }
        }
        Reply::List(list) => {
            let _ = writeln!(
                out,
                "revision {}, {}, {} entries",
                list.revision,
                if list.active { "active" } else { "inactive" },
                list.entries.len()
            );
            render_entries(&mut out, &list.entries, "");
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
                let _ = writeln!(out, "{} port {}: {}", report.ip, v.port, v.explanation);
            }
        }
        Reply::Reload(report) => {
            render_entries(&mut out, &report.added, "+ ");
            render_entries(&mut out, &report.removed, "- ");
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
    }
    out
}

fn render_pending(out: &mut String, p: &Pending) {
    let _ = writeln!(
        out,
        "pending:    `{}` rolls back in {}s unless you run `allowlistctl confirm`",
        p.change, p.rollback_in_secs
    );
}

fn render_entries(out: &mut String, entries: &[EntryInfo], prefix: &str) {
    let width = entries.iter().map(|e| e.cidr.len()).max().unwrap_or(0);
    for e in entries {
        let comment = if e.comment.is_empty() {
            "-"
        } else {
            &e.comment
        };
        let _ = writeln!(out, "{prefix}{:width$}  {comment}  [{}]", e.cidr, e.origin);
    }
}
