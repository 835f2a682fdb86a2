//! The knock keys: `knock_listen` (where allowlistd receives knocks; none: off) and
//! `knock_window` (how far a knock's time may be from the daemon's clock).

use std::net::SocketAddr;
use std::time::Duration;

use toml_edit::Item;

use super::Reader;

/// The widest `knock_window`: a captured knock can be replayed from elsewhere within it (when
/// its key lets it name an address), so it stays short.
pub const MAX_KNOCK_WINDOW: Duration = Duration::from_secs(600);

impl Reader<'_> {
    pub(super) fn knock_listen(&mut self, item: &Item) -> Vec<SocketAddr> {
        const FORM: &str = "must be a list of quoted addresses and ports, e.g. \
                            [\"0.0.0.0:62201\", \"[::]:62201\"]";
        let Some(array) = item.as_array() else {
            let message = format!("{FORM}, {}", self.found(item));
            self.fail("knock_listen", item.span(), None, message);
            return Vec::new();
        };
        let mut addresses = Vec::new();
        for (i, value) in array.iter().enumerate() {
            match value
                .as_str()
                .and_then(|t| t.trim().parse::<SocketAddr>().ok())
            {
                Some(address) if address.port() != 0 => addresses.push(address),
                _ => {
                    let message = format!(
                        "{FORM}; entry {} is {}",
                        i + 1,
                        value.as_str().map_or_else(
                            || format!("not a quoted string ({value})"),
                            |t| format!("`{t}`, not an address and port 1..=65535")
                        )
                    );
                    self.fail("knock_listen", value.span(), None, message);
                }
            }
        }
        addresses
    }

    pub(super) fn knock_window(&mut self, item: &Item) -> Option<Duration> {
        let window = item
            .as_str()
            .and_then(|t| humantime::parse_duration(t.trim()).ok());
        match window {
            Some(w) if w >= Duration::from_secs(1) && w <= MAX_KNOCK_WINDOW => Some(w),
            _ => {
                let message = format!(
                    "must be a quoted duration from 1s to {}s, e.g. \"30s\", {}",
                    MAX_KNOCK_WINDOW.as_secs(),
                    self.found(item)
                );
                self.fail("knock_window", item.span(), None, message);
                None
            }
        }
    }
}
