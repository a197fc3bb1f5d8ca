#!/bin/sh
# floor_check.sh - bench-floor and bench-loadgen together: start the floor on a
# free loopback port, wait for its "ready" line, send with the load generator,
# then print both programs' summaries (human line and machine line each).
#   usage: bench/floor_check.sh [bin] [loadgen options...]
#   default loadgen options: -n 100000 -r 50000; FLOOR_ARGS adds floor options.
set -eu
bin=${1:-bin}
[ $# -gt 0 ] && shift
[ $# -gt 0 ] || set -- -n 100000 -r 50000

out=$(mktemp "${TMPDIR:-/tmp}/floor_check.XXXXXX")
fpid=
cleanup() {
	if [ -n "$fpid" ] && kill -0 "$fpid" 2>/dev/null; then
		kill -TERM "$fpid" 2>/dev/null || :
		wait "$fpid" 2>/dev/null || :
	fi
	rm -f "$out"
}
trap cleanup EXIT
trap 'exit 1' INT TERM

# Port 0: the floor binds a free port and prints it before "ready".
# shellcheck disable=SC2086
"$bin/bench-floor" -H 127.0.0.1 -p 0 ${FLOOR_ARGS:-} >"$out" &
fpid=$!
i=0
until grep -qx ready "$out"; do
	kill -0 "$fpid" 2>/dev/null || { echo "floor_check: bench-floor exited early" >&2; exit 1; }
	i=$((i + 1))
	[ "$i" -le 200 ] || { echo "floor_check: bench-floor not ready after 10 s" >&2; exit 1; }
	sleep 0.05
done
port=$(sed -n 's/^port=//p' "$out")

"$bin/bench-loadgen" -H 127.0.0.1 -p "$port" "$@"
# The floor stops by itself -q ms (500) after the last datagram.
st=0
wait "$fpid" || st=$?
fpid=
[ "$st" -eq 0 ] || { echo "floor_check: bench-floor exited $st" >&2; exit 1; }
tail -n 2 "$out"
