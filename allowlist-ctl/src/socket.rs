//! Which control socket allowlistctl talks to: `--socket`, else the `control_socket` of
//! `--config FILE`, else `$ALLOWLIST_SOCKET`, else that of the default config file (when it
//! exists and can be read), else the built-in default. Explicit options beat the environment,
//! so a command line always means what it says.

use std::path::{Path, PathBuf};

use super::failure::Failure;
use allowlist_config::{self as config, Config, ConfigError};
use allowlist_control::DEFAULT_SOCKET;

pub const ENV: &str = "ALLOWLIST_SOCKET";

/// The socket, and how it was found (for the "cannot reach" message).
pub struct Target {
    pub path: PathBuf,
    pub found: String,
}

pub fn resolve(socket: Option<PathBuf>, config: Option<&Path>) -> Result<Target, Failure> {
    if let Some(path) = socket {
        return Ok(Target {
            path,
            found: "--socket".into(),
        });
    }
    if let Some(file) = config {
        let path = Config::read_control_socket(file).map_err(|e| {
            Failure::invalid(format!(
                "--config {}: {}; give the config file allowlistd runs with (or --socket PATH)",
                file.display(),
                one_line(&e)
            ))
        })?;
        return Ok(Target {
            path,
            found: format!("control_socket in {}", file.display()),
        });
    }
    if let Some(path) = std::env::var_os(ENV).filter(|p| !p.is_empty()) {
        return Ok(Target {
            path: path.into(),
            found: format!("${ENV}"),
        });
    }
    let default = Path::new(config::DEFAULT_PATH);
    match Config::read_control_socket(default) {
        Ok(path) => Ok(Target {
            path,
            found: format!("control_socket in {}", default.display()),
        }),
        // No config here (or not ours to read, as for a control_group member): the default.
        Err(ConfigError::Io { .. }) => Ok(Target {
            path: DEFAULT_SOCKET.into(),
            found: "the default".into(),
        }),
        Err(e) => Ok(Target {
            path: DEFAULT_SOCKET.into(),
            found: format!(
                "the default, as {} is unusable ({})",
                default.display(),
                one_line(&e)
            ),
        }),
    }
}

/// A config error as one line: several problems are joined with "; ".
fn one_line(e: &ConfigError) -> String {
    e.to_string().lines().collect::<Vec<_>>().join("; ")
}
