#!/bin/sh
# Makes a fresh clone runnable: installs the npm dependencies when they are missing or stale,
# then compiles TypeScript when the sources are newer than dist/ (the library) or build/ (the apps). Quiet when nothing to do.
set -e
cd "$(dirname "$0")/.."
if [ ! -f node_modules/.package-lock.json ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  echo "setup: installing npm dependencies" >&2
  npm ci --no-audit --no-fund >&2
fi
if [ ! -f dist/cli/main.js ] || [ -n "$(find src -newer dist/cli/main.js -name '*.ts' | head -1)" ]; then
  echo "setup: compiling TypeScript" >&2
  npx tsc -p tsconfig.build.json
fi
# The applications on top of the library (bench, demo) compile apart, with their own copy of it, into
# build/: they are not part of the published package.
if [ ! -f build/bench/main.js ] || [ ! -f build/demo/main.js ] || [ -n "$(find src bench demo -newer build/bench/main.js -name '*.ts' | head -1)" ]; then
  echo "setup: compiling the bench and the demo" >&2
  npx tsc -p tsconfig.apps.json
fi
