#!/usr/bin/env bash
# Reproduce the committed Swagger UI files from the version pinned in package-lock.json:
#   gateway/static/openapi/update.sh
# Installs with `npm ci --ignore-scripts` in a temporary directory (no install scripts run, no
# node_modules left here) and copies only the minified dist the gateway serves, with its licence.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
cp "$here/package.json" "$here/package-lock.json" "$work/"
(cd "$work" && npm ci --ignore-scripts --no-audit --no-fund --silent)
dist="$work/node_modules/swagger-ui-dist"
for name in swagger-ui-bundle.js swagger-ui.css LICENSE NOTICE; do
    cp "$dist/$name" "$here/$name"
done
# the bundles end with a sourceMappingURL comment for .map files we do not ship
sed -i '/^\/\/# sourceMappingURL=/d; s#/\*\# sourceMappingURL=[^*]*\*/##' \
    "$here/swagger-ui-bundle.js" "$here/swagger-ui.css"
node -p "'swagger-ui-dist ' + require('$dist/package.json').version" > "$here/VERSION"
