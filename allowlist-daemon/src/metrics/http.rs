//! `GET /metrics` over HTTP/1.1 (hyper), one request per connection, with bounds on slow and
//! hostile clients: a deadline for the request head and one for the whole exchange, a cap on
//! the head's size (431), and a task per connection so that a slow client only holds up
//! itself.

use std::convert::Infallible;
use std::time::Duration;

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::header::{ALLOW, CONTENT_TYPE as CONTENT_TYPE_HEADER, HeaderValue};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot};
use tracing::warn;

use super::{CONTENT_TYPE, Snapshot, render};

/// A client has this long to send its request head.
const HEAD_DEADLINE: Duration = Duration::from_secs(5);
/// The main loop has this long to hand over a snapshot: well inside Prometheus' default
/// scrape timeout (10 s), so that a busy daemon shows up as a 503 rather than a timeout.
const SNAPSHOT_DEADLINE: Duration = Duration::from_secs(5);
/// The whole exchange: the head, the snapshot, and the client taking the response.
const CONNECTION_DEADLINE: Duration = Duration::from_secs(15);
/// A scraper's request head is a few hundred bytes; more is not a scraper. (hyper's floor.)
const MAX_HEAD: usize = 8192;

/// Serves GET /metrics on `listener` until the task is dropped. For each request it asks the
/// main loop for a fresh snapshot through `tx`, and renders it here, off the main loop, with
/// at most `max_entry_series` entry series.
pub async fn serve(
    listener: TcpListener,
    tx: mpsc::Sender<oneshot::Sender<Snapshot>>,
    max_entry_series: usize,
) {
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                tokio::spawn(connection(stream, tx.clone(), max_entry_series));
            }
            Err(e) => {
                // Out of file descriptors, typically: back off instead of spinning.
                warn!("metrics: accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

async fn connection(
    stream: TcpStream,
    tx: mpsc::Sender<oneshot::Sender<Snapshot>>,
    max_entry_series: usize,
) {
    let service = service_fn(move |request| {
        let tx = tx.clone();
        async move { Ok::<_, Infallible>(respond(&request, &tx, max_entry_series).await) }
    });
    let served = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(HEAD_DEADLINE)
        .max_buf_size(MAX_HEAD)
        .keep_alive(false)
        .serve_connection(TokioIo::new(stream), service);
    // A client that stops reading the response is cut off here.
    let _ = tokio::time::timeout(CONNECTION_DEADLINE, served).await;
}

async fn respond(
    request: &Request<Incoming>,
    tx: &mpsc::Sender<oneshot::Sender<Snapshot>>,
    max_entry_series: usize,
) -> Response<Full<Bytes>> {
    if request.uri().path() != "/metrics" {
        return text(StatusCode::NOT_FOUND, "only /metrics is served here\n");
    }
    // HEAD too, as RFC 9110 asks of every server that serves GET (hyper drops the body).
    if request.method() != Method::GET && request.method() != Method::HEAD {
        let mut response = text(StatusCode::METHOD_NOT_ALLOWED, "only GET and HEAD\n");
        response
            .headers_mut()
            .insert(ALLOW, HeaderValue::from_static("GET, HEAD"));
        return response;
    }
    match snapshot(tx).await {
        Some(snapshot) => reply(
            StatusCode::OK,
            CONTENT_TYPE,
            render(&snapshot, max_entry_series),
        ),
        None => text(
            StatusCode::SERVICE_UNAVAILABLE,
            "allowlistd did not hand over its state in time\n",
        ),
    }
}

/// A fresh snapshot from the main loop, or None when it is gone or too busy to answer in time.
async fn snapshot(tx: &mpsc::Sender<oneshot::Sender<Snapshot>>) -> Option<Snapshot> {
    let (reply, answer) = oneshot::channel();
    tokio::time::timeout(SNAPSHOT_DEADLINE, async {
        tx.send(reply).await.ok()?;
        answer.await.ok()
    })
    .await
    .ok()
    .flatten()
}

fn text(status: StatusCode, body: &'static str) -> Response<Full<Bytes>> {
    reply(status, "text/plain; charset=utf-8", body.to_owned())
}

fn reply(status: StatusCode, content_type: &'static str, body: String) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE_HEADER, HeaderValue::from_static(content_type));
    response
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};
    use std::net::SocketAddr;
    use std::time::Instant;

    use super::super::tests::{parse, sample, value};
    use super::*;

    /// A main loop that answers every request with `sample()`.
    fn fake_main_loop() -> mpsc::Sender<oneshot::Sender<Snapshot>> {
        let (tx, mut rx) = mpsc::channel::<oneshot::Sender<Snapshot>>(8);
        tokio::spawn(async move {
            while let Some(reply) = rx.recv().await {
                let _ = reply.send(sample());
            }
        });
        tx
    }

    async fn start(tx: mpsc::Sender<oneshot::Sender<Snapshot>>) -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(serve(listener, tx, 10));
        addr
    }

    struct Response {
        status: u16,
        headers: Vec<(String, String)>,
        body: String,
    }

    impl Response {
        fn header(&self, name: &str) -> Option<&str> {
            self.headers
                .iter()
                .find(|(n, _)| n.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.as_str())
        }
    }

    /// Sends `request` with a blocking std client, off the runtime the server runs on.
    async fn send(addr: SocketAddr, request: &str) -> Response {
        let request = request.to_owned();
        tokio::task::spawn_blocking(move || {
            let mut stream = std::net::TcpStream::connect(addr).unwrap();
            stream
                .set_read_timeout(Some(Duration::from_secs(5)))
                .unwrap();
            stream.write_all(request.as_bytes()).unwrap();
            let mut raw = String::new();
            stream.read_to_string(&mut raw).unwrap();
            let (head, body) = raw.split_once("\r\n\r\n").expect("no end of head");
            let mut lines = head.split("\r\n");
            let status = lines.next().unwrap().split(' ').nth(1).unwrap();
            Response {
                status: status.parse().unwrap(),
                headers: lines
                    .map(|l| l.split_once(": ").unwrap())
                    .map(|(n, v)| (n.to_owned(), v.to_owned()))
                    .collect(),
                body: body.to_owned(),
            }
        })
        .await
        .unwrap()
    }

    async fn get(addr: SocketAddr, path: &str) -> Response {
        send(addr, &format!("GET {path} HTTP/1.1\r\nHost: test\r\n\r\n")).await
    }

    #[tokio::test]
    async fn serves_metrics() {
        let addr = start(fake_main_loop()).await;
        let response = get(addr, "/metrics").await;
        assert_eq!(response.status, 200);
        assert_eq!(response.header("content-type"), Some(CONTENT_TYPE));
        assert_eq!(
            response.header("content-length"),
            Some(response.body.len().to_string().as_str())
        );
        assert_eq!(response.body, render(&sample(), 10));
        let parsed = parse(&response.body);
        assert_eq!(value(&parsed, "allowlist_revision", &[]), 9.0);

        let head = send(addr, "HEAD /metrics?x=1 HTTP/1.1\r\n\r\n").await;
        assert_eq!(head.status, 200);
        assert_eq!(head.body, "");
        assert_eq!(
            head.header("content-length"),
            response.header("content-length")
        );
    }

    #[tokio::test]
    async fn refuses_other_paths_and_methods() {
        let addr = start(fake_main_loop()).await;
        assert_eq!(get(addr, "/other").await.status, 404);
        assert_eq!(get(addr, "/").await.status, 404);
        let post = send(addr, "POST /metrics HTTP/1.1\r\nContent-Length: 0\r\n\r\n").await;
        assert_eq!(post.status, 405);
        assert_eq!(post.header("allow"), Some("GET, HEAD"));
        assert_eq!(send(addr, "nonsense\r\n\r\n").await.status, 400);
        let huge = format!(
            "GET /metrics HTTP/1.1\r\nX: {}\r\n\r\n",
            "a".repeat(MAX_HEAD)
        );
        assert_eq!(send(addr, &huge).await.status, 431);
    }

    #[tokio::test]
    async fn main_loop_gone_is_unavailable() {
        let (tx, rx) = mpsc::channel(1);
        drop(rx);
        let addr = start(tx).await;
        assert_eq!(get(addr, "/metrics").await.status, 503);
    }

    #[tokio::test]
    async fn silent_client_does_not_block_others() {
        let addr = start(fake_main_loop()).await;
        let _silent = std::net::TcpStream::connect(addr).unwrap();
        let started = Instant::now();
        assert_eq!(get(addr, "/metrics").await.status, 200);
        assert!(started.elapsed() < Duration::from_secs(1));
    }

    #[tokio::test]
    async fn silent_client_is_cut_off_after_the_head_deadline() {
        let addr = start(fake_main_loop()).await;
        let started = Instant::now();
        let got = tokio::task::spawn_blocking(move || {
            let mut silent = std::net::TcpStream::connect(addr).unwrap();
            silent.set_read_timeout(Some(HEAD_DEADLINE * 2)).unwrap();
            let mut buf = [0; 64];
            silent.read(&mut buf)
        })
        .await
        .unwrap();
        assert!(
            matches!(got, Ok(0)),
            "a client that sends nothing is closed, got {got:?}"
        );
        assert!(started.elapsed() >= HEAD_DEADLINE);
    }
}
