//! The outside of a `cargo xtask vm-test` guest: see `allowlist_tests::outside`.

fn main() -> anyhow::Result<()> {
    let tap = std::env::args()
        .nth(1)
        .ok_or_else(|| anyhow::anyhow!("usage: vm-peer TAP"))?;
    allowlist_tests::outside::serve(&tap)
}
