//! allowlistctl: manage the live allowlist through allowlistd's control socket.

fn main() -> std::process::ExitCode {
    allowlist_ctl::main()
}
