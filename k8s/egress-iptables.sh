#!/usr/bin/env bash
# Transparent egress: sends the app's outbound TCP connections to sidetrace's egress listener with
# iptables REDIRECT in the nat table's OUTPUT chain (as Istio's init container does), so an app
# that knows nothing of HTTP_PROXY has its outbound HTTP traced. sidetrace reads each connection's
# original destination (SO_ORIGINAL_DST) and forwards it there; see README "Egress".
#
# Run as root (or with CAP_NET_ADMIN) in the network namespace of the app: in Kubernetes, an init
# container of the pod (`sidetrace inject --transparent` adds one). Idempotent: the rules live in
# one chain, SIDETRACE_EGRESS, rebuilt on every run, and OUTPUT jumps to it once.
#
#   k8s/egress-iptables.sh [--egress-port 15002] [--uid 65532] [--gid GID]
#                          [--ports 80,8080 | --ports all]
#                          [--exclude-ports 53,4317,4318] [--exclude-cidrs CIDR,...]
#   k8s/egress-iptables.sh --clean          # removes the chain and the jump
#   k8s/egress-iptables.sh --dry-run ...    # checks the arguments, prints the commands only
#
# Not redirected: connections of --uid (sidetrace's own, or they would come back to it), of
# --gid when given (sidetrace's group, when sidetrace runs as root: `inject --process-rule=ptrace`),
# destinations on loopback (127.0.0.0/8: the app's sidecar, its own ports), --exclude-ports (DNS
# over TCP and the OTLP collector ports by default) and --exclude-cidrs. `--ports all` redirects
# every other TCP connection, which only suits apps whose outbound TCP is all HTTP/1: sidetrace
# speaks HTTP, so a database or TLS connection sent to it fails. IPv4 only: the egress listener
# is bound on 127.0.0.1, where REDIRECT sends IPv4 connections (IPv6 ones would go to ::1).
# IPTABLES names the binary (default iptables; Debian bookworm's is nft-backed; iptables-legacy
# for nodes that use the legacy tables).
set -euo pipefail
PATH="$PATH:/usr/sbin:/sbin"  # where Debian puts iptables; not on every PATH of a non-root user

chain=SIDETRACE_EGRESS
egress_port=15002
uid=65532
gid=""
ports=80
exclude_ports=53,4317,4318
exclude_cidrs=""
clean=""
dry_run=""
ipt="${IPTABLES:-iptables}"

usage() {
  sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//' >&2
  exit "${1:-1}"
}
die() {
  echo "egress-iptables.sh: $*" >&2
  exit 1
}
port_list() {  # name value: a comma-separated list of ports 1..65535
  local p
  [ -n "$2" ] || die "$1: empty"
  IFS=, read -ra items <<<"$2"
  [ "${#items[@]}" -le 15 ] || die "$1: at most 15 ports (iptables multiport)"
  for p in "${items[@]}"; do
    if ! [[ "$p" =~ ^[0-9]{1,5}$ ]] || [ "$p" -lt 1 ] || [ "$p" -gt 65535 ]; then
      die "$1: '$p' is not a port (1..65535)"
    fi
  done
}

while [ $# -gt 0 ]; do
  flag=$1
  if [[ "$flag" == --*=* ]]; then  # --flag=value, as Kubernetes args are often written
    set -- "${flag%%=*}" "${flag#*=}" "${@:2}"
    flag=$1
  fi
  case "$flag" in
    --clean) clean=1; shift; continue ;;
    --dry-run) dry_run=1; shift; continue ;;
    -h | --help) usage 0 ;;
    --egress-port | --uid | --gid | --ports | --exclude-ports | --exclude-cidrs) ;;
    *) die "unknown argument '$flag' (--help)" ;;
  esac
  [ $# -ge 2 ] || die "$flag needs a value"
  case "$flag" in
    --egress-port) egress_port=$2 ;;
    --uid) uid=$2 ;;
    --gid) gid=$2 ;;
    --ports) ports=$2 ;;
    --exclude-ports) exclude_ports=$2 ;;
    --exclude-cidrs) exclude_cidrs=$2 ;;
  esac
  shift 2
done

port_list --egress-port "$egress_port"
[[ "$uid" =~ ^[0-9]+$ ]] || die "--uid: '$uid' is not a numeric uid"
[ -z "$gid" ] || [[ "$gid" =~ ^[0-9]+$ ]] || die "--gid: '$gid' is not a numeric gid"
[ "$ports" = all ] || port_list --ports "$ports"
[ -z "$exclude_ports" ] || port_list --exclude-ports "$exclude_ports"
[ -n "$dry_run" ] || command -v "$ipt" >/dev/null 2>&1 || die "$ipt not found (install iptables)"

nat() {  # a change: made, or printed with --dry-run
  if [ -n "$dry_run" ]; then echo "$ipt -w 5 -t nat $*"; else "$ipt" -w 5 -t nat "$@"; fi
}
present() {  # a question (-C, -L): with --dry-run the answer is no, as on a fresh node
  [ -z "$dry_run" ] && "$ipt" -w 5 -t nat "$@" >/dev/null 2>&1
}

if [ -n "$clean" ]; then
  while present -C OUTPUT -p tcp -j "$chain"; do
    nat -D OUTPUT -p tcp -j "$chain"
  done
  if present -L "$chain" -n; then
    nat -F "$chain"
    nat -X "$chain"
  fi
  echo "egress-iptables.sh: removed $chain"
  exit 0
fi

if present -L "$chain" -n; then nat -F "$chain"; else nat -N "$chain"; fi
nat -A "$chain" -m owner --uid-owner "$uid" -j RETURN
[ -z "$gid" ] || nat -A "$chain" -m owner --gid-owner "$gid" -j RETURN
nat -A "$chain" -d 127.0.0.0/8 -j RETURN
if [ -n "$exclude_ports" ]; then
  nat -A "$chain" -p tcp -m multiport --dports "$exclude_ports" -j RETURN
fi
if [ -n "$exclude_cidrs" ]; then
  IFS=, read -ra cidrs <<<"$exclude_cidrs"
  for c in "${cidrs[@]}"; do
    nat -A "$chain" -d "$c" -j RETURN
  done
fi
if [ "$ports" = all ]; then
  nat -A "$chain" -p tcp -j REDIRECT --to-ports "$egress_port"
else
  nat -A "$chain" -p tcp -m multiport --dports "$ports" -j REDIRECT --to-ports "$egress_port"
fi
present -C OUTPUT -p tcp -j "$chain" || nat -A OUTPUT -p tcp -j "$chain"
echo "egress-iptables.sh: TCP to port(s) $ports -> 127.0.0.1:$egress_port, except uid $uid${gid:+, gid $gid}," \
  "loopback${exclude_ports:+, port(s) $exclude_ports}${exclude_cidrs:+, $exclude_cidrs}"
