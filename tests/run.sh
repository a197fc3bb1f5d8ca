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
# The telem programs still running that a test binary started, one pid a
# line: every process it starts inherits its TELEM_TEST_TAG (below), and
# /proc/PID/environ keeps it.
tagged() {
	grep -lxzs "TELEM_TEST_TAG=$1" /proc/[0-9]*/environ | while read -r f; do
		p=${f#/proc/}
		p=${p%/environ}
		a0=$(tr '\0' '\n' 2>/dev/null </proc/"$p"/cmdline | head -n 1)
		case ${a0##*/} in telem*) echo "$p" ;; esac
	done
}
# What of them is still there after up to 15 s (stages leave after their
# supervisor, on its parent-death signal), one ps line each; those are
# killed. A sanitized stage hung in its exit (supervisor/spawn.c sup_kill)
# once spun on for good after its supervisor was gone, unnoticed.
left_running() {
	n=0
	while [ -n "$(tagged "$1")" ] && [ "$n" -lt 75 ]; do
		sleep 0.2
		n=$((n + 1))
	done
	pids=$(tagged "$1" | tr '\n' ' ')
	[ -n "$pids" ] || return 0
	# shellcheck disable=SC2086
	ps -o pid,ppid,stat,pcpu,etime,wchan:16,args -p "$(echo $pids | tr ' ' ,)" |
	    tail -n +2
	# shellcheck disable=SC2086
	kill -9 $pids 2>/dev/null
	return 0
}
# From a Criterion report: each failed test, and each failed assertion's
# place with the first line of its message, and what it left behind or
# running; at most 12 lines.
why_failed() {
	awk '/^\[FAIL\]/ { print; next }
	    /Assertion Failed|Unexpected signal|^left (behind|running)/ {
		print; want = 1; next }
	    want && (/^\[----\] +[^ ]/ || !/^\[/) { print; want = 0 }' |
	    head -n 12
}
brief=
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
	running=$(left_running "$TELEM_TEST_TAG")
	left=$(ls -d /tmp/telem-test-"$TELEM_TEST_TAG"-* \
	    /dev/shm/telem-test-"$TELEM_TEST_TAG"-* 2>/dev/null)
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
left behind in /tmp or /dev/shm by this binary:
$left"
		rm -rf $left
	fi
	if [ -n "$running" ]; then
		f=$((f + 1))
		out="$out
left running by this binary (now killed):
$running"
	fi
	# All of a failing binary's report; one summary line of a passing one.
	if [ "$f" -ne 0 ]; then echo "$out" | tail -n 80; else echo "$line"; fi
	fail=$((fail + f))
	[ "$f" -eq 0 ] && continue
	name=$(basename "$t")${TELEM_TRANSPORT:+/$TELEM_TRANSPORT}
	failed="$failed $name"
	brief="$brief
$name:
$(echo "$out" | why_failed)"
done
# Each failure again in brief at the very end, where a log cut to its
# last lines still shows which test failed and where.
[ -z "$failed" ] || echo "$brief" | tail -n 40
[ -z "$failed" ] || echo "failed:$failed"
echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
