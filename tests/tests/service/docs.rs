//! Man pages and completions.

use super::*;

/// What `BIN SUBCOMMAND... --help` lists, recursively: every subcommand path (e.g. `audit
/// verify`) and every long option; and, in `undocumented`, each option or argument shown
/// without a description. Taken from the binary, not from the docs generator.
fn walk(
    bin: &Path,
    path: &mut Vec<String>,
    subcommands: &mut Vec<String>,
    options: &mut BTreeSet<String>,
    undocumented: &mut Vec<String>,
) {
    let out = run_ok(Command::new(bin).args(path.iter()).arg("--help"));
    let help = stdout(&out);
    let mut section = "";
    let mut children = Vec::new();
    for line in help.lines() {
        if !line.starts_with(' ') {
            section = line.trim_end_matches(':');
            continue;
        }
        let words: Vec<&str> = line.split_whitespace().collect();
        match section {
            "Commands" => {
                if let Some(name) = words.first().filter(|w| **w != "help") {
                    children.push((*name).to_owned());
                }
            }
            "Options" => {
                let names = words
                    .iter()
                    .take_while(|w| w.starts_with('-') || w.starts_with('<'))
                    .count();
                for word in &words[..names] {
                    if let Some(long) = word.trim_end_matches(',').strip_prefix("--") {
                        options.insert(format!("--{long}"));
                    }
                }
                if names == words.len() {
                    undocumented.push(format!("{} {}", path.join(" "), words.join(" ")));
                }
            }
            "Arguments" if words.len() == 1 => {
                undocumented.push(format!("{} {}", path.join(" "), words[0]));
            }
            _ => {}
        }
    }
    for child in children {
        path.push(child);
        subcommands.push(path.join(" "));
        walk(bin, path, subcommands, options, undocumented);
        path.pop();
    }
}

/// The keys `allowlistd --check` knows, from its "unknown key" message.
fn known_keys(dir: &Path, text: &str) -> Vec<String> {
    let path = dir.join("unknown.toml");
    std::fs::write(&path, text).expect("writing a config with an unknown key");
    let out = Command::new(allowlist_tests::daemon::allowlistd())
        .arg("--check")
        .arg("--config")
        .arg(&path)
        .output()
        .expect("running allowlistd --check");
    let said = String::from_utf8_lossy(&out.stderr);
    let list = said
        .split("(known keys: ")
        .nth(1)
        .and_then(|rest| rest.split(')').next())
        .unwrap_or_else(|| panic!("no known keys listed in:\n{said}"));
    list.split(", ").map(str::to_owned).collect()
}

/// The page as text a reader sees (roff's `\-` is a plain hyphen).
fn plain(roff: &str) -> String {
    roff.replace("\\-", "-")
}

#[test]
fn man_pages_and_completions_cover_every_command_option_and_config_key() {
    let tmp = tempfile::tempdir().expect("creating a temporary directory");
    let generator = bin_dir().join("allowlist-docs");
    assert!(
        generator.is_file(),
        "{} does not exist: `cargo xtask build` builds it",
        generator.display()
    );
    run_ok(Command::new(&generator).arg(tmp.path()));
    let man = |page: &str| plain(&read(&tmp.path().join("man").join(page)));
    let ctl_page = man("man8/allowlistctl.8");
    let daemon_page = man("man8/allowlistd.8");
    let config_page = man("man5/allowlist.toml.5");

    let mut subcommands = Vec::new();
    let mut options = BTreeSet::new();
    let mut undocumented = Vec::new();
    walk(
        &bin_dir().join("allowlistctl"),
        &mut Vec::new(),
        &mut subcommands,
        &mut options,
        &mut undocumented,
    );
    assert!(
        subcommands.len() > 5,
        "allowlistctl has subcommands: {subcommands:?}"
    );
    assert!(
        subcommands.iter().any(|s| s == "audit verify"),
        "{subcommands:?}"
    );
    for sub in &subcommands {
        assert!(
            ctl_page.contains(&format!(".SS \"allowlistctl {sub}\"")),
            "allowlistctl(8) has no section for `{sub}`"
        );
    }
    assert!(
        options.contains("--socket") && options.contains("--confirm-within"),
        "{options:?}"
    );
    for option in &options {
        assert!(
            ctl_page.contains(option.as_str()),
            "allowlistctl(8) lacks {option}"
        );
    }
    let mut daemon_subs = Vec::new();
    let mut daemon_options = BTreeSet::new();
    walk(
        &allowlist_tests::daemon::allowlistd(),
        &mut Vec::new(),
        &mut daemon_subs,
        &mut daemon_options,
        &mut undocumented,
    );
    assert_eq!(
        undocumented,
        Vec::<String>::new(),
        "options and arguments without a description in --help"
    );
    assert!(daemon_options.contains("--check") && daemon_options.contains("--config"));
    for option in &daemon_options {
        assert!(
            daemon_page.contains(option.as_str()),
            "allowlistd(8) lacks {option}"
        );
    }
    for section in ["SIGNALS", "SYSTEMD", "FILES", "SEE ALSO"] {
        assert!(
            daemon_page.contains(section),
            "allowlistd(8) lacks {section}"
        );
    }

    // Every key the parser knows (it lists them for an unknown one) is documented.
    let mut keys = known_keys(tmp.path(), "zzzzqqqq = 1\nactive = false\n");
    keys.extend(known_keys(
        tmp.path(),
        "active = false\n[[entries]]\ncidr = \"198.18.0.0/24\"\nzzzzqqqq = 1\n",
    ));
    keys.extend(known_keys(
        tmp.path(),
        "[lists.ssh]\nmode = \"off\"\nzzzzqqqq = 1\n",
    ));
    assert!(keys.len() > 10, "{keys:?}");
    assert!(keys.contains(&"udp_ports".to_owned()), "{keys:?}");
    for key in &keys {
        assert!(
            config_page.contains(&format!(".BR {key} "))
                || config_page.contains(&format!("[[{key}]]"))
                || config_page.contains(&format!("[{key}.NAME]")),
            "allowlist.toml(5) does not document `{key}`"
        );
    }

    // The pages render without warnings.
    for page in [
        "man8/allowlistctl.8",
        "man8/allowlistd.8",
        "man5/allowlist.toml.5",
    ] {
        let path = tmp.path().join("man").join(page);
        if find_tool("groff").is_some() {
            let out = run_ok(
                Command::new("groff")
                    .args(["-mandoc", "-Tutf8", "-ww", "-z"])
                    .arg(&path)
                    .env("LC_ALL", "C.UTF-8"),
            );
            let warnings = String::from_utf8_lossy(&out.stderr);
            assert!(
                warnings.trim().is_empty(),
                "groff warns about {page}:\n{warnings}"
            );
        } else {
            eprintln!("note: groff is not installed; {page} was checked as roff text only");
        }
        if find_tool("man").is_some() {
            let out = run_ok(
                Command::new("man")
                    .args(["-P", "cat", "-l"])
                    .arg(&path)
                    .env("MANWIDTH", "100"),
            );
            assert!(
                stdout(&out).contains("SEE ALSO"),
                "man -l {page}:\n{}",
                stdout(&out)
            );
        }
    }

    // Completions: every subcommand, in every shell; the daemon's options.
    let completion = |file: &str| read(&tmp.path().join("completions").join(file));
    for file in [
        "bash/allowlistctl",
        "zsh/_allowlistctl",
        "fish/allowlistctl.fish",
    ] {
        let text = completion(file);
        for sub in &subcommands {
            let last = sub.rsplit(' ').next().unwrap_or(sub);
            assert!(text.contains(last), "{file} does not complete `{sub}`");
        }
    }
    for file in ["bash/allowlistd", "zsh/_allowlistd", "fish/allowlistd.fish"] {
        let text = completion(file);
        for option in ["config", "check"] {
            assert!(text.contains(option), "{file} does not complete --{option}");
        }
    }
    for (shell, files) in [
        ("bash", ["bash/allowlistctl", "bash/allowlistd"]),
        ("zsh", ["zsh/_allowlistctl", "zsh/_allowlistd"]),
    ] {
        if find_tool(shell).is_none() {
            eprintln!("note: {shell} is not installed; its completions were not syntax-checked");
            continue;
        }
        for file in files {
            run_ok(
                Command::new(shell)
                    .arg("-n")
                    .arg(tmp.path().join("completions").join(file)),
            );
        }
    }
}

/// The usage printed after a mistake shows optional options as optional, whatever was typed.
#[test]
fn usage_after_an_error_keeps_optional_options_optional() {
    for (bin, args, usage) in [
        (
            bin_dir().join("allowlistctl"),
            &["emergency-disable", "--for", "2h"][..],
            "Usage: allowlistctl emergency-disable [OPTIONS] --reason <REASON> [--for <DURATION>]\n",
        ),
        (
            allowlist_tests::daemon::allowlistd(),
            &["--emergency-disable-on-start", "--for", "2h"][..],
            "allowlistd --emergency-disable-on-start --reason <REASON> [--for <DURATION>]",
        ),
    ] {
        let out = Command::new(&bin).args(args).output().expect("running it");
        let said = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{said}");
        assert!(said.contains("--reason <REASON>"), "{said}");
        assert!(
            said.contains(usage),
            "the usage should read {usage:?}:\n{said}"
        );
        assert!(!said.contains("<REASON> --for"), "{said}");
    }
}
