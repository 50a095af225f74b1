//! The HTTP(S) server: its own thread and tokio runtime, so the daemon's
//! connector threads stay as they are; HTTPS with rustls from PEM files.

use std::net::SocketAddr;
use std::sync::Arc;
use std::thread::JoinHandle;

use axum::Router;
use axum::extract::ConnectInfo;
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::sync::watch;

use crate::settings::TlsFiles;

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The address cannot be listened on.
    #[error(
        "cannot listen on {addr}: {message}; choose another `--listen` address (e.g. 127.0.0.1:9090) or stop what already uses it"
    )]
    Listen {
        /// The address asked for.
        addr: String,
        /// What the system said.
        message: String,
    },
    /// The certificate or key cannot be used.
    #[error(
        "cannot serve HTTPS with {path}: {message}; point [tls] at a PEM certificate chain and its private key"
    )]
    Tls {
        /// The file.
        path: String,
        /// What is wrong.
        message: String,
    },
    /// The server's thread or runtime could not start.
    #[error(
        "cannot start the web server: {0}; the machine is out of resources, free some and start again"
    )]
    Start(String),
}

/// A running server; stops when dropped.
pub struct ConsoleServer {
    addr: SocketAddr,
    https: bool,
    stop: watch::Sender<bool>,
    thread: Option<JoinHandle<()>>,
}

fn tls_config(files: &TlsFiles) -> Result<Arc<rustls::ServerConfig>, ServeError> {
    let bad = |path: &std::path::Path, message: String| ServeError::Tls {
        path: path.display().to_string(),
        message,
    };
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&files.certificate)
        .map_err(|e| bad(&files.certificate, e.to_string()))?
        .collect::<Result<_, _>>()
        .map_err(|e| bad(&files.certificate, e.to_string()))?;
    if certs.is_empty() {
        return Err(bad(&files.certificate, "no certificate in it".into()));
    }
    let key =
        PrivateKeyDer::from_pem_file(&files.key).map_err(|e| bad(&files.key, e.to_string()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| bad(&files.certificate, e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| bad(&files.key, e.to_string()))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

impl ConsoleServer {
    /// Serves `app` on `addr` (port 0 picks a free port), over HTTPS when
    /// `tls` is given.
    pub fn start(
        addr: &str,
        tls: Option<&TlsFiles>,
        app: Router,
    ) -> Result<ConsoleServer, ServeError> {
        let listen_err = |message: String| ServeError::Listen {
            addr: addr.to_string(),
            message,
        };
        let tls = tls.map(tls_config).transpose()?;
        let listener = std::net::TcpListener::bind(addr).map_err(|e| listen_err(e.to_string()))?;
        listener
            .set_nonblocking(true)
            .map_err(|e| listen_err(e.to_string()))?;
        let bound = listener
            .local_addr()
            .map_err(|e| listen_err(e.to_string()))?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("console-http")
            .enable_all()
            .build()
            .map_err(|e| ServeError::Start(e.to_string()))?;
        let (stop, stopped) = watch::channel(false);
        let https = tls.is_some();
        let thread = std::thread::Builder::new()
            .name("console".into())
            .spawn(move || {
                runtime.block_on(async move {
                    let listener = match tokio::net::TcpListener::from_std(listener) {
                        Ok(l) => l,
                        Err(e) => return tracing::error!("console: {e}"),
                    };
                    match tls {
                        None => serve_http(listener, app, stopped).await,
                        Some(config) => serve_https(listener, app, config, stopped).await,
                    }
                });
            })
            .map_err(|e| ServeError::Start(e.to_string()))?;
        Ok(ConsoleServer {
            addr: bound,
            https,
            stop,
            thread: Some(thread),
        })
    }

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://` or `https://` and the address.
    pub fn url(&self) -> String {
        format!(
            "{}://{}",
            if self.https { "https" } else { "http" },
            self.addr
        )
    }
}

impl Drop for ConsoleServer {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

async fn serve_http(
    listener: tokio::net::TcpListener,
    app: Router,
    mut stopped: watch::Receiver<bool>,
) {
    let service = app.into_make_service_with_connect_info::<SocketAddr>();
    let shutdown = async move {
        let _ = stopped.wait_for(|s| *s).await;
    };
    if let Err(e) = axum::serve(listener, service)
        .with_graceful_shutdown(shutdown)
        .await
    {
        tracing::error!("console: {e}");
    }
}

async fn serve_https(
    listener: tokio::net::TcpListener,
    app: Router,
    config: Arc<rustls::ServerConfig>,
    mut stopped: watch::Receiver<bool>,
) {
    let acceptor = tokio_rustls::TlsAcceptor::from(config);
    loop {
        let (stream, peer) = tokio::select! {
            _ = stopped.wait_for(|s| *s) => return,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!("console: accept failed: {e}");
                    continue;
                }
            },
        };
        let acceptor = acceptor.clone();
        let app = app.clone();
        tokio::spawn(async move {
            let stream = match acceptor.accept(stream).await {
                Ok(s) => s,
                Err(e) => return tracing::debug!("console: TLS handshake with {peer} failed: {e}"),
            };
            let service = app.layer(axum::Extension(ConnectInfo(peer)));
            let served = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), TowerToHyperService::new(service))
                .await;
            if let Err(e) = served {
                tracing::debug!("console: connection from {peer}: {e}");
            }
        });
    }
}
