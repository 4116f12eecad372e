//! The HTTP(S) server loop: serves the broker's routes on listening TCP
//! sockets (passed by systemd or bound here), optionally with TLS, and shuts
//! down gracefully: on the shutdown signal the listeners are closed at once
//! (new connections are refused), idle connections are closed, and requests
//! in flight are finished within [`SHUTDOWN_GRACE`].
//!
//! Bounded (crate::daemon::limits): connections are admitted by
//! crate::daemon::admission; a request's header, its body and the whole
//! request each have a deadline, and a connection without a request in
//! flight is closed after the keep-alive time.

use crate::core::broker::Shared;
use crate::daemon::admission::{self, Admission, Connection, Refusal};
use crate::daemon::limits::FrontendLimits;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, watch};
use tokio_rustls::rustls;
use warp::http::{Request, Response, StatusCode};
use warp::hyper::Body;
use x2gobroker_sys::client_net::client_unit;

/// Bound for finishing requests in flight after SIGTERM (systemd's stop
/// timeout is 90 s by default).
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(80);

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
    limits: watch::Receiver<FrontendLimits>,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<bool, String> {
    let (stop_tx, stop_rx) = watch::channel(false);
    // Every connection task holds a sender; recv() yields None once all ended.
    let (alive_tx, mut alive_rx) = mpsc::channel::<()>(1);
    let front = Arc::new(FrontDoor {
        admission: Admission::new(),
        limits,
        tls,
        shared,
    });
    let mut accepters = Vec::new();
    for listener in listeners {
        listener.set_nonblocking(true).map_err(|e| e.to_string())?;
        let listener = tokio::net::TcpListener::from_std(listener).map_err(|e| e.to_string())?;
        accepters.push(tokio::spawn(accept_loop(
            listener,
            front.clone(),
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

/// What every connection task shares.
struct FrontDoor {
    admission: Arc<Admission>,
    /// The limits in force; each connection takes a copy when accepted.
    limits: watch::Receiver<FrontendLimits>,
    tls: Option<tokio_rustls::TlsAcceptor>,
    shared: Shared,
}

async fn accept_loop(
    listener: tokio::net::TcpListener,
    front: Arc<FrontDoor>,
    mut stop: watch::Receiver<bool>,
    alive: mpsc::Sender<()>,
) {
    let stats = &crate::core::stats::STATS.connections;
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
                crate::core::log_limit::log("accept failed", module_path!(), log::Level::Error, || {
                    format!("accept: {e}")
                });
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        stats.accepted.fetch_add(1, Ordering::Relaxed);
        // The limits in force now (a reload may have changed them).
        let limits = front.limits.borrow().clone();
        let connection_limits = admission::Limits {
            max: limits.max_connections,
            per_client: limits.max_connections_per_client,
        };
        let admitted = match front.admission.admit(client_unit(peer.ip()), connection_limits) {
            Ok(a) => a,
            Err(refusal) => {
                let counter = match refusal {
                    Refusal::PerClient => &stats.refused_per_client,
                    Refusal::Overall => &stats.refused_overall,
                };
                counter.fetch_add(1, Ordering::Relaxed);
                crate::core::log_limit::log(
                    "connection refused by a limit",
                    module_path!(),
                    log::Level::Warn,
                    || {
                        format!(
                            "connection from {} refused: every connection is busy (limit {})",
                            peer.ip(),
                            refusal.as_str()
                        )
                    },
                );
                // Closed at once: the descriptor is free again.
                drop(stream);
                continue;
            }
        };
        stats
            .evicted_idle
            .fetch_add(admitted.evicted as u64, Ordering::Relaxed);
        stats.open.store(front.admission.open() as u64, Ordering::Relaxed);
        let _ = stream.set_nodelay(true);
        let front = front.clone();
        let stop = stop.clone();
        let alive = alive.clone();
        tokio::spawn(async move {
            let _alive = alive;
            let ticket = admitted.ticket;
            let connection = ticket.connection.clone();
            match front.tls.clone() {
                None => serve_connection(stream, peer, &front, &limits, connection, stop).await,
                Some(acceptor) => {
                    let handshake = acceptor.accept(stream);
                    tokio::select! {
                        r = tokio::time::timeout(limits.header_read_timeout, handshake) => match r {
                            Ok(Ok(tls_stream)) => {
                                serve_connection(tls_stream, peer, &front, &limits, connection, stop).await
                            }
                            Ok(Err(e)) => log::debug!("TLS handshake with {peer} failed: {e}"),
                            Err(_) => log::debug!("TLS handshake with {peer} timed out"),
                        },
                        _ = connection.evict.notified() => {}
                    }
                }
            }
            drop(ticket);
            crate::core::stats::STATS
                .connections
                .open
                .store(front.admission.open() as u64, Ordering::Relaxed);
        });
    }
}

/// The error page (as the broker's other errors), closing the connection.
fn transport_error(status: StatusCode) -> Response<Body> {
    let mut response = crate::web::error_response(status.as_u16());
    response
        .headers_mut()
        .insert("Connection", warp::http::HeaderValue::from_static("close"));
    response
}

/// Reads a whole request body within `limit`; `Err` with the status to answer.
async fn read_body(body: Body, limit: Duration) -> Result<Body, StatusCode> {
    use warp::hyper::body::HttpBody;
    let read = async move {
        let mut body = body;
        let mut bytes = Vec::new();
        while let Some(chunk) = body.data().await {
            let chunk = chunk.map_err(|_| StatusCode::BAD_REQUEST)?;
            if bytes.len() + chunk.len() > crate::web::MAX_BODY {
                return Err(StatusCode::PAYLOAD_TOO_LARGE);
            }
            bytes.extend_from_slice(&chunk);
        }
        Ok(Body::from(bytes))
    };
    match tokio::time::timeout(limit, read).await {
        Ok(r) => r,
        Err(_) => {
            crate::core::stats::STATS
                .connections
                .body_timeouts
                .fetch_add(1, Ordering::Relaxed);
            Err(StatusCode::REQUEST_TIMEOUT)
        }
    }
}

async fn serve_connection<S>(
    io: S,
    peer: SocketAddr,
    front: &FrontDoor,
    limits: &FrontendLimits,
    connection: Arc<Connection>,
    mut stop: watch::Receiver<bool>,
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    use warp::hyper::service::Service as _;
    let routes = warp::service(crate::web::routes_for_peer(front.shared.clone(), Some(peer)));
    let request_limits = (limits.body_read_timeout, limits.request_timeout);
    let in_request = connection.clone();
    let service = warp::hyper::service::service_fn(move |request: Request<Body>| {
        let mut routes = routes.clone();
        let connection = in_request.clone();
        let (body_read_timeout, request_timeout) = request_limits;
        async move {
            let _busy = connection.request();
            let (parts, body) = request.into_parts();
            let body = match read_body(body, body_read_timeout).await {
                Ok(b) => b,
                Err(status) => return Ok::<_, std::convert::Infallible>(transport_error(status)),
            };
            let answer = routes.call(Request::from_parts(parts, body));
            match tokio::time::timeout(request_timeout, answer).await {
                Ok(Ok(response)) => Ok(response),
                Ok(Err(never)) => match never {},
                Err(_) => {
                    crate::core::stats::STATS
                        .connections
                        .request_timeouts
                        .fetch_add(1, Ordering::Relaxed);
                    Ok(transport_error(StatusCode::SERVICE_UNAVAILABLE))
                }
            }
        }
    });
    let mut http = warp::hyper::server::conn::Http::new();
    http.http1_only(true)
        .http1_keep_alive(true)
        .http1_header_read_timeout(limits.header_read_timeout);
    let served = http.serve_connection(io, service);
    tokio::pin!(served);
    if *stop.borrow() {
        served.as_mut().graceful_shutdown();
    }
    let keepalive = limits.keepalive_timeout;
    loop {
        // Idle since the last request ended (or the accept): closed at
        // the keep-alive deadline; busy: checked again later.
        let idle_deadline = if connection.is_busy() {
            tokio::time::Instant::now() + keepalive
        } else {
            tokio::time::Instant::from_std(connection.last_active()) + keepalive
        };
        tokio::select! {
            r = served.as_mut() => {
                if let Err(e) = r {
                    log::debug!("connection from {peer}: {e}");
                }
                return;
            }
            _ = connection.evict.notified() => {
                // To make room (crate::daemon::admission): idle ones close
                // now, a request that just started is finished first.
                if !connection.is_busy() {
                    return;
                }
                break;
            }
            _ = tokio::time::sleep_until(idle_deadline) => {
                if !connection.is_busy()
                    && connection.last_active().elapsed() >= keepalive
                {
                    crate::core::stats::STATS
                        .connections
                        .closed_idle
                        .fetch_add(1, Ordering::Relaxed);
                    return;
                }
            }
            _ = stop.changed() => break,
        }
    }
    // Finish the request in flight, then close; idle connections close now.
    served.as_mut().graceful_shutdown();
    // Bounded: a client that never reads its answer must not keep the
    // descriptor of a connection that no longer counts against the limits.
    match tokio::time::timeout(limits.request_timeout + keepalive, served).await {
        Ok(Err(e)) => log::debug!("connection from {peer}: {e}"),
        Ok(Ok(())) => {}
        Err(_) => log::debug!("connection from {peer}: closed while still busy after shutdown"),
    }
}
