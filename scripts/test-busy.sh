#!/usr/bin/env bash
# `npm run test:busy [-- mocha args]`: the suite while another process keeps CPU cores busy, as on a
# shared CI machine. Without arguments it runs `npm test` (everything); with arguments, mocha with
# them (e.g. one file). SSHCA_BUSY_CORES (default 1) is how many cores to saturate. The burners are
# stopped whatever happens: success, failure or Ctrl-C.
set -euo pipefail
cd "$(dirname "$0")/.."

burners=()
stop_burners() {
  for pid in "${burners[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${burners[@]}"; do wait "$pid" 2>/dev/null || true; done
}
trap stop_burners EXIT
trap 'exit 130' INT TERM

for _ in $(seq 1 "${SSHCA_BUSY_CORES:-1}"); do
  # a busy loop in its own process: CPU-bound, no I/O, same priority as the tests
  node -e 'for (;;) {}' &
  burners+=("$!")
done
echo "test:busy: ${#burners[@]} CPU-bound process(es) running (pids ${burners[*]})" >&2

if [ "$#" -eq 0 ]; then
  npm test
else
  npx mocha --timeout 60000 "$@"
fi
