#!/usr/bin/env bash
# Proves that the client generators frontend teams use work with the contract: in sdk-check/, a
# consumer project with its own pinned dependencies (npm ci --prefix sdk-check; the root
# node_modules is not touched), generates from generated/openapi.json
#   - types with openapi-typescript, default flags (Node 20), used through openapi-fetch;
#   - an SDK with @hey-api/openapi-ts, Fetch API client (Node 24 from sdk-check's own `node`
#     package: it needs Node >= 22.18);
# type-checks both with their scenario programs (tsc --strict --noEmit), then starts the built
# server on a free loopback port with a fresh PGlite directory and runs the scenario with each, on
# Node 20 and on Node 24:
# register and log in, create tasks, search with a q full of reserved characters, follow
# next_cursor, PATCH with If-Match (200), again with the stale ETag (412, a typed error narrowed on
# status), an empty title (422 with its errors). Every stage runs even when an earlier one failed,
# so one run shows everything that is wrong; the exit status is non-zero if anything failed.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh
root=$PWD
work=$(mktemp -d)
log="$work/server.log"
cleanup() {
  [ -n "${build_pid:-}" ] && kill "$build_pid" 2>/dev/null && wait "$build_pid" 2>/dev/null || true
  [ -n "${pid:-}" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

failures=()
stage() { printf '\n--- [%ss] %s\n' "$SECONDS" "$*"; }
failed() { failures+=("$1"); echo "FAILED: $1" >&2; }

# The server's build runs meanwhile; the server itself starts before the type-check.
npm run --silent build >"$work/build.log" 2>&1 &
build_pid=$!

stage "install sdk-check (npm ci --prefix sdk-check)"
npm ci --prefix sdk-check --no-audit --no-fund --loglevel=error
node24="$root/sdk-check/node_modules/.bin/node"
"$node24" -e 'const [a, b] = process.versions.node.split(".").map(Number); if (a < 22 || (a === 22 && b < 18)) throw new Error(`sdk-check node is ${process.version}, @hey-api/openapi-ts needs >= 22.18`)'
echo "node $(node --version) (system), $("$node24" --version) (sdk-check/node_modules/.bin/node)"

stage "generate: openapi-typescript (default flags) and @hey-api/openapi-ts (openapi-ts.config.ts)"
rm -rf sdk-check/out
(cd sdk-check && node node_modules/.bin/openapi-typescript ../generated/openapi.json --output out/openapi-typescript/api.ts) \
  || failed "openapi-typescript could not generate from generated/openapi.json"
(cd sdk-check && "$node24" node_modules/.bin/openapi-ts) \
  || failed "@hey-api/openapi-ts could not generate from generated/openapi.json"
# openapi-typescript on Node 24 too: the same types, byte for byte.
(cd sdk-check && "$node24" node_modules/.bin/openapi-typescript ../generated/openapi.json --output out/node24/api.ts \
  && cmp out/openapi-typescript/api.ts out/node24/api.ts) \
  || failed "openapi-typescript on Node 24 did not write what it writes on Node 20"

stage "start the built server (fresh PGlite directory, loopback, webhooks off)"
wait "$build_pid" || { cat "$work/build.log"; echo "npm run build failed" >&2; exit 1; }
build_pid=
port=$(free_port)
origin="http://127.0.0.1:$port"
JWT_SECRET=$(node -e 'console.log(require("crypto").randomBytes(32).toString("base64url"))') \
  NODE_ENV=development AUTH_BUILTIN=true PORT="$port" HOST=127.0.0.1 PGLITE_DIR="$work/pglite" \
  LOG_LEVEL=warn WEBHOOK_WORKER=off node dist/src/main.js >"$log" 2>&1 &
pid=$!

stage "type-check both clients and the scenarios: tsc --strict --noEmit -p sdk-check"
node sdk-check/node_modules/.bin/tsc --strict --noEmit --pretty true -p sdk-check \
  || failed "the generated clients or the scenarios do not compile under tsc --strict (errors above)"

stage "wait for the server"
wait_ready "$origin/health/ready" "$pid" "$log" 60 0.5

# Each client runs on Node 20 and on Node 24, whichever Node generated it.
for scenario in openapi-fetch hey-api; do
  for runtime in node "$node24"; do
    stage "scenario: $scenario on Node $("$runtime" --version)"
    SDK_CHECK_ORIGIN="$origin" "$runtime" node_modules/tsx/dist/cli.mjs "sdk-check/scenario/$scenario.ts" \
      || failed "the $scenario scenario failed on Node $("$runtime" --version) against the server (message above)"
  done
done

if [ "${#failures[@]}" -gt 0 ]; then
  printf '\n--- server log\n'; cat "$log"
  printf '\ncheck-sdk: %d failure(s) in %ss\n' "${#failures[@]}" "$SECONDS" >&2
  printf '  - %s\n' "${failures[@]}" >&2
  exit 1
fi
echo
echo "check-sdk: ok in ${SECONDS}s"
