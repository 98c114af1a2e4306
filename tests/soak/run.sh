#!/usr/bin/env bash
# Soak run: one sidetrace (--workers 2) under steady mixed traffic with faults for MINUTES, then a
# verdict. Not part of tests/run.sh (CI) by default: `tests/soak/run.sh 1` is the cheap smoke mode.
#
#   tests/soak/run.sh MINUTES                 # e.g. 60; MINUTES <= 2 is the smoke mode
#   SKIP_INSTALL=1 SKIP_BUILD=1 BUILD_DIR=build LARGE_MIB=256 tests/soak/run.sh 10
#
# Traffic (all through the one listener, moderate and steady): HTTP/1.1 keep-alive (2 connections
# x 25 req/s), pipelined (8 requests a write, every 0.5 s), HTTP/2 multiplexed (h2load: 2
# connections x 8 streams, 200 requests every 5 s), gRPC unary / server-streaming / bidi (15
# calls/s, soak_grpc), WebSocket (a short session every 2 s, one connection open for the whole run),
# large downloads and uploads in turn (LARGE_MIB each, default 1024 = the issue's 1 GiB, 64 in
# smoke mode; a 20 s pause between them, 3 s in smoke mode), a malformed request every second, and
# the app's outbound side through the egress listener: absolute-form GETs (one kept-alive
# connection, 10 req/s) and a CONNECT tunnel with three requests through it every 2 s.
# Faults: a SIGHUP reload every 10 s (configs A and B alternate, so every reload also replaces the
# export pipeline); one of the two endpoints of the `web` cluster killed (SIGKILL) every 30 s for
# 10 s; the OTLP collector (tests/bench/otlp_sink --count-spans) stopped every 60 s for 15 s
# (smoke: 20 s / 6 s and 30 s / 8 s).
#
# Samples RSS, open fds, threads (/proc) and the admin /metrics span counters and export queue
# every 10 s (3 s in smoke mode), and fails (exit 1) if:
#   - RSS, fds or threads trend up: the median of the last quarter of the samples exceeds the
#     median of the second quarter (the first is warm-up) by more than max(4 MiB, 10 %) for RSS,
#     max(12, 15 %) for fds, 2 for threads (the medians are half the run apart: 10 minutes catch
#     RSS growing over ~0.8 MiB/min, an hour over ~0.13 MiB/min);
#   - a well-formed request fails other than by an injected fault: only requests to the `web`
#     cluster whose time window overlaps [kill - 0.5 s, kill + 2 s] of its endpoint may fail;
#     reloads and collector outages may fail none; a malformed request gets another answer than
#     its expected 400 / 405 / 431;
#   - after the traffic stops and SIGTERM's final flush, sidetrace's exit line does not show
#     sampled == exported + dropped, the collector received fewer spans than sidetrace exported
#     (or more than one 512-span batch per collector outage more), the export queue gauge exceeded
#     2 x max_queue_size (the live pipeline's and the one the last reload retired), a reload was
#     refused, or sidetrace did not exit 0.
# Writes tests/soak/results/soak-DATE.md (the verdict, tables of requests, faults, span accounting
# and samples) and soak-DATE.png (RSS / fds / threads over time). Timing on this 2-core machine:
# smoke (MINUTES=1) 70 s after the build (68 s measured, 2026-12-05).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$root"

minutes="${1:-}"
[[ "$minutes" =~ ^[0-9]+([.][0-9]+)?$ ]] || {
  echo "usage: tests/soak/run.sh MINUTES   (MINUTES <= 2: smoke mode)" >&2
  exit 2
}
BUILD_DIR="${BUILD_DIR:-build}"
RESULTS_DIR="${RESULTS_DIR:-tests/soak/results}"
if awk "BEGIN { exit !($minutes <= 2) }"; then
  LARGE_MIB="${LARGE_MIB:-64}"
else
  LARGE_MIB="${LARGE_MIB:-1024}"
fi

if [ -z "${SKIP_INSTALL:-}" ]; then
  tests/install-deps.sh nginx nghttp2-client python3-matplotlib
fi
if [ -z "${SKIP_BUILD:-}" ]; then
  if [ ! -f "$BUILD_DIR/build.ninja" ]; then
    cmake -S . -B "$BUILD_DIR" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
  fi
  cmake --build "$BUILD_DIR" --target sidetrace otlp_sink soak_grpc -j2
fi
for bin in proxy/sidetrace tests/bench/otlp_sink tests/soak/soak_grpc; do
  [ -x "$BUILD_DIR/$bin" ] || { echo "soak: $BUILD_DIR/$bin is missing" >&2; exit 1; }
done
# Debian's python3-matplotlib is installed for /usr/bin/python3, whatever python3 is first in PATH.
python=/usr/bin/python3
[ -x "$python" ] || python=python3
export PATH="$PATH:/usr/sbin"  # nginx
exec "$python" tests/soak/soak.py "$minutes" --build-dir "$BUILD_DIR" --results "$RESULTS_DIR" \
  --large-mib "$LARGE_MIB" --command "LARGE_MIB=$LARGE_MIB tests/soak/run.sh $minutes"
