//! Judges one received datagram. The checks run cheapest first and the costly one (the
//! signature) only after the rate limits, so garbage costs a decode and a flood of
//! well-formed knocks at most the total rate's signature checks. A knock's claims (list,
//! duration, address) are judged only once its signature says whose they are; its nonce is
//! recorded last, so only a knock that would be granted uses one up.

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant, SystemTime};

use allowlist_control::knock::Knock;

use super::keys::KnockKeys;
use super::rate::{Limited, Limits};
use super::replay::{NotRecorded, ReplayCache};
use super::{Grant, KnockSettings, Refusal};

pub struct Guard {
    keys: KnockKeys,
    window: Duration,
    limits: Limits,
    replay: ReplayCache,
}

fn unix_secs(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl Guard {
    /// The guard for `keys`, with the nonces granted before (in `state_dir`) still refused.
    pub fn new(
        keys: KnockKeys,
        settings: &KnockSettings,
        state_dir: &Path,
    ) -> anyhow::Result<Guard> {
        Ok(Guard {
            keys,
            window: settings.window,
            limits: Limits::new(settings.per_source, settings.total),
            replay: ReplayCache::load(state_dir, unix_secs(SystemTime::now()))?,
        })
    }

    /// After a reload of `knock_keys`: the rates and nonces seen stay.
    pub fn set_keys(&mut self, keys: KnockKeys) {
        self.keys = keys;
    }

    pub fn judge(
        &mut self,
        datagram: &[u8],
        source: SocketAddr,
        now: SystemTime,
    ) -> Result<Grant, Refusal> {
        let knock = Knock::decode(datagram).map_err(Refusal::Malformed)?;
        let ask = &knock.ask;
        let Some(key) = self.keys.get(&ask.key) else {
            return Err(Refusal::UnknownKey {
                key: ask.key.clone(),
            });
        };
        let source_ip = source.ip().to_canonical();
        self.limits
            .take(source_ip, Instant::now())
            .map_err(|limited| match limited {
                Limited::Source => Refusal::RateLimitedSource,
                Limited::Total => Refusal::RateLimitedTotal,
            })?;
        let name = || key.name.clone();
        knock
            .verify(&key.public)
            .map_err(|_| Refusal::BadSignature { key: name() })?;
        let now = unix_secs(now);
        let skew = i128::from(ask.timestamp) - i128::from(now);
        if skew.unsigned_abs() > u128::from(self.window.as_secs()) {
            return Err(Refusal::StaleTimestamp {
                key: name(),
                skew: skew.clamp(i128::from(i64::MIN), i128::from(i64::MAX)) as i64,
            });
        }
        if !key.lists.allows(&ask.list) {
            return Err(Refusal::ListNotAllowed {
                key: name(),
                list: ask.list.clone(),
            });
        }
        if ask.duration > key.max_for {
            return Err(Refusal::DurationTooLong {
                key: name(),
                asked: ask.duration,
                max: key.max_for,
            });
        }
        let addr = match ask.addr.map(|a| a.to_canonical()) {
            Some(asked) if asked != source_ip && !key.any_ip => {
                return Err(Refusal::AddressMismatch { key: name(), asked });
            }
            Some(asked) => asked,
            None => source_ip,
        };
        let until = ask.timestamp.saturating_add(self.window.as_secs());
        self.replay
            .record(ask.nonce, until, now)
            .map_err(|e| match e {
                NotRecorded::Seen => Refusal::ReplayedNonce { key: name() },
                NotRecorded::Full => Refusal::RateLimitedTotal,
                NotRecorded::Write(e) => Refusal::StateUnwritable {
                    key: name(),
                    error: e.to_string(),
                },
            })?;
        Ok(Grant {
            key: name(),
            addr,
            list: ask.list.clone(),
            duration: ask.duration,
            source,
        })
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use std::net::IpAddr;

    use allowlist_control::knock::{Ask, SigningKey};

    use super::super::{Rate, RefusalKind};
    use super::*;

    pub(crate) fn signing(seed: u8) -> SigningKey {
        SigningKey::from_bytes(&[seed; 32])
    }

    /// alice (key 1): ssh, 1h, her own address only; bob (key 2): every list, 8h, any-ip.
    pub(crate) fn keys() -> KnockKeys {
        let public = |seed| super::super::keys::tests::public(seed);
        let text = format!(
            "alice ssh 1h {}\nbob * 8h {} any-ip\n",
            public(1),
            public(2)
        );
        KnockKeys::parse(Path::new("knock_keys"), &text).unwrap()
    }

    pub(crate) fn knock(
        name: &str,
        seed: u8,
        list: &str,
        secs: u64,
        addr: Option<&str>,
    ) -> Vec<u8> {
        let addr = addr.map(|a| a.parse().unwrap());
        Ask::new(name, list, Duration::from_secs(secs), addr)
            .unwrap()
            .sign(&signing(seed))
            .unwrap()
    }

    fn from(text: &str) -> SocketAddr {
        text.parse().unwrap()
    }

    fn guard(dir: &Path) -> Guard {
        Guard::new(keys(), &KnockSettings::default(), dir).unwrap()
    }

    fn refused(result: Result<Grant, Refusal>) -> RefusalKind {
        result.expect_err("refused").kind()
    }

    #[test]
    fn a_valid_knock_opens_its_source_or_the_address_it_names() {
        let dir = tempfile::tempdir().unwrap();
        let mut g = guard(dir.path());
        let now = SystemTime::now();
        let grant = g
            .judge(
                &knock("alice", 1, "ssh", 1800, None),
                from("198.51.100.7:4000"),
                now,
            )
            .unwrap();
        assert_eq!(
            grant,
            Grant {
                key: "alice".into(),
                addr: "198.51.100.7".parse().unwrap(),
                list: "ssh".into(),
                duration: Duration::from_secs(1800),
                source: from("198.51.100.7:4000"),
            }
        );
        // Her own address named explicitly, from IPv6 and from a v4-mapped source.
        let v6 = g
            .judge(
                &knock("alice", 1, "ssh", 3600, Some("2001:db8::7")),
                from("[2001:db8::7]:1"),
                now,
            )
            .unwrap();
        assert_eq!(v6.addr, "2001:db8::7".parse::<IpAddr>().unwrap());
        let mapped = g
            .judge(
                &knock("alice", 1, "ssh", 60, Some("198.51.100.8")),
                from("[::ffff:198.51.100.8]:1"),
                now,
            )
            .unwrap();
        assert_eq!(mapped.addr, "198.51.100.8".parse::<IpAddr>().unwrap());
        // bob may open another address, on any list, for up to 8h.
        let other = g
            .judge(
                &knock("bob", 2, "web", 8 * 3600, Some("203.0.113.9")),
                from("198.51.100.7:1"),
                now,
            )
            .unwrap();
        assert_eq!(
            (other.addr.to_string(), other.list.as_str()),
            ("203.0.113.9".into(), "web")
        );
    }

    #[test]
    fn every_refusal_has_its_kind() {
        let dir = tempfile::tempdir().unwrap();
        let mut g = guard(dir.path());
        let src = from("198.51.100.7:4000");
        let now = SystemTime::now();
        let mut judge = |bytes: Vec<u8>| refused(g.judge(&bytes, src, now));
        assert_eq!(judge(b"garbage".to_vec()), RefusalKind::Malformed);
        assert_eq!(
            judge(knock("carol", 1, "ssh", 60, None)),
            RefusalKind::UnknownKey
        );
        // alice's name, another key's signature.
        assert_eq!(
            judge(knock("alice", 3, "ssh", 60, None)),
            RefusalKind::BadSignature
        );
        assert_eq!(
            judge(knock("alice", 1, "web", 60, None)),
            RefusalKind::ListNotAllowed
        );
        assert_eq!(
            judge(knock("alice", 1, "ssh", 3601, None)),
            RefusalKind::DurationTooLong
        );
        assert_eq!(
            judge(knock("alice", 1, "ssh", 60, Some("198.51.100.8"))),
            RefusalKind::AddressMismatch
        );
    }

    #[test]
    fn the_timestamp_must_be_within_the_window_either_way() {
        let dir = tempfile::tempdir().unwrap();
        let mut g = guard(dir.path());
        let src = from("[2001:db8::7]:4000");
        let mut ask = Ask::new("bob", "ssh", Duration::from_secs(60), None).unwrap();
        ask.timestamp = 1_790_000_000;
        let bytes = ask.sign(&signing(2)).unwrap();
        let sent = SystemTime::UNIX_EPOCH + Duration::from_secs(ask.timestamp);
        // (our clock minus the knock's, refused?)
        for (ahead, stale) in [(31i64, true), (-31, true), (-30, false)] {
            let now = if ahead < 0 {
                sent - Duration::from_secs(ahead.unsigned_abs())
            } else {
                sent + Duration::from_secs(ahead as u64)
            };
            match (stale, g.judge(&bytes, src, now)) {
                (true, Err(Refusal::StaleTimestamp { skew, .. })) => assert_eq!(skew, -ahead),
                (false, Ok(_)) => {}
                (_, other) => panic!("our clock {ahead} s ahead: {other:?}"),
            }
        }
    }

    #[test]
    fn a_replayed_knock_is_refused_even_after_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let bytes = knock("alice", 1, "ssh", 60, None);
        let src = from("198.51.100.7:4000");
        let mut g = guard(dir.path());
        g.judge(&bytes, src, SystemTime::now()).unwrap();
        assert_eq!(
            refused(g.judge(&bytes, src, SystemTime::now())),
            RefusalKind::ReplayedNonce
        );
        drop(g);
        let mut restarted = guard(dir.path());
        assert_eq!(
            refused(restarted.judge(&bytes, src, SystemTime::now())),
            RefusalKind::ReplayedNonce
        );
        // A fresh knock still passes.
        restarted
            .judge(&knock("alice", 1, "ssh", 60, None), src, SystemTime::now())
            .unwrap();
    }

    #[test]
    fn refused_knocks_use_no_nonce() {
        let dir = tempfile::tempdir().unwrap();
        let mut g = guard(dir.path());
        // Captured and sent first from another address: refused, and the real one then passes.
        let bytes = knock("alice", 1, "ssh", 60, Some("198.51.100.7"));
        assert_eq!(
            refused(g.judge(&bytes, from("203.0.113.1:1"), SystemTime::now())),
            RefusalKind::AddressMismatch
        );
        g.judge(&bytes, from("198.51.100.7:1"), SystemTime::now())
            .unwrap();
    }

    #[test]
    fn rates_per_source_and_in_total() {
        let dir = tempfile::tempdir().unwrap();
        let settings = KnockSettings {
            per_source: Rate {
                per_second: 1,
                burst: 2,
            },
            total: Rate {
                per_second: 1,
                burst: 3,
            },
            ..KnockSettings::default()
        };
        let mut g = Guard::new(keys(), &settings, dir.path()).unwrap();
        let mut judge = |src: &str| {
            g.judge(
                &knock("bob", 2, "ssh", 60, None),
                from(src),
                SystemTime::now(),
            )
        };
        judge("198.51.100.1:1").unwrap();
        judge("198.51.100.1:2").unwrap();
        assert_eq!(
            refused(judge("198.51.100.1:3")),
            RefusalKind::RateLimitedSource
        );
        judge("198.51.100.2:1").unwrap();
        assert_eq!(
            refused(judge("198.51.100.3:1")),
            RefusalKind::RateLimitedTotal
        );
        // Garbage and unknown keys cost no token: only knocks worth a signature check do.
        let mut g = Guard::new(keys(), &settings, dir.path()).unwrap();
        for _ in 0..10 {
            let refusal = g.judge(
                &knock("carol", 1, "ssh", 60, None),
                from("198.51.100.1:1"),
                SystemTime::now(),
            );
            assert_eq!(refused(refusal), RefusalKind::UnknownKey);
        }
        g.judge(
            &knock("bob", 2, "ssh", 60, None),
            from("198.51.100.1:1"),
            SystemTime::now(),
        )
        .unwrap();
    }

    #[test]
    fn a_nonce_that_cannot_be_kept_grants_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let mut g = guard(&dir.path().join("gone"));
        let refusal = g
            .judge(
                &knock("alice", 1, "ssh", 60, None),
                from("198.51.100.7:1"),
                SystemTime::now(),
            )
            .unwrap_err();
        assert_eq!(refusal.kind(), RefusalKind::StateUnwritable);
        assert!(
            refusal
                .to_string()
                .starts_with("state_unwritable: key `alice`: recording its nonce: ")
        );
    }

    #[test]
    fn reloaded_keys_take_effect() {
        let dir = tempfile::tempdir().unwrap();
        let mut g = guard(dir.path());
        g.set_keys(KnockKeys::default());
        assert_eq!(
            refused(g.judge(
                &knock("alice", 1, "ssh", 60, None),
                from("198.51.100.7:1"),
                SystemTime::now()
            )),
            RefusalKind::UnknownKey
        );
    }
}
