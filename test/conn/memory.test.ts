/**
 * Memory per tracked flow and under a flood (issue 9, point 3), asserted on heap figures after a
 * full garbage collection, never on time. The packets are the ones `bench/flood.mjs` and
 * `bench/flow-memory.mjs` measure with.
 */
import { describe, expect, it } from 'vitest';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { Engine } from '../../src/conn/engine.js';
import { Exporter } from '../../src/metrics/exporter.js';
import { ClientTable, MAX_CLIENTS } from '../../src/conn/clients.js';
import { ReconnectPairs } from '../../src/conn/reconnects.js';
import { DEFAULT_LIMITS } from '../../src/config/limits.js';

// @ts-expect-error plain JavaScript shared with the benchmarks
import { LINKTYPE_RAW, heldOutOfOrder, idleConnection, idleTlsConnection, synOnly } from '../../bench/flood-packets.mjs';

/** Heap per client of the client table (ClientTable), measured: about 300 bytes. */
const CLIENT_BYTES = 400;
/** Heap per client/server pair of the reconnect table (reconnects.ts) holding one opening. */
const PAIR_BYTES = 200;

type Make = (i: number) => Buffer[];

setFlagsFromString('--expose-gc');
const gc = runInNewContext('gc') as () => void;

function retained(): number {
  gc();
  gc();
  const m = process.memoryUsage();
  return m.heapUsed + m.arrayBuffers;
}

/** Feeds flows 0..n-1 of one kind; packets are garbage once fed, so only the engine's state stays. */
function feed(engine: Engine, make: Make, from: number, n: number, t0 = 1_700_000_000): void {
  let t = t0;
  for (let i = from; i < from + n; i++, t += 1e-6) {
    for (const p of make(i)) engine.packet(LINKTYPE_RAW, p, 0, p.length, p.length, t);
  }
}

function bytesPerFlow(make: Make, n: number): number {
  const engine = new Engine({ limits: { maxFlows: n + 10 } });
  const exporter = new Exporter({ maxServers: 500, sources: () => [] });
  engine.subscribe(exporter.forSource('test'));
  const before = retained();
  feed(engine, make, 0, n);
  const after = retained();
  expect(engine.stats().flowsTracked).toBe(n);
  return (after - before) / n;
}

describe('heap per tracked flow (the daemon\'s engine with its exporter)', () => {
  it('a SYN alone (a SYN flood) keeps under 500 bytes', () => {
    expect(bytesPerFlow(synOnly, 50_000)).toBeLessThan(500);
  });

  // A connection and its protocol session are two objects since the session seam (issue 12):
  // 1,702 bytes before it, 1,790 after (bench/flow-memory.mjs, 100,000 flows). Each of these
  // flows is a new client, so each also holds a reconnect pair (issue 14, under PAIR_BYTES).
  it(`an idle keep-alive connection (handshake, one exchange, no close) keeps under ${1900 + PAIR_BYTES} bytes`, () => {
    expect(bytesPerFlow(idleConnection, 20_000)).toBeLessThan(1900 + PAIR_BYTES);
  });

  // The TLS session, its two record streams and the hellos' facts: 3,531 bytes measured
  // (bench/flow-memory.mjs, 50,000 flows); FLOW_BYTES_BUDGETED (4 KiB) must hold it.
  it('an idle TLS connection, not decrypted (hellos, Finished, one exchange of records) keeps under 4,096 bytes', () => {
    expect(bytesPerFlow(idleTlsConnection, 20_000)).toBeLessThan(4096);
  });

  it('a connection holding 1 KiB out of order keeps that KiB and under 1,000 bytes more', () => {
    expect(bytesPerFlow(heldOutOfOrder, 20_000)).toBeLessThan(1024 + 1000);
  });
});

describe('a flood past --max-flows', () => {
  it('evicts and counts; the heap holds the capped table, not the flood', () => {
    const maxFlows = 20_000;
    const engine = new Engine({ limits: { maxFlows } });
    const exporter = new Exporter({ maxServers: 500, sources: () => [] });
    engine.subscribe(exporter.forSource('test'));
    const before = retained();
    feed(engine, synOnly, 0, 300_000);
    const afterSyns = retained();
    feed(engine, idleConnection, 300_000, 60_000, 1_700_000_010);
    const afterConns = retained();
    const s = engine.stats();
    expect(s.flowsTracked).toBe(maxFlows);
    expect(s.flowsEvicted).toBe(360_000 - maxFlows);
    expect(s.anomalies.flow_evicted).toBe(360_000 - maxFlows);
    expect(s.connectionsOpened).toBe(60_000);
    // Evicted connections were reported (as still open when tracking ended) and let go.
    expect(exporter.openByConnection.size).toBe(maxFlows);
    expect(afterSyns - before).toBeLessThan(maxFlows * 500 + 2 * 2 ** 20);
    // The exporter's client table is capped too (MAX_CLIENTS distinct client addresses and "other"): each flood connection's client is new.
    expect(exporter.clients.size).toBeLessThanOrEqual(MAX_CLIENTS + 1);
    expect(exporter.clients.size).toBeGreaterThan(MAX_CLIENTS * 0.85);
    // And the reconnect pairs (DEFAULT_LIMITS.maxReconnectPairs at most), one per new client too.
    expect(afterConns - before).toBeLessThan(maxFlows * 1900 + MAX_CLIENTS * CLIENT_BYTES + DEFAULT_LIMITS.maxReconnectPairs * PAIR_BYTES + 2 * 2 ** 20);
  });

  it(`the reconnect table: under ${PAIR_BYTES} bytes a client/server pair`, () => {
    const p = new ReconnectPairs(DEFAULT_LIMITS.maxReconnectPairs, () => {});
    const base = { id: 0, server: '10.0.0.1:80', ipVersion: 4, openedAt: 5, closedAt: null, handshakeRtt: null, requests: 0, requestsEstimated: null, reusedRequests: 0, responses: 0, handshakeTimeSaved: 0, advertisedTimeout: null, advertisedMax: null, closeReason: 'open', closedBy: null, closedWith: null, idleBeforeClose: null, tunneled: false, midstream: false, protocol: 'http/1.1', h2: null, tls: null } as const;
    const n = DEFAULT_LIMITS.maxReconnectPairs;
    const before = retained();
    for (let i = 0; i < n; i++) p.opened({ ...base, client: `10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}:40000` });
    const after = retained();
    expect(p.size).toBe(n);
    expect((after - before) / n).toBeLessThan(PAIR_BYTES);
  });

  it(`the client table at its cap: under ${CLIENT_BYTES} bytes a client`, () => {
    const t = new ClientTable(null, false);
    const base = { id: 0, server: '10.0.0.1:80', ipVersion: 4, openedAt: 0, closedAt: 1, handshakeRtt: null, requests: 3, requestsEstimated: null, reusedRequests: 2, responses: 3, handshakeTimeSaved: 0, advertisedTimeout: null, advertisedMax: null, closeReason: 'idle_timeout', closedBy: 'server', closedWith: 'fin', idleBeforeClose: 5, tunneled: false, midstream: false, protocol: 'http/1.1', h2: null, tls: null } as const;
    const before = retained();
    for (let i = 0; i < MAX_CLIENTS; i++) t.closed({ ...base, client: `10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}:40000` });
    const after = retained();
    expect(t.size).toBe(MAX_CLIENTS);
    const perClient = (after - before) / MAX_CLIENTS;
    expect(perClient).toBeLessThan(CLIENT_BYTES);
  });

  it('out-of-order data of every flow together stays within the shared budget', () => {
    const budget = 4 * 2 ** 20;
    const engine = new Engine({ limits: { maxFlows: 50_000, maxBufferedBytes: budget } });
    // 20,000 flows each holding 1 KiB would be 20 MiB: the budget lets 4 MiB wait, and the
    // holes of the rest are skipped at once as gaps.
    feed(engine, heldOutOfOrder, 0, 20_000);
    const s = engine.stats();
    expect(s.bufferedBytes).toBeLessThanOrEqual(budget);
    expect(s.bufferedBytes).toBeGreaterThan(budget - 1024);
    expect(s.anomalies.buffer_budget_exceeded).toBe(20_000 - Math.floor(budget / 1024));
    expect(s.gaps).toBe(20_000 - Math.floor(budget / 1024));
    // The end of the capture delivers what was held: nothing stays buffered.
    engine.finish();
    expect(engine.stats().bufferedBytes).toBe(0);
  });
});
