//! `list`'s filters, checked once against the config (a bad address or an unknown file is
//! refused, naming what would work) and then applied to each entry.

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use super::commands::{Refusal, invalid};
use allowlist_config::{Config, Entry};
use allowlist_control::protocol::ListQuery;

pub(super) struct Filter {
    contains: Option<IpAddr>,
    /// Lowercase.
    comment: Option<String>,
    file: Option<PathBuf>,
    /// The index of the list in the config, and its name.
    list: Option<u8>,
    list_name: Option<String>,
}

impl Filter {
    pub(super) fn new(query: &ListQuery, config: &Config) -> Result<Filter, Refusal> {
        let contains = query
            .contains
            .as_deref()
            .map(|text| {
                text.trim()
                    .parse::<IpAddr>()
                    // The program judges IPv4-mapped sources by the IPv4 entries.
                    .map(|ip| ip.to_canonical())
                    .map_err(|_| {
                        invalid(format!(
                            "--contains `{text}` is not an IP address (e.g. 198.18.1.7 or 2001:db8::7)"
                        ))
                    })
            })
            .transpose()?;
        let file = query
            .file
            .as_deref()
            .map(|text| file_named(text, config))
            .transpose()?;
        let list = query
            .list
            .as_deref()
            .map(|name| super::commands::list_named(config, name).map(|(index, _)| index))
            .transpose()?;
        Ok(Filter {
            contains,
            comment: query.comment.as_deref().map(str::to_lowercase),
            file,
            list,
            list_name: query.list.clone(),
        })
    }

    pub(super) fn keeps(&self, entry: &Entry) -> bool {
        self.list.is_none_or(|l| entry.list == l)
            && self.contains.is_none_or(|ip| entry.net.contains(&ip))
            && self.file.as_deref().is_none_or(|f| *entry.file == f)
            && self
                .comment
                .as_deref()
                .is_none_or(|c| entry.comment.to_lowercase().contains(c))
    }
}

impl Filter {
    /// `keeps` for an entry no longer in the config (`list --expired`): by list, address
    /// and comment.
    pub(super) fn keeps_info(&self, info: &allowlist_control::protocol::EntryInfo) -> bool {
        let net = allowlist_config::parse_net(&info.cidr).ok();
        self.list_name.as_deref().is_none_or(|l| info.list == l)
            && self
                .contains
                .is_none_or(|ip| net.is_some_and(|n| n.contains(&ip)))
            && self
                .comment
                .as_deref()
                .is_none_or(|c| info.comment.to_lowercase().contains(c))
    }
}

/// The config file, a drop-in or a list file `text` names: as the CLI resolved it, as
/// `list_files` writes it (relative to the config's directory), or the same file by another
/// path.
pub(super) fn file_named(text: &str, config: &Config) -> Result<PathBuf, Refusal> {
    let given = Path::new(text);
    let base = config.path.parent().unwrap_or(Path::new(""));
    let canonical = |p: &Path| std::fs::canonicalize(p).ok();
    let given_canonical = canonical(given).or_else(|| canonical(&base.join(given)));
    let files = std::iter::once(&config.path)
        .chain(config.drop_ins.iter().map(|d| &d.path))
        .chain(&config.list_files);
    for file in files.clone() {
        if file == given
            || *file == base.join(given)
            || given_canonical.is_some() && canonical(file) == given_canonical
        {
            return Ok(file.clone());
        }
    }
    let known: Vec<String> = files.map(|f| f.display().to_string()).collect();
    Err(invalid(format!(
        "--file `{text}` is neither the config file nor one of its list files or drop-ins; give one of: {}",
        known.join(", ")
    )))
}
