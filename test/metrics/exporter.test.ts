/**
 * The Prometheus exporter, specified by what a scraper sees: the text of the registries, parsed.
 *
 *  - the scraped counters say exactly what `analyze --json` says of the same capture (the two
 *    consumers of the engine's facts must never disagree);
 *  - the server label is capped: a flood of servers cannot grow the series count;
 *  - memory stays bounded when the flow table is full;
 *  - no label ever carries a path, query, cookie, client address or Host header;
 *  - the histograms resolve the common keep-alive timeouts.
 */
import { describe, expect, it } from 'vitest';
import { join } from 'node:path';
import { readFileSync } from 'node:fs';
import { Engine, type EngineOptions } from '../../src/conn/engine.js';
import { readCapture } from '../../src/capture/file.js';
import { AnalyzeReport } from '../../src/report/summary.js';
import { Exporter, IDLE_BUCKETS, OTHER_SERVER, type SourceStatus } from '../../src/metrics/exporter.js';
import { Conversation, httpRequest, httpResponse } from '../helpers/conversation.js';
import { byLabel, parseProm, samples, total, type Sample } from '../helpers/prom.js';
import { corpusFiles } from '../helpers/corpus.js';

const ROOT = join(import.meta.dirname, '../..');
const FIXTURE = join(ROOT, 'test/fixtures/real/real-servers.pcap');
const H2C_FIXTURE = join(ROOT, 'test/fixtures/h2c/h2c-servers.pcap');
const MORE_FIXTURE = join(ROOT, 'test/fixtures/servers/more-servers.pcap');

interface ManifestEntry {
  scenario: string;
  server: string;
  expectedProtocol: string;
  expectedRequests: number;
  expectedReason: string;
  expectedH2?: { peakConcurrentStreams: number; streamsRefused: number };
}
const H2C_MANIFEST = JSON.parse(readFileSync(join(ROOT, 'test/fixtures/h2c/manifest.json'), 'utf8')) as ManifestEntry[];

/** Metrics with a server label (counters, the gauge, the two per-server histograms), each of which must respect the cap. */
const SERVER_COUNTERS = [
  'keepalive_connections_opened_total',
  'keepalive_connections_closed_total',
  'keepalive_connections_untracked_total',
  'keepalive_requests_total',
  'keepalive_handshakes_saved_total',
  'keepalive_handshake_time_saved_seconds_total',
  'keepalive_open_connections',
  'keepalive_requests_per_connection_count',
  'keepalive_idle_before_close_seconds_count',
];

interface Rig {
  engine: Engine;
  exporter: Exporter;
  report: AnalyzeReport;
  source: SourceStatus;
  scrape(): Promise<Sample[]>;
}

function rig(maxServers = 1_000_000, engineOpts: EngineOptions = {}, keepConnections = true): Rig {
  const engine = new Engine(engineOpts);
  const source: SourceStatus = { name: 'file:test', kind: 'file', up: true, done: false, restarts: 0, kernelDrops: 0, interfaceDrops: 0, engine };
  const exporter = new Exporter({ maxServers, sources: () => [source] });
  const report = new AnalyzeReport(keepConnections);
  engine.subscribe(report);
  engine.subscribe(exporter);
  return { engine, exporter, report, source, scrape: async () => parseProm((await exporter.scrape('text')).toString()) };
}

/** What `analyze --json` computes, from the same engine (the same code path as src/cli/analyze.ts). */
function analyzeJson(r: Rig) {
  return { totals: r.report.totals(), servers: r.report.serverSummaries(r.engine.servers), connections: r.report.connectionList() };
}

function close(a: number, b: number): boolean {
  return Math.abs(a - b) <= 1e-6 + 1e-9 * Math.abs(b);
}

describe('scraped metrics equal the analyze report of the same capture', () => {
  const files = [FIXTURE, H2C_FIXTURE, MORE_FIXTURE, ...corpusFiles()];

  it.each(files.map((f) => [f.slice(f.lastIndexOf('/') + 1), f]))('%s', async (_name, path) => {
    const r = rig();
    await readCapture(path, r.engine);
    r.engine.finish();
    r.source.up = false;
    r.source.done = true;
    const { totals, servers, connections } = analyzeJson(r);
    const s = await r.scrape();

    expect(total(s, 'keepalive_connections_opened_total')).toBe(totals.connections);
    expect(total(s, 'keepalive_requests_total')).toBe(totals.requests);
    expect(total(s, 'keepalive_requests_total', { reused: 'true' })).toBe(totals.reusedRequests);
    expect(total(s, 'keepalive_requests_total', { reused: 'false' })).toBe(totals.requests - totals.reusedRequests);
    expect(total(s, 'keepalive_handshakes_saved_total')).toBe(totals.handshakesSaved);
    expect(close(total(s, 'keepalive_handshake_time_saved_seconds_total'), totals.handshakeTimeSavedSeconds)).toBe(true);

    // Close reasons: every reason analyze counts, except `open`, which is the untracked counter.
    const { open = 0, ...closedReasons } = totals.closeReasons;
    expect(Object.fromEntries(byLabel(s, 'keepalive_connections_closed_total', 'reason'))).toEqual(closedReasons);
    expect(total(s, 'keepalive_connections_untracked_total')).toBe(open);
    // Nothing is open once the source has ended.
    expect(total(s, 'keepalive_open_connections')).toBe(0);
    // Protocols: what each connection spoke at its close, in both (analyze counts connections there).
    const atClose = new Map<string, number>();
    for (const name of ['keepalive_connections_closed_total', 'keepalive_connections_untracked_total']) {
      for (const [p, n] of byLabel(s, name, 'protocol')) atClose.set(p, (atClose.get(p) ?? 0) + n);
    }
    expect(Object.fromEntries([...atClose].filter(([, n]) => n > 0))).toEqual(totals.protocols);
    for (const [p, n] of Object.entries(totals.protocols)) expect(connections.filter((c) => c.protocol === p).length, p).toBe(n);

    // Per server: the same figures as servers[] of the JSON.
    const opened = byLabel(s, 'keepalive_connections_opened_total', 'server');
    const requests = byLabel(s, 'keepalive_requests_total', 'server');
    const reused = byLabel(s, 'keepalive_requests_total', 'server', { reused: 'true' });
    const saved = byLabel(s, 'keepalive_handshake_time_saved_seconds_total', 'server');
    expect(new Set(requests.keys())).toEqual(new Set(servers.filter((x) => x.requests > 0).map((x) => x.server)));
    expect(new Set(opened.keys())).toEqual(new Set(servers.map((x) => x.server)));
    for (const srv of servers) {
      expect(opened.get(srv.server), srv.server).toBe(srv.connections);
      expect(requests.get(srv.server) ?? 0, srv.server).toBe(srv.requests);
      expect(reused.get(srv.server) ?? 0, srv.server).toBe(srv.reusedRequests);
      expect(close(saved.get(srv.server) ?? 0, srv.handshakeTimeSavedSeconds), srv.server).toBe(true);
      const { open: srvOpen = 0, ...srvClosed } = srv.closeReasons;
      const reasons = byLabel(s, 'keepalive_connections_closed_total', 'reason', { server: srv.server });
      expect(Object.fromEntries([...reasons].filter(([, v]) => v > 0)), srv.server).toEqual(srvClosed);
      expect(total(s, 'keepalive_connections_untracked_total', { server: srv.server }), srv.server).toBe(srvOpen);
      // What the engine learned of each server: the same knowledge analyze reports.
      const gauge = (name: string): number | null => samples(s, name, { server: srv.server })[0]?.value ?? null;
      expect(gauge('keepalive_advertised_timeout_seconds'), srv.server).toBe(srv.advertisedTimeoutSeconds);
      expect(gauge('keepalive_advertised_max_requests'), srv.server).toBe(srv.advertisedMaxRequests);
      expect(gauge('keepalive_inferred_max_requests'), srv.server).toBe(srv.inferredMaxRequests);
    }

    // Closing side, from the connection list of --connections.
    const closedBy = byLabel(s, 'keepalive_connections_closed_total', 'closed_by');
    for (const side of ['client', 'server'] as const) {
      expect(closedBy.get(side) ?? 0, side).toBe(connections.filter((c) => c.closeReason !== 'open' && c.closedBy === side).length);
    }
    // Histograms observe every connection that closed (requests, duration) or had a captured handshake (RTT).
    const closedConns = connections.filter((c) => c.closeReason !== 'open');
    expect(total(s, 'keepalive_requests_per_connection_count')).toBe(closedConns.length);
    expect(total(s, 'keepalive_requests_per_connection_sum')).toBe(closedConns.reduce((a, c) => a + c.requests, 0));
    expect(total(s, 'keepalive_connection_duration_seconds_count')).toBe(closedConns.filter((c) => c.closedAt !== null).length);
    expect(total(s, 'keepalive_handshake_rtt_seconds_count')).toBe(connections.filter((c) => c.handshakeRttSeconds !== null).length);
    expect(total(s, 'keepalive_idle_before_close_seconds_count')).toBe(closedConns.filter((c) => c.idleBeforeCloseSeconds !== null).length);
    // ... per server (connections[].server is the same "ip:port" as the label; no cap is hit here).
    const perConnBy = byLabel(s, 'keepalive_requests_per_connection_count', 'server');
    const idleBy = byLabel(s, 'keepalive_idle_before_close_seconds_count', 'server', { closed_by: 'server' });
    for (const srv of servers) {
      const mine = closedConns.filter((c) => c.server === srv.server);
      expect(perConnBy.get(srv.server) ?? 0, srv.server).toBe(mine.length);
      expect(idleBy.get(srv.server) ?? 0, srv.server).toBe(mine.filter((c) => c.closedBy === 'server' && c.idleBeforeCloseSeconds !== null).length);
    }

    // Health metrics are read from the source at scrape time.
    const st = r.engine.stats();
    expect(total(s, 'keepalive_packets_total', { source: 'file:test' })).toBe(st.packets);
    expect(total(s, 'keepalive_bytes_total', { source: 'file:test' })).toBe(st.bytes);
    expect(total(s, 'keepalive_flows_evicted_total')).toBe(st.flowsEvicted);
    expect(total(s, 'keepalive_source_up', { source: 'file:test', kind: 'file' })).toBe(0);
    expect(total(s, 'keepalive_servers_tracked')).toBe(servers.length);
    const anomalies = Object.fromEntries([...byLabel(s, 'keepalive_anomalies_total', 'kind')].filter(([, v]) => v > 0));
    const { not_tcp: _notTcp, ...expectedAnomalies } = st.anomalies;
    expect(anomalies).toEqual(expectedAnomalies);
    const nonHttp = byLabel(s, 'keepalive_non_http_flows_total', 'protocol');
    expect(Object.fromEntries(nonHttp)).toEqual(st.nonHttp);
  });

  it('the real-server fixture gives the numbers of its README', async () => {
    const r = rig();
    await readCapture(FIXTURE, r.engine);
    r.engine.finish();
    const s = await r.scrape();
    expect(total(s, 'keepalive_connections_opened_total')).toBe(65);
    expect(total(s, 'keepalive_requests_total')).toBe(112);
    expect(total(s, 'keepalive_requests_total', { reused: 'true' })).toBe(51);
    expect(total(s, 'keepalive_connections_closed_total', { reason: 'race' })).toBe(4);
    expect(total(s, 'keepalive_advertised_timeout_seconds', { server: '127.0.0.1:18080' })).toBe(2);
    expect(total(s, 'keepalive_advertised_max_requests', { server: '127.0.0.1:18080' })).toBe(3);
    expect(total(s, 'keepalive_inferred_max_requests', { server: '127.0.0.1:18081' })).toBe(3);
  });

  it('the OpenMetrics registry carries the same samples', async () => {
    const r = rig();
    await readCapture(FIXTURE, r.engine);
    r.engine.finish();
    const text = await r.scrape();
    const om = parseProm((await r.exporter.scrape('openmetrics')).toString());
    for (const name of ['keepalive_connections_opened_total', 'keepalive_requests_total', 'keepalive_handshakes_saved_total', 'keepalive_connections_untracked_total']) {
      expect(total(om, name), name).toBe(total(text, name));
    }
    expect(Object.fromEntries(byLabel(om, 'keepalive_connections_closed_total', 'reason'))).toEqual(Object.fromEntries(byLabel(text, 'keepalive_connections_closed_total', 'reason')));
  });
});

// ---------------------------------------------------------------------------------------------
// Synthetic traffic

/** One HTTP/1.1 connection with `requests` request/response pairs; closed by the client unless `leaveOpen`. */
function connection(client: string, server: string, t0: number, requests: number, leaveOpen = false, target = '/'): Conversation {
  const c = new Conversation({ client, server, t0 });
  c.handshake(0.0004);
  for (let i = 0; i < requests; i++) {
    c.clientSends(httpRequest('GET', target), 0.0001).serverSends(httpResponse(200, 'ok', { 'Keep-Alive': 'timeout=5, max=100' }), 0.0002);
  }
  if (!leaveOpen) c.close('client', 0.0001);
  return c;
}

function serverAddress(i: number): string {
  return `172.16.${i >> 8}.${i & 255}:80`;
}

/** `servers` servers, each with three connections of two requests, the third left open. */
function flood(servers: number, maxServers: number): Rig {
  const r = rig(maxServers);
  let t = 1_700_000_000;
  let port = 0;
  for (let i = 0; i < servers; i++) {
    for (let k = 0; k < 3; k++) {
      const client = `10.${(port >> 16) & 255}.${(port >> 8) & 255}.${port & 255}:${40000 + (port % 20000)}`;
      port++;
      connection(client, serverAddress(i), t, 2, k === 2).feed(r.engine);
      t += 0.002;
    }
  }
  r.engine.finish();
  return r;
}

describe('the protocol label and the HTTP/2 families, on the h2c capture (test/fixtures/h2c/manifest.json)', () => {
  it('connections, requests and closes by protocol; the Upgrade: h2c switch; refused streams; the concurrency histogram', async () => {
    const r = rig();
    await readCapture(H2C_FIXTURE, r.engine);
    r.engine.finish();
    const s = await r.scrape();
    const h2c = H2C_MANIFEST.filter((c) => c.expectedProtocol === 'h2c');
    const h1 = H2C_MANIFEST.filter((c) => c.expectedProtocol === 'http/1.1');
    const upgrades = H2C_MANIFEST.filter((c) => /^(upgrade_|idle_timeout_upgrade)/.test(c.scenario));
    expect([h2c.length, h1.length, upgrades.length]).toEqual([28, 3, 3]);
    expect(upgrades.every((c) => c.expectedProtocol === 'h2c' && c.server === '127.0.0.1:18103')).toBe(true);

    // Only the three values, and only those a server spoke.
    for (const name of ['keepalive_connections_opened_total', 'keepalive_connections_closed_total', 'keepalive_requests_total', 'keepalive_open_connections', 'keepalive_requests_per_connection_count', 'keepalive_connections_upgraded_total']) {
      for (const x of samples(s, name)) expect(['http/1.1', 'h2c'], name).toContain(x.labels.protocol);
    }
    // An Upgrade: h2c connection opens as http/1.1 (its first request is HTTP/1.1) and closes as h2c.
    expect(Object.fromEntries(byLabel(s, 'keepalive_connections_opened_total', 'protocol'))).toEqual({ h2c: 25, 'http/1.1': 6 });
    expect(Object.fromEntries(byLabel(s, 'keepalive_connections_upgraded_total', 'protocol'))).toEqual({ h2c: 3 });
    expect(total(s, 'keepalive_connections_upgraded_total', { server: '127.0.0.1:18103' })).toBe(3);
    expect(Object.fromEntries(byLabel(s, 'keepalive_connections_closed_total', 'protocol'))).toEqual({ h2c: 28, 'http/1.1': 3 });
    expect(Object.fromEntries(byLabel(s, 'keepalive_requests_per_connection_count', 'protocol'))).toEqual({ h2c: 28, 'http/1.1': 3 });
    // The balance per protocol: opened + switched to = closed + untracked + open.
    for (const protocol of ['h2c', 'http/1.1']) {
      const inflow = total(s, 'keepalive_connections_opened_total', { protocol }) + total(s, 'keepalive_connections_upgraded_total', { protocol });
      const away = protocol === 'http/1.1' ? total(s, 'keepalive_connections_upgraded_total') : 0;
      expect(inflow - away, protocol).toBe(total(s, 'keepalive_connections_closed_total', { protocol }) + total(s, 'keepalive_connections_untracked_total', { protocol }) + total(s, 'keepalive_open_connections', { protocol }));
    }
    // Requests by the protocol that carried them: each upgrade request was HTTP/1.1 (stream 1 of its h2c connection).
    const sum = (cs: ManifestEntry[]) => cs.reduce((a, c) => a + c.expectedRequests, 0);
    expect(total(s, 'keepalive_requests_total', { protocol: 'h2c' })).toBe(sum(h2c) - upgrades.length);
    expect(total(s, 'keepalive_requests_total', { protocol: 'http/1.1' })).toBe(sum(h1) + upgrades.length);
    expect(total(s, 'keepalive_requests_per_connection_sum', { protocol: 'h2c' })).toBe(sum(h2c));
    // Close reasons by protocol, max_age included (nginx keepalive_time on 18101).
    const reasons = (protocol: string) => Object.fromEntries(byLabel(s, 'keepalive_connections_closed_total', 'reason', { protocol }));
    const expected = (cs: ManifestEntry[]) => cs.reduce<Record<string, number>>((a, c) => ({ ...a, [c.expectedReason]: (a[c.expectedReason] ?? 0) + 1 }), {});
    expect(reasons('h2c')).toEqual(expected(h2c));
    expect(reasons('http/1.1')).toEqual(expected(h1));
    expect(total(s, 'keepalive_connections_closed_total', { protocol: 'h2c', reason: 'max_age', server: '127.0.0.1:18101' })).toBe(3);

    // Refused streams, per server, and a series (at 0) for an h2c server that refused none.
    for (const server of new Set(h2c.map((c) => c.server))) {
      const mine = h2c.filter((c) => c.server === server);
      const refused = samples(s, 'keepalive_h2_streams_refused_total', { server });
      expect(refused.length, server).toBe(1);
      expect(refused[0].value, server).toBe(mine.reduce((a, c) => a + c.expectedH2!.streamsRefused, 0));
      // The concurrency histogram: one observation per h2c connection, each in the bucket of its peak.
      const buckets = samples(s, 'keepalive_h2_concurrent_streams_bucket', { server });
      expect(buckets.map((x) => x.labels.le)).toEqual(['1', '2', '4', '8', '16', '32', '64', '128', '256', '+Inf']);
      for (const b of buckets) {
        const le = b.labels.le === '+Inf' ? Infinity : Number(b.labels.le);
        expect(b.value, `${server} le=${b.labels.le}`).toBe(mine.filter((c) => c.expectedH2!.peakConcurrentStreams <= le).length);
      }
      expect(total(s, 'keepalive_h2_concurrent_streams_sum', { server }), server).toBe(mine.reduce((a, c) => a + c.expectedH2!.peakConcurrentStreams, 0));
    }
    expect(total(s, 'keepalive_h2_streams_refused_total')).toBe(4);
    // The server announced SETTINGS_MAX_CONCURRENT_STREAMS: Node.js 4 (settings.maxConcurrentStreams), nginx 128 (its default).
    expect(total(s, 'keepalive_h2_advertised_max_concurrent_streams', { server: '127.0.0.1:18102' })).toBe(4);
    expect(total(s, 'keepalive_h2_advertised_max_concurrent_streams', { server: '127.0.0.1:18100' })).toBe(128);
    // HTTP/1 servers have none of the HTTP/2 series.
    const rr = rig();
    await readCapture(FIXTURE, rr.engine);
    rr.engine.finish();
    const h1s = await rr.scrape();
    expect(samples(h1s, 'keepalive_h2_concurrent_streams_count').length + samples(h1s, 'keepalive_h2_streams_refused_total').length + samples(h1s, 'keepalive_h2_advertised_max_concurrent_streams').length + samples(h1s, 'keepalive_connections_upgraded_total').length).toBe(0);
    expect(new Set(samples(h1s, 'keepalive_connections_opened_total').map((x) => x.labels.protocol))).toEqual(new Set(['http/1.0', 'http/1.1']));
  });
});

describe('the server label is capped', () => {
  it('5,000 servers with --max-servers 50: the first 50 servers and "other", totals exact', async () => {
    const r = flood(5000, 50);
    const s = await r.scrape();
    const expected = new Set([...Array.from({ length: 50 }, (_, i) => serverAddress(i)), OTHER_SERVER]);
    for (const name of SERVER_COUNTERS) {
      const values = new Set(samples(s, name).map((x) => x.labels.server));
      expect(values, name).toEqual(expected);
    }
    // Per-server knowledge is not aggregated into "other": those gauges list only labelled servers.
    for (const name of ['keepalive_advertised_timeout_seconds', 'keepalive_advertised_max_requests']) {
      const values = new Set(samples(s, name).map((x) => x.labels.server));
      expect(values.has(OTHER_SERVER), name).toBe(false);
      expect(values.size, name).toBe(50);
    }
    expect(total(s, 'keepalive_servers_tracked')).toBe(50);

    const totals = r.report.totals();
    expect(totals.connections).toBe(15_000);
    expect(totals.requests).toBe(30_000);
    expect(total(s, 'keepalive_connections_opened_total')).toBe(totals.connections);
    expect(total(s, 'keepalive_requests_total')).toBe(totals.requests);
    expect(total(s, 'keepalive_requests_total', { reused: 'true' })).toBe(totals.reusedRequests);
    expect(total(s, 'keepalive_handshakes_saved_total')).toBe(totals.handshakesSaved);
    expect(close(total(s, 'keepalive_handshake_time_saved_seconds_total'), totals.handshakeTimeSavedSeconds)).toBe(true);
    expect(total(s, 'keepalive_connections_untracked_total')).toBe(totals.closeReasons.open);
    const { open: _open, ...closedReasons } = totals.closeReasons;
    expect(Object.fromEntries(byLabel(s, 'keepalive_connections_closed_total', 'reason'))).toEqual(closedReasons);
    // "other" holds exactly what the 4,950 unlabelled servers did.
    expect(total(s, 'keepalive_connections_opened_total', { server: OTHER_SERVER })).toBe(4950 * 3);
    expect(total(s, 'keepalive_requests_total', { server: OTHER_SERVER })).toBe(4950 * 6);
    expect(total(s, 'keepalive_connections_opened_total', { server: serverAddress(7) })).toBe(3);
  });

  it('the series count does not grow with the number of servers past the cap', async () => {
    const series = (s: Sample[]) => s.filter((x) => x.name.startsWith('keepalive_')).length;
    const small = series(await flood(200, 50).scrape());
    const large = series(await flood(5000, 50).scrape());
    expect(large).toBe(small);
    // 51 server values times about 53 series each (mostly the two per-server histograms: requests
    // per connection, and idle before close by side), plus the unlabelled histograms and health.
    expect(large).toBeLessThan(51 * 56);
  });
});

describe('memory stays bounded', () => {
  it('100,000 connections through a table of 1,000 flows: flows and open connections stay at the cap, evictions counted', async () => {
    const maxFlows = 1000;
    // The report keeps no connection list here: only the exporter's and the engine's memory is measured.
    const r = rig(50, { limits: { maxFlows } }, false);
    const gc = (globalThis as { gc?: () => void }).gc;
    let heapAt10k = 0;
    let t = 1_700_000_000;
    for (let i = 0; i < 100_000; i++) {
      const client = `10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}:${30000 + (i % 30000)}`;
      // Connections that never close: the table is always full and every new one evicts.
      connection(client, serverAddress(i % 20), t, 1, true).feed(r.engine);
      t += 0.0001;
      if (i % 10_000 === 9_999) {
        expect(r.engine.stats().flowsTracked).toBeLessThanOrEqual(maxFlows);
        expect(r.exporter.openByConnection.size).toBeLessThanOrEqual(maxFlows);
        if (gc && i === 9_999) {
          gc();
          heapAt10k = process.memoryUsage().heapUsed;
        }
      }
    }
    const st = r.engine.stats();
    const s = await r.scrape();
    expect(total(s, 'keepalive_flows_tracked')).toBe(st.flowsTracked);
    expect(total(s, 'keepalive_flows_tracked')).toBeLessThanOrEqual(maxFlows);
    expect(st.flowsEvicted).toBeGreaterThanOrEqual(100_000 - maxFlows);
    expect(total(s, 'keepalive_flows_evicted_total')).toBe(st.flowsEvicted);
    expect(total(s, 'keepalive_anomalies_total', { kind: 'flow_evicted' })).toBe(st.flowsEvicted);
    // Evicted while open: counted as untracked, no longer open.
    expect(total(s, 'keepalive_connections_untracked_total')).toBe(st.flowsEvicted);
    expect(total(s, 'keepalive_open_connections')).toBe(r.exporter.openByConnection.size);
    expect(r.exporter.openByConnection.size).toBeLessThanOrEqual(maxFlows);
    if (gc) {
      gc();
      // 90,000 more connections than at the 10,000 mark: the heap must not follow them.
      expect(process.memoryUsage().heapUsed - heapAt10k).toBeLessThan(10 * 1024 * 1024);
    }
    r.engine.finish();
    expect(r.exporter.openByConnection.size).toBe(0);
    const after = await r.scrape();
    expect(total(after, 'keepalive_connections_opened_total')).toBe(100_000);
    expect(total(after, 'keepalive_connections_untracked_total')).toBe(100_000);
    expect(total(after, 'keepalive_open_connections')).toBe(0);
  }, 120_000);
});

describe('labels never carry request content or client addresses', () => {
  it('paths, queries, cookies, Host headers and client addresses are absent from every scrape', async () => {
    const r = rig();
    const secrets = {
      path: '/account/SECRETPATH7731',
      query: 'token=QUERYSECRET9921',
      cookie: 'COOKIESECRET4410',
      host: 'hostheader-secret.example',
      client: '198.51.100.219',
      authorization: 'AUTHSECRET8812',
      userAgent: 'UASECRET5513',
    };
    const c = new Conversation({ client: `${secrets.client}:51234`, server: '203.0.113.5:8080', t0: 1_700_000_000 });
    c.handshake(0.001);
    for (let i = 0; i < 3; i++) {
      c.clientSends(httpRequest('POST', `${secrets.path}?${secrets.query}&i=${i}`, {
        Host: secrets.host,
        Cookie: `session=${secrets.cookie}`,
        Authorization: `Bearer ${secrets.authorization}`,
        'User-Agent': secrets.userAgent,
      }, 'a=1'), 0.001);
      c.serverSends(httpResponse(200, 'ok', { 'Set-Cookie': `s=${secrets.cookie}`, Location: secrets.path }), 0.002);
    }
    c.close('server', 3);
    c.feed(r.engine);
    // And one connection left open, so the open-connection gauges have a series too.
    const o = new Conversation({ client: `${secrets.client}:51235`, server: '203.0.113.5:8080', t0: 1_700_000_010 });
    o.handshake(0.001).clientSends(httpRequest('GET', `${secrets.path}?${secrets.query}`, { Host: secrets.host, Cookie: secrets.cookie }), 0.001);
    o.feed(r.engine);

    const texts = [(await r.exporter.scrape('text')).toString(), (await r.exporter.scrape('openmetrics')).toString()];
    r.engine.finish();
    texts.push((await r.exporter.scrape('text')).toString(), (await r.exporter.scrape('openmetrics')).toString());
    const s = parseProm(texts[0]);
    expect(total(s, 'keepalive_requests_total')).toBe(4);
    for (const text of texts) {
      for (const [what, secret] of Object.entries(secrets)) expect(text.includes(secret), what).toBe(false);
      expect(text).not.toContain('SECRET');
    }
    // The only labels of the project's metrics, all bounded.
    const allowed = new Set(['server', 'reused', 'reason', 'closed_by', 'le', 'source', 'kind', 'where', 'protocol', 'format', 'after']);
    for (const x of s.filter((y) => y.name.startsWith('keepalive_') && y.name !== 'keepalive_exporter_build_info')) {
      for (const k of Object.keys(x.labels)) expect(allowed.has(k), `${x.name}{${k}}`).toBe(true);
    }
    // The build's one series: its labels are the build's, never the traffic's.
    expect(s.filter((y) => y.name === 'keepalive_exporter_build_info').map((y) => Object.keys(y.labels))).toEqual([['version', 'revision', 'nodeversion']]);
    expect(new Set(samples(s, 'keepalive_requests_total').map((x) => x.labels.server))).toEqual(new Set(['203.0.113.5:8080']));
  });
});

describe('histogram buckets', () => {
  it('resolve the common keep-alive timeouts: 1, 2, 5, 15, 60 and 75 s', async () => {
    const r = rig();
    await readCapture(FIXTURE, r.engine);
    r.engine.finish();
    const s = await r.scrape();
    for (const name of ['keepalive_idle_before_close_seconds_bucket', 'keepalive_connection_duration_seconds_bucket']) {
      const les = new Set(samples(s, name).map((x) => Number(x.labels.le)));
      for (const b of [1, 2, 5, 15, 60, 75]) expect(les.has(b), `${name} le=${b}`).toBe(true);
    }
    for (const b of [1, 2, 5, 15, 60, 75]) expect(IDLE_BUCKETS).toContain(b);
    // The fixture's servers close idle connections after 2 s: those 20 closes land between 1.5 and 3 s.
    const idle = samples(s, 'keepalive_idle_before_close_seconds_bucket', { closed_by: 'server' });
    const at = (le: string) => idle.filter((x) => x.labels.le === le).reduce((a, x) => a + x.value, 0);
    expect(at('3') - at('1.5')).toBeGreaterThanOrEqual(20);
  });
});
