#!/usr/bin/env bash
# Two legacy services, A calling B, neither with a line of tracing code nor any header copying,
# each behind its own sidetrace (ingress and egress): one request to A becomes ONE trace, end to
# end. A's outbound call leaves through its sidecar's egress listener (the standard http_proxy
# variable), which parents it on the inbound request that caused it and sends traceparent on to
# B's sidecar.
#
#   client ─► sidetrace A ─► app A (single-threaded) ─► sidetrace A egress ─► sidetrace B ─► app B
#                                                                               (pre-fork, 4 workers)
#
# From a clean clone, after the build (cmake -S . -B build -G Ninja && cmake --build build
# --target sidetrace):
#   examples/legacy-chain.sh
#   examples/legacy-chain.sh path/to/sidetrace      # another build (SIDETRACE_BIN wins over it)
#   KEEP_TMP=1 examples/legacy-chain.sh             # keep spans and logs
# Exits non-zero unless the request came back and its spans form one trace with the expected
# shape (ctest runs it: example_legacy_chain). Needs python3 (standard library only) and curl.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
say() { printf '\033[1m==> %s\033[0m\n' "$*"; }
die() { printf 'legacy-chain: %s\n' "$*" >&2; exit 1; }

bin="${SIDETRACE_BIN:-${1:-$root/build/proxy/sidetrace}}"
[ -x "$bin" ] || die "no sidetrace binary at $bin; build it first:
  cmake -S . -B build -G Ninja && cmake --build build --target sidetrace"
if [ -x /usr/bin/python3 ]; then py=/usr/bin/python3; else py="$(command -v python3)" || die "python3 not found"; fi
command -v curl >/dev/null || die "curl not found"
models="$root/tests/integration/legacy_models.py"

tmp="$(mktemp -d "${TMPDIR:-/tmp}/sidetrace-legacy-chain.XXXXXX")"
pids=()          # every process started here, killed on exit
sidecar_pids=()  # the two sidetrace processes, stopped with SIGTERM before the trace is read
cleanup() {
  local rc=$?
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  if [ -n "${KEEP_TMP:-}" ] || [ $rc -ne 0 ]; then
    echo "legacy-chain: spans and logs kept in $tmp" >&2
  else
    rm -rf "$tmp"
  fi
  exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() {
  "$py" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}
wait_port() {  # wait_port PORT PID NAME LOG
  for _ in $(seq 100); do
    "$py" -c 'import socket, sys; socket.create_connection(("127.0.0.1", int(sys.argv[1])), 0.5).close()' \
      "$1" 2>/dev/null && return 0
    kill -0 "$2" 2>/dev/null || { cat "$4" >&2; die "$3 exited at start"; }
    sleep 0.1
  done
  die "$3 not listening on port $1 after 10 s"
}
declare -A port
for p in a_app a_in a_egress a_admin b_app b_in b_egress b_admin; do port[$p]="$(free_port)"; done

# The apps see only the proxy variable their sidecar's egress listener answers on: no no_proxy
# from this shell may send their calls around it.
app() {  # app NAME MODEL EGRESS-PORT APP-PORT [--downstream HOST:PORT]
  local name=$1 model=$2 egress=$3 listen=$4
  shift 4
  env -i PATH="$PATH" http_proxy="http://127.0.0.1:$egress" \
    "$py" "$models" --model "$model" --port "$listen" --name "$name" --max-delay-ms 20 "$@" \
    >"$tmp/app-$name.out" 2>"$tmp/app-$name.log" &
  local pid=$!
  pids+=("$pid")
  wait_port "$listen" "$pid" "app $name" "$tmp/app-$name.log"
}
sidecar() {  # sidecar NAME APP-PORT LISTEN-PORT EGRESS-PORT ADMIN-PORT
  local cmd=("$bin" --listen "127.0.0.1:$3" --upstream "127.0.0.1:$2" --egress "127.0.0.1:$4"
    --admin "127.0.0.1:$5" --service-name "legacy-$1" --workers 2)
  echo "    ${cmd[*]#"$root"/}"
  # No --otlp-endpoint and no OTEL_* exporter variables: spans go to stdout as JSON lines.
  env -u OTEL_TRACES_EXPORTER -u OTEL_EXPORTER_OTLP_ENDPOINT -u OTEL_EXPORTER_OTLP_TRACES_ENDPOINT \
    -u OTEL_EXPORTER_OTLP_PROTOCOL -u OTEL_TRACES_SAMPLER -u OTEL_SERVICE_NAME \
    OTEL_BSP_SCHEDULE_DELAY=200 "${cmd[@]}" >"$tmp/spans-$1.jsonl" 2>"$tmp/sidetrace-$1.log" &
  local pid=$!
  pids+=("$pid")
  sidecar_pids+=("$pid")
  for _ in $(seq 100); do
    curl --noproxy '*' -fs -o /dev/null "http://127.0.0.1:$5/ready" && return 0
    kill -0 "$pid" 2>/dev/null || { cat "$tmp/sidetrace-$1.log" >&2; die "sidetrace $1 exited at start"; }
    sleep 0.1
  done
  die "sidetrace $1 not ready after 10 s"
}

say "B: a pre-fork legacy app (4 worker processes, one connection each at a time) behind sidetrace B"
app b prefork "${port[b_egress]}" "${port[b_app]}"
sidecar b "${port[b_app]}" "${port[b_in]}" "${port[b_egress]}" "${port[b_admin]}"
say "A: a single-threaded legacy app behind sidetrace A; it calls B at 127.0.0.1:${port[b_in]}" \
  "through http_proxy=http://127.0.0.1:${port[a_egress]} (A's egress listener)"
app a single "${port[a_egress]}" "${port[a_app]}" --downstream "127.0.0.1:${port[b_in]}"
sidecar a "${port[a_app]}" "${port[a_in]}" "${port[a_egress]}" "${port[a_admin]}"

say "One request: GET /req/42 to sidetrace A"
answer="$(curl --noproxy '*' -fsS "http://127.0.0.1:${port[a_in]}/req/42")" || die "the request failed"
echo "    A answered: $answer   (\"<B's status> <B's answer>\")"
[ "$answer" = "200 b 42" ] || die "expected A to answer '200 b 42' (B's answer through A)"

say "Stopping both sidecars (SIGTERM flushes their spans)"
for pid in "${sidecar_pids[@]}"; do
  kill -TERM "$pid"
  rc=0; wait "$pid" || rc=$?
  [ "$rc" -eq 0 ] || die "sidetrace (pid $pid) exited with status $rc"
done

say "The trace (examples/show_traces.py over both sidecars' spans)"
"$py" "$root/examples/show_traces.py" "$tmp/spans-a.jsonl" "$tmp/spans-b.jsonl" | sed 's/^/    /'

# The check: one trace, and each span the child of the one before, in this order.
"$py" - "$tmp/spans-a.jsonl" "$tmp/spans-b.jsonl" <<'EOF'
import json, sys
spans = [json.loads(l) for p in sys.argv[1:] for l in open(p) if l.startswith("{")]
want = [("legacy-a", "SERVER", "A SERVER"), ("legacy-a", "CLIENT", "A CLIENT (hop into app A)"),
        ("legacy-a", "CLIENT", "egress CLIENT (app A's call)"), ("legacy-b", "SERVER", "B SERVER"),
        ("legacy-b", "CLIENT", "B CLIENT (hop into app B)")]
traces = {s["trace_id"] for s in spans}
if len(traces) != 1 or len(spans) != len(want):
    sys.exit("legacy-chain: expected %d spans in one trace, got %d span(s) in %d trace(s)"
             % (len(want), len(spans), len(traces)))
parent, chain = "", []
for service, kind, label in want:
    child = [s for s in spans if s["parent_span_id"] == parent]
    if len(child) != 1 or (child[0]["service"], child[0]["kind"]) != (service, kind):
        sys.exit("legacy-chain: no single %s under span %r" % (label, parent))
    parent = child[0]["span_id"]
    chain.append(label)
source = [s for s in spans if "sidetrace.parent.source" in s["attributes"]]
print("    one trace %s: client -> %s" % (traces.pop(), " -> ".join(chain)))
print("    the egress span's parent was chosen by sidetrace.parent.source=%s"
      % source[0]["attributes"]["sidetrace.parent.source"])
EOF

cat <<EOF

What you are looking at:
  * Neither app has tracing code, and A copies nothing from its inbound request onto its call
    to B. A sends the call through its sidecar's egress listener only because http_proxy says so.
  * Sidetrace A made the egress CLIENT span a child of the hop into app A (the request the app
    was serving), and sent traceparent with it; sidetrace B continued that trace.
  * With one request in flight the rule single_inflight decides; see README "Egress" for the
    rules and tests/egress/parentage.py for how each server model fares under concurrency.
EOF
