//! The broker's settings: the process environment (X2GOBROKER_* variables
//! and /etc/x2go/broker/defaults.conf) and the global configuration file
//! x2gobroker.conf with every key and built-in default of the original.

use crate::core::ini::{parse_bool, parse_int, parse_list, Ini, IniError};
use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};

pub const DEFAULTS_CONF: &str = "/etc/x2go/broker/defaults.conf";
pub const DEFAULT_CONFIG: &str = "/etc/x2go/x2gobroker.conf";
pub const DEFAULT_SESSIONPROFILES: &str = "/etc/x2go/broker/x2gobroker-sessionprofiles.conf";
pub const UNCONFIGURED_COOKIE: &str = "xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx";

/// Settings that come from the environment, with the original's precedence:
/// the variable itself, then the program's section of defaults.conf, then
/// its `[common]` (or `[daemon]` for the daemon-only settings), then the
/// built-in value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Environment {
    pub config_file: PathBuf,
    pub sessionprofiles: PathBuf,
    /// Whether X2GOBROKER_SESSIONPROFILES was given explicitly (env or
    /// defaults.conf); otherwise `session-profiles` of x2gobroker.conf counts.
    pub sessionprofiles_explicit: bool,
    pub default_backend: String,
    pub debug: bool,
    pub daemon_user: String,
    pub daemon_group: String,
    pub agent_cmd: String,
    /// The account the agent runs as on X2Go servers (agent mode SSH).
    pub agent_user: String,
    pub authservice_socket: PathBuf,
    pub loadchecker_socket: PathBuf,
    pub ssl_certfile: String,
    pub ssl_keyfile: String,
    pub bind_address: String,
}

impl Environment {
    /// `program` is the executable's base name; its part after the first
    /// dash names the defaults.conf section (`x2gobroker-daemon` → `daemon`).
    pub fn from_process(program: &str) -> Result<Environment, IniError> {
        let vars: HashMap<String, String> = std::env::vars().collect();
        let defaults = Ini::load(Path::new(DEFAULTS_CONF))?;
        let run_exists = Path::new("/run/x2gobroker").is_dir();
        Ok(Environment::resolve(program, &vars, &defaults, run_exists))
    }

    pub fn resolve(
        program: &str,
        vars: &HashMap<String, String>,
        defaults: &Ini,
        run_dir_exists: bool,
    ) -> Environment {
        let section = program.split('-').skip(1).collect::<Vec<_>>().join("-");
        let lookup = |name: &str, fallback_section: &str| -> Option<String> {
            vars.get(name)
                .cloned()
                .or_else(|| {
                    defaults
                        .section(&section)
                        .and_then(|s| s.get(name))
                        .map(str::to_owned)
                })
                .or_else(|| {
                    defaults
                        .section(fallback_section)
                        .and_then(|s| s.get(name))
                        .map(str::to_owned)
                })
        };
        let common = |name: &str, builtin: &str| lookup(name, "common").unwrap_or_else(|| builtin.to_owned());
        let daemon = |name: &str, builtin: &str| lookup(name, "daemon").unwrap_or_else(|| builtin.to_owned());
        // The original's RUNDIR quirk: "/run" when /run/x2gobroker exists,
        // else "/var/run/x2gobroker", then "/x2gobroker/<socket>" appended.
        let rundir = if run_dir_exists {
            "/run"
        } else {
            "/var/run/x2gobroker"
        };
        let sessionprofiles = lookup("X2GOBROKER_SESSIONPROFILES", "common");
        Environment {
            config_file: common("X2GOBROKER_CONFIG", DEFAULT_CONFIG).into(),
            sessionprofiles_explicit: sessionprofiles.is_some(),
            sessionprofiles: sessionprofiles
                .unwrap_or_else(|| DEFAULT_SESSIONPROFILES.into())
                .into(),
            default_backend: common("X2GOBROKER_DEFAULT_BACKEND", "inifile"),
            // Off unless asked for (the original is always in debug mode).
            debug: lookup("X2GOBROKER_DEBUG", "common")
                .map(|v| parse_bool(v.trim()).unwrap_or(false))
                .unwrap_or(false),
            daemon_user: common("X2GOBROKER_DAEMON_USER", "x2gobroker"),
            daemon_group: common("X2GOBROKER_DAEMON_GROUP", "x2gobroker"),
            agent_cmd: common("X2GOBROKER_AGENT_CMD", "/usr/lib/x2go/x2gobroker-agent"),
            agent_user: common("X2GOBROKER_AGENT_USER", "x2gobroker"),
            authservice_socket: common(
                "X2GOBROKER_AUTHSERVICE_SOCKET",
                &format!("{rundir}/x2gobroker/x2gobroker-authservice.socket"),
            )
            .into(),
            loadchecker_socket: common(
                "X2GOBROKER_LOADCHECKER_SOCKET",
                &format!("{rundir}/x2gobroker/x2gobroker-loadchecker.socket"),
            )
            .into(),
            ssl_certfile: daemon("X2GOBROKER_SSL_CERTFILE", ""),
            ssl_keyfile: daemon("X2GOBROKER_SSL_KEYFILE", ""),
            bind_address: daemon("DAEMON_BIND_ADDRESS", ""),
        }
    }
}

/// A built-in default, which also fixes the value's type.
#[derive(Debug, Clone, Copy)]
enum Builtin {
    Bool(bool),
    Int(i64),
    Str(&'static str),
    List(&'static [&'static str]),
    /// Python `None` (only `my-cookie`).
    Unset,
}

/// `X2GOBROKER_CONFIG_DEFAULTS` of the original.
const BUILTINS: &[(&str, &str, Builtin)] = {
    use Builtin::*;
    &[
        ("global", "check-credentials", Bool(true)),
        ("global", "require-password", Bool(true)),
        ("global", "require-cookie", Bool(false)),
        ("global", "use-static-cookie", Bool(false)),
        ("global", "auth-timeout", Int(36000)),
        ("global", "cookie-directory", Str("/var/lib/x2gobroker/cookies")),
        // Ours: pending removals of auto-login keys, kept across restarts.
        (
            "global",
            "key-removal-directory",
            Str("/var/lib/x2gobroker/key-removals"),
        ),
        // Ours: where cookies and key removals are kept: `files` (the two
        // directories) or a Redis URL shared by several brokers.
        ("global", "state-store", Str("files")),
        ("global", "state-store-key-prefix", Str("x2gobroker:")),
        ("global", "state-store-password-file", Str("")),
        ("global", "state-store-tls-ca-file", Str("")),
        // Ours: a user's oldest cookies are removed beyond this many.
        ("global", "max-cookies-per-user", Int(32)),
        ("global", "verify-ip", Bool(true)),
        ("global", "pre_auth_scripts", List(&[])),
        ("global", "post_auth_scripts", List(&[])),
        ("global", "select_session_scripts", List(&[])),
        // Ours: session scripts' deadline (seconds) and which of them see the password.
        ("global", "session-script-timeout", Int(10)),
        ("global", "session-scripts-with-password", List(&[])),
        ("global", "my-cookie", Unset),
        (
            "global",
            "my-cookie-file",
            Str("/etc/x2go/broker/x2gobroker.authid"),
        ),
        ("global", "enable-plain-output", Bool(true)),
        ("global", "enable-json-output", Bool(true)),
        ("global", "enable-uccs-output", Bool(false)),
        ("global", "my-uccs-url-base", Str("http://localhost:8080/")),
        ("global", "default-auth-mech", Str("pam")),
        ("global", "default-user-db", Str("libnss")),
        ("global", "default-group-db", Str("libnss")),
        ("global", "ignore-primary-group-memberships", Bool(true)),
        ("global", "default-session-autologin", Bool(false)),
        // Ours: RSA (PKCS#1 PEM, what X2Go Client reads) or ED25519.
        ("global", "default-autologin-key-type", Str("RSA")),
        (
            "global",
            "default-authorized-keys",
            Str("%h/.x2go/authorized_keys"),
        ),
        (
            "global",
            "default-sshproxy-authorized-keys",
            Str("%h/.x2go/authorized_keys"),
        ),
        ("global", "default-agent-query-mode", Str("NONE")),
        ("global", "default-agent-hostkey-policy", Str("RejectPolicy")),
        ("global", "default-portscan-x2goservers", Bool(true)),
        ("global", "default-use-load-checker", Bool(false)),
        ("global", "load-checker-intervals", Int(300)),
        ("broker_base", "enable", Bool(false)),
        ("broker_zeroconf", "enable", Bool(false)),
        ("broker_zeroconf", "auth-mech", Str("pam")),
        ("broker_zeroconf", "user-db", Str("libnss")),
        ("broker_zeroconf", "group-db", Str("libnss")),
        ("broker_zeroconf", "desktop-shell", Str("KDE")),
        ("broker_zeroconf", "load-checker", Bool(false)),
        ("broker_inifile", "enable", Bool(true)),
        ("broker_inifile", "session-profiles", Str(DEFAULT_SESSIONPROFILES)),
        ("broker_inifile", "auth-mech", Str("")),
        ("broker_inifile", "user-db", Str("")),
        ("broker_inifile", "group-db", Str("")),
        ("broker_inifile", "use-load-checker", Bool(true)),
        ("broker_ldap", "enable", Bool(false)),
        ("broker_ldap", "auth-mech", Str("ldap")),
        ("broker_ldap", "user-db", Str("ldap")),
        ("broker_ldap", "group-db", Str("ldap")),
        ("broker_ldap", "uri", Str("ldap://localhost:389")),
        ("broker_ldap", "base", Str("dc=example,dc=org")),
        (
            "broker_ldap",
            "user-search-filter",
            Str("(&(objectClass=posixAccount)(uid=*))"),
        ),
        (
            "broker_ldap",
            "host-search-filter",
            Str("(&(objectClass=ipHost)(serial=X2GoServer)(cn=*))"),
        ),
        (
            "broker_ldap",
            "group-search-filter",
            Str("(&(objectClass=posifxGroup)(cn=*))"),
        ),
        ("broker_ldap", "starttls", Bool(false)),
        ("broker_ldap", "agent-query-mode", Str("SSH")),
        ("broker_ldap", "load-checker", Bool(true)),
    ]
};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError(pub String);

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ConfigError {}

impl From<IniError> for ConfigError {
    fn from(e: IniError) -> Self {
        ConfigError(e.to_string())
    }
}

/// x2gobroker.conf: the file's values over the built-in defaults, typed as
/// the original types them.
#[derive(Debug, Clone)]
pub struct ConfigFile {
    path: PathBuf,
    ini: Ini,
}

impl ConfigFile {
    pub fn load(path: &Path) -> Result<ConfigFile, ConfigError> {
        let ini = Ini::load(path)?;
        Ok(ConfigFile {
            path: path.to_owned(),
            ini,
        })
    }

    pub fn from_ini(path: &Path, ini: Ini) -> ConfigFile {
        ConfigFile {
            path: path.to_owned(),
            ini,
        }
    }

    fn builtin(section: &str, key: &str) -> Option<Builtin> {
        BUILTINS
            .iter()
            .find(|(s, k, _)| *s == section && *k == key)
            .map(|(_, _, b)| *b)
    }

    /// The raw value: file section, file `[DEFAULT]`, or None.
    pub fn raw(&self, section: &str, key: &str) -> Option<&str> {
        self.ini.get(section, key)
    }

    fn bad(&self, section: &str, key: &str, value: &str, what: &str) -> ConfigError {
        ConfigError(format!(
            "{}: [{section}] {key} = {value}: not {what}",
            self.path.display()
        ))
    }

    pub fn get_bool(&self, section: &str, key: &str) -> Result<bool, ConfigError> {
        match self.raw(section, key) {
            Some(v) => parse_bool(v).ok_or_else(|| self.bad(section, key, v, "a boolean")),
            None => Ok(matches!(Self::builtin(section, key), Some(Builtin::Bool(true)))),
        }
    }

    pub fn get_int(&self, section: &str, key: &str) -> Result<i64, ConfigError> {
        match self.raw(section, key) {
            Some(v) => parse_int(v).ok_or_else(|| self.bad(section, key, v, "an integer")),
            None => match Self::builtin(section, key) {
                Some(Builtin::Int(i)) => Ok(i),
                _ => Ok(0),
            },
        }
    }

    pub fn get_str(&self, section: &str, key: &str) -> Option<String> {
        match self.raw(section, key) {
            Some(v) => Some(v.to_owned()),
            None => match Self::builtin(section, key) {
                Some(Builtin::Str(s)) => Some(s.to_owned()),
                Some(Builtin::Bool(b)) => Some(if b { "1" } else { "0" }.to_owned()),
                Some(Builtin::Int(i)) => Some(i.to_string()),
                Some(Builtin::List(l)) => Some(l.join(", ")),
                Some(Builtin::Unset) | None => None,
            },
        }
    }

    pub fn get_list(&self, section: &str, key: &str) -> Vec<String> {
        match self.raw(section, key) {
            Some(v) => parse_list(v),
            None => match Self::builtin(section, key) {
                Some(Builtin::List(l)) => l.iter().map(|s| (*s).to_owned()).collect(),
                _ => Vec::new(),
            },
        }
    }

    /// Whether the file itself sets the key (section or `[DEFAULT]`).
    pub fn is_set_in_file(&self, section: &str, key: &str) -> bool {
        self.raw(section, key).is_some()
    }

    /// Like the original's `has_value`: known built-in keys always exist.
    pub fn has_value(&self, section: &str, key: &str) -> bool {
        self.raw(section, key).is_some() || Self::builtin(section, key).is_some()
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// The `[global]` section, typed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GlobalConfig {
    pub check_credentials: bool,
    pub require_password: bool,
    pub require_cookie: bool,
    pub use_static_cookie: bool,
    pub auth_timeout: i64,
    pub cookie_directory: PathBuf,
    pub key_removal_directory: PathBuf,
    pub state_store: crate::core::state::StoreConfig,
    pub max_cookies_per_user: usize,
    pub verify_ip: bool,
    pub pre_auth_scripts: Vec<String>,
    pub post_auth_scripts: Vec<String>,
    pub select_session_scripts: Vec<String>,
    pub session_script_timeout: i64,
    pub session_scripts_with_password: Vec<String>,
    pub my_cookie: Option<String>,
    pub my_cookie_file: PathBuf,
    pub enable_plain_output: bool,
    pub enable_json_output: bool,
    pub enable_uccs_output: bool,
    pub my_uccs_url_base: String,
    pub default_auth_mech: String,
    pub default_user_db: String,
    pub default_group_db: String,
    pub ignore_primary_group_memberships: bool,
    pub default_session_autologin: bool,
    pub autologin_key_type: crate::core::autologin::KeyType,
    pub default_authorized_keys: String,
    pub default_sshproxy_authorized_keys: String,
    pub default_agent_query_mode: String,
    pub default_agent_hostkey_policy: String,
    pub default_portscan_x2goservers: bool,
    pub default_use_load_checker: bool,
    pub load_checker_intervals: i64,
}

impl GlobalConfig {
    pub fn from_file(c: &ConfigFile) -> Result<GlobalConfig, ConfigError> {
        const G: &str = "global";
        let s = |k: &str| c.get_str(G, k).unwrap_or_default();
        Ok(GlobalConfig {
            check_credentials: c.get_bool(G, "check-credentials")?,
            require_password: c.get_bool(G, "require-password")?,
            require_cookie: c.get_bool(G, "require-cookie")?,
            use_static_cookie: c.get_bool(G, "use-static-cookie")?,
            auth_timeout: c.get_int(G, "auth-timeout")?,
            cookie_directory: PathBuf::from(s("cookie-directory")),
            key_removal_directory: PathBuf::from(s("key-removal-directory")),
            state_store: crate::core::state::StoreConfig {
                url: s("state-store").trim().to_owned(),
                key_prefix: s("state-store-key-prefix"),
                password_file: Some(PathBuf::from(s("state-store-password-file")))
                    .filter(|p| !p.as_os_str().is_empty()),
                tls_ca_file: Some(PathBuf::from(s("state-store-tls-ca-file")))
                    .filter(|p| !p.as_os_str().is_empty()),
            },
            max_cookies_per_user: {
                let n = c.get_int(G, "max-cookies-per-user")?;
                usize::try_from(n).ok().filter(|n| *n > 0).ok_or_else(|| {
                    ConfigError(format!(
                        "[global] max-cookies-per-user = {n}: expected a positive number"
                    ))
                })?
            },
            verify_ip: c.get_bool(G, "verify-ip")?,
            pre_auth_scripts: nonempty(c.get_list(G, "pre_auth_scripts")),
            post_auth_scripts: nonempty(c.get_list(G, "post_auth_scripts")),
            select_session_scripts: nonempty(c.get_list(G, "select_session_scripts")),
            session_script_timeout: c.get_int(G, "session-script-timeout")?,
            session_scripts_with_password: nonempty(c.get_list(G, "session-scripts-with-password")),
            my_cookie: c.get_str(G, "my-cookie"),
            my_cookie_file: PathBuf::from(s("my-cookie-file")),
            enable_plain_output: c.get_bool(G, "enable-plain-output")?,
            enable_json_output: c.get_bool(G, "enable-json-output")?,
            enable_uccs_output: c.get_bool(G, "enable-uccs-output")?,
            my_uccs_url_base: s("my-uccs-url-base"),
            default_auth_mech: s("default-auth-mech"),
            default_user_db: s("default-user-db"),
            default_group_db: s("default-group-db"),
            ignore_primary_group_memberships: c.get_bool(G, "ignore-primary-group-memberships")?,
            default_session_autologin: c.get_bool(G, "default-session-autologin")?,
            autologin_key_type: {
                let name = s("default-autologin-key-type");
                crate::core::autologin::KeyType::parse(&name).ok_or_else(|| {
                    ConfigError(format!(
                        "[global] default-autologin-key-type = {name}: expected RSA or ED25519"
                    ))
                })?
            },
            default_authorized_keys: s("default-authorized-keys"),
            default_sshproxy_authorized_keys: s("default-sshproxy-authorized-keys"),
            default_agent_query_mode: s("default-agent-query-mode"),
            default_agent_hostkey_policy: s("default-agent-hostkey-policy"),
            default_portscan_x2goservers: c.get_bool(G, "default-portscan-x2goservers")?,
            default_use_load_checker: c.get_bool(G, "default-use-load-checker")?,
            load_checker_intervals: c.get_int(G, "load-checker-intervals")?,
        })
    }
}

fn nonempty(list: Vec<String>) -> Vec<String> {
    list.into_iter().filter(|s| !s.is_empty()).collect()
}

/// The settings of one `[broker_<name>]` section that the front end uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackendConfig {
    pub enable: bool,
    /// Lower-cased; empty means "use default-auth-mech".
    pub auth_mech: String,
    pub user_db: String,
    pub group_db: String,
    /// Only when the section (or `[DEFAULT]`) sets it.
    pub agent_query_mode: Option<String>,
    pub agent_hostkey_policy: Option<String>,
    pub desktop_shell: String,
    pub use_load_checker: bool,
    pub session_profiles: Option<PathBuf>,
}

impl BackendConfig {
    pub fn from_file(c: &ConfigFile, backend: &str) -> Result<BackendConfig, ConfigError> {
        let section = format!("broker_{backend}");
        let s = section.as_str();
        let set = |k: &str| c.raw(s, k).filter(|v| !v.is_empty()).map(str::to_owned);
        Ok(BackendConfig {
            enable: c.get_bool(s, "enable")?,
            auth_mech: c.get_str(s, "auth-mech").unwrap_or_default().to_lowercase(),
            user_db: c.get_str(s, "user-db").unwrap_or_default().to_lowercase(),
            group_db: c.get_str(s, "group-db").unwrap_or_default().to_lowercase(),
            agent_query_mode: set("agent-query-mode").map(|v| v.to_lowercase()),
            agent_hostkey_policy: set("agent-hostkey-policy"),
            desktop_shell: c.get_str(s, "desktop-shell").unwrap_or_default(),
            // The original's built-in default (true for inifile) counts.
            use_load_checker: c.get_bool(s, "use-load-checker")?,
            session_profiles: if c.is_set_in_file(s, "session-profiles") {
                c.get_str(s, "session-profiles").map(PathBuf::from)
            } else {
                None
            },
        })
    }
}

/// The `[authmech_https_get]` section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpsGetConfig {
    pub host: String,
    pub port: String,
    pub path: String,
}

impl HttpsGetConfig {
    pub fn from_file(c: &ConfigFile) -> HttpsGetConfig {
        const S: &str = "authmech_https_get";
        HttpsGetConfig {
            host: c.get_str(S, "host").unwrap_or_else(|| "localhost".into()),
            port: c.get_str(S, "port").unwrap_or_else(|| "443".into()),
            path: c.get_str(S, "path").unwrap_or_else(|| "/auth".into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ini(text: &str) -> Ini {
        Ini::parse(text, Path::new("t.conf")).unwrap()
    }

    #[test]
    fn environment_precedence() {
        let defaults = ini(
            "[common]\nX2GOBROKER_DEFAULT_BACKEND = zeroconf\nX2GOBROKER_CONFIG = /common.conf\n\
             X2GOBROKER_AGENT_CMD = /common-agent\n\
             [daemon]\nX2GOBROKER_CONFIG = /daemon.conf\nDAEMON_BIND_ADDRESS = 1.2.3.4:99\n",
        );
        let mut vars = HashMap::new();
        vars.insert("X2GOBROKER_DEFAULT_BACKEND".to_owned(), "inifile".to_owned());
        let env = Environment::resolve("x2gobroker-daemon", &vars, &defaults, true);
        assert_eq!(env.default_backend, "inifile");
        assert_eq!(env.config_file, PathBuf::from("/daemon.conf"));
        assert_eq!(env.agent_cmd, "/common-agent");
        assert_eq!(env.bind_address, "1.2.3.4:99");
        assert_eq!(
            env.authservice_socket,
            PathBuf::from("/run/x2gobroker/x2gobroker-authservice.socket")
        );
        assert!(!env.debug);
        assert!(!env.sessionprofiles_explicit);
        // Plain `x2gobroker` has no program section: [common] applies.
        let env = Environment::resolve("x2gobroker", &HashMap::new(), &defaults, false);
        assert_eq!(env.config_file, PathBuf::from("/common.conf"));
        assert_eq!(env.default_backend, "zeroconf");
        assert_eq!(env.bind_address, "1.2.3.4:99");
        assert_eq!(
            env.authservice_socket,
            PathBuf::from("/var/run/x2gobroker/x2gobroker/x2gobroker-authservice.socket")
        );
        let env = Environment::resolve("x2gobroker", &HashMap::new(), &Ini::default(), true);
        assert_eq!(env.config_file, PathBuf::from(DEFAULT_CONFIG));
        assert_eq!(env.default_backend, "inifile");
        assert_eq!(env.bind_address, "");
        vars.insert("X2GOBROKER_DEBUG".into(), "Yes".into());
        assert!(Environment::resolve("x2gobroker", &vars, &Ini::default(), true).debug);
    }

    #[test]
    fn global_defaults_and_overrides() {
        let c = ConfigFile::from_ini(Path::new("t"), Ini::default());
        let g = GlobalConfig::from_file(&c).unwrap();
        assert!(g.require_password && !g.require_cookie && g.check_credentials && g.verify_ip);
        assert_eq!(g.auth_timeout, 36000);
        assert_eq!(g.my_cookie, None);
        assert_eq!(g.default_auth_mech, "pam");
        assert!(g.default_portscan_x2goservers);
        let c = ConfigFile::from_ini(
            Path::new("t"),
            ini("[DEFAULT]\nverify-ip = off\n[global]\nrequire-password = no\nauth-timeout = 5\n"),
        );
        let g = GlobalConfig::from_file(&c).unwrap();
        assert!(!g.require_password && !g.verify_ip);
        assert_eq!(g.auth_timeout, 5);
        let c = ConfigFile::from_ini(Path::new("t"), ini("[global]\nrequire-cookie = maybe\n"));
        let e = GlobalConfig::from_file(&c).unwrap_err();
        assert!(e.0.contains("require-cookie"), "{e}");
    }

    #[test]
    fn backend_sections() {
        let c = ConfigFile::from_ini(Path::new("t"), Ini::default());
        let b = BackendConfig::from_file(&c, "inifile").unwrap();
        assert!(b.enable);
        assert_eq!(b.auth_mech, "");
        let z = BackendConfig::from_file(&c, "zeroconf").unwrap();
        assert!(!z.enable);
        assert_eq!(z.auth_mech, "pam");
        assert_eq!(z.desktop_shell, "KDE");
        let c = ConfigFile::from_ini(
            Path::new("t"),
            ini("[broker_inifile]\nauth-mech = NONE\nagent-query-mode = LOCAL\n"),
        );
        let b = BackendConfig::from_file(&c, "inifile").unwrap();
        assert_eq!(b.auth_mech, "none");
        assert_eq!(b.agent_query_mode.as_deref(), Some("local"));
    }
}
