//! allowlistctl: the admin's everyday tool, a thin client of the control socket.
//!
//! Exit codes: 0 success (for `test`: allowed); 1 `test` says blocked; 2 the daemon refused
//! or the input is invalid (the reason is on stderr); 3 the daemon could not be reached.

mod failure;
mod output;
mod socket;

use std::net::IpAddr;
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use failure::Failure;

use crate::control::protocol::{
    self, Caller, ChangeOptions, Command, InForce, ListQuery, Outcome, Reply, Request, Response,
};

pub const DEFAULT_SOCKET: &str = "/run/allowlist/allowlist.sock";
/// Long enough for a reload of a million entries, short enough not to hang a script forever.
const REPLY_TIMEOUT: Duration = Duration::from_secs(300);

#[derive(Parser)]
#[command(
    name = "allowlistctl",
    version,
    about = "Manage the live allowlist: entries, activation, tests.",
    after_help = "Exit codes: 0 ok (test: allowed), 1 test: blocked, 2 refused or invalid, 3 daemon unreachable. With --json, a failure also prints {\"error\": {\"kind\", \"message\", \"exit_code\"}} on stdout."
)]
pub struct Cli {
    /// The daemon's control socket [default: the control_socket of --config, else
    /// $ALLOWLIST_SOCKET, else that of /etc/allowlist/allowlist.toml, else
    /// /run/allowlist/allowlist.sock].
    #[arg(long, global = true, value_name = "PATH")]
    socket: Option<PathBuf>,
    /// Find the control socket in this config file (its control_socket key).
    #[arg(long, global = true, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Print the daemon's answer as JSON (for scripts).
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Active or not, entries and capacity, ports, interfaces, revision, counters, uptime.
    Status,
    /// Every entry with its comment, where it is written, and its hits.
    List {
        /// Only entries with no new connection for this long, e.g. 30d (never-hit ones too).
        #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
        unused: Option<Duration>,
        /// Only the entry covering this address.
        #[arg(long, value_name = "IP")]
        contains: Option<String>,
        /// Only entries whose comment contains TEXT (case-insensitive).
        #[arg(long, value_name = "TEXT")]
        comment: Option<String>,
        /// Only entries written in FILE: a list file, or the config file for its [[entries]].
        #[arg(long, value_name = "FILE")]
        file: Option<PathBuf>,
        /// At most N entries, the first in file order.
        #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
        limit: Option<u64>,
        /// Print only how many entries match.
        #[arg(long)]
        count: bool,
    },
    /// Add a network or single address.
    Add {
        /// e.g. 198.18.1.0/24, 2001:db8::/48, 198.18.7.7
        #[arg(required_unless_present = "current", conflicts_with = "current")]
        cidr: Option<String>,
        /// What the entry is for, e.g. "office" (at most 256 characters; shown by `list`).
        #[arg(long)]
        comment: Option<String>,
        /// Add your own address (from SSH_CONNECTION, or --current-ip).
        #[arg(long)]
        current: bool,
        #[command(flatten)]
        change: ChangeArgs,
    },
    /// Change an entry's network and/or comment in place (entries of the config file; an
    /// entry from a list file is edited in that file, then `reload`).
    Edit {
        /// The entry to change, as `list` shows it.
        cidr: String,
        /// The new network.
        #[arg(long = "cidr")]
        new_cidr: Option<String>,
        /// The new comment.
        #[arg(long)]
        comment: Option<String>,
        #[command(flatten)]
        change: ChangeArgs,
    },
    /// Remove an entry (of the config file; an entry from a list file is removed from that
    /// file, then `reload`).
    Remove {
        /// The entry to remove, as `list` shows it.
        cidr: String,
        #[command(flatten)]
        change: ChangeArgs,
    },
    /// Enforce the list.
    Activate {
        /// Add your own address first, in the same change.
        #[arg(long)]
        add_current: bool,
        /// Also end established connections to protected ports from sources no entry covers
        /// (the "users not listed are logged out" of SaaS allowlists).
        #[arg(long)]
        kill_unlisted: bool,
        #[command(flatten)]
        change: ChangeArgs,
    },
    /// Stop enforcing (entries are kept).
    Deactivate {
        #[command(flatten)]
        change: ChangeArgs,
    },
    /// The live verdict for a SYN from IP, read from the kernel's maps.
    Test {
        /// The source address to judge, e.g. 198.18.1.2.
        ip: String,
        /// Only this port (default: every protected port).
        #[arg(long)]
        port: Option<u16>,
    },
    /// Re-read the config file.
    Reload {
        /// Show what would change, change nothing.
        #[arg(long)]
        dry_run: bool,
        /// List every added and removed entry (above 50 changes only the first 10 each way
        /// are listed, and the rest counted).
        #[arg(long)]
        full: bool,
    },
    /// Keep a change made with --confirm-within.
    Confirm,
    /// Lift enforcement for a while (at most 24h); it ends by itself, even if allowlistd dies.
    #[command(
        override_usage = "allowlistctl emergency-disable [OPTIONS] --reason <REASON> [--for <DURATION>]"
    )]
    EmergencyDisable {
        /// Why (required; goes into the audit log).
        #[arg(long, required_unless_present = "extend", conflicts_with = "extend")]
        reason: Option<String>,
        /// How long, e.g. 90m, 4h, 2h30m (at most 24h).
        #[arg(long = "for", value_name = "DURATION", default_value = "24h", value_parser = humantime::parse_duration)]
        duration: Duration,
        /// If one is in force already: put this one (its reason, --for from now) in its place.
        #[arg(long, conflicts_with = "extend")]
        replace: bool,
        /// If one is in force already: keep its reason and end it --for from now (later than
        /// it ends now).
        #[arg(long)]
        extend: bool,
    },
    /// End an emergency disable early.
    EmergencyEnd,
    /// Established connections to protected ports, and whether an entry covers each peer.
    Sessions {
        /// Only connections to this port.
        #[arg(long)]
        port: Option<u16>,
        /// End the connections from sources no entry covers (audited).
        #[arg(long)]
        kill_unlisted: bool,
        /// Your address, when not in an SSH session: --kill-unlisted refuses to end your own
        /// connection unless --force.
        #[arg(long, value_name = "IP")]
        current_ip: Option<IpAddr>,
        /// With --kill-unlisted: end your own connection too, should no entry cover it.
        #[arg(long)]
        force: bool,
    },
    /// The sources blocked most often: who is knocking on the protected ports.
    Blocked {
        /// How many sources to show.
        #[arg(long, default_value_t = 20)]
        top: usize,
        /// Keep watching: print sources as they are blocked (Ctrl-C stops).
        #[arg(long)]
        follow: bool,
    },
    /// Show the audit log, or verify its hash chain.
    Audit {
        #[command(subcommand)]
        verify: Option<AuditCmd>,
        /// Only records since this time (RFC 3339, e.g. 2026-11-23T14:00:00Z) or this long ago (e.g. 2h).
        #[arg(long)]
        since: Option<String>,
        /// Only records of this action.
        #[arg(long, value_enum)]
        action: Option<crate::audit::Action>,
    },
}

#[derive(Subcommand)]
enum AuditCmd {
    /// Check the chain: exit 0 intact, 1 broken (the first broken record is named).
    Verify {
        /// Files to check, oldest first (default: the daemon's own log files).
        files: Vec<PathBuf>,
    },
}

#[derive(Args)]
struct ChangeArgs {
    /// Refuse unless the list is still at this revision (see `list` or `status`).
    #[arg(long, value_name = "N")]
    if_revision: Option<u64>,
    /// Apply even if the change blocks your own address.
    #[arg(long)]
    force: bool,
    /// Roll the change back unless `allowlistctl confirm` follows within this time (e.g. 60s, 5m).
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    confirm_within: Option<Duration>,
    /// Your address, when not in an SSH session (SSH_CONNECTION is used otherwise).
    #[arg(long, value_name = "IP")]
    current_ip: Option<IpAddr>,
}

fn parse_duration(text: &str) -> Result<Duration, String> {
    let duration = humantime::parse_duration(text)
        .map_err(|e| format!("`{text}`: {e} (e.g. 60s, 5m, 1h30m)"))?;
    if duration.is_zero() {
        return Err("must be longer than zero".into());
    }
    Ok(duration)
}

/// The admin's own address and the local port of their session: from --current-ip, else
/// from the SSH environment ("client_ip client_port server_ip server_port").
fn caller(current_ip: Option<IpAddr>) -> Option<Caller> {
    if let Some(ip) = current_ip {
        return Some(Caller { ip, port: None });
    }
    if let Ok(conn) = std::env::var("SSH_CONNECTION") {
        let fields: Vec<&str> = conn.split_whitespace().collect();
        if let [ip, _, _, port] = fields[..] {
            return Some(Caller {
                ip: ip.parse().ok()?,
                port: port.parse().ok(),
            });
        }
    }
    let client = std::env::var("SSH_CLIENT").ok()?;
    let fields: Vec<&str> = client.split_whitespace().collect();
    match fields[..] {
        [ip, _, port] => Some(Caller {
            ip: ip.parse().ok()?,
            port: port.parse().ok(),
        }),
        _ => None,
    }
}

impl ChangeArgs {
    fn options(&self) -> ChangeOptions {
        ChangeOptions {
            if_revision: self.if_revision,
            force: self.force,
            caller: caller(self.current_ip),
            confirm_within_secs: self.confirm_within.map(|d| d.as_secs().max(1)),
        }
    }
}

/// Turns the parsed command line into a request.
fn request(command: Cmd) -> Result<Request, Failure> {
    let (command, options) = match command {
        Cmd::Status => (Command::Status, ChangeOptions::default()),
        Cmd::List {
            unused,
            contains,
            comment,
            file,
            limit,
            count,
        } => (
            Command::List {
                unused_for_secs: unused.map(|d| d.as_secs()),
                query: ListQuery {
                    contains,
                    comment,
                    file: file.map(|f| list_file_arg(&f)),
                    limit,
                    count,
                },
            },
            ChangeOptions::default(),
        ),
        Cmd::Add {
            cidr,
            comment,
            current,
            change,
        } => {
            let options = change.options();
            let cidr = match (cidr, current) {
                (Some(cidr), _) => cidr,
                (None, _) => options
                    .caller
                    .ok_or_else(|| Failure::invalid("--current needs your address: run it from your SSH session or pass --current-ip"))?
                    .ip
                    .to_string(),
            };
            (Command::Add { cidr, comment }, options)
        }
        Cmd::Edit {
            cidr,
            new_cidr,
            comment,
            change,
        } => (
            Command::Edit {
                cidr,
                new_cidr,
                comment,
            },
            change.options(),
        ),
        Cmd::Remove { cidr, change } => (Command::Remove { cidr }, change.options()),
        Cmd::Activate {
            add_current,
            kill_unlisted,
            change,
        } => (
            Command::Activate {
                add_current,
                kill_unlisted,
            },
            change.options(),
        ),
        Cmd::Deactivate { change } => (Command::Deactivate, change.options()),
        Cmd::Test { ip, port } => (Command::Test { ip, port }, ChangeOptions::default()),
        Cmd::Reload { dry_run, full } => {
            (Command::Reload { dry_run, full }, ChangeOptions::default())
        }
        Cmd::Confirm => (Command::Confirm, ChangeOptions::default()),
        // The daemon checks the rules (and audits a refusal), not the CLI.
        Cmd::EmergencyDisable {
            reason,
            duration,
            replace,
            extend,
        } => (
            Command::EmergencyDisable {
                reason: reason.unwrap_or_default(),
                for_secs: duration.as_secs(),
                in_force: match (replace, extend) {
                    (_, true) => InForce::Extend,
                    (true, _) => InForce::Replace,
                    _ => InForce::Refuse,
                },
            },
            ChangeOptions::default(),
        ),
        Cmd::EmergencyEnd => (Command::EmergencyEnd, ChangeOptions::default()),
        Cmd::Sessions {
            port,
            kill_unlisted,
            current_ip,
            force,
        } => (
            Command::Sessions {
                port,
                kill_unlisted,
            },
            ChangeOptions {
                caller: caller(current_ip),
                force,
                ..ChangeOptions::default()
            },
        ),
        Cmd::Blocked { top, .. } => (
            Command::Blocked { top: Some(top) },
            ChangeOptions::default(),
        ),
        Cmd::Audit {
            verify: Some(AuditCmd::Verify { .. }),
            ..
        } => (Command::AuditVerify, ChangeOptions::default()),
        Cmd::Audit { since, action, .. } => {
            let action = action.map(|a| a.name().to_owned());
            (Command::Audit { since, action }, ChangeOptions::default())
        }
    };
    Ok(Request {
        version: protocol::VERSION,
        command,
        options,
    })
}

/// `list --file FILE` for the daemon: a file that exists from here as its absolute path
/// (the daemon runs elsewhere), anything else as given (e.g. as `list_files` names it).
fn list_file_arg(file: &std::path::Path) -> String {
    match std::path::absolute(file) {
        Ok(absolute) if file.is_relative() && file.exists() => absolute,
        _ => file.to_path_buf(),
    }
    .display()
    .to_string()
}

fn exchange(target: &socket::Target, request: &Request) -> Result<Response, Failure> {
    let socket = &target.path;
    let unreachable = |e: std::io::Error| {
        let hint = match e.kind() {
            std::io::ErrorKind::PermissionDenied => {
                " (only root and members of control_group may use it)".to_owned()
            }
            std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused => format!(
                " (is allowlistd running? this socket is {}; --socket, --config or ${} name another)",
                target.found,
                socket::ENV
            ),
            _ => String::new(),
        };
        Failure::unreachable(format!(
            "cannot reach allowlistd at {}: {e}{hint}",
            socket.display()
        ))
    };
    let mut stream = UnixStream::connect(socket).map_err(unreachable)?;
    stream
        .set_read_timeout(Some(REPLY_TIMEOUT))
        .map_err(unreachable)?;
    // If sending fails (the daemon answered early and closed, e.g. to refuse us), its answer
    // may still be waiting: read it before blaming the connection.
    let sent = protocol::write_frame(&mut stream, request);
    let body = match protocol::read_frame(&mut stream, protocol::MAX_REPLY) {
        Ok(body) => body,
        Err(e) => {
            return Err(match sent {
                Err(send) => unreachable(send),
                Ok(()) => Failure::unreachable(format!(
                    "no answer from allowlistd at {}: {e}",
                    socket.display()
                )),
            });
        }
    };
    serde_json::from_slice(&body)
        .map_err(|e| Failure::unreachable(format!("unreadable answer from allowlistd: {e}")))
}

/// `audit verify FILE...`: checked right here, no daemon needed (e.g. on a copy).
fn verify_files(files: &[PathBuf], json: bool) -> ExitCode {
    match crate::audit::verify(files) {
        Ok(verification) => print_reply(&Reply::Verify(verification), json),
        Err(e) => Failure::invalid(e.to_string()).report(json),
    }
}

/// `blocked --follow`: asks every second and prints each source whose count moved.
fn follow_blocked(socket: &socket::Target, top: usize, json: bool) -> ExitCode {
    let request = Request {
        version: protocol::VERSION,
        command: Command::Blocked { top: Some(top) },
        options: ChangeOptions::default(),
    };
    let mut seen: std::collections::HashMap<(IpAddr, u16), u64> = std::collections::HashMap::new();
    loop {
        let response = match exchange(socket, &request) {
            Ok(response) => response,
            Err(failure) => return failure.report(json),
        };
        let report = match response.outcome {
            Outcome::Ok {
                reply: Reply::Blocked(report),
            } => report,
            Outcome::Ok { .. } => {
                return Failure::unreachable("unexpected answer from allowlistd").report(json);
            }
            Outcome::Error { kind, message } => {
                return Failure::refused(kind, message).report(json);
            }
        };
        for source in &report.sources {
            let key = (source.source, source.port);
            if seen.get(&key) == Some(&source.count) {
                continue;
            }
            seen.insert(key, source.count);
            if json {
                println!("{}", serde_json::to_string(source).expect("json"));
            } else {
                println!("{}", output::blocked_line(source));
            }
        }
        std::thread::sleep(Duration::from_secs(1));
    }
}

/// Prints a reply; its exit code says what a script needs: test blocked, chain broken.
fn print_reply(reply: &Reply, json: bool) -> ExitCode {
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(reply).expect("replies serialize")
        );
    } else {
        print!("{}", output::render(reply));
    }
    match reply {
        Reply::Test(report) if report.verdicts.iter().any(|v| !v.allowed) => ExitCode::from(1),
        Reply::Verify(v) if v.first_break.is_some() => ExitCode::from(1),
        _ => ExitCode::SUCCESS,
    }
}

pub fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(error) => {
            let json = std::env::args_os()
                .skip(1)
                .take_while(|a| a != "--")
                .any(|a| a == "--json");
            return failure::usage(error, json);
        }
    };
    let json = cli.json;
    if let Cmd::Audit {
        verify: Some(AuditCmd::Verify { files }),
        ..
    } = &cli.command
        && !files.is_empty()
    {
        return verify_files(files, json);
    }
    let socket = match socket::resolve(cli.socket, cli.config.as_deref()) {
        Ok(socket) => socket,
        Err(failure) => return failure.report(json),
    };
    if let Cmd::Blocked { top, follow: true } = cli.command {
        return follow_blocked(&socket, top, json);
    }
    let count = matches!(cli.command, Cmd::List { count: true, .. });
    let response = match request(cli.command).and_then(|r| exchange(&socket, &r)) {
        Ok(response) => response,
        Err(failure) => return failure.report(json),
    };
    match response.outcome {
        Outcome::Ok {
            reply: Reply::List(list),
        } if count && !json => {
            println!("{}", list.matched);
            ExitCode::SUCCESS
        }
        Outcome::Ok { reply } => print_reply(&reply, json),
        Outcome::Error { kind, message } => Failure::refused(kind, message).report(json),
    }
}
