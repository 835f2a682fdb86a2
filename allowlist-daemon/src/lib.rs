//! allowlistd: the daemon. It owns everything stateful (the running config, revisions, the
//! audit trail, the emergency disable, hit history), keeps the loader's maps in step with
//! the config, and judges knocks (`knock`). The crates it builds on: `allowlist-config` (the
//! file), `allowlist-loader` (the program and its maps), `allowlist-control` (the socket's
//! messages and the audit log).

pub mod blocked;
pub mod check;
pub mod daemon;
pub mod daemon_args;
pub mod docs;
pub mod emergency;
pub mod hit_history;
pub mod knock;
pub mod logging;
pub mod metrics;
pub mod notify;
pub mod server;
pub mod sessions;
