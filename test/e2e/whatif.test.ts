/**
 * Issue 14, what would change if, on real nginx (keepalive_timeout 1s, keepalive_requests 4) and
 * the clients of test/fixtures/whatif/clients.mjs, whose manifest holds the known answers: a client
 * that came back after pauses of 1.5, 2.5, 4 and 7 s (nginx had closed each connection after
 * 1 s idle), and one that reconnected at once after each of nginx's two limit closes.
 *
 * Checked three ways: the gaps the capture shows (the test pairs each idle close with the
 * client's next connection from the connection list itself) equal the gaps the client left; the
 * analyze report's what-if (a timeout of 5 s saves the 3 gaps under 5 s, of 8 new connections;
 * 10 s all 4; the limit closes' 2 reconnects at once) follows from them; the daemon's
 * keepalive_reconnect_gap_seconds histogram has the same counts under the same bounds. The second
 * suite regenerates the capture with live nginx and checks it the same way.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { OPTIONS, envName } from '../../src/config/daemon.js';
import { buildCli } from '../helpers/cli.js';
import { parseProm, samples } from '../helpers/prom.js';
import { replayDaemon } from '../helpers/daemon.js';

const ROOT = join(import.meta.dirname, '../..');
const FIXTURES = join(ROOT, 'test/fixtures/whatif');
const ENV: NodeJS.ProcessEnv = { ...process.env, KEEPALIVE_EXPORTER_DEBUG: '' };
for (const o of OPTIONS) delete ENV[envName(o.flag)];

interface Manifest {
  server: string;
  clients: Array<{ client: string; scenario: string; gapsSeconds?: number[]; connections: number; reconnectsAtOnce?: number }>;
}
interface Conn { client: string; server: string; openedAt: number; closedAt: number | null; idleBeforeCloseSeconds: number | null; closeReason: string }
interface WhatIf {
  timeout: { currentSeconds: number | null; newConnections: number; reconnectsAfterIdleClose: number; options: Array<{ timeoutSeconds: number; savedConnections: number; savedShare: number }> } | null;
  maxRequests: { limit: number | null; closes: number; reconnectsAtOnce: number; tenTimesLimit: number | null; savedConnections: number } | null;
  races: { requests: number; clientIdleTimeoutBelowSeconds: number | null } | null;
}

let dir = '';
let MAIN = '';
beforeAll(() => {
  ({ dir, main: MAIN } = buildCli('ka-whatif-'));
}, 120_000);
afterAll(() => {
  if (dir) rmSync(dir, { recursive: true, force: true });
});

function analyzeJson(pcap: string): { servers: Array<{ server: string; connections: number; whatIf: WhatIf }>; connections: Conn[] } {
  const r = spawnSync(process.execPath, [MAIN, 'analyze', pcap, '--json', '--connections'], { cwd: ROOT, env: ENV, encoding: 'utf8', timeout: 60_000 });
  expect(r.status, r.stderr).toBe(0);
  return JSON.parse(r.stdout);
}

/** The test's own pairing: each idle close of a client, and that client's next connection. */
function gapsFromConnections(conns: Conn[], client: string): number[] {
  const mine = conns.filter((c) => c.client.startsWith(`${client}:`)).sort((a, b) => a.openedAt - b.openedAt);
  const gaps: number[] = [];
  for (let i = 0; i + 1 < mine.length; i++) {
    const c = mine[i];
    if (c.closeReason !== 'idle_timeout') continue;
    gaps.push(mine[i + 1].openedAt - (c.closedAt! - c.idleBeforeCloseSeconds!));
  }
  return gaps;
}

async function checkCapture(pcap: string, manifest: Manifest): Promise<void> {
  const j = analyzeJson(pcap);
  const idle = manifest.clients.find((c) => c.scenario === 'idle_returns')!;
  const limit = manifest.clients.find((c) => c.scenario === 'max_requests_at_once')!;
  // 1. The gaps on the wire are the gaps the client left (its clock against the capture's: within 50 ms).
  const gaps = gapsFromConnections(j.connections, idle.client);
  expect(gaps).toHaveLength(idle.gapsSeconds!.length);
  gaps.forEach((g, i) => expect(Math.abs(g - idle.gapsSeconds![i]), `gap ${i}: ${g} on the wire, ${idle.gapsSeconds![i]} by the client`).toBeLessThan(0.05));
  // 2. The report's what-if follows from them.
  const s = j.servers.find((x) => x.server === manifest.server)!;
  const newConnections = manifest.clients.reduce((a, c) => a + c.connections, 0);
  expect(s.connections).toBe(newConnections);
  const t = s.whatIf.timeout!;
  expect(t.currentSeconds).toBeGreaterThanOrEqual(1);
  expect(t.currentSeconds).toBeLessThan(1.2); // nginx keepalive_timeout 1s, as seen
  expect(t.newConnections).toBe(newConnections);
  expect(t.reconnectsAfterIdleClose).toBe(idle.gapsSeconds!.length);
  for (const o of t.options) {
    const want = idle.gapsSeconds!.filter((g) => g <= o.timeoutSeconds).length;
    expect(o.savedConnections, `timeout ${o.timeoutSeconds} s`).toBe(want);
    expect(o.savedShare).toBeCloseTo(want / newConnections, 4);
  }
  expect(t.options.find((o) => o.timeoutSeconds === 5)?.savedConnections).toBe(3);
  expect(t.options.find((o) => o.timeoutSeconds === 10)?.savedConnections).toBe(4);
  const m = s.whatIf.maxRequests!;
  expect(m.limit).toBe(4);
  expect(m.closes).toBe(limit.reconnectsAtOnce);
  expect(m.reconnectsAtOnce).toBe(limit.reconnectsAtOnce);
  expect(m.tenTimesLimit).toBe(40);
  expect(m.savedConnections).toBe(Math.round(limit.reconnectsAtOnce! * 0.9));
}

describe('what would change if: nginx and clients with known gaps (committed capture)', () => {
  const manifest: Manifest = JSON.parse(readFileSync(join(FIXTURES, 'manifest.json'), 'utf8'));

  it('the gaps on the wire, and the report\'s timeout and request-limit estimates from them', async () => {
    await checkCapture(join(FIXTURES, 'whatif.pcap'), manifest);
  });

  it('the text report says it in a line a person can act on', () => {
    const r = spawnSync(process.execPath, [MAIN, 'analyze', join(FIXTURES, 'whatif.pcap')], { cwd: ROOT, env: ENV, encoding: 'utf8', timeout: 60_000 });
    expect(r.status, r.stderr).toBe(0);
    const section = r.stdout.slice(r.stdout.indexOf('What would change if'));
    expect(section).toMatch(/keep-alive timeout \(1\.0 s today\): clients came back 4 time\(s\) after an idle close\. A longer timeout would have saved, of 8 new connections: 5\.0 s: 3 \(37\.5%\), 10\.0 s: 4 \(50\.0%\)\n/);
    expect(section).toMatch(/max requests \(4\): 2 connection\(s\) ended at the limit, 2 of their clients reconnected within 1\.0 s; 40 would have saved about 2 of those handshakes/);
  });

  it('the daemon\'s keepalive_reconnect_gap_seconds counts the same gaps under the same bounds', async () => {
    const d = await replayDaemon(MAIN, ['--pcap', join(FIXTURES, 'whatif.pcap')], { cwd: ROOT, env: ENV });
    const base = d.base;
    try {
      const s = parseProm(await (await fetch(`${base}/metrics`)).text());
      const bucket = (after: string, le: string): number => samples(s, 'keepalive_reconnect_gap_seconds_bucket', { server: manifest.server, after, le })[0]?.value ?? NaN;
      const idle = manifest.clients.find((c) => c.scenario === 'idle_returns')!.gapsSeconds!;
      for (const le of ['1', '2', '3', '5', '10', '60']) expect(bucket('idle_timeout', le), `le=${le}`).toBe(idle.filter((g) => g <= Number(le)).length);
      expect(bucket('max_requests', '1')).toBe(2);
      // The share a timeout of 5 s would have saved, as PromQL would compute it: bucket / new connections.
      const opened = samples(s, 'keepalive_connections_opened_total', { server: manifest.server }).reduce((a, x) => a + x.value, 0);
      expect(bucket('idle_timeout', '5') / opened).toBeCloseTo(3 / 8, 6);
    } finally {
      expect(await d.stop(), d.stderr()).toBe(0);
    }
  }, 40_000);
});

describe('what would change if on the real-server capture (test/fixtures/real: Apache and nginx, every close reason)', () => {
  interface Entry { server: string; expectedReason: string }
  const manifest: Entry[] = JSON.parse(readFileSync(join(ROOT, 'test/fixtures/real/manifest.json'), 'utf8'));

  it('no timeout estimate (no connection opened after an idle close: the scenarios all start together), the limit closes and races of the manifest', () => {
    const j = analyzeJson(join(ROOT, 'test/fixtures/real/real-servers.pcap'));
    // The test's own check that nobody came back: every connection opened before the first idle close ended.
    const firstIdleFin = Math.min(...j.connections.filter((c) => c.closeReason === 'idle_timeout').map((c) => c.closedAt!));
    expect(j.connections.every((c) => c.openedAt < firstIdleFin)).toBe(true);
    for (const s of j.servers) {
      const mine = manifest.filter((e) => e.server === s.server);
      const n = (reason: string): number => mine.filter((e) => e.expectedReason === reason).length;
      expect(s.whatIf.timeout, s.server).toBeNull();
      expect(s.whatIf.maxRequests?.closes ?? 0, s.server).toBe(n('max_requests'));
      // A client reconnecting at once after a limit close would be a connection opened after it: none here.
      expect(s.whatIf.maxRequests?.reconnectsAtOnce ?? 0, s.server).toBe(0);
      expect(s.whatIf.races?.requests ?? 0, s.server).toBe(n('race'));
    }
  });
});

const haveTools = ['nginx', 'tcpdump'].every((t) => spawnSync('sh', ['-c', `command -v ${t} || test -x /usr/sbin/${t}`]).status === 0);
const isRoot = process.getuid?.() === 0;

// CI (.ci/run) installs nginx and tcpdump and runs as root, so this runs there every time.
describe.runIf(haveTools && isRoot)('what would change if (regenerated now)', () => {
  it('regenerates the capture with live nginx and finds the gaps the clients left', async () => {
    const out = mkdtempSync(join(tmpdir(), 'ka-whatif-gen-'));
    try {
      execFileSync('bash', [join(FIXTURES, 'generate.sh'), out], { stdio: 'pipe', timeout: 60_000 });
      const pcap = join(out, 'whatif.pcap');
      expect(existsSync(pcap)).toBe(true);
      await checkCapture(pcap, JSON.parse(readFileSync(join(out, 'manifest.json'), 'utf8')) as Manifest);
    } finally {
      rmSync(out, { recursive: true, force: true });
    }
  }, 90_000);
});
