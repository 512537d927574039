/**
 * Issue 14, names instead of addresses: `--names FILE` (JSON or YAML: "ip:port", "ip" or CIDR to
 * a name) in analyze and the daemon, and the opt-in client grouping `--client-groups`. On the
 * real-server capture (Apache 127.0.0.1:18080, nginx 127.0.0.1:18081 and [::1]:18081, see
 * test/fixtures/real/README.md): analyze shows the servers by name and its client table is the
 * connections list summed per client (or per group: this test maps addresses to groups itself);
 * the daemon labels servers by name, counts client groups (never addresses), lists them in
 * /api/clients, and reads the file again on SIGHUP (a bad file keeps the names in use).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { OPTIONS, envName } from '../../src/config/daemon.js';
import { parseProm, samples, total, type Sample } from '../helpers/prom.js';
import { buildCli } from '../helpers/cli.js';
import { waitFor } from '../helpers/procs.js';
import { replayDaemon } from '../helpers/daemon.js';

const ROOT = join(import.meta.dirname, '../..');
const PCAP = join(ROOT, 'test/fixtures/real/real-servers.pcap');
const ENV: NodeJS.ProcessEnv = { ...process.env, KEEPALIVE_EXPORTER_DEBUG: '' };
for (const o of OPTIONS) delete ENV[envName(o.flag)];

let dir = '';
let MAIN = '';
let files = '';
beforeAll(() => {
  ({ dir, main: MAIN } = buildCli('ka-names-'));
  files = mkdtempSync(join(tmpdir(), 'ka-names-files-'));
}, 120_000);
afterAll(() => {
  if (dir) rmSync(dir, { recursive: true, force: true });
  if (files) rmSync(files, { recursive: true, force: true });
});

interface Conn { client: string; server: string; requests: number; reusedRequests: number; closeReason: string }
interface Client { client: string; connections: number; requests: number; reusedRequests: number; closeReasons: Record<string, number>; topCloseReason: string | null }

function analyze(args: string[]): { code: number | null; out: string; err: string } {
  const r = spawnSync(process.execPath, [MAIN, 'analyze', PCAP, ...args], { cwd: ROOT, env: ENV, encoding: 'utf8', timeout: 60_000 });
  return { code: r.status, out: r.stdout, err: r.stderr };
}

function file(name: string, text: string): string {
  const p = join(files, name);
  writeFileSync(p, text);
  return p;
}

/** The connections summed per key, as the client table should have them. */
function sumBy(conns: Conn[], key: (c: Conn) => string): Map<string, { connections: number; requests: number; reusedRequests: number; reasons: Record<string, number> }> {
  const m = new Map<string, { connections: number; requests: number; reusedRequests: number; reasons: Record<string, number> }>();
  for (const c of conns) {
    const k = key(c);
    const a = m.get(k) ?? { connections: 0, requests: 0, reusedRequests: 0, reasons: {} };
    a.connections++;
    a.requests += c.requests;
    a.reusedRequests += c.reusedRequests;
    a.reasons[c.closeReason] = (a.reasons[c.closeReason] ?? 0) + 1;
    m.set(k, a);
  }
  return m;
}

function expectTable(clients: Client[], want: ReturnType<typeof sumBy>): void {
  expect(clients.map((c) => c.client).sort()).toEqual([...want.keys()].sort());
  for (const c of clients) {
    const w = want.get(c.client)!;
    expect({ connections: c.connections, requests: c.requests, reusedRequests: c.reusedRequests, reasons: c.closeReasons }, c.client).toEqual(w);
    const top = Math.max(...Object.values(w.reasons));
    expect(w.reasons[c.topCloseReason!], c.client).toBe(top);
  }
  // Busiest first.
  for (let i = 1; i < clients.length; i++) expect(clients[i - 1].connections).toBeGreaterThanOrEqual(clients[i].connections);
}

/** The test's own grouping, for the names file below: 127.0.0.0/8 is "loopback", the rest "other". */
const groupOf = (client: string): string => (client.startsWith('127.') ? 'loopback' : 'other');
const YAML_NAMES = ['# the real-server fixture', '127.0.0.1:18080: apache-test', '"[::1]:18081": nginx-v6', '127.0.0.0/8: loopback', ''].join('\n');

describe('analyze --names', () => {
  let conns: Conn[] = [];

  it('shows servers by name (ip:port before the CIDR), in JSON and in the text report', () => {
    const names = file('names.yaml', YAML_NAMES);
    const r = analyze(['--json', '--connections', '--names', names]);
    expect(r.code, r.err).toBe(0);
    const j = JSON.parse(r.out) as { servers: Array<{ server: string; name: string | null }>; connections: Conn[]; clients: Client[]; clientsGrouped: boolean; stats: { names: { entries: number } } };
    const byServer = Object.fromEntries(j.servers.map((s) => [s.server, s.name]));
    expect(byServer).toEqual({ '127.0.0.1:18080': 'apache-test', '127.0.0.1:18081': 'loopback', '[::1]:18081': 'nginx-v6' });
    expect(j.stats.names.entries).toBe(3);
    conns = j.connections;
    expect(conns.length).toBeGreaterThan(20);
    // By address: the connections summed per client address (its ports are its connections).
    expect(j.clientsGrouped).toBe(false);
    expectTable(j.clients, sumBy(conns, (c) => c.client.replace(/:\d+$/, '')));
    const text = analyze(['--names', names]);
    expect(text.code, text.err).toBe(0);
    expect(text.out).toContain('apache-test (127.0.0.1:18080)');
    expect(text.out).toContain('nginx-v6 ([::1]:18081)');
    expect(text.out).toMatch(/Busiest clients\n\s+client\s+conns\s+reqs\s+reuse\s+top close reason/);
  });

  it('--client-groups: the client table by group, never by address (unmatched clients are other)', () => {
    const names = file('names.json', JSON.stringify({ '127.0.0.0/8': 'loopback' }));
    const r = analyze(['--json', '--names', names, '--client-groups']);
    expect(r.code, r.err).toBe(0);
    const j = JSON.parse(r.out) as { clients: Client[]; clientsGrouped: boolean };
    expect(j.clientsGrouped).toBe(true);
    expectTable(j.clients, sumBy(conns, (c) => groupOf(c.client)));
    expect(j.clients.map((c) => c.client)).not.toContain('::1');
    const text = analyze(['--names', names, '--client-groups']);
    expect(text.out).toMatch(/Busiest client groups\n\s+group\s+conns/);
  });

  const mistakes: Array<[string, string[], RegExp]> = [
    ['--client-groups without --names', ['--client-groups'], /--client-groups groups clients by the names file: add --names FILE/],
    ['a names file that is not there', ['--names', '/nonexistent/names.yaml'], /--names: names file \/nonexistent\/names\.yaml: no such file/],
    ['a key that is no address', ['--names', '@bad'], /is not an ip, ip:port or CIDR/],
  ];
  for (const [what, args, want] of mistakes) {
    it(`${what}: one line, exit 2`, () => {
      const a = args.map((x) => (x === '@bad' ? file('bad.json', '{"orders.internal": "orders"}') : x));
      const r = analyze(a);
      expect(r.code).toBe(2);
      expect(r.err.trim().split('\n')).toHaveLength(1);
      expect(r.err).toMatch(want);
      expect(r.out).toBe('');
    });
  }
});

describe('the daemon with --names and --client-groups', () => {
  it('labels servers by name, counts client groups, lists them in /api/clients, and reads the file again on SIGHUP', async () => {
    const names = file('daemon-names.yaml', YAML_NAMES);
    const d = await replayDaemon(MAIN, ['--pcap', PCAP, '--names', names, '--client-groups', 'true'], { cwd: ROOT, env: ENV });
    const { base, child, messages } = d;
    try {
      const scrape = async (): Promise<Sample[]> => parseProm(await (await fetch(`${base}/metrics`)).text());
      let s = await scrape();
      const serverLabels = new Set(samples(s, 'keepalive_requests_total').map((x) => x.labels.server));
      expect([...serverLabels].sort()).toEqual(['apache-test', 'loopback', 'nginx-v6']);
      // The groups are the names file's, plus other: no client address in any label.
      const want = sumBy(conns(), (c) => groupOf(c.client));
      const closed = new Map<string, number>();
      for (const x of samples(s, 'keepalive_client_group_connections_closed_total')) closed.set(x.labels.client_group, (closed.get(x.labels.client_group) ?? 0) + x.value);
      expect(Object.fromEntries(closed)).toEqual(Object.fromEntries([...want].map(([g, a]) => [g, a.connections - (a.reasons.open ?? 0)])));
      for (const [g, a] of want) {
        expect(total(s, 'keepalive_client_group_requests_total', { client_group: g }), g).toBe(a.requests);
        expect(total(s, 'keepalive_client_group_requests_total', { client_group: g, reused: 'true' }), g).toBe(a.reusedRequests);
        expect(total(s, 'keepalive_client_group_connections_closed_total', { client_group: g, reason: 'idle_timeout' }), g).toBe(a.reasons.idle_timeout ?? 0);
      }
      expect(total(s, 'keepalive_names_entries')).toBe(3);
      expect(total(s, 'keepalive_names_last_reload_successful')).toBe(1);
      const api = (await (await fetch(`${base}/api/clients?limit=10`)).json()) as { grouped: boolean; clients: Client[] };
      expect(api.grouped).toBe(true);
      expectTable(api.clients, want);

      // SIGHUP with a new file: the per-server gauges take the new names at once.
      writeFileSync(names, '127.0.0.1:18081: nginx-v4\n');
      child.kill('SIGHUP');
      await waitFor('the reload', 5_000, () => messages().some((m) => m.startsWith('SIGHUP: read 1 names')) || null);
      s = await scrape();
      expect(samples(s, 'keepalive_advertised_timeout_seconds').map((x) => x.labels.server).sort()).toEqual(['127.0.0.1:18080', '[::1]:18081', 'nginx-v4']);
      expect(total(s, 'keepalive_names_reloads_total', { result: 'success' })).toBe(1);
      expect(total(s, 'keepalive_names_entries')).toBe(1);

      // A bad file: logged, counted, and the names in use stay.
      writeFileSync(names, 'orders: 10.3.0.0/16\n');
      child.kill('SIGHUP');
      await waitFor('the failed reload', 5_000, () => messages().some((m) => /SIGHUP: names file .*"orders" is not an ip.*keeping the 1 names in use/.test(m)) || null);
      s = await scrape();
      expect(total(s, 'keepalive_names_last_reload_successful')).toBe(0);
      expect(total(s, 'keepalive_names_reloads_total', { result: 'failure' })).toBe(1);
      expect(samples(s, 'keepalive_advertised_timeout_seconds').map((x) => x.labels.server)).toContain('nginx-v4');
    } finally {
      expect(await d.stop(), d.stderr()).toBe(0);
    }
  }, 60_000);

  it('a bad names file at start is one line and exit 2; --client-groups needs --names', () => {
    const bad = file('start-bad.json', '{"10.0.0.1": "other"}');
    const r = spawnSync(process.execPath, [MAIN, '--pcap', PCAP, '--names', bad, '--web.listen-address', '127.0.0.1:0'], { cwd: ROOT, env: ENV, encoding: 'utf8', timeout: 20_000 });
    expect(r.status).toBe(2);
    expect(r.stderr.trim().split('\n')).toHaveLength(1);
    expect(r.stderr).toMatch(/"10\.0\.0\.1" is named "other", the label of what is not named/);
    const g = spawnSync(process.execPath, [MAIN, '--pcap', PCAP, '--client-groups', 'true', '--web.listen-address', '127.0.0.1:0'], { cwd: ROOT, env: ENV, encoding: 'utf8', timeout: 20_000 });
    expect(g.status).toBe(2);
    expect(g.stderr).toMatch(/client groups come from the names file: add --names FILE/);
  });
});

/** The fixture's connections, from analyze (computed once). */
let connCache: Conn[] | null = null;
function conns(): Conn[] {
  if (!connCache) {
    const r = analyze(['--json', '--connections']);
    connCache = (JSON.parse(r.out) as { connections: Conn[] }).connections;
  }
  return connCache;
}
