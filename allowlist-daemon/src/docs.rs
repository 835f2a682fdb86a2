//! Man pages and shell completions, generated from the same clap definitions the binaries
//! parse, so they cannot drift: allowlistd(8) and allowlistctl(8) from clap (clap_mangen)
//! plus hand-written sections, allowlist.toml(5) hand-written (the config reference), and
//! completions for bash, zsh and fish (clap_complete). `allowlist-docs OUT_DIR` writes them.
//!
//! Layout under the output directory (what `cargo xtask install` copies):
//!
//! ```text
//! man/man8/allowlistd.8  man/man8/allowlistctl.8  man/man5/allowlist.toml.5
//! completions/bash/{allowlistd,allowlistctl}
//! completions/zsh/{_allowlistd,_allowlistctl}
//! completions/fish/{allowlistd,allowlistctl}.fish
//! ```

use std::io::{self, Write};
use std::path::{Path, PathBuf};

use clap::{Command, CommandFactory};
use clap_complete::Shell;
use clap_mangen::Man;

use crate::daemon_args::Args;
use allowlist_ctl::Cli;

/// Hand-written sections appended to the generated pages, and the config reference.
const ALLOWLISTD_EXTRA: &str = include_str!("../../packaging/man/allowlistd.8.extra");
const ALLOWLISTCTL_EXTRA: &str = include_str!("../../packaging/man/allowlistctl.8.extra");
const CONFIG_PAGE: &str = include_str!("../../packaging/man/allowlist.toml.5");

const VERSION: &str = env!("CARGO_PKG_VERSION");
const MANUAL: &str = "allowlist manual";

/// allowlistd's command line, as clap sees it.
pub fn allowlistd_command() -> Command {
    let mut cmd = Args::command().disable_help_subcommand(true);
    cmd.build();
    cmd
}

/// allowlistctl's command line, as clap sees it.
pub fn allowlistctl_command() -> Command {
    let mut cmd = Cli::command().disable_help_subcommand(true);
    cmd.build();
    cmd
}

/// Writes every man page and completion file under `out`; returns the files written.
pub fn generate(out: &Path) -> io::Result<Vec<PathBuf>> {
    let mut written = Vec::new();
    let pages = [
        ("man/man8/allowlistd.8", allowlistd_page()?),
        ("man/man8/allowlistctl.8", allowlistctl_page()?),
        ("man/man5/allowlist.toml.5", config_page()),
    ];
    for (path, text) in pages {
        written.push(write(out, path, text.as_bytes())?);
    }
    for (name, cmd) in [
        ("allowlistd", allowlistd_command()),
        ("allowlistctl", allowlistctl_command()),
    ] {
        for (shell, dir, file) in [
            (Shell::Bash, "bash", name.to_owned()),
            (Shell::Zsh, "zsh", format!("_{name}")),
            (Shell::Fish, "fish", format!("{name}.fish")),
        ] {
            let mut buf = Vec::new();
            clap_complete::generate(shell, &mut cmd.clone(), name, &mut buf);
            written.push(write(out, &format!("completions/{dir}/{file}"), &buf)?);
        }
    }
    Ok(written)
}

fn write(out: &Path, relative: &str, bytes: &[u8]) -> io::Result<PathBuf> {
    let path = out.join(relative);
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(&path, bytes)
        .map_err(|e| io::Error::new(e.kind(), format!("writing {}: {e}", path.display())))?;
    Ok(path)
}

fn man(cmd: Command, section: &str) -> Man {
    Man::new(cmd)
        .section(section)
        .source(format!("allowlist {VERSION}"))
        .manual(MANUAL)
}

/// Renders one part of a page and drops its `.SH` heading line(s), so the part can be placed
/// under a heading of the caller's choice.
fn without_headings(render: impl FnOnce(&mut Vec<u8>) -> io::Result<()>) -> io::Result<String> {
    let mut buf = Vec::new();
    render(&mut buf)?;
    let text = String::from_utf8_lossy(&buf);
    Ok(text
        .lines()
        .filter(|line| !line.starts_with(".SH"))
        .map(|line| format!("{line}\n"))
        .collect())
}

/// What both pages start with: title, name, synopsis, description, options.
fn render_head(page: &clap_mangen::Man, out: &mut Vec<u8>) -> io::Result<()> {
    page.render_title(out)?;
    page.render_name_section(out)?;
    page.render_synopsis_section(out)?;
    page.render_description_section(out)?;
    page.render_options_section(out)
}

/// allowlistd(8): the generated synopsis and options, then signals, systemd, files.
pub fn allowlistd_page() -> io::Result<String> {
    let page = man(allowlistd_command(), "8");
    let mut out = Vec::new();
    render_head(&page, &mut out)?;
    out.write_all(ALLOWLISTD_EXTRA.as_bytes())?;
    page.render_version_section(&mut out)?;
    Ok(String::from_utf8_lossy(&out).into_owned())
}

/// allowlistctl(8): the generated synopsis and global options, then every subcommand (and
/// sub-subcommand) with its own synopsis and options, then exit codes and files.
pub fn allowlistctl_page() -> io::Result<String> {
    let cmd = allowlistctl_command();
    let globals: Vec<String> = cmd
        .get_arguments()
        .filter(|a| a.is_global_set())
        .map(|a| a.get_id().to_string())
        .collect();
    let page = man(cmd.clone(), "8");
    let mut out = Vec::new();
    render_head(&page, &mut out)?;
    writeln!(out, ".SH COMMANDS")?;
    for sub in cmd.get_subcommands() {
        render_subcommand(&mut out, sub, &globals)?;
    }
    out.write_all(ALLOWLISTCTL_EXTRA.as_bytes())?;
    page.render_version_section(&mut out)?;
    Ok(String::from_utf8_lossy(&out).into_owned())
}

fn render_subcommand(out: &mut Vec<u8>, sub: &Command, globals: &[String]) -> io::Result<()> {
    // The global options are described once, at the top.
    let mut shown = sub.clone();
    for id in globals {
        if shown.get_arguments().any(|a| a.get_id() == id.as_str()) {
            shown = shown.mut_arg(id.as_str(), |a| a.hide(true));
        }
    }
    let name = sub.get_bin_name().unwrap_or_else(|| sub.get_name());
    writeln!(out, ".SS \"{name}\"")?;
    let page = man(shown, "8");
    let synopsis = without_headings(|w| page.render_synopsis_section(w))?;
    out.write_all(synopsis.as_bytes())?;
    writeln!(out, ".PP")?;
    let description = without_headings(|w| page.render_description_section(w))?;
    out.write_all(description.as_bytes())?;
    let has_options = sub
        .get_arguments()
        .any(|a| !a.is_hide_set() && !globals.iter().any(|g| a.get_id() == g.as_str()));
    if has_options {
        let options = without_headings(|w| page.render_options_section(w))?;
        writeln!(out, ".RS")?;
        out.write_all(options.as_bytes())?;
        writeln!(out, ".RE")?;
    }
    for nested in sub.get_subcommands() {
        render_subcommand(out, nested, globals)?;
    }
    Ok(())
}

/// allowlist.toml(5): hand-written (the file's keys are not a clap definition), stamped
/// with the version.
pub fn config_page() -> String {
    CONFIG_PAGE.replace("@VERSION@", VERSION)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ctl_page_has_every_subcommand_and_no_help_subcommand() {
        let page = allowlistctl_page().expect("rendering allowlistctl(8)");
        for sub in allowlistctl_command().get_subcommands() {
            let heading = format!(".SS \"allowlistctl {}\"", sub.get_name());
            assert!(page.contains(&heading), "no {heading} in:\n{page}");
        }
        assert!(!page.contains(".SS \"allowlistctl help\""));
        assert!(page.contains(".SS \"allowlistctl audit verify\""));
    }

    #[test]
    fn the_daemon_page_is_named_allowlistd() {
        let page = allowlistd_page().expect("rendering allowlistd(8)");
        assert!(page.contains("\n.TH allowlistd 8 "), "{page}");
    }
}
