//! Differential test: the compiled XDP program, through `BPF_PROG_TEST_RUN`, against the
//! reference model (`allowlist_tests::model`, written from the README's verdict table over raw
//! bytes) on seeded random frames under seeded random allowlists (1 to 32 named lists, each
//! with a mode, TCP and UDP ports and entries that overlap other lists', some of them timed).
//! Per frame: the action, and the one reason counter that moved; per allowlist: each network's
//! hit count.
//!
//! One program is loaded for the whole run; each allowlist is applied to it as a change of the
//! previous one (as reloads do), so `Filter::apply`'s map and prefilter updates are under test
//! too. Frames only go through `BPF_PROG_TEST_RUN` and never reach an interface, so their
//! addresses need not stay in the test ranges (prefixes wider than 198.18.0.0/15 and
//! 2001:db8::/32 exercise the prefilters' wide paths). Now and then, half-way through an
//! allowlist's frames, a change that puts a network in timed entries of five different ends
//! must be refused with the filter's message; the frames after it show it changed nothing.
//!
//! Time. The program judges timed entries by the boot clock (`bpf_ktime_get_boot_ns()`); the
//! model's ends are instants on that clock, and `model::expected` judges at a given instant.
//! - Ends: the generator places them (in boot-clock ns) long past (some before boot), a little
//!   before the allowlist is applied, among the instants its frames will be judged at (over
//!   about as long as the previous allowlist took), a little after those and far ahead. They go
//!   into `Rules` as wall-clock times, converted with the filter's own offset between the
//!   clocks (`Filter::boot_offset`, which it keeps while the clocks move less than a second
//!   apart): the filter turns each back into exactly the boot-clock deadline the model has.
//!   Before the filter has converted any end the test measures the offset itself; if the
//!   filter's differs after an apply, the setup's ends move by the difference, so the model's
//!   ends are always the kernel's deadlines to the nanosecond.
//! - The frame's instant: the boot clock is read right before and right after each
//!   `BPF_PROG_TEST_RUN`; the program read it in between. An end at or before the first
//!   reading has passed, one after the second has not. The model judges at the first reading
//!   and, when ends fall between the readings (strictly after the first, at or before the
//!   second), also at each of them: the program must agree with one of these verdicts. Such
//!   ambiguous frames are counted and rare (an end must pass during the microseconds of a run).
//! - Exact boundaries: when an end of the allowlist comes within a millisecond, the run stops
//!   for it and sends probes (a SYN or datagram from the timed entry's first address and from
//!   the first address of another list's entry inside it, to the timed list's port, and from
//!   the timed entry to the port of a list with an entry around it): each once shortly before
//!   the end (100 µs apart, the last 100 µs before it), for every other end the first again
//!   8 µs before it (its run usually over a few µs before the end, now and then ambiguous),
//!   then all of them again as soon as the boot clock reads the end, the first within a
//!   microsecond or so of it.
//! - The summary counts, for the frames whose verdict an end changed or will change, how far
//!   the nearest such end was before or after the frame's instant.
//!
//! A disagreement prints a replay line whose ends count from the frame's instant (`NET@-1500`
//! ended 1.5 µs before it); the replay applies the setup with the ends placed around an
//! instant a little ahead, waits for that instant, and runs the frame then.
//!
//! Environment (what `cargo xtask fuzz` sets): ALLOWLIST_FUZZ_FRAMES (default 100,000),
//! ALLOWLIST_FUZZ_SEED (default a fixed seed, so CI runs are reproducible), ALLOWLIST_FUZZ_CASE
//! (check only that case of the run, after applying every allowlist before it: the frames and
//! allowlists are the seed's, but where the ends fall relative to the frame depends on timing),
//! and ALLOWLIST_FUZZ_REPLAY with ALLOWLIST_FUZZ_CONFIG (one frame in hex under one setup).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt::Write as _;
use std::net::IpAddr;
use std::ops::Bound::{Excluded, Included, Unbounded};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use allowlist_common::verdict::Reason;
use allowlist_config::rules::{ListRules, Rules};
use allowlist_loader::clock::boot_ns;
use allowlist_tests::fuzz::{hex, unhex};
use allowlist_tests::generate::{Rng, frames, setups};
use allowlist_tests::model::{self, Expected, ModelList, Setup};
use allowlist_tests::test_run::{Ran, TestProgram, XDP_DROP, XDP_PASS};
use ipnet::IpNet;

const DEFAULT_FRAMES: u64 = 100_000;
const DEFAULT_SEED: u64 = 0xa110_d1ff;
/// Frames judged under each allowlist before the next change.
const FRAMES_PER_SETUP: u64 = 500;
/// Disagreements printed in full; the rest are only counted.
const SHOWN: usize = 10;
/// How close an end must come for the run to stop and probe it (ns).
const HORIZON: i64 = 1_000_000;
/// The probes before an end are this far apart, the last this far before it (ns).
const STEP: i64 = 100_000;
/// Before every other end, the first probe runs once more this long before it (ns): the end
/// comes a few microseconds after the run, usually, and now and then during it (an ambiguous
/// frame).
const CLOSE: i64 = 8_000;
/// Probes at most, for one end.
const PROBES: usize = 6;
/// Every this many allowlists (from the sixth on), half-way through its frames, a change
/// over the bound of ends is tried.
const OVER_LIMIT_EVERY: u64 = 10;

fn env<T: std::str::FromStr>(name: &str) -> Option<T>
where
    T::Err: std::fmt::Display,
{
    let value = std::env::var(name).ok()?;
    Some(
        value
            .parse()
            .unwrap_or_else(|e| panic!("{name}={value}: {e}")),
    )
}

/// The boot clock, as the model's instants.
fn now() -> i64 {
    boot_ns() as i64
}

/// Waits, spinning, until the boot clock reads `instant` or later.
fn spin_until(instant: i64) {
    while now() < instant {
        std::hint::spin_loop();
    }
}

/// Wall-clock ns since the epoch.
fn wall_ns(time: SystemTime) -> i128 {
    match time.duration_since(UNIX_EPOCH) {
        Ok(d) => d.as_nanos() as i128,
        Err(e) => -(e.duration().as_nanos() as i128),
    }
}

/// The wall-clock time that a filter with boot-minus-wall `offset` turns into boot time `end`.
fn wall_at(end: i64, offset: i128) -> SystemTime {
    let ns = i128::from(end) - offset;
    let ns = u64::try_from(ns).expect("ends are after 1970");
    UNIX_EPOCH + Duration::from_nanos(ns)
}

/// The program with its maps, and how the current setup's emergency state is written.
struct Program {
    test: TestProgram,
    /// A deadline ahead, none, or one that has passed.
    emergency: &'static str,
}

/// What the program did with one frame: its action and the reasons whose counters moved (by
/// how much), or the kernel's refusal to run.
type Outcome = Result<Ran, String>;

impl Program {
    fn load() -> Program {
        Program {
            test: TestProgram::load(1024),
            emergency: "none",
        }
    }

    /// Boot time minus wall time, as the filter converts ends (measured here until it has
    /// converted one).
    fn offset(&self) -> i128 {
        self.test
            .filter
            .boot_offset()
            .unwrap_or_else(|| i128::from(boot_ns()) - wall_ns(SystemTime::now()))
    }

    /// Brings the maps to `setup`; `expired` picks how "no emergency" is written. If the filter
    /// converted the ends with another offset than the test assumed, the setup's ends move by
    /// the difference: they are the kernel's deadlines.
    fn apply(&mut self, setup: &mut Setup, expired: bool) {
        let assumed = self.offset();
        self.test.apply(&rules(setup, assumed));
        // A hit the model cannot place by list alone goes by the kernel's numbers.
        for (index, list) in setup.lists.iter_mut().enumerate() {
            let name = list_name(index);
            if let Some(applied) = self.test.filter.lists().iter().find(|l| l.name == name) {
                list.number = applied.number;
            }
        }
        if let Some(used) = self.test.filter.boot_offset()
            && used != assumed
        {
            *setup = setup.shifted(i64::try_from(used - assumed).expect("clocks a second apart"));
        }
        let (deadline, emergency) = match (setup.emergency, expired) {
            (true, _) => (boot_ns() + 3_600_000_000_000, "in force for an hour"),
            (false, true) => (1, "expired (deadline 1 ns after boot)"),
            (false, false) => (0, "none"),
        };
        self.test
            .filter
            .set_emergency(deadline)
            .expect("writing the emergency deadline");
        self.emergency = emergency;
    }

    /// Applies a setup that puts a network in timed entries of too many ends: the filter must
    /// refuse it, saying so. `Err` says what happened instead.
    fn refuse(&mut self, setup: &Setup) -> Result<(), String> {
        match self.test.filter.apply(&rules(setup, self.offset())) {
            Ok(()) => Err(format!(
                "the filter applied a setup with a network in timed entries of {} different \
                 ends (at most {}): {setup}",
                setups::most_ends(setup),
                setups::MAX_ENDS_PER_NETWORK
            )),
            Err(e) => {
                let message = format!("{e:#}");
                let expected = format!(
                    "lies in timed entries with {} different ends",
                    setups::most_ends(setup)
                );
                match message.contains(&expected) {
                    true => Ok(()),
                    false => Err(format!(
                        "the filter refused a setup over the bound of ends, but not with \
                         `{expected}`: {message}"
                    )),
                }
            }
        }
    }

    /// Runs a frame, with the boot clock read right before and right after.
    fn run(&mut self, frame: &[u8]) -> (Outcome, i64, i64) {
        let (outcome, before, after) = self.test.run_timed(frame);
        (
            outcome.map_err(|e| format!("BPF_PROG_TEST_RUN refused: {e}")),
            before as i64,
            after as i64,
        )
    }

    fn hits(&self) -> HashMap<(IpNet, Option<String>), u64> {
        self.test.hits()
    }

    fn hits_of(&self, entries: &[(IpNet, String)]) -> HashMap<(IpNet, Option<String>), u64> {
        self.test.hits_of(entries)
    }
}

/// The setup as the config would give it: lists named `l0`, `l1`, ... in order, each timed
/// entry ending at the wall-clock time a filter with boot-minus-wall `offset` turns into the
/// model's end.
fn rules(setup: &Setup, offset: i128) -> Rules {
    Rules {
        lists: setup
            .lists
            .iter()
            .enumerate()
            .map(|(i, list)| ListRules {
                name: list_name(i),
                mode: list.mode,
                tcp_ports: list.tcp_ports.clone(),
                udp_ports: list.udp_ports.clone(),
                entries: list.entries.iter().copied().collect(),
                ends: list
                    .ends
                    .iter()
                    .map(|(net, end)| (*net, wall_at(*end, offset)))
                    .collect(),
            })
            .collect(),
    }
}

fn list_name(index: usize) -> String {
    format!("l{index}")
}

fn agrees(expected: Option<&Expected>, outcome: &Outcome) -> bool {
    match (expected, outcome) {
        (None, Err(_)) => true,
        // Kernels before 5.11 (Debian 11's 5.10) run a frame shorter than an Ethernet header
        // where later ones refuse it: the program passes it as truncated.
        (None, Ok((action, moved))) => {
            *action == XDP_PASS && moved.as_slice() == [(Reason::PassTruncated, 1)]
        }
        (Some(e), Ok((action, moved))) => {
            let want = if e.drop { XDP_DROP } else { XDP_PASS };
            *action == want && moved.as_slice() == [(e.reason, 1)]
        }
        _ => false,
    }
}

fn describe_expected(expected: Option<&Expected>) -> String {
    match expected {
        None => "refused by the kernel (shorter than an Ethernet header), or passed as \
                 truncated (kernels before 5.11 run it)"
            .into(),
        Some(e) => format!(
            "{} ({})",
            if e.drop { "XDP_DROP" } else { "XDP_PASS" },
            e.reason.name()
        ),
    }
}

fn describe_outcome(outcome: &Outcome) -> String {
    match outcome {
        Err(e) => e.clone(),
        Ok((action, moved)) => {
            let action = match *action {
                XDP_DROP => "XDP_DROP".to_owned(),
                XDP_PASS => "XDP_PASS".to_owned(),
                other => format!("action {other}"),
            };
            let moved: Vec<String> = moved
                .iter()
                .map(|(r, n)| format!("{} +{n}", r.name()))
                .collect();
            format!("{action} (counters: {})", moved.join(", "))
        }
    }
}

/// The ends after `before`, up to `after` (which is not earlier).
fn between(ends: &BTreeSet<i64>, before: i64, after: i64) -> impl Iterator<Item = &i64> {
    ends.range((Excluded(before), Included(after)))
}

/// The model's verdicts for a frame the program read the clock for at some instant from
/// `before` to `after`: at `before`, then at each end in between (each verdict once).
fn possible(
    frame: &[u8],
    setup: &Setup,
    ends: &BTreeSet<i64>,
    before: i64,
    after: i64,
) -> Vec<Option<Expected>> {
    let mut verdicts = vec![model::expected(frame, setup, before)];
    for end in between(ends, before, after) {
        let verdict = model::expected(frame, setup, *end);
        if !verdicts.contains(&verdict) {
            verdicts.push(verdict);
        }
    }
    verdicts
}

/// One judged frame, with what a report of it needs.
struct Case<'a> {
    /// Seed and index in a generated run, `None` for a probe or a replay.
    at: Option<(u64, u64)>,
    frame: &'a [u8],
    setup: &'a Setup,
    emergency: &'static str,
    /// What the model allows: see [`possible`].
    expected: Vec<Option<Expected>>,
    outcome: Outcome,
    /// The boot clock right before and right after the run.
    before: i64,
    after: i64,
}

impl Case<'_> {
    /// The model's verdict the program's outcome agrees with, if any.
    fn matched(&self) -> Option<&Option<Expected>> {
        self.expected
            .iter()
            .find(|e| agrees(e.as_ref(), &self.outcome))
    }

    fn ambiguous(&self) -> bool {
        self.expected.len() > 1
    }

    /// The disagreement in full, with the commands that replay it.
    fn report(&self) -> String {
        let mut text = String::from("DISAGREEMENT");
        match self.at {
            Some((seed, case)) => {
                let _ = write!(text, " in case {case} of seed {seed}");
            }
            None => text.push_str(" outside the seed's cases (a probe at an end, or a replay)"),
        }
        let frame = hex(self.frame);
        // The ends counted from the frame's instant (the reading before the run).
        let setup = self.setup.shifted(-self.before);
        let model = self
            .expected
            .iter()
            .map(|e| describe_expected(e.as_ref()))
            .collect::<Vec<_>>()
            .join("\n       or ");
        let _ = write!(
            text,
            "\n  frame ({} bytes): {frame}\n  setup (ends in ns from the frame's instant): \
             {setup}\n  judged between +0 and +{} ns\n  emergency deadline: {}\n  model:   \
             {model}\n  program: {}\n  replay:  cargo xtask fuzz --replay {frame} --config \
             '{setup}'",
            self.frame.len(),
            self.after - self.before,
            self.emergency,
            describe_outcome(&self.outcome),
        );
        if let Some((seed, case)) = self.at {
            let _ = write!(
                text,
                "\n           cargo xtask fuzz --seed {seed} --case {case}   (with the map \
                 history of the run)"
            );
        }
        text
    }
}

/// How far from the frame's instant an end was, for the summary.
fn distance(ns: i64) -> &'static str {
    match ns {
        ..=10_000 => "at it (within 10 µs)",
        10_001..=1_000_000 => "within 1 ms",
        1_000_001..=1_000_000_000 => "within 1 s",
        _ => "more than 1 s",
    }
}

/// What a run saw: the generator's traits, the model's reasons, the disagreements, and the
/// hits the model expects under the current allowlist.
#[derive(Default)]
struct Tally {
    traits: BTreeMap<&'static str, u64>,
    reasons: BTreeMap<&'static str, u64>,
    /// For frames whose verdict an end changed (or will change): how far the nearest such
    /// end was before (after) the frame's instant.
    ended: BTreeMap<&'static str, u64>,
    ends_ahead: BTreeMap<&'static str, u64>,
    ambiguous: u64,
    probes: u64,
    refused: u64,
    /// Allowlists with a network in timed entries of the most ends a network may have.
    at_the_bound: u64,
    disagreements: Vec<String>,
    want_hits: HashMap<(IpNet, Option<String>), u64>,
    problems: Vec<String>,
}

impl Tally {
    fn record(&mut self, traits: &[&'static str], case: &Case, ends: &BTreeSet<i64>) {
        for t in traits {
            *self.traits.entry(t).or_default() += 1;
        }
        let Some(matched) = case.matched() else {
            *self
                .reasons
                .entry(case.expected[0].map_or("(refused by the kernel)", |e| e.reason.name()))
                .or_default() += 1;
            let text = case.report();
            if self.disagreements.len() < SHOWN {
                eprintln!("{text}\n");
            }
            self.disagreements.push(text);
            return;
        };
        let reason = matched.map_or("(refused by the kernel)", |e| e.reason.name());
        *self.reasons.entry(reason).or_default() += 1;
        if case.ambiguous() {
            self.ambiguous += 1;
        }
        if let Some((entry, list)) = matched.and_then(|e| e.entry) {
            let key = (entry, Some(list_name(list)));
            *self.want_hits.entry(key).or_default() += 1;
        }
        self.record_time(case, ends);
    }

    /// How far the nearest end that changed the frame's verdict was, and the nearest that
    /// will.
    fn record_time(&mut self, case: &Case, ends: &BTreeSet<i64>) {
        if ends.is_empty() {
            return;
        }
        let at = |instant| model::expected(case.frame, case.setup, instant);
        let (before, after) = (case.before, case.after);
        let then = case.expected[0];
        if at(i64::MIN) != then {
            // The verdict holds from the latest end where it changed.
            if let Some(end) = ends
                .range(..=before)
                .rev()
                .find(|end| at(**end - 1) != then)
            {
                *self.ended.entry(distance(before - end)).or_default() += 1;
            }
        }
        let later = match between(ends, before, after).next() {
            Some(_) => at(after),
            None => then,
        };
        if at(i64::MAX) != later
            && let Some(end) = ends
                .range((Excluded(after), Unbounded))
                .find(|end| at(**end) != later)
        {
            *self.ends_ahead.entry(distance(end - after)).or_default() += 1;
        }
    }

    /// Each entry's hits for its list during one allowlist's frames must be the model's
    /// count of frames that list let in through it; starts the count for the next allowlist.
    fn check_hits(
        &mut self,
        program: &Program,
        before: &HashMap<(IpNet, Option<String>), u64>,
        setup: &Setup,
    ) {
        let hits = program.hits();
        // A page of `list` reads only its entries' counters, and must read the same.
        let listed: Vec<(IpNet, String)> = hits
            .keys()
            .filter_map(|(net, list)| Some((*net, list.clone()?)))
            .collect();
        let paged = program.hits_of(&listed);
        for (key, now) in &paged {
            if hits.get(key) != Some(now) {
                let (net, list) = key;
                self.problems.push(format!(
                    "{net} of {list:?}: {now} hits read alone, {:?} read with all (setup: {setup})",
                    hits.get(key)
                ));
            }
        }
        if let Some(missed) = listed.iter().find(|(net, list)| {
            hits[&(*net, Some(list.clone()))] != 0
                && !paged.contains_key(&(*net, Some(list.clone())))
        }) {
            self.problems.push(format!(
                "{missed:?}: hits read with all, none read alone (setup: {setup})"
            ));
        }
        for (key, now) in &hits {
            let got = now - before.get(key).copied().unwrap_or(0);
            let want = self.want_hits.get(key).copied().unwrap_or(0);
            if got != want {
                let (net, list) = key;
                self.problems.push(format!(
                    "{net} of {list:?}: {got} hits, the model let in {want} (setup: {setup})"
                ));
            }
        }
        for ((net, list), want) in &self.want_hits {
            if !hits.contains_key(&(*net, list.clone())) {
                self.problems.push(format!(
                    "{net} of {list:?}: no hit counter, the model let in {want} (setup: {setup})"
                ));
            }
        }
        self.want_hits.clear();
    }

    fn print_summary(&self, total: u64) {
        let share = |n: u64| format!("{n} ({:.1}%)", n as f64 * 100.0 / total as f64);
        eprintln!("generated (a frame has several traits):");
        for (t, n) in &self.traits {
            eprintln!("  {t}: {}", share(*n));
        }
        eprintln!("model's reasons:");
        for (r, n) in &self.reasons {
            eprintln!("  {r}: {}", share(*n));
        }
        eprintln!("frames whose verdict an end changed, by how long before the frame it was:");
        for (d, n) in &self.ended {
            eprintln!("  {d}: {}", share(*n));
        }
        eprintln!("frames whose verdict an end will change, by how long after the frame:");
        for (d, n) in &self.ends_ahead {
            eprintln!("  {d}: {}", share(*n));
        }
        eprintln!(
            "probes around ends: {}; ambiguous frames (an end passed during the run, either \
             verdict accepted): {}; allowlists with a network at the bound of {} ends: {}; \
             changes over it refused: {}",
            self.probes,
            self.ambiguous,
            setups::MAX_ENDS_PER_NETWORK,
            self.at_the_bound,
            self.refused
        );
    }
}

/// The current allowlist of a run and what judging under it needs.
struct Current {
    setup: Setup,
    /// Its ends, each once.
    ends: BTreeSet<i64>,
    /// Its ends still ahead, not probed yet, latest first.
    upcoming: Vec<i64>,
}

impl Current {
    fn new(setup: Setup) -> Current {
        let ends = setup.ends();
        let now = now();
        let upcoming = ends.iter().rev().copied().filter(|e| *e > now).collect();
        Current {
            setup,
            ends,
            upcoming,
        }
    }
}

/// The probes for the end `end`: for each entry ending then, a frame from its first address
/// and from the first address of another list's entry inside it to its list's port, and from
/// its first address to the port of another list with an entry around it.
fn probes(setup: &Setup, end: i64) -> Vec<Vec<u8>> {
    let first = |net: &IpNet| -> IpAddr { net.network() };
    let to = |list: &ModelList, src: IpAddr| match (list.tcp_ports.first(), list.udp_ports.first())
    {
        (Some(port), _) => Some(frames::probe(src, *port, false)),
        (None, Some(port)) => Some(frames::probe(src, *port, true)),
        (None, None) => None,
    };
    let mut out = Vec::new();
    for (i, list) in setup.lists.iter().enumerate() {
        for (net, _) in list.ends.iter().filter(|(_, e)| **e == end) {
            let others = || {
                setup
                    .lists
                    .iter()
                    .enumerate()
                    .filter(move |(j, _)| *j != i)
                    .map(|(_, l)| l)
            };
            let inside = others()
                .flat_map(|l| &l.entries)
                .find(|e| *e != net && net.contains(*e));
            let around = others().find(|l| l.entries.iter().any(|e| e.contains(net)));
            out.extend(to(list, first(net)));
            out.extend(inside.and_then(|inner| to(list, first(inner))));
            out.extend(around.and_then(|l| to(l, first(net))));
        }
    }
    out.truncate(PROBES);
    out
}

/// A run of the differential test.
struct Run {
    seed: u64,
    program: Program,
    current: Current,
    tally: Tally,
    /// Ends probed so far.
    probed_ends: u64,
}

impl Run {
    /// Judges one frame now; `at` is its place in the run (none for a probe).
    fn judge(&mut self, frame: &[u8], traits: &[&'static str], at: Option<(u64, u64)>) {
        let (outcome, before, after) = self.program.run(frame);
        let current = &self.current;
        let case = Case {
            at,
            frame,
            setup: &current.setup,
            emergency: self.program.emergency,
            expected: possible(frame, &current.setup, &current.ends, before, after),
            outcome,
            before,
            after,
        };
        self.tally.record(traits, &case, &current.ends);
    }

    /// Stops for the ends coming within [`HORIZON`]: probes shortly before each and as soon as
    /// it has come.
    fn probe_upcoming_ends(&mut self) {
        while let Some(&end) = self.current.upcoming.last() {
            let now = now();
            if end > now + HORIZON {
                return;
            }
            self.current.upcoming.pop();
            if end <= now {
                continue;
            }
            let probes = probes(&self.current.setup, end);
            let count = probes.len() as i64;
            for (i, frame) in probes.iter().enumerate() {
                spin_until(end - (count - i as i64) * STEP);
                self.judge(frame, &["probe shortly before an end"], None);
            }
            // Judging it takes long enough to make the probes at the end late: every other end.
            self.probed_ends += 1;
            if let Some(frame) = probes
                .first()
                .filter(|_| self.probed_ends.is_multiple_of(2))
            {
                spin_until(end - CLOSE);
                self.judge(frame, &["probe just before an end"], None);
            }
            spin_until(end);
            for frame in &probes {
                self.judge(frame, &["probe as an end comes"], None);
            }
            self.tally.probes += 2 * probes.len() as u64
                + u64::from(!probes.is_empty() && self.probed_ends.is_multiple_of(2));
        }
    }
}

/// Judges one frame given on the command line, under a setup whose ends count from the
/// frame's instant: applied with its ends around an instant far enough ahead for the apply to
/// finish first, the frame runs as soon as that instant has come.
fn replay(frame_hex: &str) {
    let frame = unhex(frame_hex).unwrap_or_else(|e| panic!("ALLOWLIST_FUZZ_REPLAY: {e}"));
    let config: String =
        env("ALLOWLIST_FUZZ_CONFIG").expect("ALLOWLIST_FUZZ_REPLAY needs ALLOWLIST_FUZZ_CONFIG");
    let relative: Setup = config
        .parse()
        .unwrap_or_else(|e| panic!("ALLOWLIST_FUZZ_CONFIG: {e:#}"));
    let mut program = Program::load();
    let mut margin = 200_000_000;
    let (setup, instant) = loop {
        let instant = now() + margin;
        let mut setup = relative.shifted(instant);
        program.apply(&mut setup, false);
        let shift = setup
            .ends()
            .first()
            .copied()
            .zip(relative.ends().first().copied());
        let instant = shift.map_or(instant, |(kernel, given)| kernel - given);
        if now() < instant {
            break (setup, instant);
        }
        margin *= 2;
    };
    // Once ahead of the instant, so that the run that counts is a warm one (and short).
    let _ = program.run(&frame);
    spin_until(instant);
    let (outcome, before, after) = program.run(&frame);
    let case = Case {
        at: None,
        frame: &frame,
        setup: &setup,
        emergency: program.emergency,
        expected: possible(&frame, &setup, &setup.ends(), before, after),
        outcome,
        before,
        after,
    };
    let model = case
        .expected
        .iter()
        .map(|e| describe_expected(e.as_ref()))
        .collect::<Vec<_>>()
        .join(" or ");
    eprintln!(
        "frame ({} bytes): {}\nsetup: {relative}\njudged between +{} and +{} ns of the ends' \
         instant 0\nmodel:   {model}\nprogram: {}",
        frame.len(),
        hex(&frame),
        before - instant,
        after - instant,
        describe_outcome(&case.outcome)
    );
    assert!(case.matched().is_some(), "{}", case.report());
}

#[test]
fn the_program_agrees_with_the_model() {
    if !allowlist_tests::require_root("the_program_agrees_with_the_model") {
        return;
    }
    if let Some(frame) = env::<String>("ALLOWLIST_FUZZ_REPLAY") {
        replay(&frame);
        return;
    }
    let seed = env("ALLOWLIST_FUZZ_SEED").unwrap_or(DEFAULT_SEED);
    let only: Option<u64> = env("ALLOWLIST_FUZZ_CASE");
    let total = only.map_or_else(
        || env("ALLOWLIST_FUZZ_FRAMES").unwrap_or(DEFAULT_FRAMES),
        |case| case + 1,
    );
    eprintln!(
        "differential: seed {seed}, {total} frames, {FRAMES_PER_SETUP} per allowlist \
         (ALLOWLIST_FUZZ_SEED, ALLOWLIST_FUZZ_FRAMES, or `cargo xtask fuzz`)"
    );
    let started = Instant::now();
    let mut rng = Rng::with_seed(seed);
    let program = Program::load();
    // How long the previous allowlist took, applied and judged: where its successor's ends
    // "among the frames" go.
    let mut window: i64 = 100_000_000;
    let mut time = setups::Time { now: now(), window };
    let mut run = Run {
        seed,
        program,
        current: Current::new(setups::fresh(&mut rng, time)),
        tally: Tally::default(),
        probed_ends: 0,
    };
    let mut hits_before = HashMap::new();
    let mut apply_time = Duration::ZERO;
    for case in 0..total {
        if case % FRAMES_PER_SETUP == 0 {
            if case > 0 {
                run.tally
                    .check_hits(&run.program, &hits_before, &run.current.setup);
                window = now() - time.now;
                time = setups::Time { now: now(), window };
                let next = setups::next(&mut rng, &run.current.setup, time);
                run.current = Current::new(next);
            }
            let applying = Instant::now();
            let mut setup = std::mem::take(&mut run.current.setup);
            run.program.apply(&mut setup, rng.bool());
            apply_time += applying.elapsed();
            if setups::most_ends(&setup) == setups::MAX_ENDS_PER_NETWORK {
                run.tally.at_the_bound += 1;
            }
            run.current = Current::new(setup);
            hits_before = run.program.hits();
        }
        if case % (FRAMES_PER_SETUP * OVER_LIMIT_EVERY) == FRAMES_PER_SETUP * 11 / 2
            && let Some(over) = setups::over_limit(&mut rng, &run.current.setup, time)
        {
            match run.program.refuse(&over) {
                Ok(()) => run.tally.refused += 1,
                Err(problem) => run.tally.problems.push(problem),
            }
        }
        let generated = frames::frame(&mut rng, &run.current.setup);
        if only.is_some_and(|k| k != case) {
            continue;
        }
        if only.is_none() {
            run.probe_upcoming_ends();
        }
        run.judge(&generated.bytes, &generated.traits, Some((run.seed, case)));
    }
    let Run {
        program,
        current,
        mut tally,
        ..
    } = run;
    if only.is_none() {
        tally.check_hits(&program, &hits_before, &current.setup);
    }
    eprintln!(
        "differential: {total} frames and {} probes under {} allowlists in {:.1?} (applying \
         the allowlists {apply_time:.1?}), {} disagreements, {} ambiguous",
        tally.probes,
        total.div_ceil(FRAMES_PER_SETUP),
        started.elapsed(),
        tally.disagreements.len(),
        tally.ambiguous
    );
    if only.is_none() {
        tally.print_summary(total);
    }
    assert!(
        tally.disagreements.is_empty(),
        "{} of {total} frames got another verdict from the program than from the model (seed \
         {seed}); the first:\n{}",
        tally.disagreements.len(),
        tally.disagreements[0]
    );
    assert!(
        tally.problems.is_empty(),
        "hit counters or refusals differ from the model's:\n{}",
        tally.problems.join("\n")
    );
    if only.is_none() && total >= 10_000 {
        // A generator that stopped reaching some verdict would let bugs there through.
        for reason in Reason::ALL {
            assert!(
                tally.reasons.contains_key(reason.name()),
                "no frame of the run was expected to get {}: widen the generator",
                reason.name()
            );
        }
        assert!(
            tally.refused > 0,
            "no change over the bound of ends was tried"
        );
    }
    if only.is_none() && total >= 50_000 {
        // Nor may it stop reaching ends at and around the frames' instants (not checked in
        // shorter runs, such as the VMs': where ends fall depends on timing).
        for (what, counts, distances) in [
            (
                "changed by an end",
                &tally.ended,
                &["at it (within 10 µs)", "within 1 ms", "more than 1 s"][..],
            ),
            (
                "to be changed by an end",
                &tally.ends_ahead,
                &["within 1 ms", "more than 1 s"][..],
            ),
        ] {
            for d in distances {
                assert!(
                    counts.contains_key(d),
                    "no frame's verdict was {what} {d} from its instant: widen the generator"
                );
            }
        }
    }
}
