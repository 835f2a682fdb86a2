//! Cargo xtask package.

use super::*;

#[test]
fn package_has_the_files_a_conffile_and_scripts_that_never_start_enforcing() {
    let test = "package_has_the_files_a_conffile_and_scripts_that_never_start_enforcing";
    if !require_tool(test, "dpkg-deb") {
        return;
    }
    let tmp = tempfile::tempdir().expect("creating a temporary directory");
    let bins = bin_dir();
    xtask(&[
        "package",
        "--bin-dir",
        bins.to_str().expect("utf-8 bin dir"),
        "--out-dir",
        tmp.path().to_str().expect("utf-8 temp path"),
    ]);
    let debs: Vec<PathBuf> = std::fs::read_dir(tmp.path())
        .expect("listing the output directory")
        .map(|e| e.expect("a directory entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "deb"))
        .collect();
    let [deb] = &debs[..] else {
        panic!(
            "expected one .deb in {}, found {debs:?}",
            tmp.path().display()
        );
    };

    let contents = stdout(&run_ok(Command::new("dpkg-deb").arg("--contents").arg(deb)));
    for file in [
        "./usr/sbin/allowlistd",
        "./usr/bin/allowlistctl",
        "./usr/lib/systemd/system/allowlistd.service",
        "./etc/allowlist/allowlist.toml",
        "./usr/share/man/man8/allowlistd.8.gz",
        "./usr/share/man/man8/allowlistctl.8.gz",
        "./usr/share/man/man5/allowlist.toml.5.gz",
        "./usr/share/bash-completion/completions/allowlistctl",
        "./usr/share/zsh/vendor-completions/_allowlistctl",
        "./usr/share/fish/vendor_completions.d/allowlistctl.fish",
        "./usr/share/doc/allowlist/README.md",
    ] {
        assert!(
            contents.lines().any(|l| l.ends_with(&format!(" {file}"))),
            "{file} missing from the package:\n{contents}"
        );
    }
    for line in contents.lines() {
        assert!(line.contains(" root/root "), "not root-owned: {line}");
    }
    // Not enabled by the package: no symlink into a .wants directory.
    assert!(
        !contents.contains(".wants/"),
        "the package enables the unit"
    );

    let info = stdout(&run_ok(Command::new("dpkg-deb").arg("--info").arg(deb)));
    for needle in [
        "Package: allowlist",
        "Architecture: ",
        "conffiles",
        "postinst",
        "prerm",
        "postrm",
    ] {
        assert!(
            info.contains(needle),
            "`{needle}` missing from --info:\n{info}"
        );
    }

    let control = tmp.path().join("control");
    run_ok(
        Command::new("dpkg-deb")
            .arg("--control")
            .arg(deb)
            .arg(&control),
    );
    assert_eq!(
        read(&control.join("conffiles")).trim(),
        "/etc/allowlist/allowlist.toml"
    );
    for script in ["postinst", "prerm", "postrm"] {
        let path = control.join(script);
        run_ok(Command::new("sh").arg("-n").arg(&path));
        assert_eq!(
            read(&path),
            read(&workspace_root().join("packaging/debian").join(script)),
            "{script} differs from packaging/debian/{script}"
        );
    }
    // Installing never enables or starts the service (it only tells the admin how to).
    let postinst = read(&control.join("postinst"));
    let code = code_lines(&postinst);
    for forbidden in ["enable", "start", "restart", "deb-systemd-invoke"] {
        assert!(
            !code
                .iter()
                .any(|l| l.split_whitespace().any(|w| w == forbidden)),
            "postinst runs `{forbidden}`:\n{}",
            code.join("\n")
        );
    }
    // Removing stops the daemon (which detaches), with or without systemd.
    let prerm = read(&control.join("prerm"));
    assert!(prerm.contains("systemctl stop allowlistd.service"));
    assert!(prerm.contains("kill -TERM"));

    // The payload: the config is the safe default, and the packaged (stripped) daemon
    // accepts it.
    let root = tmp.path().join("root");
    run_ok(
        Command::new("dpkg-deb")
            .arg("--extract")
            .arg(deb)
            .arg(&root),
    );
    let config = root.join("etc/allowlist/allowlist.toml");
    let doc = read(&config);
    assert!(doc.lines().any(|l| l.trim() == "active = false"), "{doc}");
    assert!(doc.lines().any(|l| l.trim() == "interfaces = []"), "{doc}");
    let out = run_ok(
        Command::new(root.join("usr/sbin/allowlistd"))
            .arg("--check")
            .arg("--config")
            .arg(&config),
    );
    assert!(stdout(&out).contains("inactive"), "{}", stdout(&out));
}
