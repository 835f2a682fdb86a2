//! The emergency disable as the daemon runs it: started (audited first), ended, expired.

use std::time::Duration;

use anyhow::{Context, Result};
use serde_json::json;
use tracing::{error, warn};

use super::Daemon;
use super::commands::{Refusal, invalid};
use crate::emergency::{self, Emergency};
use crate::server::Peer;
use allowlist_config::words;
use allowlist_control::audit::{Action, Actor, Outcome, Via};
use allowlist_control::protocol::{Changed, ErrorKind, InForce};

/// An emergency disable's time left, in whole seconds.
fn time_left(e: &Emergency) -> String {
    let left = e.remaining().unwrap_or_default();
    words::duration(Duration::from_secs(left.as_secs()))
}

impl Daemon {
    /// Starts an emergency disable; one already in force is refused unless `in_force` says
    /// to replace or extend it (each audited under its own action).
    pub(super) fn emergency_disable(
        &mut self,
        reason: &str,
        for_secs: u64,
        in_force: InForce,
        peer: &Peer,
    ) -> Result<Changed, Refusal> {
        let actor = peer.actor();
        let duration = Duration::from_secs(for_secs);
        // One past its deadline whose expiry is not recorded yet is over.
        let current = self.emergency.clone().filter(|e| e.remaining().is_some());
        let (action, reason) = match (in_force, &current) {
            (InForce::Extend, Some(c)) => (Action::EmergencyExtend, c.reason.clone()),
            (InForce::Extend, None) => {
                let why = "no emergency disable is in force to extend; start one with --reason (without --extend)";
                self.record_refusal(actor, Action::EmergencyExtend, why);
                return Err(invalid(why));
            }
            (InForce::Replace, Some(_)) => (Action::EmergencyReplace, reason.to_owned()),
            _ => (Action::EmergencyStart, reason.to_owned()),
        };
        let refused = match (emergency::check(duration, &reason), &current, in_force) {
            (Err(rule), _, _) => Some(invalid(rule)),
            (Ok(()), Some(c), InForce::Refuse) => Some((
                ErrorKind::Conflict,
                format!(
                    "an emergency disable is already in force: until {} ({} left), reason: {}, by {}; \
                     pass --replace to put this one in its place (your reason, {} from now), or \
                     --extend (without --reason) to keep its reason and end it {} from now",
                    c.until_local(),
                    time_left(c),
                    c.reason,
                    c.by,
                    words::duration(duration),
                    words::duration(duration),
                ),
            )),
            (Ok(()), Some(c), InForce::Extend)
                if c.remaining().is_some_and(|left| duration <= left) =>
            {
                Some(invalid(format!(
                    "--extend --for {} would end it sooner than it ends now (until {}, {} left); give a longer --for (at most 24h), or end it with `allowlistctl emergency-end`",
                    words::duration(duration),
                    c.until_local(),
                    time_left(c),
                )))
            }
            _ => None,
        };
        if let Some(refusal) = refused {
            self.record_refusal(actor, action, &refusal.1);
            return Err(refusal);
        }
        let new = self
            .begin_emergency(actor, action, duration, &reason)
            .map_err(|m| (ErrorKind::Internal, m))?;
        let what = match (action, &current) {
            (Action::EmergencyExtend, Some(old)) => {
                format!(" (extended; it was until {})", old.until_local())
            }
            (Action::EmergencyReplace, Some(old)) => format!(
                " (in place of the one until {}, reason: {})",
                old.until_local(),
                old.reason
            ),
            _ => String::new(),
        };
        let summary = format!(
            "EMERGENCY DISABLE until {} ({}){what}: new connections from any source are let in; reason: {}",
            new.until_local(),
            words::duration(duration),
            new.reason
        );
        tracing::warn!(uid = peer.uid, "{summary}");
        Ok(Changed {
            revision: self.revision,
            summary,
            pending_confirmation: None,
        })
    }

    /// Starts an emergency disable (in place of one in force), audited first as `action`
    /// (emergency-start, -replace or -extend).
    pub(super) fn begin_emergency(
        &mut self,
        actor: Actor,
        action: Action,
        duration: Duration,
        reason: &str,
    ) -> Result<Emergency, String> {
        let new = Emergency::start(duration, reason, &actor.who());
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
            Action::EmergencyExpiry,
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
