#!/usr/bin/env bash
# Proxy benchmark: nginx vs HAProxy vs sidetrace (tracing off) vs sidetrace (tracing on, every
# request sampled and exported over OTLP/gRPC to a local sink), in ONE run, on loopback.
#
#   tests/bench/run.sh
#   ROUNDS=1 DURATION=3s tests/bench/run.sh          # quick smoke run
#   ROUNDS=5 DURATION=10s CONNECTIONS=32 WRK_THREADS=1 WARMUP=2s SKIP_INSTALL=1 BUILD_DIR=build-bench
#   PROXIES="nginx haproxy" tests/bench/run.sh      # a subset (default: nginx haproxy untraced traced)
#   PROXIES="traced traced_down traced_blackhole traced_slow traced_errors" tests/bench/run.sh
#                                                    # collector faults vs the healthy collector
#   ROUNDS=1 DURATION=120s PROXIES="traced traced_slow" tests/bench/run.sh   # minutes of load
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
# Fairness rules: every proxy runs ONE worker pinned to PROXY_CPU (default 0); wrk, the upstream
# (nginx returning 200 "ok") and the OTLP sink share LOAD_CPU (default 1); keep-alive on both legs for
# every proxy; rounds are interleaved (and the order rotated each round) so drift hits all alike;
# medians over rounds are reported. Results also go to tests/bench/results/latest.md.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$root"

ROUNDS="${ROUNDS:-5}"
DURATION="${DURATION:-10s}"
CONNECTIONS="${CONNECTIONS:-32}"
WRK_THREADS="${WRK_THREADS:-1}"
WARMUP="${WARMUP:-2s}"
PROXY_CPU="${PROXY_CPU:-0}"
LOAD_CPU="${LOAD_CPU:-1}"
BUILD_DIR="${BUILD_DIR:-build-bench}"
SLOW_DELAY_MS="${SLOW_DELAY_MS:-500}"
read -r -a proxies <<<"${PROXIES:-nginx haproxy untraced traced}"  # a subset for debugging
wants() { [[ " ${proxies[*]} " == *" $1 "* ]]; }
bench_dir="$root/tests/bench"
results_dir="$bench_dir/results"

die() { echo "bench: $*" >&2; exit 1; }
log() { echo "bench: $*" >&2; }

# --- dependencies --------------------------------------------------------------------------------
if [ -z "${SKIP_INSTALL:-}" ]; then
  extra=(util-linux wrk haproxy)
  command -v nginx >/dev/null 2>&1 || extra+=(nginx-light)
  bash tests/install-deps.sh "${extra[@]}" || die "installing dependencies failed"
fi
export PATH="$PATH:/usr/sbin:/sbin"
for tool in wrk nginx haproxy taskset curl cmake; do
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
faults=(traced_down traced_blackhole traced_slow traced_errors)
if wants untraced || wants traced || wants traced_down || wants traced_blackhole || wants traced_slow ||
  wants traced_errors; then
  log "building sidetrace + otlp_sink (Release) in $BUILD_DIR"
  export CCACHE_BASEDIR="$root"
  cmake -S . -B "$BUILD_DIR" -G Ninja -DCMAKE_BUILD_TYPE=Release >/dev/null || die "cmake configure failed"
  cmake --build "$BUILD_DIR" -j "${JOBS:-$ncpu}" --target sidetrace otlp_sink >/dev/null ||
    die "build failed (re-run: cmake --build $BUILD_DIR --target sidetrace otlp_sink)"
  [ -x "$sidetrace" ] && [ -x "$sink" ] || die "binaries missing after build"
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
  traced_down admin_traced_down down_sink traced_blackhole admin_traced_blackhole hole \
  traced_slow admin_traced_slow slow_sink traced_errors admin_traced_errors errors_sink; do
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

render() {  # render TEMPLATE OUT LISTEN_PORT ADMIN_PORT [SINK_PORT]
  local body
  body="$(cat "$1")"
  body="${body//@TMP@/$tmp}"
  body="${body//@UPSTREAM_PORT@/${port[upstream]}}"
  body="${body//@SINK_PORT@/${5:-${port[sink]}}}"
  body="${body//@LISTEN_PORT@/$3}"
  body="${body//@ADMIN_PORT@/$4}"
  body="${body//@NGINX_TEMP_PATHS@/$nginx_temp_paths}"
  printf '%s\n' "$body" >"$2"
}

start() {  # start NAME CPU CMD... ; stdout/stderr to $tmp/NAME.{out,err}
  local name="$1" cpu="$2"; shift 2
  taskset -c "$cpu" "$@" >"$tmp/$name.out" 2>"$tmp/$name.err" &
  pids+=($!)
  eval "pid_$name=$!"
}

wait_http() {  # wait_http NAME URL EXPECTED_BODY
  local name="$1" url="$2" want="$3" pidvar="pid_$1" got=""
  for _ in $(seq 100); do
    got="$(curl -s --max-time 1 "$url" 2>/dev/null || true)"
    [ -n "$want" ] && [ "$got" = "$want" ] && return 0
    [ -z "$want" ] && curl -fs -o /dev/null --max-time 1 "$url" && return 0
    kill -0 "${!pidvar}" 2>/dev/null || { cat "$tmp/$name.err" >&2; die "$name exited at start"; }
    sleep 0.1
  done
  cat "$tmp/$name.err" >&2
  die "$name not answering at $url (last body: '${got:0:80}')"
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
mkdir -p "$tmp/nginx-body"

start upstream "$LOAD_CPU" nginx -p "$tmp" -e "$tmp/upstream-error.log" -c "$tmp/upstream.conf"
wants traced && start sink "$LOAD_CPU" "$sink" "127.0.0.1:${port[sink]}"
wants traced_slow && start slow_sink "$LOAD_CPU" "$sink" --delay-ms "$SLOW_DELAY_MS" "127.0.0.1:${port[slow_sink]}"
wants traced_errors && start errors_sink "$LOAD_CPU" "$sink" --fail unavailable "127.0.0.1:${port[errors_sink]}"
wait_http upstream "http://127.0.0.1:${port[upstream]}/" ok

wants nginx && start nginx "$PROXY_CPU" nginx -p "$tmp" -e "$tmp/nginx-proxy-error.log" -c "$tmp/nginx-proxy.conf"
wants haproxy && start haproxy "$PROXY_CPU" haproxy -db -f "$tmp/haproxy.cfg"
# Bench runs must not inherit OTEL_* settings from the caller's shell: the YAML says it all.
otel_unset=()
while IFS='=' read -r k _; do otel_unset+=(-u "$k"); done < <(env | grep '^OTEL_' || true)
if wants untraced; then
  start untraced "$PROXY_CPU" env "${otel_unset[@]}" "$sidetrace" --config "$tmp/untraced.yaml" --workers 1
  wait_http untraced "http://127.0.0.1:${port[admin_untraced]}/ready" ""
fi
if wants traced; then
  start traced "$PROXY_CPU" env "${otel_unset[@]}" "$sidetrace" --config "$tmp/traced.yaml" --workers 1
  wait_http traced "http://127.0.0.1:${port[admin_traced]}/ready" ""
fi
if wants traced_blackhole; then
  start hole "$LOAD_CPU" "$py" -c 'import socket, sys, time
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", int(sys.argv[1]))); s.listen(1024); time.sleep(1e9)' "${port[hole]}"
fi
for v in "${faults[@]}"; do
  wants "$v" || continue
  start "$v" "$PROXY_CPU" env "${otel_unset[@]}" "$sidetrace" --config "$tmp/$v.yaml" --workers 1
  wait_http "$v" "http://127.0.0.1:${port[admin_$v]}/ready" ""
done
for p in "${proxies[@]}"; do wait_http "$p" "http://127.0.0.1:${port[$p]}/" ok; done
log "all up: upstream :${port[upstream]}, sink :${port[sink]}, nginx :${port[nginx]}, haproxy :${port[haproxy]}, sidetrace untraced :${port[untraced]}, traced :${port[traced]}"

# --- load ----------------------------------------------------------------------------------------
run_wrk() {  # run_wrk PROXY DURATION OUTFILE
  taskset -c "$LOAD_CPU" wrk -t "$WRK_THREADS" -c "$CONNECTIONS" -d "$2" --latency \
    "http://127.0.0.1:${port[$1]}/" >"$3" 2>&1 || die "wrk failed against $1: $(tail -3 "$3")"
}
for p in "${proxies[@]}"; do run_wrk "$p" "$WARMUP" "$tmp/warmup-$p.txt"; done
for ((r = 1; r <= ROUNDS; r++)); do
  order=()
  for ((i = 0; i < ${#proxies[@]}; i++)); do order+=("${proxies[$(((i + r - 1) % ${#proxies[@]}))]}"); done
  log "round $r/$ROUNDS: ${order[*]} ($DURATION each, $CONNECTIONS connections)"
  for p in "${order[@]}"; do run_wrk "$p" "$DURATION" "$tmp/wrk-$p-$r.txt"; done
done

# --- span accounting: stop the traced proxy first (SIGTERM flushes), then the sink ---------------
peak_rss() {  # peak_rss NAME -> "sidetrace_peak_rss_bytes N" (VmHWM, the most RSS it ever had)
  local pidvar="pid_$1" kb
  kb="$(awk '/^VmHWM:/ {print $2}' "/proc/${!pidvar}/status" 2>/dev/null || true)"
  [ -n "$kb" ] && echo "sidetrace_peak_rss_bytes $((kb * 1024))"
}
for v in "${faults[@]}"; do
  wants "$v" || continue
  curl -fs "http://127.0.0.1:${port[admin_$v]}/metrics" >"$tmp/$v-metrics.txt" 2>/dev/null || true
  peak_rss "$v" >>"$tmp/$v-metrics.txt" || true
done
if wants traced; then
  curl -fs "http://127.0.0.1:${port[admin_traced]}/metrics" >"$tmp/traced-metrics.txt" 2>/dev/null || true
  peak_rss traced >>"$tmp/traced-metrics.txt" || true
  kill -TERM "$pid_traced"; traced_rc=0; wait "$pid_traced" || traced_rc=$?
  kill -TERM "$pid_sink"; wait "$pid_sink" || true
  [ "$traced_rc" -eq 0 ] || log "traced sidetrace exited with status $traced_rc after SIGTERM"
fi

# --- report --------------------------------------------------------------------------------------
mkdir -p "$results_dir"
st_version="sidetrace (not run)"
[ -x "$sidetrace" ] && st_version="$("$sidetrace" --version 2>&1 | head -1)"
nginx_version="$(nginx -v 2>&1 | sed 's/.*nginx\///' || true)"
haproxy_version="$(haproxy -v 2>&1 | head -1 | awk '{print $3}' || true)"
wrk_version="$(wrk -v 2>&1 | head -1 | awk '{print $2}' || true)"  # wrk -v exits 1
versions="nginx $nginx_version, HAProxy $haproxy_version, $st_version, wrk $wrk_version"
cpu_model="$(grep -m1 'model name' /proc/cpuinfo 2>/dev/null | sed 's/.*: //' || echo unknown)"
"$py" - "$tmp" "$ROUNDS" >"$tmp/table.md" <<'PY'
import glob, os, re, statistics, sys
tmp, rounds = sys.argv[1], int(sys.argv[2])
labels = {"nginx": "nginx (reverse proxy)", "haproxy": "HAProxy",
          "untraced": "sidetrace, tracing off", "traced": "sidetrace, tracing on (100%, OTLP/gRPC)",
          "traced_down": "sidetrace, tracing on, collector down",
          "traced_blackhole": "sidetrace, tracing on, collector black-holing",
          "traced_slow": "sidetrace, tracing on, collector answering late",
          "traced_errors": "sidetrace, tracing on, collector answering UNAVAILABLE"}
unit = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3}
def ms(text):
    m = re.match(r"([\d.]+)(us|ms|s|m)$", text)
    return float(m.group(1)) * unit[m.group(2)] if m else float("nan")
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
        rows.append((rps, p50, p99, errs))
    if rows:
        res[p] = (statistics.median(r[0] for r in rows), statistics.median(r[1] for r in rows),
                  statistics.median(r[2] for r in rows), sum(r[3] for r in rows))
base = res.get("nginx", (0,))[0]
print("| proxy | requests/s (median) | p50 ms | p99 ms | requests/s vs nginx | errors |")
print("| --- | ---: | ---: | ---: | ---: | ---: |")
for p, label in labels.items():
    if p in res:
        rps, p50, p99, errs = res[p]
        ratio = "%.2f" % (rps / base) if base else "-"
        print("| %s | %.0f | %.3f | %.3f | %s | %d |" % (label, rps, p50, p99, ratio, errs))
if "traced" in res and "untraced" in res:
    t, u = res["traced"], res["untraced"]
    print()
    print("sidetrace traced/untraced: requests/s %.2f, p50 %.2fx, p99 %.2fx"
          % (t[0] / u[0], t[1] / u[1] if u[1] else float("nan"), t[2] / u[2] if u[2] else float("nan")))
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
  echo "$ROUNDS interleaved rounds × $DURATION, wrk -t$WRK_THREADS -c$CONNECTIONS --latency, GET / → upstream nginx \`return 200 \"ok\"\`."
  echo "Each proxy: one worker pinned to CPU $PROXY_CPU; wrk, upstream and OTLP sink on CPU $LOAD_CPU. Keep-alive on both legs."
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
} >"$tmp/report.md"
cp "$tmp/report.md" "$results_dir/latest.md"
echo
cat "$tmp/report.md"
echo
log "written to ${results_dir#$root/}/latest.md"
