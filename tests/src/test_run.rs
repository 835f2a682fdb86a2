//! The compiled XDP program through `BPF_PROG_TEST_RUN`, nothing attached: the one harness
//! the verdict tests, the differential test and the benchmarks load it with, and what a frame
//! did (its action, and which reason counters moved).

use std::collections::HashMap;

use allowlist_common::maps::Counters;
use allowlist_common::verdict::{REASON_COUNT, Reason};
use allowlist_config::rules::Rules;
use allowlist_loader::clock::boot_ns;
use allowlist_loader::filter::Filter;
use aya::{TestRun, TestRunOptions, programs::ProgramError};
use ipnet::IpNet;

pub const XDP_ABORTED: u32 = 0;
pub const XDP_DROP: u32 = 1;
pub const XDP_PASS: u32 = 2;

/// The action the program should return for a frame judged `reason`.
pub fn action_of(reason: Reason) -> u32 {
    if reason.is_drop() { XDP_DROP } else { XDP_PASS }
}

/// An XDP action's name, for messages.
pub fn action_name(action: u32) -> &'static str {
    match action {
        XDP_ABORTED => "XDP_ABORTED",
        XDP_DROP => "XDP_DROP",
        XDP_PASS => "XDP_PASS",
        3 => "XDP_TX",
        4 => "XDP_REDIRECT",
        _ => "unknown action",
    }
}

/// What one frame did: the program's action, and each reason counter that moved (by how much).
pub type Ran = (u32, Vec<(Reason, u64)>);

/// A loaded program with fresh maps (each test loads its own, so tests run in parallel), and
/// the counter totals after the last frame it ran.
pub struct TestProgram {
    pub filter: Filter,
    seen: [u64; REASON_COUNT],
}

impl TestProgram {
    /// Loads the program with room for `max_entries` entries. Panics, saying how to build it,
    /// when the object is missing.
    pub fn load(max_entries: u32) -> TestProgram {
        let filter = Filter::load(max_entries).expect(
            "loading the XDP program (build it with `cargo xtask build`, or point \
             ALLOWLIST_EBPF_OBJECT at the object)",
        );
        let program = TestProgram {
            seen: totals(&filter),
            filter,
        };
        assert_eq!(
            program.seen, [0; REASON_COUNT],
            "a freshly loaded program has counted something"
        );
        program
    }

    /// Brings the maps to `rules`, as a reload does.
    pub fn apply(&mut self, rules: &Rules) {
        self.filter
            .apply(rules)
            .unwrap_or_else(|e| panic!("writing the rules into the maps: {e:#}"));
    }

    /// Runs one frame; the kernel's refusal to run it is the error.
    pub fn run(&mut self, frame: &[u8]) -> Result<Ran, ProgramError> {
        self.run_timed(frame).0
    }

    /// Runs one frame, with the boot clock (the program's, `bpf_ktime_get_boot_ns()`) read
    /// right before and right after `BPF_PROG_TEST_RUN`: the program read it in between.
    pub fn run_timed(&mut self, frame: &[u8]) -> (Result<Ran, ProgramError>, u64, u64) {
        let before = boot_ns();
        let action = self.action(frame);
        let after = boot_ns();
        (action.map(|action| self.moved(action)), before, after)
    }

    /// What the last frame did: its action, and the counters it moved since the one before.
    fn moved(&mut self, action: u32) -> Ran {
        let now = self.totals();
        let moved = Reason::ALL
            .into_iter()
            .filter(|r| now[*r as usize] != self.seen[*r as usize])
            .map(|r| (r, now[r as usize].wrapping_sub(self.seen[r as usize])))
            .collect();
        self.seen = now;
        (action, moved)
    }

    /// Runs one frame and returns only its action (the counters it moved are not taken as
    /// seen: the next `run` reports them too).
    pub fn action(&mut self, frame: &[u8]) -> Result<u32, ProgramError> {
        self.filter
            .program()
            .test_run(TestRunOptions {
                data_in: Some(frame),
                ..Default::default()
            })
            .map(|result| result.return_value)
    }

    /// Counter totals after the last `run`.
    pub fn seen(&self) -> [u64; REASON_COUNT] {
        self.seen
    }

    /// Counters summed over CPUs and interfaces, now.
    pub fn totals(&self) -> [u64; REASON_COUNT] {
        totals(&self.filter)
    }

    /// Hits per entry and list, summed over CPUs.
    pub fn hits(&self) -> HashMap<(IpNet, Option<String>), u64> {
        let hits = self.filter.hits().expect("reading HITS");
        hits.into_iter()
            .map(|(key, h)| (key, h.packets()))
            .collect()
    }

    /// [`Program::hits`] of just these entries, read as a page of `list` reads them.
    pub fn hits_of(&self, entries: &[(IpNet, String)]) -> HashMap<(IpNet, Option<String>), u64> {
        let hits = self
            .filter
            .hits_of(entries.iter().map(|(net, list)| (*net, list.as_str())))
            .expect("reading HITS");
        hits.into_iter()
            .map(|(key, h)| (key, h.packets()))
            .collect()
    }
}

/// `filter`'s counters summed over CPUs and interfaces.
pub fn totals(filter: &Filter) -> [u64; REASON_COUNT] {
    let counters = filter.counters().expect("reading COUNTERS");
    Counters::total(counters.values()).by_reason
}
