//! The broker tasks after access was granted — list the profiles a user
//! may see, select a server for one — shared by both front doors
//! ([`crate::web`] and [`crate::ssh`]); they differ only in how they print.

use crate::core::access::Access;
use crate::core::agent::{self, LocalAgent};
use crate::core::backend::Backend;
use crate::core::broker::Broker;
use crate::core::hostnames;
use crate::core::nameservice;
use crate::core::profiles::{self, Profile};
use crate::core::select::{self, AgentQueryMode, SelectOptions, Selected, TcpPortScanner};
use std::cell::OnceCell;
use std::net::IpAddr;

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
                crate::core::cookies::new_cookie(),
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
    /// ARCHITECTURE.md P9: only for the authenticated user or a mapped login.
    async fn deploy_login_key(
        &self,
        agent: &LocalAgent,
        login: &str,
        profile: &Profile,
        selected: &mut Selected,
    ) {
        let user = self.fields.user.as_str();
        if let Err(e) = crate::core::login_map::check(&self.broker.config_path, user, login) {
            log::warn!("auto-login refused: {e}");
            return;
        }
        let keys_file = profile
            .broker
            .authorized_keys
            .clone()
            .unwrap_or_else(|| self.broker.global.default_authorized_keys.clone());
        let line = if self.fields.pubkey.is_empty() {
            match crate::core::autologin::generate(login, &self.client.to_string()) {
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
            match crate::core::autologin::validate_client_key(&self.fields.pubkey) {
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
            tokio::time::sleep(crate::core::autologin::KEY_LIFETIME).await;
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
        // selectsession applies the profile's ACLs (ARCHITECTURE.md D: selectsession ACLs).
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
