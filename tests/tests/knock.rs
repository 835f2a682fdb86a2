//! Knocks end to end: the real daemon in a network namespace with `knock_listen`, real UDP
//! knocks and real TCP connects from the client namespace. A blocked client knocks with
//! `allowlistctl knock`, connects at once, and is blocked again when its time is up, with the
//! daemon SIGKILLed meanwhile. Replayed (across a restart), stale, forged, unknown-key and
//! over-reaching knocks leave it blocked and are counted; a flood of garbage at the knock
//! port leaves `allowlistctl status` answering.

use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use allowlist_control::knock::{Ask, KeyFile};
use allowlist_tests::ctl::{allowlistctl, run};
use allowlist_tests::daemon::Config;
use allowlist_tests::fixture::Running;
use allowlist_tests::netns::{B4, B6, Lab, PROTECTED, to};
use allowlist_tests::require_root;
use allowlist_tests::tcp::{assert_times_out, connect};
use serde_json::Value;

const KNOCK_PORT: u16 = 62201;

/// `allowlistctl knock keygen` for `name`, its public line added to `knock_keys` unless
/// `listed` is false.
fn keygen(dir: &Path, name: &str, lists: &str, max_for: &str, listed: bool) -> PathBuf {
    let key = dir.join(format!("{name}.key"));
    let out = run(std::process::Command::new(allowlistctl()).args([
        "knock",
        "keygen",
        "--out",
        key.to_str().unwrap(),
        "--name",
        name,
        "--lists",
        lists,
        "--max-for",
        max_for,
    ]));
    out.ok();
    if listed {
        let keys = dir.join("knock_keys");
        let mut text = std::fs::read_to_string(&keys).unwrap_or_default();
        text.push_str(&out.stdout);
        std::fs::write(&keys, text).unwrap();
    }
    key
}

struct Knocking {
    run: Running,
    alice: PathBuf,
    stranger: PathBuf,
    narrow: PathBuf,
}

fn start() -> Knocking {
    let mut keys = None;
    let run = Running::start(|dir, iface| {
        let alice = keygen(dir.path(), "alice", "default", "1h", true);
        let narrow = keygen(dir.path(), "narrow", "other", "5s", true);
        let stranger = keygen(dir.path(), "stranger", "default", "1h", false);
        keys = Some((alice, stranger, narrow));
        let text = Config::new(dir, iface)
            .entry("198.18.1.0/24", "office")
            .render();
        format!(
            "knock_listen = [\"0.0.0.0:{KNOCK_PORT}\", \"[::]:{KNOCK_PORT}\"]\n\
             knock_keys = {:?}\n{text}",
            dir.path().join("knock_keys").to_string_lossy()
        )
    });
    let (alice, stranger, narrow) = keys.expect("written");
    Knocking {
        run,
        alice,
        stranger,
        narrow,
    }
}

impl Knocking {
    /// `allowlistctl knock` from `from` in the client namespace.
    fn knock(&self, from: IpAddr, key: &Path, extra: &[&str]) {
        let server = Lab::server_addr_for(from).to_string();
        let from = from.to_string();
        let mut args = vec![
            allowlistctl().to_string_lossy().into_owned(),
            "knock".into(),
            server,
            "--key".into(),
            key.to_string_lossy().into_owned(),
            "--from".into(),
            from,
        ];
        args.extend(extra.iter().map(|a| a.to_string()));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = self
            .run
            .client()
            .exec(args[0], &args[1..])
            .expect("running allowlistctl knock");
        assert!(
            out.status.success(),
            "allowlistctl knock failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Sends `datagram` from `from` to the knock port.
    fn send(&self, from: IpAddr, datagram: &[u8]) {
        let server = SocketAddr::new(Lab::server_addr_for(from), KNOCK_PORT);
        self.run.client().run_in(|| {
            let socket = UdpSocket::bind(SocketAddr::new(from, 0)).expect("binding");
            socket.send_to(datagram, server).expect("sending");
        });
    }

    fn status(&self) -> Value {
        let out = self.run.ctl(&["--json", "status"]);
        out.ok();
        serde_json::from_str(&out.stdout).expect("status JSON")
    }

    fn refused(&self, kind: &str) -> u64 {
        self.status()["knocks"]["refused"][kind]
            .as_u64()
            .unwrap_or(0)
    }
}

/// Connects from `src` within `within`, trying again while the grant is being applied.
fn connects_within(k: &Knocking, src: IpAddr, within: Duration) -> Duration {
    let start = Instant::now();
    loop {
        let outcome = connect(
            k.run.client(),
            src,
            to(src, PROTECTED),
            Duration::from_millis(200),
        );
        if outcome.is_connected() {
            return start.elapsed();
        }
        assert!(
            start.elapsed() < within,
            "{src} should connect within {within:?} of its knock, but {outcome}"
        );
    }
}

fn signed(key: &Path, list: &str, secs: u64, tweak: impl FnOnce(&mut Ask)) -> Vec<u8> {
    let file = KeyFile::parse(&std::fs::read_to_string(key).unwrap()).unwrap();
    let mut ask = Ask::new(&file.name, list, Duration::from_secs(secs), None).unwrap();
    tweak(&mut ask);
    ask.sign(&file.key).unwrap()
}

#[test]
fn a_knock_opens_the_knockers_address_until_its_time_is_up() {
    if !require_root("a_knock_opens_the_knockers_address_until_its_time_is_up") {
        return;
    }
    let mut k = start();
    assert_times_out(k.run.client(), B4, to(B4, PROTECTED), "before knocking");
    let knocked = Instant::now();
    k.knock(B4, &k.alice, &["--for", "5s"]);
    let took = connects_within(&k, B4, Duration::from_secs(1));
    eprintln!("connected {took:?} after the knock");
    assert_times_out(
        k.run.client(),
        B6,
        to(B6, PROTECTED),
        "only the knocking address",
    );
    let adds: Vec<Value> = k
        .run
        .audit()
        .into_iter()
        .filter(|r| r["action"] == "add")
        .collect();
    assert_eq!(adds.len(), 1, "{adds:#?}");
    assert_eq!(adds[0]["actor"]["user"], "knock:alice");
    assert_eq!(adds[0]["actor"]["via"], "knock");
    assert_eq!(adds[0]["after"]["entries"][0]["cidr"], "198.18.2.2/32");
    assert_eq!(k.status()["knocks"]["granted"], 1);

    // The end the daemon wrote (to the second), which the kernel enforces.
    let end: jiff::Timestamp = adds[0]["after"]["entries"][0]["expires"]
        .as_str()
        .expect("the entry's end")
        .parse()
        .expect("an RFC 3339 end");
    let left = end.duration_since(jiff::Timestamp::now());
    assert!(
        left.as_secs_f64() > 1.0 && knocked.elapsed() < Duration::from_secs(6),
        "the knock asked for 5s: {left:?} left"
    );
    k.run.daemon.kill9();
    std::thread::sleep(Duration::try_from(left).unwrap_or_default() + Duration::from_millis(300));
    assert_times_out(
        k.run.client(),
        B4,
        to(B4, PROTECTED),
        "time up, no daemon running",
    );
    k.run.restart();
    let expired: Vec<Value> = k
        .run
        .audit()
        .into_iter()
        .filter(|r| r["action"] == "expire")
        .collect();
    assert_eq!(expired.len(), 1, "{expired:#?}");
    assert_eq!(expired[0]["after"]["while_down"], true);
    // Knocking from IPv6 works the same way.
    k.knock(B6, &k.alice, &["--for", "1m"]);
    connects_within(&k, B6, Duration::from_secs(1));
}

#[test]
fn bad_knocks_leave_the_client_blocked_and_are_counted() {
    if !require_root("bad_knocks_leave_the_client_blocked_and_are_counted") {
        return;
    }
    let mut k = start();
    let good = signed(&k.alice, "default", 60, |_| {});
    k.send(B4, &good);
    connects_within(&k, B4, Duration::from_secs(1));
    k.run.ctl(&["remove", "198.18.2.2"]).ok();
    assert_times_out(k.run.client(), B4, to(B4, PROTECTED), "removed again");

    let mut forged = signed(&k.alice, "default", 60, |_| {});
    let last = forged.len() - 1;
    forged[last] ^= 1;
    let stale = signed(&k.alice, "default", 60, |ask| ask.timestamp -= 120);
    let stranger = signed(&k.stranger, "default", 60, |_| {});
    let too_long = signed(&k.alice, "default", 7200, |_| {});
    let other_list = signed(&k.narrow, "default", 5, |_| {});
    let elsewhere = signed(&k.alice, "default", 60, |ask| {
        ask.addr = Some("198.18.1.99".parse().unwrap())
    });
    let cases: [(&str, &[u8]); 7] = [
        ("replayed_nonce", &good),
        ("bad_signature", &forged),
        ("stale_timestamp", &stale),
        ("unknown_key", &stranger),
        ("duration_too_long", &too_long),
        ("list_not_allowed", &other_list),
        ("address_mismatch", &elsewhere),
    ];
    for (kind, datagram) in cases {
        let before = k.refused(kind);
        k.send(B4, datagram);
        let deadline = Instant::now() + Duration::from_secs(2);
        while k.refused(kind) == before {
            assert!(Instant::now() < deadline, "a {kind} knock was not counted");
            std::thread::sleep(Duration::from_millis(20));
        }
        assert_times_out(k.run.client(), B4, to(B4, PROTECTED), kind);
    }
    // The nonce of the granted knock is still refused by the next daemon.
    k.run.daemon.kill9();
    k.run.restart();
    k.send(B4, &good);
    let deadline = Instant::now() + Duration::from_secs(2);
    while k.refused("replayed_nonce") == 0 {
        assert!(
            Instant::now() < deadline,
            "the replay after a restart was not counted"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_times_out(
        k.run.client(),
        B4,
        to(B4, PROTECTED),
        "replayed after a restart",
    );
    assert_eq!(k.status()["knocks"]["granted"], 0);
}

#[test]
fn a_garbage_flood_at_the_knock_port_leaves_status_answering() {
    if !require_root("a_garbage_flood_at_the_knock_port_leaves_status_answering") {
        return;
    }
    let k = start();
    let quiet = time_status(&k);
    let server = SocketAddr::new(Lab::server_addr_for(B4), KNOCK_PORT);
    let flooding = std::sync::atomic::AtomicBool::new(true);
    let during = std::thread::scope(|s| {
        s.spawn(|| {
            k.run.client().run_in(|| {
                let socket = UdpSocket::bind(SocketAddr::new(B4, 0)).unwrap();
                let mut garbage = [0u8; 200];
                for i in 0..10_000u32 {
                    garbage[..4].copy_from_slice(&i.to_le_bytes());
                    let _ = socket.send_to(&garbage[..(i as usize % 200) + 1], server);
                }
            });
            flooding.store(false, std::sync::atomic::Ordering::Relaxed);
        });
        let mut during = Vec::new();
        while flooding.load(std::sync::atomic::Ordering::Relaxed) {
            during.push(time_status(&k));
        }
        during
    });
    let worst = during.iter().max().copied().unwrap_or_default();
    eprintln!(
        "status: {quiet:?} quiet, worst {worst:?} of {} during the flood",
        during.len()
    );
    assert!(
        worst < Duration::from_secs(1),
        "status took {worst:?} during the garbage flood ({quiet:?} before)"
    );
    // A burst overflows the socket's receive buffer; what the daemon reads, it refuses.
    let malformed = k.refused("malformed");
    assert!(
        malformed > 1_000,
        "garbage counted as malformed: {malformed}"
    );
    assert_eq!(k.status()["knocks"]["granted"], 0);
    assert_times_out(
        k.run.client(),
        B4,
        to(B4, PROTECTED),
        "garbage opens nothing",
    );
}

fn time_status(k: &Knocking) -> Duration {
    let start = Instant::now();
    k.run.ctl(&["status"]).ok();
    start.elapsed()
}
