/**
 * The analyze report's per-server comparison of the observed idle close with the advertised
 * `Keep-Alive: timeout=`, and the advice it gives, on synthetic connection records whose answers
 * are known (docs/keepalive-semantics.md, "Advertised and observed idle timeouts").
 */
import { describe, expect, it } from 'vitest';
import { AnalyzeReport, findWarnings, IDLE_CLOSE_TOLERANCE_SECONDS, MIN_ADVISED_IDLE_SECONDS, type ServerSummary } from '../../src/report/summary.js';
import { renderText } from '../../src/report/text.js';
import type { ConnectionOutcome, ConnectionRecord, RequestRecord } from '../../src/conn/records.js';
import { ServerState } from '../../src/conn/servers.js';
import type { EngineStats } from '../../src/conn/engine.js';

const SERVER = '127.0.0.1:8080';

function stats(): EngineStats {
  return {
    packets: 0, bytes: 0, tcpPackets: 0, streams: 0, flowsTracked: 0, bufferedBytes: 0, flowsCreated: 0, flowsEvicted: 0,
    gaps: 0, gapBytes: 0, retransmissions: 0, connectionsOpened: 0, connectionsClosed: 0, openConnections: 0,
    nonHttp: { tls: 0, http2: 0, other: 0 }, anomalies: {}, firstPacketTime: 0, lastPacketTime: 10,
  };
}

function request(index: number): RequestRecord {
  // Asserted rather than annotated: the record may gain fields the report does not read.
  return {
    index, time: index, method: 'GET', version: '1.1', wantsKeepAlive: true, connectionClose: false, reused: index > 1,
    savedSeconds: index > 1 ? 0.0001 : 0, savedFrom: 'handshake', outstandingAtStart: 0, status: 200, responseVersion: '1.1',
    responseKeepAlive: true, responseConnectionClose: false, responseCloseDelimited: false, kaTimeout: -1, kaMax: -1,
    responseEnd: index + 0.001, responseStarted: true,
  } as RequestRecord;
}

let nextPort = 40000;

/** One connection to SERVER with `requests` requests, closed for `reason` after `idle` seconds. */
function connection(reason: ConnectionOutcome, idle: number | null, requests = 2): { c: ConnectionRecord; reqs: RequestRecord[] } {
  const reqs = Array.from({ length: requests }, (_, i) => request(i + 1));
  const c: ConnectionRecord = {
    id: nextPort, client: `127.0.0.1:${nextPort++}`, server: SERVER, ipVersion: 4, openedAt: 0, closedAt: 5, handshakeRtt: 0.0001,
    requests, reusedRequests: Math.max(0, requests - 1), responses: requests, handshakeTimeSaved: 0, advertisedTimeout: null,
    advertisedMax: null, closeReason: reason, closedBy: reason === 'client_idle' || reason === 'client_close' ? 'client' : 'server',
    closedWith: 'fin', idleBeforeClose: idle, tunneled: false, midstream: false, protocol: 'http/1.1', h2: null, tls: null, requestsEstimated: null,
  };
  return { c, reqs };
}

interface Run {
  servers: ServerSummary[];
  server: ServerSummary;
  warnings: ReturnType<typeof findWarnings>;
  text: string;
}

/** Feeds the connections through the report as the engine would, with the server's advertised timeout. */
function run(advertisedTimeout: number | null, conns: Array<[ConnectionOutcome, number | null]>): Run {
  const report = new AnalyzeReport(false);
  for (const [reason, idle] of conns) {
    const { c, reqs } = connection(reason, idle);
    report.opened(c);
    for (const r of reqs) report.request(c, r);
    report.closed(c);
  }
  const st = new ServerState(8, SERVER);
  st.advertisedTimeout = advertisedTimeout;
  const servers = report.serverSummaries(new Map([[SERVER, st]]));
  const totals = report.totals();
  const warnings = findWarnings(servers, totals, stats());
  const text = renderText({
    file: 'synthetic.pcap', capture: { format: 'pcap', compressed: false, packets: 0, snaplenCut: 0, unknownBlocks: 0, bytes: 0, problem: null },
    stats: stats(), totals, distribution: report.distribution, servers, warnings, savedFromMedian: 0, savedUnknown: 0, maxServers: 10,
    tunneled: 0, midstream: 0,
  });
  return { servers, server: servers[0], warnings, text };
}

const times = <T>(n: number, x: T): T[] => Array.from({ length: n }, () => x);

describe('observed idle close against the advertised timeout', () => {
  it('the tolerance and the floor are the documented ones', () => {
    expect(IDLE_CLOSE_TOLERANCE_SECONDS).toBe(0.5);
    expect(MIN_ADVISED_IDLE_SECONDS).toBe(0.5);
  });

  it('advertised 2 s, observed 3 s (Node.js 20, lighttpd): the difference is in the JSON, a warning and the table', () => {
    const r = run(2, [...times(3, ['idle_timeout', 3] as [ConnectionOutcome, number]), ['idle_timeout', 3.1], ['client_idle', 1.5]]);
    expect(r.server).toMatchObject({
      advertisedTimeoutSeconds: 2,
      observedIdleTimeoutSeconds: 3,
      observedIdleTimeoutSamples: 4,
      idleCloseVsAdvertisedSeconds: 1,
      clientIdleTimeoutBelowSeconds: 2,
    });
    const w = r.warnings.find((x) => x.code === 'idle_close_later_than_advertised');
    expect(w?.server).toBe(SERVER);
    expect(w?.message).toContain(`${SERVER} advertises timeout=2 but closed idle connections after 3.0 s (median of 4)`);
    expect(r.warnings.some((x) => x.code === 'idle_close_earlier_than_advertised')).toBe(false);
    expect(r.text).toContain(`! ${w!.message}`);
    // The table puts the two side by side and marks the one that differs.
    const table = r.text.slice(r.text.indexOf('Busiest servers'));
    expect(table).toMatch(/ka timeout +seen timeout/);
    expect(table).toMatch(new RegExp(`${SERVER.replace(/\./g, '\\.')} .* 2\\.0 s +3\\.0 s !`));
  });

  it('advertised 5 s, observed 2 s: the server closes earlier than it announces, and the advice quotes 2 s', () => {
    const r = run(5, times(4, ['idle_timeout', 2] as [ConnectionOutcome, number]).concat([['race', 2]]));
    expect(r.server).toMatchObject({ idleCloseVsAdvertisedSeconds: -3, clientIdleTimeoutBelowSeconds: 2, observedIdleTimeoutSamples: 4 });
    const w = r.warnings.find((x) => x.code === 'idle_close_earlier_than_advertised');
    expect(w?.message).toContain(`${SERVER} advertises timeout=5 but closed idle connections after 2.0 s (median of 4)`);
    expect(w?.message).toContain('earlier than it announces');
    expect(r.warnings.some((x) => x.code === 'idle_close_later_than_advertised')).toBe(false);
    // The race advice: below min(advertised, observed), never the advertised 5 s alone.
    const race = r.warnings.find((x) => x.code === 'keepalive_race');
    expect(race?.message).toContain('below 2.0 s');
    expect(race?.message).not.toMatch(/\(5 s\)/);
    // The idle advice quotes the observed close, which is what clients must stay below.
    const idle = r.warnings.find((x) => x.code === 'clients_outlive_server_timeout');
    expect(idle?.message).toContain('~2.0 s');
  });

  it('within the tolerance (Apache closing at 1.9 s for timeout=2): no difference is reported', () => {
    const r = run(2, times(4, ['idle_timeout', 1.9] as [ConnectionOutcome, number]));
    expect(r.server.idleCloseVsAdvertisedSeconds).toBe(-0.1);
    expect(r.warnings.filter((x) => x.code.startsWith('idle_close_'))).toEqual([]);
    expect(r.text).not.toMatch(/ s !/);
  });

  it('an idle close of 76 µs is no timeout: no "below ~0 s", no numeric idle advice, no comparison', () => {
    const r = run(2, times(4, ['idle_timeout', 0.000076] as [ConnectionOutcome, number]).concat([['race', 0.000076]]));
    expect(r.server.idleCloseVsAdvertisedSeconds).toBeNull();
    // What clients must stay below is what the header says: the 76 µs close supports nothing.
    expect(r.server.clientIdleTimeoutBelowSeconds).toBe(2);
    const all = r.warnings.map((x) => x.message).join('\n');
    expect(all).not.toMatch(/~0 s|below ~?0(\.0+)? s|\(0 s\)/);
    expect(r.warnings.filter((x) => x.code.startsWith('idle_close_'))).toEqual([]);
    const idle = r.warnings.find((x) => x.code === 'clients_outlive_server_timeout');
    expect(idle).toBeDefined();
    expect(idle!.message).not.toMatch(/~\d/);
    expect(idle!.message).toContain('right after their response');
  });

  it('an idle close of 76 µs and nothing advertised: nothing numeric anywhere', () => {
    const r = run(null, times(4, ['idle_timeout', 0.000076] as [ConnectionOutcome, number]).concat([['race', 0.000076]]));
    expect(r.server).toMatchObject({ idleCloseVsAdvertisedSeconds: null, clientIdleTimeoutBelowSeconds: null });
    for (const w of r.warnings) expect(w.message, w.code).not.toMatch(/\d+(\.\d+)? s\b/);
  });

  it('nothing advertised, observed 3 s: the advice quotes the observed close; no comparison', () => {
    const r = run(null, times(4, ['idle_timeout', 3] as [ConnectionOutcome, number]));
    expect(r.server).toMatchObject({ idleCloseVsAdvertisedSeconds: null, clientIdleTimeoutBelowSeconds: 3, observedIdleTimeoutSamples: 4 });
    expect(r.warnings.find((x) => x.code === 'clients_outlive_server_timeout')?.message).toContain('~3.0 s');
  });

  it('advertised but no idle close seen: the advertised timeout is what the data supports', () => {
    const r = run(2, [['race', 0.5], ['client_idle', 1.5]]);
    expect(r.server).toMatchObject({ observedIdleTimeoutSeconds: null, observedIdleTimeoutSamples: 0, idleCloseVsAdvertisedSeconds: null, clientIdleTimeoutBelowSeconds: 2 });
    expect(r.warnings.find((x) => x.code === 'keepalive_race')?.message).toContain('below 2.0 s');
  });
});

// ---------------------------------------------------------------------------------------------
// Protocols (issue 12): the JSON's protocols and connections[].protocol/h2, the text's Protocols
// line, and advice that speaks HTTP/2 where the server does.

describe('protocols in the report', () => {
  /** Feeds connections of `protocol` through a report; `h2` facts for h2c ones. */
  function runAs(protocol: ConnectionRecord['protocol'], conns: Array<[ConnectionOutcome, number | null]>, report = new AnalyzeReport(true)) {
    for (const [reason, idle] of conns) {
      const { c, reqs } = connection(reason, idle, 3);
      c.protocol = protocol;
      c.h2 = protocol === 'h2c' ? { peakConcurrentStreams: 2, streamsRefused: reason === 'race' ? 1 : 0, serverMaxConcurrentStreams: 128, goaways: [{ side: 'server', time: 4.1234567, lastStreamId: 5, error: 'NO_ERROR', debug: '' }] } : null;
      report.opened(c);
      for (const r of reqs) report.request(c, r);
      report.closed(c);
    }
    return report;
  }
  function output(report: AnalyzeReport) {
    const st = new ServerState(8, SERVER);
    const servers = report.serverSummaries(new Map([[SERVER, st]]));
    const totals = report.totals();
    const warnings = findWarnings(servers, totals, stats());
    const text = renderText({
      file: 'synthetic.pcap', capture: { format: 'pcap', compressed: false, packets: 0, snaplenCut: 0, unknownBlocks: 0, bytes: 0, problem: null },
      stats: stats(), totals, distribution: report.distribution, servers, warnings, savedFromMedian: 0, savedUnknown: 0, maxServers: 10,
      tunneled: 0, midstream: 0,
    });
    return { totals, server: servers[0], warnings, text, connections: report.connectionList() };
  }
  const warning = (o: ReturnType<typeof output>, code: string) => o.warnings.find((w) => w.code === code)?.message ?? '';

  it('totals and servers[] count connections by protocol; connections[] carry protocol and, for h2c, h2', () => {
    const report = runAs('h2c', [['client_close', 0.01], ['race', 0.2]]);
    runAs('http/1.0', [['not_persistent', 0]], report);
    runAs('http/1.1', [['client_close', 0.01]], report);
    const o = output(report);
    expect(o.totals.protocols).toEqual({ 'http/1.0': 1, 'http/1.1': 1, h2c: 2 });
    expect(Object.keys(o.totals.protocols)).toEqual(['http/1.0', 'http/1.1', 'h2c']);
    expect(o.server.protocols).toEqual({ 'http/1.0': 1, 'http/1.1': 1, h2c: 2 });
    expect(o.connections.map((c) => c.protocol).sort()).toEqual(['h2c', 'h2c', 'http/1.0', 'http/1.1']);
    expect(o.connections.filter((c) => c.protocol !== 'h2c').map((c) => c.h2)).toEqual([null, null]);
    expect(o.connections.filter((c) => c.protocol === 'h2c').map((c) => c.h2)).toEqual([
      { peakConcurrentStreams: 2, streamsRefused: 0, serverMaxConcurrentStreams: 128, goaways: [{ side: 'server', time: 4.123457, lastStreamId: 5, error: 'NO_ERROR', debug: '' }] },
      { peakConcurrentStreams: 2, streamsRefused: 1, serverMaxConcurrentStreams: 128, goaways: [{ side: 'server', time: 4.123457, lastStreamId: 5, error: 'NO_ERROR', debug: '' }] },
    ]);
    expect(o.text).toMatch(/^ {2}protocols +http\/1\.0 1, http\/1\.1 1, h2c 2 /m);
    expect(o.text).toMatch(/server +protocols +conns/);
  });

  it('HTTP/1.0 and 1.1 mixed: the Protocols line, no column', () => {
    const o = output(runAs('http/1.1', [['client_close', 0.01]], runAs('http/1.0', [['not_persistent', 0]])));
    expect(o.text).toMatch(/^ {2}protocols +http\/1\.0 1, http\/1\.1 1 /m);
    expect(o.text).not.toMatch(/server +protocols/);
  });

  it('one HTTP/1 protocol only: no Protocols line nor column (the HTTP/1 report is as it was)', () => {
    const o = output(runAs('http/1.1', [['client_close', 0.01], ['idle_timeout', 2]]));
    expect(o.totals.protocols).toEqual({ 'http/1.1': 2 });
    expect(o.text).not.toMatch(/protocols/);
  });

  it('h2c alone shows the Protocols line', () => {
    expect(output(runAs('h2c', [['client_close', 0.01]])).text).toMatch(/^ {2}protocols +h2c 1 /m);
  });

  it('max_requests on an HTTP/2 server names nginx keepalive_requests and http2_max_requests, not the HTTP/1 settings', () => {
    const h2 = output(runAs('h2c', times(4, ['max_requests', 0.001] as [ConnectionOutcome, number])));
    const m = warning(h2, 'max_requests_dominates');
    expect(m).toContain('GOAWAY after that many streams');
    expect(m).toContain('nginx keepalive_requests (http2_max_requests before nginx 1.19.7)');
    expect(m).not.toContain('MaxKeepAliveRequests');
    const h1 = warning(output(runAs('http/1.1', times(4, ['max_requests', 0.001] as [ConnectionOutcome, number]))), 'max_requests_dominates');
    expect(h1).toContain('MaxKeepAliveRequests (Apache)');
    expect(h1).not.toContain('http2_max_requests');
    // A server speaking both: both sets.
    const both = runAs('h2c', times(2, ['max_requests', 0.001] as [ConnectionOutcome, number]));
    const m2 = warning(output(runAs('http/1.1', times(2, ['max_requests', 0.001] as [ConnectionOutcome, number]), both)), 'max_requests_dominates');
    expect(m2).toContain('MaxKeepAliveRequests (Apache)');
    expect(m2).toContain('for HTTP/2, nginx keepalive_requests (http2_max_requests before nginx 1.19.7)');
  });

  it('idle timeout on an HTTP/2 server names keepalive_timeout, Node.js server.setTimeout and caddy idle_timeout', () => {
    const m = warning(output(runAs('h2c', times(4, ['idle_timeout', 1] as [ConnectionOutcome, number]))), 'clients_outlive_server_timeout');
    expect(m).toContain('~1.0 s');
    for (const s of ['nginx keepalive_timeout', 'http2_idle_timeout before 1.19.7', 'Node.js http2 server.setTimeout', 'caddy idle_timeout']) expect(m).toContain(s);
    expect(warning(output(runAs('http/1.1', times(4, ['idle_timeout', 1] as [ConnectionOutcome, number]))), 'clients_outlive_server_timeout')).not.toContain('HTTP/2');
  });

  it('races on an HTTP/2 server: refused streams were not processed and may be retried', () => {
    expect(warning(output(runAs('h2c', [['race', 0.2], ['client_close', 0.01]])), 'keepalive_race')).toContain('REFUSED_STREAM');
    expect(warning(output(runAs('http/1.1', [['race', 0.2], ['client_close', 0.01]])), 'keepalive_race')).not.toContain('REFUSED_STREAM');
  });

  it('max_age dominating: a warning naming nginx keepalive_time, gRPC MAX_CONNECTION_AGE and Envoy max_connection_duration', () => {
    const o = output(runAs('h2c', [...times(3, ['max_age', 0.01] as [ConnectionOutcome, number]), ['client_close', 0.01]]));
    const m = warning(o, 'max_age_dominates');
    expect(m).toContain(`75% of ${SERVER}'s connections were ended by the server at its connection age limit`);
    for (const s of ['nginx keepalive_time', 'gRPC MAX_CONNECTION_AGE', 'Envoy max_connection_duration']) expect(m).toContain(s);
    expect(o.text).toContain(`! ${m}`);
    expect(o.text).toMatch(/^ {2}max_age +3 .*server ended the connection at its age limit$/m);
    // Under a quarter: no warning.
    expect(warning(output(runAs('h2c', [['max_age', 0.01], ...times(4, ['client_close', 0.01] as [ConnectionOutcome, number])])), 'max_age_dominates')).toBe('');
  });
});

describe('the h2c capture through the report (test/fixtures/h2c/manifest.json)', () => {
  it('protocols, connections[].protocol and h2, and the HTTP/2 advice of its servers', async () => {
    const { Engine } = await import('../../src/conn/engine.js');
    const { readCapture } = await import('../../src/capture/file.js');
    const { readFileSync } = await import('node:fs');
    const { join } = await import('node:path');
    const root = join(import.meta.dirname, '../..');
    const manifest = JSON.parse(readFileSync(join(root, 'test/fixtures/h2c/manifest.json'), 'utf8')) as Array<{ client: string; server: string; expectedProtocol: string; expectedH2?: { peakConcurrentStreams: number; streamsRefused: number } }>;
    const engine = new Engine();
    const report = new AnalyzeReport(true);
    engine.subscribe(report);
    await readCapture(join(root, 'test/fixtures/h2c/h2c-servers.pcap'), engine);
    engine.finish();
    const totals = report.totals();
    const servers = report.serverSummaries(engine.servers);
    expect(totals.protocols).toEqual({ 'http/1.1': 3, h2c: 28 });
    expect(Object.fromEntries(servers.map((s) => [s.server, s.protocols]))).toEqual({
      '127.0.0.1:18100': { h2c: 11 }, '127.0.0.1:18101': { h2c: 3 }, '127.0.0.1:18102': { h2c: 7 }, '127.0.0.1:18103': { 'http/1.1': 3, h2c: 7 },
    });
    const byClient = new Map(report.connectionList().map((c) => [`${c.client} ${c.server}`, c]));
    expect(byClient.size).toBe(manifest.length);
    for (const m of manifest) {
      const c = byClient.get(`${m.client} ${m.server}`)!;
      expect(c.protocol, m.client).toBe(m.expectedProtocol);
      if (m.expectedH2) expect(c.h2, m.client).toMatchObject({ peakConcurrentStreams: m.expectedH2.peakConcurrentStreams, streamsRefused: m.expectedH2.streamsRefused });
      else expect(c.h2, m.client).toBeNull();
    }
    expect(byClient.get([...byClient.keys()].find((k) => k.endsWith('127.0.0.1:18102'))!)!.h2!.serverMaxConcurrentStreams).toBe(4);
    const w = findWarnings(servers, totals, stats());
    const of = (code: string, server: string) => w.find((x) => x.code === code && x.server === server)?.message ?? '';
    expect(of('max_requests_dominates', '127.0.0.1:18100')).toContain('http2_max_requests before nginx 1.19.7');
    expect(of('max_age_dominates', '127.0.0.1:18101')).toContain('nginx keepalive_time');
    expect(of('clients_outlive_server_timeout', '127.0.0.1:18102')).toContain('Node.js http2 server.setTimeout');
  });
});
