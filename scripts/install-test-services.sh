#!/usr/bin/env bash
# System packages the test suite starts for real: a PostgreSQL server (the database tests
# run on SQLite and PostgreSQL) and Debian's Chromium (the browser tests drive it with
# Playwright). Debian packages; needs root (or sudo) when missing.
set -euo pipefail
need=()
if ! command -v initdb >/dev/null 2>&1 && ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
  need+=(postgresql)
fi
if ! command -v chromium >/dev/null 2>&1; then
  need+=(chromium)
fi
[ ${#need[@]} -eq 0 ] && exit 0
if [ "$(id -u)" -eq 0 ]; then
  apt-get update -q
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${need[@]}"
elif command -v sudo >/dev/null 2>&1; then
  sudo apt-get update -q
  sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${need[@]}"
else
  echo "the tests need these Debian packages: ${need[*]} (apt-get install ${need[*]})" >&2
  exit 1
fi
