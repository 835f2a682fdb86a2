//! The command line: every subcommand and option (the man page and completions are generated
//! from these definitions by `allowlist-docs`).

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "allowlistctl",
    version,
    about = "Manage the live allowlist: entries, activation, tests.",
    after_help = "Exit codes: 0 ok (test: allowed), 1 test: blocked, 2 refused or invalid, 3 daemon unreachable. With --json, a failure also prints {\"error\": {\"kind\", \"message\", \"exit_code\"}} on stdout."
)]
pub struct Cli {
    /// The daemon's control socket [default: the control_socket of --config, else
    /// $ALLOWLIST_SOCKET, else that of /etc/allowlist/allowlist.toml, else
    /// /run/allowlist/allowlist.sock].
    #[arg(long, global = true, value_name = "PATH")]
    pub(crate) socket: Option<PathBuf>,
    /// Find the control socket in this config file (its control_socket key).
    #[arg(long, global = true, value_name = "FILE")]
    pub(crate) config: Option<PathBuf>,
    /// Print the daemon's answer as JSON (for scripts).
    #[arg(long, global = true)]
    pub(crate) json: bool,
    /// Name USER in the audit records of this change as the person it is made for (`root
    /// for USER`): for front ends, such as the Cockpit page, that run allowlistctl as root
    /// for a logged-in user. Only root may name another user.
    #[arg(long, global = true, value_name = "USER")]
    pub(crate) on_behalf_of: Option<String>,
    #[command(subcommand)]
    pub(crate) command: Cmd,
}

/// When a timed entry ends: the kernel stops admitting it then, even with the daemon down,
/// and the daemon removes it from the config (audited as an expiry).
#[derive(Args)]
pub(crate) struct EndArgs {
    /// A timed entry, ending after DURATION, e.g. 8h or 2d (at most 30d).
    #[arg(long = "for", id = "for_", value_name = "DURATION", conflicts_with = "until",
          value_parser = humantime::parse_duration)]
    pub(crate) for_: Option<Duration>,
    /// A timed entry, ending at TIME: RFC 3339, e.g. 2026-12-24T18:00:00Z (at most 30 days
    /// ahead).
    #[arg(long, value_name = "TIME")]
    pub(crate) until: Option<String>,
}

#[derive(Subcommand)]
pub(crate) enum Cmd {
    /// Active or not, entries and capacity, ports, interfaces, revision, counters, uptime.
    Status,
    /// Each list with its mode, ports, entry count and what it allowed, dropped and (in
    /// monitor mode) would have dropped.
    Lists,
    /// Every entry with its comment, where it is written, and its hits.
    List {
        /// Only entries with no new connection for this long, e.g. 30d (never-hit ones too).
        #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
        unused: Option<Duration>,
        /// Only the entry covering this address.
        #[arg(long, value_name = "IP")]
        contains: Option<String>,
        /// Only entries whose comment contains TEXT (case-insensitive).
        #[arg(long, value_name = "TEXT")]
        comment: Option<String>,
        /// Only entries written in FILE: a list file, or the config file for its [[entries]].
        #[arg(long, value_name = "FILE")]
        file: Option<PathBuf>,
        /// At most N entries, the first in file order.
        #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
        limit: Option<u64>,
        /// Print only how many entries match.
        #[arg(long)]
        count: bool,
        /// Only the entries of this list (default: every list).
        #[arg(long, value_name = "NAME")]
        list: Option<String>,
        /// Only timed entries (added with --for or --until, or with `expires` in the file).
        #[arg(long)]
        timed: bool,
        /// Instead: the timed entries that ended within DURATION (default 7d), from the
        /// audit log.
        #[arg(long, value_name = "DURATION", num_args = 0..=1, default_missing_value = "7d",
              value_parser = humantime::parse_duration, conflicts_with_all = ["unused", "count", "timed"])]
        expired: Option<Duration>,
    },
    /// Add a network or single address.
    Add {
        /// e.g. 198.18.1.0/24, 2001:db8::/48, 198.18.7.7
        #[arg(required_unless_present = "current", conflicts_with = "current")]
        cidr: Option<String>,
        /// What the entry is for, e.g. "office" (at most 256 characters; shown by `list`).
        #[arg(long)]
        comment: Option<String>,
        /// Add your own address (from SSH_CONNECTION, or --current-ip).
        #[arg(long)]
        current: bool,
        /// The list to add it to; repeat it to add the entry to several (default: `default`).
        #[arg(long = "list", value_name = "NAME")]
        lists: Vec<String>,
        /// Write it in FILE, a drop-in of the config (`include`), rather than the config file.
        #[arg(long, value_name = "FILE")]
        file: Option<PathBuf>,
        #[command(flatten)]
        end: EndArgs,
        #[command(flatten)]
        change: ChangeArgs,
    },
    /// Change an entry's network and/or comment in place, in the file holding it (the config
    /// file or a drop-in; an entry from a list file is edited in that file, then `reload`).
    Edit {
        /// The entry to change, as `list` shows it.
        cidr: String,
        /// The new network.
        #[arg(long = "cidr")]
        new_cidr: Option<String>,
        /// The new comment.
        #[arg(long)]
        comment: Option<String>,
        /// The entry's list, when its network is in several.
        #[arg(long, value_name = "NAME")]
        list: Option<String>,
        #[command(flatten)]
        end: EndArgs,
        /// Make a timed entry last (take its end away).
        #[arg(long, conflicts_with_all = ["for_", "until"])]
        permanent: bool,
        #[command(flatten)]
        change: ChangeArgs,
    },
    /// Remove an entry from the file holding it (the config file or a drop-in; an entry from a
    /// list file is removed from that file, then `reload`).
    Remove {
        /// The entry to remove, as `list` shows it.
        cidr: String,
        /// The entry's list, when its network is in several.
        #[arg(long, value_name = "NAME")]
        list: Option<String>,
        #[command(flatten)]
        change: ChangeArgs,
    },
    /// Enforce a list (from off or monitor mode; from monitor, says first who it would
    /// have blocked).
    Activate {
        /// Add your own address first, in the same change.
        #[arg(long)]
        add_current: bool,
        /// Also end established connections to protected ports from sources no entry covers
        /// (the "users not listed are logged out" of SaaS allowlists).
        #[arg(long)]
        kill_unlisted: bool,
        /// The list (see `lists`); default: `default`.
        #[arg(long, value_name = "NAME")]
        list: Option<String>,
        #[command(flatten)]
        change: ChangeArgs,
    },
    /// Stop enforcing a list (its entries are kept).
    Deactivate {
        /// The list (see `lists`); default: `default`.
        #[arg(long, value_name = "NAME")]
        list: Option<String>,
        #[command(flatten)]
        change: ChangeArgs,
    },
    /// Add a list: its mode and ports, no entries yet (then `add --list NAME`).
    AddList {
        /// 1 to 32 of a-z, 0-9, `_` and `-`, e.g. api.
        name: String,
        /// Protected TCP ports, e.g. 8443 or 80,443.
        #[arg(long, value_name = "PORTS", value_delimiter = ',')]
        tcp: Vec<u16>,
        /// Protected UDP ports.
        #[arg(long, value_name = "PORTS", value_delimiter = ',')]
        udp: Vec<u16>,
        /// enforce, monitor (count what it would drop, drop nothing) or off.
        #[arg(long, default_value = "monitor", value_parser = ["enforce", "monitor", "off"])]
        mode: String,
        /// Write it in FILE, a drop-in of the config (`include`), rather than the config file
        /// (on a node whose config file is a read-only ConfigMap, a writable drop-in).
        #[arg(long, value_name = "FILE")]
        file: Option<PathBuf>,
        #[command(flatten)]
        change: ChangeArgs,
    },
    /// Remove a list and its entries (its ports become unprotected).
    RemoveList {
        /// The list to remove, as `lists` shows it.
        name: String,
        #[command(flatten)]
        change: ChangeArgs,
    },
    /// Replace a list's protected TCP and/or UDP ports.
    SetPorts {
        /// The list.
        name: String,
        /// Its TCP ports from now on, e.g. 22 or 22,2222 (`none` for none).
        #[arg(long, value_name = "PORTS")]
        tcp: Option<String>,
        /// Its UDP ports from now on (`none` for none).
        #[arg(long, value_name = "PORTS")]
        udp: Option<String>,
        #[command(flatten)]
        change: ChangeArgs,
    },
    /// The live verdict for a SYN (or UDP datagram) from IP, read from the kernel's maps:
    /// per port, the list protecting it and the entry deciding.
    Test {
        /// The source address to judge, e.g. 198.18.1.2.
        ip: String,
        /// Only this port (default: every protected port).
        #[arg(long)]
        port: Option<u16>,
        /// UDP ports rather than TCP ones.
        #[arg(long)]
        udp: bool,
        /// Only this list's ports.
        #[arg(long, value_name = "NAME")]
        list: Option<String>,
    },
    /// Re-read the config file.
    Reload {
        /// Show what would change, change nothing.
        #[arg(long)]
        dry_run: bool,
        /// List every added and removed entry (above 50 changes only the first 10 each way
        /// are listed, and the rest counted).
        #[arg(long)]
        full: bool,
    },
    /// Keep a change made with --confirm-within.
    Confirm,
    /// Lift enforcement for a while (at most 24h); it ends by itself, even if allowlistd dies.
    #[command(
        override_usage = "allowlistctl emergency-disable [OPTIONS] --reason <REASON> [--for <DURATION>]"
    )]
    EmergencyDisable {
        /// Why (required; goes into the audit log).
        #[arg(long, required_unless_present = "extend", conflicts_with = "extend")]
        reason: Option<String>,
        /// How long, e.g. 90m, 4h, 2h30m (at most 24h).
        #[arg(long = "for", value_name = "DURATION", default_value = "24h", value_parser = humantime::parse_duration)]
        duration: Duration,
        /// If one is in force already: put this one (its reason, --for from now) in its place.
        #[arg(long, conflicts_with = "extend")]
        replace: bool,
        /// If one is in force already: keep its reason and end it --for from now (later than
        /// it ends now).
        #[arg(long)]
        extend: bool,
    },
    /// End an emergency disable early.
    EmergencyEnd,
    /// Established connections to protected ports, and whether an entry covers each peer.
    Sessions {
        /// Only connections to this port.
        #[arg(long)]
        port: Option<u16>,
        /// End the connections from sources no entry covers (audited).
        #[arg(long)]
        kill_unlisted: bool,
        /// End the one connection from PEER, as `sessions` lists it (e.g. 198.18.2.2:53551 or
        /// [2001:db8::b]:40022), covered or not (audited).
        #[arg(long, value_name = "PEER", conflicts_with = "kill_unlisted")]
        end: Option<std::net::SocketAddr>,
        /// Your address, when not in an SSH session: --kill-unlisted refuses to end your own
        /// connection unless --force.
        #[arg(long, value_name = "IP")]
        current_ip: Option<IpAddr>,
        /// With --kill-unlisted: end your own connection too, should no entry cover it.
        #[arg(long)]
        force: bool,
        /// Only connections to this list's ports.
        #[arg(long, value_name = "NAME")]
        list: Option<String>,
    },
    /// The sources blocked most often: who is knocking on the protected ports.
    Blocked {
        /// How many sources to show.
        #[arg(long, default_value_t = 20)]
        top: usize,
        /// Keep watching: print sources as they are blocked (Ctrl-C stops).
        #[arg(long)]
        follow: bool,
        /// Only the sources this list blocked.
        #[arg(long, value_name = "NAME")]
        list: Option<String>,
    },
    /// Show the audit log, or verify its hash chain.
    Audit {
        #[command(subcommand)]
        verify: Option<AuditCmd>,
        /// Only records since this time (RFC 3339, e.g. 2026-11-23T14:00:00Z) or this long ago (e.g. 2h).
        #[arg(long)]
        since: Option<String>,
        /// Only records of this action.
        #[arg(long, value_enum)]
        action: Option<allowlist_control::audit::Action>,
    },
    /// Send one signed UDP datagram asking HOST's allowlistd to open your address on a list
    /// for a while (single packet authorization); `knock keygen` makes the key. Nothing
    /// answers: connect after it.
    #[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
    Knock(KnockArgs),
}

#[derive(Subcommand)]
pub(crate) enum AuditCmd {
    /// Check the chain: exit 0 intact, 1 broken (the first broken record is named).
    Verify {
        /// Files to check, oldest first (default: the daemon's own log files).
        files: Vec<PathBuf>,
    },
}

#[derive(Args)]
pub(crate) struct KnockArgs {
    #[command(subcommand)]
    pub(crate) keygen: Option<KnockCmd>,
    /// The server: an IPv4 or IPv6 address or a host name.
    #[arg(required = true)]
    pub(crate) host: Option<String>,
    /// The server's knock port (its knock_listen).
    #[arg(long, default_value_t = allowlist_control::knock::DEFAULT_PORT)]
    pub(crate) port: u16,
    /// The private key file (from `knock keygen`).
    #[arg(long, value_name = "FILE", required = true)]
    pub(crate) key: Option<PathBuf>,
    /// The list to be let into.
    #[arg(long, value_name = "NAME", default_value = allowlist_control::knock::DEFAULT_LIST)]
    pub(crate) list: String,
    /// How long, e.g. 30m, 8h (at most the key's limit).
    #[arg(long = "for", value_name = "DURATION", default_value = "30m", value_parser = parse_duration)]
    pub(crate) duration: Duration,
    /// The address to open (default: the one the datagram arrives from; the key must allow
    /// another one).
    #[arg(long, value_name = "IP")]
    pub(crate) ip: Option<IpAddr>,
    /// Send from this local address (on a host with several), e.g. the one to be let in.
    #[arg(long, value_name = "IP")]
    pub(crate) from: Option<IpAddr>,
}

#[derive(Subcommand)]
pub(crate) enum KnockCmd {
    /// Write a new private key to FILE (never over an existing file) and print its line for
    /// the server's knock_keys file.
    Keygen {
        /// Where the private key goes (created with mode 0600).
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
        /// The key's name on the server, e.g. alice@laptop (shown in the audit log).
        #[arg(long, value_name = "NAME")]
        name: String,
        /// The lists the key may open, comma-separated, or `*` for every list.
        #[arg(long, value_name = "LISTS", default_value = allowlist_control::knock::DEFAULT_LIST)]
        lists: String,
        /// The longest --for the key may ask, e.g. 8h.
        #[arg(long, value_name = "DURATION", default_value = "8h")]
        max_for: String,
        /// Let the key open another address than the knock's source (--ip).
        #[arg(long)]
        any_ip: bool,
    },
}

#[derive(Args)]
pub(crate) struct ChangeArgs {
    /// Refuse unless the list is still at this revision (see `list` or `status`).
    #[arg(long, value_name = "N")]
    pub(crate) if_revision: Option<u64>,
    /// Apply even if the change blocks your own address.
    #[arg(long)]
    pub(crate) force: bool,
    /// Roll the change back unless `allowlistctl confirm` follows within this time (e.g. 60s, 5m).
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub(crate) confirm_within: Option<Duration>,
    /// Your address, when not in an SSH session (SSH_CONNECTION is used otherwise).
    #[arg(long, value_name = "IP")]
    pub(crate) current_ip: Option<IpAddr>,
}

pub(crate) fn parse_duration(text: &str) -> Result<Duration, String> {
    let duration = humantime::parse_duration(text)
        .map_err(|e| format!("`{text}`: {e} (e.g. 60s, 5m, 1h30m)"))?;
    if duration.is_zero() {
        return Err("must be longer than zero".into());
    }
    Ok(duration)
}
