//! Revision and on-disk conflicts.

use super::*;

#[test]
fn ctl_if_revision_and_hand_edits_conflict() {
    if !require_root("ctl_if_revision_and_hand_edits_conflict") {
        return;
    }
    let fx = Fx::standard();
    let r = fx.revision();
    let rs = r.to_string();
    fx.ctl(&["add", "198.18.4.0/24", "--if-revision", &rs]).ok();
    assert_eq!(fx.revision(), r + 1);

    let before = fx.snapshot();
    fx.ctl(&["add", "198.18.5.0/24", "--if-revision", &rs])
        .refused(&format!("the list is at revision {}, not {r}", r + 1));
    fx.ctl(&["remove", "198.18.4.0/24", "--if-revision", &rs])
        .refused(&format!("not {r}"));
    fx.assert_unchanged(&before, "stale --if-revision");

    // An edit by hand, without SIGHUP.
    let hand = fx.file()
        + "\n# edited by hand\n[[entries]]\ncidr = \"198.18.6.0/24\"\ncomment = \"by hand\"\n";
    write_atomically(&fx.path, &hand);
    let msg = "config changed on disk; run `allowlistctl reload` first";
    for args in [
        &["add", "198.18.7.0/24"][..],
        &["remove", "198.18.4.0/24"],
        &["edit", "198.18.4.0/24", "--comment", "x"],
        &["deactivate"],
    ] {
        let out = fx.ctl(args);
        out.refused(msg);
        assert_eq!(fx.file(), hand, "the hand edit survives {}", out.shown);
        assert_eq!(fx.revision(), r + 1);
    }
    let cidrs = fx.cidrs();
    assert!(
        !cidrs.contains(&"198.18.6.0/24".to_owned())
            && !cidrs.contains(&"198.18.7.0/24".to_owned()),
        "{cidrs:?}"
    );

    fx.ctl(&["reload"])
        .ok()
        .stdout_has("+ 198.18.6.0/24  by hand  [");
    fx.ctl(&["add", "198.18.7.0/24", "--comment", "after reload"])
        .ok();
    let text = fx.file();
    assert!(text.starts_with(&hand), "the hand edit is kept:\n{text}");
    assert!(text.contains("cidr = \"198.18.7.0/24\""), "{text}");
    let cidrs = fx.cidrs();
    assert!(
        cidrs.contains(&"198.18.6.0/24".to_owned()) && cidrs.contains(&"198.18.7.0/24".to_owned()),
        "{cidrs:?}"
    );
    assert_eq!(fx.revision(), r + 3);
}
