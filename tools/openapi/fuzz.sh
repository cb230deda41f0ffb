#!/usr/bin/env bash
# Fuzzes the public HTTP API with Schemathesis against its own OpenAPI document: starts the binary
# in embedded demo mode (a throwaway data directory, free ports), takes a demo practitioner's
# token, and runs `schemathesis run` on /openapi.json with two checks — no 5xx, every response
# matching its documented schema — for a bounded number of examples per operation.
# EH_FUZZ_EXAMPLES (default 40) and EH_FUZZ_SEED change the run; EH_BIN names a built binary.
set -euo pipefail
cd "$(dirname "$0")/../.."
command -v schemathesis >/dev/null || { echo "schemathesis missing: python3 -m pip install schemathesis" >&2; exit 1; }

if [ -z "${EH_BIN:-}" ]; then
  cargo build -q --bin earlyhelp
  EH_BIN="${CARGO_TARGET_DIR:-target}/debug/earlyhelp"
fi
EH_BIN="$(realpath "$EH_BIN")"
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
HTTP_PORT=$(free_port)
GRPC_PORT=$(free_port)
DATA=$(mktemp -d)
export EH__DATA_DIR="$DATA"
export EH__SERVER__HTTP_ADDR="127.0.0.1:$HTTP_PORT"
export EH__SERVER__GRPC_ADDR="127.0.0.1:$GRPC_PORT"
# The fuzzer's own rate is not what is tested here (a Rust test covers the limit).
export EH__GATEWAY__RATE_LIMIT__PER_MINUTE=1000000
export EH__GATEWAY__RATE_LIMIT__BURST=100000
export RUST_LOG="${RUST_LOG:-warn}"

"$EH_BIN" run >"$DATA/earlyhelp.log" 2>&1 &
PID=$!
cleanup() {
  kill "$PID" 2>/dev/null || true
  wait "$PID" 2>/dev/null || true
  rm -rf "$DATA"
}
trap cleanup EXIT

ready=0
for _ in $(seq 1 300); do
  if curl -fsS "http://127.0.0.1:$HTTP_PORT/readyz" >/dev/null 2>&1; then ready=1; break; fi
  kill -0 "$PID" 2>/dev/null || break
  sleep 0.2
done
if [ "$ready" -ne 1 ]; then
  echo "earlyhelp did not become ready" >&2
  cat "$DATA/earlyhelp.log" >&2
  exit 1
fi

TOKEN=$("$EH_BIN" token --roles practitioner,front_door,team_manager)
status=0
# From the throwaway directory: Schemathesis leaves its state (.schemathesis/) where it runs.
(cd "$DATA" && schemathesis run "http://127.0.0.1:$HTTP_PORT/openapi.json" \
  --checks not_a_server_error,response_schema_conformance \
  --max-examples "${EH_FUZZ_EXAMPLES:-40}" \
  ${EH_FUZZ_SEED:+--seed "$EH_FUZZ_SEED"} \
  --max-time 80 \
  --generation-database none \
  --header "Authorization: Bearer $TOKEN" \
  --no-color) || status=$?
if [ "$status" -ne 0 ]; then
  echo "--- earlyhelp log (last 50 lines)" >&2
  tail -n 50 "$DATA/earlyhelp.log" >&2
fi
exit "$status"
