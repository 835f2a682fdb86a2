//! allowlistd: keeps the XDP allowlist filter attached and its maps in step with the config.

use std::process::ExitCode;

use allowlist_config as config;
use allowlist_daemon::daemon_args::Args;
use allowlist_daemon::{check, daemon};
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
        return check::check(&args.config, &args.candidate, max_problems);
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
