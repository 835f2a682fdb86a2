//! Drop-ins (`include = ["conf.d/*.toml"]`): what they may add, and conflicts between the
//! files of the set named with both files and lines.

use std::os::unix::fs::PermissionsExt as _;

use super::*;
use crate::rules::Mode;

type TestResult = Result<(), Box<dyn std::error::Error>>;

const MAIN: &str = r#"interfaces = ["eth0"]
protected_tcp_ports = [22]
include = ["conf.d/*.toml"]

[[entries]]
cidr = "198.51.100.0/24"
comment = "office"

[lists.api]
tcp_ports = [8443]
"#;

/// A set in a temporary directory: the main file `allowlist.toml` (mode 0644, directory
/// 0755) and the drop-ins in `conf.d/`.
fn set(main: &str, drop_ins: &[(&str, &str)]) -> std::io::Result<(tempfile::TempDir, PathBuf)> {
    let dir = tempfile::tempdir()?;
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))?;
    let conf_d = dir.path().join("conf.d");
    std::fs::create_dir(&conf_d)?;
    for (name, text) in drop_ins {
        std::fs::write(conf_d.join(name), text)?;
    }
    let path = dir.path().join("allowlist.toml");
    std::fs::write(&path, main)?;
    Ok((dir, path))
}

fn problems(path: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(path).expect("main file");
    match Config::parse(path, &text) {
        Ok(config) => panic!("accepted: {config:#?}"),
        Err(e) => e.problems().iter().map(Problem::to_string).collect(),
    }
}

fn load(path: &Path) -> Result<Config, ConfigError> {
    Config::parse(path, &std::fs::read_to_string(path).expect("main file"))
}

#[test]
fn drop_ins_add_entries_lists_and_list_files_in_sorted_order() -> TestResult {
    let (dir, path) = set(
        MAIN,
        &[
            (
                "20-api.toml",
                "[[lists.api.entries]]\ncidr = \"203.0.113.0/24\"\ncomment = \"partner\"\n",
            ),
            (
                "10-team.toml",
                "# team A\n[[entries]]\ncidr = \"192.0.2.1\"\nexpires = 2099-01-01T00:00:00Z\n\n\
                 [lists.db]\nmode = \"monitor\"\ntcp_ports = [5432]\nlist_files = [\"db.list\"]\n",
            ),
            ("notes.txt", "not a drop-in: the pattern wants .toml"),
            (".hidden.toml", "garbage = ["),
        ],
    )?;
    std::fs::write(dir.path().join("conf.d/db.list"), "10.1.0.0/16\n")?;
    let config = load(&path)?;
    let conf_d = dir.path().join("conf.d");
    let read: Vec<&Path> = config.drop_ins.iter().map(|d| d.path.as_path()).collect();
    assert_eq!(
        read,
        [conf_d.join("10-team.toml"), conf_d.join("20-api.toml")]
    );
    let names: Vec<&str> = config.lists.iter().map(|l| l.name.as_str()).collect();
    assert_eq!(names, ["default", "api", "db"]);
    let db = &config.lists[2];
    assert_eq!((db.mode, db.line), (Mode::Monitor, Some(6)));
    assert_eq!(
        db.file.as_deref(),
        Some(conf_d.join("10-team.toml").as_path())
    );
    assert_eq!(
        db.list_files,
        [conf_d.join("db.list")],
        "relative to the drop-in"
    );
    let origins: Vec<(String, String, u8)> = config
        .entries
        .iter()
        .map(|e| (e.net.to_string(), e.origin().to_string(), e.list))
        .collect();
    let at = |file: &str, line| format!("{}:{line}", dir.path().join(file).display());
    assert_eq!(
        origins,
        [
            ("198.51.100.0/24".into(), at("allowlist.toml", 6), 0),
            ("192.0.2.1/32".into(), at("conf.d/10-team.toml", 3), 0),
            ("203.0.113.0/24".into(), at("conf.d/20-api.toml", 2), 1),
            ("10.1.0.0/16".into(), at("conf.d/db.list", 1), 2),
        ]
    );
    // A timed entry of a drop-in is known by its file and line.
    let timed: Vec<&Entry> = config.timed_entries().collect();
    assert_eq!(timed.len(), 1);
    assert_eq!(timed[0].net.to_string(), "192.0.2.1/32");
    assert!(config.end_of(timed[0]).is_some());
    assert!(config.end_of(&config.entries[0]).is_none());
    assert_eq!(config.rules().lists[0].ends.len(), 1);
    Ok(())
}

#[test]
fn no_match_is_no_drop_in_and_a_bad_pattern_is_refused() -> TestResult {
    let (_dir, path) = set(MAIN, &[])?;
    assert!(load(&path)?.drop_ins.is_empty());
    let (_dir, path) = set(&MAIN.replace("conf.d/*.toml", "conf.d/[.toml"), &[])?;
    let found = problems(&path);
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(found[0].contains(":3: key `include`: entry 1"), "{found:?}");
    assert!(found[0].contains("not a valid pattern"), "{found:?}");
    Ok(())
}

#[test]
fn global_keys_stay_in_the_main_file() -> TestResult {
    let (dir, path) = set(
        MAIN,
        &[(
            "team.toml",
            "[[entries]]\ncidr = \"192.0.2.1\"\n\ninterfaces = [\"eth1\"]\n",
        )],
    )?;
    // TOML puts the key in the last table; at the top level it is refused.
    assert!(load(&path).is_err());
    let drop_in = dir.path().join("conf.d/team.toml");
    std::fs::write(
        &drop_in,
        "max_entries = 10\ninclude = [\"*.toml\"]\nwatch = true\nmode = 1\n",
    )?;
    let d = drop_in.display();
    let main = path.display();
    let global = |line, key: &str| {
        format!(
            "{d}:{line}: key `{key}`: `{key}` belongs in the main config file {main}: a drop-in \
             may only add [[entries]], list_files and [lists.NAME]"
        )
    };
    assert_eq!(
        problems(&path),
        [
            global(1, "max_entries"),
            global(2, "include"),
            global(3, "watch"),
            format!(
                "{d}:4: unknown key `mode` (known keys: entries, list_files, lists) in a drop-in"
            ),
        ]
    );
    // A drop-in that is not TOML: its own file and line.
    std::fs::write(&drop_in, "[[entries]]\ncidr = \n")?;
    let found = problems(&path);
    assert!(found[0].starts_with(&format!("{d}:2:")), "{found:?}");
    Ok(())
}

#[test]
fn conflicts_between_files_name_both() -> TestResult {
    let team = "[[entries]]\ncidr = \"198.51.100.0/24\"\n\n[[entries]]\ncidr = \"198.51.100.9\"\n\n\
                [lists.api]\nudp_ports = [53]\n\n[lists.web]\ntcp_ports = [22]\n";
    let (dir, path) = set(MAIN, &[("team.toml", team)])?;
    let main = path.display().to_string();
    let d = dir.path().join("conf.d/team.toml").display().to_string();
    assert_eq!(
        problems(&path),
        [
            format!(
                "{d}:7: key `lists.api`: list `api` is already defined at {main}:9; define a \
                 list (its mode and ports) in one file and add to it from the others with only \
                 [[lists.api.entries]] or list_files"
            ),
            format!(
                "{d}:11: key `lists.web.tcp_ports`: TCP port 22 is already protected by list \
                 `default` ({main}:2); a port belongs to one list: remove it from one of them"
            ),
            format!(
                "{d}:2: key `entries`: entry 1 `198.51.100.0/24`: listed twice: {main}:6 and \
                 {d}:2; remove one"
            ),
            format!(
                "{d}:5: key `entries`: entry 2 `198.51.100.9/32`: already covered by \
                 `198.51.100.0/24` ({main}:6); remove one"
            ),
        ]
    );
    // A port in lists of two drop-ins: both files and lines.
    let (dir, path) = set(
        MAIN,
        &[
            ("a.toml", "[lists.db]\ntcp_ports = [5432]\n"),
            ("b.toml", "\n[lists.pg]\ntcp_ports = [5432]\n"),
        ],
    )?;
    let (a, b) = (
        dir.path().join("conf.d/a.toml"),
        dir.path().join("conf.d/b.toml"),
    );
    assert_eq!(
        problems(&path),
        [format!(
            "{}:3: key `lists.pg.tcp_ports`: TCP port 5432 is already protected by list `db` \
             ({}:2); a port belongs to one list: remove it from one of them",
            b.display(),
            a.display()
        )]
    );
    Ok(())
}

#[test]
fn a_list_file_named_in_two_files_is_refused() -> TestResult {
    let main = MAIN.replacen(
        "\n[[entries]]",
        "list_files = [\"cloud.list\"]\n\n[[entries]]",
        1,
    );
    let (dir, path) = set(&main, &[("x.toml", "list_files = [\"../cloud.list\"]\n")])?;
    std::fs::write(dir.path().join("cloud.list"), "10.0.0.0/8\n")?;
    let found = problems(&path);
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(
        found[0].contains("x.toml:1: key `list_files`: entry 1 `../cloud.list`: list file"),
        "{found:?}"
    );
    assert!(
        found[0].contains(&format!("is already listed at {}:4", path.display())),
        "{found:?}"
    );
    Ok(())
}

#[test]
fn drop_ins_pass_the_trust_checks() -> TestResult {
    let (dir, path) = set(
        MAIN,
        &[("team.toml", "[[entries]]\ncidr = \"192.0.2.1\"\n")],
    )?;
    let text = std::fs::read_to_string(&path)?;
    Config::parse_checked(&path, &text, MAX_PROBLEMS)?;
    let drop_in = dir.path().join("conf.d/team.toml");
    std::fs::set_permissions(&drop_in, std::fs::Permissions::from_mode(0o666))?;
    let err = Config::parse_checked(&path, &text, MAX_PROBLEMS).expect_err("writable");
    let found = err.to_string();
    assert!(found.starts_with(&format!("{}:3: key `include`: drop-in ", path.display())));
    assert!(found.contains("writable by others (mode 666)"), "{found}");
    Ok(())
}

#[test]
fn a_list_defined_in_a_later_drop_in_takes_earlier_additions() -> TestResult {
    // `10-` adds to `db` before `20-` defines it: the order of the files does not matter.
    let (dir, path) = set(
        MAIN,
        &[
            (
                "10-more.toml",
                "[[lists.db.entries]]\ncidr = \"10.2.0.0/16\"\n",
            ),
            (
                "20-db.toml",
                "[lists.db]\nmode = \"monitor\"\ntcp_ports = [5432]\n",
            ),
        ],
    )?;
    let config = load(&path)?;
    let (index, db) = config.list("db").expect("db");
    assert_eq!((db.mode, db.line), (Mode::Monitor, Some(1)));
    assert_eq!(
        db.file.as_deref(),
        Some(dir.path().join("conf.d/20-db.toml").as_path())
    );
    let nets: Vec<String> = config
        .entries
        .iter()
        .filter(|e| e.list == index)
        .map(|e| e.net.to_string())
        .collect();
    assert_eq!(nets, ["10.2.0.0/16"]);

    // Added to but never defined: refused where it is written.
    std::fs::remove_file(dir.path().join("conf.d/20-db.toml"))?;
    let found = problems(&path);
    assert_eq!(found.len(), 1, "{found:?}");
    let more = dir.path().join("conf.d/10-more.toml");
    assert!(
        found[0].starts_with(&format!(
            "{}:1: key `lists.db`: list `db` is on",
            more.display()
        )),
        "{found:?}"
    );
    Ok(())
}

#[test]
fn a_given_drop_in_not_written_yet_is_read_where_include_matches() -> TestResult {
    let main = MAIN.replace("eth0", "lo");
    let (dir, path) = set(
        &main,
        &[("30-db.toml", "[[entries]]\ncidr = \"192.0.2.9\"\n")],
    )?;
    let conf_d = dir.path().join("conf.d");
    let new = conf_d.join("20-new.toml");
    let outside = dir.path().join("elsewhere.toml");
    let given = [
        (new.as_path(), "[[entries]]\ncidr = \"192.0.2.1\"\n"),
        (outside.as_path(), "[[entries]]\ncidr = \"192.0.2.2\"\n"),
    ];
    let config = Config::parse_checked_with(&path, &main, &given, MAX_PROBLEMS)?;
    let read: Vec<&Path> = config.drop_ins.iter().map(|d| d.path.as_path()).collect();
    assert_eq!(read, [new.as_path(), conf_d.join("30-db.toml").as_path()]);
    let nets: Vec<String> = config.entries.iter().map(|e| e.net.to_string()).collect();
    assert!(nets.contains(&"192.0.2.1/32".to_owned()), "{nets:?}");
    assert!(!nets.contains(&"192.0.2.2/32".to_owned()), "{nets:?}");
    assert!(!new.exists(), "nothing is written");

    // A given drop-in conflicting with one on disk is refused with both named.
    let given = [(new.as_path(), "[[entries]]\ncidr = \"192.0.2.9\"\n")];
    let err = Config::parse_checked_with(&path, &main, &given, MAX_PROBLEMS).unwrap_err();
    let said = err.to_string();
    assert!(
        said.contains(&new.display().to_string()) && said.contains("30-db.toml"),
        "{said}"
    );
    Ok(())
}
