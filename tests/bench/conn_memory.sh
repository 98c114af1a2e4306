#!/usr/bin/env bash
# Memory per idle keep-alive connection: nginx vs HAProxy vs sidetrace (tracing off), in ONE run,
# each proxying the same upstream (nginx answering 200 "ok") with one worker/thread.
#
#   tests/bench/conn_memory.sh                      # 3000 connections per proxy
#   COUNT=1000 PROXIES="sidetrace" tests/bench/conn_memory.sh
#   PROXIES="sidetrace sidetrace_tls sidetrace_h2c" tests/bench/conn_memory.sh
#   BUILD_DIR=build-release tests/bench/conn_memory.sh
#
# Per proxy: a warm-up connection, then VmRSS of the process that holds the connections (nginx:
# its one worker; HAProxy and sidetrace: the process), COUNT connections opened one after the
# other, each sending one GET and reading its response, all left open and idle; after a second,
# VmRSS again. Reported: (VmRSS after - VmRSS before) / COUNT in KiB (tests/bench/conn_memory.py).
# sidetrace_tls: HTTP/1.1 over TLS (a throwaway self-signed certificate); sidetrace_h2c: HTTP/2 by
# prior knowledge, one stream per connection. Both are opt-in (not in the default PROXIES).
# Configs are the throughput benchmark's (tests/bench/*.in). The open-files limit is raised to
# 2 x COUNT + 2048 for every process (ulimit -n; HAProxy wants two per connection it may hold).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$root"
bench_dir="$root/tests/bench"

die() { echo "conn_memory: $*" >&2; exit 1; }

COUNT="${COUNT:-3000}"
PROXIES="${PROXIES:-nginx haproxy sidetrace}"
BUILD_DIR="${BUILD_DIR:-build}"
sidetrace_bin="${SIDETRACE_BIN:-$root/$BUILD_DIR/proxy/sidetrace}"
python="$(command -v /usr/bin/python3 || command -v python3)"

ulimit -n "$((2 * COUNT + 2048))" || die "cannot raise the open-files limit to $((2 * COUNT + 2048))"
for tool in nginx haproxy curl; do
  command -v "$tool" >/dev/null || die "$tool not found"
done
[[ " $PROXIES " != *" sidetrace "* ]] || [ -x "$sidetrace_bin" ] ||
  die "no sidetrace binary at $sidetrace_bin (build first, or set SIDETRACE_BIN)"

tmp="$(mktemp -d /tmp/sidetrace-conn-memory.XXXXXX)"
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$tmp"
}
trap cleanup EXIT

free_port() {
  "$python" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}
declare -A port
for name in upstream nginx haproxy sidetrace sidetrace_tls admin admin_tls; do
  port[$name]="$(free_port)"
done
port[sidetrace_h2c]="${port[sidetrace]}"

# nginx's compiled-in temp paths live under /var/lib/nginx; point every one nginx has at $tmp.
nginx_temp_paths="    client_body_temp_path $tmp/nginx-body;"
nginx_v="$(nginx -V 2>&1)"
for m in proxy fastcgi uwsgi scgi; do
  grep -q -- "--without-http_${m}_module" <<<"$nginx_v" || nginx_temp_paths+=$'\n'"    ${m}_temp_path $tmp/nginx-$m;"
done
render() {  # render TEMPLATE OUT LISTEN_PORT ADMIN_PORT
  local body
  body="$(cat "$1")"
  body="${body//@TMP@/$tmp}"
  body="${body//@UPSTREAM_PORT@/${port[upstream]}}"
  body="${body//@LISTEN_PORT@/$3}"
  body="${body//@ADMIN_PORT@/$4}"
  body="${body//@NGINX_TEMP_PATHS@/$nginx_temp_paths}"
  body="${body//@NGINX_LISTEN_H2@/}"
  body="${body//@HAPROXY_BIND_H2@/}"
  body="${body//@WORKERS@/1}"
  printf '%s\n' "$body" >"$2"
}
render "$bench_dir/nginx-upstream.conf.in" "$tmp/upstream.conf" "" ""
render "$bench_dir/nginx-proxy.conf.in" "$tmp/nginx-proxy.conf" "${port[nginx]}" ""
render "$bench_dir/haproxy.cfg.in" "$tmp/haproxy.cfg" "${port[haproxy]}" ""
render "$bench_dir/sidetrace-untraced.yaml.in" "$tmp/sidetrace.yaml" "${port[sidetrace]}" "${port[admin]}"
render "$bench_dir/sidetrace-untraced.yaml.in" "$tmp/sidetrace_tls.yaml" "${port[sidetrace_tls]}" \
  "${port[admin_tls]}"
sed -i "s|^    address: 127.0.0.1:${port[sidetrace_tls]}|&\n    tls: { cert: $tmp/cert.pem, key: $tmp/key.pem }|" \
  "$tmp/sidetrace_tls.yaml"
# HAProxy's template caps connections at 4096; make room for COUNT.
sed -i "s/maxconn 4096/maxconn $((COUNT + 512))/" "$tmp/haproxy.cfg"

start() {  # start NAME CMD...
  local name="$1"; shift
  "$@" >"$tmp/$name.out" 2>"$tmp/$name.err" &
  pids+=($!)
  eval "pid_$name=$!"
}
wait_ok() {  # wait_ok NAME PORT [SCHEME]
  for _ in $(seq 100); do
    [ "$(curl -sk --max-time 1 "${3:-http}://127.0.0.1:$2/" 2>/dev/null || true)" = ok ] && return 0
    sleep 0.1
  done
  cat "$tmp/$1.err" >&2
  die "$1 not answering on port $2"
}

start upstream nginx -p "$tmp" -e "$tmp/upstream-error.log" -c "$tmp/upstream.conf"
wait_ok upstream "${port[upstream]}"

declare -A result
for p in $PROXIES; do
  case "$p" in
    nginx)
      start nginx nginx -p "$tmp" -e "$tmp/nginx-proxy-error.log" -c "$tmp/nginx-proxy.conf"
      wait_ok nginx "${port[nginx]}"
      target="$(pgrep -P "$pid_nginx" | head -1)"  # the worker holds the connections
      ;;
    haproxy)
      start haproxy haproxy -db -f "$tmp/haproxy.cfg"
      wait_ok haproxy "${port[haproxy]}"
      target="$pid_haproxy"
      ;;
    sidetrace | sidetrace_h2c)
      start "$p" "$sidetrace_bin" --config "$tmp/sidetrace.yaml"
      wait_ok "$p" "${port[sidetrace]}"
      pidvar="pid_$p"
      target="${!pidvar}"
      ;;
    sidetrace_tls)
      [ -f "$tmp/cert.pem" ] || openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=bench \
        -keyout "$tmp/key.pem" -out "$tmp/cert.pem" 2>/dev/null || die "openssl req failed"
      start sidetrace_tls "$sidetrace_bin" --config "$tmp/sidetrace_tls.yaml"
      wait_ok sidetrace_tls "${port[sidetrace_tls]}" https
      target="$pid_sidetrace_tls"
      ;;
    *) die "unknown proxy '$p' (nginx haproxy sidetrace sidetrace_tls sidetrace_h2c)" ;;
  esac
  [ -n "$target" ] || die "$p: no process to measure"
  mode=h1
  case "$p" in sidetrace_tls) mode=tls ;; sidetrace_h2c) mode=h2c ;; esac
  line="$("$python" "$bench_dir/conn_memory.py" "$target" "${port[$p]}" "$COUNT" / "$mode")" ||
    die "$p: measurement failed"
  echo "$p: $line" >&2
  result[$p]="${line##*per_connection_kib=}"
  pidvar="pid_$p"
  kill "${!pidvar}" 2>/dev/null || true
  wait "${!pidvar}" 2>/dev/null || true
done

echo
echo "Memory per idle keep-alive connection ($COUNT connections, one request each; VmRSS growth / $COUNT)"
echo
echo "| proxy | KiB per connection |"
echo "| --- | --- |"
for p in $PROXIES; do
  echo "| $p | ${result[$p]} |"
done
