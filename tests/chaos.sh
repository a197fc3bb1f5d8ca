#!/bin/sh
# chaos.sh - storms, for longer runs than the suite's e2e_chaos: each round
# starts bin/telem-supervisor, sends 32-line datagrams with bench-loadgen
# for LOAD_S seconds while KILLS stages chosen at random (never the
# supervisor; at most 3 kills of one stage, under the restart limit) get
# SIGKILL about GAP_MS apart, waits for the drain, asks `telemctl books`
# and prints one line per round:
#   round K: killed=N lost=N balanced|NOT BALANCED
# Exits 1 if any round did not balance (its books are printed).
#   usage: tests/chaos.sh [rounds] [bin]      (make chaos ROUNDS=N)
#   env:   TRANSPORT (mqueue), RATE (20000 datagrams/s; 0: flat out), LOAD_S (8),
#          KILLS (12), GAP_MS (600)
set -u
rounds=${1:-3}
bin=${2:-bin}
transport=${TRANSPORT:-mqueue}
rate=${RATE:-20000}
load_s=${LOAD_S:-8}
kills=${KILLS:-12}
gap_ms=${GAP_MS:-600}
inst=chaos$$
if [ "$kills" -gt 15 ]; then
	echo "chaos.sh: KILLS=$kills: at most 15 (3 for each of the 5 stages)" >&2
	exit 2
fi
stages="ingest low high ckms cma"
tmp=$(mktemp -d "${TMPDIR:-/tmp}/chaos.XXXXXX")
sup_pid= lg_pid=

stop_all() {
	[ -n "$lg_pid" ] && kill "$lg_pid" 2>/dev/null && wait "$lg_pid" 2>/dev/null
	lg_pid=
	if [ -n "$sup_pid" ] && kill -0 "$sup_pid" 2>/dev/null; then
		kill -TERM "$sup_pid" 2>/dev/null
		wait "$sup_pid" 2>/dev/null
	fi
	sup_pid=
}
cleanup() {
	stop_all
	rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 1' INT TERM

# free_port: bench/lib.sh
. "$(dirname "$0")/../bench/lib.sh"
nap_ms() { sleep "$(awk -v m="$1" 'BEGIN { printf "%.3f", m / 1000 }')"; }
now_ms() { awk '{ printf "%d", $1 * 1000 }' /proc/uptime; }
rand() { od -An -N2 -tu2 /dev/urandom | tr -d ' '; }
# A stage's field from `telemctl status` (empty if none).
stat_of() {
	"$bin/telemctl" -i "$inst" status 2>/dev/null | awk -v s="stage=$1" -v k="$2=" '
	    $1 == s { for (i = 2; i <= NF; i++) if (index($i, k) == 1)
		print substr($i, length(k) + 1) }'
}
# Up, with a pid other than $2 (10 s at most).
wait_restarted() {
	i=0
	while [ $i -lt 1000 ]; do
		line=$("$bin/telemctl" -i "$inst" status 2>/dev/null | grep "^stage=$1 ")
		case $line in
		*" state=up "*)
			p=$(echo "$line" | sed -n 's/.* pid=\([0-9]*\).*/\1/p')
			[ "$p" != "$2" ] && [ "$p" != 0 ] && return 0 ;;
		esac
		nap_ms 10
		i=$((i + 1))
	done
	return 1
}
# Every queue empty, nothing in flight (an egress books out once saved),
# every stage up and two replies alike (30 s at most).
drain() {
	prev= i=0
	while [ $i -lt 150 ]; do
		cur=$("$bin/telemctl" -i "$inst" status 2>/dev/null | sed 's/ uptime_s=[0-9]*//')
		if ! echo "$cur" | grep -q ' depth=[1-9]' &&
		    ! echo "$cur" | grep -q ' inflight=[-1-9]' &&
		    [ "$(echo "$cur" | grep -c ' state=up ')" -eq 5 ] && [ "$cur" = "$prev" ]; then
			return 0
		fi
		prev=$cur
		nap_ms 200
		i=$((i + 1))
	done
	return 1
}

failed=0
k=1
while [ "$k" -le "$rounds" ]; do
	port=$(free_port)
	"$bin/telem-supervisor" -i "$inst" -p "$port" -t "$transport" -m 1024 \
	    -f 60000 >"$tmp/out" 2>"$tmp/err" &
	sup_pid=$!
	i=0
	until grep -q 'pipeline up' "$tmp/err" 2>/dev/null; do
		i=$((i + 1))
		if [ $i -gt 200 ] || ! kill -0 "$sup_pid" 2>/dev/null; then
			echo "round $k: supervisor did not come up:" >&2
			cat "$tmp/err" >&2
			exit 1
		fi
		nap_ms 50
	done
	"$bin/bench-loadgen" -p "$port" -L 32 -k 8 -d uniform:0:199 -r "$rate" \
	    -t "$load_s" -n 1000000000 -s "$k" >/dev/null 2>&1 &
	lg_pid=$!
	nap_ms 300
	killed=0
	for s in $stages; do eval "n_$s=0"; done
	while [ "$killed" -lt "$kills" ]; do
		while :; do
			idx=$(( $(rand) % 5 + 1 ))
			s=$(echo $stages | cut -d' ' -f$idx)
			eval "n=\$n_$s"
			[ "$n" -lt 3 ] && break
		done
		t0=$(now_ms)
		pid=$(stat_of "$s" pid)
		[ -n "$pid" ] && [ "$pid" != 0 ] && kill -KILL "$pid" 2>/dev/null
		eval "n_$s=$((n + 1))"
		killed=$((killed + 1))
		if ! wait_restarted "$s" "$pid"; then
			echo "round $k: $s not restarted; status and the supervisor's log:" >&2
			"$bin/telemctl" -i "$inst" status >&2
			tail -n 20 "$tmp/err" >&2
			failed=1
			break
		fi
		left=$((gap_ms - ($(now_ms) - t0)))
		[ "$left" -gt 0 ] && nap_ms "$left"
	done
	wait "$lg_pid" 2>/dev/null
	lg_pid=
	if ! drain; then
		echo "round $k: never drained; the supervisor's log:" >&2
		tail -n 20 "$tmp/err" >&2
		failed=1
	fi
	"$bin/telemctl" -i "$inst" books >"$tmp/books" 2>&1
	lost=0
	for s in $stages; do lost=$((lost + $(stat_of "$s" lost) + 0)); done
	if grep -qx balanced "$tmp/books"; then
		verdict=balanced
	else
		verdict="NOT BALANCED"
		failed=1
	fi
	echo "round $k: killed=$killed lost=$lost $verdict"
	[ "$verdict" = balanced ] && [ -z "${VERBOSE:-}" ] || cat "$tmp/books"
	stop_all
	k=$((k + 1))
done
exit $failed
