//! The Kubernetes manifests (deploy/kubernetes/, a kustomize base) against the Kubernetes
//! schemas with a real validator, kubernetes-validate (`cargo xtask test` installs it into a
//! venv under target/ and names it in `ALLOWLIST_KUBERNETES_VALIDATE`), and what the README
//! promises of them.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn manifests() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ is in the workspace")
        .join("deploy/kubernetes")
}

/// The validator `cargo xtask test` installs.
fn validator(test: &str) -> Option<PathBuf> {
    allowlist_tests::path_from_xtask(
        test,
        "ALLOWLIST_KUBERNETES_VALIDATE",
        "installs kubernetes-validate",
    )
}

/// The oldest Kubernetes the manifests are for (a DaemonSet's maxSurge is stable from 1.25)
/// and the newest the validator knows.
const VERSIONS: [&str; 2] = ["1.25", "1.37"];

fn validate(validator: &Path, version: &str, files: &[PathBuf]) -> Output {
    Command::new(validator)
        .args(["--strict", "--kubernetes-version", version])
        .args(files)
        .output()
        .unwrap_or_else(|e| panic!("running {}: {e}", validator.display()))
}

/// The `resources:` of kustomization.yaml, one `- FILE` a line.
fn resources() -> Vec<String> {
    let text = read(&manifests().join("kustomization.yaml"));
    text.lines()
        .skip_while(|line| line.trim_end() != "resources:")
        .skip(1)
        .map_while(|line| line.trim().strip_prefix("- "))
        .map(str::to_owned)
        .collect()
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

#[test]
fn manifests_validate_against_the_kubernetes_schemas() {
    let test = "manifests_validate_against_the_kubernetes_schemas";
    let Some(validator) = validator(test) else {
        return;
    };
    let listed = resources();
    let mut on_disk: Vec<String> = std::fs::read_dir(manifests())
        .expect("listing deploy/kubernetes")
        .map(|entry| {
            entry
                .expect("a directory entry")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .filter(|name| name.ends_with(".yaml") && name != "kustomization.yaml")
        .collect();
    on_disk.sort();
    let mut sorted = listed.clone();
    sorted.sort();
    assert_eq!(
        sorted, on_disk,
        "kustomization.yaml's resources and the files differ"
    );

    let files: Vec<PathBuf> = listed.iter().map(|name| manifests().join(name)).collect();
    for version in VERSIONS {
        let out = validate(&validator, version, &files);
        let report = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            out.status.success(),
            "the manifests do not validate against Kubernetes {version}:\n{report}"
        );
        for name in &listed {
            assert!(
                report
                    .lines()
                    .any(|l| l.contains(name.as_str()) && l.contains("passed")),
                "{name} not reported as passed against {version}:\n{report}"
            );
        }
        eprintln!("{}", report.trim());
    }

    // The validator is real: a misspelt field of the DaemonSet is refused.
    let dir = tempfile::tempdir().expect("a temporary directory");
    let broken = dir.path().join("daemonset.yaml");
    let text = read(&manifests().join("daemonset.yaml"));
    assert!(text.contains("maxUnavailable:"));
    std::fs::write(&broken, text.replace("maxUnavailable:", "maxUnavaliable:"))
        .expect("writing the broken copy");
    let out = validate(&validator, VERSIONS[1], &[broken]);
    assert!(
        !out.status.success(),
        "a misspelt field should fail validation: {}",
        String::from_utf8_lossy(&out.stdout)
    );
}

/// What README.md's "Running on a fleet" says of the DaemonSet and the ConfigMap.
#[test]
fn the_daemonset_runs_with_the_least_privileges_and_keeps_enforcing_across_pods() {
    let daemonset = read(&manifests().join("daemonset.yaml"));
    for needle in [
        "hostNetwork: true",
        "privileged: false",
        "allowPrivilegeEscalation: false",
        "readOnlyRootFilesystem: true",
        "drop: [\"ALL\"]",
        "add: [\"BPF\", \"NET_ADMIN\", \"PERFMON\"]",
        "path: /sys/fs/bpf",
        "command: [\"/usr/bin/allowlistctl\", \"status\"]",
        "type: RollingUpdate",
        "maxUnavailable:",
        "maxSurge: 0",
        "prometheus.io/scrape: \"true\"",
        "prometheus.io/port: \"9469\"",
        "type: RuntimeDefault",
    ] {
        assert!(
            daemonset.contains(needle),
            "daemonset.yaml should hold {needle:?}"
        );
    }
    // The one `add:` is the three capabilities above, and nothing runs privileged.
    assert_eq!(
        daemonset.matches("add:").count(),
        1,
        "one list of added capabilities"
    );
    assert!(!daemonset.contains("privileged: true"), "not privileged");
    let configmap = read(&manifests().join("configmap.yaml"));
    for needle in [
        "detach_on_exit = false",
        "watch = true",
        "metrics_listen = \"0.0.0.0:9469\"",
        "bpffs_dir = \"/sys/fs/bpf/allowlist\"",
    ] {
        assert!(
            configmap.contains(needle),
            "configmap.yaml should hold {needle:?}"
        );
    }
}
