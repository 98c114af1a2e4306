#!/usr/bin/env bash
# What one proxied HTTP/1.1 request costs sidetrace, in figures a noisy or CPU-stolen VM cannot
# skew: user-space instructions (valgrind callgrind) and system calls by kind (strace -c), per
# request, for one or more sidetrace binaries side by side (e.g. main's and a change's).
#
#   tests/bench/cost_per_request.sh build/proxy/sidetrace
#   tests/bench/cost_per_request.sh /tmp/old/sidetrace build/proxy/sidetrace
#   N=20000 CONNECTIONS=32 tests/bench/cost_per_request.sh build/proxy/sidetrace
#   PROFILE_DIR=/tmp/prof tests/bench/cost_per_request.sh build/proxy/sidetrace  # keep profiles:
#     callgrind_annotate --inclusive=yes /tmp/prof/1.callgrind | head -60
#   MODE=h2 TRACED=1 tests/bench/cost_per_request.sh build/proxy/sidetrace
#   MODE=grpc TRACED=1 tests/bench/cost_per_request.sh build/proxy/sidetrace  # gRPC unary calls
#     (the bench's grpc_echo_bench server, GRPC_BENCH; sidetrace only, no references)
#   EGRESS=1 TRACED=1 tests/bench/cost_per_request.sh build/proxy/sidetrace  # ingress cost of an
#     egress listener being configured (the in-flight registry), none of its traffic;
#     EGRESS_PROCESS=false: with the process parent rule off (what the rule adds to ingress)
#   tests/bench/cost_per_request.sh nginx haproxy build/proxy/sidetrace   # with the references
#   TRACED=1 TRACEZ_MAX_BYTES=0 tests/bench/cost_per_request.sh build/proxy/sidetrace  # the /tracez
#     store off (admin.tracez.max_bytes; default on, 4 MiB); NO_ADMIN=1: no admin listener at all
#     (no /tracez store, no exemplars)
#
# Per binary: one worker, GET / proxied to an nginx upstream answering 200 "ok" over HTTP/1.1,
# load from h2load with a fixed request count over CONNECTIONS keep-alive connections.
#   MODE=h1 (default): HTTP/1.1 clients (`h2load --h1`, CONNECTIONS default 32);
#   MODE=h2: h2c clients, STREAMS (default 10) concurrent streams each (CONNECTIONS default 16).
#   TRACED=1: every request sampled (sidetrace-traced.yaml.in), spans exported over OTLP/gRPC to
#     the bench's otlp_sink (SINK, default build/tests/bench/otlp_sink); the exporter thread's
#     instructions count too, so the figure is the whole cost of a traced request.
# Instructions: two runs under callgrind (N/5 and N requests) and the difference divided by the
# requests between them, so start-up and shutdown cancel out. System calls: one run under strace
# -f -c serving N requests (start-up included; negligible at N >= 10000). Kernel time is not in
# the instruction count: the system-call figures stand for it. Compare binaries built alike.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
die() { echo "cost_per_request: $*" >&2; exit 1; }
[ $# -ge 1 ] || die "usage: $0 {SIDETRACE_BIN|nginx|haproxy}..."
N="${N:-10000}"
MODE="${MODE:-h1}"
TRACED="${TRACED:-0}"
case "$MODE" in
  h1) CONNECTIONS="${CONNECTIONS:-32}" load=(--h1) ;;
  h2) CONNECTIONS="${CONNECTIONS:-16}" load=(-m "${STREAMS:-10}") ;;
  grpc) CONNECTIONS="${CONNECTIONS:-16}" load=(-m "${STREAMS:-10}") ;;
  *) die "MODE must be h1, h2 or grpc" ;;
esac
for tool in nginx haproxy h2load valgrind strace curl; do
  command -v "$tool" >/dev/null || die "$tool not found"
done
tmp="$(mktemp -d /tmp/sidetrace-cost.XXXXXX)"
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$tmp"
}
trap cleanup EXIT
free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}
up_port="$(free_port)"
port="$(free_port)"
admin_port="$(free_port)"
cat >"$tmp/upstream.conf" <<NGINX
worker_processes 1;
daemon off;
pid $tmp/upstream.pid;
error_log $tmp/upstream-error.log warn;
events { worker_connections 4096; }
http {
    access_log off;
    client_body_temp_path $tmp/b; proxy_temp_path $tmp/p; fastcgi_temp_path $tmp/f;
    uwsgi_temp_path $tmp/u; scgi_temp_path $tmp/s;
    keepalive_requests 10000000;
    server { listen 127.0.0.1:$up_port; location / { return 200 "ok"; } }
}
NGINX
config=sidetrace-untraced.yaml.in
[ "$MODE" = grpc ] && config=sidetrace-grpc-untraced.yaml.in
sink_port=0
if [ "$TRACED" = 1 ]; then
  config=sidetrace-traced.yaml.in
  [ "$MODE" = grpc ] && config=sidetrace-grpc-traced.yaml.in
  sink="${SINK:-$root/build/tests/bench/otlp_sink}"
  [ -x "$sink" ] || die "no otlp_sink at $sink (cmake --build build --target otlp_sink)"
  sink_port="$(free_port)"
  "$sink" "127.0.0.1:$sink_port" >/dev/null 2>"$tmp/sink.err" &
  pids+=($!)
fi
sed -e "s/@LISTEN_PORT@/$port/" -e "s/@ADMIN_PORT@/$admin_port/" -e "s/@UPSTREAM_PORT@/$up_port/" \
  -e "s/@SINK_PORT@/$sink_port/" -e "s/@GRPC_PORT@/$up_port/" "$root/tests/bench/$config" \
  >"$tmp/sidetrace.yaml"
if [ -n "${TRACEZ_MAX_BYTES:-}" ]; then
  sed -i "s/^admin: { \(.*\) }$/admin: { \1, tracez: { max_bytes: $TRACEZ_MAX_BYTES } }/" \
    "$tmp/sidetrace.yaml"
fi
if [ "${NO_ADMIN:-0}" = 1 ]; then
  sed -i "s/^admin: { \(.*\) }$/admin: { \1, enabled: false }/" "$tmp/sidetrace.yaml"
fi
if [ "${EGRESS:-0}" = 1 ]; then
  echo "egress: { address: \"127.0.0.1:0\", process: ${EGRESS_PROCESS:-true} }" >>"$tmp/sidetrace.yaml"
fi
target="http://127.0.0.1:$port/"
if [ "$MODE" = grpc ]; then  # the gRPC echo server in the upstream's place; h2load's unary call
  grpc_bench="${GRPC_BENCH:-$root/build/tests/bench/grpc_echo_bench}"
  [ -x "$grpc_bench" ] || die "no grpc_echo_bench at $grpc_bench (cmake --build build --target grpc_echo_bench)"
  "$grpc_bench" frame "hello from h2load" >"$tmp/grpc-request.bin"
  "$grpc_bench" serve "127.0.0.1:$up_port" >/dev/null 2>"$tmp/upstream.err" &
  load+=(-d "$tmp/grpc-request.bin" -H 'content-type: application/grpc' -H 'te: trailers')
  target="http://127.0.0.1:$port/sidetrace.test.Echo/Unary"
else
  nginx -p "$tmp" -c "$tmp/upstream.conf" 2>"$tmp/upstream.err" &
fi
pids+=($!)

# The references: nginx and HAProxy proxying the same upstream, one process each (the bench's
# configurations, nginx without its master process so that one process does all the work).
h2=""; [ "$MODE" != h1 ] && h2=1
sed -e "s|@TMP@|$tmp|g" -e "s/@LISTEN_PORT@/$port/" -e "s/@UPSTREAM_PORT@/$up_port/" -e "s/@WORKERS@/1/" \
  -e "s|@NGINX_TEMP_PATHS@|client_body_temp_path $tmp/b; proxy_temp_path $tmp/p;|" \
  -e "s/@NGINX_LISTEN_H2@/${h2:+ http2}/" -e 's/^daemon off;/daemon off;\nmaster_process off;/' \
  "$root/tests/bench/nginx-proxy.conf.in" >"$tmp/nginx-proxy.conf"
sed -e "s|@TMP@|$tmp|g" -e "s/@LISTEN_PORT@/$port/" -e "s/@UPSTREAM_PORT@/$up_port/" -e "s/@WORKERS@/1/" \
  -e "s/@HAPROXY_BIND_H2@/${h2:+ proto h2}/" "$root/tests/bench/haproxy.cfg.in" >"$tmp/haproxy.cfg"
proxy_command() {  # proxy_command NAME -> cmd=(...): "nginx", "haproxy" or a sidetrace binary
  case "$1" in
    nginx) cmd=(nginx -p "$tmp" -c "$tmp/nginx-proxy.conf") ;;
    haproxy) cmd=(haproxy -db -f "$tmp/haproxy.cfg") ;;
    *) cmd=("$1" --config "$tmp/sidetrace.yaml" --workers 1) ;;
  esac
}

# serve WRAPPER... PROXY REQUESTS: starts PROXY under WRAPPER, waits until it proxies, sends
# REQUESTS, stops it.
serve() {
  local requests="${*: -1}" cmd
  proxy_command "${*: -2:1}"
  local wrapper=("${@:1:$#-2}")
  "${wrapper[@]}" "${cmd[@]}" >/dev/null 2>"$tmp/proxy.err" &
  local pid=$!
  for _ in $(seq 600); do
    curl -fs -o /dev/null ${h2:+--http2-prior-knowledge} "http://127.0.0.1:$port/" && break
    kill -0 "$pid" 2>/dev/null || die "${cmd[0]} exited at start: $(tail -3 "$tmp/proxy.err")"
    sleep 0.1
  done
  h2load "${load[@]}" -n "$requests" -c "$CONNECTIONS" "$target" >"$tmp/h2load.txt" 2>&1 ||
    die "h2load failed: $(tail -3 "$tmp/h2load.txt")"
  grep -q "$requests succeeded, 0 failed" "$tmp/h2load.txt" ||
    die "not every request succeeded: $(grep 'requests:' "$tmp/h2load.txt")"
  # SIGTERM to the proxy itself: under strace it is the tracer's child (strace would not pass the
  # signal on); valgrind runs it in its own process. sidetrace drains and exits.
  local child
  child="$(pgrep -P "$pid" | head -1 || true)"
  kill -TERM "${child:-$pid}" 2>/dev/null || true
  wait "$pid" || true
}
instructions() {  # instructions BIN REQUESTS -> callgrind's total Ir
  rm -f "$tmp"/cg.out.*
  serve valgrind --tool=callgrind --callgrind-out-file="$tmp/cg.out.%p" "$1" "$2"
  awk '/^(summary|totals):/ {print $2; exit}' "$tmp"/cg.out.*
}

echo "MODE=$MODE TRACED=$TRACED CONNECTIONS=$CONNECTIONS N=$N"
printf '| binary | user instructions/request | system calls/request | by kind (per request) |\n'
printf '| --- | ---: | ---: | --- |\n'
for bin in "$@"; do
  case "$bin" in
    nginx | haproxy) [ "$MODE" != grpc ] || die "MODE=grpc measures sidetrace binaries only" ;;
    *) [ -x "$bin" ] || die "no executable at $bin" ;;
  esac
  small=$((N / 5))
  a="$(instructions "$bin" "$small")"
  b="$(instructions "$bin" "$N")"
  if [ -n "${PROFILE_DIR:-}" ]; then
    mkdir -p "$PROFILE_DIR"
    profiled=$((${profiled:-0} + 1))
    cp "$tmp"/cg.out.* "$PROFILE_DIR/$profiled.callgrind"
  fi
  serve strace -f -c -o "$tmp/strace.txt" "$bin" "$N"
  # strace -c rows: % time, seconds, usecs/call, calls, [errors,] syscall; then a "total" row.
  calls="$(awk -v n="$N" '$NF == "total" {printf "%.2f", $4 / n}' "$tmp/strace.txt")"
  kinds="$(awk -v n="$N" '$1 ~ /^[0-9.]+$/ && $NF != "total" && $4 / n >= 0.05 {
      printf "%s %.2f\n", $NF, $4 / n }' "$tmp/strace.txt" |
    sort -k2 -n -r | awk '{printf "%s%s %s", sep, $1, $2; sep = ", "}')"
  printf '| %s | %d | %s | %s |\n' "$bin" $(((b - a) / (N - small))) "$calls" "$kinds"
done
