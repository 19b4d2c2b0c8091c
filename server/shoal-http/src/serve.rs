//! The accept loop.

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use hyper::body::Incoming;
use hyper::rt::{Read, ReadBufCursor, Write};
use hyper::server::conn::{http1, http2};
use hyper::service::Service;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::graceful::{GracefulShutdown, Watcher};
use tokio::io::AsyncReadExt as _;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A service a connection's task can run: what hyper needs of it, in one place.
pub trait ConnectionService<B>:
    Service<
        Request<Incoming>,
        Response = Response<B>,
        Future: Send + 'static,
        Error: Into<BoxError>,
    > + Send
    + 'static
{
}

impl<S, B> ConnectionService<B> for S where
    S: Service<
            Request<Incoming>,
            Response = Response<B>,
            Future: Send + 'static,
            Error: Into<BoxError>,
        > + Send
        + 'static
{
}

/// A response body a connection's task can send.
pub trait ResponseBody:
    http_body::Body<Data: Send, Error: Into<BoxError>> + Send + 'static
{
}

impl<B> ResponseBody for B where
    B: http_body::Body<Data: Send, Error: Into<BoxError>> + Send + 'static
{
}

/// What one listener bounds.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Names the listener in log lines (`http`, `data plane`).
    pub label: &'static str,
    /// A client has this long to send a request's head: a slow client (slowloris) cannot
    /// hold connections open by trickling bytes.
    pub header_read_timeout: Duration,
    /// HTTP/1.1: the largest request head buffered; hyper answers 431 beyond it.
    pub max_head_bytes: usize,
    /// HTTP/2: the largest header list accepted.
    pub max_header_list_bytes: u32,
    /// Once the listener stops, how long open connections may take to finish their requests
    /// before they are closed.
    pub drain_grace: Duration,
    /// The most connections open at once, shared by every listener given the same limit.
    pub connections: Option<Arc<ConnectionLimit>>,
}

/// The most connections several listeners may hold open together. A connection over it is
/// answered `503` and closed at once, and counted: a flood costs the node a descriptor for a
/// moment, not a connection's memory for as long as the client likes.
#[derive(Debug)]
pub struct ConnectionLimit {
    max: usize,
    permits: Arc<Semaphore>,
    refused: AtomicU64,
}

impl ConnectionLimit {
    pub fn new(max: usize) -> Arc<Self> {
        Arc::new(Self {
            max,
            permits: Arc::new(Semaphore::new(max)),
            refused: AtomicU64::new(0),
        })
    }

    /// Connections open now.
    pub fn open(&self) -> usize {
        self.max - self.permits.available_permits()
    }

    /// Connections refused since the start because the limit was reached.
    pub fn refused(&self) -> u64 {
        self.refused.load(Ordering::Relaxed)
    }

    /// Counts a connection over the limit and makes the `503` it gets: the caller writes it
    /// without reading the request, so it costs no buffer.
    fn refusal(&self) -> Vec<u8> {
        let count = self.refused.fetch_add(1, Ordering::Relaxed);
        // A flood must not flood the log as well: the first refusal, then every 10,000th.
        if count.is_multiple_of(10_000) {
            tracing::warn!(
                max = self.max,
                refused = count + 1,
                "connection refused: the node has its maximum of {} connections open \
                 ([proxy] max_connections)",
                self.max
            );
        }
        let body = format!(
            "the node has its maximum of {} connections open; try again or another node\n",
            self.max
        );
        format!(
            "HTTP/1.1 503 Service Unavailable\r\ncontent-type: text/plain\r\n\
             content-length: {}\r\nretry-after: 1\r\nconnection: close\r\n\r\n{body}",
            body.len()
        )
        .into_bytes()
    }
}

/// Several single-threaded runtimes serving one listening socket, each with a [`Share`]. All
/// of them accept; a runtime that accepts a connection while another holds fewer open hands
/// it over, so the connections stay spread within one of each other. Without it the runtime
/// that happens to be awake accepts a burst of new connections alone (measured: 16 of 16
/// on one of two cores, the other idle).
#[derive(Debug)]
pub struct Spread {
    open: Vec<AtomicUsize>,
    /// Cleared when a runtime stops serving (or never started): it is handed nothing more.
    serving: Vec<AtomicBool>,
    inboxes: Vec<mpsc::UnboundedSender<Handed>>,
}

/// One runtime's part of a [`Spread`]: its index and the connections handed to it.
#[derive(Debug)]
pub struct Share {
    spread: Arc<Spread>,
    me: usize,
    inbox: mpsc::UnboundedReceiver<Handed>,
}

impl Spread {
    /// One share per runtime; each goes to the [`serve`] that runtime runs.
    pub fn shares(runtimes: usize) -> Vec<Share> {
        let runtimes = runtimes.max(1);
        let (inboxes, receivers): (Vec<_>, Vec<_>) =
            (0..runtimes).map(|_| mpsc::unbounded_channel()).unzip();
        let spread = Arc::new(Spread {
            open: (0..runtimes).map(|_| AtomicUsize::new(0)).collect(),
            serving: (0..runtimes).map(|_| AtomicBool::new(true)).collect(),
            inboxes,
        });
        receivers
            .into_iter()
            .enumerate()
            .map(|(me, inbox)| Share {
                spread: spread.clone(),
                me,
                inbox,
            })
            .collect()
    }

    /// Counts a connection as `core`'s until the returned guard drops.
    fn count(self: &Arc<Self>, core: usize) -> Counted {
        self.open[core].fetch_add(1, Ordering::Relaxed);
        Counted {
            spread: self.clone(),
            core,
        }
    }

    /// The serving runtime holding the fewest connections, when it holds fewer than `me`.
    fn lighter_than(&self, me: usize) -> Option<usize> {
        let mine = self.open[me].load(Ordering::Relaxed);
        let (least, open) = self
            .open
            .iter()
            .map(|o| o.load(Ordering::Relaxed))
            .enumerate()
            .filter(|&(i, _)| self.serving[i].load(Ordering::Relaxed))
            .min_by_key(|&(_, open)| open)?;
        (open < mine).then_some(least)
    }
}

/// A runtime whose serve ends, fails or never starts takes no more connections.
impl Drop for Share {
    fn drop(&mut self) {
        self.spread.serving[self.me].store(false, Ordering::Relaxed);
    }
}

/// A connection counted against one runtime of a [`Spread`] while it is open.
#[derive(Debug)]
struct Counted {
    spread: Arc<Spread>,
    core: usize,
}

impl Drop for Counted {
    fn drop(&mut self) {
        self.spread.open[self.core].fetch_sub(1, Ordering::Relaxed);
    }
}

/// An accepted connection on its way to another runtime: out of the accepting runtime's
/// reactor, with its permit and its count.
#[derive(Debug)]
struct Handed {
    stream: std::net::TcpStream,
    peer: SocketAddr,
    permit: Option<OwnedSemaphorePermit>,
    counted: Counted,
}

/// The next connection handed to this runtime; never, without a share.
async fn handed(share: &mut Option<Share>) -> Option<Handed> {
    match share {
        Some(share) => share.inbox.recv().await,
        None => std::future::pending().await,
    }
}

/// How many refused connections at once are refused politely, and for how long: the request's
/// head read (HTTP clients take an answer before their request for a broken connection), the
/// `503` written, the rest read and dropped until the client closes, so it reads the answer
/// instead of a reset. Beyond that many at once (a flood), the answer is written if the socket
/// takes it and the connection dropped there.
const POLITE_REFUSALS: usize = 256;
const POLITE_REFUSAL_TIME: Duration = Duration::from_secs(1);
/// The most of a refused request read while looking for the end of its head.
const POLITE_HEAD_BYTES: usize = 8 * 1024;

async fn close_politely(mut stream: TcpStream, answer: Vec<u8>) {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let _ = tokio::time::timeout(POLITE_REFUSAL_TIME, async {
        let mut head = Vec::new();
        let mut chunk = [0u8; 1024];
        while head.len() < POLITE_HEAD_BYTES && !head.windows(4).any(|w| w == b"\r\n\r\n") {
            let n = stream.read(&mut chunk).await?;
            if n == 0 {
                break;
            }
            head.extend_from_slice(&chunk[..n]);
        }
        stream.write_all(&answer).await?;
        stream.shutdown().await?;
        while stream.read(&mut chunk).await? > 0 {}
        Ok::<_, std::io::Error>(())
    })
    .await;
}

/// Serves `listener` until `stop`, then stops accepting and lets open connections finish
/// within `limits.drain_grace`. Each connection gets the service `service_for(peer)` makes.
/// With a `share`, this runtime is one of several serving the listener (see [`Spread`]).
pub async fn serve<M, S, B>(
    listener: TcpListener,
    limits: &Limits,
    stop: CancellationToken,
    share: Option<Share>,
    service_for: M,
) where
    M: FnMut(SocketAddr) -> S,
    S: ConnectionService<B>,
    B: ResponseBody,
{
    let label = limits.label;
    let port = listener.local_addr().map_or(0, |a| a.port());
    let graceful = GracefulShutdown::new();
    let mut h1 = http1::Builder::new();
    h1.timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .max_buf_size(limits.max_head_bytes);
    let mut h2 = http2::Builder::new(TokioExecutor::new());
    h2.timer(TokioTimer::new())
        .max_header_list_size(limits.max_header_list_bytes);
    let builders = Arc::new(Builders {
        h1,
        h2,
        first_bytes_timeout: limits.header_read_timeout,
    });
    let mut starter = Starter {
        connections: JoinSet::new(),
        builders,
        graceful: &graceful,
        stop: &stop,
        service_for,
        label,
    };
    let mut refusals = JoinSet::new();
    let polite = Arc::new(Semaphore::new(POLITE_REFUSALS));
    let mut share = share;
    let spread = share.as_ref().map(|s| (s.spread.clone(), s.me));
    loop {
        let (stream, peer) = tokio::select! {
            _ = stop.cancelled() => break,
            Some(h) = handed(&mut share) => {
                match TcpStream::from_std(h.stream) {
                    Ok(stream) => starter.start(stream, h.peer, (h.permit, Some(h.counted))),
                    Err(e) => tracing::warn!(port, "{label}: a handed-over connection: {e}"),
                }
                continue;
            }
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!(port, "{label}: accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let permit = match &limits.connections {
            None => None,
            Some(limit) => match limit.permits.clone().try_acquire_owned() {
                Ok(permit) => Some(permit),
                Err(_) => {
                    let answer = limit.refusal();
                    match polite.clone().try_acquire_owned() {
                        Ok(slot) => {
                            refusals.spawn(async move {
                                close_politely(stream, answer).await;
                                drop(slot);
                            });
                        }
                        Err(_) => {
                            let _ = stream.try_write(&answer);
                        }
                    }
                    while refusals.try_join_next().is_some() {}
                    continue;
                }
            },
        };
        let Some((spread, me)) = &spread else {
            starter.start(stream, peer, (permit, None));
            continue;
        };
        let Some(other) = spread.lighter_than(*me) else {
            starter.start(stream, peer, (permit, Some(spread.count(*me))));
            continue;
        };
        let handed = match stream.into_std() {
            Ok(stream) => Handed {
                stream,
                peer,
                permit,
                counted: spread.count(other),
            },
            Err(e) => {
                tracing::warn!(port, "{label}: cannot hand a connection over: {e}");
                continue;
            }
        };
        // The other runtime stopped in the meantime: this one keeps the connection.
        if let Err(mpsc::error::SendError(h)) = spread.inboxes[other].send(handed) {
            match TcpStream::from_std(h.stream) {
                Ok(stream) => starter.start(stream, peer, (h.permit, Some(spread.count(*me)))),
                Err(e) => tracing::warn!(port, "{label}: cannot keep a connection: {e}"),
            }
        }
    }
    drop(listener);
    // Connections handed over just before the stop are treated as this runtime's own
    // connections accepted then: one that has sent its request is served through the drain.
    if let Some(share) = &mut share {
        share.spread.serving[share.me].store(false, Ordering::Relaxed);
        share.inbox.close();
        while let Ok(h) = share.inbox.try_recv() {
            if let Ok(stream) = TcpStream::from_std(h.stream) {
                starter.start(stream, h.peer, (h.permit, Some(h.counted)));
            }
        }
    }
    refusals.abort_all();
    let mut connections = starter.connections;
    if tokio::time::timeout(limits.drain_grace, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!(
            port,
            "{label}: connections still open after the drain grace; closed"
        );
        connections.abort_all();
    }
}

/// What starts a connection's task on this runtime.
struct Starter<'a, M> {
    connections: JoinSet<()>,
    builders: Arc<Builders>,
    graceful: &'a GracefulShutdown,
    stop: &'a CancellationToken,
    service_for: M,
    label: &'static str,
}

impl<M> Starter<'_, M> {
    /// Serves one connection; it holds its permit and count until it ends.
    fn start<S, B>(
        &mut self,
        stream: TcpStream,
        peer: SocketAddr,
        held: (Option<OwnedSemaphorePermit>, Option<Counted>),
    ) where
        M: FnMut(SocketAddr) -> S,
        S: ConnectionService<B>,
        B: ResponseBody,
    {
        let _ = stream.set_nodelay(true);
        let (builders, watcher, service) = (
            self.builders.clone(),
            self.graceful.watcher(),
            (self.service_for)(peer),
        );
        let (stop, label) = (self.stop.clone(), self.label);
        self.connections.spawn(async move {
            let serve = serve_connection(stream, &builders, &stop, watcher, service);
            if let Err(e) = serve.await {
                tracing::debug!(%peer, "{label} connection: {e}");
            }
            drop(held);
        });
        // Reap finished connections so the set holds only open ones.
        while self.connections.try_join_next().is_some() {}
    }
}

/// How every connection of a listener is served.
struct Builders {
    h1: http1::Builder,
    h2: http2::Builder<TokioExecutor>,
    /// A connection that has sent nothing this long after it opened is closed.
    first_bytes_timeout: Duration,
}

/// What a client that speaks HTTP/2 without an upgrade sends first.
const H2_PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Serves one connection in the protocol its first bytes name. Each protocol's connection is
/// boxed on its own, so an HTTP/1 connection (nearly all of them) holds the room HTTP/1 needs
/// and not HTTP/2's, which is larger.
async fn serve_connection<S, B>(
    mut stream: TcpStream,
    builders: &Builders,
    stop: &CancellationToken,
    watcher: Watcher,
    service: S,
) -> Result<(), BoxError>
where
    S: ConnectionService<B>,
    B: ResponseBody,
{
    let mut first = [0u8; H2_PREFACE.len()];
    let mut len = 0;
    let h2 = loop {
        // A connection that has sent nothing has no request to finish: the drain does not
        // wait for it. One whose bytes are there is read first, even once stopping.
        let read = tokio::select! {
            biased;
            read = tokio::time::timeout(
                builders.first_bytes_timeout,
                stream.read(&mut first[len..]),
            ) => read,
            _ = stop.cancelled() => return Ok(()),
        };
        let read = read.map_err(|_| "no request in time")??;
        if read == 0 {
            return Ok(());
        }
        len += read;
        if first[..len] != H2_PREFACE[..len] {
            break false;
        }
        if len == H2_PREFACE.len() {
            break true;
        }
    };
    let io = Prefixed {
        first,
        at: 0,
        len,
        io: TokioIo::new(stream),
    };
    if h2 {
        Box::pin(watcher.watch(builders.h2.serve_connection(io, service))).await?;
    } else {
        Box::pin(watcher.watch(builders.h1.serve_connection(io, service))).await?;
    }
    Ok(())
}

/// A connection whose first bytes were read to tell its protocol: they are read again first.
struct Prefixed {
    first: [u8; H2_PREFACE.len()],
    at: usize,
    len: usize,
    io: TokioIo<TcpStream>,
}

impl Read for Prefixed {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        mut buf: ReadBufCursor<'_>,
    ) -> Poll<std::io::Result<()>> {
        if self.at == self.len {
            return Pin::new(&mut self.io).poll_read(cx, buf);
        }
        let n = (self.len - self.at).min(buf.remaining());
        let (at, end) = (self.at, self.at + n);
        buf.put_slice(&self.first[at..end]);
        self.at = end;
        // What else has arrived comes in the same read, so the reader sees the request as
        // one piece, as it would without the look at the first bytes.
        if self.at == self.len && buf.remaining() > 0 {
            let _ = Pin::new(&mut self.io).poll_read(cx, buf)?;
        }
        Poll::Ready(Ok(()))
    }
}

impl Write for Prefixed {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }
}

#[cfg(test)]
#[allow(
    clippy::disallowed_methods,
    reason = "the server and its clients are tasks of the test runtime, ended with it"
)]
mod tests {
    use std::convert::Infallible;

    use std::sync::Arc;

    use http_body_util::Full;
    use hyper::body::Bytes;
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    use tokio::sync::Notify;

    use super::*;

    fn limits() -> Limits {
        Limits {
            label: "test",
            header_read_timeout: Duration::from_secs(1),
            max_head_bytes: 8 * 1024,
            max_header_list_bytes: 8 * 1024,
            drain_grace: Duration::from_secs(5),
            connections: None,
        }
    }

    struct Server {
        addr: SocketAddr,
        stop: CancellationToken,
        task: tokio::task::JoinHandle<()>,
        /// Told when a `/slow` request has started.
        slow_started: Arc<Notify>,
    }

    /// Serves `hello <peer ip>`; `/slow` answers after 300 ms.
    async fn start(limits: Limits) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let stop = CancellationToken::new();
        let slow_started = Arc::new(Notify::new());
        let task = tokio::spawn({
            let stop = stop.clone();
            let slow_started = slow_started.clone();
            async move {
                serve(listener, &limits, stop, None, |peer: SocketAddr| {
                    let slow_started = slow_started.clone();
                    hyper::service::service_fn(move |req: Request<Incoming>| {
                        let slow_started = slow_started.clone();
                        async move {
                            if req.uri().path() == "/slow" {
                                slow_started.notify_one();
                                tokio::time::sleep(Duration::from_millis(300)).await;
                            }
                            Ok::<_, Infallible>(Response::new(Full::new(Bytes::from(format!(
                                "hello {}",
                                peer.ip()
                            )))))
                        }
                    })
                })
                .await;
            }
        });
        Server {
            addr,
            stop,
            task,
            slow_started,
        }
    }

    const SLOW: &[u8] = b"GET /slow HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n";

    async fn exchange(addr: SocketAddr, request: &[u8]) -> String {
        let mut conn = tokio::net::TcpStream::connect(addr).await.unwrap();
        conn.write_all(request).await.unwrap();
        let mut out = Vec::new();
        conn.read_to_end(&mut out).await.unwrap();
        String::from_utf8_lossy(&out).into_owned()
    }

    #[tokio::test]
    async fn serves_requests_with_the_service_made_for_the_peer() {
        let server = start(limits()).await;
        let answer = exchange(
            server.addr,
            b"GET / HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n",
        )
        .await;
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        assert!(answer.ends_with("hello 127.0.0.1"), "{answer}");
        server.stop.cancel();
        server.task.await.unwrap();
    }

    #[tokio::test]
    async fn a_head_beyond_the_cap_is_refused_with_431() {
        let server = start(limits()).await;
        let big = format!(
            "GET / HTTP/1.1\r\nhost: x\r\nx-big: {}\r\n\r\n",
            "a".repeat(16 * 1024)
        );
        let answer = exchange(server.addr, big.as_bytes()).await;
        assert!(answer.starts_with("HTTP/1.1 431"), "{answer}");
    }

    #[tokio::test]
    async fn a_head_not_sent_in_time_closes_the_connection() {
        let server = start(limits()).await;
        let started = std::time::Instant::now();
        let answer = exchange(server.addr, b"GET / HTTP/1.1\r\nhost: x\r\n").await;
        assert!(!answer.contains("200"), "{answer}");
        assert!(started.elapsed() >= Duration::from_millis(900));
    }

    #[tokio::test]
    async fn a_connection_that_sends_nothing_is_closed_after_the_head_timeout() {
        let server = start(limits()).await;
        let started = std::time::Instant::now();
        let answer = exchange(server.addr, b"").await;
        assert_eq!(answer, "");
        assert!(started.elapsed() >= Duration::from_millis(900));
    }

    #[tokio::test]
    async fn a_request_arriving_a_byte_at_a_time_is_served() {
        let server = start(limits()).await;
        let mut conn = tokio::net::TcpStream::connect(server.addr).await.unwrap();
        // Starts like the HTTP/2 preface ("P") and then is not.
        for byte in b"POST / HTTP/1.1\r\nhost: x\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
        {
            conn.write_all(&[*byte]).await.unwrap();
            conn.flush().await.unwrap();
            tokio::task::yield_now().await;
        }
        let mut out = Vec::new();
        conn.read_to_end(&mut out).await.unwrap();
        let answer = String::from_utf8_lossy(&out);
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        assert!(answer.ends_with("hello 127.0.0.1"), "{answer}");
    }

    #[tokio::test]
    async fn http2_with_prior_knowledge_is_served_on_the_same_port() {
        let server = start(limits()).await;
        let stream = tokio::net::TcpStream::connect(server.addr).await.unwrap();
        let (mut sender, conn) =
            hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
                .await
                .unwrap();
        let driver = tokio::spawn(conn);
        for _ in 0..2 {
            let request = Request::get(format!("http://{}/", server.addr))
                .body(Full::new(Bytes::new()))
                .unwrap();
            let response = sender.send_request(request).await.unwrap();
            assert_eq!(response.version(), hyper::Version::HTTP_2);
            let body = http_body_util::BodyExt::collect(response.into_body())
                .await
                .unwrap()
                .to_bytes();
            assert_eq!(&body[..], b"hello 127.0.0.1");
        }
        drop(sender);
        driver.await.unwrap().unwrap();
    }

    #[tokio::test]
    async fn stopping_lets_a_request_in_flight_finish_and_refuses_new_connections() {
        let server = start(limits()).await;
        let slow = tokio::spawn(exchange(server.addr, SLOW));
        server.slow_started.notified().await;
        server.stop.cancel();
        let answer = slow.await.unwrap();
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        server.task.await.unwrap();
        assert!(tokio::net::TcpStream::connect(server.addr).await.is_err());
    }

    #[tokio::test]
    async fn stopping_does_not_wait_for_a_connection_that_sent_nothing() {
        let server = start(Limits {
            drain_grace: Duration::from_secs(600),
            header_read_timeout: Duration::from_secs(600),
            ..limits()
        })
        .await;
        let mut silent = tokio::net::TcpStream::connect(server.addr).await.unwrap();
        // The connection is accepted (and counted) before the stop.
        let answer = exchange(
            server.addr,
            b"GET / HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n",
        )
        .await;
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        server.stop.cancel();
        // The drain grace is ten minutes: the stop ends within the minute only if it does not
        // wait for the silent connection, which is closed rather than served.
        tokio::time::timeout(Duration::from_secs(60), server.task)
            .await
            .expect("the drain does not wait for a silent connection")
            .unwrap();
        let mut out = Vec::new();
        silent.read_to_end(&mut out).await.unwrap();
        assert!(out.is_empty(), "{}", String::from_utf8_lossy(&out));
    }

    #[tokio::test]
    async fn connections_still_open_after_the_grace_are_closed() {
        let server = start(Limits {
            drain_grace: Duration::from_millis(100),
            ..limits()
        })
        .await;
        let slow = tokio::spawn(exchange(server.addr, SLOW));
        server.slow_started.notified().await;
        server.stop.cancel();
        server.task.await.unwrap();
        let answer = slow.await.unwrap();
        assert!(!answer.contains("200"), "{answer}");
    }

    #[tokio::test]
    async fn connections_over_the_limit_get_503_and_are_counted_and_a_freed_place_is_taken() {
        let limit = ConnectionLimit::new(2);
        let server = start(Limits {
            connections: Some(limit.clone()),
            ..limits()
        })
        .await;
        let held = [
            tokio::net::TcpStream::connect(server.addr).await.unwrap(),
            tokio::net::TcpStream::connect(server.addr).await.unwrap(),
        ];
        // Accepted connections are counted as the loop takes them: wait until both are open.
        while limit.open() < 2 {
            tokio::task::yield_now().await;
        }
        let answer = exchange(server.addr, b"GET / HTTP/1.1\r\nhost: x\r\n\r\n").await;
        assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
        assert!(answer.contains("maximum of 2 connections"), "{answer}");
        assert_eq!(limit.refused(), 1);
        drop(held);
        let answer = wait_for_200(server.addr).await;
        assert!(answer.ends_with("hello 127.0.0.1"), "{answer}");
        assert_eq!(limit.open(), 0);
    }

    /// Asks until a place is free: the server sees the held connections close only when it
    /// next polls them.
    async fn wait_for_200(addr: SocketAddr) -> String {
        loop {
            let answer = exchange(
                addr,
                b"GET / HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n",
            )
            .await;
            if answer.starts_with("HTTP/1.1 200") {
                return answer;
            }
            tokio::task::yield_now().await;
        }
    }
}
