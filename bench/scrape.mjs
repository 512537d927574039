#!/usr/bin/env node
/**
 * /metrics under load: render time of a large registry and /healthz latency under concurrent
 * scrapes (issue 9, points 4 and 5).
 *
 *   node bench/scrape.mjs [--dist DIR] [--servers 320] [--scrapes 1000] [--max-requests 40]
 *
 * A child process builds the daemon's Exporter and fastify app from DIR (default dist/; point it
 * at a build of an older commit to compare), fills the exporter with synthetic connections to
 * --servers servers (320: about 25,000 series; the default --max-servers is 500) and listens on
 * 127.0.0.1:0. This process then measures, over real HTTP on loopback:
 *
 *  1. render: 5 sequential scrapes with nothing else going on (text, then OpenMetrics); the
 *     child reports the longest event-loop block it saw (monitorEventLoopDelay) meanwhile;
 *  2. load: --scrapes concurrent text scrapes from a third process (one agent, that many
 *     sockets, bodies discarded) while this process probes /healthz every 5 ms on a connection
 *     opened beforehand; prints the probes' p50/p99/max, the scrapes' status codes and errors
 *     (ECONNRESET...), and the server's longest event-loop block and peak RSS.
 *
 * Bounded: one round of scrapes, 120 s at most; the child is killed at the end.
 */
import { fork } from 'node:child_process';
import http from 'node:http';
import { join, resolve } from 'node:path';
import { monitorEventLoopDelay, performance } from 'node:perf_hooks';
import { parseArgs } from 'node:util';

const { values: args } = parseArgs({
  options: {
    dist: { type: 'string', default: join(import.meta.dirname, '../dist') },
    servers: { type: 'string', default: '320' },
    scrapes: { type: 'string', default: '1000' },
    'max-requests': { type: 'string', default: '40' },
    serve: { type: 'boolean', default: false },
    load: { type: 'string' },
  },
});

if (args.serve) await serve();
else if (args.load) await load();
else await main();

/** The child: an exporter full of synthetic series behind the daemon's app. */
async function serve() {
  const dist = resolve(args.dist);
  const { Exporter } = await import(join(dist, 'metrics/exporter.js'));
  const { buildApp } = await import(join(dist, 'server/app.js'));
  const { Engine } = await import(join(dist, 'conn/engine.js'));
  const engine = new Engine();
  const sources = [{ name: 'bench', kind: 'file', up: true, done: false, restarts: 0, kernelDrops: 0, interfaceDrops: 0, engine }];
  const exporter = new Exporter({ maxServers: 500, sources: () => sources });
  const feed = exporter.forSource('bench');
  const reasons = ['idle_timeout', 'max_requests', 'client_close', 'client_idle', 'race', 'reset'];
  let id = 0;
  const servers = Number(args.servers);
  for (let s = 0; s < servers; s++) {
    const server = `172.16.${s >> 8}.${s & 255}:80`;
    for (let k = 0; k < 6; k++) {
      const c = {
        id: id++, client: `10.0.0.1:${10000 + id}`, server, ipVersion: 4, openedAt: 1e9 + id, closedAt: null,
        handshakeRtt: 0.0001 * (k + 1), requests: 0, reusedRequests: 0, responses: 0, handshakeTimeSaved: 0,
        advertisedTimeout: 5, advertisedMax: 100, closeReason: 'open', closedBy: null, closedWith: null,
        idleBeforeClose: null, tunneled: false, midstream: false,
      };
      feed.opened(c);
      for (let r = 0; r <= k; r++) {
        c.requests++;
        if (r > 0) c.reusedRequests++;
        feed.request(c, { reused: r > 0, savedSeconds: r > 0 ? 0.0001 : 0 });
      }
      c.closeReason = reasons[k];
      c.closedBy = k % 2 ? 'server' : 'client';
      c.closedAt = c.openedAt + k * 1.7;
      c.idleBeforeClose = k * 0.9;
      // The last one stays open, so the open-connection gauge has series too.
      if (k < 5) feed.closed(c);
    }
  }
  const maxRequests = Number(args['max-requests']);
  const app = buildApp({ exporter, sources: () => sources, version: 'bench', webMaxRequests: maxRequests });
  const address = await app.listen({ host: '127.0.0.1', port: 0 });
  const delay = monitorEventLoopDelay({ resolution: 1 });
  process.on('message', (m) => {
    if (m === 'reset') { delay.reset(); delay.enable(); process.send({ ok: true }); }
    if (m === 'stats') {
      delay.disable();
      process.send({ maxBlockMs: delay.max / 1e6, maxRssMB: process.resourceUsage().maxRSS / 1024 });
    }
  });
  // A clean exit, so `node --cpu-prof bench/scrape.mjs` writes the server's profile too.
  process.once('SIGTERM', () => { void app.close().then(() => process.exit(0)); });
  process.send({ address });
}

/** A GET whose body is counted and dropped; never rejects (errors are results). */
function get(url, path, agent, headers = {}) {
  return new Promise((res) => {
    const t0 = performance.now();
    const done = (code, bytes) => res({ code, ms: performance.now() - t0, bytes });
    const req = http.get({ host: url.hostname, port: url.port, path, agent, headers }, (r) => {
      let bytes = 0;
      r.on('data', (d) => { bytes += d.length; });
      r.on('end', () => done(r.statusCode, bytes));
      r.on('error', (e) => done(e.code ?? 'error', bytes));
    });
    req.on('error', (e) => done(e.code ?? 'error', 0));
  });
}

/** The scrape load, in its own process so its work does not delay the probes' own event loop. */
async function load() {
  const url = new URL(args.load);
  const n = Number(args.scrapes);
  const agent = new http.Agent({ keepAlive: false, maxSockets: n });
  const t0 = performance.now();
  const results = await Promise.all(Array.from({ length: n }, () => get(url, '/metrics', agent)));
  const codes = {};
  for (const r of results) codes[r.code] = (codes[r.code] ?? 0) + 1;
  process.send({ codes, wallMs: performance.now() - t0 });
  agent.destroy();
  process.disconnect();
}

function spawnChild(argv) {
  const child = fork(import.meta.filename, argv, { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  const next = () => new Promise((res) => child.once('message', res));
  return { child, next, ask: (m) => { const p = next(); child.send(m); return p; } };
}

async function main() {
  let stopping = false;
  const server = spawnChild(['--serve', '--dist', args.dist, '--servers', args.servers, '--max-requests', args['max-requests']]);
  server.child.once('exit', (code, signal) => { if (!stopping) { console.error(`bench: server exited (${signal ?? code})`); process.exit(1); } });
  const killer = setTimeout(() => { console.error('bench: 120 s limit reached'); server.child.kill('SIGKILL'); process.exit(1); }, 120_000);
  try {
    const { address } = await server.next();
    const url = new URL(address);

    // 1. Render time, alone.
    const one = new http.Agent({ keepAlive: true, maxSockets: 1 });
    await get(url, '/metrics', one); // warm-up
    for (const [name, headers] of [['text', {}], ['openmetrics', { accept: 'application/openmetrics-text; version=1.0.0' }]]) {
      await server.ask('reset');
      const times = [];
      let size = 0;
      for (let i = 0; i < 5; i++) { const r = await get(url, '/metrics', one, headers); times.push(r.ms); size = r.bytes; }
      const { maxBlockMs } = await server.ask('stats');
      times.sort((a, b) => a - b);
      console.log(`render ${name}: ${(size / 1e6).toFixed(2)} MB, scrape median ${times[2].toFixed(1)} ms (min ${times[0].toFixed(1)}), longest event-loop block ${maxBlockMs.toFixed(1)} ms`);
    }
    const series = (await new Promise((res) => http.get(`${address}/metrics`, (r) => { let s = ''; r.setEncoding('utf8'); r.on('data', (d) => { s += d; }); r.on('end', () => res(s)); })))
      .split('\n').filter((l) => l !== '' && !l.startsWith('#')).length;
    console.log(`series: ${series} (servers ${args.servers})`);

    // 2. Concurrent scrapes from another process, probes from this one on an open connection.
    const probeAgent = new http.Agent({ keepAlive: true, maxSockets: 1 });
    await get(url, '/healthz', probeAgent);
    await server.ask('reset');
    const loader = spawnChild(['--load', address, '--scrapes', args.scrapes]);
    let result = null;
    void loader.next().then((m) => { result = m; });
    const probes = [];
    while (result === null) {
      probes.push(await get(url, '/healthz', probeAgent));
      await new Promise((r) => setTimeout(r, 5));
    }
    const { maxBlockMs, maxRssMB } = await server.ask('stats');
    const lat = probes.map((p) => p.ms).sort((a, b) => a - b);
    const pct = (q) => lat[Math.min(lat.length - 1, Math.floor(q * lat.length))].toFixed(1);
    const probeCodes = {};
    for (const p of probes) probeCodes[p.code] = (probeCodes[p.code] ?? 0) + 1;
    console.log(`load: ${args.scrapes} concurrent scrapes in ${(result.wallMs / 1000).toFixed(2)} s; codes ${JSON.stringify(result.codes)}; max-requests ${args['max-requests']}`);
    console.log(`/healthz: ${probes.length} probes ${JSON.stringify(probeCodes)}, p50 ${pct(0.5)} ms, p99 ${pct(0.99)} ms, max ${lat[lat.length - 1].toFixed(1)} ms`);
    console.log(`server: longest event-loop block ${maxBlockMs.toFixed(1)} ms, peak RSS ${maxRssMB.toFixed(0)} MB`);
    probeAgent.destroy();
    one.destroy();
  } finally {
    clearTimeout(killer);
    stopping = true;
    server.child.kill('SIGTERM');
  }
}
