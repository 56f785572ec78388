#!/usr/bin/env bash
# The `make run` demo: three example backends on 127.0.0.1 (a and b in pool `web`, api in
# pool `api`) and Tioga with conf/demo.yaml; prints what to try. Ctrl-C stops all four.
set -euo pipefail
bin=${1:-target/debug}

# Everything is on loopback; say so plainly when a port is already taken.
for port in 9001 9002 9003 8080 8081 9900; do
  if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
    echo "run_demo: 127.0.0.1:$port is already in use (an earlier demo still running?)" >&2
    exit 1
  fi
done

pids=()
cleanup() {
  kill -CONT "${pids[@]}" 2>/dev/null || true   # a backend frozen with kill -STOP
  kill "${pids[@]}" 2>/dev/null || true
  wait 2>/dev/null || true
}
trap cleanup EXIT
trap 'exit 0' INT TERM   # Ctrl-C is how the demo ends
"$bin/examples/demo_backend" a 127.0.0.1:9001 & pids+=($!)
"$bin/examples/demo_backend" b 127.0.0.1:9002 & pids+=($!); b_pid=$!
"$bin/examples/demo_backend" api 127.0.0.1:9003 & pids+=($!)
"$bin/tioga" -c conf/demo.yaml & pids+=($!); tioga_pid=$!

# Ready once the HTTP listener accepts and the admin endpoint reports no backend down
# (asked of the admin endpoint, so the access log shows only your own requests).
ready=
for _ in $(seq 100); do
  kill -0 "$tioga_pid" 2>/dev/null || break
  if (exec 3<>/dev/tcp/127.0.0.1/8080) 2>/dev/null &&
    status=$(curl -sf http://127.0.0.1:9900/status) && [[ $status != *'"healthy": false'* ]]; then
    ready=1
    break
  fi
  sleep 0.1
done
if [ -z "$ready" ]; then
  echo "run_demo: Tioga did not answer on 127.0.0.1:8080 within 10 s" >&2
  exit 1
fi

cat <<MSG

Tioga is up: HTTP on 127.0.0.1:8080, TCP on 127.0.0.1:8081, admin on 127.0.0.1:9900.
Paste these into another terminal:

  # Content routing to two pools
  curl -s http://127.0.0.1:8080/                   # pool web: a and b in turn
  curl -s http://127.0.0.1:8080/api/users          # pool api: answered by api

  # Filters on /api/: strip_prefix, request and response headers, a rate limit
  curl -si http://127.0.0.1:8080/api/users         # x-route: api, x-seen-path: /users, x-seen-h-x-demo: tioga
  for i in 1 2 3 4 5 6 7; do curl -s -o /dev/null -w '%{http_code} ' http://127.0.0.1:8080/api/; done; echo
                                                   # 5 per 10 s per client, then 429
  curl -si 'http://127.0.0.1:8080/old/users?id=3'  # a route with no pool: 301 to /api/users?id=3

  # The pool web over the TCP listener (L4), health-checked once for both listeners
  curl -s http://127.0.0.1:8081/                   # a and b in turn, relayed as plain TCP
$(printf '  %-49s# freeze b: within 2 s both listeners send only to a' "kill -STOP $b_pid")
$(printf '  %-49s# thaw b: back in rotation after its next check' "kill -CONT $b_pid")

  # Admin endpoint
  http://127.0.0.1:9900/                           # the status page: open it in a browser
  curl -s http://127.0.0.1:9900/status             # the same as JSON
  curl -s http://127.0.0.1:9900/metrics | grep -E '^tioga_(http_requests|tcp_connections)_total.* [1-9]'

Ctrl-C stops Tioga and the three backends. Configuration: conf/demo.yaml
MSG
wait -n "${pids[@]}"
