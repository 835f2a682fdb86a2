//! The XDP program and its maps: loading the object (embedded at build time), pinning and
//! adopting pins, attaching to interfaces, and writing a config's [`Rules`] into the maps so
//! that the verdict is exact at every instant of a change. The only crate whose build needs the
//! compiled program (`cargo xtask build` makes it).
//!
//! [`Rules`]: allowlist_config::rules::Rules

pub mod attach;
pub mod bpffs;
pub mod clock;
pub mod filter;
pub mod kernel;
pub mod link_events;
pub mod prefilter;
