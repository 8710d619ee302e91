#!/usr/bin/env bash
# envelope-keyd throughput and latency: Decrypt and GenerateDataKey with 1
# and 8 concurrent keep-alive clients over the Unix socket, and Decrypt with
# 1, 8 and 64 clients over TLS (SigV4-signed, TLS 1.3, a P-256 certificate
# made here with openssl), all against one daemon in the same run, through
# the project's client library (tests/bench/keyd_load). Prints a Markdown
# table for docs/BENCHMARKS.md. SECONDS_PER_RUN (default 5) sets each run's
# length.
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
bash "$repo/scripts/setup.sh" >/dev/null
BUILD_DIR="$repo/build" bash "$repo/scripts/build.sh" >/dev/null
build="$repo/build"
seconds=${SECONDS_PER_RUN:-5}

work=$(mktemp -d)
keyd=
trap '[[ -n $keyd ]] && kill $keyd 2>/dev/null; wait 2>/dev/null; rm -rf "$work"' EXIT

# A throwaway PKI: a CA and a server certificate for 127.0.0.1.
openssl ecparam -name prime256v1 -genkey -noout -out "$work/ca.key" 2>/dev/null
openssl req -x509 -new -key "$work/ca.key" -out "$work/ca.pem" -days 2 -subj "/CN=bench CA" \
  -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign 2>/dev/null
openssl ecparam -name prime256v1 -genkey -noout -out "$work/server.key" 2>/dev/null
chmod 600 "$work/server.key"
openssl req -new -key "$work/server.key" -out "$work/server.csr" -subj "/CN=127.0.0.1" 2>/dev/null
printf 'subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n' >"$work/server.ext"
openssl x509 -req -in "$work/server.csr" -CA "$work/ca.pem" -CAkey "$work/ca.key" \
  -CAcreateserial -out "$work/server.pem" -days 2 -extfile "$work/server.ext" 2>/dev/null
export AWS_ACCESS_KEY_ID=AKIAENVELOPEBENCH001
export AWS_SECRET_ACCESS_KEY=envelope/bench/secret/0001/abcdefghijklmn
export AWS_REGION=us-east-1
printf '%s %s bench\n' "$AWS_ACCESS_KEY_ID" "$AWS_SECRET_ACCESS_KEY" >"$work/access-keys"
chmod 600 "$work/access-keys"

"$build/keyservice/envelope-keyd" --data-dir "$work/data" --socket "$work/kms.sock" -f \
  --listen 127.0.0.1:0 --tls-cert "$work/server.pem" --tls-key "$work/server.key" \
  --access-keys "$work/access-keys" 2>"$work/keyd.log" &
keyd=$!
port=
for _ in $(seq 200); do
  port=$(grep -o 'https://127.0.0.1:[0-9]*' "$work/keyd.log" | head -1 | sed 's/.*://') || true
  [[ -n $port && -S "$work/kms.sock" ]] && break
  sleep 0.05
done
[[ -n $port ]] || { cat "$work/keyd.log" >&2; exit 1; }
unix="unix:$work/kms.sock"
key=$("$build/tools/envelopectl" --endpoint "$unix" key create --description bench)
# The access key's principal may use root's key.
cat >"$work/policy.json" <<JSON
{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"kms:*","Resource":"*",
 "Principal":{"Local":["user:root","key:bench"]}}]}
JSON
"$build/tools/envelopectl" --endpoint "$unix" key policy put "$key" "$work/policy.json" >/dev/null

row() {  # row TRANSPORT ENDPOINT OP CLIENTS [keyd_load args]
  local transport=$1 endpoint=$2 op=$3 clients=$4
  shift 4
  "$build/tests/keyd_load" --endpoint "$endpoint" --key "$key" --op "$op" \
    --clients "$clients" --seconds "$seconds" "$@" |
    TRANSPORT=$transport /usr/bin/python3 -c '
import json, os, sys
r = json.load(sys.stdin)
print("| %s | %s | %d | %s | %.0f | %.0f |" % (os.environ["TRANSPORT"], r["op"], r["clients"],
      format(round(r["per_second"]), ","), r["p50_us"], r["p99_us"]))'
}

echo "| transport | operation | clients | requests/s | p50 µs | p99 µs |"
echo "|---|---|---|---|---|---|"
for op in Decrypt GenerateDataKey; do
  for clients in 1 8; do row "Unix socket" "$unix" "$op" "$clients"; done
done
for clients in 1 8 64; do
  row "TLS 1.3 + SigV4" "https://127.0.0.1:$port" Decrypt "$clients" --ca-file "$work/ca.pem"
done
echo
echo "audit log after the run: $(wc -l <"$work/data/audit.log") records"
