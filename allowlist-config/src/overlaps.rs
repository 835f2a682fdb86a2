//! Checking each list at once, in one sorted pass. List-file lines that repeat an entry of
//! their list or lie inside another entry's network are merged away: published ranges (a
//! cloud provider's, say) list the same prefix under several services. Hand-written
//! `[[entries]]` stay strict: one repeating or inside another entry is almost always a mistake
//! in one of the two, and is refused. Entries of different lists may nest or repeat: a source
//! may be in several lists.

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

/// `entries[index]` (from `[[entries]]`) repeats or lies inside `entries[other]`.
struct Overlap {
    index: u32,
    other: u32,
    duplicate: bool,
}

/// One bit per entry: set for the list-file lines merged away. A million entries take
/// 128 KiB, and the count before each word makes `rank` (how many are set before an index)
/// two loads.
#[derive(Debug, Default)]
pub struct Merged {
    words: Vec<u64>,
    /// Bits set in the words before each word.
    before: Vec<u32>,
}

impl Merged {
    fn new(len: usize) -> Merged {
        Merged {
            words: vec![0; len.div_ceil(64)],
            before: Vec::new(),
        }
    }

    fn set(&mut self, index: u32) {
        self.words[index as usize / 64] |= 1 << (index % 64);
    }

    fn is_set(&self, index: usize) -> bool {
        self.words[index / 64] & (1 << (index % 64)) != 0
    }

    /// Fills `before`, once every bit is set.
    fn finish(&mut self) {
        let mut sum = 0u32;
        self.before = self
            .words
            .iter()
            .map(|w| {
                let here = sum;
                sum += w.count_ones();
                here
            })
            .collect();
    }

    /// How many lines were merged in all.
    pub fn count(&self) -> usize {
        self.words.iter().map(|w| w.count_ones() as usize).sum()
    }

    /// How many of the entries before `index` were merged; `index` may be the length.
    pub fn rank(&self, index: usize) -> usize {
        let (word, bit) = (index / 64, index % 64);
        match self.words.get(word) {
            Some(w) => self.before[word] as usize + (w & ((1u64 << bit) - 1)).count_ones() as usize,
            None => self.count(),
        }
    }

    /// Takes the merged lines out of `entries` and renumbers `by_net` (which holds none of
    /// them) to match: one pass over each, in place. The room they took is given back: a
    /// reload holds two configs, and the tail of `entries` was written, so it is resident.
    pub fn remove(&self, entries: &mut Vec<Entry>, by_net: &mut Vec<u32>) {
        let mut index = 0;
        entries.retain(|_| {
            let keep = !self.is_set(index);
            index += 1;
            keep
        });
        entries.shrink_to_fit();
        for i in by_net.iter_mut() {
            *i -= self.rank(*i as usize) as u32;
        }
        by_net.shrink_to_fit();
    }
}

/// What the sweep found: the entries kept, in network order, and the lines merged away.
pub struct Swept {
    pub by_net: Vec<u32>,
    pub merged: Merged,
}

/// Finds every entry that repeats an earlier one or lies inside another entry's network:
/// list-file lines are merged (the wider network kept, or the first of equal ones, an
/// `[[entries]]` entry before any list-file line); an `[[entries]]` entry is reported, as
/// the entries it repeats or lies inside are either hand-written too or a list-file line
/// that would swallow its comment. Returns the indices of the entries kept in network order
/// (IPv4 first, as `IpNet` orders them) and the merged ones.
///
/// Sorting by (start, prefix length) puts every network right after the networks containing
/// it (CIDR blocks either nest or are disjoint), so one sweep finds all overlaps: O(n log n),
/// which matters for list files with a million lines.
pub fn check_overlaps(entries: &[Entry], inline: &[usize], report: &mut Report) -> Swept {
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
    let mut swept = Swept {
        by_net: Vec::with_capacity(entries.len()),
        merged: Merged::new(entries.len()),
    };
    let inline_len = inline.len() as u32;
    sweep(v4, inline_len, &mut found, &mut swept);
    sweep(v6, inline_len, &mut found, &mut swept);
    swept.merged.finish();
    found.sort_unstable_by_key(|o| o.index);
    for o in found {
        let (this, other) = (&entries[o.index as usize], &entries[o.other as usize]);
        let message = if o.duplicate {
            format!(
                "listed twice: {} and {}; remove one",
                other.origin(),
                this.origin()
            )
        } else if o.other < inline_len {
            format!(
                "already covered by `{}` ({}); remove one",
                other.net,
                other.origin()
            )
        } else {
            format!(
                "already covered by `{}` of list file {}; remove this entry (the list file \
                 allows it already) or that line",
                other.net,
                other.origin()
            )
        };
        report.push_overlap(entry_problem(entries, inline, o.index as usize, message));
    }
    swept
}

/// One family's spans; entries below `inline_len` are `[[entries]]`, the rest list-file lines.
fn sweep<A: Copy + Ord>(
    mut spans: Vec<Span<A>>,
    inline_len: u32,
    found: &mut Vec<Overlap>,
    swept: &mut Swept,
) {
    // Equal networks sort by position, so the first occurrence is the one kept, and an
    // `[[entries]]` entry comes before every list-file line. Each list on its own.
    let lists = spans
        .first()
        .is_some_and(|f| spans.iter().any(|s| s.list != f.list));
    spans.sort_unstable_by_key(|s| (s.list, s.start, s.prefix, s.index));
    let from = swept.by_net.len();
    // The widest network containing the current position, and the first occurrence of the
    // network before this one (so a repeated network reads as a duplicate, not as covered).
    let mut cover: Option<&Span<A>> = None;
    let mut first: Option<&Span<A>> = None;
    let mut list = None;
    for span in &spans {
        if list != Some(span.list) {
            (cover, first, list) = (None, None, Some(span.list));
        }
        let inline = span.index < inline_len;
        let other = if let Some(f) = first
            && (f.start, f.prefix) == (span.start, span.prefix)
        {
            Some((f.index, true))
        } else {
            first = Some(span);
            match cover {
                Some(c) if span.start <= c.end => Some((c.index, false)),
                _ => {
                    cover = Some(span);
                    None
                }
            }
        };
        match other {
            Some(_) if !inline => swept.merged.set(span.index),
            Some((other, duplicate)) => {
                found.push(Overlap {
                    index: span.index,
                    other,
                    duplicate,
                });
                // Refused: the config is not used, but its order stays whole.
                swept.by_net.push(span.index);
            }
            None => swept.by_net.push(span.index),
        }
    }
    if lists {
        // The kept entries of every list, in network order.
        spans.sort_unstable_by_key(|s| (s.start, s.prefix, s.index));
        swept.by_net.truncate(from);
        let kept = spans
            .iter()
            .filter(|s| !swept.merged.is_set(s.index as usize));
        swept.by_net.extend(kept.map(|s| s.index));
    }
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

    /// The problems, the indices kept in network order, and the indices merged.
    fn swept(list: &[(&str, &str, usize)], inline: &[usize]) -> (Vec<String>, Vec<u32>, Vec<u32>) {
        let mut report = Report::default();
        let list = entries(list);
        let swept = check_overlaps(&list, inline, &mut report);
        let nets: Vec<IpNet> = swept.by_net.iter().map(|&i| list[i as usize].net).collect();
        assert!(nets.is_sorted(), "network order: {nets:?}");
        let merged: Vec<u32> = (0..list.len() as u32)
            .filter(|&i| swept.merged.is_set(i as usize))
            .collect();
        assert_eq!(swept.merged.count(), merged.len());
        assert_eq!(swept.by_net.len() + merged.len(), list.len());
        let problems = match report.finish(()) {
            Ok(()) => Vec::new(),
            Err(err) => err.problems().iter().map(Problem::to_string).collect(),
        };
        (problems, swept.by_net, merged)
    }

    fn overlaps(list: &[(&str, &str, usize)], inline: &[usize]) -> Vec<String> {
        swept(list, inline).0
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
        assert_eq!(
            overlaps(&list, &[1, 2, 3, 4, 5, 6, 7, 8]),
            Vec::<String>::new()
        );
        let (problems, by_net, merged) = swept(&list, &[]);
        assert_eq!((problems.len(), merged.len()), (0, 0));
        assert_eq!(by_net, [0, 1, 2, 4, 3, 5, 6, 7]);
    }

    #[test]
    fn inline_duplicates_are_refused_naming_both_origins() {
        let list = [
            ("198.18.1.0/24", "a.toml", 4),
            ("2001:db8::/32", "a.toml", 5),
            ("198.18.1.0/24", "a.toml", 9),
            ("2001:db8::/32", "a.toml", 10),
        ];
        assert_eq!(
            overlaps(&list, &[1, 2, 3, 4]),
            [
                "a.toml:9: key `entries`: entry 3 `198.18.1.0/24`: listed twice: a.toml:4 and \
                 a.toml:9; remove one",
                "a.toml:10: key `entries`: entry 4 `2001:db8::/32`: listed twice: a.toml:5 and \
                 a.toml:10; remove one",
            ]
        );
    }

    #[test]
    fn inline_entries_covered_by_inline_or_list_entries_are_refused() {
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
                 `2001:db8::/32` of list file b.list:1; remove this entry (the list file allows \
                 it already) or that line",
            ]
        );
    }

    #[test]
    fn list_lines_merge_into_the_widest_network_or_the_first_repeat() {
        let list = [
            ("198.18.0.0/16", "b.list", 1),
            ("198.18.1.0/24", "b.list", 2),
            ("198.18.1.128/25", "b.list", 3),
            ("198.18.1.0/24", "b.list", 4),
            ("198.18.2.0/24", "b.list", 5),
            ("198.19.0.1/32", "b.list", 6),
            ("2001:db8::1/128", "b.list", 7),
            ("2001:db8::1/128", "c.list", 1),
            // The wider network after the one it covers: the wider one is kept.
            ("198.19.0.0/24", "c.list", 2),
        ];
        let (problems, by_net, merged) = swept(&list, &[]);
        assert_eq!(problems, Vec::<String>::new());
        assert_eq!(by_net, [0, 8, 6]);
        assert_eq!(merged, [1, 2, 3, 4, 5, 7]);
    }

    #[test]
    fn inline_entries_win_over_list_lines_they_repeat_or_cover() {
        let list = [
            ("198.18.1.0/24", "a.toml", 5),
            ("2001:db8:7::/48", "a.toml", 8),
            ("198.18.1.0/24", "b.list", 1),
            ("198.18.1.7/32", "b.list", 2),
            ("2001:db8:7:1::/64", "b.list", 3),
            ("2001:db8:7::/48", "c.list", 9),
            ("198.18.2.0/24", "c.list", 10),
        ];
        let (problems, by_net, merged) = swept(&list, &[1, 2]);
        assert_eq!(problems, Vec::<String>::new());
        assert_eq!(by_net, [0, 6, 1]);
        assert_eq!(merged, [2, 3, 4, 5]);
    }

    #[test]
    fn removing_merged_lines_renumbers_the_network_order() {
        // More than one word of bits, merged lines scattered across them.
        let nets: Vec<String> = (0..200u32)
            .map(|i| match i % 3 {
                0 => format!("198.18.{}.0/24", i / 3),
                _ => format!("198.18.{}.{i}/32", i / 3),
            })
            .collect();
        let list: Vec<(&str, &str, usize)> = nets
            .iter()
            .enumerate()
            .map(|(i, n)| (n.as_str(), "b.list", i + 1))
            .collect();
        let mut all = entries(&list);
        let mut report = Report::default();
        let mut swept = check_overlaps(&all, &[], &mut report);
        assert!(report.finish(()).is_ok());
        assert_eq!(swept.merged.count(), 133);
        assert_eq!(swept.merged.rank(0), 0);
        assert_eq!(swept.merged.rank(64), 42);
        assert_eq!(swept.merged.rank(200), 133);
        swept.merged.remove(&mut all, &mut swept.by_net);
        assert_eq!(all.len(), 67);
        assert!(all.iter().all(|e| e.net.prefix_len() == 24));
        let walked: Vec<u32> = swept.by_net.iter().map(|&i| all[i as usize].line).collect();
        let lines: Vec<u32> = (0..67).map(|i| 3 * i + 1).collect();
        assert_eq!(walked, lines);
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
