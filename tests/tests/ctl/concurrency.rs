//! Concurrent changes.

use super::*;

#[test]
fn ctl_concurrent_adds_all_apply_one_revision_each() {
    if !require_root("ctl_concurrent_adds_all_apply_one_revision_each") {
        return;
    }
    const N: usize = 20;
    let fx = Fx::standard();
    let r0 = fx.revision();
    let barrier = Arc::new(Barrier::new(N));
    let outs: Vec<Out> = std::thread::scope(|s| {
        let handles: Vec<_> = (1..=N)
            .map(|i| {
                let barrier = Arc::clone(&barrier);
                let mut cmd = fx.cmd(&[
                    "--json",
                    "add",
                    &format!("198.18.3.{i}"),
                    "--comment",
                    &format!("concurrent {i}"),
                ]);
                s.spawn(move || {
                    barrier.wait();
                    run(&mut cmd)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let mut revisions = Vec::new();
    for out in &outs {
        let json = out.ok().json();
        revisions.push(json["revision"].as_u64().unwrap());
    }
    revisions.sort_unstable();
    let expected: Vec<u64> = (r0 + 1..=r0 + N as u64).collect();
    assert_eq!(
        revisions, expected,
        "each add reports its own revision, one step each"
    );
    assert_eq!(fx.revision(), r0 + N as u64);
    let entries = fx.entries();
    let text = fx.file();
    for i in 1..=N {
        let cidr = format!("198.18.3.{i}/32");
        assert!(
            entries
                .iter()
                .any(|(c, comment, _)| *c == cidr && *comment == format!("concurrent {i}")),
            "{cidr} missing from the list: {entries:?}"
        );
        assert!(
            text.contains(&format!("cidr = \"{cidr}\"")),
            "{cidr} missing from the file:\n{text}"
        );
    }
    assert_eq!(entries.len(), 2 + N);
}
