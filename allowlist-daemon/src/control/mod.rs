//! The control socket: protocol (shared with allowlistctl) and server.

pub mod protocol;
pub mod server;
