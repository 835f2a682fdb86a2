//! Points `include_bytes_aligned!` at the compiled XDP object. `cargo xtask build` builds it
//! with the eBPF toolchain (which plain cargo cannot drive here) and passes its path; without
//! it, this crate (and the daemon and tests above it) stop with one line saying so. Every
//! other crate builds without it.

use std::path::PathBuf;

fn main() {
    println!("cargo:rerun-if-env-changed=ALLOWLIST_EBPF_OBJECT");
    let object = std::env::var_os("ALLOWLIST_EBPF_OBJECT")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            let manifest = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").unwrap());
            manifest.join("../target/ebpf/bpfel-unknown-none/release/allowlist-ebpf")
        });
    let Ok(object) = object.canonicalize() else {
        eprintln!(
            "error: the XDP object {} is not built yet: run `cargo xtask build` (or `cargo xtask test`) once, which compiles it",
            object.display()
        );
        std::process::exit(1);
    };
    println!("cargo:rerun-if-changed={}", object.display());
    println!("cargo:rustc-env=ALLOWLIST_EBPF_OBJECT={}", object.display());
}
