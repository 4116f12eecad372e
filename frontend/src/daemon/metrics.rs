//! The metrics endpoint (opt-in, `metrics-listen` in `[global]`): the
//! counters of crate::core::stats as OpenMetrics text at `/metrics`, on its
//! own address, never on the broker's port. Few connections at once, each
//! bounded in time; anything else than `GET /metrics` gets 404.

use std::sync::Arc;
use std::time::Duration;
use warp::http::{Method, Request, Response, StatusCode};
use warp::hyper::Body;

pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
/// Scrapers connect rarely; a few slots are plenty.
const MAX_CONNECTIONS: usize = 8;
const CONNECTION_TIMEOUT: Duration = Duration::from_secs(10);

fn answer(request: &Request<Body>) -> Response<Body> {
    let (status, content_type, body) = match (request.method(), request.uri().path()) {
        (&Method::GET, "/metrics") => (
            StatusCode::OK,
            CONTENT_TYPE,
            crate::core::stats::STATS.metrics_text(),
        ),
        _ => (StatusCode::NOT_FOUND, "text/plain", "not found\n".to_owned()),
    };
    let mut response = Response::new(Body::from(body));
    *response.status_mut() = status;
    if let Ok(v) = warp::http::HeaderValue::from_str(content_type) {
        response.headers_mut().insert("Content-Type", v);
    }
    response
}

/// Serves until the task is aborted.
pub async fn serve(listener: std::net::TcpListener) {
    let listener = match listener
        .set_nonblocking(true)
        .and_then(|()| tokio::net::TcpListener::from_std(listener))
    {
        Ok(l) => l,
        Err(e) => {
            log::error!("metrics: {e}");
            return;
        }
    };
    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    loop {
        let (stream, _) = match listener.accept().await {
            Ok(a) => a,
            Err(e) => {
                log::error!("metrics: accept: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            continue;
        };
        tokio::spawn(async move {
            let _slot = slot;
            let service = warp::hyper::service::service_fn(|request: Request<Body>| async move {
                Ok::<_, std::convert::Infallible>(answer(&request))
            });
            let mut http = warp::hyper::server::conn::Http::new();
            http.http1_only(true)
                .http1_header_read_timeout(CONNECTION_TIMEOUT);
            let _ = tokio::time::timeout(CONNECTION_TIMEOUT, http.serve_connection(stream, service)).await;
        });
    }
}
