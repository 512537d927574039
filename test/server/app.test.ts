/**
 * The daemon's HTTP endpoints, through fastify's `inject` (no socket): content negotiation of
 * /metrics, the probes, the open-connection API and the landing page.
 */
import { afterEach, describe, expect, it } from 'vitest';
import type { FastifyInstance } from 'fastify';
import { buildApp } from '../../src/server/app.js';
import { Exporter, type SourceStatus } from '../../src/metrics/exporter.js';
import { Engine } from '../../src/conn/engine.js';
import { Conversation, httpRequest, httpResponse } from '../helpers/conversation.js';
import { parseProm, total } from '../helpers/prom.js';

function source(name: string, kind: 'live' | 'file', state: { up: boolean; done: boolean }, engine = new Engine()): SourceStatus {
  return { name, kind, up: state.up, done: state.done, restarts: 0, kernelDrops: 0, interfaceDrops: 0, engine };
}

let apps: FastifyInstance[] = [];
afterEach(async () => {
  await Promise.all(apps.map((a) => a.close()));
  apps = [];
});

function setup(sources: SourceStatus[]): { app: FastifyInstance; exporter: Exporter } {
  const exporter = new Exporter({ maxServers: 100, sources: () => sources });
  for (const s of sources) s.engine.subscribe(exporter);
  const app = buildApp({ exporter, sources: () => sources, version: '9.8.7-test' });
  apps.push(app);
  return { app, exporter };
}

/** Open connections (never closed) to 10.0.0.2:80 carrying the given numbers of requests, opened 10 ms apart. */
function openConnections(engine: Engine, requestCounts: number[], firstPort = 41000): void {
  requestCounts.forEach((n, i) => {
    const c = new Conversation({ client: `10.0.0.1:${firstPort + i}`, server: '10.0.0.2:80', t0: 1_700_000_000 + i * 0.01 });
    c.handshake(0.001);
    for (let k = 0; k < n; k++) c.clientSends(httpRequest('GET', '/'), 0.001).serverSends(httpResponse(200, 'ok'), 0.001);
    c.feed(engine);
  });
}

describe('/metrics', () => {
  it('serves Prometheus text by default', async () => {
    const engine = new Engine();
    const { app } = setup([source('file:a.pcap', 'file', { up: false, done: true }, engine)]);
    openConnections(engine, [2]);
    const res = await app.inject({ method: 'GET', url: '/metrics' });
    expect(res.statusCode).toBe(200);
    expect(res.headers['content-type']).toMatch(/^text\/plain; version=0\.0\.4/);
    expect(res.body).not.toContain('# EOF');
    expect(res.body).toContain('# TYPE keepalive_requests_total counter');
    const s = parseProm(res.body);
    expect(total(s, 'keepalive_requests_total')).toBe(2);
    expect(total(s, 'keepalive_open_connections')).toBe(1);
  });

  it('serves OpenMetrics when the scraper asks for it', async () => {
    const engine = new Engine();
    const { app } = setup([source('file:a.pcap', 'file', { up: false, done: true }, engine)]);
    openConnections(engine, [2]);
    const accept = 'application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1';
    const res = await app.inject({ method: 'GET', url: '/metrics', headers: { accept } });
    expect(res.statusCode).toBe(200);
    expect(res.headers['content-type']).toMatch(/^application\/openmetrics-text; version=1\.0\.0/);
    expect(res.body.endsWith('# EOF\n')).toBe(true);
    expect(total(parseProm(res.body), 'keepalive_requests_total')).toBe(2);
  });

  it('a plain Accept header gets Prometheus text', async () => {
    const { app } = setup([]);
    for (const accept of ['text/plain', '*/*', 'text/plain;version=0.0.4;q=1,*/*;q=0.1']) {
      const res = await app.inject({ method: 'GET', url: '/metrics', headers: { accept } });
      expect(res.statusCode, accept).toBe(200);
      expect(res.headers['content-type'], accept).toMatch(/^text\/plain/);
    }
  });
});

describe('/healthz', () => {
  it('is 200 while the process runs, whatever the sources', async () => {
    const { app } = setup([source('live:any', 'live', { up: false, done: false })]);
    const res = await app.inject({ method: 'GET', url: '/healthz' });
    expect(res.statusCode).toBe(200);
    expect(res.json()).toEqual({ status: 'ok' });
  });
});

describe('/readyz', () => {
  it('is 200 when every source is up, or a file that was read to its end', async () => {
    const { app } = setup([
      source('live:eth0', 'live', { up: true, done: false }),
      source('file:a.pcap', 'file', { up: false, done: true }),
      source('file:b.pcap', 'file', { up: true, done: false }),
    ]);
    const res = await app.inject({ method: 'GET', url: '/readyz' });
    expect(res.statusCode).toBe(200);
    const body = res.json();
    expect(body.status).toBe('ready');
    expect(body.sources.map((s: { name: string }) => s.name)).toEqual(['live:eth0', 'file:a.pcap', 'file:b.pcap']);
  });

  it('is 503 while a live source is down, naming it', async () => {
    const sources = [source('live:eth0', 'live', { up: false, done: false }), source('file:a.pcap', 'file', { up: false, done: true })];
    const { app } = setup(sources);
    const res = await app.inject({ method: 'GET', url: '/readyz' });
    expect(res.statusCode).toBe(503);
    const body = res.json();
    expect(body.status).toBe('not ready');
    expect(body.sources[0]).toMatchObject({ name: 'live:eth0', kind: 'live', up: false, done: false });
    // The status is read at every probe: the source coming back makes it ready.
    sources[0].up = true;
    expect((await app.inject({ method: 'GET', url: '/readyz' })).statusCode).toBe(200);
  });

  it('is 503 with no source at all', async () => {
    const { app } = setup([]);
    expect((await app.inject({ method: 'GET', url: '/readyz' })).statusCode).toBe(503);
  });
});

describe('/api/connections', () => {
  it('lists open connections busiest first, 100 by default', async () => {
    const engine = new Engine();
    const { app } = setup([source('live:any', 'live', { up: true, done: false }, engine)]);
    const counts = [1, 5, 3, ...new Array<number>(150).fill(2)];
    openConnections(engine, counts);
    // A handshake without a request yet is not known to be HTTP: it is not listed.
    openConnections(engine, [0], 50000);
    const res = await app.inject({ method: 'GET', url: '/api/connections' });
    expect(res.statusCode).toBe(200);
    expect(res.headers['content-type']).toMatch(/^application\/json/);
    const body = res.json();
    expect(body.open).toBe(counts.length);
    expect(body.listed).toBe(100);
    expect(body.connections).toHaveLength(100);
    const reqs = body.connections.map((c: { requests: number }) => c.requests);
    expect(reqs.slice(0, 3)).toEqual([5, 3, 2]);
    expect([...reqs].sort((a: number, b: number) => b - a)).toEqual(reqs);
    expect(body.connections[0]).toMatchObject({
      client: '10.0.0.1:41001', server: '10.0.0.2:80', requests: 5, reusedRequests: 4, midstream: false,
    });
    expect(body.connections[0].handshakeRttSeconds).toBeCloseTo(0.001, 6);
    expect(body.connections[0].openedAt).toBeCloseTo(1_700_000_000.01, 3);
    // Equal request counts: the oldest first.
    const twos = body.connections.filter((c: { requests: number }) => c.requests === 2).map((c: { openedAt: number }) => c.openedAt);
    expect([...twos].sort((a, b) => a - b)).toEqual(twos);
  });

  it('?limit= lists fewer, and more than 1000 is capped to 1000', async () => {
    const engine = new Engine();
    const { app } = setup([source('live:any', 'live', { up: true, done: false }, engine)]);
    openConnections(engine, [1, 4, 2, ...new Array<number>(1100).fill(1)]);
    const two = (await app.inject({ method: 'GET', url: '/api/connections?limit=2' })).json();
    expect(two.listed).toBe(2);
    expect(two.connections.map((c: { requests: number }) => c.requests)).toEqual([4, 2]);
    const many = (await app.inject({ method: 'GET', url: '/api/connections?limit=5000' })).json();
    expect(many.open).toBe(1103);
    expect(many.listed).toBe(1000);
  });

  it.each(['0', '-1', 'abc', '1.5', '', '1e3', '10x'])('limit=%j is a 400 with a message', async (limit) => {
    const { app } = setup([]);
    const res = await app.inject({ method: 'GET', url: `/api/connections?limit=${encodeURIComponent(limit)}` });
    expect(res.statusCode).toBe(400);
    expect(res.json().error).toMatch(/limit/);
  });

  it('is empty, not an error, with no traffic', async () => {
    const { app } = setup([]);
    const res = await app.inject({ method: 'GET', url: '/api/connections' });
    expect(res.statusCode).toBe(200);
    expect(res.json()).toEqual({ open: 0, listed: 0, connections: [] });
  });
});

describe('/', () => {
  it('is an HTML page with the version, links to every endpoint and the sources, escaped', async () => {
    const { app } = setup([
      source('live:eth0', 'live', { up: true, done: false }),
      source('file:<script>x.pcap', 'file', { up: false, done: true }),
      source('live:eth1', 'live', { up: false, done: false }),
    ]);
    const res = await app.inject({ method: 'GET', url: '/' });
    expect(res.statusCode).toBe(200);
    expect(res.headers['content-type']).toMatch(/^text\/html/);
    expect(res.body).toContain('9.8.7-test');
    for (const link of ['metrics', 'api/connections', 'healthz', 'readyz']) expect(res.body).toContain(`href="${link}"`);
    expect(res.body).toContain('live:eth0 (live): running');
    expect(res.body).toContain('(file): done');
    expect(res.body).toContain('live:eth1 (live): down');
    expect(res.body).not.toContain('<script>');
  });
});

describe('anything else', () => {
  it.each(['/nope', '/metrics/extra', '/api', '/api/connections/1'])('GET %s is 404', async (url) => {
    const { app } = setup([]);
    expect((await app.inject({ method: 'GET', url })).statusCode).toBe(404);
  });

  it('POST /metrics is 404 (only GET is served)', async () => {
    const { app } = setup([]);
    expect((await app.inject({ method: 'POST', url: '/metrics' })).statusCode).toBe(404);
  });
});
