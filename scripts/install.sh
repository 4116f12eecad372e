#!/usr/bin/env bash
# Installs the X2Go Session Broker (Rust) into FHS locations.
#
#   scripts/install.sh [--bin-dir DIR] [--prefix PREFIX] [--destdir DESTDIR]
#                      [--unit-dir DIR] [--no-configure] [--configure-only]
#                      [--force]
#
# Environment: PREFIX (default /usr), DESTDIR (default empty) and UNITDIR
# (default PREFIX/lib/systemd/system) work like the options. The Debian
# package passes --unit-dir /lib/systemd/system: Debian 12's debhelper and
# its rules for files moving between / and /usr want units there. Safe to run again: programs, units and other vendor files are
# replaced; configuration files under /etc that already exist are never
# touched (a differing new version is put next to them as FILE.dist).
#
# Without DESTDIR (a live install, as root) the installer also configures the
# system: accounts (systemd-sysusers), directories (systemd-tmpfiles), a
# random /etc/x2go/broker/x2gobroker.authid if there is none, and a systemd
# reload. With DESTDIR (building a package) it only lays out files, all
# owned by root; the package's postinst runs `install.sh --configure-only`
# or the equivalent commands listed in docs/OPERATIONS.md.
#
# A live install refuses to run while the original (Python) broker's
# packages are installed: they own the same program and unit names, and their
# tmpfiles.d entry for /run/x2gobroker (0770 x2gobroker:x2gobroker) would win
# over ours and lock SSH-mode users out of the helper socket. Remove them
# first (apt-get remove x2gobroker x2gobroker-daemon x2gobroker-authservice
# x2gobroker-ssh x2gobroker-loadchecker; their configuration under /etc
# stays), or pass --force.
#
# Man pages and shell completions come from the programs themselves:
#   PROGRAM --generate-man DIR          writes NAME.SECTION roff files to DIR
#   PROGRAM --generate-completions DIR  writes NAME.bash, _NAME, NAME.fish
# Both must exit 0 on success. A program that does not support them (non-zero
# exit, or nothing written) is skipped with a note.
set -euo pipefail
# Directories that install -D creates on the way get 0755, whatever the
# caller's umask.
umask 022

usage() {
  sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'
}

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bin_dir="$repo_root/target/release"
prefix="${PREFIX:-/usr}"
destdir="${DESTDIR:-}"
unitdir="${UNITDIR:-}"
configure=auto
files=yes
force=no

while [ $# -gt 0 ]; do
  case "$1" in
    --bin-dir) bin_dir="${2:?--bin-dir needs a directory}"; shift 2 ;;
    --bin-dir=*) bin_dir="${1#*=}"; shift ;;
    --prefix) prefix="${2:?--prefix needs a directory}"; shift 2 ;;
    --prefix=*) prefix="${1#*=}"; shift ;;
    --destdir) destdir="${2:?--destdir needs a directory}"; shift 2 ;;
    --destdir=*) destdir="${1#*=}"; shift ;;
    --unit-dir) unitdir="${2:?--unit-dir needs a directory}"; shift 2 ;;
    --unit-dir=*) unitdir="${1#*=}"; shift ;;
    --no-configure) configure=no; shift ;;
    --configure-only) configure=yes; files=no; shift ;;
    --force) force=yes; shift ;;
    -h|--help) usage; exit 0 ;;
    *) echo "install.sh: unknown argument: $1 (see --help)" >&2; exit 2 ;;
  esac
done

case "$prefix" in
  /*) prefix="${prefix%/}" ;;
  *) echo "install.sh: PREFIX must be an absolute path: $prefix" >&2; exit 2 ;;
esac
[ -n "$prefix" ] || prefix=/usr
destdir="${destdir%/}"
if [ "$configure" = auto ]; then
  if [ -z "$destdir" ]; then configure=yes; else configure=no; fi
fi

# Configuration always lives in /etc: the programs look for it there.
sysconfdir=/etc
bindir="$prefix/bin"
sbindir="$prefix/sbin"
libdir="$prefix/lib"
case "$unitdir" in
  "") unitdir="$libdir/systemd/system" ;;
  /*) unitdir="${unitdir%/}" ;;
  *) echo "install.sh: the unit directory must be an absolute path: $unitdir" >&2; exit 2 ;;
esac
sysusersdir="$libdir/sysusers.d"
tmpfilesdir="$libdir/tmpfiles.d"
mandir="$prefix/share/man"
docdir="$prefix/share/doc/x2gobroker"
bashcompdir="$prefix/share/bash-completion/completions"
zshcompdir="$prefix/share/zsh/vendor-completions"
fishcompdir="$prefix/share/fish/vendor_completions.d"

# Ownership: root-owned files only. Where we cannot chown (not root, e.g. a
# package build without fakeroot), files keep the builder's owner and the
# packaging tool maps them to root. Nothing installed into DESTDIR needs a
# service account as owner; those files are made on the target system.
owner_args=()
if [ "$(id -u)" -eq 0 ]; then owner_args=(-o root -g root); fi

note() { printf 'install.sh: %s\n' "$*"; }
warn() { printf 'install.sh: warning: %s\n' "$*" >&2; }

install_dir() { # MODE DIR...
  local mode="$1"; shift
  local d
  for d in "$@"; do install -d -m "$mode" "${owner_args[@]}" "$destdir$d"; done
}

install_file() { # MODE SRC DEST
  install -D -m "$1" "${owner_args[@]}" "$2" "$destdir$3"
}

# Configuration: never overwrite what is there.
install_config() { # MODE SRC DEST
  local mode="$1" src="$2" dest="$destdir$3"
  if [ ! -e "$dest" ] && [ ! -L "$dest" ]; then
    install -D -m "$mode" "${owner_args[@]}" "$src" "$dest"
  elif cmp -s "$src" "$dest"; then
    :
  else
    install -D -m "$mode" "${owner_args[@]}" "$src" "$dest.dist"
    note "kept existing $3; the shipped version is $3.dist"
  fi
}

# A unit with its ExecStart= paths moved to PREFIX.
install_unit() { # SRC
  local src="$1" name tmp
  name="$(basename "$src")"
  tmp="$(mktemp)"
  sed -e "/^ExecStart=/s#=/usr/bin/#=$bindir/#" -e "/^ExecStart=/s#=/usr/sbin/#=$sbindir/#" "$src" > "$tmp"
  install_file 0644 "$tmp" "$unitdir/$name"
  rm -f "$tmp"
}

# Runs PROGRAM --generate-FLAVOUR into a fresh directory; prints it on success.
generate() { # PROGRAM FLAVOUR
  local program="$1" flavour="$2" out
  out="$(mktemp -d)"
  # Clean environment and a time limit: a program that does not know the
  # flag must neither inherit sockets (LISTEN_*) nor start serving.
  if env -i PATH=/usr/bin:/bin timeout 20 "$program" "--generate-$flavour" "$out" </dev/null >/dev/null 2>&1 \
    && [ -n "$(ls -A "$out")" ]; then
    echo "$out"
  else
    rm -rf "$out"
    return 1
  fi
}

install_generated_docs() { # PROGRAM
  local program="$1" name out f base
  name="$(basename "$program")"
  if out="$(generate "$program" man)"; then
    for f in "$out"/*; do
      base="$(basename "$f")"
      case "$base" in
        *.[1-9]) install_file 0644 "$f" "$mandir/man${base##*.}/$base" ;;
        *) warn "$name --generate-man wrote $base, which is not NAME.SECTION; ignored" ;;
      esac
    done
    rm -rf "$out"
  else
    note "$name does not support --generate-man; its man page is skipped"
  fi
  if out="$(generate "$program" completions)"; then
    for f in "$out"/*; do
      base="$(basename "$f")"
      case "$base" in
        *.bash) install_file 0644 "$f" "$bashcompdir/${base%.bash}" ;;
        _*) install_file 0644 "$f" "$zshcompdir/$base" ;;
        *.fish) install_file 0644 "$f" "$fishcompdir/$base" ;;
        *) warn "$name --generate-completions wrote $base (not NAME.bash, _NAME or NAME.fish); ignored" ;;
      esac
    done
    rm -rf "$out"
  else
    note "$name does not support --generate-completions; its completions are skipped"
  fi
}

# The original broker's packages that own the same paths.
refuse_next_to_original() {
  [ -z "$destdir" ] && [ "$force" = no ] || return 0
  command -v dpkg-query >/dev/null 2>&1 || return 0
  local installed=() pkg
  for pkg in x2gobroker x2gobroker-daemon x2gobroker-authservice x2gobroker-ssh x2gobroker-loadchecker; do
    if dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed"; then
      installed+=("$pkg")
    fi
  done
  if [ ${#installed[@]} -gt 0 ]; then
    echo "install.sh: the original broker's packages are installed: ${installed[*]}" >&2
    echo "install.sh: they own the same programs and units; remove them first (apt-get remove ${installed[*]};" >&2
    echo "install.sh: configuration under /etc is kept) or pass --force" >&2
    exit 1
  fi
}

install_files() {
  local missing=() p
  for p in x2gobroker x2gobroker-daemon x2gobroker-authhelper; do
    [ -x "$bin_dir/$p" ] || missing+=("$p")
  done
  if [ ${#missing[@]} -gt 0 ]; then
    echo "install.sh: missing in $bin_dir: ${missing[*]} (build with 'cargo build --release' or pass --bin-dir)" >&2
    exit 1
  fi

  install_dir 0755 "$bindir" "$sbindir" "$unitdir" "$sysusersdir" "$tmpfilesdir" "$docdir" \
    "$sysconfdir/x2go" "$sysconfdir/x2go/broker" "$sysconfdir/x2go/broker/ssl" \
    "$sysconfdir/pam.d" "$sysconfdir/default"

  # Programs. The authentication helper is an administrator's program
  # (sbin); x2gobroker-ssh is the SSH-mode front end, the same program as
  # x2gobroker unless the build provides its own.
  install_file 0755 "$bin_dir/x2gobroker" "$bindir/x2gobroker"
  install_file 0755 "$bin_dir/x2gobroker-daemon" "$bindir/x2gobroker-daemon"
  install_file 0755 "$bin_dir/x2gobroker-authhelper" "$sbindir/x2gobroker-authhelper"
  if [ -x "$bin_dir/x2gobroker-ssh" ] && [ ! -L "$bin_dir/x2gobroker-ssh" ]; then
    install_file 0755 "$bin_dir/x2gobroker-ssh" "$bindir/x2gobroker-ssh"
  else
    rm -f "$destdir$bindir/x2gobroker-ssh"
    ln -s x2gobroker "$destdir$bindir/x2gobroker-ssh"
    if [ ${#owner_args[@]} -gt 0 ]; then chown -h root:root "$destdir$bindir/x2gobroker-ssh"; fi
  fi
  # Admin diagnostics (x2gobroker-ctl status), when the build has it.
  if [ -x "$bin_dir/x2gobroker-ctl" ]; then
    install_file 0755 "$bin_dir/x2gobroker-ctl" "$sbindir/x2gobroker-ctl"
  fi
  # The load checker and the original's admin tools (where the original
  # puts them), when the build has them.
  for p in x2gobroker-loadchecker x2gobroker-keygen x2gobroker-pubkeyauthorizer x2gobroker-testagent; do
    if [ -x "$bin_dir/$p" ]; then install_file 0755 "$bin_dir/$p" "$sbindir/$p"; fi
  done
  if [ -x "$bin_dir/x2gobroker-testauth" ]; then
    install_file 0755 "$bin_dir/x2gobroker-testauth" "$bindir/x2gobroker-testauth"
  fi

  local unit
  for unit in "$repo_root"/systemd/*.socket "$repo_root"/systemd/*.service; do
    install_unit "$unit"
  done
  install_file 0644 "$repo_root/systemd/sysusers.d/x2gobroker.conf" "$sysusersdir/x2gobroker.conf"
  install_file 0644 "$repo_root/systemd/tmpfiles.d/x2gobroker.conf" "$tmpfilesdir/x2gobroker.conf"

  install_config 0644 "$repo_root/etc/x2gobroker.conf" "$sysconfdir/x2go/x2gobroker.conf"
  install_config 0644 "$repo_root/etc/broker/defaults.conf" "$sysconfdir/x2go/broker/defaults.conf"
  install_config 0644 "$repo_root/etc/broker/x2gobroker-sessionprofiles.conf" \
    "$sysconfdir/x2go/broker/x2gobroker-sessionprofiles.conf"
  install_config 0644 "$repo_root/etc/pam.d/x2gobroker" "$sysconfdir/pam.d/x2gobroker"
  install_config 0644 "$repo_root/etc/default/x2gobroker-daemon" "$sysconfdir/default/x2gobroker-daemon"
  install_config 0644 "$repo_root/etc/default/x2gobroker-authhelper" "$sysconfdir/default/x2gobroker-authhelper"

  if [ -f "$repo_root/docs/OPERATIONS.md" ]; then
    install_file 0644 "$repo_root/docs/OPERATIONS.md" "$docdir/OPERATIONS.md"
  fi

  for p in x2gobroker x2gobroker-daemon x2gobroker-authhelper; do
    install_generated_docs "$bin_dir/$p"
  done
  # A build's own x2gobroker-ssh documents itself (a symlink to x2gobroker
  # is covered by x2gobroker's pages).
  if [ -x "$bin_dir/x2gobroker-ssh" ] && [ ! -L "$bin_dir/x2gobroker-ssh" ]; then
    install_generated_docs "$bin_dir/x2gobroker-ssh"
  fi
  if [ -x "$bin_dir/x2gobroker-ctl" ]; then
    install_generated_docs "$bin_dir/x2gobroker-ctl"
  fi
  for p in x2gobroker-loadchecker x2gobroker-keygen x2gobroker-pubkeyauthorizer x2gobroker-testagent x2gobroker-testauth; do
    if [ -x "$bin_dir/$p" ]; then install_generated_docs "$bin_dir/$p"; fi
  done
}

# The static authentication ID (my-cookie-file). Generated per machine and
# never shipped: a file in a package would be the same secret everywhere.
create_authid() {
  local authid="$destdir$sysconfdir/x2go/broker/x2gobroker.authid" id tmp
  if [ -e "$authid" ] || [ -L "$authid" ]; then
    return 0
  fi
  if [ -r /proc/sys/kernel/random/uuid ]; then
    id="$(cat /proc/sys/kernel/random/uuid)"
  else
    id="$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n' \
      | sed -E 's/^(.{8})(.{4})(.{4})(.{4})(.{12})$/\1-\2-\3-\4-\5/')"
  fi
  local gid
  if [ -n "$destdir" ]; then
    # An image being prepared: its own group database, not this host's.
    gid="$(awk -F: '$1 == "x2gobroker" { print $3 }' "$destdir/etc/group" 2>/dev/null || true)"
  else
    gid="$(getent group x2gobroker | cut -d: -f3)"
  fi
  if [ -z "$gid" ]; then
    echo "install.sh: group x2gobroker does not exist; cannot create the authid file" >&2
    exit 1
  fi
  tmp="$(mktemp "$authid.XXXXXX")"
  {
    echo "# Static authentication ID of this X2Go Session Broker (my-cookie-file in"
    echo "# /etc/x2go/x2gobroker.conf). Clients must present it when require-cookie"
    echo "# is on. Keep it secret; replace it with a new UUID to revoke it."
    echo "$id"
  } > "$tmp"
  chown "0:$gid" "$tmp"
  chmod 0640 "$tmp"
  mv -n "$tmp" "$authid"
  rm -f "$tmp"
  note "created $sysconfdir/x2go/broker/x2gobroker.authid (root:x2gobroker 0640)"
}

create_accounts() {
  local conf="$destdir$sysusersdir/x2gobroker.conf"
  if command -v systemd-sysusers >/dev/null 2>&1; then
    if [ -n "$destdir" ]; then
      systemd-sysusers --root="$destdir" "$conf"
    else
      systemd-sysusers "$conf"
    fi
    return 0
  fi
  # Without systemd-sysusers: the same accounts with shadow-utils.
  [ -z "$destdir" ] || { warn "no systemd-sysusers; accounts in $destdir not created"; return 0; }
  getent group x2gobroker >/dev/null || groupadd --system x2gobroker
  getent passwd x2gobroker >/dev/null \
    || useradd --system -g x2gobroker -d /var/lib/x2gobroker -s /usr/sbin/nologin -c "X2Go Session Broker" x2gobroker
  getent group x2gobroker-users >/dev/null || groupadd --system x2gobroker-users
  id -nG x2gobroker | tr ' ' '\n' | grep -qx x2gobroker-users || usermod -aG x2gobroker-users x2gobroker
}

configure_system() {
  if [ "$(id -u)" -ne 0 ]; then
    echo "install.sh: configuring the system needs root (or use --no-configure)" >&2
    exit 1
  fi
  [ -f "$destdir$sysusersdir/x2gobroker.conf" ] || {
    echo "install.sh: $sysusersdir/x2gobroker.conf is not installed; install the files first" >&2
    exit 1
  }
  create_accounts
  if [ -n "$destdir" ]; then
    systemd-tmpfiles --root="$destdir" --create "$destdir$tmpfilesdir/x2gobroker.conf"
  else
    systemd-tmpfiles --create "$tmpfilesdir/x2gobroker.conf"
  fi
  create_authid
  if [ -z "$destdir" ] && [ -d /run/systemd/system ]; then
    systemctl daemon-reload
    note "systemd reloaded. Start the broker with:"
    note "  systemctl enable --now x2gobroker-authhelper.socket x2gobroker-daemon.socket"
  fi
}

if [ "$files" = yes ]; then
  refuse_next_to_original
  install_files
  note "files installed under ${destdir:-/} (prefix $prefix)"
fi
if [ "$configure" = yes ]; then
  configure_system
elif [ -n "$destdir" ]; then
  note "DESTDIR install: on the target, run as root (e.g. in postinst):"
  note "  systemd-sysusers $sysusersdir/x2gobroker.conf"
  note "  systemd-tmpfiles --create $tmpfilesdir/x2gobroker.conf"
  note "  and create $sysconfdir/x2go/broker/x2gobroker.authid (a random UUID, root:x2gobroker 0640)"
  note "  -- or simply: install.sh --configure-only"
fi
