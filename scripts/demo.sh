#!/usr/bin/env bash
# Builds the broker and starts the root auth helper plus the unprivileged
# HTTP daemon on 127.0.0.1 with the demo configuration in demo/. Run as root
# on Debian 12. Ctrl-C stops both.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
PORT=${DEMO_PORT:-8080}
DEMO_USER=x2go-demo
DEMO_PASSWORD=demo-password

[ "$(id -u)" -eq 0 ] || { echo "demo.sh: run as root (the auth helper needs root for PAM)" >&2; exit 1; }

need=(build-essential pkg-config libpam0g-dev libclang-dev curl)
missing=()
for p in "${need[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "demo: installing ${missing[*]}"
  DEBIAN_FRONTEND=noninteractive apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
command -v cargo >/dev/null || { echo "demo.sh: cargo not found (install Rust, e.g. with rustup)" >&2; exit 1; }

# The daemon's account, a demo user for PAM, and the PAM service.
getent group x2gobroker >/dev/null || groupadd --system x2gobroker
getent passwd x2gobroker >/dev/null || useradd --system -g x2gobroker -d /var/lib/x2gobroker -s /usr/sbin/nologin x2gobroker
getent group x2gobroker-demo-admins >/dev/null || groupadd x2gobroker-demo-admins
getent passwd "$DEMO_USER" >/dev/null || useradd -m -s /bin/bash "$DEMO_USER"
echo "$DEMO_USER:$DEMO_PASSWORD" | chpasswd
[ -f /etc/pam.d/x2gobroker ] || printf '@include common-auth\n@include common-account\n' > /etc/pam.d/x2gobroker

echo "demo: building (release)…"
cargo build --release --locked -p x2gobroker-authhelper -p x2gobroker-frontend
BIN=$ROOT/target/release

RUN=$(mktemp -d /run/x2gobroker-demo.XXXXXX)
chmod 0755 "$RUN"
mkdir -p "$RUN/cookies" && chown x2gobroker:x2gobroker "$RUN/cookies" && chmod 0700 "$RUN/cookies"
sed "s|^verify-ip = true|verify-ip = true\ncookie-directory = $RUN/cookies\nmy-cookie-file = $RUN/authid|" demo/x2gobroker.conf > "$RUN/x2gobroker.conf"
cp demo/sessionprofiles.conf "$RUN/sessionprofiles.conf"
uuidgen 2>/dev/null > "$RUN/authid" || cat /proc/sys/kernel/random/uuid > "$RUN/authid"
chown root:x2gobroker "$RUN/authid"; chmod 0640 "$RUN/authid"
SOCKET=$RUN/authservice.socket
# The daemon's control socket (x2gobroker-ctl status), in a directory the
# daemon user can bind in (the default, /run/x2gobroker-daemon, comes from
# its unit's RuntimeDirectory=).
mkdir -p "$RUN/daemon" && chown x2gobroker:x2gobroker "$RUN/daemon" && chmod 0755 "$RUN/daemon"
CONTROL=$RUN/daemon/control.socket

pids=()
stop() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$RUN"; echo "demo: stopped"; }
trap stop EXIT INT TERM

"$BIN/x2gobroker-authhelper" --foreground --socket "$SOCKET" --socket-group x2gobroker --socket-mode 0660 &
pids+=($!)
for _ in $(seq 100); do [ -S "$SOCKET" ] && break; sleep 0.1; done
[ -S "$SOCKET" ] || { echo "demo: the auth helper did not come up" >&2; exit 1; }

# The daemon runs unprivileged, as the daemon user.
setpriv --reuid=x2gobroker --regid=x2gobroker --init-groups --inh-caps=-all --no-new-privs \
  env X2GOBROKER_AUTHSERVICE_SOCKET="$SOCKET" X2GOBROKER_SESSIONPROFILES="$RUN/sessionprofiles.conf" \
  X2GOBROKER_CONTROL_SOCKET="$CONTROL" \
  "$BIN/x2gobroker-daemon" -C "$RUN/x2gobroker.conf" -b "127.0.0.1:$PORT" &
pids+=($!)
for _ in $(seq 100); do curl -s -o /dev/null "http://127.0.0.1:$PORT/" && break; sleep 0.1; done
curl -s -o /dev/null "http://127.0.0.1:$PORT/" || { echo "demo: the daemon did not come up" >&2; exit 1; }

cat <<TXT

The X2Go Session Broker is running on http://127.0.0.1:$PORT/
  auth helper (root):      $SOCKET
  daemon (user x2gobroker): 127.0.0.1:$PORT, config $RUN/x2gobroker.conf, control $CONTROL
  demo login:              $DEMO_USER / $DEMO_PASSWORD

Try:
  curl -d 'user=$DEMO_USER&password=$DEMO_PASSWORD&task=listsessions' http://127.0.0.1:$PORT/plain/
  curl -d 'user=$DEMO_USER&password=$DEMO_PASSWORD&task=selectsession&sid=demo-kde' http://127.0.0.1:$PORT/plain/
  curl -d 'user=$DEMO_USER&password=$DEMO_PASSWORD&task=listsessions' http://127.0.0.1:$PORT/json/
  curl -d 'user=$DEMO_USER&password=wrong&task=listsessions' -i http://127.0.0.1:$PORT/plain/   # 401
  $BIN/x2gobroker-ctl status --authservice-socket $SOCKET --control-socket $CONTROL
  pyhoca-cli --broker-url http://$DEMO_USER@127.0.0.1:$PORT/json/ --broker-password $DEMO_PASSWORD --list-profiles
    (pyhoca-cli needs DISPLAY set to any value)

Press Ctrl-C to stop.
TXT
wait -n "${pids[@]}"
