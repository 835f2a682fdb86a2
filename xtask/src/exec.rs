//! Running external commands: each is echoed before it runs, and a failure names the command and
//! its exit status.

use std::env;
use std::ffi::OsStr;
use std::fs;
use std::process::{Command, Output, Stdio};

use anyhow::{Context, Result, bail};

/// Runs `cmd` with inherited stdio and fails unless it exits with status 0.
pub fn run(cmd: &mut Command) -> Result<()> {
    echo(cmd);
    let status = cmd
        .status()
        .with_context(|| format!("could not start `{}`", command_line(cmd)))?;
    if !status.success() {
        bail!("`{}` failed: {status}", command_line(cmd));
    }
    Ok(())
}

/// Runs `cmd` and captures its output; the exit status is the caller's to judge, because for these
/// queries a non-zero status can be a plain "no".
pub fn query(cmd: &mut Command) -> Result<Output> {
    echo(cmd);
    cmd.stdin(Stdio::null())
        .output()
        .with_context(|| format!("could not start `{}`", command_line(cmd)))
}

/// Whether this process runs with effective uid 0 (apt and the demo need it).
pub fn is_root() -> Result<bool> {
    let status = fs::read_to_string("/proc/self/status").context("reading /proc/self/status")?;
    // "Uid:  real  effective  saved  filesystem"
    let euid = status
        .lines()
        .find_map(|line| line.strip_prefix("Uid:"))
        .and_then(|ids| ids.split_whitespace().nth(1))
        .context("no effective uid in /proc/self/status")?;
    Ok(euid == "0")
}

/// Prints `cmd` as a shell line, with the environment changes it carries, so a log can be replayed.
pub fn echo(cmd: &Command) {
    let mut unset = Vec::new();
    let mut set = Vec::new();
    for (name, value) in cmd.get_envs() {
        match value {
            Some(value) => set.push(format!("{}={}", name.display(), quote(value))),
            // Only mention removals that change something here.
            None if env::var_os(name).is_some() => unset.push(format!("-u {}", name.display())),
            None => {}
        }
    }
    let mut words = Vec::new();
    if !unset.is_empty() {
        words.push("env".to_owned());
        words.extend(unset);
    }
    words.extend(set);
    words.push(command_line(cmd));
    eprintln!("xtask: $ {}", words.join(" "));
}

/// The program and its arguments, shell-quoted where needed.
fn command_line(cmd: &Command) -> String {
    std::iter::once(cmd.get_program())
        .chain(cmd.get_args())
        .map(quote)
        .collect::<Vec<_>>()
        .join(" ")
}

fn quote(word: &OsStr) -> String {
    let word = word.to_string_lossy();
    let plain = |c: char| c.is_ascii_alphanumeric() || "-_./=:+,@%".contains(c);
    if !word.is_empty() && word.chars().all(plain) {
        word.into_owned()
    } else {
        format!("'{}'", word.replace('\'', r"'\''"))
    }
}
