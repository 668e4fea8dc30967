#!/usr/bin/env bash
# Runs the curl examples of the README, the docs/ pages and the docs' guide as pasted, each
# document against a fresh development server, in bash and (when installed) zsh: every response
# must be 2xx and the shell must report no error (zsh refuses an unquoted URL holding ? or & with
# "no matches found"). Needs curl and jq. CI runs it on every document; run it after editing one:
#   bash scripts/readme-examples.sh [README.md docs/webhooks.md openapi/openapi.yaml …]
# (no argument: the README and every docs/ page, then the guide).
#
# The blocks run are the ```sh blocks that call curl against the API (localhost:3000 or "$API"),
# in order, as one script per document: a page's first block sets API=${API:-http://localhost:3000}
# and later ones reuse its variables. A block that starts the server (npm start) is not run.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
source "$root/scripts/lib.sh"
work=$(mktemp -d /tmp/readme-examples-XXXX)
trap 'kill $(jobs -p) 2>/dev/null || true; [ -n "${KEEP:-}" ] || rm -rf "$work"' EXIT

if [ $# -eq 0 ]; then
  set -- "$root/README.md" "$root"/docs/*.md "$root/openapi/openapi.yaml"
fi

# photo.png and form.pdf are "files of yours" in the examples: small real ones here.
printf '\x89PNG\r\n\x1a\n\0\0\0\rIHDR\0\0\0\x01\0\0\0\x01\x08\x06\0\0\0\x1f\x15\xc4\x89\0\0\0\rIDATx\x9cc\xf8\x0f\0\0\x01\x01\0\x05\x18\xd8N\0\0\0\0IEND\xaeB`\x82' > "$work/photo.png"
printf '%%PDF-1.4\n1 0 obj<<>>endobj\ntrailer<<>>\n%%%%EOF\n' > "$work/form.pdf"

# The server as npm start runs it (dist/, built here: a no-op when nothing changed); through tsx
# every start compiled src/ again, about 1.4 s of CPU each.
(cd "$root" && npm run --silent build)

# start_server DIR PORT SECRET: the development server on DIR/pglite, in the background. The
# WebAssembly of its embedded PostgreSQL compiled by V8's baseline compiler only, as the tests'
# processes are (tests/helpers/process.ts): a server that answers a few dozen calls never earns back
# the second of CPU the optimising compiler takes.
start_server() {
  (cd "$root" && PORT=$2 HOST=127.0.0.1 NODE_ENV=development WEBHOOK_WORKER=off JWT_SECRET=$3 PGLITE_DIR="$1/pglite" LOG_LEVEL=warn \
    exec node --liftoff-only dist/src/main.js > "$1/server.log" 2>&1) &
}

# Every run's database is a fresh copy of one a server made and migrated here once, then stopped
# (SIGTERM: it closes the database cleanly): a start on the copy skips initdb and the migrations.
mkdir -p "$work/first"
port=$(free_port)
start_server "$work/first" "$port" "$(head -c 32 /dev/urandom | base64 | tr -d '/+=')"
first=$!
wait_ready "http://127.0.0.1:$port/health/ready" "$first" "$work/first/server.log" 120 0.5
kill "$first"
wait "$first" || { cat "$work/first/server.log"; echo "readme-examples: the first server did not stop cleanly" >&2; exit 1; }
mv "$work/first/pglite" "$work/pglite"

# One document in one shell, against a server of its own on a copy of that database, in a
# directory of its own: the outcome goes to $dir/result, and $dir/failed marks a failure.
run_one() {
  local name=$1 shell=$2
  local dir="$work/$name-$shell" port secret server bad calls
  mkdir -p "$dir"
  cp "$work/photo.png" "$work/form.pdf" "$dir/"
  port=$(free_port)
  secret=$(head -c 32 /dev/urandom | base64 | tr -d '/+=')
  cp -R "$work/pglite" "$dir/pglite"
  start_server "$dir" "$port" "$secret"
  server=$!
  wait_ready "http://127.0.0.1:$port/health/ready" "$server" "$dir/server.log" 120 0.5
  # npm runs in the checkout (the examples run in $dir, where curl -OJ saves its download);
  # curl reports each status on stderr.
  cat > "$dir/run.$shell" <<SH
export JWT_SECRET=$secret API=http://localhost:$port
npm() { command npm --prefix "$root" "\$@"; }
curl() { command curl -S -w '%{stderr}[http %{http_code}]\n' "\$@"; }
SH
  sed "s/localhost:3000/localhost:$port/g" "$work/examples.$name.sh" >> "$dir/run.$shell"
  (cd "$dir" && "$shell" "run.$shell" > "$dir/out" 2> "$dir/err") || true
  # (Node 20 says so on stderr when there is no .env: not an error.)
  bad=$(grep -v -e '^\[http 2[0-9][0-9]\]$' -e '\.env not found\. Continuing without it\.$' "$dir/err" || true)
  calls=$(grep -c '^\[http ' "$dir/err" || true)
  if [ -n "$bad" ]; then
    { echo "readme-examples: $name in $shell: FAILED ($calls calls):"; echo "$bad" | sed 's/^/  /'; } > "$dir/result"
    touch "$dir/failed"
  else
    echo "readme-examples: $name in $shell: $calls calls, every one 2xx, no shell error" > "$dir/result"
  fi
  kill "$server"
  wait "$server" 2>/dev/null || true
  rm -rf "$dir/pglite"
}

# Each document's examples first; then the runs, two at a time (this machine's two cores): a run
# is mostly a server starting, then curl waiting on it.
runs=()
for doc in "$@"; do
  name=$(basename "$doc")
  src="$doc"
  # For a .yaml file, its info.description (the docs' guide).
  if [[ "$doc" == *.yaml ]]; then
    src="$work/$name.md"
    (cd "$root" && node --input-type=module -e "import { load } from 'js-yaml'; import { readFileSync } from 'node:fs'; process.stdout.write(load(readFileSync(process.argv[1], 'utf8')).info.description)" "$doc") > "$src"
  fi
  python3 - "$src" > "$work/examples.$name.sh" <<'PY'
import re, sys
text = open(sys.argv[1], encoding='utf8').read()
for block in re.findall(r'```sh\n(.*?)```', text, re.S):
    if 'curl' in block and ('localhost:3000' in block or '$API' in block) and 'npm start' not in block:
        print(block)
PY
  if [ ! -s "$work/examples.$name.sh" ]; then
    echo "readme-examples: $name: no example calls the API"
    continue
  fi
  for shell in bash zsh; do
    if command -v "$shell" > /dev/null; then runs+=("$name $shell"); else echo "readme-examples: $name: $shell not installed, skipped"; fi
  done
done
for run in "${runs[@]}"; do
  while [ "$(jobs -rp | wc -l)" -ge 2 ]; do wait -n || true; done
  run_one ${run% *} ${run#* } &
done
wait
status=0
for run in "${runs[@]}"; do
  dir="$work/${run/ /-}"
  cat "$dir/result" 2>/dev/null || { echo "readme-examples: $run: no result (the run itself failed; KEEP=1 keeps $dir)"; status=1; }
  [ ! -e "$dir/failed" ] || status=1
done
exit $status
