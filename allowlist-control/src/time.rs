//! How times are written in audit records and replies.

/// `t` as RFC 3339 UTC with exactly three fractional digits (`14:12:51.670Z`, never
/// `.67Z`), so that times in a column line up and sort as text.
pub fn utc_millis(t: jiff::Timestamp) -> String {
    let t = t.round(jiff::Unit::Millisecond).unwrap_or(t);
    t.strftime("%Y-%m-%dT%H:%M:%S%.3fZ").to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn millisecond_times_keep_their_trailing_zeros() {
        let at = |text: &str| utc_millis(text.parse().unwrap());
        assert_eq!(at("2026-11-23T02:10:54.67Z"), "2026-11-23T02:10:54.670Z");
        assert_eq!(at("2026-11-23T02:10:54Z"), "2026-11-23T02:10:54.000Z");
        assert_eq!(at("2026-11-23T02:10:54.6789Z"), "2026-11-23T02:10:54.679Z");
        assert_eq!(at("2026-11-23T23:59:59.9996Z"), "2026-11-24T00:00:00.000Z");
    }
}
