//! Shared harness for the end-to-end tests and the demo: network namespaces, TCP probes, the
//! real daemon as a child process, `allowlistctl` runs, a private bpffs, and crafted frames.

pub mod bpffs;
pub mod cockpit;
pub mod config_map;
pub mod ctl;
pub mod daemon;
pub mod fixture;
pub mod frames;
pub mod fuzz;
pub mod generate;
pub mod model;
pub mod netns;
pub mod outside;
pub mod pace;
pub mod package;
pub mod probe;
pub mod tcp;
pub mod test_run;
pub mod tmpfs;
pub mod udp;

/// The path `cargo xtask test` names in `var` after setting up what a test needs (`what`, as
/// in "installs kubernetes-validate"), or `None`: outside it a visible skip, under CI=true a
/// failure.
pub fn path_from_xtask(test: &str, var: &str, what: &str) -> Option<std::path::PathBuf> {
    if let Some(path) = std::env::var_os(var) {
        return Some(path.into());
    }
    assert!(
        !std::env::var("CI").is_ok_and(|v| v == "true"),
        "{test}: {var} is not set; under CI=true a skip is a failure (`cargo xtask test` {what} and sets it)"
    );
    eprintln!("SKIPPED {test}: run through `cargo xtask test`, which {what}");
    None
}

/// Privileged tests call this first. Outside CI a non-root run skips visibly; under CI=true a
/// skip would hide a failure, so it panics instead.
pub fn require_root(test: &str) -> bool {
    if nix::unistd::geteuid().is_root() {
        return true;
    }
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!(
            "{test} needs root (BPF, XDP, network namespaces); under CI=true a skip is a failure"
        );
    }
    eprintln!(
        "SKIPPED {test}: needs root (BPF, XDP, network namespaces); run `cargo xtask test` as root"
    );
    false
}
