//! Connects into a `cargo xtask vm-test` guest from outside it, through the guest's virtio-net
//! NIC. The xtask gives the guest a multiqueue tap whose host end lives in a network namespace
//! of its own, and runs [`serve`] there (the `vm-peer` binary): it puts the outside addresses
//! on the tap and connects into the guest whenever a test inside asks, over a TCP connection
//! to [`PEER`], one line per connect: `SRC DST PORT TIMEOUT_MS`, answered with the
//! [`Outcome`](crate::tcp::Outcome) in its words.

use std::io::{self, BufRead as _, BufReader, Write as _};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, TcpStream};
use std::process::Command;
use std::time::Duration;

use anyhow::{Context as _, Result, bail};

use crate::netns::{Netns, run_cmd};
use crate::tcp::connect_here;

/// The outside client the guest's tests allow (also where [`serve`] listens).
pub const ALLOWED_V4: Ipv4Addr = Ipv4Addr::new(198, 19, 250, 1);
/// The guest's address on its NIC.
pub const GUEST_V4: Ipv4Addr = Ipv4Addr::new(198, 19, 250, 2);
/// The outside client no entry covers.
pub const BLOCKED_V4: Ipv4Addr = Ipv4Addr::new(198, 19, 250, 3);
pub const ALLOWED_V6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0xfa, 0, 0, 0, 0, 1);
pub const GUEST_V6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0xfa, 0, 0, 0, 0, 2);
pub const BLOCKED_V6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0xfa, 0, 0, 0, 0, 3);
/// The prefix lengths of the network the guest and the outside share.
pub const PREFIX_V4: u8 = 24;
pub const PREFIX_V6: u8 = 64;
/// Where [`serve`] takes requests.
pub const PEER: SocketAddr = SocketAddr::new(IpAddr::V4(ALLOWED_V4), 7070);
/// What [`serve`] prints on stdout once it takes requests.
pub const READY: &str = "vm-peer ready";

/// The outside's side: the addresses on `tap` (in this process's namespace), then requests
/// served until killed, each connection on a thread of its own.
pub fn serve(tap: &str) -> Result<()> {
    for (addr, prefix) in [
        (IpAddr::V4(ALLOWED_V4), PREFIX_V4),
        (IpAddr::V4(BLOCKED_V4), PREFIX_V4),
        (IpAddr::V6(ALLOWED_V6), PREFIX_V6),
        (IpAddr::V6(BLOCKED_V6), PREFIX_V6),
    ] {
        let cidr = format!("{addr}/{prefix}");
        let mut cmd = Command::new("ip");
        cmd.args(["addr", "add", &cidr, "dev", tap]);
        if addr.is_ipv6() {
            cmd.arg("nodad");
        }
        run_cmd(&mut cmd)?;
    }
    run_cmd(Command::new("ip").args(["link", "set", tap, "up"]))?;
    run_cmd(Command::new("ip").args(["link", "set", "lo", "up"]))?;
    let listener = TcpListener::bind(PEER).with_context(|| format!("listening on {PEER}"))?;
    println!("{READY}");
    io::stdout().flush()?;
    for stream in listener.incoming() {
        let stream = stream?;
        std::thread::spawn(move || {
            if let Err(e) = answer(stream) {
                eprintln!("vm-peer: {e:#}");
            }
        });
    }
    Ok(())
}

fn answer(stream: TcpStream) -> Result<()> {
    let mut writer = stream.try_clone()?;
    for line in BufReader::new(stream).lines() {
        let line = line?;
        let reply = match parse(&line) {
            Ok((src, dst, timeout)) => connect_here(src, dst, timeout).to_string(),
            Err(e) => format!("bad request {line:?}: {e:#}"),
        };
        writeln!(writer, "{reply}")?;
    }
    Ok(())
}

fn parse(line: &str) -> Result<(IpAddr, SocketAddr, Duration)> {
    let fields: Vec<&str> = line.split_whitespace().collect();
    let [src, dst, port, ms] = fields[..] else {
        bail!("expected SRC DST PORT TIMEOUT_MS");
    };
    Ok((
        src.parse()?,
        SocketAddr::new(dst.parse()?, port.parse()?),
        Duration::from_millis(ms.parse()?),
    ))
}

/// The guest's side: a connection to the outside's [`serve`].
pub struct Outside {
    reader: BufReader<TcpStream>,
}

impl Outside {
    /// Reaches the peer from inside `ns`, where the guest's NIC is.
    pub fn reach(ns: &Netns) -> Outside {
        let stream = ns
            .run_in(|| TcpStream::connect_timeout(&PEER, Duration::from_secs(30)))
            .unwrap_or_else(|e| {
                panic!("reaching the outside peer at {PEER} (run by `cargo xtask vm-test`): {e}")
            });
        Outside {
            reader: BufReader::new(stream),
        }
    }

    /// What a connect from `src` (outside) to `dst` (in the guest) saw, in
    /// [`Outcome`](crate::tcp::Outcome)'s words: "connected", "timed out", ...
    pub fn connect(&mut self, src: IpAddr, dst: SocketAddr, timeout: Duration) -> String {
        let request = format!(
            "{src} {} {} {}\n",
            dst.ip(),
            dst.port(),
            timeout.as_millis()
        );
        let mut reply = String::new();
        let stream = self.reader.get_mut();
        stream
            .set_read_timeout(Some(timeout + Duration::from_secs(30)))
            .and_then(|()| stream.write_all(request.as_bytes()))
            .and_then(|()| self.reader.read_line(&mut reply))
            .unwrap_or_else(|e| panic!("asking the outside peer for {request:?}: {e}"));
        reply.trim_end().to_owned()
    }
}
