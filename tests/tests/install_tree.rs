//! scripts/install.sh into a temporary DESTDIR, with stub programs named like
//! the real ones (so this test depends on no other crate's build): the tree
//! it lays out (path, type, mode, owner:group, link target) must match
//! tests/install-tree.expected; a second run changes nothing; existing
//! configuration is never overwritten; the configure step creates the
//! authid secret once. Runs as root.
//!
//! After an intended change of the layout, regenerate the expected listing
//! with `X2GOBROKER_BLESS=1 cargo test -p x2gobroker-systemtests --test install_tree`
//! and review the diff.

use nix::unistd::{Gid, Group, Uid, User};
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use x2gobroker_systemtests::support::{require_root as require, TestDir};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn expected_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("install-tree.expected")
}

/// `x2gobroker` supports the documentation contract (two man pages, three
/// completion flavours); the other two refuse the flags like clap does for
/// an unknown argument, so both installer paths are exercised.
const STUB_WITH_DOCS: &str = r#"#!/bin/sh
case "$1" in
  --generate-man)
    printf '.TH X2GOBROKER 1\n' > "$2/x2gobroker.1"
    printf '.TH X2GOBROKER-SSH 1\n' > "$2/x2gobroker-ssh.1" ;;
  --generate-completions)
    echo 'complete -F _x2gobroker x2gobroker' > "$2/x2gobroker.bash"
    echo '#compdef x2gobroker' > "$2/_x2gobroker"
    echo 'complete -c x2gobroker' > "$2/x2gobroker.fish" ;;
  *) exit 2 ;;
esac
"#;
const STUB_WITHOUT_DOCS: &str = "#!/bin/sh\necho \"error: unexpected argument '$1' found\" >&2\nexit 2\n";

fn stub_bin_dir() -> TestDir {
    let dir = TestDir::new("bin");
    for (name, script) in [
        ("x2gobroker", STUB_WITH_DOCS),
        ("x2gobroker-daemon", STUB_WITHOUT_DOCS),
        ("x2gobroker-authhelper", STUB_WITHOUT_DOCS),
    ] {
        let path = dir.root().join(name);
        fs::write(&path, script).expect("stub");
        fs::set_permissions(&path, fs::Permissions::from_mode(0o755)).expect("stub mode");
    }
    dir
}

fn require_root() {
    require("ownership is part of the listing");
}

fn install(bin_dir: &Path, destdir: &Path, extra: &[&str]) -> Output {
    let output = Command::new("bash")
        .arg(repo().join("scripts/install.sh"))
        .arg("--bin-dir")
        .arg(bin_dir)
        .args(extra)
        .env("DESTDIR", destdir)
        .env_remove("PREFIX")
        .output()
        .expect("run install.sh");
    output
}

fn install_ok(bin_dir: &Path, destdir: &Path, extra: &[&str]) -> String {
    let output = install(bin_dir, destdir, extra);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(output.status.success(), "install.sh failed:\n{text}");
    text
}

fn name_of_uid(uid: u32) -> String {
    match User::from_uid(Uid::from_raw(uid)) {
        Ok(Some(user)) => user.name,
        _ => uid.to_string(),
    }
}

fn name_of_gid(gid: u32) -> String {
    match Group::from_gid(Gid::from_raw(gid)) {
        Ok(Some(group)) => group.name,
        _ => gid.to_string(),
    }
}

/// One line per entry below `root`, sorted by path:
/// `TYPE MODE OWNER:GROUP PATH[ -> TARGET]`.
fn listing(root: &Path) -> Vec<String> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<String>) {
        let mut entries: Vec<_> = fs::read_dir(dir).expect("read_dir").flatten().collect();
        entries.sort_by_key(|e| e.file_name());
        for entry in entries {
            let path = entry.path();
            let meta = fs::symlink_metadata(&path).expect("lstat");
            let rel = path.strip_prefix(root).expect("below root").display().to_string();
            let kind = if meta.file_type().is_symlink() {
                "l"
            } else if meta.is_dir() {
                "d"
            } else if meta.is_file() {
                "f"
            } else {
                "?"
            };
            let owner = format!("{}:{}", name_of_uid(meta.uid()), name_of_gid(meta.gid()));
            let mut line = format!("{kind} {:04o} {owner} /{rel}", meta.mode() & 0o7777);
            if kind == "l" {
                let target = fs::read_link(&path).expect("readlink");
                line = format!("{line} -> {}", target.display());
            }
            out.push(line);
            if kind == "d" {
                walk(root, &path, out);
            }
        }
    }
    let mut out = Vec::new();
    walk(root, root, &mut out);
    out
}

fn expected_listing() -> Vec<String> {
    let text = fs::read_to_string(expected_path()).expect("tests/install-tree.expected");
    text.lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .map(str::to_string)
        .collect()
}

fn assert_listing(actual: &[String], expected: &[String]) {
    if actual == expected {
        return;
    }
    let missing: Vec<_> = expected.iter().filter(|l| !actual.contains(l)).collect();
    let extra: Vec<_> = actual.iter().filter(|l| !expected.contains(l)).collect();
    panic!(
        "installed tree differs from tests/install-tree.expected\nmissing:\n  {}\nunexpected:\n  {}\n\
         (X2GOBROKER_BLESS=1 rewrites the expected listing)",
        missing
            .iter()
            .map(|s| s.as_str())
            .collect::<Vec<_>>()
            .join("\n  "),
        extra.iter().map(|s| s.as_str()).collect::<Vec<_>>().join("\n  ")
    );
}

const EXPECTED_HEADER: &str = "\
# The tree scripts/install.sh lays out in an empty DESTDIR (PREFIX=/usr), as
# root, with stub programs of which only x2gobroker supports --generate-man
# and --generate-completions. TYPE MODE OWNER:GROUP PATH[ -> TARGET].
# Checked by tests/tests/install_tree.rs; X2GOBROKER_BLESS=1 regenerates it.
";

#[test]
fn destdir_install_matches_the_expected_tree_and_is_idempotent() {
    require_root();
    let bin = stub_bin_dir();
    let dest = TestDir::new("dest");
    let log = install_ok(bin.root(), dest.root(), &[]);
    let first = listing(dest.root());

    if std::env::var_os("X2GOBROKER_BLESS").is_some() {
        let body = first.join("\n");
        fs::write(expected_path(), format!("{EXPECTED_HEADER}{body}\n")).expect("write expected");
    }
    assert_listing(&first, &expected_listing());

    // Programs without the documentation flags are named, not silently skipped.
    assert!(
        log.contains("x2gobroker-daemon does not support --generate-man"),
        "{log}"
    );
    assert!(
        log.contains("x2gobroker-authhelper does not support --generate-completions"),
        "{log}"
    );
    // A DESTDIR install leaves the target configuration to the postinst.
    assert!(log.contains("systemd-sysusers"), "{log}");
    assert!(!dest.root().join("etc/x2go/broker/x2gobroker.authid").exists());

    let contents_before = fs::read(dest.root().join("etc/x2go/x2gobroker.conf")).expect("conf");
    install_ok(bin.root(), dest.root(), &[]);
    assert_eq!(listing(dest.root()), first, "a second run changed the tree");
    assert_eq!(
        fs::read(dest.root().join("etc/x2go/x2gobroker.conf")).expect("conf"),
        contents_before
    );
}

#[test]
fn installed_files_are_the_repository_files() {
    require_root();
    let bin = stub_bin_dir();
    let dest = TestDir::new("same");
    install_ok(bin.root(), dest.root(), &[]);
    for (src, dst) in [
        ("etc/x2gobroker.conf", "etc/x2go/x2gobroker.conf"),
        ("etc/broker/defaults.conf", "etc/x2go/broker/defaults.conf"),
        (
            "etc/broker/x2gobroker-sessionprofiles.conf",
            "etc/x2go/broker/x2gobroker-sessionprofiles.conf",
        ),
        ("etc/pam.d/x2gobroker", "etc/pam.d/x2gobroker"),
        ("etc/default/x2gobroker-daemon", "etc/default/x2gobroker-daemon"),
        (
            "etc/default/x2gobroker-authhelper",
            "etc/default/x2gobroker-authhelper",
        ),
        (
            "systemd/x2gobroker-daemon.service",
            "usr/lib/systemd/system/x2gobroker-daemon.service",
        ),
        (
            "systemd/x2gobroker-authhelper.socket",
            "usr/lib/systemd/system/x2gobroker-authhelper.socket",
        ),
        (
            "systemd/sysusers.d/x2gobroker.conf",
            "usr/lib/sysusers.d/x2gobroker.conf",
        ),
        (
            "systemd/tmpfiles.d/x2gobroker.conf",
            "usr/lib/tmpfiles.d/x2gobroker.conf",
        ),
    ] {
        let want = fs::read(repo().join(src)).expect(src);
        let got = fs::read(dest.root().join(dst)).expect(dst);
        assert!(want == got, "{dst} differs from {src}");
    }
    let stub = fs::read(bin.root().join("x2gobroker-authhelper")).expect("stub");
    assert_eq!(
        fs::read(dest.root().join("usr/sbin/x2gobroker-authhelper")).expect("helper"),
        stub
    );
    let man = fs::read_to_string(dest.root().join("usr/share/man/man1/x2gobroker-ssh.1")).expect("man");
    assert!(man.starts_with(".TH X2GOBROKER-SSH 1"));
}

#[test]
fn existing_configuration_is_kept_and_the_new_one_goes_to_dist() {
    require_root();
    let bin = stub_bin_dir();
    let dest = TestDir::new("keep");
    let conf = dest.root().join("etc/x2go/x2gobroker.conf");
    let pam = dest.root().join("etc/pam.d/x2gobroker");
    fs::create_dir_all(conf.parent().expect("parent")).expect("etc/x2go");
    fs::create_dir_all(pam.parent().expect("parent")).expect("etc/pam.d");
    let admins = "[global]\nrequire-cookie = true\n";
    fs::write(&conf, admins).expect("admin conf");
    fs::set_permissions(&conf, fs::Permissions::from_mode(0o600)).expect("admin mode");
    // Identical to ours: no .dist for it.
    fs::copy(repo().join("etc/pam.d/x2gobroker"), &pam).expect("pam");

    let log = install_ok(bin.root(), dest.root(), &[]);
    assert_eq!(fs::read_to_string(&conf).expect("conf"), admins);
    assert_eq!(
        fs::metadata(&conf).expect("conf").mode() & 0o7777,
        0o600,
        "admin's mode changed"
    );
    let dist = fs::read(dest.root().join("etc/x2go/x2gobroker.conf.dist")).expect(".dist");
    assert_eq!(dist, fs::read(repo().join("etc/x2gobroker.conf")).expect("ours"));
    assert!(log.contains("kept existing /etc/x2go/x2gobroker.conf"), "{log}");
    assert!(!dest.root().join("etc/pam.d/x2gobroker.dist").exists());

    // Again: still the admin's file, still one .dist.
    install_ok(bin.root(), dest.root(), &[]);
    assert_eq!(fs::read_to_string(&conf).expect("conf"), admins);
    let dists: Vec<_> = listing(dest.root())
        .into_iter()
        .filter(|l| l.contains(".dist"))
        .collect();
    assert_eq!(
        dists,
        vec!["f 0644 root:root /etc/x2go/x2gobroker.conf.dist".to_string()]
    );
}

#[test]
fn prefix_moves_programs_and_units_but_not_configuration() {
    require_root();
    let bin = stub_bin_dir();
    let dest = TestDir::new("prefix");
    install_ok(bin.root(), dest.root(), &["--prefix", "/usr/local"]);
    let d = dest.root();
    assert!(d.join("usr/local/bin/x2gobroker-daemon").is_file());
    assert!(d.join("usr/local/sbin/x2gobroker-authhelper").is_file());
    assert!(d.join("etc/x2go/x2gobroker.conf").is_file());
    assert!(!d.join("usr/bin").exists());
    let unit = fs::read_to_string(d.join("usr/local/lib/systemd/system/x2gobroker-authhelper.service"))
        .expect("unit");
    assert!(unit.contains("\nExecStart=/usr/local/sbin/x2gobroker-authhelper $AUTHHELPER_OPTS\n"));
    let unit =
        fs::read_to_string(d.join("usr/local/lib/systemd/system/x2gobroker-daemon.service")).expect("unit");
    assert!(unit.contains("\nExecStart=/usr/local/bin/x2gobroker-daemon\n"));
}

#[test]
fn missing_programs_fail_the_install_clearly() {
    require_root();
    let bin = stub_bin_dir();
    fs::remove_file(bin.root().join("x2gobroker-daemon")).expect("rm stub");
    let dest = TestDir::new("missing");
    let output = install(bin.root(), dest.root(), &[]);
    assert!(!output.status.success());
    let err = String::from_utf8_lossy(&output.stderr);
    assert!(
        err.contains("missing in") && err.contains("x2gobroker-daemon"),
        "{err}"
    );
    assert!(
        !dest.root().join("usr").exists(),
        "nothing is installed when a program is missing"
    );
}

/// `--configure-only` on a DESTDIR (an image being prepared): accounts in
/// the image's own databases, directories from tmpfiles.d, and the authid
/// secret — created once, owned by the image's x2gobroker group, never
/// replaced.
#[test]
fn configure_creates_accounts_directories_and_the_authid_once() {
    require_root();
    let bin = stub_bin_dir();
    let dest = TestDir::new("configure");
    install_ok(bin.root(), dest.root(), &[]);
    install_ok(bin.root(), dest.root(), &["--configure-only"]);

    let group = fs::read_to_string(dest.root().join("etc/group")).expect("image group file");
    let gid: u32 = group
        .lines()
        .find_map(|l| l.strip_prefix("x2gobroker:x:"))
        .and_then(|rest| rest.split(':').next())
        .and_then(|g| g.parse().ok())
        .expect("x2gobroker group in the image");
    let authid = dest.root().join("etc/x2go/broker/x2gobroker.authid");
    let meta = fs::metadata(&authid).expect("authid created");
    assert_eq!(meta.mode() & 0o7777, 0o640);
    assert_eq!((meta.uid(), meta.gid()), (0, gid));
    let secret = fs::read_to_string(&authid).expect("authid");
    let id = secret
        .lines()
        .find(|l| !l.starts_with('#') && !l.is_empty())
        .expect("an id line");
    let uuid =
        regex::Regex::new(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$").expect("re");
    assert!(uuid.is_match(id), "not a UUID: {id:?}");

    let cookies = fs::metadata(dest.root().join("var/lib/x2gobroker/cookies")).expect("cookie dir");
    assert_eq!(cookies.mode() & 0o7777, 0o700);
    assert_eq!(cookies.gid(), gid);

    // Never replaced, not even by a full install plus configure.
    install_ok(bin.root(), dest.root(), &[]);
    install_ok(bin.root(), dest.root(), &["--configure-only"]);
    assert_eq!(fs::read_to_string(&authid).expect("authid"), secret);
    // A second, separate configuration gets a different secret.
    let other = TestDir::new("configure2");
    install_ok(bin.root(), other.root(), &[]);
    install_ok(bin.root(), other.root(), &["--configure-only"]);
    let other_secret =
        fs::read_to_string(other.root().join("etc/x2go/broker/x2gobroker.authid")).expect("2nd");
    assert_ne!(other_secret, secret);
}
