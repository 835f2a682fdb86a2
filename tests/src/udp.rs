//! UDP in the lab: an echo server in a namespace, and a probe that sends one datagram and
//! waits for its echo. A filtered datagram simply never comes back.

use std::io;
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use crate::netns::Netns;
use crate::tcp::{BLOCKED_PROBE, allowed_probe};

/// Echoes every datagram back to its sender, until dropped. Bind `[::]:PORT` for both
/// families.
pub struct Echo {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Echo {
    pub fn start(ns: &Netns, addr: SocketAddr) -> Echo {
        let socket = ns
            .run_in(|| UdpSocket::bind(addr))
            .unwrap_or_else(|e| panic!("binding UDP {addr} in {}: {e}", ns.name()));
        socket
            .set_read_timeout(Some(Duration::from_millis(20)))
            .expect("a read timeout");
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let stop = Arc::clone(&stop);
            std::thread::spawn(move || {
                let mut buf = [0u8; 2048];
                while !stop.load(Ordering::Relaxed) {
                    if let Ok((n, from)) = socket.recv_from(&mut buf) {
                        let _ = socket.send_to(&buf[..n], from);
                    }
                }
            })
        };
        Echo {
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for Echo {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Sends one datagram from `src` to `dst` inside `ns`; whether its echo came back within
/// `timeout`.
pub fn echoed(ns: &Netns, src: IpAddr, dst: SocketAddr, timeout: Duration) -> io::Result<bool> {
    ns.run_in(|| {
        let socket = UdpSocket::bind(SocketAddr::new(src, 0))?;
        socket.connect(dst)?;
        socket.set_read_timeout(Some(timeout))?;
        let payload = b"allowlist udp probe";
        socket.send(payload)?;
        let mut buf = [0u8; 64];
        match socket.recv(&mut buf) {
            Ok(n) => Ok(&buf[..n] == payload),
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                Ok(false)
            }
            Err(e) => Err(e),
        }
    })
}

/// Panics unless a datagram from `src` to `dst` is echoed.
#[track_caller]
pub fn assert_echoed(ns: &Netns, src: IpAddr, dst: SocketAddr, why: &str) {
    let echoed =
        echoed(ns, src, dst, allowed_probe()).unwrap_or_else(|e| panic!("{src} -> {dst}: {e}"));
    assert!(
        echoed,
        "UDP {src} -> {dst} should be echoed ({why}), but nothing came back"
    );
}

/// Panics unless a datagram from `src` to `dst` goes unanswered: it was dropped.
#[track_caller]
pub fn assert_dropped(ns: &Netns, src: IpAddr, dst: SocketAddr, why: &str) {
    let echoed =
        echoed(ns, src, dst, BLOCKED_PROBE).unwrap_or_else(|e| panic!("{src} -> {dst}: {e}"));
    assert!(
        !echoed,
        "UDP {src} -> {dst} should be dropped ({why}), but it was echoed"
    );
}
