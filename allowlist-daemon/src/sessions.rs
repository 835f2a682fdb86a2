//! Established TCP connections to protected ports, and ending them.
//!
//! The XDP program only drops new connections (SYNs): a client that connected before it was
//! removed from the allowlist keeps its session. This lists such sessions the way
//! `ss -tn state established` does (a `NETLINK_SOCK_DIAG` dump) and ends one the way `ss -K`
//! does (`SOCK_DESTROY`, which resets the peer).

use std::collections::BTreeSet;
use std::fmt::Display;
use std::io;
use std::net::SocketAddr;

use netlink_packet_core::{
    NLM_F_ACK, NLM_F_DUMP, NLM_F_REQUEST, NetlinkHeader, NetlinkMessage, NetlinkPayload,
    NetlinkSerializable,
};
use netlink_packet_sock_diag::inet::nlas::Nla;
use netlink_packet_sock_diag::inet::{
    ExtensionFlags, InetRequest, InetResponse, SocketId, StateFlags,
};
use netlink_packet_sock_diag::{AF_INET, AF_INET6, IPPROTO_TCP, SockDiagDestroy, SockDiagMessage};
use netlink_sys::Socket;
use netlink_sys::protocols::NETLINK_SOCK_DIAG;

/// One established TCP connection, seen from this host.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Session {
    /// The host's side (the protected port).
    pub local: SocketAddr,
    /// The remote client.
    pub peer: SocketAddr,
    /// The socket's owner.
    pub uid: u32,
    /// The socket's inode (0 while it waits in a listener's accept queue).
    pub inode: u32,
    /// ms since data was last received on it (`tcp_info` `tcpi_last_data_recv`), if the
    /// kernel gave it.
    pub idle_ms: Option<u32>,
}

/// Established TCP connections (IPv4 and IPv6) in the calling thread's network namespace whose
/// local port is one of `ports`, via `NETLINK_SOCK_DIAG` (inet_diag dump, state filter
/// ESTABLISHED).
pub fn established(ports: &BTreeSet<u16>) -> io::Result<Vec<Session>> {
    Ok(dump()
        .map_err(context("sock_diag dump"))?
        .into_iter()
        .map(|socket| socket.session)
        .filter(|session| ports.contains(&session.local.port()))
        .collect())
}

/// Ends one connection with `SOCK_DESTROY` (the peer gets a reset), like `ss -K`.
pub fn destroy(session: &Session) -> io::Result<()> {
    let what = format!("SOCK_DESTROY {} -> {}", session.peer, session.local);
    // The kernel looks the 4-tuple up like an incoming segment, so once the connection is gone
    // it would match the listener and destroy that instead. Hence the socket is found again
    // (same inode) and named by its cookie too, which the kernel checks.
    let found = dump()
        .map_err(context(format!("{what}: sock_diag dump")))?
        .into_iter()
        .find(|socket| {
            socket.session.local == session.local
                && socket.session.peer == session.peer
                && socket.session.inode == session.inode
        })
        .ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::NotFound,
                format!(
                    "{what}: no such established connection (inode {})",
                    session.inode
                ),
            )
        })?;
    let request = SockDiagDestroy::new(SockDiagMessage::InetRequest(InetRequest {
        family: found.family,
        protocol: IPPROTO_TCP,
        extensions: ExtensionFlags::empty(),
        states: StateFlags::empty(),
        socket_id: found.id,
    }));
    // Without NLM_F_ACK a success would send nothing back to wait for.
    transact(request, NLM_F_REQUEST | NLM_F_ACK, |_| {}).map_err(context(what))
}

/// A dumped socket: the session as reported, and the kernel's own name for it (family,
/// addresses as it spells them, interface, cookie), which `SOCK_DESTROY` wants back.
struct Dumped {
    session: Session,
    family: u8,
    id: SocketId,
}

/// All established TCP sockets of this namespace. A dump covers one family: IPv6 sockets
/// include those that accepted IPv4 clients.
fn dump() -> io::Result<Vec<Dumped>> {
    let mut sockets = Vec::new();
    for family in [AF_INET, AF_INET6] {
        let request = SockDiagMessage::InetRequest(InetRequest {
            family,
            protocol: IPPROTO_TCP,
            extensions: ExtensionFlags::INFO,
            states: StateFlags::ESTABLISHED,
            socket_id: SocketId::new_v4(),
        });
        transact(request, NLM_F_REQUEST | NLM_F_DUMP, |response| {
            sockets.push(dumped(response));
        })?;
    }
    Ok(sockets)
}

fn dumped(response: InetResponse) -> Dumped {
    let header = response.header;
    let id = header.socket_id;
    let idle_ms = response.nlas.iter().find_map(|nla| match nla {
        Nla::TcpInfo(info) => last_data_recv(info),
        _ => None,
    });
    // `to_canonical` turns a v4-mapped address (an IPv6 socket's IPv4 client) into plain IPv4.
    let session = Session {
        local: SocketAddr::new(id.source_address.to_canonical(), id.source_port),
        peer: SocketAddr::new(id.destination_address.to_canonical(), id.destination_port),
        uid: header.uid,
        inode: header.inode,
        idle_ms,
    };
    Dumped {
        session,
        family: header.family,
        id,
    }
}

/// `tcpi_last_data_recv` from the raw `struct tcp_info` the kernel sent, whose length varies
/// with the kernel's version.
fn last_data_recv(tcp_info: &[u8]) -> Option<u32> {
    let at = std::mem::offset_of!(libc::tcp_info, tcpi_last_data_recv);
    let bytes = tcp_info.get(at..at + size_of::<u32>())?;
    Some(u32::from_ne_bytes(bytes.try_into().ok()?))
}

/// Sends one request on a fresh socket (so in the calling thread's namespace, and with no stale
/// replies to skip) and hands each socket the kernel reports to `each`, until it is done:
/// NLMSG_DONE ends a dump, an ACK a single request.
fn transact<M>(message: M, flags: u16, mut each: impl FnMut(InetResponse)) -> io::Result<()>
where
    M: NetlinkSerializable,
    NetlinkPayload<M>: From<M>,
{
    let socket = Socket::new(NETLINK_SOCK_DIAG)?;
    let mut header = NetlinkHeader::default();
    header.flags = flags;
    let mut packet = NetlinkMessage::new(header, message.into());
    packet.finalize();
    let mut buf = vec![0; packet.buffer_len()];
    packet.serialize(&mut buf);
    socket.send(&buf, 0)?;

    loop {
        let (datagram, _) = socket.recv_from_full()?;
        let mut rest = datagram.as_slice();
        while !rest.is_empty() {
            let reply = NetlinkMessage::<SockDiagMessage>::deserialize(rest).map_err(|e| {
                io::Error::new(io::ErrorKind::InvalidData, format!("decoding a reply: {e}"))
            })?;
            // Messages in a datagram start at 4-byte boundaries. The decoder checked that the
            // length covers at least a header and fits in `rest`, so this always advances.
            let len = reply.header.length as usize;
            rest = rest.get(len.next_multiple_of(4)..).unwrap_or_default();
            match reply.payload {
                NetlinkPayload::InnerMessage(SockDiagMessage::InetResponse(response)) => {
                    each(*response);
                }
                NetlinkPayload::Done(done) if done.code < 0 => {
                    return Err(io::Error::from_raw_os_error(-done.code));
                }
                NetlinkPayload::Done(_) => return Ok(()),
                NetlinkPayload::Error(error) if error.code.is_some() => return Err(error.to_io()),
                NetlinkPayload::Error(_) => return Ok(()),
                _ => {}
            }
        }
    }
}

/// Prefixes an error with what failed, keeping its kind.
fn context(what: impl Display) -> impl FnOnce(io::Error) -> io::Error {
    move |e| io::Error::new(e.kind(), format!("{what}: {e}"))
}

#[cfg(test)]
mod tests {
    use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

    use netlink_packet_sock_diag::inet::InetResponseHeader;

    use super::*;

    fn response(family: u8, local: SocketAddr, peer: SocketAddr, nlas: Vec<Nla>) -> InetResponse {
        InetResponse {
            header: InetResponseHeader {
                family,
                state: 1,
                timer: None,
                socket_id: SocketId {
                    source_port: local.port(),
                    destination_port: peer.port(),
                    source_address: local.ip(),
                    destination_address: peer.ip(),
                    interface_id: 0,
                    cookie: [1, 2, 3, 4, 5, 6, 7, 8],
                },
                recv_queue: 0,
                send_queue: 0,
                uid: 1000,
                inode: 4242,
            },
            nlas: nlas.into(),
        }
    }

    fn tcp_info_with_last_data_recv(ms: u32) -> Vec<u8> {
        let at = std::mem::offset_of!(libc::tcp_info, tcpi_last_data_recv);
        let mut info = vec![0; size_of::<libc::tcp_info>()];
        info[at..at + 4].copy_from_slice(&ms.to_ne_bytes());
        info
    }

    #[test]
    fn v4_mapped_addresses_are_reported_as_ipv4_but_kept_for_the_kernel() {
        let local: SocketAddr = "[::ffff:198.18.0.1]:22".parse().unwrap();
        let peer: SocketAddr = "[::ffff:198.18.1.2]:50000".parse().unwrap();
        let socket = dumped(response(AF_INET6, local, peer, vec![]));
        assert_eq!(socket.session.local, "198.18.0.1:22".parse().unwrap());
        assert_eq!(socket.session.peer, "198.18.1.2:50000".parse().unwrap());
        assert_eq!((socket.session.uid, socket.session.inode), (1000, 4242));
        assert_eq!(socket.family, AF_INET6);
        assert_eq!(socket.id.source_address, local.ip());
        assert_eq!(socket.id.destination_address, peer.ip());
        assert_eq!(socket.id.cookie, [1, 2, 3, 4, 5, 6, 7, 8]);
    }

    #[test]
    fn plain_addresses_are_kept() {
        let local = SocketAddr::new(
            IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1)),
            22,
        );
        let peer = SocketAddr::new(
            IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0xa)),
            4,
        );
        let session = dumped(response(AF_INET6, local, peer, vec![])).session;
        assert_eq!((session.local, session.peer), (local, peer));

        let local = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(198, 18, 0, 1)), 22);
        let peer = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(198, 18, 2, 2)), 4);
        let session = dumped(response(AF_INET, local, peer, vec![])).session;
        assert_eq!((session.local, session.peer), (local, peer));
    }

    #[test]
    fn idle_time_comes_from_tcp_info_when_the_kernel_sent_enough_of_it() {
        let local: SocketAddr = "198.18.0.1:22".parse().unwrap();
        let peer: SocketAddr = "198.18.1.2:50000".parse().unwrap();
        let with = |nlas| dumped(response(AF_INET, local, peer, nlas)).session.idle_ms;

        let info = tcp_info_with_last_data_recv(1234);
        assert_eq!(
            with(vec![Nla::Tos(0), Nla::TcpInfo(info.clone())]),
            Some(1234)
        );
        let at = std::mem::offset_of!(libc::tcp_info, tcpi_last_data_recv);
        assert_eq!(with(vec![Nla::TcpInfo(info[..at + 3].to_vec())]), None);
        assert_eq!(with(vec![Nla::Tos(0)]), None);
    }

    #[test]
    fn context_names_what_failed_and_keeps_the_kind() {
        let e = context("sock_diag dump")(io::Error::from_raw_os_error(libc::EPERM));
        assert_eq!(e.kind(), io::ErrorKind::PermissionDenied);
        assert!(e.to_string().starts_with("sock_diag dump: "), "{e}");
    }

    /// Needs no privilege: the dump works for anyone, and a connection that is not there is
    /// reported before anything is destroyed. No packet is sent.
    #[test]
    fn destroying_a_connection_that_is_not_there_says_so() {
        let session = Session {
            local: "198.18.0.1:22".parse().unwrap(),
            peer: "198.18.1.2:50000".parse().unwrap(),
            uid: 0,
            inode: 1,
            idle_ms: None,
        };
        let e = destroy(&session).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::NotFound, "{e}");
        assert_eq!(
            e.to_string(),
            "SOCK_DESTROY 198.18.1.2:50000 -> 198.18.0.1:22: no such established connection (inode 1)"
        );
    }
}
