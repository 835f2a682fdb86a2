//! One allowlist entry, wherever it is written: its address or network, and its comment.

use std::net::IpAddr;

use ipnet::{IpNet, Ipv4Net};

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
    if ["*", "any", "all"]
        .iter()
        .any(|w| text.eq_ignore_ascii_case(w))
    {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn net(s: &str) -> IpNet {
        s.parse().expect("test network")
    }

    fn refusal(text: &str) -> String {
        parse_net(text).expect_err(text)
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
        for text in [
            "*",
            "any",
            "ALL",
            "Any",
            "0.0.0.0/0",
            "::/0",
            "198.18.0.0/0",
        ] {
            let err = parse_net(text).expect_err(text);
            assert!(err.contains("allows everyone"), "{text}: {err}");
            assert!(err.contains("set active = false"), "{text}: {err}");
        }
    }

    #[test]
    fn refuses_prefixes_too_long() {
        assert_eq!(refusal("10.0.0.1/33"), "prefix longer than 32");
        assert_eq!(refusal("2001:db8::/129"), "prefix longer than 128");
        assert_eq!(refusal("10.0.0.1/99999999999"), "prefix longer than 32");
    }

    #[test]
    fn refuses_host_bits_with_the_network_as_fix() {
        assert_eq!(
            refusal("10.0.0.5/24"),
            "host bits set; did you mean 10.0.0.0/24?"
        );
        assert_eq!(
            refusal("2001:db8::1/64"),
            "host bits set; did you mean 2001:db8::/64?"
        );
    }

    #[test]
    fn refuses_garbage() {
        for text in [
            "",
            "   ",
            "example.com",
            "198.18.0",
            "198.18.0.256",
            "198.18.0.0/",
            "198.18.0.0/x",
            "198.18.0.0/+8",
            "198.18.0.0 /24",
            "198.18.0.0/24/8",
            "010.0.0.1",
            "fe80::1%eth0",
            "2001:db8:::1",
        ] {
            let err = parse_net(text).expect_err(text);
            assert!(
                err.starts_with("not an IP address or CIDR"),
                "{text:?}: {err}"
            );
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
            assert!(
                err.starts_with("IPv4-mapped addresses are judged as IPv4"),
                "{err}"
            );
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
        assert!(
            err.contains("257 characters") && err.contains("at most 256"),
            "{err}"
        );
        for text in ["two\nlines", "tab\there", "cr\r", "nul\0"] {
            let err = check_comment(text).expect_err(text);
            assert!(err.contains("control character"), "{err}");
        }
    }
}
