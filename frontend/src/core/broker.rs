//! One loaded configuration: everything a request needs, parsed and
//! pre-rendered once. Requests share it through [`Shared`]; a reload swaps
//! in a new one only when it loaded completely.

use crate::core::backend::Backend;
use crate::core::config::{
    BackendConfig, ConfigError, ConfigFile, Environment, GlobalConfig, HttpsGetConfig,
};
use crate::core::ini::Ini;
use crate::core::profiles::ProfileSet;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

#[derive(Debug)]
pub struct Broker {
    pub env: Environment,
    pub config_path: PathBuf,
    pub global: GlobalConfig,
    pub inifile: BackendConfig,
    pub zeroconf: BackendConfig,
    pub https_get: HttpsGetConfig,
    pub profiles_path: PathBuf,
    pub profiles: ProfileSet,
    /// The configured pre-shared cookie (my-cookie-file, else my-cookie);
    /// None when unconfigured (the original then compares with a fresh
    /// random value, which never matches).
    pub static_cookie: Option<String>,
    /// `[broker_base] auth-mech` (used by UCCS authentication).
    pub raw_base_auth_mech: Option<String>,
    /// Non-fatal problems found while loading.
    pub warnings: Vec<String>,
    /// Cookies and pending key removals (`[global] state-store`).
    pub state: crate::core::state::Store,
}

impl Broker {
    pub fn load(env: &Environment) -> Result<Broker, ConfigError> {
        let config_path = env.config_file.clone();
        let file = ConfigFile::load(&config_path)?;
        let global = GlobalConfig::from_file(&file)?;
        let inifile = BackendConfig::from_file(&file, "inifile")?;
        let zeroconf = BackendConfig::from_file(&file, "zeroconf")?;
        let https_get = HttpsGetConfig::from_file(&file);
        // X2GOBROKER_SESSIONPROFILES wins (the original reads only that);
        // without it, x2gobroker.conf's session-profiles is honoured.
        let profiles_path = match (&inifile.session_profiles, env.sessionprofiles_explicit) {
            (Some(p), false) => p.clone(),
            _ => env.sessionprofiles.clone(),
        };
        let ini = Ini::load(&profiles_path)?;
        let profiles = ProfileSet::from_ini(&ini, global.default_session_autologin);
        let static_cookie = read_static_cookie(&global)?;
        let state = crate::core::state::Store::open(
            &global.state_store,
            &global.cookie_directory,
            &global.key_removal_directory,
        )
        .map_err(ConfigError)?;
        let mut warnings = profiles.warnings.clone();
        for (name, cfg) in [("inifile", &inifile), ("zeroconf", &zeroconf)] {
            let mech = Backend::auth_mech_name(cfg, &global);
            if crate::core::authmech::AuthMech::from_name(&mech).is_none() {
                warnings.push(format!(
                    "{}: backend {name}: unknown auth-mech '{mech}', every login will fail",
                    config_path.display()
                ));
            }
        }
        if global.require_cookie && static_cookie.is_none() {
            warnings.push(format!(
                "{}: require-cookie is set but no cookie is configured (my-cookie-file / my-cookie)",
                config_path.display()
            ));
        }
        Ok(Broker {
            env: env.clone(),
            config_path,
            global,
            inifile,
            zeroconf,
            https_get,
            profiles_path,
            profiles,
            static_cookie,
            raw_base_auth_mech: file.raw("broker_base", "auth-mech").map(str::to_owned),
            warnings,
            state,
        })
    }

    /// Files whose change triggers a reload.
    pub fn watched_files(&self) -> Vec<PathBuf> {
        vec![
            self.config_path.clone(),
            self.profiles_path.clone(),
            self.global.my_cookie_file.clone(),
        ]
    }

    pub fn backend_config(&self, backend: Backend) -> &BackendConfig {
        match backend {
            Backend::Inifile => &self.inifile,
            Backend::Zeroconf => &self.zeroconf,
        }
    }
}

/// The original's get_my_cookie(): the first word of the first non-comment
/// line of my-cookie-file, else my-cookie; the placeholder value counts as
/// unconfigured. An existing file without a cookie line is an error.
fn read_static_cookie(global: &GlobalConfig) -> Result<Option<String>, ConfigError> {
    let path: &Path = &global.my_cookie_file;
    let mut from_file = None;
    if path.is_file() {
        let text = std::fs::read_to_string(path)
            .map_err(|e| ConfigError(format!("{}: cannot read my-cookie-file: {e}", path.display())))?;
        let line = text
            .split('\n')
            .find(|l| !l.is_empty() && !l.starts_with('#'))
            .ok_or_else(|| ConfigError(format!("{}: my-cookie-file contains no cookie", path.display())))?;
        from_file = Some(line.split(' ').next().unwrap_or("").to_owned());
    }
    let unconfigured = crate::core::config::UNCONFIGURED_COOKIE;
    Ok(match from_file {
        Some(c) if c != unconfigured => Some(c),
        _ => global.my_cookie.clone().filter(|c| c != unconfigured),
    })
}

/// The current configuration, replaced whole on reload.
#[derive(Clone)]
pub struct Shared(Arc<RwLock<Arc<Broker>>>);

impl Shared {
    pub fn new(broker: Broker) -> Shared {
        Shared(Arc::new(RwLock::new(Arc::new(broker))))
    }

    pub fn current(&self) -> Arc<Broker> {
        match self.0.read() {
            Ok(guard) => guard.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    pub fn replace(&self, broker: Broker) {
        let new = Arc::new(broker);
        match self.0.write() {
            Ok(mut guard) => *guard = new,
            Err(poisoned) => *poisoned.into_inner() = new,
        }
    }
}
