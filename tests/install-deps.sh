#!/usr/bin/env bash
# Installs what sidetrace needs to build and test, from Debian's packages, skipping what is there.
# The one list of build dependencies: tests/run.sh, examples/quickstart.sh and tests/bench/run.sh
# call this. Extra package names given as arguments are installed too (e.g. wrk haproxy).
#   tests/install-deps.sh [--node] [PACKAGE...]    # --node: Node.js + npm for the JS test peer
set -euo pipefail

packages=(cmake ninja-build g++ pkg-config ccache
  libboost-dev libssl-dev libnghttp2-dev node-llhttp zlib1g-dev
  libgrpc++-dev protobuf-compiler-grpc libprotobuf-dev protobuf-compiler
  libyaml-cpp-dev libspdlog-dev libgtest-dev libgmock-dev libre2-dev libmimalloc-dev
  curl python3 python3-prometheus-client)
want_node=""
for arg in "$@"; do
  if [ "$arg" = "--node" ]; then want_node=1; else packages+=("$arg"); fi
done

command -v dpkg-query >/dev/null 2>&1 || {
  echo "install-deps: this installs with apt-get (Debian/Ubuntu); install the packages listed in" \
    "tests/install-deps.sh yourself and set SKIP_INSTALL=1" >&2
  exit 1
}
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p")
done
if [ -n "$want_node" ]; then
  # Some images ship nodesource's nodejs (npm bundled), which conflicts with Debian's npm package:
  # ask for Debian's only when the commands are missing.
  command -v node >/dev/null 2>&1 || missing+=(nodejs)
  command -v npm >/dev/null 2>&1 || missing+=(npm)
fi
if [ ${#missing[@]} -gt 0 ]; then
  echo "install-deps: installing ${missing[*]}"
  sudo_cmd=""
  if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null 2>&1 || { echo "install-deps: not root and no sudo" >&2; exit 1; }
    sudo_cmd="sudo"
  fi
  export DEBIAN_FRONTEND=noninteractive
  $sudo_cmd apt-get update -qq
  $sudo_cmd apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
