//! Broker backends, looked up by name in a fixed table (the original
//! `exec`s whatever name the URL carries).

use crate::core::config::{BackendConfig, GlobalConfig};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Inifile,
    Zeroconf,
}

impl Backend {
    pub fn from_name(name: &str) -> Option<Backend> {
        match name {
            "inifile" => Some(Backend::Inifile),
            "zeroconf" => Some(Backend::Zeroconf),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Backend::Inifile => "inifile",
            Backend::Zeroconf => "zeroconf",
        }
    }

    /// Per-backend `auth-mech` over `default-auth-mech`, lower-cased.
    pub fn auth_mech_name(cfg: &BackendConfig, global: &GlobalConfig) -> String {
        if !cfg.auth_mech.is_empty() {
            cfg.auth_mech.clone()
        } else if !global.default_auth_mech.is_empty() {
            global.default_auth_mech.to_lowercase()
        } else {
            "pam".into()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixed_table() {
        assert_eq!(Backend::from_name("inifile"), Some(Backend::Inifile));
        assert_eq!(Backend::from_name("zeroconf"), Some(Backend::Zeroconf));
        for bad in ["base", "ldap", "../x", "inifile;import os", ""] {
            assert_eq!(Backend::from_name(bad), None);
        }
    }
}
