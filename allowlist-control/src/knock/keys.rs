//! The two key files. The server's `knock_keys` holds one public key per line with its
//! rights; a sender's private key file holds the key's name and its secret, so `allowlistctl
//! knock --key FILE` needs nothing else. `#` starts a comment in both.
//!
//! ```text
//! # NAME  LISTS        MAX_FOR  PUBLIC_KEY                                    [OPTIONS]
//! alice   default,ssh  8h       lTPPaX2NJv1y1X5mUJ3wM8aD2Ks0bxR1zG9yTfnKq3c=  any-ip
//! ```
//!
//! LISTS is a comma-separated list of list names or `*` (every list); MAX_FOR the longest
//! `--for` the key may ask (e.g. 30m, 8h); PUBLIC_KEY the Ed25519 key in standard base64.
//! OPTIONS: `any-ip` lets the key open another address than the knock's source (`--ip`);
//! without it such a knock is refused.

use std::fmt;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use ed25519_dalek::{PUBLIC_KEY_LENGTH, SECRET_KEY_LENGTH, SigningKey, VerifyingKey};

use super::{NameError, check_key_name, check_list_name};

/// The one option a key line may carry.
pub const ANY_IP: &str = "any-ip";

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Lists {
    /// `*`
    Any,
    Only(Vec<String>),
}

impl Lists {
    pub fn allows(&self, list: &str) -> bool {
        match self {
            Lists::Any => true,
            Lists::Only(lists) => lists.iter().any(|l| l == list),
        }
    }
}

impl fmt::Display for Lists {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Lists::Any => f.write_str("*"),
            Lists::Only(lists) => f.write_str(&lists.join(",")),
        }
    }
}

/// One key of the server's `knock_keys` file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyLine {
    pub name: String,
    pub lists: Lists,
    /// The longest time a knock with this key may open an address for.
    pub max_for: Duration,
    pub public: VerifyingKey,
    /// `any-ip`: may ask for another address than the datagram's source.
    pub any_ip: bool,
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum KeyLineError {
    #[error("expected `{expected}`, found {found} field(s)")]
    Fields {
        expected: &'static str,
        found: usize,
    },
    #[error("key name `{0}`: {1}")]
    Name(String, NameError),
    #[error("list `{0}`: {1} (a-z, 0-9, `_` and `-`, or `*` alone for every list)")]
    List(String, NameError),
    #[error("list `{0}` appears twice")]
    DuplicateList(String),
    #[error("longest time `{0}`: {1} (e.g. 30m, 8h)")]
    MaxFor(String, String),
    #[error("public key `{0}`: {1}")]
    Public(String, &'static str),
    #[error("private key: {0}")]
    Private(&'static str),
    #[error("unknown option `{0}` (the one option is `{ANY_IP}`)")]
    Option(String),
}

const KEY_LINE: &str = "NAME LISTS MAX_FOR PUBLIC_KEY [any-ip]";

/// The line without its comment, split into fields.
fn fields(line: &str) -> Vec<&str> {
    let text = line.split_once('#').map_or(line, |(text, _)| text);
    text.split_whitespace().collect()
}

impl KeyLine {
    /// One line of `knock_keys`: None for a blank or comment line.
    pub fn parse(line: &str) -> Result<Option<KeyLine>, KeyLineError> {
        let fields = fields(line);
        let (name, lists, max_for, public, options) = match fields[..] {
            [] => return Ok(None),
            [n, l, m, p] => (n, l, m, p, None),
            [n, l, m, p, o] => (n, l, m, p, Some(o)),
            _ => {
                return Err(KeyLineError::Fields {
                    expected: KEY_LINE,
                    found: fields.len(),
                });
            }
        };
        check_key_name(name).map_err(|e| KeyLineError::Name(name.to_owned(), e))?;
        let any_ip = match options {
            None => false,
            Some(ANY_IP) => true,
            Some(other) => return Err(KeyLineError::Option(other.to_owned())),
        };
        Ok(Some(KeyLine {
            name: name.to_owned(),
            lists: Lists::parse(lists)?,
            max_for: parse_max_for(max_for)?,
            public: parse_public(public)?,
            any_ip,
        }))
    }
}

impl Lists {
    /// `default,ssh`, or `*` for every list.
    pub fn parse(text: &str) -> Result<Lists, KeyLineError> {
        if text == "*" {
            return Ok(Lists::Any);
        }
        let mut lists: Vec<String> = Vec::new();
        for list in text.split(',') {
            check_list_name(list).map_err(|e| KeyLineError::List(list.to_owned(), e))?;
            if lists.iter().any(|l| l == list) {
                return Err(KeyLineError::DuplicateList(list.to_owned()));
            }
            lists.push(list.to_owned());
        }
        Ok(Lists::Only(lists))
    }
}

/// A key's longest time, as `keygen --max-for` and the key line take it.
pub fn parse_max_for(text: &str) -> Result<Duration, KeyLineError> {
    let problem = |p: &str| KeyLineError::MaxFor(text.to_owned(), p.to_owned());
    let duration = humantime::parse_duration(text).map_err(|e| problem(&e.to_string()))?;
    if duration.as_secs() == 0 {
        return Err(problem("at least one second"));
    }
    if duration.subsec_nanos() != 0 || u32::try_from(duration.as_secs()).is_err() {
        return Err(problem("whole seconds, at most 136 years"));
    }
    Ok(duration)
}

fn parse_public(text: &str) -> Result<VerifyingKey, KeyLineError> {
    let problem = |p| KeyLineError::Public(text.to_owned(), p);
    let bytes = BASE64.decode(text).map_err(|_| problem("not base64"))?;
    let bytes: [u8; PUBLIC_KEY_LENGTH] =
        bytes.try_into().map_err(|_| problem("not 32 bytes long"))?;
    let key = VerifyingKey::from_bytes(&bytes).map_err(|_| problem("not an Ed25519 key"))?;
    if key.is_weak() {
        return Err(problem("a weak Ed25519 key"));
    }
    Ok(key)
}

impl fmt::Display for KeyLine {
    /// The line as `knock_keys` takes it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {} {} {}",
            self.name,
            self.lists,
            compact(self.max_for),
            BASE64.encode(self.public.as_bytes())
        )?;
        if self.any_ip {
            write!(f, " {ANY_IP}")?;
        }
        Ok(())
    }
}

/// `8h30m`: a duration as one field (humantime writes `8h 30m`).
fn compact(duration: Duration) -> String {
    let mut secs = duration.as_secs();
    let mut out = String::new();
    for (unit, size) in [("d", 86_400), ("h", 3600), ("m", 60), ("s", 1)] {
        if secs >= size {
            out += &format!("{}{unit}", secs / size);
            secs %= size;
        }
    }
    out
}

/// A sender's private key file: the key's name and its secret.
pub struct KeyFile {
    pub name: String,
    pub key: SigningKey,
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum KeyFileError {
    #[error("no key in it (a line `NAME PRIVATE_KEY`)")]
    NoKey,
    #[error("line {line}: {error}")]
    Line { line: usize, error: KeyLineError },
    #[error("line {line}: a second key (the first is on line {first}); one key per file")]
    Second { line: usize, first: usize },
}

impl KeyFileError {
    /// `FILE:LINE: problem`, as the config's errors read.
    pub fn located(&self, file: &std::path::Path) -> String {
        match self {
            KeyFileError::NoKey => format!("{}: {self}", file.display()),
            KeyFileError::Line { line, error } => format!("{}:{line}: {error}", file.display()),
            KeyFileError::Second { line, first } => format!(
                "{}:{line}: a second key (the first is on line {first}); one key per file",
                file.display()
            ),
        }
    }
}

impl KeyFile {
    /// A new key from the operating system's random numbers.
    pub fn generate(name: &str) -> Result<KeyFile, getrandom::Error> {
        let mut secret = [0; SECRET_KEY_LENGTH];
        getrandom::fill(&mut secret)?;
        Ok(KeyFile {
            name: name.to_owned(),
            key: SigningKey::from_bytes(&secret),
        })
    }

    /// The file's text; `public` (its line for `knock_keys`) goes into a comment, so the
    /// file alone says which server line belongs to it.
    pub fn to_text(&self, public: &KeyLine) -> String {
        format!(
            "# allowlist knock key `{name}`: keep this file secret (allowlistctl knock --key FILE).\n\
             # Its line in the server's knock_keys file:\n\
             # {public}\n\
             {name} {secret}\n",
            name = self.name,
            secret = BASE64.encode(self.key.as_bytes()),
        )
    }

    pub fn parse(text: &str) -> Result<KeyFile, KeyFileError> {
        let mut found: Option<(usize, KeyFile)> = None;
        for (i, line) in text.lines().enumerate() {
            let line_no = i + 1;
            let located = |error| KeyFileError::Line {
                line: line_no,
                error,
            };
            let (name, secret) = match fields(line)[..] {
                [] => continue,
                [name, secret] => (name, secret),
                ref other => {
                    return Err(located(KeyLineError::Fields {
                        expected: "NAME PRIVATE_KEY",
                        found: other.len(),
                    }));
                }
            };
            if let Some((first, _)) = found {
                return Err(KeyFileError::Second {
                    line: line_no,
                    first,
                });
            }
            check_key_name(name).map_err(|e| located(KeyLineError::Name(name.to_owned(), e)))?;
            let secret: [u8; SECRET_KEY_LENGTH] = BASE64
                .decode(secret)
                .ok()
                .and_then(|b| b.try_into().ok())
                .ok_or_else(|| located(KeyLineError::Private("not 32 bytes of base64")))?;
            let key = KeyFile {
                name: name.to_owned(),
                key: SigningKey::from_bytes(&secret),
            };
            found = Some((line_no, key));
        }
        found.map(|(_, key)| key).ok_or(KeyFileError::NoKey)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn public(seed: u8) -> String {
        BASE64.encode(
            SigningKey::from_bytes(&[seed; 32])
                .verifying_key()
                .as_bytes(),
        )
    }

    #[test]
    fn key_lines_read_back_as_they_are_written() {
        let key = SigningKey::from_bytes(&[7; 32]).verifying_key();
        for (lists, any_ip) in [
            (Lists::Only(vec!["default".into(), "ssh".into()]), false),
            (Lists::Any, true),
        ] {
            let line = KeyLine {
                name: "alice@laptop".into(),
                lists,
                max_for: Duration::from_secs(8 * 3600 + 30 * 60),
                public: key,
                any_ip,
            };
            let text = line.to_string();
            assert_eq!(KeyLine::parse(&text), Ok(Some(line)), "{text}");
        }
    }

    #[test]
    fn comments_and_blank_lines_are_no_keys() {
        assert_eq!(KeyLine::parse(""), Ok(None));
        assert_eq!(KeyLine::parse("   # NAME LISTS ..."), Ok(None));
        let line = format!("bob ssh 30m {}   # the on-call laptop", public(1));
        let key = KeyLine::parse(&line).unwrap().unwrap();
        assert_eq!(
            (key.name.as_str(), key.max_for, key.any_ip),
            ("bob", Duration::from_secs(1800), false)
        );
        assert!(key.lists.allows("ssh") && !key.lists.allows("default"));
    }

    #[test]
    fn bad_key_lines_name_the_field() {
        let p = public(1);
        let cases = [
            (
                "bob ssh 30m".to_owned(),
                "expected `NAME LISTS MAX_FOR PUBLIC_KEY [any-ip]`, found 3 field(s)",
            ),
            (format!("bob ssh 30m {p} any-ip extra"), "found 6 field(s)"),
            (
                format!("b/b ssh 30m {p}"),
                "key name `b/b`: `/` is not allowed",
            ),
            (format!("bob SSH 30m {p}"), "list `SSH`: `S` is not allowed"),
            (format!("bob ssh,,web 30m {p}"), "list ``: empty"),
            (
                format!("bob ssh,*,web 30m {p}"),
                "list `*`: `*` is not allowed",
            ),
            (format!("bob ssh,ssh 30m {p}"), "list `ssh` appears twice"),
            (
                format!("bob ssh 30x {p}"),
                "longest time `30x`: unknown time unit",
            ),
            (
                format!("bob ssh 0s {p}"),
                "longest time `0s`: at least one second",
            ),
            (
                format!("bob ssh 1500ms {p}"),
                "longest time `1500ms`: whole seconds",
            ),
            (
                "bob ssh 30m not-base64!".to_owned(),
                "public key `not-base64!`: not base64",
            ),
            (
                "bob ssh 30m AAAA".to_owned(),
                "public key `AAAA`: not 32 bytes long",
            ),
            (
                format!("bob ssh 30m {}", BASE64.encode([0u8; 32])),
                "a weak Ed25519 key",
            ),
            (
                format!("bob ssh 30m {p} any-address"),
                "unknown option `any-address`",
            ),
        ];
        for (line, wanted) in cases {
            let error = KeyLine::parse(&line).unwrap_err().to_string();
            assert!(error.contains(wanted), "{line}: {error}");
        }
    }

    #[test]
    fn private_key_files_round_trip_and_carry_their_public_line() {
        let file = KeyFile::generate("alice").unwrap();
        let line = KeyLine {
            name: "alice".into(),
            lists: Lists::Only(vec!["default".into()]),
            max_for: Duration::from_secs(3600),
            public: file.key.verifying_key(),
            any_ip: false,
        };
        let text = file.to_text(&line);
        assert!(text.contains(&format!("# {line}\n")), "{text}");
        let read = KeyFile::parse(&text).unwrap();
        assert_eq!(read.name, "alice");
        assert_eq!(read.key.as_bytes(), file.key.as_bytes());
        // Two keys from the generator differ.
        let other = KeyFile::generate("alice").unwrap();
        assert_ne!(other.key.as_bytes(), file.key.as_bytes());
    }

    #[test]
    fn bad_private_key_files_name_the_line() {
        let path = std::path::Path::new("/home/a/knock.key");
        let secret = BASE64.encode([3u8; 32]);
        let cases = [
            (
                "# nothing\n\n".to_owned(),
                "/home/a/knock.key: no key in it",
            ),
            (
                format!("# c\nalice {secret} x\n"),
                "/home/a/knock.key:2: expected `NAME PRIVATE_KEY`, found 3",
            ),
            (
                "alice AAAA\n".to_owned(),
                "/home/a/knock.key:1: private key: not 32 bytes of base64",
            ),
            (
                format!("al ice {secret}\n"),
                "/home/a/knock.key:1: expected",
            ),
            (
                format!("a!ice {secret}\n"),
                "/home/a/knock.key:1: key name `a!ice`",
            ),
            (
                format!("alice {secret}\nbob {secret}\n"),
                "/home/a/knock.key:2: a second key (the first is on line 1)",
            ),
        ];
        for (text, wanted) in cases {
            let error = KeyFile::parse(&text).err().expect(&text).located(path);
            assert!(error.starts_with(wanted), "{text}: {error}");
        }
    }
}
