#!/bin/sh
# pipeline.sh - the whole pipeline under load (README, Performance). For
# each transport it starts bin/telem-supervisor, offers stepped rates with
# bench-loadgen (1 line per datagram at 50k, 100k, 200k datagrams/s and flat
# out; then 32 lines at 50k, 100k, 150k datagrams/s and flat out; 100 names; values
# uniform 0..199), waits for the drain after each step and prints one row:
# rates (in events/s), the share delivered, CPU per million events of every
# telem process against bench-floor at the same step (at 1 line also
# against bench-floor -w 1000, which waits 1 ms once a datagram is there as
# ingest does), and each stage's peak RSS. Then a summary, the idle CPU
# and the RSS with 10 000 names. Then, in the same run, the pipeline with
# both sinks (-g to a discarding TCP listener, --prom scraped once a
# second by curl) at the 1-line 200k and 32-line 3.2M steps, against the
# same steps without them. A transport written shm/N runs shm rings of N
# slots (-s N; README, Performance, "Deeper rings"). Figures only, no
# asserts.
#   usage: bench/pipeline.sh [bin]
#   env:   STEP_S (5) seconds per step;  TRANSPORTS ("mqueue shm shm/96")
#          RATES_1 ("50000 100000 200000 0") events/s, 0 = flat out
#          RATES_32 ("1600000 3200000 4800000 0")
#          SINKS (1): 0 skips the steps with the sinks
set -u
bin=${1:-bin}
step_s=${STEP_S:-5}
transports=${TRANSPORTS:-mqueue shm shm/96}
rates_1=${RATES_1:-50000 100000 200000 0}
rates_32=${RATES_32:-1600000 3200000 4800000 0}
inst=bench$$
hz=$(getconf CLK_TCK)
ncpu=$(nproc)
tmp=$(mktemp -d "${TMPDIR:-/tmp}/pipeline.XXXXXX")
sup_pid=
aux_pids=
base_stages="ingest low high ckms cma"
stages=$base_stages
sink_args=

stop_pipeline() {
	if [ -n "$sup_pid" ] && kill -0 "$sup_pid" 2>/dev/null; then
		kill -TERM "$sup_pid" 2>/dev/null
		wait "$sup_pid" 2>/dev/null
	fi
	sup_pid=
	for p in $aux_pids; do kill "$p" 2>/dev/null; wait "$p" 2>/dev/null; done
	aux_pids=
}
cleanup() {
	stop_pipeline
	rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 1' INT TERM

# free_port, transport_args: bench/lib.sh
. "$(dirname "$0")/lib.sh"

# `telemctl status` into shell variables s_<stage>_<field>.
snap() {
	"$bin/telemctl" -i "$inst" status >"$tmp/st" 2>/dev/null || return 1
	eval "$(awk '/^stage=/ {
		n = ""
		for (i = 1; i <= NF; i++) {
			k = substr($i, 1, index($i, "=") - 1)
			v = substr($i, index($i, "=") + 1)
			if (k == "stage") n = v
			else if (k ~ /^(pid|depth|in|out|dropped|dropped_dgrams|lost|restarts)$/)
				printf "s_%s_%s=%s\n", n, k, v
		}
	}' "$tmp/st")"
}
sum_of() { # a counter summed over the stages
	n=0
	for st in $stages; do eval "n=\$((n + s_${st}_$1))"; done
	echo "$n"
}
pids() {
	l=$sup_pid
	for st in $stages; do eval "l=\"\$l \$s_${st}_pid\""; done
	echo "$l"
}
# Each stage's VmHWM (peak RSS), or VmRSS, in kB: "a/b/c/d/e".
mem_kb() {
	m=
	for st in $stages; do
		eval "p=\$s_${st}_pid"
		m="$m${m:+/}$(awk -v k="$1:" '$1 == k { print $2 }' "/proc/$p/status")"
	done
	echo "$m"
}

# utime + stime of the given pids in clock ticks (/proc/PID/stat).
cpu_ticks() {
	for p in "$@"; do sed 's/.*) //' "/proc/$p/stat" 2>/dev/null; done |
	    awk '{ t += $12 + $13 } END { printf "%d\n", t }'
}
# Time on a CPU of the given pids in ns (/proc/PID/schedstat): finer than
# ticks, for the idle figure.
cpu_ns() {
	for p in "$@"; do cat "/proc/$p/schedstat" 2>/dev/null; done |
	    awk '{ t += $1 } END { printf "%.0f\n", t }'
}
# Busy ticks of the whole machine (/proc/stat) and CPU seconds of this
# shell's children (bench-loadgen, telemctl...), to see other load.
machine_ticks() {
	awk '$1 == "cpu" { print $2 + $3 + $4 + $7 + $8 + $9; exit }' /proc/stat
}
children_s() { # `times` in this shell, not in a $(...) subshell
	times >"$tmp/times"
	awk 'NR == 2 { gsub(/[ms]/, " "); print $1 * 60 + $2 + $3 * 60 + $4 }' \
	    "$tmp/times" >"$tmp/children"
}
uptime_s() {
	cut -d' ' -f1 /proc/uptime
}

# The file name part for transport $1: shm/96 -> shm-96.
tkey() {
	echo "$1" | tr / -
}

# Start the pipeline on transport $1 (shm/N: rings of N slots) and wait
# until every stage is up.
start_pipeline() {
	port=$(free_port)
	# shellcheck disable=SC2086
	"$bin/telem-supervisor" -i "$inst" -p "$port" $(transport_args "$1") \
	    -f 1000 $sink_args >/dev/null 2>"$tmp/sup.log" &
	sup_pid=$!
	i=0
	want=$(echo $stages | wc -w)
	while [ "$i" -lt 100 ] && kill -0 "$sup_pid" 2>/dev/null; do
		if snap && [ "$(grep -c 'state=up' "$tmp/st")" -eq "$want" ]; then
			return 0
		fi
		i=$((i + 1))
		sleep 0.1
	done
	stop_pipeline
	return 1
}

# Wait until the counters stop moving and every queue is empty.
drain() {
	prev=
	i=0
	while [ "$i" -lt 150 ]; do
		sleep 0.2
		snap || return 1
		cur="$s_ingest_out $s_low_in $s_high_in $s_ckms_in $s_cma_in"
		d=$((s_low_depth + s_high_depth + s_ckms_depth + s_cma_depth))
		[ "$d" -eq 0 ] && [ "$cur" = "$prev" ] && return 0
		prev=$cur
		i=$((i + 1))
	done
	return 1
}

# bench-loadgen options for $1 lines per datagram at $2 events/s (0: flat
# out) over $3 names, for step_s seconds.
load_args() {
	if [ "$2" -eq 0 ]; then
		echo "-L $1 -k $3 -d uniform:0:199 -P 4096 -r 0 -n 1000000000 -t $step_s"
	else
		r=$(($2 / $1))
		echo "-L $1 -k $3 -d uniform:0:199 -P 4096 -r $r -n $((r * step_s))" \
		    "-t $((step_s + 5))"
	fi
}

# The same step into bench-floor (extra options in $3); prints "events
# cpu_s" ("0 0" if it failed).
floor_step() {
	# shellcheck disable=SC2086
	"$bin/bench-floor" -H 127.0.0.1 -p 0 -q 300 -t $((step_s + 30)) ${3:-} \
	    >"$tmp/floor" 2>/dev/null &
	fpid=$!
	i=0
	until grep -qx ready "$tmp/floor" 2>/dev/null; do
		i=$((i + 1))
		if [ "$i" -gt 100 ] || ! kill -0 "$fpid" 2>/dev/null; then
			echo "0 0"
			return
		fi
		sleep 0.05
	done
	fport=$(sed -n 's/^port=//p' "$tmp/floor")
	# shellcheck disable=SC2046
	"$bin/bench-loadgen" -p "$fport" $(load_args "$1" "$2" 100) >/dev/null 2>&1
	wait "$fpid"
	sed -n 's/^recv_datagrams=\([0-9]*\) drops=[-0-9]* cpu_s=\([0-9.]*\)$/\1 \2/p' \
	    "$tmp/floor" | awk -v l="$1" '{ print $1 * l, $2 } END { if (!NR) print "0 0" }'
}

# One step on the running pipeline: $1 lines per datagram, $2 events/s,
# $3 names, $4 $5 the floor's events and CPU seconds, $6 $7 the same for
# the floor waiting 1 ms as ingest does (0 0: none). Appends a raw row to
# $tmp/rows: lines offered sent secs delivered drops cpu_s floor_ev floor_s
# wfloor_ev wfloor_s other_pct books rss.
pipe_step() {
	snap
	children_s
	t0=$(cpu_ticks $(pids)) m0=$(machine_ticks) c0=$(cat "$tmp/children")
	u0=$(uptime_s)
	o0=$s_ingest_out l0=$s_low_in h0=$s_high_in lo0=$s_low_out ho0=$s_high_out
	k0=$s_ckms_in a0=$s_cma_in dr0=$s_ingest_dropped_dgrams
	x0=$(sum_of lost) r0=$(sum_of restarts)
	# shellcheck disable=SC2046
	"$bin/bench-loadgen" -p "$port" $(load_args "$1" "$2" "$3") >"$tmp/lg" 2>/dev/null
	drained=yes
	drain || drained=no
	children_s
	t1=$(cpu_ticks $(pids)) m1=$(machine_ticks) c1=$(cat "$tmp/children")
	u1=$(uptime_s)
	sent=$(sed -n 's/^sent_events=\([0-9]*\) .*seconds=\([0-9.]*\)$/\1 \2/p' "$tmp/lg")
	out=$((s_ingest_out - o0))
	books=ok
	[ $((s_low_in - l0)) -eq "$out" ] && [ $((s_high_in - h0)) -eq "$out" ] &&
	    [ $((s_ckms_in - k0)) -eq $((s_low_out - lo0)) ] &&
	    [ $((s_cma_in - a0)) -eq $((s_high_out - ho0)) ] &&
	    [ "$(sum_of lost)" -eq "$x0" ] && [ "$(sum_of restarts)" -eq "$r0" ] ||
	    books=OFF
	[ "$drained" = yes ] || books="$books,undrained"
	# Other load: the machine's busy time less ours and our children's.
	other=$(awk -v m=$((m1 - m0)) -v t=$((t1 - t0)) -v c="$c0 $c1" \
	    -v u="$u0 $u1" -v hz="$hz" -v n="$ncpu" 'BEGIN {
		split(c, cc, " "); split(u, uu, " ")
		o = (m - t) / hz - (cc[2] - cc[1])
		printf("%.0f", o > 0 ? 100 * o / ((uu[2] - uu[1]) * n) : 0) }')
	echo "$1 $2 ${sent:-0 1} $out $((s_ingest_dropped_dgrams - dr0))" \
	    "$(awk -v t=$((t1 - t0)) -v hz="$hz" 'BEGIN { print t / hz }')" \
	    "$4 $5 $6 $7 $other $books $(mem_kb VmHWM)" >>"$tmp/rows"
	tail -n 1 "$tmp/rows" | show_rows
}

header() {
	printf "%5s %7s %9s %9s %8s %6s %6s %7s %5s %7s %5s %6s %-4s %s\n" lines \
	    offered sent/s deliv/s deliv% drops cpu/M floor/M ratio wfloor/M \
	    ratio other books "peak RSS kB ingest/low/high/ckms/cma"
}
# Raw rows in, table rows out.
show_rows() {
	awk '{
		lines = $1; offered = $2; sent = $3; secs = $4; out = $5
		drops = $6; cpu = $7; fev = $8; fcpu = $9; wev = $10; wcpu = $11
		pm = out > 0 ? cpu / (out / 1e6) : 0
		fpm = fev > 0 ? fcpu / (fev / 1e6) : 0
		wpm = wev > 0 ? wcpu / (wev / 1e6) : 0
		# (parenthesised: a bare ">" in a printf list is a redirection)
		printf("%5d %7s %9.0f %9.0f %7.3f%% %6d %6.3f %7s %5s %7s %5s %5d%% " \
		    "%-4s %s\n", lines,
		    offered ? sprintf("%.0fk", offered / 1000) : "max",
		    sent / secs, out / secs, sent ? 100 * out / sent : 0, drops,
		    pm, fpm > 0 ? sprintf("%.3f", fpm) : "-",
		    fpm > 0 ? sprintf("%.2f", pm / fpm) : "-",
		    wpm > 0 ? sprintf("%.3f", wpm) : "-",
		    wpm > 0 ? sprintf("%.2f", pm / wpm) : "-", $12, $13, $14)
	}'
}

# Per transport: flat out at 1 line, the best rate at >= 99.9 % with 32
# lines, the worst ratio to the floor, the largest peak RSS.
summary() {
	awk -v t="$1" -v idle="$2" '{
		del = $3 ? 100 * $5 / $3 : 0; rate = $5 / $4
		pm = $5 > 0 ? $7 / ($5 / 1e6) : 0
		fpm = $8 > 0 ? $9 / ($8 / 1e6) : 0
		wpm = $10 > 0 ? $11 / ($10 / 1e6) : 0
		if ($1 == 1 && $2 == 0) {
			s1 = sprintf("1 line: flat out %.0f events/s, %.3f%% delivered, " \
			    "%.3f cpu-s/M = %.2f x floor, %.2f x the floor waiting 1 ms",
			    rate, del, pm, fpm ? pm / fpm : 0, wpm ? pm / wpm : 0)
		}
		if ($1 == 1 && fpm > 0 && pm / fpm > worst) worst = pm / fpm
		if ($1 == 32 && del >= 99.9 && rate > best) {
			best = rate; bestpm = pm
		}
		n = split($14, m, "/")
		for (i = 1; i <= n; i++) if (m[i] > rss) rss = m[i]
	} END {
		printf "summary %s: %s (worst 1-line ratio %.2f); 32 lines: %.0f " \
		    "events/s at >= 99.9%%, %.3f cpu-s/M; largest stage peak RSS " \
		    "%d kB; idle %s\n", t, s1, worst, best, bestpm, rss, idle
	}' "$tmp/rows.$(tkey "$1")"
}

echo "pipeline: $ncpu cores, load average $(cut -d' ' -f1-3 /proc/loadavg)," \
    "$step_s s per step; rates in events/s; cpu/M = CPU-s per million events" \
    "delivered, all telem processes (floor/M: bench-floor alone; wfloor/M:" \
    "bench-floor -w 1000); other ="\
    "CPU used by other processes during the step, % of the machine"

# The floor once per step, shared by the transports; at 1 line also the
# floor that waits 1 ms once a datagram is there, as ingest does.
for lines in 1 32; do
	eval "rates=\$rates_$lines"
	for r in $rates; do
		eval "floor_${lines}_$r=\"\$(floor_step $lines $r)\""
		[ "$lines" -eq 1 ] &&
		    eval "wfloor_${lines}_$r=\"\$(floor_step $lines $r '-w 1000')\""
	done
done

for t in $transports; do
	if ! start_pipeline "$t"; then
		echo "== transport $t: not available: $(tail -n 1 "$tmp/sup.log")"
		continue
	fi
	echo "== transport $t (instance $inst, port $port)"
	: >"$tmp/rows"
	header
	for lines in 1 32; do
		eval "rates=\$rates_$lines"
		for r in $rates; do
			eval "f=\"\${floor_${lines}_$r:-0 0} \${wfloor_${lines}_$r:-0 0}\""
			# shellcheck disable=SC2086
			pipe_step "$lines" "$r" 100 $f
		done
	done
	cp "$tmp/rows" "$tmp/rows.$(tkey "$t")"
	# Idle: no traffic, Flush ticks only; schedstat has ns resolution.
	sleep 1
	snap
	set -- $(pids)
	t0=$(cpu_ticks "$@") n0=$(cpu_ns "$@")
	sleep 5
	t1=$(cpu_ticks "$@") n1=$(cpu_ns "$@")
	idle=$(awk -v t=$((t1 - t0)) -v n=$((n1 - n0)) -v hz="$hz" 'BEGIN {
		printf "%.2f%% of one core (%.1f%% by stat ticks)", n / 5e9 * 100,
		    t / hz / 5 * 100 }')
	echo "idle, 5 s without traffic, all 6 processes: $idle"
	# 10 000 names: one step of 32-line datagrams, then the RSS per stage.
	echo "10000 names:"
	pipe_step 32 1000000 10000 0 0 0 0
	echo "10000 names: RSS now kB $(mem_kb VmRSS) (ingest/low/high/ckms/cma)"
	stop_pipeline
	summary "$t" "$idle"
done

# The sinks: the two target steps with -g and --prom, against the same
# steps of the plain pipeline above.
tcp_port() {
	p=$((30000 + $$ % 20000 + $1))
	while [ -n "$(ss -Hltn "sport = :$p" 2>/dev/null)" ]; do
		p=$((p + 1))
	done
	echo "$p"
}
if [ "${SINKS:-1}" != 0 ]; then
	cport=$(tcp_port 0)
	pport=$(tcp_port 1)
	[ "$pport" = "$cport" ] && pport=$((pport + 1))
	stages="$base_stages carbon prom"
	sink_args="-g 127.0.0.1:$cport --prom 127.0.0.1:$pport"
	for t in $transports; do
		[ -s "$tmp/rows.$(tkey "$t")" ] || continue
		nc -lk 127.0.0.1 "$cport" >/dev/null 2>&1 &
		aux_pids=$!
		if ! start_pipeline "$t"; then
			echo "== sinks, transport $t: not up: $(tail -n 1 "$tmp/sup.log")"
			stop_pipeline
			continue
		fi
		( while :; do curl -s -o /dev/null "http://127.0.0.1:$pport/metrics"
		    sleep 1; done ) &
		aux_pids="$aux_pids $!"
		echo "== transport $t with both sinks (-g, --prom scraped each second)"
		: >"$tmp/rows"
		header
		pipe_step 1 200000 100 0 0 0 0
		pipe_step 32 3200000 100 0 0 0 0
		stop_pipeline
		cp "$tmp/rows" "$tmp/sinks.$(tkey "$t")"
		awk -v t="$t" 'NR == FNR { if (($1 == 1 && $2 == 200000) ||
			($1 == 32 && $2 == 3200000)) base[$1] = $7 / ($5 / 1e6); next }
		{ s[$1] = $7 / ($5 / 1e6) }
		END {
			printf "sinks %s: cpu-s/M at 1 line 200k %.3f -> %.3f (%+.1f%%), " \
			    "at 32 lines 3.2M %.3f -> %.3f (%+.1f%%)\n", t,
			    base[1], s[1], 100 * (s[1] / base[1] - 1),
			    base[32], s[32], 100 * (s[32] / base[32] - 1)
		}' "$tmp/rows.$(tkey "$t")" "$tmp/sinks.$(tkey "$t")"
	done
	stages=$base_stages
	sink_args=
fi

# Both transports: CPU per million events, step by step.
if [ -s "$tmp/rows.mqueue" ] && [ -s "$tmp/rows.shm" ]; then
	paste -d' ' "$tmp/rows.mqueue" "$tmp/rows.shm" | awk '{
		a = $7 / ($5 / 1e6); b = $(14 + 7) / ($(14 + 5) / 1e6)
		r += b / a; n++
		fa += $5 / $4; fb += $(14 + 5) / $(14 + 4)
	} END {
		printf "shm vs mqueue: cpu-s/M %.2f x on average over %d steps; " \
		    "delivered rate %.2f x\n", r / n, n, fb / fa
	}'
fi
