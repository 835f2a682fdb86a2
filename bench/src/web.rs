//! Part 6: the web console's first screen at a million entries. The release allowlistd as
//! part 3 starts it, cockpit-ws serving the built page (the local session, as root) in the
//! server's namespace, and Chromium in the client's, driven as the page's browser test does.
//! A load is the shell's URL navigated to again (the browser's cache warm, as for an admin
//! coming back), timed by the driver until the entries table shows its first row.

use std::path::Path;

use anyhow::Result;
use serde_json::{Value, json};

use super::control;
use super::lists::List;
use super::stats::Summary;
use allowlist_tests::cockpit::{Browser, CockpitWs, Session};
use allowlist_tests::daemon;
use allowlist_tests::netns::SERVER_V4;

pub struct Settings {
    pub entries: usize,
    pub loads: usize,
    pub seed: u64,
}

pub struct Outcome {
    pub entries: usize,
    pub loads_ms: Vec<f64>,
    pub median_ms: f64,
}

impl Outcome {
    pub fn json(&self) -> Value {
        json!({ "entries": self.entries, "loads_ms": self.loads_ms, "median_ms": self.median_ms })
    }
}

/// The page's first row of entries.
const FIRST_ROW: &str = "[data-test=entries-table] tbody tr[data-cidr]";

pub fn run(settings: &Settings, dist: &Path) -> Result<Outcome> {
    let (n4, n6) = control::split(settings.entries);
    let started = control::start(
        settings.entries,
        &List::v4(n4, settings.seed).nets,
        &List::v6(n6, settings.seed).nets,
    )?;
    let socket = started.dir.join("control.sock");
    let path = format!(
        "{}:{}",
        daemon::bin_dir().display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let ws = CockpitWs::start(
        Session::Local,
        &started.lab.server,
        &SERVER_V4.to_string(),
        9090,
        dist,
        &[
            ("ALLOWLIST_SOCKET", &socket.to_string_lossy()),
            ("PATH", &path),
        ],
    );
    let mut browser = Browser::open(
        &started.lab.client,
        &format!("{}/allowlist", ws.url),
        Some("cockpit1:localhost/allowlist"),
    );
    let loads_ms: Vec<f64> = (0..settings.loads)
        .map(|_| browser.load_ms(FIRST_ROW))
        .collect();
    let median_ms = Summary::of(&loads_ms).median;
    eprintln!(
        "bench: web console first screen at {} entries: {median_ms:.0} ms (median of {} loads)",
        settings.entries, settings.loads
    );
    Ok(Outcome {
        entries: settings.entries,
        loads_ms,
        median_ms,
    })
}
