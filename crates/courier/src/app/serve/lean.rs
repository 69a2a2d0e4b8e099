//! Event streams over HTTP/1.1 without hyper's per-connection buffers.
//!
//! hyper keeps an 8 KB read buffer and an 8 KB write buffer for every HTTP/1 connection for as
//! long as it is open (its minimum, not configurable), and that is most of what an idle event
//! stream costs (docs/benchmarks.md, "Idle memory"). A stream needs neither: once its head is
//! in, the client sends nothing more, and each event is written once, as it comes.
//!
//! So when a plain connection's **first** request is `GET /api/messages` over HTTP/1.1, this
//! module reads and parses that head itself (with `httparse`, as hyper does), runs it through
//! the same router, and writes the response straight to the socket: a stream with chunked
//! framing, anything else (a 401, a 429) with a length. The connection closes when the
//! response ends (`Connection: close`), so there is never a second request to parse.
//!
//! Everything else goes to hyper exactly as before, with the bytes already read put back in
//! front of the socket ([`Rewind`]): other paths (the first read already tells), HTTP/2,
//! anything unusual in the head (a body, an upgrade, a pipelined request, a head hyper would
//! refuse), and TLS connections. A stream asked for on a kept-alive connection after other
//! requests is served by hyper too; EventSource and courier-bench open streams on
//! connections of their own.

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{HeaderName, HeaderValue, Method, Request, Version, header, response};
use bytes::{Buf, Bytes, BytesMut};
use futures::FutureExt;
use http_body_util::BodyExt;
use std::io::{self, Write as _};
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

/// The one route served here: the event stream.
const STREAM_PATH: &[u8] = b"/api/messages";
/// A head longer than this goes to hyper, which has its own limits and errors.
const MAX_HEAD: usize = 16 * 1024;
const MAX_HEADERS: usize = 64;
/// A non-stream answer on this path (an error) is small; a bigger one is cut off.
const MAX_PLAIN_BODY: usize = 1 << 20;
/// Ready frames gathered into one write, at most about this many bytes.
const COALESCE_MAX: usize = 64 * 1024;

/// How a plain connection opens.
pub(super) enum Opening {
    /// Its first request is an event stream, parsed and ready for the router.
    Stream(Box<Request<Body>>),
    /// Anything else: the bytes read so far, to be put back in front of the socket for hyper.
    Other(Bytes),
    /// The peer closed (or the read failed) before a request began.
    Gone,
}

/// Reads just enough of a connection's first bytes to tell whether it opens an event stream.
/// The caller bounds it with the header-read deadline.
pub(super) async fn read_opening<R: AsyncRead + Unpin>(io: &mut R) -> Opening {
    let prefix = const_prefix();
    let mut buf = BytesMut::with_capacity(1024);
    loop {
        if buf.capacity() - buf.len() < 512 {
            buf.reserve(1024);
        }
        match io.read_buf(&mut buf).await {
            Ok(0) | Err(_) if buf.is_empty() => return Opening::Gone,
            Ok(0) | Err(_) => return Opening::Other(buf.freeze()),
            Ok(_) => {}
        }
        let seen = buf.len().min(prefix.len());
        if buf[..seen] != prefix[..seen] {
            return Opening::Other(buf.freeze());
        }
        if buf.len() > MAX_HEAD {
            return Opening::Other(buf.freeze());
        }
        match parse_stream_request(&buf) {
            Parsed::Partial => continue,
            Parsed::Stream(request) => return Opening::Stream(request),
            Parsed::Other => return Opening::Other(buf.freeze()),
        }
    }
}

fn const_prefix() -> Vec<u8> {
    [b"GET ".as_slice(), STREAM_PATH].concat()
}

enum Parsed {
    Partial,
    Stream(Box<Request<Body>>),
    Other,
}

/// A complete, ordinary `GET /api/messages[?…] HTTP/1.1` head with nothing after it, as a
/// request; anything else is left to hyper.
fn parse_stream_request(bytes: &[u8]) -> Parsed {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut head = httparse::Request::new(&mut headers);
    let length = match head.parse(bytes) {
        Ok(httparse::Status::Complete(length)) => length,
        Ok(httparse::Status::Partial) => return Parsed::Partial,
        Err(_) => return Parsed::Other,
    };
    let (Some("GET"), Some(1), Some(path)) = (head.method, head.version, head.path) else {
        return Parsed::Other;
    };
    let rest = &path.as_bytes()[STREAM_PATH.len().min(path.len())..];
    if !path.as_bytes().starts_with(STREAM_PATH) || !(rest.is_empty() || rest[0] == b'?') {
        return Parsed::Other;
    }
    // Pipelined bytes would be a second request; let hyper deal with them.
    if length != bytes.len() {
        return Parsed::Other;
    }
    let mut request = Request::builder()
        .method(Method::GET)
        .uri(path)
        .version(Version::HTTP_11);
    for h in head.headers.iter() {
        let name = h.name.as_bytes();
        if name.eq_ignore_ascii_case(b"content-length")
            || name.eq_ignore_ascii_case(b"transfer-encoding")
            || name.eq_ignore_ascii_case(b"upgrade")
            || name.eq_ignore_ascii_case(b"expect")
        {
            return Parsed::Other;
        }
        match (
            HeaderName::from_bytes(name),
            HeaderValue::from_bytes(h.value),
        ) {
            (Ok(name), Ok(value)) => request = request.header(name, value),
            _ => return Parsed::Other,
        }
    }
    match request.body(Body::empty()) {
        Ok(request) => Parsed::Stream(Box::new(request)),
        Err(_) => Parsed::Other,
    }
}

/// Serves one event-stream request on its own connection, then closes the connection.
pub(super) async fn serve_stream<S>(
    mut io: S,
    mut request: Request<Body>,
    peer: SocketAddr,
    router: Router,
    hard_stop: &CancellationToken,
) where
    S: AsyncRead + AsyncWrite + Unpin,
{
    request.extensions_mut().insert(ConnectInfo(peer));
    // Boxed: the router's future (every middleware layer) is large and only lives until the
    // response head, while this task lives as long as the stream.
    let response = match Box::pin(router.oneshot(request)).await {
        Ok(response) => response,
        Err(never) => match never {},
    };
    let (parts, mut body) = response.into_parts();
    let is_stream = parts
        .headers
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"text/event-stream"));
    if !is_stream {
        let bytes = tokio::select! {
            _ = hard_stop.cancelled() => return,
            bytes = axum::body::to_bytes(body, MAX_PLAIN_BODY) => bytes.unwrap_or_default(),
        };
        let mut out = head(&parts, Some(bytes.len()));
        out.extend_from_slice(&bytes);
        if io.write_all(&out).await.is_ok() {
            let _ = io.shutdown().await;
        }
        return;
    }
    let mut out = head(&parts, None);
    // The response's header map would otherwise stay allocated for the life of the stream.
    drop(parts);
    // The opening frame is ready now: it goes out with the head, in one write that wakes the
    // client once rather than twice.
    let mut ready = take_ready(&mut body, &mut out);
    if io.write_all(&out).await.is_err() {
        return;
    }
    // Sized for the head: an idle stream should not keep it. Its own buffer grows to its frames.
    out = Vec::new();
    // Read only to notice the client leaving: it sends nothing more on a stream connection.
    let mut probe = [0u8; 16];
    loop {
        match ready {
            Ready::More => {}
            Ready::Ended => {
                let _ = io.shutdown().await;
                return;
            }
            Ready::Failed => return,
        }
        tokio::select! {
            frame = body.frame() => {
                ready = match add_frame(frame, &mut out) {
                    // Frames that are already waiting (a catch-up is hundreds) go out in the
                    // same write: one syscall per burst rather than one per event.
                    Ready::More => take_ready(&mut body, &mut out),
                    done => done,
                };
            }
            read = io.read(&mut probe) => match read {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            },
            _ = hard_stop.cancelled() => return,
        }
        if !out.is_empty() && io.write_all(&out).await.is_err() {
            return;
        }
        out.clear();
        if out.capacity() > COALESCE_MAX {
            out = Vec::new();
        }
    }
}

/// What [`take_ready`] left the stream's body in.
enum Ready {
    /// Nothing more is ready now; the stream goes on.
    More,
    /// The body ended: the last chunk is in the buffer.
    Ended,
    /// The body failed: no last chunk, so the client sees a cut-off response and resumes.
    Failed,
}

/// Appends the frames the body has ready now to `out`, as chunks, up to about `COALESCE_MAX`.
fn take_ready(body: &mut Body, out: &mut Vec<u8>) -> Ready {
    while out.len() < COALESCE_MAX {
        let Some(frame) = body.frame().now_or_never() else {
            break;
        };
        match add_frame(frame, out) {
            Ready::More => {}
            // A failure: what is already buffered is written first, then the stream ends
            // without a last chunk.
            done => return done,
        }
    }
    Ready::More
}

/// Appends one polled frame of the body to `out`: its data as a chunk, or the last chunk when
/// the body has ended.
fn add_frame<E: std::fmt::Display>(
    frame: Option<Result<http_body::Frame<Bytes>, E>>,
    out: &mut Vec<u8>,
) -> Ready {
    match frame {
        Some(Ok(frame)) => {
            if let Ok(data) = frame.into_data() {
                push_chunk(out, &data);
            }
            Ready::More
        }
        Some(Err(e)) => {
            tracing::debug!(error = %e, "event stream body failed");
            Ready::Failed
        }
        None => {
            out.extend_from_slice(b"0\r\n\r\n");
            Ready::Ended
        }
    }
}

/// The response head; `length` for a whole body, `None` for a chunked stream.
fn head(parts: &response::Parts, length: Option<usize>) -> Vec<u8> {
    let mut out = Vec::with_capacity(512);
    let status = parts.status;
    let _ = write!(
        out,
        "HTTP/1.1 {} {}\r\n",
        status.as_u16(),
        status.canonical_reason().unwrap_or("")
    );
    for (name, value) in &parts.headers {
        if matches!(
            *name,
            header::CONTENT_LENGTH | header::TRANSFER_ENCODING | header::CONNECTION
        ) {
            continue;
        }
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    if !parts.headers.contains_key(header::DATE) {
        let _ = write!(
            out,
            "date: {}\r\n",
            httpdate::fmt_http_date(std::time::SystemTime::now())
        );
    }
    match length {
        Some(length) => {
            let _ = write!(out, "content-length: {length}\r\n");
        }
        None => out.extend_from_slice(b"transfer-encoding: chunked\r\n"),
    }
    out.extend_from_slice(b"connection: close\r\n\r\n");
    out
}

/// Appends `data` to `out` as one chunk of a chunked body (nothing for empty data, which
/// would read as the last chunk), so it leaves in the same write as its neighbours.
fn push_chunk(out: &mut Vec<u8>, data: &[u8]) {
    if data.is_empty() {
        return;
    }
    let _ = write!(out, "{:x}\r\n", data.len());
    out.extend_from_slice(data);
    out.extend_from_slice(b"\r\n");
}

/// A socket with bytes already read from it put back in front.
pub(super) struct Rewind<S> {
    prefix: Bytes,
    inner: S,
}

impl<S> Rewind<S> {
    pub(super) fn new(prefix: Bytes, inner: S) -> Self {
        Self { prefix, inner }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Rewind<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if !self.prefix.is_empty() {
            let n = buf.remaining().min(self.prefix.len());
            buf.put_slice(&self.prefix[..n]);
            self.prefix.advance(n);
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Rewind<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::StreamExt;

    fn parse(head: &str) -> Option<Request<Body>> {
        match parse_stream_request(head.as_bytes()) {
            Parsed::Stream(request) => Some(*request),
            _ => None,
        }
    }

    #[test]
    fn only_a_plain_complete_stream_get_is_taken() {
        let ok = parse("GET /api/messages?x=1 HTTP/1.1\r\nHost: a\r\nCookie: s=1\r\n\r\n").unwrap();
        assert_eq!(ok.uri(), "/api/messages?x=1");
        assert_eq!(ok.headers()["cookie"], "s=1");
        assert!(parse("GET /api/messages HTTP/1.1\r\nHost: a\r\n\r\n").is_some());
        for other in [
            "GET /api/messagesX HTTP/1.1\r\nHost: a\r\n\r\n",
            "GET /api/messages HTTP/1.0\r\nHost: a\r\n\r\n",
            "POST /api/messages HTTP/1.1\r\nHost: a\r\n\r\n",
            "GET /api/messages HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc",
            "GET /api/messages HTTP/1.1\r\nUpgrade: h2c\r\n\r\n",
            "GET /api/messages HTTP/1.1\r\nHost: a\r\n\r\nGET / HTTP/1.1\r\n\r\n",
        ] {
            assert!(parse(other).is_none(), "{other:?}");
        }
        assert!(matches!(
            parse_stream_request(b"GET /api/messages HTTP/1.1\r\nHost"),
            Parsed::Partial
        ));
    }

    #[tokio::test]
    async fn other_openings_keep_every_byte_for_hyper() {
        let (mut client, mut server) = tokio::io::duplex(64);
        client.write_all(b"PRI * HTTP/2.0\r\n\r\nSM").await.unwrap();
        let Opening::Other(prefix) = read_opening(&mut server).await else {
            panic!("an HTTP/2 preface is not a stream")
        };
        let mut rewound = Rewind::new(prefix, server);
        client.write_all(b"\r\n\r\n").await.unwrap();
        drop(client);
        let mut all = Vec::new();
        rewound.read_to_end(&mut all).await.unwrap();
        assert_eq!(all, b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n");
    }

    /// A client that has already left (reads see EOF) and records each write the server makes.
    #[derive(Default, Clone)]
    struct Recorder(std::sync::Arc<std::sync::Mutex<Vec<Vec<u8>>>>);

    impl AsyncRead for Recorder {
        fn poll_read(
            self: Pin<&mut Self>,
            _: &mut Context<'_>,
            _: &mut ReadBuf<'_>,
        ) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
    }

    impl AsyncWrite for Recorder {
        fn poll_write(
            self: Pin<&mut Self>,
            _: &mut Context<'_>,
            buf: &[u8],
        ) -> Poll<io::Result<usize>> {
            self.0.lock().unwrap().push(buf.to_vec());
            Poll::Ready(Ok(buf.len()))
        }
        fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
        fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
    }

    #[tokio::test]
    async fn the_head_and_the_frames_ready_with_it_go_out_in_one_write() {
        // One frame ready at once, then nothing for ever: a stream's opening.
        let router = Router::new().route(
            "/api/messages",
            axum::routing::get(|| async {
                let frames = futures::stream::once(async {
                    Ok::<_, std::convert::Infallible>(Bytes::from_static(b": connected\n\n"))
                })
                .chain(futures::stream::pending());
                (
                    [(header::CONTENT_TYPE, "text/event-stream")],
                    Body::from_stream(frames),
                )
            }),
        );
        let request = parse("GET /api/messages HTTP/1.1\r\nHost: a\r\n\r\n").unwrap();
        let client = Recorder::default();
        let peer = SocketAddr::from(([127, 0, 0, 1], 9));
        serve_stream(
            client.clone(),
            request,
            peer,
            router,
            &CancellationToken::new(),
        )
        .await;
        let writes = client.0.lock().unwrap().clone();
        assert_eq!(writes.len(), 1, "{writes:?}");
        let written = String::from_utf8(writes[0].clone()).unwrap();
        assert!(written.starts_with("HTTP/1.1 200 OK\r\n"), "{written}");
        assert!(
            written.ends_with("\r\n\r\nd\r\n: connected\n\n\r\n"),
            "{written}"
        );
    }

    #[test]
    fn chunks_are_framed_with_their_hex_length_and_empty_data_adds_none() {
        let mut out = Vec::new();
        push_chunk(&mut out, &[b'x'; 26]);
        push_chunk(&mut out, b"");
        push_chunk(&mut out, b"ab");
        assert_eq!(
            out,
            [b"1a\r\n".as_slice(), &[b'x'; 26], b"\r\n2\r\nab\r\n"].concat()
        );
    }
}
