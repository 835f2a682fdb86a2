//! A bounded-time fuzz loop, in place of cargo-fuzz (which needs nightly and sanitizers that
//! these machines lack): seeded generated inputs go to a check on a worker thread, which must
//! return within a time bound per input, must not panic and must not report a problem. A
//! failure prints the input in hex and the command that replays it.
//!
//! An input is a few byte strings (e.g. a config file and a list file it names).
//!
//! Environment (what `cargo xtask fuzz --target …` sets): ALLOWLIST_FUZZ_SECONDS,
//! ALLOWLIST_FUZZ_SEED, and ALLOWLIST_FUZZ_INPUT (one input to check: its parts in hex, joined
//! by `:`).

use std::fmt::Write as _;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use fastrand::Rng;

/// Longest any one input may take; a parser that needs longer is hung for our purposes (a
/// debug build parses the largest generated input in milliseconds).
pub const PER_INPUT: Duration = Duration::from_secs(5);

pub type Input = Vec<Vec<u8>>;

pub struct Fuzz {
    /// Names the target in messages and in the replay command (`--target NAME`).
    pub target: &'static str,
    pub default_seconds: f64,
    /// Usually [`PER_INPUT`].
    pub per_input: Duration,
}

impl Fuzz {
    /// Runs `check` on inputs from `generate` until the time is up (or on the one input of
    /// ALLOWLIST_FUZZ_INPUT), panicking at the first failure; returns how many inputs ran.
    pub fn run(
        &self,
        mut generate: impl FnMut(&mut Rng) -> Input,
        check: fn(&[Vec<u8>]) -> Result<(), String>,
    ) -> u64 {
        let (to_worker, inputs) = mpsc::channel::<Input>();
        let (to_main, results) = mpsc::channel::<Result<(), String>>();
        // Not joined: after a hang it is still stuck in the check, and the test fails anyway.
        thread::spawn(move || {
            for input in inputs {
                let outcome = catch_unwind(AssertUnwindSafe(|| check(&input)))
                    .unwrap_or_else(|panic| Err(format!("panicked: {}", panic_message(&panic))));
                if to_main.send(outcome).is_err() {
                    break;
                }
            }
        });
        let judge = |input: Input, replay: &str| {
            to_worker
                .send(input.clone())
                .expect("the fuzz worker ended early");
            let failure = match results.recv_timeout(self.per_input) {
                Ok(Ok(())) => return,
                Ok(Err(problem)) => problem,
                Err(_) => format!("no answer within {:?}: hung", self.per_input),
            };
            panic!(
                "fuzz {}: {failure}\n  input: {}\n  replay: {replay}",
                self.target,
                describe(&input)
            );
        };
        if let Ok(hex) = std::env::var("ALLOWLIST_FUZZ_INPUT") {
            let input = hex
                .split(':')
                .map(|part| unhex(part).unwrap_or_else(|e| panic!("ALLOWLIST_FUZZ_INPUT: {e}")))
                .collect();
            judge(input, "(this was the replay)");
            return 1;
        }
        let seed = env_or("ALLOWLIST_FUZZ_SEED", 0xf022_5eed);
        let seconds = env_or("ALLOWLIST_FUZZ_SECONDS", self.default_seconds);
        let mut rng = Rng::with_seed(seed);
        let started = Instant::now();
        let mut count = 0;
        while started.elapsed().as_secs_f64() < seconds {
            let input = generate(&mut rng);
            let replay = format!(
                "cargo xtask fuzz --target {} --input {}   (case {count} of seed {seed})",
                self.target,
                input.iter().map(|p| hex(p)).collect::<Vec<_>>().join(":")
            );
            judge(input, &replay);
            count += 1;
        }
        eprintln!(
            "fuzz {}: {count} inputs in {:.1?} from seed {seed}, no failure",
            self.target,
            started.elapsed()
        );
        count
    }
}

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    match std::env::var(name) {
        Ok(value) => value
            .parse()
            .unwrap_or_else(|_| panic!("{name}={value}: not a number")),
        Err(_) => default,
    }
}

fn panic_message(panic: &Box<dyn std::any::Any + Send>) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "(no message)".to_owned())
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().fold(String::new(), |mut out, b| {
        let _ = write!(out, "{b:02x}");
        out
    })
}

pub fn unhex(text: &str) -> Result<Vec<u8>, String> {
    let digits: Vec<u8> = text.bytes().filter(|b| !b.is_ascii_whitespace()).collect();
    if !digits.len().is_multiple_of(2) {
        return Err(format!("odd number of hex digits in `{text}`"));
    }
    digits
        .chunks(2)
        .map(|pair| {
            let pair = String::from_utf8_lossy(pair);
            u8::from_str_radix(&pair, 16).map_err(|e| format!("`{pair}`: {e}"))
        })
        .collect()
}

/// Each part as escaped text (what a reader wants) and its length.
fn describe(input: &[Vec<u8>]) -> String {
    input
        .iter()
        .enumerate()
        .map(|(i, part)| {
            format!(
                "part {i} ({} bytes): \"{}\"",
                part.len(),
                part.escape_ascii()
            )
        })
        .collect::<Vec<_>>()
        .join("\n         ")
}

/// Byte-level mutations shared by the targets: flips, insertions of dictionary tokens,
/// deletions, duplications and splices with another seed.
pub fn mutate(rng: &mut Rng, data: &mut Vec<u8>, dictionary: &[&[u8]], other: &[u8]) {
    for _ in 0..rng.usize(1..=4) {
        let at = rng.usize(..=data.len());
        match rng.u32(0..7) {
            0 if !data.is_empty() => {
                let i = rng.usize(..data.len());
                data[i] ^= 1 << rng.u32(0..8);
            }
            1 if !data.is_empty() => {
                let i = rng.usize(..data.len());
                data[i] = rng.u8(..);
            }
            2 => {
                let token = dictionary[rng.usize(..dictionary.len())];
                data.splice(at..at, token.iter().copied());
            }
            3 if at < data.len() => {
                let end = rng.usize(at..=data.len().min(at + 32));
                data.drain(at..end);
            }
            4 if at < data.len() => {
                let end = rng.usize(at..=data.len().min(at + 64));
                let copy: Vec<u8> = data[at..end].to_vec();
                let to = rng.usize(..=data.len());
                data.splice(to..to, copy);
            }
            5 if !other.is_empty() => {
                let from = rng.usize(..other.len());
                let end = rng.usize(from..=other.len());
                data.splice(at..at, other[from..end].iter().copied());
            }
            _ => data.insert(at, rng.u8(..)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fuzz(per_input: Duration) -> Fuzz {
        Fuzz {
            target: "selftest",
            default_seconds: 0.2,
            per_input,
        }
    }

    fn some_input(rng: &mut Rng) -> Input {
        vec![vec![rng.u8(..)], vec![]]
    }

    #[test]
    fn quiet_checks_run_until_the_time_is_up() {
        assert!(fuzz(PER_INPUT).run(some_input, |_| Ok(())) > 10);
    }

    #[test]
    #[should_panic(expected = "fuzz selftest: panicked: boom")]
    fn a_panic_is_a_failure_naming_the_input() {
        // The default panic hook may print a slow backtrace first.
        fuzz(PER_INPUT).run(some_input, |_| panic!("boom"));
    }

    #[test]
    #[should_panic(expected = "hung")]
    fn a_slow_input_is_a_hang() {
        fuzz(Duration::from_millis(200)).run(some_input, |_| {
            thread::sleep(Duration::from_secs(2));
            Ok(())
        });
    }

    #[test]
    #[should_panic(expected = "replay: cargo xtask fuzz --target selftest --input")]
    fn a_problem_comes_with_its_replay() {
        fuzz(PER_INPUT).run(some_input, |input| match input[0][0] {
            0..128 => Ok(()),
            _ => Err("high byte".into()),
        });
    }

    #[test]
    fn hex_round_trips() {
        let bytes = [0u8, 1, 0x7f, 0xff];
        assert_eq!(unhex(&hex(&bytes)), Ok(bytes.to_vec()));
        assert!(unhex("abc").is_err());
    }
}
