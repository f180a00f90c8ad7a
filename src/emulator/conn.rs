//! Connections with a kill switch, so a handler can close its own connection
//! mid-exchange: [`KillListener`] hands axum [`KillableIo`] streams, and each
//! request sees its connection's [`ConnCtl`] through `ConnectInfo`.
//!
//! Two ways to trip it:
//! - [`ConnCtl::kill`]: every later read is EOF and every write fails, so hyper
//!   drops the connection before writing a byte of the pending response
//!   (ambiguous create);
//! - [`ConnCtl::kill_after_flush`]: the next time hyper has flushed everything it
//!   buffered, the connection dies (a download cut after exactly the bytes
//!   already handed to hyper);
//! - [`ConnCtl::close_after_flush`]: the same, but the write side is shut down
//!   first, so the client reads a clean end of stream (a server that believes
//!   it sent everything).

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};

use axum::extract::connect_info::Connected;
use axum::serve::{IncomingStream, Listener};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};

#[derive(Debug, Default)]
struct ConnState {
    killed: AtomicBool,
    kill_after_flush: AtomicBool,
    close_after_flush: AtomicBool,
}

/// A handler's grip on its own connection.
#[derive(Debug, Clone, Default)]
pub(crate) struct ConnCtl(Arc<ConnState>);

impl ConnCtl {
    /// Close now: nothing more is read or written.
    pub(crate) fn kill(&self) {
        self.0.killed.store(true, Ordering::SeqCst);
    }

    /// Close once everything written so far has reached the socket.
    pub(crate) fn kill_after_flush(&self) {
        self.0.kill_after_flush.store(true, Ordering::SeqCst);
    }

    /// Shut the write side down once everything written so far has reached
    /// the socket, then close.
    pub(crate) fn close_after_flush(&self) {
        self.0.close_after_flush.store(true, Ordering::SeqCst);
    }

    fn killed(&self) -> bool {
        self.0.killed.load(Ordering::SeqCst)
    }
}

/// A TCP stream that fails every operation once its [`ConnCtl`] is tripped.
pub(crate) struct KillableIo {
    inner: TcpStream,
    ctl: ConnCtl,
}

fn aborted() -> io::Error {
    io::Error::new(io::ErrorKind::ConnectionAborted, "closed by the emulator")
}

impl AsyncRead for KillableIo {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if self.ctl.killed() {
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for KillableIo {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        if self.ctl.killed() {
            return Poll::Ready(Err(aborted()));
        }
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        if self.ctl.killed() {
            return Poll::Ready(Err(aborted()));
        }
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.ctl.killed() {
            return Poll::Ready(Err(aborted()));
        }
        // hyper calls this only after its own write buffer is empty, so
        // everything handed to it so far is now in the kernel.
        match Pin::new(&mut self.inner).poll_flush(cx) {
            Poll::Ready(Ok(())) if self.ctl.0.close_after_flush.load(Ordering::SeqCst) => {
                match Pin::new(&mut self.inner).poll_shutdown(cx) {
                    Poll::Pending => return Poll::Pending,
                    Poll::Ready(_) => {}
                }
                self.ctl.kill();
                Poll::Ready(Err(aborted()))
            }
            Poll::Ready(Ok(())) if self.ctl.0.kill_after_flush.load(Ordering::SeqCst) => {
                self.ctl.kill();
                Poll::Ready(Err(aborted()))
            }
            other => other,
        }
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// A TCP listener whose connections are [`KillableIo`].
pub(crate) struct KillListener {
    inner: TcpListener,
}

impl KillListener {
    pub(crate) fn new(inner: TcpListener) -> Self {
        KillListener { inner }
    }
}

impl Listener for KillListener {
    type Io = KillableIo;
    type Addr = std::net::SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            match self.inner.accept().await {
                Ok((stream, addr)) => {
                    // Small JSON answers: do not wait for Nagle.
                    let _ = stream.set_nodelay(true);
                    let io = KillableIo {
                        inner: stream,
                        ctl: ConnCtl::default(),
                    };
                    return (io, addr);
                }
                Err(err) => {
                    // Out of file descriptors and the like: back off instead
                    // of spinning, as axum's own TcpListener impl does.
                    tracing::warn!("emulator accept failed: {err}");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                }
            }
        }
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        self.inner.local_addr()
    }
}

impl Connected<IncomingStream<'_, KillListener>> for ConnCtl {
    fn connect_info(stream: IncomingStream<'_, KillListener>) -> Self {
        stream.io().ctl.clone()
    }
}

/// A loopback server running in the background; both emulators (Kling's and
/// fal's) run on it. Dropping it starts a graceful stop; [`Running::shutdown`]
/// stops it and waits (at most 5 s: a client holding a download open must not
/// hang the caller).
pub(crate) struct Running {
    addr: std::net::SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    join: tokio::task::JoinHandle<()>,
}

impl Running {
    /// Bind `127.0.0.1:port` (0: any free port).
    pub(crate) async fn bind(port: u16) -> io::Result<TcpListener> {
        TcpListener::bind(("127.0.0.1", port)).await
    }

    /// Serve `app` on `listener` with killable connections; `what` names the
    /// server in a log line if it ends with an error.
    pub(crate) fn spawn(
        listener: TcpListener,
        app: axum::Router,
        what: &'static str,
    ) -> io::Result<Running> {
        let addr = listener.local_addr()?;
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let serve = axum::serve(
            KillListener::new(listener),
            app.into_make_service_with_connect_info::<ConnCtl>(),
        )
        .with_graceful_shutdown(async move {
            let _ = stopped.await;
        });
        let join = tokio::spawn(async move {
            if let Err(err) = serve.await {
                tracing::warn!("{what} server ended with an error: {err}");
            }
        });
        Ok(Running {
            addr,
            stop: Some(stop),
            join,
        })
    }

    pub(crate) fn addr(&self) -> std::net::SocketAddr {
        self.addr
    }

    pub(crate) async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if tokio::time::timeout(std::time::Duration::from_secs(5), &mut self.join)
            .await
            .is_err()
        {
            self.join.abort();
        }
    }
}
