#!/usr/bin/env bash
# Install PostgreSQL 15 from Debian's packages when initdb is missing (the tests start their own
# throwaway cluster; nothing is configured system-wide).
set -euo pipefail
if command -v initdb >/dev/null 2>&1 || ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
    exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
    echo "PostgreSQL is missing: run 'sudo apt-get install postgresql-15' (or run as root)" >&2
    exit 1
fi
echo "Installing PostgreSQL 15 from Debian's packages..."
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq postgresql-15 >/dev/null
# Debian's package starts a system cluster we do not use.
service postgresql stop >/dev/null 2>&1 || true
