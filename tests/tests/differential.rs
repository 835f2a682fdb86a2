//! Differential test: the compiled XDP program, through `BPF_PROG_TEST_RUN`, against the
//! reference model (`allowlist_tests::model`, written from the README's verdict table over raw
//! bytes) on seeded random frames under seeded random allowlists (1 to 32 named lists, each
//! with a mode, TCP and UDP ports and entries that overlap other lists'). Per frame: the
//! action, and the one reason counter that moved; per allowlist: each network's hit count.
//!
//! One program is loaded for the whole run; each allowlist is applied to it as a change of the
//! previous one (as reloads do), so `Filter::apply`'s map and prefilter updates are under test
//! too. Frames only go through `BPF_PROG_TEST_RUN` and never reach an interface, so their
//! addresses need not stay in the test ranges (prefixes wider than 198.18.0.0/15 and
//! 2001:db8::/32 exercise the prefilters' wide paths).
//!
//! Environment (what `cargo xtask fuzz` sets): ALLOWLIST_FUZZ_FRAMES (default 100,000),
//! ALLOWLIST_FUZZ_SEED (default a fixed seed, so CI runs are reproducible), ALLOWLIST_FUZZ_CASE
//! (check only that case of the run, after applying every allowlist before it), and
//! ALLOWLIST_FUZZ_REPLAY with ALLOWLIST_FUZZ_CONFIG (one frame in hex under one setup).

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::time::{Duration, Instant};

use allowlist_common::verdict::Reason;
use allowlist_config::rules::{ListRules, Rules};
use allowlist_loader::clock::boot_ns;
use allowlist_tests::fuzz::{hex, unhex};
use allowlist_tests::generate::{Rng, frames, setups};
use allowlist_tests::model::{self, Expected, Setup};
use allowlist_tests::test_run::{Ran, TestProgram, XDP_DROP, XDP_PASS};
use ipnet::IpNet;

const DEFAULT_FRAMES: u64 = 100_000;
const DEFAULT_SEED: u64 = 0xa110_d1ff;
/// Frames judged under each allowlist before the next change.
const FRAMES_PER_SETUP: u64 = 500;
/// Disagreements printed in full; the rest are only counted.
const SHOWN: usize = 10;

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

    /// Brings the maps to `setup`; `expired` picks how "no emergency" is written.
    fn apply(&mut self, setup: &Setup, expired: bool) {
        self.test.apply(&rules(setup));
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

    fn run(&mut self, frame: &[u8]) -> Outcome {
        self.test
            .run(frame)
            .map_err(|e| format!("BPF_PROG_TEST_RUN refused: {e}"))
    }

    fn hits(&self) -> HashMap<IpNet, u64> {
        self.test.hits()
    }
}

/// The setup as the config would give it: lists named `l0`, `l1`, ... in order.
fn rules(setup: &Setup) -> Rules {
    Rules {
        lists: setup
            .lists
            .iter()
            .enumerate()
            .map(|(i, list)| ListRules {
                name: format!("l{i}"),
                mode: list.mode,
                tcp_ports: list.tcp_ports.clone(),
                udp_ports: list.udp_ports.clone(),
                entries: list.entries.iter().copied().collect(),
                ..ListRules::default()
            })
            .collect(),
    }
}

fn agrees(expected: Option<&Expected>, outcome: &Outcome) -> bool {
    match (expected, outcome) {
        (None, Err(_)) => true,
        (Some(e), Ok((action, moved))) => {
            let want = if e.drop { XDP_DROP } else { XDP_PASS };
            *action == want && moved.as_slice() == [(e.reason, 1)]
        }
        _ => false,
    }
}

fn describe_expected(expected: Option<&Expected>) -> String {
    match expected {
        None => "refused by the kernel (shorter than an Ethernet header)".into(),
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

/// One judged frame, with what a report of it needs.
struct Case<'a> {
    /// Seed and index in a generated run; `None` for a replay.
    at: Option<(u64, u64)>,
    frame: &'a [u8],
    setup: &'a Setup,
    emergency: &'static str,
    expected: Option<Expected>,
    outcome: Outcome,
}

impl Case<'_> {
    fn agrees(&self) -> bool {
        agrees(self.expected.as_ref(), &self.outcome)
    }

    /// The disagreement in full, with the commands that replay it.
    fn report(&self) -> String {
        let mut text = String::from("DISAGREEMENT");
        if let Some((seed, case)) = self.at {
            let _ = write!(text, " in case {case} of seed {seed}");
        }
        let frame = hex(self.frame);
        let setup = self.setup;
        let _ = write!(
            text,
            "\n  frame ({} bytes): {frame}\n  setup: {setup}\n  emergency deadline: {}\n  \
             model:   {}\n  program: {}\n  replay:  cargo xtask fuzz --replay {frame} --config \
             '{setup}'",
            self.frame.len(),
            self.emergency,
            describe_expected(self.expected.as_ref()),
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

/// What a run saw: the generator's traits, the model's reasons, the disagreements, and the
/// hits the model expects under the current allowlist.
#[derive(Default)]
struct Tally {
    traits: BTreeMap<&'static str, u64>,
    reasons: BTreeMap<&'static str, u64>,
    disagreements: Vec<String>,
    want_hits: HashMap<IpNet, u64>,
    hit_problems: Vec<String>,
}

impl Tally {
    fn record(&mut self, traits: &[&'static str], case: &Case) {
        for t in traits {
            *self.traits.entry(t).or_default() += 1;
        }
        let reason = case
            .expected
            .map_or("(refused by the kernel)", |e| e.reason.name());
        *self.reasons.entry(reason).or_default() += 1;
        if !case.agrees() {
            let text = case.report();
            if self.disagreements.len() < SHOWN {
                eprintln!("{text}\n");
            }
            self.disagreements.push(text);
            return;
        }
        if let Some(entry) = case.expected.and_then(|e| e.entry) {
            *self.want_hits.entry(entry).or_default() += 1;
        }
    }

    /// Each network's hits during one allowlist's frames must be the model's count of frames
    /// it let in as allowed (counted for the most specific network holding the source, in
    /// whichever list); starts the count for the next allowlist.
    fn check_hits(&mut self, program: &Program, before: &HashMap<IpNet, u64>, setup: &Setup) {
        let hits = program.hits();
        for (net, now) in &hits {
            let got = now - before.get(net).copied().unwrap_or(0);
            let want = self.want_hits.get(net).copied().unwrap_or(0);
            if got != want {
                self.hit_problems.push(format!(
                    "{net}: {got} hits, the model let in {want} (setup: {setup})"
                ));
            }
        }
        for (net, want) in &self.want_hits {
            if !hits.contains_key(net) {
                self.hit_problems.push(format!(
                    "{net}: no hit counter, the model let in {want} (setup: {setup})"
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
    }
}

/// Judges one frame given on the command line.
fn replay(frame_hex: &str) {
    let frame = unhex(frame_hex).unwrap_or_else(|e| panic!("ALLOWLIST_FUZZ_REPLAY: {e}"));
    let config: String =
        env("ALLOWLIST_FUZZ_CONFIG").expect("ALLOWLIST_FUZZ_REPLAY needs ALLOWLIST_FUZZ_CONFIG");
    let setup: Setup = config
        .parse()
        .unwrap_or_else(|e| panic!("ALLOWLIST_FUZZ_CONFIG: {e:#}"));
    let mut program = Program::load();
    program.apply(&setup, false);
    let case = Case {
        at: None,
        frame: &frame,
        setup: &setup,
        emergency: program.emergency,
        expected: model::expected(&frame, &setup),
        outcome: program.run(&frame),
    };
    eprintln!(
        "frame ({} bytes): {}\nsetup: {setup}\nmodel:   {}\nprogram: {}",
        frame.len(),
        hex(&frame),
        describe_expected(case.expected.as_ref()),
        describe_outcome(&case.outcome)
    );
    assert!(case.agrees(), "{}", case.report());
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
    let mut program = Program::load();
    let mut setup = setups::fresh(&mut rng);
    let mut tally = Tally::default();
    let mut hits_before = HashMap::new();
    let mut apply_time = Duration::ZERO;
    for case in 0..total {
        if case % FRAMES_PER_SETUP == 0 {
            if case > 0 {
                tally.check_hits(&program, &hits_before, &setup);
                setup = setups::next(&mut rng, &setup);
            }
            let applying = Instant::now();
            program.apply(&setup, rng.bool());
            apply_time += applying.elapsed();
            hits_before = program.hits();
        }
        let generated = frames::frame(&mut rng, &setup);
        if only.is_some_and(|k| k != case) {
            continue;
        }
        let judged = Case {
            at: Some((seed, case)),
            frame: &generated.bytes,
            setup: &setup,
            emergency: program.emergency,
            expected: model::expected(&generated.bytes, &setup),
            outcome: program.run(&generated.bytes),
        };
        tally.record(&generated.traits, &judged);
    }
    if only.is_none() {
        tally.check_hits(&program, &hits_before, &setup);
    }
    eprintln!(
        "differential: {total} frames under {} allowlists in {:.1?} (applying the allowlists \
         {apply_time:.1?}), {} disagreements",
        total.div_ceil(FRAMES_PER_SETUP),
        started.elapsed(),
        tally.disagreements.len()
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
        tally.hit_problems.is_empty(),
        "hit counters differ from the model's:\n{}",
        tally.hit_problems.join("\n")
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
    }
}
