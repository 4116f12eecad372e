#!/usr/bin/env bash
# Builds the Debian package x2gobroker-rs from this checkout (debian/).
#
#   scripts/build-deb.sh [--bin-dir DIR] [--out DIR]
#
# Without --bin-dir it first builds the programs (cargo build --release)
# in the checkout, so target/ and its incremental state are reused; with it,
# the programs in DIR are packaged as they are. The package itself is built
# by dpkg-buildpackage in a temporary copy of the sources (dpkg-buildpackage
# writes its results next to the source tree, and the checkout stays
# clean); the .deb files land in --out (default target/debian). Needs the
# Build-Depends of debian/control (scripts/setup-test-env.sh installs them).
# DEB_BUILD_OPTIONS is passed on (e.g. noautodbgsym).
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bin_dir=""
out="$repo_root/target/debian"

while [ $# -gt 0 ]; do
  case "$1" in
    --bin-dir) bin_dir="${2:?--bin-dir needs a directory}"; shift 2 ;;
    --bin-dir=*) bin_dir="${1#*=}"; shift ;;
    --out) out="${2:?--out needs a directory}"; shift 2 ;;
    --out=*) out="${1#*=}"; shift ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "build-deb.sh: unknown argument: $1 (see --help)" >&2; exit 2 ;;
  esac
done

if [ -z "$bin_dir" ]; then
  (cd "$repo_root" && cargo build --release --locked -p x2gobroker-frontend -p x2gobroker-authhelper --bins)
  bin_dir="$repo_root/target/release"
fi
bin_dir="$(cd "$bin_dir" && pwd)"

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
mkdir "$work/x2gobroker-rs"
# The sources without build outputs (target/ of any crate) and git data.
tar -C "$repo_root" --exclude=./.git --exclude=target --exclude=./debian/x2gobroker-rs \
  --exclude=./debian/.debhelper -cf - . | tar -C "$work/x2gobroker-rs" -xf -

(cd "$work/x2gobroker-rs" && X2GOBROKER_BIN_DIR="$bin_dir" dpkg-buildpackage -b -uc -us)

mkdir -p "$out"
built=()
for f in "$work"/*.deb; do
  [ -e "$f" ] || continue
  cp "$f" "$out/"
  built+=("$out/$(basename "$f")")
done
[ ${#built[@]} -gt 0 ] || { echo "build-deb.sh: dpkg-buildpackage made no .deb" >&2; exit 1; }
printf 'build-deb.sh: built %s\n' "${built[@]}"
