//! Whole-file tests of the top-level keys, their types and the checks combining them.
//! Values of individual keys are tested in `tests_values.rs`, entries and list files in
//! `tests_entries.rs`.

use super::*;
use arcstr::ArcStr;

pub const PATH: &str = "/etc/allowlist/allowlist.toml";
/// Enough for `active = true` to be valid.
pub const PROTECT: &str = "interfaces = [\"eth0\"]\nprotected_tcp_ports = [22]\n";

pub fn parse(text: &str) -> Result<Config, ConfigError> {
    Config::parse(Path::new(PATH), text)
}

/// The problems with `text`, displayed; panics if it is valid.
pub fn problems(text: &str) -> Vec<String> {
    problems_of(parse(text))
}

pub fn problems_of(result: Result<Config, ConfigError>) -> Vec<String> {
    match result {
        Ok(config) => panic!("expected problems, got {config:#?}"),
        Err(err) => err.problems().iter().map(Problem::to_string).collect(),
    }
}

pub fn at(line: usize, rest: &str) -> String {
    format!("{PATH}:{line}: {rest}")
}

#[test]
fn defaults() -> Result<(), ConfigError> {
    let config = parse("active = false\n")?;
    let expected = Config {
        path: PathBuf::from(PATH),
        active: false,
        interfaces: vec![],
        protected_tcp_ports: BTreeSet::new(),
        max_entries: 1024,
        control_socket: PathBuf::from("/run/allowlist/allowlist.sock"),
        control_group: "root".to_owned(),
        state_dir: PathBuf::from("/var/lib/allowlist"),
        audit_log: PathBuf::from("/var/log/allowlist/audit.jsonl"),
        audit_max_bytes: 10 << 20,
        audit_keep_files: 10,
        bpffs_dir: PathBuf::from("/sys/fs/bpf/allowlist"),
        xdp_mode: XdpModeSetting::Auto,
        detach_on_exit: true,
        metrics_listen: None,
        metrics_entry_series: 100,
        knock_listen: vec![],
        knock_keys: PathBuf::from("/etc/allowlist/knock_keys"),
        knock_window: std::time::Duration::from_secs(30),
        log_format: LogFormat::Text,
        include: vec![],
        watch: false,
        drop_ins: vec![],
        list_files: vec![],
        lists: vec![ListConfig {
            name: "default".to_owned(),
            mode: Mode::Off,
            tcp_ports: BTreeSet::new(),
            udp_ports: BTreeSet::new(),
            list_files: vec![],
            line: None,
            file: None,
        }],
        entries: vec![],
        merged: vec![],
        by_net: vec![],
        ends: Default::default(),
    };
    assert_eq!(config, expected);
    // `active` defaults to true.
    assert!(parse(PROTECT)?.active);
    Ok(())
}

#[test]
fn full_valid_file() -> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    std::fs::write(
        dir.path().join("partners.list"),
        "198.19.0.0/16 # partner A\n",
    )?;
    let path = dir.path().join("allowlist.toml");
    let text = r#"# allowlist
active = true
interfaces = ["eth0", "enp3s0f1.100"]
protected_tcp_ports = [443, 22, 8443]
max_entries = 4096
control_socket = "/run/al/sock"
control_group = "adm"
state_dir = "/var/lib/al"
audit_log = "/var/log/al/audit.jsonl"
audit_max_bytes = 1000000
audit_keep_files = 3
bpffs_dir = "/sys/fs/bpf/al"
xdp_mode = "generic"
detach_on_exit = false
metrics_listen = "127.0.0.1:9469"
list_files = ["partners.list"]

[[entries]]
cidr = "198.18.0.0/24"
comment = "office"

[[entries]]
cidr = "2001:db8::/32"
"#;
    std::fs::write(&path, text)?;
    let config = Config::load(&path)?;
    let entry = |net: &str, comment: &str, file: &Path, line| Entry {
        net: net.parse().expect("test network"),
        comment: ArcStr::from(comment),
        file: Arc::new(file.to_path_buf()),
        line,
        list: 0,
    };
    let list = dir.path().join("partners.list");
    let expected = Config {
        path: path.clone(),
        active: true,
        interfaces: vec!["eth0".to_owned(), "enp3s0f1.100".to_owned()],
        protected_tcp_ports: BTreeSet::from([22, 443, 8443]),
        max_entries: 4096,
        control_socket: PathBuf::from("/run/al/sock"),
        control_group: "adm".to_owned(),
        state_dir: PathBuf::from("/var/lib/al"),
        audit_log: PathBuf::from("/var/log/al/audit.jsonl"),
        audit_max_bytes: 1000000,
        audit_keep_files: 3,
        bpffs_dir: PathBuf::from("/sys/fs/bpf/al"),
        xdp_mode: XdpModeSetting::Generic,
        detach_on_exit: false,
        metrics_listen: Some("127.0.0.1:9469".parse().unwrap()),
        metrics_entry_series: 100,
        knock_listen: vec![],
        knock_keys: PathBuf::from("/etc/allowlist/knock_keys"),
        knock_window: std::time::Duration::from_secs(30),
        log_format: LogFormat::Text,
        include: vec![],
        watch: false,
        drop_ins: vec![],
        list_files: vec![list.clone()],
        lists: vec![ListConfig {
            name: "default".to_owned(),
            mode: Mode::Enforce,
            tcp_ports: BTreeSet::from([22, 443, 8443]),
            udp_ports: BTreeSet::new(),
            list_files: vec![list.clone()],
            line: None,
            file: None,
        }],
        entries: vec![
            entry("198.18.0.0/24", "office", &path, 19),
            entry("2001:db8::/32", "", &path, 23),
            entry("198.19.0.0/16", "partner A", &list, 1),
        ],
        merged: vec![],
        by_net: vec![0, 2, 1],
        ends: Default::default(),
    };
    assert_eq!(config, expected);
    assert_eq!(
        config.entries[2].origin().to_string(),
        format!("{}:1", list.display())
    );
    Ok(())
}

#[test]
fn syntax_errors_carry_line_and_column() {
    let err = parse("active = false\ninterfaces = [\"eth0\"\n").expect_err("unclosed array");
    let [problem] = err.problems() else {
        panic!("one problem: {err}")
    };
    assert_eq!(problem.file, Path::new(PATH));
    assert_eq!(problem.line, Some(2));
    assert!(problem.column.is_some());
    assert!(err.to_string().starts_with(&format!("{PATH}:2:")), "{err}");

    let err = parse("active = false\n\nactive = true\n").expect_err("duplicate key");
    assert_eq!(err.problems()[0].line, Some(3));
    assert_eq!(err.problems()[0].column, Some(1));
    assert!(err.to_string().contains("duplicate key"), "{err}");
    assert_eq!(err.to_string().lines().count(), 1);
}

#[test]
fn unknown_keys_are_refused_with_a_suggestion() {
    let text = format!("{PROTECT}activ = true\n\n[xdp]\nmode = \"auto\"\n[logging]\n");
    assert_eq!(
        problems(&text),
        [
            at(3, "unknown key `activ`; did you mean `active`?"),
            at(5, "unknown key `xdp`; did you mean `xdp_mode`?"),
            at(
                7,
                "unknown key `logging` (known keys: active, interfaces, protected_tcp_ports, \
                 max_entries, control_socket, control_group, state_dir, audit_log, audit_max_bytes, audit_keep_files, bpffs_dir, xdp_mode, \
                 detach_on_exit, metrics_listen, metrics_entry_series, list_files, entries, lists, knock_listen, \
                 knock_keys, knock_window, log_format, include, watch)"
            ),
        ]
    );
}

#[test]
fn wrong_types_are_refused() {
    let text = r#"active = "yes"
detach_on_exit = 1
interfaces = "eth0"
protected_tcp_ports = 22
max_entries = "1024"
control_socket = 5
state_dir = "var/lib/allowlist"
list_files = "partners.list"
entries = "198.18.0.0/24"
"#;
    assert_eq!(
        problems(text),
        [
            at(1, "key `active`: must be true or false, not `\"yes\"`"),
            at(2, "key `detach_on_exit`: must be true or false, not `1`"),
            at(
                3,
                "key `interfaces`: must be a list of interface names, e.g. interfaces = \
                   [\"eth0\"], not `\"eth0\"`"
            ),
            at(
                4,
                "key `protected_tcp_ports`: must be a list of port numbers, e.g. \
                   protected_tcp_ports = [22, 443], not `22`"
            ),
            at(
                5,
                "key `max_entries`: must be a whole number in 1..=16777216 (the capacity of \
                   each address family's map), not `\"1024\"`"
            ),
            at(
                6,
                "key `control_socket`: must be a quoted absolute path, e.g. \
                   \"/run/allowlist/allowlist.sock\", not `5`"
            ),
            at(
                7,
                "key `state_dir`: must be a quoted absolute path, e.g. \"/var/lib/allowlist\", \
                   not `\"var/lib/allowlist\"`"
            ),
            at(
                8,
                "key `list_files`: must be a list of file paths, e.g. list_files = \
                   [\"partners.list\"], not `\"partners.list\"`"
            ),
            at(
                9,
                "key `entries`: must be [[entries]] tables (double brackets), each with `cidr` \
                   and optionally `comment`, not `\"198.18.0.0/24\"`"
            ),
        ]
    );
    // A table where a value belongs.
    assert_eq!(
        problems("active = false\n[audit_log]\npath = \"/x\"\n"),
        [at(
            2,
            "key `audit_log`: must be a quoted absolute path, e.g. \
                \"/var/log/allowlist/audit.jsonl\", not a table"
        )]
    );
}

#[test]
fn a_single_list_config_is_the_list_named_default() -> Result<(), ConfigError> {
    use crate::rules::{DEFAULT_LIST, Mode};
    let text = "interfaces = [\"eth0\"]\nprotected_tcp_ports = [443, 22]\n\
                [[entries]]\ncidr = \"198.18.0.5\"\ncomment = \"ops\"\n\
                [[entries]]\ncidr = \"2001:db8::/48\"\n";
    let rules = parse(text)?.rules();
    let [list] = rules.lists.as_slice() else {
        panic!("one list: {rules:?}");
    };
    assert_eq!(
        (list.name.as_str(), list.mode),
        (DEFAULT_LIST, Mode::Enforce)
    );
    assert_eq!(list.tcp_ports, BTreeSet::from([22, 443]));
    assert!(list.udp_ports.is_empty());
    let net = |s: &str| s.parse::<IpNet>().expect("test network");
    assert_eq!(
        list.entries,
        BTreeSet::from([net("198.18.0.5/32"), net("2001:db8::/48")])
    );
    assert_eq!(parse("active = false")?.rules().lists[0].mode, Mode::Off);
    Ok(())
}

#[test]
fn load_reports_unreadable_config() {
    let err = Config::load(Path::new("/nonexistent/allowlist.toml")).expect_err("missing");
    assert!(matches!(err, ConfigError::Io { .. }));
    assert!(
        err.to_string()
            .starts_with("reading /nonexistent/allowlist.toml: "),
        "{err}"
    );
}

#[test]
fn parse_checked_names_missing_interfaces_beside_every_other_problem()
-> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("allowlist.toml");
    let text = "protected_tcp_ports = [22]\ninterfaces = [\n  \"lo\",\n  \"nosuch0\",\n]\n\n\
                [[entries]]\ncidr = \"198.18.1.9/24\"\n";
    let err = Config::parse_checked(&path, text, MAX_PROBLEMS).expect_err("two problems");
    assert_eq!(
        err.to_string(),
        format!(
            "{0}:8: key `entries`: entry 1 `198.18.1.9/24`: host bits set; did you mean \
             198.18.1.0/24?\n\
             {0}:4: key `interfaces`: entry 2 `nosuch0`: no such network interface \
             (`ip -br link` lists them)",
            path.display()
        )
    );
    // Parsing alone looks at the text only.
    assert_eq!(problems_of(Config::parse(&path, text)).len(), 1);
    let only_lo = text
        .replace("  \"nosuch0\",\n", "")
        .replace(".9/24", ".0/24");
    Config::parse_checked(&path, &only_lo, MAX_PROBLEMS)?;
    Ok(())
}
