#!/bin/bash
# shellcheck disable=SC2012  # ls lists names this test chose
# test_two_hosts.sh BINARY [PYTHON]: video-infinity under mpirun across two hosts, for real: two network
# namespaces on this machine (hosts.sh), OpenMPI's rsh launcher starting the second host's
# daemon through rsh_agent.sh, the ranks talking TCP over the namespaces' own network, and a
# node-local disk on each host (one path, another directory per host).
#
# Why: every other MPI test runs all ranks on one host, where the ranks share memory, the
# environment and every file. On a cluster a rank on another host sees none of rank 0's files
# unless they are on a shared disk, and gets only the environment mpirun forwards. This test
# checks, on a tiny random model:
#   (c) 4 ranks on 2 hosts (2 each) give latents bit-identical to 4 ranks on one host, with
#       ranks 2-3 really on host 1 (each rank reports its host name and network namespace just
#       before it execs the binary); `check-env` over the same launch says OK;
#   (d) checkpoints on the node-local disks: after host 1 is lost mid-run, each host's disk holds
#       only its own clips' files, of the newest one or two steps (every host pruned its own);
#       --resume on both hosts continues from there to the same bit-identical latents;
#   (e) without MPI: PyTorch's torchrun on each host (PYTHON's torch.distributed.run, static
#       rendezvous at host 0: its agent serves the store) and an srun-like start (Slurm's
#       variables, the rendezvous at the step's first host) give the same check-env and the same
#       bit-identical latents, the ranks talking through the rendezvous store across hosts.
# Exit 0 pass, 1 fail (FAIL lines say what), 77 skip (namespaces cannot be made: not root, ...).
set -u
if [ $# -lt 1 ] || [ $# -gt 2 ]; then
  echo "usage: $0 BINARY [PYTHON with torch, for torchrun]" >&2
  exit 2
fi
BIN=$(realpath "$1") || exit 2
PYTHON=${2:-}
[ -x "$BIN" ] || { echo "FAIL: binary $1 is not executable" >&2; exit 1; }
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
command -v mpirun >/dev/null || { echo "SKIP: mpirun not found"; exit 77; }

# shellcheck source=SCRIPTDIR/hosts.sh
. "$HERE/hosts.sh"
hosts_up 2 || exit $?
T0=$SECONDS
ROOT=$VI_HOSTS_ROOT
SHARED=$ROOT/shared  # the same directory on every host: the binary's model (like an NFS home)
NODE=$VI_HOSTS_NODE  # the node-local disk: host0/ on host 0, host1/ on host 1
H0=$(host_name 0) H1=$(host_name 1)
LOGS=$ROOT/logs
mkdir -p "$LOGS"

failures=0
pass() { echo "PASS: $*"; }
fail() {
  echo "FAIL: $*"
  failures=$((failures + 1))
}
# The end of a run's log, after a FAIL line.
show_log() { sed 's/^/    | /' "$LOGS/$1.log" | tail -n "${2:-25}"; }
# Stops the test: what follows needs this step.
fatal() {
  fail "$@"
  echo "FAILED: $failures check(s); stopping here"
  exit 1
}

printf '%s slots=2\n%s slots=2\n' "$H0" "$H1" >"$ROOT/hostfile"

# The launch across hosts, run by mpirun on host 0 (hosts.sh's on_host). What each option is for:
#   --hostfile, 2 slots each     ranks 0-1 on host 0, ranks 2-3 on host 1 (mapping by slot)
#   plm_rsh_agent                rsh_agent.sh instead of ssh: enters host 1's namespaces. The
#                                agent string is split at spaces: its first argument is ROOT
#   plm_rsh_no_tree_spawn 1      mpirun starts every daemon itself (no daemon starting others)
#   pml ob1, btl tcp,self,vader  the TCP transport between hosts, shared memory within one; UCX
#                                (pml ucx, built into Debian's OpenMPI) would pick its own
#                                interfaces, bypassing btl_tcp_if_include
#   btl/oob_tcp_if_include       only the namespaces' network, for the ranks and the daemons
#   --bind-to none               2 cores for 4 ranks
#   -x OMP_NUM_THREADS=1 (-x VI_FAULT)   host 1's ranks get the environment only through -x
# shellcheck disable=SC2054  # commas in an MCA value
MPI_HOSTS=(mpirun --allow-run-as-root --hostfile "$ROOT/hostfile" -n 4 --bind-to none
  --mca plm_rsh_agent "$HERE/rsh_agent.sh $ROOT" --mca plm_rsh_no_tree_spawn 1
  --mca pml ob1 --mca btl tcp,self,vader
  --mca btl_tcp_if_include "$VI_HOSTS_NET.0/24" --mca oob_tcp_if_include "$VI_HOSTS_NET.0/24"
  -x OMP_NUM_THREADS=1)
# Each rank prints where it runs, then execs the command (the same process).
# shellcheck disable=SC2016  # expanded by each rank's sh
PROBE=(sh -c 'echo "probe: rank ${OMPI_COMM_WORLD_RANK:-?} on host $(hostname) netns $(ip netns identify) cwd $(pwd)" >&2; exec "$@"' probe)

# The tiny generation: 4 clips, 4 steps; outputs relative to the working directory (the node
# directory on host 0, where rank 0 writes them).
GEN=(--model "$SHARED/model" --prompt 'a red fox' --height 64 --width 64 --steps 4 --frames 16 --clips 4
  --attn-padding 2 --attn-top-k 4 --conv-padding 2 --progress none)

# run NAME TIMEOUT CMD...: CMD on host 0, its output in $LOGS/NAME.log; returns CMD's status.
# In the background: bash runs the INT/TERM trap (hosts_down) only once a foreground command
# has ended, and `wait` returns at once on a signal.
run() {
  local name=$1 limit=$2
  shift 2
  on_host 0 timeout "$limit" "$@" >"$LOGS/$name.log" 2>&1 &
  wait $!
}
# The latents' tensor bytes after the safetensors header (8-byte length + JSON), for a
# comparison that ignores the header should it ever hold more than shapes.
tensor_bytes() { python3 -c 'import struct,sys; d=open(sys.argv[1],"rb").read(); n=struct.unpack("<Q",d[:8])[0]; sys.stdout.buffer.write(d[8+n:])' "$1"; }
same_latents() {
  cmp -s "$1" "$2" && return 0
  command -v python3 >/dev/null && cmp -s <(tensor_bytes "$1") <(tensor_bytes "$2")
}

# --- (a) the model, on the shared disk ------------------------------------------------------
"$BIN" make-test-model --preset tiny --seed 6 --out "$SHARED/model" >"$LOGS/model.log" 2>&1 \
  || { show_log model; fatal "make-test-model"; }

# --- (b) one host, 4 ranks ------------------------------------------------------------------
run single 60 mpirun --allow-run-as-root --oversubscribe --bind-to none -n 4 -x OMP_NUM_THREADS=1 \
  "$BIN" "${GEN[@]}" --output "$SHARED/single.mp4" --save-latents "$SHARED/single.safetensors"
status=$?
if [ $status -eq 0 ]; then
  pass "one host, 4 ranks: generation"
else
  show_log single
  fatal "one host, 4 ranks: generation exited $status"
fi

# --- (c) two hosts, 2 ranks each ------------------------------------------------------------
if run check-env 60 "${MPI_HOSTS[@]}" "${PROBE[@]}" "$BIN" check-env --megabytes 1 --rounds 2 \
  && grep -q "communicator: mpi, 4 ranks" "$LOGS/check-env.log" \
  && grep -q "rank 1: local rank 1, host $H0" "$LOGS/check-env.log" \
  && grep -q "rank 2: local rank 0, host $H1" "$LOGS/check-env.log" \
  && grep -q "values checked on every rank: OK" "$LOGS/check-env.log"; then
  pass "two hosts: check-env lists ranks 0-1 on $H0 and 2-3 on $H1 and says OK"
else
  show_log check-env
  fatal "two hosts: check-env did not list 4 ranks on both hosts and OK (see above)"
fi

# expect_placement NAME: the probe lines say ranks 0-1 ran on host 0 and ranks 2-3 on host 1,
# each in that host's network namespace.
expect_placement() {
  local r h ok=1
  for r in 0 1 2 3; do
    if [ "$r" -lt 2 ]; then h=$H0; else h=$H1; fi
    grep -q "^probe: rank $r on host $h netns $h cwd $NODE\$" "$LOGS/$1.log" || ok=0
  done
  if [ $ok = 1 ]; then
    pass "$1: ranks 0-1 ran on $H0, ranks 2-3 on $H1"
  else
    fail "$1: the ranks did not run where expected (ranks 0-1 on $H0, 2-3 on $H1); probe lines:"
    grep "^probe:" "$LOGS/$1.log" | sed 's/^/    | /'
  fi
}
expect_placement check-env

run two 60 "${MPI_HOSTS[@]}" "${PROBE[@]}" "$BIN" "${GEN[@]}" --output two.mp4 --save-latents two.safetensors
status=$?
if [ $status -eq 0 ]; then
  pass "two hosts: generation"
else
  show_log two
  fatal "two hosts: generation exited $status"
fi
expect_placement two
if [ -f "$ROOT/host0/two.safetensors" ] && [ -f "$ROOT/host0/two.mp4" ] && [ -z "$(ls -A "$ROOT/host1")" ]; then
  pass "two hosts: the outputs are on host 0's disk only (rank 0), nothing written on host 1's"
else
  fail "two hosts: expected two.mp4 and two.safetensors on host 0's disk only; host 0: $(ls "$ROOT/host0" | tr '\n' ' '); host 1: $(ls "$ROOT/host1" | tr '\n' ' ')"
fi
# The sidecar records where each rank ran (its peak memory rows carry the host).
hosts_json=$(python3 -c 'import json,sys; print(" ".join(r["host"] for r in json.load(open(sys.argv[1]))["peak_memory"]))' \
  "$ROOT/host0/two.mp4.json" 2>&1)
if [ "$hosts_json" = "$H0 $H0 $H1 $H1" ]; then
  pass "two hosts: the sidecar's peak_memory names each rank's host"
else
  fail "two hosts: the sidecar's peak_memory hosts are '$hosts_json', expected '$H0 $H0 $H1 $H1'"
fi
if same_latents "$SHARED/single.safetensors" "$ROOT/host0/two.safetensors"; then
  pass "two hosts: latents bit-identical to one host's"
else
  fail "two hosts: latents differ from one host's ($(cmp "$SHARED/single.safetensors" "$ROOT/host0/two.safetensors" 2>&1))"
fi

# --- (d) node-local checkpoints, host 1 lost mid-run, --resume ------------------------------
CKPT=(--checkpoint-dir "$NODE/ckpt" --checkpoint-every 1 --output ckpt.mp4 --save-latents ckpt.safetensors)

# How host 1 is lost: rank 2 stops itself (SIGSTOP) right after step 2 and its checkpoint
# (VI_FAULT, forwarded by -x: host 1 sees no other environment); the other ranks block in step
# 3's exchange with it. Then everything in host 1's network namespace is SIGKILLed from outside:
# ranks 2 and 3 and host 1's orted, as when a node dies. mpirun notices its lost daemon and ends
# the job, killing ranks 0-1. (With mode=kill instead, OpenMPI's orted sees rank 2 die and
# mpirun aborts the job, killing rank 3 itself: host 1's daemon would survive, a softer loss.)
on_host 0 timeout 90 "${MPI_HOSTS[@]}" -x VI_FAULT="rank=2,step=2,mode=stop" "${PROBE[@]}" "$BIN" "${GEN[@]}" "${CKPT[@]}" \
  >"$LOGS/interrupted.log" 2>&1 &
launch=$!
stopped=""
tries=0
while [ -z "$stopped" ] && [ $tries -lt 600 ]; do  # 60 s
  tries=$((tries + 1))
  for pid in $(ip netns pids "$H1" 2>/dev/null); do
    [ "$(awk '/^State:/ {print $2}' "/proc/$pid/status" 2>/dev/null)" = T ] && stopped=$pid
  done
  kill -0 "$launch" 2>/dev/null || break
  [ -n "$stopped" ] || sleep 0.1
done
if [ -z "$stopped" ]; then
  wait "$launch"
  show_log interrupted
  fatal "interrupted run: rank 2 never stopped itself on $H1 (VI_FAULT not forwarded?)"
fi
host1_pids=$(ip netns pids "$H1")
# shellcheck disable=SC2086
kill -KILL $host1_pids
wait "$launch"
status=$?
if [ $status -ne 0 ] && [ $status -ne 124 ]; then
  pass "interrupted run: host 1 lost after step 2 (SIGKILL of PIDs $(tr '\n' ' ' <<<"$host1_pids")), mpirun exited $status"
else
  show_log interrupted
  fail "interrupted run: mpirun exited $status after host 1 was lost (expected an error, not success or a hang)"
fi
[ -z "$(ip netns pids "$H1")" ] || fail "interrupted run: processes left in $H1: $(ip netns pids "$H1" | tr '\n' ' ')"

# expect_checkpoints STAGE STEPS: each host's disk holds only its own clips' files, in exactly the
# step directories STEPS (an alternative "a|b" allows either).
expect_checkpoints() {
  local stage=$1 want=$2 h clips steps files bad=0
  for h in 0 1; do
    if [ $h = 0 ]; then clips="clip-00000.safetensors clip-00001.safetensors"; else clips="clip-00002.safetensors clip-00003.safetensors"; fi
    steps=$(cd "$ROOT/host$h/ckpt" 2>/dev/null && ls -d step-* 2>/dev/null | tr '\n' ' ' | sed 's/ $//')
    if ! [[ "$steps" =~ ^($want)$ ]]; then
      fail "$stage: host $h's checkpoint steps are '$steps', expected $want"
      bad=1
    fi
    for s in $steps; do
      files=$(ls -A "$ROOT/host$h/ckpt/$s" | tr '\n' ' ' | sed 's/ $//')
      if [ "$files" != "$clips" ]; then
        fail "$stage: host $h's $s holds '$files', expected exactly its own clips: '$clips'"
        bad=1
      fi
    done
  done
  [ $bad = 1 ] || pass "$stage: each host's disk holds only its own clips' checkpoints ($(cd "$ROOT" && ls -d host*/ckpt/step-* | tr '\n' ' '))"
}
expect_checkpoints "interrupted run" "step-000002|step-000001 step-000002"
if [ -n "$(ls -A "$NODE")" ]; then
  fail "the common path's own directory (outside every host) is not empty: $(ls -A "$NODE")"
fi

run resumed 60 "${MPI_HOSTS[@]}" "${PROBE[@]}" "$BIN" "${GEN[@]}" "${CKPT[@]}" --resume
status=$?
if [ $status -eq 0 ]; then
  pass "resumed run on both hosts"
else
  show_log resumed
  fatal "resumed run on both hosts exited $status"
fi
expect_placement resumed
if grep -q "resumed from $NODE/ckpt/step-000002 (2 of 4 steps done)" "$LOGS/resumed.log"; then
  pass "resumed run: the log says it resumed from step 2"
else
  show_log resumed
  fail "resumed run: no 'resumed from $NODE/ckpt/step-000002 (2 of 4 steps done)' in its log"
fi
if same_latents "$SHARED/single.safetensors" "$ROOT/host0/ckpt.safetensors"; then
  pass "resumed run: latents bit-identical to the uninterrupted run's"
else
  fail "resumed run: latents differ from the uninterrupted run's ($(cmp "$SHARED/single.safetensors" "$ROOT/host0/ckpt.safetensors" 2>&1))"
fi
# At the end only the last step's files are left, on both hosts (each pruned its own clips).
expect_checkpoints "resumed run" "step-000004"

# --- (e) without MPI: torchrun and srun across the two hosts ---------------------------------
# on_both NAME CMD0 -- CMD1: CMD0 on host 0 and CMD1 on host 1 at once (logs NAME.0.log and
# NAME.1.log); returns the first non-zero status.
on_both() {
  local name=$1 cmd0=() cmd1=() p0 p1 s0 s1
  shift
  while [ "$1" != "--" ]; do cmd0+=("$1"); shift; done
  shift
  cmd1=("$@")
  on_host 0 timeout 90 "${cmd0[@]}" >"$LOGS/$name.0.log" 2>&1 &
  p0=$!
  on_host 1 timeout 90 "${cmd1[@]}" >"$LOGS/$name.1.log" 2>&1 &
  p1=$!
  wait $p0; s0=$?
  wait $p1; s1=$?
  [ $s0 -ne 0 ] && return $s0
  return $s1
}
# expect_check_env NAME LAUNCHER: rank 0's check-env log names the launcher, 4 ranks on both
# hosts, the store communicator, and OK.
expect_check_env() {
  local log=$LOGS/$1.0.log
  if grep -q "launched by $2: 4 ranks" "$log" && grep -q "rank 1: local rank 1, host $H0" "$log" &&
    grep -q "rank 2: local rank 0, host $H1" "$log" && grep -q "communicator: store, 4 ranks" "$log" &&
    grep -q "values checked on every rank: OK" "$log"; then
    pass "$1: check-env lists ranks 0-1 on $H0 and 2-3 on $H1, store communicator OK"
  else
    sed 's/^/    | /' "$log" | tail -20
    fail "$1: check-env did not list 4 ranks on both hosts with the store communicator and OK"
  fi
}
expect_same_latents() {
  if same_latents "$SHARED/single.safetensors" "$ROOT/host0/$1.safetensors"; then
    pass "$1: latents bit-identical to one host's (mpirun)"
  else
    sed 's/^/    | /' "$LOGS/$1.0.log" | tail -20
    fail "$1: latents differ from one host's"
  fi
}

if [ -n "$PYTHON" ] && "$PYTHON" -c 'import torch.distributed.run' 2>/dev/null; then
  # torchrun's static rendezvous: node 0's agent serves the store at --master-addr; every worker
  # gets RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT, TORCHELASTIC_USE_AGENT_STORE.
  TR=(env OMP_NUM_THREADS=1 "$PYTHON" -m torch.distributed.run --nnodes 2 --nproc-per-node 2 --master-addr "$H0"
    --master-port 29500 --no-python)
  on_both torchrun-check-env "${TR[@]}" --node-rank 0 "$BIN" check-env --megabytes 1 --rounds 2 -- \
    "${TR[@]}" --node-rank 1 "$BIN" check-env --megabytes 1 --rounds 2 || fail "torchrun: check-env exited non-zero"
  expect_check_env torchrun-check-env "a torchrun-style environment"
  on_both torchrun "${TR[@]}" --node-rank 0 "$BIN" "${GEN[@]}" --output torchrun.mp4 --save-latents torchrun.safetensors -- \
    "${TR[@]}" --node-rank 1 "$BIN" "${GEN[@]}" --output torchrun.mp4 --save-latents torchrun.safetensors \
    || fail "torchrun: the generation exited non-zero"
  expect_same_latents torchrun
else
  echo "SKIP: torchrun part (no PYTHON with torch given)"
fi

# srun without an MPI plugin: each task gets SLURM_PROCID, SLURM_LOCALID, SLURM_STEP_NUM_TASKS and
# the step's host list; the rendezvous is the list's first host, port 20000 + job id mod 20000.
srun_like() {  # srun_like NAME ARGS...: 2 tasks on each host
  local name=$1 h l pids=() status=0
  shift
  for h in 0 1; do
    for l in 0 1; do
      on_host "$h" timeout 90 env OMP_NUM_THREADS=1 SLURM_STEP_NUM_TASKS=4 SLURM_PROCID=$((2 * h + l)) \
        SLURM_LOCALID=$l SLURM_STEP_NODELIST="$H0,$H1" SLURM_JOB_ID=$((VI_HOSTS_TAG % 20000)) SLURM_STEP_ID=0 \
        "$BIN" "$@" >"$LOGS/$name.$((2 * h + l)).log" 2>&1 &
      pids+=($!)
    done
  done
  for p in "${pids[@]}"; do wait "$p" || status=$?; done
  return $status
}
srun_like srun-check-env check-env --megabytes 1 --rounds 2 || fail "srun: check-env exited non-zero"
expect_check_env srun-check-env "Slurm (srun)"
srun_like srun "${GEN[@]}" --output srun.mp4 --save-latents srun.safetensors || fail "srun: the generation exited non-zero"
expect_same_latents srun

echo "($((SECONDS - T0)) s)"
if [ $failures -ne 0 ]; then
  echo "FAILED: $failures check(s)"
  exit 1
fi
echo "PASSED: all checks"
exit 0
