//! Checking each list at once: repeated entries and entries inside another entry's network
//! are refused, since they are almost always a mistake in one of the two. Entries of
//! different lists may nest or repeat: a source may be in several lists.

use ipnet::IpNet;

use super::Entry;
use super::error::{Problem, Report};

/// A problem about `entries[index]`. The first entries come from `[[entries]]`, and
/// `inline[i]` is the 1-based `[[entries]]` number of `entries[i]`; the rest are list-file
/// lines, located by their line alone.
fn entry_problem(entries: &[Entry], inline: &[usize], index: usize, message: String) -> Problem {
    let entry = &entries[index];
    let problem = Problem::new(&entry.file, Some(entry.line as usize), message);
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
    list: u8,
    /// u32, as `order` has it: a million of these are sorted at every reload.
    index: u32,
}

/// `entries[index]` repeats or lies inside `entries[other]`.
struct Overlap {
    index: u32,
    other: u32,
    duplicate: bool,
}

/// Reports every entry that repeats an earlier one or lies inside another entry's network,
/// and returns the entries' indices in network order (IPv4 first, as `IpNet` orders them).
///
/// Sorting by (start, prefix length) puts every network right after the networks containing
/// it (CIDR blocks either nest or are disjoint), so one sweep finds all overlaps: O(n log n),
/// which matters for list files with a million lines.
pub fn check_overlaps(entries: &[Entry], inline: &[usize], report: &mut Report) -> Vec<u32> {
    let count_v4 = entries.iter().filter(|e| e.net.addr().is_ipv4()).count();
    let mut v4 = Vec::with_capacity(count_v4);
    let mut v6 = Vec::with_capacity(entries.len() - count_v4);
    for (index, entry) in (0u32..).zip(entries) {
        match entry.net {
            IpNet::V4(net) => v4.push(Span {
                start: u32::from(net.network()),
                end: u32::from(net.broadcast()),
                prefix: net.prefix_len(),
                list: entry.list,
                index,
            }),
            IpNet::V6(net) => v6.push(Span {
                start: u128::from(net.network()),
                end: u128::from(net.broadcast()),
                prefix: net.prefix_len(),
                list: entry.list,
                index,
            }),
        }
    }
    let mut found = Vec::new();
    let mut order = Vec::with_capacity(entries.len());
    sweep(v4, &mut found, &mut order);
    sweep(v6, &mut found, &mut order);
    found.sort_unstable_by_key(|o| o.index);
    for o in found {
        let (this, other) = (&entries[o.index as usize], &entries[o.other as usize]);
        let message = if o.duplicate {
            format!(
                "listed twice: {} and {}; remove one",
                other.origin(),
                this.origin()
            )
        } else {
            format!(
                "already covered by `{}` ({}); remove one",
                other.net,
                other.origin()
            )
        };
        report.push_overlap(entry_problem(entries, inline, o.index as usize, message));
    }
    order
}

fn sweep<A: Copy + Ord>(mut spans: Vec<Span<A>>, found: &mut Vec<Overlap>, order: &mut Vec<u32>) {
    // Equal networks sort by position, so the first occurrence is the one kept.
    spans.sort_unstable_by_key(|s| (s.list, s.start, s.prefix, s.index));
    // The widest network containing the current position, and the first occurrence of the
    // network before this one (so a repeated network reads as a duplicate, not as covered).
    let mut cover: Option<&Span<A>> = None;
    let mut first: Option<&Span<A>> = None;
    let mut list = None;
    for span in &spans {
        if list != Some(span.list) {
            (cover, first, list) = (None, None, Some(span.list));
        }
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
    if spans
        .first()
        .is_some_and(|f| spans.iter().any(|s| s.list != f.list))
    {
        spans.sort_unstable_by_key(|s| (s.start, s.prefix, s.index));
    }
    order.extend(spans.iter().map(|s| s.index));
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    fn net(s: &str) -> IpNet {
        s.parse().expect("test network")
    }

    fn entries(list: &[(&str, &str, usize)]) -> Vec<Entry> {
        list.iter()
            .map(|&(n, file, line)| Entry {
                net: net(n),
                comment: arcstr::ArcStr::from(""),
                file: std::sync::Arc::new(Path::new(file).to_path_buf()),
                line: line as u32,
                list: 0,
            })
            .collect()
    }

    fn overlaps(list: &[(&str, &str, usize)], inline: &[usize]) -> Vec<String> {
        let mut report = Report::default();
        let list = entries(list);
        let order = check_overlaps(&list, inline, &mut report);
        let nets: Vec<IpNet> = order.iter().map(|&i| list[i as usize].net).collect();
        assert!(nets.is_sorted(), "network order: {nets:?}");
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
        let list = entries(&[
            ("198.18.0.0/24", "a.toml", 7),
            ("2001:db8::1/128", "x.list", 2),
        ]);
        // [[entries]] are numbered as in the file, even when earlier ones were invalid.
        let p = entry_problem(&list, &[3], 0, "bad".to_owned());
        assert_eq!(
            p.to_string(),
            "a.toml:7: key `entries`: entry 3 `198.18.0.0/24`: bad"
        );
        let p = entry_problem(&list, &[3], 1, "bad".to_owned());
        assert_eq!(p.file, Path::new("x.list"));
        assert_eq!(p.to_string(), "x.list:2: `2001:db8::1/128`: bad");
    }
}
