//! The timed emergency disable: enforcement lifted for at most 24 hours, ending by itself.
//!
//! The kernel holds the deadline in boot-time nanoseconds and compares it with
//! bpf_ktime_get_boot_ns(), so the disable ends on time even if the daemon is dead. The daemon
//! also keeps it in `state_dir`, with the wall-clock deadline and the boot it was set in:
//! boot-time clocks restart at zero after a reboot, so a later boot recomputes the remainder
//! from the wall clock, never lengthening it.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use allowlist_loader::clock::boot_ns;

/// The longest emergency disable: like a support desk's "24 hours", then it ends by itself.
pub const MAX: Duration = Duration::from_secs(24 * 3600);

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Emergency {
    pub reason: String,
    pub by: String,
    pub started_unix_ms: i64,
    pub until_unix_ms: i64,
    /// Deadline on CLOCK_BOOTTIME of the boot named by `boot_id`: what the kernel compares.
    pub until_boot_ns: u64,
    pub boot_id: String,
}

fn boot_id() -> String {
    std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .map(|id| id.trim().to_owned())
        .unwrap_or_default()
}

fn now_ms() -> i64 {
    jiff::Timestamp::now().as_millisecond()
}

/// The rules every emergency disable obeys, from the CLI or from start-up.
pub fn check(duration: Duration, reason: &str) -> Result<(), String> {
    if duration.is_zero() {
        return Err("an emergency disable needs a duration above zero (at most 24h)".into());
    }
    if duration > MAX {
        return Err(format!(
            "{} is longer than 24h: an emergency disable always ends by itself within a day; \
             for a lasting change use `allowlistctl deactivate`",
            allowlist_config::words::duration(duration)
        ));
    }
    if reason.trim().is_empty() {
        return Err("a reason is required (--reason): it goes into the audit log".into());
    }
    Ok(())
}

impl Emergency {
    pub fn start(duration: Duration, reason: &str, by: &str) -> Emergency {
        let started = now_ms();
        Emergency {
            reason: reason.trim().to_owned(),
            by: by.to_owned(),
            started_unix_ms: started,
            until_unix_ms: started + duration.as_millis() as i64,
            until_boot_ns: boot_ns() + duration.as_nanos() as u64,
            boot_id: boot_id(),
        }
    }

    /// Time left, or None once over.
    pub fn remaining(&self) -> Option<Duration> {
        let left = if self.boot_id == boot_id() {
            Duration::from_nanos(self.until_boot_ns.saturating_sub(boot_ns()))
        } else {
            let left_ms = (self.until_unix_ms - now_ms()).max(0) as u64;
            let length_ms = (self.until_unix_ms - self.started_unix_ms).max(0) as u64;
            Duration::from_millis(left_ms.min(length_ms))
        };
        (!left.is_zero()).then_some(left)
    }

    /// After a daemon restart: still in force (with the deadline moved onto this boot's
    /// clock if the machine rebooted), or None if it ended meanwhile.
    pub fn resume(mut self) -> Option<Emergency> {
        let left = self.remaining()?;
        if self.boot_id != boot_id() {
            self.until_boot_ns = boot_ns() + left.as_nanos() as u64;
            self.boot_id = boot_id();
        }
        Some(self)
    }

    /// The deadline for people: local time of this machine.
    pub fn until_local(&self) -> String {
        jiff::Timestamp::from_millisecond(self.until_unix_ms).map_or_else(
            |_| self.until_unix_ms.to_string(),
            |t| {
                t.to_zoned(jiff::tz::TimeZone::system())
                    .strftime("%Y-%m-%d %H:%M:%S %Z")
                    .to_string()
            },
        )
    }

    pub fn until_utc(&self) -> String {
        jiff::Timestamp::from_millisecond(self.until_unix_ms)
            .map_or_else(|_| self.until_unix_ms.to_string(), |t| t.to_string())
    }

    /// For audit records.
    pub fn describe(&self) -> serde_json::Value {
        serde_json::json!({
            "until": self.until_utc(),
            "reason": self.reason,
            "by": self.by,
        })
    }
}

fn path(state_dir: &Path) -> PathBuf {
    state_dir.join("emergency.json")
}

pub fn load(state_dir: &Path) -> anyhow::Result<Option<Emergency>> {
    let path = path(state_dir);
    match std::fs::read_to_string(&path) {
        Ok(text) => Ok(Some(serde_json::from_str(&text).map_err(|e| {
            anyhow::anyhow!("{}: unreadable emergency state: {e}", path.display())
        })?)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(anyhow::anyhow!("reading {}: {e}", path.display())),
    }
}

pub fn save(state_dir: &Path, emergency: Option<&Emergency>) -> std::io::Result<()> {
    let path = path(state_dir);
    match emergency {
        Some(e) => allowlist_config::edit::write_atomic(
            &path,
            &serde_json::to_string_pretty(e).expect("emergency state serializes"),
        ),
        None => match std::fs::remove_file(&path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rules() {
        let reason = "vpn down";
        assert!(check(Duration::from_secs(90 * 60), reason).is_ok());
        assert!(check(MAX, reason).is_ok());
        assert!(
            check(MAX + Duration::from_secs(1), reason)
                .unwrap_err()
                .contains("24h")
        );
        assert!(
            check(Duration::ZERO, reason)
                .unwrap_err()
                .contains("above zero")
        );
        assert!(
            check(Duration::from_secs(60), "  ")
                .unwrap_err()
                .contains("reason")
        );
    }

    #[test]
    fn remaining_time_never_grows_across_a_reboot() {
        let mut e = Emergency::start(Duration::from_secs(3600), "test", "root");
        let left = e.remaining().unwrap();
        assert!(left <= Duration::from_secs(3600) && left > Duration::from_secs(3590));
        // Another boot: the wall clock decides, capped at the original length even if the
        // clock went backwards.
        e.boot_id = "another-boot".into();
        e.started_unix_ms += 10 * 3600 * 1000;
        e.until_unix_ms += 10 * 3600 * 1000;
        assert!(e.remaining().unwrap() <= Duration::from_secs(3600));
        let resumed = e.clone().resume().unwrap();
        assert_eq!(resumed.boot_id, boot_id());
        assert!(resumed.until_boot_ns <= boot_ns() + 3_600_000_000_000);
        // Over in wall-clock terms: ended while the daemon was down.
        e.until_unix_ms = now_ms() - 1;
        assert_eq!(e.resume(), None);
    }

    #[test]
    fn state_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        let e = Emergency::start(Duration::from_secs(4), "maintenance", "root");
        save(dir.path(), Some(&e)).unwrap();
        assert_eq!(load(dir.path()).unwrap(), Some(e));
        save(dir.path(), None).unwrap();
        assert_eq!(load(dir.path()).unwrap(), None);
    }
}
