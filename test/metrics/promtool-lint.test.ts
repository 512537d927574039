/**
 * `promtool check metrics` (Prometheus' linter for metric names, types, units and help) on a
 * scrape of the exporter after a real capture: none of the project's metrics draws a complaint,
 * also when the text scrape follows an OpenMetrics one (as it does under Prometheus).
 * prom-client's default Node.js metrics are not ours: the linter flags three of its gauges for a
 * `_total` suffix, which the test tolerates by name.
 */
import { describe, expect, it } from 'vitest';
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { readCapture } from '../../src/capture/file.js';
import { Engine } from '../../src/conn/engine.js';
import { Exporter, type SourceStatus } from '../../src/metrics/exporter.js';
import { buildApp } from '../../src/server/app.js';

const FIXTURE = join(import.meta.dirname, '../fixtures/real/real-servers.pcap');
const promtool = spawnSync('sh', ['-c', 'command -v promtool'], { encoding: 'utf8' }).stdout.trim();

describe.runIf(promtool !== '' || process.env.CI)('promtool check metrics', () => {
  it('finds nothing to lint in the keepalive_ metrics of a real scrape', async () => {
    expect(promtool, 'promtool is missing: apt-get install -y prometheus').not.toBe('');
    const engine = new Engine();
    const sources: SourceStatus[] = [
      { name: 'file:fixture', kind: 'file', up: true, done: false, restarts: 0, kernelDrops: 0, interfaceDrops: 0, engine },
      { name: 'live:lo', kind: 'live', up: true, done: false, restarts: 0, kernelDrops: 0, interfaceDrops: 0, engine: new Engine() },
      { name: 'proxy:8080', kind: 'proxy', up: true, done: false, restarts: 0, kernelDrops: 0, interfaceDrops: 0, engine: new Engine(), proxy: { accepted: 0, active: 0, upstreamFailures: 0, idleClosed: 0 } },
    ];
    const exporter = new Exporter({ maxServers: 500, sources: () => sources });
    engine.subscribe(exporter.forSource('file:fixture'));
    await readCapture(FIXTURE, engine);
    engine.finish();
    const text = await exporter.text.metrics();
    expect(text).toContain('keepalive_requests_per_connection_bucket{');

    const r = spawnSync(promtool, ['check', 'metrics'], { input: text, encoding: 'utf8' });
    const complaints = `${r.stdout}${r.stderr}`.split('\n').filter((l) => l.trim() !== '');
    const ours = complaints.filter((l) => !/^nodejs_active_(handles|requests|resources)_total /.test(l));
    expect(ours).toEqual([]);
  });

  it('still finds nothing after an OpenMetrics scrape (issue 9: counters had lost _total)', async () => {
    const engine = new Engine();
    const source: SourceStatus = { name: 'file:fixture', kind: 'file', up: false, done: true, restarts: 0, kernelDrops: 0, interfaceDrops: 0, engine };
    const exporter = new Exporter({ maxServers: 500, sources: () => [source] });
    engine.subscribe(exporter.forSource('file:fixture'));
    await readCapture(FIXTURE, engine);
    engine.finish();
    const app = buildApp({ exporter, sources: () => [source], version: 'test' });
    const om = await app.inject({ method: 'GET', url: '/metrics', headers: { accept: 'application/openmetrics-text; version=1.0.0' } });
    expect(om.body.endsWith('# EOF\n')).toBe(true);
    const text = (await app.inject({ method: 'GET', url: '/metrics' })).body;
    await app.close();

    const r = spawnSync(promtool, ['check', 'metrics'], { input: text, encoding: 'utf8' });
    const complaints = `${r.stdout}${r.stderr}`.split('\n').filter((l) => l.trim() !== '');
    const ours = complaints.filter((l) => !/^nodejs_active_(handles|requests|resources)_total /.test(l));
    expect(ours).toEqual([]);
    expect(text).toContain('# TYPE keepalive_requests_total counter');
  });
});
