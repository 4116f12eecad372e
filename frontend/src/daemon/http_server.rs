//! The HTTP(S) server loop: serves the broker's routes on listening TCP
//! sockets (passed by systemd or bound here), optionally with TLS, and shuts
//! down gracefully: on the shutdown signal the listeners are closed at once
//! (new connections are refused), idle connections are closed, and requests
//! in flight are finished within [`SHUTDOWN_GRACE`].

use crate::core::broker::Shared;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, watch};
use tokio_rustls::rustls;

/// Bound for finishing requests in flight after SIGTERM (systemd's stop
/// timeout is 90 s by default).
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(80);
/// Bound for a TLS handshake, so a silent client cannot hold a task.
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(30);

/// Loads a PEM certificate chain and private key into a TLS acceptor.
pub fn tls_acceptor(certfile: &str, keyfile: &str) -> Result<tokio_rustls::TlsAcceptor, String> {
    let cert_pem = std::fs::read(certfile).map_err(|e| format!("{certfile}: {e}"))?;
    let key_pem = std::fs::read(keyfile).map_err(|e| format!("{keyfile}: {e}"))?;
    let certs = rustls_pemfile::certs(&mut cert_pem.as_slice())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("{certfile}: {e}"))?;
    if certs.is_empty() {
        return Err(format!("{certfile}: no certificate found"));
    }
    let key = rustls_pemfile::private_key(&mut key_pem.as_slice())
        .map_err(|e| format!("{keyfile}: {e}"))?
        .ok_or_else(|| format!("{keyfile}: no private key found"))?;
    let config = rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| format!("TLS certificate/key: {e}"))?;
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
}

/// Serves until `shutdown` completes, then drains. Returns false when
/// connections were still open at the end of the grace period.
pub async fn serve(
    listeners: Vec<std::net::TcpListener>,
    tls: Option<tokio_rustls::TlsAcceptor>,
    shared: Shared,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<bool, String> {
    let (stop_tx, stop_rx) = watch::channel(false);
    // Every connection task holds a sender; recv() yields None once all ended.
    let (alive_tx, mut alive_rx) = mpsc::channel::<()>(1);
    let mut accepters = Vec::new();
    for listener in listeners {
        listener.set_nonblocking(true).map_err(|e| e.to_string())?;
        let listener = tokio::net::TcpListener::from_std(listener).map_err(|e| e.to_string())?;
        accepters.push(tokio::spawn(accept_loop(
            listener,
            tls.clone(),
            shared.clone(),
            stop_rx.clone(),
            alive_tx.clone(),
        )));
    }
    drop(alive_tx);
    shutdown.await;
    let _ = stop_tx.send(true);
    // The accept loops end on the signal and drop (close) their listeners.
    for task in accepters {
        let _ = task.await;
    }
    Ok(tokio::time::timeout(SHUTDOWN_GRACE, alive_rx.recv())
        .await
        .is_ok())
}

async fn accept_loop(
    listener: tokio::net::TcpListener,
    tls: Option<tokio_rustls::TlsAcceptor>,
    shared: Shared,
    mut stop: watch::Receiver<bool>,
    alive: mpsc::Sender<()>,
) {
    loop {
        let accepted = tokio::select! {
            biased;
            _ = stop.changed() => return,
            a = listener.accept() => a,
        };
        let (stream, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                // Out of descriptors and the like: back off briefly instead
                // of spinning.
                log::error!("accept: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let tls = tls.clone();
        let shared = shared.clone();
        let stop = stop.clone();
        let alive = alive.clone();
        tokio::spawn(async move {
            let _alive = alive;
            match tls {
                None => serve_connection(stream, peer, shared, stop).await,
                Some(acceptor) => {
                    match tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                        Ok(Ok(tls_stream)) => serve_connection(tls_stream, peer, shared, stop).await,
                        Ok(Err(e)) => log::info!("TLS handshake with {peer} failed: {e}"),
                        Err(_) => log::info!("TLS handshake with {peer} timed out"),
                    }
                }
            }
        });
    }
}

async fn serve_connection<S>(io: S, peer: SocketAddr, shared: Shared, mut stop: watch::Receiver<bool>)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let service = warp::service(crate::web::routes_for_peer(shared, Some(peer)));
    let connection = warp::hyper::server::conn::Http::new()
        .http1_only(true)
        .serve_connection(io, service);
    tokio::pin!(connection);
    if *stop.borrow() {
        connection.as_mut().graceful_shutdown();
    }
    tokio::select! {
        r = connection.as_mut() => {
            if let Err(e) = r {
                log::debug!("connection from {peer}: {e}");
            }
            return;
        }
        _ = stop.changed() => {}
    }
    // Finish the request in flight, then close; idle connections close now.
    connection.as_mut().graceful_shutdown();
    if let Err(e) = connection.await {
        log::debug!("connection from {peer}: {e}");
    }
}
