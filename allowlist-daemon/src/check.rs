//! `allowlistd --check`: everything start-up checks before changing anything in the kernel
//! (the config set, every problem at once, then the kernel's features, as `daemon::run`
//! probes them), optionally with candidate files in place of files of the set
//! (`--candidate FILE=NEW`): a config management tool's validate step, which only has the
//! new text in a temporary file, checks it as the file it is going to replace or add.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use allowlist_config::{Config, ConfigError, trusted_file, words};

/// `--candidate FILE=NEW`: the text of NEW checked as the file FILE of the set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    pub file: PathBuf,
    pub new: PathBuf,
}

impl std::str::FromStr for Candidate {
    type Err = String;

    fn from_str(s: &str) -> Result<Candidate, String> {
        match s.split_once('=') {
            Some((file, new)) if !file.is_empty() && !new.is_empty() => Ok(Candidate {
                file: file.into(),
                new: new.into(),
            }),
            _ => Err(format!(
                "`{s}`: expected FILE=NEW, e.g. /etc/allowlist/conf.d/20-team.toml=/tmp/new.toml"
            )),
        }
    }
}

/// Runs the check on the config file `path` with `candidates` in place, prints the one line
/// (or the problems) and gives the exit status.
pub fn check(path: &Path, candidates: &[Candidate], max_problems: usize) -> ExitCode {
    let checked = if candidates.is_empty() {
        Config::read_checked(path, max_problems)
            .map(|(c, _)| c)
            .map_err(|e| e.to_string())
    } else {
        with_candidates(path, candidates, max_problems)
    };
    let c = match checked {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::FAILURE;
        }
    };
    if let Err(e) = allowlist_loader::kernel::require_features() {
        eprintln!("{e:#}");
        return ExitCode::FAILURE;
    }
    let read_as = candidates
        .iter()
        .map(|c| format!("; {} read as {}", c.new.display(), c.file.display()));
    println!(
        "{}{}",
        summary(&c, path),
        read_as.collect::<Vec<_>>().join("")
    );
    ExitCode::SUCCESS
}

/// The set at `path` with each candidate's text in place of its file's, and every drop-in
/// candidate read as a drop-in of the set.
fn with_candidates(
    path: &Path,
    candidates: &[Candidate],
    max_problems: usize,
) -> Result<Config, String> {
    // Paths compared as `include` resolves them, whatever the current directory.
    let absolute = |p: &Path| std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf());
    let path = absolute(path);
    let mut texts = Vec::new();
    for candidate in candidates {
        let read = trusted_file::check(&candidate.new, "candidate file")
            .map_err(ConfigError::from)
            .and_then(|()| Config::read_text(&candidate.new));
        texts.push((absolute(&candidate.file), read.map_err(|e| e.to_string())?));
    }
    let main = match texts.iter().position(|(file, _)| *file == path) {
        Some(i) => texts.remove(i).1,
        None => Config::read_checked(&path, max_problems)
            .map(|(_, text)| text)
            .map_err(|e| e.to_string())?,
    };
    let drop_ins: Vec<(&Path, &str)> = texts
        .iter()
        .map(|(file, text)| (file.as_path(), text.as_str()))
        .collect();
    let c = Config::parse_checked_with(&path, &main, &drop_ins, max_problems)
        .map_err(|e| e.to_string())?;
    for (file, _) in &drop_ins {
        if c.drop_in(file).is_none() {
            // As written in the file: relative to its directory.
            let base = path.parent().unwrap_or(Path::new(""));
            let patterns = c
                .include
                .iter()
                .map(|p| format!("\"{}\"", p.strip_prefix(base).unwrap_or(p).display()));
            return Err(format!(
                "{}: not a file of the set of {}: no `include` pattern matches it (include = \
                 [{}]), so allowlistd would never read it; name it to match one, or add a \
                 pattern to {}",
                file.display(),
                path.display(),
                words::list(patterns),
                path.display()
            ));
        }
    }
    Ok(c)
}

/// `PATH: ok: ...`, the line `--check` prints for a valid set.
fn summary(c: &Config, path: &Path) -> String {
    let v4 = c.entries.iter().filter(|e| e.net.addr().is_ipv4()).count();
    let interfaces = if c.interfaces.is_empty() {
        "none".to_owned()
    } else {
        c.interfaces.join(", ")
    };
    // Merged list-file lines close the same line: one line says it all.
    let merged = c
        .merged_summary()
        .map_or_else(String::new, |m| format!("; {m}"));
    let protection = if c.has_named_lists() {
        format!("interfaces {interfaces}; lists: {}", c.lists_summary())
    } else {
        format!(
            "ports {}; interfaces {interfaces}; {}",
            words::ports(&c.protected_tcp_ports),
            if c.active { "active" } else { "inactive" }
        )
    };
    // The drop-ins read with it, when `include` matched some.
    let drop_ins = if c.drop_ins.is_empty() {
        String::new()
    } else {
        let names = c.drop_ins.iter().map(|d| words::file_name(&d.path));
        format!(
            "; {} ({})",
            words::count(c.drop_ins.len(), "drop-in", "drop-ins"),
            words::list(names)
        )
    };
    format!(
        "{}: ok: {} ({v4} IPv4, {} IPv6); {protection}{drop_ins}{merged}",
        path.display(),
        words::count(c.entries.len(), "entry", "entries"),
        c.entries.len() - v4,
    )
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt as _;

    use super::*;

    const MAIN: &str = "interfaces = [\"lo\"]\nprotected_tcp_ports = [22]\n\
        include = [\"conf.d/*.toml\"]\n\n[[entries]]\ncidr = \"198.18.1.0/24\"\n";

    /// A set (the main file, an empty conf.d) and a candidate's text, in a directory of
    /// their own.
    fn set(candidate: &str) -> (tempfile::TempDir, PathBuf, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::create_dir(dir.path().join("conf.d")).unwrap();
        let main = dir.path().join("allowlist.toml");
        std::fs::write(&main, MAIN).unwrap();
        let new = dir.path().join("new.toml");
        std::fs::write(&new, candidate).unwrap();
        (dir, main, new)
    }

    fn candidate(file: PathBuf, new: &Path) -> Candidate {
        Candidate {
            file,
            new: new.to_path_buf(),
        }
    }

    #[test]
    fn a_drop_in_candidate_is_checked_with_the_set_and_only_where_include_reads() {
        let (dir, main, new) = set("[[entries]]\ncidr = \"198.18.1.7\"\n");
        let team = dir.path().join("conf.d/20-team.toml");
        let err = with_candidates(&main, &[candidate(team.clone(), &new)], 50).unwrap_err();
        assert!(
            err.contains(&format!("{}:2: key `entries`", team.display()))
                && err.contains(&format!(
                    "already covered by `198.18.1.0/24` ({}:6)",
                    main.display()
                )),
            "{err}"
        );
        std::fs::write(&new, "[[entries]]\ncidr = \"198.18.2.2\"\n").unwrap();
        let c = with_candidates(&main, &[candidate(team.clone(), &new)], 50).unwrap();
        assert_eq!(c.entries.len(), 2);
        assert!(!team.exists(), "nothing is written");
        let elsewhere = dir.path().join("team.toml");
        let err = with_candidates(&main, &[candidate(elsewhere, &new)], 50).unwrap_err();
        assert!(
            err.contains("no `include` pattern matches it (include = [\"conf.d/*.toml\"])"),
            "{err}"
        );
        std::fs::set_permissions(&new, std::fs::Permissions::from_mode(0o646)).unwrap();
        let err = with_candidates(&main, &[candidate(team, &new)], 50).unwrap_err();
        assert!(err.contains("is writable by others"), "{err}");
    }

    #[test]
    fn a_main_file_candidate_replaces_it_even_before_it_exists() {
        let (dir, main, new) = set(&MAIN.replace("198.18.1.0/24", "198.18.9.0/24"));
        let c = with_candidates(&main, &[candidate(main.clone(), &new)], 50).unwrap();
        assert_eq!(c.entries[0].net.to_string(), "198.18.9.0/24");
        let absent = dir.path().join("absent.toml");
        let c = with_candidates(&absent, &[candidate(absent.clone(), &new)], 50).unwrap();
        assert_eq!(c.entries.len(), 1);
    }

    #[test]
    fn a_candidate_is_file_equals_new() {
        let c: Candidate = "/etc/allowlist/conf.d/a.toml=/tmp/x".parse().unwrap();
        assert_eq!(c.file, Path::new("/etc/allowlist/conf.d/a.toml"));
        assert_eq!(c.new, Path::new("/tmp/x"));
        for bad in ["/tmp/x", "=/tmp/x", "/etc/a.toml="] {
            let err = bad.parse::<Candidate>().unwrap_err();
            assert!(err.contains("expected FILE=NEW"), "{err}");
        }
    }
}
