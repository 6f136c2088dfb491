#!/usr/bin/env bash
# `npm run test:busy [-- mocha args]`: the suite while another process keeps CPU cores busy, as on a
# shared CI machine. Without arguments it runs `npm test` (everything); with arguments, mocha with
# them (e.g. one file). SSHCA_BUSY_CORES (default 1) is how many cores to saturate. The busy loops are
# stopped whatever happens: success, failure, Ctrl-C or SIGTERM (which also stops the tests).
set -euo pipefail
cd "$(dirname "$0")/.."

burners=()
tests=''
cleanup() {
  for pid in "${burners[@]}"; do kill "$pid" 2>/dev/null || true; done
  # the tests run in their own process group (set -m): stop npm/npx and what they started
  if [ -n "$tests" ]; then kill -TERM -- "-$tests" 2>/dev/null || true; fi
  wait 2>/dev/null || true
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

for _ in $(seq 1 "${SSHCA_BUSY_CORES:-1}"); do
  # a busy loop in its own process: CPU-bound, no I/O, same priority as the tests
  node -e 'for (;;) {}' &
  burners+=("$!")
done
echo "test:busy: ${#burners[@]} CPU-bound process(es) running (pids ${burners[*]})" >&2

# in the background, so that a signal reaches the trap now rather than when the tests end, and in a
# process group of their own, so that they can be stopped as a whole
set -m
if [ "$#" -eq 0 ]; then npm test & else npx mocha --timeout 60000 "$@" & fi
tests=$!
status=0
wait "$tests" || status=$?
tests=''
exit "$status"
