//! `test` agrees with real connects.

use super::*;

#[test]
fn ctl_test_agrees_with_real_connects() {
    if !require_root("ctl_test_agrees_with_real_connects") {
        return;
    }
    let fx = Fx::standard();
    let check = |state: &str, expected_allowed: &dyn Fn(IpAddr, u16) -> bool| {
        for src in [A4, B4, A6, B6] {
            for port in [PROTECTED, UNPROTECTED] {
                let out = fx.ctl(&["test", &src.to_string(), "--port", &port.to_string()]);
                assert!(out.code == 0 || out.code == 1, "{out}");
                let connected = fx.connects(src, port);
                assert_eq!(
                    out.code == 0,
                    connected,
                    "{state}: `test {src} --port {port}` disagrees with a real connect (which {}): {out}",
                    if connected { "connected" } else { "timed out" }
                );
                assert_eq!(
                    connected,
                    expected_allowed(src, port),
                    "{state}: {src} -> port {port}"
                );
            }
        }
    };
    check("initial", &|src, port| {
        port == UNPROTECTED || src == A4 || src == A6
    });
    fx.ctl(&["add", "198.18.2.0/24", "--comment", "lab B"]).ok();
    check("after adding 198.18.2.0/24", &|src, port| {
        port == UNPROTECTED || src != B6
    });
    fx.ctl(&["deactivate"]).ok();
    check("inactive", &|_, _| true);
}
