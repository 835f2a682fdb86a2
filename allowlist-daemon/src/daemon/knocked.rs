//! A granted knock as the main loop applies it: the knocker's address becomes a timed entry
//! of the list the knock names, for the time it asks (within the key's rights, checked by the
//! guard, and [`MAX_TIMED`]), made as any change is: edited in the file, validated, audited
//! (`knock:KEY`, `via: knock`), applied. Knocking again while the entry lasts moves its end
//! later, never earlier.

use std::time::{Duration, SystemTime};

use ipnet::IpNet;
use tracing::{info, warn};

use super::Daemon;
use super::expiry::{MAX_TIMED, rfc3339};
use crate::knock::Grant;
use allowlist_control::audit::{Action, Actor};
use allowlist_control::protocol::{ChangeOptions, Command, End};

impl Daemon {
    pub(super) fn knock_granted(&mut self, grant: Grant) {
        let actor = Actor::knock(&grant.key);
        let who = format!("knock by `{}` from {}", grant.key, grant.source.ip());
        let command = match self.knock_command(&grant) {
            Ok(Some(command)) => command,
            Ok(None) => return,
            Err(reason) => {
                warn!("{who} for {}: refused: {reason}", grant.addr);
                self.record_refusal(actor, Action::Add, &reason);
                return;
            }
        };
        match self.change_as(command, &ChangeOptions::default(), actor) {
            Ok(changed) => info!("{who}: {}", changed.summary),
            Err((_, reason)) => warn!("{who} for {}: not applied: {reason}", grant.addr),
        }
    }

    /// The change a grant makes, or `None` if the address is let in already for as long.
    fn knock_command(&self, grant: &Grant) -> Result<Option<Command>, String> {
        let (index, _) = self.config.list(&grant.list).ok_or_else(|| {
            format!(
                "the knock names list `{}`, which the config does not have",
                grant.list
            )
        })?;
        let net = IpNet::from(grant.addr);
        let secs = grant.duration.min(MAX_TIMED).as_secs().max(1);
        let end = SystemTime::now() + Duration::from_secs(secs);
        // A list's entries do not overlap: at most one covers the address.
        let covering = self
            .config
            .entries
            .iter()
            .find(|e| e.list == index && e.net.contains(&grant.addr));
        if let Some(entry) = covering {
            match self.config.end_of(entry) {
                Some(old) if entry.net == net && old < end => {
                    return Ok(Some(Command::Edit {
                        cidr: net.to_string(),
                        new_cidr: None,
                        comment: None,
                        list: Some(grant.list.clone()),
                        ends: Some(End::AfterSecs(secs)),
                    }));
                }
                until => {
                    let until = until.map_or(String::new(), |t| format!(" until {}", rfc3339(t)));
                    info!(
                        "knock by `{}` for {}: already let in by {}{until}",
                        grant.key, grant.addr, entry.net
                    );
                    return Ok(None);
                }
            }
        }
        Ok(Some(Command::Add {
            cidr: net.to_string(),
            comment: Some(format!("knock: {} from {}", grant.key, grant.source.ip())),
            lists: vec![grant.list.clone()],
            ends: Some(End::AfterSecs(secs)),
            file: None,
        }))
    }
}
