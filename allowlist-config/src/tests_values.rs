//! Whole-file tests of the values of individual keys, and of the checks combining keys.

use super::tests::{PATH, PROTECT, at, parse, problems};
use super::*;

#[test]
fn xdp_modes() -> Result<(), ConfigError> {
    for (text, mode) in [
        ("auto", XdpModeSetting::Auto),
        ("driver", XdpModeSetting::Driver),
        ("generic", XdpModeSetting::Generic),
    ] {
        assert_eq!(
            parse(&format!("{PROTECT}xdp_mode = \"{text}\""))?.xdp_mode,
            mode
        );
    }
    let expected = |found: &str, hint: &str| {
        vec![at(
            3,
            &format!(
                "key `xdp_mode`: must be \"auto\", \"driver\" or \"generic\", not {found}{hint}"
            ),
        )]
    };
    assert_eq!(
        problems(&format!("{PROTECT}xdp_mode = \"native\"")),
        expected("`\"native\"`", "; did you mean \"driver\"?")
    );
    assert_eq!(
        problems(&format!("{PROTECT}xdp_mode = \"Generic\"")),
        expected("`\"Generic\"`", "; did you mean \"generic\"?")
    );
    assert_eq!(
        problems(&format!("{PROTECT}xdp_mode = 1")),
        expected("`1`", "")
    );
    Ok(())
}

#[test]
fn ports_must_be_valid_and_unique() {
    let text = "interfaces = [\"eth0\"]\nprotected_tcp_ports = [\n\
                22,\n  0,\n  65536,\n  -1,\n  \"443\",\n  22,\n  65535,\n]\n";
    assert_eq!(
        problems(text),
        [
            at(
                4,
                "key `protected_tcp_ports`: entry 2 `0`: ports are 1..=65535"
            ),
            at(
                5,
                "key `protected_tcp_ports`: entry 3 `65536`: ports are 1..=65535"
            ),
            at(
                6,
                "key `protected_tcp_ports`: entry 4 `-1`: ports are 1..=65535"
            ),
            at(
                7,
                "key `protected_tcp_ports`: entry 5 `443`: must be a port number without \
                   quotes, e.g. 22"
            ),
            at(
                8,
                "key `protected_tcp_ports`: entry 6 `22`: listed twice (entries 1 and 6); \
                   remove one"
            ),
        ]
    );
}

#[test]
fn max_entries_range() -> Result<(), ConfigError> {
    assert_eq!(parse("active = false\nmax_entries = 1")?.max_entries, 1);
    assert_eq!(
        parse("active = false\nmax_entries = 16777216")?.max_entries,
        16_777_216
    );
    for bad in ["0", "16777217", "-5", "1.5"] {
        assert_eq!(
            problems(&format!("active = false\nmax_entries = {bad}")),
            [at(
                2,
                &format!(
                    "key `max_entries`: must be a whole number in 1..=16777216 (the \
                             capacity of each address family's map), not `{bad}`"
                )
            )]
        );
    }
    Ok(())
}

#[test]
fn interface_names_are_checked() {
    let text = "protected_tcp_ports = [22]\n\
                interfaces = [\"eth0\", \"\", \"a234567890123456\",\n\
                \"eth/0\", \"eth 0\", \"eth0\", 7]\n";
    assert_eq!(
        problems(text),
        [
            at(
                2,
                "key `interfaces`: entry 2 ``: not an interface name; see `ip -br link` for \
                   the names"
            ),
            at(
                2,
                "key `interfaces`: entry 3 `a234567890123456`: is 16 bytes long; interface \
                   names are at most 15 (IFNAMSIZ)"
            ),
            at(
                3,
                "key `interfaces`: entry 4 `eth/0`: interface names cannot contain '/', ':' \
                   or whitespace"
            ),
            at(
                3,
                "key `interfaces`: entry 5 `eth 0`: interface names cannot contain '/', ':' \
                   or whitespace"
            ),
            at(
                3,
                "key `interfaces`: entry 6 `eth0`: listed twice (entries 1 and 6); remove one"
            ),
            at(
                3,
                "key `interfaces`: entry 7 `7`: must be a quoted interface name, e.g. \"eth0\""
            ),
        ]
    );
}

#[test]
fn active_needs_interfaces_and_ports() -> Result<(), ConfigError> {
    assert_eq!(
        problems("active = true\ninterfaces = []\n"),
        [
            at(
                2,
                "key `interfaces`: no interfaces to protect: list them, e.g. interfaces = \
                   [\"eth0\"], or set active = false"
            ),
            at(
                1,
                "key `protected_tcp_ports`: no ports to protect: list them, e.g. \
                   protected_tcp_ports = [22], or set active = false"
            ),
        ]
    );
    // Without any key there is no line to point at.
    assert_eq!(
        problems(""),
        [
            format!(
                "{PATH}: key `interfaces`: no interfaces to protect: list them, e.g. \
                     interfaces = [\"eth0\"], or set active = false"
            ),
            format!(
                "{PATH}: key `protected_tcp_ports`: no ports to protect: list them, e.g. \
                     protected_tcp_ports = [22], or set active = false"
            ),
        ]
    );
    // A bad list is reported once, not again as empty.
    assert_eq!(
        problems("interfaces = [7]\nprotected_tcp_ports = [22]").len(),
        1
    );
    // Inactive (a fresh install): nothing to protect is fine.
    let config = parse("active = false\ninterfaces = []\nprotected_tcp_ports = []\n")?;
    assert!(!config.active);
    Ok(())
}

#[test]
fn capacity_is_per_address_family() -> Result<(), ConfigError> {
    let entries = |nets: &[&str]| -> String {
        nets.iter()
            .map(|n| format!("[[entries]]\ncidr = \"{n}\"\n"))
            .collect()
    };
    let two_each = entries(&["198.18.0.1", "198.18.0.2", "2001:db8::1", "2001:db8::2"]);
    assert_eq!(
        parse(&format!("{PROTECT}max_entries = 2\n{two_each}"))?
            .entries
            .len(),
        4
    );
    let three_v4 = entries(&["198.18.0.1", "198.18.0.2", "198.18.0.3", "2001:db8::1"]);
    assert_eq!(
        problems(&format!("{PROTECT}max_entries = 2\n{three_v4}")),
        [at(
            3,
            "key `max_entries`: 3 IPv4 entries but max_entries = 2; raise max_entries"
        )]
    );
    let three_v6 = entries(&["2001:db8::1", "2001:db8::2", "2001:db8::3"]);
    assert_eq!(
        problems(&format!("{PROTECT}max_entries = 2\n{three_v6}")),
        [at(
            3,
            "key `max_entries`: 3 IPv6 entries but max_entries = 2; raise max_entries"
        )]
    );
    Ok(())
}

#[test]
fn capacity_default_is_named() -> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let list: String = (0..1025)
        .map(|i| format!("198.18.{}.{}\n", i / 256, i % 256))
        .collect();
    std::fs::write(dir.path().join("many.list"), list)?;
    let path = dir.path().join("allowlist.toml");
    let text = format!("{PROTECT}list_files = [\"many.list\"]\n");
    let err = Config::parse(&path, &text).expect_err("over capacity");
    assert_eq!(
        err.to_string(),
        format!(
            "{}:1025: `198.18.4.0`: more than max_entries = 1024 (the default) IPv4 entries \
             (lines count before duplicate and covered ones are merged); the rest of the file \
             was not read. Raise max_entries (up to 16777216) or shorten the list",
            dir.path().join("many.list").display()
        )
    );
    Ok(())
}

#[test]
fn oversized_config_file_is_refused_before_parsing() -> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("allowlist.toml");
    // Sparse: the size alone must be enough to refuse it.
    std::fs::File::create(&path)?.set_len(MAX_CONFIG_BYTES + 1)?;
    let err = Config::load(&path).expect_err("too large");
    assert_eq!(
        err.to_string(),
        format!(
            "{}: 16777217 bytes, more than the 16 MiB a config file may have; put long lists in \
             list files (list_files = [...])",
            path.display()
        )
    );
    Ok(())
}
