# shellcheck shell=bash
# hosts.sh: N pretend "hosts" on this one machine, for testing mpirun across hosts (sourced by
# bash; tests/multinode/test_two_hosts.sh uses it, rsh_agent.sh reuses its on_host).
#
# Why: a job on a real cluster differs from `mpirun -n 4` on one box in ways a single-host test
# cannot see: ranks on other hosts talk over TCP, not shared memory; the environment reaches them
# only through mpirun's -x; and a path such as a --checkpoint-dir is often a node-local disk, so
# the same path names a different directory on each host. Each pretend host here is
#   - a network namespace (vi-hI-<pid>) with its own address 10.231.X.(I+1)/24 on eth0, the
#     hosts joined by a bridge in one more namespace (vi-sw-<pid>); X comes from this shell's
#     PID. Nothing is configured in the root namespace's network;
#   - a UTS namespace with hostname vi-hI-<pid>, so that MPI counts separate nodes (it decides
#     shared memory and local ranks by host name), and an /etc/hosts (bind-mounted in the host's
#     mount namespace) that names every host's address;
#   - its own directory $VI_HOSTS_ROOT/hostI, bind-mounted at the one common path
#     $VI_HOSTS_NODE: the "node-local disk". The working directory of on_host is that path.
# Mounts live only in the private mount namespaces of on_host's processes, so they vanish with
# those processes; the root namespace gets none.
#
#   hosts_up N       make the hosts (installs hosts_down as the EXIT/INT/TERM trap); returns 77
#                    with a "SKIP: ..." line when namespaces cannot be made (not root, no `ip`,
#                    the kernel refuses)
#   on_host I CMD..  run CMD on host I (its namespaces, its node directory as cwd)
#   host_name I, host_ip I, host_dir I    the name, address and node directory of host I
#   hosts_down       kill what still runs in the hosts' namespaces, delete them, remove the temp
#                    directory (idempotent)
#   hosts_reap_stale delete what an earlier run left when it was SIGKILLed before its trap ran
#                    (namespaces and temp directories named after a PID that no longer exists);
#                    hosts_up calls it
#   hosts_load ROOT  (for rsh_agent.sh) read the state hosts_up wrote to ROOT/hosts.state
#
# Variables after hosts_up: VI_HOSTS_N, VI_HOSTS_TAG (the PID), VI_HOSTS_NET (10.231.X),
# VI_HOSTS_ROOT (temp dir; $VI_HOSTS_ROOT/shared is the same on every host), VI_HOSTS_NODE.

host_name() { echo "vi-h$1-$VI_HOSTS_TAG"; }
host_ip() { echo "$VI_HOSTS_NET.$(($1 + 1))"; }
host_dir() { echo "$VI_HOSTS_ROOT/host$1"; }
_hosts_switch() { echo "vi-sw-$VI_HOSTS_TAG"; }

# The command line that runs a command on host I (in the array HOST_ARGV; rsh_agent.sh execs it).
# `ip netns exec` enters the network namespace; unshare makes the UTS and mount namespaces, with
# private propagation so that the bind mounts never reach the root namespace.
_host_argv() {
  local i=$1 name
  name=$(host_name "$i")
  # shellcheck disable=SC2016  # expanded by the inner sh
  HOST_ARGV=(ip netns exec "$name" unshare --mount --uts --propagation private -- sh -c '
      hostname "$1" && mount --bind "$2" "$3" && mount --bind "$4" /etc/hosts && cd "$3" || exit 125
      shift 4
      exec "$@"' on_host "$name" "$(host_dir "$i")" "$VI_HOSTS_NODE" "$VI_HOSTS_ROOT/etc-hosts")
}

on_host() {
  local i=$1
  shift
  _host_argv "$i"
  "${HOST_ARGV[@]}" "$@"
}

hosts_load() {
  # shellcheck disable=SC1091
  . "$1/hosts.state"
}

_hosts_skip() {
  echo "SKIP: $*" >&2
  hosts_down
  return 77
}

hosts_up() {
  local n=$1 i err
  VI_HOSTS_N=$n
  VI_HOSTS_TAG=$$
  VI_HOSTS_NET="10.231.$((VI_HOSTS_TAG % 254 + 1))"
  VI_HOSTS_ROOT=""
  trap 'hosts_down' EXIT
  trap 'hosts_down; trap - INT; kill -INT $$' INT
  trap 'hosts_down; trap - TERM; kill -TERM $$' TERM

  [ "$(id -u)" = 0 ] || { _hosts_skip "needs root to create network namespaces (running as uid $(id -u))"; return; }
  for c in ip unshare mount hostname; do
    command -v "$c" >/dev/null || { _hosts_skip "needs '$c' (Debian: iproute2, util-linux, mount, hostname)"; return; }
  done
  hosts_reap_stale
  VI_HOSTS_ROOT=$(mktemp -d "${TMPDIR:-/tmp}/vi-mn-$VI_HOSTS_TAG.XXXXXX") || { _hosts_skip "cannot make a temp directory"; return; }
  VI_HOSTS_NODE=$VI_HOSTS_ROOT/node
  mkdir -p "$VI_HOSTS_NODE" "$VI_HOSTS_ROOT/shared"

  err=$(ip netns add "$(_hosts_switch)" 2>&1) || { _hosts_skip "cannot create a network namespace: ip netns add: $err"; return; }
  ip -n "$(_hosts_switch)" link add br0 type bridge 2>/dev/null \
    || { _hosts_skip "cannot create a bridge in a network namespace (no bridge support in the kernel?)"; return; }
  ip -n "$(_hosts_switch)" link set br0 up
  : >"$VI_HOSTS_ROOT/etc-hosts"
  echo "127.0.0.1 localhost" >>"$VI_HOSTS_ROOT/etc-hosts"
  for ((i = 0; i < n; i++)); do
    err=$(ip netns add "$(host_name "$i")" 2>&1) || { _hosts_skip "cannot create a network namespace: ip netns add: $err"; return; }
    mkdir -p "$(host_dir "$i")"
    # The veth pair is made inside the switch namespace, its host end moved straight into host I.
    err=$( { ip -n "$(_hosts_switch)" link add "p$i" type veth peer name eth0 netns "$(host_name "$i")" &&
             ip -n "$(_hosts_switch)" link set "p$i" master br0 up &&
             ip -n "$(host_name "$i")" addr add "$(host_ip "$i")/24" dev eth0 &&
             ip -n "$(host_name "$i")" link set eth0 up &&
             ip -n "$(host_name "$i")" link set lo up; } 2>&1) \
      || { _hosts_skip "cannot wire host $i: $err"; return; }
    echo "$(host_ip "$i") $(host_name "$i")" >>"$VI_HOSTS_ROOT/etc-hosts"
  done
  {
    echo "VI_HOSTS_N=$VI_HOSTS_N"
    echo "VI_HOSTS_TAG=$VI_HOSTS_TAG"
    echo "VI_HOSTS_NET=$VI_HOSTS_NET"
    echo "VI_HOSTS_ROOT=$VI_HOSTS_ROOT"
    echo "VI_HOSTS_NODE=$VI_HOSTS_NODE"
  } >"$VI_HOSTS_ROOT/hosts.state"
  export VI_HOSTS_N VI_HOSTS_TAG VI_HOSTS_NET VI_HOSTS_ROOT VI_HOSTS_NODE
}

hosts_reap_stale() {
  local ns pid dir
  for ns in $(ip netns list 2>/dev/null | awk '{print $1}' | grep -E '^vi-(h[0-9]+|sw)-[0-9]+$'); do
    pid=${ns##*-}
    kill -0 "$pid" 2>/dev/null && continue  # a run in progress
    # shellcheck disable=SC2046
    kill -KILL $(ip netns pids "$ns" 2>/dev/null) 2>/dev/null
    ip netns del "$ns" 2>/dev/null && echo "hosts.sh: deleted namespace $ns left by the ended process $pid" >&2
  done
  for dir in "${TMPDIR:-/tmp}"/vi-mn-*.??????; do
    [ -d "$dir" ] || continue
    pid=${dir##*/vi-mn-}
    pid=${pid%%.*}
    case $pid in '' | *[!0-9]*) continue ;; esac
    kill -0 "$pid" 2>/dev/null || rm -rf "$dir"
  done
}

hosts_down() {
  [ -n "${VI_HOSTS_TAG:-}" ] || return 0
  local i ns pids
  for ((i = 0; i < ${VI_HOSTS_N:-0}; i++)); do
    ns=$(host_name "$i")
    [ -e "/run/netns/$ns" ] || continue
    # Processes still running there (a hung rank, an orted) are ours: end them by PID.
    pids=$(ip netns pids "$ns" 2>/dev/null)
    # shellcheck disable=SC2086
    [ -z "$pids" ] || kill -KILL $pids 2>/dev/null
    ip netns del "$ns" 2>/dev/null
  done
  [ -e "/run/netns/$(_hosts_switch)" ] && ip netns del "$(_hosts_switch)" 2>/dev/null
  if [ -n "${VI_HOSTS_ROOT:-}" ] && [ -d "$VI_HOSTS_ROOT" ] && [ -z "${VI_HOSTS_KEEP:-}" ]; then
    rm -rf "$VI_HOSTS_ROOT"
  fi
  VI_HOSTS_TAG=""
}
