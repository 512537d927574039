/**
 * `analyze --threads N`: the workers split the TCP connections between them and their reports
 * merge into one. Every fact of a connection is its own (requests, protocol, TLS facts, who
 * closed), so they are the same as with one thread; what is learnt across connections of a
 * server is learnt per worker, so a limit inferred from two connections may stay `server_close`
 * when they fell to different workers, and nothing else differs.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { spawnSync } from 'node:child_process';
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { buildCli } from '../helpers/cli.js';

const ROOT = join(import.meta.dirname, '../..');
const TLS = join(ROOT, 'test/fixtures/tls');
const REAL = join(ROOT, 'test/fixtures/real/real-servers.pcap');

let dir = '';
let MAIN = '';
beforeAll(() => {
  ({ dir, main: MAIN } = buildCli('ka-threads-'));
});
afterAll(() => {
  if (dir) rmSync(dir, { recursive: true, force: true });
});

function cli(args: string[]): { status: number | null; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [MAIN, 'analyze', ...args], { encoding: 'utf8', maxBuffer: 1 << 26 });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

function json(args: string[]): any {
  const r = cli([...args, '--json', '--connections']);
  expect(r.status, r.stderr).toBe(0);
  return JSON.parse(r.stdout);
}

/** A connection's own facts; the close reason with the one cross-connection inference folded. */
function own(c: any, foldInference: boolean): unknown {
  const reason = foldInference && c.closeReason === 'max_requests' ? 'server_close' : c.closeReason;
  return { client: c.client, server: c.server, requests: c.protocol === 'tls' ? undefined : c.requests, protocol: c.protocol, closedBy: c.closedBy, reason, tls: c.tls && { version: c.tls.version, cipher: c.tls.cipher, resumed: c.tls.resumed, sni: c.tls.sni, turns: c.tls.turns, decrypted: c.tls.decrypted } };
}

describe('analyze --threads', () => {
  for (const [name, args] of [
    ['the TLS fixture with its key log', [join(TLS, 'tls-servers.pcap'), '--tls-keylog', join(TLS, 'keylog.txt')]],
    ['the real-server fixture (Apache and nginx)', [REAL]],
  ] as const) {
    it(`${name}: every connection has the same facts with 3 threads as with 1, and the counts of the file are whole`, () => {
      const one = json([...args]);
      const three = json([...args, '--threads', '3']);
      expect(three.connections.length).toBe(one.connections.length);
      expect(three.connections.map((c: any) => own(c, true))).toEqual(one.connections.map((c: any) => own(c, true)));
      // Packets are read by every worker but counted once; connections are split, never doubled.
      expect(three.capture.packets).toBe(one.capture.packets);
      expect(three.stats.tcpPackets).toBe(one.stats.tcpPackets);
      expect(three.stats.flowsCreated).toBe(one.stats.flowsCreated);
      expect(three.stats.anomalies).toEqual(one.stats.anomalies);
      expect(three.totals.connections).toBe(one.totals.connections);
    }, 60_000);
  }

  it('a limit confirmed by connections that fell to different workers stays server_close, nothing else moves', () => {
    const one = json([REAL]);
    const three = json([REAL, '--threads', '3']);
    const pairs = one.connections.map((c: any, i: number) => [c.closeReason, three.connections[i].closeReason]);
    const moved = pairs.filter(([a, b]: string[]) => a !== b);
    for (const [a, b] of moved) expect([a, b]).toEqual(['max_requests', 'server_close']);
  }, 60_000);

  it('stdin cannot be split: one line and exit 2; a bad count too', () => {
    const r = cli(['-', '--threads', '2']);
    expect(r.status).toBe(2);
    expect(r.stderr.trim().split('\n')).toHaveLength(1);
    expect(r.stderr).toMatch(/--threads 2 needs a capture file: stdin/);
    const z = cli([REAL, '--threads', '0']);
    expect(z.status).toBe(2);
    expect(z.stderr).toMatch(/--threads/);
  });
});
