//! Allowlist entries: parsing one address or network, and checking the whole list for
//! duplicates, nesting and size.

use std::net::IpAddr;

use ipnet::{IpNet, Ipv4Net};

use super::Entry;
use super::error::{Problem, Report};

pub const MAX_COMMENT_CHARS: usize = 256;

const GARBAGE: &str =
    "not an IP address or CIDR (write e.g. 198.18.0.5, 198.18.0.0/24 or 2001:db8::/32)";
const EVERYONE: &str = "allows everyone; to lift the restriction set active = false";

/// Parses an entry: a network in CIDR notation, or a single address (stored as /32 or /128).
/// The error is a message for the admin, with the fix where there is an obvious one.
pub fn parse_net(text: &str) -> Result<IpNet, String> {
    let text = text.trim();
    let garbage = || GARBAGE.to_owned();
    if text.is_empty() {
        return Err(garbage());
    }
    if ["*", "any", "all"].iter().any(|w| text.eq_ignore_ascii_case(w)) {
        return Err(EVERYONE.to_owned());
    }
    let (addr, prefix) = match text.split_once('/') {
        Some((addr, prefix)) => (addr, Some(prefix)),
        None => (text, None),
    };
    let addr: IpAddr = addr.parse().map_err(|_| garbage())?;
    let max = if addr.is_ipv4() { 32 } else { 128 };
    let prefix = match prefix {
        None => max,
        // Digit strings too long for a u8 are simply too long a prefix.
        Some(p) if !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) => {
            p.parse::<u8>().unwrap_or(u8::MAX)
        }
        Some(_) => return Err(garbage()),
    };
    if prefix > max {
        return Err(format!("prefix longer than {max}"));
    }
    if prefix == 0 {
        return Err(EVERYONE.to_owned());
    }
    // The filter judges IPv4-mapped sources by their IPv4 address, so such an entry could
    // never match.
    if let IpAddr::V6(v6) = addr
        && prefix >= 96
        && let Some(v4) = v6.to_ipv4_mapped()
    {
        return Err(mapped_to_v4(v4, prefix - 96));
    }
    let net = IpNet::new(addr, prefix).map_err(|_| garbage())?;
    let network = net.trunc();
    if network != net {
        return Err(format!("host bits set; did you mean {network}?"));
    }
    Ok(net)
}

fn mapped_to_v4(addr: std::net::Ipv4Addr, prefix: u8) -> String {
    let write = match Ipv4Net::new(addr, prefix) {
        Ok(net) if prefix == 32 => net.addr().to_string(),
        Ok(net) if prefix > 0 => net.trunc().to_string(),
        _ => return EVERYONE.to_owned(),
    };
    format!("IPv4-mapped addresses are judged as IPv4: write {write}")
}

/// Comments end up in logs and `allowlistctl` output, one line per entry.
pub fn check_comment(comment: &str) -> Result<(), String> {
    if comment.len() > MAX_COMMENT_CHARS {
        let chars = comment.chars().count();
        if chars > MAX_COMMENT_CHARS {
            return Err(format!(
                "comment is {chars} characters long; shorten it to at most {MAX_COMMENT_CHARS}"
            ));
        }
    }
    if comment.chars().any(char::is_control) {
        return Err(
            "comment contains a control character (newline, tab, ...); keep it to one line"
                .to_owned(),
        );
    }
    Ok(())
}

/// A problem about `entries[index]`. The first entries come from `[[entries]]`, and
/// `inline[i]` is the 1-based `[[entries]]` number of `entries[i]`; the rest are list-file
/// lines, located by their line alone.
pub fn entry_problem(entries: &[Entry], inline: &[usize], index: usize, message: String) -> Problem {
    let entry = &entries[index];
    let problem = Problem::new(&entry.origin.file, Some(entry.origin.line), message);
    match inline.get(index) {
        Some(number) => problem
            .key("entries")
            .entry(format!("entry {number} `{}`", entry.net)),
        None => problem.entry(format!("`{}`", entry.net)),
    }
}

/// A network as an address range, for sorting. `A` is `u32` or `u128`.
struct Span<A> {
    start: A,
    end: A,
    prefix: u8,
    index: usize,
}

/// `entries[index]` repeats or lies inside `entries[other]`.
struct Overlap {
    index: usize,
    other: usize,
    duplicate: bool,
}

/// Reports every entry that repeats an earlier one or lies inside another entry's network.
///
/// Sorting by (start, prefix length) puts every network right after the networks containing
/// it (CIDR blocks either nest or are disjoint), so one sweep finds all overlaps: O(n log n),
/// which matters for list files with a million lines.
pub fn check_overlaps(entries: &[Entry], inline: &[usize], report: &mut Report) {
    let mut v4 = Vec::new();
    let mut v6 = Vec::new();
    for (index, entry) in entries.iter().enumerate() {
        match entry.net {
            IpNet::V4(net) => v4.push(Span {
                start: u32::from(net.network()),
                end: u32::from(net.broadcast()),
                prefix: net.prefix_len(),
                index,
            }),
            IpNet::V6(net) => v6.push(Span {
                start: u128::from(net.network()),
                end: u128::from(net.broadcast()),
                prefix: net.prefix_len(),
                index,
            }),
        }
    }
    let mut found = Vec::new();
    sweep(v4, &mut found);
    sweep(v6, &mut found);
    found.sort_unstable_by_key(|o| o.index);
    for o in found {
        let (this, other) = (&entries[o.index], &entries[o.other]);
        let message = if o.duplicate {
            format!(
                "listed twice: {} and {}; remove one",
                other.origin, this.origin
            )
        } else {
            format!(
                "already covered by `{}` ({}); remove one",
                other.net, other.origin
            )
        };
        report.push(entry_problem(entries, inline, o.index, message));
    }
}

fn sweep<A: Copy + Ord>(mut spans: Vec<Span<A>>, found: &mut Vec<Overlap>) {
    // Equal networks sort by position, so the first occurrence is the one kept.
    spans.sort_unstable_by_key(|s| (s.start, s.prefix, s.index));
    // The widest network containing the current position, and the first occurrence of the
    // network before this one (so a repeated network reads as a duplicate, not as covered).
    let mut cover: Option<&Span<A>> = None;
    let mut first: Option<&Span<A>> = None;
    for span in &spans {
        if let Some(f) = first
            && (f.start, f.prefix) == (span.start, span.prefix)
        {
            found.push(Overlap {
                index: span.index,
                other: f.index,
                duplicate: true,
            });
            continue;
        }
        first = Some(span);
        match cover {
            Some(c) if span.start <= c.end => found.push(Overlap {
                index: span.index,
                other: c.index,
                duplicate: false,
            }),
            _ => cover = Some(span),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::{Path, PathBuf};

    use super::super::Origin;
    use super::*;

    fn net(s: &str) -> IpNet {
        s.parse().expect("test network")
    }

    #[test]
    fn parses_networks_and_single_addresses() {
        assert_eq!(parse_net("198.18.0.0/24"), Ok(net("198.18.0.0/24")));
        assert_eq!(parse_net("  198.18.0.5 "), Ok(net("198.18.0.5/32")));
        assert_eq!(parse_net("2001:db8::1"), Ok(net("2001:db8::1/128")));
        assert_eq!(parse_net("2001:db8::/32"), Ok(net("2001:db8::/32")));
        assert_eq!(parse_net("198.18.0.5/32"), Ok(net("198.18.0.5/32")));
        assert_eq!(parse_net("\t2001:db8:1::/48\t"), Ok(net("2001:db8:1::/48")));
    }

    #[test]
    fn refuses_everyone() {
        for text in ["*", "any", "ALL", "Any", "0.0.0.0/0", "::/0", "198.18.0.0/0"] {
            let err = parse_net(text).expect_err(text);
            assert!(err.contains("allows everyone"), "{text}: {err}");
            assert!(err.contains("set active = false"), "{text}: {err}");
        }
    }

    #[test]
    fn refuses_prefixes_too_long() {
        assert_eq!(
            parse_net("10.0.0.1/33").as_deref(),
            Err("prefix longer than 32")
        );
        assert_eq!(
            parse_net("2001:db8::/129").as_deref(),
            Err("prefix longer than 128")
        );
        assert_eq!(
            parse_net("10.0.0.1/99999999999").as_deref(),
            Err("prefix longer than 32")
        );
    }

    #[test]
    fn refuses_host_bits_with_the_network_as_fix() {
        assert_eq!(
            parse_net("10.0.0.5/24").as_deref(),
            Err("host bits set; did you mean 10.0.0.0/24?")
        );
        assert_eq!(
            parse_net("2001:db8::1/64").as_deref(),
            Err("host bits set; did you mean 2001:db8::/64?")
        );
    }

    #[test]
    fn refuses_garbage() {
        for text in [
            "", "   ", "example.com", "198.18.0", "198.18.0.256", "198.18.0.0/", "198.18.0.0/x",
            "198.18.0.0/+8", "198.18.0.0 /24", "198.18.0.0/24/8", "010.0.0.1", "fe80::1%eth0",
            "2001:db8:::1",
        ] {
            let err = parse_net(text).expect_err(text);
            assert!(err.starts_with("not an IP address or CIDR"), "{text:?}: {err}");
        }
    }

    #[test]
    fn refuses_ipv4_mapped_with_the_ipv4_equivalent() {
        let cases = [
            ("::ffff:198.18.0.0/112", "write 198.18.0.0/16"),
            ("::ffff:198.18.0.5/112", "write 198.18.0.0/16"),
            ("::ffff:198.18.0.5", "write 198.18.0.5"),
            ("::ffff:c612:5/128", "write 198.18.0.5"),
        ];
        for (text, fix) in cases {
            let err = parse_net(text).expect_err(text);
            assert!(err.starts_with("IPv4-mapped addresses are judged as IPv4"), "{err}");
            assert!(err.ends_with(fix), "{text}: {err}");
        }
        let err = parse_net("::ffff:0.0.0.0/96").expect_err("all of IPv4");
        assert!(err.contains("allows everyone"), "{err}");
    }

    #[test]
    fn checks_comments() {
        assert_eq!(check_comment(""), Ok(()));
        assert_eq!(check_comment("office VPN – Zürich"), Ok(()));
        assert_eq!(check_comment(&"é".repeat(MAX_COMMENT_CHARS)), Ok(()));
        let err = check_comment(&"x".repeat(MAX_COMMENT_CHARS + 1)).expect_err("too long");
        assert!(err.contains("257 characters") && err.contains("at most 256"), "{err}");
        for text in ["two\nlines", "tab\there", "cr\r", "nul\0"] {
            let err = check_comment(text).expect_err(text);
            assert!(err.contains("control character"), "{err}");
        }
    }

    fn entries(list: &[(&str, &str, usize)]) -> Vec<Entry> {
        list.iter()
            .map(|&(n, file, line)| Entry {
                net: net(n),
                comment: String::new(),
                origin: Origin {
                    file: PathBuf::from(file),
                    line,
                },
            })
            .collect()
    }

    fn overlaps(list: &[(&str, &str, usize)], inline: &[usize]) -> Vec<String> {
        let mut report = Report::default();
        check_overlaps(&entries(list), inline, &mut report);
        match report.finish(()) {
            Ok(()) => Vec::new(),
            Err(err) => err.problems().iter().map(Problem::to_string).collect(),
        }
    }

    #[test]
    fn disjoint_and_adjacent_networks_do_not_overlap() {
        let list = [
            ("198.18.0.0/24", "a.toml", 1),
            ("198.18.1.0/24", "a.toml", 2),
            ("198.18.2.0/23", "a.toml", 3),
            ("198.18.4.1/32", "a.toml", 4),
            ("198.18.4.0/32", "a.toml", 5),
            ("2001:db8::/48", "a.toml", 6),
            ("2001:db8:1::/48", "a.toml", 7),
            ("2001:db8:2::1/128", "a.toml", 8),
        ];
        assert_eq!(overlaps(&list, &[]), Vec::<String>::new());
    }

    #[test]
    fn finds_duplicates_naming_both_origins() {
        let list = [
            ("198.18.1.0/24", "a.toml", 4),
            ("2001:db8::/32", "a.toml", 5),
            ("198.18.1.0/24", "b.list", 9),
            ("2001:db8::/32", "b.list", 10),
        ];
        assert_eq!(
            overlaps(&list, &[1, 2]),
            [
                "b.list:9: `198.18.1.0/24`: listed twice: a.toml:4 and b.list:9; remove one",
                "b.list:10: `2001:db8::/32`: listed twice: a.toml:5 and b.list:10; remove one",
            ]
        );
    }

    #[test]
    fn finds_covered_entries_in_both_families() {
        let list = [
            ("198.18.1.7/32", "a.toml", 3),
            ("198.18.1.0/24", "a.toml", 4),
            ("2001:db8:5::/48", "a.toml", 5),
            ("2001:db8::/32", "b.list", 1),
            ("198.18.2.0/24", "b.list", 2),
        ];
        assert_eq!(
            overlaps(&list, &[1, 2, 4]),
            [
                "a.toml:3: key `entries`: entry 1 `198.18.1.7/32`: already covered by \
                 `198.18.1.0/24` (a.toml:4); remove one",
                "a.toml:5: key `entries`: entry 4 `2001:db8:5::/48`: already covered by \
                 `2001:db8::/32` (b.list:1); remove one",
            ]
        );
    }

    #[test]
    fn nested_networks_report_the_outermost_and_repeats_as_duplicates() {
        let list = [
            ("198.18.0.0/16", "b.list", 1),
            ("198.18.1.0/24", "b.list", 2),
            ("198.18.1.128/25", "b.list", 3),
            ("198.18.1.0/24", "b.list", 4),
            ("198.18.2.0/24", "b.list", 5),
            ("198.19.0.1/32", "b.list", 6),
        ];
        assert_eq!(
            overlaps(&list, &[]),
            [
                "b.list:2: `198.18.1.0/24`: already covered by `198.18.0.0/16` (b.list:1); \
                 remove one",
                "b.list:3: `198.18.1.128/25`: already covered by `198.18.0.0/16` (b.list:1); \
                 remove one",
                "b.list:4: `198.18.1.0/24`: listed twice: b.list:2 and b.list:4; remove one",
                "b.list:5: `198.18.2.0/24`: already covered by `198.18.0.0/16` (b.list:1); \
                 remove one",
            ]
        );
    }

    #[test]
    fn entry_problem_locates_inline_and_list_entries() {
        let list = entries(&[("198.18.0.0/24", "a.toml", 7), ("2001:db8::1/128", "x.list", 2)]);
        // [[entries]] are numbered as in the file, even when earlier ones were invalid.
        let p = entry_problem(&list, &[3], 0, "bad".to_owned());
        assert_eq!(p.to_string(), "a.toml:7: key `entries`: entry 3 `198.18.0.0/24`: bad");
        let p = entry_problem(&list, &[3], 1, "bad".to_owned());
        assert_eq!(p.file, Path::new("x.list"));
        assert_eq!(p.to_string(), "x.list:2: `2001:db8::1/128`: bad");
    }
}
