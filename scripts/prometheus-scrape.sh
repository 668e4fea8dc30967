#!/usr/bin/env bash
# A real Prometheus (Debian's `prometheus` binary) scrapes the API as production serves it, then is
# asked, through its HTTP API, whether every series the docs name arrived with its labels.
#
# In a temporary folder (never the repository):
# - the server is built (tsc) and started as production runs it: NODE_ENV=production, `node
#   dist/src/main.js`, PostgreSQL (a database created here and dropped at the end), JWT_SECRET,
#   METRICS_TOKEN, the webhook worker in this process (the default), on a free loopback port;
# - traffic: a token (npm run token, same JWT_SECRET), two webhook endpoints on loopback (allowed by
#   WEBHOOK_ALLOWED_ADDRESSES=127.0.0.1/32, production's only way to a private address): one answers
#   (an https receiver started here, its self-signed certificate trusted through NODE_EXTRA_CA_CERTS)
#   and one is a closed port (its delivery fails and waits for a retry: the backlog); a task created
#   and listed, a 404, an attachment uploaded and downloaded, and a third upload while two slow ones
#   are in progress (UPLOADS_PER_USER is 2), so the labelled concurrency-limited counter has a series;
# - prometheus with a temporary config: scrape_interval 1s, one job with the bearer token, its TSDB
#   here, ops/prometheus/alerts.yml as its rule file when it exists;
# - once the target is up, /api/v1/query (and /api/v1/targets/metadata, /api/v1/rules) must show
#   every series below with its labels; each missing thing is one line, and the exit code is 1.
# Nothing leaves the machine: every address is 127.0.0.1.
#
#   bash scripts/prometheus-scrape.sh
# PG_ADMIN_URL (default postgres://postgres@127.0.0.1:5432/test) names the PostgreSQL server.
# SKIP_BACKLOG=1 accepts the absence of webhook_deliveries_pending and
# webhook_oldest_pending_delivery_age_seconds (still checked when present).
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD
source scripts/lib.sh
SECONDS=0

PG_ADMIN_URL="${PG_ADMIN_URL:-postgres://postgres@127.0.0.1:5432/test}"
DB="tasks_prom_$$"
JOB=tasks-api
RULES="$repo/ops/prometheus/alerts.yml"
for tool in prometheus psql openssl curl; do
  command -v "$tool" >/dev/null || { echo "prometheus-scrape: $tool is not installed (apt-get install prometheus)" >&2; exit 1; }
done

work=$(mktemp -d)
pids=()
say() { printf '[%3ds] %s\n' "$SECONDS" "$*"; }
# TERM to every process started here, KILL to any still there after 10 s; the database dropped.
cleanup() {
  local status=$? pid
  trap - EXIT
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for _ in $(seq 1 100); do
    local alive=0
    for pid in "${pids[@]}"; do kill -0 "$pid" 2>/dev/null && alive=1; done
    [ "$alive" -eq 0 ] && break
    sleep 0.1
  done
  for pid in "${pids[@]}"; do kill -KILL "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  psql "$PG_ADMIN_URL" -qc "DROP DATABASE IF EXISTS $DB WITH (FORCE)" >/dev/null 2>&1 || true
  if [ "$status" -ne 0 ] && [ -n "${PROM_SCRAPE_KEEP_LOGS:-}" ]; then
    echo "logs kept in $work" >&2
  else
    rm -rf "$work"
  fi
  if [ "$status" -eq 0 ]; then echo "prometheus-scrape: ok in ${SECONDS}s"; else echo "prometheus-scrape: FAILED after ${SECONDS}s" >&2; fi
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
# The last lines of a log, then a failure.
fail_with() { tail -n 40 "$1" >&2; echo "prometheus-scrape: $2" >&2; exit 1; }
random_hex() { node -e "console.log(require('node:crypto').randomBytes($1).toString('hex'))"; }

# ---- the server, built in the work folder as npm run build does
app="$work/app"
mkdir -p "$app"
cp -r package.json tsconfig.json tsconfig.build.json src generated scripts "$app/"
ln -s "$repo/node_modules" "$app/node_modules"
(cd "$app" && node_modules/.bin/tsc -p tsconfig.build.json) >"$work/build.log" 2>&1 || fail_with "$work/build.log" "the build failed"
say "built (tsc -p tsconfig.build.json) in $work/app"

psql "$PG_ADMIN_URL" -v ON_ERROR_STOP=1 -qc "DROP DATABASE IF EXISTS $DB" -c "CREATE DATABASE $DB" 2>&1 |
  grep -v 'does not exist, skipping' || true
port=$(free_port)
prom_port=$(free_port)
receiver_port=$(free_port)
closed_port=$(free_port)
api="http://127.0.0.1:$port"
prom="http://127.0.0.1:$prom_port"
jwt_secret=$(random_hex 32)
metrics_token=$(random_hex 24)

# The https receiver: a self-signed certificate for 127.0.0.1, which the server trusts through
# NODE_EXTRA_CA_CERTS (Node's own variable, not the app's); it answers 204 to every POST.
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 1 -subj /CN=127.0.0.1 \
  -addext subjectAltName=IP:127.0.0.1 -keyout "$work/receiver.key" -out "$work/receiver.crt" >/dev/null 2>&1
node -e '
  const { readFileSync } = require("node:fs");
  const [key, cert, port] = process.argv.slice(1);
  require("node:https")
    .createServer({ key: readFileSync(key), cert: readFileSync(cert) }, (req, res) => {
      req.resume();
      req.on("end", () => { console.log(`${req.method} ${req.url} ${req.headers["content-type"]}`); res.writeHead(204).end(); });
    })
    .listen(Number(port), "127.0.0.1", () => console.log("listening"));
' "$work/receiver.key" "$work/receiver.crt" "$receiver_port" >"$work/receiver.log" 2>&1 &
pids+=($!)

# Production, as a process manager starts it: only these variables, no .env (none in the work folder).
(cd "$app" && exec env -i PATH="$PATH" HOME="$work" \
  NODE_ENV=production HOST=127.0.0.1 PORT="$port" \
  DATABASE_URL="${PG_ADMIN_URL%/*}/$DB" JWT_SECRET="$jwt_secret" METRICS_TOKEN="$metrics_token" \
  WEBHOOK_ALLOWED_ADDRESSES=127.0.0.1/32 NODE_EXTRA_CA_CERTS="$work/receiver.crt" \
  node dist/src/main.js) >"$work/api.log" 2>&1 &
api_pid=$!
pids+=("$api_pid")

# ---- prometheus, started beside the server (the target is down until it listens)
mkdir -p "$work/tsdb"
# The rules as they are, but for each group's own evaluation interval, set to 1 s: a group of 30 s
# is first evaluated up to 30 s after loading, and until then its rules' health is "unknown".
rule_files=""
if [ -f "$RULES" ]; then
  sed -E 's/^([[:space:]]+interval:)[[:space:]]*[0-9a-z]+[[:space:]]*$/\1 1s/' "$RULES" >"$work/alerts.yml"
  rule_files="rule_files: ['$work/alerts.yml']"
fi
cat >"$work/prometheus.yml" <<EOF
global:
  scrape_interval: 1s
  scrape_timeout: 1s
  evaluation_interval: 1s
$rule_files
scrape_configs:
  - job_name: $JOB
    metrics_path: /metrics
    authorization:
      type: Bearer
      credentials: $metrics_token
    static_configs:
      - targets: ['127.0.0.1:$port']
EOF
prometheus --config.file="$work/prometheus.yml" --storage.tsdb.path="$work/tsdb" \
  --web.listen-address="127.0.0.1:$prom_port" --log.level=warn >"$work/prometheus.log" 2>&1 &
prom_pid=$!
pids+=("$prom_pid")

wait_ready "$api/health/ready" "$api_pid" "$work/api.log" 120 0.25
say "API ready at $api (NODE_ENV=production, PostgreSQL $DB, METRICS_TOKEN set, webhook worker in-process)"
code=$(curl -s -o /dev/null -w '%{http_code}' "$api/metrics")
[ "$code" = 401 ] || { echo "prometheus-scrape: GET /metrics without the token answered $code, not 401" >&2; exit 1; }
wait_ready "$prom/-/ready" "$prom_pid" "$work/prometheus.log" 120 0.25
say "prometheus $(prometheus --version 2>&1 | head -n 1 | awk '{print $3}') ready at $prom$([ -n "$rule_files" ] && echo ", rules: ops/prometheus/alerts.yml (group intervals set to 1s)" || echo ", no rules (ops/prometheus/alerts.yml absent)")"

# ---- traffic, so that every labelled series exists
json() { node -e 'let s="";process.stdin.on("data",(d)=>(s+=d)).on("end",()=>console.log(JSON.parse(s)[process.argv[1]]))' "$1"; }
token=$(cd "$app" && env NODE_ENV=production JWT_SECRET="$jwt_secret" npm run --silent token -- --sub alice --force)
auth=(-H "Authorization: Bearer $token")
for url in "https://127.0.0.1:$receiver_port/hook" "https://127.0.0.1:$closed_port/hook"; do
  curl -fsS -o /dev/null -X POST "$api/api/v1/webhooks" "${auth[@]}" -H 'Content-Type: application/json' \
    -d "{\"url\":\"$url\",\"events\":[\"task.created\"]}"
done
task=$(curl -fsS -X POST "$api/api/v1/tasks" "${auth[@]}" -H 'Content-Type: application/json' \
  -d '{"title":"scraped by prometheus"}' | json id)
curl -fsS -o /dev/null "${auth[@]}" "$api/api/v1/tasks"
curl -fsS -o /dev/null "${auth[@]}" "$api/api/v1/tasks/$task"
code=$(curl -s -o /dev/null -w '%{http_code}' "${auth[@]}" "$api/api/v1/tasks/$(node -e 'console.log(crypto.randomUUID())')")
[ "$code" = 404 ] || { echo "prometheus-scrape: GET of an unknown task answered $code, not 404" >&2; exit 1; }
head -c 65536 /dev/zero | tr '\0' 'a' >"$work/notes.txt"
echo 'a short note' >"$work/short.txt"
upload() { # upload FILE [curl options...]: FILE as the raw body of a new attachment of the task
  local file=$1
  shift
  curl -sS "$@" -X POST "$api/api/v1/tasks/$task/attachments" "${auth[@]}" -H 'Content-Type: text/plain' \
    -H 'Content-Disposition: attachment; filename="notes.txt"' --data-binary @"$file"
}
attachment=$(upload "$work/notes.txt" -f | json id)
curl -fsS -o "$work/download.txt" "${auth[@]}" "$api/api/v1/attachments/$attachment/content"
cmp -s "$work/notes.txt" "$work/download.txt" || { echo "prometheus-scrape: the downloaded attachment differs" >&2; exit 1; }
# Two uploads held open at 16 KB/s (4 s each), then a third: 429, cap user_uploads (UPLOADS_PER_USER=2).
slow=()
for _ in 1 2; do
  upload "$work/notes.txt" -o /dev/null --limit-rate 16K &
  slow+=($!)
  pids+=($!)
done
sleep 1
code=$(upload "$work/short.txt" -o /dev/null -w '%{http_code}' || true)
[ "$code" = 429 ] || echo "prometheus-scrape: a third upload at once answered $code, not 429 (checked below through the counter)" >&2
say "traffic: 2 webhooks, a task created, read, listed; a 404; 64 KiB uploaded and downloaded; a third upload at once: $code"

# The deliveries: one to the receiver (succeeded), one to the closed port (retrying).
metrics() { curl -fsS -H "Authorization: Bearer $metrics_token" "$api/metrics"; }
for _ in $(seq 1 60); do
  m=$(metrics)
  grep -q '^webhook_delivery_attempts_total{outcome="succeeded"}' <<<"$m" &&
    grep -q '^webhook_delivery_attempts_total{outcome="retrying"}' <<<"$m" && break
  sleep 0.25
done
say "webhook attempts: $(grep '^webhook_delivery_attempts_total' <<<"$m" | tr '\n' ' ')"
for pid in "${slow[@]}"; do wait "$pid" || true; done

# ---- what Prometheus holds
cat >"$work/check.mjs" <<'EOF'
// node check.mjs PROM JOB SKIP_BACKLOG RULES_LOADED DEADLINE_MS: asks Prometheus until every check
// passes or the deadline passes; prints what it found (ok) or one line per problem (exit 1).
const [prom, job, skipBacklog, rulesLoaded, deadlineMs] = process.argv.slice(2);
const sel = `{job="${job}"}`;
const api = async (path) => {
  const res = await fetch(prom + path);
  const body = await res.json();
  if (body.status !== 'success') throw new Error(`${path}: ${body.error ?? res.status}`);
  return body.data;
};
const query = async (expr) => (await api(`/api/v1/query?query=${encodeURIComponent(expr)}`)).result;
const typeOf = async (metric) =>
  (await api(`/api/v1/targets/metadata?metric=${metric}&match_target=${encodeURIComponent(sel)}`))[0]?.type;
const UUID = /[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}/i;
const fmt = (s) => `{${Object.entries(s.metric).filter(([k]) => k !== '__name__' && k !== 'job' && k !== 'instance').map(([k, v]) => `${k}="${v}"`).join(',')}} ${s.value[1]}`;

async function checks() {
  const problems = [];
  const found = [];
  const series = async (metric, labels = []) => {
    const result = await query(`${metric}${sel}`);
    if (result.length === 0) problems.push(`${metric}: no series`);
    for (const s of result) {
      const missing = labels.filter((l) => s.metric[l] === undefined);
      if (missing.length > 0) problems.push(`${metric}${fmt(s)}: no label ${missing.join(', ')}`);
    }
    return result;
  };
  const value = (result, labels) =>
    result.find((s) => Object.entries(labels).every(([k, v]) => s.metric[k] === v))?.value[1];
  const atLeast = (metric, result, labels, min) => {
    const v = value(result, labels);
    const name = `${metric}{${Object.entries(labels).map(([k, l]) => `${k}="${l}"`).join(',')}}`;
    if (v === undefined) problems.push(`${name}: no series (found: ${result.map(fmt).join('; ') || 'none'})`);
    else if (!(Number(v) >= min)) problems.push(`${name} is ${v}, expected at least ${min}`);
    else found.push(`${name} ${v}`);
  };

  const up = await query(`up${sel}`);
  if (up[0]?.value[1] !== '1') problems.push(`up${sel} is ${up[0]?.value[1] ?? 'absent'}, not 1`);
  else found.push(`up${sel} 1`);

  const buckets = await series('http_request_duration_seconds_bucket', ['method', 'route', 'status', 'le']);
  const routes = [...new Set(buckets.map((s) => s.metric.route))].sort();
  for (const route of routes.filter((r) => UUID.test(r))) problems.push(`http_request_duration_seconds: route label holds an id: ${route}`);
  for (const [method, route, status] of [
    ['POST', '/api/v1/tasks', '201'],
    ['GET', '/api/v1/tasks', '200'],
    ['GET', '/api/v1/tasks/{taskId}', '200'],
    ['GET', '/api/v1/tasks/{taskId}', '404'],
    ['POST', '/api/v1/webhooks', '201'],
    ['POST', '/api/v1/tasks/{taskId}/attachments', '201'],
    ['GET', '/api/v1/attachments/{attachmentId}/content', '200'],
  ])
    if (value(buckets, { method, route, status, le: '+Inf' }) === undefined)
      problems.push(`http_request_duration_seconds_bucket{method="${method}",route="${route}",status="${status}",le="+Inf"}: no series (routes: ${routes.join(' ')})`);
  if (buckets.length > 0) found.push(`http_request_duration_seconds_bucket: ${buckets.length} series, routes ${routes.join(' ')}`);

  const pool = await series('db_pool_connections', ['state']);
  for (const [state, min] of [['total', 1], ['idle', 0], ['waiting', 0]]) atLeast('db_pool_connections', pool, { state }, min);

  for (const metric of ['event_loop_delay_seconds', 'nodejs_eventloop_lag_p99_seconds']) {
    const r = await series(metric);
    if (r.length > 0) found.push(`${metric} ${r[0].value[1]}`);
  }

  // Counters with labels have no series until incremented; the metadata says Prometheus read the family.
  const labelled = async (metric, label, required) => {
    const r = await query(`${metric}${sel}`);
    for (const s of r) if (s.metric[label] === undefined) problems.push(`${metric}${fmt(s)}: no label ${label}`);
    const type = await typeOf(metric);
    if (type !== 'counter') problems.push(`${metric}: not in the target's metadata as a counter (${type ?? 'absent'})`);
    if (required) for (const [l, min] of required) atLeast(metric, r, { [label]: l }, min);
    else found.push(`${metric} (${type ?? '?'}): ${r.length > 0 ? r.map(fmt).join('; ') : 'no series yet (never incremented); declared in the scrape'}`);
  };
  await labelled('http_requests_shed_total', 'reason');
  await labelled('http_requests_concurrency_limited_total', 'cap', [['user_uploads', 1]]);
  for (const metric of ['http_transfers_shed_total', 'http_request_body_timeouts_total']) {
    const r = await series(metric);
    if (r.length > 0) found.push(`${metric} ${r[0].value[1]}`);
  }

  const attempts = await series('webhook_delivery_attempts_total', ['outcome']);
  atLeast('webhook_delivery_attempts_total', attempts, { outcome: 'succeeded' }, 1);
  atLeast('webhook_delivery_attempts_total', attempts, { outcome: 'retrying' }, 1);

  for (const [metric, min] of [
    ['webhook_deliveries_pending', 1],
    ['webhook_oldest_pending_delivery_age_seconds', 0],
  ]) {
    const r = await query(`${metric}${sel}`);
    if (r.length === 0) {
      if (skipBacklog === '1') found.push(`SKIP ${metric}: absent, accepted (SKIP_BACKLOG=1)`);
      else problems.push(`${metric}: no series`);
    } else if (!r.some((s) => Number(s.value[1]) >= min))
      problems.push(`${metric} is ${r.map(fmt).join('; ')}, expected at least ${min} (a delivery to a closed port waits for its retry)`);
    else found.push(`${metric} ${r.map(fmt).join('; ')}`);
  }

  for (const metric of ['attachment_uploaded_bytes_total', 'attachment_downloaded_bytes_total']) {
    atLeast(metric, await series(metric), {}, 65536);
  }

  if (rulesLoaded === '1') {
    const groups = (await api('/api/v1/rules')).groups;
    if (groups.length === 0) problems.push('rules: ops/prometheus/alerts.yml loaded, but /api/v1/rules has no group');
    let rules = 0;
    for (const group of groups)
      for (const rule of group.rules) {
        rules += 1;
        if (rule.health !== 'ok')
          problems.push(`rule ${group.name}/${rule.name}: health ${rule.health}${rule.lastError ? `: ${rule.lastError}` : ''}`);
      }
    if (groups.length > 0) found.push(`rules: ${groups.length} group(s), ${rules} rule(s), every one health ok`);
  }
  return { problems, found };
}

const deadline = Date.now() + Number(deadlineMs);
for (;;) {
  let outcome;
  try {
    outcome = await checks();
  } catch (error) {
    outcome = { problems: [String(error)], found: [] };
  }
  if (outcome.problems.length === 0) {
    for (const line of outcome.found) console.log(`  ok ${line}`);
    process.exit(0);
  }
  if (Date.now() > deadline) {
    for (const line of outcome.problems) console.log(`  FAIL ${line}`);
    process.exit(1);
  }
  await new Promise((resolve) => setTimeout(resolve, 1000));
}
EOF

# The target up: its health in /api/v1/targets.
health=""
for _ in $(seq 1 60); do
  health=$(curl -fsS "$prom/api/v1/targets?state=active" | node -e '
    let s = ""; process.stdin.on("data", (d) => (s += d)).on("end", () => {
      const t = JSON.parse(s).data.activeTargets.find((t) => t.labels.job === process.argv[1]);
      console.log(t ? `${t.health} ${t.lastError}` : "absent");
    });' "$JOB" || true)
  [ "${health%% *}" = up ] && break
  sleep 0.25
done
[ "${health%% *}" = up ] || fail_with "$work/prometheus.log" "target $JOB not up: $health"
say "target $JOB up (scraped with the bearer token)"

say "querying $prom"
node "$work/check.mjs" "$prom" "$JOB" "${SKIP_BACKLOG:-0}" "$([ -n "$rule_files" ] && echo 1 || echo 0)" 15000 ||
  { echo "prometheus-scrape: Prometheus lacks what is listed above" >&2; exit 1; }
