#!/bin/sh
# bench/pipefile.sh BIN [RUNS]: how long a nine-stage pipeline file takes
# to start (supervisor exec to "pipeline up" in its log: eight queues, the
# stats segment, nine stages started one after another, each ready before
# the next), and how long `telemctl reload` takes to swap one stage (the
# reply, then until status shows the new process up). Both transports,
# -m 1024; prints the median and the range of RUNS runs (default 5).
bin=$(cd "${1:-bin}" && pwd)
runs=${2:-5}
dir=$(mktemp -d /tmp/telem-bench-pipefile-XXXXXX)
inst=bpf$$
trap 'kill $sup 2>/dev/null; wait 2>/dev/null; rm -rf "$dir"' EXIT INT TERM

now_us() { echo $(( $(date +%s%N) / 1000 )); }

conf() {  # conf FILE LIMIT PORT
	cat >"$1" <<CONF
[pipeline]
flush_ms = 1000
[stage ingest]
exec = telem-ingest
udp = 127.0.0.1:$3
out = low high web tiny
[stage low]
exec = telem-filter
args = --keep-below $2
out = ckms ckms-fine
flush = yes
[stage high]
exec = telem-filter
args = --keep-above 100
out = cma
flush = yes
[stage web]
exec = telem-example-prefix
args = --prefix web.
out = cma-web
flush = yes
[stage tiny]
exec = telem-filter
args = --keep-below 10
out = cma-web
flush = yes
[stage ckms]
exec = telem-egress-ckms
[stage ckms-fine]
exec = telem-egress-ckms
args = --error 0.001
[stage cma]
exec = telem-egress-cma
[stage cma-web]
exec = telem-egress-cma
CONF
}

median() { sort -n | awk '{ v[NR] = $1 } END { printf "%d ms (%d..%d)", v[int((NR + 1) / 2)] / 1000, v[1] / 1000, v[NR] / 1000 }'; }

low_pid() { "$bin/telemctl" -i $inst status | sed -n 's/^stage=low pid=\([0-9]*\) state=up .*/\1/p'; }

for t in mqueue shm; do
	: >"$dir/start" ; : >"$dir/reload"
	i=0
	while [ $i -lt "$runs" ]; do
		i=$((i + 1))
		port=$((20000 + ($$ + i) % 20000))
		conf "$dir/p.conf" 100 $port
		: >"$dir/err"
		t0=$(now_us)
		"$bin/telem-supervisor" -i $inst -t $t -m 1024 -c "$dir/p.conf" \
		    >/dev/null 2>"$dir/err" &
		sup=$!
		until grep -q "pipeline up" "$dir/err"; do
			kill -0 $sup 2>/dev/null || { cat "$dir/err"; exit 1; }
			sleep 0.002
		done
		echo $(( $(now_us) - t0 )) >>"$dir/start"
		old=$(low_pid)
		conf "$dir/p.conf" 50 $port
		t0=$(now_us)
		"$bin/telemctl" -i $inst reload >/dev/null || { cat "$dir/err"; exit 1; }
		while p=$(low_pid); [ -z "$p" ] || [ "$p" = "$old" ]; do sleep 0.002; done
		echo $(( $(now_us) - t0 )) >>"$dir/reload"
		"$bin/telemctl" -i $inst stop >/dev/null
		wait $sup
	done
	printf "%-6s nine-stage start %s, reload swapping one stage %s  (%d runs)\n" \
	    $t "$(median <"$dir/start")" "$(median <"$dir/reload")" "$runs"
done
