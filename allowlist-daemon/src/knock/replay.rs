//! The nonces of knocks granted, kept while their knock could still pass the time window, in
//! `state_dir` so that a restart does not forget them: otherwise a knock captured on the wire
//! could be replayed right after one.
//!
//! Only knocks with a valid signature are recorded (a forger cannot fill the table), and the
//! file is rewritten atomically before the grant leaves the guard.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use allowlist_control::knock::NONCE_LEN;

pub const STATE_FILE: &str = "knock-nonces";

/// Nonces kept at most: the total rate's burst and a minute of its rate are far fewer. A full
/// table refuses knocks rather than forget a nonce early.
pub const MAX_NONCES: usize = 16_384;

pub type Nonce = [u8; NONCE_LEN];

pub struct ReplayCache {
    path: PathBuf,
    /// Each nonce with the unix second after which its knock is stale anyway.
    seen: HashMap<Nonce, u64>,
}

#[derive(Debug)]
pub enum NotRecorded {
    Seen,
    Full,
    Write(std::io::Error),
}

impl ReplayCache {
    /// The cache of `state_dir`, without what is over at `now` (unix seconds).
    pub fn load(state_dir: &Path, now: u64) -> anyhow::Result<ReplayCache> {
        let path = state_dir.join(STATE_FILE);
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(e) => anyhow::bail!("reading {}: {e}", path.display()),
        };
        let mut seen = HashMap::new();
        for (i, line) in text.lines().enumerate() {
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (until, nonce) = parse_line(line).ok_or_else(|| {
                anyhow::anyhow!(
                    "{}:{}: expected `UNIX_SECONDS NONCE_HEX`, found `{}` (the file is \
                     allowlistd's own; remove it to start afresh)",
                    path.display(),
                    i + 1,
                    line.escape_debug()
                )
            })?;
            if until >= now {
                seen.insert(nonce, until);
            }
        }
        Ok(ReplayCache { path, seen })
    }

    /// Records `nonce` until `until` (unix seconds), unless it was seen.
    pub fn record(&mut self, nonce: Nonce, until: u64, now: u64) -> Result<(), NotRecorded> {
        self.seen.retain(|_, kept| *kept >= now);
        if self.seen.contains_key(&nonce) {
            return Err(NotRecorded::Seen);
        }
        if self.seen.len() >= MAX_NONCES {
            return Err(NotRecorded::Full);
        }
        self.seen.insert(nonce, until);
        if let Err(e) = allowlist_config::edit::write_atomic(&self.path, &self.text()) {
            self.seen.remove(&nonce);
            return Err(NotRecorded::Write(e));
        }
        Ok(())
    }

    fn text(&self) -> String {
        let mut text = String::from(
            "# allowlistd: nonces of granted knocks, each with the unix second its knock goes stale\n",
        );
        for (nonce, until) in &self.seen {
            let _ = write!(text, "{until} ");
            for b in nonce {
                let _ = write!(text, "{b:02x}");
            }
            text.push('\n');
        }
        text
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.seen.len()
    }
}

fn parse_line(line: &str) -> Option<(u64, Nonce)> {
    let (until, hex) = line.split_once(' ')?;
    if hex.len() != 2 * NONCE_LEN || !hex.is_ascii() {
        return None;
    }
    let mut nonce = [0; NONCE_LEN];
    for (i, b) in nonce.iter_mut().enumerate() {
        *b = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).ok()?;
    }
    Some((until.parse().ok()?, nonce))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nonces_survive_a_reload_until_they_are_over() {
        let dir = tempfile::tempdir().unwrap();
        let mut cache = ReplayCache::load(dir.path(), 1000).unwrap();
        cache.record([1; 16], 1030, 1000).unwrap();
        cache.record([2; 16], 1060, 1000).unwrap();
        assert!(matches!(
            cache.record([1; 16], 1031, 1001),
            Err(NotRecorded::Seen)
        ));

        let mut again = ReplayCache::load(dir.path(), 1010).unwrap();
        assert_eq!(again.len(), 2);
        assert!(matches!(
            again.record([2; 16], 1070, 1010),
            Err(NotRecorded::Seen)
        ));
        // Past its time the first is forgotten: its knock would be stale anyway.
        assert_eq!(ReplayCache::load(dir.path(), 1031).unwrap().len(), 1);
        again.record([1; 16], 1100, 1031).unwrap();
    }

    #[test]
    fn a_damaged_file_is_named_with_its_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(STATE_FILE);
        std::fs::write(&path, format!("# c\n1030 {}\n1030 xyz\n", "ab".repeat(16))).unwrap();
        let error = ReplayCache::load(dir.path(), 0).err().unwrap().to_string();
        assert!(
            error.starts_with(&format!(
                "{}:3: expected `UNIX_SECONDS NONCE_HEX`, found `1030 xyz`",
                path.display()
            )),
            "{error}"
        );
    }

    #[test]
    fn a_full_table_refuses_rather_than_forgets() {
        let dir = tempfile::tempdir().unwrap();
        let mut cache = ReplayCache::load(dir.path(), 0).unwrap();
        cache.seen = (0..MAX_NONCES as u64)
            .map(|n| {
                let mut nonce = [0; 16];
                nonce[..8].copy_from_slice(&n.to_be_bytes());
                (nonce, 100)
            })
            .collect();
        assert!(matches!(
            cache.record([0xff; 16], 100, 50),
            Err(NotRecorded::Full)
        ));
        cache.record([0xff; 16], 200, 101).unwrap();
        assert_eq!(cache.len(), 1);
    }

    #[test]
    fn a_nonce_that_cannot_be_written_is_not_kept() {
        let dir = tempfile::tempdir().unwrap();
        let mut cache = ReplayCache::load(&dir.path().join("missing"), 0).unwrap();
        assert!(matches!(
            cache.record([1; 16], 100, 0),
            Err(NotRecorded::Write(_))
        ));
        assert_eq!(cache.len(), 0);
    }
}
