//! The HTTP(S) front door: routing, request parsing and the warp filter;
//! the broker tasks themselves are [`crate::core::tasks`].

pub mod form;
pub mod json;
pub mod plain;
pub mod uccs;

#[cfg(test)]
mod tests;

use crate::core::backend::Backend;
use crate::core::broker::Shared;
use crate::core::scripts;
use crate::core::tasks::{check_access_with_scripts, AccessUndecided, Fields, TaskContext};
use bytes::{Buf, Bytes};
use form::{Form, FormError};
use std::net::SocketAddr;
use warp::http::{Method, Response, StatusCode};
use warp::hyper::Body;
use warp::Filter;

/// Largest request body we read.
pub const MAX_BODY: usize = 64 * 1024;

pub const TEXT_PLAIN: &str = "text/plain; charset=utf-8";
pub const TEXT_JSON: &str = "text/json; charset=utf-8";
pub const TEXT_HTML: &str = "text/html; charset=UTF-8";
/// `Retry-After` of a 503 answer, in seconds.
pub const RETRY_AFTER_SECS: u32 = 5;

/// A finished answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub status: u16,
    pub content_type: &'static str,
    /// `Expires: +1h`, sent with the outputs' successful answers.
    pub expires: bool,
    /// A basic-auth challenge (UCCS).
    pub www_authenticate: Option<String>,
    pub body: String,
}

impl Reply {
    pub fn ok(content_type: &'static str, body: String) -> Reply {
        Reply {
            status: 200,
            content_type,
            expires: true,
            www_authenticate: None,
            body,
        }
    }

    /// tornado's error page, which the original sends for every error.
    pub fn error(status: u16) -> Reply {
        let reason = StatusCode::from_u16(status)
            .ok()
            .and_then(|s| s.canonical_reason())
            .unwrap_or("Unknown");
        Reply {
            status,
            content_type: TEXT_HTML,
            expires: false,
            www_authenticate: None,
            body: format!("<html><title>{status}: {reason}</title><body>{status}: {reason}</body></html>"),
        }
    }

    fn into_response(self) -> Response<Body> {
        let mut builder = Response::builder()
            .status(self.status)
            .header("Content-Type", self.content_type);
        if self.expires {
            builder = builder.header("Expires", "+1h");
        }
        if let Some(challenge) = self.www_authenticate {
            builder = builder.header("WWW-Authenticate", challenge);
        }
        // Every 503 is passing (state store down, overload): say when to retry.
        if self.status == 503 {
            builder = builder.header("Retry-After", RETRY_AFTER_SECS.to_string());
        }
        builder
            .body(Body::from(self.body))
            .unwrap_or_else(|_| Response::new(Body::empty()))
    }
}

/// The error page for `status` as a response (the daemon's own transport
/// errors: body too large or too slow, request deadline).
pub fn error_response(status: u16) -> Response<Body> {
    Reply::error(status).into_response()
}

/// An incoming request, transport details removed.
pub struct Request {
    pub method: Method,
    pub path: String,
    pub query: String,
    pub body: Bytes,
    pub remote: Option<SocketAddr>,
    pub authorization: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputKind {
    Plain,
    Json,
}

fn form_error(e: FormError) -> Reply {
    crate::core::log_limit::log("bad request", module_path!(), log::Level::Info, || {
        format!("bad request: {e:?}")
    });
    Reply::error(400)
}

/// Percent-decoding of the URL path (tornado unquotes path arguments; a
/// `+` stays a plus). `None` (400) for a malformed escape or non-UTF-8.
pub fn decode_path(path: &str) -> Option<String> {
    String::from_utf8(form::unescape(path.as_bytes())?).ok()
}

pub async fn handle(shared: &Shared, req: Request) -> Reply {
    let Some(path) = decode_path(&req.path) else {
        return Reply::error(400);
    };
    let broker = shared.current();
    let (kind, rest) = if let Some(rest) = path.strip_prefix("/plain/") {
        (OutputKind::Plain, rest)
    } else if let Some(rest) = path.strip_prefix("/json/") {
        (OutputKind::Json, rest)
    } else if path == "/" {
        return match req.method {
            Method::GET => Reply {
                status: 200,
                content_type: TEXT_HTML,
                expires: false,
                www_authenticate: None,
                body: "<body><html><h1>X2Go Session Broker</h1><p>It works...</p></body></html>".into(),
            },
            _ => Reply::error(405),
        };
    } else if path.starts_with("/pubkeys") && path["/pubkeys".len()..].bytes().all(|b| b == b'/') {
        // The broker account's keys, for x2gobroker-pubkeyauthorizer.
        return match req.method {
            Method::GET => {
                let hostname = nix::unistd::gethostname()
                    .ok()
                    .and_then(|h| h.into_string().ok())
                    .unwrap_or_else(|| "localhost".into());
                Reply::ok(
                    TEXT_PLAIN,
                    crate::core::agent::remote::published_keys(&broker.env.daemon_user, &hostname),
                )
            }
            _ => Reply::error(405),
        };
    } else if uccs::is_ping_path(&path) {
        return uccs::ping(&req.method);
    } else if let Some((backend, version)) = uccs::api_path(&path) {
        return uccs::api(
            &broker,
            &req.method,
            backend,
            version,
            req.authorization.as_deref(),
            req.remote.map(|r| r.ip()),
        )
        .await;
    } else {
        return Reply::error(404);
    };
    match req.method {
        Method::POST => {}
        Method::GET if broker.env.debug => {
            log::warn!("GET http request detected, if unwanted: disable X2GOBROKER_DEBUG");
        }
        _ => return Reply::error(405),
    }
    let name = if rest.is_empty() {
        broker.env.default_backend.as_str()
    } else {
        rest.trim_end_matches('/').split('/').next().unwrap_or("")
    };
    let Some(backend) = Backend::from_name(name) else {
        crate::core::log_limit::log("no such backend", module_path!(), log::Level::Error, || {
            format!("No such broker backend {}", crate::core::audit::shown(name))
        });
        return Reply::error(404);
    };
    let enabled_output = match kind {
        OutputKind::Plain => broker.global.enable_plain_output,
        OutputKind::Json => broker.global.enable_json_output,
    };
    if !enabled_output {
        log::error!("The WebUI '{kind:?}' is not enabled in the global broker configuration");
        return Reply::error(404);
    }
    if !broker.backend_config(backend).enable {
        log::error!("The broker backend '{}' is not enabled", backend.name());
        return Reply::error(404);
    }
    let mut form = Form::default();
    if let Err(e) = form
        .add_urlencoded(req.query.as_bytes())
        .and_then(|_| form.add_urlencoded(&req.body))
    {
        return form_error(e);
    }
    let mut fields = match read_fields(&form, kind) {
        Ok(f) => f,
        Err(e) => return form_error(e),
    };
    let Some(remote) = req.remote else {
        log::error!("client could not provide an IP address, pretending: 404 Not Found");
        return Reply::error(404);
    };
    let ip = remote.ip();
    crate::core::log_limit::log("client address", module_path!(), log::Level::Info, || {
        format!("client address is {ip}")
    });
    let password = fields.password.clone();
    let access = match check_access_with_scripts(&broker, backend, &mut fields, ip, &password).await {
        Ok(access) if access.granted => access,
        Ok(_) => return Reply::error(401),
        Err(AccessUndecided::Script(scripts::Refused(why))) => {
            log::warn!("request refused: {why}");
            return Reply::error(401);
        }
        // The state store is down: nothing was decided, try again later.
        Err(AccessUndecided::Store(_)) => return Reply::error(503),
    };
    let ctx = TaskContext {
        broker: &broker,
        backend,
        fields: &fields,
        client: ip,
        access,
    };
    match kind {
        OutputKind::Plain => plain::respond(&ctx).await,
        OutputKind::Json => json::respond(&ctx).await,
    }
}

/// The task fields of a request, as the given output reads them.
pub fn read_fields(form: &Form, kind: OutputKind) -> Result<Fields, FormError> {
    let user = form.get("user", "")?;
    let mut login = form.get("login", "")?;
    if login.is_empty() {
        login = user.clone();
    }
    let profile_id = match kind {
        OutputKind::Plain => form.get("sid", "")?,
        OutputKind::Json => {
            let pid = form.get("profile-id", "")?;
            form.get("sid", &pid)?
        }
    };
    Ok(Fields {
        user,
        login,
        password: form.get_unstripped("password")?,
        authid: form.get("authid", "")?,
        pubkey: form.get("pubkey", "")?,
        task: form.get("task", "")?,
        profile_id,
        new_password: x2gobroker_protocol::Password::new(form.get_unstripped("newpass")?),
    })
}

async fn read_body(
    stream: impl futures_util::Stream<Item = Result<impl Buf, warp::Error>>,
) -> Result<Bytes, u16> {
    use futures_util::StreamExt;
    let mut body = Vec::new();
    futures_util::pin_mut!(stream);
    while let Some(chunk) = stream.next().await {
        let mut chunk = chunk.map_err(|_| 400u16)?;
        if body.len() + chunk.remaining() > MAX_BODY {
            return Err(413);
        }
        while chunk.has_remaining() {
            let part = chunk.chunk();
            body.extend_from_slice(part);
            let n = part.len();
            chunk.advance(n);
        }
    }
    Ok(Bytes::from(body))
}

/// The label a request is counted under (crate::core::stats): the task of
/// a broker request, else the kind of path.
fn task_label(req: &Request) -> &'static str {
    let path = req.path.as_str();
    if path.starts_with("/plain/") || path.starts_with("/json/") {
        let mut form = Form::default();
        let _ = form
            .add_urlencoded(req.query.as_bytes())
            .and_then(|_| form.add_urlencoded(&req.body));
        crate::core::stats::task_label(&form.get("task", "").unwrap_or_default())
    } else if path == "/" {
        "index"
    } else if path.starts_with("/pubkeys") {
        "pubkeys"
    } else if path.starts_with("/uccs") {
        "uccs"
    } else {
        "other"
    }
}

/// The warp filter serving every path.
pub fn routes(
    shared: Shared,
) -> impl Filter<Extract = (Response<Body>,), Error = std::convert::Infallible> + Clone {
    routes_from(shared, warp::addr::remote())
}

/// The same filter for one connection whose peer address is known (the
/// daemon's own accept loop serves each connection with hyper directly).
pub fn routes_for_peer(
    shared: Shared,
    remote: Option<std::net::SocketAddr>,
) -> impl Filter<Extract = (Response<Body>,), Error = std::convert::Infallible> + Clone {
    routes_from(shared, warp::any().map(move || remote))
}

fn routes_from<R>(
    shared: Shared,
    remote: R,
) -> impl Filter<Extract = (Response<Body>,), Error = std::convert::Infallible> + Clone
where
    R: Filter<Extract = (Option<std::net::SocketAddr>,), Error = std::convert::Infallible>
        + Clone
        + Send
        + Sync
        + 'static,
{
    warp::method()
        .and(warp::path::full())
        .and(warp::query::raw().or(warp::any().map(String::new)).unify())
        .and(remote)
        .and(warp::header::optional::<String>("authorization"))
        .and(warp::body::stream())
        .then(
            move |method: Method,
                  path: warp::path::FullPath,
                  query: String,
                  remote,
                  authorization,
                  stream| {
                let shared = shared.clone();
                async move {
                    let _counted = crate::core::stats::STATS.request_started();
                    let started = std::time::Instant::now();
                    let body = match read_body(stream).await {
                        Ok(b) => b,
                        Err(status) => {
                            crate::core::stats::STATS.request_answered("none", status, started.elapsed());
                            return Reply::error(status).into_response();
                        }
                    };
                    let req = Request {
                        method,
                        path: path.as_str().to_owned(),
                        query,
                        body,
                        remote,
                        authorization,
                    };
                    let task = task_label(&req);
                    let reply = handle(&shared, req).await;
                    crate::core::stats::STATS.request_answered(task, reply.status, started.elapsed());
                    reply.into_response()
                }
            },
        )
        .recover(|_| async { Ok::<_, std::convert::Infallible>(Reply::error(400).into_response()) })
        .unify()
}
