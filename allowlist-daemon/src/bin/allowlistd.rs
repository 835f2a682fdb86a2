//! allowlistd: keeps the XDP allowlist filter attached and its maps in step with the config.

use std::process::ExitCode;

use allowlist_config::{self as config, words};
use allowlist_daemon::daemon;
use allowlist_daemon::daemon_args::Args;
use clap::Parser;
use tracing::error;

fn main() -> ExitCode {
    let args = Args::parse();
    allowlist_daemon::logging::init(config::Config::read_log_format(&args.config));
    if args.check {
        let max_problems = if args.all_problems {
            usize::MAX
        } else {
            config::MAX_PROBLEMS
        };
        return check(&args.config, max_problems);
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
        Ok(daemon::Exit::Stopped) => ExitCode::SUCCESS,
        Ok(daemon::Exit::HandedOver) => ExitCode::from(daemon::HANDOVER_EXIT_STATUS),
        Err(e) => {
            error!("{e:#}");
            ExitCode::FAILURE
        }
    }
}

/// `--check`: everything start-up checks before changing anything in the kernel (the config,
/// every problem at once, then the kernel's features, as `daemon::run` probes them).
fn check(path: &std::path::Path, max_problems: usize) -> ExitCode {
    match config::Config::read_checked(path, max_problems) {
        Ok((c, _)) => {
            if let Err(e) = allowlist_loader::kernel::require_features() {
                eprintln!("{e:#}");
                return ExitCode::FAILURE;
            }
            let v4 = c.entries.iter().filter(|e| e.net.addr().is_ipv4()).count();
            let interfaces = if c.interfaces.is_empty() {
                "none".to_owned()
            } else {
                c.interfaces.join(", ")
            };
            // Merged list-file lines close the same line: one line says it all.
            let merged = c
                .merged_summary()
                .map_or_else(String::new, |m| format!("; {m}"));
            let protection = if c.has_named_lists() {
                format!("interfaces {interfaces}; lists: {}", c.lists_summary())
            } else {
                format!(
                    "ports {}; interfaces {interfaces}; {}",
                    words::ports(&c.protected_tcp_ports),
                    if c.active { "active" } else { "inactive" }
                )
            };
            // The drop-ins read with it, when `include` matched some.
            let drop_ins = if c.drop_ins.is_empty() {
                String::new()
            } else {
                let names = c.drop_ins.iter().map(|d| words::file_name(&d.path));
                format!(
                    "; {} ({})",
                    words::count(c.drop_ins.len(), "drop-in", "drop-ins"),
                    words::list(names)
                )
            };
            println!(
                "{}: ok: {} ({v4} IPv4, {} IPv6); {protection}{drop_ins}{merged}",
                path.display(),
                words::count(c.entries.len(), "entry", "entries"),
                c.entries.len() - v4,
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{e}");
            ExitCode::FAILURE
        }
    }
}
