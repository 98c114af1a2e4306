#!/usr/bin/env bash
# Proxy benchmark: nginx vs HAProxy vs sidetrace (tracing off) vs sidetrace (tracing on, every
# request sampled and exported over OTLP/gRPC to a local sink), in ONE run, on loopback.
#
#   tests/bench/run.sh
#   ROUNDS=1 DURATION=3s RESULTS_DIR=/tmp/bench tests/bench/run.sh   # quick smoke run, results aside
#   ROUNDS=5 DURATION=10s CONNECTIONS=32 WRK_THREADS=1 WARMUP=2s SKIP_INSTALL=1 BUILD_DIR=build-bench
#   PROXIES="nginx haproxy" tests/bench/run.sh      # a subset (default: nginx haproxy untraced traced)
#   PROXIES="traced traced_down traced_blackhole traced_slow traced_errors" tests/bench/run.sh
#                                                    # collector faults vs the healthy collector
#   ROUNDS=1 DURATION=120s PROXIES="traced traced_slow" tests/bench/run.sh   # minutes of load
#   MODE=h2 tests/bench/run.sh                      # HTTP/2 (h2c) and gRPC with h2load, see below
#   MODE=h2 ROUNDS=1 DURATION=3s CONNECTIONS=8 STREAMS=16 tests/bench/run.sh
#   MODE=h2 PROXIES="grpc_direct grpc_untraced grpc_traced" tests/bench/run.sh   # gRPC only
#   MODE=egress tests/bench/run.sh                  # the egress listener, see below
#   MODE=egress ROUNDS=1 DURATION=3s tests/bench/run.sh
#   PROXIES="traced traced_notracez" tests/bench/run.sh   # what the /tracez store costs
#   BASELINE_BIN=/tmp/old/sidetrace PROXIES="base_untraced base_traced untraced traced" \
#     tests/bench/run.sh                            # before/after of a change in one run
#   WORKERS=4 PROXY_CPU=0-3 LOAD_CPU=4-7 WRK_THREADS=4 tests/bench/run.sh  # multi-worker, below
#
# traced_notracez is the traced config with `admin.tracez.max_bytes: 0` (no /tracez store). With
# BASELINE_BIN set, base_untraced, base_traced (and in MODE=h2 base_grpc_untraced,
# base_grpc_traced) run that binary with the same configs as their namesakes, interleaved with
# them, so a change is measured against its parent on the same machine in the same minutes.
#
# Collector faults (opt-in): traced_down exports to an address that refuses connections,
# traced_blackhole to one that accepts TCP and never answers (a Python listener that never calls
# accept), traced_slow to an otlp_sink that answers every Export SLOW_DELAY_MS (default 500) ms late,
# traced_errors to one that answers every Export UNAVAILABLE (retried until the export timeout,
# then dropped); all are otherwise the traced config. Compare their requests/s and p99 with
# "traced" in the same run; their RSS (now and peak), dropped spans and failed exports are reported
# too. DURATION is per proxy per round, so ROUNDS=1 DURATION=120s holds each fault for two minutes
# at full load.
#
# MODE=h2 (default MODE=h1 is wrk over HTTP/1.1 as above): h2load (nghttp2-client) drives h2c by
# prior knowledge, CONNECTIONS (default 8) connections x STREAMS (default 16) concurrent streams,
# H2LOAD_THREADS (default 1) threads. Two tables, results in tests/bench/results/h2-latest.md:
#   h2c:  nginx (listen ... http2), HAProxy (bind ... proto h2), sidetrace untraced and traced, each
#         proxying GET / to the same HTTP/1.1 keep-alive upstream as MODE=h1.
#   gRPC: Echo/Unary calls (grpc_echo_bench, a grpc++ callback server on LOAD_CPU) posted by h2load
#         as one fixed length-prefixed EchoRequest (GRPC_MESSAGE) with content-type application/grpc
#         and te: trailers: grpc_direct (no proxy), grpc_untraced and grpc_traced (sidetrace with a
#         `protocol: http2` cluster).
# h2load reports no percentiles: the tables give its per-request mean / sd / max. Every response
# must be 2xx with no failed, errored or timed-out stream, or the run stops (ALLOW_ERRORS=1 counts
# them in the table instead). h2load sees only HTTP 200 for gRPC, so each gRPC path is checked
# once with a real grpc++ call and once with curl posting h2load's exact request (grpc-status 0 in
# the trailers), and the echo server's count of OK calls must cover h2load's 2xx total.
# grpc_direct has no proxy: h2load and the server share LOAD_CPU and PROXY_CPU idles, as the
# proxied paths also run h2load and the server there. Upstream pools: nginx keeps 64 idle
# connections (keepalive 64), sidetrace 1024 (max_idle_connections' default), HAProxy reuses
# without a cap; well above 64 requests in flight (CONNECTIONS x STREAMS) nginx opens and closes
# HTTP/1.1 upstream connections and falls far behind.
#
# MODE=egress: what the app's outbound calls cost sidetrace. wrk plays the app: absolute-form
# forward-proxy requests (GET http://127.0.0.1:UPSTREAM/ HTTP/1.1, as HTTP_PROXY clients send) to
# sidetrace's egress listener, which forwards them to the same upstream nginx with a CLIENT span
# each (traced, exported to the sink). Meanwhile EGRESS_INFLIGHT (default 8) inbound requests are
# held in flight through the same sidetrace's ingress to an app stand-in that reads them and never
# answers, so the parent inference (and the process rule) judges every outbound request against
# them, as in a busy app. Rows: egress (egress.process: false) and egress_process (true), each
# with wrk's keep-alive connections and, as egress_close / egress_process_close, with
# `Connection: close` (a new outbound connection per request: the process rule's cold path, an
# unseen socket whose owner is looked up in /proc). nginx and HAProxy have no comparable mode (a
# forward proxy that traces and parents the app's calls), so the reference row is sidetrace's own
# ingress, traced (PROXIES target "traced", as in MODE=h1). Results in
# tests/bench/results/egress-latest.md.
#
# Fairness rules: every proxy runs ONE worker pinned to PROXY_CPU (default 0); wrk (or h2load), the
# upstream (nginx returning 200 "ok"; the gRPC echo server) and the OTLP sink share LOAD_CPU
# (default 1); keep-alive on both legs for every proxy; rounds are interleaved (and the order
# rotated each round) so drift hits all alike; medians over rounds are reported. Next to
# requests/s every table gives the proxy's CPU µs per request (user + system time of its process
# and children from /proc/PID/stat over each measured run, divided by the requests the load tool
# completed) and its ratio to nginx and HAProxy: the load side caps requests/s on this 2-CPU
# machine, so CPU per request is the fairer cost figure. Results also go
# to tests/bench/results/latest.md (MODE=h1) or h2-latest.md (MODE=h2; grpc-latest.md when every
# target is a gRPC one), with the command that reproduces the run on top.
# WORKERS=N (default 1) gives every proxy N workers instead (nginx worker_processes, HAProxy
# nbthread, sidetrace --workers; the upstream nginx gets N too), for machines with the cores to pin
# them apart: PROXY_CPU and LOAD_CPU take taskset lists (PROXY_CPU=0-3 LOAD_CPU=4-7), and
# WRK_THREADS / H2LOAD_THREADS should grow with them. On 2 CPUs the one-worker run is the
# meaningful one (two workers would share their CPUs with the load generator).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$root"

die() { echo "bench: $*" >&2; exit 1; }
log() { echo "bench: $*" >&2; }

MODE="${MODE:-h1}"
faults=(traced_down traced_blackhole traced_slow traced_errors)
case "$MODE" in
  h1)
    known=(nginx haproxy untraced traced traced_notracez base_untraced base_traced "${faults[@]}")
    default_targets="nginx haproxy untraced traced"
    CONNECTIONS="${CONNECTIONS:-32}"
    ;;
  h2)
    known=(nginx haproxy untraced traced traced_notracez base_untraced base_traced grpc_direct
      grpc_untraced grpc_traced base_grpc_untraced base_grpc_traced)
    default_targets="nginx haproxy untraced traced grpc_direct grpc_untraced grpc_traced"
    CONNECTIONS="${CONNECTIONS:-8}"
    ;;
  egress)
    known=(traced egress egress_process egress_close egress_process_close)
    default_targets="${known[*]}"
    CONNECTIONS="${CONNECTIONS:-32}"
    ;;
  *) die "MODE must be h1, h2 or egress, not '$MODE'" ;;
esac
ROUNDS="${ROUNDS:-5}"
DURATION="${DURATION:-10s}"
WRK_THREADS="${WRK_THREADS:-1}"
STREAMS="${STREAMS:-16}"
H2LOAD_THREADS="${H2LOAD_THREADS:-1}"
GRPC_MESSAGE="${GRPC_MESSAGE:-hello from h2load}"
WARMUP="${WARMUP:-2s}"
PROXY_CPU="${PROXY_CPU:-0}"
LOAD_CPU="${LOAD_CPU:-1}"
WORKERS="${WORKERS:-1}"
[[ "$WORKERS" =~ ^[1-9][0-9]*$ ]] || die "WORKERS must be a positive number, not '$WORKERS'"
BUILD_DIR="${BUILD_DIR:-build-bench}"
SLOW_DELAY_MS="${SLOW_DELAY_MS:-500}"
EGRESS_INFLIGHT="${EGRESS_INFLIGHT:-8}"
read -r -a proxies <<<"${PROXIES:-$default_targets}"  # a subset for debugging
wants() { [[ " ${proxies[*]} " == *" $1 "* ]]; }
for p in "${proxies[@]}"; do
  [[ " ${known[*]} " == *" $p "* ]] || die "PROXIES: '$p' is not one of: ${known[*]} (MODE=$MODE)"
done
wants_grpc() {
  wants grpc_direct || wants grpc_untraced || wants grpc_traced || wants base_grpc_untraced ||
    wants base_grpc_traced
}
baselines=(base_untraced base_traced base_grpc_untraced base_grpc_traced)
exporting=(traced traced_notracez grpc_traced base_traced base_grpc_traced)  # to the sink
wants_sink() {
  wants_egress && return 0
  for e in "${exporting[@]}"; do wants "$e" && return 0; done
  return 1
}
for b in "${baselines[@]}"; do
  if wants "$b"; then
    [ -x "${BASELINE_BIN:-}" ] || die "PROXIES has $b: set BASELINE_BIN to a sidetrace binary"
  fi
done
egress_targets=(egress egress_process egress_close egress_process_close)
is_egress() { [[ " ${egress_targets[*]} " == *" $1 "* ]]; }
wants_egress() { for e in "${egress_targets[@]}"; do wants "$e" && return 0; done; return 1; }
bench_dir="$root/tests/bench"
results_dir="${RESULTS_DIR:-$bench_dir/results}"  # smoke runs: RESULTS_DIR=/tmp/x keeps the real ones

# The command that reproduces this run (effective values), for the top of the report.
command_line="MODE=$MODE ROUNDS=$ROUNDS DURATION=$DURATION WARMUP=$WARMUP CONNECTIONS=$CONNECTIONS"
if [ "$MODE" = h1 ] || [ "$MODE" = egress ]; then
  command_line+=" WRK_THREADS=$WRK_THREADS"
  wants traced_slow && command_line+=" SLOW_DELAY_MS=$SLOW_DELAY_MS"
  [ "$MODE" = egress ] && command_line+=" EGRESS_INFLIGHT=$EGRESS_INFLIGHT"
else
  command_line+=" STREAMS=$STREAMS H2LOAD_THREADS=$H2LOAD_THREADS"
  wants_grpc && command_line+=" GRPC_MESSAGE=\"$GRPC_MESSAGE\""
fi
[ -n "${ALLOW_ERRORS:-}" ] && command_line+=" ALLOW_ERRORS=1"
[ -n "${BASELINE_BIN:-}" ] && command_line+=" BASELINE_BIN=$BASELINE_BIN"
[ "$WORKERS" != 1 ] && command_line+=" WORKERS=$WORKERS"
command_line+=" PROXY_CPU=$PROXY_CPU LOAD_CPU=$LOAD_CPU BUILD_DIR=$BUILD_DIR PROXIES=\"${proxies[*]}\""
command_line+=" tests/bench/run.sh"

# --- dependencies --------------------------------------------------------------------------------
if [ -z "${SKIP_INSTALL:-}" ]; then
  extra=(util-linux wrk haproxy nghttp2-client)
  command -v nginx >/dev/null 2>&1 || extra+=(nginx-light)
  bash tests/install-deps.sh "${extra[@]}" || die "installing dependencies failed"
fi
export PATH="$PATH:/usr/sbin:/sbin"
load_tool=wrk
[ "$MODE" = h2 ] && load_tool=h2load
for tool in "$load_tool" nginx haproxy taskset curl cmake; do
  command -v "$tool" >/dev/null 2>&1 || die "'$tool' not found (install it, or drop SKIP_INSTALL)"
done
if [ -x /usr/bin/python3 ]; then py=/usr/bin/python3; else py="$(command -v python3)" || die "python3 not found"; fi

ncpu="$(nproc)"
if [ "$ncpu" -lt 2 ]; then
  log "only $ncpu CPU: proxy and load generator share CPU 0 (numbers will be pessimistic)"
  PROXY_CPU=0; LOAD_CPU=0
fi

# --- build ---------------------------------------------------------------------------------------
sidetrace="$root/$BUILD_DIR/proxy/sidetrace"
sink="$root/$BUILD_DIR/tests/bench/otlp_sink"
grpc_bench="$root/$BUILD_DIR/tests/bench/grpc_echo_bench"
sidetraces=(untraced traced traced_notracez "${faults[@]}" grpc_untraced grpc_traced
  "${egress_targets[@]}" "${baselines[@]}")
targets=()
for v in "${sidetraces[@]}"; do wants "$v" && targets=(sidetrace otlp_sink); done
wants_grpc && targets+=(grpc_echo_bench)
if [ ${#targets[@]} -gt 0 ]; then
  log "building ${targets[*]} (Release) in $BUILD_DIR"
  export CCACHE_BASEDIR="$root"
  cmake -S . -B "$BUILD_DIR" -G Ninja -DCMAKE_BUILD_TYPE=Release >/dev/null || die "cmake configure failed"
  cmake --build "$BUILD_DIR" -j "${JOBS:-$ncpu}" --target "${targets[@]}" >/dev/null ||
    die "build failed (re-run: cmake --build $BUILD_DIR --target ${targets[*]})"
  for t in "${targets[@]}"; do
    case "$t" in
      sidetrace) [ -x "$sidetrace" ] ;; otlp_sink) [ -x "$sink" ] ;; *) [ -x "$grpc_bench" ] ;;
    esac || die "$t missing after build"
  done
fi

# --- processes -----------------------------------------------------------------------------------
tmp="$(mktemp -d "${TMPDIR:-/tmp}/sidetrace-bench.XXXXXX")"
pids=()
cleanup() {
  local rc=$?
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  if [ -n "${KEEP_TMP:-}" ] || [ $rc -ne 0 ]; then log "logs kept in $tmp"; else rm -rf "$tmp"; fi
  exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() {
  "$py" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}
declare -A port
for name in upstream sink nginx haproxy untraced traced admin_untraced admin_traced \
  traced_notracez admin_traced_notracez base_untraced admin_base_untraced base_traced \
  admin_base_traced base_grpc_untraced admin_base_grpc_untraced base_grpc_traced \
  admin_base_grpc_traced \
  traced_down admin_traced_down down_sink traced_blackhole admin_traced_blackhole hole \
  traced_slow admin_traced_slow slow_sink traced_errors admin_traced_errors errors_sink \
  grpc_direct grpc_untraced admin_grpc_untraced grpc_traced admin_grpc_traced hold \
  egress admin_egress in_egress egress_process admin_egress_process in_egress_process \
  egress_close admin_egress_close in_egress_close \
  egress_process_close admin_egress_process_close in_egress_process_close; do
  while :; do
    p="$(free_port)"
    dup=""; for v in "${port[@]}"; do [ "$v" = "$p" ] && dup=1; done
    [ -z "$dup" ] && break
  done
  port[$name]="$p"
done

# nginx's compiled-in temp paths live under /var/lib/nginx; point every one nginx has at $tmp.
nginx_temp_paths="    client_body_temp_path $tmp/nginx-body;"
nginx_v="$(nginx -V 2>&1)"
for m in proxy fastcgi uwsgi scgi; do
  grep -q -- "--without-http_${m}_module" <<<"$nginx_v" || nginx_temp_paths+=$'\n'"    ${m}_temp_path $tmp/nginx-$m;"
done

# MODE=h2: the reference proxies listen h2c by prior knowledge (sidetrace does on every listener).
nginx_listen_h2=""; haproxy_bind_h2=""; curl_proto=()
if [ "$MODE" = h2 ]; then
  nginx_listen_h2=" http2"; haproxy_bind_h2=" proto h2"; curl_proto=(--http2-prior-knowledge)
fi

workers_text() { if [ "$WORKERS" = 1 ]; then echo "one worker"; else echo "$WORKERS workers"; fi; }

render() {  # render TEMPLATE OUT LISTEN_PORT ADMIN_PORT [SINK_PORT]
  local body
  body="$(cat "$1")"
  body="${body//@TMP@/$tmp}"
  body="${body//@UPSTREAM_PORT@/${port[upstream]}}"
  body="${body//@SINK_PORT@/${5:-${port[sink]}}}"
  body="${body//@LISTEN_PORT@/$3}"
  body="${body//@ADMIN_PORT@/$4}"
  body="${body//@NGINX_TEMP_PATHS@/$nginx_temp_paths}"
  body="${body//@GRPC_PORT@/${port[grpc_direct]}}"
  body="${body//@NGINX_LISTEN_H2@/$nginx_listen_h2}"
  body="${body//@HAPROXY_BIND_H2@/$haproxy_bind_h2}"
  body="${body//@WORKERS@/$WORKERS}"
  printf '%s\n' "$body" >"$2"
}

start() {  # start NAME CPU CMD... ; stdout/stderr to $tmp/NAME.{out,err}
  local name="$1" cpu="$2"; shift 2
  taskset -c "$cpu" "$@" >"$tmp/$name.out" 2>"$tmp/$name.err" &
  pids+=($!)
  eval "pid_$name=$!"
}

wait_http() {  # wait_http NAME URL EXPECTED_BODY [CURL_ARG...]
  local name="$1" url="$2" want="$3" pidvar="pid_$1" got=""
  shift 3
  for _ in $(seq 100); do
    got="$(curl -s --max-time 1 "$@" "$url" 2>/dev/null || true)"
    [ -n "$want" ] && [ "$got" = "$want" ] && return 0
    [ -z "$want" ] && curl -fs -o /dev/null --max-time 1 "$@" "$url" && return 0
    kill -0 "${!pidvar}" 2>/dev/null || { cat "$tmp/$name.err" >&2; die "$name exited at start"; }
    sleep 0.1
  done
  cat "$tmp/$name.err" >&2
  die "$name not answering at $url (last body: '${got:0:80}')"
}

# wait_grpc NAME: one real grpc++ Echo/Unary call through NAME succeeds, then curl posting h2load's
# exact request gets HTTP 200 and grpc-status 0 in the trailers (h2load itself sees only the 200).
grpc_path=/sidetrace.test.Echo/Unary
grpc_headers=(-H 'content-type: application/grpc' -H 'te: trailers')
wait_grpc() {
  local name="$1" pidvar="pid_$1" target="127.0.0.1:${port[$1]}" ok=""
  for _ in $(seq 100); do
    "$grpc_bench" call "$target" "$GRPC_MESSAGE" 2>"$tmp/$name-call.err" && { ok=1; break; }
    kill -0 "${!pidvar}" 2>/dev/null || { cat "$tmp/$name.err" >&2; die "$name exited at start"; }
    kill -0 "$pid_grpc_direct" 2>/dev/null || { cat "$tmp/grpc_direct.err" >&2; die "the gRPC echo server exited"; }
    sleep 0.1
  done
  [ -n "$ok" ] || die "$name: no gRPC OK at $target: $(cat "$tmp/$name-call.err")"
  curl -s --max-time 5 --http2-prior-knowledge -D "$tmp/$name-curl.headers" -o "$tmp/$name-curl.body" \
    --data-binary "@$tmp/grpc-request.bin" "${grpc_headers[@]}" "http://$target$grpc_path" ||
    die "$name: curl with h2load's gRPC request failed"
  grep -q '^HTTP/2 200' "$tmp/$name-curl.headers" && grep -qi '^grpc-status: 0' "$tmp/$name-curl.headers" &&
    [ -s "$tmp/$name-curl.body" ] ||
    die "$name: h2load's request did not get a gRPC OK: $(tr -d '\r' <"$tmp/$name-curl.headers")"
}

render "$bench_dir/nginx-upstream.conf.in" "$tmp/upstream.conf" "" ""
render "$bench_dir/nginx-proxy.conf.in" "$tmp/nginx-proxy.conf" "${port[nginx]}" ""
render "$bench_dir/haproxy.cfg.in" "$tmp/haproxy.cfg" "${port[haproxy]}" ""
render "$bench_dir/sidetrace-untraced.yaml.in" "$tmp/untraced.yaml" "${port[untraced]}" "${port[admin_untraced]}"
render "$bench_dir/sidetrace-traced.yaml.in" "$tmp/traced.yaml" "${port[traced]}" "${port[admin_traced]}"
render "$bench_dir/sidetrace-traced.yaml.in" "$tmp/traced_down.yaml" "${port[traced_down]}" \
  "${port[admin_traced_down]}" "${port[down_sink]}"
render "$bench_dir/sidetrace-traced.yaml.in" "$tmp/traced_blackhole.yaml" "${port[traced_blackhole]}" \
  "${port[admin_traced_blackhole]}" "${port[hole]}"
render "$bench_dir/sidetrace-traced.yaml.in" "$tmp/traced_slow.yaml" "${port[traced_slow]}" \
  "${port[admin_traced_slow]}" "${port[slow_sink]}"
render "$bench_dir/sidetrace-traced.yaml.in" "$tmp/traced_errors.yaml" "${port[traced_errors]}" \
  "${port[admin_traced_errors]}" "${port[errors_sink]}"
render "$bench_dir/sidetrace-grpc-untraced.yaml.in" "$tmp/grpc_untraced.yaml" "${port[grpc_untraced]}" \
  "${port[admin_grpc_untraced]}"
render "$bench_dir/sidetrace-grpc-traced.yaml.in" "$tmp/grpc_traced.yaml" "${port[grpc_traced]}" \
  "${port[admin_grpc_traced]}"
render "$bench_dir/sidetrace-traced.yaml.in" "$tmp/traced_notracez.yaml" "${port[traced_notracez]}" \
  "${port[admin_traced_notracez]}"
sed -i "s/^admin: { \(.*\) }$/admin: { \1, tracez: { max_bytes: 0 } }/" "$tmp/traced_notracez.yaml"
grep -q "max_bytes: 0" "$tmp/traced_notracez.yaml" || die "traced_notracez: admin line not found"
for b in "${baselines[@]}"; do  # the same config as the target it is named after
  config=sidetrace-${b#base_}.yaml.in
  render "$bench_dir/${config//_/-}" "$tmp/$b.yaml" "${port[$b]}" "${port[admin_$b]}"
done
for e in "${egress_targets[@]}"; do
  process=false
  [[ "$e" == egress_process* ]] && process=true
  render "$bench_dir/sidetrace-egress.yaml.in" "$tmp/$e.yaml" "${port[$e]}" "${port[admin_$e]}"
  sed -i "s/@INGRESS_PORT@/${port[in_$e]}/; s/@HOLD_PORT@/${port[hold]}/; s/@PROCESS@/$process/" "$tmp/$e.yaml"
done
# wrk's requests for the egress rows: absolute form, to the upstream, through the egress listener.
for close in "" 1; do
  {
    echo "wrk.path = \"http://127.0.0.1:${port[upstream]}/\""
    echo "wrk.headers[\"Host\"] = \"127.0.0.1:${port[upstream]}\""
    [ -n "$close" ] && echo 'wrk.headers["Connection"] = "close"'
  } >"$tmp/egress${close:+-close}.lua"
done
mkdir -p "$tmp/nginx-body"
if wants_grpc; then
  "$grpc_bench" frame "$GRPC_MESSAGE" >"$tmp/grpc-request.bin" || die "grpc_echo_bench frame failed"
fi

start upstream "$LOAD_CPU" nginx -p "$tmp" -e "$tmp/upstream-error.log" -c "$tmp/upstream.conf"
wants_sink && start sink "$LOAD_CPU" "$sink" "127.0.0.1:${port[sink]}"
wants_grpc && start grpc_direct "$LOAD_CPU" "$grpc_bench" serve "127.0.0.1:${port[grpc_direct]}"
wants traced_slow && start slow_sink "$LOAD_CPU" "$sink" --delay-ms "$SLOW_DELAY_MS" "127.0.0.1:${port[slow_sink]}"
wants traced_errors && start errors_sink "$LOAD_CPU" "$sink" --fail unavailable "127.0.0.1:${port[errors_sink]}"
wait_http upstream "http://127.0.0.1:${port[upstream]}/" ok

wants nginx && start nginx "$PROXY_CPU" nginx -p "$tmp" -e "$tmp/nginx-proxy-error.log" -c "$tmp/nginx-proxy.conf"
wants haproxy && start haproxy "$PROXY_CPU" haproxy -db -f "$tmp/haproxy.cfg"
# Bench runs must not inherit OTEL_* settings from the caller's shell: the YAML says it all.
otel_unset=()
while IFS='=' read -r k _; do otel_unset+=(-u "$k"); done < <(env | grep '^OTEL_' || true)
if wants traced_blackhole; then
  start hole "$LOAD_CPU" "$py" -c 'import socket, sys, time
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", int(sys.argv[1]))); s.listen(1024); time.sleep(1e9)' "${port[hole]}"
fi
for v in "${sidetraces[@]}"; do
  wants "$v" || continue
  bin="$sidetrace"
  [[ "$v" == base_* ]] && bin="$BASELINE_BIN"
  start "$v" "$PROXY_CPU" env "${otel_unset[@]}" "$bin" --config "$tmp/$v.yaml" --workers "$WORKERS"
  wait_http "$v" "http://127.0.0.1:${port[admin_$v]}/ready" ""
done
if wants_egress; then
  # The app stand-in: reads each request it is sent (the app has it) and never answers.
  start hold "$LOAD_CPU" "$py" -c 'import socket, sys
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", int(sys.argv[1]))); s.listen(1024); held = []
while True:
    c, _ = s.accept(); c.recv(65536); held.append(c)' "${port[hold]}"
fi
for p in "${proxies[@]}"; do
  case "$p" in
    grpc_* | base_grpc_*) wait_grpc "$p" ;;
    egress*) wait_http "$p" "http://127.0.0.1:${port[upstream]}/" ok -x "http://127.0.0.1:${port[$p]}" ;;
    *) wait_http "$p" "http://127.0.0.1:${port[$p]}/" ok "${curl_proto[@]}" ;;
  esac
done
# MODE=egress: EGRESS_INFLIGHT inbound requests held in flight in each egress instance.
for e in "${egress_targets[@]}"; do
  wants "$e" || continue
  for ((i = 0; i < EGRESS_INFLIGHT; i++)); do
    curl -s -o /dev/null --max-time 100000 "http://127.0.0.1:${port[in_$e]}/held/$i" &
    pids+=($!)
  done
  for _ in $(seq 100); do
    n="$(curl -fs "http://127.0.0.1:${port[admin_$e]}/metrics" | awk '$1 == "sidetrace_egress_inbound_in_flight" {print $2}')"
    [ "$n" = "$EGRESS_INFLIGHT" ] && break
    sleep 0.1
  done
  [ "$n" = "$EGRESS_INFLIGHT" ] || die "$e: $n inbound requests in flight, wanted $EGRESS_INFLIGHT"
done
up=""
for p in "${proxies[@]}"; do up+=", $p :${port[$p]}"; done
log "all up (MODE=$MODE): upstream :${port[upstream]}, sink :${port[sink]}$up"

# --- load ----------------------------------------------------------------------------------------
run_wrk() {  # run_wrk PROXY DURATION OUTFILE
  local script=()
  case "$1" in
    egress_close | egress_process_close) script=(-s "$tmp/egress-close.lua") ;;
    egress | egress_process) script=(-s "$tmp/egress.lua") ;;
  esac
  taskset -c "$LOAD_CPU" wrk -t "$WRK_THREADS" -c "$CONNECTIONS" -d "$2" --latency "${script[@]}" \
    "http://127.0.0.1:${port[$1]}/" >"$3" 2>&1 || die "wrk failed against $1: $(tail -3 "$3")"
}
# h2load's summary, e.g. "requests: 9 total, 9 started, 9 done, 9 succeeded, 0 failed, 0 errored,
# 0 timeout" and "status codes: 9 2xx, 0 3xx, 0 4xx, 0 5xx". In duration mode the streams still in
# flight when the time is up are not counted as done or failed (a status that arrived just before
# may still be counted, so 2xx can exceed done by a few), so any failure or non-2xx status is real.
h2load_problems() {  # h2load_problems FILE -> "" or what went wrong
  "$py" - "$1" <<'PY'
import re, sys
t = open(sys.argv[1]).read()
req = re.search(r"requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, (\d+) failed, "
                r"(\d+) errored, (\d+) timeout", t)
st = re.search(r"status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx", t)
if not req or not st:
    print("h2load printed no request summary")
    sys.exit()
total, started, done, ok, failed, errored, timeout = map(int, req.groups())
s2, s3, s4, s5 = map(int, st.groups())
if done == 0:
    print("no request completed")
elif s3 or s4 or s5 or failed or errored or timeout:
    print("%d done, %d 2xx, %d 3xx, %d 4xx, %d 5xx, %d failed, %d errored, %d timeout"
          % (done, s2, s3, s4, s5, failed, errored, timeout))
PY
}
run_h2load() {  # run_h2load TARGET DURATION OUTFILE
  local cmd=(h2load -t "$H2LOAD_THREADS" -c "$CONNECTIONS" -m "$STREAMS" -D "$2")
  case "$1" in
    grpc_* | base_grpc_*) cmd+=(-d "$tmp/grpc-request.bin" "${grpc_headers[@]}" "http://127.0.0.1:${port[$1]}$grpc_path") ;;
    *) cmd+=("http://127.0.0.1:${port[$1]}/") ;;
  esac
  taskset -c "$LOAD_CPU" "${cmd[@]}" >"$3" 2>&1 || die "h2load failed against $1 ($(printf '%q ' "${cmd[@]}")): $(tail -3 "$3")"
  local problems
  problems="$(h2load_problems "$3")"
  [ -z "$problems" ] && return 0
  if [ -n "${ALLOW_ERRORS:-}" ]; then
    log "$1: $problems (counted as errors: ALLOW_ERRORS is set)"
  else
    die "$1: not every request got a 2xx: $problems; command: $(printf '%q ' "${cmd[@]}"); output: $3"
  fi
}
run_load() {  # run_load TARGET DURATION OUTFILE
  if [ "$MODE" = h2 ]; then run_h2load "$@"; else run_wrk "$@"; fi
}
load_desc="$CONNECTIONS connections"
[ "$MODE" = h2 ] && load_desc="$CONNECTIONS connections x $STREAMS streams"
for p in "${proxies[@]}"; do run_load "$p" "$WARMUP" "$tmp/warmup-$p.txt"; done
# CPU time (user + system, clock ticks) of NAME's process and its children (nginx's worker; every
# thread of HAProxy and sidetrace, the exporter's included). grpc_direct has no proxy: "-".
stat_ticks() {  # stat_ticks /proc/.../stat -> utime + stime (0 once it is gone)
  awk '{print $14 + $15}' "$1" 2>/dev/null || echo 0
}
cpu_ticks() {
  local pidvar="pid_$1" pid t=0
  [ "$1" = grpc_direct ] && { echo -; return; }
  pid="${!pidvar}"
  for q in "$pid" $(pgrep -P "$pid" || true); do
    t=$((t + $(stat_ticks "/proc/$q/stat")))
  done
  echo "$t"
}
# Of those, the ticks of a sidetrace's export thread ("st-exporter"): how much of what tracing
# costs is the export rather than the worker's span work. Empty for any other target.
export_ticks() {
  local pidvar="pid_$1" task t=0
  [[ " ${exporting[*]} " == *" $1 "* ]] || return 0
  for task in /proc/"${!pidvar}"/task/*; do
    [ "$(cat "$task/comm" 2>/dev/null)" = st-exporter ] || continue
    t=$((t + $(stat_ticks "$task/stat")))
  done
  echo "$t"
}
clk_tck="$(getconf CLK_TCK)"
for ((r = 1; r <= ROUNDS; r++)); do
  order=()
  for ((i = 0; i < ${#proxies[@]}; i++)); do order+=("${proxies[$(((i + r - 1) % ${#proxies[@]}))]}"); done
  log "round $r/$ROUNDS: ${order[*]} ($DURATION each, $load_desc)"
  for p in "${order[@]}"; do
    cpu_before="$(cpu_ticks "$p")"
    export_before="$(export_ticks "$p")"
    run_load "$p" "$DURATION" "$tmp/$load_tool-$p-$r.txt"
    cpu_after="$(cpu_ticks "$p")"
    export_after="$(export_ticks "$p")"
    # "TICKS CLK_TCK [EXPORT_TICKS]" for the report's CPU µs per request (requests from the load
    # tool's output) and the export thread's share of it
    [ "$cpu_before" = - ] || echo "$((cpu_after - cpu_before)) $clk_tck${export_before:+ $((export_after - export_before))}" \
      >"$tmp/$load_tool-$p-$r.cpu"
  done
done

# --- shutdown: scrape every sidetrace's /metrics, stop the traced ones first (SIGTERM flushes),
# then the sink; the gRPC echo server prints its count of OK calls when stopped -----------------
peak_rss() {  # peak_rss NAME -> "sidetrace_peak_rss_bytes N" (VmHWM, the most RSS it ever had)
  local pidvar="pid_$1" kb
  kb="$(awk '/^VmHWM:/ {print $2}' "/proc/${!pidvar}/status" 2>/dev/null || true)"
  [ -n "$kb" ] && echo "sidetrace_peak_rss_bytes $((kb * 1024))"
}
for v in "${sidetraces[@]}"; do
  wants "$v" || continue
  curl -fs "http://127.0.0.1:${port[admin_$v]}/metrics" >"$tmp/$v-metrics.txt" 2>/dev/null || true
  peak_rss "$v" >>"$tmp/$v-metrics.txt" || true
done
# A traced instance whose export thread fell behind drops spans (queue_full): its CPU per request
# then leaves their export out, so the report says so beside the figures.
drop_notes() {
  local v f dropped sampled
  for v in "${sidetraces[@]}"; do
    case "$v" in traced | traced_notracez | base_traced | grpc_traced | base_grpc_traced) ;; *) continue ;; esac
    wants "$v" || continue
    f="$tmp/$v-metrics.txt"
    [ -f "$f" ] || continue
    dropped="$(awk '/^sidetrace_spans_dropped_total\{reason="queue_full"\}/ {print $2}' "$f")"
    sampled="$(awk '/^sidetrace_spans_sampled_total / {print $2}' "$f")"
    [ -n "$dropped" ] && [ -n "$sampled" ] && [ "$dropped" != 0 ] || continue
    echo "**$v dropped $dropped of $sampled sampled spans ($(awk -v d="$dropped" -v s="$sampled" \
      'BEGIN {printf "%.1f", 100 * d / s}')%) as queue_full:** its export thread fell behind, so its CPU per request leaves their export out."
  done
}
exit_notes=""
for v in "${exporting[@]}"; do
  wants "$v" || continue
  pidvar="pid_$v"; rc=0
  kill -TERM "${!pidvar}"; wait "${!pidvar}" || rc=$?
  if [ "$rc" -ne 0 ]; then
    log "$v sidetrace exited with status $rc after SIGTERM"
    exit_notes+="$v sidetrace exited with status $rc after SIGTERM. "
  fi
done
if wants_sink; then kill -TERM "$pid_sink"; wait "$pid_sink" || true; fi
grpc_check=""
if wants_grpc; then
  kill -TERM "$pid_grpc_direct"; wait "$pid_grpc_direct" || true
  server_calls="$(sed -n 's/^grpc_echo_bench: calls=\([0-9]*\)$/\1/p' "$tmp/grpc_direct.out")"
  [ -n "$server_calls" ] || die "the gRPC echo server printed no call count: $(cat "$tmp/grpc_direct.err")"
  # In-flight calls cut off when an h2load run ends reached the server but are not in h2load's
  # counts, so the server's number may be higher; lower means some HTTP 2xx was not a gRPC OK.
  h2load_2xx="$(cat "$tmp"/warmup-*grpc_*.txt "$tmp"/h2load-*grpc_*-*.txt |
    sed -n 's/^status codes: \([0-9]*\) 2xx.*/\1/p' | awk '{n += $1} END {print n + 0}')"
  [ "$server_calls" -ge "$h2load_2xx" ] ||
    die "the echo server answered $server_calls gRPC calls OK, but h2load counted $h2load_2xx HTTP 2xx on the gRPC paths: some 200s were not gRPC OKs (logs in $tmp)"
  grpc_check="the echo server answered $server_calls calls with status OK; h2load counted $h2load_2xx HTTP 2xx on the gRPC paths (warm-ups included; the server's count also has the check calls and calls in flight when a run ended)"
fi

# --- report --------------------------------------------------------------------------------------
mkdir -p "$results_dir"
st_version="sidetrace (not run)"
[ -x "$sidetrace" ] && st_version="$("$sidetrace" --version 2>&1 | head -1)"
nginx_version="$(nginx -v 2>&1 | sed 's/.*nginx\///' || true)"
haproxy_version="$(haproxy -v 2>&1 | head -1 | awk '{print $3}' || true)"
wrk_version="$(wrk -v 2>&1 | head -1 | awk '{print $2}' || true)"  # wrk -v exits 1
h2load_version="$(h2load --version 2>&1 | head -1 | awk '{print $2}' || true)"
grpc_version="$(pkg-config --modversion grpc++ 2>/dev/null || echo '?')"
cpu_model="$(grep -m1 'model name' /proc/cpuinfo 2>/dev/null | sed 's/.*: //' || echo unknown)"
# What both reports compute of the CPU figures, as a module their Python imports from $tmp.
cat >"$tmp/cpu_cost.py" <<'PY'
import os
def cpu_us(load_path, requests, field=0):
    """The proxy's CPU µs per request in one run (run.sh wrote TICKS CLK_TCK [EXPORT_TICKS] beside
    the output); field=2: its export thread's alone (NaN for a target without one)."""
    cpu_path = load_path[: -len(".txt")] + ".cpu"
    if not os.path.exists(cpu_path) or requests == 0:
        return float("nan")
    fields = [int(x) for x in open(cpu_path).read().split()]
    if field >= len(fields):
        return float("nan")
    return fields[field] / fields[1] * 1e6 / requests
def export_line(res, traced, untraced, cpu_i, export_i, what):
    """How much of what tracing adds per request the export thread accounts for."""
    if traced not in res or untraced not in res or res[traced][export_i] != res[traced][export_i]:
        return ""
    added = res[traced][cpu_i] - res[untraced][cpu_i]
    share = " (%.0f%% of the %.1f µs tracing adds)" % (100 * res[traced][export_i] / added, added) \
        if added > 0 else ""
    return "\n%s: the export thread %.2f µs per %s%s\n" % (
        what, res[traced][export_i], "call" if "gRPC" in what else "request", share)
def cpu_ratio(res, p, base, i):
    if base not in res or res[base][i] != res[base][i] or not res[base][i]:
        return "-"
    return "%.2f" % (res[p][i] / res[base][i])
UNIT = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3}
def ms(text):
    import re
    m = re.match(r"([\d.]+)(us|ms|s|m)$", text)
    return float(m.group(1)) * UNIT[m.group(2)] if m else float("nan")
def wrk_summary(tmp, labels, rounds):
    """Per label, over the rounds of wrk-LABEL-R.txt: median requests/s, p50 ms, p99 ms, the sum
    of errors (socket errors and non-2xx/3xx) and median proxy CPU µs per request."""
    import re, statistics
    res = {}
    for p in labels:
        rows = []
        for r in range(1, rounds + 1):
            path = os.path.join(tmp, "wrk-%s-%d.txt" % (p, r))
            if not os.path.exists(path):
                continue
            t = open(path).read()
            rps = float(re.search(r"Requests/sec:\s+([\d.]+)", t).group(1))
            p50 = ms(re.search(r"^\s+50%\s+(\S+)", t, re.M).group(1))
            p99 = ms(re.search(r"^\s+99%\s+(\S+)", t, re.M).group(1))
            errs = sum(int(x) for x in re.findall(r"(?:connect|read|write|timeout) (\d+)", t))
            non2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", t)
            errs += int(non2xx.group(1)) if non2xx else 0
            requests = int(re.search(r"(\d+) requests in", t).group(1))
            rows.append((rps, p50, p99, errs, cpu_us(path, requests), cpu_us(path, requests, 2)))
        if rows:
            res[p] = tuple(statistics.median(r[i] for r in rows) for i in (0, 1, 2)) + (
                sum(r[3] for r in rows), statistics.median(r[4] for r in rows),
                statistics.median(r[5] for r in rows))
    return res
PY
# MODE=h1: wrk's numbers -> $tmp/report.md
report_h1() {
  versions="nginx $nginx_version, HAProxy $haproxy_version, $st_version, wrk $wrk_version"
  "$py" - "$tmp" "$ROUNDS" >"$tmp/table.md" <<'PY'
import glob, os, re, statistics, sys
tmp, rounds = sys.argv[1], int(sys.argv[2])
sys.path.insert(0, tmp)
from cpu_cost import cpu_ratio, export_line, ms, wrk_summary
labels = {"nginx": "nginx (reverse proxy)", "haproxy": "HAProxy",
          "untraced": "sidetrace, tracing off", "traced": "sidetrace, tracing on (100%, OTLP/gRPC)",
          "traced_notracez": "sidetrace, tracing on, /tracez store off",
          "base_untraced": "baseline binary, tracing off",
          "base_traced": "baseline binary, tracing on",
          "traced_down": "sidetrace, tracing on, collector down",
          "traced_blackhole": "sidetrace, tracing on, collector black-holing",
          "traced_slow": "sidetrace, tracing on, collector answering late",
          "traced_errors": "sidetrace, tracing on, collector answering UNAVAILABLE"}
res = wrk_summary(tmp, labels, rounds)
base = res.get("nginx", (0,))[0]
print("| proxy | requests/s (median) | p50 ms | p99 ms | requests/s vs nginx | CPU µs/request | CPU vs nginx | CPU vs HAProxy | errors |")
print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
for p, label in labels.items():
    if p in res:
        rps, p50, p99, errs, cpu = res[p][:5]
        ratio = "%.2f" % (rps / base) if base else "-"
        print("| %s | %.0f | %.3f | %.3f | %s | %.1f | %s | %s | %d |"
              % (label, rps, p50, p99, ratio, cpu, cpu_ratio(res, p, "nginx", 4),
                 cpu_ratio(res, p, "haproxy", 4), errs))
def compare(a, b, what):
    if a in res and b in res:
        t, u = res[a], res[b]
        print()
        print("%s: requests/s %.2f, p50 %.2fx, p99 %.2fx, CPU per request %.2fx"
              % (what, t[0] / u[0], t[1] / u[1] if u[1] else float("nan"),
                 t[2] / u[2] if u[2] else float("nan"), t[4] / u[4] if u[4] else float("nan")))
compare("traced", "untraced", "sidetrace traced/untraced")
export = export_line(res, "traced", "untraced", 4, 5, "sidetrace traced")
if export:
    print()
    print(export.strip())
compare("traced", "traced_notracez", "sidetrace traced, /tracez store on/off")
compare("untraced", "base_untraced", "this binary/baseline, tracing off")
compare("traced", "base_traced", "this binary/baseline, tracing on")
compare("base_traced", "base_untraced", "baseline traced/untraced")
def metric(path, name, label=""):
    total = None
    if os.path.exists(path):
        for line in open(path):
            if line.startswith(name) and label in line and not line.startswith("#"):
                total = (total or 0) + float(line.rsplit(" ", 1)[1])
    return total
def mb(v):
    return "%.1f" % (v / 1e6) if v is not None else "?"
def count(v):
    return "%d" % v if v is not None else "?"
healthy_peak = metric(os.path.join(tmp, "traced-metrics.txt"), "sidetrace_peak_rss_bytes")
for v in ("traced_down", "traced_blackhole", "traced_slow", "traced_errors"):
    if v in res and "traced" in res:
        f, t = res[v], res["traced"]
        m = os.path.join(tmp, v + "-metrics.txt")
        rss = metric(m, "sidetrace_process_resident_memory_bytes")
        peak = metric(m, "sidetrace_peak_rss_bytes")
        dropped = metric(m, "sidetrace_spans_dropped_total")
        exported = metric(m, "sidetrace_spans_exported_total")
        failed = metric(m, "sidetrace_export_requests_total", 'outcome="failed"')
        print()
        print("%s vs healthy collector: requests/s %.2f, p99 %.2fx; RSS %s MB (peak %s MB, healthy "
              "peak %s MB); spans dropped %s, exported %s; failed exports %s"
              % (v, f[0] / t[0], f[2] / t[2] if t[2] else float("nan"), mb(rss), mb(peak),
                 mb(healthy_peak), count(dropped), count(exported), count(failed)))
PY
  sink_line="$(grep -h 'otlp_sink:' "$tmp/sink.out" 2>/dev/null | tail -1 || true)"
  span_metrics="$(grep -E '^sidetrace_(spans_(started|sampled|exported|dropped)_total|export_requests_total)' \
    "$tmp/traced-metrics.txt" 2>/dev/null || true)"
  {
    echo "# sidetrace benchmark — $(date -u '+%Y-%m-%d %H:%M UTC')"
    echo
    echo "Command: \`$command_line\`"
    echo
    echo "$ROUNDS interleaved rounds × $DURATION, wrk -t$WRK_THREADS -c$CONNECTIONS --latency, GET / → upstream nginx \`return 200 \"ok\"\`."
    echo "Each proxy: $(workers_text) pinned to CPU $PROXY_CPU; wrk, upstream and OTLP sink on CPU $LOAD_CPU. Keep-alive on both legs."
    echo "Machine: $ncpu CPUs, $cpu_model. Versions: $versions."
    wants traced_slow && echo "traced_slow: the sink answers every Export ${SLOW_DELAY_MS} ms late (exporter timeout 10s, one call at a time)."
    wants traced_errors && echo "traced_errors: the sink answers every Export UNAVAILABLE (retried with back-off until the 10s export timeout, then dropped)."
    echo
    cat "$tmp/table.md"
    echo
    echo "Traced instance span accounting (admin /metrics before shutdown; sink totals after SIGTERM flush):"
    echo
    echo '```'
    [ -n "$span_metrics" ] && echo "$span_metrics" || echo "(no span metrics scraped)"
    echo "${sink_line:-otlp_sink: (no total printed)}"
    echo '```'
    notes="$(drop_notes)"
    if [ -n "$notes" ]; then echo; echo "$notes"; fi
    if [ -n "$exit_notes" ]; then echo; echo "$exit_notes"; fi
  } >"$tmp/report.md"
  report=latest.md  # a global: where main copies the report
}

# MODE=h2: h2load's numbers, h2c and gRPC tables -> $tmp/report.md
report_h2() {
  versions="nginx $nginx_version, HAProxy $haproxy_version, $st_version, h2load $h2load_version, grpc++ $grpc_version"
  "$py" - "$tmp" "$ROUNDS" <<'PY'
import os, re, statistics, sys
tmp, rounds = sys.argv[1], int(sys.argv[2])
sys.path.insert(0, tmp)
from cpu_cost import cpu_us, cpu_ratio, export_line
unit = {"us": 1e-3, "ms": 1.0, "s": 1e3}
def ms(text):
    m = re.match(r"([\d.]+)(us|ms|s)$", text)
    return float(m.group(1)) * unit[m.group(2)] if m else float("nan")
def parse(path):  # one h2load run -> (req/s, mean ms, sd ms, max ms, errors)
    t = open(path).read()
    rps = float(re.search(r"finished in \S+, ([\d.]+) req/s", t).group(1))
    mn, mx, mean, sd = (ms(x) for x in re.search(
        r"time for request:\s+(\S+)\s+(\S+)\s+(\S+)\s+(\S+)", t).groups())
    failed, timeout = (int(x) for x in re.search(r"(\d+) failed, \d+ errored, (\d+) timeout", t).groups())
    s3 = int(re.search(r"status codes: \d+ 2xx, (\d+) 3xx", t).group(1))
    done = int(re.search(r"requests: \d+ total, \d+ started, (\d+) done", t).group(1))
    return rps, mean, sd, mx, failed + s3 + timeout, cpu_us(path, done), cpu_us(path, done, 2)
def medians(name):
    rows = [parse(os.path.join(tmp, "h2load-%s-%d.txt" % (name, r))) for r in range(1, rounds + 1)
            if os.path.exists(os.path.join(tmp, "h2load-%s-%d.txt" % (name, r)))]
    if not rows:
        return None
    return (tuple(statistics.median(r[i] for r in rows) for i in range(4)) + (sum(r[4] for r in rows),)
            + tuple(statistics.median(r[i] for r in rows) for i in (5, 6)))
def table(out, labels, first_col, unit_name, base_name, base_label):
    res = {p: medians(p) for p in labels}
    res = {p: v for p, v in res.items() if v}
    base = res.get(base_name, (0,))[0]
    with open(os.path.join(tmp, out), "w") as f:
        if not res:
            return res
        cpu_bases = [b for b in ("nginx", "haproxy") if b in res]
        f.write("| %s | %s/s (median) | mean ms | sd ms | max ms | %s/s vs %s | CPU µs/%s%s | errors |\n"
                % (first_col, unit_name, unit_name, base_label, unit_name[:-1],
                   "".join(" | CPU vs %s" % ("HAProxy" if b == "haproxy" else b) for b in cpu_bases)))
        f.write("| --- | ---: | ---: | ---: | ---: | ---: | ---: |%s ---: |\n" % (" ---: |" * len(cpu_bases)))
        for p, label in labels.items():
            if p in res:
                rps, mean, sd, mx, errs, cpu = res[p][:6]
                ratio = "%.2f" % (rps / base) if base else "-"
                cpu_text = "%.1f" % cpu if cpu == cpu else "-"
                f.write("| %s | %.0f | %.3f | %.3f | %.3f | %s | %s%s | %d |\n"
                        % (label, rps, mean, sd, mx, ratio, cpu_text,
                           "".join(" | " + cpu_ratio(res, p, b, 5) for b in cpu_bases), errs))
    return res
h2 = table("table-h2c.md", {"nginx": "nginx (reverse proxy)", "haproxy": "HAProxy",
                            "untraced": "sidetrace, tracing off",
                            "traced": "sidetrace, tracing on (100%, OTLP/gRPC)",
                            "traced_notracez": "sidetrace, tracing on, /tracez store off",
                            "base_untraced": "baseline binary, tracing off",
                            "base_traced": "baseline binary, tracing on"},
           "proxy", "requests", "nginx", "nginx")
g = table("table-grpc.md", {"grpc_direct": "direct (no proxy)",
                            "grpc_untraced": "through sidetrace, tracing off",
                            "grpc_traced": "through sidetrace, tracing on (100%, OTLP/gRPC)",
                            "base_grpc_untraced": "through the baseline binary, tracing off",
                            "base_grpc_traced": "through the baseline binary, tracing on"},
          "path", "calls", "grpc_direct", "direct")
def ratio_line(res, traced, untraced, what, title="sidetrace traced/untraced"):
    if traced in res and untraced in res:
        t, u = res[traced], res[untraced]
        return ("\n%s (%s): %s/s %.2f, mean %.2fx, CPU per %s %.2fx\n"
                % (title, what, "calls" if what == "gRPC" else "requests", t[0] / u[0],
                   t[1] / u[1] if u[1] else float("nan"), "call" if what == "gRPC" else "request",
                   t[5] / u[5] if u[5] else float("nan")))
    return ""
with open(os.path.join(tmp, "table-h2c.md"), "a") as f:
    f.write(ratio_line(h2, "traced", "untraced", "h2c"))
    f.write(export_line(h2, "traced", "untraced", 5, 6, "sidetrace traced (h2c)"))
    f.write(ratio_line(h2, "traced", "traced_notracez", "h2c", "sidetrace traced, /tracez store on/off"))
    f.write(ratio_line(h2, "untraced", "base_untraced", "h2c", "this binary/baseline, tracing off"))
    f.write(ratio_line(h2, "traced", "base_traced", "h2c", "this binary/baseline, tracing on"))
    f.write(ratio_line(h2, "base_traced", "base_untraced", "h2c", "baseline traced/untraced"))
with open(os.path.join(tmp, "table-grpc.md"), "a") as f:
    f.write(ratio_line(g, "grpc_traced", "grpc_untraced", "gRPC"))
    f.write(export_line(g, "grpc_traced", "grpc_untraced", 5, 6, "sidetrace traced (gRPC)"))
    f.write(ratio_line(g, "grpc_untraced", "base_grpc_untraced", "gRPC",
                       "this binary/baseline, tracing off"))
    f.write(ratio_line(g, "grpc_traced", "base_grpc_traced", "gRPC", "this binary/baseline, tracing on"))
    f.write(ratio_line(g, "base_grpc_traced", "base_grpc_untraced", "gRPC", "baseline traced/untraced"))
PY
  sink_line="$(grep -h 'otlp_sink:' "$tmp/sink.out" 2>/dev/null | tail -1 || true)"
  grpc_bytes="$(stat -c %s "$tmp/grpc-request.bin" 2>/dev/null || echo '?')"
  h2load_cmd="h2load -t$H2LOAD_THREADS -c$CONNECTIONS -m$STREAMS -D $DURATION"
  {
    echo "# sidetrace HTTP/2 benchmark — $(date -u '+%Y-%m-%d %H:%M UTC')"
    echo
    echo "Command: \`$command_line\`"
    echo
    echo "$ROUNDS interleaved rounds × $DURATION per target, h2c by prior knowledge ($CONNECTIONS connections × $STREAMS concurrent streams)."
    echo "Each proxy: $(workers_text) pinned to CPU $PROXY_CPU; h2load, the upstreams and the OTLP sink on CPU $LOAD_CPU."
    echo "Request time is h2load's own per-request mean / sd / max (it reports no percentiles); each a median over rounds. Errors: h2load's failed (non-2xx/3xx or broken stream) + 3xx + timeout, summed over rounds."
    echo "Machine: $ncpu CPUs, $cpu_model. Versions: $versions."
    if [ -s "$tmp/table-h2c.md" ]; then
      echo
      echo "## h2c → HTTP/1.1 upstream"
      echo
      echo "\`$h2load_cmd http://127.0.0.1:PORT/\` → proxy → upstream nginx \`return 200 \"ok\"\` over HTTP/1.1 keep-alive. nginx: \`listen ... http2\`; HAProxy: \`bind ... proto h2\`; sidetrace: h2c on its one listener."
      echo
      cat "$tmp/table-h2c.md"
    fi
    if [ -s "$tmp/table-grpc.md" ]; then
      echo
      echo "## gRPC unary through sidetrace vs direct"
      echo
      echo "\`$h2load_cmd -d REQ -H 'content-type: application/grpc' -H 'te: trailers' http://127.0.0.1:PORT$grpc_path\`, REQ one length-prefixed EchoRequest ($grpc_bytes bytes, message \"$GRPC_MESSAGE\"). Server: grpc_echo_bench (grpc++ $grpc_version callback API) on CPU $LOAD_CPU; sidetrace's cluster \`protocol: http2\` (h2c). Direct: h2load and the server share CPU $LOAD_CPU, CPU $PROXY_CPU idles."
      echo
      cat "$tmp/table-grpc.md"
      echo
      echo "gRPC check: per path, one grpc++ call and one curl posting REQ got grpc-status 0; $grpc_check."
    fi
    if wants traced || wants grpc_traced; then
      echo
      echo "Traced instances' span accounting (admin /metrics before shutdown; sink totals after SIGTERM flush; both traced instances export to the one sink):"
      echo
      echo '```'
      for v in traced grpc_traced; do
        wants "$v" || continue
        echo "# $v"
        grep -E '^sidetrace_(spans_(started|sampled|exported|dropped)_total|export_requests_total)' \
          "$tmp/$v-metrics.txt" 2>/dev/null || echo "(no span metrics scraped)"
      done
      echo "${sink_line:-otlp_sink: (no total printed)}"
      echo '```'
      notes="$(drop_notes)"
      if [ -n "$notes" ]; then echo; echo "$notes"; fi
    fi
    if [ -n "$exit_notes" ]; then echo; echo "$exit_notes"; fi
  } >"$tmp/report.md"
  # A gRPC-only run (every target grpc_* or base_grpc_*) has no h2c table: it goes to its own
  # file rather than replacing the h2c results.
  report=grpc-latest.md
  for p in "${proxies[@]}"; do
    [[ $p == grpc_* || $p == base_grpc_* ]] || report=h2-latest.md
  done
}

# MODE=egress: wrk's numbers for the egress rows and the traced ingress reference -> $tmp/report.md
report_egress() {
  versions="$st_version, wrk $wrk_version"
  "$py" - "$tmp" "$ROUNDS" >"$tmp/table.md" <<'PY'
import os, re, statistics, sys
tmp, rounds = sys.argv[1], int(sys.argv[2])
sys.path.insert(0, tmp)
from cpu_cost import cpu_ratio, ms, wrk_summary
labels = {"traced": "ingress (reverse proxy), tracing on — reference",
          "egress": "egress, process rule off, keep-alive",
          "egress_process": "egress, process rule on, keep-alive",
          "egress_close": "egress, process rule off, new connection per request",
          "egress_process_close": "egress, process rule on, new connection per request"}
res = wrk_summary(tmp, labels, rounds)
def metric(v, name, label=""):
    path, total = os.path.join(tmp, v + "-metrics.txt"), None
    if os.path.exists(path):
        for line in open(path):
            if line.startswith(name) and label in line and not line.startswith("#"):
                total = (total or 0) + float(line.rsplit(" ", 1)[1])
    return total
print("| path | requests/s (median) | p50 ms | p99 ms | CPU µs/request | CPU vs ingress | errors |")
print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
for p, label in labels.items():
    if p in res:
        rps, p50, p99, errs, cpu = res[p]
        print("| %s | %.0f | %.3f | %.3f | %.1f | %s | %d |"
              % (label, rps, p50, p99, cpu, cpu_ratio(res, p, "traced", 4), errs))
print()
for on, off, what in (("egress_process", "egress", "keep-alive"),
                      ("egress_process_close", "egress_close", "new connection per request")):
    if on in res and off in res:
        print("The process rule's cost (%s): %+.1f µs of sidetrace CPU per outbound request (%.1f vs %.1f)."
              % (what, res[on][4] - res[off][4], res[on][4], res[off][4]))
print()
print("Per egress instance at the end (admin /metrics): parent sources; process rule skipped "
      "(budget / unavailable); inbound requests held in flight.")
print()
for v in ("egress", "egress_process", "egress_close", "egress_process_close"):
    if v in res:
        sources = ", ".join("%s %d" % (src, metric(v, "sidetrace_egress_parent_total", 'source="%s"' % src) or 0)
                            for src in ("header", "request_id", "process", "single_inflight", "none"))
        print("- %s: %s; skipped %d / %d; in flight %d" % (
            v, sources, metric(v, "sidetrace_egress_process_skipped_total", 'reason="budget"') or 0,
            metric(v, "sidetrace_egress_process_skipped_total", 'reason="unavailable"') or 0,
            metric(v, "sidetrace_egress_inbound_in_flight") or 0))
PY
  {
    echo "# sidetrace egress benchmark — $(date -u '+%Y-%m-%d %H:%M UTC')"
    echo
    echo "Command: \`$command_line\`"
    echo
    echo "$ROUNDS interleaved rounds × $DURATION, wrk -t$WRK_THREADS -c$CONNECTIONS --latency. Egress rows: wrk sends \`GET http://127.0.0.1:UPSTREAM/ HTTP/1.1\` (absolute form, as HTTP_PROXY clients do) to sidetrace's egress listener → upstream nginx \`return 200 \"ok\"\`, one CLIENT span per request (always_on, OTLP/gRPC to the sink), while $EGRESS_INFLIGHT inbound requests are held in flight through the same sidetrace to an app stand-in that has read them and does not answer (every outbound request is judged against them). Reference row: \`GET /\` through sidetrace's ingress, traced, to the same upstream."
    echo "nginx and HAProxy are not in this table: neither has a comparable mode (a forward proxy that traces the app's calls and infers their parents)."
    echo "Each sidetrace: $(workers_text) pinned to CPU $PROXY_CPU; wrk, upstream, app stand-in and OTLP sink on CPU $LOAD_CPU."
    echo "Machine: $ncpu CPUs, $cpu_model. Versions: $versions."
    echo
    cat "$tmp/table.md"
    if [ -n "$exit_notes" ]; then echo; echo "$exit_notes"; fi
  } >"$tmp/report.md"
  report=egress-latest.md
}

case "$MODE" in
  h1) report_h1 ;;
  h2) report_h2 ;;
  egress) report_egress ;;
esac
cp "$tmp/report.md" "$results_dir/$report"
echo
cat "$tmp/report.md"
echo
log "written to ${results_dir#"$root"/}/$report"
