//! Telling systemd how the daemon is doing (`Type=notify`, sd_notify(3)): `READY=1` once the
//! filter is attached and its maps are full, `STATUS=` with what is enforced, `RELOADING=1`
//! then `READY=1` around a SIGHUP reload, `STOPPING=1`, and `WATCHDOG=1` from the main loop.
//!
//! Every call is a no-op unless `NOTIFY_SOCKET` is set, i.e. when not started by systemd with
//! `Type=notify`. A message that cannot be sent is logged and otherwise ignored: enforcement
//! never depends on systemd hearing about it.

use std::sync::Mutex;
use std::time::Duration;

use sd_notify::NotifyState;
use tokio::time::{Interval, MissedTickBehavior};
use tracing::{debug, warn};

use crate::emergency::Emergency;
use allowlist_config::Config;

/// The last `STATUS=` sent, so that an unchanged status is not sent again.
static LAST_STATUS: Mutex<Option<String>> = Mutex::new(None);

fn enabled() -> bool {
    std::env::var_os("NOTIFY_SOCKET").is_some()
}

fn send(states: &[NotifyState<'_>]) {
    if !enabled() {
        return;
    }
    // `false`: keep NOTIFY_SOCKET, every later message needs it too.
    match sd_notify::notify(false, states) {
        Ok(()) => debug!("sd_notify: {states:?}"),
        Err(e) => warn!("telling systemd {states:?} failed: {e}"),
    }
}

fn remember(status: &str) -> bool {
    let mut last = LAST_STATUS
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if last.as_deref() == Some(status) {
        return false;
    }
    *last = Some(status.to_owned());
    true
}

/// Start-up or a reload is complete: the filter enforces `config` at `revision`.
pub fn ready(config: &Config, revision: u64, emergency: Option<&Emergency>) {
    if !enabled() {
        return;
    }
    let status = status_line(config, revision, emergency);
    remember(&status);
    send(&[NotifyState::Ready, NotifyState::Status(&status)]);
}

/// A SIGHUP reload begins. systemd 253 and later want the monotonic time with it (to match
/// the reload to the request); older versions ignore it. The loop is alive right now, so the
/// watchdog count starts afresh: a long reload gets the whole interval.
pub fn reloading() {
    let mut states = vec![NotifyState::Reloading, NotifyState::Watchdog];
    match NotifyState::monotonic_usec_now() {
        Ok(now) => states.push(now),
        Err(e) => warn!("reading CLOCK_MONOTONIC for MONOTONIC_USEC: {e}"),
    }
    states.push(NotifyState::Status("reloading the config file"));
    send(&states);
}

/// The daemon is shutting down (on `signal`).
pub fn stopping(signal: &str) {
    let status = format!("stopping on {signal}");
    send(&[NotifyState::Stopping, NotifyState::Status(&status)]);
}

/// Updates `STATUS=` if it changed since the last one sent (cheap to call after every event
/// of the main loop, and free when not under systemd).
pub fn status(config: &Config, revision: u64, emergency: Option<&Emergency>) {
    if !enabled() {
        return;
    }
    let status = status_line(config, revision, emergency);
    if remember(&status) {
        send(&[NotifyState::Status(&status)]);
    }
}

/// One line for `systemctl status`: enforcing or not, how many entries, where, which ports.
pub fn status_line(config: &Config, revision: u64, emergency: Option<&Emergency>) -> String {
    let interfaces = if config.interfaces.is_empty() {
        "no interfaces".to_owned()
    } else {
        config.interfaces.join(", ")
    };
    if config.has_named_lists() {
        let state = match emergency {
            Some(e) => format!("EMERGENCY DISABLE until {}; ", e.until_local()),
            None => String::new(),
        };
        return format!(
            "{state}{} on {interfaces}, revision {revision}; lists: {}",
            allowlist_config::words::count(config.entries.len(), "entry", "entries"),
            config.lists_summary()
        );
    }
    let state = match emergency {
        Some(e) => format!("EMERGENCY DISABLE until {}", e.until_local()),
        None if config.active => "enforcing".to_owned(),
        None => "inactive (passing all traffic)".to_owned(),
    };
    format!(
        "{state}: {} on {interfaces}, TCP ports [{}], revision {revision}",
        allowlist_config::words::count(config.entries.len(), "entry", "entries"),
        allowlist_config::words::list(&config.protected_tcp_ports)
    )
}

/// Keep-alive pings for `WatchdogSec=`: at half the interval systemd gives
/// (`WATCHDOG_USEC`, for this process per `WATCHDOG_PID`), or never.
pub struct Watchdog {
    interval: Option<Interval>,
}

impl Watchdog {
    /// Reads the interval systemd asked for; without one, [`Watchdog::tick`] never completes.
    pub fn from_env() -> Watchdog {
        let mut usec = 0;
        // `false`: leave the variables in place (nothing here spawns children).
        let interval = (enabled() && sd_notify::watchdog_enabled(false, &mut usec) && usec > 0)
            .then(|| {
                let period = Duration::from_micros(usec / 2).max(Duration::from_millis(1));
                debug!("systemd watchdog: every {}ms", period.as_millis());
                let mut interval = tokio::time::interval(period);
                // After a stall, one ping, not a burst that would hide it.
                interval.set_missed_tick_behavior(MissedTickBehavior::Delay);
                interval
            });
        Watchdog { interval }
    }

    /// Completes when the next ping is due; pending forever when systemd wants none.
    pub async fn tick(&mut self) {
        match &mut self.interval {
            Some(interval) => {
                interval.tick().await;
            }
            None => std::future::pending().await,
        }
    }
}

/// Tells systemd the main loop is alive.
pub fn watchdog() {
    send(&[NotifyState::Watchdog]);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_line_names_entries_interfaces_and_ports() {
        let text = "active = true\ninterfaces = [\"lo\"]\nprotected_tcp_ports = [22, 8443]\n\n\
                    [[entries]]\ncidr = \"198.18.1.0/24\"\n\n[[entries]]\ncidr = \"2001:db8::7\"\n";
        let config = Config::parse(std::path::Path::new("/etc/allowlist/allowlist.toml"), text)
            .expect("a valid config");
        assert_eq!(
            status_line(&config, 7, None),
            "enforcing: 2 entries on lo, TCP ports [22, 8443], revision 7"
        );
        let text = text.replace("active = true\ninterfaces = [\"lo\"]", "active = false");
        let inactive = Config::parse(std::path::Path::new("/etc/allowlist/allowlist.toml"), &text)
            .expect("a valid config");
        assert_eq!(
            status_line(&inactive, 1, None),
            "inactive (passing all traffic): 2 entries on no interfaces, TCP ports [22, 8443], revision 1"
        );
    }
}
