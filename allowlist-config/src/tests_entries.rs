//! Whole-file tests of `[[entries]]` and list files.

use std::fmt::Write as _;
use std::time::SystemTime;

use super::tests::{PROTECT, at, parse, problems, problems_of};
use super::*;

type TestResult = Result<(), Box<dyn std::error::Error>>;

fn nets(config: &Config) -> Vec<String> {
    config.entries.iter().map(|e| e.net.to_string()).collect()
}

/// A config file `allowlist.toml` in a fresh directory, with the given list files beside it.
fn with_files(text: &str, lists: &[(&str, &str)]) -> std::io::Result<(tempfile::TempDir, PathBuf)> {
    let dir = tempfile::tempdir()?;
    for (name, contents) in lists {
        std::fs::write(dir.path().join(name), contents)?;
    }
    let path = dir.path().join("allowlist.toml");
    std::fs::write(&path, text)?;
    Ok((dir, path))
}

#[test]
fn single_addresses_are_normalised() -> Result<(), ConfigError> {
    let text = format!(
        "{PROTECT}[[entries]]\ncidr = \"198.18.0.5\"\n[[entries]]\ncidr = \"2001:db8::1\"\n\
         [[entries]]\ncidr = \" 198.18.1.0/24\\t\"\n"
    );
    let config = parse(&text)?;
    assert_eq!(
        nets(&config),
        ["198.18.0.5/32", "2001:db8::1/128", "198.18.1.0/24"]
    );
    assert_eq!(
        config.entries[0].origin(),
        Origin {
            file: std::path::Path::new(super::tests::PATH),
            line: 4
        }
    );
    Ok(())
}

#[test]
fn bad_entries_are_refused_with_their_line_and_number() {
    let long = "x".repeat(300);
    let cidrs = [
        "*",
        "0.0.0.0/0",
        "::/0",
        "any",
        "10.0.0.1/33",
        "10.0.0.5/24",
        "not-an-ip",
        "::ffff:198.18.0.0/112",
        "::ffff:198.18.0.7",
        "all",
    ];
    let mut text = PROTECT.to_owned();
    for cidr in cidrs {
        let _ = write!(text, "[[entries]]\ncidr = \"{cidr}\"\n");
    }
    let _ = write!(
        text,
        "[[entries]]\ncidr = \"198.18.0.0/24\"\ncomment = \"{long}\"\n\
         [[entries]]\ncidr = \"198.18.1.0/24\"\ncomment = \"line\\nbreak\"\n\
         [[entries]]\ncidrr = \"198.18.2.0/24\"\n\
         [[entries]]\ncomment = \"no cidr\"\n\
         [[entries]]\ncidr = 198\n"
    );
    let everyone = "allows everyone; to lift the restriction set active = false";
    let entry = |line: usize, n: usize, text: &str, message: &str| {
        at(
            line,
            &format!("key `entries`: entry {n} `{text}`: {message}"),
        )
    };
    assert_eq!(
        problems(&text),
        [
            entry(4, 1, "*", everyone),
            entry(6, 2, "0.0.0.0/0", everyone),
            entry(8, 3, "::/0", everyone),
            entry(10, 4, "any", everyone),
            entry(12, 5, "10.0.0.1/33", "prefix longer than 32"),
            entry(
                14,
                6,
                "10.0.0.5/24",
                "host bits set; did you mean 10.0.0.0/24?"
            ),
            entry(
                16,
                7,
                "not-an-ip",
                "not an IP address or CIDR (write e.g. 198.18.0.5, \
                                        198.18.0.0/24 or 2001:db8::/32)"
            ),
            entry(
                18,
                8,
                "::ffff:198.18.0.0/112",
                "IPv4-mapped addresses are judged as IPv4: \
                                                    write 198.18.0.0/16"
            ),
            entry(
                20,
                9,
                "::ffff:198.18.0.7",
                "IPv4-mapped addresses are judged as IPv4: \
                                                write 198.18.0.7"
            ),
            entry(22, 10, "all", everyone),
            entry(
                25,
                11,
                "198.18.0.0/24",
                "comment is 300 characters long; shorten it to at \
                                             most 256"
            ),
            entry(
                28,
                12,
                "198.18.1.0/24",
                "comment contains a control character (newline, \
                                             tab, ...); keep it to one line"
            ),
            at(
                30,
                "key `entries`: entry 13: unknown key `cidrr`; did you mean `cidr`?"
            ),
            at(
                31,
                "key `entries`: entry 14: missing `cidr`, e.g. cidr = \"198.18.0.0/24\""
            ),
            at(
                34,
                "key `entries`: entry 15: `cidr` must be a quoted address or CIDR, e.g. \
                    cidr = \"198.18.0.0/24\", not `198`"
            ),
        ]
    );
}

#[test]
fn inline_entries_are_accepted() -> Result<(), ConfigError> {
    let text = format!(
        "{PROTECT}entries = [\n  {{ cidr = \"198.18.0.0/24\", comment = \"office\" }},\n  \
         {{ cidr = \"2001:db8::/32\" }},\n]\n"
    );
    let config = parse(&text)?;
    assert_eq!(nets(&config), ["198.18.0.0/24", "2001:db8::/32"]);
    assert_eq!(&*config.entries[0].comment, "office");
    assert_eq!(config.entries[1].line, 5);

    let text = format!("{PROTECT}entries = [{{ cidr = \"198.18.0.0/24\" }}, \"198.18.1.0/24\"]\n");
    assert_eq!(
        problems(&text),
        [at(
            3,
            "key `entries`: entry 2: must be a table such as { cidr = \"198.18.0.0/24\", \
                comment = \"office\" }"
        )]
    );
    let text = format!("{PROTECT}[entries]\ncidr = \"198.18.0.0/24\"\n");
    let found = problems(&text);
    assert_eq!(found.len(), 1);
    assert!(
        found[0].starts_with(&at(3, "key `entries`: must be [[entries]] tables")),
        "{found:?}"
    );
    Ok(())
}

#[test]
fn duplicates_and_covered_entries_in_the_config_file() {
    let entries: String = [
        "198.18.1.0/24",   // line 4, entry 1
        "198.18.1.7",      // 6: inside entry 1
        "2001:db8::/32",   // 8
        "2001:db8:1::/48", // 10: inside entry 3
        "198.18.1.0/24",   // 12: repeats entry 1
    ]
    .iter()
    .map(|c| format!("[[entries]]\ncidr = \"{c}\"\n"))
    .collect();
    assert_eq!(
        problems(&format!("{PROTECT}{entries}")),
        [
            at(
                6,
                "key `entries`: entry 2 `198.18.1.7/32`: already covered by `198.18.1.0/24` \
                   (/etc/allowlist/allowlist.toml:4); remove one"
            ),
            at(
                10,
                "key `entries`: entry 4 `2001:db8:1::/48`: already covered by `2001:db8::/32` \
                    (/etc/allowlist/allowlist.toml:8); remove one"
            ),
            at(
                12,
                "key `entries`: entry 5 `198.18.1.0/24`: listed twice: \
                    /etc/allowlist/allowlist.toml:4 and /etc/allowlist/allowlist.toml:12; \
                    remove one"
            ),
        ]
    );
}

#[test]
fn adjacent_and_sibling_networks_are_not_covered() -> Result<(), ConfigError> {
    let entries: String = [
        "198.18.0.0/24",
        "198.18.1.0/24",
        "198.18.2.0/23",
        "198.18.4.0/32",
        "198.18.4.1/32",
        "2001:db8::/48",
        "2001:db8:1::/48",
        "2001:db8:2::/47",
    ]
    .iter()
    .map(|c| format!("[[entries]]\ncidr = \"{c}\"\n"))
    .collect();
    assert_eq!(parse(&format!("{PROTECT}{entries}"))?.entries.len(), 8);
    Ok(())
}

#[test]
fn list_files_are_read_relative_to_the_config() -> TestResult {
    let list = "# partners\n198.19.0.0/24   # partner A\n\n2001:db8:42::/48\n198.19.1.5 #\n";
    let text = format!("{PROTECT}list_files = [\"lists/partners.list\"]\n");
    let dir = tempfile::tempdir()?;
    std::fs::create_dir(dir.path().join("lists"))?;
    let list_path = dir.path().join("lists/partners.list");
    std::fs::write(&list_path, list)?;
    let path = dir.path().join("allowlist.toml");
    std::fs::write(&path, text)?;

    let config = Config::load(&path)?;
    assert_eq!(config.list_files, std::slice::from_ref(&list_path));
    let summary: Vec<_> = config
        .entries
        .iter()
        .map(|e| (e.net.to_string(), &*e.comment, e.line))
        .collect();
    assert_eq!(
        summary,
        [
            ("198.19.0.0/24".to_owned(), "partner A", 2),
            ("2001:db8:42::/48".to_owned(), "partners.list", 4),
            ("198.19.1.5/32".to_owned(), "partners.list", 5),
        ]
    );
    assert!(config.entries.iter().all(|e| *e.file == *list_path));
    Ok(())
}

#[test]
fn list_file_errors_name_the_list_file_and_line() -> TestResult {
    let text = format!("{PROTECT}list_files = [\"a.list\"]\n");
    let (dir, path) = with_files(
        &text,
        &[("a.list", "198.19.0.0/24\n\n198.19.0.5/24 # typo\nany\n")],
    )?;
    let list = dir.path().join("a.list");
    assert_eq!(
        problems_of(Config::load(&path)),
        [
            format!(
                "{}:3: `198.19.0.5/24`: host bits set; did you mean 198.19.0.0/24?",
                list.display()
            ),
            format!(
                "{}:4: `any`: allows everyone; to lift the restriction set active = false",
                list.display()
            ),
        ]
    );
    Ok(())
}

#[test]
fn missing_and_repeated_list_files_name_the_config_line() -> TestResult {
    let text = format!(
        "{PROTECT}list_files = [\n  \"a.list\",\n  \"missing.list\",\n  \"./a.list\",\n  \"\",\n]\n"
    );
    let (dir, path) = with_files(&text, &[("a.list", "198.19.0.0/24\n")])?;
    let found = problems_of(Config::load(&path));
    let config = path.display();
    assert_eq!(found.len(), 3, "{found:#?}");
    assert!(
        found[0].starts_with(&format!(
            "{config}:6: key `list_files`: entry 3 `./a.list`: listed twice (entries 1 and 3)"
        )),
        "{found:#?}"
    );
    assert_eq!(
        found[1],
        format!("{config}:7: key `list_files`: entry 4 ``: empty file path")
    );
    let missing = dir.path().join("missing.list");
    assert!(
        found[2].starts_with(&format!(
            "{config}:5: key `list_files`: entry 2 `missing.list`: reading {}: ",
            missing.display()
        )),
        "{found:#?}"
    );
    Ok(())
}

#[test]
fn list_lines_repeating_or_inside_inline_entries_merge_into_them() -> TestResult {
    let text = format!(
        "{PROTECT}list_files = [\"b.list\"]\n\
         [[entries]]\ncidr = \"198.18.1.0/24\"\ncomment = \"office\"\n\
         [[entries]]\ncidr = \"2001:db8:7::/48\"\n"
    );
    let list = "198.18.1.0/24 # again\n198.18.1.7\n2001:db8:7:1::/64\n198.18.2.0/24\n";
    let (dir, path) = with_files(&text, &[("b.list", list)])?;
    let config = Config::load(&path)?;
    // The inline entries stay, comment and all; the list's own network is the only one added.
    assert_eq!(
        nets(&config),
        ["198.18.1.0/24", "2001:db8:7::/48", "198.18.2.0/24"]
    );
    assert_eq!(&*config.entries[0].comment, "office");
    assert_eq!(*config.entries[2].file, dir.path().join("b.list"));
    assert_eq!(config.entries[2].line, 4);
    let by_net: Vec<String> = config.entries_by_net().map(|e| e.net.to_string()).collect();
    assert_eq!(
        by_net,
        ["198.18.1.0/24", "198.18.2.0/24", "2001:db8:7::/48"]
    );
    assert_eq!(config.rules().lists[0].entries.len(), 3);
    assert_eq!(config.merged_lines(), 3);
    assert_eq!(
        config.merged_summary().as_deref(),
        Some("merged 3 duplicate or covered list-file lines (b.list: 3)")
    );
    Ok(())
}

#[test]
fn list_lines_merge_within_and_across_files_keeping_the_widest() -> TestResult {
    let text = format!(
        "{PROTECT}list_files = [\"cloud.txt\", \"partners.txt\"]\n\
         [[entries]]\ncidr = \"198.18.100.1\"\ncomment = \"ops\"\n"
    );
    // The same prefix under several services, and ranges inside others, before and after.
    let cloud = "198.18.8.0/24 # compute\n198.18.0.0/21 # ec2\n198.18.8.0/24 # s3\n\
                 198.18.0.7 # route53\n2001:db8::/32 # ec2\n2001:db8:1::/48 # s3\n";
    let partners = "198.18.8.9 # partner A\n198.18.0.0/21 # partner B\n198.18.9.0/24\n";
    let (dir, path) = with_files(&text, &[("cloud.txt", cloud), ("partners.txt", partners)])?;
    let config = Config::load(&path)?;
    let kept: Vec<(String, &str, u32)> = config
        .entries
        .iter()
        .map(|e| (e.net.to_string(), &*e.comment, e.line))
        .collect();
    assert_eq!(
        kept,
        [
            ("198.18.100.1/32".to_owned(), "ops", 5),
            ("198.18.8.0/24".to_owned(), "compute", 1),
            ("198.18.0.0/21".to_owned(), "ec2", 2),
            ("2001:db8::/32".to_owned(), "ec2", 5),
            ("198.18.9.0/24".to_owned(), "partners.txt", 3),
        ]
    );
    assert_eq!(
        config.merged,
        [
            MergedLines {
                file: dir.path().join("cloud.txt"),
                lines: 3
            },
            MergedLines {
                file: dir.path().join("partners.txt"),
                lines: 2
            },
        ]
    );
    assert_eq!(
        config.merged_summary().as_deref(),
        Some("merged 5 duplicate or covered list-file lines (cloud.txt: 3; partners.txt: 2)")
    );
    let by_net: Vec<String> = config.entries_by_net().map(|e| e.net.to_string()).collect();
    assert_eq!(
        by_net,
        [
            "198.18.0.0/21",
            "198.18.8.0/24",
            "198.18.9.0/24",
            "198.18.100.1/32",
            "2001:db8::/32"
        ]
    );
    // Nothing merged: no summary.
    let (_dir, path) = with_files(&text, &[("cloud.txt", ""), ("partners.txt", "")])?;
    let config = Config::load(&path)?;
    assert_eq!((config.merged_lines(), config.merged_summary()), (0, None));
    Ok(())
}

#[test]
fn inline_entries_stay_strict_and_are_not_swallowed_by_list_lines() -> TestResult {
    let text = format!(
        "{PROTECT}list_files = [\"b.list\"]\n\
         [[entries]]\ncidr = \"198.18.1.0/24\"\n\
         [[entries]]\ncidr = \"2001:db8:7::/48\"\n\
         [[entries]]\ncidr = \"198.18.1.0/24\"\n\
         [[entries]]\ncidr = \"198.18.1.9\"\n"
    );
    let list = "2001:db8::/32 # provider\n198.18.1.0/24\n198.18.1.7\n";
    let (dir, path) = with_files(&text, &[("b.list", list)])?;
    let (config, list) = (path.display(), dir.path().join("b.list"));
    assert_eq!(
        problems_of(Config::load(&path)),
        [
            format!(
                "{config}:7: key `entries`: entry 2 `2001:db8:7::/48`: already covered by \
                 `2001:db8::/32` of list file {}:1; remove this entry (the list file allows \
                 it already) or that line",
                list.display()
            ),
            format!(
                "{config}:9: key `entries`: entry 3 `198.18.1.0/24`: listed twice: {config}:5 \
                 and {config}:9; remove one"
            ),
            format!(
                "{config}:11: key `entries`: entry 4 `198.18.1.9/32`: already covered by \
                 `198.18.1.0/24` ({config}:5); remove one"
            ),
        ]
    );
    Ok(())
}

#[test]
fn problems_are_capped() -> TestResult {
    let text = format!("{PROTECT}list_files = [\"bad.list\"]\n");
    let (_dir, path) = with_files(&text, &[("bad.list", &"nonsense\n".repeat(120))])?;
    let err = Config::load(&path).expect_err("120 bad lines");
    assert_eq!(err.problems().len(), MAX_PROBLEMS);
    assert!(
        err.to_string().ends_with(
            "\n... and 70 more problems (120 in all); `allowlistd --check --all-problems \
             --config FILE` lists every one"
        ),
        "{err}"
    );
    Ok(())
}

#[test]
fn loads_a_200_000_line_list_file() -> TestResult {
    // Disjoint networks only: 65,536 IPv4 /32s, 256 IPv4 /24s, and IPv6 /128s and /64s.
    let mut list = String::with_capacity(200_000 * 30);
    let mut lines = 0;
    for i in 0..65_536u32 {
        let _ = writeln!(list, "198.18.{}.{}", i >> 8, i & 255);
        lines += 1;
    }
    for i in 0..256 {
        let _ = writeln!(list, "198.19.{i}.0/24 # site {i}");
        lines += 1;
    }
    // Alternating /128s in 2001:db8::/64 and /64s from 2001:db8:1::/48 on.
    let mut i = 0u32;
    while lines < 200_000 {
        let (hi, lo) = (i >> 16, i & 0xffff);
        let _ = writeln!(list, "2001:db8::{hi:x}:{lo:x}");
        let _ = writeln!(list, "2001:db8:{:x}:{lo:x}::/64", hi + 1);
        i += 1;
        lines += 2;
    }
    let text = format!("{PROTECT}max_entries = 200000\nlist_files = [\"big.list\"]\n");
    let (_dir, path) = with_files(&text, &[("big.list", &list)])?;
    let config = Config::load(&path)?;
    assert_eq!(config.entries.len(), 200_000);
    assert_eq!(&*config.entries[65_536].comment, "site 0");
    assert_eq!(config.rules().lists[0].entries.len(), 200_000);
    Ok(())
}

#[test]
fn timed_entries_carry_their_end() -> TestResult {
    let text = format!(
        "{PROTECT}[[entries]]\ncidr = \"198.18.0.5\"\ncomment = \"contractor\"\n\
         expires = 2026-12-24T18:00:00Z\n[[entries]]\ncidr = \"198.18.1.0/24\"\n\
         [[entries]]\ncidr = \"2001:db8::1\"\nexpires = \"2026-12-24T19:00:00+01:00\"\n"
    );
    let config = parse(&text)?;
    let end: jiff::Timestamp = "2026-12-24T18:00:00Z".parse()?;
    let ends: Vec<Option<SystemTime>> = config.entries.iter().map(|e| config.end_of(e)).collect();
    assert_eq!(ends, [Some(end.into()), None, Some(end.into())]);
    assert_eq!(config.next_end(), Some(end.into()));
    let rules = config.rules();
    assert_eq!(rules.lists[0].ends.len(), 2);
    assert_eq!(rules.lists[0].entries.len(), 3);
    // An entry that has ended covers nothing.
    let ended = parse(&format!(
        "{PROTECT}active = true\n[[entries]]\ncidr = \"198.18.0.5\"\nexpires = 2020-01-01T00:00:00Z\n"
    ))?;
    let ip = "198.18.0.5".parse()?;
    assert!(!ended.rules().allows(ip, rules::Protocol::Tcp, 22));
    assert!(config.rules().lists[0].covers(ip));
    Ok(())
}

#[test]
fn bad_ends_are_refused_with_their_line() {
    let entry = |expires: &str| {
        format!("{PROTECT}[[entries]]\ncidr = \"198.18.0.5\"\nexpires = {expires}\n")
    };
    let refused = |expires: &str, rest: &str| {
        let want = format!(
            "key `entries`: entry 1: `expires` must be a date and time with its offset, e.g. \
             expires = 2026-12-24T18:00:00Z{rest}"
        );
        assert_eq!(problems(&entry(expires)), [at(5, &want)]);
    };
    refused(
        "2026-12-24T18:00:00",
        " (a time without an offset is ambiguous: add Z for UTC, or +01:00), not \
         `2026-12-24T18:00:00`",
    );
    refused("2026-12-24", ", not `2026-12-24`");
    refused("\"tomorrow\"", ", not `\"tomorrow\"`");
    refused("8", ", not `8`");
}
