#!/usr/bin/env bash
# Runs every fuzz target (tests/fuzz/*_fuzz.cc) for SECONDS each, from its committed corpus and
# its findings (every fixed finding is replayed first).
#   tests/fuzz/run.sh SECONDS [TARGET...]
# Builds the libFuzzer binaries first if needed, in build-fuzz/ (clang, ASan+UBSan, the project's
# libraries instrumented for coverage; the g++ build in build/ is not touched). Prints, per target,
# the executions and the coverage reached (libFuzzer's cov: edges, ft: features) and exits
# non-zero on any crash, sanitizer report, leak, timeout or out-of-memory; the reproducer is saved
# under tests/fuzz/findings/<target>/. New inputs go to build-fuzz/corpus/<target>/ (not committed).
# The target `differential` (tests/fuzz/differential.py) is not a libFuzzer binary: it sends the
# same mutated HTTP/1 requests to sidetrace, nginx and HAProxy and fails when sidetrace forwards
# what both refuse (or more requests, or another body); it runs SIDETRACE_BIN (default
# build/proxy/sidetrace, the plain build) and is part of the default list when nginx, haproxy and
# that binary are there. Its findings go to tests/fuzz/findings/differential/.
# Environment: JOBS (build parallelism, default 2), FUZZ_BUILD_DIR (default build-fuzz).
set -euo pipefail

seconds=${1:?usage: tests/fuzz/run.sh SECONDS [TARGET...]}
shift
root=$(cd "$(dirname "$0")/../.." && pwd)
build=${FUZZ_BUILD_DIR:-$root/build-fuzz}
fuzz_dir=$root/tests/fuzz
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  # The list CMake builds (set(SIDETRACE_FUZZ_TARGETS ...), possibly over several lines).
  targets=($(awk '/^set\(SIDETRACE_FUZZ_TARGETS/,/\)/' "$fuzz_dir/CMakeLists.txt" |
    tr -d '()' | sed 's/set//; s/SIDETRACE_FUZZ_TARGETS//'))
fi

# clang 14 + libstdc++: asio's coroutines need the two defines; UBSan's function check breaks on
# coroutine frames (DEPENDENCIES.md 3): at any -O, clang 14 then fails the coroutine TUs with
# "Cannot represent a difference across sections", so -fno-sanitize=function must come after
# -fsanitize=undefined (all sanitizer flags are set here, not through SIDETRACE_SANITIZE, whose
# flags would come later). fuzzer-no-link instruments the project's libraries, llhttp and the
# generated protos for coverage; the fuzz binaries link -fsanitize=fuzzer. -O1 with line tables
# and assertions on, as OSS-Fuzz builds.
flags="-O1 -gline-tables-only -fno-omit-frame-pointer -fsanitize=address,undefined,fuzzer-no-link -fno-sanitize=function -DBOOST_ASIO_HAS_CO_AWAIT=1 -DBOOST_ASIO_HAS_STD_COROUTINE=1"
if [ ! -f "$build/CMakeCache.txt" ] || ! grep -q '^SIDETRACE_FUZZ:BOOL=ON' "$build/CMakeCache.txt"; then
  CC=clang CXX=clang++ cmake -S "$root" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Fuzz \
    -DSIDETRACE_BUILD_TESTS=OFF -DSIDETRACE_FUZZ=ON "-DCMAKE_C_FLAGS=$flags" "-DCMAKE_CXX_FLAGS=$flags" >/dev/null
fi
sidetrace_bin=${SIDETRACE_BIN:-$root/build/proxy/sidetrace}
if [ $# -eq 0 ] && command -v nginx >/dev/null && command -v haproxy >/dev/null &&
  [ -x "$sidetrace_bin" ]; then
  targets+=(differential)
fi
libfuzzer=()
for t in "${targets[@]}"; do
  [ "$t" = differential ] || libfuzzer+=("fuzz_$t")
done
if [ ${#libfuzzer[@]} -gt 0 ]; then
  nice -n 5 cmake --build "$build" -j "${JOBS:-2}" --target "${libfuzzer[@]}"
fi

export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:allocator_may_return_null=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-halt_on_error=1:print_stacktrace=1}
failed=()
printf '\n%-16s %12s %8s %8s %10s  %s\n' target execs cov ft corpus result
summary=""
for t in "${targets[@]}"; do
  corpus=$build/corpus/$t
  findings=$fuzz_dir/findings/$t
  log=$build/fuzz-$t.log
  mkdir -p "$corpus" "$findings"
  status=0
  if [ "$t" = differential ]; then
    python3 "$fuzz_dir/differential.py" --seconds "$seconds" --sidetrace "$sidetrace_bin" \
      --findings "$findings" >"$log" 2>&1 || status=$?
    stats=$(grep -m1 '^differential: seed' "$log" || echo "see $log")
    result=$([ "$status" -eq 0 ] && echo "ok (${stats#differential: })" || echo "FAILED: $(grep -m1 FINDING "$log" || echo "see $log")")
    line=$(printf '%-16s %12s %8s %8s %10s  %s' "$t" "$(sed -n 's/.*, \([0-9]*\) inputs.*/\1/p' <<<"$stats")" - - - "$result")
    echo "$line"
    [ "$status" -eq 0 ] || failed+=("$t")
    continue
  fi
  # -timeout: one input over 10 s is a hang; -rss_limit_mb / -malloc_limit_mb: a client must not
  # make the process grow past 2 GiB, nor ask for a 512 MiB block.
  "$build/tests/fuzz/fuzz_$t" "$corpus" "$fuzz_dir/corpus/$t" "$findings" -max_total_time="$seconds" \
    -timeout=10 -rss_limit_mb=2048 -malloc_limit_mb=512 -max_len=8192 -print_final_stats=1 \
    -artifact_prefix="$findings/" >"$log" 2>&1 || status=$?
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  last=$(grep -E '^#[0-9]+' "$log" | tail -1 || true)
  cov=$(sed -n 's/.* cov: \([0-9]*\).*/\1/p' <<<"$last")
  ft=$(sed -n 's/.* ft: \([0-9]*\).*/\1/p' <<<"$last")
  units=$(sed -n 's/.* corp: \([0-9]*\/[0-9A-Za-z]*\).*/\1/p' <<<"$last")
  if [ "$status" -eq 0 ]; then
    result=ok
  else
    result="FAILED (exit $status): $(grep -m1 -E 'ERROR: |fuzz property violated|runtime error|Test unit written' "$log" || echo "see $log")"
    failed+=("$t")
  fi
  line=$(printf '%-16s %12s %8s %8s %10s  %s' "$t" "${execs:-?}" "${cov:-?}" "${ft:-?}" "${units:-?}" "$result")
  echo "$line"
  summary+="$line"$'\n'
  if [ "$status" -ne 0 ]; then
    grep -E 'Test unit written|artifact' "$log" | sed 's/^/    /' || true
  fi
done
if [ ${#failed[@]} -gt 0 ]; then
  echo "fuzz: failures in: ${failed[*]} (logs: $build/fuzz-<target>.log; reproducers: tests/fuzz/findings/)" >&2
  exit 1
fi
echo "fuzz: ${#targets[@]} targets, ${seconds}s each, no findings"
