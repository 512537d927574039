/**
 * The proxy tap against real servers, checked against capture of the very same connections.
 *
 *   client (node:net) -> ProxyRelay (in process, feeding an Engine) -> Apache httpd / nginx
 *                                                         tcpdump on lo ^ (upstream side only)
 *
 * Private Apache httpd (KeepAliveTimeout 2, MaxKeepAliveRequests 3) and nginx (keepalive_timeout
 * 2s 2, keepalive_requests 3) from test/e2e/support/servers.ts. Each relay feeds its own Engine,
 * as the daemon does; tcpdump records the relay-to-server connections, and that capture goes
 * through the same engine code (analyzeFile). For every scenario (idle timeout, max requests,
 * nginx twice so its limit is inferred, client close both ways, HTTP/1.0, the keep-alive race)
 * the proxy's close reason, closing side and request count must equal the expected ones AND
 * those from the capture.
 *
 * Matching: the proxy reports the real client's port, the capture the relay's own port towards
 * the server, so a proxied connection is matched with the captured one to the same server
 * opened at the same moment (scenarios start 150 ms apart; the two clocks are the same).
 *
 * Needs root (tcpdump on lo) and apache2, nginx, tcpdump. Skipped without them on a developer
 * machine; in CI (CI=true, root, packages installed by .ci/run) a missing one fails the suite.
 * Ports 18280/18281 (others' tests use 18080-18082, 18090, 18180/18181 concurrently); the relays
 * listen on ports the OS picks. KEEP_TMP=1 keeps the temp dir (configs, logs, the capture).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import net from 'node:net';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Engine } from '../../src/conn/engine.js';
import { ProxyRelay } from '../../src/proxy/relay.js';
import type { ConnectionRecord } from '../../src/conn/records.js';
import { analyzeFile, type Facts } from '../helpers/engine.js';
import { findTool, portFree, sleep, start, stop, tail, tailFile, waitFor, type Proc } from '../helpers/procs.js';
import { RawConn, get, type Response } from './support/client.js';
import { APACHE_MAX_KEEPALIVE, IDLE_TIMEOUT_S, NGINX_KEEPALIVE_REQUESTS, indexHtml, prepareDir, startApache, startNginx } from './support/servers.js';

const HOST = '127.0.0.1';
const APACHE_PORT = 18280;
const NGINX_PORT = 18281;
const IDLE_MS = IDLE_TIMEOUT_S * 1000;
/** Apache's lingering close: after its FIN it reads (and discards) for about 2 s, then closes. */
const APACHE_LINGER_MS = 2000;
const STAGGER_MS = 150;

const TOOLS = { apache2: findTool('apache2'), nginx: findTool('nginx'), tcpdump: findTool('tcpdump') };
const APT: Record<keyof typeof TOOLS, string> = { apache2: 'apache2', nginx: 'nginx-light', tcpdump: 'tcpdump' };
const missing = (Object.keys(TOOLS) as Array<keyof typeof TOOLS>).filter((t) => TOOLS[t] === null);
if (!existsSync('/usr/lib/apache2/modules/mod_mpm_event.so') && !missing.includes('apache2')) missing.push('apache2');
const isRoot = process.getuid?.() === 0;
const canRun = isRoot && missing.length === 0;

// ------------------------------------------------------------------ scenarios

class ScenarioError extends Error {}
function check(cond: boolean, msg: string): asserts cond {
  if (!cond) throw new ScenarioError(msg);
}

type Kind = 'apache' | 'nginx';
interface Expected { server: string; scenario: string; reason: string; closedBy: 'client' | 'server'; requests: number }
/** client: the scenario's own address:port, as the relay reports it. */
interface Run extends Expected { client: string }

const BODY = Buffer.from(indexHtml());

function checkOk(c: RawConn, r: Response, n: number, connection: string | null): void {
  check(r.status === 200 && r.body.equals(BODY), `${c.name}: response ${n}: status ${r.status}, ${r.body.length} body bytes`);
  check((r.headers.connection ?? null) === connection, `${c.name}: response ${n}: Connection=${r.headers.connection}, expected ${connection}`);
}

/** Connection header of the n-th response to a keep-alive request (test/e2e/support/servers.ts settings). */
function persistence(kind: Kind, n: number): string {
  if (kind === 'apache') return n > APACHE_MAX_KEEPALIVE ? 'close' : 'Keep-Alive';
  return n >= NGINX_KEEPALIVE_REQUESTS ? 'close' : 'keep-alive';
}

type Body = (c: RawConn, kind: Kind) => Promise<void>;
interface Scenario { kind: Kind; name: string; reason: string; closedBy: 'client' | 'server'; requests: number; body: Body }

const idleTimeout: Body = async (c, kind) => {
  for (let i = 1; i <= 2; i++) checkOk(c, await c.request(get('/')), i, persistence(kind, i));
  const ms = await c.serverClose(IDLE_MS + 3000);
  check(ms > IDLE_MS - 500 && ms < IDLE_MS + 1500, `${c.name}: server closed ${ms.toFixed(0)} ms after the last response, expected about ${IDLE_MS}`);
  await c.end();
};
const maxRequests: Body = async (c, kind) => {
  const n = kind === 'apache' ? APACHE_MAX_KEEPALIVE + 1 : NGINX_KEEPALIVE_REQUESTS;
  for (let i = 1; i <= n; i++) checkOk(c, await c.request(get('/')), i, persistence(kind, i));
  check((await c.serverClose(1500)) < 500, `${c.name}: the server FIN was not prompt`);
  await c.end();
};
/** A keep-alive request, then one with Connection: close; the server answers and closes. */
const clientCloseHeader: Body = async (c, kind) => {
  checkOk(c, await c.request(get('/')), 1, persistence(kind, 1));
  checkOk(c, await c.request(get('/', { connection: 'close' })), 2, 'close');
  check((await c.serverClose(1500)) < 500, `${c.name}: the server FIN was not prompt`);
  await c.end();
};
/** Two plain HTTP/1.1 requests, then the client FINs at once (as curl does when it exits). */
const clientCloseFin: Body = async (c, kind) => {
  for (let i = 1; i <= 2; i++) {
    const r = await c.request(get('/', { connection: null }));
    check(r.status === 200 && r.body.equals(BODY), `${c.name}: response ${i}: status ${r.status}`);
  }
  check(c.serverFinAt === null, `${c.name}: the server closed first`);
  await c.end();
  void kind;
};
const http10: Body = async (c) => {
  checkOk(c, await c.request(get('/', { version: '1.0', connection: null })), 1, 'close');
  check((await c.serverClose(1500)) < 500, `${c.name}: the server FIN was not prompt`);
  await c.end();
};
/**
 * The race: one keep-alive request; the client ignores the server's idle FIN and writes a second
 * request `afterFinMs` later. No response comes back: the server answers RST once its socket is
 * gone (nginx at once, Apache after its lingering close), or, within Apache's lingering close,
 * reads and discards it. Then the client closes. (A client that reads no more after the FIN does
 * not see that RST, directly or through the tap: its socket no longer reads. The capture has it.)
 */
function race(afterFinMs: number): Body {
  return async (c, kind) => {
    checkOk(c, await c.request(get('/')), 1, persistence(kind, 1));
    const ms = await c.serverClose(IDLE_MS + 3000);
    check(ms > IDLE_MS - 500 && ms < IDLE_MS + 1500, `${c.name}: server closed ${ms.toFixed(0)} ms after the response`);
    await sleep(afterFinMs);
    const before = c.bytesIn;
    c.write(get('/'));
    await sleep(700);
    check(c.bytesIn === before, `${c.name}: got ${c.bytesIn - before} bytes after the request sent past the server's FIN`);
    await c.end();
  };
}

const SCENARIOS: Scenario[] = [
  { kind: 'apache', name: 'idle_timeout', reason: 'idle_timeout', closedBy: 'server', requests: 2, body: idleTimeout },
  { kind: 'nginx', name: 'idle_timeout', reason: 'idle_timeout', closedBy: 'server', requests: 2, body: idleTimeout },
  { kind: 'apache', name: 'max_requests', reason: 'max_requests', closedBy: 'server', requests: APACHE_MAX_KEEPALIVE + 1, body: maxRequests },
  { kind: 'nginx', name: 'max_requests', reason: 'max_requests', closedBy: 'server', requests: NGINX_KEEPALIVE_REQUESTS, body: maxRequests },
  { kind: 'nginx', name: 'max_requests (again: the limit is inferred)', reason: 'max_requests', closedBy: 'server', requests: NGINX_KEEPALIVE_REQUESTS, body: maxRequests },
  { kind: 'apache', name: 'client_close (Connection: close)', reason: 'client_close', closedBy: 'server', requests: 2, body: clientCloseHeader },
  { kind: 'nginx', name: 'client_close (Connection: close)', reason: 'client_close', closedBy: 'server', requests: 2, body: clientCloseHeader },
  { kind: 'apache', name: 'client_close (client FIN)', reason: 'client_close', closedBy: 'client', requests: 2, body: clientCloseFin },
  { kind: 'nginx', name: 'client_close (client FIN)', reason: 'client_close', closedBy: 'client', requests: 2, body: clientCloseFin },
  { kind: 'apache', name: 'HTTP/1.0', reason: 'not_persistent', closedBy: 'server', requests: 1, body: http10 },
  { kind: 'nginx', name: 'HTTP/1.0', reason: 'not_persistent', closedBy: 'server', requests: 1, body: http10 },
  { kind: 'nginx', name: 'race (RST)', reason: 'race', closedBy: 'server', requests: 2, body: race(1000) },
  { kind: 'apache', name: 'race (RST after the lingering close)', reason: 'race', closedBy: 'server', requests: 2, body: race(APACHE_LINGER_MS + 2000) },
  { kind: 'apache', name: 'race (within the lingering close)', reason: 'race', closedBy: 'server', requests: 2, body: race(1000) },
];

// ------------------------------------------------------------------ the suite

interface Side { relay: ProxyRelay; engine: Engine; port: number; closed: ConnectionRecord[] }

async function startSide(upstreamPort: number): Promise<Side> {
  const engine = new Engine();
  const closed: ConnectionRecord[] = [];
  engine.subscribe({ closed: (c) => closed.push(c) });
  const relay = new ProxyRelay({ listenHost: HOST, listenPort: 0, upstreamHost: HOST, upstreamPort }, engine,
    { idleTimeoutMs: 60_000, connectTimeoutMs: 5000, proxyProtocol: null }, { warn: (m) => console.warn(m) });
  await relay.start();
  return { relay, engine, port: ((relay as unknown as { server: net.Server }).server.address() as net.AddressInfo).port, closed };
}

/** What the tests compare: the same fields from the proxy and from the capture. */
function summary(r: ConnectionRecord | undefined): Record<string, unknown> {
  if (!r) return { missing: true };
  return { reason: r.closeReason, closedBy: r.closedBy, closedWith: r.closedWith, requests: r.requests, reused: r.reusedRequests, responses: r.responses };
}

describe.runIf(canRun || process.env.CI === 'true')('the proxy tap in front of real Apache httpd and nginx, against capture of the same connections', () => {
  let dir = '';
  const procs: { apache: Proc | null; nginx: Proc | null; tcpdump: Proc | null } = { apache: null, nginx: null, tcpdump: null };
  const sides: Partial<Record<Kind, Side>> = {};
  const clients = new Set<RawConn>();
  const runs: Run[] = [];
  const failures: string[] = [];
  let captured: Facts | null = null;
  let tcpdumpLog = '';
  const label = (k: Kind): string => `${HOST}:${k === 'apache' ? APACHE_PORT : NGINX_PORT}`;
  const logs = (): string => [
    ...Object.values(procs).map((p) => tail(p)),
    ...(dir ? ['apache-error.log', 'nginx-error.log'].map((f) => tailFile(f, join(dir, 'logs', f))) : []),
  ].filter(Boolean).join('\n');

  beforeAll(async () => {
    expect({ root: isRoot, missing: missing.map((t) => `${t} (apt-get install -y ${APT[t]})`) }).toEqual({ root: true, missing: [] });
    for (const port of [APACHE_PORT, NGINX_PORT]) {
      expect(await portFree(HOST, port), `something already listens on ${HOST}:${port}; stop it first`).toBe(true);
    }
    dir = mkdtempSync(join(tmpdir(), 'ka-e2e-proxy-'));
    prepareDir(dir);
    try {
      const [apache, nginx] = await Promise.allSettled([startApache(TOOLS.apache2!, dir, APACHE_PORT), startNginx(TOOLS.nginx!, dir, NGINX_PORT)]);
      if (apache.status === 'fulfilled') procs.apache = apache.value;
      if (nginx.status === 'fulfilled') procs.nginx = nginx.value;
      for (const r of [apache, nginx]) if (r.status === 'rejected') throw r.reason;
      await sleep(300); // the readiness probes' teardown stays out of the capture

      // The upstream side only: relay -> server. The clients talk to the relays on other ports.
      const pcap = join(dir, 'upstream.pcap');
      tcpdumpLog = join(dir, 'logs/tcpdump.log');
      procs.tcpdump = start('tcpdump', TOOLS.tcpdump!, ['-i', 'lo', '-n', '-s', '0', '-B', '32768', '--immediate-mode', '-U', '-w', pcap,
        `tcp port ${APACHE_PORT} or tcp port ${NGINX_PORT}`], tcpdumpLog);
      const td = procs.tcpdump;
      await waitFor('tcpdump to listen', 10_000, () => {
        if (td.exit) throw new Error(`tcpdump exited: ${readFileSync(tcpdumpLog, 'utf8')}`);
        return readFileSync(tcpdumpLog, 'utf8').includes('listening on') ? true : null;
      }, 50);

      sides.apache = await startSide(APACHE_PORT);
      sides.nginx = await startSide(NGINX_PORT);

      // Every scenario at once, each starting STAGGER_MS after the previous one.
      await Promise.all(SCENARIOS.map(async (s, i) => {
        await sleep(i * STAGGER_MS);
        const name = `${s.kind} ${s.name}`;
        try {
          const c = await RawConn.open(name, HOST, sides[s.kind]!.port);
          clients.add(c);
          runs.push({ server: label(s.kind), scenario: s.name, reason: s.reason, closedBy: s.closedBy, requests: s.requests, client: c.client });
          await s.body(c, s.kind);
        } catch (err) {
          failures.push(`${name}: ${(err as Error).message}`);
        }
      }));
      // Every relayed connection is over (the relays saw both sides close).
      await waitFor('the relays to close every connection', 5000, () => (sides.apache!.relay.active + sides.nginx!.relay.active === 0 ? true : null), 20).catch((err) => {
        const open = Object.entries(sides).flatMap(([k, s]) => [...(s.relay as unknown as { sockets: Set<net.Socket> }).sockets]
          .map((x) => `${k} ${x.localPort}->${x.remotePort} readableEnded=${x.readableEnded} writableEnded=${x.writableEnded} writableFinished=${x.writableFinished} destroyed=${x.destroyed}`));
        (err as Error).message += `\nfailures: ${JSON.stringify(failures)}\nopen: ${open.join('\n')}`;
        throw err;
      });
      await sleep(500); // the last ACKs into the capture
      const st = await stop(procs.tcpdump, 'SIGINT', 10_000);
      procs.tcpdump = null;
      expect(st.killed, 'tcpdump had to be killed').toBe(false);
      captured = await analyzeFile(pcap);
      for (const s of Object.values(sides)) s.engine.finish();
    } catch (err) {
      (err as Error).message += `\n${logs()}`;
      throw err;
    }
  }, 60_000);

  afterAll(async () => {
    for (const c of clients) c.destroy();
    for (const s of Object.values(sides)) await s.relay.stop();
    await Promise.all([stop(procs.tcpdump, 'SIGINT', 10_000), stop(procs.apache, 'SIGTERM', 10_000), stop(procs.nginx, 'SIGTERM', 10_000)]);
    if (dir && process.env.KEEP_TMP !== '1') rmSync(dir, { recursive: true, force: true });
    else if (dir) console.warn(`proxy e2e: temp dir kept: ${dir}`);
  }, 60_000);

  it('the servers behaved as every scenario claims, through the proxy', () => {
    expect(failures, logs()).toEqual([]);
    expect(runs).toHaveLength(SCENARIOS.length);
  });

  it('the capture is complete: no drops, every relayed connection in it, nothing else', () => {
    const log = readFileSync(tcpdumpLog, 'utf8');
    expect(log).toMatch(/^0 packets dropped by kernel$/m);
    expect(captured!.capture.problem).toBeNull();
    expect(captured!.closed).toHaveLength(SCENARIOS.length);
    expect(captured!.engine.stats().anomalies).toEqual({});
  });

  it('the proxy reports the expected close reason, closing side and request count for every scenario', () => {
    const all = [...sides.apache!.closed, ...sides.nginx!.closed];
    const byClient = new Map(all.map((r) => [r.client, r]));
    const got = runs.map((r) => {
      const rec = byClient.get(r.client);
      return { server: r.server, scenario: r.scenario, reason: rec?.closeReason, closedBy: rec?.closedBy, requests: rec?.requests };
    });
    expect(got).toEqual(runs.map(({ client: _, ...e }) => e));
    expect(all).toHaveLength(SCENARIOS.length);
    for (const r of all) {
      // The upstream connect time: positive and small on loopback.
      expect(r.handshakeRtt).toBeGreaterThan(0);
      expect(r.handshakeRtt).toBeLessThan(0.5);
    }
    for (const s of Object.values(sides)) {
      expect(s.relay.upstreamFailures).toBe(0);
      expect(s.engine.stats().anomalies).toEqual({});
    }
  });

  it('the proxy and the capture agree on every connection (reason, side, FIN or RST, requests, reuse, responses)', () => {
    const proxy = new Map([...sides.apache!.closed, ...sides.nginx!.closed].map((r) => [r.client, r]));
    const unmatched = new Set(captured!.closed);
    const rows = runs.map((run) => {
      const p = proxy.get(run.client);
      // The captured connection to the same server opened at the same moment (SYN vs the tap's
      // connect start; the scenarios are STAGGER_MS apart).
      let best: ConnectionRecord | undefined;
      for (const c of unmatched) {
        if (c.server !== run.server || !p) continue;
        if (!best || Math.abs(c.openedAt - p.openedAt) < Math.abs(best.openedAt - p.openedAt)) best = c;
      }
      if (best && p && Math.abs(best.openedAt - p.openedAt) < STAGGER_MS / 3000) unmatched.delete(best);
      else best = undefined;
      return { scenario: `${run.server} ${run.scenario}`, proxy: summary(p), capture: summary(best), idle: [p?.idleBeforeClose, best?.idleBeforeClose] };
    });
    expect(rows.map(({ scenario, proxy: p }) => ({ scenario, ...p }))).toEqual(rows.map(({ scenario, capture }) => ({ scenario, ...capture })));
    expect(unmatched.size).toBe(0);
    // Idle before the first FIN/RST: the same within event-loop noise.
    for (const r of rows) {
      const [a, b] = r.idle;
      expect(Math.abs((a ?? NaN) - (b ?? NaN)), `${r.scenario}: idle before close ${a} (proxy) vs ${b} (capture)`).toBeLessThan(0.1);
    }
  });

  it('the proxy learns the same server settings as the capture (announced timeout and max, inferred max)', () => {
    const fromProxy = (k: Kind) => {
      const s = sides[k]!.engine.servers.get(label(k));
      return { advertisedTimeout: s?.advertisedTimeout, advertisedMax: s?.advertisedMax, inferredMax: s?.inferredMax };
    };
    const fromCapture = (k: Kind) => {
      const s = captured!.engine.servers.get(label(k));
      return { advertisedTimeout: s?.advertisedTimeout, advertisedMax: s?.advertisedMax, inferredMax: s?.inferredMax };
    };
    expect(fromProxy('apache')).toMatchObject({ advertisedTimeout: IDLE_TIMEOUT_S, advertisedMax: APACHE_MAX_KEEPALIVE });
    expect(fromProxy('nginx')).toMatchObject({ advertisedTimeout: IDLE_TIMEOUT_S, advertisedMax: null, inferredMax: NGINX_KEEPALIVE_REQUESTS });
    expect(fromProxy('apache')).toEqual(fromCapture('apache'));
    expect(fromProxy('nginx')).toEqual(fromCapture('nginx'));
  });
});
