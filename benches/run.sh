#!/usr/bin/env bash
# Benchmark: ours and the original side by side, same machine, same run.
# Not a test: prints a Markdown table (also written to target/bench/results.md).
# Needs: wrk, curl, hyperfine, the original (python3-x2gobroker), a release build of ours.
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
  # The original serves one request at a time: let it finish the backlog a
  # previous run left queued, or that backlog is measured instead.
  curl -s -m 300 -o /dev/null -d "$2" "http://127.0.0.1:$1/plain/"
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

# ---- SSH mode: wall time of one `x2gobroker-ssh --task listsessions` --------
# Ours: the command line, the root helper, a worker dropped to x2gobroker.
# The original: `x2gobroker --task listsessions` (its SSH mode in-process).
# Both as root with the same files (require-password off: no cookies).
SSH_N=${SSH_PROFILES:-100}
SSH_RUNS=200; ORIG_RUNS=20; [ "$QUICK" = "--quick" ] && { SSH_RUNS=50; ORIG_RUNS=5; }
python3 benches/gen_profiles.py "$SSH_N" > "$WORK/ssh-profiles.conf"
# The worker runs as x2gobroker and must read the files.
chmod 0755 "$WORK"; chmod 0644 "$WORK/x2gobroker.conf" "$WORK/ssh-profiles.conf"
SSH_ENV=(X2GOBROKER_CONFIG="$WORK/x2gobroker.conf" X2GOBROKER_SESSIONPROFILES="$WORK/ssh-profiles.conf")
env "${SSH_ENV[@]}" "$ROOT/target/release/x2gobroker-authhelper" --socket "$WORK/ssh/helper.sock" \
  --socket-mode 0666 --foreground >"$WORK/ssh-helper.log" 2>&1 &
PID=$!; PIDS+=("$PID")
for _ in $(seq 300); do [ -S "$WORK/ssh/helper.sock" ] && break; sleep 0.1; done
export X2GOBROKER_SSH_SOCKET="$WORK/ssh/helper.sock"
ours_out=$("$ROOT/target/release/x2gobroker-ssh" --task listsessions)
orig_out=$(env "${SSH_ENV[@]}" LOGNAME=root /usr/bin/python3 /usr/bin/x2gobroker --task listsessions 2>/dev/null)
[ "$ours_out" = "$orig_out" ] && SSH_SAME=yes || SSH_SAME=NO
hyperfine -N --warmup 5 --runs "$SSH_RUNS" --export-json "$WORK/ssh-ours.json" \
  "$ROOT/target/release/x2gobroker-ssh --task listsessions" >/dev/null
env "${SSH_ENV[@]}" LOGNAME=root hyperfine -N --warmup 2 --runs "$ORIG_RUNS" --export-json "$WORK/ssh-orig.json" \
  "/usr/bin/python3 /usr/bin/x2gobroker --task listsessions" >/dev/null
mean_ms() { python3 -c "import json,sys; r=json.load(open(sys.argv[1]))['results'][0]; print('%.1f ± %.1f' % (r['mean']*1000, r['stddev']*1000))" "$1"; }
mean_raw() { python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['results'][0]['mean'])" "$1"; }
{
  echo
  echo "| SSH mode, listsessions, $SSH_N profiles | original ms | ours ms | original ÷ ours | same output |"
  echo "|---|---:|---:|---:|---|"
  echo "| one command, wall time (hyperfine) | $(mean_ms "$WORK/ssh-orig.json") | $(mean_ms "$WORK/ssh-ours.json") | $(ratio "$(mean_raw "$WORK/ssh-orig.json")" "$(mean_raw "$WORK/ssh-ours.json")") | $SSH_SAME |"
} | tee -a "$ROOT/target/bench-results.md"
