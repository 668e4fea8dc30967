#!/usr/bin/env bash
# Runs the Arazzo workflows in arazzo/ with `redocly respect` against the built server, started on
# a free port with a fresh database (an empty PGlite directory, or DATABASE_URL when set) and a
# random JWT secret (and the built-in issuer, on in development); two new users' tokens are minted
# with npm run token, and a new email is given for the account workflow. Exits with respect's
# status: any failed step or any response off the OpenAPI document fails the run.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh
work=$(mktemp -d)
port=$(free_port)
log="$work/server.log"
cleanup() { [ -n "${pid:-}" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT

npm run --silent build
export JWT_SECRET
JWT_SECRET=$(node -e 'console.log(require("crypto").randomBytes(32).toString("base64url"))')
# No webhook deliveries: with DATABASE_URL this may be the database the tests just used, whose
# endpoints (the contract fuzz registers some) point at hosts no test may call.
PORT="$port" HOST=127.0.0.1 PGLITE_DIR="$work/pglite" LOG_LEVEL=warn WEBHOOK_WORKER=off node dist/src/main.js >"$log" 2>&1 &
pid=$!
wait_ready "http://127.0.0.1:$port/health/ready" "$pid" "$log" 60 0.5

run_id=$(node -e 'console.log(require("crypto").randomUUID())')
token=$(npm run --silent token -- --sub "contract-owner-$run_id")
other=$(npm run --silent token -- --sub "contract-other-$run_id")
status=0
npx --no-install redocly respect arazzo/*.arazzo.yaml \
  --server "tasksApi=http://127.0.0.1:$port" --input "token=$token" --input "otherToken=$other" \
  --input "email=contract-$run_id@example.com" || status=$?
[ "$status" -eq 0 ] || { echo "--- server log"; cat "$log"; }
exit "$status"
