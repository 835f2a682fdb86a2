//! The kernel clocks the XDP program stamps with, read the same way from userspace.

use nix::time::{ClockId, clock_gettime};

/// Nanoseconds since boot, including suspend: the clock bpf_ktime_get_boot_ns() reads, and
/// the emergency deadline's.
pub fn boot_ns() -> u64 {
    now_ns(ClockId::CLOCK_BOOTTIME)
}

/// Now on the clock of `HitStat::last_seen_ns` (CLOCK_MONOTONIC).
pub fn hit_clock_ns() -> u64 {
    now_ns(ClockId::CLOCK_MONOTONIC)
}

fn now_ns(clock: ClockId) -> u64 {
    let now =
        clock_gettime(clock).expect("boot and monotonic clocks are always available on Linux");
    now.tv_sec() as u64 * 1_000_000_000 + now.tv_nsec() as u64
}
