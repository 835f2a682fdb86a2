//! Connects sampled throughout a change that must leave no moment without enforcement (a
//! rolling update of the container, a package upgrade's handover): from the blocked clients
//! (B4, B6), each of which must be dropped, and from the allowed ones (A4, A6), each of which
//! must connect, to the protected port, all along.

use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::netns::{A4, A6, B4, B6, Lab, PROTECTED, to};
use crate::tcp::{self, Outcome};

/// What a probe from `src` saw, and when.
pub struct Probe {
    /// When it ended, from the start of the change.
    pub at: Duration,
    pub took: Duration,
    pub src: IpAddr,
    pub outcome: Outcome,
}

/// Runs `change` (given the instant the probes count from) while both kinds of clients
/// probe, from 300 ms before it until 500 ms after it returned; returns the probes and what
/// `change` returned.
pub fn during<R>(lab: &Lab, change: impl FnOnce(Instant) -> R) -> (Vec<Probe>, R) {
    let stop = AtomicBool::new(false);
    let started = Instant::now();
    std::thread::scope(|s| {
        let blocked = s.spawn(|| probe_until(lab, [B4, B6], &stop, started));
        let allowed = s.spawn(|| probe_until(lab, [A4, A6], &stop, started));
        std::thread::sleep(Duration::from_millis(300));
        let changed = change(started);
        std::thread::sleep(Duration::from_millis(500));
        stop.store(true, Ordering::Relaxed);
        let mut probes = blocked.join().expect("the blocked clients' prober");
        probes.extend(allowed.join().expect("the allowed clients' prober"));
        (probes, changed)
    })
}

/// Probes start at least this far apart, so that the bound below covers 20 s of a change.
const PROBE_EVERY: Duration = Duration::from_millis(2);

/// Connects from `sources` in turn until `stop` (at most 10,000 probes): a blocked probe waits
/// 100 ms for an answer that must not come, an allowed one must connect.
fn probe_until(lab: &Lab, sources: [IpAddr; 2], stop: &AtomicBool, started: Instant) -> Vec<Probe> {
    let mut probes = Vec::new();
    while !stop.load(Ordering::Relaxed) && probes.len() < 10_000 {
        let src = sources[probes.len() % sources.len()];
        // As long as the other tests give an allowed connect: the slow ones (a SYN sent
        // again after a second) are reported with their times.
        let timeout = if is_blocked(src) {
            Duration::from_millis(100)
        } else {
            tcp::allowed_probe()
        };
        let begun = Instant::now();
        let outcome = tcp::connect(&lab.client, src, to(src, PROTECTED), timeout);
        let took = begun.elapsed();
        probes.push(Probe {
            at: started.elapsed(),
            took,
            src,
            outcome,
        });
        std::thread::sleep(PROBE_EVERY.saturating_sub(took));
    }
    probes
}

pub fn is_blocked(src: IpAddr) -> bool {
    src == B4 || src == B6
}

/// A connect that took this long sent its SYN again: the first was lost.
const SECOND_SYN: Duration = Duration::from_millis(900);

/// The probes that saw what they must not: a blocked client answered, an allowed one not, or
/// only after its first SYN was lost (the listener keeps up, so the filter dropped it).
pub fn wrong(probes: &[Probe]) -> Vec<String> {
    probes
        .iter()
        .filter_map(|p| {
            if is_blocked(p.src) {
                (!p.outcome.is_timed_out()).then(|| p.outcome.to_string())
            } else if !p.outcome.is_connected() {
                Some(p.outcome.to_string())
            } else {
                (p.took >= SECOND_SYN).then(|| format!("connected after {:?}", p.took))
            }
            .map(|what| format!("{:?} {}: {what}", p.at, p.src))
        })
        .collect()
}

/// How many probes ended between `from` and `to` (a window without a daemon), and how many
/// of those came from blocked clients.
pub fn between(probes: &[Probe], from: Duration, to: Duration) -> (usize, usize) {
    let within: Vec<&Probe> = probes
        .iter()
        .filter(|p| p.at >= from && p.at <= to)
        .collect();
    let blocked = within.iter().filter(|p| is_blocked(p.src)).count();
    (within.len(), blocked)
}

/// How many probes came from blocked clients (`blocked`) or allowed ones.
pub fn count(probes: &[Probe], blocked: bool) -> usize {
    probes
        .iter()
        .filter(|p| is_blocked(p.src) == blocked)
        .count()
}

/// The longest an allowed connect took.
pub fn slowest_allowed(probes: &[Probe]) -> Duration {
    probes
        .iter()
        .filter(|p| !is_blocked(p.src))
        .map(|p| p.took)
        .max()
        .unwrap_or_default()
}
