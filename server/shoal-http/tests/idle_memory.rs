//! What an idle keep-alive connection costs the node's heap. Every allocation of this test
//! binary is counted, so the clients are blocking std sockets (no heap of their own) and the
//! server is the accept loop as the nodes run it.

use std::alloc::System;
use std::convert::Infallible;
use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use cap::Cap;
use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response};
use tokio_util::sync::CancellationToken;

#[global_allocator]
static HEAP: Cap<System> = Cap::new(System, usize::MAX);

/// The goal for the whole process, here for the heap alone.
const MAX_BYTES_PER_IDLE_CONNECTION: usize = 4096;
const CONNECTIONS: usize = 500;

fn start() -> (SocketAddr, CancellationToken, std::thread::JoinHandle<()>) {
    let std_listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    std_listener.set_nonblocking(true).unwrap();
    let addr = std_listener.local_addr().unwrap();
    let stop = CancellationToken::new();
    let thread = std::thread::spawn({
        let stop = stop.clone();
        move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(std_listener).unwrap();
                let limits = shoal_http::Limits {
                    label: "test",
                    header_read_timeout: Duration::from_secs(30),
                    max_head_bytes: 64 * 1024,
                    max_header_list_bytes: 64 * 1024,
                    drain_grace: Duration::from_secs(1),
                    connections: Some(shoal_http::ConnectionLimit::new(10_000)),
                };
                shoal_http::serve(listener, &limits, stop, None, |_peer| {
                    hyper::service::service_fn(|_req: Request<Incoming>| async {
                        let mut response = Response::new(Full::new(Bytes::from_static(b"ok")));
                        for (name, value) in [("x-one", "1"), ("x-two", "2"), ("x-three", "3")] {
                            response.headers_mut().insert(name, value.parse().unwrap());
                        }
                        Ok::<_, Infallible>(response)
                    })
                })
                .await;
            });
        }
    });
    (addr, stop, thread)
}

/// A request on a new connection, its answer read whole; the connection stays open.
fn one_request(addr: SocketAddr) -> TcpStream {
    let mut conn = TcpStream::connect(addr).unwrap();
    conn.write_all(
        b"GET /a/path HTTP/1.1\r\nhost: test\r\nuser-agent: idle-test\r\naccept: */*\r\n\r\n",
    )
    .unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 1024];
    while !got.ends_with(b"\r\n\r\nok") {
        let n = conn.read(&mut buf).unwrap();
        assert!(n > 0, "closed early: {}", String::from_utf8_lossy(&got));
        got.extend_from_slice(&buf[..n]);
    }
    assert!(
        got.starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&got)
    );
    conn
}

#[test]
fn an_idle_keep_alive_connection_holds_under_4_kib_of_heap() {
    let (addr, stop, server) = start();
    // The first connections warm what every connection shares (the runtime's slabs, the
    // date header's cache).
    let warm: Vec<TcpStream> = (0..50).map(|_| one_request(addr)).collect();
    drop(warm);
    let before = HEAP.allocated();
    let held: Vec<TcpStream> = (0..CONNECTIONS).map(|_| one_request(addr)).collect();
    // The server runs on one thread and goes idle on a connection in the same poll that
    // writes its answer, before it reads the next connection's request: all but the last
    // connection are idle here, and the last one's request memory is a 500th of the figure.
    let per_connection = HEAP.allocated().saturating_sub(before) / CONNECTIONS;
    assert!(
        per_connection <= MAX_BYTES_PER_IDLE_CONNECTION,
        "{per_connection} bytes of heap per idle connection"
    );
    println!("{per_connection} bytes of heap per idle connection");
    drop(held);
    stop.cancel();
    server.join().unwrap();
}
