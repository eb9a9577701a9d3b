//! The shared HTTP server against raw TCP clients: a client that trickles its request
//! head, or idles on a kept-alive connection, loses its socket after the configured
//! bound; requests and long responses are not cut by it; graceful shutdown waits for
//! the response in flight.
use axum::Router;
use axum::body::Body;
use axum::routing::get;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use switchyard_platform::http::HttpServerConfig;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;
use tokio::sync::Notify;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// The header-read bound the server under test is configured with.
const BOUND: Duration = Duration::from_secs(1);
/// How long past the bound a disconnect may take on a loaded machine before the test
/// calls it "kept".
const SLACK: Duration = Duration::from_secs(10);

struct Server {
    addr: SocketAddr,
    /// Notified when a request enters the `/held` handler.
    entered: Arc<Notify>,
    shutdown: CancellationToken,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

async fn start() -> Server {
    let entered = Arc::new(Notify::new());
    let router = Router::new()
        .route("/", get(|| async { "hello" }))
        .route(
            "/held",
            get({
                let entered = entered.clone();
                || async move {
                    entered.notify_one();
                    tokio::time::sleep(BOUND * 2).await;
                    "held"
                }
            }),
        )
        .route(
            "/slow",
            get(|| async {
                tokio::time::sleep(BOUND * 2).await;
                "slow"
            }),
        )
        .route(
            "/stream",
            get(|| async {
                // Three chunks over three bounds: a streaming body outlives the bound.
                let chunks = futures::stream::unfold(0u8, |n| async move {
                    if n == 3 {
                        return None;
                    }
                    if n > 0 {
                        tokio::time::sleep(BOUND).await;
                    }
                    Some((Ok::<_, std::io::Error>(format!("chunk{n}\n")), n + 1))
                });
                Body::from_stream(chunks)
            }),
        );
    let listener = switchyard_platform::http::bind("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let addr = listener.local_addr().unwrap();
    let shutdown = CancellationToken::new();
    let config = HttpServerConfig {
        header_read_timeout_ms: BOUND.as_millis() as u64,
    };
    let task = tokio::spawn({
        let shutdown = shutdown.clone();
        async move { switchyard_platform::http::serve(listener, router, &config, shutdown).await }
    });
    Server {
        addr,
        entered,
        shutdown,
        task,
    }
}

/// Reads until the server closes the connection (EOF or a reset); returns what was
/// read. Panics when the connection is still open at `deadline`.
async fn read_until_closed(stream: &mut TcpStream, deadline: Instant) -> String {
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
            Ok(Ok(0) | Err(_)) => return String::from_utf8_lossy(&seen).into_owned(),
            Ok(Ok(n)) => seen.extend_from_slice(&buf[..n]),
            Err(_) => panic!(
                "the server kept the connection open past the deadline; read so far: {:?}",
                String::from_utf8_lossy(&seen)
            ),
        }
    }
}

/// Sends a request line and then one header byte every `BOUND / 5`, for as long as
/// the server lets it; returns how long the server kept the connection.
async fn trickle(addr: SocketAddr) -> Duration {
    let started = Instant::now();
    let stream = TcpStream::connect(addr).await.unwrap();
    let (mut reader, mut writer) = stream.into_split();
    writer
        .write_all(b"GET / HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    let feed = async move {
        let mut tick = tokio::time::interval(BOUND / 5);
        for byte in b"X-Slow: ".iter().cycle() {
            tick.tick().await;
            if writer.write_all(&[*byte]).await.is_err() {
                // The server closed its side: stop feeding, the reader sees it.
                break;
            }
        }
        std::future::pending::<()>().await;
    };
    let closed = async {
        let mut buf = [0u8; 1024];
        loop {
            match reader.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    };
    tokio::select! {
        () = closed => {}
        () = feed => unreachable!("the feed never ends by itself"),
        () = tokio::time::sleep_until(started + BOUND + SLACK) => {
            panic!("a client trickling header bytes kept its socket for {:?}", started.elapsed())
        }
    }
    started.elapsed()
}

#[tokio::test]
async fn a_client_trickling_its_request_head_is_disconnected_after_the_bound() {
    let server = start().await;
    let held = trickle(server.addr).await;
    // Each byte arrived well within the bound: only a bound on the whole head stops it.
    assert!(held >= BOUND, "closed after {held:?}, before the bound");
    server.shutdown.cancel();
    server.task.await.unwrap().unwrap();
}

#[tokio::test]
async fn many_trickling_clients_do_not_keep_their_sockets() {
    let server = start().await;
    let clients: Vec<_> = (0..20)
        .map(|_| tokio::spawn(trickle(server.addr)))
        .collect();
    for client in clients {
        let held = client.await.unwrap();
        assert!(held >= BOUND, "closed after {held:?}");
    }
    // The server still serves.
    let mut stream = TcpStream::connect(server.addr).await.unwrap();
    stream
        .write_all(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let answer = read_until_closed(&mut stream, Instant::now() + SLACK).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.ends_with("hello"), "{answer}");
    server.shutdown.cancel();
    server.task.await.unwrap().unwrap();
}

#[tokio::test]
async fn a_connection_that_sends_nothing_is_closed_after_the_bound() {
    let server = start().await;
    let started = Instant::now();
    let mut stream = TcpStream::connect(server.addr).await.unwrap();
    read_until_closed(&mut stream, started + BOUND + SLACK).await;
    assert!(started.elapsed() >= BOUND);
}

#[tokio::test]
async fn an_idle_kept_alive_connection_is_closed_after_the_bound() {
    let server = start().await;
    let mut stream = TcpStream::connect(server.addr).await.unwrap();
    stream
        .write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let answered = Instant::now();
    let seen = read_until_closed(&mut stream, answered + BOUND + SLACK).await;
    assert!(seen.starts_with("HTTP/1.1 200"), "{seen}");
    assert!(answered.elapsed() >= BOUND);
}

#[tokio::test]
async fn slow_handlers_and_long_bodies_are_not_cut_by_the_bound() {
    let server = start().await;
    let http = reqwest::Client::new();
    let slow = http
        .get(format!("http://{}/slow", server.addr))
        .send()
        .await
        .unwrap();
    assert_eq!(slow.text().await.unwrap(), "slow");
    let streamed = http
        .get(format!("http://{}/stream", server.addr))
        .send()
        .await
        .unwrap();
    assert_eq!(
        streamed.text().await.unwrap(),
        "chunk0\nchunk1\nchunk2\n",
        "a body streaming for longer than the bound arrives whole"
    );
}

#[tokio::test]
async fn graceful_shutdown_lets_the_response_in_flight_finish() {
    let server = start().await;
    let url = format!("http://{}/held", server.addr);
    let request = tokio::spawn(async move { reqwest::get(url).await?.text().await });
    tokio::time::timeout(SLACK, server.entered.notified())
        .await
        .expect("the request reaches its handler");
    server.shutdown.cancel();
    assert_eq!(request.await.unwrap().unwrap(), "held");
    tokio::time::timeout(SLACK, server.task)
        .await
        .expect("the server stops once the response is out")
        .unwrap()
        .unwrap();
}
