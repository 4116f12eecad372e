//! Several brokers, one state (docs/OPERATIONS.md, "High availability"):
//! two x2gobroker-daemons sharing a private redis-server, behind a real
//! haproxy (round robin), all on loopback.

use std::fs;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use x2gobroker_systemtests::helper::target_profile_dir;
use x2gobroker_systemtests::redis::RedisServer;
use x2gobroker_systemtests::support::{free_port, require_root, wait_until, TestDir};

/// The test user whose auto-login keys the brokers deploy and remove
/// (scripts/setup-test-env.sh creates it).
const KEY_USER: &str = "xrd-ha";

fn program(name: &str) -> PathBuf {
    target_profile_dir().join(name)
}

/// One POST; (status, body). Errors are connection failures.
fn post(port: u16, body: &str) -> std::io::Result<(u16, String)> {
    post_with_head(port, body).map(|(status, _, body)| (status, body))
}

/// One POST; (status, header lines, body).
fn post_with_head(port: u16, body: &str) -> std::io::Result<(u16, String, String)> {
    let mut s = TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(Duration::from_secs(30)))?;
    write!(
        s,
        "POST /plain/ HTTP/1.1\r\nHost: broker\r\nContent-Type: application/x-www-form-urlencoded\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )?;
    let mut answer = String::new();
    s.read_to_string(&mut answer)?;
    let status = answer
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("not HTTP: {answer:?}")))?;
    let (head, body) = answer.split_once("\r\n\r\n").unwrap_or((answer.as_str(), ""));
    Ok((status, head.to_owned(), body.to_owned()))
}

fn authid(body: &str) -> Option<String> {
    body.lines()
        .find_map(|l| l.strip_prefix("AUTHID:"))
        .map(str::to_owned)
}

struct Broker {
    child: Option<Child>,
    port: u16,
    control: PathBuf,
}

impl Broker {
    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill(); // SIGKILL
            let _ = c.wait();
        }
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        self.kill();
    }
}

struct Site {
    /// Config, logs and the agent wrapper; removed when the site goes.
    _dir: TestDir,
    redis: RedisServer,
    brokers: Vec<Broker>,
    haproxy: Child,
    port: u16,
    agent_log: PathBuf,
}

impl Drop for Site {
    fn drop(&mut self) {
        let _ = self.haproxy.kill();
        let _ = self.haproxy.wait();
    }
}

impl Site {
    fn start(tag: &str, persistent_redis: bool) -> Site {
        Self::start_with(tag, persistent_redis, "")
    }

    /// With `extra_global` lines in `[global]`.
    fn start_with(tag: &str, persistent_redis: bool, extra_global: &str) -> Site {
        require_root("the brokers deploy auto-login keys for a test user through the agent");
        let dir = TestDir::new(tag);
        let redis = if persistent_redis {
            RedisServer::start_persistent()
        } else {
            RedisServer::start()
        };
        // The host's own x2gobroker-agent for the keys (each call logged, to
        // count removals); other agent tasks are answered without sessions.
        let agent_log = dir.path("agent-calls.log");
        let agent = dir.path("agent");
        fs::write(
            &agent,
            format!(
                "#!/bin/sh\necho \"$2\" >> {}\ncase \"$2\" in\n  addauthkey|delauthkey) exec /usr/lib/x2go/x2gobroker-agent \"$@\";;\nesac\necho OK\n",
                agent_log.display()
            ),
        )
        .unwrap();
        fs::set_permissions(&agent, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
        let config = dir.path("x2gobroker.conf");
        fs::write(
            &config,
            format!(
                "[global]\ndefault-auth-mech = none\ndefault-portscan-x2goservers = false\n\
                 state-store = {}\nstate-store-key-prefix = {tag}:\n\
                 cookie-directory = {}\nkey-removal-directory = {}\n{extra_global}",
                redis.url(),
                dir.path("cookies-not-used").display(),
                dir.path("removals-not-used").display()
            ),
        )
        .unwrap();
        let profiles = dir.path("sessionprofiles.conf");
        fs::write(
            &profiles,
            "[p1]\nname = Auto\nhost = h1\nbroker-session-autologin = true\nbroker-agent-query-mode = LOCAL\n\
             acl-users-allow = xrd-ha\n\
             [p2]\nname = Plain\nhost = h2\n",
        )
        .unwrap();
        let brokers: Vec<Broker> = ["a", "b"]
            .iter()
            .map(|name| {
                let port = free_port();
                let control = dir.path(&format!("control-{name}.sock"));
                let log = fs::File::create(dir.path(&format!("broker-{name}.log"))).unwrap();
                let child = Command::new(program("x2gobroker-daemon"))
                    .arg("-C")
                    .arg(&config)
                    .args(["-b", &format!("127.0.0.1:{port}")])
                    .env("X2GOBROKER_SESSIONPROFILES", &profiles)
                    .env("X2GOBROKER_AGENT_CMD", &agent)
                    .env("X2GOBROKER_CONTROL_SOCKET", &control)
                    .env("X2GOBROKER_AUTHSERVICE_SOCKET", dir.path("no-helper.sock"))
                    .stdin(Stdio::null())
                    .stdout(log.try_clone().unwrap())
                    .stderr(log)
                    .spawn()
                    .expect("start x2gobroker-daemon");
                wait_until("broker answering", || {
                    post(port, "user=xrd-probe&password=x&task=testcon").is_ok_and(|(s, _)| s == 200)
                });
                Broker {
                    child: Some(child),
                    port,
                    control,
                }
            })
            .collect();
        let port = free_port();
        let haproxy_cfg = dir.path("haproxy.cfg");
        fs::write(
            &haproxy_cfg,
            format!(
                "global\n  maxconn 4096\ndefaults\n  mode http\n  timeout connect 1s\n  timeout client 60s\n  \
                 timeout server 60s\n  retries 3\n  option redispatch\nfrontend brokers\n  bind 127.0.0.1:{port}\n  \
                 default_backend brokers\nbackend brokers\n  balance roundrobin\n  \
                 server a 127.0.0.1:{} check inter 300ms fall 1 rise 1\n  \
                 server b 127.0.0.1:{} check inter 300ms fall 1 rise 1\n",
                brokers[0].port, brokers[1].port
            ),
        )
        .unwrap();
        let haproxy = Command::new("haproxy")
            .arg("-f")
            .arg(&haproxy_cfg)
            .arg("-db")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(fs::File::create(dir.path("haproxy.log")).unwrap())
            .spawn()
            .expect("start haproxy (scripts/setup-test-env.sh installs it)");
        wait_until("haproxy answering", || {
            post(port, "user=xrd-probe&password=x&task=testcon").is_ok_and(|(s, _)| s == 200)
        });
        Site {
            _dir: dir,
            redis,
            brokers,
            haproxy,
            port,
            agent_log,
        }
    }

    fn ctl_status(&self, broker: usize) -> String {
        let out = Command::new(program("x2gobroker-ctl"))
            .args(["status", "--only", "daemon"])
            .env("X2GOBROKER_CONTROL_SOCKET", &self.brokers[broker].control)
            .output()
            .expect("x2gobroker-ctl");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn agent_calls(&self, task: &str) -> usize {
        fs::read_to_string(&self.agent_log)
            .unwrap_or_default()
            .lines()
            .filter(|l| *l == task)
            .count()
    }
}

/// Presented cookies and how often each was granted.
#[derive(Default)]
struct Ledger {
    /// cookie → (its user, how often it was granted)
    granted: Mutex<std::collections::HashMap<String, (String, u32)>>,
    /// Cookies presented in a request the dying broker never answered
    /// (refused on retry: taken by the broker that died).
    cut_off: AtomicUsize,
}

impl Ledger {
    fn grant(&self, user: &str, cookie: &str) {
        let mut granted = self.granted.lock().unwrap();
        granted
            .entry(cookie.to_owned())
            .or_insert_with(|| (user.to_owned(), 0))
            .1 += 1;
    }
}

/// One client: a password login, then `steps` cookie requests, each with
/// the cookie the previous answer handed out. A request that fails (no
/// answer, 5xx) is sent again; a cookie refused after such a failure was
/// taken by a broker that died before answering: the client logs in again.
fn chain(port: u16, user: &str, steps: usize, ledger: &Ledger) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut cookie: Option<String> = None;
    let mut done = 0;
    let mut failed_before = false;
    while done < steps {
        if Instant::now() > deadline {
            return Err(format!("{user}: no progress within 60 s"));
        }
        let body = match &cookie {
            None => format!("user={user}&password=x&task=listsessions"),
            Some(c) => format!("user={user}&authid={c}&task=listsessions"),
        };
        match post(port, &body) {
            Ok((200, answer)) => {
                if let Some(c) = &cookie {
                    ledger.grant(user, c);
                    done += 1;
                }
                cookie = Some(authid(&answer).ok_or(format!("{user}: no AUTHID in {answer:?}"))?);
                failed_before = false;
            }
            Ok((401, _)) if failed_before && cookie.is_some() => {
                ledger.cut_off.fetch_add(1, Ordering::Relaxed);
                cookie = None;
                failed_before = false;
            }
            Ok((status, _)) if status >= 500 => failed_before = true,
            Err(_) => failed_before = true,
            Ok((status, answer)) => return Err(format!("{user}: {status} {answer:?}")),
        }
    }
    Ok(())
}

fn run_clients(port: u16, clients: usize, steps: usize, ledger: &Arc<Ledger>) -> Vec<String> {
    let threads: Vec<_> = (0..clients)
        .map(|i| {
            let ledger = ledger.clone();
            std::thread::Builder::new()
                .stack_size(128 * 1024)
                .spawn(move || chain(port, &format!("xrd-u{i}"), steps, &ledger))
                .expect("thread")
        })
        .collect();
    threads
        .into_iter()
        .filter_map(|t| t.join().expect("client thread").err())
        .collect()
}

fn assert_each_granted_once(ledger: &Ledger, expected: usize) {
    let granted = ledger.granted.lock().unwrap();
    assert_eq!(
        granted.len(),
        expected,
        "every chain step used a cookie of its own"
    );
    let twice: Vec<_> = granted.iter().filter(|(_, (_, n))| *n != 1).collect();
    assert!(twice.is_empty(), "cookies granted more than once: {twice:?}");
}

#[test]
fn a_cookie_from_one_broker_is_taken_once_at_the_other() {
    let site = Site::start("xrd-once", false);
    let (a, b) = (site.brokers[0].port, site.brokers[1].port);
    let (status, body) = post(a, "user=xrd-one&password=x&task=listsessions").unwrap();
    assert_eq!(status, 200);
    let c1 = authid(&body).unwrap();
    let (status, body) = post(b, &format!("user=xrd-one&authid={c1}&task=listsessions")).unwrap();
    assert_eq!(status, 200, "{body}");
    let c2 = authid(&body).unwrap();
    assert_ne!(c1, c2);
    for port in [a, b] {
        let replay = post(port, &format!("user=xrd-one&authid={c1}&task=listsessions")).unwrap();
        assert_eq!(replay.0, 401, "a replayed cookie is refused at every broker");
    }
    // The next cookie, kept by B, is good at A.
    let (status, _) = post(a, &format!("user=xrd-one&authid={c2}&task=listsessions")).unwrap();
    assert_eq!(status, 200);
    let status = site.ctl_status(1);
    assert!(
        status.contains(&format!(
            "state store: redis {} (key prefix \"xrd-once:\")",
            site.redis.url()
        )),
        "{status}"
    );
    assert!(status.contains("state store health: ok"), "{status}");
}

#[test]
fn a_thousand_concurrent_cookie_chains_through_haproxy() {
    let site = Site::start("xrd-load", false);
    let ledger = Arc::new(Ledger::default());
    let errors = run_clients(site.port, 1000, 2, &ledger);
    assert!(
        errors.is_empty(),
        "{} clients failed: {:?}",
        errors.len(),
        &errors[..errors.len().min(5)]
    );
    assert_eq!(
        ledger.cut_off.load(Ordering::Relaxed),
        0,
        "no broker died: no cookie is lost"
    );
    assert_each_granted_once(&ledger, 2000);
    // Each client holds exactly its last cookie: none lost, none left over.
    let keys = site.redis.cli(&[
        "EVAL",
        "return #redis.call('KEYS', ARGV[1])",
        "0",
        "xrd-load:cookie:*",
    ]);
    assert_eq!(keys, "1000");
    // Used cookies are refused on replay (a sample, through both brokers).
    let sample: Vec<_> = ledger
        .granted
        .lock()
        .unwrap()
        .iter()
        .take(20)
        .map(|(c, (u, _))| (c.clone(), u.clone()))
        .collect();
    for (i, (c, user)) in sample.iter().enumerate() {
        let port = site.brokers[i % 2].port;
        let (status, _) = post(port, &format!("user={user}&authid={c}&task=listsessions")).unwrap();
        assert_eq!(status, 401);
    }
}

#[test]
fn killing_a_broker_loses_no_cookie_and_its_key_removals_are_done_by_the_other() {
    let mut site = Site::start("xrd-kill", false);
    // Broker A deploys an auto-login key; its removal is due in 20 s.
    let keys_file = PathBuf::from(format!("/home/{KEY_USER}/.x2go/authorized_keys"));
    let before = fs::read_to_string(&keys_file).unwrap_or_default();
    let (status, body) = post(
        site.brokers[0].port,
        &format!("user={KEY_USER}&password=x&task=selectsession&sid=p1"),
    )
    .unwrap();
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("PRIVATE KEY-----"), "{body}");
    assert_eq!(site.agent_calls("addauthkey"), 1);
    // This test's key: the new line (lines left by anything else stay out
    // of the check).
    let deployed: Vec<String> = fs::read_to_string(&keys_file)
        .unwrap()
        .lines()
        .filter(|l| !before.lines().any(|b| b == *l))
        .map(str::to_owned)
        .collect();
    assert_eq!(deployed.len(), 1, "{deployed:?}");
    let deployed = deployed[0].clone();
    assert!(deployed.ends_with(&format!("{KEY_USER}@127.0.0.1")), "{deployed}");
    assert_eq!(site.redis.cli(&["ZCARD", "xrd-kill:removals"]), "1");

    // Clients run through haproxy; A is killed while they do.
    let ledger = Arc::new(Ledger::default());
    let running = {
        let (port, ledger) = (site.port, ledger.clone());
        std::thread::spawn(move || run_clients(port, 200, 10, &ledger))
    };
    wait_until("clients under way", || {
        ledger.granted.lock().unwrap().len() >= 300
    });
    site.brokers[0].kill();
    let errors = running.join().unwrap();
    assert!(
        errors.is_empty(),
        "clients that retried got through B: {errors:?}"
    );
    assert_each_granted_once(&ledger, 2000);
    // Only a request in flight at A when it died can have used up a cookie
    // without an answer (the client logged in again).
    let cut_off = ledger.cut_off.load(Ordering::Relaxed);
    assert!(cut_off <= 200, "{cut_off} cookies cut off");
    eprintln!("cookies cut off by the kill: {cut_off}");

    // B carries out A's removal, once.
    wait_until("B removes A's key", || {
        !fs::read_to_string(&keys_file)
            .unwrap_or_default()
            .lines()
            .any(|l| l == deployed)
    });
    wait_until("the removal is finished", || {
        site.redis.cli(&["ZCARD", "xrd-kill:removals"]) == "0"
    });
    assert_eq!(site.agent_calls("delauthkey"), 1, "removed exactly once");
}

#[test]
fn a_redis_restart_gives_errors_then_recovery_and_loses_nothing() {
    let mut site = Site::start("xrd-restart", true);
    let port = site.port;
    let (_, body) = post(port, "user=xrd-keep&password=x&task=listsessions").unwrap();
    let kept = authid(&body).unwrap();

    // Background clients keep going over the outage.
    let stop = Arc::new(AtomicBool::new(false));
    let statuses = Arc::new(Mutex::new(Vec::new()));
    let background = {
        let (stop, statuses) = (stop.clone(), statuses.clone());
        std::thread::spawn(move || {
            let mut cookie: Option<String> = None;
            while !stop.load(Ordering::Relaxed) {
                let body = match &cookie {
                    None => "user=xrd-bg&password=x&task=listsessions".to_owned(),
                    Some(c) => format!("user=xrd-bg&authid={c}&task=listsessions"),
                };
                if let Ok((status, answer)) = post(port, &body) {
                    let mut statuses = statuses.lock().unwrap();
                    // A request cut by the outage between taking its cookie
                    // and keeping the next may have used the cookie up: the
                    // client logs in again (counted apart).
                    let status = if status == 401 && statuses.last() == Some(&503) {
                        1401
                    } else {
                        status
                    };
                    statuses.push(status);
                    match status {
                        200 => cookie = authid(&answer),
                        1401 => cookie = None,
                        _ => {}
                    }
                }
                std::thread::sleep(Duration::from_millis(5));
            }
        })
    };
    wait_until("background clients served", || {
        statuses.lock().unwrap().contains(&200)
    });

    site.redis.stop_gracefully();
    let started = Instant::now();
    let (status, _) = post(port, &format!("user=xrd-keep&authid={kept}&task=listsessions")).unwrap();
    assert_eq!(status, 503, "the state is unreachable: a clear error");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "answered without a long wait"
    );
    let (status, _) = post(port, "user=xrd-new&password=x&task=listsessions").unwrap();
    assert_eq!(status, 503);
    let ctl = site.ctl_status(0);
    assert!(
        ctl.contains("state store health: the state store is unavailable"),
        "{ctl}"
    );
    let seen_before = statuses.lock().unwrap().len();
    wait_until("background clients see the outage", || {
        statuses.lock().unwrap()[seen_before..].contains(&503)
    });

    site.redis.start_again();
    // Back by itself; the cookie issued before the outage is still valid, once.
    for broker in &site.brokers {
        wait_until("service back at each broker", || {
            post(broker.port, "user=xrd-new&password=x&task=listsessions").is_ok_and(|(s, _)| s == 200)
        });
    }
    let (status, _) = post(port, &format!("user=xrd-keep&authid={kept}&task=listsessions")).unwrap();
    assert_eq!(status, 200, "a cookie survives the outage");
    let (status, _) = post(port, &format!("user=xrd-keep&authid={kept}&task=listsessions")).unwrap();
    assert_eq!(status, 401, "and is still taken once");
    let seen_after = statuses.lock().unwrap().len();
    wait_until("background clients served again", || {
        statuses.lock().unwrap()[seen_after..].contains(&200)
    });
    stop.store(true, Ordering::Relaxed);
    background.join().unwrap();
    let statuses = statuses.lock().unwrap();
    let unexpected: Vec<_> = statuses
        .iter()
        .filter(|s| !matches!(s, 200 | 503 | 1401))
        .collect();
    assert!(
        unexpected.is_empty(),
        "only answers or 503 during the outage: {unexpected:?}"
    );
    let relogins = statuses.iter().filter(|s| **s == 1401).count();
    assert!(
        relogins <= 1,
        "at most the one request cut by the stop: {relogins}"
    );
    assert!(site.ctl_status(1).contains("state store health: ok"));
}

#[test]
fn ssh_mode_reports_an_unreachable_store_and_exits_non_zero() {
    use x2gobroker_systemtests::helper::ALICE;
    use x2gobroker_systemtests::ssh::SshBroker;
    let mut redis = RedisServer::start();
    let config = format!(
        "[global]\nstate-store = {}\nstate-store-key-prefix = xrd-ssh:\n[broker_inifile]\nenable = true\n",
        redis.url()
    );
    let fx = SshBroker::start(
        "xrd-ssh-store",
        &config,
        x2gobroker_systemtests::support::PROFILES,
    );
    let first = fx.run(Some(ALICE.0), &["--task", "listsessions"], &[]);
    let cookie = first.cookie().unwrap_or_else(|| panic!("{first:?}"));
    assert_eq!(
        redis.cli(&["EXISTS", &format!("xrd-ssh:cookie:{}:{cookie}", ALICE.0)]),
        "1",
        "the SSH-mode worker keeps its cookie in Redis"
    );
    redis.stop();
    let out = fx.run(
        Some(ALICE.0),
        &["--task", "listsessions", "--authid", &cookie],
        &[],
    );
    assert_ne!(out.code, 0, "{out:?}");
    assert!(out.stdout.is_empty(), "{out:?}");
    assert!(out.stderr.contains("the state store is unavailable"), "{out:?}");
}

#[test]
fn selectsession_with_the_store_down_answers_503_and_deploys_no_key() {
    // No password or cookie required: the access check needs no state, so
    // the store is first needed to keep the auto-login key's removal.
    // (No key is deployed while the store is up: the other tests of this
    // user check that its keys file holds none of theirs.)
    let mut site = Site::start_with("xrd-ha-down", false, "require-password = false\n");
    let broker = site.brokers[0].port;
    site.redis.stop();
    let (status, head, _) =
        post_with_head(broker, &format!("user={KEY_USER}&task=selectsession&sid=p1")).unwrap();
    assert_eq!(status, 503, "the state store is down: try again later, not 500");
    assert!(
        head.lines().any(|l| l.eq_ignore_ascii_case("retry-after: 5")),
        "{head}"
    );
    assert_eq!(
        site.agent_calls("addauthkey"),
        0,
        "no key deployed whose removal cannot be kept"
    );
    // Requests that need no state still work.
    let (status, _) = post(broker, &format!("user={KEY_USER}&task=listsessions")).unwrap();
    assert_eq!(status, 200);
}
