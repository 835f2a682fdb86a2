//! The programs `cargo xtask bench` measures allowlist's XDP program against, in one object:
//!
//! - `bench_empty`: returns XDP_PASS, the floor of BPF_PROG_TEST_RUN.
//! - `bench_draw_v4`, `bench_draw_v6`: draw a source address exactly as the `random-source`
//!   build of allowlist's program does, and pass; their cost over the floor is subtracted.
//! - `bench_lpm_v4`, `bench_lpm_v6`: draw a source the same way and look it up in a plain
//!   LPM trie (the design without a prefilter), filled by the bench with the same entries.
//! - `bench_lpm_v4_warm`, `bench_lpm_v6_warm`: the same lookup with a fixed source.
#![no_std]
#![no_main]

use allowlist_common::random_source;
use aya_ebpf::{
    bindings::xdp_action,
    helpers::bpf_get_prandom_u32,
    macros::{map, xdp},
    maps::{LpmTrie, lpm_trie::Key},
    programs::XdpContext,
};

// Sized by the bench at load time.
#[map]
static BENCH_V4: LpmTrie<[u8; 4], u32> = LpmTrie::with_max_entries(1024, 0);
#[map]
static BENCH_V6: LpmTrie<[u8; 16], u32> = LpmTrie::with_max_entries(1024, 0);

/// Fixed sources of the warm variants (198.18.2.2, 2001:db8:2::2): outside every list.
const WARM_V4: [u8; 4] = [198, 18, 2, 2];
const WARM_V6: [u8; 16] = [0x20, 0x01, 0x0d, 0xb8, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2];

#[inline(always)]
fn draw_v4() -> [u8; 4] {
    // SAFETY: a helper without arguments.
    random_source::v4(unsafe { bpf_get_prandom_u32() })
}

#[inline(always)]
fn draw_v6() -> [u8; 16] {
    // SAFETY: helpers without arguments.
    unsafe { random_source::v6(bpf_get_prandom_u32(), bpf_get_prandom_u32()) }
}

/// XDP_PASS whatever the value, in a way the compiler cannot prove (so the draw stays).
#[inline(always)]
fn pass_unless(never: bool) -> u32 {
    if never {
        xdp_action::XDP_DROP
    } else {
        xdp_action::XDP_PASS
    }
}

#[xdp]
pub fn bench_empty(_ctx: XdpContext) -> u32 {
    xdp_action::XDP_PASS
}

#[xdp]
pub fn bench_draw_v4(_ctx: XdpContext) -> u32 {
    // v4() never yields a first octet above 223.
    pass_unless(draw_v4()[0] == 0xff)
}

#[xdp]
pub fn bench_draw_v6(_ctx: XdpContext) -> u32 {
    let addr = draw_v6();
    pass_unless(addr[0] == 0xff && addr[15] == 0xff)
}

#[xdp]
pub fn bench_lpm_v4(_ctx: XdpContext) -> u32 {
    lookup_v4(draw_v4())
}

#[xdp]
pub fn bench_lpm_v6(_ctx: XdpContext) -> u32 {
    lookup_v6(draw_v6())
}

#[xdp]
pub fn bench_lpm_v4_warm(_ctx: XdpContext) -> u32 {
    lookup_v4(WARM_V4)
}

#[xdp]
pub fn bench_lpm_v6_warm(_ctx: XdpContext) -> u32 {
    lookup_v6(WARM_V6)
}

#[inline(always)]
fn lookup_v4(addr: [u8; 4]) -> u32 {
    match BENCH_V4.get(Key::new(32, addr)) {
        Some(_) => xdp_action::XDP_PASS,
        None => xdp_action::XDP_DROP,
    }
}

#[inline(always)]
fn lookup_v6(addr: [u8; 16]) -> u32 {
    match BENCH_V6.get(Key::new(128, addr)) {
        Some(_) => xdp_action::XDP_PASS,
        None => xdp_action::XDP_DROP,
    }
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";
