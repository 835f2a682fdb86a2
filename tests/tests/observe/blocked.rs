//! A flood of blocked SYNs.

use super::*;

/// The MAC address of `dev` in `ns`.
fn mac_of(ns: &Netns, dev: &str) -> [u8; 6] {
    let out = ns
        .ip(&["-j", "link", "show", "dev", dev])
        .unwrap_or_else(|e| panic!("{e:#}"));
    let json: Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
    let text = json[0]["address"]
        .as_str()
        .unwrap_or_else(|| panic!("no address in {out}"));
    let bytes: Vec<u8> = text
        .split(':')
        .map(|b| u8::from_str_radix(b, 16).unwrap())
        .collect();
    bytes.try_into().unwrap()
}

/// An `AF_PACKET` socket on the client's veth, which puts crafted frames on the wire: the
/// server's XDP program sees them as if a host with that source address had sent them.
struct Injector {
    fd: OwnedFd,
    to: libc::sockaddr_ll,
    /// (destination, source) MAC of every frame.
    macs: ([u8; 6], [u8; 6]),
}

impl Injector {
    fn open(lab: &Lab) -> Injector {
        let client_if = lab.client_if().to_owned();
        let dst = mac_of(&lab.server, lab.server_if());
        let src = mac_of(&lab.client, lab.client_if());
        let (fd, ifindex) = lab.client.run_in(|| {
            // Protocol 0: this socket only sends.
            // SAFETY: plain socket(2); the descriptor is owned right away.
            let raw =
                unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 0) };
            assert!(raw >= 0, "AF_PACKET socket: {}", io::Error::last_os_error());
            // SAFETY: a fresh descriptor nobody else owns.
            let fd = unsafe { OwnedFd::from_raw_fd(raw) };
            let ifindex = nix::net::if_::if_nametoindex(client_if.as_str())
                .unwrap_or_else(|e| panic!("ifindex of {client_if}: {e}"));
            (fd, ifindex)
        });
        // SAFETY: sockaddr_ll is plain data; all zeroes is a valid value.
        let mut to: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        to.sll_family = libc::AF_PACKET as u16;
        to.sll_protocol = (libc::ETH_P_IP as u16).to_be();
        to.sll_ifindex = i32::try_from(ifindex).unwrap();
        to.sll_halen = 6;
        to.sll_addr[..6].copy_from_slice(&dst);
        Injector {
            fd,
            to,
            macs: (dst, src),
        }
    }

    /// A TCP SYN from `src`:`sport` to the server's protected port.
    fn syn(&self, src: Ipv4Addr, sport: u16) -> Vec<u8> {
        let mut frame = Frame::tcp_v4(src, SERVER_V4, sport, PROTECTED).build();
        frame[..6].copy_from_slice(&self.macs.0);
        frame[6..12].copy_from_slice(&self.macs.1);
        frame
    }

    /// Sends one frame, retrying briefly while the veth is busy; false if it never went.
    fn send(&self, frame: &[u8]) -> bool {
        for _ in 0..100 {
            // SAFETY: the buffer and the address are valid for the lengths given.
            let n = unsafe {
                libc::sendto(
                    self.fd.as_raw_fd(),
                    frame.as_ptr().cast(),
                    frame.len(),
                    0,
                    (&raw const self.to).cast(),
                    size_of::<libc::sockaddr_ll>() as libc::socklen_t,
                )
            };
            if n >= 0 {
                return true;
            }
            match io::Error::last_os_error().raw_os_error() {
                Some(libc::ENOBUFS | libc::EAGAIN | libc::EINTR) => std::thread::yield_now(),
                _ => return false,
            }
        }
        false
    }
}

/// A deterministic shuffle (xorshift), so that no source's frames come in runs the token
/// bucket could alias with.
fn shuffle<T>(items: &mut [T]) {
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    for i in (1..items.len()).rev() {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        let j = usize::try_from(state % (i as u64 + 1)).unwrap();
        items.swap(i, j);
    }
}

/// CPUs the kernel keeps per-CPU map values for.
fn possible_cpus() -> u64 {
    // SAFETY: sysconf has no memory-safety preconditions.
    let n = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_CONF) };
    u64::try_from(n).unwrap_or(1).max(1)
}

#[test]
fn a_flood_of_blocked_syns_gives_a_bounded_event_rate_and_the_right_top_sources() {
    if !require_root("a_flood_of_blocked_syns_gives_a_bounded_event_rate_and_the_right_top_sources")
    {
        return;
    }
    let fx = Fx::start(&[("198.18.1.0/24", "lab A")], "");
    let injector = Injector::open(&fx.lab);

    // 20,000 SYNs: 40 % from 198.18.2.2, 20 % from .3, 10 % from .4, and 6,000 one-off
    // spoofed sources in 198.19.0.0/16, in a shuffled order.
    let heavy: [(Ipv4Addr, usize); 3] = [
        (Ipv4Addr::new(198, 18, 2, 2), 8000),
        (Ipv4Addr::new(198, 18, 2, 3), 4000),
        (Ipv4Addr::new(198, 18, 2, 4), 2000),
    ];
    const ONE_OFF: u16 = 6000;
    let mut plan: Vec<Ipv4Addr> = heavy
        .iter()
        .flat_map(|&(src, n)| std::iter::repeat_n(src, n))
        .collect();
    plan.extend((0..ONE_OFF).map(|i| {
        let [hi, lo] = i.to_be_bytes();
        Ipv4Addr::new(198, 19, hi, lo)
    }));
    shuffle(&mut plan);
    let frames: Vec<Vec<u8>> = plan
        .iter()
        .enumerate()
        .map(|(i, &src)| injector.syn(src, 1024 + u16::try_from(i % 60_000).unwrap()))
        .collect();

    let status0 = fx.json(&["status"]);
    let blocked0 = fx.json(&["blocked"]);
    let started = Instant::now();
    // In ten bursts over about a second, so that the budget's refill rate shows too.
    let mut sent = 0;
    for (i, burst) in frames.chunks(frames.len() / 10).enumerate() {
        if i > 0 {
            std::thread::sleep(Duration::from_millis(100));
        }
        sent += burst.iter().filter(|f| injector.send(f)).count();
    }
    let flood_time = started.elapsed();
    eprintln!("sent {sent} of {} frames in {flood_time:?}", frames.len());
    assert!(
        sent >= frames.len() * 9 / 10,
        "only {sent} of {} frames could be sent",
        frames.len()
    );
    assert!(
        flood_time < Duration::from_secs(5),
        "the flood took {flood_time:?}"
    );

    // The daemon drains the ring buffer: every event sent arrives.
    std::thread::sleep(Duration::from_millis(300));
    let deadline = Instant::now() + Duration::from_secs(3);
    let blocked1 = loop {
        let b = fx.json(&["blocked", "--top", "5"]);
        let (received, sent) = (u64_at(&b, "/events_received"), u64_at(&b, "/events_sent"));
        assert!(
            received <= sent,
            "events_received {received} > events_sent {sent}: {b}"
        );
        if received == sent || Instant::now() >= deadline {
            break b;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let elapsed = started.elapsed();
    let status1 = fx.json(&["status"]);
    eprintln!("blocked after the flood: {blocked1:#}");

    let delta = |a: &Value, b: &Value, p: &str| u64_at(b, p) - u64_at(a, p);
    let events_sent = delta(&blocked0, &blocked1, "/events_sent");
    let events_suppressed = delta(&blocked0, &blocked1, "/events_suppressed");
    let events_received = delta(&blocked0, &blocked1, "/events_received");
    let dropped = delta(&status0, &status1, "/counters/drop_syn_v4");
    let dropped_on_if = delta(&status0, &status1, "/interfaces/0/by_reason/drop_syn_v4");
    eprintln!(
        "dropped {dropped}, events sent {events_sent}, suppressed {events_suppressed}, received {events_received}, in {elapsed:?}"
    );
    assert_eq!(
        dropped, dropped_on_if,
        "status counters and the interface's by_reason disagree"
    );
    assert!(
        dropped >= sent as u64 * 9 / 10 && dropped <= sent as u64,
        "{sent} SYNs were sent but status shows {dropped} drop_syn_v4 drops"
    );
    assert_eq!(
        events_sent + events_suppressed,
        dropped,
        "every dropped SYN is either reported or counted as suppressed (sent {events_sent}, suppressed {events_suppressed}, drop_syn_v4 {dropped})"
    );
    assert_eq!(
        events_received, events_sent,
        "the daemon should have received every event the kernel sent: {blocked1}"
    );
    let secs = elapsed.as_secs() + u64::from(elapsed.subsec_nanos() > 0);
    let bound = 2 * EVENTS_PER_SEC_PER_CPU * possible_cpus() * (secs + 1);
    assert!(
        events_sent <= bound,
        "{events_sent} events in {elapsed:?} exceeds the budget's bound {bound}"
    );
    assert!(
        events_suppressed > 0 && events_sent > 0,
        "a flood of {dropped} drops should be partly reported, partly suppressed: sent {events_sent}, suppressed {events_suppressed}"
    );

    // The heavy sources are on top, the heaviest first, all with the right port.
    let sources = blocked1["sources"].as_array().unwrap();
    assert_eq!(sources.len(), 5, "--top 5: {blocked1}");
    let top3: BTreeSet<&str> = sources[..3]
        .iter()
        .map(|s| s["source"].as_str().unwrap())
        .collect();
    assert_eq!(
        top3,
        BTreeSet::from(["198.18.2.2", "198.18.2.3", "198.18.2.4"]),
        "the top three should be the heavy sources: {blocked1:#}"
    );
    assert_eq!(sources[0]["source"].as_str(), Some("198.18.2.2"));
    for s in &sources[..3] {
        assert_eq!(s["port"].as_u64(), Some(u64::from(PROTECTED)), "{s}");
        assert_eq!(s["reason"].as_str(), Some("drop_syn_v4"), "{s}");
        assert!(u64_at(s, "/count") > u64_at(&sources[3], "/count"), "{s}");
        assert_recent("first_seen", &s["first_seen"], Duration::from_secs(30));
        assert_recent("last_seen", &s["last_seen"], Duration::from_secs(30));
    }
    // The rest are one-off spoofed sources, seen once each.
    for s in &sources[3..] {
        let source: Ipv4Addr = s["source"].as_str().unwrap().parse().unwrap();
        assert_eq!(source.octets()[..2], [198, 19], "{s}");
        assert_eq!(s["count"].as_u64(), Some(1), "{s}");
    }
    let counted: u64 = sources.iter().map(|s| u64_at(s, "/count")).sum();
    assert!(counted <= events_received, "{blocked1}");

    // `blocked --follow` prints what it has at once, then sources as they are blocked.
    let mut follow = ctl_command(
        &fx.socket,
        &["--json", "blocked", "--follow", "--top", "10"],
    )
    .stdin(Stdio::null())
    .stdout(Stdio::piped())
    .stderr(Stdio::null())
    .spawn()
    .expect("starting allowlistctl blocked --follow");
    let (tx, lines) = mpsc::channel::<String>();
    let stdout = follow.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut seen = Vec::new();
    let mut next_line = |within: Duration| match lines.recv_timeout(within) {
        Ok(line) => {
            let json: Value = serde_json::from_str(&line)
                .unwrap_or_else(|e| panic!("`blocked --follow --json` printed {line:?}: {e}"));
            seen.push(json.clone());
            Some(json)
        }
        Err(_) => None,
    };
    let first = next_line(Duration::from_secs(3));
    let late = Ipv4Addr::new(198, 18, 2, 9);
    let mut late_line = None;
    if first.is_some() {
        for i in 0..5 {
            assert!(injector.send(&injector.syn(late, 40_000 + i)));
        }
        let deadline = Instant::now() + Duration::from_secs(4);
        while late_line.is_none() && Instant::now() < deadline {
            match next_line(Duration::from_millis(200)) {
                Some(json) if json["source"].as_str() == Some("198.18.2.9") => {
                    late_line = Some(json);
                }
                _ => {}
            }
        }
    }
    let _ = follow.kill();
    let _ = wait_child(&mut follow, Duration::from_secs(5));
    reader.join().unwrap();
    let first = first.expect("`blocked --follow` printed nothing within 3 s");
    assert!(
        first.get("source").is_some() && first.get("count").is_some(),
        "{first}"
    );
    assert!(
        seen.iter()
            .any(|s| s["source"].as_str() == Some("198.18.2.2")),
        "the follow output should include the heaviest source: {seen:#?}"
    );
    let late_line = late_line.unwrap_or_else(|| {
        panic!("`blocked --follow` did not show 198.18.2.9, blocked while it ran: {seen:#?}")
    });
    assert_eq!(late_line["port"].as_u64(), Some(u64::from(PROTECTED)));
    assert_eq!(late_line["reason"].as_str(), Some("drop_syn_v4"));
}
