//! One request and its answer over the control socket.

use std::os::unix::net::UnixStream;
use std::time::Duration;

use allowlist_control::protocol::{self, ErrorKind, Request, Response};

use crate::failure::Failure;
use crate::socket;

/// Long enough for a reload of a million entries, short enough not to hang a script forever.
const REPLY_TIMEOUT: Duration = Duration::from_secs(300);

pub(crate) fn exchange(target: &socket::Target, request: &Request) -> Result<Response, Failure> {
    let socket = &target.path;
    let unreachable = |e: std::io::Error| {
        let hint = match e.kind() {
            // The socket's mode refused us, as the daemon would have: the same answer.
            std::io::ErrorKind::PermissionDenied => {
                return Failure::refused(
                    ErrorKind::PermissionDenied,
                    format!(
                        "permission denied: {} is open only to root and members of \
                         control_group; run as root (sudo) or join that group",
                        socket.display()
                    ),
                );
            }
            std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused => format!(
                " (is allowlistd running? this socket is {}; --socket, --config or ${} name another)",
                target.found,
                socket::ENV
            ),
            _ => String::new(),
        };
        Failure::unreachable(format!(
            "cannot reach allowlistd at {}: {e}{hint}",
            socket.display()
        ))
    };
    let mut stream = UnixStream::connect(socket).map_err(unreachable)?;
    stream
        .set_read_timeout(Some(REPLY_TIMEOUT))
        .map_err(unreachable)?;
    // If sending fails (the daemon answered early and closed, e.g. to refuse us), its answer
    // may still be waiting: read it before blaming the connection.
    let sent = protocol::write_frame(&mut stream, request);
    let body = match protocol::read_frame(&mut stream, protocol::MAX_REPLY) {
        Ok(body) => body,
        Err(e) => {
            return Err(match sent {
                Err(send) => unreachable(send),
                Ok(()) => Failure::unreachable(format!(
                    "no answer from allowlistd at {}: {e}",
                    socket.display()
                )),
            });
        }
    };
    serde_json::from_slice(&body)
        .map_err(|e| Failure::unreachable(format!("unreadable answer from allowlistd: {e}")))
}
