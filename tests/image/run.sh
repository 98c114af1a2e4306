#!/usr/bin/env bash
# The container image's runtime, checked without a container runtime (none can start containers on
# these machines). Builds the root filesystem of the Dockerfile's runtime stage with mmdebstrap:
# Debian bookworm minbase with debian:bookworm-slim's dpkg excludes, plus the packages in
# k8s/image/runtime-packages.txt. Installs the built binary the way the Dockerfile does (install -s
# to /usr/local/bin, root-owned, 0755) and runs it there as the image does: its own mount and PID
# namespaces (sidetrace is PID 1, as in a container), chroot, uid 65532, the root read-only, a
# writable volume on /tmp for --ports-file only. Checks:
#   - every library of the binary resolves in the image (ldd) and its version is the Dockerfile's;
#   - the root really is read-only;
#   - k8s/egress-iptables.sh, installed as the Dockerfile does, sets its rules with the image's
#     iptables (as root, in a network namespace of its own: the transparent-egress init container);
#   - /ready answers on the admin listener; a request goes through sidetrace to an upstream outside
#     the image (tests/image/upstream.py) with a traceparent injected;
#   - on SIGTERM, a request in flight completes, the spans are flushed over OTLP/gRPC to a sink
#     outside (tests/bench/otlp_sink; the batch delay is 10 min, so only the drain's flush can have
#     sent them) and sidetrace exits 0.
# Prints the size of the image's root filesystem. Needs root, mmdebstrap and the Debian mirror the
# host's apt uses. The root filesystem's tarball is cached in $SIDETRACE_IMAGE_CACHE (default
# ~/.cache/sidetrace-image) for CACHE_DAYS (7) days, keyed by the package list, the mmdebstrap
# options and the mirrors. With CI set, anything that would skip (not root, no mmdebstrap, mirror
# unreachable) fails instead.
#   tests/image/run.sh               # BUILD_DIR (build)/proxy/sidetrace, .../tests/bench/otlp_sink
#   KEEP=1 tests/image/run.sh        # keep the work directory (root filesystem, logs)
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
build_dir="${BUILD_DIR:-build}"
case "$build_dir" in /*) ;; *) build_dir="$root/$build_dir" ;; esac
bin="${SIDETRACE_BIN:-$build_dir/proxy/sidetrace}"
sink="${OTLP_SINK:-$build_dir/tests/bench/otlp_sink}"
packages_file="$root/k8s/image/runtime-packages.txt"
cache_dir="${SIDETRACE_IMAGE_CACHE:-${XDG_CACHE_HOME:-${HOME:-/root}/.cache}/sidetrace-image}"
t_start=$SECONDS

say() { echo "tests/image/run.sh: $*"; }
fail() {
  say "FAILED: $*" >&2
  exit 1
}
in_ci() { case "${CI:-}" in "" | 0 | false) return 1 ;; *) return 0 ;; esac }
skip() {
  in_ci && fail "$* (CI is set: this test must run, not skip)"
  say "SKIPPED: $*"
  exit 0
}

# What this test takes from the Dockerfile, so that the two cannot drift apart unnoticed.
dockerfile="$root/Dockerfile"
uid="$(sed -n 's/^USER \([0-9]*\):[0-9]*$/\1/p' "$dockerfile")"
[ -n "$uid" ] || fail "no numeric USER uid:gid in the Dockerfile"
grep -q '^COPY k8s/image/runtime-packages.txt ' "$dockerfile" ||
  fail "the Dockerfile does not install k8s/image/runtime-packages.txt"
grep -q 'install -D -s -m 0755 build/proxy/sidetrace /out/usr/local/bin/sidetrace' "$dockerfile" ||
  fail "the Dockerfile no longer installs the binary as this test does"
grep -q '^COPY --chmod=0755 k8s/egress-iptables.sh /usr/local/bin/egress-iptables.sh$' "$dockerfile" ||
  fail "the Dockerfile no longer installs k8s/egress-iptables.sh as this test does"

[ "$(id -u)" -eq 0 ] || skip "needs root (mount namespaces, chroot)"
for tool in mmdebstrap unshare chroot pgrep curl /usr/bin/python3; do
  command -v "$tool" >/dev/null 2>&1 || skip "$tool is not installed (tests/run.sh installs it)"
done
[ -x "$bin" ] || fail "no sidetrace binary at $bin (cmake --build build --target sidetrace)"
[ -x "$sink" ] || fail "no otlp_sink at $sink (cmake --build build --target otlp_sink)"

# --- the root filesystem ----------------------------------------------------------------------
# The host's Debian mirrors for bookworm, its updates and security suites.
mirrors=()
# shellcheck disable=SC2016 # $(FIELD) is apt's format syntax
while read -r uri release; do
  mirrors+=("deb $uri $release main")
done < <(apt-get indextargets --format '$(REPO_URI) $(RELEASE)' 'Identifier: Packages' \
  'Component: main' 2>/dev/null | grep -E ' bookworm(-updates|-security)?$' | sort -u)
if [ ${#mirrors[@]} -eq 0 ]; then
  mirrors=("deb http://deb.debian.org/debian bookworm main"
    "deb http://deb.debian.org/debian bookworm-updates main"
    "deb http://deb.debian.org/debian-security bookworm-security main")
fi
packages="$(grep -v '^[[:space:]]*#' "$packages_file" | xargs | tr ' ' ,)"
# minbase + merged /usr without the usrmerge package (which would pull in perl), and the paths
# debian:bookworm-slim leaves out (/etc/dpkg/dpkg.cfg.d/docker in that image).
mm_opts=(--variant=minbase --format=tar --include="$packages"
  --hook-dir=/usr/share/mmdebstrap/hooks/merged-usr
  --dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-include=/usr/share/doc/*/copyright'
  --dpkgopt='path-exclude=/usr/share/man/*' --dpkgopt='path-exclude=/usr/share/groff/*'
  --dpkgopt='path-exclude=/usr/share/info/*' --dpkgopt='path-exclude=/usr/share/lintian/*'
  --dpkgopt='path-exclude=/usr/share/linda/*' --dpkgopt='path-exclude=/usr/share/locale/*')
key="$(printf '%s\n' "${mm_opts[@]}" "${mirrors[@]}" | sha256sum | cut -c1-16)"
tarball="$cache_dir/rootfs-$key.tar"
mkdir -p "$cache_dir"
find "$cache_dir" -name 'rootfs-*.tar' -mtime +"${CACHE_DAYS:-7}" -delete
t0=$SECONDS
if [ -f "$tarball" ]; then
  rootfs_how="cached ($tarball)"
else
  say "building the root filesystem with mmdebstrap (bookworm minbase + $packages)"
  if ! mmdebstrap "${mm_opts[@]}" bookworm "$tarball.part" "${mirrors[@]}" \
    </dev/null >"$cache_dir/mmdebstrap.log" 2>&1; then
    tail -20 "$cache_dir/mmdebstrap.log" >&2
    rm -f "$tarball.part"
    skip "mmdebstrap failed (mirror unreachable?), log: $cache_dir/mmdebstrap.log"
  fi
  mv "$tarball.part" "$tarball"
  rootfs_how="built by mmdebstrap in $((SECONDS - t0)) s"
fi

work="$(mktemp -d "${TMPDIR:-/tmp}/sidetrace-image.XXXXXX")"
rootfs="$work/rootfs"
vol="$work/vol"  # the pod's emptyDir, say: the only writable place
mkdir -p "$rootfs" "$vol"
tar -C "$rootfs" --numeric-owner -xf "$tarball"
base_bytes="$(du -sb "$rootfs" | cut -f1)"
# As the Dockerfile's build stage: install -D -s -m 0755 ... /out/usr/local/bin/sidetrace.
install -D -s -m 0755 -o 0 -g 0 "$bin" "$rootfs/usr/local/bin/sidetrace"
install -m 0755 -o 0 -g 0 "$root/k8s/egress-iptables.sh" "$rootfs/usr/local/bin/egress-iptables.sh"
image_bytes="$(du -sb "$rootfs" | cut -f1)"
chown "$uid:$uid" "$vol"
chmod 0700 "$vol"

cleanup() {
  # Only children bash has not reaped yet (jobs -p): their pids cannot have been reused.
  local p
  for p in $(jobs -p); do kill -KILL "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  # The mounts live in the namespace of the (now dead) unshare, so $work holds plain files.
  if [ -z "${KEEP:-}" ]; then rm -rf "$work"; else say "kept $work"; fi
}
trap cleanup EXIT

# enter USER CMD...: runs CMD in the image's root filesystem as a container runtime would (see the
# top of this file), with an empty environment but PATH; CMD may start with NAME=VALUE pairs.
# ENTER_NET=1: in a network namespace of its own too.
enter() {
  local user=$1
  shift
  # shellcheck disable=SC2016 # the script's $1... are its own arguments
  unshare --mount --pid ${ENTER_NET:+--net} --fork --kill-child -- /bin/bash -c '
    set -e
    r=$1 vol=$2 user=$3
    shift 3
    mount --bind "$r" "$r"
    mount -t proc -o nosuid,nodev,noexec proc "$r/proc"
    mount -t tmpfs -o nosuid,mode=0755 tmpfs "$r/dev"
    for d in null zero full random urandom; do
      touch "$r/dev/$d"
      mount --bind "/dev/$d" "$r/dev/$d"
    done
    mount --bind "$vol" "$r/tmp"
    mount -o remount,bind,ro "$r"
    exec chroot --userspec="$user" "$r" /usr/bin/env -i PATH=/usr/local/bin:/usr/bin:/bin "$@"
  ' enter "$rootfs" "$vol" "$user" "$@"
}

# descendant PID NAME: the first process called NAME under PID (the host's pid of the sidetrace
# that runs as PID 1 in its namespace).
descendant() {
  local p
  for p in $(pgrep -P "$1"); do
    if [ "$(cat "/proc/$p/comm" 2>/dev/null)" = "$2" ]; then
      echo "$p"
      return
    fi
    descendant "$p" "$2"
  done
}

# running PID: the process exists and is not a zombie.
running() { [ -e "/proc/$1" ] && ! grep -q '^[0-9]* (.*) Z' "/proc/$1/stat" 2>/dev/null; }

# wait_for DESCRIPTION SECONDS TEST...: polls TEST every 0.1 s.
wait_for() {
  local what=$1 deadline=$((SECONDS + $2))
  shift 2
  until "$@"; do
    [ $SECONDS -lt $deadline ] || fail "timed out waiting for $what"
    sleep 0.1
  done
}

# --- static checks ----------------------------------------------------------------------------
missing="$(enter "$uid:$uid" ldd /usr/local/bin/sidetrace | grep 'not found' || true)"
[ -z "$missing" ] || fail "libraries missing from k8s/image/runtime-packages.txt:
$missing"
if enter 0:0 touch /rootfs-is-writable 2>/dev/null; then
  fail "the root filesystem is writable: the read-only mount did not take"
fi
# The transparent-egress init container (inject --transparent): the image's script and iptables,
# as root on the read-only root, in a network namespace of its own.
rules="$(ENTER_NET=1 enter 0:0 bash -c 'egress-iptables.sh --egress-port 15002 --ports 80,8080 \
  >/dev/null && /usr/sbin/iptables -t nat -S SIDETRACE_EGRESS' 2>&1)" ||
  fail "egress-iptables.sh failed in the image: $rules"
grep -q -- '--dports 80,8080 -j REDIRECT --to-ports 15002' <<<"$rules" ||
  fail "egress-iptables.sh set no redirect in the image: $rules"
version="$(enter "$uid:$uid" sidetrace --version | head -1)"
want="sidetrace $(sed -n 's/^ARG VERSION=//p' "$dockerfile")"
[ "$version" = "$want" ] || fail "the binary says '$version', the Dockerfile's VERSION label '$want'"

# --- run it -----------------------------------------------------------------------------------
/usr/bin/python3 "$root/tests/image/upstream.py" "$work/upstream.port" "$work/upstream.log" &
"$sink" 127.0.0.1:0 >"$work/sink.out" 2>"$work/sink.err" &
sink_pid=$!
wait_for "the upstream's port" 10 test -s "$work/upstream.port"
wait_for "the OTLP sink's port" 10 grep -q ' port [0-9]' "$work/sink.err"
upstream_port="$(cat "$work/upstream.port")"
sink_port="$(sed -n 's/.* port \([0-9]*\).*/\1/p' "$work/sink.err" | head -1)"

# The environment k8s/sidecar.yaml gives the sidecar; spans leave only when sidetrace drains.
enter "$uid:$uid" \
  OTEL_SERVICE_NAME=image-test \
  OTEL_RESOURCE_ATTRIBUTES=k8s.pod.name=image-test-0,k8s.namespace.name=default,service.version=1 \
  OTEL_EXPORTER_OTLP_ENDPOINT="http://127.0.0.1:$sink_port" OTEL_EXPORTER_OTLP_PROTOCOL=grpc \
  OTEL_BSP_EXPORT_TIMEOUT=5000 \
  OTEL_BSP_SCHEDULE_DELAY=600000 \
  sidetrace --listen 127.0.0.1:0 --upstream "127.0.0.1:$upstream_port" --admin 127.0.0.1:0 \
  --ports-file /tmp/ports --workers 2 --log-format text >"$work/sidetrace.log" 2>&1 &
ns_pid=$!
wait_for "sidetrace's --ports-file (log: $work/sidetrace.log)" 20 test -s "$vol/ports"
listen="$(awk '$1 == "listener" { print $2; exit }' "$vol/ports")"
admin="$(awk '$1 == "admin" { print $2; exit }' "$vol/ports")"
st_pid="$(descendant "$ns_pid" sidetrace)"
[ -n "$st_pid" ] || fail "no sidetrace process under $ns_pid"
grep -q "^Uid:[[:space:]]*${uid}[[:space:]]" "/proc/$st_pid/status" || fail "sidetrace is not uid $uid"
grep -q "^NSpid:.*[[:space:]]1$" "/proc/$st_pid/status" || fail "sidetrace is not PID 1 in its namespace"

ready="$(curl -s -o /dev/null -w '%{http_code}' "http://$admin/ready")"
[ "$ready" = 200 ] || fail "GET /ready on the admin listener answered $ready"
body="$(curl -sS --max-time 10 "http://$listen/")"
[ "$body" = "upstream saw /" ] || fail "GET / through sidetrace answered '$body'"
grep -Eq '^/ 00-[0-9a-f]{32}-[0-9a-f]{16}-01$' "$work/upstream.log" ||
  fail "the upstream got no sampled traceparent: $(cat "$work/upstream.log")"

# Drain: a request in flight when SIGTERM arrives still gets its answer.
curl -sS --max-time 20 -o "$work/slow.out" -w '%{http_code}' "http://$listen/slow" >"$work/slow.code" &
curl_pid=$!
wait_for "/slow to reach the upstream" 10 grep -q '^/slow ' "$work/upstream.log"
kill -TERM "$st_pid"
wait "$curl_pid" || fail "the request in flight at SIGTERM failed (curl exit $?)"
if [ "$(cat "$work/slow.code")" != 200 ] || [ "$(cat "$work/slow.out")" != "upstream saw /slow" ]; then
  fail "the request in flight at SIGTERM got $(cat "$work/slow.code") '$(cat "$work/slow.out")'"
fi
exited() { ! running "$ns_pid"; }
wait_for "sidetrace to exit after SIGTERM" 30 exited
status=0
wait "$ns_pid" || status=$?
[ "$status" -eq 0 ] || fail "sidetrace exited $status after SIGTERM; log:
$(tail -20 "$work/sidetrace.log")"

kill -TERM "$sink_pid"
wait "$sink_pid" || fail "otlp_sink exited $?"
sink_line="$(grep 'otlp_sink: requests=' "$work/sink.out" || true)"
requests="$(sed -n 's/.*requests=\([0-9]*\).*/\1/p' <<<"$sink_line")"
[ "${requests:-0}" -ge 1 ] || fail "no span reached the OTLP sink (${sink_line:-no count printed})"

mib() { awk -v b="$1" 'BEGIN { printf "%.1f MiB", b / 1048576 }'; }
say "root filesystem: $rootfs_how"
say "image root filesystem $(mib "$image_bytes"): bookworm minbase (slim) + runtime packages" \
  "$(mib "$base_bytes"), sidetrace $(mib $((image_bytes - base_bytes)))"
say "ok: libraries resolve, read-only root, uid $uid as PID 1, proxied with traceparent," \
  "in-flight request drained, $sink_line, exit 0 ($((SECONDS - t_start)) s)"
