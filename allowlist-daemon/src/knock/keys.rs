//! The `knock_keys` file: who may knock, on which lists, for how long (the line format is
//! `allowlist_control::knock::keys`). It decides who gets in, so it must be trusted as the
//! config is; every bad line is reported at once, each as `FILE:LINE: …`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use allowlist_config::rules::valid_list_name;
use allowlist_config::trusted_file::{self, Untrusted};
use allowlist_control::knock::{KeyLine, Lists};

#[derive(Debug, thiserror::Error)]
pub enum KeysError {
    #[error(transparent)]
    Untrusted(#[from] Untrusted),
    #[error("reading knock keys file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}", .0.join("\n"))]
    Lines(Vec<String>),
}

/// The keys by name.
#[derive(Clone, Debug, Default)]
pub struct KnockKeys {
    keys: HashMap<String, KeyLine>,
}

impl KnockKeys {
    pub fn load(path: &Path) -> Result<KnockKeys, KeysError> {
        trusted_file::check(path, "knock keys file")?;
        let text = std::fs::read_to_string(path).map_err(|source| KeysError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        KnockKeys::parse(path, &text)
    }

    /// `path` only names the file in messages.
    pub fn parse(path: &Path, text: &str) -> Result<KnockKeys, KeysError> {
        let mut keys: HashMap<String, KeyLine> = HashMap::new();
        let mut first_line: HashMap<String, usize> = HashMap::new();
        let mut problems = Vec::new();
        for (i, line) in text.lines().enumerate() {
            let at = format!("{}:{}", path.display(), i + 1);
            let key = match KeyLine::parse(line) {
                Ok(Some(key)) => key,
                Ok(None) => continue,
                Err(e) => {
                    problems.push(format!("{at}: {e}"));
                    continue;
                }
            };
            // The wire allows 64 bytes; the config's list names are shorter.
            if let Lists::Only(lists) = &key.lists
                && let Some(bad) = lists.iter().find(|l| !valid_list_name(l))
            {
                problems.push(format!(
                    "{at}: key `{}`: list `{bad}`: not a list name (1 to 32 of a-z, 0-9, `_` and `-`)",
                    key.name
                ));
                continue;
            }
            if let Some(first) = first_line.get(&key.name) {
                problems.push(format!(
                    "{at}: key `{}` again (first on line {first}); one line per key",
                    key.name
                ));
                continue;
            }
            first_line.insert(key.name.clone(), i + 1);
            keys.insert(key.name.clone(), key);
        }
        if !problems.is_empty() {
            return Err(KeysError::Lines(problems));
        }
        Ok(KnockKeys { keys })
    }

    pub fn get(&self, name: &str) -> Option<&KeyLine> {
        self.keys.get(name)
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use std::os::unix::fs::PermissionsExt as _;

    use allowlist_control::knock::SigningKey;

    use super::*;

    /// The public key's field of a key line.
    pub(crate) fn public(seed: u8) -> String {
        let line = KeyLine {
            name: "x".into(),
            lists: Lists::Any,
            max_for: std::time::Duration::from_secs(1),
            public: SigningKey::from_bytes(&[seed; 32]).verifying_key(),
            any_ip: false,
        };
        line.to_string()
            .split_whitespace()
            .nth(3)
            .unwrap()
            .to_owned()
    }

    #[test]
    fn keys_load_by_name_with_their_rights() {
        let text = format!(
            "# NAME LISTS MAX_FOR PUBLIC_KEY [any-ip]\n\
             alice ssh,default 8h {}\n\n\
             bob * 30m {} any-ip  # the on-call laptop\n",
            public(1),
            public(2)
        );
        let keys = KnockKeys::parse(Path::new("knock_keys"), &text).unwrap();
        assert_eq!(keys.len(), 2);
        let alice = keys.get("alice").unwrap();
        assert!(alice.lists.allows("ssh") && !alice.lists.allows("web") && !alice.any_ip);
        let bob = keys.get("bob").unwrap();
        assert!(bob.lists.allows("web") && bob.any_ip);
        assert!(keys.get("carol").is_none());
    }

    #[test]
    fn every_bad_line_is_reported_with_file_and_line() {
        let long = "l".repeat(33);
        let text = format!(
            "alice ssh 8h {a}\n\
             bob ssh 8h\n\
             carol {long} 8h {a}\n\
             alice web 1h {b}\n\
             dave ssh 8x {b}\n",
            a = public(1),
            b = public(2)
        );
        let error = KnockKeys::parse(Path::new("/etc/allowlist/knock_keys"), &text)
            .unwrap_err()
            .to_string();
        let lines: Vec<&str> = error.lines().collect();
        assert_eq!(lines.len(), 4, "{error}");
        assert!(lines[0].starts_with("/etc/allowlist/knock_keys:2: expected `NAME LISTS"));
        assert!(lines[1].starts_with(&format!(
            "/etc/allowlist/knock_keys:3: key `carol`: list `{long}`: not a list name"
        )));
        assert_eq!(
            lines[2],
            "/etc/allowlist/knock_keys:4: key `alice` again (first on line 1); one line per key"
        );
        assert!(lines[3].starts_with("/etc/allowlist/knock_keys:5: longest time `8x`"));
    }

    #[test]
    fn a_keys_file_others_may_write_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let path = dir.path().join("knock_keys");
        std::fs::write(&path, format!("alice ssh 8h {}\n", public(1))).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o646)).unwrap();
        let error = KnockKeys::load(&path).unwrap_err().to_string();
        assert!(error.starts_with("knock keys file "), "{error}");
        assert!(error.contains("writable by others"), "{error}");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert_eq!(KnockKeys::load(&path).unwrap().len(), 1);
        let missing = KnockKeys::load(&dir.path().join("nope")).unwrap_err();
        assert!(missing.to_string().starts_with("reading knock keys file "));
    }
}
