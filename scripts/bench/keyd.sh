#!/usr/bin/env bash
# envelope-keyd throughput and latency through the project's client library
# (tests/bench/keyd_load: N threads, each with its own keep-alive
# connection, calling one operation in a loop): Decrypt with 1, 8 and 64
# clients over the Unix socket and over TLS (SigV4-signed, TLS 1.3, a P-256
# certificate made here with openssl), GenerateDataKey with 1 and 8 over
# the Unix socket, all against one daemon in the same run; and Decrypt and
# GenerateDataKey with 1 and 8 clients under a key in a custom key store,
# whose AES-GCM runs on a SoftHSM2 token (docs/KEYSERVICE.md, "Custom key
# stores"), beside the same rows under a software key. Each row runs
# ROUNDS times (default 3) and reports the median requests/s, with the p50
# and p99 latency of the median run, and the median of the client
# process's CPU time (user + system, /usr/bin/time) per request.
# SECONDS_PER_RUN (default 5) sets each run's length.
#
# OLD_KEYD_LOAD=PATH adds a second client to compare: a keyd_load binary
# built from another commit (e.g. before a change to the client library),
# run against the same daemon, alternating with this tree's in every round
# (which goes first alternates too), so both see the same machine.
#
# Prints a Markdown table for docs/BENCHMARKS.md and, with BENCH_JSON=FILE,
# writes the results there (group "keyd": Decrypt/s against clients, one
# series per transport and client; a table row per run with the samples).
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
bash "$repo/scripts/setup.sh" >/dev/null
BUILD_DIR="$repo/build" bash "$repo/scripts/build.sh" --target keyd_load envelope-keyd envelopectl >/dev/null
build="$repo/build"
seconds=${SECONDS_PER_RUN:-5}
rounds=${ROUNDS:-3}
old_load=${OLD_KEYD_LOAD:-}
[[ -z $old_load || -x $old_load ]] || { echo "OLD_KEYD_LOAD=$old_load is not executable" >&2; exit 1; }

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

# A SoftHSM2 token for the custom key store, in a directory of its own.
mkdir "$work/tokens"
printf 'directories.tokendir = %s\nobjectstore.backend = file\nlog.level = ERROR\n' \
  "$work/tokens" >"$work/softhsm2.conf"
export SOFTHSM2_CONF=$work/softhsm2.conf
softhsm2-util --init-token --free --label bench-hsm --so-pin bench-so-pin --pin bench-pin-1 >/dev/null

"$build/keyservice/envelope-keyd" --data-dir "$work/data" --socket "$work/kms.sock" -f \
  --listen 127.0.0.1:0 --tls-cert "$work/server.pem" --tls-key "$work/server.key" \
  --access-keys "$work/access-keys" \
  --hsm-cluster "cluster-envelopebench=pkcs11:token=bench-hsm?module-path=/usr/lib/softhsm/libsofthsm2.so" \
  2>"$work/keyd.log" &
keyd=$!
port=
for _ in $(seq 200); do
  port=$(grep -o 'https://127.0.0.1:[0-9]*' "$work/keyd.log" | head -1 | sed 's/.*://') || true
  [[ -n $port && -S "$work/kms.sock" ]] && break
  sleep 0.05
done
[[ -n $port ]] || { cat "$work/keyd.log" >&2; exit 1; }
unix="unix:$work/kms.sock"
https="https://127.0.0.1:$port"
key=$("$build/tools/envelopectl" --endpoint "$unix" key create --description bench)
# The access key's principal may use root's key.
cat >"$work/policy.json" <<JSON
{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"kms:*","Resource":"*",
 "Principal":{"Local":["user:root","key:bench"]}}]}
JSON
"$build/tools/envelopectl" --endpoint "$unix" key policy put "$key" "$work/policy.json" >/dev/null
store=$(echo bench-pin-1 | "$build/tools/envelopectl" --endpoint "$unix" key-store create bench \
  --cluster cluster-envelopebench)
"$build/tools/envelopectl" --endpoint "$unix" key-store connect "$store"
token_key=$("$build/tools/envelopectl" --endpoint "$unix" key create --custom-key-store "$store" \
  --description "bench, on the token")

# The rows: transport, operation, clients, key (software or token).
rows=(
  "unix Decrypt 1 software" "unix Decrypt 8 software" "unix Decrypt 64 software"
  "unix GenerateDataKey 1 software" "unix GenerateDataKey 8 software"
  "tls Decrypt 1 software" "tls Decrypt 8 software" "tls Decrypt 64 software"
  "unix Decrypt 1 token" "unix Decrypt 8 token"
  "unix GenerateDataKey 1 token" "unix GenerateDataKey 8 token"
)
clients_to_run=(new)
[[ -n $old_load ]] && clients_to_run+=(old)

# One run: appends its JSON line, tagged, to $work/results.jsonl.
run() {  # run CLIENT TRANSPORT OP CLIENTS KIND ROUND
  local client=$1 transport=$2 op=$3 n=$4 kind=$5 round=$6 load=$build/tests/keyd_load
  [[ $client == old ]] && load=$old_load
  local use_key=$key
  [[ $kind == token ]] && use_key=$token_key
  local args=(--key "$use_key" --op "$op" --clients "$n" --seconds "$seconds")
  if [[ $transport == unix ]]; then
    args+=(--endpoint "$unix")
  else
    args+=(--endpoint "$https" --ca-file "$work/ca.pem")
  fi
  local line cpu
  line=$(/usr/bin/time -f '%U %S' -o "$work/cpu" "$load" "${args[@]}")
  # The client's own CPU (user + system) per request: what the client
  # library costs, less sensitive than throughput to a shared machine.
  cpu=$(awk '{print $1 + $2}' "$work/cpu")
  printf '{"client":"%s","transport":"%s","kind":"%s","round":%d,"cpu_seconds":%s,"result":%s}\n' \
    "$client" "$transport" "$kind" "$round" "$cpu" "$line" >>"$work/results.jsonl"
}

for round in $(seq "$rounds"); do
  for row in "${rows[@]}"; do
    read -r transport op n kind <<<"$row"
    order=("${clients_to_run[@]}")
    if (( round % 2 == 0 )) && [[ -n $old_load ]]; then order=(old new); fi
    for client in "${order[@]}"; do run "$client" "$transport" "$op" "$n" "$kind" "$round"; done
  done
done

commit=$(git -C "$repo" rev-parse --short HEAD 2>/dev/null || echo unknown)
RESULTS="$work/results.jsonl" COMMIT="$commit" SECONDS_PER_RUN="$seconds" \
  OLD="${old_load:+1}" /usr/bin/python3 - <<'PY'
import datetime, json, os

runs = [json.loads(l) for l in open(os.environ["RESULTS"])]
for r in runs:
    r["result"]["cpu_us"] = r["cpu_seconds"] * 1e6 / max(1, r["result"]["requests"])
old = bool(os.environ.get("OLD"))
names = {"unix": "Unix socket", "tls": "TLS 1.3 + SigV4"}
kinds = {"software": "software", "token": "token (SoftHSM2)"}
clients = {"new": "this client", "old": "old client"}

def key(r):
    return (r["transport"], r["result"]["op"], r["result"]["clients"], r["kind"])

rows = []
for r in runs:
    if key(r) not in rows:
        rows.append(key(r))

def median_run(client, row):
    """The run with the median requests/s (the upper middle one of an even count)."""
    rs = sorted((r["result"] for r in runs if r["client"] == client and key(r) == row),
                key=lambda x: x["per_second"])
    return rs[len(rs) // 2]

def cpu(client, row):
    """The median over the rounds of the client's CPU µs per request."""
    xs = sorted(r["result"]["cpu_us"] for r in runs if r["client"] == client and key(r) == row)
    return xs[len(xs) // 2]

def samples(client, row):
    return [r["result"]["per_second"] for r in sorted(
        (r for r in runs if r["client"] == client and key(r) == row), key=lambda r: r["round"])]

failures = sum(r["result"]["failures"] for r in runs)
head = "| transport | operation | clients | key | requests/s | p50 µs | p99 µs | client CPU µs/request |"
rule = "|---|---|---|---|---|---|---|---|"
if old:
    head += " old client requests/s | old p50 µs | old p99 µs | old client CPU µs/request | new/old requests/s |"
    rule += "---|---|---|---|---|"
print(head)
print(rule)
table = []
for row in rows:
    transport, op, n, kind = row
    new_med = median_run("new", row)
    cells = [names[transport], op, str(n), kinds[kind], format(round(new_med["per_second"]), ","),
             "%.0f" % new_med["p50_us"], "%.0f" % new_med["p99_us"], "%.1f" % cpu("new", row)]
    label = "%s, %s, %d clients%s" % (names[transport], op, n,
                                      ", token key" if kind == "token" else "")
    entry = {"workload": label,
             "unit": "requests/s", "higher_is_better": True,
             "samples": {clients["new"]: samples("new", row)},
             "median": {clients["new"]: new_med["per_second"]}}
    if old:
        old_med = median_run("old", row)
        cells += [format(round(old_med["per_second"]), ","), "%.0f" % old_med["p50_us"],
                  "%.0f" % old_med["p99_us"], "%.1f" % cpu("old", row),
                  "%.2f" % (new_med["per_second"] / old_med["per_second"])]
        entry["samples"][clients["old"]] = samples("old", row)
        entry["median"][clients["old"]] = old_med["per_second"]
    print("| " + " | ".join(cells) + " |")
    table.append(entry)
    cpu_entry = {"workload": label + ": client CPU",
                 "unit": "µs/request", "higher_is_better": False,
                 "samples": {clients[c]: [r["result"]["cpu_us"] for r in sorted(
                     (r for r in runs if r["client"] == c and key(r) == row),
                     key=lambda r: r["round"])] for c in (["new", "old"] if old else ["new"])},
                 "median": {clients[c]: cpu(c, row) for c in (["new", "old"] if old else ["new"])}}
    table.append(cpu_entry)
print()
print("Median of %d runs of %s s each; samples (requests/s, in round order):" %
      (len(samples("new", rows[0])), os.environ["SECONDS_PER_RUN"]))
print()
print("```")
for row in rows:
    for c in (["new", "old"] if old else ["new"]):
        print("%s, %s, %d clients, %s key, %s: %s" % (names[row[0]], row[1], row[2], row[3],
              clients[c],
              " ".join(format(round(x), ",") for x in samples(c, row))))
print("```")
print()
print("failed requests: %d" % failures)
print()
for op in ("Decrypt", "GenerateDataKey"):
    for n in (1, 8):
        t, sw = ("unix", op, n, "token"), ("unix", op, n, "software")
        if t in rows and sw in rows:
            print("token key / software key, %s, %d clients: %.2f" % (
                op, n, median_run("new", t)["per_second"] / median_run("new", sw)["per_second"]))

if os.environ.get("BENCH_JSON"):
    series = []
    for transport in ["unix", "tls"]:
        for c in (["new", "old"] if old else ["new"]):
            points = [[row[2], median_run(c, row)["per_second"]]
                      for row in rows
                      if row[0] == transport and row[1] == "Decrypt" and row[3] == "software"]
            title = "Decrypt, " + names[transport]
            if old:
                title += ", " + clients[c]
            series.append({"group": "keyd", "title": title, "x": "clients",
                           "y": "Decrypt/s", "log_x": True, "points": points})
    out = {"bench": "keyd", "date": datetime.datetime.now(datetime.timezone.utc).isoformat(),
           "commit": os.environ["COMMIT"], "series": series, "table": table}
    with open(os.environ["BENCH_JSON"], "w") as f:
        json.dump(out, f, indent=1)
PY
echo
echo "audit log after the run: $(wc -l <"$work/data/audit.log") records"
