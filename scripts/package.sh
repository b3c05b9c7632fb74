#!/usr/bin/env bash
# The installable pgfed without Docker: the files the container image's runtime stage holds
# (package.json, bin/, the compiled dist/) with production packages only, plus `kubectl-pgfed`
# (the launcher kubectl and krew run), as <dir>/pgfed/ and <dir>/pgfed-<version>.tar.gz, and the
# krew manifest for that archive (<dir>/pgfed-krew.yaml, from deploy/krew/pgfed.yaml).
# Usage: scripts/package.sh <dir>
set -euo pipefail
cd "$(dirname "$0")/.."
out="${1:?usage: scripts/package.sh <dir>}"
mkdir -p "$out"
out="$(cd "$out" && pwd)"
node scripts/build.js --if-changed
version="$(node -p 'require("./package.json").version')"
rm -rf "$out/pgfed"
mkdir -p "$out/pgfed"
cp -R package.json package-lock.json bin dist "$out/pgfed/"
(cd "$out/pgfed" && npm ci --omit=dev --ignore-scripts --prefer-offline --no-audit --no-fund --loglevel=error >&2)
# krew links the launcher into its bin directory: resolve the link to find the package.
cat > "$out/pgfed/kubectl-pgfed" <<'SH'
#!/bin/sh
here="$(dirname "$(readlink -f "$0")")"
exec node "$here/bin/pgfed.js" "$@"
SH
chmod 0755 "$out/pgfed/kubectl-pgfed"
tar -C "$out" -czf "$out/pgfed-$version.tar.gz" pgfed
sha="$(sha256sum "$out/pgfed-$version.tar.gz" | cut -d' ' -f1)"
sed -e "s/@VERSION@/$version/g" -e "s/@SHA256@/$sha/g" deploy/krew/pgfed.yaml > "$out/pgfed-krew.yaml"
echo "package: $out/pgfed-$version.tar.gz (sha256 $sha), krew manifest $out/pgfed-krew.yaml" >&2
