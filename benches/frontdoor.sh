#!/usr/bin/env bash
# Benchmark (not a test): good-login latency (real PAM through the real
# helper and daemon) idle and during each flood, side by side; see
# benches/frontdoor.py. Prints a Markdown table. Needs root (PAM, helper).
# Usage: benches/frontdoor.sh   (BENCH_LOGINS=N logins per row, default 20)
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" -eq 0 ] || { echo "benches/frontdoor.sh: run as root (real PAM)" >&2; exit 1; }
bash scripts/setup-test-env.sh >/dev/null
cargo build --release -p x2gobroker-frontend -p x2gobroker-authhelper >/dev/null
ulimit -n 16384
python3 benches/frontdoor.py target/release
