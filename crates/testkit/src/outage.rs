//! An outage for one test: a TCP proxy in front of a server (PostgreSQL, say) that the test can
//! cut — every connection through it dropped at once, new ones closed as soon as they open — and
//! mend. The clients see what a server gone away looks like (connections reset, connects that
//! fail), while the shared server itself, and every other test on it, carries on.
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::AbortHandle;

/// A proxy to one upstream address that can be cut and mended.
pub struct Cuttable {
    addr: SocketAddr,
    cut: Arc<AtomicBool>,
    links: Arc<Mutex<Vec<AbortHandle>>>,
    accept: AbortHandle,
}

impl Cuttable {
    /// A proxy on a free port of 127.0.0.1 to `upstream` (`host:port`).
    pub async fn start(upstream: &str) -> anyhow::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let cut = Arc::new(AtomicBool::new(false));
        let links: Arc<Mutex<Vec<AbortHandle>>> = Arc::default();
        let upstream = upstream.to_string();
        let accept = tokio::spawn({
            let (cut, links) = (cut.clone(), links.clone());
            async move {
                while let Ok((mut client, _)) = listener.accept().await {
                    if cut.load(Ordering::SeqCst) {
                        drop(client);
                        continue;
                    }
                    let upstream = upstream.clone();
                    let link = tokio::spawn(async move {
                        if let Ok(mut server) = TcpStream::connect(&upstream).await {
                            let _ = client.set_nodelay(true);
                            let _ = server.set_nodelay(true);
                            let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                        }
                    });
                    let mut links = links.lock().unwrap_or_else(|e| e.into_inner());
                    links.retain(|l| !l.is_finished());
                    links.push(link.abort_handle());
                }
            }
        })
        .abort_handle();
        Ok(Self {
            addr,
            cut,
            links,
            accept,
        })
    }

    /// A proxy in front of the server of `url` (a database or broker URL), and `url` pointed at it.
    pub async fn in_front_of(url: &str) -> anyhow::Result<(Self, String)> {
        let proxy = Self::start(&crate::host_port(url)).await?;
        let through = proxy.url_for(url);
        Ok((proxy, through))
    }

    /// `host:port` of the proxy.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `url` (e.g. `postgres://user@127.0.0.1:5432/db?x=y`) pointed at the proxy instead.
    pub fn url_for(&self, url: &str) -> String {
        let (scheme, rest) = url.split_once("://").unwrap_or(("", url));
        let (userinfo, hostpath) = match rest.rsplit_once('@') {
            Some((u, h)) => (format!("{u}@"), h),
            None => (String::new(), rest),
        };
        let tail = hostpath
            .find(['/', '?'])
            .map(|i| &hostpath[i..])
            .unwrap_or("");
        format!("{scheme}://{userinfo}{}{tail}", self.addr)
    }

    /// The server goes away: every open connection is dropped, and new ones are closed at once.
    pub fn cut(&self) {
        self.cut.store(true, Ordering::SeqCst);
        for l in self
            .links
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .drain(..)
        {
            l.abort();
        }
    }

    /// The server is back: new connections go through again.
    pub fn mend(&self) {
        self.cut.store(false, Ordering::SeqCst);
    }
}

impl Drop for Cuttable {
    fn drop(&mut self) {
        self.accept.abort();
        self.cut();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_pointed_at_the_proxy() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let p = Cuttable::start("127.0.0.1:5432").await.unwrap();
            let port = p.addr().port();
            assert_eq!(
                p.url_for("postgres://eh:pw@127.0.0.1:5432/db?sslmode=disable"),
                format!("postgres://eh:pw@127.0.0.1:{port}/db?sslmode=disable")
            );
            assert_eq!(
                p.url_for("postgres://localhost/db"),
                format!("postgres://127.0.0.1:{port}/db")
            );
        });
    }
}
