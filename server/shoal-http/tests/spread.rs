//! Several runtimes serving one listening socket: the connections end up spread over them,
//! whichever runtime accepted them.

use std::convert::Infallible;
use std::io::{BufRead as _, BufReader, Write as _};
use std::net::TcpStream;
use std::time::Duration;

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response};
use tokio_util::sync::CancellationToken;

const CONNECTIONS: usize = 16;

/// A runtime on a thread of its own serving `listener` with `share`; each response names the
/// thread that served it.
fn runtime(
    name: &str,
    listener: std::net::TcpListener,
    share: shoal_http::Share,
    stop: CancellationToken,
) -> std::thread::JoinHandle<()> {
    std::thread::Builder::new()
        .name(name.into())
        .spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).unwrap();
                let limits = shoal_http::Limits {
                    label: "test",
                    header_read_timeout: Duration::from_secs(30),
                    max_head_bytes: 64 * 1024,
                    max_header_list_bytes: 64 * 1024,
                    drain_grace: Duration::from_secs(5),
                    connections: Some(shoal_http::ConnectionLimit::new(1_000)),
                };
                shoal_http::serve(listener, &limits, stop, Some(share), |_peer| {
                    hyper::service::service_fn(|_req: Request<Incoming>| async {
                        let thread = std::thread::current().name().unwrap_or("").to_string();
                        Ok::<_, Infallible>(Response::new(Full::new(Bytes::from(thread))))
                    })
                })
                .await;
            });
        })
        .unwrap()
}

/// One request on `conn`; the body (the serving thread's name).
fn ask(conn: &mut BufReader<TcpStream>) -> String {
    conn.get_mut()
        .write_all(b"GET / HTTP/1.1\r\nhost: test\r\n\r\n")
        .unwrap();
    let mut length = 0;
    loop {
        let mut line = String::new();
        assert!(
            conn.read_line(&mut line).unwrap() > 0,
            "closed without an answer"
        );
        if line == "\r\n" {
            break;
        }
        if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
            length = v.trim().parse().unwrap();
        }
    }
    let mut body = vec![0; length];
    std::io::Read::read_exact(conn, &mut body).unwrap();
    String::from_utf8(body).unwrap()
}

#[test]
fn connections_one_runtime_accepted_are_spread_over_all_of_them() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let addr = listener.local_addr().unwrap();
    let stop = CancellationToken::new();
    let mut shares = shoal_http::Spread::shares(2).into_iter();
    let (first, second) = (shares.next().unwrap(), shares.next().unwrap());
    let late_listener = listener.try_clone().unwrap();
    // Only the first runtime serves while the connections arrive: it accepts every one.
    let a = runtime("core-a", listener, first, stop.clone());
    let mut conns: Vec<_> = (0..CONNECTIONS)
        .map(|_| BufReader::new(TcpStream::connect(addr).unwrap()))
        .collect();
    // Each connection is served once accepted; the first runtime answers its own at once.
    let mut served_by: Vec<Option<String>> = vec![None; CONNECTIONS];
    let b = runtime("core-b", late_listener, second, stop.clone());
    for (conn, by) in conns.iter_mut().zip(&mut served_by) {
        *by = Some(ask(conn));
    }
    let on = |name: &str| {
        served_by
            .iter()
            .filter(|b| b.as_deref() == Some(name))
            .count()
    };
    assert_eq!(
        (on("core-a"), on("core-b")),
        (CONNECTIONS / 2, CONNECTIONS / 2),
        "{served_by:?}"
    );
    drop(conns);
    stop.cancel();
    a.join().unwrap();
    b.join().unwrap();
}

#[test]
fn a_runtime_that_is_not_serving_is_handed_nothing() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let addr = listener.local_addr().unwrap();
    let stop = CancellationToken::new();
    let mut shares = shoal_http::Spread::shares(2).into_iter();
    let first = shares.next().unwrap();
    // The second runtime's share is dropped unused, as when its runtime cannot poll the port.
    drop(shares);
    let a = runtime("core-a", listener, first, stop.clone());
    // All four open at once: past the first, the other runtime holds fewer.
    let mut conns: Vec<_> = (0..4)
        .map(|_| BufReader::new(TcpStream::connect(addr).unwrap()))
        .collect();
    let served_by: Vec<String> = conns.iter_mut().map(ask).collect();
    assert_eq!(served_by, vec!["core-a"; 4]);
    stop.cancel();
    a.join().unwrap();
}
