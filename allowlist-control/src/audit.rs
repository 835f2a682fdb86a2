//! The audit log: one JSON object per line, each chained to the one before by SHA-256, so
//! that editing, deleting or reordering any record breaks the chain where it happened.
//!
//! `hash` = SHA-256 over the record serialized without `hash` (fields in declaration order,
//! object keys sorted), which includes `prev_hash`. Rotation happens inside the daemon, by
//! size: `audit.jsonl` becomes `audit.jsonl.1` (older ones shift up), and the first record of
//! the new file carries the last hash of the old one, so the chain runs across files.

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// `prev_hash` of the very first record.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Via {
    Cli,
    Signal,
    Startup,
    Expiry,
    /// A signed knock (`user` is `knock:KEY`).
    Knock,
    /// The daemon noticed the config's files change on disk (`watch = true`).
    Watch,
}

impl Via {
    /// The name records use.
    pub fn name(self) -> &'static str {
        match self {
            Via::Cli => "cli",
            Via::Signal => "signal",
            Via::Startup => "startup",
            Via::Expiry => "expiry",
            Via::Knock => "knock",
            Via::Watch => "watch",
        }
    }
}

/// What a record is about. Serialized in kebab-case (`emergency-start`), as records have
/// always carried it, so the hashes of older records still verify.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Action {
    Add,
    Edit,
    Remove,
    Activate,
    Deactivate,
    Reload,
    Confirm,
    Rollback,
    EmergencyStart,
    EmergencyReplace,
    EmergencyExtend,
    EmergencyEnd,
    EmergencyExpiry,
    KillUnlisted,
    // One established connection ended on request (`sessions --end`).
    EndSession,
    Start,
    Stop,
    AddList,
    RemoveList,
    SetPorts,
    // Timed entries that ended, taken out of the config. (A plain comment: a doc comment
    // would become a help line of `audit --action`, which lists bare names.)
    Expire,
}

impl Action {
    /// The name records and `audit --action` use.
    pub fn name(self) -> &'static str {
        match self {
            Action::Add => "add",
            Action::Edit => "edit",
            Action::Remove => "remove",
            Action::Activate => "activate",
            Action::Deactivate => "deactivate",
            Action::Reload => "reload",
            Action::Confirm => "confirm",
            Action::Rollback => "rollback",
            Action::EmergencyStart => "emergency-start",
            Action::EmergencyReplace => "emergency-replace",
            Action::EmergencyExtend => "emergency-extend",
            Action::EmergencyEnd => "emergency-end",
            Action::EmergencyExpiry => "emergency-expiry",
            Action::KillUnlisted => "kill-unlisted",
            Action::EndSession => "end-session",
            Action::Start => "start",
            Action::Stop => "stop",
            Action::AddList => "add-list",
            Action::RemoveList => "remove-list",
            Action::SetPorts => "set-ports",
            Action::Expire => "expire",
        }
    }

    /// The action named `name`, or a refusal listing the valid names.
    pub fn parse(name: &str) -> Result<Action, String> {
        <Action as clap::ValueEnum>::value_variants()
            .iter()
            .copied()
            .find(|a| a.name() == name)
            .ok_or_else(|| {
                let valid: Vec<&str> = <Action as clap::ValueEnum>::value_variants()
                    .iter()
                    .map(|a| a.name())
                    .collect();
                format!(
                    "unknown audit action `{name}`; valid actions: {}",
                    valid.join(", ")
                )
            })
    }
}

impl std::fmt::Display for Action {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Actor {
    pub uid: u32,
    pub user: String,
    pub pid: Option<i32>,
    pub via: Via,
    /// Whom root acted for (`allowlistctl --on-behalf-of`, as the Cockpit page passes its
    /// logged-in user): absent otherwise, so older records hash as they did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_behalf_of: Option<String>,
}

impl Actor {
    /// The daemon itself (signals, start-up, expiry): uid and pid of this process.
    pub fn daemon(via: Via) -> Actor {
        Actor::new(
            nix::unistd::getuid().as_raw(),
            Some(std::process::id() as i32),
            via,
        )
    }

    /// The holder of knock key `key`, let in by the daemon.
    pub fn knock(key: &str) -> Actor {
        Actor {
            user: format!("knock:{key}"),
            pid: None,
            ..Actor::daemon(Via::Knock)
        }
    }

    /// The user as people read it: `root for alice` when root acted on behalf of alice.
    pub fn who(&self) -> String {
        match &self.on_behalf_of {
            Some(name) => format!("{} for {name}", self.user),
            None => self.user.clone(),
        }
    }

    pub fn new(uid: u32, pid: Option<i32>, via: Via) -> Actor {
        let user = nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(uid))
            .ok()
            .flatten()
            .map_or_else(|| uid.to_string(), |u| u.name);
        Actor {
            uid,
            user,
            pid,
            via,
            on_behalf_of: None,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "lowercase")]
pub enum Outcome {
    Ok,
    Refused { reason: String },
    Failed { reason: String },
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Record {
    pub seq: u64,
    /// RFC 3339, UTC.
    pub time: String,
    #[serde(flatten)]
    pub event: Event,
    pub prev_hash: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub hash: String,
}

impl Record {
    fn compute_hash(&self) -> String {
        let mut unhashed = self.clone();
        unhashed.hash.clear();
        let canonical = serde_json::to_vec(&unhashed).expect("records serialize");
        hex(&Sha256::digest(&canonical))
    }
}

/// A digest as the log writes it: lowercase hex.
pub fn hex(digest: &[u8]) -> String {
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// What a change was: everything but the bookkeeping the log adds.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Event {
    pub actor: Actor,
    pub action: Action,
    pub before: serde_json::Value,
    pub after: serde_json::Value,
    pub result: Outcome,
    pub revision: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error("audit_log {0} is a symlink; point audit_log at the file itself")]
    Symlink(PathBuf),
    #[error("audit_log {0} is writable by others (mode {1:o}); run `chmod 640 {0}`")]
    WorldWritable(PathBuf, u32),
    #[error(
        "audit_log {path}: line {line}: unreadable record ({why}); move the file aside after checking it with `allowlistctl audit verify {path}`"
    )]
    Unreadable {
        path: PathBuf,
        line: usize,
        why: String,
    },
    #[error("audit_log {0}: {1}")]
    Io(PathBuf, #[source] std::io::Error),
}

pub struct AuditLog {
    path: PathBuf,
    file: File,
    size: u64,
    next_seq: u64,
    last_hash: String,
    /// The newest record when the log was opened: what the previous daemon did last.
    found: Option<Event>,
    max_bytes: u64,
    keep_files: u32,
}

fn rotated(path: &Path, n: u32) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(format!(".{n}"));
    PathBuf::from(name)
}

/// The last record of a file, if it has any.
fn last_record(path: &Path) -> Result<Option<Record>, AuditError> {
    let file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(AuditError::Io(path.to_path_buf(), e)),
    };
    let mut last = None;
    for (index, line) in BufReader::new(file).lines().enumerate() {
        let line = line.map_err(|e| AuditError::Io(path.to_path_buf(), e))?;
        if line.trim().is_empty() {
            continue;
        }
        last = Some((index + 1, line));
    }
    let Some((line, text)) = last else {
        return Ok(None);
    };
    serde_json::from_str(&text)
        .map(Some)
        .map_err(|e| AuditError::Unreadable {
            path: path.to_path_buf(),
            line,
            why: e.to_string(),
        })
}

/// A crash in the middle of an append can leave a last line without its newline: a record
/// never fsynced, so never acknowledged. It is cut off (and said so) rather than left to break
/// the chain.
fn drop_torn_tail(path: &Path) -> Result<(), AuditError> {
    let io = |e| AuditError::Io(path.to_path_buf(), e);
    let text = match std::fs::read(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(io(e)),
    };
    if text.is_empty() || text.ends_with(b"\n") {
        return Ok(());
    }
    let keep = text.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
    tracing::warn!(
        "audit_log {}: dropping an incomplete last line ({} bytes) left by an interrupted write",
        path.display(),
        text.len() - keep
    );
    OpenOptions::new()
        .write(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
        .and_then(|f| f.set_len(keep as u64))
        .map_err(io)
}

impl AuditLog {
    /// Opens (or creates, mode 0640) the log and finds where its chain ends, looking into
    /// the newest rotated file when the current one is empty.
    pub fn open(path: &Path, max_bytes: u64, keep_files: u32) -> Result<AuditLog, AuditError> {
        let io = |e| AuditError::Io(path.to_path_buf(), e);
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(io)?;
        }
        if let Ok(meta) = std::fs::symlink_metadata(path) {
            if meta.file_type().is_symlink() {
                return Err(AuditError::Symlink(path.to_path_buf()));
            }
            if meta.mode() & 0o002 != 0 {
                return Err(AuditError::WorldWritable(
                    path.to_path_buf(),
                    meta.mode() & 0o7777,
                ));
            }
        }
        drop_torn_tail(path)?;
        let last = match last_record(path)? {
            Some(record) => Some(record),
            None => last_record(&rotated(path, 1))?,
        };
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o640)
            .custom_flags(libc::O_NOFOLLOW)
            .open(path)
            .map_err(io)?;
        let size = file.metadata().map_err(io)?.len();
        Ok(AuditLog {
            path: path.to_path_buf(),
            file,
            size,
            next_seq: last.as_ref().map_or(1, |r| r.seq + 1),
            last_hash: last
                .as_ref()
                .map_or_else(|| GENESIS.to_owned(), |r| r.hash.clone()),
            found: last.map(|r| r.event),
            max_bytes,
            keep_files,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Every file of the log, oldest first.
    pub fn files(&self) -> Vec<PathBuf> {
        let mut files: Vec<PathBuf> = (1..=self.keep_files)
            .rev()
            .map(|n| rotated(&self.path, n))
            .filter(|p| p.exists())
            .collect();
        files.push(self.path.clone());
        files
    }

    /// The hash the next record will chain to: a verifier compares it with the file's end to
    /// catch records cut off the tail.
    pub fn last_hash(&self) -> &str {
        &self.last_hash
    }

    /// The newest record found when the log was opened, if any.
    pub fn found_at_open(&self) -> Option<&Event> {
        self.found.as_ref()
    }

    /// The seq of the newest record written (0 when none).
    pub fn last_seq(&self) -> u64 {
        self.next_seq - 1
    }

    /// Appends one record and fsyncs it; only then may the change it describes be
    /// acknowledged. On error nothing was recorded.
    pub fn append(&mut self, event: Event) -> Result<Record, AuditError> {
        if self.max_bytes > 0 && self.size >= self.max_bytes {
            self.rotate()?;
        }
        let mut record = Record {
            seq: self.next_seq,
            time: crate::time::utc_millis(jiff::Timestamp::now()),
            event,
            prev_hash: self.last_hash.clone(),
            hash: String::new(),
        };
        record.hash = record.compute_hash();
        let mut line = serde_json::to_string(&record).expect("records serialize");
        line.push('\n');
        let written = self
            .file
            .write_all(line.as_bytes())
            .and_then(|()| self.file.sync_data());
        if let Err(e) = written {
            // A disk that filled up mid-line leaves part of it behind: cut it off, so the log
            // holds whole records only and the next one starts on its own line.
            let _ = self.file.set_len(self.size);
            return Err(AuditError::Io(self.path.clone(), e));
        }
        self.size += line.len() as u64;
        self.next_seq += 1;
        self.last_hash.clone_from(&record.hash);
        Ok(record)
    }

    fn rotate(&mut self) -> Result<(), AuditError> {
        let io = |e| AuditError::Io(self.path.clone(), e);
        let _ = std::fs::remove_file(rotated(&self.path, self.keep_files));
        for n in (1..self.keep_files).rev() {
            let from = rotated(&self.path, n);
            if from.exists() {
                std::fs::rename(&from, rotated(&self.path, n + 1)).map_err(io)?;
            }
        }
        std::fs::rename(&self.path, rotated(&self.path, 1)).map_err(io)?;
        self.file = OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o640)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&self.path)
            .map_err(io)?;
        self.file
            .set_permissions(std::fs::Permissions::from_mode(0o640))
            .map_err(io)?;
        if let Some(dir) = self.path.parent() {
            File::open(dir).and_then(|d| d.sync_all()).map_err(io)?;
        }
        self.size = 0;
        Ok(())
    }
}

/// Where the chain breaks first.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Break {
    pub file: String,
    pub line: usize,
    /// The seq of the record at that line, when it could be read.
    pub seq: Option<u64>,
    pub why: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Verification {
    pub files: Vec<String>,
    pub records: u64,
    /// The hash the chain ends with.
    pub last_hash: String,
    pub first_break: Option<Break>,
}

/// Checks the chain through `files`, oldest first. The first file may continue an earlier one
/// that is not given (its first `prev_hash` is then taken on trust).
pub fn verify(files: &[PathBuf]) -> Result<Verification, AuditError> {
    let mut verification = Verification {
        files: files.iter().map(|f| f.display().to_string()).collect(),
        records: 0,
        last_hash: String::new(),
        first_break: None,
    };
    let mut previous: Option<(u64, String)> = None;
    for path in files {
        let file = File::open(path).map_err(|e| AuditError::Io(path.clone(), e))?;
        for (index, line) in BufReader::new(file).lines().enumerate() {
            let line = line.map_err(|e| AuditError::Io(path.clone(), e))?;
            if line.trim().is_empty() {
                continue;
            }
            let broken = |seq, why: String| Break {
                file: path.display().to_string(),
                line: index + 1,
                seq,
                why,
            };
            let record: Record = match serde_json::from_str(&line) {
                Ok(r) => r,
                Err(e) => {
                    verification.first_break = Some(broken(None, format!("not a record: {e}")));
                    return Ok(verification);
                }
            };
            let why = if record.compute_hash() != record.hash {
                Some("its hash does not match its contents (edited)".to_owned())
            } else {
                match &previous {
                    Some((seq, _)) if record.seq != seq + 1 => Some(format!(
                        "seq {} follows seq {seq} (records deleted or reordered)",
                        record.seq
                    )),
                    Some((_, hash)) if &record.prev_hash != hash => Some(
                        "prev_hash is not the hash of the record before it (records deleted or reordered)"
                            .to_owned(),
                    ),
                    None if record.seq == 1 && record.prev_hash != GENESIS => {
                        Some("the first record does not start the chain".to_owned())
                    }
                    _ => None,
                }
            };
            if let Some(why) = why {
                verification.first_break = Some(broken(Some(record.seq), why));
                return Ok(verification);
            }
            verification.records += 1;
            verification.last_hash.clone_from(&record.hash);
            previous = Some((record.seq, record.hash));
        }
    }
    Ok(verification)
}

/// Every record of `files`, oldest first (unreadable lines are skipped: `verify` reports them).
pub fn read(files: &[PathBuf]) -> Result<Vec<Record>, AuditError> {
    let mut records = Vec::new();
    for path in files {
        let file = File::open(path).map_err(|e| AuditError::Io(path.clone(), e))?;
        for line in BufReader::new(file).lines() {
            let line = line.map_err(|e| AuditError::Io(path.clone(), e))?;
            if let Ok(record) = serde_json::from_str(&line) {
                records.push(record);
            }
        }
    }
    Ok(records)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn event(action: Action, n: u64) -> Event {
        Event {
            actor: Actor::new(0, Some(1), Via::Cli),
            action,
            before: serde_json::Value::Null,
            after: json!({ "cidr": format!("198.18.{n}.0/24") }),
            result: Outcome::Ok,
            revision: n,
        }
    }

    fn write_log(path: &Path, n: u64) {
        let mut log = AuditLog::open(path, 0, 5).unwrap();
        for i in 1..=n {
            log.append(event(Action::Add, i)).unwrap();
        }
    }

    fn lines(path: &Path) -> Vec<String> {
        std::fs::read_to_string(path)
            .unwrap()
            .lines()
            .map(str::to_owned)
            .collect()
    }

    #[test]
    fn an_untouched_log_verifies_and_reopening_continues_the_chain() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        write_log(&path, 3);
        write_log(&path, 2);
        let v = verify(std::slice::from_ref(&path)).unwrap();
        assert_eq!((v.records, v.first_break), (5, None));
        let mode = std::fs::metadata(&path).unwrap().mode() & 0o777;
        assert_eq!(mode, 0o640);
    }

    #[test]
    fn edits_deletions_and_reordering_are_caught_at_the_right_record() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        write_log(&path, 5);
        let original = lines(&path);

        let mut edited = original.clone();
        edited[2] = edited[2].replace("198.18.3.0/24", "0.0.0.0/0");
        std::fs::write(&path, edited.join("\n") + "\n").unwrap();
        let b = verify(std::slice::from_ref(&path))
            .unwrap()
            .first_break
            .unwrap();
        assert_eq!((b.line, b.seq), (3, Some(3)));
        assert!(b.why.contains("edited"), "{b:?}");

        let mut deleted = original.clone();
        deleted.remove(1);
        std::fs::write(&path, deleted.join("\n") + "\n").unwrap();
        let b = verify(std::slice::from_ref(&path))
            .unwrap()
            .first_break
            .unwrap();
        assert_eq!((b.line, b.seq), (2, Some(3)));

        let mut reordered = original.clone();
        reordered.swap(3, 4);
        std::fs::write(&path, reordered.join("\n") + "\n").unwrap();
        let b = verify(std::slice::from_ref(&path))
            .unwrap()
            .first_break
            .unwrap();
        assert_eq!((b.line, b.seq), (4, Some(5)));
    }

    #[test]
    fn rotation_keeps_the_chain_across_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        let mut log = AuditLog::open(&path, 600, 3).unwrap();
        for i in 1..=12 {
            log.append(event(Action::Add, i)).unwrap();
        }
        let files = log.files();
        assert!(files.len() > 2, "rotated: {files:?}");
        let v = verify(&files).unwrap();
        assert_eq!(v.first_break, None);
        assert_eq!(v.last_hash, log.last_hash());
        // The first record of each newer file carries the last hash of the one before.
        let first_of_current: Record = serde_json::from_str(&lines(&path)[0]).unwrap();
        let previous = lines(&rotated(&path, 1));
        let last_of_previous: Record = serde_json::from_str(previous.last().unwrap()).unwrap();
        assert_eq!(first_of_current.prev_hash, last_of_previous.hash);
        // Reopening after rotation continues from the newest record.
        drop(log);
        let mut log = AuditLog::open(&path, 600, 3).unwrap();
        log.append(event(Action::Remove, 13)).unwrap();
        assert_eq!(verify(&log.files()).unwrap().first_break, None);
    }

    #[test]
    fn an_interrupted_write_is_cut_off_at_the_next_start() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        write_log(&path, 2);
        let mut file = OpenOptions::new().append(true).open(&path).unwrap();
        file.write_all(br#"{"seq":3,"time":"2026-"#).unwrap();
        drop(file);
        write_log(&path, 1);
        let v = verify(std::slice::from_ref(&path)).unwrap();
        assert_eq!((v.records, v.first_break), (3, None));
    }

    #[test]
    fn unsafe_paths_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("real.jsonl");
        std::fs::write(&target, "").unwrap();
        let link = dir.path().join("audit.jsonl");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        assert!(matches!(
            AuditLog::open(&link, 0, 1),
            Err(AuditError::Symlink(_))
        ));
        std::fs::set_permissions(&target, std::fs::Permissions::from_mode(0o666)).unwrap();
        let err = AuditLog::open(&target, 0, 1).err().unwrap();
        assert!(err.to_string().contains("chmod 640"), "{err}");
    }
}
