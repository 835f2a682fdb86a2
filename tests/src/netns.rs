//! Network namespaces the tests create themselves, and the two-namespace `Lab` topology.
//!
//! Every namespace is named `alw-<pid>-<n>` so parallel tests (threads of one process) and
//! parallel test processes never collide, and is deleted when its guard drops, even on panic.
//! Code runs inside a namespace either on a fresh thread that `setns`es into it
//! ([`Netns::run_in`]) or as a child process that does the same before `exec` (see `daemon`);
//! `ip netns exec` is avoided for anything that needs the host's bpffs (it remounts /sys).

use std::fs::File;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::PathBuf;
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU32, Ordering};

use anyhow::{Context as _, bail};
use nix::sched::{CloneFlags, setns};

/// The server's addresses; the daemon filters traffic arriving at them.
pub const SERVER_V4: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);
pub const SERVER_V6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1);
/// Client addresses meant to be allowlisted (`198.18.1.0/24`, `2001:db8::a/128`).
pub const ALLOWED_V4: Ipv4Addr = Ipv4Addr::new(198, 18, 1, 2);
pub const ALLOWED_V6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0xa);
/// Client addresses meant to stay outside the allowlist.
pub const BLOCKED_V4: Ipv4Addr = Ipv4Addr::new(198, 18, 2, 2);
pub const BLOCKED_V6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0xb);

/// The TCP port the tests protect (the default of `daemon::Config`), and one they leave open.
pub const PROTECTED: u16 = 2222;
pub const UNPROTECTED: u16 = 8080;

/// The client addresses as `IpAddr`s: allowed (`A`) and blocked (`B`), IPv4 and IPv6.
pub const A4: IpAddr = IpAddr::V4(ALLOWED_V4);
pub const A6: IpAddr = IpAddr::V6(ALLOWED_V6);
pub const B4: IpAddr = IpAddr::V4(BLOCKED_V4);
pub const B6: IpAddr = IpAddr::V6(BLOCKED_V6);

/// The server address of `src`'s family, on `port`: where a probe from `src` goes.
pub fn to(src: IpAddr, port: u16) -> SocketAddr {
    SocketAddr::new(Lab::server_addr_for(src), port)
}

/// Prefix lengths of the lab's on-link networks.
const V4_PREFIX: u8 = 16;
const V6_PREFIX: u8 = 64;

/// One counter for namespace and interface names: unique within the process.
static NEXT_ID: AtomicU32 = AtomicU32::new(0);

/// A number unique within this process, for names of namespaces, interfaces and tags.
pub fn next_id() -> u32 {
    NEXT_ID.fetch_add(1, Ordering::Relaxed)
}

/// Runs a command to completion; on failure the error shows the command line, its exit status
/// and its stderr. Returns stdout.
pub fn run_cmd(cmd: &mut Command) -> anyhow::Result<String> {
    let shown = show_command(cmd);
    let out = cmd.output().with_context(|| format!("running `{shown}`"))?;
    if !out.status.success() {
        bail!(
            "`{shown}` failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// `cmd` as a command line, for messages.
pub(crate) fn show_command(cmd: &Command) -> String {
    std::iter::once(cmd.get_program())
        .chain(cmd.get_args())
        .map(|a| a.to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join(" ")
}

/// A network namespace created by `ip netns add`, deleted with `ip netns del` on drop.
#[derive(Debug)]
pub struct Netns {
    name: String,
}

impl Netns {
    /// Creates `alw-<pid>-<n>`. Panics (with the `ip` error) if that fails.
    #[expect(
        clippy::new_without_default,
        reason = "creates kernel objects; a `Default` would hide that"
    )]
    pub fn new() -> Netns {
        let name = format!("alw-{}-{}", std::process::id(), next_id());
        run_cmd(Command::new("ip").args(["netns", "add", &name]))
            .unwrap_or_else(|e| panic!("creating network namespace {name}: {e:#}"));
        Netns { name }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The namespace file `ip` keeps, which `setns` opens.
    pub fn path(&self) -> PathBuf {
        PathBuf::from("/run/netns").join(&self.name)
    }

    /// Opens the namespace file, for `setns` (here or in a child's `pre_exec`).
    pub fn open(&self) -> anyhow::Result<File> {
        let path = self.path();
        File::open(&path).with_context(|| format!("opening {}", path.display()))
    }

    /// Runs `f` on a fresh thread that has joined this namespace first, and returns its
    /// result. Sockets created inside `f` belong to the namespace for good, so they can be
    /// returned and used from any thread. A panic in `f` is propagated as is.
    pub fn run_in<F, R>(&self, f: F) -> R
    where
        F: FnOnce() -> R + Send,
        R: Send,
    {
        let file = self
            .open()
            .unwrap_or_else(|e| panic!("entering namespace {}: {e:#}", self.name));
        let name = &self.name;
        std::thread::scope(|s| {
            let thread = s.spawn(move || {
                setns(&file, CloneFlags::CLONE_NEWNET)
                    .unwrap_or_else(|e| panic!("setns into network namespace {name}: {e}"));
                drop(file);
                f()
            });
            thread
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
        })
    }

    /// `ip -n NAME ARGS...`; returns stdout, or an error naming the command and its stderr.
    pub fn ip(&self, args: &[&str]) -> anyhow::Result<String> {
        run_cmd(Command::new("ip").arg("-n").arg(&self.name).args(args))
    }

    /// `ip netns exec NAME PROGRAM ARGS...`, for tools that do not need bpffs. Returns the
    /// output whatever the exit status; only a failure to start is an error.
    pub fn exec(&self, program: &str, args: &[&str]) -> anyhow::Result<Output> {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.name, program]).args(args);
        let shown = show_command(&cmd);
        cmd.output().with_context(|| format!("running `{shown}`"))
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        if let Err(e) = run_cmd(Command::new("ip").args(["netns", "del", &self.name])) {
            eprintln!("warning: removing network namespace {}: {e:#}", self.name);
        }
    }
}

/// A server namespace and a client namespace joined by one veth pair.
///
/// Server side `alsv<n>` has [`SERVER_V4`]/16 and [`SERVER_V6`]/64; client side `alcl<n>` has
/// [`ALLOWED_V4`], [`BLOCKED_V4`] (/16) and [`ALLOWED_V6`], [`BLOCKED_V6`] (/64). IPv6
/// addresses are added `nodad`, and DAD is off on both ends, so every address works at once. Each lab is independent: two labs can
/// exist side by side with the same addresses, as their namespaces differ.
#[derive(Debug)]
pub struct Lab {
    /// Where the listeners and the daemon run.
    pub server: Netns,
    /// Where the probes start.
    pub client: Netns,
    server_if: String,
    client_if: String,
}

impl Lab {
    /// Builds the topology; panics with the failing `ip` command if it cannot.
    #[expect(
        clippy::new_without_default,
        reason = "creates kernel objects; a `Default` would hide that"
    )]
    pub fn new() -> Lab {
        Lab::with_server_suffix("")
    }

    /// [`Lab::new`] with `suffix` after the server's interface name, e.g. ".100" for a name
    /// like a VLAN device's.
    pub fn with_server_suffix(suffix: &str) -> Lab {
        let server = Netns::new();
        let client = Netns::new();
        let id = next_id();
        let lab = Lab {
            server,
            client,
            server_if: format!("alsv{id}{suffix}"),
            client_if: format!("alcl{id}"),
        };
        lab.configure()
            .unwrap_or_else(|e| panic!("building lab {}: {e:#}", lab.server.name()));
        lab
    }

    fn configure(&self) -> anyhow::Result<()> {
        let (sv, cl) = (self.server_if.as_str(), self.client_if.as_str());
        // Created inside the server namespace with its peer moved straight into the client
        // namespace: nothing ever appears in the host's namespace.
        self.server.ip(&[
            "link",
            "add",
            sv,
            "type",
            "veth",
            "peer",
            "name",
            cl,
            "netns",
            self.client.name(),
        ])?;
        self.server.ip(&[
            "addr",
            "add",
            &format!("{SERVER_V4}/{V4_PREFIX}"),
            "dev",
            sv,
        ])?;
        self.server.ip(&[
            "addr",
            "add",
            &format!("{SERVER_V6}/{V6_PREFIX}"),
            "dev",
            sv,
            "nodad",
        ])?;
        for v4 in [ALLOWED_V4, BLOCKED_V4] {
            self.client
                .ip(&["addr", "add", &format!("{v4}/{V4_PREFIX}"), "dev", cl])?;
        }
        for v6 in [ALLOWED_V6, BLOCKED_V6] {
            self.client.ip(&[
                "addr",
                "add",
                &format!("{v6}/{V6_PREFIX}"),
                "dev",
                cl,
                "nodad",
            ])?;
        }
        for (ns, dev) in [(&self.server, sv), (&self.client, cl)] {
            // Without DAD the link-local address, made as the link comes up, is usable at
            // once too: an address leaving its tentative state later is a network change a
            // browser aborts its loads on (ERR_NETWORK_CHANGED).
            let dad = format!("/proc/sys/net/ipv6/conf/{dev}/accept_dad");
            ns.run_in(|| std::fs::write(&dad, "0"))
                .with_context(|| format!("writing 0 to {dad} in {}", ns.name()))?;
            ns.ip(&["link", "set", "lo", "up"])?;
            ns.ip(&["link", "set", dev, "up"])?;
        }
        Ok(())
    }

    /// Deletes the veth pair (both ends go), as a driver unload or a re-provisioned link does.
    pub fn delete_link(&self) -> anyhow::Result<()> {
        self.server.ip(&["link", "del", &self.server_if]).map(drop)
    }

    /// Builds the veth pair again after [`Lab::delete_link`], with the same names and
    /// addresses: new interfaces with new ifindexes.
    pub fn restore_link(&self) -> anyhow::Result<()> {
        self.configure()
    }

    /// The server's veth end: where the daemon attaches XDP.
    pub fn server_if(&self) -> &str {
        &self.server_if
    }

    /// The client's veth end.
    pub fn client_if(&self) -> &str {
        &self.client_if
    }

    /// The server address of the same family as `client`.
    pub fn server_addr_for(client: IpAddr) -> IpAddr {
        match client {
            IpAddr::V4(_) => IpAddr::V4(SERVER_V4),
            IpAddr::V6(_) => IpAddr::V6(SERVER_V6),
        }
    }
}
