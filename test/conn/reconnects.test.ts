/**
 * Reconnect gaps (issue 14, "what would change if"): synthetic conversations with known answers.
 * A server's idle close (or request-limit close) and the same client address's next connection
 * to it give the gap from the old connection's last byte to the new one's SYN, whichever of the
 * two facts the engine reports first.
 */
import { describe, expect, it } from 'vitest';
import { ReconnectPairs, type ReconnectFact } from '../../src/conn/reconnects.js';
import type { ConnectionRecord } from '../../src/conn/records.js';

let nextPort = 40000;
function conn(over: Partial<ConnectionRecord>): ConnectionRecord {
  return {
    id: 0, client: `10.0.0.1:${nextPort++}`, server: '10.0.0.9:80', ipVersion: 4, openedAt: 0, closedAt: null, handshakeRtt: 0.001,
    requests: 1, requestsEstimated: null, reusedRequests: 0, responses: 1, handshakeTimeSaved: 0, advertisedTimeout: 5, advertisedMax: null,
    closeReason: 'open', closedBy: null, closedWith: null, idleBeforeClose: null, tunneled: false, midstream: false, protocol: 'http/1.1', h2: null, tls: null,
    ...over,
  };
}

/** A connection the server closed idle: last byte at `last`, FIN `idle` seconds later. */
function idleClosed(openedAt: number, last: number, idle: number, over: Partial<ConnectionRecord> = {}): ConnectionRecord {
  return conn({ openedAt, closedAt: last + idle, idleBeforeClose: idle, closeReason: 'idle_timeout', closedBy: 'server', closedWith: 'fin', ...over });
}

function pairs(limit = 1000): { p: ReconnectPairs; facts: ReconnectFact[]; evictions: () => number } {
  const facts: ReconnectFact[] = [];
  let evicted = 0;
  return { p: new ReconnectPairs(limit, (f) => facts.push(f), () => evicted++), facts, evictions: () => evicted };
}

describe('ReconnectPairs', () => {
  it('an idle close, then the same client 7 s after the FIN: the gap runs from the last byte (5 s idle + 7 s = 12 s)', () => {
    const { p, facts } = pairs();
    const old = idleClosed(100, 110, 5);
    p.opened(old);
    p.closed(old);
    p.opened(conn({ openedAt: 122 }));
    expect(facts).toEqual([{ client: expect.stringMatching(/^10\.0\.0\.1:/), server: '10.0.0.9:80', after: 'idle_timeout', gapSeconds: 12, time: 122 }]);
  });

  it('the same gap when the new connection is reported before the old one closes (a late close fact)', () => {
    const { p, facts } = pairs();
    const old = idleClosed(100, 110, 5);
    p.opened(old);
    p.opened(conn({ openedAt: 122 }));
    p.closed(old);
    expect(facts.map((f) => f.gapSeconds)).toEqual([12]);
  });

  it('a connection opened before the close (another of the pool) is no reconnect; the next one is', () => {
    const { p, facts } = pairs();
    const old = idleClosed(100, 110, 5);
    p.opened(old);
    p.opened(conn({ openedAt: 112 })); // while the old one was still open
    p.closed(old);
    expect(facts).toHaveLength(0);
    p.opened(conn({ openedAt: 130 }));
    expect(facts.map((f) => f.gapSeconds)).toEqual([20]);
  });

  it('a pool: each new connection pairs with the most recently idle of the closed ones, one each', () => {
    const { p, facts } = pairs();
    const a = idleClosed(0, 10, 5);
    const b = idleClosed(0, 12, 5);
    const c = idleClosed(0, 14, 5);
    for (const x of [a, b, c]) { p.opened(x); p.closed(x); }
    p.opened(conn({ openedAt: 30 }));
    p.opened(conn({ openedAt: 31 }));
    expect(facts.map((f) => f.gapSeconds)).toEqual([16, 19]);
    p.opened(conn({ openedAt: 40 }));
    expect(facts.map((f) => f.gapSeconds)).toEqual([16, 19, 30]);
    p.opened(conn({ openedAt: 50 }));
    expect(facts).toHaveLength(3);
  });

  it('another client address or another server is another pair; a client closing idle is no server close', () => {
    const { p, facts } = pairs();
    const old = idleClosed(0, 10, 5);
    p.opened(old);
    p.closed(old);
    p.opened(conn({ openedAt: 20, client: '10.0.0.2:5000' }));
    p.opened(conn({ openedAt: 20, server: '10.0.0.9:8080' }));
    expect(facts).toHaveLength(0);
    const mine = conn({ openedAt: 0, closedAt: 15, idleBeforeClose: 5, closeReason: 'client_idle', closedBy: 'client' });
    p.opened(mine);
    p.closed(mine);
    p.opened(conn({ openedAt: 21 }));
    expect(facts.map((f) => f.gapSeconds)).toEqual([11]); // paired with the idle close, not the client's own
  });

  it('a request-limit close, and a client that reconnects at once', () => {
    const { p, facts } = pairs();
    const old = conn({ openedAt: 0, closedAt: 3.0002, idleBeforeClose: 0.0002, closeReason: 'max_requests', closedBy: 'client' });
    p.opened(old);
    p.closed(old);
    p.opened(conn({ openedAt: 3.0005 }));
    expect(facts).toHaveLength(1);
    expect(facts[0].after).toBe('max_requests');
    expect(facts[0].gapSeconds).toBeCloseTo(0.0005, 9);
  });

  it('a connection joined mid-stream has no opening time: no gap', () => {
    const { p, facts } = pairs();
    const old = idleClosed(0, 10, 5);
    p.opened(old);
    p.closed(old);
    p.opened(conn({ openedAt: 20, midstream: true }));
    expect(facts).toHaveLength(0);
  });

  it('past its cap the least recently used pair is dropped and counted', () => {
    const { p, facts, evictions } = pairs(100);
    for (let i = 0; i < 150; i++) {
      const c = idleClosed(0, 10, 5, { client: `10.1.${i >> 8}.${i & 255}:4000` });
      p.opened(c);
      p.closed(c);
    }
    expect(p.size).toBe(100);
    expect(evictions()).toBe(50);
    // The first 50 clients were evicted: their return is not paired; the last ones are.
    p.opened(conn({ openedAt: 30, client: '10.1.0.0:4001' }));
    p.opened(conn({ openedAt: 30, client: '10.1.0.149:4001' }));
    expect(facts.map((f) => f.client)).toEqual(['10.1.0.149:4001']);
  });
});
