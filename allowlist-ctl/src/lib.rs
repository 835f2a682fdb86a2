//! allowlistctl: the admin's everyday tool, a thin client of the control socket.
//!
//! Exit codes: 0 success (for `test`: allowed); 1 `test` says blocked; 2 the daemon refused
//! or the input is invalid (the reason is on stderr); 3 the daemon could not be reached.

mod args;
mod connection;
mod failure;
mod knock;
mod output;
mod request;
mod socket;

pub use args::Cli;

use std::net::IpAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use allowlist_control::protocol::{self, Answer, ChangeOptions, Command, Reply, Request};
use clap::Parser;

use args::{AuditCmd, Cmd};
use connection::exchange;
use failure::{Failure, exit};
use request::request;

/// `audit verify FILE...`: checked right here, no daemon needed (e.g. on a copy).
fn verify_files(files: &[PathBuf], json: bool) -> ExitCode {
    match allowlist_control::audit::verify(files) {
        Ok(verification) => print_reply(&Reply::Verify(verification), json),
        Err(e) => Failure::invalid(e.to_string()).report(json),
    }
}

/// `blocked --follow`: asks every second and prints each source whose count moved.
fn follow_blocked(
    socket: &socket::Target,
    top: usize,
    list: Option<String>,
    json: bool,
) -> ExitCode {
    let request = Request {
        version: protocol::VERSION,
        command: Command::Blocked {
            top: Some(top),
            list,
        },
        options: ChangeOptions::default(),
    };
    let mut seen: std::collections::HashMap<(IpAddr, u16), u64> = std::collections::HashMap::new();
    loop {
        let response = match exchange(socket, &request) {
            Ok(response) => response,
            Err(failure) => return failure.report(json),
        };
        let report = match response.outcome {
            Answer::Ok {
                reply: Reply::Blocked(report),
            } => report,
            Answer::Ok { .. } => {
                return Failure::unreachable("unexpected answer from allowlistd").report(json);
            }
            Answer::Error { kind, message } => {
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
        Reply::Test(report) if report.verdicts.iter().any(|v| !v.allowed) => {
            ExitCode::from(exit::NEGATIVE)
        }
        Reply::Verify(v) if v.first_break.is_some() => ExitCode::from(exit::NEGATIVE),
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
    // A remote host, not the daemon's socket.
    if let Cmd::Knock(args) = &cli.command {
        return knock::run(args, json);
    }
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
    if let Cmd::Blocked {
        top,
        follow: true,
        list,
    } = cli.command
    {
        return follow_blocked(&socket, top, list, json);
    }
    let count = matches!(cli.command, Cmd::List { count: true, .. });
    let lists = matches!(cli.command, Cmd::Lists);
    let on_behalf_of = cli.on_behalf_of;
    let response = match request(cli.command)
        .map(|mut r| {
            r.options.on_behalf_of = on_behalf_of;
            r
        })
        .and_then(|r| exchange(&socket, &r))
    {
        Ok(response) => response,
        Err(failure) => return failure.report(json),
    };
    match response.outcome {
        Answer::Ok {
            reply: Reply::List(list),
        } if count && !json => {
            println!("{}", list.matched);
            ExitCode::SUCCESS
        }
        Answer::Ok {
            reply: Reply::Status(status),
        } if lists => {
            if json {
                let lists = serde_json::to_string_pretty(&status.lists).expect("lists serialize");
                println!("{lists}");
            } else {
                print!("{}", output::render_lists(&status.lists));
            }
            ExitCode::SUCCESS
        }
        Answer::Ok { reply } => print_reply(&reply, json),
        Answer::Error { kind, message } => Failure::refused(kind, message).report(json),
    }
}
