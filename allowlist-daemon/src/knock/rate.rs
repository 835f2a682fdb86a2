//! Token buckets: one per source and one for everyone, checked before a knock's signature
//! (the one costly check), so a flood cannot buy unbounded CPU. Sources are IPv4 addresses
//! or IPv6 /64s (one machine usually has a whole /64), and their table is bounded.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::Instant;

/// `per_second` tokens a second, at most `burst` saved up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rate {
    pub per_second: u32,
    pub burst: u32,
}

#[derive(Clone, Copy, Debug)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

impl Bucket {
    fn full(rate: Rate, now: Instant) -> Bucket {
        Bucket {
            tokens: f64::from(rate.burst),
            at: now,
        }
    }

    fn refill(&mut self, rate: Rate, now: Instant) {
        let elapsed = now.saturating_duration_since(self.at).as_secs_f64();
        self.tokens =
            (self.tokens + elapsed * f64::from(rate.per_second)).min(f64::from(rate.burst));
        self.at = now;
    }

    fn take(&mut self, rate: Rate, now: Instant) -> bool {
        self.refill(rate, now);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// Sources tracked at most; past it (after forgetting those with full buckets, which are
/// as good as new) new sources count as over the total limit.
pub const MAX_SOURCES: usize = 8192;

#[derive(Debug, PartialEq, Eq)]
pub enum Limited {
    Source,
    Total,
}

pub struct Limits {
    per_source: Rate,
    total_rate: Rate,
    total: Bucket,
    sources: HashMap<Source, Bucket>,
}

/// An IPv4 address, or the /64 of an IPv6 one.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Source {
    V4([u8; 4]),
    V6([u8; 8]),
}

fn source_key(source: IpAddr) -> Source {
    match source.to_canonical() {
        IpAddr::V4(v4) => Source::V4(v4.octets()),
        IpAddr::V6(v6) => Source::V6(v6.octets()[..8].try_into().expect("8 of 16 bytes")),
    }
}

impl Limits {
    pub fn new(per_source: Rate, total: Rate) -> Limits {
        Limits {
            per_source,
            total_rate: total,
            total: Bucket::full(total, Instant::now()),
            sources: HashMap::new(),
        }
    }

    /// Takes a token from the source's bucket, then from everyone's. The source comes
    /// first: one source flooding empties only its own bucket.
    pub fn take(&mut self, source: IpAddr, now: Instant) -> Result<(), Limited> {
        let key = source_key(source);
        if !self.sources.contains_key(&key) && self.sources.len() >= MAX_SOURCES {
            let rate = self.per_source;
            self.sources.retain(|_, bucket| {
                bucket.refill(rate, now);
                bucket.tokens < f64::from(rate.burst)
            });
            if self.sources.len() >= MAX_SOURCES {
                return Err(Limited::Total);
            }
        }
        let bucket = self
            .sources
            .entry(key)
            .or_insert_with(|| Bucket::full(self.per_source, now));
        if !bucket.take(self.per_source, now) {
            return Err(Limited::Source);
        }
        if !self.total.take(self.total_rate, now) {
            return Err(Limited::Total);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    const SLOW: Rate = Rate {
        per_second: 1,
        burst: 3,
    };

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn a_source_gets_its_burst_then_its_rate() {
        let mut limits = Limits::new(
            SLOW,
            Rate {
                per_second: 1000,
                burst: 1000,
            },
        );
        let t0 = Instant::now();
        for _ in 0..3 {
            limits.take(ip("198.51.100.1"), t0).unwrap();
        }
        assert_eq!(limits.take(ip("198.51.100.1"), t0), Err(Limited::Source));
        // Another source is not held back by the first.
        limits.take(ip("198.51.100.2"), t0).unwrap();
        // The same address mapped into IPv6 is the same source.
        assert_eq!(
            limits.take(ip("::ffff:198.51.100.1"), t0),
            Err(Limited::Source)
        );
        limits
            .take(ip("198.51.100.1"), t0 + Duration::from_secs(1))
            .unwrap();
        assert_eq!(
            limits.take(ip("198.51.100.1"), t0 + Duration::from_secs(1)),
            Err(Limited::Source)
        );
    }

    #[test]
    fn an_ipv6_source_is_its_slash_64() {
        let mut limits = Limits::new(
            SLOW,
            Rate {
                per_second: 1000,
                burst: 1000,
            },
        );
        let t0 = Instant::now();
        for host in 1..=3 {
            limits
                .take(ip(&format!("2001:db8:1:2::{host}")), t0)
                .unwrap();
        }
        assert_eq!(
            limits.take(ip("2001:db8:1:2:ffff::9"), t0),
            Err(Limited::Source)
        );
        limits.take(ip("2001:db8:1:3::1"), t0).unwrap();
    }

    #[test]
    fn everyone_together_gets_the_total() {
        let mut limits = Limits::new(
            SLOW,
            Rate {
                per_second: 1,
                burst: 2,
            },
        );
        let t0 = Instant::now();
        limits.take(ip("198.51.100.1"), t0).unwrap();
        limits.take(ip("198.51.100.2"), t0).unwrap();
        assert_eq!(limits.take(ip("198.51.100.3"), t0), Err(Limited::Total));
        limits
            .take(ip("198.51.100.3"), t0 + Duration::from_secs(1))
            .unwrap();
    }

    #[test]
    fn the_source_table_is_bounded() {
        let mut limits = Limits::new(
            SLOW,
            Rate {
                per_second: u32::MAX,
                burst: u32::MAX,
            },
        );
        let t0 = Instant::now();
        for n in 0..MAX_SOURCES as u32 {
            limits
                .take(IpAddr::from((0x0a00_0000 + n).to_be_bytes()), t0)
                .unwrap();
        }
        assert_eq!(limits.take(ip("198.51.100.1"), t0), Err(Limited::Total));
        assert_eq!(limits.sources.len(), MAX_SOURCES);
        // Once their buckets are full again the old sources are forgotten.
        limits
            .take(ip("198.51.100.1"), t0 + Duration::from_secs(3))
            .unwrap();
        assert_eq!(limits.sources.len(), 1);
    }
}
