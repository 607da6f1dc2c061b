//! Server side: the certificate the API presents (swapped live once the fleet CA
//! arrives) and a listener that hands axum only connections whose TLS handshake passed.
//!
//! ```text
//!  TcpListener ─accept─▶ handshake task (10 s at most) ─ok─▶ channel ─▶ axum::serve
//!                                              └─fails (plain HTTP, bad client)─▶ closed
//! ```

use std::net::SocketAddr;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

/// The name a node asks for when it calls another node's API: the answer is always the
/// certificate the fleet CA issued, even where a user brought their own for browsers.
pub const FLEET_SERVER_NAME: &str = "api.shoal.internal";

/// Longest a TLS handshake may take before the connection is dropped.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// The API's certificates: the fleet one, and the user's own when given.
pub struct ApiCert {
    fleet: RwLock<Arc<CertifiedKey>>,
    own: Option<Arc<CertifiedKey>>,
}

impl std::fmt::Debug for ApiCert {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiCert")
            .field("own", &self.own.is_some())
            .finish()
    }
}

impl ApiCert {
    pub fn new(fleet: Arc<CertifiedKey>, own: Option<Arc<CertifiedKey>>) -> ApiCert {
        ApiCert {
            fleet: RwLock::new(fleet),
            own,
        }
    }

    /// Serves `fleet` from now on (a certificate from the fleet CA once it arrives).
    pub fn set_fleet(&self, fleet: Arc<CertifiedKey>) {
        *self.fleet.write().expect("api cert lock") = fleet;
    }
}

impl ResolvesServerCert for ApiCert {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        match (&self.own, hello.server_name()) {
            (Some(own), name) if name != Some(FLEET_SERVER_NAME) => Some(own.clone()),
            _ => Some(self.fleet.read().expect("api cert lock").clone()),
        }
    }
}

/// The server config of the API: TLS 1.2 and 1.3 with ring, HTTP/1.1.
pub fn server_config(cert: Arc<ApiCert>) -> anyhow::Result<rustls::ServerConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_cert_resolver(cert);
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

/// An `axum::serve` listener yielding connections that completed a TLS handshake.
pub struct TlsListener {
    ready: mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
    local: SocketAddr,
    accepting: tokio::task::JoinHandle<()>,
}

impl TlsListener {
    pub fn new(listener: TcpListener, config: rustls::ServerConfig) -> std::io::Result<Self> {
        let local = listener.local_addr()?;
        let acceptor = TlsAcceptor::from(Arc::new(config));
        let (tx, ready) = mpsc::channel(64);
        let accepting = tokio::spawn(accept_loop(listener, acceptor, tx));
        Ok(TlsListener {
            ready,
            local,
            accepting,
        })
    }
}

impl Drop for TlsListener {
    fn drop(&mut self) {
        self.accepting.abort();
    }
}

async fn accept_loop(
    listener: TcpListener,
    acceptor: TlsAcceptor,
    tx: mpsc::Sender<(TlsStream<TcpStream>, SocketAddr)>,
) {
    loop {
        let (tcp, from) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(err) => {
                // Out of file descriptors, say: wait a little rather than spin.
                tracing::warn!(%err, "cannot accept an api connection");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = tcp.set_nodelay(true);
        let acceptor = acceptor.clone();
        let tx = tx.clone();
        // Each handshake in its own task, so a slow or silent client holds up no other.
        tokio::spawn(async move {
            match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                Ok(Ok(stream)) => {
                    let _ = tx.send((stream, from)).await;
                }
                Ok(Err(err)) => {
                    tracing::debug!(%from, %err, "api tls handshake failed");
                }
                Err(_) => tracing::debug!(%from, "api tls handshake timed out"),
            }
        });
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.ready.recv().await {
            Some(next) => next,
            // The accept loop never ends on its own; wait for shutdown.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(self.local)
    }
}
