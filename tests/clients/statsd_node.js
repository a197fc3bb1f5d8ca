// statsd_node.js PORT FLUSH_MS - an application using hot-shots (npm) as it
// is: counters (sampled too), timers with sample rates, histogram and
// distribution (timers in telem, DESIGN §13), gauges with deltas, sets,
// global and per-call DogStatsD tags. Every message the client really sent
// (sampling is random) is recorded; from them this script computes what
// statsd 0.9 writes for a flush of FLUSH_MS and prints "SENT DATAGRAMS
// METRICS", then one "PATH VALUE" a line. tests/e2e_statsd.c compares.
'use strict';
const StatsD = require('hot-shots');

const port = Number(process.argv[2]);
const flushS = Number(process.argv[3]) / 1000;
const sent = [];
const orig = StatsD.prototype._send;
StatsD.prototype._send = function (message, callback) {
  sent.push(message);
  return orig.call(this, message, callback);
};

const c = new StatsD({ host: '127.0.0.1', port, globalTags: ['env:test'] });
for (let i = 0; i < 30; i++) c.increment('node.req');
c.decrement('node.req', 4);
for (let i = 0; i < 60; i++) c.increment('node.sampled', 3, 0.5);
for (let i = 1; i <= 80; i++) c.timing('node.lat', (i * 7) % 53, i % 2 ? 0.25 : 1);
c.histogram('node.size', 10);
c.histogram('node.size', 30);
c.distribution('node.dist', 5);
c.gauge('node.load', 10);
c.gaugeDelta('node.load', 4);
c.gaugeDelta('node.load', -1.5);
c.gaugeDelta('node.fresh', -6);
for (const m of ['u1', 'u2', 'u1', 'u3']) c.unique('node.users', m);
c.increment('node.tagged', 2, ['route:home', 'code:200']);

c.close(() => {
  const counters = new Map(), timers = new Map(), tcount = new Map(),
    gauges = new Map(), sets = new Map();
  for (const msg of sent) {
    // name:value|type[|@rate][|#tags]; tags sorted into the key as telem
    // keeps them (name;k=v;...)
    const f = msg.split('|');
    const colon = f[0].indexOf(':');
    let name = f[0].slice(0, colon);
    const value = f[0].slice(colon + 1);
    let rate = 1;
    let tags = [];
    for (const x of f.slice(2)) {
      if (x[0] === '@') rate = Number(x.slice(1));
      if (x[0] === '#') tags = x.slice(1).split(',').map((t) => t.replace(':', '='));
    }
    if (tags.length) name += ';' + tags.sort().join(';');
    const add = (m, k, v) => m.set(k, (m.get(k) || 0) + v);
    if (f[1] === 'c') {
      add(counters, name, Number(value) * (1 / rate));
    } else if (f[1] === 'ms' || f[1] === 'h' || f[1] === 'd') {
      if (!timers.has(name)) timers.set(name, []);
      timers.get(name).push(Number(value));
      add(tcount, name, 1 / rate);
    } else if (f[1] === 'g') {
      if ((value[0] === '+' || value[0] === '-') && gauges.get(name)) {
        gauges.set(name, gauges.get(name) + Number(value));
      } else {
        gauges.set(name, Number(value));
      }
    } else if (f[1] === 's') {
      if (!sets.has(name)) sets.set(name, new Set());
      sets.get(name).add(value);
    }
  }
  const out = [];
  // a key's tags go after the whole path (name;k=v)
  const path = (pre, key, post) => {
    const i = key.indexOf(';');
    return i < 0 ? pre + key + post : pre + key.slice(0, i) + post + key.slice(i);
  };
  for (const [k, v] of counters) {
    out.push([path('stats_counts.', k, ''), v], [path('stats.', k, ''), v / flushS]);
  }
  for (const [k, vals] of timers) {
    vals.sort((a, b) => a - b);
    let sum = 0;
    for (const v of vals) sum += v;
    const t = (field) => path('stats.timers.', k, '.' + field);
    out.push([t('count'), tcount.get(k)], [t('count_ps'), tcount.get(k) / flushS],
      [t('upper'), vals[vals.length - 1]], [t('lower'), vals[0]], [t('sum'), sum],
      [t('mean'), sum / vals.length]);
    const n = vals.length;
    const k90 = n === 1 ? 1 : Math.round(0.9 * n);
    if (k90 > 0) {
      let s90 = 0;
      for (const v of vals.slice(0, k90)) s90 += v;
      out.push([t('count_90'), k90], [t('upper_90'), vals[k90 - 1]], [t('sum_90'), s90]);
    }
  }
  for (const [k, v] of gauges) out.push([path('stats.gauges.', k, ''), v]);
  for (const [k, s] of sets) out.push([path('stats.sets.', k, '.count'), s.size]);
  out.push(['stats_counts.statsd.packets_received', sent.length],
    ['stats_counts.statsd.metrics_received', sent.length],
    ['stats_counts.statsd.bad_lines_seen', 0]);
  console.log(`SENT ${sent.length} ${sent.length}`);
  for (const [p, v] of out) console.log(`${p} ${String(v)}`);
});
