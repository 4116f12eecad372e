//! Request-level tests through the real warp filter (no network): routing,
//! methods, malformed input, access checks and cookies, outputs.

use super::*;
use crate::core::broker::Broker;
use crate::core::config::Environment;
use crate::core::ini::Ini;
use std::collections::HashMap;
use std::path::Path;

struct Fixture {
    dir: tempfile::TempDir,
    shared: Shared,
}

fn fixture(config: &str, profiles: &str, debug: bool) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let config = config.replace("${dir}", &dir.path().display().to_string());
    std::fs::write(dir.path().join("x2gobroker.conf"), config).unwrap();
    std::fs::write(dir.path().join("profiles.conf"), profiles).unwrap();
    let mut vars = HashMap::new();
    vars.insert(
        "X2GOBROKER_CONFIG".to_owned(),
        dir.path().join("x2gobroker.conf").display().to_string(),
    );
    vars.insert(
        "X2GOBROKER_SESSIONPROFILES".to_owned(),
        dir.path().join("profiles.conf").display().to_string(),
    );
    vars.insert(
        "X2GOBROKER_AUTHSERVICE_SOCKET".to_owned(),
        dir.path().join("no-helper.sock").display().to_string(),
    );
    if debug {
        vars.insert("X2GOBROKER_DEBUG".to_owned(), "1".to_owned());
    }
    let env = Environment::resolve("x2gobroker-daemon", &vars, &Ini::default(), true);
    let broker = Broker::load(&env).unwrap();
    Fixture {
        shared: Shared::new(broker),
        dir,
    }
}

const OPEN: &str = "[global]\nrequire-password = false\ndefault-portscan-x2goservers = false\n";
const NONE_AUTH: &str = "[global]\ncookie-directory = ${dir}/cookies\nmy-cookie-file = ${dir}/authid\n\
    default-portscan-x2goservers = false\n[broker_inifile]\nauth-mech = none\n";
const PROFILES: &str =
    "[p1]\nname = One\nhost = srv1 (10.0.0.1:2222)\n\n[p2]\nname = Two\nacl-users-allow = bob\n";

async fn post(f: &Fixture, path: &str, body: &str, from: &str) -> (u16, String, String) {
    let resp = warp::test::request()
        .method("POST")
        .path(path)
        .remote_addr(from.parse().unwrap())
        .body(body)
        .reply(&routes(f.shared.clone()))
        .await;
    let ctype = resp
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap_or("").to_owned())
        .unwrap_or_default();
    (
        resp.status().as_u16(),
        ctype,
        String::from_utf8_lossy(resp.body()).into_owned(),
    )
}

const HERE: &str = "127.0.0.1:40000";

fn authid(body: &str) -> String {
    body.lines()
        .find_map(|l| l.strip_prefix("AUTHID:"))
        .expect("an AUTHID line")
        .to_owned()
}

#[tokio::test]
async fn plain_listing_and_selection() {
    let f = fixture(OPEN, PROFILES, false);
    let (status, ctype, body) = post(&f, "/plain/", "user=alice&task=listsessions", HERE).await;
    assert_eq!((status, ctype.as_str()), (200, TEXT_PLAIN));
    assert!(
        body.starts_with("Access granted\nSTART_USER_SESSIONS\n\n[p1]\nname=One\nhost=srv1\n"),
        "{body}"
    );
    assert!(!body.contains("[p2]"));
    assert!(body.ends_with("\n\nEND_USER_SESSIONS\n"));
    let (_, _, body) = post(&f, "/plain/inifile", "user=alice&task=selectsession&sid=p1", HERE).await;
    assert_eq!(body, "Access granted\nSERVER:10.0.0.1:2222\n");
    // selectsession applies the profile's ACLs (ARCHITECTURE.md D: selectsession ACLs).
    let (_, _, body) = post(&f, "/plain/", "user=alice&task=selectsession&sid=p2", HERE).await;
    assert_eq!(body, "Access granted\nSERVER:no-server-available:22\n");
    let (_, _, body) = post(&f, "/plain/", "user=bob&task=selectsession&sid=p2", HERE).await;
    assert_eq!(body, "Access granted\nSERVER:localhost:22\n");
    let (status, _, body) = post(&f, "/plain/", "task=testcon", HERE).await;
    assert_eq!((status, body.as_str()), (200, "OK"));
}

#[tokio::test]
async fn json_output() {
    let f = fixture(OPEN, PROFILES, false);
    let (status, ctype, body) = post(&f, "/json/", "user=bob&task=selectsession&profile-id=p1", HERE).await;
    assert_eq!((status, ctype.as_str()), (200, TEXT_JSON));
    assert_eq!(
        body,
        "{\n    \"auth-status\": \"Access granted\",\n    \"selected_session\": {\n        \"port\": \"2222\",\n        \
         \"server\": \"10.0.0.1\"\n    },\n    \"task\": \"selectsession\"\n}"
    );
    let (_, _, body) = post(&f, "/json/", "user=nobody&task=listsessions", HERE).await;
    assert!(body.contains("\"task\": \"listprofiles\""), "{body}");
    assert!(body.contains("\"p1\": {\n            \"applications\""), "{body}");
    let (status, _, body) = post(&f, "/json/", "task=testcon", HERE).await;
    assert_eq!((status, body.as_str()), (200, ""));
}

#[tokio::test]
async fn routing_methods_and_backends() {
    let f = fixture(OPEN, PROFILES, false);
    for (path, status) in [
        ("/plain/ldap", 404),
        ("/plain/base", 404),
        ("/plain/..%2Fx", 404),
        ("/plain/zeroconf", 404),
        ("/json/inifile/extra", 200),
        ("/elsewhere", 404),
        ("/plain", 404),
        ("/", 405),
        ("/uccs/inifile/api/4", 405),
    ] {
        assert_eq!(post(&f, path, "task=testcon", HERE).await.0, status, "{path}");
    }
    async fn get(path: &str, f: &Fixture) -> warp::http::Response<Bytes> {
        warp::test::request()
            .method("GET")
            .path(path)
            .remote_addr(HERE.parse().unwrap())
            .reply(&routes(f.shared.clone()))
            .await
    }
    // Debug mode is off unless asked for: GET is refused.
    assert_eq!(get("/plain/?task=testcon", &f).await.status(), 405);
    assert_eq!(get("/", &f).await.status(), 200);
    let dbg = fixture(OPEN, PROFILES, true);
    let resp = get("/plain/?task=testcon", &dbg).await;
    assert_eq!((resp.status().as_u16(), resp.body().as_ref()), (200, &b"OK"[..]));
}

#[tokio::test]
async fn malformed_requests_get_4xx() {
    let f = fixture(OPEN, PROFILES, false);
    assert_eq!(post(&f, "/plain/", "user=%zz&task=testcon", HERE).await.0, 400);
    assert_eq!(post(&f, "/plain/", "user=%ff&task=testcon", HERE).await.0, 400);
    let huge = format!("task=testcon&user={}", "a".repeat(MAX_BODY));
    assert_eq!(post(&f, "/plain/", &huge, HERE).await.0, 413);
    let many = vec!["x=1"; 100].join("&");
    assert_eq!(post(&f, "/plain/", &many, HERE).await.0, 400);
    // Still serving.
    assert_eq!(post(&f, "/plain/", "task=testcon", HERE).await.0, 200);
}

#[tokio::test]
async fn path_escapes_are_decoded_or_refused() {
    let f = fixture(OPEN, PROFILES, false);
    // A sign is not a hex digit: `%+f` and `%-1` are malformed, as is a cut-off escape.
    for path in ["/plain/%+f", "/plain/%-1", "/plain/%2", "/json/x%", "/plain/%ff"] {
        assert_eq!(post(&f, path, "task=testcon", HERE).await.0, 400, "{path}");
    }
    // Well-formed escapes still route: %70 is "p", %2F "/", %69 "i".
    for path in ["/%70lain%2F", "/plain/%69nifile", "/json/%69%6E%69%66%69%6C%65/"] {
        assert_eq!(post(&f, path, "task=testcon", HERE).await.0, 200, "{path}");
    }
}

#[tokio::test]
async fn password_then_cookie_chain() {
    let f = fixture(NONE_AUTH, PROFILES, false);
    assert_eq!(
        post(
            &f,
            "/plain/",
            "user=check-credentials&password=FALSE&task=x",
            HERE
        )
        .await
        .0,
        401
    );
    let (status, _, body) = post(&f, "/plain/", "user=alice&password=x&task=listsessions", HERE).await;
    assert_eq!(status, 200);
    let c1 = authid(&body);
    let file = f.dir.path().join("cookies").join(format!("alice_{c1}"));
    assert!(file.is_file());
    // The cookie is consumed and the next one handed out.
    let (status, _, body) = post(
        &f,
        "/plain/",
        &format!("user=alice&authid={c1}&task=testcon"),
        HERE,
    )
    .await;
    assert_eq!((status, body.as_str()), (200, "OK"));
    assert!(!file.exists());
    let (_, _, body) = post(&f, "/plain/", &format!("user=alice&authid={c1}&task=x"), HERE).await;
    assert!(body.is_empty() || !body.contains("Access granted"));
    // testcon's answer shows no cookie, so none is kept (the original
    // stores one nobody ever sees): the directory is empty.
    assert_eq!(
        std::fs::read_dir(f.dir.path().join("cookies")).unwrap().count(),
        0
    );
    // testcon with a password keeps none either.
    let (status, _, body) = post(&f, "/plain/", "user=alice&password=x&task=testcon", HERE).await;
    assert_eq!((status, body.as_str()), (200, "OK"));
    assert_eq!(
        std::fs::read_dir(f.dir.path().join("cookies")).unwrap().count(),
        0
    );
    let (_, _, body) = post(&f, "/plain/", "user=alice&password=x&task=listsessions", HERE).await;
    let c2 = authid(&body);
    // Another user cannot use it; a path in the user name is refused.
    assert_eq!(
        post(&f, "/plain/", &format!("user=bob&authid={c2}&task=x"), HERE)
            .await
            .0,
        401
    );
    assert_eq!(
        post(
            &f,
            "/plain/",
            &format!("user=../cookies/alice&authid={c2}&task=x"),
            HERE
        )
        .await
        .0,
        401
    );
    // ARCHITECTURE.md differences: a request from another address is refused without
    // destroying the rightful owner's cookie.
    assert_eq!(
        post(
            &f,
            "/plain/",
            &format!("user=alice&authid={c2}&task=x"),
            "10.9.9.9:1"
        )
        .await
        .0,
        401
    );
    let (status, _, body) = post(&f, "/json/", &format!("user=alice&authid={c2}&task=x"), HERE).await;
    assert_eq!(status, 200);
    assert!(body.contains("\"next-authid\": \""), "{body}");
}

#[tokio::test]
async fn static_cookie_and_timeouts() {
    // A cookie older than auth-timeout is refused and removed.
    let fx = fixture(NONE_AUTH, PROFILES, false);
    let store = crate::core::cookies::CookieStore::new(&fx.dir.path().join("cookies"));
    store.ensure_dir().unwrap();
    let old = store
        .issue(
            "alice",
            &crate::core::cookies::CookieRecord {
                client_ip: "127.0.0.1".into(),
                issued: 1.0,
            },
        )
        .unwrap();
    assert_eq!(
        post(&fx, "/plain/", &format!("user=alice&authid={old}&task=x"), HERE)
            .await
            .0,
        401
    );
    assert!(store.read("alice", &old).is_none(), "expired cookie is removed");

    // use-static-cookie: the same cookie comes back.
    let cfg = NONE_AUTH.replace("[global]\n", "[global]\nuse-static-cookie = true\n");
    let fx = fixture(&cfg, PROFILES, false);
    let (_, _, body) = post(&fx, "/plain/", "user=alice&password=x&task=x", HERE).await;
    let c = authid(&body);
    let (_, _, body) = post(&fx, "/plain/", &format!("user=alice&authid={c}&task=x"), HERE).await;
    assert_eq!(authid(&body), c);

    // require-cookie without require-password: the pre-shared cookie.
    let cfg = "[global]\nrequire-password = false\nrequire-cookie = true\nmy-cookie = s3cret\n";
    let fx = fixture(cfg, PROFILES, false);
    assert_eq!(post(&fx, "/plain/", "task=testcon", HERE).await.0, 401);
    assert_eq!(
        post(&fx, "/plain/", "authid=wrong&task=testcon", HERE).await.0,
        401
    );
    let (status, _, body) = post(&fx, "/plain/", "authid=s3cret&task=x", HERE).await;
    assert_eq!((status, body.as_str()), (200, "AUTHID:s3cret\nAccess granted\n"));

    // Both required (ARCHITECTURE.md differences): the cookie and the password.
    let cfg = NONE_AUTH.replace(
        "[global]\n",
        "[global]\nrequire-cookie = true\nmy-cookie = s3cret\n",
    );
    let cfg = cfg.replace("auth-mech = none", "auth-mech = pam");
    let fx = fixture(&cfg, PROFILES, false);
    assert_eq!(
        post(&fx, "/plain/", "user=alice&password=x&task=x", HERE).await.0,
        401
    );
    // PAM cannot succeed here (no helper): the static cookie alone is not enough.
    assert_eq!(
        post(&fx, "/plain/", "user=alice&password=x&authid=s3cret&task=x", HERE)
            .await
            .0,
        401
    );
}

#[test]
fn broken_profiles_file_names_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let profiles = dir.path().join("p.conf");
    std::fs::write(&profiles, "[ok]\nname = x\nthis line is wrong\n").unwrap();
    let mut vars = HashMap::new();
    vars.insert(
        "X2GOBROKER_CONFIG".to_owned(),
        dir.path().join("none.conf").display().to_string(),
    );
    vars.insert(
        "X2GOBROKER_SESSIONPROFILES".to_owned(),
        profiles.display().to_string(),
    );
    let env = Environment::resolve("x2gobroker", &vars, &Ini::default(), true);
    let e = Broker::load(&env).unwrap_err().to_string();
    assert!(e.contains(&format!("{}, line 3", profiles.display())), "{e}");
    assert!(Path::new(&profiles).exists());
}

#[test]
fn reload_keeps_the_last_good_configuration() {
    let f = fixture(OPEN, PROFILES, false);
    let env = f.shared.current().env.clone();
    assert_eq!(f.shared.current().profiles.profiles.len(), 2);
    std::fs::write(f.dir.path().join("profiles.conf"), "[only]\n").unwrap();
    assert!(crate::daemon::reload::reload(&f.shared, &env, None));
    assert_eq!(f.shared.current().profiles.profiles.len(), 1);
    std::fs::write(f.dir.path().join("profiles.conf"), "[broken\nx\n").unwrap();
    assert!(!crate::daemon::reload::reload(&f.shared, &env, None));
    assert!(f.shared.current().profiles.get("only").is_some());
}
