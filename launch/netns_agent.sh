#!/usr/bin/env bash
# An ssh stand-in for Open MPI that "logs into" a network namespace of this machine, so that network
# namespaces joined by veth pairs can play several hosts on one box (tests/multihost_netns.sh):
#   netns_agent.sh HOST COMMAND...
# HOST is a namespace's name (`ip netns list`) or an IPv4 address one of them holds. COMMAND (its
# words joined by spaces and run by /bin/sh -c, as ssh does) runs inside that namespace, in a UTS
# namespace of its own whose hostname is the namespace's name, with only PATH, HOME, USER, LOGNAME
# and SHELL of the caller's environment (ssh gives a fresh one too). The hostname matters: Open MPI
# names per-host files after it (its session directory in /tmp, shared-memory segments in /dev/shm),
# and hosts sharing one would overwrite each other's files. Needs root (ip netns exec, unshare).
#
# Use it as mpirun's launcher, with a hostfile of the namespaces' addresses and Open MPI's TCP
# traffic kept on their subnet:
#   mpirun --mca plm_rsh_agent launch/netns_agent.sh --hostfile hosts \
#     --mca oob_tcp_if_include 10.77.0.0/24 --mca btl tcp,self --mca btl_tcp_if_include 10.77.0.0/24 ...
# with hosts holding lines such as "10.77.0.1 slots=2". Run mpirun itself inside a namespace on
# that subnet (`ip netns exec NAME mpirun ...`): a "login node" holding the bridge, as
# tests/multihost_netns.sh does, or one of the hosts. A layout of two hosts on a bridge:
#   ip netns add hub; ip -n hub link set lo up
#   ip -n hub link add br0 type bridge; ip -n hub addr add 10.77.0.254/24 dev br0; ip -n hub link set br0 up
#   for i in 1 2; do
#     ip netns add host$i; ip -n host$i link set lo up
#     ip link add eth0 netns host$i type veth peer name host$i netns hub
#     ip -n hub link set host$i master br0 up
#     ip -n host$i addr add 10.77.0.$i/24 dev eth0; ip -n host$i link set eth0 up
#   done
# (`ip netns del` of every namespace removes it all again.)
#
# Environment: KL_NETNS_AGENT_SCOPE=PREFIX searches only namespaces whose names start with PREFIX
# for HOST's address; KL_NETNS_AGENT_LOG=FILE appends one line per launch (host, namespace, command).
set -uo pipefail
while [ $# -gt 0 ] && [ "${1#-}" != "$1" ]; do shift; done  # ssh-style flags (-x ...): nothing to do
[ $# -ge 2 ] || { echo "netns_agent.sh: usage: netns_agent.sh HOST COMMAND..." >&2; exit 255; }
host=$1
shift

namespace=""
names=$(ip netns list 2>/dev/null | awk '{print $1}')
for ns in $names; do
  [ "$ns" = "$host" ] && { namespace=$ns; break; }
done
if [ -z "$namespace" ]; then
  for ns in $names; do
    case $ns in "${KL_NETNS_AGENT_SCOPE:-}"*) ;; *) continue ;; esac
    if ip -n "$ns" -o -4 addr show 2>/dev/null | awk '{sub(/\/.*/, "", $4); print $4}' | grep -qxF "$host"; then
      namespace=$ns
      break
    fi
  done
fi
[ -n "$namespace" ] || { echo "netns_agent.sh: no network namespace is named $host or holds that address" >&2; exit 255; }
[ -n "${KL_NETNS_AGENT_LOG:-}" ] && echo "$host -> $namespace: $*" >>"$KL_NETNS_AGENT_LOG"

exec env -i PATH="$PATH" HOME="${HOME:-/}" USER="${USER:-$(id -un)}" LOGNAME="${LOGNAME:-$(id -un)}" \
  SHELL=/bin/sh ip netns exec "$namespace" unshare --uts /bin/sh -c 'hostname "$0" && exec /bin/sh -c "$1"' \
  "$namespace" "$*"
