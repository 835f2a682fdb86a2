//! allowlistd's library: everything the two binaries and the end-to-end tests share.

pub mod attach;
pub mod audit;
pub mod blocked;
pub mod bpffs;
pub mod cli;
pub mod clock;
pub mod config;
pub mod control;
pub mod daemon;
pub mod daemon_args;
pub mod docs;
pub mod emergency;
pub mod filter;
pub mod hit_history;
pub mod link_events;
pub mod metrics;
pub mod notify;
pub mod prefilter;
pub mod rules;
pub mod sessions;
pub mod trusted_file;
pub mod words;
