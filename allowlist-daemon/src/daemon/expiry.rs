//! Timed entries as the daemon runs them: how long one may be given, and taking it out once
//! it has ended. The kernel stops admitting a timed entry at its end by itself (the loader's
//! `filter::timed`); the daemon then removes it from the file of the set holding it (the config file or a drop-in) and the maps and audits
//! that (`expire`, `via: expiry`): at once while it runs, else at its next start.

use std::time::{Duration, SystemTime};

use tracing::{info, warn};

use super::Daemon;
use super::changes;
use super::commands::{Refusal, invalid};
use super::set_files::{self, Edits};
use allowlist_config::words;
use allowlist_control::audit::{Action, Actor, Outcome, Via};
use allowlist_control::protocol::End;

/// The longest `--for` (and the furthest `--until`): temporary access is for hours or days;
/// an entry meant to stay belongs in the file without an end.
pub const MAX_TIMED: Duration = Duration::from_secs(30 * 24 * 3600);

/// After a failed removal (the file edited by hand, a full disk), when to try again: the
/// kernel has already stopped admitting the entries, so nothing waits on it.
const RETRY: Duration = Duration::from_secs(10);

/// When `end` says an entry ends: `None` for [`End::Never`].
pub(super) fn end_time(end: &End) -> Result<Option<SystemTime>, Refusal> {
    let now = SystemTime::now();
    let limit = words::duration(MAX_TIMED);
    let time = match end {
        End::Never => return Ok(None),
        End::AfterSecs(0) => return Err(invalid("--for must be longer than 0s")),
        End::AfterSecs(secs) => {
            let ahead = Duration::from_secs(*secs);
            if ahead > MAX_TIMED {
                return Err(invalid(format!(
                    "--for {} is longer than {limit}, the longest a timed entry may last; for \
                     access that stays, add the entry without --for",
                    words::duration(ahead)
                )));
            }
            now + ahead
        }
        End::At(text) => {
            let at: jiff::Timestamp = text.trim().parse().map_err(|_| {
                invalid(format!(
                    "--until `{text}`: give a time with its offset, e.g. 2026-12-24T18:00:00Z"
                ))
            })?;
            let at = SystemTime::from(at);
            if at <= now {
                return Err(invalid(format!("--until `{text}` has passed")));
            }
            if at.duration_since(now).unwrap_or_default() > MAX_TIMED {
                return Err(invalid(format!(
                    "--until `{text}` is more than {limit} ahead, the longest a timed entry \
                     may last; for access that stays, add the entry without --until"
                )));
            }
            at
        }
    };
    Ok(Some(time))
}

/// " until 2026-12-24T18:00:00Z (in 8h)", or nothing for a lasting entry.
pub(super) fn until_words(end: Option<SystemTime>) -> String {
    let Some(end) = end else {
        return String::new();
    };
    let left = end
        .duration_since(SystemTime::now())
        .unwrap_or_default()
        .as_millis()
        .div_ceil(1000) as u64;
    format!(
        " until {} (in {})",
        rfc3339(end),
        words::duration(Duration::from_secs(left.max(1)))
    )
}

/// `time` as the config and the audit write it: to the second, cut down (see
/// `allowlist_config::edit`).
pub(super) fn rfc3339(time: SystemTime) -> String {
    let second = jiff::TimestampRound::new()
        .smallest(jiff::Unit::Second)
        .mode(jiff::RoundMode::Trunc);
    jiff::Timestamp::try_from(time)
        .ok()
        .and_then(|t| t.round(second).ok())
        .map_or_else(|| "?".to_owned(), |t| t.to_string())
}

impl Daemon {
    /// When the main loop next has timed entries to take out.
    pub(super) fn next_expiry(&self) -> Option<tokio::time::Instant> {
        let end = self.config.next_end()?;
        let wait = end.duration_since(SystemTime::now()).unwrap_or_default();
        let at = tokio::time::Instant::now() + wait;
        Some(match self.expiry_retry {
            Some(retry) => at.max(retry),
            None => at,
        })
    }

    /// Takes every timed entry that has ended out of the config file and the maps, with one
    /// audit record. `down_since`: the entries ended before this start, while the daemon was
    /// not running.
    pub(super) fn expire_ended(&mut self, down_since: Option<SystemTime>) {
        let now = SystemTime::now();
        let ended: Vec<Ended> = self
            .config
            .timed_entries()
            .filter_map(|e| {
                let end = self.config.end_of(e)?;
                let list = &self.config.lists[usize::from(e.list)];
                (end <= now).then(|| Ended {
                    net: e.net,
                    list: list.line.map(|_| list.name.clone()),
                    end,
                    file: e.file.to_path_buf(),
                })
            })
            .collect();
        if ended.is_empty() {
            return;
        }
        match self.remove_ended(&ended, down_since) {
            Ok(summary) => {
                self.expiry_retry = None;
                info!("{summary}");
            }
            Err(e) => {
                self.expiry_retry = Some(tokio::time::Instant::now() + RETRY);
                warn!(
                    "{} ended but could not be taken out of the config: {e}; the kernel no \
                     longer admits them; trying again in {}s",
                    words::count(ended.len(), "timed entry", "timed entries"),
                    RETRY.as_secs()
                );
            }
        }
    }

    fn remove_ended(
        &mut self,
        ended: &[Ended],
        down_since: Option<SystemTime>,
    ) -> Result<String, String> {
        let changed = self.changed_on_disk();
        if !changed.is_empty() {
            return Err(format!(
                "the config changed on disk ({}): run `allowlistctl reload`",
                set_files::names(&changed)
            ));
        }
        // Each ended entry is taken out of the file of the set that holds it.
        let mut edits = Edits::new();
        for e in ended {
            let mut doc = self.doc_of(&e.file, &edits)?;
            doc.remove_entry_in(e.list.as_deref(), e.net)
                .map_err(|err| format!("{}: {err}", e.file.display()))?;
            edits.insert(e.file.clone(), doc.to_text());
        }
        // Before anything is recorded: a ConfigMap's file cannot be written here.
        set_files::refuse_symlinked(&edits)?;
        let (new, text) = self.parse_edited(&edits).map_err(|e| e.to_string())?;
        let changes::Changes {
            before,
            mut after,
            summary,
        } = changes::changes(&self.config, &new);
        if let Some(since) = down_since
            && ended.iter().any(|e| e.end < since)
        {
            after["while_down"] = true.into();
        }
        if !self.config.drop_ins.is_empty() {
            after["files"] = edits.keys().map(|f| f.display().to_string()).collect();
        }
        self.record(
            Actor::daemon(Via::Expiry),
            Action::Expire,
            before,
            after,
            Outcome::Ok,
            self.revision + 1,
        )?;
        self.write_edits(&edits)?;
        let (summary, _) = self
            .switch_to(new, text, summary)
            .map_err(|e| format!("{e:#}"))?;
        let nets: Vec<String> = ended.iter().map(|e| e.net.to_string()).collect();
        Ok(format!(
            "timed {} ended{}: {}; {summary}",
            if ended.len() == 1 { "entry" } else { "entries" },
            match down_since {
                Some(_) => " (while allowlistd was not running)",
                None => "",
            },
            nets.join(", ")
        ))
    }
}

/// A timed entry that ended, and where it is written.
struct Ended {
    net: ipnet::IpNet,
    /// Its list, when not `default`.
    list: Option<String>,
    end: SystemTime,
    /// The file of the set holding it.
    file: std::path::PathBuf,
}
