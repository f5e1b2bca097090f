#!/usr/bin/env bash
# Several hosts on one machine: two network namespaces ("hosts", 2 ranks each) joined by veth pairs
# to a bridge in a third (the "login node" where mpirun runs), on a private /24 that exists only
# inside them. Open MPI starts its daemons there through launch/netns_agent.sh instead of ssh and
# talks TCP only (btl tcp,self, BTL and OOB restricted to the subnet). Training at pp 2 x dp 2 over
# them must reproduce a plain single-host mpirun of the same config: per-step losses within 1e-5
# relative, bit-identical final parameters; Open MPI's own log must show the ranks of each host
# sending to the other host's ranks over TCP, from hosts with their own hostnames. The namespaces
# (and with them the veths) go on every exit; exit 77 where namespaces cannot be made.
#   tests/multihost_netns.sh BIN [MPIRUN [MPIRUN_FLAGS...]]   (default: mpirun --oversubscribe --allow-run-as-root)
set -u
bin=$1
shift
[ $# -gt 0 ] || set -- mpirun --oversubscribe --allow-run-as-root
here=$(cd "$(dirname "$0")" && pwd)
agent=$here/../../launch/netns_agent.sh

skip() { echo "SKIP: $*"; exit 77; }
command -v ip >/dev/null || skip "no ip command (Debian's iproute2)"
command -v unshare >/dev/null || skip "no unshare command (util-linux)"

# Namespaces of an earlier run killed before its trap ran (kill -9, a CTest timeout): its pid is gone.
for old in $(ip netns list 2>/dev/null | awk '{print $1}' | grep -E '^klmh[0-9]+-'); do
  pid=${old#klmh}
  pid=${pid%%-*}
  kill -0 "$pid" 2>/dev/null && continue
  stale=$(ip netns pids "$old" 2>/dev/null)
  [ -n "$stale" ] && kill -9 $stale 2>/dev/null
  ip netns del "$old" 2>/dev/null
  rm -rf /tmp/ompi."$old".*  # Open MPI's session directory on that "host" (named after its hostname)
done

source "$here/../lib/equivalence.sh" "$bin" 8 "$@"

prefix=klmh$$-
hosts=2
namespaces=()
cleanup() {
  local ns pids
  for ns in "${namespaces[@]}"; do
    pids=$(ip netns pids "$ns" 2>/dev/null)
    [ -n "$pids" ] && kill -9 $pids 2>/dev/null
    ip netns del "$ns" 2>/dev/null
    rm -rf /tmp/ompi."$ns".*
  done
  [ -n "${KL_KEEP:-}" ] || rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 1' INT TERM HUP

# The subnet lives only inside these namespaces; the pid varies it so that concurrent runs differ.
net=10.$((100 + $$ % 100)).$(($$ / 100 % 256))
hub=${prefix}hub
namespaces+=("$hub")
message=$(ip netns add "$hub" 2>&1) ||
  skip "cannot create a network namespace (needs root: CAP_SYS_ADMIN and CAP_NET_ADMIN): $message"
ip -n "$hub" link set lo up &&
  ip -n "$hub" link add br0 type bridge &&
  ip -n "$hub" addr add "$net.254/24" dev br0 &&
  ip -n "$hub" link set br0 up || skip "cannot make a bridge in a network namespace"
: >"$work/hosts"
for i in $(seq 1 $hosts); do
  ns=${prefix}h$i
  namespaces+=("$ns")
  ip netns add "$ns" &&
    ip -n "$ns" link set lo up &&
    ip link add eth0 netns "$ns" type veth peer name h$i netns "$hub" &&
    ip -n "$hub" link set h$i master br0 up &&
    ip -n "$ns" addr add "$net.$i/24" dev eth0 &&
    ip -n "$ns" link set eth0 up || skip "cannot join network namespaces with veth pairs"
  echo "$net.$i slots=2" >>"$work/hosts"
done
echo "hosts: ${namespaces[*]} on $net.0/24 (bridge $net.254 in $hub, where mpirun runs)"

# The reference: a plain mpirun on this host, shared memory allowed.
status=0
run single 2 2 --model.dropout=0.1 || status=1

# The same job over the namespaces: mpirun in the hub, daemons started through the agent. A host
# reached by the agent (as by ssh) starts from a fresh environment: what changes the arithmetic
# travels with -x, as on a real cluster (OPENBLAS_CORETYPE picks OpenBLAS's kernels, so the rounding).
forward=()
for v in $(compgen -e | grep -E '^(OPENBLAS|OMP|GOMP)_'); do forward+=(-x "$v"); done
single_host=("${mpirun[@]}")
export KL_NETNS_AGENT_SCOPE=$prefix KL_NETNS_AGENT_LOG=$work/agent.log
mpirun=(ip netns exec "$hub" "${single_host[@]}" --hostfile "$work/hosts" --mca plm_rsh_agent "$agent"
  --mca oob_tcp_if_include "$net.0/24" --mca btl tcp,self --mca btl_tcp_if_include "$net.0/24"
  --mca btl_base_verbose 100 "${forward[@]}")
start=$SECONDS
run netns 2 2 --model.dropout=0.1 || status=1
echo "pp 2 x dp 2 over the namespaces: $((SECONDS - start)) s"
[ "$status" -eq 0 ] || exit 1
# Negative control: with shared memory as the only transport between ranks, the two hosts cannot
# reach each other (Open MPI says so, and the job is ended).
start=$SECONDS
mpirun=("${mpirun[@]/tcp,self/vader,self}")
timeout 60 "${mpirun[@]}" -np 4 "$bin" train --config "$work/base.ini" --parallel.dp=2 --parallel.pp=2 \
  --run.dir="$work/shm" --train.steps=1 >"$work/shm.log" 2>&1 &
shm_pid=$!
for try in $(seq 600); do
  grep -q "unable to reach each other" "$work/shm.log" && break
  kill -0 $shm_pid 2>/dev/null || break
  sleep 0.1
done
kill $shm_pid 2>/dev/null
wait $shm_pid
if grep -q "unable to reach each other" "$work/shm.log"; then
  echo "btl vader,self across the hosts: unable to reach each other, as expected ($((SECONDS - start)) s):"
  grep -E "^  Process [12] .* is on host" "$work/shm.log"
else
  echo "FAIL: btl vader,self across the namespaces did not report unreachable peers"; cat "$work/shm.log"; status=1
fi
mpirun=("${single_host[@]}")

# Where the ranks ran and how they talked: each bml line is one rank choosing a BTL for one peer.
sed -E 's/^([^ ]+ -> [^:]+): .*orted .*/agent: \1: orted .../' "$work/agent.log"
for i in $(seq 1 $hosts); do
  for j in $(seq 1 $hosts); do
    [ "$i" = "$j" ] && continue
    pairs=$(grep -c "^\[${prefix}h$i:[0-9]*\] mca: bml: Using tcp btl for send to .* on node $net.$j\$" "$work/netns.log")
    echo "ranks on ${prefix}h$i opened TCP to ranks on $net.$j for $pairs of the 4 rank pairs"
    [ "$pairs" -ge 1 ] || { echo "FAIL: no rank on h$i sent to h$j over TCP"; status=1; }
    grep "^\[${prefix}h$i:[0-9]*\] btl:tcp: now connected to $net.$j," "$work/netns.log"
  done
  bytes=$(ip netns exec "${prefix}h$i" cat /sys/class/net/eth0/statistics/tx_bytes)
  echo "${prefix}h$i sent $bytes bytes through its veth"
done
if grep -E "Using (vader|sm|smcuda) btl" "$work/netns.log" | head -3 | grep .; then
  echo "FAIL: a shared-memory BTL was used across the namespaces"
  status=1
fi

/usr/bin/python3 "$here/../lib/compare_runs.py" "$work" 20 single=netns || status=1
if cmp -s "$work/single/final_params.f32" "$work/netns/final_params.f32"; then
  echo "final parameters: bit-identical ($(stat -c %s "$work/netns/final_params.f32") bytes)"
else
  echo "FAIL: final parameters differ from the single-host run's"
  status=1
fi
exit $status
