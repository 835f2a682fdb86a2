//! How long the tests wait for what a slower machine takes longer to do. Every fixture wait
//! for something expected to happen (a daemon's log line or exit, an `allowlistctl` run, an
//! allowed connect or echo) passes its timeout through [`patient`], which multiplies it by
//! `ALLOWLIST_TEST_TIME_SCALE` (1 when unset): `cargo xtask vm-test` sets it inside its
//! emulated VMs, which run about ten times slower than the host. Waits for something that
//! must not happen (a dropped SYN's timeout) are not scaled: they would only make a run longer.

use std::sync::OnceLock;
use std::time::Duration;

/// The environment variable read, once, by [`scale`].
pub const TIME_SCALE_VAR: &str = "ALLOWLIST_TEST_TIME_SCALE";

/// The factor from `ALLOWLIST_TEST_TIME_SCALE`; panics on a value that is not a number from 1
/// to 100, since a typo would otherwise silently change every test's patience.
pub fn scale() -> u32 {
    static SCALE: OnceLock<u32> = OnceLock::new();
    *SCALE.get_or_init(|| match std::env::var(TIME_SCALE_VAR) {
        Err(_) => 1,
        Ok(text) => text
            .trim()
            .parse()
            .ok()
            .filter(|n| (1..=100).contains(n))
            .unwrap_or_else(|| {
                panic!("{TIME_SCALE_VAR}={text:?}: expected a whole number from 1 to 100")
            }),
    })
}

/// `timeout` for this machine: multiplied by [`scale`].
pub fn patient(timeout: Duration) -> Duration {
    timeout * scale()
}
