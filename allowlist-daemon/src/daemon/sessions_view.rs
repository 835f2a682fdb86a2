//! Established connections to protected ports as `allowlistctl sessions` shows them, and
//! ending them: those no entry covers (`--kill-unlisted`), or one chosen by its peer
//! (`--end`). Both are audited and refuse to end the caller's own connection without
//! `--force`.

use std::net::SocketAddr;

use serde_json::json;
use tracing::info;

use super::Daemon;
use super::changes::entry_info;
use super::commands::Refusal;
use crate::server::Peer;
use crate::sessions::Session;
use allowlist_config::rules::Protocol;
use allowlist_control::audit::{Action, Outcome};
use allowlist_control::protocol::{ChangeOptions, ErrorKind, Reply, SessionInfo, SessionsReport};

impl Daemon {
    /// The established connections to `port` (or to every protected port, of `list` if
    /// given), each with the entry covering its peer.
    fn session_infos(
        &mut self,
        port: Option<u16>,
        list: Option<&str>,
    ) -> Result<(Vec<Session>, Vec<SessionInfo>), Refusal> {
        let only = list
            .map(|name| super::commands::list_named(&self.config, name).map(|(_, l)| l))
            .transpose()?;
        let ports = match port {
            Some(p) => std::collections::BTreeSet::from([p]),
            None => self
                .config
                .lists
                .iter()
                .filter(|l| only.is_none_or(|o| o.name == l.name))
                .flat_map(|l| l.tcp_ports.iter().copied())
                .collect(),
        };
        let found = crate::sessions::established(&ports)
            .map_err(|e| (ErrorKind::Internal, e.to_string()))?;
        self.note_sessions(&found);
        let infos = found
            .iter()
            .map(|session| {
                let (_, entry) =
                    self.deciding(session.peer.ip(), Protocol::Tcp, session.local.port());
                SessionInfo {
                    local: session.local,
                    peer: session.peer,
                    since: self.session_since(session),
                    idle_ms: session.idle_ms,
                    covered_by: entry.map(|e| entry_info(&self.config, e)),
                    killed: false,
                }
            })
            .collect();
        Ok((found, infos))
    }

    /// Established connections to protected ports with the entry covering each peer; with
    /// `kill`, ends (and audits) those no entry covers.
    pub(super) fn sessions(
        &mut self,
        port: Option<u16>,
        kill: bool,
        list: Option<&str>,
        options: &ChangeOptions,
        peer: &Peer,
    ) -> Result<Reply, Refusal> {
        let (found, mut infos) = self.session_infos(port, list)?;
        let mut killed = 0;
        if kill {
            let actor = peer.actor();
            if let Some(caller) = options.caller
                && !options.force
                && infos
                    .iter()
                    .any(|i| i.covered_by.is_none() && i.peer.ip() == caller.ip)
            {
                let why = format!(
                    "refused: your own connection from {} is not covered by any entry and would be ended; run `allowlistctl add {}` first, or pass --force",
                    caller.ip,
                    super::lockout::own_net(caller.ip)
                );
                self.record_refusal(actor, Action::KillUnlisted, &why);
                return Err((ErrorKind::Lockout, why));
            }
            let unlisted: Vec<serde_json::Value> = infos
                .iter()
                .filter(|i| i.covered_by.is_none())
                .map(|i| json!({ "peer": i.peer.to_string(), "local": i.local.to_string() }))
                .collect();
            if !unlisted.is_empty() {
                self.record(
                    actor,
                    Action::KillUnlisted,
                    json!({ "sessions": unlisted }),
                    json!({ "sessions": [] }),
                    Outcome::Ok,
                    self.revision,
                )
                .map_err(|m| (ErrorKind::Internal, m))?;
            }
            for (session, info) in found.iter().zip(infos.iter_mut()) {
                if info.covered_by.is_some() {
                    continue;
                }
                match crate::sessions::destroy(session) {
                    Ok(()) => {
                        info.killed = true;
                        killed += 1;
                    }
                    // Ended meanwhile by itself: nothing left to do.
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => return Err((ErrorKind::Internal, e.to_string())),
                }
            }
            info!(
                uid = peer.uid,
                "ended {} from unlisted sources",
                allowlist_config::words::count(killed, "connection", "connections")
            );
        }
        Ok(Reply::Sessions(SessionsReport {
            sessions: infos,
            killed,
        }))
    }

    /// Ends the one established connection from `target` (audited as `end-session`), covered
    /// by an entry or not; refused for the caller's own address without `--force`.
    pub(super) fn end_session(
        &mut self,
        port: Option<u16>,
        target: SocketAddr,
        list: Option<&str>,
        options: &ChangeOptions,
        peer: &Peer,
    ) -> Result<Reply, Refusal> {
        let (found, mut infos) = self.session_infos(port, list)?;
        let actor = peer.actor();
        let Some(index) = infos.iter().position(|i| i.peer == target) else {
            let why = format!(
                "no established connection from {target} to a protected port; `allowlistctl sessions` lists them"
            );
            self.record_refusal(actor, Action::EndSession, &why);
            return Err((ErrorKind::Invalid, why));
        };
        if let Some(caller) = options.caller
            && !options.force
            && caller.ip == target.ip()
        {
            let why = format!(
                "refused: the connection from {target} comes from your own address {}; ending it may end your own session; pass --force to end it anyway",
                caller.ip
            );
            self.record_refusal(actor, Action::EndSession, &why);
            return Err((ErrorKind::Lockout, why));
        }
        let info = &infos[index];
        self.record(
            actor,
            Action::EndSession,
            json!({ "sessions": [{
                "peer": info.peer.to_string(),
                "local": info.local.to_string(),
                "covered_by": info.covered_by.as_ref().map(|e| e.cidr.clone()),
            }] }),
            json!({ "sessions": [] }),
            Outcome::Ok,
            self.revision,
        )
        .map_err(|m| (ErrorKind::Internal, m))?;
        let killed = match crate::sessions::destroy(&found[index]) {
            Ok(()) => 1,
            // Ended meanwhile by itself: nothing left to do.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => 0,
            Err(e) => return Err((ErrorKind::Internal, e.to_string())),
        };
        infos[index].killed = killed == 1;
        info!(uid = peer.uid, "ended the connection from {target}");
        Ok(Reply::Sessions(SessionsReport {
            sessions: infos,
            killed,
        }))
    }
}
