//! Session profiles of the inifile backend, rendered once per configuration
//! load into what listsessions prints, plus what selectsession needs.

use crate::core::acl::ProfileAcl;
use crate::core::ini::{parse_bool, parse_int, parse_list, Ini, Section};
use crate::core::jsonout;
use std::collections::HashMap;
use std::net::{Ipv4Addr, Ipv6Addr};

/// A typed profile value, as the original's configuration layer types it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    Str(String),
    Int(i64),
    Bool(bool),
    List(Vec<String>),
}

impl Value {
    /// plain output: lists joined with `,`, booleans as 0/1.
    pub fn plain(&self) -> String {
        match self {
            Value::Str(s) => s.clone(),
            Value::Int(i) => i.to_string(),
            Value::Bool(b) => u8::from(*b).to_string(),
            Value::List(l) => l.join(","),
        }
    }

    pub fn json(&self, out: &mut String, indent: usize) {
        match self {
            Value::Str(s) => jsonout::string(out, s),
            Value::Int(i) => out.push_str(&i.to_string()),
            Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
            Value::List(l) => jsonout::string_list(out, l, indent),
        }
    }
}

#[derive(Debug, Clone, Copy)]
enum Kind {
    Str,
    Int,
    Bool,
    List,
}

/// `X2GOBROKER_SESSIONPROFILE_DEFAULTS` of the original, in its order.
const PROFILE_DEFAULTS: &[(&str, &str, Kind)] = &[
    ("command", "TERMINAL", Kind::Str),
    ("kdrive", "0", Kind::Bool),
    ("defsndport", "1", Kind::Bool),
    ("useiconv", "0", Kind::Bool),
    ("iconvfrom", "UTF-8", Kind::Str),
    ("height", "600", Kind::Int),
    ("export", "", Kind::Str),
    ("quality", "9", Kind::Int),
    ("fullscreen", "0", Kind::Bool),
    ("layout", "", Kind::Str),
    ("useexports", "1", Kind::Bool),
    ("width", "800", Kind::Int),
    ("speed", "2", Kind::Int),
    ("soundsystem", "pulse", Kind::Str),
    ("print", "1", Kind::Bool),
    ("type", "auto", Kind::Str),
    ("sndport", "4713", Kind::Int),
    ("xinerama", "1", Kind::Bool),
    ("variant", "", Kind::Str),
    ("usekbd", "1", Kind::Bool),
    ("fstunnel", "1", Kind::Bool),
    (
        "applications",
        "TERMINAL, WWWBROWSER, MAILCLIENT, OFFICE",
        Kind::List,
    ),
    ("multidisp", "0", Kind::Bool),
    ("sshproxyport", "22", Kind::Int),
    ("sound", "1", Kind::Bool),
    ("rootless", "1", Kind::Bool),
    ("iconvto", "UTF-8", Kind::Str),
    ("soundtunnel", "1", Kind::Bool),
    ("dpi", "96", Kind::Int),
    ("sshport", "22", Kind::Int),
    ("setdpi", "0", Kind::Int),
    ("pack", "16m-jpeg", Kind::Str),
    ("user", "BROKER_USER", Kind::Str),
    ("host", "localhost", Kind::List),
    ("directrdp", "0", Kind::Bool),
    ("acl-users-allow", "", Kind::List),
    ("acl-users-deny", "", Kind::List),
    ("acl-users-order", "", Kind::Str),
    ("acl-groups-allow", "", Kind::List),
    ("acl-groups-deny", "", Kind::List),
    ("acl-groups-order", "", Kind::Str),
    ("acl-clients-allow", "", Kind::List),
    ("acl-clients-deny", "", Kind::List),
    ("acl-clients-order", "", Kind::Str),
    ("acl-any-order", "deny-allow", Kind::Str),
];

/// Values kept per profile after rendering (what UCCS needs).
pub const KEPT_VALUES: &[&str] = &["name", "user", "command", "directrdp", "sshport"];

/// Desktop session commands, upper-cased and made non-rootless.
pub const DESKTOP_SESSIONS: &[&str] = &[
    "KDE", "GNOME", "XFCE", "CINNAMON", "MATE", "LXDE", "TRINITY", "UNITY", "ICEWM", "OPENBOX", "XDMCP",
];

fn kind_of(key: &str) -> Kind {
    PROFILE_DEFAULTS
        .iter()
        .find(|(k, _, _)| *k == key)
        .map(|(_, _, kind)| *kind)
        .unwrap_or(Kind::Str)
}

fn typed(key: &str, raw: &str) -> Result<Value, String> {
    match kind_of(key) {
        Kind::Str => Ok(Value::Str(raw.to_owned())),
        Kind::Bool => parse_bool(raw)
            .map(Value::Bool)
            .ok_or_else(|| format!("{key} = {raw}: not a boolean")),
        Kind::Int => match parse_int(raw) {
            Some(i) => Ok(Value::Int(i)),
            None if raw == "not-set" => Ok(Value::Str(raw.to_owned())),
            None => Err(format!("{key} = {raw}: not an integer")),
        },
        Kind::List => Ok(Value::List(parse_list(raw))),
    }
}

/// One piece of a pre-rendered output: literal text or a value that
/// depends on the request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Piece {
    Text(String),
    /// `user=BROKER_USER` is replaced by the requesting user's name.
    UserName,
    /// An empty `user`: stays empty over HTTP; SSH mode fills in the login
    /// name (the original's `client/plain.py`).
    EmptyUser,
    /// The host list; the agent may narrow it to the session's host. Holds
    /// the configured list.
    Hosts(Vec<String>),
    /// Where a `status` entry goes when the agent reports a session.
    Status,
    /// A `status` the profile itself sets: the agent's status replaces
    /// it (the original overwrites the key, which stays where it is).
    ConfiguredStatus(Value),
}

/// What a listing knows about the requester beyond the profile.
#[derive(Debug, Clone, Copy, Default)]
pub struct RenderContext<'a> {
    pub user: &'a str,
    /// What an empty `user` becomes ("" over HTTP, the login in SSH mode).
    pub empty_user: &'a str,
    /// Replaces the host list (agent modes).
    pub hosts: Option<&'a [String]>,
    /// `R` or `S` when the agent reported a session.
    pub status: Option<&'a str>,
}

/// Settings from a profile's `broker-*` keys that the broker itself uses.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BrokerSettings {
    pub agent_query_mode: Option<String>,
    pub agent_hostkey_policy: Option<String>,
    pub session_autologin: Option<bool>,
    pub portscan_x2goservers: Option<bool>,
    pub authorized_keys: Option<String>,
    pub sshproxy_authorized_keys: Option<String>,
    pub use_load_checker: Option<String>,
    /// Some `broker-*` key has a value (the original uses the load checker
    /// only for such profiles).
    pub any_set: bool,
}

/// Everything selectsession needs about a profile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Selection {
    /// Host names, as listed to clients.
    pub hosts: Vec<String>,
    /// `host=name (address:port)`: name → address.
    pub host_address: HashMap<String, String>,
    /// name → port, where it differs from sshport.
    pub host_port: HashMap<String, i64>,
    /// The profile's sshport (22 unless set; "not-set" counts as 22).
    pub sshport: i64,
    pub is_shadow: bool,
    pub sshproxyhost: Option<String>,
    /// Port of the SSH proxy host (22 unless set).
    pub sshproxyport: i64,
}

/// A profile ready to serve.
#[derive(Debug, Clone)]
pub struct Profile {
    pub id: String,
    pub acl: ProfileAcl,
    pub broker: BrokerSettings,
    pub selection: Selection,
    /// A value of the wrong type: the original answers 500 for every
    /// listing while such a profile exists, and for selecting it.
    pub error: Option<String>,
    /// The profile cannot be shown (e.g. `sshport` or `command` not-set):
    /// 500 for listings in which it is visible.
    pub visible_error: Option<String>,
    /// Selecting the profile fails (500) in the original (`sshport` not-set).
    pub select_error: bool,
    /// `[id]\nkey=value\n...\n\n` for plain output.
    plain: Vec<Piece>,
    /// The profile's JSON object (at the nesting of `profiles`).
    json: Vec<Piece>,
    /// The few values kept for UCCS ([`KEPT_VALUES`]), before output
    /// transformations; the rest lives only in the pre-rendered text.
    values: Vec<(String, Value)>,
}

impl Profile {
    /// A value as configured (typed, `[DEFAULT]` and built-ins applied,
    /// before output transformations); `not-set` counts as absent.
    pub fn value(&self, key: &str) -> Option<&Value> {
        self.values
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v)
            .filter(|v| !matches!(v, Value::Str(s) if s == "not-set"))
    }

    /// `[id]` and the profile's lines, ending with a blank line.
    pub fn render_plain(&self, out: &mut String, user: &str) {
        self.render_plain_with(
            out,
            &self.id,
            &RenderContext {
                user,
                ..Default::default()
            },
        );
    }

    /// Under another ID (zeroconf's per-request UUID); an empty `user`
    /// becomes `empty_user`.
    pub fn render_plain_as(&self, out: &mut String, id: &str, user: &str, empty_user: &str) {
        self.render_plain_with(
            out,
            id,
            &RenderContext {
                user,
                empty_user,
                ..Default::default()
            },
        );
    }

    pub fn render_plain_with(&self, out: &mut String, id: &str, ctx: &RenderContext<'_>) {
        out.push('[');
        out.push_str(id);
        out.push_str("]\n");
        render(&self.plain, out, ctx, false);
    }

    pub fn render_json(&self, out: &mut String, user: &str) {
        self.render_json_with(
            out,
            &RenderContext {
                user,
                ..Default::default()
            },
        );
    }

    pub fn render_json_with(&self, out: &mut String, ctx: &RenderContext<'_>) {
        render(&self.json, out, ctx, true);
    }
}

const JSON_DEPTH: usize = 3;

fn render(pieces: &[Piece], out: &mut String, ctx: &RenderContext<'_>, json: bool) {
    for p in pieces {
        match p {
            Piece::Text(t) => out.push_str(t),
            Piece::UserName if json => jsonout::string(out, ctx.user),
            Piece::UserName => out.push_str(ctx.user),
            Piece::EmptyUser if json => jsonout::string(out, ctx.empty_user),
            Piece::EmptyUser => out.push_str(ctx.empty_user),
            Piece::Hosts(configured) => {
                let hosts = ctx.hosts.unwrap_or(configured);
                if json {
                    jsonout::string_list(out, hosts, JSON_DEPTH);
                } else {
                    out.push_str(&hosts.join(","));
                }
            }
            Piece::ConfiguredStatus(configured) => match ctx.status {
                Some(status) if json => jsonout::string(out, status),
                Some(status) => out.push_str(status),
                None if json => configured.json(out, JSON_DEPTH),
                None => out.push_str(&configured.plain()),
            },
            Piece::Status => {
                if let Some(status) = ctx.status {
                    if json {
                        out.push_str(",\n");
                        jsonout::indent(out, JSON_DEPTH);
                        out.push_str("\"status\": ");
                        jsonout::string(out, status);
                    } else {
                        out.push_str("status=");
                        out.push_str(status);
                        out.push('\n');
                    }
                }
            }
        }
    }
}

/// All profiles of one session profiles file, in file order.
#[derive(Debug, Clone, Default)]
pub struct ProfileSet {
    pub profiles: Vec<Profile>,
    index: HashMap<String, usize>,
    /// Problems worth reporting (bad ACL addresses, unusable values).
    pub warnings: Vec<String>,
}

impl ProfileSet {
    pub fn get(&self, id: &str) -> Option<&Profile> {
        self.index.get(id).map(|i| &self.profiles[*i])
    }

    /// Profile IDs in sorted order with their profiles.
    pub fn sorted(&self) -> Vec<&Profile> {
        let mut v: Vec<&Profile> = self.profiles.iter().collect();
        v.sort_by(|a, b| a.id.cmp(&b.id));
        v
    }

    pub fn from_ini(ini: &Ini, default_session_autologin: bool) -> ProfileSet {
        let mut set = ProfileSet::default();
        for section in &ini.sections {
            let profile = build_profile(
                section,
                &ini.defaults,
                default_session_autologin,
                &mut set.warnings,
            );
            set.index.insert(profile.id.clone(), set.profiles.len());
            set.profiles.push(profile);
        }
        set.profiles.sort_by(|a, b| a.id.cmp(&b.id));
        set.index = set
            .profiles
            .iter()
            .enumerate()
            .map(|(i, p)| (p.id.clone(), i))
            .collect();
        set
    }
}

/// The option order of RawConfigParser's `options(section)`: the section's
/// own keys, then `[DEFAULT]`'s, then the built-in defaults.
fn raw_options<'a>(section: &'a Section, defaults: &'a Section) -> Vec<(&'a str, &'a str)> {
    let mut opts: Vec<(&str, &str)> = section
        .options
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let present = |opts: &Vec<(&str, &str)>, k: &str| opts.iter().any(|(o, _)| *o == k);
    for (k, v) in &defaults.options {
        if !present(&opts, k) {
            opts.push((k.as_str(), v.as_str()));
        }
    }
    for (k, v, _) in PROFILE_DEFAULTS {
        if !present(&opts, k) {
            opts.push((k, v));
        }
    }
    opts
}

fn build_profile(
    section: &Section,
    defaults: &Section,
    default_session_autologin: bool,
    warnings: &mut Vec<String>,
) -> Profile {
    let id = section.name.clone();
    let raw = raw_options(section, defaults);
    let lookup = |key: &str| raw.iter().find(|(k, _)| *k == key).map(|(_, v)| *v);
    let mut error = None;

    let (acl, acl_warnings) = ProfileAcl::build(|k| lookup(k));
    warnings.extend(acl_warnings.into_iter().map(|w| format!("profile [{id}]: {w}")));

    let nonempty = |k: &str| lookup(k).filter(|v| !v.is_empty()).map(str::to_owned);
    let flag = |k: &str| nonempty(k).map(|v| matches!(v.to_lowercase().as_str(), "1" | "true"));
    let broker = BrokerSettings {
        agent_query_mode: nonempty("broker-agent-query-mode"),
        agent_hostkey_policy: nonempty("broker-agent-hostkey-policy"),
        session_autologin: flag("broker-session-autologin"),
        portscan_x2goservers: flag("broker-portscan-x2goservers"),
        authorized_keys: nonempty("broker-authorized-keys"),
        sshproxy_authorized_keys: nonempty("broker-sshproxy-authorized-keys"),
        use_load_checker: nonempty("broker-use-load-checker"),
        any_set: raw.iter().any(|(k, v)| k.starts_with("broker-") && !v.is_empty()),
    };

    let mut values: Vec<(String, Value)> = Vec::with_capacity(raw.len());
    for (key, value) in &raw {
        match typed(key, value) {
            Ok(v) => values.push(((*key).to_owned(), v)),
            Err(e) => {
                error.get_or_insert_with(|| format!("profile [{id}]: {e}"));
            }
        }
    }
    // Empty items are dropped from list-typed values.
    for (key, value) in values.iter_mut() {
        if let (Value::List(items), Kind::List) = (&mut *value, kind_of(key)) {
            items.retain(|i| !i.is_empty());
        }
    }
    values.retain(|(k, _)| !k.starts_with("acl-") && !k.starts_with("broker-") && k != "default");

    let mut visible_error = None;
    let mut select_error = error.is_some();
    let sshport = match values.iter().find(|(k, _)| k == "sshport") {
        Some((_, Value::Int(p))) => *p,
        _ => {
            visible_error = Some(format!("profile [{id}]: sshport is not set"));
            select_error = true;
            22
        }
    };
    let mut hosts = Vec::new();
    let mut host_address = HashMap::new();
    let mut host_port = HashMap::new();
    if let Some((_, Value::List(items))) = values.iter().find(|(k, _)| k == "host") {
        for item in items {
            match split_host_entry(item) {
                Some((name, address)) => {
                    let (addr, port) = split_host_address(&address, sshport);
                    if (is_hostname_label(&name) || is_fqdn(&name))
                        && (is_fqdn(&addr) || valid_ipv4(&addr) || addr.parse::<Ipv6Addr>().is_ok())
                    {
                        host_address.insert(name.clone(), addr);
                        if port != sshport {
                            host_port.insert(name.clone(), port);
                        }
                    }
                    hosts.push(name);
                }
                None => hosts.push(item.clone()),
            }
        }
    }
    if let Some((_, v)) = values.iter_mut().find(|(k, _)| k == "host") {
        *v = Value::List(hosts.clone());
    }
    let command = match values.iter().find(|(k, _)| k == "command") {
        Some((_, Value::Str(c))) => c.clone(),
        _ => String::new(),
    };
    let is_shadow = command == "SHADOW";
    let sshproxyhost = match values.iter().find(|(k, _)| k == "sshproxyhost") {
        Some((_, Value::Str(h))) if !h.is_empty() => Some(h.clone()),
        _ => None,
    };
    let sshproxyport = match values.iter().find(|(k, _)| k == "sshproxyport") {
        Some((_, Value::Int(p))) => *p,
        _ => 22,
    };
    let selection = Selection {
        hosts: hosts.clone(),
        host_address,
        host_port,
        sshport,
        is_shadow,
        sshproxyhost,
        sshproxyport,
    };

    // What listsessions shows (get_profile_for_user of the original).
    let mut shown: Vec<(String, Value)> = values
        .iter()
        .filter(|(_, v)| !matches!(v, Value::Str(s) if s == "not-set"))
        .cloned()
        .collect();
    if !shown.iter().any(|(k, _)| k == "command") {
        visible_error.get_or_insert_with(|| format!("profile [{id}]: command = not-set"));
    }
    // A profile's own setting (when not empty) wins over the global default.
    if broker.session_autologin.unwrap_or(default_session_autologin) {
        set_value(&mut shown, "autologin", Value::Bool(true));
        set_value(
            &mut shown,
            "key",
            Value::Str("<will-be-exchanged-during-session-selection>".into()),
        );
    }
    if DESKTOP_SESSIONS.contains(&command.to_uppercase().as_str()) {
        set_value(&mut shown, "rootless", Value::Bool(false));
        set_value(&mut shown, "command", Value::Str(command.to_uppercase()));
    }
    if is_shadow {
        match hosts.first() {
            Some(first) => set_value(&mut shown, "host", Value::List(vec![first.clone()])),
            None => {
                visible_error.get_or_insert_with(|| format!("profile [{id}]: shadow profile without a host"));
            }
        }
    }
    warnings.extend(error.iter().chain(visible_error.iter()).cloned());

    let (plain, json) = render_pieces(&shown);
    Profile {
        id,
        acl,
        broker,
        selection,
        error,
        visible_error,
        select_error,
        plain,
        json,
        values: values
            .into_iter()
            .filter(|(k, _)| KEPT_VALUES.contains(&k.as_str()))
            .collect(),
    }
}

/// The piece for a value that depends on the request, if it does.
fn variable_piece(k: &str, v: &Value) -> Option<Piece> {
    match v {
        Value::Str(s) if k == "user" && s == "BROKER_USER" => Some(Piece::UserName),
        Value::Str(s) if k == "user" && s.is_empty() => Some(Piece::EmptyUser),
        Value::List(hosts) if k == "host" => Some(Piece::Hosts(hosts.clone())),
        _ if k == "status" => Some(Piece::ConfiguredStatus(v.clone())),
        _ => None,
    }
}

/// Pre-renders shown values: plain `key=value` lines plus the blank line
/// that ends a profile, and the JSON object at the nesting of a profile
/// inside `profiles`.
pub fn render_pieces(shown: &[(String, Value)]) -> (Vec<Piece>, Vec<Piece>) {
    // A configured `status` is where the agent's goes (ConfiguredStatus).
    let configured_status = shown.iter().any(|(k, _)| k == "status");
    let mut plain = Vec::new();
    let mut text = String::new();
    for (k, v) in shown {
        text.push_str(k);
        text.push('=');
        match variable_piece(k, v) {
            Some(piece) => {
                plain.push(Piece::Text(std::mem::take(&mut text)));
                plain.push(piece);
            }
            None => text.push_str(&v.plain()),
        }
        text.push('\n');
    }
    plain.push(Piece::Text(text));
    if !configured_status {
        plain.push(Piece::Status);
    }
    plain.push(Piece::Text("\n".into()));

    let mut sorted: Vec<&(String, Value)> = shown.iter().collect();
    sorted.sort_by(|a, b| a.0.cmp(&b.0));
    let mut json = Vec::new();
    let mut text = String::from("{");
    let mut status_placed = configured_status;
    for (i, (k, v)) in sorted.iter().enumerate() {
        if !status_placed && k.as_str() > "status" && i > 0 {
            json.push(Piece::Text(std::mem::take(&mut text)));
            json.push(Piece::Status);
            status_placed = true;
        }
        if i > 0 {
            text.push(',');
        }
        text.push('\n');
        jsonout::indent(&mut text, JSON_DEPTH);
        jsonout::string(&mut text, k);
        text.push_str(": ");
        match variable_piece(k, v) {
            Some(piece) => {
                json.push(Piece::Text(std::mem::take(&mut text)));
                json.push(piece);
            }
            None => v.json(&mut text, JSON_DEPTH),
        }
    }
    if !status_placed && !sorted.is_empty() {
        json.push(Piece::Text(std::mem::take(&mut text)));
        json.push(Piece::Status);
    }
    if !sorted.is_empty() {
        text.push('\n');
        jsonout::indent(&mut text, JSON_DEPTH - 1);
    }
    text.push('}');
    json.push(Piece::Text(text));
    (plain, json)
}

fn set_value(values: &mut Vec<(String, Value)>, key: &str, value: Value) {
    match values.iter_mut().find(|(k, _)| k == key) {
        Some((_, v)) => *v = value,
        None => values.push((key.to_owned(), value)),
    }
}

/// The zeroconf backend's single profile (its ID is a fresh UUID per
/// request). Values and their order as the original's zeroconf broker.
pub fn zeroconf_profile(desktop_shell: &str) -> Profile {
    let mut shown: Vec<(String, Value)> = Vec::new();
    for (key, raw, _) in PROFILE_DEFAULTS.iter().filter(|(k, _, _)| !k.starts_with("acl-")) {
        if let Ok(v) = typed(key, raw) {
            shown.push(((*key).to_owned(), v));
        }
    }
    let s = |v: &str| Value::Str(v.to_owned());
    let overrides = [
        ("user", s("")),
        ("useexports", Value::Int(1)),
        ("host", s("localhost")),
        ("multidisp", Value::Int(0)),
        ("rootless", Value::Int(0)),
        ("name", s("LOCALHOST")),
        ("command", Value::Str(desktop_shell.to_uppercase())),
    ];
    for (k, v) in overrides {
        set_value(&mut shown, k, v);
    }
    let (plain, json) = render_pieces(&shown);
    Profile {
        id: String::new(),
        acl: ProfileAcl::default(),
        broker: BrokerSettings::default(),
        selection: Selection {
            hosts: vec!["localhost".into()],
            host_address: HashMap::new(),
            host_port: HashMap::new(),
            sshport: 22,
            is_shadow: false,
            sshproxyhost: None,
            sshproxyport: 22,
        },
        error: None,
        visible_error: None,
        select_error: false,
        plain,
        json,
        values: shown,
    }
}

/// `name (address)` → (name, address) as the original splits it: the first
/// space-separated word, and the second word without its first and last
/// character.
fn split_host_entry(entry: &str) -> Option<(String, String)> {
    if !(entry.ends_with(')') && entry.contains(" (")) {
        return None;
    }
    let mut words = entry.split(' ');
    let name = words.next()?.to_owned();
    let second = words.next().unwrap_or("");
    let mut chars = second.chars();
    chars.next();
    chars.next_back();
    Some((name, chars.as_str().to_owned()))
}

/// The original's `split_host_address(host, default_port)`.
pub fn split_host_address(host: &str, default_port: i64) -> (String, i64) {
    let host = host.trim().trim_start_matches('*').trim_start_matches(':');
    let is_ipv6 = host.starts_with('[');
    let (mut address, port) = if let Some((a, p)) = host.rsplit_once(':') {
        match parse_int(p) {
            Some(p) => (a.to_owned(), p),
            None => (host.to_owned(), default_port),
        }
    } else {
        match parse_int(host) {
            Some(p) => ("0.0.0.0".to_owned(), p),
            None if host.is_empty() => ("0.0.0.0".to_owned(), default_port),
            None => (host.to_owned(), default_port),
        }
    };
    address = address.trim_start_matches('[').trim_end_matches(']').to_owned();
    if is_ipv6 {
        address = format!("[{address}]");
    }
    (address, port)
}

/// One DNS label (the original's first hostname pattern).
fn is_hostname_label(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && b.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'-')
        && b[0] != b'-'
        && b[b.len() - 1] != b'-'
}

/// The original's FQDN pattern: labels (not starting with a digit or '-',
/// not ending with '-', at most 63 characters, dots optional) followed by
/// at least two letters; 254 characters at most.
fn is_fqdn(s: &str) -> bool {
    let b = s.as_bytes();
    let n = b.len();
    if n == 0 || n > 254 {
        return false;
    }
    // after[i]: position i is reachable right after at least one label.
    let mut start = vec![false; n + 1];
    let mut after = vec![false; n + 1];
    start[0] = true;
    for i in 0..n {
        if !start[i] || b[i].is_ascii_digit() || b[i] == b'-' {
            continue;
        }
        for j in i + 1..=(i + 63).min(n) {
            let c = b[j - 1];
            if !(c.is_ascii_alphanumeric() || c == b'-') {
                break;
            }
            if c == b'-' {
                continue;
            }
            after[j] = true;
            start[j] = true;
            if j < n && b[j] == b'.' {
                after[j + 1] = true;
                start[j + 1] = true;
            }
        }
    }
    (0..n).any(|p| after[p] && n - p >= 2 && b[p..].iter().all(u8::is_ascii_alphabetic))
}

/// IPv4 as netaddr 0.8's `valid_ipv4` accepts it (inet_aton forms).
pub(crate) fn valid_ipv4(s: &str) -> bool {
    if s.parse::<Ipv4Addr>().is_ok() {
        return true;
    }
    let parts: Vec<&str> = s.split('.').collect();
    if parts.is_empty() || parts.len() > 4 {
        return false;
    }
    let mut nums = Vec::new();
    for p in &parts {
        let n = if let Some(h) = p.strip_prefix("0x").or_else(|| p.strip_prefix("0X")) {
            u64::from_str_radix(h, 16).ok()
        } else if p.len() > 1 && p.starts_with('0') {
            u64::from_str_radix(&p[1..], 8).ok()
        } else if !p.is_empty() && p.bytes().all(|c| c.is_ascii_digit()) {
            p.parse().ok()
        } else {
            None
        };
        match n {
            Some(n) => nums.push(n),
            None => return false,
        }
    }
    let last_max = 1u64 << (8 * (5 - nums.len()));
    nums[..nums.len() - 1].iter().all(|n| *n < 256) && nums[nums.len() - 1] < last_max
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn set(text: &str) -> ProfileSet {
        ProfileSet::from_ini(&Ini::parse(text, Path::new("p.conf")).unwrap(), false)
    }

    fn plain(p: &Profile, user: &str) -> String {
        let mut s = String::new();
        p.render_plain(&mut s, user);
        s
    }

    #[test]
    fn plain_rendering_matches_the_original() {
        let s = set(
            "[DEFAULT]\ncommand = TERMINAL\nname = dflt\n[p1]\nname = Profile One\n\
             host = srv1 (127.0.0.1:2222), srv2\ncommand = kde\nacl-users-allow = xbt-alice\n\
             [p2]\nname = Two\nwidth = not-set\nuser = fixed\n",
        );
        let p1 = s.get("p1").unwrap();
        let expected = "[p1]\nname=Profile One\nhost=srv1,srv2\ncommand=KDE\nkdrive=0\ndefsndport=1\n\
            useiconv=0\niconvfrom=UTF-8\nheight=600\nexport=\nquality=9\nfullscreen=0\nlayout=\n\
            useexports=1\nwidth=800\nspeed=2\nsoundsystem=pulse\nprint=1\ntype=auto\nsndport=4713\n\
            xinerama=1\nvariant=\nusekbd=1\nfstunnel=1\napplications=TERMINAL,WWWBROWSER,MAILCLIENT,OFFICE\n\
            multidisp=0\nsshproxyport=22\nsound=1\nrootless=0\niconvto=UTF-8\nsoundtunnel=1\ndpi=96\n\
            sshport=22\nsetdpi=0\npack=16m-jpeg\nuser=xbt-alice\ndirectrdp=0\n\n";
        assert_eq!(plain(p1, "xbt-alice"), expected);
        assert_eq!(
            p1.selection.host_address.get("srv1").map(String::as_str),
            Some("127.0.0.1")
        );
        assert_eq!(p1.selection.host_port.get("srv1"), Some(&2222));
        assert_eq!(p1.selection.hosts, vec!["srv1", "srv2"]);
        let p2 = plain(s.get("p2").unwrap(), "x");
        assert!(
            p2.starts_with("[p2]\nname=Two\nuser=fixed\ncommand=TERMINAL\nkdrive=0\n"),
            "{p2}"
        );
        assert!(!p2.contains("width="));
        assert!(p2.contains("\nrootless=1\n"));
    }

    #[test]
    fn json_rendering_is_sorted_and_typed() {
        let s = set("[p]\nhost = a, b\nuser = BROKER_USER\n");
        let mut out = String::new();
        s.get("p").unwrap().render_json(&mut out, "bob\"");
        assert!(
            out.starts_with("{\n            \"applications\": [\n                \"TERMINAL\","),
            "{out}"
        );
        assert!(out.contains("\"host\": [\n                \"a\",\n                \"b\"\n            ],"));
        assert!(out.contains("\"user\": \"bob\\\"\",\n"));
        assert!(out.contains("\"width\": 800,"));
        assert!(out.contains("\"kdrive\": false,"));
        assert!(out.ends_with("\n        }"));
    }

    #[test]
    fn an_empty_user_is_filled_in_only_when_asked_for() {
        // As the original: HTTP shows it empty, SSH mode fills in the login.
        let s = set("[p]\nhost = a\nuser =\n[q]\nhost = b\n");
        let p = s.get("p").unwrap();
        assert!(plain(p, "alice").contains("\nuser=\n"));
        let mut ssh = String::new();
        p.render_plain_as(&mut ssh, "p", "alice", "bob");
        assert!(ssh.contains("\nuser=bob\n"), "{ssh}");
        let mut json = String::new();
        p.render_json(&mut json, "alice");
        assert!(json.contains("\"user\": \"\""), "{json}");
        // BROKER_USER (the default) is the broker user, whatever the login.
        let mut q = String::new();
        s.get("q").unwrap().render_plain_as(&mut q, "q", "alice", "bob");
        assert!(q.contains("\nuser=alice\n"), "{q}");
    }

    #[test]
    fn an_agent_status_replaces_a_configured_one() {
        // Found by the profiles fuzz target: a profile's own `status` key
        // and the agent's status were both listed (the original overwrites
        // the key, which keeps its place).
        let s = set("[DEFAULT]\nstatus = \u{1a}x\n[p]\nname = P\n[q]\nname = Q\nstatus = not-set\n");
        let p = s.get("p").unwrap();
        let with_agent = |render: &dyn Fn(&mut String, &RenderContext<'_>)| {
            let mut out = String::new();
            let ctx = RenderContext {
                user: "u",
                status: Some("S"),
                ..Default::default()
            };
            render(&mut out, &ctx);
            out
        };
        let plain_out = with_agent(&|out, ctx| p.render_plain_with(out, "p", ctx));
        assert_eq!(plain_out.matches("status=").count(), 1, "{plain_out}");
        assert!(plain_out.starts_with("[p]\nname=P\nstatus=S\n"), "{plain_out}");
        let json_out = with_agent(&|out, ctx| p.render_json_with(out, ctx));
        assert_eq!(json_out.matches("\"status\": ").count(), 1, "{json_out}");
        assert!(json_out.contains("\"status\": \"S\",\n"), "{json_out}");
        // Without an agent the configured value shows, as in the original.
        assert!(plain(p, "u").contains("\nstatus=\u{1a}x\n"));
        let mut json_out = String::new();
        p.render_json(&mut json_out, "u");
        assert!(json_out.contains("\"status\": \"\\u001ax\",\n"), "{json_out}");
        // `not-set` counts as absent: the agent's status goes at the end.
        let q = s.get("q").unwrap();
        let plain_q = with_agent(&|out, ctx| q.render_plain_with(out, "q", ctx));
        assert!(plain_q.ends_with("\nstatus=S\n\n"), "{plain_q}");
        assert_eq!(plain_q.matches("status=").count(), 1, "{plain_q}");
    }

    #[test]
    fn hidden_keys_shadow_and_errors() {
        let s = set(
            "[p]\ncommand = SHADOW\nhost = h1, h2\nbroker-session-autologin = true\n\
             acl-users-deny = x\nsshproxyhost = proxy\n[bad]\nwidth = wide\n",
        );
        let p = s.get("p").unwrap();
        let out = plain(p, "u");
        assert!(out.contains("\nhost=h1\n"));
        assert!(!out.contains("broker-") && !out.contains("acl-"));
        assert!(out.ends_with("autologin=1\nkey=<will-be-exchanged-during-session-selection>\n\n"));
        assert!(p.selection.is_shadow);
        assert_eq!(p.selection.sshproxyhost.as_deref(), Some("proxy"));
        assert!(s.get("bad").unwrap().error.is_some());
    }

    #[test]
    fn host_address_forms() {
        assert_eq!(split_host_address("10.0.0.1:2222", 22), ("10.0.0.1".into(), 2222));
        assert_eq!(split_host_address("10.0.0.1", 22), ("10.0.0.1".into(), 22));
        assert_eq!(split_host_address("[::1]:22", 22), ("[::1]".into(), 22));
        assert_eq!(split_host_address("", 8080), ("0.0.0.0".into(), 8080));
        assert_eq!(split_host_address("8080", 22), ("0.0.0.0".into(), 8080));
        assert_eq!(
            split_host_address("host.example.org:x", 22),
            ("host.example.org:x".into(), 22)
        );
        assert!(is_fqdn("srv.example.org"));
        assert!(is_fqdn("abc"));
        assert!(!is_fqdn("srv1"));
        assert!(!is_fqdn("a..com"));
        assert!(!is_fqdn("1a.com"));
        assert!(is_fqdn("x-com"));
        assert!(is_hostname_label("srv1"));
        assert!(!is_hostname_label("-srv"));
        assert!(valid_ipv4("127.1"));
        assert!(!valid_ipv4("256.1.1.1"));
        let s = set("[p]\nhost = bad_name (10.0.0.1), good (not an address), ok (10.0.0.2:22)\n");
        let sel = &s.get("p").unwrap().selection;
        assert_eq!(sel.hosts, vec!["bad_name", "good", "ok"]);
        assert!(!sel.host_address.contains_key("bad_name"));
        assert!(!sel.host_address.contains_key("good"));
        assert_eq!(sel.host_address.get("ok").map(String::as_str), Some("10.0.0.2"));
        assert!(sel.host_port.is_empty());
    }
}
