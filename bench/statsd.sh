#!/bin/sh
# statsd.sh - statsd-format steps (docs/design.md §14): 100 timer names, values
# uniform 1..1000, sent by bench-loadgen -f statsd (a) 1 line per datagram
# flat out and (b) 32 lines per datagram at 100 000 datagrams/s, into
#   telem   telem-supervisor -c (ingest --protocol statsd -> telem-egress-statsd)
#   statsd  Etsy statsd 0.9.0 (npm; `make bench-peers` installs it under
#           build/peers), when present
#   collectd  collectd's statsd plugin (Debian collectd-core), when present
# each flushing every second to a stand-in carbon (socat into a file).
# One row per step: metrics offered, delivered (%), CPU-s per million
# metrics delivered, and the ratio to collectd's. Delivered: telem and
# statsd by their own metrics_received counters as written to carbon;
# collectd by the kernel's drop count of its socket (what it did not
# lose it took). Figures only, no asserts.
#   usage: bench/statsd.sh [bin]     env: STEP_S (5), TRANSPORT (the
#   transports telem runs on, one after the other: "mqueue shm")
set -u
bin=${1:-bin}
step_s=${STEP_S:-5}
transport=${TRANSPORT:-mqueue shm}
hz=$(getconf CLK_TCK)
tmp=$(mktemp -d "${TMPDIR:-/tmp}/statsd-bench.XXXXXX")
peers=$(cd "$(dirname "$0")/.." && pwd)/build/peers
pids=
sink_pid=

cleanup() {
	for p in $pids $sink_pid; do kill "$p" 2>/dev/null; done
	for p in $pids $sink_pid; do wait "$p" 2>/dev/null; done
	rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 1' INT TERM

# free_port: bench/lib.sh
. "$(dirname "$0")/lib.sh"

cpu_ticks() {
	for p in "$@"; do sed 's/.*) //' "/proc/$p/stat" 2>/dev/null; done |
	    awk '{ t += $12 + $13 } END { printf "%d\n", t }'
}

# The kernel's drop count of the UDP socket bound to 127.0.0.1:$1.
udp_drops() {
	awk -v port="$(printf '%04X' "$1")" '$2 == "0100007F:" port { d += $NF }
	    END { print d + 0 }' /proc/net/udp
}

# Sum of the values of one path written to the stand-in carbon.
sink_sum() {
	awk -v p="$1" '$1 == p { s += $2 } END { printf "%.0f\n", s }' "$tmp/carbon"
}

start_sink() {
	sink_port=$(free_port t 23000)
	: >"$tmp/carbon"
	socat -u "TCP-LISTEN:$sink_port,fork,reuseaddr" "OPEN:$tmp/carbon,append" &
	sink_pid=$!
	sleep 0.3
}

# bench-loadgen args for $1 lines per datagram at $2 datagrams/s (0: flat out).
load_args() {
	if [ "$2" -eq 0 ]; then
		echo "-f statsd -L $1 -k 100 -d uniform:1:1000 -P 4096 -r 0 -n 1000000000 -t $step_s"
	else
		echo "-f statsd -L $1 -k 100 -d uniform:1:1000 -P 4096 -r $2 -n $(($2 * step_s))" \
		    "-t $((step_s + 5))"
	fi
}

# Run one step against the server on UDP $port whose processes are $pids;
# $1 lines, $2 datagrams/s; delivered by `delivered` (a function name).
# Prints: lines rate sent delivered cpu_s
step() {
	d0=$($delivered) t0=$(cpu_ticks $pids)
	# shellcheck disable=SC2046
	"$bin/bench-loadgen" -p "$port" $(load_args "$1" "$2") >"$tmp/lg" 2>/dev/null
	sent=$(sed -n 's/^sent_events=\([0-9]*\) .*/\1/p' "$tmp/lg")
	# let it drain: two flushes after the last change
	prev=-1 i=0
	while [ "$i" -lt 30 ]; do
		sleep 1.2
		d1=$($delivered)
		[ "$d1" = "$prev" ] && break
		prev=$d1 i=$((i + 1))
	done
	t1=$(cpu_ticks $pids)
	echo "$1 $2 ${sent:-0} $((d1 - d0)) $(awk -v t=$((t1 - t0)) -v hz="$hz" \
	    'BEGIN { print t / hz }')"
}

run_steps() { # $1: server name
	step 1 0 | sed "s|^|$1 |" >>"$tmp/rows"
	step 32 100000 | sed "s|^|$1 |" >>"$tmp/rows"
}

# --- telem
telem_delivered() { sink_sum stats_counts.statsd.metrics_received; }
run_telem() { # $1: transport
	transport=$1
	port=$(free_port u 21000)
	cat >"$tmp/telem.conf" <<EOF
[pipeline]
transport = $transport
flush_ms = 1000
[stage ingest]
exec = telem-ingest
args = --protocol statsd
udp = 127.0.0.1:$port
out = statsd
[stage statsd]
exec = telem-egress-statsd
args = --graphite 127.0.0.1:$sink_port
flush = yes
EOF
	inst=sdbench$$
	# its own session: what it signals at its stop is not this script
	setsid "$bin/telem-supervisor" -i "$inst" -c "$tmp/telem.conf" >/dev/null \
	    2>"$tmp/sup.log" &
	sup=$!
	i=0
	until "$bin/telemctl" -i "$inst" status 2>/dev/null | grep -c 'state=up' |
	    grep -qx 2; do
		i=$((i + 1))
		if [ "$i" -gt 100 ]; then
			echo "telem: not up: $(tail -n 2 "$tmp/sup.log")"
			kill "$sup"; wait "$sup"
			return
		fi
		sleep 0.1
	done
	pids="$sup $("$bin/telemctl" -i "$inst" status | sed -n 's/.* pid=\([0-9]*\) .*/\1/p' | tr '\n' ' ')"
	delivered=telem_delivered
	name=telem
	[ "$ntransports" -gt 1 ] && name=telem/$transport
	run_steps "$name"
	kill -TERM "$sup"
	wait "$sup" 2>/dev/null
	pids=
}

# --- Etsy statsd 0.9.0
run_statsd() {
	s="$peers/node_modules/statsd/stats.js"
	if [ ! -f "$s" ] || ! command -v node >/dev/null 2>&1; then
		echo "statsd 0.9.0: not installed (make bench-peers)"
		return
	fi
	port=$(free_port u 25000)
	cat >"$tmp/statsd.js" <<EOF
{ port: $port, address: "127.0.0.1", flushInterval: 1000,
  graphiteHost: "127.0.0.1", graphitePort: $sink_port,
  backends: [ "./backends/graphite" ] }
EOF
	(cd "$peers/node_modules/statsd" && exec node stats.js "$tmp/statsd.js") \
	    >"$tmp/statsd.log" 2>&1 &
	pids=$!
	sleep 2
	delivered=telem_delivered
	run_steps statsd
	kill "$pids"; wait "$pids" 2>/dev/null
	pids=
}

# --- collectd's statsd plugin
run_collectd() {
	if ! command -v collectd >/dev/null 2>&1; then
		echo "collectd: not installed (make bench-peers)"
		return
	fi
	port=$(free_port u 27000)
	cat >"$tmp/collectd.conf" <<EOF
Hostname "bench"
BaseDir "$tmp"
PIDFile "$tmp/collectd.pid"
PluginDir "/usr/lib/collectd"
Interval 1
LoadPlugin statsd
LoadPlugin write_graphite
<Plugin statsd>
  Host "127.0.0.1"
  Port "$port"
  TimerPercentile 90
  TimerLower true
  TimerUpper true
  TimerSum true
  TimerCount true
</Plugin>
<Plugin write_graphite>
  <Node "sink">
    Host "127.0.0.1"
    Port "$sink_port"
    Protocol "tcp"
  </Node>
</Plugin>
EOF
	collectd -f -C "$tmp/collectd.conf" >"$tmp/collectd.log" 2>&1 &
	pids=$!
	sleep 2
	for spec in "1 0" "32 100000"; do
		# shellcheck disable=SC2086
		set -- $spec
		d0=$(udp_drops "$port") t0=$(cpu_ticks $pids)
		# shellcheck disable=SC2046
		"$bin/bench-loadgen" -p "$port" $(load_args "$1" "$2") >"$tmp/lg" 2>/dev/null
		sent=$(sed -n 's/^sent_events=\([0-9]*\) .*/\1/p' "$tmp/lg")
		sleep 3
		t1=$(cpu_ticks $pids) d1=$(udp_drops "$port")
		echo "collectd $1 $2 ${sent:-0} $(( ${sent:-0} - (d1 - d0) * $1 )) $(awk \
		    -v t=$((t1 - t0)) -v hz="$hz" 'BEGIN { print t / hz }')" >>"$tmp/rows"
	done
	kill "$pids"; wait "$pids" 2>/dev/null
	pids=
}

transports=$transport
ntransports=$(echo $transports | wc -w)
echo "statsd steps: $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg)," \
    "$step_s s a step, 100 timer names, values 1..1000, flush 1 s, transport $transports"
: >"$tmp/rows"
start_sink
for t in $transports; do
	run_telem "$t"
done
run_statsd
run_collectd

printf "%-12s %5s %9s %10s %9s %8s %9s %s\n" server lines offered sent/s \
    delivered% cpu_s cpu/M "x collectd"
awk -v s="$step_s" '
	{ key = $2 " " $3; cpm = $5 > 0 ? $6 / ($5 / 1e6) : 0
	  row[NR] = $0; cp[NR] = cpm; if ($1 == "collectd") col[key] = cpm }
	END {
		for (i = 1; i <= NR; i++) {
			split(row[i], f, " "); key = f[2] " " f[3]
			# (parenthesised: a bare ">" in a printf list redirects)
			printf("%-12s %5d %9s %10.0f %8.3f%% %8.2f %9.3f %s\n", f[1],
			    f[2], f[3] == 0 ? "max" : f[3] * f[2], f[4] / s,
			    f[4] ? 100 * f[5] / f[4] : 0, f[6], cp[i],
			    (col[key] > 0) ? sprintf("%.2f", cp[i] / col[key]) : "-")
		}
	}' "$tmp/rows"
