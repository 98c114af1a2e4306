#!/usr/bin/env bash
# The sanitizer stages of the test command (tests/run.sh runs all three after the plain suite,
# unless SANITIZERS=0). Each stage has its own build dir, so none rebuilds another's objects, and
# ccache keeps rebuilds after a small change short.
#   tests/sanitizers/run.sh [asan] [tsan] [fuzz]     # no argument: all three, in this order
#   asan  the whole ctest suite with sidetrace built with g++ -fsanitize=address,undefined
#   tsan  the concurrency-heavy tests (TSAN_TESTS below) with sidetrace built -fsanitize=thread
#   fuzz  the libFuzzer targets (FUZZ_TARGETS; default all) for FUZZ_SECONDS (default 20) each
#         from its corpus and findings (tests/fuzz/run.sh), and the nginx/HAProxy differential
# The unit tests are built sanitized (build-asan/, build-tsan/). The integration tests drive a
# separate sidetrace process, so they are not rebuilt: the plain build's integration_tests
# (BUILD_DIR, default build/; built here if missing) runs against the sanitized binary through
# SIDETRACE_BIN. That halves each sanitizer build. The fuzz corpus replays are left to the fuzz
# stage, which runs the same inputs under ASan+UBSan.
# A sanitizer report anywhere fails the stage: in a test binary, UBSan halts and TSan exits 66 at
# exit; in sidetrace, the integration harness fails the test whose process wrote a report; and the
# ctest log is searched for report lines last, in case a helper process wrote one.
# Environment: JOBS (default nproc), BUILD_DIR, TSAN_TESTS (ctest -R regex), FUZZ_SECONDS.
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$root"
here="$root/tests/sanitizers"
jobs="${JOBS:-$(nproc)}"
plain_dir="${BUILD_DIR:-build}"

# Sanitizer builds at -O1 with line tables (-g1) and assertions on: half the compile time of the
# default -O2 -g under ASan, stacks still symbolized, and asserted invariants checked as well.
configure() {  # build_dir sanitizers
  cmake -S . -B "$1" -G Ninja -DSIDETRACE_WERROR=ON -DSIDETRACE_SANITIZE="$2" \
    -DSIDETRACE_INTEGRATION_TESTS=OFF -DSIDETRACE_FUZZ_REPLAY=OFF \
    -DCMAKE_BUILD_TYPE=Sanitize "-DCMAKE_C_FLAGS_SANITIZE=-O1 -g1" \
    "-DCMAKE_CXX_FLAGS_SANITIZE=-O1 -g1" >/dev/null
}

# The plain build's integration test binary (tests/run.sh's first stage has built it already).
plain_integration_tests() {
  { [ -f "$plain_dir/CMakeCache.txt" ] ||
    cmake -S . -B "$plain_dir" -G Ninja -DSIDETRACE_WERROR=ON >/dev/null; } &&
    timed "plain integration_tests build" cmake --build "$plain_dir" -j "$jobs" \
      --target integration_tests
}

# The first line of a sanitizer report (the pattern the integration harness matches on stderr).
report_re='^(==[0-9]+==)?(ERROR|WARNING): [A-Za-z]*Sanitizer|^[^{\[].*: runtime error: '

# Runs ctest in $1 with the remaining arguments, then fails if the log holds a sanitizer report.
run_ctest() {
  local dir=$1
  shift
  local status=0
  ctest --test-dir "$dir" --output-on-failure -j "$jobs" "$@" || status=$?
  local reports
  # ctest's own lines name each test, and the harness tests' names carry sample report lines.
  reports=$(grep -vE '^[0-9]+/[0-9]+ Test(ing)?: |^".*" (start time|end time|time elapsed):' \
    "$dir/Testing/Temporary/LastTest.log" | grep -E "$report_re" || true)
  if [ -n "$reports" ]; then
    echo "sanitizers: report lines in $dir/Testing/Temporary/LastTest.log:" >&2
    echo "$reports" | sort | uniq -c | head -40 >&2
    status=1
  fi
  return "$status"
}

timed() {  # label command...: runs the command, prints its wall time
  local label=$1 t0=$SECONDS status=0
  shift
  "$@" || status=$?
  echo "sanitizers: $label $(($SECONDS - t0)) s (exit $status)"
  return "$status"
}

# halt_on_error: a UBSan report in a test binary fails its test, not only a log line.
# detect_leaks stays on (the default): a leak at a clean exit is a report too.
# Chained with &&: errexit does not apply inside a stage (it runs under ||).
# handle_segv/handle_sigbus=0: a crash by a signal stays one (the harness names the signal, as in
# the plain build; HarnessCrashTest checks that) instead of becoming an ASan report and exit 1.
# AcceptBacksOffWhenOutOfDescriptors runs the process out of descriptors, and UBSan's vptr check
# needs two (a pipe, to probe memory): there it reports valid objects as "invalid vptr".
stage_asan() {
  configure build-asan address,undefined &&
    timed "asan build" cmake --build build-asan -j "$jobs" &&
    plain_integration_tests || return
  export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=1:handle_segv=0:handle_sigbus=0}"
  export UBSAN_OPTIONS="${UBSAN_OPTIONS:-halt_on_error=1:print_stacktrace=1}"
  local status=0
  timed "asan unit tests" run_ctest build-asan --timeout 600 || status=$?
  SIDETRACE_BIN="$root/build-asan/proxy/sidetrace" timed "asan integration tests" \
    run_ctest "$plain_dir" --timeout 600 -L integration \
    -E '^ConnectionLimitsTest\.AcceptBacksOffWhenOutOfDescriptors$' || status=$?
  return "$status"
}

# Reload, DNS refresh, health checks, outlier detection, the export pipeline (batch processor,
# exporters, collector faults) and drain: the tests where the main thread, the workers, the
# exporter thread and the health checker touch shared state.
tsan_tests_default='^(ReloadTest|DnsRefreshTest|HealthCheckTest|TlsHealthCheckTest|GrpcHealthCheckTest|OutlierDetectionTest|OutlierTest|CollectorFaultsTest|OtlpHttpTest|AdminLifecycleTest|BatchSpanProcessorTest|WorkerSpanBufferTest|ExportBackoffTest|OtlpGrpcExporterTest|OtlpHttpExporterTest|TracezTest|OpenMetricsTest|RecentSpansTest)\.'

# Builds only the binaries the subset runs. Debian's grpc/absl/protobuf are not instrumented:
# tsan.supp says which reports are theirs.
stage_tsan() {
  configure build-tsan thread &&
    timed "tsan build" cmake --build build-tsan -j "$jobs" --target sidetrace \
      tracing_unit_tests upstream_unit_tests &&
    plain_integration_tests || return
  export TSAN_OPTIONS="${TSAN_OPTIONS:-suppressions=$here/tsan.supp:second_deadlock_stack=1}"
  local status=0 tests="${TSAN_TESTS:-$tsan_tests_default}"
  timed "tsan unit tests" run_ctest build-tsan --timeout 600 -R "$tests" || status=$?
  SIDETRACE_BIN="$root/build-tsan/proxy/sidetrace" timed "tsan integration tests" \
    run_ctest "$plain_dir" --timeout 600 -L integration -R "$tests" || status=$?
  return "$status"
}

stage_fuzz() {
  # FUZZ_TARGETS unset: every target tests/fuzz/CMakeLists.txt builds (run.sh's default).
  # shellcheck disable=SC2086 # a list of target names
  # The differential target (nginx and HAProxy installed) drives the ASan+UBSan sidetrace of the
  # asan stage when there is one: a memory error on a mutated request is then a finding too.
  local bin="$root/build-asan/proxy/sidetrace"
  [ -x "$bin" ] || bin="$root/$plain_dir/proxy/sidetrace"
  SIDETRACE_BIN="$bin" JOBS="$jobs" timed "fuzz" bash tests/fuzz/run.sh "${FUZZ_SECONDS:-20}" ${FUZZ_TARGETS:-}
}

stages=("$@")
[ ${#stages[@]} -gt 0 ] || stages=(asan tsan fuzz)
failed=()
for s in "${stages[@]}"; do
  case "$s" in
    asan | tsan | fuzz) ;;
    *) echo "usage: tests/sanitizers/run.sh [asan] [tsan] [fuzz]" >&2; exit 2 ;;
  esac
  echo "=== sanitizers: $s"
  t0=$SECONDS
  status=0
  "stage_$s" || status=$?
  echo "=== sanitizers: $s done in $(($SECONDS - t0)) s, exit $status"
  [ "$status" -eq 0 ] || failed+=("$s")
done
if [ ${#failed[@]} -gt 0 ]; then
  echo "sanitizers: FAILED: ${failed[*]}" >&2
  exit 1
fi
