#!/usr/bin/env bash
# Set up and run the gateway: built-in catalogue, SQLite in ./bytespike.db, no external service.
# Any arguments go to `bytespike serve` (try --demo, --port 8080, --config FILE).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
exec .venv/bin/bytespike serve "$@"
