#!/bin/sh
# Run every Criterion binary of the suite: tests/run.sh BUILD BIN
# Unit tests first, then the end-to-end tests that drive BIN/ for real.
# Prints one summary line "N passed, N failed" and exits non-zero on failure.
build=${1:-build}
bin=${2:-bin}
TELEM_BIN=$(cd "$bin" && pwd)
export TELEM_BIN
cd "$(dirname "$0")/.." || exit 1
# Real queues need /dev/mqueue mounted to be inspected; mount it if we can.
if [ ! -d /dev/mqueue ] || ! grep -q ' /dev/mqueue ' /proc/mounts; then
	if [ "$(id -u)" -eq 0 ]; then
		mkdir -p /dev/mqueue && mount -t mqueue none /dev/mqueue
	fi
fi
pass=0 fail=0 failed=
seq=0
# Unit tests once; end-to-end tests once per transport.
set --
for t in "$build"/tests/test_*; do set -- "$@" "$t:"; done
for t in "$build"/tests/e2e_*; do set -- "$@" "$t:mqueue" "$t:shm"; done
for spec in "$@"; do
	t=${spec%:*}
	TELEM_TRANSPORT=${spec##*:}
	export TELEM_TRANSPORT
	case $t in *.o|*.d) continue ;; esac
	[ -x "$t" ] || continue
	echo "== $(basename "$t") ${TELEM_TRANSPORT}"
	# Every temporary folder the binary makes carries this tag
	# (tests/harness.c h_tmp_name): any left after it ran is a failure.
	seq=$((seq + 1))
	TELEM_TEST_TAG=$$.$seq
	export TELEM_TEST_TAG
	out=$("$t" --jobs 2 2>&1)
	rc=$?
	left=$(ls -d /tmp/telem-test-"$TELEM_TEST_TAG"-* 2>/dev/null)
	line=$(echo "$out" | grep 'Synthesis:' | tail -n 1)
	p=$(echo "$line" | sed -n 's/.*Passing: \([0-9]*\).*/\1/p')
	f=$(echo "$line" | sed -n 's/.*Failing: \([0-9]*\).*/\1/p')
	c=$(echo "$line" | sed -n 's/.*Crashing: \([0-9]*\).*/\1/p')
	pass=$((pass + ${p:-0}))
	f=$(( ${f:-0} + ${c:-0} ))
	if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then f=1; fi
	if [ -n "$left" ]; then
		f=$((f + 1))
		out="$out
left behind in /tmp by this binary:
$left"
		rm -rf $left
	fi
	# All of a failing binary's report; one summary line of a passing one.
	if [ "$f" -ne 0 ]; then echo "$out" | tail -n 80; else echo "$line"; fi
	fail=$((fail + f))
	[ "$f" -eq 0 ] || failed="$failed $(basename "$t")${TELEM_TRANSPORT:+/$TELEM_TRANSPORT}"
done
[ -z "$failed" ] || echo "failed:$failed"
echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
