/**
 * The client table (issue 14): per client address, or per group of the names file; bounded either
 * way (MAX_CLIENTS addresses, the quietest merged into `other` at the cap; MAX_CLIENT_GROUPS groups,
 * later ones `other`).
 */
import { describe, expect, it } from 'vitest';
import { ClientTable, MAX_CLIENT_GROUPS } from '../../src/conn/clients.js';
import { NameMap } from '../../src/config/names.js';
import type { ConnectionRecord } from '../../src/conn/records.js';

function closed(client: string, over: Partial<ConnectionRecord> = {}): ConnectionRecord {
  return {
    id: 0, client, server: '10.0.0.9:80', ipVersion: 4, openedAt: 0, closedAt: 5, handshakeRtt: null, requests: 3, requestsEstimated: null,
    reusedRequests: 2, responses: 3, handshakeTimeSaved: 0, advertisedTimeout: null, advertisedMax: null, closeReason: 'client_idle', closedBy: 'client',
    closedWith: 'fin', idleBeforeClose: 1.5, tunneled: false, midstream: false, protocol: 'http/1.1', h2: null, tls: null, ...over,
  };
}

describe('ClientTable', () => {
  it('by address: ports are connections of one client; the figures and the median idle before its own closes', () => {
    const t = new ClientTable(null, false);
    t.closed(closed('10.1.0.1:4000', { idleBeforeClose: 1 }));
    t.closed(closed('10.1.0.1:4001', { idleBeforeClose: 3 }));
    t.closed(closed('10.1.0.1:4002', { closeReason: 'idle_timeout', closedBy: 'server', idleBeforeClose: 5 }));
    t.closed(closed('[fd00::1]:4000', { requests: 1, reusedRequests: 0 }));
    const [a, b] = t.summaries();
    expect(a).toMatchObject({ client: '10.1.0.1', connections: 3, requests: 9, reusedRequests: 6, reuseRatio: 0.6666, topCloseReason: 'client_idle', topCloseReasonConnections: 2, medianIdleBeforeOwnCloseSeconds: 2 });
    expect(b).toMatchObject({ client: '[fd00::1]', connections: 1, reuseRatio: 0 });
  });

  it('by address at the cap: the quietest tenth is merged into other, so a busy client that comes late keeps its own row', () => {
    const t = new ClientTable(null, false, 10);
    for (let i = 0; i < 10; i++) t.closed(closed(`10.3.0.${i}:4000`, { requests: 1, reusedRequests: 0 }));
    t.closed(closed('10.3.0.0:4001')); // 10.3.0.0 now has 2 connections: not among the quietest
    for (let i = 0; i < 20; i++) t.closed(closed(`10.9.9.9:${5000 + i}`));
    const rows = t.summaries();
    expect(rows[0]).toMatchObject({ client: '10.9.9.9', connections: 20 });
    expect(rows.find((r) => r.client === '10.3.0.0')?.connections).toBe(2);
    const other = rows.find((r) => r.client === 'other')!;
    expect(other.connections).toBe(1);
    expect(t.overflowConnections).toBe(1);
    expect(t.size).toBeLessThanOrEqual(10 + 1);
    // Nothing is lost: every connection is in a row.
    expect(rows.reduce((a, r) => a + r.connections, 0)).toBe(10 + 1 + 20);
  });

  it(`by group: a names file with more names than ${MAX_CLIENT_GROUPS} gives at most that many groups, the rest other`, () => {
    const names: Record<string, string> = {};
    for (let i = 0; i < MAX_CLIENT_GROUPS + 50; i++) names[`10.2.${i >> 8}.${i & 255}`] = `group-${i}`;
    const t = new ClientTable(NameMap.parse(JSON.stringify(names), 'test'), true);
    for (let i = 0; i < MAX_CLIENT_GROUPS + 50; i++) t.closed(closed(`10.2.${i >> 8}.${i & 255}:5000`));
    t.closed(closed('192.0.2.1:5000'));
    expect(t.size).toBe(MAX_CLIENT_GROUPS + 1);
    const other = t.summaries().find((c) => c.client === 'other')!;
    expect(other.connections).toBe(50 + 1);
    expect(t.overflowConnections).toBe(50);
  });
});
