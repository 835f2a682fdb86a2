//! Points `include_bytes_aligned!` at the compiled XDP object. `cargo xtask build` builds it
//! with the eBPF toolchain (which plain cargo cannot drive here) and passes its path.

use std::path::PathBuf;

fn main() {
    println!("cargo:rerun-if-env-changed=ALLOWLIST_EBPF_OBJECT");
    let object = std::env::var_os("ALLOWLIST_EBPF_OBJECT")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            let manifest = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").unwrap());
            manifest.join("../target/ebpf/bpfel-unknown-none/release/allowlist-ebpf")
        });
    if !object.exists() {
        panic!(
            "the XDP object {} is missing: build with `cargo xtask build` (or `cargo xtask test`), \
             which compiles it first",
            object.display()
        );
    }
    let object = object
        .canonicalize()
        .expect("canonical path of the XDP object");
    println!("cargo:rerun-if-changed={}", object.display());
    println!("cargo:rustc-env=ALLOWLIST_EBPF_OBJECT={}", object.display());
}
