#!/usr/bin/env bash
# Benchmark: ours and the original side by side, same machine, same run.
# Not a test: prints a Markdown table (also written to target/bench/results.md).
# Needs: wrk, curl, the original (python3-x2gobroker), a release build of ours.
# Usage: benches/run.sh [--quick]
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
QUICK=${1:-}
DUR=${BENCH_SECONDS:-10}
[ "$QUICK" = "--quick" ] && DUR=3

bash scripts/setup-test-env.sh >/dev/null
cargo build --release -p x2gobroker-frontend -p x2gobroker-authhelper >/dev/null
OURS=$ROOT/target/release/x2gobroker-daemon
ORIG=(/usr/bin/python3 /usr/bin/x2gobroker -M HTTP)

WORK=$(mktemp -d /tmp/x2gobench.XXXXXX)
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done; rm -rf "$WORK"; }
trap cleanup EXIT

cat > "$WORK/x2gobroker.conf" <<CONF
[global]
require-password = false
default-auth-mech = none
default-portscan-x2goservers = false
cookie-directory = $WORK/cookies
my-cookie-file = $WORK/authid
[broker_inifile]
enable = true
auth-mech = none
CONF
mkdir -p "$WORK/cookies"; echo "bench-cookie" > "$WORK/authid"

wait_port() { # port: poll until the broker answers, 30 s at most
  for _ in $(seq 300); do
    curl -s -o /dev/null "http://127.0.0.1:$1/" && return 0
    sleep 0.1
  done
  echo "broker on port $1 did not come up" >&2; return 1
}

start() { # which nprofiles port -> sets PID
  local which=$1 n=$2 port=$3
  python3 benches/gen_profiles.py "$n" > "$WORK/profiles-$n.conf"
  local env=(X2GOBROKER_SESSIONPROFILES="$WORK/profiles-$n.conf" X2GOBROKER_CONFIG="$WORK/x2gobroker.conf")
  if [ "$which" = ours ]; then
    env "${env[@]}" "$OURS" -C "$WORK/x2gobroker.conf" -b "127.0.0.1:$port" >"$WORK/$which-$n.log" 2>&1 &
  else
    env "${env[@]}" "${ORIG[@]}" -C "$WORK/x2gobroker.conf" -b "127.0.0.1:$port" >"$WORK/$which-$n.log" 2>&1 &
  fi
  PID=$!; PIDS+=("$PID")
  wait_port "$port"
}

rss_kb() { awk '/^VmRSS/ {print $2}' "/proc/$1/status"; }
hwm_kb() { awk '/^VmHWM/ {print $2}' "/proc/$1/status"; }

wrk_rps() { # port body duration -> requests/s
  cat > "$WORK/post.lua" <<LUA
wrk.method = "POST"
wrk.body = "$2"
wrk.headers["Content-Type"] = "application/x-www-form-urlencoded"
LUA
  wrk -t2 -c8 --timeout 60s -d"$3"s -s "$WORK/post.lua" "http://127.0.0.1:$1/plain/" | awk '/Requests\/sec/ {print $2}'
}

latency_ms() { # port body count -> median ms of single requests
  for _ in $(seq "$3"); do
    curl -s -o /dev/null -w '%{time_total}\n' -d "$2" "http://127.0.0.1:$1/plain/"
  done | sort -n | awk '{a[NR]=$1} END {printf "%.2f", a[int((NR+1)/2)]*1000}'
}

LIST="user=xbt-alice&task=listsessions"
SELECT="user=xbt-alice&task=selectsession&sid=p0000"
declare -A R
port=18400
for n in 2 100 1000; do
  for which in original ours; do
    port=$((port + 1))
    start "$which" "$n" "$port"
    idle=$(rss_kb "$PID")
    d=$DUR; [ "$which" = original ] && [ "$n" = 1000 ] && d=$((DUR * 3))
    R[$which,$n,list]=$(wrk_rps "$port" "$LIST" "$d")
    R[$which,$n,sel]=$(wrk_rps "$port" "$SELECT" "$d")
    cnt=21; [ "$which" = original ] && [ "$n" = 1000 ] && cnt=3
    R[$which,$n,lat]=$(latency_ms "$port" "$LIST" "$cnt")
    R[$which,$n,idle]=$((idle / 1024))
    R[$which,$n,peak]=$(( $(hwm_kb "$PID") / 1024 ))
    kill "$PID"; wait "$PID" 2>/dev/null || true
  done
done

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.0f×", a / b; else print "n/a" }'; }
{
  echo "| profiles | task | original req/s | ours req/s | ours ÷ original |"
  echo "|---:|---|---:|---:|---:|"
  for n in 2 100 1000; do
    for t in list sel; do
      name=listsessions; [ $t = sel ] && name=selectsession
      echo "| $n | $name | ${R[original,$n,$t]} | ${R[ours,$n,$t]} | $(ratio "${R[ours,$n,$t]}" "${R[original,$n,$t]}") |"
    done
  done
  echo
  echo "| profiles | single listsessions, median ms (original) | (ours) | idle RSS MiB (original / ours) | peak RSS MiB after load (original / ours) |"
  echo "|---:|---:|---:|---:|---:|"
  for n in 2 100 1000; do
    echo "| $n | ${R[original,$n,lat]} | ${R[ours,$n,lat]} | ${R[original,$n,idle]} / ${R[ours,$n,idle]} | ${R[original,$n,peak]} / ${R[ours,$n,peak]} |"
  done
} | tee "$ROOT/target/bench-results.md"
