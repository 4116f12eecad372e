#!/usr/bin/env bash
# A real X2Go server farm on this one machine, as a test fixture.
#
#   farm.sh up|down|status
#   farm.sh session N USER R|S      register a session of USER on server N (prints its id)
#   farm.sh clear-sessions          remove all sessions from the shared session DB
#   farm.sh stop-sshd N | start-sshd N
#   farm.sh exec N CMD...           run CMD inside server N (its hostname, /etc/hosts, /home)
#
# Each server is a real OpenSSH sshd on its own loopback address, started in
# its own UTS + mount namespace (own hostname, /etc/hosts, /home, ~x2gobroker,
# /etc/x2go/x2gosql). All servers share one PostgreSQL X2Go session database.
# See tests/farm/README.md. Run as root on Debian 12.
set -euo pipefail
# The system's tools only (the X2Go Python tools are `#!/usr/bin/env python3`
# and need the Debian python3, not one from pyenv/virtualenv on PATH).
export PATH=/usr/sbin:/usr/bin:/sbin:/bin

FARM_DIR=${FARM_DIR:-/var/tmp/x2gofarm}
FARM_SERVERS=${FARM_SERVERS:-3}
FARM_SSH_PORT=${FARM_SSH_PORT:-2222}
# Below the kernel's ephemeral range (32768-60999 by default): a fixed port in
# that range can be held by any outgoing connection or port-0 listener of an
# earlier test, and then PostgreSQL cannot bind it.
FARM_PG_PORT=${FARM_PG_PORT:-25432}
FARM_ADDR_BASE=${FARM_ADDR_BASE:-127.0.0.1}   # server N listens on ${FARM_ADDR_BASE}N (127.0.0.11, ...)
FARM_NAME_PREFIX=${FARM_NAME_PREFIX:-xfarm}
BROKER_USER=${X2GOBROKER_AGENT_USER:-x2gobroker}
AGENT=/usr/lib/x2go/x2gobroker-agent
X2GO_LIB=/usr/lib/x2go
HOSTS_BEGIN="# x2gofarm $FARM_NAME_PREFIX begin (tests/farm/farm.sh; removed by farm.sh down)"
HOSTS_END="# x2gofarm $FARM_NAME_PREFIX end"
DEADLINE=${FARM_DEADLINE:-30}   # seconds any single wait may take

PACKAGES=(x2goserver x2goserver-xsession x2gobroker-agent x2gobroker sudo postgresql libdbd-pg-perl
          openssh-server openssh-client xvfb pwgen iproute2 util-linux procps)

die() { echo "farm.sh: $*" >&2; exit 1; }
log() { echo "farm.sh: $*" >&2; }

name_of() { echo "${FARM_NAME_PREFIX}$1"; }
addr_of() { echo "${FARM_ADDR_BASE}$1"; }
sdir() { echo "$FARM_DIR/srv$1"; }
servers() { seq 1 "$FARM_SERVERS"; }

check_server_arg() {
  [[ "${1:-}" =~ ^[0-9]+$ ]] && [ "$1" -ge 1 ] && [ "$1" -le "$FARM_SERVERS" ] \
    || die "server number must be 1..$FARM_SERVERS, got '${1:-}'"
}

need_root() { [ "$(id -u)" -eq 0 ] || die "must run as root"; }

# ---------------------------------------------------------------- packages
ensure_packages() {
  local missing=() p
  for p in "${PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  log "installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  # keep the packages' own services (sshd, postgresql) from starting
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d; chmod 755 /usr/sbin/policy-rc.d
  fi
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

# ---------------------------------------------------------------- helpers
pid_alive() { [ -s "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

port_open() { timeout 2 bash -c "exec 3<>/dev/tcp/$1/$2" 2>/dev/null; }

wait_for() { # description, command...
  local what=$1; shift
  local end=$((SECONDS + DEADLINE))
  until "$@"; do
    [ $SECONDS -lt $end ] || die "timed out after ${DEADLINE}s waiting for $what"
    sleep 0.1
  done
}

not() { ! "$@"; }

none_alive() { local p; for p in "$@"; do kill -0 "$p" 2>/dev/null && return 1; done; return 0; }

# PIDs of all processes in the mount namespace of process $1.
ns_pids() {
  local ns p; ns=$(readlink "/proc/$1/ns/mnt") || return 0
  for p in /proc/[0-9]*; do
    [ "$(readlink "$p/ns/mnt" 2>/dev/null)" = "$ns" ] && echo "${p#/proc/}"
  done
  return 0
}

pg_bin() {
  local d
  d=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
  [ -n "$d" ] || die "no PostgreSQL server binaries under /usr/lib/postgresql"
  echo "$d"
}

farm_users() {
  if [ -n "${FARM_USERS:-}" ]; then
    echo "$FARM_USERS" | tr ', ' '\n\n' | sed '/^$/d'
  else
    getent passwd | awk -F: '$1 ~ /^xbt-/ && $3 >= 1000 { print $1 }' | sort
  fi
}

write_if_changed() { # path, content (stdin)
  local tmp
  tmp=$(mktemp "$1.XXXXXX")
  cat > "$tmp"
  if [ -f "$1" ] && cmp -s "$tmp" "$1"; then rm -f "$tmp"; else mv -f "$tmp" "$1"; fi
}

# Replace (or remove, with empty content) the marked farm block in a file,
# rewriting it in place (it may be a bind mount).
set_block() { # file, content (stdin; empty = remove)
  local file=$1 content rest
  content=$(cat)
  [ -f "$file" ] || { [ -n "$content" ] || return 0; : > "$file"; }
  # (also drops a block with the markers of the first version, without the prefix)
  rest=$(awk -v b="$HOSTS_BEGIN" -v e="$HOSTS_END" \
    -v lb="# x2gofarm begin (tests/farm/farm.sh; removed by farm.sh down)" -v le="# x2gofarm end" \
    '$0==b||$0==lb{skip=1;next} $0==e||$0==le{skip=0;next} !skip' "$file")
  {
    [ -n "$rest" ] && printf '%s\n' "$rest"
    if [ -n "$content" ]; then printf '%s\n%s\n%s\n' "$HOSTS_BEGIN" "$content" "$HOSTS_END"; fi
  } > "$file.farm-new"
  if ! cmp -s "$file.farm-new" "$file"; then cat "$file.farm-new" > "$file"; fi
  rm -f "$file.farm-new"
}

hosts_entries() {
  local i
  for i in $(servers); do printf '%s\t%s\n' "$(addr_of "$i")" "$(name_of "$i")"; done
}

# Run a command inside server N's namespaces (hostname, mounts).
in_server() { # N, cmd...
  local n=$1; shift
  local hp="$(sdir "$n")/holder.pid"
  pid_alive "$hp" || die "server $n is not up (no namespace holder); run farm.sh up"
  nsenter --target "$(cat "$hp")" --uts --mount -- "$@"
}

# ---------------------------------------------------------------- postgres
PG_DIR() { echo "$FARM_DIR/pg"; }

pg_start() {
  local bin pg; bin=$(pg_bin); pg=$(PG_DIR)
  mkdir -p "$pg"
  chown postgres:postgres "$pg"; chmod 700 "$pg"
  if [ ! -s "$FARM_DIR/pgadmin.pw" ]; then
    (umask 077; pwgen -s -c -n 32 1 > "$FARM_DIR/pgadmin.pw")
  fi
  if [ ! -f "$pg/data/PG_VERSION" ]; then
    log "initialising PostgreSQL cluster in $pg/data"
    install -o postgres -g postgres -m 600 "$FARM_DIR/pgadmin.pw" "$pg/pw.tmp"
    runuser -u postgres -- "$bin/initdb" -D "$pg/data" -U postgres --no-locale -E UTF8 \
      --auth-local=peer --auth-host=scram-sha-256 --pwfile="$pg/pw.tmp" >"$pg/initdb.log" 2>&1 \
      || { cat "$pg/initdb.log" >&2; die "initdb failed"; }
    rm -f "$pg/pw.tmp"
  fi
  install -d -o postgres -g postgres -m 700 "$pg/run"
  if runuser -u postgres -- "$bin/pg_ctl" -D "$pg/data" status >/dev/null 2>&1; then
    return 0
  fi
  local holder
  holder=$(ss -Htanp exclude time-wait "( sport = :$FARM_PG_PORT )" 2>/dev/null || true)
  if [ -n "$holder" ]; then
    die "127.0.0.1:$FARM_PG_PORT is already in use, PostgreSQL cannot listen there (set FARM_PG_PORT):
$holder"
  fi
  log "starting PostgreSQL on 127.0.0.1:$FARM_PG_PORT"
  runuser -u postgres -- "$bin/pg_ctl" -D "$pg/data" -l "$pg/postgres.log" -w -t "$DEADLINE" \
    -o "-c listen_addresses=127.0.0.1 -p $FARM_PG_PORT -k $pg/run" start >/dev/null \
    || { tail -n 20 "$pg/postgres.log" >&2; die "PostgreSQL did not start"; }
}

pg_stop() {
  local bin pg; pg=$(PG_DIR)
  [ -f "$pg/data/PG_VERSION" ] || return 0
  bin=$(pg_bin)
  if runuser -u postgres -- "$bin/pg_ctl" -D "$pg/data" status >/dev/null 2>&1; then
    runuser -u postgres -- "$bin/pg_ctl" -D "$pg/data" -m fast -w -t "$DEADLINE" stop >/dev/null || true
  fi
}

psql_farm() { # sql
  runuser -u postgres -- "$(pg_bin)/psql" -X -q -v ON_ERROR_STOP=1 -h "$(PG_DIR)/run" -p "$FARM_PG_PORT" \
    -d x2go_sessions -c "$1"
}

# /etc/x2go/x2gosql as the servers see it: PostgreSQL backend on our cluster.
write_x2gosql() {
  local d="$FARM_DIR/x2gosql"
  install -d -m 755 "$d"; install -d -m 700 "$d/passwords"
  write_if_changed "$d/sql" <<EOF
# x2gofarm: X2Go session DB on the farm's PostgreSQL cluster (tests/farm/farm.sh)
backend=postgres

[postgres]
host=127.0.0.1
port=$FARM_PG_PORT
dbadmin=postgres
ssl=disable
EOF
  chmod 644 "$d/sql"
  install -m 600 "$FARM_DIR/pgadmin.pw" "$d/passwords/pgadmin"
  [ -e "$d/passwords/mysqladmin" ] || install -m 600 /dev/null "$d/passwords/mysqladmin"
}

# x2godbadmin in a private mount namespace seeing the farm's x2gosql config
# and $FARM_DIR/dbadmin-home as /home (where --adduser writes ~/.x2go/pgsqlpass).
dbadmin() {
  install -d -m 755 "$FARM_DIR/dbadmin-home"
  unshare --mount --propagation private -- /bin/bash -c '
    mount --bind "$1/x2gosql" /etc/x2go/x2gosql && mount --bind "$1/dbadmin-home" /home || exit 97
    shift; exec /usr/sbin/x2godbadmin "$@"' dbadmin "$FARM_DIR" "$@"
}

setup_db() {
  if ! runuser -u postgres -- "$(pg_bin)/psql" -X -At -h "$(PG_DIR)/run" -p "$FARM_PG_PORT" -d postgres \
       -c "select 1 from pg_database where datname='x2go_sessions'" | grep -q 1 \
     || [ ! -s "$FARM_DIR/x2gosql/passwords/x2gopgadmin" ]; then
    log "creating the X2Go session database (x2godbadmin --createdb)"
    dbadmin --createdb >"$FARM_DIR/dbadmin.log" 2>&1 || { cat "$FARM_DIR/dbadmin.log" >&2; die "x2godbadmin --createdb failed"; }
    rm -rf "$FARM_DIR/dbadmin-home"
  fi
  local u
  for u in $(farm_users); do
    if [ ! -s "$FARM_DIR/dbadmin-home/$u/.x2go/pgsqlpass" ]; then
      dbadmin --adduser "$u" >>"$FARM_DIR/dbadmin.log" 2>&1 || { cat "$FARM_DIR/dbadmin.log" >&2; die "x2godbadmin --adduser $u failed"; }
      [ -s "$FARM_DIR/dbadmin-home/$u/.x2go/pgsqlpass" ] || die "x2godbadmin --adduser $u wrote no pgsqlpass"
    fi
  done
}

# ---------------------------------------------------------------- servers
setup_server_files() { # N
  local n=$1 d name addr u uid gid home
  d=$(sdir "$n"); name=$(name_of "$n"); addr=$(addr_of "$n")
  install -d -m 755 "$d" "$d/home"
  [ -f "$d/ssh_host_ed25519_key" ] || ssh-keygen -q -t ed25519 -N '' -C "root@$name" -f "$d/ssh_host_ed25519_key"
  echo "$name" | write_if_changed "$d/hostname"
  { printf '127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n'; hosts_entries; } | write_if_changed "$d/hosts"
  chmod 644 "$d/hostname" "$d/hosts"
  write_if_changed "$d/sshd_config" <<EOF
# x2gofarm server $name (tests/farm/farm.sh)
ListenAddress $addr:$FARM_SSH_PORT
HostKey $d/ssh_host_ed25519_key
PidFile $d/sshd.pid
UsePAM yes
PubkeyAuthentication yes
PasswordAuthentication yes
KbdInteractiveAuthentication no
PermitRootLogin no
# X2Go's session broker deploys auto-login keys to ~/.x2go/authorized_keys
AuthorizedKeysFile .ssh/authorized_keys .x2go/authorized_keys
X11Forwarding no
PrintMotd no
PrintLastLog no
AcceptEnv LANG LC_*
Subsystem sftp /usr/lib/openssh/sftp-server
LogLevel VERBOSE
EOF
  # per-server home directories of the test users, with their DB password
  for u in $(farm_users); do
    uid=$(id -u "$u"); gid=$(id -g "$u"); home="$d/home/$u"
    if [ ! -d "$home" ]; then
      cp -a /etc/skel "$home"; chown -R "$uid:$gid" "$home"; chmod 750 "$home"
    fi
    install -d -o "$uid" -g "$gid" -m 700 "$home/.x2go"
    install -o "$uid" -g "$gid" -m 600 "$FARM_DIR/dbadmin-home/$u/.x2go/pgsqlpass" "$home/.x2go/pgsqlpass"
  done
  # the broker agent account's home on this server
  install -d -o "$BROKER_USER" -g "$(id -g "$BROKER_USER")" -m 755 "$d/broker-home"
}

start_holder() { # N
  local n=$1 d; d=$(sdir "$n")
  pid_alive "$d/holder.pid" && return 0
  rm -f "$d/holder.pid"
  local bhome; bhome=$(getent passwd "$BROKER_USER" | cut -d: -f6)
  # The holder keeps server N's namespaces alive while its sshd is stopped.
  setsid unshare --uts --mount --propagation private --fork -- /bin/bash -c '
    set -e
    d=$1; name=$2; x2gosql=$3; bhome=$4
    hostname "$name"
    mount --bind "$d/hosts" /etc/hosts
    mount --bind "$d/hostname" /etc/hostname
    mount --bind "$d/home" /home
    mount --bind "$d/broker-home" "$bhome"
    mount --bind "$x2gosql" /etc/x2go/x2gosql
    echo $$ > "$d/holder.pid.tmp"; mv "$d/holder.pid.tmp" "$d/holder.pid"
    exec sleep infinity' farm-holder "$d" "$(name_of "$n")" "$FARM_DIR/x2gosql" "$bhome" \
    </dev/null >"$d/holder.log" 2>&1 &
  wait_for "namespace holder of server $n" pid_alive "$d/holder.pid"
}

start_sshd() { # N
  local n=$1 d; d=$(sdir "$n")
  if pid_alive "$d/sshd.pid"; then return 0; fi
  rm -f "$d/sshd.pid"
  mkdir -p /run/sshd; chmod 755 /run/sshd
  in_server "$n" /usr/sbin/sshd -f "$d/sshd_config" -E "$d/sshd.log" </dev/null >/dev/null 2>&1 \
    || { tail -n 20 "$d/sshd.log" >&2; die "sshd of server $n did not start"; }
  wait_for "sshd of server $n on $(addr_of "$n"):$FARM_SSH_PORT" port_open "$(addr_of "$n")" "$FARM_SSH_PORT"
  wait_for "sshd pid file of server $n" pid_alive "$d/sshd.pid"
}

stop_sshd() { # N
  local n=$1 d pid; d=$(sdir "$n")
  if pid_alive "$d/sshd.pid"; then
    pid=$(cat "$d/sshd.pid")
    kill "$pid" 2>/dev/null || true
    wait_for "sshd of server $n to exit" not kill -0 "$pid" 2>/dev/null
  fi
  rm -f "$d/sshd.pid"
  wait_for "port $(addr_of "$n"):$FARM_SSH_PORT to close" not port_open "$(addr_of "$n")" "$FARM_SSH_PORT"
}

# ---------------------------------------------------------------- broker key
broker_home() { getent passwd "$BROKER_USER" | cut -d: -f6; }

setup_broker_key() {
  local bh; bh=$(broker_home)
  [ -d "$bh" ] || install -d -o "$BROKER_USER" -g "$(id -g "$BROKER_USER")" -m 755 "$bh"
  if [ ! -f "$bh/.ssh/id_rsa" ]; then
    log "creating the broker's SSH key with x2gobroker-keygen"
    x2gobroker-keygen >"$FARM_DIR/keygen.log" 2>&1 || { cat "$FARM_DIR/keygen.log" >&2; die "x2gobroker-keygen failed"; }
    touch "$FARM_DIR/broker-key.created-by-farm"
  fi
  [ -f "$bh/.ssh/id_rsa.pub" ] || die "$bh/.ssh/id_rsa.pub missing"
  # What the original's /pubkeys/ URL serves, for x2gobroker-pubkeyauthorizer.
  local key; key=$(awk '{print $1" "$2}' "$bh/.ssh/id_rsa.pub")
  printf 'command="%s",no-port-forwarding,no-X11-forwarding,no-agent-forwarding,no-pty %s %s@%s\n' \
    "$AGENT" "$key" "$BROKER_USER" "$(hostname)" | write_if_changed "$FARM_DIR/pubkeys"
  chmod 644 "$FARM_DIR/pubkeys"
}

authorize_broker() { # N: the documented way, x2gobroker-pubkeyauthorizer on the server
  local n=$1 d; d=$(sdir "$n")
  if [ -f "$d/broker-home/.ssh/authorized_keys" ] && grep -qxF "$(cat "$FARM_DIR/pubkeys")" "$d/broker-home/.ssh/authorized_keys"; then
    return 0
  fi
  in_server "$n" x2gobroker-pubkeyauthorizer --broker-url "file://$FARM_DIR/pubkeys" >"$d/pubkeyauthorizer.log" 2>&1 \
    || { cat "$d/pubkeyauthorizer.log" >&2; die "x2gobroker-pubkeyauthorizer failed on server $n"; }
}

known_hosts_line() { # N
  local n=$1
  printf '[%s]:%s,[%s]:%s %s\n' "$(name_of "$n")" "$FARM_SSH_PORT" "$(addr_of "$n")" "$FARM_SSH_PORT" \
    "$(awk '{print $1" "$2}' "$(sdir "$n")/ssh_host_ed25519_key.pub")"
}

write_known_hosts() {
  local i j bh gid
  bh=$(broker_home); gid=$(id -g "$BROKER_USER")
  for i in $(servers); do known_hosts_line "$i"; done | write_if_changed "$FARM_DIR/known_hosts"
  chmod 644 "$FARM_DIR/known_hosts"
  # the broker account's own known_hosts (a marked block)
  install -d -o "$BROKER_USER" -g "$gid" -m 700 "$bh/.ssh"
  if [ ! -f "$bh/.ssh/known_hosts" ]; then
    install -o "$BROKER_USER" -g "$gid" -m 644 /dev/null "$bh/.ssh/known_hosts"
    touch "$FARM_DIR/known-hosts.created-by-farm"
  fi
  set_block "$bh/.ssh/known_hosts" < "$FARM_DIR/known_hosts"
  # alternative broker homes: key + known_hosts without server N's key
  install -d -m 755 "$FARM_DIR/broker-homes"
  for i in $(servers); do
    local h="$FARM_DIR/broker-homes/without-$(name_of "$i")"
    install -d -o "$BROKER_USER" -g "$gid" -m 755 "$h"
    install -d -o "$BROKER_USER" -g "$gid" -m 700 "$h/.ssh"
    install -o "$BROKER_USER" -g "$gid" -m 600 "$bh/.ssh/id_rsa" "$h/.ssh/id_rsa"
    install -o "$BROKER_USER" -g "$gid" -m 644 "$bh/.ssh/id_rsa.pub" "$h/.ssh/id_rsa.pub"
    for j in $(servers); do [ "$j" = "$i" ] || known_hosts_line "$j"; done > "$FARM_DIR/known_hosts.without-$(name_of "$i")"
    chmod 644 "$FARM_DIR/known_hosts.without-$(name_of "$i")"
    install -o "$BROKER_USER" -g "$gid" -m 644 "$FARM_DIR/known_hosts.without-$(name_of "$i")" "$h/.ssh/known_hosts"
  done
}

# The broker's agent call, as the original makes it (ssh as the agent user,
# `sh -c '<agent> <user> <task>'`); stderr must stay empty.
agent_call() { # N user task [args...]
  local n=$1 user=$2 task=$3; shift 3
  local cmd="$AGENT $user $task" a
  for a in "$@"; do cmd+=" \"$a\""; done
  runuser -u "$BROKER_USER" -- env HOME="$(broker_home)" ssh -F /dev/null -o BatchMode=yes \
    -o StrictHostKeyChecking=yes -o UserKnownHostsFile="$FARM_DIR/known_hosts" \
    -i "$(broker_home)/.ssh/id_rsa" -p "$FARM_SSH_PORT" "$BROKER_USER@$(addr_of "$n")" "sh -c '$cmd'"
}

self_check() {
  local i out err
  for i in $(servers); do
    err=$(mktemp)
    out=$(agent_call "$i" "$(farm_users | head -n 1)" listsessions 2>"$err") || true
    if [ "$(echo "$out" | head -n 1)" != "OK" ] || [ -s "$err" ]; then
      log "agent self-check on server $i failed: stdout=[$out] stderr=[$(cat "$err")]"
      rm -f "$err"; exit 1
    fi
    rm -f "$err"
  done
}

# ---------------------------------------------------------------- accounts
ensure_accounts() {
  getent passwd "$BROKER_USER" >/dev/null || die "account $BROKER_USER missing (scripts/setup-test-env.sh creates it)"
  # The agent runs as the forced command of the broker's key: sshd starts it
  # through the account's login shell. The Debian packages create the account
  # with /bin/bash (and switch /bin/false to /bin/bash in their postinst).
  local shell; shell=$(getent passwd "$BROKER_USER" | cut -d: -f7)
  case "$shell" in
    */nologin|*/false|"") log "setting the login shell of $BROKER_USER to /bin/bash (was $shell), as the x2gobroker-agent package does"
                          usermod --shell /bin/bash "$BROKER_USER" ;;
  esac
  [ -n "$(farm_users)" ] || die "no test users (xbt-*) found; run scripts/setup-test-env.sh"
}

# ---------------------------------------------------------------- commands
summary() {
  local i state=up
  echo "farm_dir=$FARM_DIR"
  for i in $(servers); do
    local s=up
    pid_alive "$(sdir "$i")/sshd.pid" || s=down
    pid_alive "$(sdir "$i")/holder.pid" || { s=down; state=down; }
    echo "server=$(name_of "$i") addr=$(addr_of "$i") port=$FARM_SSH_PORT sshd=$s home=$(sdir "$i")/home index=$i"
  done
  echo "known_hosts=$FARM_DIR/known_hosts"
  for i in $(servers); do
    echo "known_hosts_without=$(name_of "$i") path=$FARM_DIR/known_hosts.without-$(name_of "$i") broker_home=$FARM_DIR/broker-homes/without-$(name_of "$i")"
  done
  echo "broker_user=$BROKER_USER"
  echo "broker_home=$(broker_home)"
  echo "broker_key=$(broker_home)/.ssh/id_rsa"
  runuser -u postgres -- "$(pg_bin)/pg_ctl" -D "$(PG_DIR)/data" status >/dev/null 2>&1 || state=down
  echo "postgres=127.0.0.1:$FARM_PG_PORT"
  echo "users=$(farm_users | paste -sd, -)"
  echo "state=$state"
}

cmd_up() {
  need_root
  ensure_packages
  ensure_accounts
  install -d -m 755 "$FARM_DIR"
  hosts_entries | set_block /etc/hosts
  pg_start
  write_x2gosql
  setup_db
  setup_broker_key
  local i
  for i in $(servers); do
    setup_server_files "$i"
    start_holder "$i"
    authorize_broker "$i"
    start_sshd "$i"
  done
  write_known_hosts
  self_check
  summary
}

cmd_down() {
  need_root
  local i d all=()
  # Everything still running inside the servers' namespaces (holders, sshds,
  # agent calls, sessions started by clients): SIGTERM to all at once (sshd
  # takes a moment to act on it), then wait, SIGKILL what is left.
  for i in $(servers); do
    d=$(sdir "$i")
    if pid_alive "$d/holder.pid"; then all+=($(ns_pids "$(cat "$d/holder.pid")")); fi
    if pid_alive "$d/sshd.pid"; then all+=("$(cat "$d/sshd.pid")"); fi
  done
  if [ ${#all[@]} -gt 0 ]; then
    kill "${all[@]}" 2>/dev/null || true
    local end=$((SECONDS + DEADLINE))
    until none_alive "${all[@]}"; do
      if [ $SECONDS -ge $end ]; then kill -KILL "${all[@]}" 2>/dev/null || true; break; fi
      sleep 0.1
    done
  fi
  for i in $(servers); do rm -f "$(sdir "$i")/sshd.pid" "$(sdir "$i")/holder.pid"; done
  pg_stop
  set_block /etc/hosts </dev/null
  local bh; bh=$(broker_home)
  if [ -f "$bh/.ssh/known_hosts" ]; then
    set_block "$bh/.ssh/known_hosts" </dev/null
    if [ -f "$FARM_DIR/known-hosts.created-by-farm" ] && [ ! -s "$bh/.ssh/known_hosts" ]; then
      rm -f "$bh/.ssh/known_hosts"
    fi
  fi
  if [ -f "$FARM_DIR/broker-key.created-by-farm" ]; then
    rm -f "$bh/.ssh/id_rsa" "$bh/.ssh/id_rsa.pub"
  fi
  case "$FARM_DIR" in /|"") die "refusing to remove FARM_DIR='$FARM_DIR'";; esac
  rm -rf "$FARM_DIR"
  echo "state=down"
}

cmd_status() {
  [ -d "$FARM_DIR" ] || { echo "farm_dir=$FARM_DIR"; echo "state=down"; return 0; }
  summary
}

next_display() {
  local f="$FARM_DIR/next-display" n
  exec 9>"$f.lock"
  flock 9
  # from 500: real sessions (x2gostartagent) take displays from 50 upwards,
  # and the session DB wants displays unique
  n=$(cat "$f" 2>/dev/null || echo 500)
  echo $((n + 1)) > "$f"
  exec 9>&-
  echo "$n"
}

cmd_session() { # N USER STATUS
  need_root
  local n=${1:-} user=${2:-} status=${3:-}
  check_server_arg "$n"
  getent passwd "$user" >/dev/null || die "no such user: $user"
  case "$status" in R|S) ;; *) die "status must be R or S, got '$status'";; esac
  local display sid name cookie
  name=$(name_of "$n"); display=$(next_display)
  sid="${user}-${display}-$(date +%s)_stDXFCE_dp24"
  cookie=$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')
  local holder; holder=$(cat "$(sdir "$n")/holder.pid")
  # x2goserver's own tools, as x2gostartagent calls them, run as the user on server N
  in_server "$n" runuser -u "$user" -- "$X2GO_LIB/x2goinsertsession" "$display" "$name" "$sid" >/dev/null
  in_server "$n" runuser -u "$user" -- "$X2GO_LIB/x2gocreatesession" "$sid" "$cookie" "$holder" 127.0.0.1 \
    $((30000 + display * 3)) $((30001 + display * 3)) $((30002 + display * 3)) -1 -1 >/dev/null
  if [ "$status" = S ]; then
    in_server "$n" runuser -u "$user" -- "$X2GO_LIB/x2gochangestatus" S "$sid" >/dev/null
  fi
  echo "$sid"
}

cmd_clear_sessions() {
  need_root
  psql_farm "truncate mounts, used_ports, sessions;"
}

case "${1:-}" in
  up) cmd_up ;;
  down) cmd_down ;;
  status) cmd_status ;;
  session) shift; cmd_session "$@" ;;
  clear-sessions) cmd_clear_sessions ;;
  stop-sshd) need_root; check_server_arg "${2:-}"; stop_sshd "$2"; summary ;;
  start-sshd) need_root; check_server_arg "${2:-}"; start_sshd "$2"; summary ;;
  exec) need_root; check_server_arg "${2:-}"; n=$2; shift 2; in_server "$n" "$@" ;;
  agent) need_root; check_server_arg "${2:-}"; n=$2; shift 2; agent_call "$n" "$@" ;;
  *) echo "usage: $0 up|down|status|session N USER R|S|clear-sessions|stop-sshd N|start-sshd N|exec N CMD...|agent N USER TASK [ARGS...]" >&2; exit 2 ;;
esac
