//! `[lists.NAME]`: named lists beside (or instead of) the list `default`.

use super::*;
use crate::rules::{DEFAULT_LIST, Mode};

const PATH: &str = "/etc/allowlist/allowlist.toml";

fn parse(text: &str) -> Result<Config, ConfigError> {
    Config::parse(Path::new(PATH), text)
}

fn problems(text: &str) -> Vec<String> {
    match parse(text) {
        Ok(_) => panic!("accepted:\n{text}"),
        Err(e) => e.problems().iter().map(|p| p.to_string()).collect(),
    }
}

const TWO_LISTS: &str = r#"interfaces = ["eth0"]
[lists.ssh]
mode = "enforce"
tcp_ports = [22]
[[lists.ssh.entries]]
cidr = "198.51.100.0/24"
comment = "office VPN"
[lists.api]
mode = "monitor"
tcp_ports = [8443]
udp_ports = [443]
[[lists.api.entries]]
cidr = "203.0.113.0/24"
[[lists.api.entries]]
cidr = "198.51.100.7"
comment = "partner inside the office range"
"#;

#[test]
fn named_lists_carry_their_mode_ports_and_entries() -> Result<(), ConfigError> {
    let config = parse(TWO_LISTS)?;
    let names: Vec<&str> = config.lists.iter().map(|l| l.name.as_str()).collect();
    assert_eq!(
        names,
        ["ssh", "api"],
        "no `default` when only named lists are written"
    );
    let rules = config.rules();
    let ssh = rules.list("ssh").expect("ssh");
    let api = rules.list("api").expect("api");
    assert_eq!((ssh.mode, api.mode), (Mode::Enforce, Mode::Monitor));
    assert_eq!(api.udp_ports, BTreeSet::from([443]));
    let net = |s: &str| s.parse::<IpNet>().unwrap();
    assert_eq!(ssh.entries, BTreeSet::from([net("198.51.100.0/24")]));
    // A network inside another list's: fine.
    assert_eq!(
        api.entries,
        BTreeSet::from([net("198.51.100.7/32"), net("203.0.113.0/24")])
    );
    // The same network in two lists too.
    let text = TWO_LISTS.replace("cidr = \"198.51.100.7\"", "cidr = \"198.51.100.0/24\"");
    assert_eq!(parse(&text)?.rules().lists[1].entries.len(), 2);
    assert_eq!(config.lists[1].line, Some(8));
    Ok(())
}

#[test]
fn the_top_level_keys_write_the_list_default_beside_named_ones() -> Result<(), ConfigError> {
    let text = format!("protected_tcp_ports = [2222]\n{TWO_LISTS}");
    let config = parse(&text)?;
    let names: Vec<&str> = config.lists.iter().map(|l| l.name.as_str()).collect();
    assert_eq!(names, [DEFAULT_LIST, "ssh", "api"]);
    assert_eq!(config.rules().lists[0].tcp_ports, BTreeSet::from([2222]));
    let clash = problems(&format!(
        "protected_tcp_ports = [2222]\n{TWO_LISTS}[lists.default]\ntcp_ports = [1]\n"
    ));
    assert!(
        clash[0].contains(":18: key `lists.default`: [lists.default] and the top-level"),
        "{clash:?}"
    );
    Ok(())
}

#[test]
fn a_port_belongs_to_one_list() {
    let text = TWO_LISTS.replace("tcp_ports = [8443]", "tcp_ports = [8443, 22]");
    let found = problems(&text);
    assert_eq!(
        found,
        [format!(
            "{PATH}:10: key `lists.api.tcp_ports`: TCP port 22 is already protected by list \
             `ssh`, line 2; a port belongs to one list: remove it from one of them"
        )]
    );
    // The same number over TCP and UDP is two ports.
    let text = TWO_LISTS.replace("udp_ports = [443]", "udp_ports = [22]");
    assert!(parse(&text).is_ok());
}

#[test]
fn bad_lists_are_refused_with_place_and_fix() {
    let found = problems("interfaces = [\"eth0\"]\n[lists.SSH]\ntcp_ports = [22]\n");
    assert!(
        found[0].contains(":2: key `lists.SSH`: list name `SSH` must be 1 to 32 of a-z"),
        "{found:?}"
    );
    let found =
        problems("interfaces = [\"eth0\"]\n[lists.ssh]\nmode = \"audit\"\ntcp_ports = [22]\n");
    assert!(
        found[0].contains(":3: key `lists.ssh.mode`: must be \"enforce\", \"monitor\" or \"off\""),
        "{found:?}"
    );
    let found = problems("interfaces = [\"eth0\"]\n[lists.ssh]\ntcp_port = [22]\n");
    assert!(
        found[0].contains("unknown key `tcp_port`; did you mean `tcp_ports`? in [lists.ssh]"),
        "{found:?}"
    );
    let found = problems("interfaces = [\"eth0\"]\n[lists.ssh]\nmode = \"monitor\"\n");
    assert!(
        found[0].contains(
            ":2: key `lists.ssh`: list `ssh` is on (mode = \"monitor\") but protects no port"
        ),
        "{found:?}"
    );
    assert!(parse("interfaces = [\"eth0\"]\n[lists.ssh]\nmode = \"off\"\n").is_ok());
    let found = problems("[lists.ssh]\ntcp_ports = [22]\n");
    assert!(found[0].contains("no interfaces to protect"), "{found:?}");
    let mut many = String::from("interfaces = [\"eth0\"]\n");
    for i in 0..33 {
        many.push_str(&format!("[lists.l{i}]\ntcp_ports = [{}]\n", 1000 + i));
    }
    let found = problems(&many);
    assert!(
        found[0].contains("key `lists.l32`: 33 lists, more than the 32"),
        "{found:?}"
    );
    // Within one list an overlap is still a mistake.
    let text = TWO_LISTS.replace("cidr = \"198.51.100.7\"", "cidr = \"203.0.113.9\"");
    let found = problems(&text);
    assert!(
        found[0].contains("already covered by `203.0.113.0/24`"),
        "{found:?}"
    );
}

#[test]
fn list_files_belong_to_their_list() -> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("allowlist.toml");
    // A duplicate line is merged within its list; a line inside another list's entry is not.
    std::fs::write(
        dir.path().join("partners.txt"),
        "198.18.7.0/24\n198.18.7.0/24\n198.18.7.9\n",
    )?;
    std::fs::write(
        &path,
        "interfaces = [\"eth0\"]\n[lists.ssh]\ntcp_ports = [22]\n[[lists.ssh.entries]]\n\
         cidr = \"198.18.0.0/16\"\n[lists.api]\ntcp_ports = [8443]\n\
         list_files = [\"partners.txt\"]\n",
    )?;
    let config = Config::load(&path)?;
    let rules = config.rules();
    let net = |s: &str| s.parse::<IpNet>().unwrap();
    assert_eq!(
        rules.lists[1].entries,
        BTreeSet::from([net("198.18.7.0/24")])
    );
    assert_eq!(
        rules.lists[0].entries,
        BTreeSet::from([net("198.18.0.0/16")])
    );
    assert_eq!(config.merged_lines(), 2);
    assert_eq!(
        config.lists[1].list_files,
        [dir.path().join("partners.txt")]
    );
    Ok(())
}

#[test]
fn the_knock_port_is_never_protected() {
    let text = "interfaces = [\"eth0\"]\nknock_listen = [\"0.0.0.0:62201\", \"[::]:62201\"]\n\
                [lists.wg]\nmode = \"enforce\"\nudp_ports = [51820, 62201]\n";
    assert_eq!(
        problems(text),
        [format!(
            "{PATH}:2: key `knock_listen`: port 62201 receives knocks but list `wg` protects \
             UDP port 62201: knocks from addresses it does not cover would be dropped before \
             allowlistd sees them; take 62201 out of its udp_ports or knock on another port"
        )]
    );
    let fine = text.replace(", 62201]", "]");
    let config = parse(&fine).unwrap();
    assert_eq!(config.knock_listen.len(), 2);
    assert_eq!(config.knock_window, std::time::Duration::from_secs(30));
}

#[test]
fn bad_knock_keys_are_refused_with_their_line() {
    let bad = "active = false\nknock_listen = [\"0.0.0.0:62201\", \"nowhere\", \"[::]:0\"]\n\
               knock_window = \"2h\"\n";
    let problems = problems(bad);
    assert_eq!(problems.len(), 3, "{problems:#?}");
    assert!(
        problems[0].contains(":2: key `knock_listen`"),
        "{problems:#?}"
    );
    assert!(
        problems[0].contains("entry 2 is `nowhere`"),
        "{problems:#?}"
    );
    assert!(problems[1].contains("entry 3 is `[::]:0`"), "{problems:#?}");
    assert!(
        problems[2].contains(":3: key `knock_window`: must be a quoted duration from 1s to 600s"),
        "{problems:#?}"
    );
}
