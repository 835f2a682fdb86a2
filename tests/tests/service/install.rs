//! Cargo xtask install, and the installed unit under systemd-analyze verify.

use super::*;

#[test]
fn installed_unit_verifies_and_install_keeps_an_existing_config() {
    let test = "installed_unit_verifies_and_install_keeps_an_existing_config";
    if !require_tool(test, "systemd-analyze") {
        return;
    }
    let tmp = tempfile::tempdir().expect("creating a temporary directory");
    // A real prefix (no --destdir): the unit then names binaries that exist, so verify's
    // check of the Exec paths is a real one.
    let prefix = tmp.path().join("usr");
    let sysconf = tmp.path().join("etc");
    let bins = bin_dir();
    let install = || {
        xtask(&[
            "install",
            "--prefix",
            prefix.to_str().expect("utf-8 temp path"),
            "--sysconfdir",
            sysconf.to_str().expect("utf-8 temp path"),
            "--bin-dir",
            bins.to_str().expect("utf-8 bin dir"),
        ])
    };
    install();

    let expected = [
        "sbin/allowlistd",
        "bin/allowlistctl",
        "lib/systemd/system/allowlistd.service",
        "share/man/man8/allowlistd.8",
        "share/man/man8/allowlistctl.8",
        "share/man/man5/allowlist.toml.5",
        "share/bash-completion/completions/allowlistctl",
        "share/bash-completion/completions/allowlistd",
        "share/zsh/site-functions/_allowlistctl",
        "share/zsh/site-functions/_allowlistd",
        "share/fish/vendor_completions.d/allowlistctl.fish",
        "share/fish/vendor_completions.d/allowlistd.fish",
        "share/cockpit/allowlist/manifest.json",
        "share/cockpit/allowlist/index.html",
    ];
    for file in expected {
        assert!(prefix.join(file).is_file(), "{file} was not installed");
    }
    let config = sysconf.join("allowlist/allowlist.toml");
    assert!(config.is_file(), "the default config was not installed");

    let unit = prefix.join("lib/systemd/system/allowlistd.service");
    let text = read(&unit);
    let daemon = prefix.join("sbin/allowlistd");
    assert!(
        text.contains(&format!(
            "ExecStart={} --config {}",
            daemon.display(),
            config.display()
        )),
        "the installed unit should start {} with {}:\n{text}",
        daemon.display(),
        config.display()
    );

    // Clean: no unknown keys, no bad values, executables and man pages found.
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&unit)
        .env("MANPATH", prefix.join("share/man"))
        .stdin(Stdio::null())
        .output()
        .expect("running systemd-analyze verify");
    let said = format!("{}{}", stdout(&out), String::from_utf8_lossy(&out.stderr));
    assert!(
        out.status.success() && said.trim().is_empty(),
        "systemd-analyze verify {} ({}):\n{said}",
        unit.display(),
        out.status
    );
    let score = exposure(&unit);
    assert!(score <= MAX_EXPOSURE, "installed unit's exposure {score}");

    // The unit's ExecStartPre accepts the config as installed (inactive, so it starts).
    let settings = unit_settings(&text);
    let pre = setting(&settings, "ExecStartPre")
        .first()
        .expect("ExecStartPre")
        .clone();
    let words: Vec<&str> = pre.split_whitespace().collect();
    let out = run_ok(Command::new(words[0]).args(&words[1..]));
    assert!(stdout(&out).contains("inactive"), "{}", stdout(&out));

    // A second install never overwrites the admin's config.
    let mine = format!("{}\n# the admin's own line\n", read(&config));
    std::fs::write(&config, &mine).expect("editing the installed config");
    let out = install();
    assert_eq!(read(&config), mine, "install overwrote an existing config");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("keeping the existing"),
        "install should say it kept the config"
    );
}
