//! Link events from the kernel (rtnetlink, `RTNLGRP_LINK`): the moment an interface appears,
//! vanishes or changes, the daemon re-checks its attachments, so a re-created interface is
//! filtered again within milliseconds instead of at the next periodic check.
//!
//! The messages themselves are not parsed: any link event means "look again", and the look
//! (by name and ifindex) is the same one the periodic check does. A lost event (the socket's
//! buffer overflowed) is therefore harmless; the periodic check remains the fallback.

use std::os::fd::{AsRawFd, RawFd};

use anyhow::{Context, Result};
use netlink_sys::{Socket, SocketAddr, protocols::NETLINK_ROUTE};
use tokio::io::Interest;
use tokio::io::unix::AsyncFd;

/// `RTMGRP_LINK`: the multicast group of link (interface) notifications.
const RTMGRP_LINK: u32 = 1;

/// A non-blocking rtnetlink socket subscribed to link notifications.
pub struct LinkEvents {
    socket: Socket,
}

impl AsRawFd for LinkEvents {
    fn as_raw_fd(&self) -> RawFd {
        self.socket.as_raw_fd()
    }
}

impl LinkEvents {
    /// Subscribes, in the daemon's network namespace, ready for the tokio reactor.
    pub fn subscribe() -> Result<AsyncFd<LinkEvents>> {
        let mut socket = Socket::new(NETLINK_ROUTE).context("opening an rtnetlink socket")?;
        socket
            .bind(&SocketAddr::new(0, RTMGRP_LINK))
            .context("subscribing to rtnetlink link events")?;
        socket
            .set_non_blocking(true)
            .context("making the rtnetlink socket non-blocking")?;
        // SAFETY: the AsyncFd owns the LinkEvents, which owns the socket's fd.
        unsafe { AsyncFd::register_with_interest(LinkEvents { socket }, Interest::READABLE) }
            .map_err(|e| anyhow::anyhow!("registering the rtnetlink socket: {e}"))
    }

    /// Reads every pending notification; true if there was at least one (or the buffer
    /// overflowed, which means some were lost: look again all the same).
    pub fn drain(&self) -> bool {
        let mut buf = vec![0u8; 16 * 1024];
        let mut any = false;
        loop {
            match self.socket.recv(&mut &mut buf[..], 0) {
                Ok(_) => any = true,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return any,
                Err(e) if e.raw_os_error() == Some(libc::ENOBUFS) => any = true,
                Err(_) => return any,
            }
        }
    }
}
