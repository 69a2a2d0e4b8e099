//! The HTTP server loop: hyper under Courier's own accept loop, so that a slow or abusive
//! client costs a bounded number of sockets for a bounded time.
//!
//! - **Global cap.** At most `max_connections` are open at once, so connections can never
//!   take every file the process may open (see `config::MaxConnections`). One past the cap is
//!   closed as soon as it is accepted; see `serve` for why not a 503 or a paused accept.
//! - **Per-address cap.** One client address (IPv6: its /64) holds at most
//!   `max_per_address` connections; more are closed as soon as they are accepted. Trusted
//!   proxies are exempt: one proxy carries many clients.
//! - **Header read and keep-alive.** A connection with no request in flight must start its
//!   first request, and finish any request head it has begun, within `header_read`; once it
//!   has been served, it may sit idle for `keep_alive`. hyper's own header timeout cannot say
//!   this: it starts when hyper begins waiting for a head, so it would also be the keep-alive
//!   timeout. A connection with a request in flight (an open event stream) is never idle.
//! - **Request bodies.** Once a request's head has arrived, its whole body must arrive within
//!   `body`, however steadily it trickles: a reader of the body then sees `api::BodyTimedOut`,
//!   which the API answers with a JSON 408 and `Connection: close`, and hyper closes a
//!   connection whose request body was left unread.
//! - **Writes that cannot progress.** A write the socket refuses for `write` closes the
//!   connection: its reader stopped reading at the TCP level. The clock runs only while a
//!   write is pending, so a stream that is quiet between heartbeats is never timed out.
//! - **TLS** (when Courier serves HTTPS itself) runs inside each connection's task, above the
//!   watched socket: the handshake counts against the header-read deadline, and the limits
//!   above see the encrypted bytes as they see plain ones. An ACME TLS-ALPN-01 validation
//!   needs only the handshake and is closed right after it.
//! - **Event streams without hyper's buffers.** A plain connection whose first request is the
//!   event stream is served by [`lean`], which holds no per-connection read or write buffer
//!   while the stream is open; every other connection goes to hyper unchanged.

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use bytes::Bytes;
use http_body::{Frame, SizeHint};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use std::collections::HashMap;
use std::convert::Infallible;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};
use tokio::time::{Instant, Sleep};
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::ServiceExt;

use crate::api::BodyTimedOut;
use crate::model::{TrustedProxies, limit_key};
use lean::Opening;

mod lean;

/// How long an idle connection told to close may take before it is dropped.
const CLOSE_GRACE: Duration = Duration::from_secs(1);

#[derive(Debug, Clone)]
pub struct ConnLimits {
    pub header_read: Duration,
    pub keep_alive: Duration,
    pub write: Duration,
    /// From a request's head to the end of its body.
    pub body: Duration,
    /// Open connections in all; `None`: no cap.
    pub max_connections: Option<usize>,
    /// 0: no cap.
    pub max_per_address: usize,
    pub trusted_proxies: TrustedProxies,
    /// Kernel send buffer per connection; 0 lets the kernel size it.
    pub send_buffer: usize,
}

/// Accepts and serves until `shutdown`, then waits for every connection to finish (open
/// streams end on the same token), at most `grace`; then closes the rest.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: ConnLimits,
    tls: Option<TlsAcceptor>,
    shutdown: CancellationToken,
    grace: Duration,
) {
    let hard_stop = CancellationToken::new();
    let limits = Arc::new(limits);
    let slots = Arc::new(AddressSlots::new(
        limits.max_per_address,
        limits.trusted_proxies.clone(),
    ));
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder.http1().header_read_timeout(None);
    let shared = Arc::new(Shared {
        tls,
        router,
        builder,
        limits: limits.clone(),
        shutdown: shutdown.clone(),
        hard_stop: hard_stop.clone(),
    });
    let open = limits
        .max_connections
        .map(|max| Arc::new(Semaphore::new(max.min(Semaphore::MAX_PERMITS))));
    let mut at_cap = false;
    let connections = TaskTracker::new();
    loop {
        let (stream, peer) = tokio::select! {
            _ = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of file descriptors, typically: wait rather than spin.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::select! {
                        _ = shutdown.cancelled() => break,
                        _ = tokio::time::sleep(Duration::from_millis(50)) => continue,
                    }
                }
            },
        };
        // Over the global cap, the connection is closed unread, as Envoy and nginx do. The
        // alternatives cost more: a 503 needs the request head first (read at the client's
        // pace, with TLS a handshake before it), so the connection would hold its file for up
        // to the header timeout; leaving connections in the kernel's backlog (HAProxy's and
        // Go's LimitListener's way) makes clients hang instead of fail, and hands the next
        // free slot to whatever has waited longest there, a slowloris included. A closed
        // connection is retried by the client (EventSource does so by itself).
        let permit = match &open {
            None => None,
            Some(open) => match open.clone().try_acquire_owned() {
                Ok(permit) => {
                    at_cap = false;
                    Some(permit)
                }
                Err(_) => {
                    if !std::mem::replace(&mut at_cap, true) {
                        tracing::warn!(
                            max = limits.max_connections,
                            "connection cap reached; closing new connections until some end"
                        );
                    }
                    continue;
                }
            },
        };
        let Some(slot) = slots.take(peer.ip()) else {
            tracing::debug!(%peer, "connection cap reached for this address; closing");
            continue;
        };
        // Events are small and latency matters: never wait for Nagle.
        if let Err(e) = stream.set_nodelay(true) {
            tracing::debug!(error = %e, "TCP_NODELAY");
        }
        if limits.send_buffer > 0
            && let Err(e) = socket2::SockRef::from(&stream).set_send_buffer_size(limits.send_buffer)
        {
            tracing::debug!(error = %e, "SO_SNDBUF");
        }
        let admitted = Admitted {
            _address: slot,
            _global: permit,
        };
        connections.spawn(connection(stream, peer, admitted, shared.clone()));
    }
    drop(listener);
    connections.close();
    tokio::select! {
        () = connections.wait() => {}
        () = tokio::time::sleep(grace) => {
            tracing::warn!("shutdown grace period over; closing remaining connections");
            hard_stop.cancel();
            connections.wait().await;
        }
    }
}

/// What every connection task shares.
struct Shared {
    tls: Option<TlsAcceptor>,
    router: Router,
    builder: auto::Builder<TokioExecutor>,
    limits: Arc<ConnLimits>,
    shutdown: CancellationToken,
    hard_stop: CancellationToken,
}

/// A connection's places under the caps, given back when it ends.
struct Admitted {
    _address: Slot,
    _global: Option<OwnedSemaphorePermit>,
}

async fn connection(stream: TcpStream, peer: SocketAddr, _admitted: Admitted, shared: Arc<Shared>) {
    let activity = Arc::new(Activity::new());
    let watched = Watched {
        inner: stream,
        activity: activity.clone(),
        write_timeout: shared.limits.write,
        stalled: None,
    };
    let Some(acceptor) = &shared.tls else {
        return plain(watched, peer, activity, &shared).await;
    };
    // Boxed, like hyper's connection below: every connection task is sized for its largest
    // path, and a lean stream's task should stay small (docs/benchmarks.md, "Idle memory").
    Box::pin(tls(acceptor, watched, peer, activity, &shared)).await;
}

async fn tls(
    acceptor: &TlsAcceptor,
    watched: Watched,
    peer: SocketAddr,
    activity: Arc<Activity>,
    shared: &Shared,
) {
    let handshake = tokio::time::timeout(shared.limits.header_read, acceptor.accept(watched));
    let tls = tokio::select! {
        _ = shared.shutdown.cancelled() => return,
        done = handshake => match done {
            Ok(Ok(tls)) => tls,
            Ok(Err(e)) => {
                tracing::debug!(%peer, error = %e, "TLS handshake failed");
                return;
            }
            Err(_) => {
                tracing::debug!(%peer, "TLS handshake timed out");
                return;
            }
        },
    };
    if crate::tls::is_acme_validation(tls.get_ref().1) {
        return;
    }
    serve_connection(TokioIo::new(tls), peer, activity, shared).await;
}

/// A connection without TLS: an event stream that opens it is served by `lean`, anything
/// else by hyper.
async fn plain(mut watched: Watched, peer: SocketAddr, activity: Arc<Activity>, shared: &Shared) {
    if !lean_streams() {
        return Box::pin(serve_connection(
            TokioIo::new(watched),
            peer,
            activity,
            shared,
        ))
        .await;
    }
    let opening = tokio::select! {
        _ = shared.shutdown.cancelled() => return,
        opening = tokio::time::timeout(shared.limits.header_read, lean::read_opening(&mut watched)) => {
            match opening {
                Ok(opening) => opening,
                Err(_) => {
                    tracing::debug!(%peer, "no request head before the deadline; closing");
                    return;
                }
            }
        }
    };
    match opening {
        Opening::Stream(request) => {
            // Unboxed in its own scope so the box is freed now, not when the stream ends.
            let request = {
                let boxed = request;
                *boxed
            };
            let router = shared.router.clone();
            lean::serve_stream(watched, request, peer, router, &shared.hard_stop).await;
        }
        // Boxed: hyper's connection state is large, and a lean stream's task should not be
        // sized for it.
        Opening::Other(prefix) => {
            let io = TokioIo::new(lean::Rewind::new(prefix, watched));
            Box::pin(serve_connection(io, peer, activity, shared)).await;
        }
        Opening::Gone => {}
    }
}

/// Whether event streams that open a plain connection skip hyper (`lean`). Always, except in
/// a benchmark's control run, which sets the hidden `COURIER_BENCH_HYPER_STREAMS=1` to measure
/// what the lean path saves.
fn lean_streams() -> bool {
    static ON: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *ON.get_or_init(|| std::env::var("COURIER_BENCH_HYPER_STREAMS").as_deref() != Ok("1"))
}

/// Serves HTTP/1.1 or HTTP/2 on one connection until it ends, idles out or shutdown comes.
async fn serve_connection<I>(io: I, peer: SocketAddr, activity: Arc<Activity>, shared: &Shared)
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let Shared {
        router,
        builder,
        limits,
        shutdown,
        hard_stop,
        ..
    } = shared;
    let service = hyper::service::service_fn({
        let activity = activity.clone();
        let router = router.clone();
        let body_timeout = limits.body;
        move |request: hyper::Request<Incoming>| {
            let mut request = request.map(|body| {
                if http_body::Body::is_end_stream(&body) {
                    Body::new(body)
                } else {
                    Body::new(Deadline::new(body, body_timeout))
                }
            });
            request.extensions_mut().insert(ConnectInfo(peer));
            let guard = activity.begin();
            let router = router.clone();
            async move {
                // Boxed: the router's future is large and over HTTP/2 hyper keeps each
                // stream's task sized for it for as long as the response body lives.
                let response = match Box::pin(router.oneshot(request)).await {
                    Ok(response) => response,
                    Err(never) => match never {},
                };
                Ok::<_, Infallible>(response.map(|body| {
                    Body::new(Tracked {
                        body,
                        _guard: guard,
                    })
                }))
            }
        }
    });
    let conn = builder.serve_connection_with_upgrades(io, service);
    tokio::pin!(conn);
    let mut closing = false;
    let mut dropping_at: Option<Instant> = None;
    loop {
        tokio::select! {
            result = conn.as_mut() => {
                if let Err(e) = result {
                    tracing::debug!(%peer, error = %e, "connection ended with an error");
                }
                return;
            }
            _ = hard_stop.cancelled() => return,
            _ = shutdown.cancelled(), if !closing => {
                closing = true;
                conn.as_mut().graceful_shutdown();
            }
            _ = activity.expired(limits), if !closing => {
                tracing::debug!(%peer, "closing an idle or slow connection");
                closing = true;
                conn.as_mut().graceful_shutdown();
                dropping_at = Some(Instant::now() + CLOSE_GRACE);
            }
            _ = tokio::time::sleep_until(dropping_at.unwrap_or_else(Instant::now)), if dropping_at.is_some() => {
                return;
            }
        }
    }
}

/// Open connections per client address (IPv6: per /64).
struct AddressSlots {
    max: usize,
    trusted: TrustedProxies,
    open: Mutex<HashMap<IpAddr, usize>>,
}

impl AddressSlots {
    fn new(max: usize, trusted: TrustedProxies) -> Self {
        Self {
            max,
            trusted,
            open: Mutex::default(),
        }
    }

    /// A slot for one more connection from `ip`, or `None` when it has its fill.
    fn take(self: &Arc<Self>, ip: IpAddr) -> Option<Slot> {
        if self.max == 0 || self.trusted.contains(ip) {
            return Some(Slot(None));
        }
        let key = limit_key(ip);
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        let count = open.entry(key).or_default();
        if *count >= self.max {
            return None;
        }
        *count += 1;
        Some(Slot(Some((self.clone(), key))))
    }
}

/// Gives its connection's place back when the connection ends.
struct Slot(Option<(Arc<AddressSlots>, IpAddr)>);

impl Drop for Slot {
    fn drop(&mut self) {
        if let Some((slots, key)) = self.0.take() {
            let mut open = slots.open.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(count) = open.get_mut(&key) {
                *count -= 1;
                if *count == 0 {
                    open.remove(&key);
                }
            }
        }
    }
}

/// What a connection is doing, for the header-read and keep-alive deadlines.
struct Activity {
    state: Mutex<State>,
    changed: Notify,
}

struct State {
    /// Requests whose response body has not finished (an open stream counts until it ends).
    in_flight: usize,
    /// When the last request finished, or the connection opened.
    idle_since: Instant,
    served: bool,
    /// When bytes of a next request head first arrived while idle.
    head_started: Option<Instant>,
}

impl Activity {
    fn new() -> Self {
        Self {
            state: Mutex::new(State {
                in_flight: 0,
                idle_since: Instant::now(),
                served: false,
                head_started: None,
            }),
            changed: Notify::new(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn begin(self: &Arc<Self>) -> RequestGuard {
        let mut state = self.lock();
        state.in_flight += 1;
        state.head_started = None;
        RequestGuard(self.clone())
    }

    fn read(&self) {
        let mut state = self.lock();
        if state.in_flight == 0 && state.head_started.is_none() {
            state.head_started = Some(Instant::now());
            drop(state);
            self.changed.notify_waiters();
        }
    }

    /// When this connection must be closed if nothing changes; `None` while a request runs.
    fn deadline(&self, limits: &ConnLimits) -> Option<Instant> {
        let state = self.lock();
        if state.in_flight > 0 {
            return None;
        }
        Some(match state.head_started {
            Some(started) => started + limits.header_read,
            None if state.served => state.idle_since + limits.keep_alive,
            None => state.idle_since + limits.header_read,
        })
    }

    /// Completes once the connection has been idle (or slow with a head) past its deadline.
    async fn expired(&self, limits: &ConnLimits) {
        loop {
            let changed = self.changed.notified();
            match self.deadline(limits) {
                None => changed.await,
                Some(deadline) => {
                    tokio::select! {
                        _ = changed => {}
                        _ = tokio::time::sleep_until(deadline) => {
                            if self.deadline(limits).is_some_and(|d| d <= Instant::now()) {
                                return;
                            }
                        }
                    }
                }
            }
        }
    }
}

struct RequestGuard(Arc<Activity>);

impl Drop for RequestGuard {
    fn drop(&mut self) {
        let mut state = self.0.lock();
        state.in_flight -= 1;
        if state.in_flight == 0 {
            state.idle_since = Instant::now();
            state.served = true;
            state.head_started = None;
        }
        drop(state);
        self.0.changed.notify_waiters();
    }
}

/// A response body that keeps its request counted as in flight until it is done or dropped.
struct Tracked {
    body: Body,
    _guard: RequestGuard,
}

impl http_body::Body for Tracked {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

/// A request body that must arrive in full before its deadline.
struct Deadline {
    body: Incoming,
    expires: Pin<Box<Sleep>>,
}

impl Deadline {
    fn new(body: Incoming, timeout: Duration) -> Self {
        Self {
            body,
            expires: Box::pin(tokio::time::sleep(timeout)),
        }
    }
}

impl http_body::Body for Deadline {
    type Data = Bytes;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        if let Poll::Ready(frame) = Pin::new(&mut self.body).poll_frame(cx) {
            return Poll::Ready(frame.map(|frame| frame.map_err(Into::into)));
        }
        match self.expires.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Some(Err(Box::new(BodyTimedOut)))),
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

/// The socket, noting reads for `Activity` and timing writes that cannot progress.
struct Watched {
    inner: TcpStream,
    activity: Arc<Activity>,
    write_timeout: Duration,
    /// Running while a write is pending; reset by any progress.
    stalled: Option<Pin<Box<Sleep>>>,
}

impl Watched {
    fn progress<T>(
        &mut self,
        cx: &mut Context<'_>,
        poll: Poll<io::Result<T>>,
    ) -> Poll<io::Result<T>> {
        match poll {
            Poll::Ready(result) => {
                self.stalled = None;
                Poll::Ready(result)
            }
            Poll::Pending => {
                let timeout = self.write_timeout;
                let timer = self
                    .stalled
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep(timeout)));
                if timer.as_mut().poll(cx).is_ready() {
                    Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        "the client stopped reading",
                    )))
                } else {
                    Poll::Pending
                }
            }
        }
    }
}

impl AsyncRead for Watched {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let poll = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(poll, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.activity.read();
        }
        poll
    }
}

impl AsyncWrite for Watched {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let poll = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.progress(cx, poll)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let poll = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.progress(cx, poll)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let poll = Pin::new(&mut self.inner).poll_flush(cx);
        self.progress(cx, poll)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_address_gets_its_cap_and_its_slots_back_and_an_ipv6_64_shares_one() {
        let slots = Arc::new(AddressSlots::new(
            2,
            TrustedProxies::new(vec!["10.0.0.1/32".parse().unwrap()]),
        ));
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        let a = slots.take(ip("203.0.113.7")).unwrap();
        let _b = slots.take(ip("203.0.113.7")).unwrap();
        assert!(slots.take(ip("203.0.113.7")).is_none());
        assert!(slots.take(ip("203.0.113.8")).is_some(), "another address");
        drop(a);
        assert!(
            slots.take(ip("203.0.113.7")).is_some(),
            "a closed slot is free"
        );
        let _c = slots.take(ip("2001:db8::1")).unwrap();
        let _d = slots.take(ip("2001:db8::ffff")).unwrap();
        assert!(slots.take(ip("2001:db8::2:1")).is_none(), "same /64");
        let proxy: Vec<_> = (0..5).map(|_| slots.take(ip("10.0.0.1"))).collect();
        assert!(
            proxy.iter().all(Option::is_some),
            "trusted proxies are exempt"
        );
    }
}
