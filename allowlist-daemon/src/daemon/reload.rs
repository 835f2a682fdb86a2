//! The reload path: a new config (from the file on SIGHUP or `allowlistctl reload`, or a
//! pending change rolled back) becomes the enforced one. Parse and validate, audit before
//! acknowledging, then `switch_to`: the loader's `Filter::apply` writes the difference into
//! the maps (adds before removes, prefilters widened before and narrowed after), then the
//! interfaces follow.

use super::*;

impl Daemon {
    /// Makes `new` the enforced config: maps, then interfaces. On success the revision moves;
    /// returns the summary and the config replaced.
    pub(super) fn switch_to(
        &mut self,
        new: Config,
        text: String,
        summary: String,
    ) -> Result<(String, Config)> {
        apply(&mut self.filter, &new)?;
        self.attachments
            .sync(self.filter.program(), &new.interfaces, new.xdp_mode)?;
        let old = std::mem::replace(&mut self.config, new);
        self.config_text = text;
        self.revision += 1;
        self.save_revision();
        // What is on disk now is applied: the watch follows the new set.
        self.follow_files();
        Ok((format!("{summary}, revision {}", self.revision), old))
    }

    /// Re-reads the file and applies it, audited and counted for /metrics; `Err` says why
    /// nothing changed. Returns the summary and the config it replaced, if anything changed.
    pub(super) fn reload(&mut self, actor: Actor) -> Result<(String, Option<Config>), String> {
        let result = self.reload_file(actor);
        self.reloads.total += 1;
        self.reloads.last_ok = result.is_ok();
        self.reloads.last_at = jiff::Timestamp::now();
        result
    }

    pub(super) fn reload_file(&mut self, actor: Actor) -> Result<(String, Option<Config>), String> {
        let prepared = match &self.pending {
            Some(pending) => Err(format!(
                "a change awaits confirmation ({}); run `allowlistctl confirm` or wait for its rollback first",
                pending.description
            )),
            None => read_config(&self.config.path)
                .map_err(|e| format!("{e:#}"))
                .and_then(|(new, text)| match needs_restart(&self.config, &new) {
                    Some(why) => Err(why),
                    None => Ok((new, text)),
                }),
        };
        // The knock keys are re-read with the config, and refused with it.
        let keys = match (&prepared, &self.knocks) {
            (Ok(_), Some(_)) => KnockKeys::load(&self.config.knock_keys)
                .map(Some)
                .map_err(|e| format!("{e:#}")),
            _ => Ok(None),
        };
        let prepared = prepared.and_then(|ok| keys.map(|keys| (ok, keys)));
        let ((new, text), keys) = match prepared {
            Ok(ok) => ok,
            Err(why) => {
                self.record_refusal(actor, Action::Reload, &why);
                return Err(why);
            }
        };
        let keys_said = match (keys, &self.knocks) {
            (Some(keys), Some(knocks)) => {
                let said = format!(
                    "; knock_keys re-read: {}",
                    allowlist_config::words::count(keys.len(), "key", "keys")
                );
                knocks.set_keys(keys);
                said
            }
            _ => String::new(),
        };
        if new == self.config && text == self.config_text {
            self.record(
                actor,
                Action::Reload,
                json!({}),
                json!({}),
                Outcome::Ok,
                self.revision,
            )?;
            let summary = format!("no change, revision {}{keys_said}", self.revision);
            return Ok((summary, None));
        }
        let changes::Changes {
            before,
            mut after,
            summary,
        } = changes::changes(&self.config, &new);
        if !new.drop_ins.is_empty() || !self.config.drop_ins.is_empty() {
            // Which files of the set changed (list files are not named).
            after["files"] =
                set_files::changed_files(&self.config, &self.config_text, &new, &text).into();
        }
        self.record(
            actor.clone(),
            Action::Reload,
            before,
            after,
            Outcome::Ok,
            self.revision + 1,
        )?;
        match self.switch_to(new, text, summary) {
            Ok((summary, old)) => Ok((format!("{summary}{keys_said}"), Some(old))),
            Err(e) => {
                // Maps and links keep whatever state they reached: every step of apply keeps
                // allowed sources allowed, and the next reload converges from there.
                let why = format!("applying the reloaded config failed part-way: {e:#}");
                let failed = Outcome::Failed {
                    reason: why.clone(),
                };
                let _ = self.record(
                    actor,
                    Action::Reload,
                    json!(null),
                    json!(null),
                    failed,
                    self.revision,
                );
                Err(why)
            }
        }
    }

    pub(super) fn reload_on_signal(&mut self) {
        notify::reloading();
        let replaced = match self.reload(Actor::daemon(Via::Signal)) {
            Ok((summary, replaced)) => {
                info!("reload applied: {summary}");
                replaced
            }
            Err(e) => {
                error!("reload failed, still enforcing the previous config: {e}");
                None
            }
        };
        notify::ready(&self.config, self.revision, self.emergency.as_ref());
        // Freeing a million entries takes a while: the new ones are in force already.
        drop(replaced);
    }

    pub(super) fn roll_back(&mut self) {
        let Some(pending) = self.pending.take() else {
            return;
        };
        let changes::Changes {
            before,
            after,
            summary,
        } = changes::changes(&self.config, &pending.restore_config);
        let note = json!({ "unconfirmed": pending.description });
        let after = match after {
            serde_json::Value::Object(mut map) => {
                map.insert("rolled_back".into(), note);
                serde_json::Value::Object(map)
            }
            other => other,
        };
        if let Err(e) = self.record(
            Actor::daemon(Via::Expiry),
            Action::Rollback,
            before,
            after,
            Outcome::Ok,
            self.revision + 1,
        ) {
            error!("not rolling back `{}`: {e}", pending.description);
            return;
        }
        // A hand edit made meanwhile is not overwritten: the enforced rules go back, the file
        // stays, and CLI changes are refused until `reload` (the file differs from what the
        // daemon knows).
        let path = pending.restore_config.path.clone();
        let hand_edited = pending
            .restore_texts
            .keys()
            .any(|file| Config::read_text(file).ok().as_deref() != self.known_text(file));
        let text = match pending.restore_texts.get(&path) {
            Some(text) if !hand_edited => text.clone(),
            _ => self.config_text.clone(),
        };
        let restored = if hand_edited {
            Ok(())
        } else {
            set_files::restore(&pending.restore_texts)
                .map_err(anyhow::Error::msg)
                .context("restoring the config files")
        };
        let switched =
            restored.and_then(|()| self.switch_to(pending.restore_config, text, summary));
        match switched.map(|(summary, _)| summary) {
            Ok(summary) if hand_edited => warn!(
                "not confirmed in time: rolled back the enforced rules of `{}` ({summary}), but left {} alone because it was edited by hand meanwhile; check it and run `allowlistctl reload`",
                pending.description,
                path.display()
            ),
            Ok(summary) => warn!(
                "not confirmed in time: rolled back `{}` ({summary})",
                pending.description
            ),
            Err(e) => error!("rolling back `{}` failed: {e:#}", pending.description),
        }
    }
}
