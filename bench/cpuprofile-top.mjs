#!/usr/bin/env node
// Summarises a V8 .cpuprofile (node --cpu-prof): where the time went, by self time.
//
//   node bench/cpuprofile-top.mjs FILE.cpuprofile [TOP]
//
// Prints markdown: the share of samples by area (our code in dist/, node internals, GC,
// idle/program), then the TOP (default 25) functions by self time with their location.
import { readFileSync } from 'node:fs';

const [file, topArg] = process.argv.slice(2);
if (!file) {
  console.error('usage: node bench/cpuprofile-top.mjs FILE.cpuprofile [TOP]');
  process.exit(2);
}
const top = Number(topArg ?? 25);
const prof = JSON.parse(readFileSync(file, 'utf8'));
const byId = new Map(prof.nodes.map((n) => [n.id, n]));
const self = new Map();
// Samples and their time deltas (µs): each sample's time goes to the node it hit.
for (let i = 0; i < prof.samples.length; i++) {
  const id = prof.samples[i];
  const dt = prof.timeDeltas[i] ?? 0;
  self.set(id, (self.get(id) ?? 0) + dt);
}
const total = [...self.values()].reduce((a, b) => a + b, 0);

function area(cf) {
  const name = cf.functionName;
  const url = cf.url ?? '';
  if (name === '(idle)') return 'idle (waiting in epoll)';
  if (name === '(garbage collector)') return 'garbage collector';
  if (name === '(program)') return 'program (native: syscalls, libuv, V8 outside JS)';
  if (url.includes('/dist/') || url.includes('/src/')) {
    const m = /\/(?:dist|src)\/([^/]+)\//.exec(url);
    return `keepalive-exporter ${m ? m[1] : ''}/`;
  }
  if (url.includes('node_modules')) return 'node_modules (fastify, prom-client...)';
  if (url.startsWith('node:') || url === '' ) return 'node internals (net, streams, timers) and natives';
  return 'other';
}

const fn = new Map();
const areas = new Map();
for (const [id, t] of self) {
  const n = byId.get(id);
  const cf = n.callFrame;
  const where = cf.url ? `${cf.url.replace(/^.*\/(dist|src)\//, '$1/').replace(/^file:\/\//, '')}:${cf.lineNumber + 1}` : '';
  const key = `${cf.functionName || '(anonymous)'} ${where}`.trim();
  fn.set(key, (fn.get(key) ?? 0) + t);
  const a = area(cf);
  areas.set(a, (areas.get(a) ?? 0) + t);
}
const pct = (t) => ((100 * t) / total).toFixed(1);
console.log(`Profile ${file}: ${(total / 1e6).toFixed(2)} s sampled, ${prof.samples.length} samples`);
console.log('');
console.log('| area | share |');
console.log('| --- | ---: |');
for (const [a, t] of [...areas].sort((x, y) => y[1] - x[1])) console.log(`| ${a} | ${pct(t)}% |`);
console.log('');
console.log(`| function (self time) | share |`);
console.log('| --- | ---: |');
for (const [k, t] of [...fn].sort((x, y) => y[1] - x[1]).slice(0, top)) console.log(`| \`${k}\` | ${pct(t)}% |`);
