//! Fuzzing the control protocol's decoders for a bounded time (see `allowlist_tests::fuzz`):
//! the length-prefix framing (blocking and async readers) and the request decoder the daemon
//! runs on every connection, and the response decoding allowlistctl does, on encoded valid
//! messages, their mutations (JSON tokens, length prefixes that lie, deep nesting) and raw
//! bytes.
//!
//! Asserted for every input: no panic, no hang; both frame readers agree and follow the
//! length prefix exactly; a refused request is `bad-request` or `unsupported-version` (the
//! latter exactly when the JSON's version is not ours) with a message; whatever decodes
//! re-encodes to the same message.

use allowlist_control::protocol::{
    self, Answer, ChangeOptions, Changed, Command, ErrorKind, FrameError, MAX_MESSAGE, Reply,
    Request, Response, VERSION,
};
use allowlist_tests::fuzz::{self, Fuzz, Input, mutate};
use fastrand::Rng;
use serde_json::Value;

const DICTIONARY: [&[u8]; 30] = [
    b"{",
    b"}",
    b"[",
    b"]",
    b"\"",
    b":",
    b",",
    b"null",
    b"true",
    b"-1",
    b"1e999",
    b"18446744073709551616",
    b"0.5",
    b"\"\\ud800\"",
    b"\"\\u0000\"",
    b"\"version\":1,",
    b"\"version\":2,",
    b"\"command\":",
    b"\"name\":\"add\"",
    b"\"name\":\"status\"",
    b"\"options\":{}",
    b"\"cidr\":\"198.18.1.0/24\"",
    b"\"caller\":{\"ip\":\"2001:db8::1\",\"port\":70000}",
    b"\"if_revision\":",
    b"\"outcome\":\"error\"",
    b"\"kind\":\"changed\"",
    b"[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[",
    b"{\"a\":{\"a\":{\"a\":{\"a\":{\"a\":{\"a\":{\"a\":{\"a\":{\"a\":{\"a\":{\"a\":{\"a\":",
    b"\xff",
    b" ",
];

fn text(rng: &mut Rng) -> String {
    match rng.u32(0..4) {
        0 => String::new(),
        1 => "198.18.1.0/24".into(),
        2 => "2001:db8::/32".into(),
        _ => (0..rng.usize(0..20)).map(|_| rng.char(..)).collect(),
    }
}

/// A list name: the usual one, one that may not exist, or any text.
fn list(rng: &mut Rng) -> String {
    match rng.u32(0..4) {
        0 => "default".into(),
        1 => "api".into(),
        _ => text(rng),
    }
}

/// A timed entry's end: any number of seconds, a time or any text, or none.
fn end(rng: &mut Rng) -> protocol::End {
    match rng.u32(0..4) {
        0 => protocol::End::AfterSecs(rng.u64(..)),
        1 => protocol::End::AfterSecs(rng.u64(0..100_000)),
        2 => protocol::End::At(match rng.bool() {
            true => "2026-12-24T18:00:00Z".into(),
            false => text(rng),
        }),
        _ => protocol::End::Never,
    }
}

fn ports(rng: &mut Rng) -> Vec<u16> {
    (0..rng.usize(0..4)).map(|_| rng.u16(..)).collect()
}

fn maybe<T>(rng: &mut Rng, value: impl FnOnce(&mut Rng) -> T) -> Option<T> {
    if rng.bool() { Some(value(rng)) } else { None }
}

/// A request the CLI could send: any command, any options.
fn request(rng: &mut Rng) -> Request {
    let command = match rng.u32(0..20) {
        0 => Command::Status,
        1 => Command::List {
            unused_for_secs: maybe(rng, |r| r.u64(..)),
            query: protocol::ListQuery {
                contains: maybe(rng, text),
                comment: maybe(rng, text),
                file: maybe(rng, text),
                limit: maybe(rng, |r| r.u64(..)),
                count: rng.bool(),
                list: maybe(rng, list),
                timed: rng.bool(),
                expired_within_secs: maybe(rng, |r| r.u64(..)),
            },
        },
        2 => Command::Add {
            cidr: text(rng),
            comment: maybe(rng, text),
            lists: (0..rng.usize(0..3)).map(|_| list(rng)).collect(),
            ends: maybe(rng, end),
            file: maybe(rng, text),
        },
        3 => Command::Edit {
            cidr: text(rng),
            new_cidr: maybe(rng, text),
            comment: maybe(rng, text),
            list: maybe(rng, list),
            ends: maybe(rng, end),
        },
        4 => Command::Remove {
            cidr: text(rng),
            list: maybe(rng, list),
        },
        5 => Command::Activate {
            add_current: rng.bool(),
            kill_unlisted: rng.bool(),
            list: maybe(rng, list),
        },
        6 => Command::Deactivate {
            list: maybe(rng, list),
        },
        7 => Command::Test {
            udp: rng.bool(),
            ip: text(rng),
            port: maybe(rng, |r| r.u16(..)),
            list: maybe(rng, list),
        },
        17 => Command::AddList {
            list: list(rng),
            mode: ["enforce", "monitor", "off", "audit"][rng.usize(0..4)].into(),
            tcp_ports: ports(rng),
            udp_ports: ports(rng),
            file: maybe(rng, text),
        },
        18 => Command::RemoveList { list: list(rng) },
        19 => Command::SetPorts {
            list: list(rng),
            tcp_ports: maybe(rng, ports),
            udp_ports: maybe(rng, ports),
        },
        8 => Command::Reload {
            dry_run: rng.bool(),
            full: rng.bool(),
        },
        9 => Command::Confirm,
        10 => Command::EmergencyDisable {
            reason: text(rng),
            for_secs: rng.u64(..),
            in_force: match rng.u32(0..3) {
                0 => protocol::InForce::Refuse,
                1 => protocol::InForce::Replace,
                _ => protocol::InForce::Extend,
            },
        },
        11 => Command::EmergencyEnd,
        12 => Command::Audit {
            since: maybe(rng, text),
            action: maybe(rng, text),
        },
        13 => Command::AuditVerify,
        14 => Command::Blocked {
            top: maybe(rng, |r| r.usize(..)),
            list: maybe(rng, list),
        },
        _ => Command::Sessions {
            port: maybe(rng, |r| r.u16(..)),
            kill_unlisted: rng.bool(),
            end: maybe(rng, |r| {
                std::net::SocketAddr::from(([198, 18, r.u8(..), r.u8(..)], r.u16(..)))
            }),
            list: maybe(rng, list),
        },
    };
    let caller = maybe(rng, |r| protocol::Caller {
        ip: if r.bool() {
            std::net::IpAddr::from([198, 18, r.u8(..), r.u8(..)])
        } else {
            std::net::IpAddr::from([0x2001, 0xdb8, 0, 0, 0, 0, 0, r.u16(..)])
        },
        port: maybe(r, |r| r.u16(..)),
    });
    Request {
        version: VERSION,
        command,
        options: ChangeOptions {
            if_revision: maybe(rng, |r| r.u64(..)),
            force: rng.bool(),
            caller,
            confirm_within_secs: maybe(rng, |r| r.u64(..)),
            on_behalf_of: maybe(rng, |r| {
                (0..r.usize(..12)).map(|_| r.alphanumeric()).collect()
            }),
        },
    }
}

/// A reply the daemon could send (the kinds that need no daemon state to build).
fn response(rng: &mut Rng) -> Response {
    if rng.bool() {
        let kinds = [
            ErrorKind::BadRequest,
            ErrorKind::Invalid,
            ErrorKind::Lockout,
            ErrorKind::Conflict,
        ];
        Response::error(kinds[rng.usize(..kinds.len())], text(rng))
    } else {
        Response::ok(Reply::Changed(Changed {
            revision: rng.u64(..),
            summary: text(rng),
            pending_confirmation: None,
        }))
    }
}

fn with_prefix(body: &[u8]) -> Vec<u8> {
    let mut frame = (body.len() as u32).to_be_bytes().to_vec();
    frame.extend_from_slice(body);
    frame
}

/// One byte stream, as a client or the daemon could send it.
fn generate(rng: &mut Rng) -> Input {
    let valid = if rng.u32(0..4) == 0 {
        protocol::encode(&response(rng))
    } else {
        protocol::encode(&request(rng))
    };
    let other = protocol::encode(&request(rng));
    let stream = match rng.u32(0..10) {
        0 => valid,
        1 => (0..rng.usize(0..64)).map(|_| rng.u8(..)).collect(),
        2 => {
            // A prefix that lies about the body after it.
            let mut stream = valid;
            let lie = [0, 1, MAX_MESSAGE as u32, MAX_MESSAGE as u32 + 1, u32::MAX];
            let len = match rng.u32(0..3) {
                0 => lie[rng.usize(..lie.len())],
                1 => (stream.len() - 4) as u32 + rng.u32(1..8),
                _ => ((stream.len() - 4) as u32).saturating_sub(rng.u32(1..8)),
            };
            stream[..4].copy_from_slice(&len.to_be_bytes());
            stream
        }
        3 => [valid, other].concat(),
        4 => {
            // The body mutated, the prefix kept as it was.
            let mut stream = valid;
            let mut body = stream.split_off(4);
            mutate(rng, &mut body, &DICTIONARY, &other[4..]);
            stream.extend(body);
            stream
        }
        _ => {
            let mut body = valid[4..].to_vec();
            mutate(rng, &mut body, &DICTIONARY, &other[4..]);
            with_prefix(&body)
        }
    };
    vec![stream]
}

thread_local! {
    static RUNTIME: tokio::runtime::Runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("a current-thread tokio runtime");
}

fn check(input: &[Vec<u8>]) -> Result<(), String> {
    let stream = &input[0];
    let blocking = protocol::read_frame(&mut &stream[..], MAX_MESSAGE);
    let asynchronous = RUNTIME.with(|rt| rt.block_on(protocol::read_frame_async(&mut &stream[..])));
    let declared = stream
        .get(..4)
        .map(|p| u32::from_be_bytes([p[0], p[1], p[2], p[3]]) as usize);
    let body = match (blocking, asynchronous) {
        (Ok(a), Ok(b)) if a == b => a,
        (Err(FrameError::TooLarge(a, _)), Err(FrameError::TooLarge(b, _))) if a == b => {
            return match declared {
                Some(len) if len == a && len > MAX_MESSAGE => Ok(()),
                _ => Err(format!("TooLarge({a}) for a prefix of {declared:?}")),
            };
        }
        (Err(FrameError::Truncated), Err(FrameError::Truncated)) => {
            return match declared {
                Some(len) if stream.len() >= 4 + len => {
                    Err(format!("truncated, but all {len} bytes are there"))
                }
                _ => Ok(()),
            };
        }
        (a, b) => return Err(format!("the readers disagree: {a:?} and {b:?}")),
    };
    if declared != Some(body.len()) || stream[4..4 + body.len()] != body[..] {
        return Err("the body is not the bytes the prefix announced".into());
    }
    check_request(&body)?;
    check_response(&body)
}

fn check_request(body: &[u8]) -> Result<(), String> {
    let json: Option<Value> = serde_json::from_slice(body).ok();
    match protocol::parse_request(body) {
        Ok(request) => {
            if request.version != VERSION {
                return Err(format!("accepted version {}", request.version));
            }
            let again = protocol::encode(&request);
            let reparsed = protocol::parse_request(&again[4..])
                .map_err(|e| format!("re-encoded request refused: {e:?}"))?;
            let (a, b) = (to_value(&request), to_value(&reparsed));
            if a != b {
                return Err(format!("round trip changed the request: {a} -> {b}"));
            }
        }
        Err((kind, message)) => {
            if message.is_empty() {
                return Err(format!("{kind:?} without a message"));
            }
            let ours = json
                .as_ref()
                .and_then(|v| v.get("version"))
                .and_then(Value::as_u64)
                == Some(u64::from(VERSION));
            let want = match &json {
                None => ErrorKind::BadRequest,
                Some(_) if !ours => ErrorKind::UnsupportedVersion,
                Some(_) => ErrorKind::BadRequest,
            };
            if kind != want {
                return Err(format!("refused as {kind:?}, expected {want:?}: {message}"));
            }
        }
    }
    Ok(())
}

fn check_response(body: &[u8]) -> Result<(), String> {
    let Ok(response) = serde_json::from_slice::<Response>(body) else {
        return Ok(());
    };
    let value = to_value(&response);
    let again: Response = serde_json::from_value(value.clone())
        .map_err(|e| format!("re-encoded response refused: {e}"))?;
    if to_value(&again) != value {
        return Err(format!("round trip changed the response: {value}"));
    }
    if let Answer::Error { message, .. } = &response.outcome
        && to_value(&again.outcome).get("message") != Some(&Value::from(message.as_str()))
    {
        return Err(format!("the error message changed: {value}"));
    }
    Ok(())
}

fn to_value(message: &impl serde::Serialize) -> Value {
    serde_json::to_value(message).expect("protocol types always serialize")
}

#[test]
fn protocol_decoders_under_fuzzing() {
    let fuzz = Fuzz {
        target: "protocol",
        default_seconds: 10.0,
        per_input: fuzz::PER_INPUT,
    };
    let count = fuzz.run(generate, check);
    assert!(count > 0, "no input was tried");
}

#[test]
fn valid_requests_round_trip_exactly() {
    let mut rng = Rng::with_seed(7);
    for _ in 0..5_000 {
        let sent = request(&mut rng);
        let frame = protocol::encode(&sent);
        let body = protocol::read_frame(&mut &frame[..], MAX_MESSAGE).expect("a whole frame");
        let got = protocol::parse_request(&body)
            .unwrap_or_else(|e| panic!("{sent:?} refused after encoding: {e:?}"));
        assert_eq!(to_value(&got), to_value(&sent));
        assert_eq!(got.command, sent.command);
    }
}
