#!/usr/bin/env bash
# Benchmark: selectsession with agent query mode SSH on a real farm
# (tests/farm/farm.sh), ours and the original side by side in one run.
# Not a test: prints a Markdown table (also target/bench/farm.md).
#
# For 3 and 10 servers, with sessions of other users spread over them (the
# user asking has none, so each selectsession asks an agent for the user's
# sessions and for the session counts, then port-scans the chosen server):
#   cold  - the first selectsession after the broker started (ours: no SSH
#           connection to reuse yet);
#   warm  - mean of sequential selectsessions afterwards (hyperfine);
#   req/s - wrk, 4 connections.
# Usage: benches/farm.sh [--quick]   (BENCH_SECONDS, BENCH_SERVERS="3 10")
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
DUR=${BENCH_SECONDS:-10}
RUNS=20
ORIG_RUNS=5
[ "${1:-}" = "--quick" ] && { DUR=3; RUNS=5; ORIG_RUNS=2; }
SERVER_COUNTS=${BENCH_SERVERS:-"3 10"}

[ "$(id -u)" -eq 0 ] || { echo "benches/farm.sh: run as root" >&2; exit 1; }
bash scripts/setup-test-env.sh >/dev/null
cargo build --release -p x2gobroker-frontend >/dev/null
OURS=$ROOT/target/release/x2gobroker-daemon
FARM=$ROOT/tests/farm/farm.sh
BROKER_USER=x2gobroker

WORK=$(mktemp -d /tmp/x2gofarmbench.XXXXXX)
chmod 755 "$WORK"
PIDS=()
stop_brokers() {
  local p
  for p in "${PIDS[@]}"; do pkill -P "$p" 2>/dev/null || true; kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done
  PIDS=()
}
cleanup() { stop_brokers; FARM_SERVERS=$LAST_COUNT bash "$FARM" down >/dev/null 2>&1 || true; rm -rf "$WORK"; }
LAST_COUNT=3
trap cleanup EXIT

wait_port() { # port
  for _ in $(seq 300); do
    curl -s -o /dev/null "http://127.0.0.1:$1/" && return 0
    sleep 0.1
  done
  echo "broker on port $1 did not come up" >&2; return 1
}

start() { # which port
  local which=$1 port=$2 dir=$WORK/$1
  mkdir -p "$dir/cookies" "$dir/mux"
  chown -R "$BROKER_USER" "$dir"; chmod 700 "$dir/mux"
  local env=(HOME=/var/lib/x2gobroker X2GOBROKER_CONFIG="$WORK/x2gobroker-$which.conf"
             X2GOBROKER_SESSIONPROFILES="$WORK/profiles.conf" X2GOBROKER_AGENT_SSH_CONTROL_DIR="$dir/mux")
  sed "s|%DIR%|$dir|g" "$WORK/x2gobroker.conf.in" > "$WORK/x2gobroker-$which.conf"
  if [ "$which" = ours ]; then
    runuser -u "$BROKER_USER" -- env "${env[@]}" "$OURS" -b "127.0.0.1:$port" >"$dir/log" 2>&1 &
  else
    runuser -u "$BROKER_USER" -- env "${env[@]}" /usr/bin/python3 /usr/bin/x2gobroker -M HTTP -b "127.0.0.1:$port" >"$dir/log" 2>&1 &
  fi
  PIDS+=("$!")
  wait_port "$port"
}

BODY="user=xbt-alice&task=selectsession&sid=farm"
select_once() { # port -> seconds (checks the answer names a farm server)
  local out
  out=$(curl -s -w '\n%{time_total}' -d "$BODY" "http://127.0.0.1:$1/plain/")
  grep -q '^SERVER:127\.0\.0\.1[0-9]*:2222$' <<<"$out" || { echo "unexpected answer on port $1: $out" >&2; exit 1; }
  tail -n 1 <<<"$out"
}

warm_ms() { # port runs
  hyperfine -N --warmup 1 --runs "$2" --export-json "$WORK/h.json" \
    "curl -s -d $BODY http://127.0.0.1:$1/plain/" >/dev/null 2>&1
  python3 -c "import json;print('%.1f' % (json.load(open('$WORK/h.json'))['results'][0]['mean']*1000))"
}

wrk_rps() { # port
  cat > "$WORK/post.lua" <<LUA
wrk.method = "POST"
wrk.body = "$BODY"
wrk.headers["Content-Type"] = "application/x-www-form-urlencoded"
LUA
  wrk -t 2 -c 4 -d "${DUR}s" --timeout 60s -s "$WORK/post.lua" "http://127.0.0.1:$1/plain/" \
    | awk '/Requests\/sec/ {print $2}'
}

cat > "$WORK/x2gobroker.conf.in" <<'CONF'
[global]
require-password = false
default-auth-mech = none
default-agent-query-mode = SSH
default-agent-hostkey-policy = RejectPolicy
default-portscan-x2goservers = true
cookie-directory = %DIR%/cookies
my-cookie-file = %DIR%/authid
key-removal-directory = %DIR%/removals
CONF

ROWS=()
for n in $SERVER_COUNTS; do
  FARM_SERVERS=$LAST_COUNT bash "$FARM" down >/dev/null 2>&1 || true
  LAST_COUNT=$n
  FARM_SERVERS=$n bash "$FARM" up > "$WORK/farm.txt"
  hosts=$(awk -F'[ =]' '/^server=/ {printf "%s%s (%s:%s)", sep, $2, $4, $6; sep=", "}' "$WORK/farm.txt")
  printf '[farm]\nname = Farm\ncommand = XFCE\nhost = %s\n' "$hosts" > "$WORK/profiles.conf"
  # Two sessions of other users on every server but the last.
  for i in $(seq 1 $((n - 1))); do
    FARM_SERVERS=$n bash "$FARM" session "$i" xbt-bob S >/dev/null
    FARM_SERVERS=$n bash "$FARM" session "$i" xbt-carol R >/dev/null
  done
  for which in original ours; do
    port=$((18200 + n))
    [ "$which" = ours ] && port=$((18300 + n))
    start "$which" "$port"
    cold=$(select_once "$port")
    runs=$RUNS; [ "$which" = original ] && runs=$ORIG_RUNS
    warm=$(warm_ms "$port" "$runs")
    rps=$(wrk_rps "$port")
    ROWS+=("| $n | $which | $(python3 -c "print('%.1f' % ($cold*1000))") | $warm | $rps |")
    stop_brokers
  done
  FARM_SERVERS=$n bash "$FARM" clear-sessions >/dev/null
done

mkdir -p target/bench
{
  echo "| servers | broker | cold selectsession (ms) | warm selectsession (ms, mean) | req/s (wrk, 4 conns, ${DUR}s) |"
  echo "|---|---|---|---|---|"
  printf '%s\n' "${ROWS[@]}"
} | tee target/bench/farm.md
