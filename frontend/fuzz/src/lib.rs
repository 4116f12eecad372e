//! The fuzz targets' bodies: what the front end does with one input that
//! reaches it from outside (a request, a configuration file, an agent's
//! answer), each followed by checks of what must hold for every input. A
//! panic is a bug. The stable corpus replay test
//! (frontend/tests/fuzz_corpora.rs) includes this file as a module, so
//! both run the same code.
#![forbid(unsafe_code)]

use base64::Engine as _;
use percent_encoding::NON_ALPHANUMERIC;
use rand::rngs::mock::StepRng;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::Path;
use x2gobroker_frontend::core::agent::{self, Answer, SessionLine};
use x2gobroker_frontend::core::config::{BackendConfig, ConfigFile, GlobalConfig, HttpsGetConfig};
use x2gobroker_frontend::core::hostnames;
use x2gobroker_frontend::core::ini::Ini;
use x2gobroker_frontend::core::jsonout::Object;
use x2gobroker_frontend::core::loadchecker::Load;
use x2gobroker_frontend::core::profiles::{self, Profile, ProfileSet};
use x2gobroker_frontend::core::select;
use x2gobroker_frontend::core::tasks::{self, Listed, ProfileList};
use x2gobroker_frontend::web::form::{percent_decode, Form};
use x2gobroker_frontend::web::{self, json, plain, uccs, OutputKind};

/// An HTTP request's parts as the daemon reads them: the bytes as a form
/// body (X2Go Client and pyhoca post `application/x-www-form-urlencoded`),
/// as the URL path, and as an `Authorization` header.
pub fn form(data: &[u8]) {
    let mut form = Form::default();
    if form.add_urlencoded(data).is_ok() {
        for kind in [OutputKind::Plain, OutputKind::Json] {
            let Ok(fields) = web::read_fields(&form, kind) else {
                continue;
            };
            let stripped = [
                ("user", &fields.user),
                ("login", &fields.login),
                ("authid", &fields.authid),
                ("pubkey", &fields.pubkey),
                ("task", &fields.task),
                ("profile_id", &fields.profile_id),
            ];
            for (name, value) in stripped {
                assert_eq!(value.trim(), value.as_str(), "{name} is stripped");
            }
            for (name, value) in stripped.into_iter().chain([("password", &fields.password)]) {
                assert!(
                    !value
                        .chars()
                        .any(|c| matches!(c, '\u{0}'..='\u{8}' | '\u{e}'..='\u{1f}')),
                    "{name} holds a control character: {value:?}"
                );
            }
            assert!(
                fields.user.is_empty() || !fields.login.is_empty(),
                "login defaults to user"
            );
        }
    }
    // What a client encodes arrives unchanged, whatever the bytes.
    for part in data.split(|b| *b == b'&' || *b == b'=') {
        if let Ok(raw) = percent_decode(part) {
            let encoded = percent_encoding::percent_encode(&raw, NON_ALPHANUMERIC).to_string();
            assert_eq!(percent_decode(encoded.as_bytes()), Ok(raw));
        }
    }

    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Some(path) = web::decode_path(text) {
        let ping = uccs::is_ping_path(&path);
        if let Some((backend, version)) = uccs::api_path(&path) {
            assert!(version <= 9 && path.contains(backend), "{path:?}");
            assert!(!ping, "{path:?} is both the UCCS ping and the API");
        }
    }
    let _ = uccs::decode_basic(Some(text));
    let header = format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(data));
    assert_eq!(
        uccs::decode_basic(Some(&header)),
        text.split_once(':').map(|(u, p)| (u.to_owned(), p.to_owned())),
        "basic credentials survive encoding"
    );
}

/// Who asks for the profile list: user, client address, the user's groups.
const REQUESTERS: &[(&str, IpAddr, &[&str])] = &[
    (
        "xbt-alice",
        IpAddr::V4(Ipv4Addr::new(127, 0, 0, 1)),
        &["xbt-staff", "xbt-devs"],
    ),
    ("bob", IpAddr::V6(Ipv6Addr::LOCALHOST), &[]),
];

/// A configuration file: x2gobroker.conf and a session profiles file (the
/// same parser), the profiles then listed as the `plain`, `json` and UCCS
/// outputs list them, with and without sessions reported by an agent.
pub fn profiles(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let ini = match Ini::parse(&text, Path::new("fuzz.conf")) {
        Ok(ini) => ini,
        Err(e) => {
            assert!(e.line >= 1 && e.line <= text.split('\n').count(), "{e}");
            assert!(!e.to_string().is_empty());
            return;
        }
    };
    let file = ConfigFile::from_ini(Path::new("x2gobroker.conf"), ini.clone());
    let _ = GlobalConfig::from_file(&file);
    let _ = BackendConfig::from_file(&file, "inifile");
    let _ = HttpsGetConfig::from_file(&file);
    // The zeroconf backend's one profile (its rendering depends only on this).
    if let Ok(zeroconf) = BackendConfig::from_file(&file, "zeroconf") {
        if !zeroconf.desktop_shell.is_empty() {
            let profile = profiles::zeroconf_profile(&zeroconf.desktop_shell);
            let list =
                ProfileList::Zeroconf(Box::new(profile), "5b4f1b8a-8f4c-4c52-9a52-3c2c5a0e9f01".into());
            check_listings(&list, "xbt-alice", 1);
        }
    }

    // One variant per input, chosen by its length (so that a replay runs
    // the same): the requester, with or without auto-login and agent data,
    // and the UCCS API version.
    let with_agent = data.len() % 2 == 1;
    let (user, client, groups) = REQUESTERS[usize::from(with_agent)];
    let uccs_version = if data.len() & 2 == 0 { 4 } else { 5 };
    let set = ProfileSet::from_ini(&ini, with_agent);
    assert_eq!(set.profiles.len(), ini.sections.len());
    for section in &ini.sections {
        assert!(
            set.get(&section.name).is_some(),
            "profile [{}] is indexed",
            section.name
        );
    }
    let user_groups = |_: &str| groups.iter().map(|g| (*g).to_owned()).collect();
    if let Ok(mut listed) = tasks::visible_inifile_profiles(&set, user, client, user_groups) {
        if with_agent {
            // What an agent adds: the session's host and status.
            for l in listed.iter_mut() {
                l.hosts = Some(l.profile.selection.hosts.iter().take(1).cloned().collect());
                l.status = Some("S");
            }
        }
        let count = listed.len();
        check_listings(&ProfileList::Inifile(listed), user, count);
    }
    if set.profiles.iter().all(|p| p.error.is_none()) {
        let visible: Vec<&Profile> = set
            .profiles
            .iter()
            .filter(|p| p.acl.permits(user, Some(client), user_groups))
            .collect();
        check_uccs(&visible, user, uccs_version);
    }
}

/// The `plain` and `json` listings of `list` for `user`.
fn check_listings(list: &ProfileList<'_>, user: &str, count: usize) {
    let mut out = String::from("Access granted\n");
    plain::profile_listing(&mut out, list, user);
    let listed: Vec<(&str, &Listed<'_>)> = match list {
        ProfileList::Inifile(l) => l.iter().map(|p| (p.profile.id.as_str(), p)).collect(),
        ProfileList::Zeroconf(..) => Vec::new(),
    };
    if count > 0 {
        assert!(
            out.starts_with("Access granted\nSTART_USER_SESSIONS\n\n"),
            "{out}"
        );
        assert!(out.ends_with("\n\nEND_USER_SESSIONS\n"), "{out}");
    }
    for (id, _) in &listed {
        assert!(out.contains(&format!("\n[{id}]\n")), "[{id}] in {out}");
    }

    let mut payload = Object::new(0);
    payload.str("task", "listprofiles");
    payload.str("auth-status", "Access granted");
    payload.raw("profiles", json::profiles_object(list, user));
    let text = payload.finish();
    let doc: serde_json::Value = match serde_json::from_str(&text) {
        Ok(doc) => doc,
        Err(e) => panic!("json output is not JSON ({e}): {text}"),
    };
    let profiles = doc["profiles"].as_object().expect("a profiles object");
    assert_eq!(profiles.len(), count, "{text}");
    for (id, l) in listed {
        let shown = &profiles[id];
        if let Some(status) = l.status {
            assert_eq!(
                shown["status"].as_str(),
                Some(status),
                "status of [{id}] in {text}"
            );
        }
        if let Some(hosts) = &l.hosts {
            assert_eq!(
                shown["host"],
                serde_json::json!(hosts),
                "hosts of [{id}] in {text}"
            );
        }
        // Every key once (a JSON parser keeps only the last of duplicates):
        // keys start the lines at the profile's nesting.
        let mut own = String::new();
        l.render_json(&mut own, user);
        let mut keys = std::collections::BTreeSet::new();
        for line in own.lines().filter_map(|l| l.strip_prefix("            \"")) {
            let key = serde_json::Deserializer::from_str(&format!("\"{line}"))
                .into_iter::<String>()
                .next();
            if let Some(Ok(key)) = key {
                assert!(keys.insert(key.clone()), "[{id}] lists {key:?} twice: {own}");
            }
        }
    }
}

/// The UCCS document of `visible` for `user`.
fn check_uccs(visible: &[&Profile], user: &str, version: u32) {
    let url = "https://broker.example.org/uccs/inifile/";
    let rng = &mut StepRng::new(0, 1);
    let Some(text) = uccs::servers_document(visible.iter().copied(), user, url, version, rng) else {
        assert!(
            visible.iter().any(|p| p.selection.hosts.is_empty()),
            "UCCS fails only for a profile without hosts"
        );
        return;
    };
    let doc: serde_json::Value = match serde_json::from_str(&text) {
        Ok(doc) => doc,
        Err(e) => panic!("UCCS output is not JSON ({e}): {text}"),
    };
    let servers = doc["RemoteDesktopServers"].as_array().expect("a server list");
    assert_eq!(servers.len(), visible.len(), "{text}");
    assert_eq!(doc["URL"], url, "{text}");
}

/// Profile host lists the agent's server names are compared with.
const HOST_LISTS: &[&[&str]] = &[
    &["srv1", "srv2", "srv3"],
    &["srv1.example.org", "srv2.example.org", "10.0.0.13"],
    &["srv1.example.org", "srv2.example.net", "localhost"],
];

/// An agent's answer (stdout) read as each task's answer, then used as
/// listing and selection use it.
pub fn agent_answer(data: &[u8]) {
    if !data.is_empty() {
        assert_eq!(
            Answer::parse(b"OK\n", data),
            Answer::default(),
            "stderr output fails the call"
        );
    }
    let answer = Answer::parse(data, b"");
    assert!(answer.ok || answer.lines.is_empty(), "no data from a failed call");
    assert!(
        answer.lines.iter().all(|l| !l.is_empty() && !l.contains('\n')),
        "{answer:?}"
    );

    let busy = answer.busy_servers();
    assert!(busy.len() <= answer.lines.len());
    assert!(answer.server_counts().len() <= answer.lines.len());
    assert!(answer.load_values().len() <= answer.lines.len());

    let sessions = answer.clone().sessions();
    assert_eq!(sessions.len(), answer.lines.len());
    for s in &sessions {
        let _ = (s.name(), s.server(), s.status());
        // A running session taken over is reported as suspended.
        let taken_over = SessionLine(s.0.replace("|R|", "|S|"));
        assert_eq!(taken_over.server().len(), s.server().len());
    }
    let (running, suspended) = agent::session_servers(&sessions);
    assert!(running.len() + suspended.len() <= sessions.len());

    let mut lists: Vec<Vec<String>> = HOST_LISTS
        .iter()
        .map(|l| l.iter().map(|h| (*h).to_owned()).collect())
        .collect();
    // The agent's own names as a profile's hosts.
    lists.push(busy.iter().map(|(s, _)| s.clone()).collect());
    for hosts in &lists {
        let short = hostnames::normalize(hosts).0;
        for found in [&running, &suspended] {
            for m in hostnames::matching(hosts, found) {
                assert!(short.contains(&m) || hosts.contains(&m), "{m} from {hosts:?}");
            }
        }
        if !hosts.is_empty() {
            let mut counts = busy.clone();
            let _ = select::pick_least_busy(hosts, &mut counts, &[]);
            // The same counts read as load factors (any value, zero and
            // negative included), one host's as a failure.
            let loads: Vec<(String, Load)> = busy
                .iter()
                .enumerate()
                .map(|(i, (h, c))| {
                    let load = if i == 0 {
                        Load::Failed("HOST-UNREACHABLE".into())
                    } else {
                        Load::Factor(*c)
                    };
                    (h.clone(), load)
                })
                .collect();
            let mut counts = busy.clone();
            let _ = select::pick_least_busy(hosts, &mut counts, &loads);
        }
    }
}
