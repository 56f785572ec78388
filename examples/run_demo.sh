#!/usr/bin/env bash
# The `make run` demo: two example backends on 127.0.0.1:9001/9002 and Tioga with
# conf/demo.yaml; Ctrl-C stops all three.
set -euo pipefail
bin=${1:-target/debug}
pids=()
cleanup() { kill "${pids[@]}" 2>/dev/null || true; wait 2>/dev/null || true; }
trap cleanup EXIT INT TERM
"$bin/examples/demo_backend" a 127.0.0.1:9001 & pids+=($!)
"$bin/examples/demo_backend" b 127.0.0.1:9002 & pids+=($!)
"$bin/tioga" -c conf/demo.yaml & pids+=($!)
for _ in $(seq 100); do
  (exec 3<>/dev/tcp/127.0.0.1/8080) 2>/dev/null && break
  sleep 0.1
done
cat <<'MSG'

Tioga is up. Try:
  curl -i http://127.0.0.1:8080/        # answered by backend a, then b, then a ...
  for i in 1 2 3 4; do curl -s http://127.0.0.1:8080/; done
  curl -s http://127.0.0.1:8080/health  # the backends' health endpoint, through Tioga
  printf 'GET / HTTP/1.0\r\n\r\n' | (exec 3<>/dev/tcp/127.0.0.1/8081; cat >&3; cat <&3)
                                        # the same pool through the TCP listener
Ctrl-C stops Tioga and both backends.
MSG
wait -n "${pids[@]}"
