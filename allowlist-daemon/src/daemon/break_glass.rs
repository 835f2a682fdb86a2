//! The emergency disable as the daemon runs it: started (audited first), ended, expired.

use std::time::Duration;

use anyhow::{Context, Result};
use serde_json::json;
use tracing::{error, warn};

use super::Daemon;
use crate::audit::{Actor, Outcome, Via};
use crate::emergency::{self, Emergency};

impl Daemon {
    /// Starts an emergency disable (in place of one in force), audited first as `action`
    /// (emergency-start, -replace or -extend).
    pub(super) fn begin_emergency(
        &mut self,
        actor: Actor,
        action: &str,
        duration: Duration,
        reason: &str,
    ) -> Result<Emergency, String> {
        let new = Emergency::start(duration, reason, &actor.user);
        self.record(
            actor,
            action,
            json!({ "emergency": self.emergency.as_ref().map(Emergency::describe) }),
            json!({ "emergency": new.describe() }),
            Outcome::Ok,
            self.revision,
        )?;
        self.set_emergency(Some(new.clone()))
            .map_err(|e| format!("{e:#}"))?;
        Ok(new)
    }

    /// Starts or replaces the emergency disable, or with `None` ends it.
    pub(super) fn set_emergency(&mut self, new: Option<Emergency>) -> Result<()> {
        self.filter
            .set_emergency(new.as_ref().map_or(0, |e| e.until_boot_ns))?;
        emergency::save(&self.config.state_dir, new.as_ref())
            .context("saving the emergency state")?;
        self.emergency = new;
        Ok(())
    }

    pub(super) fn emergency_expired(&mut self) {
        let Some(ended) = self.emergency.clone() else {
            return;
        };
        // The kernel already enforces again (it compares the deadline itself); this records
        // it and clears the state.
        let _ = self.record(
            Actor::daemon(Via::Expiry),
            "emergency-expiry",
            json!({ "emergency": ended.describe() }),
            json!({ "emergency": null }),
            Outcome::Ok,
            self.revision,
        );
        match self.set_emergency(None) {
            Ok(()) => warn!(
                "emergency disable ended (reason was: {}); enforcing again",
                ended.reason
            ),
            Err(e) => error!("clearing the ended emergency disable: {e:#}"),
        }
    }
}
