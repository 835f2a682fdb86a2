//! The knock's server side: who may knock (`keys`, the `knock_keys` file), whether one
//! datagram earns a grant (`guard`: rights, time window, replays (`replay`), rates (`rate`)),
//! and the UDP sockets that receive knocks and never answer (`listen`).
//!
//! Nothing here changes the filter: a [`Grant`] goes to the main loop, which opens the
//! address as a timed entry and audits it.

mod guard;
mod keys;
mod listen;
mod rate;
mod replay;

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use allowlist_control::knock::KnockError;

pub use guard::Guard;
pub use keys::{KeysError, KnockKeys};
pub use listen::{Counters, KnockHandle, Listener};
pub use rate::Rate;
pub use replay::{MAX_NONCES, STATE_FILE};

/// What the config says about knocks (`knock_listen`, `knock_keys`, `knock_window`).
#[derive(Clone, Debug, PartialEq)]
pub struct KnockSettings {
    /// Where to receive knocks (IPv4 and IPv6 addresses apart); empty: knocks are off.
    pub listen: Vec<SocketAddr>,
    pub keys_file: PathBuf,
    /// How far a knock's timestamp may be from the daemon's clock, either way.
    pub window: Duration,
    /// Knocks (well-formed, of a known key) from one source: an IPv4 address, or an IPv6 /64.
    pub per_source: Rate,
    /// Knocks from everyone together: bounds the signature checks a second.
    pub total: Rate,
}

impl KnockSettings {
    /// What `config` says (its defaults included), with the default rates.
    pub fn of(config: &allowlist_config::Config) -> KnockSettings {
        KnockSettings {
            listen: config.knock_listen.clone(),
            keys_file: config.knock_keys.clone(),
            window: config.knock_window,
            ..KnockSettings::default()
        }
    }
}

impl Default for KnockSettings {
    /// A config's defaults (knocks off, `/etc/allowlist/knock_keys`, a 30 s window).
    fn default() -> KnockSettings {
        let defaults = allowlist_config::Config::defaults(std::path::Path::new(""));
        KnockSettings {
            listen: Vec::new(),
            keys_file: defaults.knock_keys,
            window: defaults.knock_window,
            // A person knocks once, maybe again after a typo; a script a few times.
            per_source: Rate {
                per_second: 2,
                burst: 5,
            },
            // ~50 µs of CPU a knock: 20 a second is 0.1% of a core.
            total: Rate {
                per_second: 20,
                burst: 50,
            },
        }
    }
}

/// A knock that passed every check: open `addr` on `list` for `duration`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Grant {
    /// The key's name, for the audit record.
    pub key: String,
    /// Canonical (an IPv4-mapped IPv6 address becomes IPv4).
    pub addr: IpAddr,
    pub list: String,
    pub duration: Duration,
    /// Where the datagram came from (the same as `addr` unless the key has `any-ip`).
    pub source: SocketAddr,
}

/// Why a datagram earned nothing. Never told to the sender: only counted and logged.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Refusal {
    Malformed(KnockError),
    UnknownKey {
        key: String,
    },
    RateLimitedSource,
    RateLimitedTotal,
    BadSignature {
        key: String,
    },
    /// The knock's time minus ours, in seconds.
    StaleTimestamp {
        key: String,
        skew: i64,
    },
    ListNotAllowed {
        key: String,
        list: String,
    },
    DurationTooLong {
        key: String,
        asked: Duration,
        max: Duration,
    },
    AddressMismatch {
        key: String,
        asked: IpAddr,
    },
    ReplayedNonce {
        key: String,
    },
    /// The nonce could not be recorded, so a replay after a restart could not be caught.
    StateUnwritable {
        key: String,
        error: String,
    },
}

/// The kinds of [`Refusal`], with the names counters and logs use.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RefusalKind {
    Malformed,
    UnknownKey,
    RateLimitedSource,
    RateLimitedTotal,
    BadSignature,
    StaleTimestamp,
    ListNotAllowed,
    DurationTooLong,
    AddressMismatch,
    ReplayedNonce,
    StateUnwritable,
}

impl RefusalKind {
    pub const ALL: [RefusalKind; 11] = [
        RefusalKind::Malformed,
        RefusalKind::UnknownKey,
        RefusalKind::RateLimitedSource,
        RefusalKind::RateLimitedTotal,
        RefusalKind::BadSignature,
        RefusalKind::StaleTimestamp,
        RefusalKind::ListNotAllowed,
        RefusalKind::DurationTooLong,
        RefusalKind::AddressMismatch,
        RefusalKind::ReplayedNonce,
        RefusalKind::StateUnwritable,
    ];

    /// Stable: metrics labels and log fields.
    pub fn name(self) -> &'static str {
        match self {
            RefusalKind::Malformed => "malformed",
            RefusalKind::UnknownKey => "unknown_key",
            RefusalKind::RateLimitedSource => "rate_limited_source",
            RefusalKind::RateLimitedTotal => "rate_limited_total",
            RefusalKind::BadSignature => "bad_signature",
            RefusalKind::StaleTimestamp => "stale_timestamp",
            RefusalKind::ListNotAllowed => "list_not_allowed",
            RefusalKind::DurationTooLong => "duration_too_long",
            RefusalKind::AddressMismatch => "address_mismatch",
            RefusalKind::ReplayedNonce => "replayed_nonce",
            RefusalKind::StateUnwritable => "state_unwritable",
        }
    }
}

impl Refusal {
    pub fn kind(&self) -> RefusalKind {
        match self {
            Refusal::Malformed(_) => RefusalKind::Malformed,
            Refusal::UnknownKey { .. } => RefusalKind::UnknownKey,
            Refusal::RateLimitedSource => RefusalKind::RateLimitedSource,
            Refusal::RateLimitedTotal => RefusalKind::RateLimitedTotal,
            Refusal::BadSignature { .. } => RefusalKind::BadSignature,
            Refusal::StaleTimestamp { .. } => RefusalKind::StaleTimestamp,
            Refusal::ListNotAllowed { .. } => RefusalKind::ListNotAllowed,
            Refusal::DurationTooLong { .. } => RefusalKind::DurationTooLong,
            Refusal::AddressMismatch { .. } => RefusalKind::AddressMismatch,
            Refusal::ReplayedNonce { .. } => RefusalKind::ReplayedNonce,
            Refusal::StateUnwritable { .. } => RefusalKind::StateUnwritable,
        }
    }
}

impl fmt::Display for Refusal {
    /// For logs: the kind's name, then what was wrong (key names are ASCII-checked or
    /// escaped before they get here).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: ", self.kind().name())?;
        match self {
            Refusal::Malformed(e) => write!(f, "{e}"),
            Refusal::UnknownKey { key } => write!(f, "no key `{}`", key.escape_debug()),
            Refusal::RateLimitedSource => f.write_str("too many knocks from this source"),
            Refusal::RateLimitedTotal => f.write_str("too many knocks from everyone"),
            Refusal::BadSignature { key } => write!(f, "not signed by key `{key}`"),
            Refusal::StaleTimestamp { key, skew } => {
                write!(f, "key `{key}`: sent {skew:+} s from our clock")
            }
            Refusal::ListNotAllowed { key, list } => {
                write!(f, "key `{key}` may not open list `{list}`")
            }
            Refusal::DurationTooLong { key, asked, max } => write!(
                f,
                "key `{key}` asked for {}, at most {}",
                allowlist_config::words::duration(*asked),
                allowlist_config::words::duration(*max)
            ),
            Refusal::AddressMismatch { key, asked } => {
                write!(
                    f,
                    "key `{key}` asked for {asked}, another address than its source (the key has no any-ip)"
                )
            }
            Refusal::ReplayedNonce { key } => write!(f, "key `{key}`: this knock was seen before"),
            Refusal::StateUnwritable { key, error } => {
                write!(f, "key `{key}`: recording its nonce: {error}")
            }
        }
    }
}
