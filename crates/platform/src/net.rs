//! The one door every request/response listener (gRPC, HTTP health and metrics) accepts through:
//! each accepted socket has `TCP_NODELAY` set before it serves a byte; and the one way a gRPC
//! client between services (or the binary's own commands) is made: [`endpoint`], with
//! `TCP_NODELAY` on every connection it opens.
//!
//! Why: with Nagle's algorithm on, an answer written in more than one piece (headers, then the
//! body) waits for the caller's delayed ACK — 40 ms on Linux — so every call took over 40 ms.
//! tonic's own `tcp_nodelay` applies only to listeners tonic binds itself, never to a stream of
//! sockets handed to `serve_with_incoming`, and axum sets nothing; so the platform sets it here.
use futures::Stream;
use std::io;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};

/// A gRPC client endpoint for `url` whose connections have `TCP_NODELAY` set. tonic's default
/// today, said here so that a change of default cannot bring the 40 ms stall back to the calls
/// one service makes to another (e.g. allocation's consent check per provider).
///
/// # Errors
/// `url` is not a URI.
pub fn endpoint(
    url: impl Into<String>,
) -> Result<tonic::transport::Endpoint, tonic::transport::Error> {
    Ok(tonic::transport::Endpoint::from_shared(url.into())?.tcp_nodelay(true))
}

/// A bound TCP listener whose accepted connections have `TCP_NODELAY` set.
#[derive(Debug)]
pub struct NoDelayListener {
    inner: TcpListener,
}

impl From<TcpListener> for NoDelayListener {
    fn from(inner: TcpListener) -> Self {
        Self { inner }
    }
}

/// An error of one connection (the peer gave up before we accepted it): skip it and go on.
fn is_connection_error(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::NotConnected
            | io::ErrorKind::InvalidInput
    )
}

impl NoDelayListener {
    /// Binds `addr`.
    pub async fn bind(addr: SocketAddr) -> io::Result<Self> {
        Ok(TcpListener::bind(addr).await?.into())
    }

    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.inner.local_addr()
    }

    /// The next connection, with `TCP_NODELAY` set. A connection that fails before it is set up
    /// is skipped; any other error (e.g. the process is out of file descriptors) is logged and
    /// accepting resumes after a pause, rather than spinning.
    pub async fn accept(&self) -> (TcpStream, SocketAddr) {
        loop {
            let failed = match self.inner.accept().await {
                Ok((socket, peer)) => match socket.set_nodelay(true) {
                    Ok(()) => return (socket, peer),
                    Err(e) => e,
                },
                Err(e) => e,
            };
            if !is_connection_error(&failed) {
                tracing::error!(error = %failed, "cannot accept a connection; retrying in 1 s");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }

    /// The accepted connections as the stream tonic's `serve_with_incoming` takes.
    pub fn incoming(self) -> impl Stream<Item = io::Result<TcpStream>> + Send + 'static {
        futures::stream::unfold(self, |listener| async move {
            let (socket, _) = listener.accept().await;
            Some((Ok(socket), listener))
        })
    }
}

impl axum::serve::Listener for NoDelayListener {
    type Io = TcpStream;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        NoDelayListener::accept(self).await
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        NoDelayListener::local_addr(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::StreamExt;

    async fn listener() -> (NoDelayListener, SocketAddr) {
        let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = l.local_addr().expect("addr");
        (l.into(), addr)
    }

    #[tokio::test]
    async fn a_plain_accepted_socket_keeps_nagle_so_the_check_can_fail() {
        let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = l.local_addr().expect("addr");
        let _client = TcpStream::connect(addr).await.expect("connect");
        let (server_side, _) = l.accept().await.expect("accept");
        assert!(!server_side.nodelay().expect("read TCP_NODELAY"));
    }

    #[tokio::test]
    async fn the_stream_tonic_serves_yields_sockets_with_nodelay_set() {
        let (l, addr) = listener().await;
        let mut incoming = Box::pin(l.incoming());
        for _ in 0..3 {
            let _client = TcpStream::connect(addr).await.expect("connect");
            let server_side = incoming
                .next()
                .await
                .expect("a connection")
                .expect("accepted");
            assert!(server_side.nodelay().expect("read TCP_NODELAY"));
        }
    }

    #[test]
    fn a_client_endpoint_opens_connections_with_nodelay_set() {
        let e = endpoint("http://127.0.0.1:50051").expect("a URI");
        assert!(e.get_tcp_nodelay());
        assert!(endpoint("not a uri\n").is_err());
    }

    #[tokio::test]
    async fn the_listener_axum_serves_accepts_sockets_with_nodelay_set() {
        let (mut l, addr) = listener().await;
        let client = TcpStream::connect(addr).await.expect("connect");
        let (server_side, peer) = axum::serve::Listener::accept(&mut l).await;
        assert_eq!(peer, client.local_addr().expect("client addr"));
        assert!(server_side.nodelay().expect("read TCP_NODELAY"));
    }
}
