# Shared by scripts/smoke.sh and scripts/contract.sh (sourced, not run).

# A TCP port on loopback that nothing listens on right now.
free_port() {
  node -e 'const s=require("net").createServer().listen(0,()=>{console.log(s.address().port);s.close()})'
}

# wait_ready URL PID LOG ATTEMPTS INTERVAL: polls URL until it answers 2xx; prints LOG and fails
# if PID exits first or ATTEMPTS polls pass.
wait_ready() {
  local url=$1 pid=$2 log=$3 attempts=$4 interval=$5
  for _ in $(seq 1 "$attempts"); do
    curl -fs "$url" >/dev/null 2>&1 && return 0
    kill -0 "$pid" 2>/dev/null || { cat "$log"; echo "server exited early" >&2; return 1; }
    sleep "$interval"
  done
  cat "$log"; echo "server not ready after $attempts polls" >&2; return 1
}
