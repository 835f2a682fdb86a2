//! The daemon's audit trail: every change and refusal goes through `record`, and start-up
//! writes what happened while the daemon was away.

use anyhow::{Context, Result};
use serde_json::json;
use tracing::{error, info, warn};

use super::{Daemon, StartOptions, changes};
use crate::emergency;
use allowlist_control::audit::{Action, Actor, Event, Outcome, Via};

impl Daemon {
    /// Appends an audit record (and mirrors it to the log as one line); `Err` is the refusal
    /// to give when it cannot be written: no change may happen unaudited.
    pub(super) fn record(
        &mut self,
        actor: Actor,
        action: Action,
        before: serde_json::Value,
        after: serde_json::Value,
        result: Outcome,
        revision: u64,
    ) -> Result<(), String> {
        let event = Event {
            actor,
            action,
            before,
            after,
            result,
            revision,
        };
        match self.audit.append(event) {
            Ok(record) => {
                crate::logging::audit(&record);
                Ok(())
            }
            Err(e) => {
                error!("{e}");
                Err(format!(
                    "the audit log cannot be written ({e}); refused, nothing changed"
                ))
            }
        }
    }

    /// Records a refused attempt; a failure to record it only gets logged.
    pub(super) fn record_refusal(&mut self, actor: Actor, action: Action, reason: &str) {
        let _ = self.record(
            actor,
            action,
            serde_json::Value::Null,
            serde_json::Value::Null,
            Outcome::Refused {
                reason: reason.to_owned(),
            },
            self.revision,
        );
    }

    /// Start-up's audit records: an emergency disable that ended while the daemon was down,
    /// one that continues, a break-glass one from the command line, and the start itself.
    pub(super) fn start_records(&mut self, start: StartOptions) -> Result<()> {
        let state_dir = self.config.state_dir.clone();
        if let Some(persisted) = emergency::load(&state_dir)? {
            match persisted.clone().resume() {
                Some(e) => {
                    info!(
                        "emergency disable still in force until {} (reason: {})",
                        e.until_local(),
                        e.reason
                    );
                    self.emergency = Some(e);
                }
                None => {
                    self.record(
                        Actor::daemon(Via::Expiry),
                        Action::EmergencyExpiry,
                        json!({ "emergency": persisted.describe() }),
                        json!({ "emergency": null, "note": "ended while allowlistd was not running" }),
                        Outcome::Ok,
                        self.revision,
                    )
                    .map_err(anyhow::Error::msg)?;
                    info!(
                        "the emergency disable ended while allowlistd was not running; enforcing"
                    );
                }
            }
        }
        if let Some((duration, reason)) = start.emergency {
            let new = self
                .begin_emergency(
                    Actor::daemon(Via::Startup),
                    Action::EmergencyStart,
                    duration,
                    &reason,
                )
                .map_err(anyhow::Error::msg)?;
            warn!(
                "EMERGENCY DISABLE from the command line until {} (reason: {})",
                new.until_local(),
                new.reason
            );
        }
        emergency::save(&state_dir, self.emergency.as_ref())
            .with_context(|| format!("saving the emergency state in {}", state_dir.display()))?;
        self.filter
            .set_emergency(self.emergency.as_ref().map_or(0, |e| e.until_boot_ns))?;
        self.settle_interrupted_change()
            .map_err(anyhow::Error::msg)?;
        let mut after = json!({
            "active": self.config.active,
            "entries": self.config.entries.len(),
            "protected_tcp_ports": self.config.protected_tcp_ports,
            "interfaces": self.config.interfaces,
        });
        if self.config.has_named_lists() {
            after["lists"] = super::changes::lists_value(&self.config);
        }
        self.record(
            Actor::daemon(Via::Startup),
            Action::Start,
            serde_json::Value::Null,
            after,
            Outcome::Ok,
            self.revision,
        )
        .map_err(anyhow::Error::msg)
    }

    /// A change is audited before it is made, and its revision saved after: a last record
    /// `ok` with a revision beyond the saved one is a change the previous daemon was killed
    /// in the middle of. If the config file (which this daemon now enforces) shows it, it
    /// happened; if not, a `failed` record says it never took effect, and the revision moves
    /// past the one it claimed, so no two states share a number.
    fn settle_interrupted_change(&mut self) -> Result<(), String> {
        let saved = self.revision - 1;
        let Some(last) = self.audit.found_at_open().cloned() else {
            return Ok(());
        };
        let change = !matches!(
            last.action,
            Action::Start
                | Action::Stop
                | Action::Confirm
                | Action::EmergencyStart
                | Action::EmergencyReplace
                | Action::EmergencyExtend
                | Action::EmergencyEnd
                | Action::EmergencyExpiry
                | Action::KillUnlisted
        );
        if !change || last.result != Outcome::Ok || last.revision <= saved {
            return Ok(());
        }
        if changes::shows(&self.config, &last.before, &last.after) {
            info!(
                "the previous allowlistd was stopped during `{}` (revision {}); the config file has it, so it is in force",
                last.action, last.revision
            );
            return Ok(());
        }
        let reason = format!(
            "allowlistd was stopped before this {} reached the config file; it never took effect",
            last.action
        );
        warn!("{reason} (revision {})", last.revision);
        self.record(
            last.actor,
            last.action,
            json!(null),
            json!(null),
            Outcome::Failed { reason },
            last.revision,
        )?;
        self.revision = last.revision + 1;
        self.save_revision();
        Ok(())
    }
}
