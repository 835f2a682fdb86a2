//! The listening side of the control socket. Each connection gets its own task that checks
//! the peer (SO_PEERCRED), reads one request within a deadline and hands it to the daemon's
//! main loop, which owns all state and so serializes every change. A slow or garbage client
//! only ever holds up its own task, and at most [`MAX_CONNECTIONS`] are open at once, so a
//! crowd of idle clients cannot exhaust the daemon's file descriptors.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use nix::unistd::{Gid, Group, Uid, User, chown, getgrouplist};
use tokio::io::AsyncWriteExt;
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{Semaphore, mpsc, oneshot};
use tracing::{debug, warn};

use allowlist_control::audit::{Actor, Via};
use allowlist_control::protocol::{self, ErrorKind, Request, Response};

/// A client has this long to send its whole request.
const READ_DEADLINE: Duration = Duration::from_secs(5);

/// Connections served at once; beyond this a client is told the daemon is busy. Each one
/// costs a file descriptor and a task for at most [`READ_DEADLINE`] (plus the answer).
pub const MAX_CONNECTIONS: usize = 1024;

/// Who sent a request, from the kernel (SO_PEERCRED), not from the client's say-so.
#[derive(Clone, Debug)]
pub struct Peer {
    pub uid: u32,
    pub pid: Option<i32>,
    /// Whom root acts for (`--on-behalf-of`), checked by [`on_behalf_of`].
    pub on_behalf_of: Option<String>,
}

impl Peer {
    /// The actor of an audit record for this peer's request.
    pub fn actor(&self) -> Actor {
        Actor {
            on_behalf_of: self.on_behalf_of.clone(),
            ..Actor::new(self.uid, self.pid, Via::Cli)
        }
    }
}

/// The longest name `--on-behalf-of` may give (a login name, perhaps with a realm).
const MAX_NAME: usize = 128;

/// Whom the request acts for, as the audit log will name them: only root may name another
/// user (a front end running as root for its logged-in user); anyone else may name only
/// themselves, which says nothing more than their uid, so it is dropped.
fn on_behalf_of(uid: u32, claimed: Option<String>) -> Result<Option<String>, String> {
    let Some(name) = claimed else {
        return Ok(None);
    };
    if name.is_empty()
        || name.len() > MAX_NAME
        || name.chars().any(|c| c.is_control() || c.is_whitespace())
    {
        return Err(format!(
            "--on-behalf-of {name:?}: a user name is 1 to {MAX_NAME} bytes without spaces or control characters"
        ));
    }
    let own = Actor::new(uid, None, Via::Cli).user;
    if name == own {
        return Ok(None);
    }
    if uid == 0 {
        return Ok(Some(name));
    }
    Err(format!(
        "permission denied: --on-behalf-of {name}: only root may act on behalf of another user \
         (this request comes from {own}, uid {uid})"
    ))
}

pub struct Incoming {
    pub request: Request,
    pub peer: Peer,
    pub reply: oneshot::Sender<Response>,
}

/// Raises the soft limit on open files to the hard limit (systemd's advice for services
/// that do not use select(2)): [`MAX_CONNECTIONS`] clients plus the daemon's own maps and
/// sockets exceed the usual soft limit of 1024. Returns the limit in force.
pub fn raise_fd_limit() -> u64 {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit only read and write the struct passed.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 {
            return 0;
        }
        if limit.rlim_cur < limit.rlim_max {
            let raised = libc::rlimit {
                rlim_cur: limit.rlim_max,
                rlim_max: limit.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                limit = raised;
            }
        }
    }
    limit.rlim_cur
}

/// Binds the socket with mode 0660, owned by root and `group`.
pub fn bind(path: &Path, group: &str) -> Result<(UnixListener, Gid)> {
    let gid = Group::from_name(group)
        .with_context(|| format!("looking up control_group {group}"))?
        .with_context(|| format!("control_group {group} does not exist"))?
        .gid;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    if path.exists() {
        if std::os::unix::net::UnixStream::connect(path).is_ok() {
            bail!(
                "another daemon is listening on control_socket {}; give each daemon its own",
                path.display()
            );
        }
        std::fs::remove_file(path)
            .with_context(|| format!("removing the stale socket {}", path.display()))?;
    }
    let listener =
        UnixListener::bind(path).with_context(|| format!("binding {}", path.display()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o660))
        .with_context(|| format!("chmod 0660 {}", path.display()))?;
    chown(path, Some(Uid::from_raw(0)), Some(gid))
        .with_context(|| format!("chown root:{group} {}", path.display()))?;
    Ok((listener, gid))
}

/// Accepts connections until the daemon stops.
pub async fn serve(listener: UnixListener, gid: Gid, socket: PathBuf, tx: mpsc::Sender<Incoming>) {
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        match listener.accept().await {
            Ok((stream, _)) => match Arc::clone(&slots).try_acquire_owned() {
                Ok(slot) => {
                    let tx = tx.clone();
                    tokio::spawn(async move {
                        connection(stream, gid, tx).await;
                        drop(slot);
                    });
                }
                Err(_) => {
                    tokio::spawn(busy(stream));
                }
            },
            Err(e) => {
                warn!(socket = %socket.display(), "accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

/// Answers a client beyond [`MAX_CONNECTIONS`] without reading its request.
async fn busy(mut stream: UnixStream) {
    let response = Response::error(
        ErrorKind::Internal,
        format!("allowlistd is busy: {MAX_CONNECTIONS} connections open; try again"),
    );
    let _ = tokio::time::timeout(
        Duration::from_secs(1),
        stream.write_all(&protocol::encode(&response)),
    )
    .await;
}

fn authorized(uid: u32, gid: Gid) -> bool {
    if uid == 0 {
        return true;
    }
    let Ok(Some(user)) = User::from_uid(Uid::from_raw(uid)) else {
        return false;
    };
    if user.gid == gid {
        return true;
    }
    let Ok(name) = std::ffi::CString::new(user.name) else {
        return false;
    };
    getgrouplist(&name, user.gid).is_ok_and(|groups| groups.contains(&gid))
}

async fn connection(mut stream: UnixStream, gid: Gid, tx: mpsc::Sender<Incoming>) {
    let response = match handle(&mut stream, gid, tx).await {
        Some(response) => response,
        None => return,
    };
    let _ = tokio::time::timeout(
        READ_DEADLINE,
        stream.write_all(&protocol::encode(&response)),
    )
    .await;
}

/// The response to send, or None when the client is gone.
async fn handle(stream: &mut UnixStream, gid: Gid, tx: mpsc::Sender<Incoming>) -> Option<Response> {
    let cred = match stream.peer_cred() {
        Ok(cred) => cred,
        Err(e) => {
            return Some(Response::error(
                ErrorKind::Internal,
                format!("SO_PEERCRED: {e}"),
            ));
        }
    };
    // The request is read before the peer is judged, so that a refused client gets its
    // answer instead of a broken pipe while still sending.
    let body = match tokio::time::timeout(READ_DEADLINE, protocol::read_frame_async(stream)).await {
        Err(_) => {
            return Some(Response::error(
                ErrorKind::BadRequest,
                format!("no complete request within {}s", READ_DEADLINE.as_secs()),
            ));
        }
        Ok(Err(protocol::FrameError::Truncated)) => return None,
        Ok(Err(e)) => return Some(Response::error(ErrorKind::BadRequest, e.to_string())),
        Ok(Ok(body)) => body,
    };
    if !authorized(cred.uid(), gid) {
        debug!(
            uid = cred.uid(),
            "control request refused: not root or in control_group"
        );
        return Some(Response::error(
            ErrorKind::PermissionDenied,
            "permission denied: only root and members of control_group may use allowlistd",
        ));
    }
    let request = match protocol::parse_request(&body) {
        Ok(request) => request,
        Err((kind, message)) => return Some(Response::error(kind, message)),
    };
    let on_behalf_of = match on_behalf_of(cred.uid(), request.options.on_behalf_of.clone()) {
        Ok(name) => name,
        Err(message) => return Some(Response::error(ErrorKind::PermissionDenied, message)),
    };
    let (reply, answer) = oneshot::channel();
    let peer = Peer {
        uid: cred.uid(),
        pid: cred.pid(),
        on_behalf_of,
    };
    if tx
        .send(Incoming {
            request,
            peer,
            reply,
        })
        .await
        .is_err()
    {
        return Some(Response::error(
            ErrorKind::Internal,
            "allowlistd is shutting down",
        ));
    }
    Some(
        answer.await.unwrap_or_else(|_| {
            Response::error(ErrorKind::Internal, "allowlistd dropped the request")
        }),
    )
}
