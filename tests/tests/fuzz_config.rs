//! Fuzzing the config parser for a bounded time (see `allowlist_tests::fuzz`): mutated valid
//! configs and list files, line-level recombinations and raw bytes go through
//! `Config::load`, the daemon's entry point (the config and one list file it may name, written
//! to a temporary directory).
//!
//! Asserted for every input: no panic, no hang, the same answer twice; a refusal names the
//! config or the list file, and a line inside that file when it has one, on one line of text;
//! an accepted config keeps the README's promises (normalised, non-overlapping once list-file
//! lines are merged, non-mapped entries within capacity, ports in 1..=65535, something to
//! protect when active) and round-trips through `config::edit` (the text unchanged by a
//! parse, and an added or removed entry is exactly the change `Config::load` sees afterwards,
//! with the list-file lines a removed entry had merged coming back).

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

use allowlist_config::{Config, ConfigError, MAX_ENTRIES_LIMIT, MAX_PROBLEMS, edit::ConfigDoc};
use allowlist_tests::fuzz::{self, Fuzz, Input, mutate};
use fastrand::Rng;
use ipnet::IpNet;

const CONFIGS: [&str; 5] = [
    r#"active = true
interfaces = ["eth0"]
protected_tcp_ports = [22, 8443]

[[entries]]
cidr = "198.18.1.0/24"
comment = "office"

[[entries]]
cidr = "2001:db8::7"          # single addresses become /32 or /128
comment = "jump host"
"#,
    r#"# every key
active = false
interfaces = ["eth0", "veth1"]
protected_tcp_ports = [1, 65535]
max_entries = 4
control_socket = "/run/allowlist/allowlist.sock"
control_group = "adm"
state_dir = "/var/lib/allowlist"
audit_log = "/var/log/allowlist/audit.jsonl"
audit_max_bytes = 0
audit_keep_files = 3
bpffs_dir = "/sys/fs/bpf/allowlist"
xdp_mode = "generic"
detach_on_exit = false
metrics_listen = "127.0.0.1:9469"
metrics_entry_series = 5
list_files = ["a.list"]
entries = [{ cidr = "198.19.0.0/16" }, { cidr = "2001:db8:1::/48", comment = "v6" }]
"#,
    r#"interfaces = ["eth0"]
protected_tcp_ports = [22]
list_files = ["a.list"]

[[entries]]
cidr = "198.18.2.0/23"
"#,
    "active = false\n",
    r#"active = true
interfaces = ["lo"]
protected_tcp_ports = [2222]
max_entries = 2
[[entries]]
cidr = "198.19.255.255"
comment = "last"
[[entries]]
cidr = "2001:db8:ffff::/127"
"#,
];

const LISTS: [&str; 4] = [
    "198.18.7.0/24 # lab\n2001:db8:7::/64\n\n# a comment line\n198.18.9.9\n",
    "198.18.100.0/22\n",
    // Lines to merge: a repeat, and (with the second config) networks inside inline entries.
    "198.19.3.0/24 # inside\n198.18.100.0/22\n198.18.100.0/22 # again\n2001:db8:1:5::/64\n",
    "",
];

const DICTIONARY: [&[u8]; 44] = [
    b"\"",
    b"'",
    b"[",
    b"]",
    b"[[entries]]\n",
    b"[entries]\n",
    b" = ",
    b"\n",
    b"\r\n",
    b"#",
    b",",
    b"{",
    b"}",
    b"\"0.0.0.0/0\"",
    b"\"::/0\"",
    b"\"*\"",
    b"\"::ffff:198.18.1.1\"",
    b"\"198.18.1.7/24\"",
    b"\"198.18.1.0/24\"",
    b"\"2001:db8::/32\"",
    b"/33",
    b"/129",
    b"65536",
    b"0",
    b"-1",
    b"1e3",
    b"9999999999999999999999",
    b"0x16",
    b"true",
    b"false",
    b"cidr = ",
    b"comment = ",
    b"max_entries = ",
    b"protected_tcp_ports = ",
    b"interfaces = ",
    b"list_files = [\"a.list\"]\n",
    b"active = ",
    b"\"\"\"",
    b"\x00",
    b"\xff\xfe",
    "\u{e9}\u{202e}".as_bytes(),
    b"\\u0000",
    b"1979-05-27T07:32:00Z",
    b"\"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\"",
];

/// A config file and the list file `a.list` next to it.
fn generate(rng: &mut Rng) -> Input {
    let mut config = CONFIGS[rng.usize(..CONFIGS.len())].as_bytes().to_vec();
    let other = CONFIGS[rng.usize(..CONFIGS.len())].as_bytes();
    match rng.u32(0..20) {
        0 => config = (0..rng.usize(0..200)).map(|_| rng.u8(..)).collect(),
        1..=3 => config = recombine(rng, &config, other),
        4 => {}
        _ => mutate(rng, &mut config, &DICTIONARY, other),
    }
    // Mostly text: invalid UTF-8 stops at the first check, so only some of it stays.
    if rng.u32(0..10) != 0 {
        config = String::from_utf8_lossy(&config).into_owned().into_bytes();
    }
    let mut list = LISTS[rng.usize(..LISTS.len())].as_bytes().to_vec();
    if rng.bool() {
        let other = LISTS[rng.usize(..LISTS.len())].as_bytes();
        mutate(rng, &mut list, &DICTIONARY, other);
    }
    vec![config, list]
}

/// Lines of two configs, shuffled together: keys repeated, tables split from their keys.
fn recombine(rng: &mut Rng, a: &[u8], b: &[u8]) -> Vec<u8> {
    let mut lines: Vec<&[u8]> = a.split(|&c| c == b'\n').collect();
    lines.extend(b.split(|&c| c == b'\n').filter(|_| rng.bool()));
    rng.shuffle(&mut lines);
    lines.join(&b'\n')
}

fn lines_in(text: &[u8]) -> usize {
    text.iter().filter(|&&c| c == b'\n').count() + 1
}

thread_local! {
    /// One directory for all inputs (each overwrites the last): fast, and nothing else
    /// writes there.
    static DIR: tempfile::TempDir = tempfile::tempdir().expect("a temporary directory");
}

/// Outcomes so far: accepted, refused as invalid, refused as unreadable.
static OUTCOMES: [AtomicU64; 3] = [const { AtomicU64::new(0) }; 3];

fn check(input: &[Vec<u8>]) -> Result<(), String> {
    let dir = DIR.with(|dir| dir.path().to_path_buf());
    let path = dir.join("allowlist.toml");
    let list = dir.join("a.list");
    std::fs::write(&path, &input[0]).map_err(|e| e.to_string())?;
    std::fs::write(&list, &input[1]).map_err(|e| e.to_string())?;
    let first = Config::load(&path);
    let again = Config::load(&path);
    let outcome = match &first {
        Ok(_) => 0,
        Err(ConfigError::Invalid { .. }) => 1,
        Err(ConfigError::Io { .. } | ConfigError::Untrusted(_)) => 2,
    };
    OUTCOMES[outcome].fetch_add(1, Ordering::Relaxed);
    match (&first, &again) {
        (Ok(a), Ok(b)) if a == b => check_accepted(a, &path),
        (Err(a), Err(b)) if a.to_string() == b.to_string() => {
            check_refusal(a, &path, &input[0], &list, &input[1])
        }
        _ => Err(format!(
            "two loads of the same file differ:\n{first:?}\n{again:?}"
        )),
    }
}

fn check_refusal(
    err: &ConfigError,
    path: &Path,
    text: &[u8],
    list: &Path,
    list_text: &[u8],
) -> Result<(), String> {
    let shown = err.to_string();
    if let ConfigError::Io { path: p, .. } = err {
        if std::str::from_utf8(text).is_ok() || p != path {
            return Err(format!("an I/O error on a readable file: {shown}"));
        }
        if !shown.contains(&path.display().to_string()) {
            return Err(format!("the I/O error does not name the file: {shown}"));
        }
        return Ok(());
    }
    let problems = err.problems();
    let ConfigError::Invalid { omitted, .. } = err else {
        unreachable!("Io handled above");
    };
    if problems.is_empty() || problems.len() > MAX_PROBLEMS {
        return Err(format!("{} problems reported: {shown}", problems.len()));
    }
    if *omitted > 0 && problems.len() != MAX_PROBLEMS {
        return Err(format!("{omitted} omitted with room left: {shown}"));
    }
    for problem in problems {
        let lines = if problem.file == path {
            lines_in(text)
        } else if problem.file == list {
            lines_in(list_text)
        } else {
            return Err(format!("a problem in an unexpected file: {problem}"));
        };
        let one = problem.to_string();
        if problem.message.trim().is_empty() || one.contains('\n') {
            return Err(format!("problem not a non-empty single line: {one:?}"));
        }
        if !one.starts_with(&problem.file.display().to_string()) {
            return Err(format!("problem does not start with its file: {one}"));
        }
        match (problem.line, problem.column) {
            (Some(line), _) if line == 0 || line > lines => {
                return Err(format!(
                    "line {line} outside the file's {lines} lines: {one}"
                ));
            }
            (None, Some(_)) => return Err(format!("a column without a line: {one}")),
            (None, None) if problem.file == list => {
                return Err(format!("a list file problem without a line: {one}"));
            }
            _ => {}
        }
    }
    Ok(())
}

/// What the README promises about an accepted config.
fn check_accepted(config: &Config, path: &Path) -> Result<(), String> {
    let nets: Vec<IpNet> = config.entries.iter().map(|e| e.net).collect();
    for (i, net) in nets.iter().enumerate() {
        if net.trunc() != *net {
            return Err(format!("entry {net} has host bits set"));
        }
        if net.prefix_len() == 0 {
            return Err(format!("entry {net} allows everything"));
        }
        if let IpNet::V6(v6) = net
            && v6.network().to_ipv4_mapped().is_some()
        {
            return Err(format!("IPv4-mapped entry {net} accepted"));
        }
        if let Some(other) = nets[i + 1..]
            .iter()
            .find(|o| o.contains(net) || net.contains(*o))
        {
            return Err(format!("entries {net} and {other} overlap"));
        }
    }
    for e in &config.entries {
        if e.comment.chars().count() > 256 {
            return Err(format!("a comment of {} characters", e.comment.len()));
        }
    }
    let v4 = nets.iter().filter(|n| matches!(n, IpNet::V4(_))).count();
    let max = config.max_entries as usize;
    if config.max_entries == 0 || config.max_entries > MAX_ENTRIES_LIMIT {
        return Err(format!("max_entries = {max} accepted"));
    }
    if v4 > max || nets.len() - v4 > max {
        return Err(format!("{} entries over max_entries = {max}", nets.len()));
    }
    if config.protected_tcp_ports.contains(&0) {
        return Err("port 0 accepted".into());
    }
    if config.active && (config.interfaces.is_empty() || config.protected_tcp_ports.is_empty()) {
        return Err("active with nothing to protect".into());
    }
    round_trip(config, path)
}

/// Edits through `config::edit` come back from `Config::load` as exactly that change.
fn round_trip(config: &Config, path: &Path) -> Result<(), String> {
    let text = std::fs::read_to_string(path).map_err(|e| e.to_string())?;
    let doc = ConfigDoc::parse(&text).map_err(|e| format!("ConfigDoc refuses it: {e}"))?;
    // toml_edit may normalise blank lines (a final newline, CRLF between tables); what must
    // survive is the meaning and every comment.
    let rendered = doc.to_text();
    let lost = text
        .lines()
        .filter_map(|line| line.find('#').map(|at| line[at..].trim_end()))
        .find(|comment| !rendered.contains(comment));
    if let Some(comment) = lost {
        return Err(format!("ConfigDoc lost the comment {comment:?}"));
    }
    std::fs::write(path, &rendered).map_err(|e| e.to_string())?;
    match Config::load(path) {
        Ok(again) if again == *config => {}
        other => return Err(format!("ConfigDoc's rendering loads as {other:?}")),
    }
    let load_edited = |doc: &ConfigDoc| {
        std::fs::write(path, doc.to_text()).map_err(|e| e.to_string())?;
        Config::load(path).map_err(|e| format!("after an edit: {e}\n{}", doc.to_text()))
    };
    let nets = |c: &Config| {
        let mut nets: Vec<IpNet> = c.entries.iter().map(|e| e.net).collect();
        nets.sort();
        nets
    };
    let family_count = |v4: bool| {
        config
            .entries
            .iter()
            .filter(|e| matches!(e.net, IpNet::V4(_)) == v4)
            .count()
    };
    let candidates = ["198.19.255.254/32", "2001:db8:ffff:ffff::fffe/127"];
    let new = candidates
        .iter()
        .map(|c| c.parse::<IpNet>().expect("a valid network"))
        .find(|new| {
            let room = family_count(matches!(new, IpNet::V4(_))) < config.max_entries as usize;
            room && !config
                .entries
                .iter()
                .any(|e| e.net.contains(new) || new.contains(&e.net))
        });
    if let Some(new) = new {
        let mut doc = ConfigDoc::parse(&text).map_err(|e| e.to_string())?;
        if doc.add_entry(new, "fuzz").is_ok() {
            let edited = load_edited(&doc)?;
            let mut want = nets(config);
            want.push(new);
            want.sort();
            if nets(&edited) != want || edited.protected_tcp_ports != config.protected_tcp_ports {
                return Err(format!("adding {new} gave {:?}", nets(&edited)));
            }
        }
    }
    if let Some(inline) = config.entries.iter().find(|e| *e.file == *path) {
        let mut doc = ConfigDoc::parse(&text).map_err(|e| e.to_string())?;
        doc.remove_entry(inline.net)
            .map_err(|e| format!("removing {}: {e}", inline.net))?;
        let edited = load_edited(&doc)?;
        let mut want = nets(config);
        want.retain(|n| *n != inline.net);
        // List-file lines merged into the removed entry come back as entries of their own.
        want.extend(
            edited
                .entries
                .iter()
                .filter(|e| *e.file != *path && inline.net.contains(&e.net))
                .map(|e| e.net),
        );
        want.sort();
        if nets(&edited) != want {
            return Err(format!("removing {} gave {:?}", inline.net, nets(&edited)));
        }
    }
    Ok(())
}

#[test]
fn config_parser_under_fuzzing() {
    let fuzz = Fuzz {
        target: "config",
        default_seconds: 10.0,
        per_input: fuzz::PER_INPUT,
    };
    let count = fuzz.run(generate, check);
    let [accepted, invalid, unreadable] = OUTCOMES.each_ref().map(|n| n.load(Ordering::Relaxed));
    eprintln!(
        "fuzz config: {accepted} accepted, {invalid} refused as invalid, {unreadable} as not \
         UTF-8"
    );
    assert!(count > 0, "no input was tried");
}

#[test]
fn the_seed_configs_are_valid() {
    // Mutations of valid configs reach deeper than mutations of refused ones.
    for (i, config) in CONFIGS.iter().enumerate() {
        for list in LISTS {
            let input = vec![config.as_bytes().to_vec(), list.as_bytes().to_vec()];
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("allowlist.toml");
            std::fs::write(&path, &input[0]).unwrap();
            std::fs::write(dir.path().join("a.list"), &input[1]).unwrap();
            if let Err(e) = Config::load(&path) {
                panic!("seed config {i} with list {list:?} is refused: {e}");
            }
            check(&input).unwrap_or_else(|e| panic!("seed config {i}: {e}"));
        }
    }
}
