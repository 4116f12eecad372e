//! One test suite, run against both stores: the files store in a temporary
//! directory and the Redis store on a private redis-server (TCP and Unix
//! socket).

use super::*;
use crate::core::cookies::{now, CookieRecord};
use crate::core::key_removals::{AgentAddress, Removal};
use x2gobroker_systemtests::redis::RedisServer;

const LIMITS: CookieLimits = CookieLimits {
    lifetime: 3600,
    per_user: 4,
};

fn record(ip: &str, issued: f64) -> CookieRecord {
    CookieRecord {
        client_ip: ip.into(),
        issued,
    }
}

fn removal(due: u64, n: u32) -> Removal {
    Removal {
        due,
        attempts: n,
        agent: AgentAddress::Local {
            command: "/usr/lib/x2go/x2gobroker-agent".into(),
        },
        user: "xrd-alice".into(),
        keys_file: "%h/.x2go/authorized_keys".into(),
        line: crate::core::autologin::authorized_line(
            "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIJSZ7MdQgSMO/vhrqv7CR+v6PfgOa4veOBWC7hnpVnxc",
            "xrd-alice",
            "127.0.0.1",
        ),
    }
}

/// Everything both stores must do alike.
async fn store_suite(store: Store) {
    store.health().await.unwrap();

    // Issued, taken once, unknown after.
    let c = store
        .issue_cookie("xrd-alice", &record("127.0.0.1", now()), LIMITS)
        .await
        .unwrap();
    assert_eq!(store.cookie_count("xrd-alice").await.unwrap(), 1);
    assert_eq!(
        store.take_cookie("xrd-bob", &c, None).await.unwrap(),
        Taken::Unknown
    );
    assert_eq!(store.take_cookie("../x", &c, None).await.unwrap(), Taken::Unknown);
    assert!(matches!(
        store.take_cookie("xrd-alice", &c, None).await.unwrap(),
        Taken::Taken(r) if r.client_ip == "127.0.0.1"
    ));
    assert_eq!(
        store.take_cookie("xrd-alice", &c, None).await.unwrap(),
        Taken::Unknown
    );
    assert_eq!(store.cookie_count("xrd-alice").await.unwrap(), 0);
    assert!(store
        .put_cookie("a/b", &c, &record("1.2.3.4", now()), LIMITS)
        .await
        .is_err());

    // verify-ip: another address is refused and the cookie stays its owner's.
    let c = store
        .issue_cookie("xrd-alice", &record("127.0.0.1", now()), LIMITS)
        .await
        .unwrap();
    assert!(matches!(
        store
            .take_cookie("xrd-alice", &c, Some("127.0.0.9"))
            .await
            .unwrap(),
        Taken::OtherAddress(_)
    ));
    assert!(matches!(
        store
            .take_cookie("xrd-alice", &c, Some("127.0.0.1"))
            .await
            .unwrap(),
        Taken::Taken(_)
    ));

    // Racing takers: exactly one wins.
    for _ in 0..5 {
        let c = store
            .issue_cookie("xrd-race", &record("127.0.0.1", now()), LIMITS)
            .await
            .unwrap();
        let takers: Vec<_> = (0..16)
            .map(|_| {
                let (store, c) = (store.clone(), c.clone());
                tokio::spawn(async move { store.take_cookie("xrd-race", &c, None).await })
            })
            .collect();
        let mut won = 0;
        for t in takers {
            if let Taken::Taken(_) = t.await.unwrap().unwrap() {
                won += 1;
            }
        }
        assert_eq!(won, 1, "a cookie is taken exactly once");
    }

    // The per-user cap removes the oldest (by authentication time).
    let base = now();
    let mut issued = Vec::new();
    for i in 0..6 {
        let r = record("127.0.0.1", base - 100.0 + i as f64);
        issued.push(store.issue_cookie("xrd-many", &r, LIMITS).await.unwrap());
    }
    assert_eq!(store.cookie_count("xrd-many").await.unwrap(), 4);
    for (i, c) in issued.iter().enumerate() {
        let kept = !matches!(
            store.take_cookie("xrd-many", c, None).await.unwrap(),
            Taken::Unknown
        );
        assert_eq!(kept, i >= 2, "cookie {i}: the two oldest are gone");
    }
    // Other users are not affected by one user's cap.
    assert_eq!(store.cookie_count("xrd-alice").await.unwrap(), 0);

    // Expiry follows auth-timeout from the authentication time.
    let short = CookieLimits {
        lifetime: 60,
        per_user: 4,
    };
    let old = store
        .issue_cookie("xrd-old", &record("127.0.0.1", now() - 59.0), short)
        .await
        .unwrap();
    let fresh = store
        .issue_cookie("xrd-old", &record("127.0.0.1", now()), short)
        .await
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        store.sweep_cookies(short.lifetime).await.unwrap();
        if store.cookie_count("xrd-old").await.unwrap() == 1 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the expired cookie is removed"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(
        store.take_cookie("xrd-old", &old, None).await.unwrap(),
        Taken::Unknown
    );
    assert!(matches!(
        store.take_cookie("xrd-old", &fresh, None).await.unwrap(),
        Taken::Taken(_)
    ));

    // Key removals: due ones are claimed once, pending until finished.
    let t = crate::core::key_removals::now();
    store.schedule_removal(&removal(t - 10, 0)).await.unwrap();
    store.schedule_removal(&removal(t - 5, 1)).await.unwrap();
    store.schedule_removal(&removal(t + 100, 2)).await.unwrap();
    assert_eq!(store.pending_removals().await.unwrap(), 3);
    let mut due = store.claim_due_removals(t).await.unwrap();
    due.sort_by_key(|(_, r)| r.attempts);
    assert_eq!(
        due.iter().map(|(_, r)| r.clone()).collect::<Vec<_>>(),
        vec![removal(t - 10, 0), removal(t - 5, 1)]
    );
    assert!(
        store.claim_due_removals(t).await.unwrap().is_empty(),
        "claimed once"
    );
    assert_eq!(store.pending_removals().await.unwrap(), 3);
    let (finished, _) = &due[0];
    store.finish_removal(finished).await.unwrap();
    assert_eq!(store.pending_removals().await.unwrap(), 2);
    // The runner of the second one died: it is claimed again after its lease.
    store.release_stale_claims();
    let later = t + CLAIM_LEASE.as_secs() + 1;
    let again = store.claim_due_removals(later).await.unwrap();
    let mut attempts: Vec<u32> = again.iter().map(|(_, r)| r.attempts).collect();
    attempts.sort();
    assert_eq!(
        attempts,
        vec![1, 2],
        "the dead runner's claim and the now due one"
    );
    // A retry is due again at its new time.
    for (claim, mut r) in again {
        r.due = later + 30;
        store.retry_removal(&claim, &r).await.unwrap();
    }
    assert!(store.claim_due_removals(later).await.unwrap().is_empty());
    for (claim, _) in store.claim_due_removals(later + 30).await.unwrap() {
        store.finish_removal(&claim).await.unwrap();
    }
    assert_eq!(store.pending_removals().await.unwrap(), 0);

    // Racing runners: every removal is claimed by exactly one.
    let t = crate::core::key_removals::now();
    for i in 0..40 {
        store.schedule_removal(&removal(t - 1, i)).await.unwrap();
    }
    let runners: Vec<_> = (0..4)
        .map(|_| {
            let store = store.clone();
            tokio::spawn(async move { store.claim_due_removals(t).await.unwrap() })
        })
        .collect();
    let mut seen = Vec::new();
    for r in runners {
        for (claim, removal) in r.await.unwrap() {
            seen.push(removal.attempts);
            store.finish_removal(&claim).await.unwrap();
        }
    }
    seen.sort();
    assert_eq!(seen, (0..40).collect::<Vec<_>>());
    assert_eq!(store.pending_removals().await.unwrap(), 0);
}

fn redis_store(url: String, prefix: &str) -> Store {
    let config = StoreConfig {
        url,
        key_prefix: prefix.into(),
        password_file: None,
        tls_ca_file: None,
    };
    Store::open(
        &config,
        std::path::Path::new("/nonexistent"),
        std::path::Path::new("/nonexistent"),
    )
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn files_store_passes_the_suite() {
    let dir = tempfile::tempdir().unwrap();
    let config = StoreConfig {
        url: FILES.into(),
        key_prefix: String::new(),
        password_file: None,
        tls_ca_file: None,
    };
    let store = Store::open(&config, &dir.path().join("cookies"), &dir.path().join("removals")).unwrap();
    store_suite(store).await;
    // Nothing but the store's own files is left behind.
    assert_eq!(std::fs::read_dir(dir.path().join("cookies")).unwrap().count(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_store_passes_the_suite() {
    let server = RedisServer::start();
    store_suite(redis_store(server.url(), "xrd-tcp:")).await;
    store_suite(redis_store(server.unix_url(), "xrd-unix:")).await;
    // An ACL user limited to its prefix, its password in a file (as
    // docs/OPERATIONS.md recommends); a wrong password is refused.
    let acl = "x2gobroker:* +@read +@write +@scripting +@transaction +ping -@dangerous";
    let mut setuser = vec!["ACL", "SETUSER", "xrd-acl", "on", ">xrd-pw-1", "~xrd-acl:*"];
    setuser.extend(acl.split(' ').skip(1));
    assert_eq!(server.cli(&setuser), "OK");
    let password_file = server.dir.path("password");
    std::fs::write(&password_file, "xrd-pw-1\n").unwrap();
    let config = |password_file: &std::path::Path| StoreConfig {
        url: format!("redis://xrd-acl@127.0.0.1:{}/0", server.port),
        key_prefix: "xrd-acl:".into(),
        password_file: Some(password_file.to_owned()),
        tls_ca_file: None,
    };
    let nowhere = std::path::Path::new("/nonexistent");
    store_suite(Store::open(&config(&password_file), nowhere, nowhere).unwrap()).await;
    let wrong = server.dir.path("wrong");
    std::fs::write(&wrong, "nope\n").unwrap();
    let refused = Store::open(&config(&wrong), nowhere, nowhere).unwrap();
    assert!(matches!(refused.health().await, Err(StateError::Unavailable(_))));
    // A cookie's TTL is what remains of auth-timeout.
    let store = redis_store(server.url(), "xrd-ttl:");
    let c = store
        .issue_cookie("xrd-alice", &record("127.0.0.1", now() - 600.0), LIMITS)
        .await
        .unwrap();
    let ttl: i64 = server
        .cli(&["TTL", &format!("xrd-ttl:cookie:xrd-alice:{c}")])
        .parse()
        .unwrap();
    assert!((2990..=3000).contains(&ttl), "TTL {ttl}");
    // Nothing is left but that cookie and its index.
    assert_eq!(server.cli(&["DBSIZE"]), "2");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_store_over_tls_passes_the_suite() {
    let server = RedisServer::start_tls();
    let ca = server.tls_cert().expect("a TLS server").to_owned();
    let nowhere = std::path::Path::new("/nonexistent");
    let config = |url: String, tls_ca_file: Option<std::path::PathBuf>| StoreConfig {
        url,
        key_prefix: "xrd-tls:".into(),
        password_file: None,
        tls_ca_file,
    };
    let tls_url = format!("rediss://127.0.0.1:{}/0", server.port);
    store_suite(Store::open(&config(tls_url.clone(), Some(ca)), nowhere, nowhere).unwrap()).await;
    // The server's certificate is checked: the system's CAs do not know it,
    // and another certificate as the CA does not vouch for it.
    let untrusted = Store::open(&config(tls_url.clone(), None), nowhere, nowhere).unwrap();
    assert!(matches!(
        untrusted.health().await,
        Err(StateError::Unavailable(_))
    ));
    let other_dir = server.dir.path("other");
    std::fs::create_dir_all(&other_dir).unwrap();
    let other = x2gobroker_systemtests::support::make_cert(
        &other_dir,
        &[
            "subjectAltName=IP:127.0.0.1",
            "basicConstraints=critical,CA:FALSE",
        ],
    )
    .unwrap()
    .cert;
    let wrong_ca = Store::open(&config(tls_url, Some(other)), nowhere, nowhere).unwrap();
    assert!(matches!(wrong_ca.health().await, Err(StateError::Unavailable(_))));
    // Plain TCP to the TLS port is no connection either.
    let plain = Store::open(
        &config(format!("redis://127.0.0.1:{}/0", server.port), None),
        nowhere,
        nowhere,
    )
    .unwrap();
    assert!(matches!(plain.health().await, Err(StateError::Unavailable(_))));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_outage_fails_clearly_and_recovers() {
    let mut server = RedisServer::start();
    let store = redis_store(server.url(), "xrd-outage:");
    let c = store
        .issue_cookie("xrd-alice", &record("127.0.0.1", now()), LIMITS)
        .await
        .unwrap();
    server.stop();
    let started = std::time::Instant::now();
    assert!(matches!(
        store.take_cookie("xrd-alice", &c, None).await,
        Err(StateError::Unavailable(_))
    ));
    assert!(matches!(store.health().await, Err(StateError::Unavailable(_))));
    assert!(matches!(
        store.schedule_removal(&removal(1, 0)).await,
        Err(StateError::Unavailable(_))
    ));
    assert!(
        started.elapsed() < std::time::Duration::from_secs(5),
        "fails fast"
    );
    server.restart();
    // Back by itself (the restarted server is empty: no persistence here).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while store.health().await.is_err() {
        assert!(std::time::Instant::now() < deadline, "the store reconnects");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let c = store
        .issue_cookie("xrd-alice", &record("127.0.0.1", now()), LIMITS)
        .await
        .unwrap();
    assert!(matches!(
        store.take_cookie("xrd-alice", &c, None).await.unwrap(),
        Taken::Taken(_)
    ));
}

#[test]
fn passwords_are_not_shown() {
    use super::redis::without_password;
    assert_eq!(without_password("redis://u:secret@h:1/0"), "redis://u:***@h:1/0");
    assert_eq!(without_password("redis://:secret@h/0"), "redis://:***@h/0");
    assert_eq!(
        without_password("redis+unix:///run/r.sock"),
        "redis+unix:///run/r.sock"
    );
    let store = redis_store("redis://u:hunter2@127.0.0.1:1/0".into(), "p:");
    assert!(!format!("{store:?} {}", store.describe()).contains("hunter2"));
}
