//! `cargo xtask demo`: the real allowlistd in a throwaway lab, narrated.
//!
//! Builds a server and a client namespace joined by veth, starts allowlistd on the server's
//! interface, shows which clients get through to a protected port, reloads a changed config
//! with SIGHUP, stops the daemon with SIGTERM and prints its final counters. Everything it
//! creates is removed when it ends, on error too.

use std::net::{IpAddr, SocketAddr};
use std::process::ExitCode;

use allowlist_tests::bpffs::TestDir;
use allowlist_tests::daemon::{Config, Daemon, RELOAD_TIMEOUT, SpawnOptions};
use allowlist_tests::netns::{
    A4, A6, ALLOWED_V4, ALLOWED_V6, B4, B6, BLOCKED_V4, BLOCKED_V6, Lab, PROTECTED, UNPROTECTED, to,
};
use allowlist_tests::tcp::{self, Listener, Outcome};
use anyhow::{Context as _, bail};
use nix::sys::signal::Signal;

fn main() -> ExitCode {
    if !nix::unistd::geteuid().is_root() {
        eprintln!(
            "allowlist-demo needs root (network namespaces, XDP): run `cargo xtask demo` as root"
        );
        return ExitCode::from(2);
    }
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("demo failed: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Counts verdicts that differ from what the narration expects.
#[derive(Default)]
struct Tally {
    surprises: usize,
}

impl Tally {
    /// Probes `src -> dst` and prints one line; `expect_connect` says what should happen.
    fn probe(&mut self, lab: &Lab, src: IpAddr, label: &str, port: u16, expect_connect: bool) {
        let dst = to(src, port);
        let timeout = if expect_connect {
            tcp::allowed_probe()
        } else {
            tcp::BLOCKED_PROBE
        };
        let outcome = tcp::connect(&lab.client, src, dst, timeout);
        let shown = match &outcome {
            Outcome::TimedOut => "timed out (SYN dropped by XDP)".to_owned(),
            other => other.to_string(),
        };
        let surprise = if outcome.is_connected() == expect_connect {
            ""
        } else {
            self.surprises += 1;
            "   <-- UNEXPECTED"
        };
        println!("  client {src} {label}-> {dst}: {shown}{surprise}");
    }
}

/// A log line without tracing's timestamp, level and target (`2026-...Z  INFO target: msg`),
/// or the whole line if it has another shape.
fn message(line: &str) -> &str {
    let Some((_timestamp, rest)) = line.split_once("Z ") else {
        return line;
    };
    let mut words = rest.trim_start().splitn(2, ' ');
    let (Some(_level), Some(rest)) = (words.next(), words.next()) else {
        return line;
    };
    rest.split_once(": ")
        .map_or(line, |(_target, message)| message)
}

fn run() -> anyhow::Result<()> {
    // Declared in this order so they drop in reverse: daemon, listeners, test dir, lab.
    let lab = Lab::new();
    let dir = TestDir::new();
    let _listeners = [PROTECTED, UNPROTECTED].map(|port| {
        Listener::start(
            &lab.server,
            SocketAddr::new("::".parse().expect("literal"), port),
        )
    });
    println!(
        "lab: server namespace {} ({}: 198.18.0.1/16, 2001:db8::1/64), listening on ports \
         {PROTECTED} and {UNPROTECTED}",
        lab.server.name(),
        lab.server_if()
    );
    println!(
        "     client namespace {} ({}: {ALLOWED_V4}, {BLOCKED_V4}, {ALLOWED_V6}, {BLOCKED_V6})",
        lab.client.name(),
        lab.client_if()
    );

    let config = Config::new(&dir, lab.server_if())
        .entry("198.18.1.0/24", "office network")
        .entry("2001:db8::a/128", "admin workstation");
    let config_path = dir.join("allowlist.toml");
    config.write(&config_path);
    println!("\nconfig {}:", config_path.display());
    for line in config.render().lines() {
        println!("  | {line}");
    }

    println!("\nstarting allowlistd in the server namespace");
    let options = SpawnOptions {
        tag: Some("allowlistd".into()),
        echo: false,
    };
    let mut daemon = Daemon::spawn_with(&lab.server, &config_path, &options);
    let ready = daemon
        .wait_for_log("allowlistd ready", allowlist_tests::daemon::READY_TIMEOUT)
        .context("waiting for the daemon")?;
    println!("  daemon: {}", message(&ready));

    let mut tally = Tally::default();
    println!("\nprotected port {PROTECTED}:");
    tally.probe(&lab, A4, "(allowlisted) ", PROTECTED, true);
    tally.probe(&lab, B4, "(not listed) ", PROTECTED, false);
    tally.probe(&lab, A6, "(allowlisted) ", PROTECTED, true);
    tally.probe(&lab, B6, "(not listed) ", PROTECTED, false);
    println!("unprotected port {UNPROTECTED}:");
    tally.probe(&lab, B4, "(not listed) ", UNPROTECTED, true);

    let ctl = |args: &[&str]| -> anyhow::Result<()> {
        println!("\n$ allowlistctl {}", args.join(" "));
        let out =
            std::process::Command::new(allowlist_tests::daemon::bin_dir().join("allowlistctl"))
                .arg("--socket")
                .arg(&config.control_socket)
                .args(args)
                .env_remove("SSH_CONNECTION")
                .env_remove("SSH_CLIENT")
                .output()
                .context("running allowlistctl")?;
        for line in String::from_utf8_lossy(&out.stdout)
            .lines()
            .chain(String::from_utf8_lossy(&out.stderr).lines())
        {
            println!("  {line}");
        }
        Ok(())
    };
    ctl(&["test", "198.18.2.2"])?;
    ctl(&["blocked"])?;
    ctl(&["list"])?;

    println!("\nadding 198.18.2.0/24 to the config file and sending SIGHUP");
    config
        .clone()
        .entry("198.18.2.0/24", "branch office")
        .write(&config_path);
    daemon.signal(Signal::SIGHUP);
    let (which, line) = daemon
        .wait_for_any(&["reload applied", "reload failed"], RELOAD_TIMEOUT)
        .context("waiting for the reload")?;
    println!("  daemon: {}", message(&line));
    if which != 0 {
        bail!("the reload failed; log:\n{}", daemon.log());
    }
    tally.probe(&lab, B4, "(now listed) ", PROTECTED, true);
    ctl(&["status"])?;

    println!("\nstopping the daemon with SIGTERM");
    daemon.signal(Signal::SIGTERM);
    let status = daemon.wait_exit(RELOAD_TIMEOUT)?;
    for line in daemon.log().lines().filter(|l| l.contains("counters")) {
        println!("  daemon: {}", message(line));
    }
    println!("  daemon exited: {status}");
    let left = dir.bpffs_entries();
    if left.is_empty() {
        println!("  pins removed: the bpffs is empty");
    } else {
        println!("  pins left in the bpffs: {left:?}   <-- UNEXPECTED");
        tally.surprises += 1;
    }
    tally.probe(&lab, B4, "(filter gone) ", PROTECTED, true);

    println!("\nremoving the namespaces and the bpffs");
    if tally.surprises > 0 || !status.success() {
        bail!(
            "{} unexpected result(s); daemon log:\n{}",
            tally.surprises + usize::from(!status.success()),
            daemon.log()
        );
    }
    Ok(())
}
