//! What allowlistd and its clients agree on: the control socket's messages ([`protocol`]),
//! the audit log's records and hash chain ([`audit`], written by the daemon, verified by
//! `allowlistctl audit verify` without it), how times are written ([`time`]), and the knock:
//! the signed UDP datagram that opens an address, and its key files ([`knock`]).

pub mod audit;
pub mod knock;
pub mod protocol;
pub mod time;

/// Where the daemon listens unless `control_socket` says otherwise.
pub const DEFAULT_SOCKET: &str = "/run/allowlist/allowlist.sock";
