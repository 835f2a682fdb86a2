//! The programs `cargo xtask bench` measures allowlist's XDP program against, in one object:
//!
//! - `bench_empty`: returns XDP_PASS, the floor of BPF_PROG_TEST_RUN.
//! - `bench_draw_v4`, `bench_draw_v6`: draw a source address exactly as the `random-source`
//!   build of allowlist's program does, and pass; their cost over the floor is subtracted.
//! - `bench_lpm_v4`, `bench_lpm_v6`: draw a source the same way and look it up in a plain
//!   LPM trie (the design without a prefilter), filled by the bench with the same entries.
//! - `bench_lpm_v4_warm`, `bench_lpm_v6_warm`: the same lookup with a fixed source.
//! - `bench_drop`: drops every frame, the floor of the flood: what the receiver spends on a
//!   frame that no filter could spend less on.
//! - `bench_parse_drop`: parses Ethernet, IPv4 or IPv6 and TCP as far as the flags and drops
//!   SYNs (passes the rest), the floor of any filter that must find a SYN before judging it.
//! - `bench_gen_v4`, `bench_gen_v6`: the flood's generator on the NIC path, run by
//!   `BPF_PROG_TEST_RUN` in live-frame mode: each run writes the next source of its pool (with
//!   the checksums the bench computed for it) into the frame and redirects it to the veth in
//!   `GEN_CONFIG`, whose peer receives it as an xdp_frame.
#![no_std]
#![no_main]

use allowlist_common::random_source;
use aya_ebpf::{
    bindings::xdp_action,
    helpers::{bpf_get_prandom_u32, bpf_redirect},
    macros::{map, xdp},
    maps::{Array, LpmTrie, lpm_trie::Key},
    programs::XdpContext,
};

// Sized by the bench at load time.
#[map]
static BENCH_V4: LpmTrie<[u8; 4], u32> = LpmTrie::with_max_entries(1024, 0);
#[map]
static BENCH_V6: LpmTrie<[u8; 16], u32> = LpmTrie::with_max_entries(1024, 0);

/// The generator's pools, sized and filled by the bench: for IPv4 the source (4 bytes), then
/// the IPv4 and TCP checksums of the frame with that source (2 each); for IPv6 the source (16
/// bytes), the TCP checksum (2) and 2 bytes of padding.
#[map]
static GEN_POOL_V4: Array<[u8; 8]> = Array::with_max_entries(1, 0);
#[map]
static GEN_POOL_V6: Array<[u8; 20]> = Array::with_max_entries(1, 0);
/// `GEN_IFINDEX`, `GEN_LEN_V4`, `GEN_LEN_V6` are written by the bench; `GEN_NEXT` is the
/// generator's position in its pool (it runs on one CPU).
#[map]
static GEN_CONFIG: Array<u32> = Array::with_max_entries(4, 0);
const GEN_IFINDEX: u32 = 0;
const GEN_LEN_V4: u32 = 1;
const GEN_LEN_V6: u32 = 2;
const GEN_NEXT: u32 = 3;

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

#[xdp]
pub fn bench_drop(_ctx: XdpContext) -> u32 {
    xdp_action::XDP_DROP
}

#[xdp]
pub fn bench_parse_drop(ctx: XdpContext) -> u32 {
    match tcp_flags(&ctx) {
        // SYN without ACK.
        Some(flags) if flags & 0x12 == 0x02 => xdp_action::XDP_DROP,
        _ => xdp_action::XDP_PASS,
    }
}

/// `N` bytes at `offset` of the frame, if the frame holds them.
#[inline(always)]
fn at<const N: usize>(ctx: &XdpContext, offset: usize) -> Option<*mut [u8; N]> {
    let start = ctx.data();
    if start + offset + N > ctx.data_end() {
        return None;
    }
    Some((start + offset) as *mut [u8; N])
}

/// The TCP flags of an untagged IPv4 (any IHL) or IPv6 (TCP as the first next header) frame.
#[inline(always)]
fn tcp_flags(ctx: &XdpContext) -> Option<u8> {
    // SAFETY: `at` checked that the bytes are in the frame.
    unsafe {
        let eth = &*at::<14>(ctx, 0)?;
        let tcp = match u16::from_be_bytes([eth[12], eth[13]]) {
            0x0800 => {
                let ip = &*at::<20>(ctx, 14)?;
                if ip[9] != 6 {
                    return None;
                }
                14 + usize::from(ip[0] & 0x0f) * 4
            }
            0x86dd => {
                let ip = &*at::<40>(ctx, 14)?;
                if ip[6] != 6 {
                    return None;
                }
                54
            }
            _ => return None,
        };
        Some((*at::<14>(ctx, tcp)?)[13])
    }
}

#[xdp]
pub fn bench_gen_v4(ctx: XdpContext) -> u32 {
    let Some(entry) = next_entry(&GEN_POOL_V4, GEN_LEN_V4) else {
        return xdp_action::XDP_ABORTED;
    };
    let Some(frame) = at::<60>(&ctx, 0) else {
        return xdp_action::XDP_ABORTED;
    };
    // SAFETY: the 60 bytes are in the frame.
    unsafe {
        let frame = &mut *frame;
        frame[26..30].copy_from_slice(&entry[0..4]);
        frame[24..26].copy_from_slice(&entry[4..6]);
        frame[50..52].copy_from_slice(&entry[6..8]);
    }
    redirect()
}

#[xdp]
pub fn bench_gen_v6(ctx: XdpContext) -> u32 {
    let Some(entry) = next_entry(&GEN_POOL_V6, GEN_LEN_V6) else {
        return xdp_action::XDP_ABORTED;
    };
    let Some(frame) = at::<74>(&ctx, 0) else {
        return xdp_action::XDP_ABORTED;
    };
    // SAFETY: the 74 bytes are in the frame.
    unsafe {
        let frame = &mut *frame;
        frame[22..38].copy_from_slice(&entry[0..16]);
        frame[70..72].copy_from_slice(&entry[16..18]);
    }
    redirect()
}

/// The pool's entry at the generator's position, which moves on by one.
#[inline(always)]
fn next_entry<const N: usize>(pool: &Array<[u8; N]>, len_slot: u32) -> Option<[u8; N]> {
    let len = *GEN_CONFIG.get(len_slot)?;
    let next = GEN_CONFIG.get_ptr_mut(GEN_NEXT)?;
    if len == 0 {
        return None;
    }
    // SAFETY: a pointer into the map's value, valid for this run.
    let i = unsafe {
        let i = *next % len;
        *next = i + 1;
        i
    };
    pool.get(i).copied()
}

#[inline(always)]
fn redirect() -> u32 {
    let Some(&ifindex) = GEN_CONFIG.get(GEN_IFINDEX) else {
        return xdp_action::XDP_ABORTED;
    };
    // SAFETY: a helper taking plain values.
    unsafe { bpf_redirect(ifindex, 0) as u32 }
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
