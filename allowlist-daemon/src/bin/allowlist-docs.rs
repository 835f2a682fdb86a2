//! allowlist-docs OUT_DIR: writes the man pages (allowlistd(8), allowlistctl(8),
//! allowlist.toml(5)) and the bash, zsh and fish completions of both commands under OUT_DIR
//! (`cargo xtask install` and `cargo xtask package` run it).

use std::path::PathBuf;
use std::process::ExitCode;

fn main() -> ExitCode {
    let mut args = std::env::args_os().skip(1);
    let (Some(out), None) = (args.next().map(PathBuf::from), args.next()) else {
        eprintln!("usage: allowlist-docs OUT_DIR");
        return ExitCode::from(2);
    };
    match allowlist_daemon::docs::generate(&out) {
        Ok(files) => {
            for file in files {
                println!("{}", file.display());
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("allowlist-docs: {e}");
            ExitCode::FAILURE
        }
    }
}
