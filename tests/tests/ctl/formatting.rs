//! Comments and formatting survive, byte for byte.

use super::*;

/// Splits `new` into what it shares with `old` at the start and at the end, and what was
/// inserted between; `None` unless `new` is exactly `old` with one contiguous insertion.
fn insertion<'a>(old: &str, new: &'a str) -> Option<(usize, &'a str)> {
    let prefix = old
        .bytes()
        .zip(new.bytes())
        .take_while(|(a, b)| a == b)
        .count();
    let room = old.len().min(new.len()) - prefix;
    let suffix = old
        .bytes()
        .rev()
        .zip(new.bytes().rev())
        .take(room)
        .take_while(|(a, b)| a == b)
        .count();
    (prefix + suffix == old.len()).then(|| (prefix, &new[prefix..new.len() - suffix]))
}

#[test]
fn ctl_edits_keep_comments_and_formatting_byte_for_byte() {
    if !require_root("ctl_edits_keep_comments_and_formatting_byte_for_byte") {
        return;
    }
    // Comments everywhere, odd spacing and key order, a literal string, and no newline at
    // the end of the file.
    let fx = Fx::start(|dir, iface| {
        format!(
            r#"# allowlist for the ctl comment test
{tab}# an indented comment; odd spacing and key order follow

protected_tcp_ports = [ 2222 ]   # the lab's ssh port
active=true
state_dir   = "{state}"
interfaces = [ "{iface}" ]  # the server side of the veth
bpffs_dir = "{bpffs}"
audit_log= "{audit}"
control_socket = "{socket}"

# ---- entries ----

[[entries]]
comment = "lab A"     # comment first
cidr    =   "198.18.1.0/24"  # the lab network

# the v6 host
[[entries]]
cidr = "2001:db8::a"
comment='single quotes'

[[entries]]
cidr = "198.18.5.0/24"
comment = "to be removed"   # temporary

# trailing comment, and no newline at the end"#,
            tab = "\t",
            state = dir.join("state").display(),
            iface = iface,
            bpffs = dir.pin_dir().display(),
            audit = dir.join("audit.log").display(),
            socket = dir.join("control.sock").display(),
        )
    });
    let f0 = fx.file();

    // add: the original bytes stay, the new table is one insertion after the last entry.
    fx.ctl(&["add", "198.18.6.0/24", "--comment", "added by ctl"])
        .ok();
    let f1 = fx.file();
    let (at, inserted) = insertion(&f0, &f1).unwrap_or_else(|| {
        panic!("add should only insert a table; before:\n{f0}\n--- after:\n{f1}")
    });
    assert_eq!(
        inserted.trim(),
        "[[entries]]\ncidr = \"198.18.6.0/24\"\ncomment = \"added by ctl\"",
        "after:\n{f1}"
    );
    let last_entry_end = f0.find("# temporary\n").unwrap() + "# temporary\n".len();
    assert!(
        at >= last_entry_end,
        "the new table goes after the last entry:\n{f1}"
    );

    // edit a comment: only the value changes, its spacing and trailing comment stay.
    fx.ctl(&["edit", "198.18.1.0/24", "--comment", "lab A, edited"])
        .ok();
    let f2 = fx.file();
    assert_eq!(
        f2,
        f1.replacen(
            "comment = \"lab A\"     # comment first",
            "comment = \"lab A, edited\"     # comment first",
            1
        )
    );

    // edit a network.
    fx.ctl(&["edit", "198.18.5.0/24", "--cidr", "198.18.4.0/24"])
        .ok();
    let f3 = fx.file();
    assert_eq!(
        f3,
        f2.replacen("cidr = \"198.18.5.0/24\"", "cidr = \"198.18.4.0/24\"", 1)
    );

    // edit the comment written as a literal string without spaces around `=`.
    fx.ctl(&["edit", "2001:db8::a", "--comment", "v6, edited"])
        .ok();
    let f4 = fx.file();
    assert_eq!(
        f4,
        f3.replacen("comment='single quotes'", "comment=\"v6, edited\"", 1)
    );

    // remove: exactly that table goes.
    fx.ctl(&["remove", "198.18.4.0/24"]).ok();
    let f5 = fx.file();
    let table =
        "\n[[entries]]\ncidr = \"198.18.4.0/24\"\ncomment = \"to be removed\"   # temporary\n";
    assert!(f4.contains(table), "{f4}");
    assert_eq!(f5, f4.replacen(table, "", 1));

    // Every entry's origin follows the edits.
    assert_eq!(
        fx.entries(),
        [
            entry(
                "198.18.1.0/24",
                "lab A, edited",
                &fx.origin(&f5, "\"198.18.1.0/24\"")
            ),
            entry(
                "2001:db8::a/128",
                "v6, edited",
                &fx.origin(&f5, "\"2001:db8::a\"")
            ),
            entry(
                "198.18.6.0/24",
                "added by ctl",
                &fx.origin(&f5, "\"198.18.6.0/24\"")
            ),
        ]
    );

    // remove the first entry: the section comment above it, set off by a blank line, is
    // not part of that entry and stays.
    fx.ctl(&["remove", "198.18.1.0/24"]).ok();
    let f6 = fx.file();
    let first = "[[entries]]\ncomment = \"lab A, edited\"     # comment first\ncidr    =   \"198.18.1.0/24\"  # the lab network\n\n";
    assert!(f5.contains(first), "{f5}");
    assert!(
        f6.contains("# ---- entries ----\n\n"),
        "removing the first entry deleted the section comment above it (separated by a blank \
         line); before:\n{f5}\n--- after:\n{f6}"
    );
    assert_eq!(f6, f5.replacen(first, "", 1));
}
