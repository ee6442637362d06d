//! Connections the emulator can close without answering (the `closeConnection` fault).
//!
//! The emulator's listener wraps every accepted TCP stream with a [`Hangup`] switch that the
//! request handlers reach through axum's connect info. A handler that flips it makes the
//! connection fail its next write: hyper then drops the connection without sending the
//! response, and the client sees it closed before any answer, as when a proxy or a NAT
//! drops a connection after the request went through.

use std::{
    io,
    net::SocketAddr,
    pin::Pin,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    task::{Context, Poll},
};

use axum::{
    extract::connect_info::Connected,
    serve::{IncomingStream, Listener},
};
use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    net::{TcpListener, TcpStream},
};

/// The switch that closes one connection without an answer.
#[derive(Clone, Debug, Default)]
pub struct Hangup(Arc<AtomicBool>);

impl Hangup {
    /// Closes the connection at its next write: the response being prepared never leaves.
    pub fn hang_up(&self) {
        self.0.store(true, Ordering::SeqCst);
    }

    fn is_set(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
}

/// The emulator's listener: TCP, with a [`Hangup`] per connection.
#[derive(Debug)]
pub struct HangupListener(pub TcpListener);

impl Listener for HangupListener {
    type Io = HangupStream;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        // NB: TcpListener's own Listener impl retries and logs accept errors as axum does.
        let (stream, addr) = Listener::accept(&mut self.0).await;
        (
            HangupStream {
                inner: stream,
                hangup: Hangup::default(),
            },
            addr,
        )
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        self.0.local_addr()
    }
}

/// One accepted connection and its switch.
#[derive(Debug)]
pub struct HangupStream {
    inner: TcpStream,
    hangup: Hangup,
}

impl Connected<IncomingStream<'_, HangupListener>> for Hangup {
    fn connect_info(stream: IncomingStream<'_, HangupListener>) -> Self {
        stream.io().hangup.clone()
    }
}

fn closed() -> io::Error {
    io::Error::new(
        io::ErrorKind::ConnectionAborted,
        "closed by the emulator's closeConnection fault",
    )
}

impl AsyncRead for HangupStream {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.hangup.is_set() {
            // End of stream: nothing more is read from a connection being closed.
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut this.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for HangupStream {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.hangup.is_set() {
            return Poll::Ready(Err(closed()));
        }
        Pin::new(&mut this.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.hangup.is_set() {
            return Poll::Ready(Err(closed()));
        }
        Pin::new(&mut this.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.hangup.is_set() {
            return Poll::Ready(Err(closed()));
        }
        Pin::new(&mut this.inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}
