#!/usr/bin/env bash
# The Dockerfile's two stages and compose.yaml's API and worker, run without Docker (no container
# daemon runs on the project's machines): CI's proof that the image's commands work, beside the
# static scripts/check-deploy.mjs.
#
# In a temporary folder (never the repository), on Node 24 as in the image:
# - the build stage: what it COPYs, npm ci (the checkout's node_modules stand in for it: CI's
#   install step ran that command on the same lockfile; DEPLOY_CHECK_FULL_BUILD=1 runs it), npm
#   run build;
# - the runtime stage: what it COPYs (dist/ from the build stage's folder), npm ci --omit=dev,
#   mkdir/chown .data (for an unprivileged account standing in for the image's node user);
# - compose's api and worker services, started at the same moment (both migrate: a fresh
#   database, so this is several processes migrating at once), as that account, with only the
#   image's ENV and the service's environment (secrets generated here; DATABASE_URL and REDIS_URL
#   pointed at this machine's PostgreSQL and Redis instead of compose's hosts; PORT free);
# - the image's HEALTHCHECK command, a user registered with the built-in issuer, a task, /docs,
#   /metrics with its token; a webhook to a closed port on loopback whose delivery the worker
#   attempts (the API has WEBHOOK_WORKER=off); SIGTERM, and both exit 0.
# The steps come from the files themselves (check-deploy.mjs --emit-stage / --emit-service), so
# this runs what the Dockerfile and compose.yaml say, not a copy of them.
#
#   bash scripts/check-deploy-runtime.sh
# PG_ADMIN_URL (default postgres://postgres@127.0.0.1:5432/postgres) names the server; the
# database tasks_deploy_check is created and dropped. As root, the processes run as `nobody`
# (DEPLOY_CHECK_USER to change it); as anyone else, as that user.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD
source scripts/lib.sh

PG_ADMIN_URL="${PG_ADMIN_URL:-postgres://postgres@127.0.0.1:5432/postgres}"
DB=tasks_deploy_check
run_as="${DEPLOY_CHECK_USER:-nobody}"
work=$(mktemp -d)
chmod 755 "$work" # the unprivileged account reads the runtime stage's files through it
pids=()
say() { printf '[%3ds] %s\n' "$SECONDS" "$*"; }
cleanup() {
  local status=$?
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  psql "$PG_ADMIN_URL" -qc "DROP DATABASE IF EXISTS $DB WITH (FORCE)" >/dev/null 2>&1 || true
  rm -rf "$work"
  [ "$status" -eq 0 ] || echo "check-deploy-runtime: FAILED after ${SECONDS}s" >&2
}
trap cleanup EXIT
SECONDS=0

# Node 24, as in the image: the npm registry's node package, as .ci/run's on_node24 gets it. The
# binary is copied into the work folder, where the unprivileged account may run it.
node24=$(npx -y -p node@24 -c 'command -v node')
mkdir -p "$work/node24/bin"
cp "$node24" "$work/node24/bin/node"
export PATH="$work/node24/bin:$PATH"
case "$(node -v)" in v24.*) ;; *) echo "not Node 24: $(node -v)" >&2; exit 1 ;; esac
say "node $(node -v), npm $(npm -v)"

# ---- the Dockerfile's instructions, as check-deploy.mjs --emit-stage lists them
stage=""
stage_dir=""
workdir="/"
stage_env_vars=()
image_user=""
healthcheck=()
cmd=()
stage_workdir() { workdir=$1; }
# A path of the image (absolute, or relative to WORKDIR) in a stage's folder here.
in_stage() {
  local dir=$1 path=$2
  case "$path" in /*) path=${path#"$workdir"} ;; esac
  printf '%s/%s' "$dir" "${path#/}"
}
copy_into() { # copy_into SOURCE DEST (DEST ending in / or naming a folder: into it)
  local src=$1 dest=$2
  if [ -d "$src" ]; then
    mkdir -p "$dest" && cp -R "$src/." "$dest/"
  elif [[ "$dest" == */ ]]; then
    mkdir -p "$dest" && cp "$src" "$dest"
  else
    mkdir -p "$(dirname "$dest")" && cp "$src" "$dest"
  fi
}
stage_copy() {
  local dest=$1 src
  shift
  [ $# -gt 1 ] && [[ "$dest" != */ ]] && dest="$dest/"
  for src in "$@"; do copy_into "$repo/$src" "$(in_stage "$stage_dir" "$dest")"; done
}
stage_copy_from() {
  local from=$1 dest=$2 src
  shift 2
  for src in "$@"; do copy_into "$(in_stage "$work/$from" "$src")" "$(in_stage "$stage_dir" "$dest")"; done
}
stage_env() { stage_env_vars+=("$1=$2"); }
stage_run() {
  local argv=("$@")
  # The image's node user is the unprivileged account here.
  if [ "${argv[0]}" = chown ]; then argv[1]="$run_as:$(id -gn "$run_as")"; fi
  # The build stage's full install is CI's own first step (npm ci --no-audit --no-fund on this
  # very package-lock.json): its node_modules stands in for it, unless DEPLOY_CHECK_FULL_BUILD=1.
  if [ "$stage" = build ] && [ "${argv[*]}" = "npm ci --no-audit --no-fund" ] && [ -z "${DEPLOY_CHECK_FULL_BUILD:-}" ] &&
    [ -d "$repo/node_modules" ] && cmp -s "$repo/package-lock.json" "$stage_dir/package-lock.json"; then
    ln -s "$repo/node_modules" "$stage_dir/node_modules"
    say "$stage: RUN ${argv[*]}: the checkout's node_modules, installed by the same command from the same lockfile (DEPLOY_CHECK_FULL_BUILD=1 runs it)"
    return
  fi
  say "$stage: RUN ${argv[*]}"
  if ! (cd "$stage_dir" && env "${stage_env_vars[@]}" "${argv[@]}") >>"$work/$stage.log" 2>&1; then
    tail -n 40 "$work/$stage.log"
    echo "$stage: RUN ${argv[*]} failed" >&2
    exit 1
  fi
}
stage_skip() {
  local reason=$1
  shift
  say "$stage: RUN $* skipped: $reason"
}
stage_user() { image_user=$1; }
stage_expose() { :; }
stage_healthcheck() { healthcheck=("$@"); }
stage_cmd() { cmd=("$@"); }

run_stage() {
  stage=$1
  stage_dir="$work/$stage"
  workdir="/"
  stage_env_vars=()
  mkdir -p "$stage_dir"
  local steps
  steps=$(node scripts/check-deploy.mjs --emit-stage "$stage")
  eval "$steps"
}

run_stage build
run_stage runtime
app="$work/runtime"
[ "${#cmd[@]}" -gt 0 ] || { echo "the runtime stage has no CMD" >&2; exit 1; }
say "runtime stage ready: $(du -sh "$app/node_modules" | cut -f1) of node_modules; USER $image_user is $run_as here"

# ---- compose's services, with this machine's PostgreSQL and Redis
psql "$PG_ADMIN_URL" -v ON_ERROR_STOP=1 -qc "DROP DATABASE IF EXISTS $DB WITH (FORCE)" -c "CREATE DATABASE $DB" 2>&1 |
  grep -v 'does not exist, skipping' || true
port=$(free_port)
api_url="http://127.0.0.1:$port"
metrics_token=$(node -e "console.log(require('node:crypto').randomBytes(24).toString('hex'))")
export POSTGRES_PASSWORD=unused-here AUTH_ISSUER="$api_url" METRICS_TOKEN="$metrics_token"
KEY_ENCRYPTION_SECRET=$(node -e "console.log(require('node:crypto').randomBytes(32).toString('base64'))")
export KEY_ENCRYPTION_SECRET
redis_url=""
if redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1; then redis_url=redis://127.0.0.1:6379; fi

service_env_vars=()
service_argv=()
service_env() {
  case "$1" in
    DATABASE_URL) service_env_vars+=("DATABASE_URL=${PG_ADMIN_URL%/*}/$DB") ;;
    REDIS_URL) [ -z "$redis_url" ] || service_env_vars+=("REDIS_URL=$redis_url") ;;
    *) service_env_vars+=("$1=$2") ;;
  esac
}
service_command() { service_argv=("$@"); }
# start NAME SERVICE: the service's command in the runtime stage's folder, as a container would
# run it: only the image's ENV and the service's environment, as the unprivileged account.
start() {
  local name=$1 service=$2 steps
  service_env_vars=()
  service_argv=()
  steps=$(node scripts/check-deploy.mjs --emit-service "$service")
  eval "$steps"
  local as=()
  if [ "$(id -u)" -eq 0 ]; then
    as=(setpriv --reuid="$(id -u "$run_as")" --regid="$(id -g "$run_as")" --clear-groups)
  fi
  (cd "$app" && exec "${as[@]}" env -i PATH="$work/node24/bin:/usr/bin:/bin" HOME=/nonexistent \
    "${stage_env_vars[@]}" "${service_env_vars[@]}" PORT="$port" WEBHOOK_ALLOWED_ADDRESSES=127.0.0.0/8 \
    "${service_argv[@]}") >"$work/$name.log" 2>&1 &
  pids+=($!)
  say "started $service: ${service_argv[*]} (pid $!)"
}
# WEBHOOK_ALLOWED_ADDRESSES: production refuses private addresses, and the webhook below is on loopback.
start api api
api_pid=${pids[-1]}
start worker worker
worker_pid=${pids[-1]}
say "DATABASE_URL=${PG_ADMIN_URL%/*}/$DB (compose: the postgres service), REDIS_URL=${redis_url:-none: no Redis on 127.0.0.1:6379} (compose: the redis service)"

wait_ready "$api_url/health/ready" "$api_pid" "$work/api.log" 240 0.25
say "/health/ready: $(curl -fsS "$api_url/health/ready")"
(cd "$app" && env -i PATH="$work/node24/bin:/usr/bin:/bin" PORT="$port" "${healthcheck[@]}") ||
  { echo "the image's HEALTHCHECK command failed" >&2; exit 1; }
say "the image's HEALTHCHECK command: healthy"
kill -0 "$worker_pid" 2>/dev/null || { cat "$work/worker.log"; echo "the worker exited" >&2; exit 1; }

# ---- calls against it
json() { node -e 'let s="";process.stdin.on("data",(d)=>(s+=d)).on("end",()=>console.log(JSON.parse(s)[process.argv[1]]))' "$1"; }
token=$(curl -fsS -X POST "$api_url/api/v1/auth/register" -H 'Content-Type: application/json' \
  -d '{"email":"deploy-check@example.com","password":"deploy check password"}' | json access_token)
auth=(-H "Authorization: Bearer $token")
curl -fsS -o /dev/null "${auth[@]}" "$api_url/api/v1/tasks"
curl -fsS -o /dev/null "$api_url/docs"
curl -fsS -o /dev/null "$api_url/openapi.json"
curl -fsS -o /dev/null -H "Authorization: Bearer $metrics_token" "$api_url/metrics"
closed=$(free_port)
webhook=$(curl -fsS -X POST "$api_url/api/v1/webhooks" "${auth[@]}" -H 'Content-Type: application/json' \
  -d "{\"url\":\"https://127.0.0.1:$closed/hook\",\"events\":[\"task.created\"]}" | json id)
curl -fsS -o /dev/null -X POST "$api_url/api/v1/tasks" "${auth[@]}" -H 'Content-Type: application/json' \
  -d '{"title":"deployed"}'
say "registered (built-in issuer), created a task and a webhook; /docs, /openapi.json, /metrics 200"
attempts=0
for _ in $(seq 1 60); do
  attempts=$(curl -fsS "${auth[@]}" "$api_url/api/v1/webhooks/$webhook/deliveries" |
    node -e 'let s="";process.stdin.on("data",(d)=>(s+=d)).on("end",()=>console.log(JSON.parse(s).items?.[0]?.attempts_made ?? 0))')
  [ "$attempts" -ge 1 ] && break
  sleep 0.25
done
[ "$attempts" -ge 1 ] || { cat "$work/worker.log"; echo "the worker attempted no delivery" >&2; exit 1; }
say "the worker attempted the delivery (to a closed port, as intended): $attempts attempt(s)"
grep -q '"message":"database ready"' "$work/api.log"
migrations=$(grep -c "^  '0" src/db/migrate.ts)
recorded=$(psql "${PG_ADMIN_URL%/*}/$DB" -tAc 'select count(*) from kysely_migration')
[ "$recorded" -eq "$migrations" ] || { echo "$recorded of $migrations migrations recorded" >&2; exit 1; }
say "migrations: all $migrations recorded once; the api applied $(grep -o '"migrations_applied":\[[^]]*\]' "$work/api.log" | grep -o '"0[^"]*"' | wc -l) of them, the worker (started at the same moment) the rest"

# ---- SIGTERM, as docker stop sends it
kill -TERM "$api_pid" "$worker_pid"
for name in api worker; do
  pid=$([ "$name" = api ] && echo "$api_pid" || echo "$worker_pid")
  status=0
  wait "$pid" || status=$?
  if [ "$status" -ne 0 ] || ! grep -q '"message":"stopped"' "$work/$name.log"; then
    cat "$work/$name.log"
    echo "$name exited with $status after SIGTERM" >&2
    exit 1
  fi
done
pids=()
say "SIGTERM: api and worker stopped, exit 0"
echo "check-deploy-runtime: ok in ${SECONDS}s"
