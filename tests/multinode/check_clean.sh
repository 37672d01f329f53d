#!/bin/bash
# check_clean.sh: after the two-host test (ctest runs it next, whatever that test's result),
# nothing of it is left: no network namespace named by hosts.sh (vi-hI-PID, vi-sw-PID) of a
# process that has ended, no mount under its temp directories, no temp directory. A run still in
# progress (its PID alive, e.g. a concurrent ctest) is not counted.
# Exit 0 clean, 1 with a line per leftover.
set -u
left=0
for ns in $(ip netns list 2>/dev/null | awk '{print $1}' | grep -E '^vi-(h[0-9]+|sw)-[0-9]+$'); do
  pid=${ns##*-}
  kill -0 "$pid" 2>/dev/null && continue
  echo "LEFT: network namespace $ns (its test process $pid has ended)"
  left=1
done
for dir in "${TMPDIR:-/tmp}"/vi-mn-*.??????; do
  [ -d "$dir" ] || continue
  pid=${dir##*/vi-mn-}
  pid=${pid%%.*}
  kill -0 "$pid" 2>/dev/null && continue
  echo "LEFT: temp directory $dir"
  left=1
done
if grep -q "/vi-mn-" /proc/mounts; then
  echo "LEFT: mounts: $(grep "/vi-mn-" /proc/mounts | awk '{print $2}' | tr '\n' ' ')"
  left=1
fi
[ $left = 0 ] && echo "clean: no namespace, mount or temp directory of the two-host test is left"
exit $left
