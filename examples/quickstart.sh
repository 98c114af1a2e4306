#!/usr/bin/env bash
# sidetrace in two minutes: put the proxy in front of a legacy app that knows nothing about tracing,
# send it a few requests, and read the traces it produced.
#
#   examples/quickstart.sh            # from any directory
#   SKIP_INSTALL=1 examples/quickstart.sh
#   KEEP_TMP=1 examples/quickstart.sh # keep the temp dir (spans, logs) for a closer look
#   SIDETRACE_BIN=build-asan/proxy/sidetrace examples/quickstart.sh   # use another build
#
# On a fresh Debian/Ubuntu machine it installs what is missing (apt-get; sudo when not root), builds
# build/proxy/sidetrace if it is missing or stale, then runs the demo and cleans up after itself.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

say() { printf '\033[1m==> %s\033[0m\n' "$*"; }
note() { printf '    %s\n' "$*"; }
die() { printf '\033[31mquickstart: %s\033[0m\n' "$*" >&2; exit 1; }

# ---------------------------------------------------------------------------------------------
# 1. Dependencies: the build deps (one list, in tests/install-deps.sh), plus curl and python3.
if [ -z "${SKIP_INSTALL:-}" ]; then
  say "Checking dependencies (Debian packages)"
  bash tests/install-deps.sh || die "installing dependencies failed (see tests/install-deps.sh)"
fi

for tool in curl; do
  command -v "$tool" >/dev/null 2>&1 || die "'$tool' not found"
done
# Debian's python3 first (a pyenv python on PATH works too: the demo uses the standard library only).
if [ -x /usr/bin/python3 ]; then py=/usr/bin/python3
elif command -v python3 >/dev/null 2>&1; then py="$(command -v python3)"
else die "python3 not found"; fi

# ---------------------------------------------------------------------------------------------
# 2. Build sidetrace if build/proxy/sidetrace is missing or older than any source file.
bin="${SIDETRACE_BIN:-$root/build/proxy/sidetrace}"  # SIDETRACE_BIN: use a binary built elsewhere
stale=""
if [ -n "${SIDETRACE_BIN:-}" ]; then
  [ -x "$bin" ] || die "SIDETRACE_BIN=$bin is not an executable"
elif [ ! -x "$bin" ]; then
  stale="missing"
elif [ -n "$(find CMakeLists.txt proxy filters tracing upstream config \
            \( -name '*.cc' -o -name '*.h' -o -name '*.proto' -o -name CMakeLists.txt \) \
            -newer "$bin" -print -quit 2>/dev/null)" ]; then
  stale="stale"
fi
if [ -n "$stale" ]; then
  say "Building sidetrace ($stale binary; the first build takes a few minutes)"
  export CCACHE_BASEDIR="$root"
  mkdir -p build
  build_log="$root/build/quickstart-build.log"
  if ! { cmake -S . -B build -G Ninja && cmake --build build --target sidetrace; } >"$build_log" 2>&1; then
    tail -40 "$build_log" >&2
    die "building sidetrace failed (full log: $build_log)"
  fi
  note "built $bin (log: build/quickstart-build.log)"
fi
[ -x "$bin" ] || die "no binary at $bin after the build"

# ---------------------------------------------------------------------------------------------
# 3. Start the legacy app and sidetrace in front of it.
tmp="$(mktemp -d "${TMPDIR:-/tmp}/sidetrace-quickstart.XXXXXX")"
app_pid=""; proxy_pid=""
cleanup() {
  local rc=$?
  for pid in $proxy_pid $app_pid; do
    kill "$pid" 2>/dev/null || true
  done
  for pid in $proxy_pid $app_pid; do
    wait "$pid" 2>/dev/null || true
  done
  if [ -n "${KEEP_TMP:-}" ] || [ $rc -ne 0 ]; then
    echo "quickstart: logs and spans kept in $tmp" >&2
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
app_port="$(free_port)"; proxy_port="$(free_port)"; admin_port="$(free_port)"
while [ "$proxy_port" = "$app_port" ]; do proxy_port="$(free_port)"; done
while [ "$admin_port" = "$app_port" ] || [ "$admin_port" = "$proxy_port" ]; do admin_port="$(free_port)"; done

say "Starting the legacy demo app (no tracing code in it) on 127.0.0.1:$app_port"
"$py" examples/demo_app.py "$app_port" 2>"$tmp/app.log" &
app_pid=$!

port_open() {  # a bare TCP connect, so the app's request log stays clean
  "$py" -c 'import socket, sys; socket.create_connection(("127.0.0.1", int(sys.argv[1])), 0.5).close()' "$1" 2>/dev/null
}
for _ in $(seq 50); do
  port_open "$app_port" && break
  kill -0 "$app_pid" 2>/dev/null || { cat "$tmp/app.log" >&2; die "demo app exited at start"; }
  sleep 0.1
done
port_open "$app_port" || die "demo app did not come up on port $app_port"

say "Starting sidetrace on 127.0.0.1:$proxy_port -> 127.0.0.1:$app_port (admin on 127.0.0.1:$admin_port)"
cmd=("$bin" --listen "127.0.0.1:$proxy_port" --upstream "127.0.0.1:$app_port"
  --service-name demo --admin "127.0.0.1:$admin_port" --ignore-path /health)
note "${cmd[*]#$root/}"
note "no --otlp-endpoint: spans go to the console exporter (one JSON line per span on stdout)"
# Clear any OTEL_* exporter settings from the caller's shell so the console exporter is used.
env -u OTEL_TRACES_EXPORTER -u OTEL_EXPORTER_OTLP_ENDPOINT -u OTEL_EXPORTER_OTLP_TRACES_ENDPOINT \
  -u OTEL_EXPORTER_OTLP_PROTOCOL -u OTEL_TRACES_SAMPLER -u OTEL_TRACES_SAMPLER_ARG \
  -u OTEL_SERVICE_NAME OTEL_BSP_SCHEDULE_DELAY=200 \
  "${cmd[@]}" >"$tmp/spans.jsonl" 2>"$tmp/sidetrace.log" &
proxy_pid=$!

ready=""
for _ in $(seq 100); do
  if curl -fs -o /dev/null "http://127.0.0.1:$admin_port/ready"; then ready=1; break; fi
  if ! kill -0 "$proxy_pid" 2>/dev/null; then
    proxy_pid=""
    cat "$tmp/sidetrace.log" >&2
    die "sidetrace exited at start (its log is above)"
  fi
  sleep 0.1
done
[ -n "$ready" ] || { cat "$tmp/sidetrace.log" >&2; die "sidetrace not ready after 10 s (GET /ready on the admin port)"; }
note "ready: GET http://127.0.0.1:$admin_port/ready -> 200"

# ---------------------------------------------------------------------------------------------
# 4. Traffic through the proxy.
proxy="http://127.0.0.1:$proxy_port"
request() {  # request LABEL CURL-ARGS...
  local label="$1"; shift
  local code
  code="$(curl -s -o "$tmp/body" -w '%{http_code}' "$@")" || die "curl failed: $label"
  printf '    %-58s -> %s  %s\n' "$label" "$code" "$(head -c 70 "$tmp/body" | tr -d '\n')"
  [ "$code" -lt 500 ] || die "unexpected $code for $label (sidetrace log: $tmp/sidetrace.log)"
}
say "Sending requests through sidetrace"
request "GET /                      (a new trace starts here)" "$proxy/"
request "GET /orders/42 with a caller's traceparent" \
  -H "traceparent: 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01" "$proxy/orders/42"
request "POST /orders               (JSON body streamed through)" \
  -H "content-type: application/json" --data '{"item":"coffee beans","quantity":2}' "$proxy/orders"
request "GET /health                (proxied, never traced)" "$proxy/health"

say "What the legacy app saw (it logs the traceparent header it received)"
grep -v listening "$tmp/app.log" | sed 's/^/    /' || true
note "GET /health reached the app with its headers untouched (no traceparent): it is on the ignore list."

say "Admin metrics (GET /metrics, a few lines)"
curl -fs "http://127.0.0.1:$admin_port/metrics" | grep -E '^sidetrace_(downstream_requests_total|spans_started_total|spans_sampled_total)' |
  head -8 | sed 's/^/    /' || note "(metrics not available)"

say "Trace view (GET /tracez?format=json: the recent traces sidetrace kept in memory)"
curl -fs "http://127.0.0.1:$admin_port/tracez?format=json" | "$py" -c '
import json, sys
d = json.load(sys.stdin)
for r in d["routes"]:
    print("    route %-10s %d requests, %d errors, p50 %.2f ms" % (r["route"], r["count"], r["errors"], r["p50_ms"]))
for t in d["latest"]:
    print("    trace %s  %-14s %.2f ms, %d spans" % (t["trace_id"], t["name"], t["duration_ms"], t["spans"]))
' || note "(/tracez not available)"
if [ -n "${QUICKSTART_KEEP:-}" ]; then
  say "QUICKSTART_KEEP is set: open http://127.0.0.1:$admin_port/tracez in a browser; Enter stops"
  read -r _ || true
fi

# ---------------------------------------------------------------------------------------------
# 5. SIGTERM flushes the batch processor; then show the traces.
say "Stopping sidetrace with SIGTERM (it drains in-flight requests and flushes spans)"
kill -TERM "$proxy_pid"
rc=0; wait "$proxy_pid" || rc=$?
proxy_pid=""
[ "$rc" -eq 0 ] || { tail -20 "$tmp/sidetrace.log" >&2; die "sidetrace exited with status $rc after SIGTERM"; }
grep -q '"trace_id"' "$tmp/spans.jsonl" || { tail -20 "$tmp/sidetrace.log" >&2; die "no spans were written to stdout"; }

say "Traces (examples/show_traces.py reading the console exporter's JSON lines)"
"$py" examples/show_traces.py "$tmp/spans.jsonl" | sed 's/^/    /'

cat <<EOF

What you are looking at:
  * Each request became one trace: a SERVER span (the request sidetrace received) with a CLIENT
    span under it (the hop to the legacy app). The app has no tracing code; sidetrace injected the
    traceparent header the app logged above: same trace id, and the CLIENT span's id (span=...)
    as the parent id.
  * The request that carried a caller's traceparent joined trace 4bf92f3577b34da6a3ce929d0e0e4736:
    its SERVER span's parent is the caller's span 00f067aa0ba902b7.
  * GET /health was proxied but produced no span (--ignore-path /health).
  * Send spans to a collector instead: add --otlp-endpoint http://127.0.0.1:4317 (OTLP/gRPC), or
    set OTEL_EXPORTER_OTLP_ENDPOINT. For routes, sampling and more, see examples/*.yaml and README.md.
  * See the traces in a browser, no backend needed: while sidetrace runs, open
    http://127.0.0.1:<admin port>/tracez (here it was http://127.0.0.1:$admin_port/tracez; run
    QUICKSTART_KEEP=1 examples/quickstart.sh to keep it up): per-route latency, the latest, slowest
    and failed traces, and a waterfall of each trace's spans.
EOF
