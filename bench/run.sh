#!/bin/sh
# make bench: every benchmark, each printing its own figures, then the
# whole pipeline under load (bench/pipeline.sh).
bin=${1:-bin}
set -e
for b in "$bin"/bench-*; do
	[ -x "$b" ] || continue
	case $(basename "$b") in bench-loadgen|bench-floor) continue ;; esac
	echo "== $(basename "$b")"
	"$b"
done
echo "== pipeline files"
"$(dirname "$0")/pipefile.sh" "$bin"
echo "== pipeline"
"$(dirname "$0")/pipeline.sh" "$bin"
echo "== stages"
"$(dirname "$0")/stages.sh" "$bin"
echo "== statsd"
"$(dirname "$0")/statsd.sh" "$bin"
