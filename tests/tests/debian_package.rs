//! The Debian package (debian/, built by scripts/build-deb.sh from the
//! workspace's programs): lintian finds nothing but its justified overrides;
//! installed with apt into a booted systemd (x2gobroker_systemtests::live:
//! private namespaces on an overlay of this machine's root, where the
//! original broker's packages are installed) it replaces the original by its
//! Conflicts/Replaces, takes over its configuration files, creates the
//! accounts and the authid secret, enables and starts the sockets, and the
//! daemon answers a PAM-authenticated listsessions; purged, it leaves nothing
//! behind but the accounts (Debian policy keeps system accounts). Runs as
//! root.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use x2gobroker_systemtests::live::{built_programs_dir, text, Install, LiveSystem};
use x2gobroker_systemtests::support::{require_root, TestDir};

const PACKAGE: &str = "x2gobroker-rs";
const SOCKETS: [&str; 2] = ["x2gobroker-authhelper.socket", "x2gobroker-daemon.socket"];
/// The original's packages that the package conflicts with and replaces.
const ORIGINALS: [&str; 6] = [
    "x2gobroker-loadchecker",
    "x2gobroker",
    "x2gobroker-daemon",
    "x2gobroker-authservice",
    "x2gobroker-ssh",
    "x2gobroker-common",
];
const CONFFILES: [&str; 6] = [
    "/etc/default/x2gobroker-authhelper",
    "/etc/default/x2gobroker-daemon",
    "/etc/pam.d/x2gobroker",
    "/etc/x2go/broker/defaults.conf",
    "/etc/x2go/broker/x2gobroker-sessionprofiles.conf",
    "/etc/x2go/x2gobroker.conf",
];

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// scripts/build-deb.sh with the workspace's (debug) programs; the .deb.
fn build_package(out: &Path) -> PathBuf {
    let output = Command::new("bash")
        .arg(repo().join("scripts/build-deb.sh"))
        .arg("--bin-dir")
        .arg(built_programs_dir())
        .arg("--out")
        .arg(out)
        // Debug builds carry hundreds of MB of DWARF; no -dbgsym package.
        .env("DEB_BUILD_OPTIONS", "noautodbgsym")
        .output()
        .expect("run build-deb.sh");
    assert!(output.status.success(), "build-deb.sh failed:\n{}", text(&output));
    let debs: Vec<PathBuf> = std::fs::read_dir(out)
        .expect("out dir")
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            let name = p.file_name().unwrap_or_default().to_string_lossy();
            name.starts_with(&format!("{PACKAGE}_")) && name.ends_with(".deb")
        })
        .collect();
    assert_eq!(debs.len(), 1, "expected one {PACKAGE} .deb: {debs:?}");
    debs[0].clone()
}

fn dpkg_deb(args: &[&str], deb: &Path) -> String {
    let output = Command::new("dpkg-deb")
        .args(args)
        .arg(deb)
        .output()
        .expect("dpkg-deb");
    assert!(output.status.success(), "dpkg-deb {args:?}: {}", text(&output));
    String::from_utf8_lossy(&output.stdout).to_string()
}

fn check_contents(deb: &Path) {
    let conffiles: BTreeSet<String> = Command::new("dpkg-deb")
        .arg("--info")
        .arg(deb)
        .arg("conffiles")
        .output()
        .map(|out| String::from_utf8_lossy(&out.stdout).to_string())
        .expect("dpkg-deb --info DEB conffiles")
        .lines()
        .map(|l| l.trim().to_string())
        .filter(|l| !l.is_empty())
        .collect();
    let expected: BTreeSet<String> = CONFFILES.iter().map(|s| s.to_string()).collect();
    assert_eq!(conffiles, expected, "conffiles");

    let listing = dpkg_deb(&["--contents"], deb);
    for path in [
        "./usr/bin/x2gobroker",
        "./usr/bin/x2gobroker-daemon",
        "./usr/bin/x2gobroker-ssh",
        "./usr/sbin/x2gobroker-authhelper",
        "./lib/systemd/system/x2gobroker-authhelper.socket",
        "./lib/systemd/system/x2gobroker-authhelper.service",
        "./lib/systemd/system/x2gobroker-daemon.socket",
        "./lib/systemd/system/x2gobroker-daemon.service",
        "./usr/lib/sysusers.d/x2gobroker.conf",
        "./usr/lib/tmpfiles.d/x2gobroker.conf",
        "./usr/share/man/man1/x2gobroker.1.gz",
        "./usr/share/man/man1/x2gobroker-daemon.1.gz",
        "./usr/share/man/man1/x2gobroker-ssh.1.gz",
        "./usr/share/bash-completion/completions/x2gobroker",
        "./usr/share/zsh/vendor-completions/_x2gobroker",
        "./usr/share/fish/vendor_completions.d/x2gobroker.fish",
        "./usr/share/doc/x2gobroker-rs/copyright",
    ] {
        assert!(
            listing.lines().any(|l| l.ends_with(&format!(" {path}"))),
            "{path} is not in the package:\n{listing}"
        );
    }
    // Never shipped: it would be the same secret on every machine.
    assert!(!listing.contains("x2gobroker.authid"), "{listing}");
}

fn check_lintian(deb: &Path) {
    let output = Command::new("lintian")
        .args(["--fail-on", "error,warning", "--info"])
        .arg(deb)
        .output()
        .expect("run lintian (scripts/setup-test-env.sh installs it)");
    let report = text(&output);
    let findings: Vec<&str> = report
        .lines()
        .filter(|l| l.starts_with("E:") || l.starts_with("W:") || l.starts_with("I:"))
        .collect();
    assert!(
        output.status.success() && findings.is_empty(),
        "lintian:\n{report}"
    );
}

/// dpkg's two-letter state (`ii`, `rc`, ...), empty when dpkg has none.
fn package_status(live: &LiveSystem, package: &str) -> String {
    let out = live.exec(&["dpkg-query", "-W", "-f=${db:Status-Abbrev}", package]);
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Unpacked or installed (anything but not-installed or config-files).
fn is_installed(status: &str) -> bool {
    !matches!(status.chars().nth(1), None | Some('n') | Some('c'))
}

/// Every path below /etc, /usr and /var named like the broker.
fn broker_paths(live: &LiveSystem) -> BTreeSet<String> {
    let out = live.exec(&["find", "/etc", "/usr", "/var", "-xdev", "-name", "*x2gobroker*"]);
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect()
}

fn apt(live: &LiveSystem, args: &[&str]) -> String {
    let mut full = vec![
        "env",
        "DEBIAN_FRONTEND=noninteractive",
        "apt-get",
        "-y",
        "-o",
        "Dpkg::Options::=--force-confdef",
        "-o",
        "Dpkg::Options::=--force-confold",
    ];
    full.extend_from_slice(args);
    let out = live.exec(&full);
    assert!(out.status.success(), "apt-get {args:?}:\n{}", text(&out));
    text(&out)
}

#[test]
fn package_is_lintian_clean_installs_serves_pam_and_purges_cleanly() {
    require_root("dpkg-buildpackage, namespaces, apt");
    let out = TestDir::new("deb");
    let deb = build_package(out.root());
    check_contents(&deb);
    check_lintian(&deb);

    let live = LiveSystem::boot_with(Install::Nothing, &[out.root()]);
    // The test machine's policy-rc.d (scripts/setup-test-env.sh) forbids
    // starting services; an ordinary system has none.
    live.stdout(&["rm", "-f", "/usr/sbin/policy-rc.d"]);
    for original in ["x2gobroker-daemon", "x2gobroker-common"] {
        assert_eq!(
            package_status(&live, original),
            "ii",
            "the original broker must be installed to test the hand-over (scripts/setup-test-env.sh)"
        );
    }
    let before = broker_paths(&live);

    // apt resolves the Conflicts by removing the original's packages.
    let deb_arg = deb.display().to_string();
    let log = apt(&live, &["install", &deb_arg]);
    for original in ORIGINALS {
        let status = package_status(&live, original);
        assert!(
            !is_installed(&status),
            "{original} still installed ({status}):\n{log}"
        );
    }
    assert_eq!(package_status(&live, PACKAGE), "ii");
    // The configuration files are ours now (Replaces).
    let owner = live.stdout(&["dpkg-query", "-S", "/etc/x2go/x2gobroker.conf"]);
    assert!(owner.starts_with(&format!("{PACKAGE}:")), "{owner}");

    // postinst: accounts, directories, the authid secret, the sockets.
    let stat = |path: &str| live.stdout(&["stat", "-c", "%a %U %G", path]);
    live.stdout(&["getent", "passwd", "x2gobroker"]);
    assert_eq!(stat("/etc/x2go/broker/x2gobroker.authid"), "640 root x2gobroker");
    assert_eq!(stat("/var/lib/x2gobroker/cookies"), "700 x2gobroker x2gobroker");
    for socket in SOCKETS {
        assert_eq!(live.stdout(&["systemctl", "is-enabled", socket]), "enabled");
        assert_eq!(live.stdout(&["systemctl", "is-active", socket]), "active");
    }
    assert_eq!(
        stat("/run/x2gobroker/x2gobroker-authservice.socket"),
        "660 root x2gobroker-users"
    );

    // A PAM-authenticated listsessions through both socket-activated services.
    let body = live.plain_listsessions("xbt-alice", "Alice-pw-1");
    assert!(
        body.ends_with("\n200") && body.contains("Access granted"),
        "answer:\n{body}\njournal:\n{}{}",
        live.journal("x2gobroker-daemon.service"),
        live.journal("x2gobroker-authhelper.service")
    );
    let wrong = live.exec(&[
        "curl",
        "-s",
        "-m",
        "60",
        "-d",
        "user=xbt-alice",
        "-d",
        "password=wrong",
        "-d",
        "task=listsessions",
        "http://127.0.0.1:8080/plain/",
    ]);
    assert!(
        !String::from_utf8_lossy(&wrong.stdout).contains("Access granted"),
        "a wrong password was accepted"
    );

    // Purge: every file of the package, the secret, the state and the
    // systemd enablement go; nothing named like the broker appears that was
    // not there before (the original's removed-but-not-purged conffiles
    // were).
    let files = live.stdout(&["dpkg-query", "-L", PACKAGE]);
    apt(&live, &["purge", PACKAGE]);
    assert!(!is_installed(&package_status(&live, PACKAGE)));
    assert!(!package_status(&live, PACKAGE).ends_with('c'), "conffiles left");
    for socket in SOCKETS {
        let active = live.exec(&["systemctl", "is-active", socket]);
        assert_ne!(
            String::from_utf8_lossy(&active.stdout).trim(),
            "active",
            "{socket}"
        );
    }
    let exists = |path: &str| live.exec(&["test", "-e", path]).status.success();
    for path in files.lines().filter(|p| p.contains("x2gobroker")) {
        assert!(!exists(path), "{path} is left after purge");
    }
    for path in [
        "/etc/x2go/broker/x2gobroker.authid",
        "/var/lib/x2gobroker",
        "/run/x2gobroker",
        "/etc/systemd/system/sockets.target.wants/x2gobroker-daemon.socket",
        "/etc/systemd/system/sockets.target.wants/x2gobroker-authhelper.socket",
    ] {
        assert!(!exists(path), "{path} is left after purge");
    }
    let after = broker_paths(&live);
    let new: Vec<&String> = after.difference(&before).collect();
    assert!(new.is_empty(), "left behind after purge: {new:?}");
    // Debian policy keeps system accounts (files they own may remain).
    live.stdout(&["getent", "passwd", "x2gobroker"]);
}
