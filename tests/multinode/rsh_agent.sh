#!/bin/bash
# rsh_agent.sh: what OpenMPI's rsh launcher runs instead of ssh to start its daemon (orted) on
# the pretend hosts of hosts.sh:
#   mpirun --mca plm_rsh_agent "/path/rsh_agent.sh $VI_HOSTS_ROOT" ...
# OpenMPI splits the agent string at spaces and appends what it would give ssh: the target host
# (as written in the hostfile), then the remote command, a shell command line
# ("PATH=...; export PATH; ... orted -mca ess env ..."), as one or more words. Ssh options could
# come before the host (plm_rsh_args); they are skipped.
#
# Like ssh, the command runs in a fresh login-like environment (env -i: PATH and HOME only), so
# that the ranks on other hosts get only what mpirun forwards (-x VAR, the OMPI_MCA_* parameters):
# a variable that only reaches them through this agent would make the test pass where a real
# cluster fails. Like sshd, the command line is run by a shell (sh -c "words joined by spaces").
# Each call is recorded in $VI_HOSTS_ROOT/rsh_agent.log.
set -u
root=${1:?usage: rsh_agent.sh VI_HOSTS_ROOT [options] HOST COMMAND...}
shift
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=SCRIPTDIR/hosts.sh
. "$here/hosts.sh"
hosts_load "$root"

while [ $# -gt 0 ] && [ "${1#-}" != "$1" ]; do shift; done  # ssh-style options
target=${1:?rsh_agent.sh: no host given}
shift
[ $# -gt 0 ] || { echo "rsh_agent.sh: no command for host $target" >&2; exit 255; }

index=""
for ((i = 0; i < VI_HOSTS_N; i++)); do
  if [ "$target" = "$(host_name "$i")" ] || [ "$target" = "$(host_ip "$i")" ]; then index=$i; fi
done
if [ -z "$index" ]; then
  echo "rsh_agent.sh: unknown host '$target' (hosts: $(for ((i = 0; i < VI_HOSTS_N; i++)); do printf '%s ' "$(host_name "$i")"; done))" >&2
  exit 255  # ssh's code for a connection failure
fi
printf '%s host %s (%s): %s\n' "$(date +%T.%N)" "$index" "$target" "$*" >>"$root/rsh_agent.log"

_host_argv "$index"
exec "${HOST_ARGV[@]}" env -i PATH="/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin" HOME="${HOME:-/root}" \
  sh -c "$*"
