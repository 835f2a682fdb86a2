//! Types shared by the XDP program and allowlistd. Everything here is `#[repr(C)]` plain data
//! with explicit padding, or a pure function both sides must agree on.
#![no_std]

pub mod maps;
pub mod random_source;
pub mod verdict;
