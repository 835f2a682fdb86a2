//! `allowlistctl knock`: makes a key (`keygen`) or sends one signed datagram to a server's
//! knock port. Nothing answers a knock (no oracle for an attacker), so sending is all there
//! is: the user finds out by connecting.

use std::fs::OpenOptions;
use std::io::Write as _;
use std::net::{IpAddr, SocketAddr, ToSocketAddrs as _, UdpSocket};
use std::os::unix::fs::{MetadataExt as _, OpenOptionsExt as _};
use std::path::Path;
use std::process::ExitCode;

use allowlist_control::knock::{self, Ask, KeyFile, KeyLine, Lists};

use crate::args::{KnockArgs, KnockCmd};
use crate::failure::Failure;

pub(crate) fn run(args: &KnockArgs, json: bool) -> ExitCode {
    let outcome = match &args.keygen {
        Some(KnockCmd::Keygen {
            out,
            name,
            lists,
            max_for,
            any_ip,
        }) => keygen(out, name, lists, max_for, *any_ip, json),
        None => send(args, json),
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => failure.report(json),
    }
}

fn keygen(
    out: &Path,
    name: &str,
    lists: &str,
    max_for: &str,
    any_ip: bool,
    json: bool,
) -> Result<(), Failure> {
    knock::check_key_name(name).map_err(|e| Failure::invalid(format!("--name `{name}`: {e}")))?;
    let lists = Lists::parse(lists).map_err(|e| Failure::invalid(format!("--lists: {e}")))?;
    let max_for = knock::keys::parse_max_for(max_for)
        .map_err(|e| Failure::invalid(format!("--max-for: {e}")))?;
    let file = KeyFile::generate(name)
        .map_err(|e| Failure::invalid(format!("no random numbers from the system: {e}")))?;
    let line = KeyLine {
        name: name.to_owned(),
        lists,
        max_for,
        public: file.key.verifying_key(),
        any_ip,
    };
    // create_new is O_EXCL: an existing key (or a symlink planted there) is never replaced.
    let mut written = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(out)
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::AlreadyExists => Failure::invalid(format!(
                "{} exists: a key is never overwritten; remove it first or choose another --out",
                out.display()
            )),
            _ => Failure::invalid(format!("creating {}: {e}", out.display())),
        })?;
    written
        .write_all(file.to_text(&line).as_bytes())
        .and_then(|()| written.sync_all())
        .map_err(|e| Failure::invalid(format!("writing {}: {e}", out.display())))?;
    if json {
        let value = serde_json::json!({ "key_file": out, "knock_keys_line": line.to_string() });
        println!("{value}");
    } else {
        eprintln!(
            "Wrote the private key `{name}` to {} (keep it secret). Add this line to the \
             server's knock_keys file:",
            out.display()
        );
        println!("{line}");
    }
    Ok(())
}

/// Reads a private key file, refusing one that others may read (as ssh does).
fn read_key(path: &Path) -> Result<KeyFile, Failure> {
    let failure = |e: std::io::Error| Failure::invalid(format!("reading {}: {e}", path.display()));
    let meta = std::fs::metadata(path).map_err(failure)?;
    if meta.mode() & 0o077 != 0 {
        return Err(Failure::invalid(format!(
            "{path} may be read or written by others (mode {mode:o}): run `chmod 600 {path}`",
            path = path.display(),
            mode = meta.mode() & 0o7777
        )));
    }
    let text = std::fs::read_to_string(path).map_err(failure)?;
    KeyFile::parse(&text).map_err(|e| Failure::invalid(e.located(path)))
}

/// HOST as an address (`2001:db8::1`, `[2001:db8::1]` or `198.51.100.1`), else a name to
/// resolve; the resolver's first answer is used.
fn resolve(host: &str, port: u16) -> Result<SocketAddr, Failure> {
    let bare = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    if let Ok(ip) = bare.parse::<IpAddr>() {
        return Ok(SocketAddr::new(ip, port));
    }
    (host, port)
        .to_socket_addrs()
        .map_err(|e| Failure::invalid(format!("{host}: cannot resolve: {e}")))?
        .next()
        .ok_or_else(|| Failure::invalid(format!("{host}: no address")))
}

fn send(args: &KnockArgs, json: bool) -> Result<(), Failure> {
    let (Some(host), Some(key_path)) = (&args.host, &args.key) else {
        return Err(Failure::invalid("knock needs HOST and --key FILE"));
    };
    let key = read_key(key_path)?;
    let ask = Ask::new(&key.name, &args.list, args.duration, args.ip)
        .map_err(|e| Failure::invalid(format!("no random numbers from the system: {e}")))?;
    let datagram = ask
        .sign(&key.key)
        .map_err(|e| Failure::invalid(e.to_string()))?;
    let to = resolve(host, args.port)?;
    let local: SocketAddr = match (to, args.from) {
        (_, Some(from)) => (from, 0).into(),
        (SocketAddr::V4(_), None) => (std::net::Ipv4Addr::UNSPECIFIED, 0).into(),
        (SocketAddr::V6(_), None) => (std::net::Ipv6Addr::UNSPECIFIED, 0).into(),
    };
    let sent = UdpSocket::bind(local)
        .and_then(|socket| socket.send_to(&datagram, to))
        .map_err(|e| Failure::invalid(format!("sending to {to}: {e}")))?;
    if sent != datagram.len() {
        return Err(Failure::invalid(format!(
            "sending to {to}: only {sent} of {} bytes went out",
            datagram.len()
        )));
    }
    if json {
        let value = serde_json::json!({
            "host": host, "to": to.to_string(), "key": key.name, "list": args.list,
            "for_secs": args.duration.as_secs(), "ip": args.ip,
        });
        println!("{value}");
    } else {
        let what = args
            .ip
            .map_or_else(|| "your address".to_owned(), |ip| ip.to_string());
        println!(
            "Knocked at {host} ({to}) as `{}`: asked to open {what} on list `{}` for {}. \
             Nothing answers; connect now.",
            key.name,
            args.list,
            allowlist_config::words::duration(args.duration)
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt as _;
    use std::time::Duration;

    use allowlist_control::knock::Knock;

    use super::*;

    fn knock_args(host: &str, port: u16, key: &Path, ip: Option<IpAddr>) -> KnockArgs {
        KnockArgs {
            keygen: None,
            host: Some(host.to_owned()),
            port,
            key: Some(key.to_path_buf()),
            list: "ssh".into(),
            duration: Duration::from_secs(600),
            ip,
            from: None,
        }
    }

    #[test]
    fn a_generated_key_is_private_never_overwritten_and_its_knocks_verify() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("knock.key");
        keygen(&path, "alice", "ssh,default", "2h", true, false).unwrap();
        let meta = std::fs::metadata(&path).unwrap();
        assert_eq!(meta.permissions().mode() & 0o777, 0o600);
        let before = std::fs::read(&path).unwrap();
        let refused = format!(
            "{:?}",
            keygen(&path, "bob", "ssh", "1h", false, false).unwrap_err()
        );
        assert!(
            refused.contains("exists: a key is never overwritten"),
            "{refused}"
        );
        assert_eq!(
            std::fs::read(&path).unwrap(),
            before,
            "the key was overwritten"
        );

        // The public line is in the file's comment, as the server reads it.
        let text = String::from_utf8(before).unwrap();
        let line = text
            .lines()
            .find_map(|l| KeyLine::parse(l.strip_prefix("# ")?).ok().flatten())
            .expect("the public line in a comment");
        assert_eq!(line.name, "alice");
        assert!(line.any_ip && line.lists.allows("default"));
        assert_eq!(line.max_for, Duration::from_secs(7200));

        for server in ["127.0.0.1:0", "[::1]:0"] {
            let server = UdpSocket::bind(server).unwrap();
            let at = server.local_addr().unwrap();
            let ip = Some("198.51.100.7".parse().unwrap());
            send(
                &knock_args(&at.ip().to_string(), at.port(), &path, ip),
                false,
            )
            .unwrap();
            let mut buf = [0; 1500];
            let (len, _) = server.recv_from(&mut buf).unwrap();
            let knock = Knock::decode(&buf[..len]).unwrap();
            knock.verify(&line.public).unwrap();
            assert_eq!(
                (
                    knock.ask.key.as_str(),
                    knock.ask.list.as_str(),
                    knock.ask.addr
                ),
                ("alice", "ssh", ip)
            );
            assert_eq!(knock.ask.duration, Duration::from_secs(600));
        }
    }

    #[test]
    fn a_key_others_may_read_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("knock.key");
        keygen(&path, "alice", "ssh", "2h", false, false).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o640)).unwrap();
        let refused = format!(
            "{:?}",
            read_key(&path).err().expect("a key others may read")
        );
        assert!(refused.contains("(mode 640): run `chmod 600"), "{refused}");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o400)).unwrap();
        assert_eq!(read_key(&path).unwrap().name, "alice");
    }

    #[test]
    fn hosts_may_be_addresses_with_or_without_brackets() {
        assert_eq!(
            resolve("[2001:db8::1]", 62201).ok(),
            Some("[2001:db8::1]:62201".parse().unwrap())
        );
        assert_eq!(
            resolve("2001:db8::1", 1).ok(),
            Some("[2001:db8::1]:1".parse().unwrap())
        );
        assert_eq!(
            resolve("198.51.100.1", 2).ok(),
            Some("198.51.100.1:2".parse().unwrap())
        );
        assert!(resolve("localhost", 3).is_ok_and(|a| a.ip().is_loopback()));
    }
}
