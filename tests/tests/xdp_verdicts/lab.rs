//! The program under test with its rules, collecting every mismatch of a run.

use super::*;

/// A loaded program with its rules, checking frames and collecting every mismatch, so that
/// one run reports all of them.
pub(crate) struct Lab {
    pub(crate) program: TestProgram,
    pub(crate) rules: Rules,
    pub(crate) failures: Vec<String>,
    pub(crate) checked: usize,
}

impl Lab {
    pub(crate) fn new(rules: Rules) -> Lab {
        Lab::with_capacity(1024, rules)
    }

    pub(crate) fn with_capacity(max_entries: u32, rules: Rules) -> Lab {
        let mut program = TestProgram::load(max_entries);
        program.apply(&rules);
        Lab {
            program,
            rules,
            failures: Vec::new(),
            checked: 0,
        }
    }

    pub(crate) fn apply(&mut self, rules: Rules) {
        self.program.apply(&rules);
        self.rules = rules;
    }

    pub(crate) fn filter(&mut self) -> &mut Filter {
        &mut self.program.filter
    }

    /// Runs one frame: its verdict, and the one reason whose counter moved by one.
    pub(crate) fn judge(
        &mut self,
        bytes: &[u8],
    ) -> Result<(u32, Result<Reason, String>), ProgramError> {
        let (verdict, moved) = self.program.run(bytes)?;
        let reason = match moved.as_slice() {
            [(reason, 1)] => Ok(*reason),
            _ => Err(format!("counters moved by {moved:?}")),
        };
        Ok((verdict, reason))
    }

    /// Checks a frame against the test's own expectation, after making sure the reference
    /// model agrees with it (a disagreement there is a bug in the test or in frames.rs).
    pub(crate) fn expect(&mut self, name: &str, frame: &Frame, want: Reason) {
        let model = frame.expected_reason(&ReferenceRules(&self.rules));
        assert_eq!(
            model,
            want,
            "{name}: the reference model says {} ({:?}) but the test expects {}: a bug in the \
             test or frames.rs\n{frame:?}",
            model.name(),
            frame.expected_parsed(),
            want.name(),
        );
        self.check_against(name, frame, want);
    }

    /// Checks a frame against the reference model; returns the reference's reason.
    pub(crate) fn check(&mut self, name: &str, frame: &Frame) -> Reason {
        let want = frame.expected_reason(&ReferenceRules(&self.rules));
        self.check_against(name, frame, want);
        want
    }

    pub(crate) fn check_against(&mut self, name: &str, frame: &Frame, want: Reason) {
        self.checked += 1;
        let bytes = frame.build();
        let got = match self.judge(&bytes) {
            Ok((verdict, Ok(reason))) if verdict == action_of(want) && reason == want => {
                return;
            }
            Ok((verdict, reason)) => format!(
                "{} ({})",
                action_name(verdict),
                reason.as_ref().map_or_else(|e| e.as_str(), |r| r.name())
            ),
            Err(e) => format!("an error from BPF_PROG_TEST_RUN: {e} ({e:?})"),
        };
        self.failures.push(format!(
            "{name}\n  expected {} ({}), reference parse {:?}\n  got      {got}\n  frame    \
             {frame}\n{}",
            action_name(action_of(want)),
            want.name(),
            frame.expected_parsed(),
            hex(&bytes),
        ));
    }

    /// Checks that `BPF_PROG_TEST_RUN` refuses `bytes` with EINVAL, so the program never
    /// runs on them.
    pub(crate) fn expect_refused(&mut self, name: &str, bytes: &[u8]) {
        match self.program.run(bytes) {
            Err(ProgramError::SyscallError(SyscallError { io_error, .. }))
                if io_error.raw_os_error() == Some(libc::EINVAL) => {}
            // Kernels before 5.11 (Debian 11's 5.10) run it: the program passes it as
            // truncated.
            Ok((XDP_PASS, moved)) if moved.as_slice() == [(Reason::PassTruncated, 1)] => {}
            other => self.failures.push(format!(
                "{name}: expected EINVAL from BPF_PROG_TEST_RUN (or, from an older kernel, \
                 XDP_PASS as pass_truncated), got {other:?}"
            )),
        }
    }

    /// Panics listing every mismatch (the first 25 in full).
    pub(crate) fn finish(self) {
        if self.failures.is_empty() {
            eprintln!("{} frames judged as expected", self.checked);
            return;
        }
        // The first ones in full, then the first line (the case's name) of each other one.
        let mut report = self.failures[..self.failures.len().min(10)].join("\n\n");
        for failure in self.failures.iter().skip(10) {
            report.push('\n');
            report.push_str(failure.lines().next().unwrap_or_default());
        }
        panic!(
            "{} of {} frames judged wrongly:\n\n{report}",
            self.failures.len(),
            self.checked,
        );
    }
}
