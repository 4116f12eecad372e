#!/usr/bin/env bash
# Benchmark (not a test): cookie-chain listsessions — every request presents
# the cookie the previous answer handed out — against one broker directly
# with the files store and with Redis, and through haproxy (round robin)
# with one and with two brokers sharing Redis. Prints a Markdown table (also
# written to target/bench-ha.md).
# Needs: wrk, redis-server, haproxy, a release build of ours.
# Usage: benches/ha.sh [--quick]
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
DUR=${BENCH_SECONDS:-10}
[ "${1:-}" = "--quick" ] && DUR=3
CONNS=${BENCH_CONNECTIONS:-8}

bash scripts/setup-test-env.sh >/dev/null
cargo build --release -p x2gobroker-frontend >/dev/null
DAEMON=$ROOT/target/release/x2gobroker-daemon

WORK=$(mktemp -d /tmp/x2gobench-ha.XXXXXX)
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done; rm -rf "$WORK"; }
trap cleanup EXIT

REDIS_PORT=18500
redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save "" --appendonly no --dir "$WORK" \
  --daemonize no >"$WORK/redis.log" 2>&1 &
REDIS_PID=$!; PIDS+=("$REDIS_PID")
for _ in $(seq 100); do redis-cli -p "$REDIS_PORT" ping >/dev/null 2>&1 && break; sleep 0.1; done

python3 benches/gen_profiles.py 2 > "$WORK/profiles.conf"
conf() { # name state-store
  cat > "$WORK/$1.conf" <<CONF
[global]
default-auth-mech = none
default-portscan-x2goservers = false
cookie-directory = $WORK/cookies-$1
key-removal-directory = $WORK/removals-$1
state-store = $2
CONF
}
conf files files
conf redis "redis://127.0.0.1:$REDIS_PORT/0"

wait_port() {
  for _ in $(seq 300); do
    curl -s -o /dev/null -d "task=testcon" "http://127.0.0.1:$1/plain/" && return 0
    sleep 0.1
  done
  echo "port $1 did not come up" >&2; return 1
}

start_broker() { # conf port -> PID
  X2GOBROKER_SESSIONPROFILES="$WORK/profiles.conf" "$DAEMON" -C "$WORK/$1.conf" -b "127.0.0.1:$2" \
    >"$WORK/broker-$2.log" 2>&1 &
  PID=$!; PIDS+=("$PID")
  wait_port "$2"
}

start_haproxy() { # port backend-ports...
  local port=$1; shift
  {
    printf 'global\n  maxconn 4096\ndefaults\n  mode http\n  timeout connect 1s\n  timeout client 60s\n  timeout server 60s\n'
    printf 'frontend fe\n  bind 127.0.0.1:%s\n  default_backend brokers\nbackend brokers\n  balance roundrobin\n' "$port"
    local i=0
    for p in "$@"; do i=$((i + 1)); printf '  server b%s 127.0.0.1:%s check\n' "$i" "$p"; done
  } > "$WORK/haproxy-$port.cfg"
  haproxy -f "$WORK/haproxy-$port.cfg" -db >"$WORK/haproxy-$port.log" 2>&1 &
  PID=$!; PIDS+=("$PID")
  wait_port "$port"
}

# One connection per wrk thread: each thread keeps its own cookie chain
# (its own user); a refused or failed answer starts a new chain.
cat > "$WORK/chain.lua" <<'LUA'
local counter = 0
function setup(thread)
  counter = counter + 1
  thread:set("id", counter)
end
local cookie = nil
function request()
  local user = "xrd-bench" .. id
  local body
  if cookie then
    body = "user=" .. user .. "&authid=" .. cookie .. "&task=listsessions"
  else
    body = "user=" .. user .. "&password=x&task=listsessions"
  end
  return wrk.format("POST", "/plain/", { ["Content-Type"] = "application/x-www-form-urlencoded" }, body)
end
function response(status, headers, body)
  if status == 200 then
    cookie = body:match("AUTHID:([%w%-]+)")
  else
    cookie = nil
  end
end
LUA

measure() { # port -> "rps p50 p99 avg_ms errors requests"
  local out
  out=$(wrk -t"$CONNS" -c"$CONNS" -d"$DUR"s --latency -s "$WORK/chain.lua" "http://127.0.0.1:$1/plain/")
  echo "$out" > "$WORK/wrk-$1.txt"
  to_ms() { awk '{ v=$1; if (v ~ /us$/) { sub(/us$/,"",v); v/=1000 } else if (v ~ /ms$/) { sub(/ms$/,"",v) } else if (v ~ /s$/) { sub(/s$/,"",v); v*=1000 }; printf "%.2f", v }'; }
  local rps p50 p99 avg errors
  rps=$(echo "$out" | awk '/Requests\/sec/ {printf "%.0f", $2}')
  p50=$(echo "$out" | awk '$1 == "50%" {print $2}' | to_ms)
  p99=$(echo "$out" | awk '$1 == "99%" {print $2}' | to_ms)
  avg=$(echo "$out" | awk '$1 == "Latency" {print $2; exit}' | to_ms)
  errors=$(echo "$out" | awk '/Non-2xx/ {print $5}')
  local requests
  requests=$(echo "$out" | awk '/requests in/ {print $1}')
  echo "$rps $p50 $p99 $avg ${errors:-0} $requests"
}

served() { # control... : requests counted by each broker's log
  grep -c "client address is" "$@" | awk -F: '{printf "%s%s", sep, $2; sep=" / "}'
}

declare -A R
start_broker files 18511; R[files]=$(measure 18511)
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
start_broker redis 18512
before=$(cpu_ticks "$REDIS_PID"); R[redis]=$(measure 18512); after=$(cpu_ticks "$REDIS_PID")
REDIS_TICKS=$((after - before))
start_haproxy 18520 18512; R[ha1]=$(measure 18520)
start_broker redis 18513
: > "$WORK/broker-18512.log"
start_haproxy 18521 18512 18513; R[ha2]=$(measure 18521)
SPLIT=$(served "$WORK/broker-18512.log" "$WORK/broker-18513.log")

row() { # label key
  read -r rps p50 p99 avg errors _ <<<"${R[$2]}"
  echo "| $1 | $rps | $p50 | $p99 | $avg | $errors |"
}
read -r files_rps _ _ files_avg _ <<<"${R[files]}"
read -r redis_rps _ _ redis_avg _ redis_requests <<<"${R[redis]}"
TICK=$(getconf CLK_TCK)
{
  echo "| cookie-chain listsessions, $CONNS clients, ${DUR} s | req/s | p50 ms | p99 ms | mean ms | non-2xx |"
  echo "|---|---:|---:|---:|---:|---:|"
  row "one broker, files store (direct)" files
  row "one broker, Redis store (direct)" redis
  row "haproxy → one broker, Redis" ha1
  row "haproxy → two brokers, Redis" ha2
  echo
  awk -v fa="$files_avg" -v ra="$redis_avg" -v fr="$files_rps" -v rr="$redis_rps" \
      -v ticks="$REDIS_TICKS" -v hz="$TICK" -v n="$redis_requests" 'BEGIN {
    printf "Redis cost per request: %.1f µs of redis-server CPU (%d requests, 2 scripts each); mean latency %.2f ms with Redis, %.2f ms with files; service time (1/throughput) %.1f µs with Redis, %.1f µs with files.\n", ticks / hz * 1e6 / n, n, ra, fa, 1e6 / rr, 1e6 / fr }'
  echo "Requests served by the two brokers behind haproxy: $SPLIT."
} | tee "$ROOT/target/bench-ha.md"
