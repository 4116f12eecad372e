//! The UCCS output (`/uccs/[backend]/api/<version>`): profiles as remote
//! desktop servers for UCCS clients, HTTP basic authentication.

use super::{Reply, TEXT_HTML, TEXT_PLAIN};
use crate::core::access::check_basic_auth;
use crate::core::backend::Backend;
use crate::core::broker::Broker;
use crate::core::jsonout::Json;
use crate::core::nameservice;
use crate::core::profiles::{Profile, Value, DESKTOP_SESSIONS};
use rand::seq::SliceRandom;
use std::net::IpAddr;
use warp::http::Method;

pub const REALM: &str = "Authentication required";

/// `/uccs/`, `/uccs/<letters>` (and trailing slashes): the alive ping.
pub fn is_ping_path(path: &str) -> bool {
    path.strip_prefix("/uccs/").is_some_and(|rest| {
        let letters = rest.trim_end_matches('/');
        letters.bytes().all(|b| b.is_ascii_alphabetic())
    })
}

/// `/uccs/<backend>/api/<digit>` (and trailing slashes) → (backend, digit).
pub fn api_path(path: &str) -> Option<(&str, u32)> {
    let rest = path.strip_prefix("/uccs/")?.trim_end_matches('/');
    let (backend, version) = rest.rsplit_once("/api/")?;
    let mut digits = version.chars();
    let d = digits.next()?.to_digit(10)?;
    digits.next().is_none().then_some((backend, d))
}

/// GET and HEAD: the current UTC time. UCCS clients ping the base URL to
/// see that the broker is alive; the original serves GET only in debug
/// mode, which it is always in (ARCHITECTURE.md, D: debug off), so GET is
/// served here without it.
pub fn ping(method: &Method) -> Reply {
    if *method != Method::GET && *method != Method::HEAD {
        return Reply::error(405);
    }
    Reply {
        status: 200,
        content_type: TEXT_HTML,
        expires: false,
        www_authenticate: None,
        body: nix_time_now(),
    }
}

/// Python's `str(datetime.datetime.utcnow())`.
fn nix_time_now() -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let secs = now.as_secs() as i64;
    let (days, rem) = (secs.div_euclid(86400), secs.rem_euclid(86400));
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    let mut text = format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02}",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    );
    // Python leaves the fraction out when it is zero.
    if now.subsec_micros() != 0 {
        text.push_str(&format!(".{:06}", now.subsec_micros()));
    }
    text
}

fn unauthorized() -> Reply {
    Reply {
        status: 401,
        content_type: TEXT_HTML,
        expires: false,
        www_authenticate: Some(format!("Basic realm=\"{REALM}\"")),
        body: String::new(),
    }
}

/// An `Authorization: Basic` header value → (user, password).
pub fn decode_basic(header: Option<&str>) -> Option<(String, String)> {
    let encoded = header?.strip_prefix("Basic ")?;
    let bytes = base64_decode(encoded.trim())?;
    let text = String::from_utf8(bytes).ok()?;
    let (user, password) = text.split_once(':')?;
    Some((user.to_owned(), password.to_owned()))
}

/// Standard alphabet; padding may be there or not (as clients send it
/// either way) and unused trailing bits are ignored (as Python's
/// `base64.b64decode`).
fn base64_decode(s: &str) -> Option<Vec<u8>> {
    use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
    use base64::Engine as _;
    const LENIENT: GeneralPurpose = GeneralPurpose::new(
        &base64::alphabet::STANDARD,
        GeneralPurposeConfig::new()
            .with_decode_padding_mode(DecodePaddingMode::Indifferent)
            .with_decode_allow_trailing_bits(true),
    );
    LENIENT.decode(s).ok()
}

pub async fn api(
    broker: &Broker,
    method: &Method,
    backend_arg: &str,
    api_version: u32,
    authorization: Option<&str>,
    client: Option<IpAddr>,
) -> Reply {
    let client_ip = client.map(|ip| ip.to_string()).unwrap_or_default();
    // As the original: authentication comes before anything else.
    let credentials = decode_basic(authorization);
    let Some(user) = check_basic_auth(
        broker,
        credentials.as_ref().map(|(u, p)| (u.as_str(), p.as_str())),
        &client_ip,
    )
    .await
    else {
        return unauthorized();
    };
    if *method != Method::GET {
        return Reply::error(405);
    }
    let name = if backend_arg.is_empty() {
        broker.env.default_backend.as_str()
    } else {
        backend_arg.trim_end_matches('/')
    };
    let Some(backend) = Backend::from_name(name) else {
        return Reply::error(404);
    };
    if !broker.global.enable_uccs_output || !broker.backend_config(backend).enable {
        return Reply::error(404);
    }
    let Some(client) = client else {
        return Reply::error(404);
    };
    let urlbase = broker.global.my_uccs_url_base.trim_end_matches('/');
    let url = format!("{urlbase}/uccs/{backend_arg}/");
    let mut visible = Vec::new();
    if backend == Backend::Inifile {
        if broker.profiles.profiles.iter().any(|p| p.error.is_some()) {
            return Reply::error(500);
        }
        let include_primary = !broker.global.ignore_primary_group_memberships;
        let groups = std::cell::OnceCell::new();
        visible = broker
            .profiles
            .profiles
            .iter()
            .filter(|p| {
                p.acl.permits(&user, Some(client), |u| {
                    groups
                        .get_or_init(|| nameservice::user_groups(u, include_primary))
                        .clone()
                })
            })
            .collect();
    }
    match servers_document(visible, &user, &url, api_version, &mut rand::thread_rng()) {
        Some(doc) => Reply::ok(TEXT_PLAIN, doc),
        None => Reply::error(500),
    }
}

/// The UCCS document listing `visible` (the profiles `user` may see) as
/// remote desktop servers, a random host of each; None (500) when one of
/// them has no host.
pub fn servers_document<'a>(
    visible: impl IntoIterator<Item = &'a Profile>,
    user: &str,
    url: &str,
    api_version: u32,
    rng: &mut impl rand::Rng,
) -> Option<String> {
    let mut servers = Vec::new();
    let mut default_server = None;
    for p in visible {
        let text = |k: &str| match p.value(k) {
            Some(Value::Str(s)) => Some(s.clone()),
            _ => None,
        };
        let name = text("name").unwrap_or_else(|| p.id.clone());
        let username = match text("user") {
            Some(u) if u == "BROKER_USER" => user.to_owned(),
            Some(u) => u,
            None => String::new(),
        };
        let mut hosts = p.selection.hosts.clone();
        if p.selection.is_shadow {
            hosts.truncate(1);
        }
        let directrdp = matches!(p.value("directrdp"), Some(Value::Bool(true)));
        let s = |v: &str| Json::Str(v.to_owned());
        let server = if directrdp {
            let host = hosts.first()?;
            Json::Obj(vec![
                ("URL".into(), s(&format!("http://{host}/"))),
                ("Name".into(), s(&name)),
                ("Protocol".into(), s("rdp")),
                ("DomainRequired".into(), Json::Bool(true)),
                ("Username".into(), s(&username)),
                ("Password".into(), s("")),
                ("WindowsDomain".into(), s("LOCAL")),
            ])
        } else {
            let chosen = hosts.choose(rng).cloned()?;
            let port = p
                .selection
                .host_port
                .get(&chosen)
                .copied()
                .unwrap_or(match p.value("sshport") {
                    Some(Value::Int(port)) => *port,
                    _ => 22,
                });
            let host = p.selection.host_address.get(&chosen).cloned().unwrap_or(chosen);
            let mut command = text("command").unwrap_or_default();
            if DESKTOP_SESSIONS.contains(&command.to_uppercase().as_str()) {
                command = command.to_uppercase();
            }
            let mut fields = vec![
                ("URL".into(), s(&format!("http://{host}:{port}/"))),
                ("Name".into(), s(&name)),
                ("Protocol".into(), s("x2go")),
                ("Username".into(), s(&username)),
                ("Password".into(), s("")),
            ];
            if api_version == 4 {
                fields.push(("SessionTypeRequired".into(), Json::Bool(true)));
                fields.push(("SessionType".into(), s(&command)));
            } else {
                fields.push(("CommandRequired".into(), Json::Bool(true)));
                fields.push(("Command".into(), s(&command)));
            }
            Json::Obj(fields)
        };
        servers.push(server);
        default_server = Some(name);
    }
    let mut doc = vec![
        ("RemoteDesktopServers".into(), Json::List(servers)),
        ("AdditionalManagementServers".into(), Json::List(Vec::new())),
        ("URL".into(), Json::Str(format!("{}/", url.trim_end_matches('/')))),
        ("Name".into(), Json::Str("X2Go Session Broker".into())),
    ];
    if let Some(d) = default_server {
        doc.push(("DefaultServer".into(), Json::Str(d)));
    }
    Some(Json::Obj(doc).dump(2))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths() {
        assert!(is_ping_path("/uccs/"));
        assert!(is_ping_path("/uccs/inifile//"));
        assert!(!is_ping_path("/uccs/inifile/api/4"));
        assert_eq!(api_path("/uccs/inifile/api/4"), Some(("inifile", 4)));
        assert_eq!(api_path("/uccs/inifile/api/5/"), Some(("inifile", 5)));
        assert_eq!(api_path("/uccs//api/5"), Some(("", 5)));
        assert_eq!(api_path("/uccs/inifile/api/45"), None);
        assert_eq!(api_path("/uccs/inifile/api/x"), None);
    }

    #[test]
    fn basic_auth_header() {
        assert_eq!(
            decode_basic(Some("Basic eGJ0LWFsaWNlOkFsaWNlLXB3LTE=")),
            Some(("xbt-alice".into(), "Alice-pw-1".into()))
        );
        assert_eq!(decode_basic(Some("Bearer x")), None);
        assert_eq!(decode_basic(None), None);
        assert_eq!(base64_decode("YWJj"), Some(b"abc".to_vec()));
        assert_eq!(base64_decode("YWI="), Some(b"ab".to_vec()));
        assert_eq!(base64_decode("YWI"), Some(b"ab".to_vec()));
        assert_eq!(base64_decode("YWJ="), Some(b"ab".to_vec()));
        assert_eq!(base64_decode("!!!!"), None);
        assert_eq!(base64_decode("Y"), None);
    }

    #[test]
    fn utc_now_format() {
        let t = nix_time_now();
        assert!(t.len() == 26 || t.len() == 19, "{t}");
        assert_eq!(&t[4..5], "-");
        assert_eq!(&t[10..11], " ");
    }

    #[test]
    fn the_alive_ping_answers_get_and_head() {
        for m in [Method::GET, Method::HEAD] {
            assert_eq!(ping(&m).status, 200, "{m}");
        }
        assert_eq!(ping(&Method::POST).status, 405);
    }
}
