//! XDP links on the protected interfaces, pinned under `<bpffs_dir>/links` so that the filter
//! keeps enforcing when the daemon dies. A new daemon adopts a pinned link by swapping its own
//! program into it (`bpf_link_update`: atomic, no moment without a filter) instead of
//! detaching and attaching again.

use std::collections::BTreeMap;
use std::ffi::CString;
use std::fmt;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use aya::programs::{
    Xdp,
    links::{FdLink, PinnedLink},
    xdp::{XdpLink, XdpMode},
};
use tracing::{info, warn};

use crate::filter::remove_pin;
use allowlist_config::XdpModeSetting;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    Driver,
    Generic,
}

impl Mode {
    fn xdp(self) -> XdpMode {
        match self {
            Mode::Driver => XdpMode::Driver,
            Mode::Generic => XdpMode::Skb,
        }
    }

    fn parse(text: &str) -> Option<Mode> {
        match text {
            "driver" => Some(Mode::Driver),
            "generic" => Some(Mode::Generic),
            _ => None,
        }
    }

    /// The modes to try, in order, for a setting: "auto" prefers the driver's fast path.
    fn candidates(setting: XdpModeSetting) -> &'static [Mode] {
        match setting {
            XdpModeSetting::Auto => &[Mode::Driver, Mode::Generic],
            XdpModeSetting::Driver => &[Mode::Driver],
            XdpModeSetting::Generic => &[Mode::Generic],
        }
    }
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Mode::Driver => "driver",
            Mode::Generic => "generic",
        })
    }
}

/// One interface's link. Dropping it only closes our fd: the pin keeps the link alive.
struct Link {
    ifindex: u32,
    mode: Mode,
    pin: PathBuf,
    _fd: FdLink,
}

/// Whether an attach failed because the device's driver has no native XDP (a VLAN, bridge or
/// bond device, or a NIC driver without it), rather than for a reason generic mode shares.
fn no_native_xdp(error: &aya::programs::ProgramError) -> bool {
    let mut source: Option<&dyn std::error::Error> = Some(error);
    while let Some(e) = source {
        if let Some(io) = e.downcast_ref::<std::io::Error>()
            && io.raw_os_error() == Some(libc::EOPNOTSUPP)
        {
            return true;
        }
        source = e.source();
    }
    false
}

/// The interfaces the program is attached to, by name.
pub struct Attachments {
    links_dir: PathBuf,
    links: BTreeMap<String, Link>,
}

pub fn ifindex(name: &str) -> Option<u32> {
    let name = CString::new(name).ok()?;
    // SAFETY: a valid NUL-terminated string; the call only reads it.
    let index = unsafe { libc::if_nametoindex(name.as_ptr()) };
    (index != 0).then_some(index)
}

impl Attachments {
    /// Attaches to `interfaces`, adopting links a previous daemon pinned under `bpffs_dir`,
    /// and detaches pinned links of interfaces no longer listed.
    pub fn adopt_or_attach(
        bpffs_dir: &Path,
        program: &mut Xdp,
        interfaces: &[String],
        setting: XdpModeSetting,
    ) -> Result<Attachments> {
        let links_dir = bpffs_dir.join("links");
        std::fs::create_dir_all(&links_dir)
            .with_context(|| format!("creating {}", links_dir.display()))?;
        let mut pinned = pinned_links(&links_dir)?;
        let mut attachments = Attachments {
            links_dir,
            links: BTreeMap::new(),
        };
        for name in interfaces {
            if let Some((mode, pin)) = pinned.remove(name) {
                match adopt(program, name, mode, &pin) {
                    Ok(link) => {
                        info!(interface = %name, mode = %mode, "adopted the pinned XDP link; program replaced atomically");
                        attachments.links.insert(name.clone(), link);
                        continue;
                    }
                    Err(e) => {
                        warn!(interface = %name, "pinned link is stale ({e:#}); attaching afresh");
                        remove_pin(&pin)?;
                    }
                }
            }
            attachments.attach(program, name, setting)?;
        }
        for (name, (_, pin)) in pinned {
            remove_pin(&pin)?;
            info!(interface = %name, "detached: no longer listed in `interfaces`");
        }
        Ok(attachments)
    }

    fn attach(&mut self, program: &mut Xdp, name: &str, setting: XdpModeSetting) -> Result<()> {
        let ifindex = ifindex(name).with_context(|| format!("interface {name} does not exist"))?;
        let mut failures = Vec::new();
        let mut lacks_native = false;
        for &mode in Mode::candidates(setting) {
            match program.attach_to_if_index(ifindex, mode.xdp()) {
                Ok(id) => {
                    let link = FdLink::try_from(program.take_link(id)?).context(
                        "the kernel gave a netlink XDP attachment, which cannot be pinned",
                    )?;
                    let pin = self.links_dir.join(pin_name(name, mode));
                    let pinned = link
                        .pin(&pin)
                        .with_context(|| format!("pinning the XDP link at {}", pin.display()))?;
                    if failures.is_empty() {
                        info!(interface = %name, mode = %mode, "attached");
                    } else {
                        // A warning: generic mode judges frames only after the kernel has built
                        // a socket buffer for them, which is slower under a flood.
                        warn!(interface = %name, mode = %mode, "attached in generic mode: {}", failures.join("; "));
                    }
                    self.links.insert(
                        name.to_string(),
                        Link {
                            ifindex,
                            mode,
                            pin,
                            _fd: FdLink::from(pinned),
                        },
                    );
                    return Ok(());
                }
                Err(e) => {
                    let no_driver = mode == Mode::Driver && no_native_xdp(&e);
                    lacks_native |= no_driver;
                    // With the OS error: the syscall's own message names only the call.
                    let e = anyhow::Error::from(e);
                    failures.push(if no_driver {
                        format!("{name} has no native XDP (driver mode: {e:#})")
                    } else {
                        format!("{mode} mode: {e:#}")
                    });
                }
            }
        }
        let hint = if setting == XdpModeSetting::Driver && lacks_native {
            "; xdp_mode = \"generic\" or \"auto\" attaches it in generic mode"
        } else {
            "; is another XDP program attached to it?"
        };
        bail!("cannot attach XDP to {name}: {}{hint}", failures.join("; "))
    }

    /// Reload: attach to newly listed interfaces, detach from unlisted ones.
    pub fn sync(
        &mut self,
        program: &mut Xdp,
        interfaces: &[String],
        setting: XdpModeSetting,
    ) -> Result<(Vec<String>, Vec<String>)> {
        let mut attached = Vec::new();
        for name in interfaces {
            if !self.links.contains_key(name) {
                self.attach(program, name, setting)?;
                attached.push(name.clone());
            }
        }
        let gone: Vec<String> = self
            .links
            .keys()
            .filter(|name| !interfaces.contains(name))
            .cloned()
            .collect();
        for name in &gone {
            self.detach(name)?;
        }
        Ok((attached, gone))
    }

    /// Notices interfaces that vanished (their links went with them) or came back. An
    /// interface deleted and re-created between two looks has a new ifindex: its dead link is
    /// dropped and the new one attached in the same look.
    pub fn watch(&mut self, program: &mut Xdp, interfaces: &[String], setting: XdpModeSetting) {
        for name in interfaces {
            let now = ifindex(name);
            if let Some(link) = self.links.get(name) {
                if now == Some(link.ifindex) {
                    continue;
                }
                warn!(interface = %name, ifindex = link.ifindex, "interface vanished; its XDP link went with it (will re-attach when it returns)");
                if let Err(e) = self.detach(name) {
                    warn!(interface = %name, "{e:#}");
                }
            }
            if now.is_some() {
                match self.attach(program, name, setting) {
                    Ok(()) => {
                        info!(interface = %name, ifindex = now, "interface is back; re-attached")
                    }
                    Err(e) => warn!(interface = %name, "{e:#}"),
                }
            }
        }
    }

    fn detach(&mut self, name: &str) -> Result<()> {
        if let Some(link) = self.links.remove(name) {
            // With the pin gone, dropping our fd releases the link: the program detaches.
            remove_pin(&link.pin)?;
            info!(interface = %name, "detached");
        }
        Ok(())
    }

    pub fn detach_all(&mut self) -> Result<()> {
        let names: Vec<String> = self.links.keys().cloned().collect();
        for name in names {
            self.detach(&name)?;
        }
        Ok(())
    }

    /// (interface, ifindex, mode) of every live attachment.
    pub fn describe(&self) -> impl Iterator<Item = (&str, u32, Mode)> {
        self.links
            .iter()
            .map(|(name, link)| (name.as_str(), link.ifindex, link.mode))
    }
}

fn adopt(program: &mut Xdp, name: &str, mode: Mode, pin: &Path) -> Result<Link> {
    let ifindex = ifindex(name).with_context(|| format!("interface {name} does not exist"))?;
    let fd = FdLink::from(PinnedLink::from_pin(pin)?);
    let id = program
        .attach_to_link(XdpLink::try_from(fd)?)
        .context("replacing the program in the pinned link")?;
    Ok(Link {
        ifindex,
        mode,
        pin: pin.to_path_buf(),
        _fd: FdLink::try_from(program.take_link(id)?)?,
    })
}

/// Pins are named `<interface>@<mode>`; anything else there is not ours and is left alone.
/// The file name of an interface's pinned link. bpffs refuses names with a dot, which VLAN
/// devices usually have (`eth0.100`), so a dot is written as a colon, which no interface name
/// holds.
fn pin_name(interface: &str, mode: Mode) -> String {
    format!("{}@{mode}", interface.replace('.', ":"))
}

fn pinned_links(dir: &Path) -> Result<BTreeMap<String, (Mode, PathBuf)>> {
    let mut found = BTreeMap::new();
    for entry in std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let entry = entry?;
        let file_name = entry.file_name();
        let Some((name, mode)) = file_name.to_str().and_then(|n| n.rsplit_once('@')) else {
            continue;
        };
        if let Some(mode) = Mode::parse(mode) {
            found.insert(name.replace(':', "."), (mode, entry.path()));
        }
    }
    Ok(found)
}
