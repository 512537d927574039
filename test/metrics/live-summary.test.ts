/**
 * The landing page's numbers (Exporter.liveSummary, issue 14): the same tallies as the metrics,
 * requests per second over the page's last two renders, the servers' advertised and observed idle
 * timeouts. On the real-server capture (Apache and nginx, keepalive timeouts of 2 s).
 */
import { describe, expect, it } from 'vitest';
import { join } from 'node:path';
import { Engine } from '../../src/conn/engine.js';
import { readCapture } from '../../src/capture/file.js';
import { Exporter, type SourceStatus } from '../../src/metrics/exporter.js';
import { parseProm, total } from '../helpers/prom.js';

const FIXTURE = join(import.meta.dirname, '../fixtures/real/real-servers.pcap');

describe('Exporter.liveSummary', () => {
  it('counts what the metrics count, and requests per second between renders at least a second apart', async () => {
    const engine = new Engine();
    const sources: SourceStatus[] = [{ name: 'file:x', kind: 'file', up: false, done: true, restarts: 0, kernelDrops: 3, interfaceDrops: 1, engine }];
    const exporter = new Exporter({ maxServers: 10, sources: () => sources });
    engine.subscribe(exporter.forSource('file:x'));
    expect(exporter.liveSummary(100).requestsPerSecond).toBeNull(); // the first render: nothing to compare with
    await readCapture(FIXTURE, engine);
    engine.finish();
    expect(exporter.liveSummary(100.5).requestsPerSecond).toBeNull(); // under a second later: no new sample
    const live = exporter.liveSummary(104);
    const s = parseProm((await exporter.scrape('text')).toString());
    const requests = total(s, 'keepalive_requests_total');
    expect(live.requests).toBe(requests);
    expect(live.requestsPerSecond).toBeCloseTo(requests / 4, 9);
    expect(live.reused).toBe(total(s, 'keepalive_requests_total', { reused: 'true' }));
    expect(live.closed.idle_timeout).toBe(total(s, 'keepalive_connections_closed_total', { reason: 'idle_timeout' }));
    expect(live.kernelDrops + live.interfaceDrops).toBe(4);
    const apache = live.servers.find((x) => x.server === '127.0.0.1:18080')!;
    expect(apache.advertisedTimeoutSeconds).toBe(2);
    expect(apache.observedIdleTimeoutSeconds).toBeGreaterThan(1.9);
    expect(apache.observedIdleTimeoutSeconds).toBeLessThan(2.2);
    // Busiest first.
    for (let i = 1; i < live.servers.length; i++) expect(live.servers[i - 1].requests).toBeGreaterThanOrEqual(live.servers[i].requests);
    // A later render with nothing new: 0 requests per second.
    expect(exporter.liveSummary(110).requestsPerSecond).toBe(0);
  });
});
