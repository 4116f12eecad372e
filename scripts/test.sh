#!/usr/bin/env bash
# The whole test suite: set-up, lints, unit tests, system tests (real PAM,
# real sockets, real privilege drops), compliance runs against the original
# and against ours. Run as root on Debian 12.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/setup-test-env.sh

export CARGO_TERM_COLOR=never
echo "== rustfmt"
cargo fmt --all -- --check
echo "== clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings
echo "== build"
cargo build --workspace --all-targets --locked
echo "== tests (unit, system; compliance against ours)"
BROKER_UNDER_TEST=ours cargo test --workspace --locked --no-fail-fast
echo "== compliance and farm scenarios against the original"
BROKER_UNDER_TEST=original cargo test -p x2gobroker-systemtests --locked --test compliance --test farm --no-fail-fast
