//! allowlistd's library: everything the two binaries and the end-to-end tests share.

pub mod attach;
pub mod audit;
pub mod bpffs;
pub mod cli;
pub mod config;
pub mod control;
pub mod daemon;
pub mod emergency;
pub mod filter;
pub mod prefilter;
pub mod rules;
