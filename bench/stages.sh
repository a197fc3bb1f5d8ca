#!/bin/sh
# stages.sh - where the CPU goes, stage by stage (README, Performance). For
# each transport it starts the built-in pipeline (telem-supervisor -f 1000)
# on a free port, offers one bench-loadgen step (32 lines per datagram at
# 3.2M events/s, 100 names, values uniform 0..199 by default), waits for the
# drain and prints each stage's CPU (utime + stime, /proc/PID/stat) per
# million events that left ingest, their sum, the share delivered and the
# largest peak RSS (VmHWM) of a stage. A transport written shm/N runs shm
# rings of N slots (-s N; README, Performance, "Deeper rings").
# With PERF=1 it also records the stages with `perf record -g` into
# perf.<transport>.data in the current folder. Figures only, no asserts.
#   usage: bench/stages.sh [bin]
#   env:   TRANSPORTS ("mqueue shm shm/96"), LINES (32), RATE (3200000
#          events/s), STEP_S (5), NAMES (100), PERF (0)
set -u
bin=${1:-bin}
transports=${TRANSPORTS:-mqueue shm shm/96}
lines=${LINES:-32}
rate=${RATE:-3200000}
step_s=${STEP_S:-5}
names=${NAMES:-100}
inst=stages$$
tmp=$(mktemp -d "${TMPDIR:-/tmp}/stages.XXXXXX")
sup_pid=

cleanup() {
	if [ -n "$sup_pid" ] && kill -0 "$sup_pid" 2>/dev/null; then
		kill -TERM "$sup_pid" 2>/dev/null
		wait "$sup_pid" 2>/dev/null
	fi
	rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 1' INT TERM

# free_port, transport_args: bench/lib.sh
. "$(dirname "$0")/lib.sh"
# "stage pid" per line, from telemctl status.
stage_pids() {
	"$bin/telemctl" -i "$inst" status 2>/dev/null |
	    sed -n 's/^stage=\([^ ]*\) pid=\([0-9]*\) .*/\1 \2/p'
}
# "stage ticks" per line for the pids of $tmp/pids.
ticks() {
	while read -r st p; do
		printf '%s ' "$st"
		sed 's/.*) //' "/proc/$p/stat" | awk '{ print $12 + $13 }'
	done <"$tmp/pids"
}
counter() { # counter STAGE FIELD from the last status
	sed -n "s/^stage=$1 .* $2=\([0-9]*\).*/\1/p" "$tmp/st"
}

echo "stages: $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg);" \
    "$lines lines per datagram at $rate events/s, $names names, ${step_s} s;" \
    "CPU-s per million events"
for t in $transports; do
	port=$(free_port)
	"$bin/telem-supervisor" -i "$inst" -p "$port" $(transport_args "$t") \
	    -f 1000 >/dev/null 2>"$tmp/sup.log" &
	sup_pid=$!
	i=0
	until "$bin/telemctl" -i "$inst" status >"$tmp/st" 2>/dev/null &&
	    [ "$(grep -c '^stage=' "$tmp/st")" -ge 5 ] &&
	    ! grep '^stage=' "$tmp/st" | grep -qv 'state=up'; do
		i=$((i + 1))
		if [ "$i" -gt 100 ] || ! kill -0 "$sup_pid" 2>/dev/null; then
			echo "== $t: not up: $(tail -n 1 "$tmp/sup.log")"
			kill -TERM "$sup_pid" 2>/dev/null
			wait "$sup_pid" 2>/dev/null
			sup_pid=
			continue 2
		fi
		sleep 0.1
	done
	stage_pids >"$tmp/pids"
	"$bin/telemctl" -i "$inst" status >"$tmp/st"
	out0=$(counter ingest out)
	ticks >"$tmp/t0"
	perf_pid=
	if [ "${PERF:-0}" = 1 ]; then
		perf record -q -g -o "perf.$t.data" \
		    -p "$(cut -d' ' -f2 "$tmp/pids" | paste -sd,)" \
		    -- sleep "$step_s" 2>/dev/null &
		perf_pid=$!
	fi
	d=$((rate / lines))
	"$bin/bench-loadgen" -p "$port" -L "$lines" -k "$names" \
	    -d uniform:0:199 -P 4096 -r "$d" -n $((d * step_s)) \
	    -t $((step_s + 5)) >"$tmp/lg" 2>/dev/null
	# the drain: every queue empty and ingest's out still
	prev=
	for i in $(seq 50); do
		sleep 0.2
		"$bin/telemctl" -i "$inst" status >"$tmp/st"
		cur=$(sed -n 's/.* depth=\([0-9]*\) in=\([0-9]*\).*/\1 \2/p' "$tmp/st" | paste -sd' ')
		depth=$(sed -n 's/.* depth=\([0-9]*\) .*/\1/p' "$tmp/st" |
		    awk '{ n += $1 } END { print n + 0 }')
		[ "$depth" = 0 ] && [ "$cur" = "$prev" ] && break
		prev=$cur
	done
	ticks >"$tmp/t1"
	rss=$(while read -r st p; do
		printf '%s %s\n' "$(awk '/^VmHWM:/ { print $2 }' \
		    "/proc/$p/status")" "$st"
	done <"$tmp/pids" | sort -n | tail -n 1)
	[ -n "$perf_pid" ] && wait "$perf_pid"
	kill -TERM "$sup_pid" 2>/dev/null
	wait "$sup_pid" 2>/dev/null
	sup_pid=
	out=$(($(counter ingest out) - out0))
	sent=$(sed -n 's/^sent_events=\([0-9]*\) .*/\1/p' "$tmp/lg")
	paste "$tmp/t0" "$tmp/t1" | awk -v t="$t" -v out="$out" -v rss="$rss" \
	    -v sent="${sent:-0}" -v hz="$(getconf CLK_TCK)" '{
		c = ($4 - $2) / hz / (out / 1e6); sum += c
		row = row sprintf("  %s %.3f", $1, c)
	} END {
		split(rss, r, " ")
		printf "%-7s%s  all %.3f  delivered %.3f%%  peak RSS %s kB (%s)\n",
		    t, row, sum, (sent > 0 ? 100 * out / sent : 0), r[1], r[2]
	}'
done
