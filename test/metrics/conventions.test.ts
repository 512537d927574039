/**
 * Exporter conventions node_exporter users expect (issue 11), on the daemon's app:
 *   - /metrics moves with --web.telemetry-path (AppOptions.telemetryPath), the landing page links it;
 *   - gzip when Accept-Encoding allows it (Content-Encoding, Vary), compressed once per render
 *     however many scrapers share it;
 *   - --web.disable-exporter-metrics leaves out prom-client's process_* and nodejs_* metrics;
 *   - keepalive_exporter_build_info{version,revision,nodeversion} 1.
 */
import { describe, expect, it } from 'vitest';
import { gunzipSync } from 'node:zlib';
import { Engine } from '../../src/conn/engine.js';
import { Exporter, type SourceStatus } from '../../src/metrics/exporter.js';
import { acceptsGzip, buildApp } from '../../src/server/app.js';
import { buildInfo } from '../../src/cli/build-info.js';

function setup(opts: { telemetryPath?: string; disableDefaultMetrics?: boolean } = {}) {
  const source: SourceStatus = { name: 'file:x', kind: 'file', up: false, done: true, restarts: 0, kernelDrops: 0, interfaceDrops: 0, engine: new Engine() };
  const exporter = new Exporter({ maxServers: 10, sources: () => [source], disableDefaultMetrics: opts.disableDefaultMetrics });
  const app = buildApp({ exporter, sources: () => [source], version: 'test', telemetryPath: opts.telemetryPath });
  return { app, exporter };
}

const noScrapeCounts = (t: string): string => t.replace(/^(keepalive_scrapes_total\{[^}]*\}) \d+$/gm, '$1 N');

describe('--web.telemetry-path', () => {
  it('serves the metrics at the path given, not at /metrics, and the landing page links it', async () => {
    const { app } = setup({ telemetryPath: '/internal/prom' });
    const moved = await app.inject({ method: 'GET', url: '/internal/prom' });
    expect(moved.statusCode).toBe(200);
    expect(moved.body).toContain('# TYPE keepalive_requests_total counter');
    expect((await app.inject({ method: 'GET', url: '/metrics' })).statusCode).toBe(404);
    const landing = (await app.inject({ method: 'GET', url: '/' })).body;
    expect(landing).toContain('<a href="internal/prom">/internal/prom</a>');
    expect(landing).not.toContain('href="metrics"');
    await app.close();
  });

  it('is /metrics by default', async () => {
    const { app } = setup();
    expect((await app.inject({ method: 'GET', url: '/metrics' })).statusCode).toBe(200);
    expect((await app.inject({ method: 'GET', url: '/' })).body).toContain('<a href="metrics">/metrics</a>');
    await app.close();
  });
});

describe('gzip', () => {
  it('Accept-Encoding: gzip gets the same body gzipped, with Content-Encoding and Vary', async () => {
    const { app } = setup();
    const plain = await app.inject({ method: 'GET', url: '/metrics' });
    const gz = await app.inject({ method: 'GET', url: '/metrics', headers: { 'accept-encoding': 'gzip, deflate, br' } });
    expect(plain.headers['content-encoding']).toBeUndefined();
    expect(plain.headers.vary).toBe('Accept-Encoding');
    expect(gz.headers['content-encoding']).toBe('gzip');
    expect(gz.headers.vary).toBe('Accept-Encoding');
    expect(gz.headers['content-type']).toBe(plain.headers['content-type']);
    const raw = gz.rawPayload;
    expect(Number(gz.headers['content-length'])).toBe(raw.length);
    expect(raw[0]).toBe(0x1f);
    expect(raw[1]).toBe(0x8b);
    const text = gunzipSync(raw).toString('utf8');
    // Our samples are equal (the default metrics' values move between two scrapes).
    const ours = (t: string) => noScrapeCounts(t).split('\n').filter((l) => l.startsWith('keepalive_'));
    expect(ours(text).length).toBeGreaterThan(10);
    expect(ours(text)).toEqual(ours(plain.body));
    // The same families, in order.
    const types = (t: string) => t.split('\n').filter((l) => l.startsWith('# TYPE '));
    expect(types(text)).toEqual(types(plain.body));
    expect(raw.length).toBeLessThan(plain.rawPayload.length / 3);
    // OpenMetrics too.
    const om = await app.inject({ method: 'GET', url: '/metrics', headers: { 'accept-encoding': 'gzip', accept: 'application/openmetrics-text; version=1.0.0' } });
    expect(om.headers['content-encoding']).toBe('gzip');
    expect(gunzipSync(om.rawPayload).toString('utf8').endsWith('# EOF\n')).toBe(true);
    await app.close();
  });

  it('not without gzip in Accept-Encoding, nor with gzip;q=0', async () => {
    const { app } = setup();
    for (const enc of ['identity', 'br', 'gzip;q=0', 'deflate, gzip; q=0']) {
      const r = await app.inject({ method: 'GET', url: '/metrics', headers: { 'accept-encoding': enc } });
      expect(r.headers['content-encoding'], enc).toBeUndefined();
      expect(r.body, enc).toContain('# TYPE keepalive_requests_total counter');
    }
    expect(acceptsGzip('gzip;q=0.5')).toBe(true);
    expect(acceptsGzip('*')).toBe(true);
    expect(acceptsGzip('gzip;q=0, *')).toBe(false);
    expect(acceptsGzip(['br', 'gzip'])).toBe(true);
    expect(acceptsGzip(undefined)).toBe(false);
    await app.close();
  });

  it('concurrent gzip scrapes share one render and one compression', async () => {
    const { app, exporter } = setup({ telemetryPath: '/metrics' });
    const before = { renders: exporter.renders, compressions: exporter.compressions };
    const replies = await Promise.all([
      ...Array.from({ length: 8 }, () => app.inject({ method: 'GET', url: '/metrics', headers: { 'accept-encoding': 'gzip' } })),
      ...Array.from({ length: 4 }, () => app.inject({ method: 'GET', url: '/metrics' })),
    ]);
    expect(exporter.renders - before.renders).toBe(1);
    expect(exporter.compressions - before.compressions).toBe(1);
    const gz = replies.slice(0, 8).map((r) => r.rawPayload);
    for (const b of gz) expect(b.equals(gz[0])).toBe(true);
    expect(gunzipSync(gz[0]).toString('utf8')).toBe(replies[8].body);
    // The next scrape renders and compresses anew.
    await app.inject({ method: 'GET', url: '/metrics', headers: { 'accept-encoding': 'gzip' } });
    expect(exporter.renders - before.renders).toBe(2);
    expect(exporter.compressions - before.compressions).toBe(2);
    await app.close();
  });
});

describe('--web.disable-exporter-metrics', () => {
  it('leaves out process_* and nodejs_*, and only them', async () => {
    const on = setup();
    const off = setup({ disableDefaultMetrics: true });
    const withDefaults = (await on.app.inject({ method: 'GET', url: '/metrics' })).body;
    const without = (await off.app.inject({ method: 'GET', url: '/metrics' })).body;
    expect(withDefaults).toMatch(/^process_cpu_seconds_total /m);
    expect(withDefaults).toMatch(/^nodejs_heap_size_used_bytes /m);
    expect(without).not.toMatch(/^(# (HELP|TYPE) )?(process|nodejs)_/m);
    const ours = (t: string) => t.split('\n').filter((l) => l.startsWith('# TYPE ') && !/^# TYPE (process|nodejs)_/.test(l));
    expect(ours(without)).toEqual(ours(withDefaults));
    await on.app.close();
    await off.app.close();
  });
});

describe('keepalive_exporter_build_info', () => {
  it('is 1, labelled with the version, revision and Node.js version', async () => {
    const { exporter } = setup();
    const text = (await exporter.scrape('text')).toString('utf8');
    const info = buildInfo();
    expect(text).toContain('# TYPE keepalive_exporter_build_info gauge');
    expect(text).toContain(`keepalive_exporter_build_info{version="${info.version}",revision="${info.revision}",nodeversion="${process.version}"} 1\n`);
    expect(info.revision).toMatch(/^([0-9a-f]{4,40}|unknown)$/);
  });

  it('names the build it is given', async () => {
    const exporter = new Exporter({ maxServers: 1, sources: () => [], build: { version: '9.9.9', revision: 'abc1234', nodeVersion: 'v20.0.0' } });
    expect((await exporter.scrape('text')).toString('utf8')).toContain('keepalive_exporter_build_info{version="9.9.9",revision="abc1234",nodeversion="v20.0.0"} 1\n');
  });
});
