//! The HTTP(S) front end: routing, request parsing, the broker tasks shared
//! by the `plain` and `json` outputs, and the warp server.

pub mod form;
pub mod json;
pub mod plain;
pub mod uccs;

#[cfg(test)]
mod tests;

use crate::access::{check_access, Access, Credentials};
use crate::agent::{self, LocalAgent};
use crate::backend::Backend;
use crate::hostnames;
use crate::nameservice;
use crate::profiles::{self, Profile};
use crate::select::{self, AgentQueryMode, SelectOptions, Selected, TcpPortScanner};
use crate::state::{Broker, Shared};
use bytes::{Buf, Bytes};
use form::{Form, FormError};
use std::cell::OnceCell;
use std::net::{IpAddr, SocketAddr};
use warp::http::{Method, Response, StatusCode};
use warp::hyper::Body;
use warp::Filter;

/// Largest request body we read.
pub const MAX_BODY: usize = 64 * 1024;

pub const TEXT_PLAIN: &str = "text/plain; charset=utf-8";
pub const TEXT_JSON: &str = "text/json; charset=utf-8";
pub const TEXT_HTML: &str = "text/html; charset=UTF-8";

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
        builder
            .body(Body::from(self.body))
            .unwrap_or_else(|_| Response::new(Body::empty()))
    }
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

/// The fields of a broker request.
pub struct Fields {
    pub user: String,
    pub login: String,
    pub password: String,
    pub authid: String,
    pub pubkey: String,
    pub task: String,
    pub profile_id: String,
}

fn form_error(e: FormError) -> Reply {
    log::info!("bad request: {e:?}");
    Reply::error(400)
}

/// Percent-decoding of the URL path (tornado unquotes path arguments).
fn decode_path(path: &str) -> Option<String> {
    let mut out = Vec::with_capacity(path.len());
    let b = path.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let h = std::str::from_utf8(b.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(h, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
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
        // No broker SSH keys are published (agent mode SSH is not there yet).
        return match req.method {
            Method::GET => Reply {
                status: 200,
                content_type: TEXT_HTML,
                expires: false,
                www_authenticate: None,
                body: String::new(),
            },
            _ => Reply::error(405),
        };
    } else if uccs::is_ping_path(&path) {
        return uccs::ping(&req.method, broker.env.debug);
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
        log::error!("No such broker backend '{name}'");
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
    let fields = match read_fields(&form, kind) {
        Ok(f) => f,
        Err(e) => return form_error(e),
    };
    let Some(remote) = req.remote else {
        log::error!("client could not provide an IP address, pretending: 404 Not Found");
        return Reply::error(404);
    };
    let ip = remote.ip();
    let ip_text = ip.to_string();
    log::info!("client address is {ip_text}");
    let access = check_access(
        &broker,
        backend,
        &Credentials {
            user: &fields.user,
            password: &fields.password,
            client_ip: &ip_text,
            cookie: &fields.authid,
        },
    )
    .await;
    if !access.granted {
        return Reply::error(401);
    }
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

fn read_fields(form: &Form, kind: OutputKind) -> Result<Fields, FormError> {
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
    })
}

/// A task could not be carried out (answered with 500, as the original).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TaskFailed;

/// What a task needs after access was granted.
pub struct TaskContext<'a> {
    pub broker: &'a Broker,
    pub backend: Backend,
    pub fields: &'a Fields,
    pub client: IpAddr,
    pub access: Access,
}

/// The profiles a user may see, sorted by ID; the ID to show with each.
pub enum ProfileList<'a> {
    Inifile(Vec<Listed<'a>>),
    Zeroconf(Box<Profile>, String),
}

/// A profile as listed to one user: what the agent reported (LOCAL mode)
/// narrows its hosts and adds a session status.
pub struct Listed<'a> {
    pub profile: &'a Profile,
    pub hosts: Option<Vec<String>>,
    pub status: Option<&'static str>,
}

impl std::ops::Deref for Listed<'_> {
    type Target = Profile;
    fn deref(&self) -> &Profile {
        self.profile
    }
}

impl Listed<'_> {
    fn render_context<'a>(&'a self, user: &'a str) -> profiles::RenderContext<'a> {
        profiles::RenderContext {
            user,
            hosts: self.hosts.as_deref(),
            status: self.status,
        }
    }

    pub fn render_plain(&self, out: &mut String, user: &str) {
        self.profile
            .render_plain_with(out, &self.profile.id, &self.render_context(user));
    }

    pub fn render_json(&self, out: &mut String, user: &str) {
        self.profile.render_json_with(out, &self.render_context(user));
    }
}

impl TaskContext<'_> {
    /// Err when the profile file holds a profile that cannot be
    /// rendered (the original fails every listing then).
    pub fn visible_profiles(&self) -> Result<ProfileList<'_>, TaskFailed> {
        match self.backend {
            Backend::Zeroconf => Ok(ProfileList::Zeroconf(
                Box::new(profiles::zeroconf_profile(&self.broker.zeroconf.desktop_shell)),
                crate::cookies::new_cookie(),
            )),
            Backend::Inifile => {
                let set = &self.broker.profiles;
                if let Some(e) = set.profiles.iter().find_map(|p| p.error.as_ref()) {
                    log::error!("cannot list profiles: {e}");
                    return Err(TaskFailed);
                }
                let user = self.fields.user.as_str();
                let groups = OnceCell::new();
                let include_primary = !self.broker.global.ignore_primary_group_memberships;
                let visible: Vec<&Profile> = set
                    .profiles
                    .iter()
                    .filter(|p| {
                        p.acl.permits(user, Some(self.client), |u| {
                            groups
                                .get_or_init(|| nameservice::user_groups(u, include_primary))
                                .clone()
                        })
                    })
                    .collect();
                if let Some(e) = visible.iter().find_map(|p| p.visible_error.as_ref()) {
                    log::error!("cannot list profiles: {e}");
                    return Err(TaskFailed);
                }
                Ok(ProfileList::Inifile(
                    visible
                        .into_iter()
                        .map(|profile| Listed {
                            profile,
                            hosts: None,
                            status: None,
                        })
                        .collect(),
                ))
            }
        }
    }

    /// The agent query mode for a profile: the profile's, the backend's,
    /// then the global default.
    pub fn agent_mode(&self, profile: &Profile) -> AgentQueryMode {
        let mode = profile
            .broker
            .agent_query_mode
            .clone()
            .or_else(|| self.broker.inifile.agent_query_mode.clone())
            .unwrap_or_else(|| self.broker.global.default_agent_query_mode.clone());
        AgentQueryMode::parse(&mode)
    }

    fn local_agent(&self) -> LocalAgent {
        LocalAgent {
            command: self.broker.env.agent_cmd.clone().into(),
        }
    }

    /// Like [`Self::visible_profiles`], with the user's sessions from the
    /// agent for LOCAL-mode profiles (status `S`/`R`, their host first).
    pub async fn visible_profiles_with_sessions(&self) -> Result<ProfileList<'_>, TaskFailed> {
        let mut list = self.visible_profiles()?;
        let ProfileList::Inifile(listed) = &mut list else {
            return Ok(list);
        };
        let uses_agent = |p: &Profile| !p.selection.is_shadow && self.agent_mode(p) == AgentQueryMode::Local;
        if !listed.iter().any(|l| uses_agent(l.profile)) {
            return Ok(list);
        }
        let sessions = self.local_agent().list_sessions(&self.fields.user).await;
        let (running, suspended) = agent::session_servers(&sessions);
        for l in listed.iter_mut().filter(|l| uses_agent(l.profile)) {
            let hosts = &l.profile.selection.hosts;
            let on_suspended = hostnames::matching(hosts, &suspended);
            let on_running = hostnames::matching(hosts, &running);
            if let Some(h) = on_suspended.first() {
                l.status = Some("S");
                l.hosts = Some(vec![h.clone()]);
            } else if let Some(h) = on_running.first() {
                l.status = Some("R");
                l.hosts = Some(vec![h.clone()]);
            } else {
                l.hosts = Some(hosts.iter().take(1).cloned().collect());
            }
        }
        Ok(list)
    }

    /// Auto-login: deploy a fresh key (handing out its private half) or the
    /// client's validated key for `login`, removed again after a while.
    /// DESIGN §3.9: only for the authenticated user or a mapped login.
    async fn deploy_login_key(
        &self,
        agent: &LocalAgent,
        login: &str,
        profile: &Profile,
        selected: &mut Selected,
    ) {
        let user = self.fields.user.as_str();
        if let Err(e) = crate::ssh::login_map::check(&self.broker.config_path, user, login) {
            log::warn!("auto-login refused: {e}");
            return;
        }
        let keys_file = profile
            .broker
            .authorized_keys
            .clone()
            .unwrap_or_else(|| self.broker.global.default_authorized_keys.clone());
        let line = if self.fields.pubkey.is_empty() {
            match crate::autologin::generate(login, &self.client.to_string()) {
                Ok(pair) => {
                    selected.private_key = Some(pair.private_key.to_string());
                    pair.authorized_line
                }
                Err(e) => {
                    log::error!("auto-login: cannot make a key pair: {e}");
                    return;
                }
            }
        } else {
            match crate::autologin::validate_client_key(&self.fields.pubkey) {
                Some(line) => {
                    log::info!("accepting public SSH key from broker client");
                    selected.pubkey_accepted = true;
                    line
                }
                None => {
                    log::warn!(
                        "auto-login: the client's public key is not one SSH public key line; not deployed"
                    );
                    return;
                }
            }
        };
        agent.call(login, "addauthkey", &[&line, &keys_file]).await;
        let (agent, login) = (agent.clone(), login.to_owned());
        tokio::spawn(async move {
            tokio::time::sleep(crate::autologin::KEY_LIFETIME).await;
            agent.call(&login, "delauthkey", &[&line, &keys_file]).await;
        });
    }

    /// selectsession for the requested profile.
    pub async fn select(&self) -> Result<Selected, TaskFailed> {
        if self.backend == Backend::Zeroconf {
            return Ok(select::zeroconf_selection());
        }
        let Some(profile) = self.broker.profiles.get(&self.fields.profile_id) else {
            return Ok(select::no_such_profile());
        };
        if profile.select_error {
            log::error!("selectsession: profile {} is not usable", profile.id);
            return Err(TaskFailed);
        }
        // DESIGN §7: selectsession applies the profile's ACLs.
        let include_primary = !self.broker.global.ignore_primary_group_memberships;
        if !profile.acl.permits(&self.fields.user, Some(self.client), |u| {
            nameservice::user_groups(u, include_primary)
        }) {
            log::warn!(
                "user {} may not use profile {}, no server handed out",
                self.fields.user,
                profile.id
            );
            return Ok(select::no_such_profile());
        }
        let g = &self.broker.global;
        let mode = self.agent_mode(profile);
        let opts = SelectOptions {
            mode,
            portscan: profile
                .broker
                .portscan_x2goservers
                .unwrap_or(g.default_portscan_x2goservers),
            local_hostname: nix::unistd::gethostname()
                .ok()
                .and_then(|h| h.into_string().ok())
                .unwrap_or_else(|| "localhost".into()),
        };
        let local_agent = self.local_agent();
        let agent = (mode == AgentQueryMode::Local && !profile.selection.is_shadow)
            .then_some((&local_agent, self.fields.login.as_str()));
        let mut selected = select::select_session(&profile.selection, &opts, &TcpPortScanner, agent)
            .await
            .map_err(|e| {
                log::error!("selectsession: {}", e.0);
                TaskFailed
            })?;
        let autologin = profile
            .broker
            .session_autologin
            .unwrap_or(g.default_session_autologin);
        if let (Some((agent, login)), true) = (agent, autologin) {
            if !login.is_empty() {
                self.deploy_login_key(agent, login, profile, &mut selected).await;
            }
        }
        Ok(selected)
    }
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
                    let _counted = crate::daemon_stats::STATS.request_started();
                    let body = match read_body(stream).await {
                        Ok(b) => b,
                        Err(status) => return Reply::error(status).into_response(),
                    };
                    let req = Request {
                        method,
                        path: path.as_str().to_owned(),
                        query,
                        body,
                        remote,
                        authorization,
                    };
                    handle(&shared, req).await.into_response()
                }
            },
        )
        .recover(|_| async { Ok::<_, std::convert::Infallible>(Reply::error(400).into_response()) })
        .unify()
}
