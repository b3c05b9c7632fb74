#!/usr/bin/env bash
# One setup step for both README commands (`npm run lab`, `npm test`):
#  1. `npm ci` when node_modules is missing or older than package-lock.json;
#  2. the Debian packages the command needs, installed with apt-get when missing and running as
#     root, otherwise a message naming them.
set -euo pipefail
cd "$(dirname "$0")/.."
purpose="${1:-test}"

stamp="node_modules/.pgfed-lock.sha256"
want=$(sha256sum package-lock.json | cut -d' ' -f1)
if [ ! -d node_modules ] || [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  echo "setup: installing npm packages (npm ci)…" >&2
  npm ci --no-audit --no-fund --loglevel=error >&2
  echo "$want" > "$stamp"
fi

# command to look for -> Debian package that provides it
declare -A pkg_of=(
  [initdb]=postgresql
  [nats-server]=nats-server
  [kubectl]=kubernetes-client
  [prometheus]=prometheus
  [promtool]=prometheus
  [prometheus-alertmanager]=prometheus-alertmanager
)
case "$purpose" in
  lab)  needed=(initdb nats-server) ;;
  test) needed=(initdb nats-server kubectl prometheus promtool prometheus-alertmanager) ;;
  *)    echo "setup: unknown purpose '$purpose' (lab|test)" >&2; exit 64 ;;
esac

have() {
  if [ "$1" = initdb ]; then
    ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || command -v initdb >/dev/null 2>&1
  else
    command -v "$1" >/dev/null 2>&1 || [ -x "/usr/sbin/$1" ] || [ -x "/usr/bin/$1" ]
  fi
}

missing=()
for c in "${needed[@]}"; do
  have "$c" || missing+=("${pkg_of[$c]}")
done
[ ${#missing[@]} -eq 0 ] && exit 0
mapfile -t missing < <(printf '%s\n' "${missing[@]}" | sort -u)

if [ "$(id -u)" -ne 0 ]; then
  echo "setup: missing system packages: ${missing[*]}" >&2
  echo "setup: install them with: sudo apt-get install -y ${missing[*]}" >&2
  exit 1
fi
echo "setup: installing system packages: ${missing[*]}…" >&2
# Keep package install scripts from starting services on their standard ports: tests start their own.
made_policy=0
if [ ! -e /usr/sbin/policy-rc.d ]; then
  printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d && made_policy=1
fi
trap '[ $made_policy -eq 1 ] && rm -f /usr/sbin/policy-rc.d' EXIT
export DEBIAN_FRONTEND=noninteractive
if ! apt-get install -y -q --no-install-recommends "${missing[@]}" >&2; then
  apt-get update -q >&2
  apt-get install -y -q --no-install-recommends "${missing[@]}" >&2
fi
