#!/usr/bin/env bash
# Idempotent set-up for the test suite (run as root on Debian 12): system
# packages, the daemon user, test users with known passwords, PAM service.
set -euo pipefail

[ "$(id -u)" -eq 0 ] || { echo "setup-test-env.sh: must run as root (tests need real PAM and privilege drops)" >&2; exit 1; }

PACKAGES=(
  build-essential pkg-config libpam0g-dev libclang-dev libpam-modules passwd login
  openssh-server openssh-client systemd procps iproute2 curl openssl
  python3-x2gobroker x2gobroker x2gobroker-daemon x2gobroker-authservice x2gobroker-ssh
  x2gobroker-loadchecker
  pyhoca-cli wrk hyperfine
  x2goserver x2goserver-xsession x2gobroker-agent sudo postgresql libdbd-pg-perl xvfb pwgen
  debhelper dpkg-dev lintian
  x2goclient xdotool imagemagick tesseract-ocr tesseract-ocr-eng
  redis-server haproxy
)
missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup-test-env: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  # policy-rc.d keeps the packages' own services from starting.
  printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d; chmod 755 /usr/sbin/policy-rc.d
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# The daemon (magic) user and the SSH-mode group, as the packages create them.
getent group x2gobroker >/dev/null || groupadd --system x2gobroker
getent passwd x2gobroker >/dev/null || useradd --system -g x2gobroker -d /var/lib/x2gobroker -s /usr/sbin/nologin x2gobroker
getent group x2gobroker-users >/dev/null || groupadd --system x2gobroker-users

# Test groups and users. Passwords are test fixtures, not secrets.
for g in xbt-staff xbt-devs xbt-admins; do
  getent group "$g" >/dev/null || groupadd "$g"
done
# name:password:supplementary groups
USERS=(
  "xbt-alice:Alice-pw-1:xbt-staff"
  "xbt-bob:Bob-pw-2:xbt-staff,xbt-devs"
  "xbt-carol:Carol-pw-3:xbt-devs"
  "xbt-dave:Dave-pw-4:"
  "xbt-erin:Erin-pw-5:xbt-admins"
  "xbt-frank:Frank-pw-6:"
  "xbt-locked:Locked-pw-7:"
  "xbt-expired:Expired-pw-8:"
  "xhf-anna:Anna-pw-1:"
  "xhf-ben:Ben-pw-2:"
  "xhf-mallory:Mallory-pw-3:x2gobroker-users"
  "xrd-ha:Ha-pw-9:"
)
for entry in "${USERS[@]}"; do
  IFS=: read -r name pw groups <<<"$entry"
  getent passwd "$name" >/dev/null || useradd -m -U -s /bin/bash "$name"
  [ -n "$groups" ] && usermod -G "$groups" "$name"
  echo "$name:$pw" | chpasswd
done
# setpass tests change these users' passwords; each test resets its own
# user's password when it starts.
for name in xsp-carol xsp-dan xsp-erin xsp-fay; do
  getent passwd "$name" >/dev/null || useradd -m -U -s /bin/bash "$name"
done
usermod -L xbt-locked
chage -E 0 xbt-expired
usermod -U xbt-alice >/dev/null 2>&1 || true

# Admin tool tests (tests/tests/admin_tools.rs, farm.rs): a key owner
# standing in for the broker account, and a PAM user for testauth.
for entry in "xts-keyowner:" "xts-tauth:Tauth-pw-1"; do
  IFS=: read -r name pw <<<"$entry"
  getent passwd "$name" >/dev/null || useradd -m -U -s /bin/bash "$name"
  if [ -n "$pw" ]; then echo "$name:$pw" | chpasswd; fi
done

# PAM service used by both brokers' tests.
cat > /etc/pam.d/x2gobroker <<'PAM'
# PAM configuration for the X2Go Session Broker.
@include common-auth
@include common-account
@include common-password
PAM
echo "setup-test-env: ok"
