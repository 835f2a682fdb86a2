//! Part 5: what a knock datagram costs the daemon, in µs of one core. `verify` rows time
//! `Knock::decode` and the Ed25519 check alone (valid, and with one bit of the signed bytes
//! changed so the whole check runs and fails); `guard` rows time `Guard::judge` as the knock
//! sockets call it (rates unlimited, so every forgery reaches the signature check): a forged
//! knock, garbage, and a grant, which includes writing the nonce file (fsync).
//!
//! Each case runs `rounds` times, interleaved; a row is the median (and spread) of the
//! rounds' per-datagram means.

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant, SystemTime};

use allowlist_control::knock::{Ask, KeyLine, Knock, Lists, SigningKey};
use allowlist_daemon::knock::{Guard, KnockKeys, KnockSettings, Rate};
use anyhow::{Context as _, Result, bail};
use serde_json::{Value, json};

use super::stats::Summary;

pub struct Settings {
    pub rounds: usize,
    /// Datagrams per round for the verify and refused-guard cases.
    pub per_round: usize,
    /// Grants per round (each writes and fsyncs the nonce file).
    pub grants_per_round: usize,
}

pub struct Row {
    pub case: &'static str,
    pub what: &'static str,
    pub us: Summary,
}

impl Row {
    pub fn json(&self) -> Value {
        json!({ "case": self.case, "datagram": self.what, "us": self.us.json() })
    }
}

const SOURCE: &str = "198.51.100.7:40000";

fn knock(key: &SigningKey) -> Result<Vec<u8>> {
    let ask = Ask::new("bench", "default", Duration::from_secs(1800), None)
        .context("random numbers for a nonce")?;
    Ok(ask.sign(key)?)
}

/// Mean µs per call of `each` over `n` calls.
fn mean_us(n: usize, mut each: impl FnMut(usize) -> Result<()>) -> Result<f64> {
    let started = Instant::now();
    for i in 0..n {
        each(i)?;
    }
    Ok(started.elapsed().as_secs_f64() * 1e6 / n as f64)
}

pub fn run(settings: &Settings) -> Result<Vec<Row>> {
    let key = SigningKey::from_bytes(&[7; 32]);
    let public = key.verifying_key();
    let line = KeyLine {
        name: "bench".into(),
        lists: Lists::Any,
        max_for: Duration::from_secs(8 * 3600),
        public,
        any_ip: false,
    };
    let keys = KnockKeys::parse(Path::new("knock_keys"), &line.to_string())?;
    let unlimited = Rate {
        per_second: u32::MAX,
        burst: u32::MAX,
    };
    let knock_settings = KnockSettings {
        per_source: unlimited,
        total: unlimited,
        ..KnockSettings::default()
    };
    let state = tempfile::tempdir().context("a state directory for the guard")?;
    let mut guard = Guard::new(keys, &knock_settings, state.path())?;
    let source: SocketAddr = SOURCE.parse()?;

    let valid = knock(&key)?;
    let mut forged = valid.clone();
    // In the signed bytes (the nonce), so the check runs to the end and fails.
    forged[20] ^= 1;
    let garbage: Vec<u8> = (0..120u8).map(|b| b.wrapping_mul(37)).collect();
    if Knock::decode(&forged)?.verify(&public).is_ok() {
        bail!("the forged knock verifies");
    }

    let mut samples: [Vec<f64>; 5] = Default::default();
    for _ in 0..settings.rounds {
        samples[0].push(mean_us(settings.per_round, |_| {
            Ok(Knock::decode(&valid)?.verify(&public)?)
        })?);
        samples[1].push(mean_us(settings.per_round, |_| {
            match Knock::decode(&forged)?.verify(&public) {
                Ok(()) => bail!("the forged knock verifies"),
                Err(_) => Ok(()),
            }
        })?);
        samples[2].push(mean_us(settings.per_round, |_| {
            match guard.judge(&forged, source, SystemTime::now()) {
                Ok(_) => bail!("the guard granted a forged knock"),
                Err(_) => Ok(()),
            }
        })?);
        samples[3].push(mean_us(settings.per_round, |_| {
            match guard.judge(&garbage, source, SystemTime::now()) {
                Ok(_) => bail!("the guard granted garbage"),
                Err(_) => Ok(()),
            }
        })?);
        // Signed beforehand: the sender's cost is not the daemon's.
        let fresh: Vec<Vec<u8>> = (0..settings.grants_per_round)
            .map(|_| knock(&key))
            .collect::<Result<_>>()?;
        samples[4].push(mean_us(settings.grants_per_round, |i| {
            guard
                .judge(&fresh[i], source, SystemTime::now())
                .map(drop)
                .map_err(|refusal| anyhow::anyhow!("a fresh knock was refused: {refusal}"))
        })?);
    }
    let cases = [
        ("verify", "valid"),
        ("verify", "invalid signature"),
        ("guard", "forged knock (refused: bad_signature)"),
        ("guard", "garbage (refused: malformed)"),
        ("guard", "grant (nonce file written and fsynced)"),
    ];
    Ok(cases
        .iter()
        .zip(&samples)
        .map(|(&(case, what), us)| Row {
            case,
            what,
            us: Summary::of(us),
        })
        .collect())
}

pub fn table(rows: &[Row]) -> String {
    let mut out = format!(
        "{:<8} {:<42} {:>10} {:>9}\n",
        "case", "datagram", "median µs", "spread %"
    );
    for r in rows {
        out += &format!(
            "{:<8} {:<42} {:>10.2} {:>9.0}\n",
            r.case,
            r.what,
            r.us.median,
            r.us.spread_pct()
        );
    }
    out
}
