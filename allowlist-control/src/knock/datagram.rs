//! One knock datagram, all integers big-endian:
//!
//! ```text
//! magic    4   "ALKN"
//! version  1   1
//! key      1+n the key's name, its length first (1..=64)
//! time     8   unix seconds when it was sent
//! nonce    16  random
//! list     1+m the list to open, its length first (1..=64)
//! for      4   seconds to open it for (at least 1)
//! address  1   0: the datagram's source; 4: an IPv4 address follows; 6: an IPv6 one
//!          0/4/16
//! signature 64 Ed25519 over CONTEXT followed by every byte above
//! ```
//!
//! Every field has one encoding and nothing may follow the address, so the bytes signed are
//! exactly the bytes a receiver decodes. The context keeps a knock signature from being valid
//! for anything else signed with the same key, and any later version's knocks.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::{Duration, SystemTime};

use ed25519_dalek::{SIGNATURE_LENGTH, Signature, Signer as _, SigningKey, VerifyingKey};

use super::{NameError, check_key_name, check_list_name};

pub const MAGIC: &[u8; 4] = b"ALKN";
pub const VERSION: u8 = 1;
pub const NONCE_LEN: usize = 16;
/// What the signature covers before the datagram's own bytes.
pub const CONTEXT: &[u8] = b"allowlist knock v1\0";

const FIXED: usize = MAGIC.len() + 1 + 1 + 8 + NONCE_LEN + 1 + 4 + 1 + SIGNATURE_LENGTH;
/// The shortest knock: one-byte names, no address.
pub const MIN_DATAGRAM: usize = FIXED + 2;
/// The longest knock: 64-byte names and an IPv6 address.
pub const MAX_DATAGRAM: usize = FIXED + 2 * super::MAX_NAME + 16;

/// What a knock asks for, as its sender wrote it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ask {
    pub key: String,
    /// Unix seconds when it was sent.
    pub timestamp: u64,
    pub nonce: [u8; NONCE_LEN],
    pub list: String,
    /// Whole seconds, at least one and at most u32::MAX.
    pub duration: Duration,
    /// None: whatever address the datagram arrives from.
    pub addr: Option<IpAddr>,
}

/// A decoded knock whose signature is not checked yet: [`Knock::verify`] does that.
#[derive(Clone, Debug)]
pub struct Knock {
    pub ask: Ask,
    /// The bytes the signature covers (without the context).
    signed: Vec<u8>,
    signature: Signature,
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum KnockError {
    #[error("{0} bytes: shorter than any knock ({MIN_DATAGRAM} bytes at least)")]
    TooShort(usize),
    #[error("{0} bytes: longer than any knock ({MAX_DATAGRAM} bytes at most)")]
    TooLong(usize),
    #[error("not a knock (it does not start with \"ALKN\")")]
    NotAKnock,
    #[error("knock version {0}: this side speaks version {VERSION}")]
    Version(u8),
    #[error("the datagram ends inside the {0}")]
    Truncated(&'static str),
    #[error("key name: {0}")]
    KeyName(NameError),
    #[error("list name: {0}")]
    ListName(NameError),
    #[error("a duration of 0 seconds")]
    ZeroDuration,
    #[error("a duration of {0:?}: whole seconds up to {max} only", max = u32::MAX)]
    BadDuration(Duration),
    #[error("address kind {0}: 0 (the source), 4 or 6 only")]
    AddressKind(u8),
    #[error("address {0}: only a unicast address can be opened")]
    NotUnicast(IpAddr),
    #[error("{0} bytes between the address and the signature")]
    Trailing(usize),
    #[error("the signature does not match the key")]
    BadSignature,
}

impl Ask {
    /// A new ask sent now, with a fresh random nonce.
    pub fn new(
        key: &str,
        list: &str,
        duration: Duration,
        addr: Option<IpAddr>,
    ) -> Result<Ask, getrandom::Error> {
        let mut nonce = [0; NONCE_LEN];
        getrandom::fill(&mut nonce)?;
        let timestamp = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        Ok(Ask {
            key: key.to_owned(),
            timestamp,
            nonce,
            list: list.to_owned(),
            duration,
            addr,
        })
    }

    /// The datagram: these fields signed with `key`.
    pub fn sign(&self, key: &SigningKey) -> Result<Vec<u8>, KnockError> {
        let mut bytes = self.encode()?;
        let signature = key.sign(&[CONTEXT, &bytes].concat());
        bytes.extend_from_slice(&signature.to_bytes());
        Ok(bytes)
    }

    fn encode(&self) -> Result<Vec<u8>, KnockError> {
        check_key_name(&self.key).map_err(KnockError::KeyName)?;
        check_list_name(&self.list).map_err(KnockError::ListName)?;
        let seconds = duration_secs(self.duration)?;
        if let Some(addr) = self.addr {
            check_unicast(addr)?;
        }
        let mut out = Vec::with_capacity(MAX_DATAGRAM);
        out.extend_from_slice(MAGIC);
        out.push(VERSION);
        push_name(&mut out, &self.key);
        out.extend_from_slice(&self.timestamp.to_be_bytes());
        out.extend_from_slice(&self.nonce);
        push_name(&mut out, &self.list);
        out.extend_from_slice(&seconds.to_be_bytes());
        match self.addr {
            None => out.push(0),
            Some(IpAddr::V4(v4)) => {
                out.push(4);
                out.extend_from_slice(&v4.octets());
            }
            Some(IpAddr::V6(v6)) => {
                out.push(6);
                out.extend_from_slice(&v6.octets());
            }
        }
        Ok(out)
    }
}

fn duration_secs(duration: Duration) -> Result<u32, KnockError> {
    if duration.is_zero() {
        return Err(KnockError::ZeroDuration);
    }
    match u32::try_from(duration.as_secs()) {
        Ok(secs) if duration.subsec_nanos() == 0 => Ok(secs),
        _ => Err(KnockError::BadDuration(duration)),
    }
}

fn check_unicast(addr: IpAddr) -> Result<(), KnockError> {
    let bad = addr.is_unspecified()
        || addr.is_multicast()
        || matches!(addr, IpAddr::V4(v4) if v4.is_broadcast());
    if bad {
        return Err(KnockError::NotUnicast(addr));
    }
    Ok(())
}

fn push_name(out: &mut Vec<u8>, name: &str) {
    // Checked to be 1..=64 bytes before.
    out.push(name.len() as u8);
    out.extend_from_slice(name.as_bytes());
}

/// Reads the body front to back; every read names the field it was for.
struct Reader<'a> {
    rest: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize, field: &'static str) -> Result<&'a [u8], KnockError> {
        if self.rest.len() < n {
            return Err(KnockError::Truncated(field));
        }
        let (taken, rest) = self.rest.split_at(n);
        self.rest = rest;
        Ok(taken)
    }

    fn array<const N: usize>(&mut self, field: &'static str) -> Result<[u8; N], KnockError> {
        let bytes = self.take(N, field)?;
        Ok(bytes.try_into().expect("take gave N bytes"))
    }

    fn name(&mut self, field: &'static str) -> Result<&'a str, KnockError> {
        let [len] = self.array(field)?;
        let bytes = self.take(usize::from(len), field)?;
        // Not UTF-8 here means a byte outside the names' ASCII alphabets.
        Ok(std::str::from_utf8(bytes).unwrap_or("\u{fffd}"))
    }
}

impl Knock {
    /// Decodes a datagram as received: any bytes at all, never panicking.
    pub fn decode(datagram: &[u8]) -> Result<Knock, KnockError> {
        let len = datagram.len();
        if !datagram.starts_with(MAGIC) && len >= MAGIC.len() {
            return Err(KnockError::NotAKnock);
        }
        if len < MIN_DATAGRAM {
            return Err(KnockError::TooShort(len));
        }
        if len > MAX_DATAGRAM {
            return Err(KnockError::TooLong(len));
        }
        let (signed, signature) = datagram.split_at(len - SIGNATURE_LENGTH);
        let signature = Signature::from_bytes(signature.try_into().expect("64 bytes"));
        let mut r = Reader {
            rest: &signed[MAGIC.len()..],
        };
        let [version] = r.array("version")?;
        if version != VERSION {
            return Err(KnockError::Version(version));
        }
        let key = r.name("key name")?;
        check_key_name(key).map_err(KnockError::KeyName)?;
        let timestamp = u64::from_be_bytes(r.array("timestamp")?);
        let nonce = r.array("nonce")?;
        let list = r.name("list name")?;
        check_list_name(list).map_err(KnockError::ListName)?;
        let seconds = u32::from_be_bytes(r.array("duration")?);
        if seconds == 0 {
            return Err(KnockError::ZeroDuration);
        }
        let [kind] = r.array("address kind")?;
        let addr = match kind {
            0 => None,
            4 => Some(IpAddr::V4(Ipv4Addr::from(r.array::<4>("IPv4 address")?))),
            6 => Some(IpAddr::V6(Ipv6Addr::from(r.array::<16>("IPv6 address")?))),
            other => return Err(KnockError::AddressKind(other)),
        };
        if let Some(addr) = addr {
            check_unicast(addr)?;
        }
        if !r.rest.is_empty() {
            return Err(KnockError::Trailing(r.rest.len()));
        }
        Ok(Knock {
            ask: Ask {
                key: key.to_owned(),
                timestamp,
                nonce,
                list: list.to_owned(),
                duration: Duration::from_secs(u64::from(seconds)),
                addr,
            },
            signed: signed.to_vec(),
            signature,
        })
    }

    /// Whether `key` signed exactly these bytes (strict: no malleable or weak-key forms).
    pub fn verify(&self, key: &VerifyingKey) -> Result<(), KnockError> {
        key.verify_strict(&[CONTEXT, &self.signed].concat(), &self.signature)
            .map_err(|_| KnockError::BadSignature)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(seed: u8) -> SigningKey {
        SigningKey::from_bytes(&[seed; 32])
    }

    fn ask(addr: Option<IpAddr>) -> Ask {
        Ask {
            key: "alice@laptop".into(),
            timestamp: 1_790_000_000,
            nonce: *b"0123456789abcdef",
            list: "ssh".into(),
            duration: Duration::from_secs(1800),
            addr,
        }
    }

    fn addrs() -> [Option<IpAddr>; 3] {
        [
            None,
            Some("198.51.100.7".parse().unwrap()),
            Some("2001:db8::7".parse().unwrap()),
        ]
    }

    #[test]
    fn knocks_round_trip_and_verify_with_their_key_only() {
        for addr in addrs() {
            let sent = ask(addr);
            let bytes = sent.sign(&key(1)).unwrap();
            assert!((MIN_DATAGRAM..=MAX_DATAGRAM).contains(&bytes.len()));
            let got = Knock::decode(&bytes).unwrap();
            assert_eq!(got.ask, sent);
            got.verify(&key(1).verifying_key()).unwrap();
            assert_eq!(
                got.verify(&key(2).verifying_key()),
                Err(KnockError::BadSignature)
            );
        }
    }

    #[test]
    fn the_size_bounds_are_those_of_the_shortest_and_longest_knocks() {
        let mut short = ask(None);
        (short.key, short.list) = ("a".into(), "b".into());
        assert_eq!(short.sign(&key(1)).unwrap().len(), MIN_DATAGRAM);
        let mut long = ask(addrs()[2]);
        (long.key, long.list) = ("k".repeat(64), "l".repeat(64));
        assert_eq!(long.sign(&key(1)).unwrap().len(), MAX_DATAGRAM);
    }

    #[test]
    fn a_flipped_bit_anywhere_fails() {
        for addr in addrs() {
            let bytes = ask(addr).sign(&key(1)).unwrap();
            for bit in 0..bytes.len() * 8 {
                let mut bad = bytes.clone();
                bad[bit / 8] ^= 1 << (bit % 8);
                if let Ok(knock) = Knock::decode(&bad) {
                    assert_eq!(
                        knock.verify(&key(1).verifying_key()),
                        Err(KnockError::BadSignature),
                        "bit {bit} flipped still verifies"
                    );
                }
            }
        }
    }

    #[test]
    fn the_signature_covers_the_context() {
        let bytes = ask(None).sign(&key(1)).unwrap();
        let (body, sig) = bytes.split_at(bytes.len() - SIGNATURE_LENGTH);
        let sig = Signature::from_bytes(sig.try_into().unwrap());
        // Valid over context + body, not over the body alone.
        let public = key(1).verifying_key();
        public
            .verify_strict(&[CONTEXT, body].concat(), &sig)
            .unwrap();
        assert!(public.verify_strict(body, &sig).is_err());
    }

    #[test]
    fn malformed_datagrams_say_what_is_wrong() {
        let good = ask(addrs()[1]).sign(&key(1)).unwrap();
        let decode = |bytes: &[u8]| Knock::decode(bytes).unwrap_err();
        assert_eq!(decode(b""), KnockError::TooShort(0));
        assert_eq!(decode(b"GET / HTTP/1.1\r\n"), KnockError::NotAKnock);
        assert_eq!(decode(&good[..60]), KnockError::TooShort(60));
        assert_eq!(
            decode(&[good.as_slice(), &[0; 200]].concat()),
            KnockError::TooLong(good.len() + 200)
        );
        let mut v2 = good.clone();
        v2[4] = 2;
        assert_eq!(decode(&v2), KnockError::Version(2));
        // The key's length byte claims more than there is.
        let mut long = good.clone();
        long[5] = 250;
        assert_eq!(decode(&long), KnockError::Truncated("key name"));
        let mut name = good.clone();
        name[6] = b' ';
        assert_eq!(decode(&name), KnockError::KeyName(NameError::Char(' ')));
        // An address kind of 0 leaves the IPv4 address's 4 bytes over.
        let kind_at = good.len() - SIGNATURE_LENGTH - 5;
        let mut kind = good.clone();
        kind[kind_at] = 0;
        assert_eq!(decode(&kind), KnockError::Trailing(4));
        kind[kind_at] = 5;
        assert_eq!(decode(&kind), KnockError::AddressKind(5));
        let mut zero = good.clone();
        zero[kind_at - 4..kind_at].fill(0);
        assert_eq!(decode(&zero), KnockError::ZeroDuration);
        let mut multicast = good;
        multicast[kind_at + 1] = 224;
        assert_eq!(
            decode(&multicast),
            KnockError::NotUnicast("224.51.100.7".parse().unwrap())
        );
        assert_eq!(
            KnockError::Truncated("key name").to_string(),
            "the datagram ends inside the key name"
        );
        assert_eq!(
            KnockError::KeyName(NameError::Char(' ')).to_string(),
            "key name: ` ` is not allowed in a name"
        );
    }

    #[test]
    fn signing_refuses_what_could_not_be_decoded() {
        let mut bad = ask(None);
        bad.list = "Office".into();
        assert_eq!(
            bad.sign(&key(1)),
            Err(KnockError::ListName(NameError::Char('O')))
        );
        let mut bad = ask(None);
        bad.duration = Duration::from_millis(1500);
        assert!(matches!(bad.sign(&key(1)), Err(KnockError::BadDuration(_))));
        let mut bad = ask(Some("0.0.0.0".parse().unwrap()));
        assert!(matches!(bad.sign(&key(1)), Err(KnockError::NotUnicast(_))));
        bad.addr = None;
        bad.key = "x".repeat(65);
        assert_eq!(
            bad.sign(&key(1)),
            Err(KnockError::KeyName(NameError::TooLong(65)))
        );
    }

    #[test]
    fn fresh_asks_carry_the_time_and_distinct_nonces() {
        let a = Ask::new("alice", "default", Duration::from_secs(60), None).unwrap();
        let b = Ask::new("alice", "default", Duration::from_secs(60), None).unwrap();
        assert_ne!(a.nonce, b.nonce);
        let now = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        assert!(now.abs_diff(a.timestamp) <= 1);
    }
}
