//! Cargo xtask package.

use super::*;

#[test]
fn package_has_the_files_a_conffile_and_scripts_that_never_start_enforcing() {
    let test = "package_has_the_files_a_conffile_and_scripts_that_never_start_enforcing";
    if !require_tool(test, "dpkg-deb") {
        return;
    }
    let tmp = tempfile::tempdir().expect("creating a temporary directory");
    let deb = &allowlist_tests::package::build(tmp.path(), None);
    assert_eq!(
        deb.parent(),
        Some(tmp.path()),
        "the .deb is written to --out-dir"
    );

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
        "./usr/share/doc/allowlist/copyright",
        "./usr/share/doc/allowlist/changelog.gz",
        // The Cockpit page, built (no sources, no npm packages).
        "./usr/share/cockpit/allowlist/manifest.json",
        "./usr/share/cockpit/allowlist/index.html",
        "./usr/share/cockpit/allowlist/index.js",
        "./usr/share/cockpit/allowlist/index.css",
    ] {
        assert!(
            contents.lines().any(|l| l.ends_with(&format!(" {file}"))),
            "{file} missing from the package:\n{contents}"
        );
    }
    for line in contents.lines() {
        assert!(line.contains(" root/root "), "not root-owned: {line}");
    }
    // The config and its directory are root's alone (lintian overrides say why).
    for (mode, file) in [
        ("drwxr-x---", "./etc/allowlist/"),
        ("-rw-r-----", "./etc/allowlist/allowlist.toml"),
    ] {
        assert!(
            contents
                .lines()
                .any(|l| l.starts_with(mode) && l.ends_with(&format!(" {file}"))),
            "{file} is not {mode}:\n{contents}"
        );
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
    // Each script is packaging/debian's, with debhelper's code in place of #DEBHELPER#.
    let mut generated = BTreeMap::new();
    for script in ["postinst", "prerm", "postrm"] {
        let path = control.join(script);
        run_ok(Command::new("sh").arg("-n").arg(&path));
        let packaged = read(&path);
        let source = read(&workspace_root().join("packaging/debian").join(script));
        let (before, after) = source
            .split_once("#DEBHELPER#\n")
            .unwrap_or_else(|| panic!("packaging/debian/{script} has no #DEBHELPER# line"));
        assert!(
            packaged.starts_with(before) && packaged.ends_with(after),
            "{script} is not packaging/debian/{script} with debhelper's code added:\n{packaged}"
        );
        let added = &packaged[before.len()..packaged.len() - after.len()];
        generated.insert(script, added.to_owned());
    }
    // Nothing stops the daemon before an upgrade: the new postinst hands over.
    assert!(
        !control.join("preinst").exists(),
        "a preinst: {}",
        read(&control.join("preinst"))
    );
    // Installing never enables or starts the service (it only tells the admin how to).
    // debhelper's code only re-creates the links of a unit the admin had enabled.
    let postinst = read(&control.join("postinst"));
    let ours = postinst.replace(&generated["postinst"], "");
    let code = code_lines(&ours);
    for forbidden in ["enable", "start", "restart", "deb-systemd-invoke"] {
        assert!(
            !code
                .iter()
                .any(|l| l.split_whitespace().any(|w| w == forbidden)),
            "postinst runs `{forbidden}`:\n{}",
            code.join("\n")
        );
    }
    let dh = code_lines(&generated["postinst"]);
    for line in &dh {
        let words: Vec<&str> = line.split_whitespace().collect();
        assert!(
            !words
                .iter()
                .any(|w| ["start", "restart", "try-restart", "deb-systemd-invoke"].contains(w)),
            "debhelper's postinst code starts the service:\n{}",
            dh.join("\n")
        );
        if words.contains(&"enable") {
            assert!(
                dh.iter().any(|l| l.contains("was-enabled")),
                "debhelper's postinst code enables the service:\n{}",
                dh.join("\n")
            );
        }
    }
    // Removing stops the daemon (which detaches), with or without systemd; upgrading does not.
    let prerm = read(&control.join("prerm"));
    assert!(prerm.contains("deb-systemd-invoke stop allowlistd.service"));
    assert!(prerm.contains("kill -TERM"));
    assert!(
        !generated["prerm"].contains("stop"),
        "debhelper's prerm code stops the service:\n{}",
        generated["prerm"]
    );

    // lintian: no error, no warning (overrides, each with its reason, are in
    // packaging/debian/lintian-overrides).
    let out = Command::new("lintian")
        .arg("--fail-on")
        .arg("error,warning")
        .arg(deb)
        .stdin(Stdio::null())
        .output()
        .expect("running lintian (cargo xtask package installs it)");
    let report = stdout(&out);
    assert!(
        out.status.success()
            && !report
                .lines()
                .any(|l| l.starts_with("E: ") || l.starts_with("W: ")),
        "lintian ({}):\n{report}{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );

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
