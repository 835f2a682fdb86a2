//! allowlistd: keeps the XDP allowlist filter attached and its maps in step with the config.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use allowlist_daemon::{config, daemon};
use clap::Parser;
use tracing::error;

#[derive(Parser)]
#[command(
    version,
    about = "Drops new TCP connections to protected ports from sources outside the allowlist (XDP)."
)]
struct Args {
    /// The config file.
    #[arg(long, short, default_value = config::DEFAULT_PATH)]
    config: PathBuf,
    /// Validate the config file and exit: 0 if valid, 1 if not. Touches nothing in the kernel.
    #[arg(long)]
    check: bool,
    /// Break glass: start with enforcement lifted for --for (at most 24h), audited. Ends by
    /// itself.
    #[arg(long, requires = "reason")]
    emergency_disable_on_start: bool,
    /// Why the emergency disable is needed (goes into the audit log).
    #[arg(long, requires = "emergency_disable_on_start")]
    reason: Option<String>,
    /// How long the emergency disable lasts, e.g. 90m, 4h (default and maximum 24h).
    #[arg(long = "for", value_name = "DURATION", default_value = "24h", value_parser = humantime::parse_duration)]
    duration: std::time::Duration,
}

fn main() -> ExitCode {
    let args = Args::parse();
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    if args.check {
        return check(&args.config);
    }
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            error!("starting the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let start = daemon::StartOptions {
        emergency: args
            .emergency_disable_on_start
            .then(|| (args.duration, args.reason.unwrap_or_default())),
    };
    match runtime.block_on(daemon::run(&args.config, start)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            error!("{e:#}");
            ExitCode::FAILURE
        }
    }
}

fn check(path: &std::path::Path) -> ExitCode {
    let result = config::Config::load(path).and_then(|c| {
        c.check_interfaces_exist()?;
        Ok(c)
    });
    match result {
        Ok(c) => {
            let v4 = c.entries.iter().filter(|e| e.net.addr().is_ipv4()).count();
            println!(
                "{}: ok: {} entries ({v4} IPv4, {} IPv6), ports {:?}, interfaces {:?}, {}",
                path.display(),
                c.entries.len(),
                c.entries.len() - v4,
                c.protected_tcp_ports,
                c.interfaces,
                if c.active { "active" } else { "inactive" }
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{e}");
            ExitCode::FAILURE
        }
    }
}
