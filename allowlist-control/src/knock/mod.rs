//! The knock (single packet authorization): one signed UDP datagram asking the daemon to open
//! one address on one list for a while. The datagram's layout, signing and checking
//! ([`datagram`]), and the two key files: the server's `knock_keys` lines and the sender's
//! private key file ([`keys`]). The daemon's rules (rights, time window, replays, rates) live
//! in allowlistd.

pub mod datagram;
pub mod keys;

pub use datagram::{Ask, Knock, KnockError, MAX_DATAGRAM, MIN_DATAGRAM, NONCE_LEN};
pub use keys::{KeyFile, KeyFileError, KeyLine, KeyLineError, Lists};
// The key types, so that users of this module need not name the crate.
pub use ed25519_dalek::{SigningKey, VerifyingKey};

/// The UDP port knocks go to unless `--port` or `knock_listen` say otherwise (fwknop's).
pub const DEFAULT_PORT: u16 = 62201;

/// The list a knock opens unless `--list` says otherwise.
pub const DEFAULT_LIST: &str = "default";

/// Longest key and list names on the wire.
pub const MAX_NAME: usize = 64;

/// A key's name: 1 to 64 of ASCII letters, digits, `.`, `_`, `-` and `@` (e.g. alice@laptop).
pub fn check_key_name(name: &str) -> Result<(), NameError> {
    check_name(name, |b| {
        b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b'@')
    })
}

/// A list's name as the config spells it: a-z, 0-9, `_` and `-` (whether the list exists,
/// and the config's shorter limit, are the daemon's to check).
pub fn check_list_name(name: &str) -> Result<(), NameError> {
    check_name(name, |b| {
        b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'_' | b'-')
    })
}

fn check_name(name: &str, allowed: impl Fn(u8) -> bool) -> Result<(), NameError> {
    if name.is_empty() {
        return Err(NameError::Empty);
    }
    if name.len() > MAX_NAME {
        return Err(NameError::TooLong(name.len()));
    }
    match name.chars().find(|c| !c.is_ascii() || !allowed(*c as u8)) {
        Some(c) => Err(NameError::Char(c)),
        None => Ok(()),
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    #[error("empty")]
    Empty,
    #[error("{0} bytes long (at most {MAX_NAME})")]
    TooLong(usize),
    #[error("`{0}` is not allowed in a name")]
    Char(char),
}
