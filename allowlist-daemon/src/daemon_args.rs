//! allowlistd's command line, kept in the library so that the man page and the shell
//! completions (`allowlist-docs`) are generated from the same definition the binary parses.

use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;

use allowlist_config as config;

use crate::check::Candidate;

#[derive(Parser, Debug)]
#[command(
    name = "allowlistd",
    version,
    about = "Drops new TCP connections to protected ports from sources outside the allowlist (XDP).",
    override_usage = "allowlistd [--config <CONFIG>]\n       \
        allowlistd --check [--all-problems] [--config <CONFIG>] [--candidate <FILE=NEW>]...\n       \
        allowlistd --emergency-disable-on-start --reason <REASON> [--for <DURATION>] [--config <CONFIG>]"
)]
pub struct Args {
    /// The config file.
    #[arg(long, short, default_value = config::DEFAULT_PATH)]
    pub config: PathBuf,
    /// Validate the config file, and that this kernel has what the program needs, and exit: 0 if
    /// both hold, 1 if not. Changes nothing in the kernel.
    #[arg(long)]
    pub check: bool,
    /// With --check: print every problem, not only the first 50 (the rest are counted).
    #[arg(long, requires = "check")]
    pub all_problems: bool,
    /// With --check: check the set as it would be with NEW's text in FILE (the config file, or
    /// a drop-in an `include` pattern matches, written yet or not); repeatable. For a config
    /// management tool's validate step, which holds the new text in a temporary file, e.g.
    /// `allowlistd --check --candidate /etc/allowlist/conf.d/20-team.toml=%s`.
    #[arg(long, requires = "check", value_name = "FILE=NEW")]
    pub candidate: Vec<Candidate>,
    /// Break glass: start with enforcement lifted for --for (at most 24h), audited. Ends by
    /// itself.
    #[arg(long, requires = "reason")]
    pub emergency_disable_on_start: bool,
    /// Why the emergency disable is needed (goes into the audit log).
    #[arg(long, requires = "emergency_disable_on_start")]
    pub reason: Option<String>,
    /// How long the emergency disable lasts, e.g. 90m, 4h (default and maximum 24h).
    #[arg(long = "for", value_name = "DURATION", default_value = "24h", value_parser = humantime::parse_duration)]
    pub duration: Duration,
}
