//! How the binaries write counts, port lists and durations for people: `1 entry` and
//! `2 entries`, `ports 22, 443`, `1d 2h`. One place, so that every message agrees.

use std::collections::BTreeSet;
use std::fmt;
use std::path::Path;
use std::time::Duration;

/// `one` for 1, `many` otherwise.
pub fn plural<'a>(count: usize, one: &'a str, many: &'a str) -> &'a str {
    if count == 1 { one } else { many }
}

/// `count` and the noun that goes with it: `1 entry`, `0 entries`.
pub fn count(count: usize, one: &str, many: &str) -> String {
    format!("{count} {}", plural(count, one, many))
}

/// A number with its thousands set apart by commas: `1,234,567`.
pub fn number(n: usize) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, digit) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(digit);
    }
    out
}

/// The last part of `path`, as a message names a list file among others (the whole path if
/// it has none).
pub fn file_name(path: &Path) -> String {
    path.file_name().map_or_else(
        || path.display().to_string(),
        |name| name.to_string_lossy().into_owned(),
    )
}

/// The one line saying how many list-file lines were merged into other entries, per file:
/// `merged 1,234 duplicate or covered list-file lines (cloud.txt: 1,200; partners.txt: 34)`.
pub fn merged_lines<S: fmt::Display>(files: impl IntoIterator<Item = (S, usize)>) -> String {
    let (mut total, mut each) = (0, Vec::new());
    for (file, lines) in files {
        total += lines;
        each.push(format!("{file}: {}", number(lines)));
    }
    format!(
        "merged {} duplicate or covered list-file {} ({})",
        number(total),
        plural(total, "line", "lines"),
        each.join("; ")
    )
}

/// Items separated by commas: `22, 443`, `eth0, eth1` (empty for none).
pub fn list<T: fmt::Display>(items: impl IntoIterator<Item = T>) -> String {
    let items: Vec<String> = items.into_iter().map(|i| i.to_string()).collect();
    items.join(", ")
}

/// Port numbers separated by commas (`22, 443`), or `none`.
pub fn ports(ports: &BTreeSet<u16>) -> String {
    if ports.is_empty() {
        return "none".to_owned();
    }
    list(ports)
}

/// Whole seconds in days, hours, minutes and seconds, leaving out zero units: `1d 1h`,
/// `59m 59s`, `0s` (what `--for` and `--unused` accept back).
pub fn duration(duration: Duration) -> String {
    let mut left = duration.as_secs();
    let mut parts = Vec::new();
    for (unit, secs) in [("d", 86_400), ("h", 3600), ("m", 60), ("s", 1)] {
        if left >= secs {
            parts.push(format!("{}{unit}", left / secs));
            left %= secs;
        }
    }
    if parts.is_empty() {
        return "0s".to_owned();
    }
    parts.join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_group_thousands() {
        let cases = [
            (0, "0"),
            (999, "999"),
            (1000, "1,000"),
            (1234567, "1,234,567"),
        ];
        for (n, text) in cases {
            assert_eq!(number(n), text);
        }
        assert_eq!(number(123456), "123,456");
    }

    #[test]
    fn merged_lines_name_each_file() {
        assert_eq!(
            merged_lines([("cloud.txt", 1200), ("partners.txt", 34)]),
            "merged 1,234 duplicate or covered list-file lines (cloud.txt: 1,200; \
             partners.txt: 34)"
        );
        assert_eq!(
            merged_lines([("a.list", 1)]),
            "merged 1 duplicate or covered list-file line (a.list: 1)"
        );
        assert_eq!(
            file_name(Path::new("/etc/allowlist/cloud.txt")),
            "cloud.txt"
        );
        assert_eq!(file_name(Path::new("/")), "/");
    }

    #[test]
    fn counts_take_the_right_noun() {
        assert_eq!(count(1, "entry", "entries"), "1 entry");
        assert_eq!(count(0, "entry", "entries"), "0 entries");
        assert_eq!(count(2, "entry", "entries"), "2 entries");
    }

    #[test]
    fn ports_are_a_plain_list() {
        assert_eq!(ports(&BTreeSet::from([2222])), "2222");
        assert_eq!(ports(&BTreeSet::from([443, 22])), "22, 443");
        assert_eq!(ports(&BTreeSet::new()), "none");
    }

    #[test]
    fn durations_use_short_units_and_parse_back() {
        for (secs, text) in [
            (90_000, "1d 1h"),
            (3599, "59m 59s"),
            (7200, "2h"),
            (86_400, "1d"),
            (0, "0s"),
            (93_784, "1d 2h 3m 4s"),
        ] {
            assert_eq!(duration(Duration::from_secs(secs)), text);
            assert_eq!(
                humantime::parse_duration(text).unwrap(),
                Duration::from_secs(secs)
            );
        }
    }
}
