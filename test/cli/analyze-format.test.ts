/**
 * Issue 14, the text report and its siblings, on the real-server capture
 * (test/fixtures/real): `--connections` without `--json` prints a table with a row per
 * connection; `--format ndjson` writes one JSON object per connection and nothing else, the same
 * objects as `--json --connections`; `--server` and `--client` (ip, ip:port, CIDR) keep only the
 * matching connections in every part of the report.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { spawnSync } from 'node:child_process';
import { readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { OPTIONS, envName } from '../../src/config/daemon.js';
import { buildCli } from '../helpers/cli.js';

const ROOT = join(import.meta.dirname, '../..');
const PCAP = join(ROOT, 'test/fixtures/real/real-servers.pcap');
const ENV: NodeJS.ProcessEnv = { ...process.env };
for (const o of OPTIONS) delete ENV[envName(o.flag)];

let dir = '';
let MAIN = '';
beforeAll(() => {
  ({ dir, main: MAIN } = buildCli('ka-analyze-format-'));
}, 120_000);
afterAll(() => {
  if (dir) rmSync(dir, { recursive: true, force: true });
});

interface Conn { client: string; server: string; openedAt: number; requests: number; reusedRequests: number; closeReason: string }
interface Report { totals: { connections: number; requests: number; reusedRequests: number }; servers: Array<{ server: string; connections: number }>; clients: Array<{ client: string; connections: number }>; connections: Conn[] }

function analyze(args: string[]): { code: number | null; out: string; err: string } {
  const r = spawnSync(process.execPath, [MAIN, 'analyze', PCAP, ...args], { cwd: ROOT, env: ENV, encoding: 'utf8', timeout: 60_000 });
  return { code: r.status, out: r.stdout, err: r.stderr };
}

function json(args: string[]): Report {
  const r = analyze(['--json', '--connections', ...args]);
  expect(r.code, r.err).toBe(0);
  return JSON.parse(r.out) as Report;
}

const order = (a: Conn, b: Conn): number => a.openedAt - b.openedAt || (a.client < b.client ? -1 : 1);

describe('analyze output formats', () => {
  let all: Report;
  beforeAll(() => {
    all = json([]);
  });

  it('--connections without --json: the text report ends with a table, one row per connection, in order of opening', () => {
    const r = analyze(['--connections']);
    expect(r.code, r.err).toBe(0);
    const at = r.out.indexOf(`Connections (${all.connections.length}, in order of opening)`);
    expect(at).toBeGreaterThan(0);
    const lines = r.out.slice(at).split('\n');
    expect(lines[1]).toMatch(/^\s+client\s+server\s+protocol\s+opened\s+lasted\s+reqs\s+reused\s+rtt\s+idle at close\s+closed by\s+close reason$/);
    const rows = lines.slice(2, 2 + all.connections.length);
    const sorted = [...all.connections].sort(order);
    rows.forEach((row, i) => {
      const c = sorted[i];
      const cells = row.trim().split(/\s{2,}/);
      expect(cells[0], row).toBe(c.client);
      expect(cells[1], row).toBe(c.server);
      expect(cells[cells.length - 1], row).toBe(c.closeReason);
      expect(cells[5], row).toBe(String(c.requests));
    });
    expect(lines[2 + all.connections.length]).toBe('');
  });

  it('--format ndjson: one JSON object per connection and nothing else, the objects of --json --connections', () => {
    const r = analyze(['--format', 'ndjson']);
    expect(r.code, r.err).toBe(0);
    const lines = r.out.trimEnd().split('\n');
    expect(lines).toHaveLength(all.connections.length);
    const objs = lines.map((l) => JSON.parse(l) as Conn).sort(order);
    expect(objs).toEqual([...all.connections].sort(order));
  });

  it('--format ndjson with --html: the connections on stdout and the page written too', () => {
    const html = join(dir, 'ndjson.html');
    const r = analyze(['--format', 'ndjson', '--html', html]);
    expect(r.code, r.err).toBe(0);
    expect(r.out.trimEnd().split('\n')).toHaveLength(all.connections.length);
    expect(readFileSync(html, 'utf8')).toContain(`<div class="value" id="connections">${all.connections.length}</div>`);
  });

  it('--server ip:port keeps that server only, in the totals, the tables and the connections', () => {
    const f = json(['--server', '127.0.0.1:18080']);
    const want = all.connections.filter((c) => c.server === '127.0.0.1:18080');
    expect(want.length).toBeGreaterThan(0);
    expect(f.totals.connections).toBe(want.length);
    expect(f.totals.requests).toBe(want.reduce((a, c) => a + c.requests, 0));
    expect(f.servers.map((s) => s.server)).toEqual(['127.0.0.1:18080']);
    expect(f.connections.sort(order)).toEqual(want.sort(order));
    expect(f.clients.reduce((a, c) => a + c.connections, 0)).toBe(want.length);
  });

  it('--client by CIDR and by IPv6 address; with --server, connections matching both', () => {
    const v6 = json(['--client', '::1']);
    expect(v6.connections.length).toBeGreaterThan(0);
    expect(v6.connections.every((c) => c.client.startsWith('[::1]:'))).toBe(true);
    expect(v6.connections.length).toBe(all.connections.filter((c) => c.client.startsWith('[::1]:')).length);
    const v4 = json(['--client', '127.0.0.0/8', '--server', '127.0.0.1:18081,[::1]:18081']);
    const want = all.connections.filter((c) => c.client.startsWith('127.') && c.server.endsWith(':18081'));
    expect(want.length).toBeGreaterThan(0);
    expect(v4.totals.connections).toBe(want.length);
    const nd = analyze(['--format', 'ndjson', '--client', '127.0.0.0/8', '--server', '127.0.0.1:18081', '--server', '[::1]:18081']);
    expect(nd.out.trimEnd().split('\n')).toHaveLength(want.length);
  });

  const mistakes: Array<[string[], RegExp]> = [
    [['--format', 'xml'], /--format: "xml" must be text, json or ndjson/],
    [['--json', '--format', 'ndjson'], /--json is --format json/],
    [['--server', 'web-1'], /--server: "web-1" is not an ip, ip:port or CIDR/],
    [['--client', '10.0.0.0/40'], /--client: "10\.0\.0\.0\/40" is not a CIDR/],
  ];
  for (const [args, want] of mistakes) {
    it(`${args.join(' ')}: one line, exit 2`, () => {
      const r = analyze(args);
      expect(r.code).toBe(2);
      expect(r.err.trim().split('\n')).toHaveLength(1);
      expect(r.err).toMatch(want);
    });
  }
});
