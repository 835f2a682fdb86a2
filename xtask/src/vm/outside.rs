//! The guest's NIC and what lies outside it: a virtio-net device with several queue pairs on
//! a multiqueue tap, whose host end lives in a network namespace of its own (so the host's
//! networking never sees the test addresses), where the tests crate's `vm-peer` holds the
//! outside addresses and connects into the guest when a test there asks
//! (`allowlist_tests::outside`).

use std::io::{BufRead as _, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};

use anyhow::{Context, Result, bail};

use crate::exec::run;

/// Queue pairs on the tap and the NIC. The guest's 2 CPUs use 2; native XDP wants as many
/// again for its own transmit queues, which kernels before 5.13 require.
const QUEUES: u32 = 4;
const TAP: &str = "alwvm0";

pub struct Outside {
    peer: Child,
    netns: Namespace,
}

impl Outside {
    /// The namespace, the tap in it and the peer, ready for requests.
    pub fn create(peer: &Path) -> Result<Outside> {
        let netns = Namespace::add(format!("alw-vm-{}", std::process::id()))?;
        run(Command::new("ip")
            .args(["-n", &netns.0, "tuntap", "add", "dev", TAP])
            .args(["mode", "tap", "multi_queue"]))?;
        let mut peer_cmd = netns.command(peer);
        let mut child = peer_cmd
            .arg(TAP)
            .stdout(Stdio::piped())
            .spawn()
            .with_context(|| format!("starting {}", peer.display()))?;
        let mut line = String::new();
        let read = BufReader::new(child.stdout.take().expect("piped")).read_line(&mut line);
        // The same words as allowlist_tests::outside::READY.
        if read.is_err() || line.trim() != "vm-peer ready" {
            let _ = child.kill();
            let _ = child.wait();
            bail!(
                "{} did not get ready (it printed {line:?}; its error is above)",
                peer.display()
            );
        }
        Ok(Outside { peer: child, netns })
    }

    /// The namespace QEMU must run in to open the tap.
    pub fn netns(&self) -> &str {
        &self.netns.0
    }

    /// QEMU's options for the NIC on the tap. The guest offloads are off because native XDP
    /// on virtio-net refuses to attach while the host may hand it merged (GRO) or partially
    /// checksummed frames.
    pub fn qemu_opts() -> String {
        format!(
            "-netdev tap,id=alwnet,ifname={TAP},script=no,downscript=no,vhost=off,queues={QUEUES} \
             -device virtio-net-pci,netdev=alwnet,mq=on,vectors={vectors},guest_tso4=off,\
             guest_tso6=off,guest_ecn=off,guest_ufo=off,guest_csum=off",
            vectors = 2 * QUEUES + 2,
        )
    }
}

impl Drop for Outside {
    fn drop(&mut self) {
        let _ = self.peer.kill();
        let _ = self.peer.wait();
    }
}

/// A network namespace of ours, deleted when dropped (with the tap in it).
struct Namespace(String);

impl Namespace {
    fn add(name: String) -> Result<Namespace> {
        run(Command::new("ip").args(["netns", "add", &name]))?;
        Ok(Namespace(name))
    }

    fn command(&self, program: &Path) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.0]).arg(program);
        cmd
    }
}

impl Drop for Namespace {
    fn drop(&mut self) {
        if let Err(e) = run(Command::new("ip").args(["netns", "del", &self.0])) {
            eprintln!(
                "xtask: warning: removing network namespace {}: {e:#}",
                self.0
            );
        }
    }
}
