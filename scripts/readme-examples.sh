#!/usr/bin/env bash
# Runs the README's curl examples as pasted, against a fresh server, in bash and (when installed)
# zsh: every response must be 2xx and the shell must report no error (zsh refuses an unquoted
# URL holding ? or & with "no matches found"). Needs curl and jq. CI runs it in bash (zsh when installed)
# on the README and on the docs' guide; run it after editing an example:
#   bash scripts/readme-examples.sh [README.md | openapi/openapi.yaml]
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
source "$root/scripts/lib.sh"
work=$(mktemp -d /tmp/readme-examples-XXXX)
trap 'kill "${server:-0}" 2>/dev/null || true; [ -n "${KEEP:-}" ] || rm -rf "$work"' EXIT

# The sh blocks that call the API, in order, of the README (or the Markdown file named) or, for a
# .yaml file, of its info.description (the docs' guide: bash scripts/readme-examples.sh openapi/openapi.yaml).
doc="${1:-$root/README.md}"
if [[ "$doc" == *.yaml ]]; then
  (cd "$root" && node --input-type=module -e "import { load } from 'js-yaml'; import { readFileSync } from 'node:fs'; process.stdout.write(load(readFileSync(process.argv[1], 'utf8')).info.description)" "$doc") > "$work/doc.md"
  doc="$work/doc.md"
fi
python3 - "$doc" > "$work/examples.sh" <<'PY'
import re, sys
text = open(sys.argv[1], encoding='utf8').read()
for block in re.findall(r'```sh\n(.*?)```', text, re.S):
    if 'curl' in block and 'localhost:3000' in block and 'npm start' not in block:
        print(block)
PY
# photo.png and form.pdf are "files of yours" in the README: small real ones here.
printf '\x89PNG\r\n\x1a\n\0\0\0\rIHDR\0\0\0\x01\0\0\0\x01\x08\x06\0\0\0\x1f\x15\xc4\x89\0\0\0\rIDATx\x9cc\xf8\x0f\0\0\x01\x01\0\x05\x18\xd8N\0\0\0\0IEND\xaeB`\x82' > "$work/photo.png"
printf '%%PDF-1.4\n1 0 obj<<>>endobj\ntrailer<<>>\n%%%%EOF\n' > "$work/form.pdf"

status=0
for shell in bash zsh; do
  if ! command -v "$shell" > /dev/null; then echo "readme-examples: $shell not installed, skipped"; continue; fi
  port=$(free_port)
  secret=$(head -c 32 /dev/urandom | base64 | tr -d '/+=')
  (cd "$root" && PORT=$port HOST=127.0.0.1 NODE_ENV=development WEBHOOK_WORKER=off JWT_SECRET=$secret PGLITE_DIR="$work/pglite-$shell" LOG_LEVEL=warn \
    exec node --import tsx src/main.ts > "$work/server-$shell.log" 2>&1) &
  server=$!
  wait_ready "http://127.0.0.1:$port/health/ready" "$server" "$work/server-$shell.log" 120 0.5
  # npm runs in the checkout (the examples run in $work, where curl -OJ saves its download);
  # curl reports each status on stderr.
  cat > "$work/run.$shell" <<SH
export JWT_SECRET=$secret
npm() { command npm --prefix "$root" "\$@"; }
curl() { command curl -w '%{stderr}[http %{http_code}]\n' "\$@"; }
SH
  sed "s/localhost:3000/localhost:$port/g" "$work/examples.sh" >> "$work/run.$shell"
  (cd "$work" && "$shell" "run.$shell" > "$work/out.$shell" 2> "$work/err.$shell") || true
  # (Node 20 says so on stderr when there is no .env: not an error.)
  bad=$(grep -v -e '^\[http 2[0-9][0-9]\]$' -e '\.env not found\. Continuing without it\.$' "$work/err.$shell" || true)
  calls=$(grep -c '^\[http ' "$work/err.$shell" || true)
  if [ -n "$bad" ]; then
    echo "readme-examples: $shell: FAILED ($calls calls):"; echo "$bad" | sed 's/^/  /'; status=1
  else
    echo "readme-examples: $shell: $calls calls, every one 2xx, no shell error"
  fi
  kill "$server"; wait "$server" 2>/dev/null || true
done
exit $status
