//! The knock sockets: receive, judge, hand grants to the main loop. Nothing is ever sent
//! back (no reflection, no oracle). Refusals are counted by kind and logged at a bounded
//! rate, so a flood of garbage costs a few log lines, not thousands.

use std::io;
use std::net::SocketAddr;
use std::os::fd::OwnedFd;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime};

use allowlist_control::knock::MAX_DATAGRAM;
use nix::sys::socket::{
    AddressFamily, SockFlag, SockType, SockaddrStorage, bind, setsockopt, socket, sockopt,
};
use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tracing::{info, warn};

use super::keys::KnockKeys;
use super::{Grant, Guard, Refusal, RefusalKind};

/// Grants and refusals by kind, for `/metrics`.
#[derive(Default)]
pub struct Counters {
    granted: AtomicU64,
    refused: [AtomicU64; RefusalKind::ALL.len()],
}

impl Counters {
    pub fn granted(&self) -> u64 {
        self.granted.load(Ordering::Relaxed)
    }

    pub fn refused(&self, kind: RefusalKind) -> u64 {
        self.refused[index(kind)].load(Ordering::Relaxed)
    }

    /// Every kind with its count, in [`RefusalKind::ALL`]'s order.
    pub fn refusals(&self) -> Vec<(&'static str, u64)> {
        RefusalKind::ALL
            .iter()
            .map(|&kind| (kind.name(), self.refused(kind)))
            .collect()
    }

    fn count(&self, kind: RefusalKind) {
        self.refused[index(kind)].fetch_add(1, Ordering::Relaxed);
    }
}

fn index(kind: RefusalKind) -> usize {
    RefusalKind::ALL
        .iter()
        .position(|&k| k == kind)
        .expect("ALL has every kind")
}

/// Refusal lines: a burst of `BURST`, then one every `EVERY`; the next line logged says how
/// many were left out.
struct LogLimit {
    tokens: u32,
    at: Instant,
    left_out: u64,
}

const BURST: u32 = 10;
const EVERY: Duration = Duration::from_secs(6);

impl LogLimit {
    /// Whether to log one more line, and how many were left out before it.
    fn allow(&mut self, now: Instant) -> Option<u64> {
        let earned = now.saturating_duration_since(self.at).as_secs() / EVERY.as_secs();
        if earned > 0 {
            self.tokens = BURST.min(self.tokens.saturating_add(earned as u32));
            self.at = now;
        }
        if self.tokens == 0 {
            self.left_out += 1;
            return None;
        }
        self.tokens -= 1;
        Some(std::mem::take(&mut self.left_out))
    }
}

struct Shared {
    guard: Mutex<Guard>,
    log: Mutex<LogLimit>,
    counters: Counters,
}

/// What the main loop keeps of a running listener: its counters, and a way to swap keys.
#[derive(Clone)]
pub struct KnockHandle(Arc<Shared>);

impl KnockHandle {
    pub fn counters(&self) -> &Counters {
        &self.0.counters
    }

    /// After `knock_keys` is read again.
    pub fn set_keys(&self, keys: KnockKeys) {
        lock(&self.0.guard).set_keys(keys);
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panic mid-judgement leaves nothing half-done that matters more than knocks stopping.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

pub struct Listener {
    sockets: Vec<UdpSocket>,
    shared: Arc<Shared>,
}

/// A UDP socket on `addr`; an IPv6 one only for IPv6, so `0.0.0.0` and `[::]` can both be
/// bound to the same port.
fn udp_socket(addr: SocketAddr) -> io::Result<std::net::UdpSocket> {
    let family = match addr {
        SocketAddr::V4(_) => AddressFamily::Inet,
        SocketAddr::V6(_) => AddressFamily::Inet6,
    };
    let flags = SockFlag::SOCK_CLOEXEC | SockFlag::SOCK_NONBLOCK;
    let fd: OwnedFd = socket(family, SockType::Datagram, flags, None)?;
    if addr.is_ipv6() {
        setsockopt(&fd, sockopt::Ipv6V6Only, &true)?;
    }
    bind(
        std::os::fd::AsRawFd::as_raw_fd(&fd),
        &SockaddrStorage::from(addr),
    )?;
    Ok(std::net::UdpSocket::from(fd))
}

impl Listener {
    /// Binds every address of `knock_listen` (inside the tokio runtime).
    pub fn bind(addrs: &[SocketAddr], guard: Guard) -> io::Result<Listener> {
        let sockets = addrs
            .iter()
            .map(|&addr| {
                udp_socket(addr)
                    .and_then(UdpSocket::from_std)
                    .map_err(|e| io::Error::new(e.kind(), format!("knock_listen {addr}: {e}")))
            })
            .collect::<io::Result<_>>()?;
        Ok(Listener {
            sockets,
            shared: Arc::new(Shared {
                guard: Mutex::new(guard),
                log: Mutex::new(LogLimit {
                    tokens: BURST,
                    at: Instant::now(),
                    left_out: 0,
                }),
                counters: Counters::default(),
            }),
        })
    }

    pub fn local_addrs(&self) -> io::Result<Vec<SocketAddr>> {
        self.sockets.iter().map(UdpSocket::local_addr).collect()
    }

    pub fn handle(&self) -> KnockHandle {
        KnockHandle(Arc::clone(&self.shared))
    }

    /// Receives on every socket until `grants` is closed; each grant goes to `grants` in the
    /// order judged. While the receiver is busy the sockets wait, and the kernel drops what
    /// does not fit in their buffers.
    pub async fn run(self, grants: mpsc::Sender<Grant>) {
        let mut tasks = JoinSet::new();
        for socket in self.sockets {
            tasks.spawn(serve(socket, Arc::clone(&self.shared), grants.clone()));
        }
        drop(grants);
        while tasks.join_next().await.is_some() {}
    }
}

async fn serve(socket: UdpSocket, shared: Arc<Shared>, grants: mpsc::Sender<Grant>) {
    // One byte more than any knock: a longer datagram arrives truncated and is refused.
    let mut buf = [0u8; MAX_DATAGRAM + 1];
    loop {
        let received = tokio::select! {
            received = socket.recv_from(&mut buf) => received,
            () = grants.closed() => return,
        };
        let (len, source) = match received {
            Ok(received) => received,
            Err(e) => {
                if lock(&shared.log).allow(Instant::now()).is_some() {
                    warn!(error = %e, "knock socket: receiving failed");
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        let verdict = lock(&shared.guard).judge(&buf[..len], source, SystemTime::now());
        match verdict {
            Ok(grant) => {
                shared.counters.granted.fetch_add(1, Ordering::Relaxed);
                info!(key = %grant.key, addr = %grant.addr, list = %grant.list,
                      duration_secs = grant.duration.as_secs(), %source, "knock granted");
                if grants.send(grant).await.is_err() {
                    return;
                }
            }
            Err(refusal) => refused(&shared, &refusal, source),
        }
    }
}

fn refused(shared: &Shared, refusal: &Refusal, source: SocketAddr) {
    let kind = refusal.kind();
    shared.counters.count(kind);
    let Some(left_out) = lock(&shared.log).allow(Instant::now()) else {
        return;
    };
    if left_out > 0 {
        info!(kind = kind.name(), %source, left_out, "knock refused: {refusal} ({left_out} refusals not logged before this one)");
    } else {
        info!(kind = kind.name(), %source, "knock refused: {refusal}");
    }
}

#[cfg(test)]
mod tests {
    use std::net::UdpSocket as StdUdp;

    use super::super::KnockSettings;
    use super::super::guard::tests::{keys, knock};
    use super::*;

    #[test]
    fn log_lines_come_in_a_burst_then_slowly_with_what_was_left_out() {
        let t0 = Instant::now();
        let mut log = LogLimit {
            tokens: BURST,
            at: t0,
            left_out: 0,
        };
        let allowed = (0..10_000).filter(|_| log.allow(t0).is_some()).count();
        assert_eq!(allowed, BURST as usize);
        assert_eq!(log.allow(t0 + EVERY), Some(10_000 - u64::from(BURST)));
        assert_eq!(log.allow(t0 + EVERY), None);
    }

    async fn next(rx: &mut mpsc::Receiver<Grant>) -> Option<Grant> {
        tokio::time::timeout(Duration::from_secs(5), rx.recv())
            .await
            .ok()
            .flatten()
    }

    #[tokio::test]
    async fn garbage_and_forgeries_earn_nothing_and_a_valid_knock_one_grant_on_v4_and_v6() {
        let dir = tempfile::tempdir().unwrap();
        let guard = Guard::new(keys(), &KnockSettings::default(), dir.path()).unwrap();
        let addrs = ["127.0.0.1:0".parse().unwrap(), "[::1]:0".parse().unwrap()];
        let listener = Listener::bind(&addrs, guard).unwrap();
        let bound = listener.local_addrs().unwrap();
        let handle = listener.handle();
        let (tx, mut rx) = mpsc::channel(4);
        let running = tokio::spawn(listener.run(tx));

        for (to, from) in bound.iter().zip(["127.0.0.1:0", "[::1]:0"]) {
            let client = StdUdp::bind(from).unwrap();
            for _ in 0..50 {
                client.send_to(b"\x00garbage", to).unwrap();
            }
            client
                .send_to(&knock("mallory", 3, "ssh", 60, None), to)
                .unwrap();
            client
                .send_to(&knock("alice", 3, "ssh", 60, None), to)
                .unwrap();
            let valid = knock("alice", 1, "ssh", 600, None);
            client.send_to(&valid, to).unwrap();
            client.send_to(&valid, to).unwrap();
            let grant = next(&mut rx).await.expect("a grant");
            assert_eq!(grant.addr, client.local_addr().unwrap().ip());
            assert_eq!(
                (grant.key.as_str(), grant.duration),
                ("alice", Duration::from_secs(600))
            );
            // Nothing comes back to the sender, whatever it sent.
            client.set_nonblocking(true).unwrap();
            assert!(client.recv(&mut [0; 64]).is_err());
        }
        // The datagrams are judged in order: the replay after the grant has been counted
        // once the next grant arrived, and no second grant followed.
        let counters = handle.counters();
        assert_eq!(counters.granted(), 2);
        assert_eq!(counters.refused(RefusalKind::Malformed), 100);
        assert_eq!(counters.refused(RefusalKind::UnknownKey), 2);
        assert_eq!(counters.refused(RefusalKind::BadSignature), 2);
        let until = Instant::now() + Duration::from_secs(5);
        while counters.refused(RefusalKind::ReplayedNonce) < 2 && Instant::now() < until {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(counters.refused(RefusalKind::ReplayedNonce), 2);
        assert!(rx.try_recv().is_err(), "a second grant");
        // Closing the receiving end stops the listener.
        drop(rx);
        tokio::time::timeout(Duration::from_secs(5), running)
            .await
            .expect("the listener ends when the main loop is gone")
            .unwrap();
    }
}
