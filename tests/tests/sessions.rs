//! `allowlist_daemon::sessions` against real connections: clients in the lab's client namespace
//! connect to listeners in its server namespace, and the server namespace's sessions are listed
//! and ended from inside it. No daemon and no XDP program are involved.
//!
//! Needs root (namespaces; `SOCK_DESTROY` needs `CAP_NET_ADMIN`):
//! `cargo test -p allowlist-tests --test sessions`.

use std::collections::BTreeSet;
use std::io::{self, Read as _};
use std::net::{IpAddr, SocketAddr, TcpStream};

use allowlist_daemon::sessions::{self, Session};
use allowlist_tests::netns::{
    ALLOWED_V4, ALLOWED_V6, BLOCKED_V4, BLOCKED_V6, Lab, SERVER_V4, SERVER_V6,
};
use allowlist_tests::require_root;
use allowlist_tests::tcp::{self, Listener, allowed_probe};

const PROTECTED: u16 = 2222;
const OTHER: u16 = 8080;

/// A lab with listeners and one client connection per case. Port 2222 has a listener per
/// family (so the server's sockets are plain IPv4 and IPv6 ones); port 8080 has one on `[::]`,
/// whose IPv4 clients get v4-mapped IPv6 sockets. Fields drop in order: connections first, the
/// lab last.
struct Fixture {
    /// 198.18.1.2 -> 198.18.0.1:2222
    allowed_v4: TcpStream,
    /// 198.18.2.2 -> 198.18.0.1:2222
    blocked_v4: TcpStream,
    /// 2001:db8::a -> [2001:db8::1]:2222
    allowed_v6: TcpStream,
    /// 198.18.2.2 -> 198.18.0.1:8080, through the `[::]` listener
    mapped_v4: TcpStream,
    /// 2001:db8::b -> [2001:db8::1]:8080
    other_v6: TcpStream,
    _listeners: [Listener; 3],
    lab: Lab,
}

impl Fixture {
    fn start() -> Fixture {
        let lab = Lab::new();
        let listeners = [
            SocketAddr::new(IpAddr::V4(SERVER_V4), PROTECTED),
            SocketAddr::new(IpAddr::V6(SERVER_V6), PROTECTED),
            SocketAddr::new("::".parse().unwrap(), OTHER),
        ]
        .map(|addr| Listener::start(&lab.server, addr));
        let connect = |src: IpAddr, port: u16| {
            let dst = SocketAddr::new(Lab::server_addr_for(src), port);
            let mut stream = tcp::open(&lab.client, src, dst, allowed_probe())
                .unwrap_or_else(|e| panic!("{src} -> {dst}: {e}"));
            // Once the echo came back the server has accepted: its side is established.
            tcp::exchange(&mut stream, b"hello")
                .unwrap_or_else(|e| panic!("{src} -> {dst}: echo: {e}"));
            stream
        };
        Fixture {
            allowed_v4: connect(IpAddr::V4(ALLOWED_V4), PROTECTED),
            blocked_v4: connect(IpAddr::V4(BLOCKED_V4), PROTECTED),
            allowed_v6: connect(IpAddr::V6(ALLOWED_V6), PROTECTED),
            mapped_v4: connect(IpAddr::V4(BLOCKED_V4), OTHER),
            other_v6: connect(IpAddr::V6(BLOCKED_V6), OTHER),
            _listeners: listeners,
            lab,
        }
    }

    /// `sessions::established(ports)` in the server namespace, sorted by peer.
    fn established(&self, ports: &[u16]) -> Vec<Session> {
        let ports = ports.iter().copied().collect::<BTreeSet<_>>();
        let mut found = self
            .lab
            .server
            .run_in(|| sessions::established(&ports))
            .unwrap_or_else(|e| panic!("listing sessions on {ports:?}: {e}"));
        found.sort_by_key(|s| s.peer);
        found
    }

    fn destroy(&self, session: &Session) -> io::Result<()> {
        self.lab.server.run_in(|| sessions::destroy(session))
    }

    /// The server's session of `client`, which must be listed exactly once.
    fn session_of(&self, client: &TcpStream) -> Session {
        let (local, peer) = ends(client);
        let found = self
            .established(&[local.port()])
            .into_iter()
            .filter(|s| s.peer == peer)
            .collect::<Vec<_>>();
        assert_eq!(found.len(), 1, "sessions of {peer}: {found:?}");
        found.into_iter().next().unwrap()
    }
}

/// A client stream's (server, client) addresses, as the server's side names them.
fn ends(client: &TcpStream) -> (SocketAddr, SocketAddr) {
    (client.peer_addr().unwrap(), client.local_addr().unwrap())
}

/// Panics unless the server side of `client` was reset: the client's read ends at once (with
/// the reset, or end of file) instead of waiting.
#[track_caller]
fn assert_ended(client: &mut TcpStream) {
    client.set_read_timeout(Some(allowed_probe())).unwrap();
    match client.read(&mut [0; 16]) {
        Ok(0) => {}
        Err(e) if e.kind() == io::ErrorKind::ConnectionReset => {}
        other => panic!(
            "{:?} should have been reset, but read gave {other:?}",
            ends(client)
        ),
    }
}

#[test]
fn established_lists_exactly_the_connections_to_the_asked_ports() {
    if !require_root("established_lists_exactly_the_connections_to_the_asked_ports") {
        return;
    }
    let fx = Fixture::start();

    let protected = fx.established(&[PROTECTED]);
    let mut expected = [&fx.allowed_v4, &fx.blocked_v4, &fx.allowed_v6].map(ends);
    expected.sort_by_key(|&(_, peer)| peer);
    assert_eq!(
        protected
            .iter()
            .map(|s| (s.local, s.peer))
            .collect::<Vec<_>>(),
        expected,
        "sessions on {PROTECTED}: {protected:#?}"
    );
    for session in &protected {
        assert_eq!(session.uid, 0, "{session:?}: the listener runs as root");
        assert_ne!(
            session.inode, 0,
            "{session:?}: accepted, so it has an inode"
        );
        assert!(session.idle_ms.is_some(), "{session:?}: tcp_info asked for");
    }

    // The IPv4 client of the `[::]` listener is reported as plain IPv4.
    let other = fx.established(&[OTHER]);
    let mut expected = [&fx.mapped_v4, &fx.other_v6].map(ends);
    expected.sort_by_key(|&(_, peer)| peer);
    assert_eq!(
        other.iter().map(|s| (s.local, s.peer)).collect::<Vec<_>>(),
        expected,
        "sessions on {OTHER}: {other:#?}"
    );
    assert_eq!(
        other[0].peer,
        SocketAddr::new(
            IpAddr::V4(BLOCKED_V4),
            fx.mapped_v4.local_addr().unwrap().port()
        )
    );

    assert_eq!(fx.established(&[PROTECTED, OTHER]).len(), 5);
    assert_eq!(fx.established(&[1]), []);
    assert_eq!(fx.established(&[]), []);
}

#[test]
fn destroy_resets_one_connection_and_spares_the_others() {
    if !require_root("destroy_resets_one_connection_and_spares_the_others") {
        return;
    }
    let mut fx = Fixture::start();

    let victim = fx.session_of(&fx.blocked_v4);
    fx.destroy(&victim)
        .unwrap_or_else(|e| panic!("destroying {victim:?}: {e}"));
    assert_ended(&mut fx.blocked_v4);
    let left = fx.established(&[PROTECTED]);
    assert!(
        !left.contains(&victim),
        "{victim:?} still listed: {left:#?}"
    );
    assert_eq!(left.len(), 2, "{left:#?}");
    for stream in [
        &mut fx.allowed_v4,
        &mut fx.allowed_v6,
        &mut fx.mapped_v4,
        &mut fx.other_v6,
    ] {
        tcp::exchange(stream, b"still there")
            .unwrap_or_else(|e| panic!("{:?} should have survived: {e}", ends(stream)));
    }

    // An IPv6 connection, and an IPv4 one held by an IPv6 socket (listed as IPv4).
    for victim in [fx.session_of(&fx.allowed_v6), fx.session_of(&fx.mapped_v4)] {
        fx.destroy(&victim)
            .unwrap_or_else(|e| panic!("destroying {victim:?}: {e}"));
    }
    assert_ended(&mut fx.allowed_v6);
    assert_ended(&mut fx.mapped_v4);
    for stream in [&mut fx.allowed_v4, &mut fx.other_v6] {
        tcp::exchange(stream, b"still there")
            .unwrap_or_else(|e| panic!("{:?} should have survived: {e}", ends(stream)));
    }
    assert_eq!(
        fx.established(&[PROTECTED, OTHER])
            .iter()
            .map(|s| s.peer)
            .collect::<Vec<_>>(),
        {
            let mut peers = [&fx.allowed_v4, &fx.other_v6].map(|s| ends(s).1);
            peers.sort();
            peers
        }
    );
}

/// A session that already ended must not be mistaken for another socket: the kernel would
/// match its addresses to the listener.
#[test]
fn destroying_an_ended_session_fails_and_leaves_the_listener_alone() {
    if !require_root("destroying_an_ended_session_fails_and_leaves_the_listener_alone") {
        return;
    }
    let mut fx = Fixture::start();
    let victim = fx.session_of(&fx.allowed_v4);
    fx.destroy(&victim)
        .unwrap_or_else(|e| panic!("destroying {victim:?}: {e}"));
    assert_ended(&mut fx.allowed_v4);

    let e = fx.destroy(&victim).unwrap_err();
    assert_eq!(e.kind(), io::ErrorKind::NotFound, "{e}");
    let message = e.to_string();
    assert!(
        message.starts_with(&format!(
            "SOCK_DESTROY {} -> {}: ",
            victim.peer, victim.local
        )),
        "{message}"
    );

    // The listener still takes connections.
    let src = IpAddr::V4(ALLOWED_V4);
    let mut again = tcp::open(&fx.lab.client, src, victim.local, allowed_probe())
        .unwrap_or_else(|e| panic!("{src} -> {}: {e}", victim.local));
    tcp::exchange(&mut again, b"hello").unwrap();
}
