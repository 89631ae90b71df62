#!/usr/bin/env bash
# Set up and run the whole test suite: installs what the tests need (Python packages, Debian's wrk,
# Node.js for Claude Code, PostgreSQL and Redis), then runs ruff and pytest. Extra arguments go to
# pytest. The tests start their own throwaway PostgreSQL and Redis servers (tests/support/services.py);
# nothing here starts or touches the machine's own.
set -euo pipefail
cd "$(dirname "$0")/.."
need_apt=()
command -v wrk >/dev/null 2>&1 || need_apt+=(wrk)
command -v node >/dev/null 2>&1 || need_apt+=(nodejs)
command -v npm >/dev/null 2>&1 || need_apt+=(npm)
ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1 || need_apt+=(postgresql)
command -v redis-server >/dev/null 2>&1 || need_apt+=(redis-server)
command -v chromium >/dev/null 2>&1 || need_apt+=(chromium)
if [ ${#need_apt[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}" >/dev/null
  else
    echo "missing: ${need_apt[*]} (install them, or run as root to have this script do it)" >&2
  fi
fi
scripts/setup.sh --test
.venv/bin/ruff check src tests bench
.venv/bin/mypy src
exec .venv/bin/python -m pytest -p no:cacheprovider "$@"
