//! The parsed command line as a request to the daemon: what to do, and the change options
//! (the caller's own address, for lockout protection, among them).

use std::net::IpAddr;

use allowlist_control::protocol::{
    self, Caller, ChangeOptions, Command, End, InForce, ListQuery, Request,
};

use crate::args::{AuditCmd, ChangeArgs, Cmd, EndArgs};
use crate::failure::Failure;

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

impl EndArgs {
    fn end(&self) -> Option<End> {
        match (&self.for_, &self.until) {
            (Some(d), _) => Some(End::AfterSecs(d.as_secs())),
            (None, Some(time)) => Some(End::At(time.clone())),
            (None, None) => None,
        }
    }
}

impl ChangeArgs {
    fn options(&self) -> ChangeOptions {
        ChangeOptions {
            if_revision: self.if_revision,
            force: self.force,
            caller: caller(self.current_ip),
            confirm_within_secs: self.confirm_within.map(|d| d.as_secs().max(1)),
            on_behalf_of: None,
        }
    }
}

/// Turns the parsed command line into a request.
pub(crate) fn request(command: Cmd) -> Result<Request, Failure> {
    let (command, options) = match command {
        Cmd::Status | Cmd::Lists => (Command::Status, ChangeOptions::default()),
        Cmd::List {
            unused,
            contains,
            comment,
            file,
            limit,
            count,
            list,
            timed,
            expired,
        } => (
            Command::List {
                unused_for_secs: unused.map(|d| d.as_secs()),
                query: ListQuery {
                    contains,
                    comment,
                    file: file.map(|f| list_file_arg(&f)),
                    limit,
                    count,
                    list,
                    timed,
                    expired_within_secs: expired.map(|d| d.as_secs()),
                },
            },
            ChangeOptions::default(),
        ),
        Cmd::Add {
            cidr,
            comment,
            current,
            lists,
            file,
            end,
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
            (
                Command::Add {
                    cidr,
                    comment,
                    lists,
                    ends: end.end(),
                    file: file.map(|f| list_file_arg(&f)),
                },
                options,
            )
        }
        Cmd::Edit {
            cidr,
            new_cidr,
            comment,
            list,
            end,
            permanent,
            change,
        } => (
            Command::Edit {
                cidr,
                new_cidr,
                comment,
                list,
                ends: if permanent {
                    Some(End::Never)
                } else {
                    end.end()
                },
            },
            change.options(),
        ),
        Cmd::Remove { cidr, list, change } => (Command::Remove { cidr, list }, change.options()),
        Cmd::Activate {
            add_current,
            kill_unlisted,
            list,
            change,
        } => (
            Command::Activate {
                add_current,
                kill_unlisted,
                list,
            },
            change.options(),
        ),
        Cmd::Deactivate { list, change } => (Command::Deactivate { list }, change.options()),
        Cmd::AddList {
            name,
            tcp,
            udp,
            mode,
            file,
            change,
        } => (
            Command::AddList {
                list: name,
                mode,
                tcp_ports: tcp,
                udp_ports: udp,
                file: file.map(|f| list_file_arg(&f)),
            },
            change.options(),
        ),
        Cmd::RemoveList { name, change } => (Command::RemoveList { list: name }, change.options()),
        Cmd::SetPorts {
            name,
            tcp,
            udp,
            change,
        } => {
            if tcp.is_none() && udp.is_none() {
                return Err(Failure::invalid(
                    "nothing to set: give --tcp and/or --udp (e.g. --tcp 22,2222, or --udp none)",
                ));
            }
            (
                Command::SetPorts {
                    list: name,
                    tcp_ports: tcp.as_deref().map(ports_arg).transpose()?,
                    udp_ports: udp.as_deref().map(ports_arg).transpose()?,
                },
                change.options(),
            )
        }
        Cmd::Test {
            ip,
            port,
            udp,
            list,
        } => (
            Command::Test {
                ip,
                port,
                udp,
                list,
            },
            ChangeOptions::default(),
        ),
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
            end,
            current_ip,
            force,
            list,
        } => (
            Command::Sessions {
                port,
                kill_unlisted,
                end,
                list,
            },
            ChangeOptions {
                caller: caller(current_ip),
                force,
                ..ChangeOptions::default()
            },
        ),
        Cmd::Blocked { top, list, .. } => (
            Command::Blocked {
                top: Some(top),
                list,
            },
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
        Cmd::Knock(_) => {
            return Err(Failure::invalid(
                "`knock` sends a datagram to a host, not a request to the daemon",
            ));
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

/// `22`, `22,2222`, or `none`.
fn ports_arg(text: &str) -> Result<Vec<u16>, Failure> {
    if text.trim() == "none" {
        return Ok(Vec::new());
    }
    text.split(',')
        .map(|p| {
            p.trim()
                .parse::<u16>()
                .ok()
                .filter(|&p| p > 0)
                .ok_or_else(|| {
                    Failure::invalid(format!(
                        "`{p}` is not a port (1..=65535); write e.g. 22 or 22,2222, or none"
                    ))
                })
        })
        .collect()
}
