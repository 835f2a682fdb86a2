//! Seeded random inputs for the differential test: allowlist setups and the frames judged
//! under them. Everything comes from one `fastrand::Rng`, so a seed replays a whole run.

mod addresses;
pub mod frames;
pub mod setups;

pub use fastrand::Rng;

/// Picks an index by weight.
fn weighted(rng: &mut Rng, weights: &[u32]) -> usize {
    let total: u32 = weights.iter().sum();
    let mut pick = rng.u32(0..total);
    for (i, weight) in weights.iter().enumerate() {
        if pick < *weight {
            return i;
        }
        pick -= weight;
    }
    unreachable!("pick < total")
}

/// One of `items`, uniformly. The items come first so that they may draw from `rng` too.
fn pick<T: Copy, const N: usize>(items: [T; N], rng: &mut Rng) -> T {
    items[rng.usize(..N)]
}

/// True `p` times in a hundred.
pub fn percent(rng: &mut Rng, p: u32) -> bool {
    rng.u32(0..100) < p
}

/// `n` random bytes.
pub fn bytes(rng: &mut Rng, n: usize) -> Vec<u8> {
    let mut out = vec![0; n];
    rng.fill(&mut out);
    out
}
