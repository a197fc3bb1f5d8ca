#!/usr/bin/python3
# statsd_py.py PORT FLUSH_MS - an application using Debian's python3-statsd
# (the `statsd` module) as it is: counters, sampled counters, timers with
# sample rates, gauges with deltas, a negative gauge, sets, a pipeline.
# Every datagram the client really sent (sampling is random, seeded) is
# recorded; from them this script computes what statsd 0.9 writes for the
# flush of FLUSH_MS and prints it, one "PATH VALUE" a line, after a first
# line "SENT DATAGRAMS METRICS". tests/e2e_statsd.c compares.
import math
import random
import sys

sys.path.append('/usr/lib/python3/dist-packages')
import statsd  # noqa: E402

port, flush_ms = int(sys.argv[1]), int(sys.argv[2])
random.seed(14)
sent = []


class Recorder(statsd.StatsClient):
    def _send(self, data):
        sent.append(data)
        super()._send(data)


c = Recorder('127.0.0.1', port)
for _ in range(50):
    c.incr('py.hits')
c.decr('py.hits', 3)
for _ in range(40):
    c.incr('py.sampled', 2, rate=0.5)
c.incr('py.frac', 0.25)
for v in range(1, 101):
    c.timing('py.lat', v * 3 % 97, rate=0.25 if v % 2 else 1)
c.timing('py.once', 42)
c.gauge('py.temp', 20)
c.gauge('py.temp', 5, delta=True)
c.gauge('py.temp', -2, delta=True)
c.gauge('py.neg', -7)
c.gauge('py.fromdelta', -4, delta=True)
for m in ['alice', 'bob', 'alice', 'carol', 'bob']:
    c.set('py.users', m)
with c.pipeline() as p:
    p.incr('py.piped', 7)
    p.timing('py.piped_ms', 12)
    p.gauge('py.piped_g', 3)
c.close()

flush_s = flush_ms / 1000
counters, timers, tcount, gauges, sets = {}, {}, {}, {}, {}
metrics = 0
for dgram in sent:
    for line in dgram.split('\n'):
        metrics += 1
        name, rest = line.split(':', 1)
        f = rest.split('|')
        rate = float(f[2][1:]) if len(f) > 2 else 1.0
        if f[1] == 'c':
            counters[name] = counters.get(name, 0.0) + float(f[0]) * (1 / rate)
        elif f[1] == 'ms':
            timers.setdefault(name, []).append(float(f[0]))
            tcount[name] = tcount.get(name, 0.0) + 1 / rate
        elif f[1] == 'g':
            v = float(f[0])
            if f[0][0] in '+-' and gauges.get(name):
                gauges[name] += v
            else:
                gauges[name] = v
        elif f[1] == 's':
            sets.setdefault(name, set()).add(f[0])

print('SENT %d %d' % (len(sent), metrics))
out = []
for n, v in counters.items():
    out += [('stats_counts.' + n, v), ('stats.' + n, v / flush_s)]
for n, vals in timers.items():
    vals.sort()
    total = 0.0
    for v in vals:
        total += v
    out += [('stats.timers.%s.count' % n, tcount[n]),
            ('stats.timers.%s.count_ps' % n, tcount[n] / flush_s),
            ('stats.timers.%s.upper' % n, vals[-1]),
            ('stats.timers.%s.lower' % n, vals[0]),
            ('stats.timers.%s.sum' % n, total),
            ('stats.timers.%s.mean' % n, total / len(vals))]
    k = len(vals) if len(vals) == 1 else math.floor(0.9 * len(vals) + 0.5)
    s90 = 0.0
    for v in vals[:k]:
        s90 += v
    out += [('stats.timers.%s.count_90' % n, k),
            ('stats.timers.%s.upper_90' % n, vals[k - 1]),
            ('stats.timers.%s.sum_90' % n, s90)]
for n, v in gauges.items():
    out.append(('stats.gauges.' + n, v))
for n, m in sets.items():
    out.append(('stats.sets.%s.count' % n, len(m)))
out += [('stats_counts.statsd.packets_received', len(sent)),
        ('stats_counts.statsd.metrics_received', metrics),
        ('stats_counts.statsd.bad_lines_seen', 0)]
for p, v in out:
    print('%s %r' % (p, float(v)))
