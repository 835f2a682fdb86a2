//! The control protocol spoken over `control_socket`, shared by allowlistd and allowlistctl so
//! that the two cannot drift: each message is a 4-byte big-endian length, then that many bytes
//! of JSON. One request and one response per connection.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::IpAddr;

use serde::{Deserialize, Serialize};

pub const VERSION: u32 = 1;
/// Versions this build understands, named in the error for any other.
pub const SUPPORTED_VERSIONS: &[u32] = &[VERSION];
/// The largest request the daemon reads.
pub const MAX_MESSAGE: usize = 1 << 20;
/// The largest reply the CLI reads: a `list` of a million entries with comments is large.
pub const MAX_REPLY: usize = 1 << 30;

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Request {
    pub version: u32,
    pub command: Command,
    #[serde(default)]
    pub options: ChangeOptions,
}

/// Guards every change carries (ignored by read-only commands).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct ChangeOptions {
    /// Refuse unless the list is still at this revision.
    pub if_revision: Option<u64>,
    /// Apply even if it blocks `caller`.
    pub force: bool,
    /// The address the admin is connected from, to refuse changes that lock them out.
    pub caller: Option<Caller>,
    /// Roll the change back unless `confirm` arrives within this many seconds.
    pub confirm_within_secs: Option<u64>,
    /// The person a front end (the Cockpit page) acts for, named in audit records beside the
    /// socket peer's own user. Only root may name someone else: from any other peer a name
    /// other than its own is refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_behalf_of: Option<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Caller {
    pub ip: IpAddr,
    /// The local port the caller's session uses (from SSH_CONNECTION), if known; otherwise
    /// every protected port counts.
    pub port: Option<u16>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "name", rename_all = "kebab-case")]
pub enum Command {
    Status,
    List {
        /// Only entries without a hit for this many seconds (never-hit ones included).
        unused_for_secs: Option<u64>,
        /// Further filters, a limit, or only the count (absent from older clients).
        #[serde(default)]
        query: ListQuery,
    },
    Add {
        cidr: String,
        comment: Option<String>,
        /// The lists to add it to (one entry each); none: `default`.
        #[serde(default)]
        lists: Vec<String>,
        /// A timed entry: when it ends (none: it lasts).
        #[serde(default)]
        ends: Option<End>,
        /// The file of the config set to write it in: a drop-in (none: the config file).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        file: Option<String>,
    },
    Edit {
        cidr: String,
        new_cidr: Option<String>,
        comment: Option<String>,
        /// The entry's list, when the network is in several.
        #[serde(default)]
        list: Option<String>,
        /// A new end; [`End::Never`] makes a timed entry last.
        #[serde(default)]
        ends: Option<End>,
    },
    Remove {
        cidr: String,
        #[serde(default)]
        list: Option<String>,
    },
    Activate {
        add_current: bool,
        /// Also end established connections to protected ports from sources no entry covers.
        #[serde(default)]
        kill_unlisted: bool,
        /// The list to enforce; none: `default`.
        #[serde(default)]
        list: Option<String>,
    },
    Deactivate {
        #[serde(default)]
        list: Option<String>,
    },
    Test {
        ip: String,
        port: Option<u16>,
        /// `port` is a UDP port; without `port`, only the UDP ports.
        #[serde(default)]
        udp: bool,
        /// Only that list's ports.
        #[serde(default)]
        list: Option<String>,
    },
    /// A new list, with its mode and ports and no entries yet.
    AddList {
        list: String,
        mode: String,
        #[serde(default)]
        tcp_ports: Vec<u16>,
        #[serde(default)]
        udp_ports: Vec<u16>,
        /// The file of the config set to write it in: a drop-in (none: the config file).
        #[serde(default)]
        file: Option<String>,
    },
    RemoveList {
        list: String,
    },
    /// Replaces a list's TCP ports, UDP ports or both.
    SetPorts {
        list: String,
        tcp_ports: Option<Vec<u16>>,
        udp_ports: Option<Vec<u16>>,
    },
    Reload {
        dry_run: bool,
        /// Every added and removed entry, however many (otherwise the first few each way
        /// above [`RELOAD_SUMMARY_ABOVE`] changes).
        #[serde(default)]
        full: bool,
    },
    Confirm,
    EmergencyDisable {
        /// Ignored with [`InForce::Extend`], which keeps the reason in force.
        reason: String,
        for_secs: u64,
        /// What to do if one is already in force.
        #[serde(default)]
        in_force: InForce,
    },
    EmergencyEnd,
    /// Audit records, oldest first, optionally only since a time and of one action.
    Audit {
        since: Option<String>,
        action: Option<String>,
    },
    /// Verify the daemon's own audit log files.
    AuditVerify,
    /// The sources blocked most often.
    Blocked {
        top: Option<usize>,
        /// Only those one list blocked.
        #[serde(default)]
        list: Option<String>,
    },
    /// Established connections to protected ports (or to `port`).
    Sessions {
        port: Option<u16>,
        /// End those from sources no entry covers.
        kill_unlisted: bool,
        /// End the one connection from this peer (address and port), covered or not.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        end: Option<std::net::SocketAddr>,
        /// Only to that list's ports.
        #[serde(default)]
        list: Option<String>,
    },
}

/// `list`'s filters (an entry must pass all), its limit, and whether only the count is
/// wanted. Filtered in the daemon, so a long list never crosses the socket whole.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListQuery {
    /// Only the entry covering this address.
    pub contains: Option<String>,
    /// Only entries whose comment contains this (case-insensitive).
    pub comment: Option<String>,
    /// Only entries written in this file: the config file (its `[[entries]]`) or a list
    /// file, as the CLI resolved it or as `list_files` names it.
    pub file: Option<String>,
    /// At most this many entries, the first in file order.
    pub limit: Option<u64>,
    /// No entries, only `matched`.
    #[serde(default)]
    pub count: bool,
    /// Only the entries of this list.
    #[serde(default)]
    pub list: Option<String>,
    /// Only timed entries.
    #[serde(default)]
    pub timed: bool,
    /// Instead of the entries: the timed entries that ended within this many seconds, from
    /// the audit log.
    #[serde(default)]
    pub expired_within_secs: Option<u64>,
}

/// When a timed entry ends, as `allowlistctl` says it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum End {
    /// This many seconds after the daemon receives the request (`--for 8h`).
    AfterSecs(u64),
    /// At this RFC 3339 time (`--until 2026-12-24T18:00:00Z`).
    At(String),
    /// Never: the entry lasts (`--permanent`, on `edit`).
    Never,
}

/// A reload changing more entries than this shows the first [`RELOAD_SHOWN_EACH_WAY`]
/// added and removed, and counts the rest.
pub const RELOAD_SUMMARY_ABOVE: usize = 50;
pub const RELOAD_SHOWN_EACH_WAY: usize = 10;

/// What `emergency-disable` does when one is already in force.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum InForce {
    /// Refuse, saying what is in force (and start one only if none is).
    #[default]
    Refuse,
    /// Put this one (reason and duration from now) in its place.
    Replace,
    /// Keep its reason, and end it `for_secs` from now, which must be later than its end.
    Extend,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Response {
    pub version: u32,
    #[serde(flatten)]
    pub outcome: Answer,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "kebab-case")]
pub enum Answer {
    Ok { reply: Reply },
    Error { kind: ErrorKind, message: String },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ErrorKind {
    PermissionDenied,
    BadRequest,
    UnsupportedVersion,
    /// The change is invalid (bad CIDR, duplicate, capacity ...).
    Invalid,
    /// The list changed since the admin looked (`--if-revision`, or the file on disk).
    Conflict,
    /// The change would block the caller's own address.
    Lockout,
    /// A change awaits confirmation.
    Pending,
    Internal,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Reply {
    Status(Box<Status>),
    List(EntryList),
    Changed(Changed),
    Test(TestReport),
    Reload(ReloadReport),
    Audit(AuditReport),
    Verify(crate::audit::Verification),
    Blocked(BlockedReport),
    Sessions(SessionsReport),
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SessionsReport {
    pub sessions: Vec<SessionInfo>,
    /// How many were ended (`--kill-unlisted`).
    pub killed: usize,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SessionInfo {
    pub local: std::net::SocketAddr,
    pub peer: std::net::SocketAddr,
    /// The entry covering the peer, if any.
    pub covered_by: Option<EntryInfo>,
    /// When allowlistd first saw it (it looks every few seconds), RFC 3339 UTC; connections
    /// older than the daemon show its start time.
    pub since: String,
    /// Milliseconds since data last arrived on it.
    pub idle_ms: Option<u32>,
    /// Ended by this request.
    pub killed: bool,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct BlockedReport {
    pub sources: Vec<BlockedSource>,
    /// Events the daemon received since it started.
    pub events_received: u64,
    /// Events the kernel sent, and held back to stay within its per-CPU budget (since the
    /// program was loaded).
    pub events_sent: u64,
    pub events_suppressed: u64,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct AuditReport {
    pub files: Vec<String>,
    pub records: Vec<crate::audit::Record>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct EmergencyStatus {
    /// RFC 3339, UTC.
    pub until: String,
    /// The same deadline in this machine's local time.
    pub until_local: String,
    pub remaining_secs: u64,
    pub reason: String,
    pub by: String,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Status {
    pub active: bool,
    pub entries: usize,
    pub entries_v4: usize,
    pub entries_v6: usize,
    /// Per address family.
    pub capacity: u32,
    pub protected_tcp_ports: Vec<u16>,
    pub interfaces: Vec<InterfaceStatus>,
    pub revision: u64,
    pub config: String,
    pub uptime_secs: u64,
    pub passed: u64,
    pub dropped: u64,
    /// Every reason's count over all interfaces, by reason name.
    pub counters: BTreeMap<String, u64>,
    pub pending_confirmation: Option<Pending>,
    pub emergency: Option<EmergencyStatus>,
    /// Every list (`default` for a config without `[lists.NAME]` tables).
    #[serde(default)]
    pub lists: Vec<ListStatus>,
    /// Knocks received, when `knock_listen` is set.
    #[serde(default)]
    pub knocks: Option<KnockStatus>,
}

/// What the knock listener did since the daemon started.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct KnockStatus {
    pub listen: Vec<String>,
    pub granted: u64,
    /// Refused knocks by kind (`bad_signature`, `replayed_nonce`, ...), every kind listed.
    pub refused: BTreeMap<String, u64>,
}

/// One list as the kernel enforces it, and what it judged.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ListStatus {
    pub name: String,
    /// "enforce", "monitor" or "off".
    pub mode: String,
    pub tcp_ports: Vec<u16>,
    pub udp_ports: Vec<u16>,
    pub entries: usize,
    /// New connections (and UDP datagrams) from covered sources.
    pub allowed: u64,
    pub dropped: u64,
    /// What monitor mode passed that enforcement would have dropped.
    pub would_drop: u64,
    /// Frames this list judged, by verdict reason.
    pub by_reason: BTreeMap<String, u64>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct InterfaceStatus {
    pub name: String,
    /// "driver", "generic", or "detached" when the interface has vanished.
    pub xdp_mode: String,
    pub passed: u64,
    pub dropped: u64,
    /// Packets by verdict reason (pass_other_protocol, drop_syn_v4, ...).
    pub by_reason: BTreeMap<String, u64>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Pending {
    pub change: String,
    pub rollback_in_secs: u64,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct EntryList {
    pub revision: u64,
    pub active: bool,
    pub entries: Vec<EntryInfo>,
    /// Entries that passed the filters (`entries` may hold fewer: `limit`, `count`).
    #[serde(default)]
    pub matched: u64,
    /// Entries in the list.
    #[serde(default)]
    pub total: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EntryInfo {
    pub cidr: String,
    pub comment: String,
    /// "FILE:LINE".
    pub origin: String,
    /// New connections this entry let in (counted in the kernel; kept across restarts).
    #[serde(default)]
    pub hits: u64,
    /// RFC 3339 time of the latest, if any.
    #[serde(default)]
    pub last_hit: Option<String>,
    /// The list it is in.
    #[serde(default)]
    pub list: String,
    /// RFC 3339 time a timed entry ends (or ended).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires: Option<String>,
    /// Written in a list file: changed by editing that file, not by `edit` or `delete`.
    #[serde(default)]
    pub in_list_file: bool,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Changed {
    pub revision: u64,
    pub summary: String,
    pub pending_confirmation: Option<Pending>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct TestReport {
    pub ip: String,
    pub active: bool,
    pub verdicts: Vec<PortVerdict>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct PortVerdict {
    pub port: u16,
    /// "tcp" or "udp".
    #[serde(default)]
    pub protocol: String,
    /// The list protecting the port.
    #[serde(default)]
    pub list: Option<String>,
    pub protected: bool,
    pub allowed: bool,
    /// The entry whose network covers the address, as "CIDR" and its comment.
    pub entry: Option<EntryInfo>,
    pub explanation: String,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ReloadReport {
    pub dry_run: bool,
    pub revision: u64,
    pub added: Vec<EntryInfo>,
    pub removed: Vec<EntryInfo>,
    pub summary: String,
    /// Added and removed entries left out of `added` and `removed` (a large reload without
    /// `full`).
    #[serde(default)]
    pub more_added: u64,
    #[serde(default)]
    pub more_removed: u64,
    /// List-file lines of the config read (or, after a reload, enforced) that repeated an
    /// entry or lay inside another entry's network, merged into it: in all, and per file.
    #[serde(default)]
    pub merged_lines: u64,
    #[serde(default)]
    pub merged_files: Vec<MergedFile>,
}

/// How many lines of one list file were merged into other entries.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MergedFile {
    pub file: String,
    pub lines: u64,
}

impl Response {
    pub fn ok(reply: Reply) -> Response {
        Response {
            version: VERSION,
            outcome: Answer::Ok { reply },
        }
    }

    pub fn error(kind: ErrorKind, message: impl Into<String>) -> Response {
        Response {
            version: VERSION,
            outcome: Answer::Error {
                kind,
                message: message.into(),
            },
        }
    }
}

/// Why a message could not be read.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    #[error("message of {0} bytes is larger than the limit of {1} bytes")]
    TooLarge(usize, usize),
    #[error("connection closed in the middle of a message")]
    Truncated,
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

pub fn encode<T: Serialize>(message: &T) -> Vec<u8> {
    let body = serde_json::to_vec(message).expect("protocol types always serialize");
    let mut frame = Vec::with_capacity(body.len() + 4);
    frame.extend_from_slice(&(body.len() as u32).to_be_bytes());
    frame.extend_from_slice(&body);
    frame
}

/// Blocking read of one frame's body of at most `limit` bytes (the CLI side).
pub fn read_frame(reader: &mut impl Read, limit: usize) -> Result<Vec<u8>, FrameError> {
    let mut len = [0u8; 4];
    reader.read_exact(&mut len).map_err(eof_is_truncated)?;
    let len = u32::from_be_bytes(len) as usize;
    if len > limit {
        return Err(FrameError::TooLarge(len, limit));
    }
    let mut body = vec![0u8; len];
    reader.read_exact(&mut body).map_err(eof_is_truncated)?;
    Ok(body)
}

pub fn write_frame<T: Serialize>(writer: &mut impl Write, message: &T) -> std::io::Result<()> {
    writer.write_all(&encode(message))?;
    writer.flush()
}

/// Async read of one frame's body (the daemon side).
pub async fn read_frame_async(
    reader: &mut (impl tokio::io::AsyncRead + Unpin),
) -> Result<Vec<u8>, FrameError> {
    use tokio::io::AsyncReadExt;
    let mut len = [0u8; 4];
    reader
        .read_exact(&mut len)
        .await
        .map_err(eof_is_truncated)?;
    let len = u32::from_be_bytes(len) as usize;
    if len > MAX_MESSAGE {
        return Err(FrameError::TooLarge(len, MAX_MESSAGE));
    }
    // Grown as bytes arrive, not allocated at the announced size: a client that announces
    // 1 MiB and sends nothing costs nothing.
    let mut body = Vec::new();
    reader.take(len as u64).read_to_end(&mut body).await?;
    if body.len() < len {
        return Err(FrameError::Truncated);
    }
    Ok(body)
}

fn eof_is_truncated(e: std::io::Error) -> FrameError {
    if e.kind() == std::io::ErrorKind::UnexpectedEof {
        FrameError::Truncated
    } else {
        FrameError::Io(e)
    }
}

/// Parses a request, telling a version mismatch apart from plain garbage.
pub fn parse_request(body: &[u8]) -> Result<Request, (ErrorKind, String)> {
    let value: serde_json::Value = serde_json::from_slice(body)
        .map_err(|e| (ErrorKind::BadRequest, format!("malformed request: {e}")))?;
    let version = value.get("version").and_then(serde_json::Value::as_u64);
    if version != Some(u64::from(VERSION)) {
        return Err((
            ErrorKind::UnsupportedVersion,
            format!(
                "unsupported protocol version {}; this allowlistd speaks {SUPPORTED_VERSIONS:?}",
                version.map_or("(none)".into(), |v| v.to_string())
            ),
        ));
    }
    serde_json::from_value(value).map_err(|e| {
        (
            ErrorKind::BadRequest,
            format!("request not understood by protocol version {VERSION}: {e}"),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_version_errors() {
        let request = Request {
            version: VERSION,
            command: Command::Add {
                cidr: "198.18.1.0/24".into(),
                comment: Some("lab".into()),
                lists: vec!["api".into(), "ssh".into()],
                ends: Some(End::AfterSecs(8 * 3600)),
                file: Some("/etc/allowlist/conf.d/team.toml".into()),
            },
            options: ChangeOptions::default(),
        };
        let frame = encode(&request);
        let body = read_frame(&mut &frame[..], MAX_MESSAGE).unwrap();
        assert_eq!(parse_request(&body).unwrap().command, request.command);

        let (kind, message) =
            parse_request(br#"{"version": 7, "command": {"name": "status"}}"#).unwrap_err();
        assert_eq!(kind, ErrorKind::UnsupportedVersion);
        assert!(
            message.contains("version 7") && message.contains("[1]"),
            "{message}"
        );

        let (kind, _) =
            parse_request(br#"{"version": 1, "command": {"name": "explode"}}"#).unwrap_err();
        assert_eq!(kind, ErrorKind::BadRequest);
    }

    #[test]
    fn oversized_and_truncated_frames() {
        let mut big = (MAX_MESSAGE as u32 + 1).to_be_bytes().to_vec();
        big.extend_from_slice(b"{}");
        assert!(matches!(
            read_frame(&mut &big[..], MAX_MESSAGE),
            Err(FrameError::TooLarge(..))
        ));
        let cut = [0u8, 0, 0, 10, b'{'];
        assert!(matches!(
            read_frame(&mut &cut[..], MAX_MESSAGE),
            Err(FrameError::Truncated)
        ));
    }
}

/// One source the program dropped connection attempts from, with the port it knocked on.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlockedSource {
    pub source: IpAddr,
    /// 0 when a fragment hid the port.
    pub port: u16,
    pub count: u64,
    /// RFC 3339, UTC.
    pub first_seen: String,
    pub last_seen: String,
    /// The reason of the latest drop (drop_syn_v4, drop_udp_v6, drop_fragment_evasion, ...;
    /// would_drop_* when monitor mode only counted it).
    pub reason: String,
    /// The list that dropped it (or, in monitor mode, would have).
    #[serde(default)]
    pub list: String,
    /// Not dropped: the list is in monitor mode.
    #[serde(default)]
    pub would_be: bool,
    /// The port is a UDP port.
    #[serde(default)]
    pub udp: bool,
}
