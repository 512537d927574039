/**
 * /metrics under concurrent scrapes (issue 9, point 5), over real sockets: the daemon's app
 * listening on 127.0.0.1:0, node's http client.
 *
 *  - 1,000 concurrent scrapes of ~26,000 series (from a child process: support/scrape-storm.mjs):
 *    the probes (/healthz, /readyz) keep being answered while the server has scrapes in flight,
 *    far fewer renders than scrapes happen (single flight), and the scrapes beyond
 *    --web.max-requests are 503 at once, each counted;
 *  - the cap itself, deterministically: with webMaxRequests 2 and the render held open, a third
 *    scrape is 503 while the first two wait, and both of them get the one shared render.
 *
 * No wall-time thresholds (shared machine): the assertions are on order, counts and codes; the
 * latencies are measured by bench/scrape.mjs.
 */
import { afterEach, describe, expect, it, vi } from 'vitest';
import http from 'node:http';
import { fork } from 'node:child_process';
import { join } from 'node:path';
import type { FastifyInstance } from 'fastify';
import { Gauge } from 'prom-client';
import { buildApp, LISTEN_BACKLOG } from '../../src/server/app.js';
import { Engine } from '../../src/conn/engine.js';
import { Exporter, type SourceStatus } from '../../src/metrics/exporter.js';
import { Conversation, httpRequest, httpResponse } from '../helpers/conversation.js';
import { parseProm, total } from '../helpers/prom.js';

interface Result {
  code: number | string;
  bytes: number;
  contentLength: number;
  body: string;
}

let cleanup: Array<() => Promise<void> | void> = [];
afterEach(async () => {
  for (const f of cleanup.reverse()) await f();
  cleanup = [];
});

/** A GET that never rejects: connection errors come back as their code. Keeps the body only if short. */
function get(port: number, path: string, agent: http.Agent, accept?: string): Promise<Result> {
  return new Promise((resolve) => {
    const req = http.get({ host: '127.0.0.1', port, path, agent, headers: accept ? { accept } : {} }, (res) => {
      let bytes = 0;
      let body = '';
      res.on('data', (d: Buffer) => {
        bytes += d.length;
        if (body.length < 4096) body += d.toString('utf8');
      });
      res.on('end', () => resolve({ code: res.statusCode ?? 0, bytes, contentLength: Number(res.headers['content-length'] ?? -1), body }));
      res.on('error', (e: NodeJS.ErrnoException) => resolve({ code: e.code ?? 'error', bytes, contentLength: -1, body }));
    });
    req.on('error', (e: NodeJS.ErrnoException) => resolve({ code: e.code ?? 'error', bytes: 0, contentLength: -1, body: '' }));
  });
}

function fileSource(engine: Engine): SourceStatus {
  return { name: 'file:load.pcap', kind: 'file', up: false, done: true, restarts: 0, kernelDrops: 0, interfaceDrops: 0, engine };
}

async function listen(exporter: Exporter, source: SourceStatus, webMaxRequests: number, setup?: (app: FastifyInstance) => void): Promise<{ app: FastifyInstance; port: number }> {
  const app = buildApp({ exporter, sources: () => [source], version: 'test', webMaxRequests });
  setup?.(app);
  await app.listen({ host: '127.0.0.1', port: 0, backlog: LISTEN_BACKLOG }); // as the daemon listens
  cleanup.push(() => app.close());
  const address = app.server.address();
  if (address === null || typeof address === 'string') throw new Error('no port');
  return { app, port: address.port };
}

/** `servers` servers, each with three HTTP/1.1 connections of two requests, one left open: ~53 series a server. */
function traffic(engine: Engine, servers: number): void {
  let t = 1_700_000_000;
  let port = 0;
  for (let i = 0; i < servers; i++) {
    for (let k = 0; k < 3; k++) {
      port++;
      const c = new Conversation({ client: `10.1.${(port >> 8) & 255}.${port & 255}:${30000 + port}`, server: `172.16.${i >> 8}.${i & 255}:80`, t0: t });
      c.handshake(0.0004);
      for (let r = 0; r < 2; r++) c.clientSends(httpRequest('GET', '/'), 0.0001).serverSends(httpResponse(200, 'ok', { 'Keep-Alive': 'timeout=5, max=100' }), 0.0002);
      if (k !== 2) c.close(k === 0 ? 'client' : 'server', 0.5 + k);
      c.feed(engine);
      t += 0.002;
    }
  }
}

describe('1,000 concurrent scrapes of ~26,000 series', () => {
  it('the probes are answered while scrapes are in flight; renders are shared; scrapes beyond the cap are 503 and counted', async () => {
    const engine = new Engine();
    const source = fileSource(engine);
    const exporter = new Exporter({ maxServers: 500, sources: () => [source] });
    engine.subscribe(exporter.forSource(source.name));
    traffic(engine, 500);
    // The server's own view of the scrapes in flight (admitted or not, until their response closes).
    const tracker = { inFlight: 0, max: 0 };
    const { port } = await listen(exporter, source, 100, (app) => {
      app.addHook('onRequest', async (req, reply) => {
        if (req.url !== '/metrics') return;
        tracker.inFlight++;
        tracker.max = Math.max(tracker.max, tracker.inFlight);
        reply.raw.once('close', () => { tracker.inFlight--; });
      });
    });

    const probeAgent = new http.Agent({ keepAlive: true, maxSockets: 1 });
    cleanup.push(() => probeAgent.destroy());
    expect(parseProm((await exporter.scrape('text')).toString()).length).toBeGreaterThan(25_000);
    const first = await get(port, '/metrics', probeAgent); // warm-up, and the probe connection
    expect(first.code).toBe(200);
    expect(first.bytes).toBeGreaterThan(1_500_000);
    const rendersBefore = exporter.renders;
    const servedBefore = 1;

    // 1,000 scrapes at once, one socket each, from another process.
    const N = 1000;
    const storm = fork(join(import.meta.dirname, 'support/scrape-storm.mjs'), [String(port), String(N)], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'], execArgv: [] });
    cleanup.push(() => { storm.kill('SIGKILL'); });
    let stormDone = false;
    const stormResults = new Promise<Result[]>((resolve, reject) => {
      storm.once('message', (m: { results: Result[] }) => { stormDone = true; resolve(m.results); });
      storm.once('exit', (code) => { stormDone = true; if (code !== 0) reject(new Error(`scrape-storm exited ${code}`)); });
    });
    // Wait until the server is busy with them (bounded: the storm exits within 60 s).
    await vi.waitFor(() => expect(stormDone || tracker.inFlight > 0).toBe(true), { timeout: 60_000, interval: 1 });

    // Probes one after another while the storm lasts (bounded in count); for each, whether the
    // server still had scrapes in flight when its answer arrived.
    const probes: Array<{ path: string; code: number | string; scrapesInFlight: number }> = [];
    while (!stormDone && probes.length < 5000) {
      const path = probes.length % 2 === 0 ? '/healthz' : '/readyz';
      const r = await get(port, path, probeAgent);
      probes.push({ path, code: r.code, scrapesInFlight: tracker.inFlight });
    }
    const results = await stormResults;
    const renders = exporter.renders - rendersBefore;

    // No connection was reset or refused: every scrape got an HTTP answer, 200 or 503.
    const codes = new Map<number | string, number>();
    for (const r of results) codes.set(r.code, (codes.get(r.code) ?? 0) + 1);
    expect([...codes.keys()].every((c) => c === 200 || c === 503), JSON.stringify([...codes])).toBe(true);
    const served = results.filter((r) => r.code === 200);
    const rejected = results.filter((r) => r.code === 503);
    expect(served.length + rejected.length).toBe(N);
    expect(served.length).toBeGreaterThanOrEqual(100);
    expect(rejected.length).toBeGreaterThan(0);
    for (const r of served) {
      expect(r.bytes).toBe(r.contentLength);
      expect(r.bytes).toBeGreaterThan(1_500_000);
    }
    for (const r of rejected) expect(r.body).toMatch(/^too many concurrent scrapes \(--web\.max-requests 100\)/);

    // Single flight: scrapes arriving during a render share it (measured here: ~140 renders for
    // ~680 served scrapes; without it, one render each).
    expect(renders).toBeGreaterThanOrEqual(1);
    expect(renders * 2).toBeLessThanOrEqual(served.length);
    expect(renders * 4).toBeLessThanOrEqual(N);

    // The storm really was concurrent: the server held the cap's worth of scrapes at once.
    expect(tracker.max).toBeGreaterThanOrEqual(100);
    // The probes kept being answered while scrapes were in flight: many of them were answered
    // with scrapes still in flight at the server.
    expect(probes.length).toBeGreaterThan(0);
    expect(probes.every((p) => p.code === 200), JSON.stringify(probes.filter((p) => p.code !== 200).slice(0, 3))).toBe(true);
    const duringScrapes = probes.filter((p) => p.scrapesInFlight > 0);
    expect(duringScrapes.length).toBeGreaterThanOrEqual(20);
    expect(duringScrapes.some((p) => p.path === '/readyz')).toBe(true);

    // Every scrape counted: the 503s in keepalive_scrapes_rejected_total, the 200s in keepalive_scrapes_total.
    const after = await get(port, '/metrics', new http.Agent({ keepAlive: false }));
    expect(after.code).toBe(200);
    const full = await exporter.scrape('text');
    const s = parseProm(full.toString());
    expect(total(s, 'keepalive_scrapes_rejected_total')).toBe(rejected.length);
    expect(total(s, 'keepalive_scrapes_total', { format: 'text' })).toBe(servedBefore + served.length + 1);
  }, 120_000);
});

describe('--web.max-requests', () => {
  it('with 2, a third scrape while two are in flight is 503 at once; the two share one render', async () => {
    const engine = new Engine();
    const source = fileSource(engine);
    const exporter = new Exporter({ maxServers: 500, sources: () => [source] });
    // Holds every render until the gate opens: an async collect, which the render awaits.
    let open: () => void = () => {};
    let gate = new Promise<void>((r) => { open = r; });
    new Gauge({ name: 'test_gate', help: 'holds renders open', registers: [exporter.registry], async collect() { await gate; this.set(1); } });
    let admitted = 0;
    const { port } = await listen(exporter, source, 2, (app) => {
      app.addHook('preHandler', async (req) => { if (req.url === '/metrics') admitted++; });
    });
    const agent = new http.Agent({ keepAlive: false, maxSockets: 10 });
    cleanup.push(() => { open(); agent.destroy(); });

    const one = get(port, '/metrics', agent);
    await vi.waitFor(() => expect(admitted).toBe(1), { timeout: 10_000, interval: 5 });
    const two = get(port, '/metrics', agent);
    await vi.waitFor(() => expect(admitted).toBe(2), { timeout: 10_000, interval: 5 });
    await new Promise((r) => setImmediate(r)); // the handler runs right after its preHandler hook

    // The third is answered while the first two are still waiting for their render.
    let heldDone = false;
    void Promise.all([one, two]).then(() => { heldDone = true; });
    const three = await get(port, '/metrics', agent);
    expect(three.code).toBe(503);
    expect(three.body).toBe('too many concurrent scrapes (--web.max-requests 2), try again later\n');
    // The probes too: a render waiting for its data holds nothing else up.
    expect((await get(port, '/healthz', agent)).code).toBe(200);
    expect(heldDone).toBe(false);
    expect(exporter.renders).toBe(1);

    open();
    const [r1, r2] = await Promise.all([one, two]);
    expect(r1.code).toBe(200);
    expect(r2.code).toBe(200);
    expect(r2.body).toBe(r1.body);
    expect(exporter.renders).toBe(1);

    // Both slots are free again; the next scrape is served and sees the counts.
    gate = Promise.resolve();
    const four = await get(port, '/metrics', agent);
    expect(four.code).toBe(200);
    const s = parseProm(four.body);
    expect(total(s, 'keepalive_scrapes_rejected_total')).toBe(1);
    expect(total(s, 'keepalive_scrapes_total', { format: 'text' })).toBe(2);
    expect(exporter.renders).toBe(2);
  }, 60_000);

  it('0 means no limit', async () => {
    const engine = new Engine();
    const source = fileSource(engine);
    const exporter = new Exporter({ maxServers: 500, sources: () => [source] });
    const { port } = await listen(exporter, source, 0);
    const agent = new http.Agent({ keepAlive: false, maxSockets: 200 });
    cleanup.push(() => agent.destroy());
    const results = await Promise.all(Array.from({ length: 200 }, () => get(port, '/metrics', agent)));
    expect(results.every((r) => r.code === 200)).toBe(true);
  });
});
