//! How allowlistctl fails: the reason on stderr and, with `--json`, one JSON object on stdout
//! (`{"error": {"kind", "message", "exit_code"}}`), whatever failed: the command line, a
//! local check, the daemon's refusal, or the daemon being out of reach.

use std::process::ExitCode;

use allowlist_control::protocol::ErrorKind;

/// Kinds allowlistctl itself reports, beside the daemon's [`ErrorKind`]s.
pub const USAGE: &str = "usage";
pub const INVALID: &str = "invalid";
pub const UNREACHABLE: &str = "unreachable";

/// allowlistctl's exit codes beside 0 (the README's "Exit codes").
pub mod exit {
    /// `test`: blocked on some port asked; `audit verify`: the chain is broken.
    pub const NEGATIVE: u8 = 1;
    /// Refused by the daemon, or invalid input.
    pub const REFUSED: u8 = 2;
    /// The daemon could not be reached (or gave no usable answer).
    pub const UNREACHABLE: u8 = 3;
}

#[derive(Debug)]
pub struct Failure {
    kind: String,
    message: String,
    exit_code: u8,
}

impl Failure {
    /// The command line or a local check refused it (exit 2).
    pub fn invalid(message: impl Into<String>) -> Failure {
        Failure::new(INVALID, message, exit::REFUSED)
    }

    /// No (usable) answer from the daemon (exit 3).
    pub fn unreachable(message: impl Into<String>) -> Failure {
        Failure::new(UNREACHABLE, message, exit::UNREACHABLE)
    }

    /// The daemon refused (exit 2), with its kind.
    pub fn refused(kind: ErrorKind, message: impl Into<String>) -> Failure {
        let kind = serde_json::to_value(kind)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_else(|| INVALID.to_owned());
        Failure::new(&kind, message, exit::REFUSED)
    }

    fn new(kind: &str, message: impl Into<String>, exit_code: u8) -> Failure {
        Failure {
            kind: kind.to_owned(),
            message: message.into(),
            exit_code,
        }
    }

    /// Prints it (JSON on stdout too with `json`) and gives the exit code.
    pub fn report(&self, json: bool) -> ExitCode {
        if json {
            self.print_json();
        }
        eprintln!("allowlistctl: {}", self.message);
        ExitCode::from(self.exit_code)
    }

    fn print_json(&self) {
        let error = serde_json::json!({ "error": {
            "kind": self.kind,
            "message": self.message,
            "exit_code": self.exit_code,
        }});
        println!("{}", serde_json::to_string_pretty(&error).expect("json"));
    }
}

/// A command line clap refused. Help and version requests are not failures: printed as
/// clap prints them. `json` is whether `--json` was among the arguments (clap could not
/// tell us).
pub fn usage(error: clap::Error, json: bool) -> ExitCode {
    use clap::error::ErrorKind as Clap;
    if matches!(error.kind(), Clap::DisplayHelp | Clap::DisplayVersion) || !json {
        error.exit();
    }
    // Clap's message without the usage and the hint that follow it, on one line.
    let text = error.render().to_string();
    let message: Vec<&str> = text
        .lines()
        .take_while(|l| !l.trim().is_empty())
        .map(str::trim)
        .collect();
    let message = message.join(" ");
    let message = message.strip_prefix("error: ").unwrap_or(&message);
    let code = u8::try_from(error.exit_code()).unwrap_or(exit::REFUSED);
    // stdout gets the JSON object, stderr clap's full text (with the usage).
    Failure::new(USAGE, message, code).print_json();
    let _ = error.print();
    ExitCode::from(code)
}
