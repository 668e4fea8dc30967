#!/usr/bin/env bash
# Starts the built server exactly as a user would (npm start, no configuration but a port and a
# throwaway data directory), mints a token with npm run token, creates and lists a task, then
# checks that SIGTERM stops it cleanly with exit code 0.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh
work=$(mktemp -d)
port=$(free_port)
log="$work/server.log"
# npm start's node outlives a killed npm: on failure both go (the node found by its PORT).
cleanup() {
  if [ -n "${pid:-}" ]; then
    for p in $(pgrep -f 'dist/src/main.js' || true); do
      if tr '\0' '\n' <"/proc/$p/environ" 2>/dev/null | grep -qx "PORT=$port"; then kill "$p" 2>/dev/null || true; fi
    done
    kill "$pid" 2>/dev/null || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT

(cd "$work" && ln -s "$OLDPWD/node_modules" node_modules && cp -r "$OLDPWD"/{package.json,generated,src,tsconfig.json,tsconfig.build.json,scripts} . \
  && exec env -u NODE_ENV PORT="$port" npm start --silent) >"$log" 2>&1 &
pid=$!
wait_ready "http://127.0.0.1:$port/health/ready" "$pid" "$log" 60 1
curl -fs "http://127.0.0.1:$port/health/ready"; echo
token=$(cd "$work" && npm run --silent token -- --sub smoke-user)
created=$(curl -fs -X POST "http://127.0.0.1:$port/api/v1/tasks" -H "Authorization: Bearer $token" \
  -H 'Content-Type: application/json' -d '{"title":"smoke test"}')
echo "$created"
curl -fs "http://127.0.0.1:$port/api/v1/tasks" -H "Authorization: Bearer $token" | grep -q '"title":"smoke test"'
test "$(stat -c %a "$work/.data/dev-jwt-secret")" = 600
# SIGTERM to the node process itself, as a process manager would send it; npm exits with its code.
# (Other servers may be running on this machine: the one with our PORT.)
node_pid=$(for p in $(pgrep -f '^node( [^ ]+)* dist/src/main.js' || true); do
  if tr '\0' '\n' <"/proc/$p/environ" 2>/dev/null | grep -qx "PORT=$port"; then echo "$p"; fi; done)
kill -TERM "$node_pid"
status=0
wait "$pid" || status=$?
pid=
grep -q 'stopped' "$log" || { cat "$log"; exit 1; }
[ "$status" -eq 0 ] || { cat "$log"; echo "server exited with $status after SIGTERM" >&2; exit 1; }
echo "smoke: ok"
