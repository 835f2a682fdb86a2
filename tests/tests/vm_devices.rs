//! Real devices the development host's kernel lacks (it has no 8021q), run by
//! `cargo xtask vm-test` inside Debian's kernels and never by the host's `cargo test`
//! (`test = false` in Cargo.toml): an 802.1Q sub-interface and a QinQ stack (802.1ad outside,
//! 802.1Q inside) on the lab's veth pair, carrying real TCP connects from the client namespace
//! through the filter attached to the parent veth (driver mode, the tags in the frames it
//! judges) and, separately, to the VLAN devices themselves (generic mode: a VLAN device has
//! no native XDP, and the daemon says so); and native XDP on the VM's own virtio-net NIC,
//! several queues, judging connects from outside the VM (`allowlist_tests::outside`).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::process::Command;

use allowlist_tests::bpffs::TestDir;
use allowlist_tests::ctl::{ctl_command, run};
use allowlist_tests::daemon::{Config, Daemon, READY_TIMEOUT};
use allowlist_tests::fixture::{Running, Start};
use allowlist_tests::netns::{A4, A6, B4, B6, Lab, Netns, PROTECTED, run_cmd, to};
use allowlist_tests::outside::{self, Outside};
use allowlist_tests::require_root;
use allowlist_tests::tcp::{
    BLOCKED_PROBE, Listener, Outcome, allowed_probe, assert_connects, assert_times_out,
};

/// A VLAN network on top of the lab's veth pair: the devices on both ends and its addresses,
/// 198.19.`net`.0/24 and 2001:db8:`net`::/64 (server .1 and ::1, the allowed client .2 and
/// ::a, the blocked one .3 and ::b).
struct VlanNet {
    /// The server's device, where the daemon may attach.
    server_dev: String,
    client_dev: String,
    net: u8,
}

impl VlanNet {
    fn server(&self) -> [IpAddr; 2] {
        [v4(self.net, 1), v6(self.net, 1)]
    }

    fn allowed(&self) -> [IpAddr; 2] {
        [v4(self.net, 2), v6(self.net, 0xa)]
    }

    fn blocked(&self) -> [IpAddr; 2] {
        [v4(self.net, 3), v6(self.net, 0xb)]
    }

    /// The entries allowing this network's allowed client.
    fn entries(&self, config: Config) -> Config {
        let [a4, a6] = self.allowed();
        config
            .entry(&format!("{a4}/32"), "allowed VLAN client, IPv4")
            .entry(&format!("{a6}/128"), "allowed VLAN client, IPv6")
    }

    /// Where a probe from `src` (one of this network's clients) goes.
    fn to(&self, src: IpAddr) -> SocketAddr {
        let [s4, s6] = self.server();
        SocketAddr::new(if src.is_ipv4() { s4 } else { s6 }, PROTECTED)
    }

    #[track_caller]
    fn assert_filtered(&self, client: &Netns, what: &str) {
        for src in self.allowed() {
            assert_connects(client, src, self.to(src), what);
        }
        for src in self.blocked() {
            assert_times_out(client, src, self.to(src), what);
        }
    }

    #[track_caller]
    fn assert_unfiltered(&self, client: &Netns, what: &str) {
        for src in self.blocked() {
            assert_connects(client, src, self.to(src), what);
        }
    }
}

fn v4(net: u8, host: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(198, 19, net, host))
}

fn v6(net: u8, host: u16) -> IpAddr {
    IpAddr::V6(Ipv6Addr::new(
        0x2001,
        0xdb8,
        u16::from(net),
        0,
        0,
        0,
        0,
        host,
    ))
}

/// The lab with an 802.1Q network (VLAN 100) and a QinQ one (802.1ad 200, 802.1Q 300 inside)
/// on its veth pair. The client's veth end inserts the tags into the frames itself (VLAN
/// transmit offloads off), so what arrives at the server's veth, and at a program attached
/// there, is the tagged frame a trunk port delivers.
fn vlan_lab() -> (Lab, VlanNet, VlanNet) {
    // The host's kernel has no modules; Debian's have 8021q as one.
    run_cmd(Command::new("modprobe").arg("8021q")).unwrap_or_else(|e| {
        panic!("{e:#}: vm_devices needs 8021q; run it with `cargo xtask vm-test vm_devices`")
    });
    let lab = Lab::new();
    run_cmd(
        Command::new("ip")
            .args(["netns", "exec", lab.client.name(), "ethtool", "-K"])
            .args([
                lab.client_if(),
                "txvlan",
                "off",
                "tx-vlan-stag-hw-insert",
                "off",
            ]),
    )
    .unwrap_or_else(|e| panic!("turning the VLAN transmit offloads off: {e:#}"));
    let veth = (lab.server_if().to_owned(), lab.client_if().to_owned());
    let dot1q = add_net(&lab, &veth, "802.1Q", 100, 100);
    let outer = add_vlan(&lab, &veth, "802.1ad", 200);
    let qinq = add_net(&lab, &outer, "802.1Q", 300, 200);
    // Two tags take 8 bytes of what the veth carries.
    for (ns, dev) in [
        (&lab.server, &qinq.server_dev),
        (&lab.client, &qinq.client_dev),
    ] {
        ns.ip(&["link", "set", dev, "mtu", "1496"])
            .unwrap_or_else(|e| panic!("{e:#}"));
    }
    (lab, dot1q, qinq)
}

/// A VLAN device `<parent>.<vid>` on each end (`parents`: the server's, the client's), up.
fn add_vlan(lab: &Lab, parents: &(String, String), proto: &str, vid: u16) -> (String, String) {
    let names = (
        format!("{}.{vid}", parents.0),
        format!("{}.{vid}", parents.1),
    );
    for (ns, parent, name) in [
        (&lab.server, &parents.0, &names.0),
        (&lab.client, &parents.1, &names.1),
    ] {
        assert!(name.len() < 16, "interface name {name} is too long");
        let vid = vid.to_string();
        let dad = format!("/proc/sys/net/ipv6/conf/{name}/accept_dad");
        ns.ip(&[
            "link", "add", "link", parent, "name", name, "type", "vlan", "proto", proto, "id", &vid,
        ])
        .and_then(|_| ns.run_in(|| std::fs::write(&dad, "0")).map_err(Into::into))
        .and_then(|()| ns.ip(&["link", "set", name, "up"]))
        .unwrap_or_else(|e| panic!("adding {proto} VLAN {vid} on {parent}: {e:#}"));
    }
    names
}

/// [`add_vlan`] with the addresses of network `net` on the new devices.
fn add_net(lab: &Lab, parents: &(String, String), proto: &str, vid: u16, net: u8) -> VlanNet {
    let (server_dev, client_dev) = add_vlan(lab, parents, proto, vid);
    let vlan = VlanNet {
        server_dev,
        client_dev,
        net,
    };
    let add = |ns: &Netns, dev: &str, addrs: &[IpAddr]| {
        for addr in addrs {
            let cidr = match addr {
                IpAddr::V4(a) => format!("{a}/24"),
                IpAddr::V6(a) => format!("{a}/64"),
            };
            let mut args = vec!["addr", "add", &cidr, "dev", dev];
            if addr.is_ipv6() {
                args.push("nodad");
            }
            ns.ip(&args).unwrap_or_else(|e| panic!("{e:#}"));
        }
    };
    add(&lab.server, &vlan.server_dev, &vlan.server());
    let clients: Vec<IpAddr> = vlan.allowed().into_iter().chain(vlan.blocked()).collect();
    add(&lab.client, &vlan.client_dev, &clients);
    vlan
}

#[test]
fn tagged_connects_are_filtered_by_the_program_on_the_parent_veth() {
    if !require_root("tagged_connects_are_filtered_by_the_program_on_the_parent_veth") {
        return;
    }
    let (lab, dot1q, qinq) = vlan_lab();
    let run = Running::start_in(lab, &Start::default(), |dir, iface| {
        let config = Config::new(dir, iface)
            .entry("198.18.1.0/24", "allowed client, IPv4")
            .entry("2001:db8::a/128", "allowed client, IPv6");
        qinq.entries(dot1q.entries(config)).render()
    });
    let status = run.ctl(&["status"]);
    status
        .ok()
        .stdout_has(&format!("interface:  {} (XDP driver)", run.lab.server_if()));
    let client = run.client();
    for src in [A4, A6] {
        assert_connects(client, src, to(src, PROTECTED), "untagged, listed");
    }
    for src in [B4, B6] {
        assert_times_out(client, src, to(src, PROTECTED), "untagged, unlisted");
    }
    dot1q.assert_filtered(client, "802.1Q VLAN 100 through the parent veth");
    qinq.assert_filtered(client, "QinQ 200/300 through the parent veth");
    let listed = run.ctl(&["--json", "list"]).ok().json();
    for vlan in [&dot1q, &qinq] {
        let [a4, _] = vlan.allowed();
        assert!(
            hits_of(&listed, a4) >= 1,
            "the tagged connect from {a4} counts a hit for its entry: {listed}"
        );
    }
}

#[test]
fn on_vlan_devices_the_filter_runs_in_generic_mode_and_says_so() {
    if !require_root("on_vlan_devices_the_filter_runs_in_generic_mode_and_says_so") {
        return;
    }
    let (lab, dot1q, qinq) = vlan_lab();
    let devices = [dot1q.server_dev.clone(), qinq.server_dev.clone()];
    let run = Running::start_in(lab, &Start::default(), |dir, _| {
        let mut config = Config::new(dir, &devices[0]);
        config.interfaces = devices.to_vec();
        qinq.entries(dot1q.entries(config)).render()
    });
    let log = run.daemon.log();
    for dev in &devices {
        assert!(
            log.contains(&format!(
                "attached in generic mode: {dev} has no native XDP"
            )) && log.contains(&format!("{dev} (generic)")),
            "the log says why {dev} is in generic mode, and the ready line names it; log:\n{log}"
        );
        run.ctl(&["status"])
            .ok()
            .stdout_has(&format!("interface:  {dev} (XDP generic)"));
    }
    let client = run.client();
    dot1q.assert_filtered(client, "802.1Q VLAN 100, program on the VLAN device");
    qinq.assert_filtered(client, "QinQ 200/300, program on the inner VLAN device");
    // The parent veth carries no program: its untagged traffic is not judged.
    for src in [B4, B6] {
        assert_connects(client, src, to(src, PROTECTED), "untagged, no program");
    }
}

#[test]
fn driver_mode_on_a_vlan_device_is_refused_naming_it() {
    if !require_root("driver_mode_on_a_vlan_device_is_refused_naming_it") {
        return;
    }
    let (lab, dot1q, _qinq) = vlan_lab();
    let _listener = Listener::start(
        &lab.server,
        SocketAddr::new("::".parse().unwrap(), PROTECTED),
    );
    let dir = TestDir::new();
    let mut config = dot1q.entries(Config::new(&dir, &dot1q.server_dev));
    config.xdp_mode = Some("driver".to_owned());
    let path = dir.join("allowlist.toml");
    config.write(&path);
    let mut daemon = Daemon::spawn(&lab.server, &path);
    let status = daemon
        .wait_exit(READY_TIMEOUT)
        .unwrap_or_else(|e| panic!("{e:#}"));
    let log = daemon.log();
    assert_eq!(status.code(), Some(1), "log:\n{log}");
    let dev = &dot1q.server_dev;
    assert!(
        log.contains(&format!(
            "cannot attach XDP to {dev}: {dev} has no native XDP (driver mode: "
        )) && log.contains(r#"xdp_mode = "generic" or "auto" attaches it in generic mode"#),
        "the refusal names the device, what it lacks and the fix; log:\n{log}"
    );
    // Nothing stays attached: the VLAN is open as before.
    dot1q.assert_unfiltered(&lab.client, "the daemon refused to start");
}

/// The hits `list --json` shows for the entry of the single address `src`.
fn hits_of(listed: &serde_json::Value, src: IpAddr) -> u64 {
    let cidr = format!("{src}/");
    listed["entries"]
        .as_array()
        .and_then(|entries| {
            entries
                .iter()
                .find(|e| e["cidr"].as_str().is_some_and(|c| c.starts_with(&cidr)))
        })
        .and_then(|entry| entry["hits"].as_u64())
        .unwrap_or_else(|| panic!("no entry for {src} with hits in {listed}"))
}

/// The guest's virtio-net NIC, which `cargo xtask vm-test` puts on a multiqueue tap.
fn virtio_nic() -> String {
    let nics = std::fs::read_dir("/sys/class/net").expect("/sys/class/net");
    nics.filter_map(Result::ok)
        .find(|nic| {
            std::fs::read_link(nic.path().join("device/driver"))
                .is_ok_and(|driver| driver.ends_with("virtio_net"))
        })
        .map(|nic| nic.file_name().to_string_lossy().into_owned())
        .expect("a virtio-net NIC: run this with `cargo xtask vm-test vm_devices`, which adds one")
}

/// `ethtool -S`'s per-queue receive counters named `<name>`, by queue.
fn per_queue(ns: &Netns, nic: &str, name: &str) -> Vec<u64> {
    let out = ns.exec("ethtool", &["-S", nic]).expect("ethtool -S");
    let text = String::from_utf8_lossy(&out.stdout);
    let mut counts = Vec::new();
    for line in text.lines() {
        let Some((key, value)) = line.trim().split_once(": ") else {
            continue;
        };
        // `rx_queue_3_xdp_drops` on 5.10 and 6.1, `rx3_xdp_drops` on 6.12.
        let Some(queue) = key
            .strip_prefix("rx_queue_")
            .or_else(|| key.strip_prefix("rx"))
            .and_then(|rest| rest.strip_suffix(&format!("_{name}")))
            .and_then(|n| n.parse::<usize>().ok())
        else {
            continue;
        };
        counts.resize(counts.len().max(queue + 1), 0);
        counts[queue] = value.parse().expect("a counter");
    }
    assert!(
        !counts.is_empty(),
        "ethtool -S {nic} has no per-queue {name}:\n{text}"
    );
    counts
}

#[test]
fn native_xdp_on_the_multiqueue_virtio_nic_judges_connects_from_outside_the_vm() {
    if !require_root("native_xdp_on_the_multiqueue_virtio_nic_judges_connects_from_outside_the_vm")
    {
        return;
    }
    let nic = virtio_nic();
    // The NIC moves into a namespace of the test's, and back when the namespace goes.
    let server = Netns::new();
    run_cmd(Command::new("ip").args(["link", "set", &nic, "netns", server.name()]))
        .unwrap_or_else(|e| panic!("moving {nic} into the test's namespace: {e:#}"));
    let dad = format!("/proc/sys/net/ipv6/conf/{nic}/accept_dad");
    server
        .run_in(|| std::fs::write(&dad, "0"))
        .unwrap_or_else(|e| panic!("{dad}: {e}"));
    for args in [
        vec![
            "addr",
            "add",
            &format!("{}/{}", outside::GUEST_V4, outside::PREFIX_V4),
            "dev",
            &nic,
        ],
        vec![
            "addr",
            "add",
            &format!("{}/{}", outside::GUEST_V6, outside::PREFIX_V6),
            "dev",
            &nic,
            "nodad",
        ],
        vec!["link", "set", &nic, "up"],
        vec!["link", "set", "lo", "up"],
    ] {
        server.ip(&args).unwrap_or_else(|e| panic!("{e:#}"));
    }
    let _listener = Listener::start(&server, SocketAddr::new("::".parse().unwrap(), PROTECTED));
    let dir = TestDir::new();
    let mut config = Config::new(&dir, &nic)
        .entry(
            &format!("{}/32", outside::ALLOWED_V4),
            "outside client, IPv4",
        )
        .entry(
            &format!("{}/128", outside::ALLOWED_V6),
            "outside client, IPv6",
        );
    config.xdp_mode = Some("driver".to_owned());
    let path = dir.join("allowlist.toml");
    config.write(&path);
    let daemon = Daemon::spawn(&server, &path);
    daemon.wait_ready();
    let socket = dir.join("control.sock");
    run(&mut ctl_command(&socket, &["status"]))
        .ok()
        .stdout_has(&format!("interface:  {nic} (XDP driver)"));

    // Several queues, each judged by the program: a tap spreads flows over the queues by
    // their hash, so the blocked connects' SYNs (each from another port) reach more than one.
    let drops_before = per_queue(&server, &nic, "xdp_drops");
    assert!(
        drops_before.len() >= 2,
        "{nic} has {} receive queue(s); vm-test gives it several",
        drops_before.len()
    );
    let mut outside = Outside::reach(&server);
    let guest = |src: IpAddr| {
        let dst = if src.is_ipv4() {
            IpAddr::V4(outside::GUEST_V4)
        } else {
            IpAddr::V6(outside::GUEST_V6)
        };
        SocketAddr::new(dst, PROTECTED)
    };
    let allowed = [
        IpAddr::V4(outside::ALLOWED_V4),
        IpAddr::V6(outside::ALLOWED_V6),
    ];
    let blocked = [
        IpAddr::V4(outside::BLOCKED_V4),
        IpAddr::V6(outside::BLOCKED_V6),
    ];
    const ROUNDS: u64 = 6;
    for round in 0..ROUNDS {
        for src in allowed {
            let seen = outside.connect(src, guest(src), allowed_probe());
            assert_eq!(
                seen,
                Outcome::Connected.to_string(),
                "round {round}: {src} (listed, outside the VM) -> {}",
                guest(src)
            );
        }
        for src in blocked {
            let seen = outside.connect(src, guest(src), BLOCKED_PROBE);
            assert_eq!(
                seen,
                Outcome::TimedOut.to_string(),
                "round {round}: {src} (unlisted, outside the VM) -> {}",
                guest(src)
            );
        }
    }
    let drops_after = per_queue(&server, &nic, "xdp_drops");
    let dropped: Vec<u64> = drops_after
        .iter()
        .zip(&drops_before)
        .map(|(after, before)| after - before)
        .collect();
    eprintln!("XDP drops per receive queue of {nic}: {dropped:?}");
    assert!(
        dropped.iter().sum::<u64>() >= ROUNDS * 2,
        "the driver counts at least one XDP drop per blocked connect; per queue: {dropped:?}"
    );
    assert!(
        dropped.iter().filter(|&&n| n > 0).count() >= 2,
        "the blocked connects' SYNs were dropped on more than one queue: {dropped:?}"
    );
    let listed = run(&mut ctl_command(&socket, &["--json", "list"]))
        .ok()
        .json();
    for src in allowed {
        assert!(
            hits_of(&listed, src) >= ROUNDS,
            "each connect from {src} counts a hit: {listed}"
        );
    }
    run(&mut ctl_command(&socket, &["blocked"]))
        .ok()
        .stdout_has(&outside::BLOCKED_V4.to_string())
        .stdout_has(&outside::BLOCKED_V6.to_string());
}
