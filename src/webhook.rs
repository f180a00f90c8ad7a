//! The callback listener: where the provider tells a run that a task
//! changed, so the engine looks at it now instead of at its next poll.
//!
//! It is reachable from outside (that is its point), so it trusts nothing:
//! only a POST whose last path segment is this run's random token counts;
//! the body is read up to [`MAX_BODY`] within [`BODY_TIMEOUT`]; the provider
//! only names the task in it ([`crate::provider::Provider::parse_callback`]),
//! and the engine settles the task by *querying* it. Connections are capped
//! at [`MAX_CONNECTIONS`], each closed after [`CONNECTION_LIFETIME`], and
//! the queue to the engine is bounded: when it is full a callback is
//! dropped (and answered 200 all the same) — the polls that go on as usual
//! find that task a little later. Nothing here can lose or pay for a task.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::http::{Method, StatusCode, Uri};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};
use tokio::task::JoinHandle;

use crate::provider::Callback;

/// Largest callback body read (Kling's task object is a few KB).
pub const MAX_BODY: usize = 1 << 20;
/// A body not received within this is refused.
pub const BODY_TIMEOUT: Duration = Duration::from_secs(10);
/// Connections served at once; more wait to be accepted.
pub const MAX_CONNECTIONS: usize = 256;
/// A connection is closed this long after it was accepted.
pub const CONNECTION_LIFETIME: Duration = Duration::from_secs(60);
/// Callbacks waiting for the engine.
pub const QUEUE: usize = 4096;

/// Reads the task out of a callback body (the provider's format).
pub type Parse = Arc<dyn Fn(&[u8]) -> Option<Callback> + Send + Sync>;

#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    #[error("cannot listen on {addr} for callbacks (--webhook-listen): {source}")]
    Bind { addr: SocketAddr, source: io::Error },
}

/// A running listener; callbacks arrive on the receiver [`start`] returned.
#[derive(Debug)]
pub struct Listener {
    addr: SocketAddr,
    task: JoinHandle<()>,
}

impl Listener {
    /// Where it listens (the bound port when 0 was asked for).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stop listening; connections in progress are dropped.
    pub fn shutdown(self) {
        self.task.abort();
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        self.task.abort();
    }
}

struct Shared {
    token: String,
    parse: Parse,
    tx: mpsc::Sender<Callback>,
}

/// Listen on `listen` for POSTs to `…/{token}`; each body `parse` reads
/// becomes a [`Callback`] on the returned receiver.
pub async fn start(
    listen: SocketAddr,
    token: String,
    parse: Parse,
) -> Result<(Listener, mpsc::Receiver<Callback>), WebhookError> {
    let bind = |source| WebhookError::Bind {
        addr: listen,
        source,
    };
    let tcp = TcpListener::bind(listen).await.map_err(bind)?;
    let addr = tcp.local_addr().map_err(bind)?;
    let (tx, rx) = mpsc::channel(QUEUE);
    let shared = Arc::new(Shared { token, parse, tx });
    let app = Router::new().fallback(handle).with_state(shared);
    let listener = Capped {
        inner: tcp,
        slots: Arc::new(Semaphore::new(MAX_CONNECTIONS)),
    };
    let task = tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::warn!("the callback listener stopped: {e}");
        }
    });
    Ok((Listener { addr, task }, rx))
}

async fn handle(State(s): State<Arc<Shared>>, method: Method, uri: Uri, body: Body) -> StatusCode {
    let last = uri.path().trim_end_matches('/').rsplit('/').next();
    if !last.is_some_and(|seg| same(seg.as_bytes(), s.token.as_bytes())) {
        return StatusCode::NOT_FOUND;
    }
    if method != Method::POST {
        return StatusCode::METHOD_NOT_ALLOWED;
    }
    let bytes = match tokio::time::timeout(BODY_TIMEOUT, axum::body::to_bytes(body, MAX_BODY)).await
    {
        Ok(Ok(b)) => b,
        Ok(Err(_)) => return StatusCode::PAYLOAD_TOO_LARGE,
        Err(_) => return StatusCode::REQUEST_TIMEOUT,
    };
    match (s.parse)(&bytes) {
        Some(callback) => {
            // Full: the task's polls find it anyway.
            let _ = s.tx.try_send(callback);
            StatusCode::OK
        }
        None => StatusCode::BAD_REQUEST,
    }
}

/// Equal, in time that does not depend on where they differ.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// A TCP listener that serves at most [`MAX_CONNECTIONS`] at once.
struct Capped {
    inner: TcpListener,
    slots: Arc<Semaphore>,
}

impl axum::serve::Listener for Capped {
    type Io = Conn;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            let Ok(permit) = self.slots.clone().acquire_owned().await else {
                // Never closed; nothing else to do but wait for the abort.
                std::future::pending::<()>().await;
                continue;
            };
            match self.inner.accept().await {
                Ok((stream, addr)) => {
                    let _ = stream.set_nodelay(true);
                    let conn = Conn {
                        stream,
                        _permit: permit,
                        end: Box::pin(tokio::time::sleep(CONNECTION_LIFETIME)),
                    };
                    return (conn, addr);
                }
                // Out of file descriptors and the like: wait, do not spin.
                Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        self.inner.local_addr()
    }
}

/// One accepted connection: holds its slot, reads end at its lifetime.
struct Conn {
    stream: TcpStream,
    _permit: OwnedSemaphorePermit,
    end: Pin<Box<tokio::time::Sleep>>,
}

impl AsyncRead for Conn {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if self.end.as_mut().poll(cx).is_ready() {
            return Poll::Ready(Ok(())); // end of stream: hyper closes it
        }
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for Conn {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn listener() -> (Listener, mpsc::Receiver<Callback>) {
        let parse: Parse = Arc::new(|body: &[u8]| {
            let id = std::str::from_utf8(body).ok()?.strip_prefix("task ")?;
            Some(Callback {
                task_id: id.to_string(),
                settled: true,
            })
        });
        start("127.0.0.1:0".parse().unwrap(), "s3cret".into(), parse)
            .await
            .unwrap()
    }

    async fn post(l: &Listener, path: &str, body: &'static str) -> u16 {
        let url = format!("http://{}{path}", l.addr());
        reqwest::Client::new()
            .post(url)
            .body(body)
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    }

    #[tokio::test]
    async fn a_post_to_the_secret_path_names_a_task_for_the_engine() {
        let (l, mut rx) = listener().await;
        assert_eq!(post(&l, "/hooks/s3cret", "task 42").await, 200);
        assert_eq!(rx.recv().await.unwrap().task_id, "42");
        assert_eq!(post(&l, "/s3cret/", "task 43").await, 200);
        assert_eq!(rx.recv().await.unwrap().task_id, "43");
    }

    #[tokio::test]
    async fn anything_else_is_refused_and_reaches_nobody() {
        let (l, mut rx) = listener().await;
        assert_eq!(post(&l, "/hooks/guess", "task 1").await, 404);
        assert_eq!(post(&l, "/s3cret/more", "task 1").await, 404);
        assert_eq!(post(&l, "/", "task 1").await, 404);
        assert_eq!(post(&l, "/hooks/s3cret", "not a callback").await, 400);
        let get = reqwest::get(format!("http://{}/s3cret", l.addr()))
            .await
            .unwrap();
        assert_eq!(get.status().as_u16(), 405);
        let big = vec![b'x'; MAX_BODY + 1];
        let url = format!("http://{}/s3cret", l.addr());
        let r = reqwest::Client::new().post(url).body(big).send().await;
        assert!(r.map_or(true, |r| r.status().as_u16() == 413));
        assert!(rx.try_recv().is_err(), "nothing reached the engine");
    }

    #[tokio::test]
    async fn a_taken_address_is_a_clear_error() {
        let (l, _rx) = listener().await;
        let e = start(l.addr(), "t".into(), Arc::new(|_: &[u8]| None))
            .await
            .unwrap_err();
        assert!(e.to_string().contains("--webhook-listen"), "{e}");
    }
}
