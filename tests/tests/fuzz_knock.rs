//! Fuzzing the knock decoder and the daemon's guard for a bounded time (see
//! `allowlist_tests::fuzz`): signed knocks as `allowlistctl knock` sends them, their
//! mutations (bit flips, lying lengths, splices of two knocks, truncations) and raw bytes.
//!
//! An input is three parts: the datagram, the valid knock it was made from (empty for raw
//! bytes) and the seed of the key that signed that one.
//!
//! Asserted for every input: no panic, no hang; a decoded knock is within the size bounds
//! with valid names; a datagram other than the valid knock never verifies with its key and
//! never earns a grant from the guard (whatever its clock says); the valid knock decodes to
//! what was signed, verifies, and signing it again gives the same bytes (one encoding).

use std::cell::RefCell;
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::time::{Duration, SystemTime};

use allowlist_control::knock::{
    self, Ask, Knock, MAX_DATAGRAM, MIN_DATAGRAM, NONCE_LEN, SigningKey,
};
use allowlist_daemon::knock::{Guard, KnockKeys, KnockSettings, Rate, Refusal};
use allowlist_tests::fuzz::{self, Fuzz, Input, mutate};
use fastrand::Rng;

/// Keys k0..k2 are the guard's; k3 signs knocks the guard does not know.
const KEYS: u8 = 4;

fn signing(seed: u8) -> SigningKey {
    SigningKey::from_bytes(&[seed.wrapping_add(1); 32])
}

fn keys_file() -> String {
    (0..KEYS - 1)
        .map(|seed| {
            let line = knock::KeyLine {
                name: format!("k{seed}"),
                lists: knock::Lists::Any,
                max_for: Duration::from_secs(u64::from(u32::MAX)),
                public: signing(seed).verifying_key(),
                any_ip: seed == 0,
            };
            format!("{line}\n")
        })
        .collect()
}

const DICTIONARY: [&[u8]; 14] = [
    b"ALKN",
    b"\x01",
    b"\x02",
    b"\x00",
    b"\x04",
    b"\x06",
    b"\x40",
    b"\x41",
    b"\xff",
    b"\xff\xff\xff\xff",
    b"\x00\x00\x00\x00",
    b"k0",
    b"default",
    b"\x7f\x00\x00\x01",
];

fn name(rng: &mut Rng, alphabet: &[u8]) -> String {
    let len = match rng.u32(0..4) {
        0 => 64,
        _ => rng.usize(1..12),
    };
    (0..len)
        .map(|_| char::from(alphabet[rng.usize(..alphabet.len())]))
        .collect()
}

fn addr(rng: &mut Rng) -> Option<IpAddr> {
    match rng.u32(0..3) {
        0 => None,
        1 => Some(IpAddr::from([198, 51, 100, rng.u8(1..255)])),
        _ => Some(IpAddr::from([0x2001, 0xdb8, 0, 0, 0, 0, 0, rng.u16(1..)])),
    }
}

fn valid(rng: &mut Rng, seed: u8) -> Vec<u8> {
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .expect("after 1970")
        .as_secs();
    let mut nonce = [0; NONCE_LEN];
    rng.fill(&mut nonce);
    let list = match rng.u32(0..3) {
        0 => "default".to_owned(),
        1 => "ssh".to_owned(),
        _ => name(rng, b"abcdefghijklmnopqrstuvwxyz0123456789_-"),
    };
    let ask = Ask {
        key: if rng.u32(0..8) == 0 {
            name(rng, b"abcXYZ019._-@")
        } else {
            format!("k{seed}")
        },
        timestamp: if rng.bool() { now } else { rng.u64(..) },
        nonce,
        list,
        duration: Duration::from_secs(u64::from(rng.u32(1..))),
        addr: addr(rng),
    };
    ask.sign(&signing(seed)).expect("generated asks are valid")
}

fn generate(rng: &mut Rng) -> Input {
    let seed = rng.u8(..KEYS);
    let original = valid(rng, seed);
    let other_seed = rng.u8(..KEYS);
    let other = valid(rng, other_seed);
    let datagram = match rng.u32(0..8) {
        0 => original.clone(),
        1 => {
            let len = rng.usize(..=MAX_DATAGRAM + 8);
            let mut bytes: Vec<u8> = (0..len).map(|_| rng.u8(..)).collect();
            if rng.bool() && len >= 5 {
                bytes[..5].copy_from_slice(b"ALKN\x01");
            }
            return vec![bytes, Vec::new(), vec![seed]];
        }
        2 => {
            let mut bytes = original.clone();
            let bit = rng.usize(..bytes.len() * 8);
            bytes[bit / 8] ^= 1 << (bit % 8);
            bytes
        }
        3 => {
            // One knock's body with the other's signature, or the other way round.
            let (a, b) = if rng.bool() {
                (&original, &other)
            } else {
                (&other, &original)
            };
            [&a[..a.len() - 64], &b[b.len() - 64..]].concat()
        }
        4 => original[..rng.usize(..original.len())].to_vec(),
        _ => {
            let mut bytes = original.clone();
            mutate(rng, &mut bytes, &DICTIONARY, &other);
            bytes
        }
    };
    vec![datagram, original, vec![seed]]
}

thread_local! {
    /// One guard for the run: nonces it granted stay refused, as in the daemon.
    static GUARD: RefCell<(Guard, tempfile::TempDir)> = RefCell::new({
        let dir = tempfile::tempdir().expect("a temporary directory");
        let keys = KnockKeys::parse(Path::new("knock_keys"), &keys_file()).expect("the keys");
        let unlimited = Rate { per_second: u32::MAX, burst: u32::MAX };
        let settings = KnockSettings { per_source: unlimited, total: unlimited, ..KnockSettings::default() };
        (Guard::new(keys, &settings, dir.path()).expect("a guard"), dir)
    });
}

fn check(input: &[Vec<u8>]) -> Result<(), String> {
    let [datagram, original, seed] = input else {
        return Err(format!("{} parts, expected 3", input.len()));
    };
    let key = signing(seed.first().copied().unwrap_or(0) % KEYS);
    let decoded = Knock::decode(datagram);
    if let Ok(knock) = &decoded {
        if !(MIN_DATAGRAM..=MAX_DATAGRAM).contains(&datagram.len()) {
            return Err(format!("decoded {} bytes", datagram.len()));
        }
        knock::check_key_name(&knock.ask.key).map_err(|e| format!("decoded a key name: {e}"))?;
        knock::check_list_name(&knock.ask.list).map_err(|e| format!("decoded a list: {e}"))?;
    }
    let is_original = !original.is_empty() && datagram == original;
    if is_original {
        let knock = decoded
            .as_ref()
            .map_err(|e| format!("the valid knock: {e}"))?;
        knock
            .verify(&key.verifying_key())
            .map_err(|e| format!("the valid knock: {e}"))?;
        let again = knock
            .ask
            .sign(&key)
            .map_err(|e| format!("signing again: {e}"))?;
        if again != *datagram {
            return Err("signing the decoded knock again gave other bytes".into());
        }
    } else if let Ok(knock) = &decoded
        && knock.verify(&key.verifying_key()).is_ok()
    {
        return Err("a changed knock verifies".into());
    }
    // The guard at the knock's own time, so that it looks past the time window.
    let now = decoded
        .as_ref()
        .ok()
        .and_then(|k| SystemTime::UNIX_EPOCH.checked_add(Duration::from_secs(k.ask.timestamp)))
        .unwrap_or_else(SystemTime::now);
    let source: SocketAddr = "198.51.100.1:40000".parse().expect("an address");
    let verdict = GUARD.with(|g| g.borrow_mut().0.judge(datagram, source, now));
    match verdict {
        Ok(grant) if !is_original => Err(format!("a changed knock earned {grant:?}")),
        Ok(grant) => {
            let ask = &decoded.expect("decoded above").ask;
            if (grant.key.as_str(), grant.list.as_str(), grant.duration)
                != (ask.key.as_str(), ask.list.as_str(), ask.duration)
            {
                return Err(format!("{grant:?} is not what {ask:?} asked"));
            }
            Ok(())
        }
        Err(Refusal::StateUnwritable { error, .. }) => Err(format!("the guard's state: {error}")),
        Err(_) => Ok(()),
    }
}

#[test]
fn knock_decoder_and_guard_under_fuzzing() {
    let fuzz = Fuzz {
        target: "knock",
        default_seconds: 10.0,
        per_input: fuzz::PER_INPUT,
    };
    let count = fuzz.run(generate, check);
    assert!(count > 0, "no input was tried");
}

#[test]
fn every_kind_of_input_is_generated() {
    // The generator reaches valid knocks, grants and each decoding failure: a fuzz run that
    // only ever saw garbage would prove little.
    let mut rng = Rng::with_seed(11);
    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..5_000 {
        let input = generate(&mut rng);
        let kind = match Knock::decode(&input[0]) {
            Ok(_) if input[0] == input[1] => "original".to_owned(),
            Ok(_) => "decodes".to_owned(),
            Err(e) => format!("{:?}", std::mem::discriminant(&e)),
        };
        seen.insert(kind);
    }
    // original, decodes, and at least 8 of the 12 decoding failures.
    assert!(
        seen.contains("original") && seen.contains("decodes"),
        "{seen:?}"
    );
    assert!(seen.len() >= 10, "{seen:?}");
}
