//! What allowlistd and its clients agree on: the control socket's messages ([`protocol`]),
//! the audit log's records and hash chain ([`audit`], written by the daemon, verified by
//! `allowlistctl audit verify` without it), and how times are written ([`time`]).

pub mod audit;
pub mod protocol;
pub mod time;

/// Where the daemon listens unless `control_socket` says otherwise.
pub const DEFAULT_SOCKET: &str = "/run/allowlist/allowlist.sock";
