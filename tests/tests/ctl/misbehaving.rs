//! Misbehaving clients.

use super::*;

/// Reads one framed answer from `stream`: `Ok(None)` if the daemon closed without one.
fn read_answer(stream: &mut UnixStream) -> std::io::Result<Option<Value>> {
    match protocol::read_frame(stream, protocol::MAX_REPLY) {
        Ok(body) => {
            let text = String::from_utf8_lossy(&body);
            serde_json::from_str::<Value>(&text)
                .map(Some)
                .map_err(|e| std::io::Error::other(format!("answer {text:?}: {e}")))
        }
        Err(protocol::FrameError::Truncated) => Ok(None),
        Err(protocol::FrameError::Io(e)) => Err(e),
        Err(e) => Err(std::io::Error::other(e.to_string())),
    }
}

/// Sends `body` as one frame on a fresh connection and returns the daemon's answer.
#[track_caller]
fn raw_request(socket: &Path, body: &[u8]) -> Value {
    let mut stream = UnixStream::connect(socket).expect("connecting to the control socket");
    stream
        .set_read_timeout(Some(Duration::from_secs(3)))
        .unwrap();
    let mut frame = u32::try_from(body.len()).unwrap().to_be_bytes().to_vec();
    frame.extend_from_slice(body);
    stream.write_all(&frame).expect("sending the request");
    read_answer(&mut stream)
        .unwrap_or_else(|e| panic!("no answer to {:?}: {e}", String::from_utf8_lossy(body)))
        .unwrap_or_else(|| {
            panic!(
                "closed without answering {:?}",
                String::from_utf8_lossy(body)
            )
        })
}

#[track_caller]
fn assert_error(answer: &Value, kind: &str, needle: &str) {
    assert_eq!(answer["outcome"].as_str(), Some("error"), "{answer:?}");
    assert_eq!(answer["kind"].as_str(), Some(kind), "{answer:?}");
    assert!(
        answer["message"]
            .as_str()
            .is_some_and(|m| m.contains(needle)),
        "the message should contain {needle:?}: {answer:?}"
    );
}

#[test]
fn ctl_garbage_clients_do_not_block_good_ones() {
    if !require_root("ctl_garbage_clients_do_not_block_good_ones") {
        return;
    }
    let fx = Fx::standard();
    let connect = || {
        let s = UnixStream::connect(&fx.socket).expect("connecting to the control socket");
        s.set_read_timeout(Some(Duration::from_secs(8))).unwrap();
        s
    };
    let t0 = Instant::now();
    // Sends nothing.
    let mut silent = connect();
    // Announces 100 bytes, sends 5, stalls.
    let mut stalled = connect();
    stalled.write_all(&[0, 0, 0, 100]).unwrap();
    stalled.write_all(b"{\"ver").unwrap();
    // Announces 2 MiB.
    let mut oversized = connect();
    oversized.write_all(&(2u32 << 20).to_be_bytes()).unwrap();
    // Connects and goes away.
    drop(connect());

    let started = Instant::now();
    let out = fx.ctl(&["status"]);
    let took = started.elapsed();
    out.ok().stdout_has("allowlist:  ACTIVE");
    assert!(
        took < Duration::from_secs(1),
        "status took {took:?} while other clients stall"
    );

    oversized
        .set_read_timeout(Some(Duration::from_secs(2)))
        .unwrap();
    let answer = read_answer(&mut oversized)
        .expect("an answer to the oversized frame")
        .expect("an answer, not a bare close");
    assert_error(
        &answer,
        "bad-request",
        "2097152 bytes is larger than the limit of 1048576",
    );
    assert_eq!(answer["version"].as_u64(), Some(1));

    assert_error(
        &raw_request(
            &fx.socket,
            br#"{"version": 99, "command": {"name": "status"}}"#,
        ),
        "unsupported-version",
        "unsupported protocol version 99; this allowlistd speaks [1]",
    );
    assert_error(
        &raw_request(&fx.socket, br#"{"command": {"name": "status"}}"#),
        "unsupported-version",
        "[1]",
    );
    assert_error(
        &raw_request(&fx.socket, b"{not json"),
        "bad-request",
        "malformed request",
    );
    assert_error(
        &raw_request(&fx.socket, b""),
        "bad-request",
        "malformed request",
    );
    assert_error(
        &raw_request(
            &fx.socket,
            br#"{"version": 1, "command": {"name": "explode"}}"#,
        ),
        "bad-request",
        "not understood",
    );
    // A well-formed raw request works.
    let answer = raw_request(
        &fx.socket,
        br#"{"version": 1, "command": {"name": "list"}}"#,
    );
    assert_eq!(answer["outcome"].as_str(), Some("ok"), "{answer:?}");
    assert_eq!(answer["reply"]["kind"].as_str(), Some("list"), "{answer:?}");

    // The stalled clients get an error (or are closed) after the 5 s read deadline.
    for (name, stream) in [("silent", &mut silent), ("stalled", &mut stalled)] {
        match read_answer(stream) {
            Ok(Some(answer)) => {
                assert_error(&answer, "bad-request", "no complete request within 5s");
            }
            Ok(None) => {}
            Err(e) => panic!("the {name} client saw neither an answer nor a close: {e}"),
        }
        let after = t0.elapsed();
        assert!(
            after < Duration::from_millis(6500),
            "the {name} client was dealt with only after {after:?}"
        );
    }
    fx.ctl(&["status"]).ok();
}
