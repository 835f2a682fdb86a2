//! What the XDP program needs of the running kernel, probed before loading it, so that an old
//! kernel is refused with one line naming what it lacks and which kernel has it, instead of the
//! verifier's dump (a kernel without a helper the program calls refuses it with dozens of lines
//! that never say why).

use std::sync::OnceLock;

use anyhow::{Result, bail};
use aya::maps::MapType;
use aya::programs::ProgramType;
use aya::sys::{BpfHelper, is_helper_supported, is_map_supported};

/// One kernel feature the program uses, and the first Linux release with it.
struct Need {
    what: &'static str,
    since: &'static str,
    probe: Probe,
}

enum Probe {
    Helper(BpfHelper),
    Map(MapType),
}

/// In order of arrival, so the first one missing names the oldest release that is too old.
const NEEDS: &[Need] = &[
    Need {
        what: "the BPF helper bpf_jiffies64 (the per-CPU clock of hit times and the event budget)",
        since: "5.5",
        probe: Probe::Helper(BpfHelper::BPF_FUNC_jiffies64),
    },
    Need {
        what: "BPF ring buffer maps (blocked-source events)",
        since: "5.8",
        probe: Probe::Map(MapType::RingBuf),
    },
    Need {
        what: "the BPF helper bpf_ktime_get_boot_ns (emergency deadlines)",
        since: "5.8",
        probe: Probe::Helper(BpfHelper::BPF_FUNC_ktime_get_boot_ns),
    },
];

/// Fails, in one line, when the running kernel lacks something the program needs. A probe that
/// cannot tell (e.g. without CAP_BPF) is not a refusal: loading the program will say more.
/// The kernel is probed once per process (the daemon asks before it creates anything, and
/// again through `Filter::load`).
pub fn require_features() -> Result<()> {
    static MISSING: OnceLock<Option<String>> = OnceLock::new();
    match MISSING.get_or_init(missing) {
        Some(line) => bail!("{line}"),
        None => Ok(()),
    }
}

/// The line naming the first feature the kernel lacks, if any.
fn missing() -> Option<String> {
    first_missing(|probe| match *probe {
        Probe::Helper(helper) => is_helper_supported(ProgramType::Xdp, helper).ok(),
        Probe::Map(map) => is_map_supported(map).ok(),
    })
}

/// `missing`, with `present` answering each probe (`None`: cannot tell).
fn first_missing(present: impl Fn(&Probe) -> Option<bool>) -> Option<String> {
    for need in NEEDS {
        if present(&need.probe) == Some(false) {
            return Some(format!(
                "this kernel ({}) lacks {}, which the filter needs: it arrived in Linux {} \
                 (Debian 11's kernel 5.10 has it)",
                release(),
                need.what,
                need.since
            ));
        }
    }
    None
}

fn release() -> String {
    std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|release| release.trim().to_owned())
        .unwrap_or_else(|_| "unknown release".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_oldest_missing_feature_is_named_in_one_line() {
        let lacking_ring_buffers = |probe: &Probe| match probe {
            Probe::Map(MapType::RingBuf) => Some(false),
            Probe::Helper(BpfHelper::BPF_FUNC_ktime_get_boot_ns) => Some(false),
            _ => Some(true),
        };
        let line = first_missing(lacking_ring_buffers).expect("refused");
        assert!(
            line.ends_with(
                "lacks BPF ring buffer maps (blocked-source events), which the filter needs: it \
                 arrived in Linux 5.8 (Debian 11's kernel 5.10 has it)"
            ),
            "{line}"
        );
        assert_eq!(line.lines().count(), 1);
        assert_eq!(first_missing(|_| Some(true)), None);
        assert_eq!(first_missing(|_| None), None, "unknown is no refusal");
    }
}
