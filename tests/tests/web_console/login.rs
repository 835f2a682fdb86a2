//! A real login as a non-root admin: a user made for this run, Cockpit's login form
//! (cockpit-ws without `--local-session`, so cockpit-session authenticates through PAM), the
//! page in limited access saying that it needs administrative access, then Cockpit's
//! "superuser" through sudo and a change whose audit record names the Cockpit user.

use std::os::unix::fs::PermissionsExt as _;
use std::process::Command;
use std::time::{Duration, Instant, SystemTime};

use allowlist_tests::package::run_ok;

use super::*;

/// A user with a password, allowed sudo by a drop-in, and a directory holding a copy of
/// allowlistctl that any user can run (the build may sit where only root can reach it).
/// Dropping it removes the drop-in, ends the user's processes and removes the user.
struct Admin {
    name: String,
    password: String,
    sudoers: PathBuf,
    tools: tempfile::TempDir,
}

impl Admin {
    /// `alw-<pid>`, whose login sessions talk to the daemon at `socket` (through pam_env,
    /// which Debian's /etc/pam.d/cockpit reads from the user's ~/.pam_environment, and sudo,
    /// told by the drop-in to keep it) and find the page `dist` among the user's own Cockpit
    /// packages (a session's bridge has none of cockpit-ws's environment).
    fn create(socket: &Path, dist: &Path) -> Admin {
        let name = format!("alw-{}", std::process::id());
        let nanos = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .expect("the clock is after 1970")
            .as_nanos();
        let tools = tempfile::Builder::new()
            .prefix("allowlist-cockpit-bin-")
            .tempdir()
            .expect("a directory for allowlistctl");
        let home = PathBuf::from("/home").join(&name);
        run_ok(
            Command::new("useradd")
                .args(["--create-home", "--home-dir"])
                .arg(&home)
                .args([
                    "--shell",
                    "/bin/sh",
                    "--comment",
                    "allowlist web console test",
                    &name,
                ]),
        );
        let admin = Admin {
            sudoers: PathBuf::from("/etc/sudoers.d").join(&name),
            password: format!("{name}-{nanos:x}"),
            name,
            tools,
        };
        // chpasswd reads `name:password` lines on stdin.
        run_ok(Command::new("sh").args([
            "-c",
            "printf '%s:%s\\n' \"$1\" \"$2\" | chpasswd",
            "sh",
            &admin.name,
            &admin.password,
        ]));
        std::fs::write(
            home.join(".pam_environment"),
            format!("ALLOWLIST_SOCKET DEFAULT={}\n", socket.display()),
        )
        .expect("writing ~/.pam_environment");
        let page = home.join(".local/share/cockpit/allowlist");
        std::fs::create_dir_all(&page).expect("creating ~/.local/share/cockpit/allowlist");
        for file in std::fs::read_dir(dist).expect("reading the built page") {
            let file = file.expect("reading the built page").path();
            std::fs::copy(&file, page.join(file.file_name().expect("a file name")))
                .unwrap_or_else(|e| panic!("copying {}: {e}", file.display()));
        }
        run_ok(
            Command::new("chown")
                .args(["-R", &format!("{0}:{0}", admin.name)])
                .arg(home.join(".local")),
        );
        let open = std::fs::Permissions::from_mode(0o755);
        std::fs::set_permissions(admin.tools.path(), open.clone()).expect("chmod the tools");
        let ctl = admin.tools.path().join("allowlistctl");
        std::fs::copy(
            allowlist_tests::daemon::bin_dir().join("allowlistctl"),
            &ctl,
        )
        .expect("copying allowlistctl");
        std::fs::set_permissions(&ctl, open).expect("chmod allowlistctl");
        // Checked by visudo under a name sudo skips (it has a dot), then moved into place.
        let draft = admin.sudoers.with_extension("draft");
        std::fs::write(
            &draft,
            format!(
                "{name} ALL=(ALL:ALL) ALL\n\
                 Defaults:{name} secure_path=\"{}\", env_keep += \"ALLOWLIST_SOCKET\"\n",
                admin.path(),
                name = admin.name
            ),
        )
        .expect("writing the sudoers drop-in");
        std::fs::set_permissions(&draft, std::fs::Permissions::from_mode(0o440))
            .expect("chmod the sudoers drop-in");
        run_ok(Command::new("visudo").arg("-cf").arg(&draft));
        std::fs::rename(&draft, &admin.sudoers).expect("installing the sudoers drop-in");
        admin
    }

    /// PATH for the user's sessions and sudo: allowlistctl where the package would put it.
    fn path(&self) -> String {
        format!(
            "{}:/usr/sbin:/usr/bin:/sbin:/bin",
            self.tools.path().display()
        )
    }

    /// The processes running as this user.
    fn processes(&self) -> Vec<nix::unistd::Pid> {
        let Some(user) = nix::unistd::User::from_name(&self.name).ok().flatten() else {
            return Vec::new();
        };
        let uid = user.uid.to_string();
        let Ok(dir) = std::fs::read_dir("/proc") else {
            return Vec::new();
        };
        dir.filter_map(Result::ok)
            .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
            .filter(|pid| {
                std::fs::read_to_string(format!("/proc/{pid}/status")).is_ok_and(|status| {
                    status
                        .lines()
                        .find_map(|l| l.strip_prefix("Uid:"))
                        .and_then(|ids| ids.split_whitespace().next())
                        == Some(uid.as_str())
                })
            })
            .map(nix::unistd::Pid::from_raw)
            .collect()
    }
}

impl Drop for Admin {
    /// A login leaves the session's D-Bus daemon and ssh-agent behind, and userdel refuses
    /// a user with processes: they go first.
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.sudoers);
        let _ = std::fs::remove_file(self.sudoers.with_extension("draft"));
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let left = self.processes();
            if left.is_empty() || Instant::now() > deadline {
                break;
            }
            for pid in left {
                let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        match Command::new("userdel")
            .args(["--remove", &self.name])
            .output()
        {
            Ok(out) if out.status.success() => {}
            Ok(out) => eprintln!(
                "web_console: userdel {}: {}",
                self.name,
                String::from_utf8_lossy(&out.stderr)
            ),
            Err(e) => eprintln!("web_console: userdel {}: {e}", self.name),
        }
    }
}

#[test]
fn a_non_root_admin_logs_in_and_the_audit_names_them() {
    let test = "a_non_root_admin_logs_in_and_the_audit_names_them";
    let Some(dist) = root_and_page(test) else {
        return;
    };
    let desk = format!("{ALLOWED_V4}/32");
    let run =
        Running::start(|dir, iface| Config::new(dir, iface).entry(&desk, "admin desk").render());
    let admin = Admin::create(&run.socket, &dist);
    // cockpit-session gives the session a PATH of its own unless Cockpit's test switch says
    // to keep cockpit-ws's: the test's allowlistctl stands where the package puts it.
    let ws = CockpitWs::start(
        Session::Login,
        &run.lab.server,
        &SERVER_V4.to_string(),
        COCKPIT_PORT,
        &dist,
        &[("PATH", &admin.path()), ("COCKPIT_TEST_KEEP_PATH", "1")],
    );
    let mut b = Browser::log_in(
        run.client(),
        &format!("{}/allowlist", ws.url),
        "cockpit1:localhost/allowlist",
        (&admin.name, &admin.password),
    );

    // Limited access: allowlistctl runs as the user, whom the socket refuses. The page says
    // what it needs, and offers nothing that cannot work.
    b.wait("[data-test=needs-admin]", "this session has limited access");
    b.wait(".pf-v5-c-alert", "Permission denied");
    b.gone("[data-test=tab-Entries]");
    b.screenshot(&screenshots().join("limited-access.png"));
    let records = run.audit().len();

    // Administrative access through sudo: the page reloads with it; the login handed over
    // the browser's address.
    b.superuser(&admin.password);
    b.wait("[data-test=state]", &format!("your address: {ALLOWED_V4}"));
    b.wait(&format!("[data-cidr='{desk}']"), "admin desk");

    // A change from the page: made as root, recorded for the Cockpit user.
    b.click("[data-test=add]");
    b.fill("#entry-cidr", "198.18.2.0/24");
    b.fill("#entry-comment", "lab B");
    b.click("[data-test=dialog-action]");
    b.gone(".pf-v5-c-modal-box");
    b.wait("[data-cidr='198.18.2.0/24']", "lab B");
    assert!(entries(&run).contains(&("198.18.2.0/24".into(), "lab B".into())));
    let record = last_audit(&run, "add", "ok");
    assert_eq!(run.audit().len(), records + 1, "{record:#}");
    assert_eq!(record["actor"]["user"], "root", "{record:#}");
    assert_eq!(record["actor"]["uid"], 0, "{record:#}");
    assert_eq!(record["actor"]["on_behalf_of"], admin.name, "{record:#}");
    run.ctl(&["audit", "--action", "add"])
        .ok()
        .stdout_has(&format!("root for {} (uid 0, pid ", admin.name));
    assert_connects(run.client(), B4, protected(), "198.18.2.0/24 was added");
}
