#!/usr/bin/env bash
# Instructions per accepted request of an OTLP/HTTP gateway with `oidc_auth` (ES256 tokens from
# `otap-df-load issuer`), without and with `headers_from_identity`, counted by callgrind: a
# count that does not move with the machine's load, for costs below what a load sweep resolves.
#
#   xtask/load/scripts/gateway-instructions.sh <engine> <variant> [seconds]
#
# <engine>: an `otap-df` built in release with `--features extension-oauth2`;
# <variant>: `jwt` (gateway+jwt) or `jwt+tenant-header` (`X-Scope-OrgID` from the `tenant`
# claim). The exporter does not merge (`merge_max_bytes: 0`): one upstream request per accepted
# one, so the count does not depend on timing. Eight client connections; counters zeroed after
# a 3 s warm-up, then `seconds` (default 15) counted; per request = Ir / requests accepted in
# between. Needs valgrind (callgrind_control) and curl.
set -euo pipefail
ENGINE=$(realpath "$1"); VARIANT=$2; SECONDS_=${3:-15}
ROOT=$(cd "$(dirname "$0")/../../.." && pwd)
LOAD=$ROOT/target/release/otap-df-load
[ -x "$LOAD" ] || { echo "build the load tool: cargo build --release -p otap-df-load" >&2; exit 2; }
WORK=$ROOT/target/load/instructions; mkdir -p "$WORK"; cd "$WORK"
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
UP=$(free_port); IN=$(free_port); ADMIN=$(free_port)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; }
trap cleanup EXIT
"$LOAD" serve --listen "127.0.0.1:$UP" > serve.log 2>&1 & pids+=($!)
"$LOAD" issuer > issuer.txt 2>&1 & pids+=($!)
for _ in $(seq 50); do grep -q '^token ' issuer.txt && break; sleep 0.1; done
JWKS=$(awk '/^jwks_url/ {print $2}' issuer.txt); ISS=$(awk '/^issuer/ {print $2}' issuer.txt)
TOKEN=$(awk '/^token/ {print $2}' issuer.txt)
case $VARIANT in
  jwt) HEADERS="" ;;
  jwt+tenant-header) HEADERS=", headers_from_identity: { X-Scope-OrgID: tenant }" ;;
  *) echo "variant: jwt or jwt+tenant-header" >&2; exit 2 ;;
esac
cat > "gateway-$VARIANT.yaml" <<YAML
version: otap_df/v1
engine:
  cores: 1
  admin: { listen: '127.0.0.1:$ADMIN' }
groups:
  load:
    pipelines:
      main:
        extensions:
          callers:
            type: extension:oidc_auth
            config: { issuer: '$ISS', jwks_url: '$JWKS', audience: otap-df, algorithms: [ES256], attributes: { tenant: tenant } }
        nodes:
          ingest:
            type: receiver:otlp_http
            config: { listen: '127.0.0.1:$IN' }
            capabilities: { bearer_token_authorizer: callers }
          out:
            type: exporter:otlp_http
            config: { endpoint: 'http://127.0.0.1:$UP', compression: none, merge_max_bytes: 0$HEADERS }
        connections:
          - { from: ingest, to: out }
YAML
rm -f callgrind.out.*
valgrind --tool=callgrind --callgrind-out-file="$WORK/callgrind.out.%p" "$ENGINE" run "gateway-$VARIANT.yaml" --quiet > "engine-$VARIANT.log" 2>&1 &
ENGINE_PID=$!; pids+=($ENGINE_PID)
metric() { curl -sf "http://127.0.0.1:$ADMIN/metrics" | awk -v m="$1" 'index($0, m) == 1 {print $2}'; }
for _ in $(seq 240); do curl -sf "http://127.0.0.1:$ADMIN/metrics" > /dev/null 2>&1 && break; sleep 0.5; done
"$LOAD" drive --address "127.0.0.1:$IN" --connections 8 --warmup 0 --seconds 3 --token "$TOKEN" > /dev/null
ACCEPTED='otap_df_node_counter_total{pipeline="load/main",node="ingest",name="accepted"}'
SENT='otap_df_node_counter_total{pipeline="load/main",node="out",name="requests"}'
callgrind_control -z "$ENGINE_PID" > /dev/null 2>&1
A0=$(metric "$ACCEPTED"); S0=$(metric "$SENT")
"$LOAD" drive --address "127.0.0.1:$IN" --connections 8 --warmup 0 --seconds "$SECONDS_" --token "$TOKEN" > "drive-$VARIANT.txt"
A1=$(metric "$ACCEPTED"); S1=$(metric "$SENT")
callgrind_control -d "$ENGINE_PID" > /dev/null 2>&1
OUT=$(ls -t callgrind.out.*.1 | head -1)
IR=$(awk '/^summary:|^totals:/ {print $2; exit}' "$OUT")
echo "$VARIANT: $((A1 - A0)) accepted, $((S1 - S0)) sent upstream, $IR instructions, $((IR / (A1 - A0))) per accepted request ($OUT)"
