//! TCP probes from a chosen source address, an echoing listener, and an ICMP echo probe
//! (raw sockets, so the tests need no `ping` binary).
//!
//! A client whose SYN the XDP program drops sees its connect time out; an allowed client
//! connects; a port nobody listens on answers with a reset.

use std::fmt;
use std::io::{self, Read as _, Write as _};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::os::fd::{AsFd as _, AsRawFd as _};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU16, AtomicUsize, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::socket::{
    self as sock, AddressFamily, SockFlag, SockProtocol, SockType, SockaddrStorage, bind,
    getsockopt, recvfrom, sendto, setsockopt, socket, sockopt,
};
use nix::sys::time::TimeVal;

use crate::netns::Netns;
use crate::pace::patient;

/// How long a probe that is expected to be dropped waits: one SYN and no retransmission
/// beyond the first second, so a blocked verdict costs 1.5 s.
pub const BLOCKED_PROBE: Duration = Duration::from_millis(1500);
/// How long a probe that is expected to connect may take before it counts as a failure
/// (3 s on the host, [`patient`] on a slower machine).
pub fn allowed_probe() -> Duration {
    patient(Duration::from_secs(3))
}

/// What a client saw when it tried to connect.
#[derive(Debug)]
pub enum Outcome {
    /// The three-way handshake completed.
    Connected,
    /// No answer within the timeout: the SYN was dropped (what a blocked client sees).
    TimedOut,
    /// A reset came back: nothing listens there.
    Refused,
    /// Anything else (unreachable, bind failure, ...).
    Other(io::Error),
}

impl Outcome {
    fn from_result(result: &io::Result<TcpStream>) -> Outcome {
        match result {
            Ok(_) => Outcome::Connected,
            Err(e) if e.kind() == io::ErrorKind::TimedOut => Outcome::TimedOut,
            Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => Outcome::Refused,
            Err(e) => Outcome::Other(io::Error::new(e.kind(), e.to_string())),
        }
    }

    pub fn is_connected(&self) -> bool {
        matches!(self, Outcome::Connected)
    }

    pub fn is_timed_out(&self) -> bool {
        matches!(self, Outcome::TimedOut)
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Outcome::Connected => f.write_str("connected"),
            Outcome::TimedOut => f.write_str("timed out"),
            Outcome::Refused => f.write_str("refused (RST)"),
            Outcome::Other(e) => write!(f, "failed: {e}"),
        }
    }
}

/// Opens a TCP connection from `src` (bound before connecting) to `dst`, inside `ns`.
/// A connect that sees no answer within `timeout` fails with `ErrorKind::TimedOut`.
pub fn open(ns: &Netns, src: IpAddr, dst: SocketAddr, timeout: Duration) -> io::Result<TcpStream> {
    ns.run_in(|| open_here(src, dst, timeout))
}

/// Tries to connect from `src` to `dst` inside `ns` and closes the connection at once.
pub fn connect(ns: &Netns, src: IpAddr, dst: SocketAddr, timeout: Duration) -> Outcome {
    Outcome::from_result(&open(ns, src, dst, timeout))
}

/// [`connect`] from the calling thread's own namespace.
pub fn connect_here(src: IpAddr, dst: SocketAddr, timeout: Duration) -> Outcome {
    Outcome::from_result(&open_here(src, dst, timeout))
}

/// Panics unless `src` can connect to `dst` (within [`allowed_probe`]).
#[track_caller]
pub fn assert_connects(ns: &Netns, src: IpAddr, dst: SocketAddr, why: &str) {
    let outcome = connect(ns, src, dst, allowed_probe());
    assert!(
        outcome.is_connected(),
        "{src} -> {dst} should connect ({why}), but {outcome}"
    );
}

/// Panics unless the connect from `src` to `dst` times out (within [`BLOCKED_PROBE`]): the
/// SYN was dropped.
#[track_caller]
pub fn assert_times_out(ns: &Netns, src: IpAddr, dst: SocketAddr, why: &str) {
    let outcome = connect(ns, src, dst, BLOCKED_PROBE);
    assert!(
        outcome.is_timed_out(),
        "{src} -> {dst} should time out ({why}), but {outcome}"
    );
}

/// Sends `payload` over `stream` and reads it back from the echoing [`Listener`].
pub fn exchange(stream: &mut TcpStream, payload: &[u8]) -> io::Result<()> {
    stream.set_read_timeout(Some(allowed_probe()))?;
    stream.write_all(payload)?;
    let mut back = vec![0; payload.len()];
    stream.read_exact(&mut back)?;
    if back != payload {
        return Err(io::Error::other(format!(
            "echo mismatch: sent {payload:?}, got {back:?}"
        )));
    }
    Ok(())
}

/// Must run on a thread inside the wanted namespace.
fn open_here(src: IpAddr, dst: SocketAddr, timeout: Duration) -> io::Result<TcpStream> {
    let family = match dst {
        SocketAddr::V4(_) => AddressFamily::Inet,
        SocketAddr::V6(_) => AddressFamily::Inet6,
    };
    let fd = socket(
        family,
        SockType::Stream,
        SockFlag::SOCK_CLOEXEC | SockFlag::SOCK_NONBLOCK,
        None,
    )?;
    bind(
        fd.as_raw_fd(),
        &SockaddrStorage::from(SocketAddr::new(src, 0)),
    )
    .map_err(|e| io::Error::new(io::Error::from(e).kind(), format!("binding to {src}: {e}")))?;
    match sock::connect(fd.as_raw_fd(), &SockaddrStorage::from(dst)) {
        Ok(()) => {}
        Err(Errno::EINPROGRESS) => {
            let deadline = Instant::now() + timeout;
            loop {
                let left = deadline.saturating_duration_since(Instant::now());
                let wait = PollTimeout::try_from(left).unwrap_or(PollTimeout::MAX);
                let mut fds = [PollFd::new(fd.as_fd(), PollFlags::POLLOUT)];
                match poll(&mut fds, wait) {
                    Ok(0) => {
                        return Err(io::Error::new(
                            io::ErrorKind::TimedOut,
                            format!("no answer within {timeout:?}"),
                        ));
                    }
                    Ok(_) => break,
                    Err(Errno::EINTR) => {}
                    Err(e) => return Err(e.into()),
                }
            }
            let err = getsockopt(&fd, sockopt::SocketError)?;
            if err != 0 {
                return Err(io::Error::from_raw_os_error(err));
            }
        }
        Err(e) => return Err(e.into()),
    }
    let stream = TcpStream::from(fd);
    stream.set_nonblocking(false)?;
    Ok(stream)
}

/// A listener in a namespace that accepts in a background thread and echoes what each
/// connection sends, until dropped. Bind `[::]:PORT` to accept IPv4 and IPv6 alike.
pub struct Listener {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    accepted: Arc<AtomicUsize>,
    thread: Option<JoinHandle<()>>,
}

/// How often the background threads look at the stop flag.
const POLL_STEP: Duration = Duration::from_millis(20);

impl Listener {
    /// Binds `addr` inside `ns` (the socket is created on a thread in the namespace) and
    /// starts accepting. Panics if it cannot bind.
    pub fn start(ns: &Netns, addr: SocketAddr) -> Listener {
        let listener = ns
            .run_in(|| TcpListener::bind(addr))
            .unwrap_or_else(|e| panic!("listening on {addr} in {}: {e}", ns.name()));
        // The longest accept queue the namespace allows (net.core.somaxconn): the probes of a
        // handover connect back to back while the machine is busy starting a daemon.
        sock::listen(&listener, sock::Backlog::MAXALLOWABLE)
            .expect("enlarging the listener's accept queue");
        listener
            .set_nonblocking(true)
            .expect("making the listener non-blocking");
        let stop = Arc::new(AtomicBool::new(false));
        let accepted = Arc::new(AtomicUsize::new(0));
        let thread = {
            let (stop, accepted) = (Arc::clone(&stop), Arc::clone(&accepted));
            std::thread::spawn(move || accept_loop(&listener, &stop, &accepted))
        };
        Listener {
            addr,
            stop,
            accepted,
            thread: Some(thread),
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// How many connections were accepted so far.
    pub fn accepted(&self) -> usize {
        self.accepted.load(Ordering::Relaxed)
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn accept_loop(listener: &TcpListener, stop: &Arc<AtomicBool>, accepted: &AtomicUsize) {
    let mut connections = Vec::new();
    while !stop.load(Ordering::Relaxed) {
        match listener.accept() {
            Ok((stream, _peer)) => {
                accepted.fetch_add(1, Ordering::Relaxed);
                let stop = Arc::clone(stop);
                connections.push(std::thread::spawn(move || echo(stream, &stop)));
            }
            // Woken at once by the next connection, or after a step to look at `stop`.
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                let mut fds = [PollFd::new(listener.as_fd(), PollFlags::POLLIN)];
                let step = PollTimeout::try_from(POLL_STEP).unwrap_or(PollTimeout::MAX);
                let _ = poll(&mut fds, step);
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => {
                eprintln!("listener: accept failed: {e}");
                std::thread::sleep(POLL_STEP);
            }
        }
        connections.retain(|c: &JoinHandle<()>| !c.is_finished());
    }
    for c in connections {
        let _ = c.join();
    }
}

fn echo(mut stream: TcpStream, stop: &AtomicBool) {
    if stream.set_nonblocking(false).is_err() || stream.set_read_timeout(Some(POLL_STEP)).is_err() {
        return;
    }
    let mut buf = [0u8; 4096];
    while !stop.load(Ordering::Relaxed) {
        match stream.read(&mut buf) {
            Ok(0) => return,
            Ok(n) => {
                if stream.write_all(&buf[..n]).is_err() {
                    return;
                }
            }
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock
                        | io::ErrorKind::TimedOut
                        | io::ErrorKind::Interrupted
                ) => {}
            Err(_) => return,
        }
    }
}

/// Sends one ICMP (or `ICMPv6`) echo request from `src` to `dst` inside `ns` and waits up to
/// `timeout` for the matching reply. `Ok(true)`: a reply came; `Ok(false)`: none did.
pub fn ping(ns: &Netns, src: IpAddr, dst: IpAddr, timeout: Duration) -> io::Result<bool> {
    ns.run_in(|| ping_here(src, dst, timeout))
}

/// Echo identifiers differ between probes of one process, so concurrent pings in one
/// namespace cannot take each other's replies.
static NEXT_ECHO_ID: AtomicU16 = AtomicU16::new(0);

fn ping_here(src: IpAddr, dst: IpAddr, timeout: Duration) -> io::Result<bool> {
    let (family, protocol, request, reply) = match dst {
        IpAddr::V4(_) => (AddressFamily::Inet, SockProtocol::Icmp, 8u8, 0u8),
        IpAddr::V6(_) => (AddressFamily::Inet6, SockProtocol::IcmpV6, 128, 129),
    };
    let fd = socket(family, SockType::Raw, SockFlag::SOCK_CLOEXEC, protocol)?;
    bind(
        fd.as_raw_fd(),
        &SockaddrStorage::from(SocketAddr::new(src, 0)),
    )?;

    let counter = NEXT_ECHO_ID.fetch_add(1, Ordering::Relaxed);
    let pid_bits = u16::try_from(std::process::id() & 0xffff).expect("masked to 16 bits");
    let id = pid_bits ^ counter.wrapping_mul(0x9e37);
    let seq: u16 = 1;
    let mut packet = vec![request, 0, 0, 0];
    packet.extend_from_slice(&id.to_be_bytes());
    packet.extend_from_slice(&seq.to_be_bytes());
    packet.extend_from_slice(b"allowlist-e2e-ping");
    if family == AddressFamily::Inet {
        // The kernel fills in ICMPv6 checksums itself (they cover a pseudo-header), not ICMP.
        let sum = internet_checksum(&packet);
        packet[2..4].copy_from_slice(&sum.to_be_bytes());
    }
    sendto(
        fd.as_raw_fd(),
        &packet,
        &SockaddrStorage::from(SocketAddr::new(dst, 0)),
        nix::sys::socket::MsgFlags::empty(),
    )?;

    let deadline = Instant::now() + timeout;
    let mut buf = [0u8; 1500];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Ok(false);
        }
        setsockopt(
            &fd,
            sockopt::ReceiveTimeout,
            &TimeVal::from(libc::timeval {
                tv_sec: libc::time_t::try_from(left.as_secs()).unwrap_or(libc::time_t::MAX),
                tv_usec: libc::suseconds_t::from(left.subsec_micros().max(1)),
            }),
        )?;
        let (n, from) = match recvfrom::<SockaddrStorage>(fd.as_raw_fd(), &mut buf) {
            Ok(r) => r,
            Err(Errno::EAGAIN | Errno::EINTR) => continue,
            Err(e) => return Err(e.into()),
        };
        let from_ip = from.and_then(|a| {
            a.as_sockaddr_in()
                .map(|v4| IpAddr::V4(v4.ip()))
                .or_else(|| a.as_sockaddr_in6().map(|v6| IpAddr::V6(v6.ip())))
        });
        // IPv4 raw sockets hand over the IP header too; IPv6 ones do not.
        let icmp = match family {
            AddressFamily::Inet if n > 0 => &buf[usize::from(buf[0] & 0x0f) * 4..n],
            _ => &buf[..n],
        };
        if from_ip == Some(dst)
            && icmp.len() >= 8
            && icmp[0] == reply
            && icmp[4..6] == id.to_be_bytes()
            && icmp[6..8] == seq.to_be_bytes()
        {
            return Ok(true);
        }
    }
}

fn internet_checksum(data: &[u8]) -> u16 {
    let mut sum: u32 = data
        .chunks(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)])))
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !u16::try_from(sum).expect("folded to 16 bits above")
}
