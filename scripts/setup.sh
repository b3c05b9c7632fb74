#!/usr/bin/env bash
# One setup step for both README commands (`npm run lab`, `npm test`) and the benchmarks:
#  1. a supported Node.js: the machine's own when it is >= 22.19, otherwise Node 24 installed from
#     the npm registry (the `node` package, which ships the binary) into .tools/node24 (ignored by
#     git); which Node runs is printed (for lab and test; `none` prints only an install);
#  2. `npm ci` when node_modules is missing or was installed from another package-lock.json;
#  3. for lab and test, the compiled CLI in dist/ (scripts/build.js) when a source changed;
#  4. the Debian packages the command needs, installed with apt-get when missing and running as
#     root, otherwise a message naming them;
#  5. with `-- COMMAND…`, exec COMMAND with that Node first on PATH (and node_modules/.bin), so
#     tsx, vitest, tsc and eslint all run on it.
# Usage: scripts/setup.sh lab|test|none [-- COMMAND…]
set -euo pipefail
cd "$(dirname "$0")/.."
purpose="${1:-test}"
shift || true
if [ "${1:-}" = "--" ]; then shift; fi

# Node 20 reached end of life on 2026-04-30; client-node 2.x, commander 15 and vitest 5 need >= 22.
node_ok() { # $1 = node binary; true when it is >= 22.19
  "$1" -e 'const [a,b]=process.versions.node.split(".").map(Number);process.exit(a>22||(a===22&&b>=19)?0:1)' 2>/dev/null
}
tools_node="$PWD/.tools/node24/node_modules/node/bin"
if command -v node >/dev/null 2>&1 && node_ok node; then
  :
elif [ -x "$tools_node/node" ] && node_ok "$tools_node/node"; then
  export PATH="$tools_node:$PATH"
else
  echo "setup: Node $(node --version 2>/dev/null || echo '(none)') is older than 22.19; installing Node 24 from the npm registry into .tools/node24…" >&2
  mkdir -p .tools/node24
  npm install --prefix .tools/node24 --no-audit --no-fund --no-save --loglevel=error node@24 >&2
  node_ok "$tools_node/node" || { echo "setup: the Node 24 install in .tools/node24 does not run" >&2; exit 1; }
  export PATH="$tools_node:$PATH"
fi
# `none` serves `npm run pgfed` and single tools: keep their output clean unless Node was installed.
[ "$purpose" = none ] || echo "setup: Node $(node --version) ($(command -v node))" >&2

stamp="node_modules/.pgfed-lock.sha256"
# The stamp names the lockfile and Node's major: a change of either reinstalls.
want="$(sha256sum package-lock.json | cut -d' ' -f1) node$(node -p 'process.versions.node.split(".")[0]')"
if [ ! -d node_modules ] || [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  echo "setup: installing npm packages (npm ci)…" >&2
  npm ci --no-audit --no-fund --loglevel=error >&2
  echo "$want" > "$stamp"
fi

# The compiled CLI (dist/, what bin/pgfed.js runs): rebuilt when any source changed (~0.2 s).
if [ "$purpose" != none ]; then node scripts/build.js --if-changed >&2; fi

# command to look for -> Debian package that provides it
declare -A pkg_of=(
  [initdb]=postgresql
  [nats-server]=nats-server
  [kubectl]=kubernetes-client
  [prometheus]=prometheus
  [promtool]=prometheus
  [prometheus-alertmanager]=prometheus-alertmanager
  [chromium]=chromium
)
case "$purpose" in
  none) needed=() ;;
  lab)  needed=(initdb nats-server) ;;
  test) needed=(initdb nats-server kubectl prometheus promtool prometheus-alertmanager chromium) ;;
  *)    echo "setup: unknown purpose '$purpose' (lab|test|none)" >&2; exit 64 ;;
esac

have() {
  if [ "$1" = initdb ]; then
    ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || command -v initdb >/dev/null 2>&1
  else
    command -v "$1" >/dev/null 2>&1 || [ -x "/usr/sbin/$1" ] || [ -x "/usr/bin/$1" ]
  fi
}

run_command() {
  [ $# -eq 0 ] && exit 0
  export PATH="$PWD/node_modules/.bin:$PATH"
  exec "$@"
}

missing=()
for c in "${needed[@]}"; do
  have "$c" || missing+=("${pkg_of[$c]}")
done
[ ${#missing[@]} -eq 0 ] && run_command "$@"
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
drop_policy() { if [ $made_policy -eq 1 ]; then rm -f /usr/sbin/policy-rc.d; fi; }
trap drop_policy EXIT
export DEBIAN_FRONTEND=noninteractive
if ! apt-get install -y -q --no-install-recommends "${missing[@]}" >&2; then
  apt-get update -q >&2
  apt-get install -y -q --no-install-recommends "${missing[@]}" >&2
fi
drop_policy
trap - EXIT
run_command "$@"
