#!/usr/bin/env bash
# The test command (.ci/run runs it): install every dependency (Debian packages; npm for the JS
# decoding peer), then, each stage timed and the next one run even when one fails:
#   1. build/ with -Werror and run every test through ctest;
#   2. tests/image/run.sh: the container image's root filesystem (mmdebstrap) with stage 1's binary
#      run in it, read-only, as the image's uid (~75 s on a fresh machine, ~5 s when cached);
#   3. tests/sanitizers/run.sh asan: the whole suite again under ASan+UBSan (build-asan/);
#   4. tests/sanitizers/run.sh tsan: the concurrency-heavy tests under TSan (build-tsan/);
#   5. tests/sanitizers/run.sh fuzz: every fuzz target FUZZ_SECONDS (20) from its corpus, and the
#      differential one (the same mutated HTTP/1 requests to sidetrace, nginx and HAProxy);
#   6. only with SOAK_MINUTES set (off by default): tests/soak/run.sh SOAK_MINUTES on stage 1's
#      build (SOAK_MINUTES=1 is the smoke mode, about 70 s).
# Exits non-zero if any stage failed. Safe to re-run; skips installs already done.
#   tests/run.sh                      # everything
#   SANITIZERS=0 tests/run.sh         # stages 1 and 2 only (a quick local run)
#   SKIP_INSTALL=1 tests/run.sh
#   tests/sanitizers/run.sh tsan      # one sanitizer stage alone (asan, tsan or fuzz)
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
build_dir="${BUILD_DIR:-build}"
sanitizers="${SANITIZERS:-1}"
[ "$sanitizers" != 0 ] || sanitizers=""

t_start=$SECONDS
if [ -z "${SKIP_INSTALL:-}" ]; then
  # clang and its runtime build the libFuzzer targets (fuzz stage).
  # mmdebstrap builds the image's root filesystem (image stage). iptables: the transparent egress
  # test (TransparentEgressTest) applies k8s/egress-iptables.sh in a network namespace.
  # chromium: the /tracez page is loaded in headless Chromium (TracezTest; ~110 MB download with
  # its libraries, about a minute on a fresh machine; not in install-deps' own list, so the
  # quickstart and the bench do not pay for it).
  # nginx and haproxy: the fuzz stage's differential target (tests/fuzz/differential.py).
  bash tests/install-deps.sh --node mmdebstrap iptables chromium \
    ${sanitizers:+clang libclang-rt-14-dev nginx haproxy}
  # npm peers: the official opentelemetry-proto schema decoding exported spans (integration), and
  # the Kubernetes schemas the manifests in k8s/ are validated against (tests/k8s).
  for peer in tests/integration/node tests/k8s; do
    if [ -f "$peer/package.json" ] && [ ! -d "$peer/node_modules" ]; then
      (cd "$peer" && npm install --no-audit --no-fund --loglevel=error) ||
        echo "tests/run.sh: npm install in $peer failed; its tests will be skipped (fail if CI is set)"
    fi
  done
fi

times=()
failed=()
stage() {  # name command...: runs one stage, records its wall time and whether it failed
  local name=$1 t0=$SECONDS status=0
  shift
  echo "=== tests/run.sh: $name"
  "$@" || status=$?
  times+=("$(printf '%-10s %5d s  %s' "$name" $((SECONDS - t0)) "$([ $status -eq 0 ] && echo ok || echo "FAILED ($status)")")")
  [ "$status" -eq 0 ] || failed+=("$name")
}

plain() {  # chained with &&: errexit does not apply inside a stage (it runs under ||)
  cmake -S . -B "$build_dir" -G Ninja -DSIDETRACE_WERROR=ON ${CMAKE_ARGS:-} &&
    cmake --build "$build_dir" -j "$jobs" &&
    ctest --test-dir "$build_dir" --output-on-failure -j "$jobs" --timeout 300
}

jobs="${JOBS:-$(nproc)}"
export JOBS="$jobs"
times+=("$(printf '%-10s %5d s' install $((SECONDS - t_start)))")
stage tests plain
BUILD_DIR="$build_dir" stage image bash tests/image/run.sh
# CI stops the whole run at 90 minutes and then lands nothing. A cold machine needs about an hour
# for all stages; a sanitizer stage that would start past BUDGET_SECONDS (default 70 min) is
# skipped, loudly, instead of taking the plain suite's result down with it.
budget="${BUDGET_SECONDS:-4200}"
sanitizer_stage() {
  if [ $((SECONDS - t_start)) -gt "$budget" ]; then
    echo "=== tests/run.sh: $1 SKIPPED: past the ${budget} s budget"
    times+=("$(printf '%-10s %5s    %s' "$1" - "SKIPPED (budget)")")
    return
  fi
  stage "$1" bash tests/sanitizers/run.sh "$1"
}
if [ -n "$sanitizers" ]; then
  sanitizer_stage asan
  sanitizer_stage tsan
  sanitizer_stage fuzz
fi

if [ -n "${SOAK_MINUTES:-}" ]; then
  BUILD_DIR="$build_dir" SKIP_BUILD=1 stage soak bash tests/soak/run.sh "$SOAK_MINUTES"
fi

echo "=== tests/run.sh: stage times (total $((SECONDS - t_start)) s)"
printf '  %s\n' "${times[@]}"
if [ ${#failed[@]} -gt 0 ]; then
  echo "tests/run.sh: FAILED stages: ${failed[*]}" >&2
  exit 1
fi
