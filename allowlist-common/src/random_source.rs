//! Bench only: source addresses drawn from `bpf_get_prandom_u32` words, so that
//! `BPF_PROG_TEST_RUN` (which repeats one frame) sees a new source for every packet, as a flood
//! of spoofed SYNs does. The `random-source` build of the XDP program and the floor and peer
//! programs of `bench-ebpf` draw the same way, so the drawing cost can be subtracted.

/// IPv4, uniform over 0.0.0.0–223.255.255.255 (unicast and reserved, no multicast):
/// `r * 0xE000_0000 / 2^32` (multiply-shift, no modulo bias).
#[inline(always)]
pub const fn v4(r: u32) -> [u8; 4] {
    ((((r as u64) * 0xE000_0000) >> 32) as u32).to_be_bytes()
}

/// IPv6, uniform over 2000::/3 in the top 64 bits (3 fixed bits, then 61 drawn from two
/// words); the low 64 bits are a multiplicative mix of the same draw (no entry shorter than
/// /64 looks at them, and a /128 is never hit by chance either way).
#[inline(always)]
pub const fn v6(a: u32, b: u32) -> [u8; 16] {
    let drawn = (a as u64) << 32 | b as u64;
    let high = 0x2000_0000_0000_0000 | (drawn >> 3);
    let low = drawn.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    ((high as u128) << 64 | low as u128).to_be_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v4_stays_below_multicast() {
        assert_eq!(v4(0), [0, 0, 0, 0]);
        assert_eq!(v4(u32::MAX), [223, 255, 255, 255]);
        assert_eq!(v4(1 << 31), [112, 0, 0, 0]);
    }

    #[test]
    fn v6_is_global_unicast() {
        for (a, b) in [(0, 0), (u32::MAX, u32::MAX), (0x1234_5678, 0x9abc_def0)] {
            assert_eq!(v6(a, b)[0] >> 5, 0b001);
        }
    }
}
