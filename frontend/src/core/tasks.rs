//! The broker tasks after access was granted — list the profiles a user
//! may see, select a server for one — shared by both front doors
//! ([`crate::web`] and [`crate::ssh`]); they differ only in how they print.

use crate::core::access::{check_access, shows_next_cookie, Access, Credentials, StoreUnavailable};
use crate::core::agent::remote::{self, HostKeyPolicy};
use crate::core::agent::{self, Agent, LocalAgent, RemoteAgent, SessionLine};
use crate::core::audit::shown;
use crate::core::autologin;
use crate::core::backend::Backend;
use crate::core::broker::Broker;
use crate::core::hostnames;
use crate::core::key_removals;
use crate::core::loadchecker::{self, Load};
use crate::core::nameservice;
use crate::core::profiles::{self, Profile, ProfileSet};
use crate::core::scripts::{self, Changes, ScriptInput, Stage};
use crate::core::select::{self, AgentQuery, AgentQueryMode, SelectOptions, Selected, TcpPortScanner};
use crate::core::setpass::{self, SetpassOutcome, SetpassRequest};
use crate::core::state::StateError;
use rand::seq::SliceRandom;
use std::cell::OnceCell;
use std::net::IpAddr;
use x2gobroker_protocol::Password;

/// The fields of a broker request.
pub struct Fields {
    pub user: String,
    pub login: String,
    pub password: String,
    pub authid: String,
    pub pubkey: String,
    pub task: String,
    pub profile_id: String,
    /// `newpass` (task `setpass`).
    pub new_password: Password,
}

impl Fields {
    /// What session scripts see of this request.
    fn script_input<'a>(
        &'a self,
        client: IpAddr,
        authed: Option<bool>,
        server: Option<&'a str>,
    ) -> ScriptInput<'a> {
        ScriptInput {
            user: &self.user,
            task: &self.task,
            profile_id: &self.profile_id,
            client,
            cookie: &self.authid,
            password: &self.password,
            authed,
            server,
        }
    }

    /// Takes what pre_auth / post_auth scripts changed; a login that was
    /// the user follows the new user.
    fn apply(&mut self, changes: Changes) {
        if let Some(user) = changes.user {
            if self.login == self.user {
                self.login = user.clone();
            }
            self.user = user;
        }
        self.task = changes.task.unwrap_or(std::mem::take(&mut self.task));
        self.profile_id = changes.profile_id.unwrap_or(std::mem::take(&mut self.profile_id));
    }
}

/// The original's order: pre_auth scripts, the access check (`password`
/// is the request's, or "SSH" in SSH mode), post_auth scripts (which run
/// whatever the access check decided). Err: a script refused the request.
pub async fn check_access_with_scripts(
    broker: &Broker,
    backend: Backend,
    fields: &mut Fields,
    client: IpAddr,
    password: &str,
) -> Result<Access, AccessUndecided> {
    let g = &broker.global;
    fields.apply(scripts::run_stage(g, Stage::PreAuth, &fields.script_input(client, None, None)).await?);
    let client_ip = client.to_string();
    let credentials = Credentials {
        user: &fields.user,
        password,
        client_ip: &client_ip,
        cookie: &fields.authid,
        next_cookie_shown: shows_next_cookie(&fields.task),
    };
    let access = check_access(broker, backend, &credentials).await?;
    let input = fields.script_input(client, Some(access.granted), None);
    fields.apply(scripts::run_stage(g, Stage::PostAuth, &input).await?);
    Ok(access)
}

/// Why a request's access could not be granted or refused normally.
pub enum AccessUndecided {
    /// A session script refused it (HTTP 401, SSH mode a message).
    Script(scripts::Refused),
    /// The state store is down (HTTP 503, SSH mode a message).
    Store(StoreUnavailable),
}

impl From<scripts::Refused> for AccessUndecided {
    fn from(e: scripts::Refused) -> Self {
        AccessUndecided::Script(e)
    }
}

impl From<StoreUnavailable> for AccessUndecided {
    fn from(e: StoreUnavailable) -> Self {
        AccessUndecided::Store(e)
    }
}

/// A task could not be carried out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TaskFailed {
    /// Answered with 500, as the original.
    Failed,
    /// The state store is down: nothing was done, try again later (503).
    StoreUnavailable,
}

impl TaskFailed {
    pub fn http_status(self) -> u16 {
        match self {
            TaskFailed::Failed => 500,
            TaskFailed::StoreUnavailable => 503,
        }
    }
}

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
    fn render_context<'a>(&'a self, user: &'a str, empty_user: &'a str) -> profiles::RenderContext<'a> {
        profiles::RenderContext {
            user,
            empty_user,
            hosts: self.hosts.as_deref(),
            status: self.status,
        }
    }

    /// An empty `user` becomes `empty_user` ("" over HTTP, the login in
    /// SSH mode).
    pub fn render_plain(&self, out: &mut String, user: &str, empty_user: &str) {
        self.profile
            .render_plain_with(out, &self.profile.id, &self.render_context(user, empty_user));
    }

    pub fn render_json(&self, out: &mut String, user: &str) {
        self.profile.render_json_with(out, &self.render_context(user, ""));
    }
}

/// The profiles of the inifile backend that `user` at `client` may see;
/// Err when the file holds a profile that cannot be rendered (the original
/// fails every listing then). `user_groups` is asked at most once, and
/// only when a group rule must be consulted.
pub fn visible_inifile_profiles<'a>(
    set: &'a ProfileSet,
    user: &str,
    client: IpAddr,
    user_groups: impl Fn(&str) -> Vec<String>,
) -> Result<Vec<Listed<'a>>, TaskFailed> {
    if let Some(e) = set.profiles.iter().find_map(|p| p.error.as_ref()) {
        log::error!("cannot list profiles: {e}");
        return Err(TaskFailed::Failed);
    }
    let groups = OnceCell::new();
    let visible: Vec<&Profile> = set
        .profiles
        .iter()
        .filter(|p| {
            p.acl.permits(user, Some(client), |u| {
                groups.get_or_init(|| user_groups(u)).clone()
            })
        })
        .collect();
    if let Some(e) = visible.iter().find_map(|p| p.visible_error.as_ref()) {
        log::error!("cannot list profiles: {e}");
        return Err(TaskFailed::Failed);
    }
    Ok(visible
        .into_iter()
        .map(|profile| Listed {
            profile,
            hosts: None,
            status: None,
        })
        .collect())
}

impl TaskContext<'_> {
    /// Err when the profile file holds a profile that cannot be
    /// rendered (the original fails every listing then).
    pub fn visible_profiles(&self) -> Result<ProfileList<'_>, TaskFailed> {
        match self.backend {
            Backend::Zeroconf => Ok(ProfileList::Zeroconf(
                Box::new(profiles::zeroconf_profile(&self.broker.zeroconf.desktop_shell)),
                crate::core::cookies::new_cookie(),
            )),
            Backend::Inifile => {
                let include_primary = !self.broker.global.ignore_primary_group_memberships;
                visible_inifile_profiles(&self.broker.profiles, &self.fields.user, self.client, |u| {
                    nameservice::user_groups(u, include_primary)
                })
                .map(ProfileList::Inifile)
            }
        }
    }

    /// The agent query mode for a profile ([`agent_mode`]).
    pub fn agent_mode(&self, profile: &Profile) -> AgentQueryMode {
        agent_mode(self.broker, profile)
    }

    fn hostkey_policy(&self, profile: &Profile) -> HostKeyPolicy {
        hostkey_policy(self.broker, profile)
    }

    fn remote_agent(
        &self,
        hostname: &str,
        hostaddr: &str,
        port: i64,
        policy: HostKeyPolicy,
    ) -> Option<Agent> {
        let Ok(port) = u16::try_from(port) else {
            log::error!("agent host {hostname}: invalid port {port}");
            return None;
        };
        Some(Agent::Remote(RemoteAgent {
            hostname: hostname.to_owned(),
            hostaddr: hostaddr.to_owned(),
            port,
            policy,
            agent_user: self.broker.env.agent_user.clone(),
            agent_cmd: self.broker.env.agent_cmd.clone(),
        }))
    }

    /// The agent to ask about a profile (the original's get_remote_agent).
    /// Mode SSH asks the agents of the profile's servers in parallel and
    /// takes one that answers `ping` (the original tries them one after
    /// another in random order: any answering agent sees the same shared
    /// session database).
    pub async fn agent_for(&self, profile: &Profile) -> AgentFor {
        self.agent_for_excluding(profile, &[]).await
    }

    /// [`Self::agent_for`] without the agents on `excluded` hosts (those the
    /// load checker reports no load for, as the original skips them).
    async fn agent_for_excluding(&self, profile: &Profile, excluded: &[String]) -> AgentFor {
        if profile.selection.is_shadow {
            return AgentFor::Off;
        }
        match self.agent_mode(profile) {
            AgentQueryMode::None => AgentFor::Off,
            AgentQueryMode::Local => AgentFor::Ready(Agent::Local(LocalAgent {
                command: self.broker.env.agent_cmd.clone().into(),
            })),
            AgentQueryMode::Ssh if !remote::broker_key_present() => {
                log::warn!(
                    "agent query mode SSH for profile {}, but the broker account has no SSH key (~/.ssh/id_rsa): agents are not asked",
                    profile.id
                );
                AgentFor::Off
            }
            AgentQueryMode::Ssh => {
                let policy = self.hostkey_policy(profile);
                let sel = &profile.selection;
                let mut candidates: Vec<Agent> = sel
                    .hosts
                    .iter()
                    .filter(|name| !excluded.contains(name))
                    .filter_map(|name| {
                        let addr = sel.host_address.get(name).map_or(name.as_str(), String::as_str);
                        let port = sel.host_port.get(name).copied().unwrap_or(sel.sshport);
                        self.remote_agent(name, addr, port, policy)
                    })
                    .collect();
                candidates.shuffle(&mut rand::thread_rng());
                // One that answered a moment ago needs no new ping (warm
                // requests then pay one round trip, not two).
                if let Some(agent) = candidates
                    .iter()
                    .find(|a| matches!(a, Agent::Remote(r) if r.answered_recently()))
                {
                    return AgentFor::Ready(agent.clone());
                }
                // Dropping the set stops the pings still running.
                let mut pings = tokio::task::JoinSet::new();
                for agent in candidates {
                    pings.spawn(async move { agent.ping().await.then_some(agent) });
                }
                while let Some(answer) = pings.join_next().await {
                    if let Ok(Some(agent)) = answer {
                        return AgentFor::Ready(agent);
                    }
                }
                log::warn!("profile {}: no broker agent could be contacted", profile.id);
                AgentFor::Unreachable
            }
        }
    }

    /// Like [`Self::visible_profiles`], with the user's sessions from the
    /// agents (status `S`/`R`, their host first). Profiles that share
    /// their agent ask it once.
    pub async fn visible_profiles_with_sessions(&self) -> Result<ProfileList<'_>, TaskFailed> {
        let mut list = self.visible_profiles()?;
        let ProfileList::Inifile(listed) = &mut list else {
            return Ok(list);
        };
        let user = self.fields.user.as_str();
        // The sessions each agent reported, if any, by (mode, hosts).
        type AgentKey = (AgentQueryMode, Vec<String>, HostKeyPolicy);
        let mut asked: Vec<(AgentKey, Option<Vec<SessionLine>>)> = Vec::new();
        for l in listed.iter_mut() {
            let mode = self.agent_mode(l.profile);
            if l.profile.selection.is_shadow || mode == AgentQueryMode::None {
                continue;
            }
            let key = (
                mode,
                if mode == AgentQueryMode::Local {
                    Vec::new()
                } else {
                    l.profile.selection.hosts.clone()
                },
                self.hostkey_policy(l.profile),
            );
            let sessions = match asked.iter().find(|(k, _)| *k == key) {
                Some((_, sessions)) => sessions.clone(),
                None => {
                    let sessions = match self.agent_for(l.profile).await {
                        AgentFor::Ready(agent) => match agent.list_sessions(user).await {
                            Ok(s) => Some(s),
                            Err(e) => {
                                log::warn!("broker agent call failed: {e}");
                                None
                            }
                        },
                        AgentFor::Off | AgentFor::Unreachable => None,
                    };
                    asked.push((key, sessions.clone()));
                    sessions
                }
            };
            // Without an answer the original leaves the host list alone.
            let Some(sessions) = sessions else { continue };
            let (running, suspended) = agent::session_servers(&sessions);
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
    /// client's validated key for `login` on the selected server (and the
    /// profile's SSH proxy host), removed again after
    /// [`autologin::KEY_LIFETIME`]. ARCHITECTURE.md P9: only for the
    /// authenticated user or a mapped login. A deployment that fails is an
    /// error; the client gets no key that does not work.
    async fn deploy_login_key(
        &self,
        agents: &[(Agent, String)],
        login: &str,
        selected: &mut Selected,
    ) -> Result<(), TaskFailed> {
        let user = self.fields.user.as_str();
        if let Err(e) = crate::core::login_map::check(&self.broker.config_path, user, login) {
            log::warn!("auto-login refused: {e}");
            return Ok(());
        }
        let (line, private_key) = if self.fields.pubkey.is_empty() {
            let kind = self.broker.global.autologin_key_type;
            match autologin::generate(kind, login, &self.client.to_string()) {
                Ok(pair) => (pair.authorized_line, Some(pair.private_key)),
                Err(e) => {
                    log::error!("auto-login: cannot make a key pair: {e}");
                    return Err(TaskFailed::Failed);
                }
            }
        } else {
            match autologin::validate_client_key(&self.fields.pubkey) {
                Some(key) => {
                    log::info!("accepting public SSH key from broker client");
                    let client = self.client.to_string();
                    (autologin::authorized_line(&key, login, &client), None)
                }
                None => {
                    log::warn!(
                        "auto-login: the client's public key is not one SSH public key line; not deployed"
                    );
                    return Ok(());
                }
            }
        };
        // Each removal is on disk before its key is deployed: a key is never
        // left behind, whatever the agent answers or however this process
        // ends.
        let store = &self.broker.state;
        let due = key_removals::now() + autologin::KEY_LIFETIME.as_secs();
        for (agent, keys_file) in agents {
            let removal = key_removals::Removal {
                due,
                attempts: 0,
                agent: key_removals::AgentAddress::of(agent),
                user: login.to_owned(),
                keys_file: keys_file.clone(),
                line: line.clone(),
            };
            if let Err(e) = store.schedule_removal(&removal).await {
                log::error!("auto-login: cannot keep the key's removal, no key is deployed: {e}");
                return Err(match e {
                    StateError::Unavailable(_) => TaskFailed::StoreUnavailable,
                    StateError::Failed(_) => TaskFailed::Failed,
                });
            }
            key_removals::ensure_runner(store, &self.broker.env);
            match agent.add_authorized_key(login, &line, keys_file).await {
                Ok(true) => {}
                Ok(false) | Err(_) => {
                    log::error!(
                        "auto-login: the {} did not deploy the key for {}",
                        agent.describe(),
                        shown(login)
                    );
                    return Err(TaskFailed::Failed);
                }
            }
        }
        match private_key {
            Some(key) => selected.private_key = Some(key),
            None => selected.pubkey_accepted = true,
        }
        Ok(())
    }

    /// Where an auto-login key goes: the agent of the selected server (the
    /// local one in mode LOCAL) and the SSH proxy host's, with their
    /// authorized_keys files.
    fn key_agents(&self, agent: &Agent, profile: &Profile, selected: &Selected) -> Vec<(Agent, String)> {
        let g = &self.broker.global;
        let keys_file = profile
            .broker
            .authorized_keys
            .clone()
            .unwrap_or_else(|| g.default_authorized_keys.clone());
        let Agent::Remote(_) = agent else {
            return vec![(agent.clone(), keys_file)];
        };
        let policy = self.hostkey_policy(profile);
        let mut agents = Vec::new();
        if let Some(proxy) = &profile.selection.sshproxyhost {
            let proxy_keys = profile
                .broker
                .sshproxy_authorized_keys
                .clone()
                .unwrap_or_else(|| g.default_sshproxy_authorized_keys.clone());
            agents.extend(
                self.remote_agent(proxy, proxy, profile.selection.sshproxyport, policy)
                    .map(|a| (a, proxy_keys)),
            );
        }
        agents.extend(
            self.remote_agent(&selected.host_name, &selected.server, selected.port, policy)
                .map(|a| (a, keys_file)),
        );
        agents
    }

    /// setpass: the request's user changes their password from the
    /// request's `password` to `newpass`, through PAM only (another auth
    /// mechanism has no password here to change).
    pub async fn setpass(&self) -> SetpassOutcome {
        let mech = Backend::auth_mech_name(self.broker.backend_config(self.backend), &self.broker.global);
        if mech != "pam" {
            log::warn!("setpass refused: the auth mechanism is {mech}, not pam");
            return SetpassOutcome::NewPasswordRefused(format!(
                "Passwords cannot be changed through this broker (authentication mechanism {mech})."
            ));
        }
        let request = SetpassRequest {
            helper_socket: &self.broker.env.authservice_socket,
            user: &self.fields.user,
            client_address: Some(self.client.to_string()),
        };
        let current = Password::new(self.fields.password.clone());
        setpass::change_password(&request, current, self.fields.new_password.clone()).await
    }

    /// The load checker's loads for a profile that uses it (mode SSH with a
    /// broker key, as the original asks only then); empty otherwise.
    async fn load_factors(&self, profile: &Profile, mode: AgentQueryMode) -> Vec<(String, Load)> {
        if mode != AgentQueryMode::Ssh
            || profile.selection.is_shadow
            || !loadchecker::uses_load_checker(self.broker, profile)
            || !remote::broker_key_present()
        {
            return Vec::new();
        }
        let loads = loadchecker::query_profile(
            &self.broker.env.loadchecker_socket,
            self.backend.name(),
            &profile.id,
        )
        .await;
        if loads.is_empty() {
            log::warn!(
                "profile {}: no load data from the load checker: selecting by session counts",
                profile.id
            );
        } else {
            log::info!("profile {}: loads from the load checker: {loads:?}", profile.id);
        }
        loads
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
            return Err(TaskFailed::Failed);
        }
        // selectsession applies the profile's ACLs (ARCHITECTURE.md D: selectsession ACLs).
        let include_primary = !self.broker.global.ignore_primary_group_memberships;
        if !profile.acl.permits(&self.fields.user, Some(self.client), |u| {
            nameservice::user_groups(u, include_primary)
        }) {
            log::warn!(
                "user {} may not use profile {}, no server handed out",
                shown(&self.fields.user),
                profile.id
            );
            return Ok(select::no_such_profile());
        }
        let g = &self.broker.global;
        let mode = self.agent_mode(profile);
        let load_factors = self.load_factors(profile, mode).await;
        let excluded: Vec<String> = load_factors
            .iter()
            .filter(|(_, l)| l.factor().is_none())
            .map(|(h, _)| h.clone())
            .collect();
        let opts = SelectOptions {
            mode,
            load_factors,
            portscan: profile
                .broker
                .portscan_x2goservers
                .unwrap_or(g.default_portscan_x2goservers),
            local_hostname: nix::unistd::gethostname()
                .ok()
                .and_then(|h| h.into_string().ok())
                .unwrap_or_else(|| "localhost".into()),
        };
        let found = self.agent_for_excluding(profile, &excluded).await;
        let login = self.fields.login.as_str();
        let query = match &found {
            AgentFor::Off => AgentQuery::Off,
            AgentFor::Unreachable => AgentQuery::Unreachable,
            AgentFor::Ready(agent) => AgentQuery::Ask(agent, login),
        };
        let mut selected = select::select_session(&profile.selection, &opts, &TcpPortScanner, query)
            .await
            .map_err(|e| {
                log::error!("selectsession: {}", e.0);
                TaskFailed::Failed
            })?;
        let autologin = profile
            .broker
            .session_autologin
            .unwrap_or(g.default_session_autologin);
        let server_chosen = !matches!(
            selected.server.as_str(),
            "no-X2Go-Server-available" | "no-server-available"
        );
        if let (AgentFor::Ready(agent), true, true) = (&found, autologin, server_chosen) {
            if !login.is_empty() {
                let agents = self.key_agents(agent, profile, &selected);
                self.deploy_login_key(&agents, login, &mut selected).await?;
            }
        }
        // As the original: after the selection, before the client sees the server.
        if server_chosen {
            let input =
                self.fields
                    .script_input(self.client, Some(self.access.granted), Some(&selected.server));
            match scripts::run_stage(g, Stage::SelectSession, &input).await {
                Ok(changes) => selected.server = changes.server.unwrap_or(selected.server),
                Err(scripts::Refused(why)) => {
                    log::warn!(
                        "selectsession for user {} refused: {why}",
                        shown(&self.fields.user)
                    );
                    return Err(TaskFailed::Failed);
                }
            }
        }
        Ok(selected)
    }
}

/// The agent query mode for a profile: the profile's, the backend's, then
/// the global default.
pub fn agent_mode(broker: &Broker, profile: &Profile) -> AgentQueryMode {
    let mode = profile
        .broker
        .agent_query_mode
        .clone()
        .or_else(|| broker.inifile.agent_query_mode.clone())
        .unwrap_or_else(|| broker.global.default_agent_query_mode.clone());
    AgentQueryMode::parse(&mode)
}

/// The host key policy for a profile's agents: the profile's, the
/// backend's, then the global default.
pub fn hostkey_policy(broker: &Broker, profile: &Profile) -> HostKeyPolicy {
    let name = profile
        .broker
        .agent_hostkey_policy
        .clone()
        .or_else(|| broker.inifile.agent_hostkey_policy.clone())
        .unwrap_or_else(|| broker.global.default_agent_hostkey_policy.clone());
    HostKeyPolicy::parse(&name)
}

/// The agent for a profile, if any.
pub enum AgentFor {
    /// Mode NONE, a shadow profile, or mode SSH without a broker key.
    Off,
    /// Mode SSH, and no agent of the profile's servers answered.
    Unreachable,
    Ready(Agent),
}
