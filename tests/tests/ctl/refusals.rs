//! Refusals, and that they change nothing.

use super::*;

#[test]
fn ctl_refusals_name_the_problem_and_change_nothing() {
    if !require_root("ctl_refusals_name_the_problem_and_change_nothing") {
        return;
    }
    let fx = Fx::standard();
    let before = fx.snapshot();
    let cases: &[(&[&str], &str)] = &[
        (
            &["add", "198.18.2.5/24"],
            "host bits set; did you mean 198.18.2.0/24?",
        ),
        (&["add", "198.18.1.0/33"], "prefix longer than 32"),
        (&["add", "2001:db8::/129"], "prefix longer than 128"),
        (&["add", "*"], "allows everyone"),
        (&["add", "0.0.0.0/0"], "allows everyone"),
        (&["add", "::/0"], "allows everyone"),
        (&["add", "garbage"], "not an IP address or CIDR"),
        (
            &["add", "198.18.1.0/24"],
            "`198.18.1.0/24` is already listed",
        ),
        (
            &["add", "2001:db8::a/128"],
            "`2001:db8::a/128` is already listed",
        ),
        (
            &["add", "198.18.1.7"],
            "`198.18.1.7/32` is already covered by 198.18.1.0/24",
        ),
        (
            &["add", "198.18.0.0/16"],
            "would cover the existing entry 198.18.1.0/24",
        ),
        (
            &["add", "198.18.4.0/24", "--comment", "two\nlines"],
            "control character",
        ),
        (&["add", "--current"], "--current needs your address"),
        (
            &["edit", "198.18.9.0/24", "--comment", "x"],
            "no entry `198.18.9.0/24`",
        ),
        (&["remove", "198.18.9.0/24"], "no entry `198.18.9.0/24`"),
        (&["remove", "garbage"], "not an IP address or CIDR"),
        (&["edit", "198.18.1.0/24"], "nothing to change"),
        (
            &["edit", "198.18.1.0/24", "--cidr", "198.18.2.5/24"],
            "did you mean 198.18.2.0/24?",
        ),
        (
            &["edit", "198.18.1.0/24", "--cidr", "2001:db8::/32"],
            "would cover the existing entry 2001:db8::a/128",
        ),
        (&["confirm"], "nothing awaits confirmation"),
    ];
    for (args, needle) in cases {
        let out = fx.ctl(args);
        out.refused(needle);
        fx.assert_unchanged(&before, &out.shown);
    }

    // With --json the refusal is also on stdout, as an object.
    let out = fx.ctl(&["--json", "add", "198.18.2.5/24"]);
    out.code(2).stderr_has("did you mean 198.18.2.0/24?");
    let json = out.json();
    assert_eq!(json["error"]["kind"].as_str(), Some("invalid"), "{out}");
    assert!(
        json["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("did you mean 198.18.2.0/24?")),
        "{out}"
    );
    fx.assert_unchanged(&before, "add --json");

    // Bad arguments never reach the daemon (clap's own exit code is 2 too).
    fx.ctl(&["add", "198.18.4.0/24", "--confirm-within", "0s"])
        .code(2);
    fx.ctl(&["frobnicate"]).code(2);
    fx.assert_unchanged(&before, "bad arguments");
}

#[test]
fn ctl_capacity_is_per_address_family() {
    if !require_root("ctl_capacity_is_per_address_family") {
        return;
    }
    let fx = Fx::start(|dir, iface| {
        let text = Config::new(dir, iface)
            .entry("198.18.1.0/24", "lab A")
            .entry("198.18.5.0/24", "lab E")
            .entry("2001:db8::a", "lab A v6")
            .render();
        with_top_level(&text, "max_entries = 2\n")
    });
    let s = fx.status();
    assert_eq!(s["capacity"].as_u64(), Some(2));
    let before = fx.snapshot();
    fx.ctl(&["add", "198.18.6.0/24"])
        .refused("3 IPv4 entries but max_entries = 2");
    fx.assert_unchanged(&before, "add beyond capacity");

    // The other family has room of its own.
    fx.ctl(&["add", "2001:db8::b"]).ok();
    let before = fx.snapshot();
    fx.ctl(&["add", "2001:db8::c"])
        .refused("3 IPv6 entries but max_entries = 2");
    fx.assert_unchanged(&before, "add beyond the IPv6 capacity");
}
