#!/usr/bin/env bash
# The test command: install every dependency (Debian packages; npm for the JS decoding peer),
# configure, build, run all tests through ctest. Safe to re-run; skips installs already done.
#   tests/run.sh            # everything
#   SKIP_INSTALL=1 tests/run.sh
#   BUILD_DIR=build-asan CMAKE_ARGS="-DSIDETRACE_SANITIZE=address,undefined" tests/run.sh
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
build_dir="${BUILD_DIR:-build}"

packages=(cmake ninja-build g++ pkg-config ccache
  libboost-dev libssl-dev libnghttp2-dev node-llhttp
  libgrpc++-dev protobuf-compiler-grpc libprotobuf-dev protobuf-compiler
  libyaml-cpp-dev libspdlog-dev libgtest-dev libgmock-dev
  curl python3)

if [ -z "${SKIP_INSTALL:-}" ]; then
  missing=()
  for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p")
  done
  # Node.js for the official-schema peer: some images ship nodesource's nodejs (npm bundled), which
  # conflicts with Debian's npm package, so ask for Debian's only when the commands are missing.
  command -v node >/dev/null 2>&1 || missing+=(nodejs)
  command -v npm >/dev/null 2>&1 || missing+=(npm)
  if [ ${#missing[@]} -gt 0 ]; then
    echo "tests/run.sh: installing ${missing[*]}"
    sudo_cmd=""; [ "$(id -u)" -ne 0 ] && sudo_cmd="sudo"
    export DEBIAN_FRONTEND=noninteractive
    $sudo_cmd apt-get update -qq
    $sudo_cmd apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  fi
  # JS peer for decoding exported spans with the official opentelemetry-proto schema.
  if [ -f tests/integration/node/package.json ] && [ ! -d tests/integration/node/node_modules ]; then
    (cd tests/integration/node && npm install --no-audit --no-fund --loglevel=error) ||
      echo "tests/run.sh: npm install failed; the official-schema test will be skipped"
  fi
fi

jobs="${JOBS:-$(nproc)}"
cmake -S . -B "$build_dir" -G Ninja -DSIDETRACE_WERROR=ON ${CMAKE_ARGS:-}
cmake --build "$build_dir" -j "$jobs"
ctest --test-dir "$build_dir" --output-on-failure -j "$jobs" --timeout 300
