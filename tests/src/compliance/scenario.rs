//! Scenario files: what to start the broker with, what to send, what to expect.
//!
//! A scenario is a TOML file under `tests/compliance/scenarios/`. Text values may
//! contain `${name}` placeholders (see `vars`), filled in per run.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::broker::BrokerKind;

/// One scenario file, as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    /// What the scenario shows, one sentence.
    pub description: String,
    /// Set when ours deliberately differs from the original (ARCHITECTURE.md differences): the reason.
    /// Such scenarios give per-broker expectations.
    #[serde(default)]
    pub difference: Option<String>,
    /// Brokers (`original`, `ours`) that must refuse to start with this setup; the
    /// requests are then not sent to them.
    #[serde(default)]
    pub start_fails: Vec<String>,
    /// Address family the broker listens on and the client connects from.
    #[serde(default)]
    pub listen: Listen,
    /// Serve HTTPS (a throw-away self-signed certificate via X2GOBROKER_SSL_CERTFILE
    /// and X2GOBROKER_SSL_KEYFILE); requests then go through curl.
    #[serde(default)]
    pub tls: bool,
    /// Start the PAM authentication service (the original's authservice, or our authhelper).
    #[serde(default)]
    pub auth_service: bool,
    /// Content of the broker's `x2gobroker.conf` (passed with `-C`).
    pub config: String,
    /// Content of the session profiles file (X2GOBROKER_SESSIONPROFILES).
    #[serde(default)]
    pub profiles: String,
    /// Opt out of the check that the configuration names its own cookie paths.
    #[serde(default)]
    pub allow_system_paths: bool,
    /// Extra command-line arguments for the broker (same option names for both).
    #[serde(default)]
    pub args: Vec<String>,
    /// Extra environment for the broker.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Extra files to create before the start: path (relative to `${dir}`, or absolute
    /// after placeholders) to content.
    #[serde(default)]
    pub files: BTreeMap<String, String>,
    /// Like `files`, but made executable (e.g. a fake x2gobroker-agent for
    /// X2GOBROKER_AGENT_CMD).
    #[serde(default)]
    pub executables: BTreeMap<String, String>,
    /// Commands (argument vectors, no shell) run before the broker starts; a failure
    /// fails the scenario. For system state a scenario needs, e.g. a throw-away group.
    #[serde(default)]
    pub setup: Vec<Vec<String>>,
    /// Commands run at the end, also after a failure; their failures are ignored.
    #[serde(default)]
    pub cleanup: Vec<Vec<String>>,
    /// The requests, sent in order over fresh connections.
    #[serde(default, rename = "request")]
    pub requests: Vec<Request>,
}

/// Which loopback address the broker binds.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Listen {
    /// 127.0.0.1
    #[default]
    Ipv4,
    /// ::1
    Ipv6,
}

/// One HTTP request and its expected answer.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Request {
    /// Label shown in failure messages.
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default = "default_method")]
    pub method: String,
    pub path: String,
    /// Form fields, sent url-encoded as the body (unless `body` is given).
    #[serde(default)]
    pub form: BTreeMap<String, String>,
    /// Raw body, sent as is.
    #[serde(default)]
    pub body: Option<String>,
    /// Content-Type header; default `application/x-www-form-urlencoded` when there is a
    /// body; the empty string sends none.
    #[serde(default)]
    pub content_type: Option<String>,
    /// Extra request headers.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// Commands (argument vectors) run just before this request; a failure fails
    /// the scenario.
    #[serde(default)]
    pub before: Vec<Vec<String>>,
    /// Repeat the request until it meets its expectation, for at most this many
    /// seconds (for changes a broker picks up asynchronously).
    #[serde(default)]
    pub retry_secs: Option<u64>,
    /// Seconds to wait for the answer (default 30).
    #[serde(default)]
    pub timeout_secs: Option<u64>,
    pub expect: Expect,
    /// Variables to take from the response body: name to a regex with one group.
    #[serde(default)]
    pub capture: BTreeMap<String, String>,
}

fn default_method() -> String {
    "POST".to_owned()
}

/// Expected answer. `original` / `ours`, when present, replace the whole
/// expectation for that broker (deliberate differences).
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Expect {
    /// The broker sends no answer: it times out or closes the connection without one.
    #[serde(default)]
    pub no_answer: bool,
    #[serde(default)]
    pub status: Option<u16>,
    #[serde(default)]
    pub content_type: Option<String>,
    /// Response headers with their exact values (names case-insensitive).
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// Exact body.
    #[serde(default)]
    pub body: Option<String>,
    /// Compare `body` with the key lines inside each `[section]` in any order
    /// (INI key order is not part of the contract; section order is).
    #[serde(default)]
    pub body_keys_any_order: bool,
    /// Substrings the body must contain.
    #[serde(default)]
    pub contains: Vec<String>,
    /// Substrings the body must not contain.
    #[serde(default)]
    pub not_contains: Vec<String>,
    /// Regexes (multi-line mode) that must match the body.
    #[serde(default)]
    pub matches: Vec<String>,
    /// Regexes (multi-line mode) that must not match the body.
    #[serde(default)]
    pub not_matches: Vec<String>,
    /// JSON the body must equal structurally; a JSON string `"re:<regex>"` matches
    /// any string that the regex matches in full.
    #[serde(default)]
    pub json: Option<String>,
    /// With `json`: objects in the answer may have keys the expectation leaves out.
    #[serde(default)]
    pub json_subset: bool,
    /// Paths that must exist after the request.
    #[serde(default)]
    pub files_exist: Vec<String>,
    /// Paths that must not exist after the request.
    #[serde(default)]
    pub files_absent: Vec<String>,
    /// Files whose content must match a regex (multi-line mode): path to regex.
    #[serde(default)]
    pub files_match: BTreeMap<String, String>,
    /// Files whose content must not match a regex (a missing file passes).
    #[serde(default)]
    pub files_not_match: BTreeMap<String, String>,
    #[serde(default)]
    pub original: Option<Box<Expect>>,
    #[serde(default)]
    pub ours: Option<Box<Expect>>,
}

impl Expect {
    /// The expectation that holds for `broker`.
    pub fn for_broker(&self, broker: BrokerKind) -> &Expect {
        let specific = match broker {
            BrokerKind::Original => self.original.as_deref(),
            BrokerKind::Ours => self.ours.as_deref(),
        };
        specific.unwrap_or(self)
    }

    fn has_per_broker(&self) -> bool {
        self.original.is_some() || self.ours.is_some()
    }
}

impl Scenario {
    /// Reads and checks one scenario file.
    pub fn load(path: &Path) -> Result<Scenario, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        let scenario: Scenario = toml::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
        scenario
            .validate()
            .map_err(|e| format!("{}: {e}", path.display()))?;
        Ok(scenario)
    }

    fn validate(&self) -> Result<(), String> {
        if self.requests.is_empty() {
            return Err("no [[request]]".into());
        }
        if let Some(bad) = self
            .start_fails
            .iter()
            .find(|b| !matches!(b.as_str(), "original" | "ours"))
        {
            return Err(format!("start_fails: unknown broker {bad:?}"));
        }
        let per_broker =
            !self.start_fails.is_empty() || self.requests.iter().any(|r| r.expect.has_per_broker());
        match (&self.difference, per_broker) {
            (Some(_), false) => return Err("`difference` set but no expect.original/expect.ours".into()),
            (None, true) => return Err("expect.original/expect.ours need a `difference` reason".into()),
            _ => {}
        }
        // Isolation: the original falls back to system paths for these two.
        let names_own_paths =
            self.config.contains("cookie-directory") && self.config.contains("my-cookie-file");
        if !(self.allow_system_paths || names_own_paths) {
            return Err("config must set cookie-directory and my-cookie-file (or allow_system_paths)".into());
        }
        for r in &self.requests {
            if r.body.is_some() && !r.form.is_empty() {
                return Err("a request has both `form` and `body`".into());
            }
        }
        Ok(())
    }
}

/// All scenario files, sorted by name.
pub fn scenario_files(dir: &Path) -> Result<Vec<PathBuf>, String> {
    let entries = std::fs::read_dir(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let mut files: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .collect();
    files.sort();
    Ok(files)
}
