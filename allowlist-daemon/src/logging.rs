//! allowlistd's log on stderr: text lines for a person or the journal, or with
//! `log_format = "json"` one JSON object a line for a log shipper (tracing's JSON layer),
//! audit records with their fields rather than as one string.

use std::io::IsTerminal;
use std::sync::atomic::{AtomicBool, Ordering};

use allowlist_config::LogFormat;
use allowlist_control::audit::Record;
use tracing::info;

static JSON: AtomicBool = AtomicBool::new(false);

/// Sets the log up; `RUST_LOG` filters it (default `info`).
pub fn init(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let log = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(filter);
    match format {
        LogFormat::Text => log.with_ansi(std::io::stderr().is_terminal()).init(),
        LogFormat::Json => {
            JSON.store(true, Ordering::Relaxed);
            log.json()
                .flatten_event(true)
                .with_current_span(false)
                .init();
        }
    }
}

/// Logs an audit record (target `audit`): as its JSON line in a text log, as fields of the
/// event in a JSON log (`before`, `after` and `result` as JSON texts).
pub fn audit(record: &Record) {
    if !JSON.load(Ordering::Relaxed) {
        info!(target: "audit", "{}", serde_json::to_string(record).unwrap_or_default());
        return;
    }
    let event = &record.event;
    info!(
        target: "audit",
        seq = record.seq,
        time = %record.time,
        action = %event.action,
        user = %event.actor.user,
        uid = event.actor.uid,
        pid = event.actor.pid,
        via = event.actor.via.name(),
        result = %serde_json::to_string(&event.result).unwrap_or_default(),
        revision = event.revision,
        before = %event.before,
        after = %event.after,
        prev_hash = %record.prev_hash,
        hash = %record.hash,
        "audit record"
    );
}
