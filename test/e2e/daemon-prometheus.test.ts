/**
 * The daemon end to end, with only real parts: private Apache httpd and nginx on loopback, the
 * built CLI capturing live on `lo` (it runs tcpdump itself), a real Prometheus scraping it every
 * second, and real clients (raw node:net sockets, curl, ab) making a known set of connections
 * with known request counts. The test then asks Prometheus, through its HTTP API, for what it
 * scraped and checks the exact numbers, computed from what the clients did.
 *
 *   Apache 127.0.0.1:18180  KeepAliveTimeout 2, MaxKeepAliveRequests 3 (Keep-Alive: max=3,2,1; serves 4)
 *   nginx  127.0.0.1:18181  keepalive_timeout 2s 2, keepalive_requests 3 (announces no max; serves 3)
 *
 * Needs root (tcpdump on lo) and the Debian packages apache2, nginx (nginx-light is enough),
 * tcpdump, curl, apache2-utils (ab) and prometheus; .ci/run installs them. Without them the
 * suite is skipped on a developer machine, and fails in CI (CI=true), so it cannot silently
 * stop running there. KEEP_TMP=1 keeps the temp dir (configs, logs, Prometheus data);
 * E2E_DEBUG=1 prints what Prometheus returned.
 *
 * Ports: 18180/18181 for the servers (18080-18082 belong to the fixture test, which may run at
 * the same time); the daemon and Prometheus listen on free ports the OS hands out.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { execFile } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { findTool, freePort, httpGet, portFree, sleep, start, stop, tail, tailFile, waitFor, type Proc } from '../helpers/procs.js';
import { APACHE_MAX_KEEPALIVE, IDLE_TIMEOUT_S, NGINX_KEEPALIVE_REQUESTS, indexHtml, prepareDir, startApache, startNginx } from './support/servers.js';
import { byLabels, query, startPrometheus } from './support/prometheus.js';
import { RawConn, get, type Response } from './support/client.js';

const run = promisify(execFile);

const ROOT = join(import.meta.dirname, '../..');
const MAIN = join(ROOT, 'dist/cli/main.js');
const APACHE_PORT = 18180;
const NGINX_PORT = 18181;
const JOB = 'keepalive-e2e';
const HOST = '127.0.0.1';

type Kind = 'apache' | 'nginx';
interface Target { kind: Kind; port: number; label: string }
const APACHE: Target = { kind: 'apache', port: APACHE_PORT, label: `${HOST}:${APACHE_PORT}` };
const NGINX: Target = { kind: 'nginx', port: NGINX_PORT, label: `${HOST}:${NGINX_PORT}` };

const TOOLS = {
  apache2: findTool('apache2'),
  nginx: findTool('nginx'),
  tcpdump: findTool('tcpdump'),
  prometheus: findTool('prometheus'),
  curl: findTool('curl'),
  ab: findTool('ab'),
};
const APT: Record<keyof typeof TOOLS, string> = { apache2: 'apache2', nginx: 'nginx-light', tcpdump: 'tcpdump', prometheus: 'prometheus', curl: 'curl', ab: 'apache2-utils' };
const missing = (Object.keys(TOOLS) as Array<keyof typeof TOOLS>).filter((t) => TOOLS[t] === null);
if (!existsSync('/usr/lib/apache2/modules/mod_mpm_event.so') && !missing.includes('apache2')) missing.push('apache2');
const isRoot = process.getuid?.() === 0;
const canRun = isRoot && missing.length === 0;

// CI (.ci/run) runs as root and installs every package above: there the suite must run, and a
// missing prerequisite fails it (with the apt-get line) instead of skipping it.
function requirePrerequisites(): void {
  expect({ root: isRoot, missing: missing.map((t) => `${t} (apt-get install -y ${APT[t]})`) }).toEqual({ root: true, missing: [] });
}

// ---------------------------------------------------------------- what the clients did

/** One connection a client made, and what the daemon must say about it. */
interface Made {
  server: string;
  scenario: string;
  requests: number;
  reason: 'idle_timeout' | 'max_requests' | 'client_close' | 'not_persistent';
  closedBy: 'client' | 'server';
}

class ScenarioError extends Error {}
function check(cond: boolean, msg: string): asserts cond {
  if (!cond) throw new ScenarioError(msg);
}

const BODY = Buffer.from(indexHtml());
const IDLE_MS = IDLE_TIMEOUT_S * 1000;

/** Persistence headers the n-th response (1-based) to a keep-alive request must carry. */
function persistence(t: Target, n: number): { connection: string; keepAlive: string | null } {
  if (t.kind === 'apache') {
    if (n > APACHE_MAX_KEEPALIVE) return { connection: 'close', keepAlive: null };
    return { connection: 'Keep-Alive', keepAlive: `timeout=${IDLE_TIMEOUT_S}, max=${APACHE_MAX_KEEPALIVE + 1 - n}` };
  }
  if (n >= NGINX_KEEPALIVE_REQUESTS) return { connection: 'close', keepAlive: null };
  return { connection: 'keep-alive', keepAlive: `timeout=${IDLE_TIMEOUT_S}` };
}

function checkResponse(c: RawConn, r: Response, n: number, want: { connection: string | null; keepAlive: string | null }): void {
  check(r.status === 200 && r.body.equals(BODY), `${c.name}: response ${n}: status ${r.status}, ${r.body.length} body bytes (expected 200 and index.html)`);
  const got = { connection: r.headers.connection ?? null, keepAlive: r.headers['keep-alive'] ?? null };
  check(got.connection === want.connection && got.keepAlive === want.keepAlive,
    `${c.name}: response ${n}: Connection=${got.connection} Keep-Alive=${got.keepAlive}, expected Connection=${want.connection} Keep-Alive=${want.keepAlive}`);
}

async function open(t: Target, scenario: string, live: Set<RawConn>): Promise<RawConn> {
  const c = await RawConn.open(`${t.kind} ${scenario}`, HOST, t.port);
  live.add(c);
  return c;
}

/** n keep-alive requests, then idle until the server's idle timeout closes the connection. */
async function idleTimeout(t: Target, n: number, live: Set<RawConn>): Promise<Made> {
  const c = await open(t, 'idle_timeout', live);
  for (let i = 1; i <= n; i++) checkResponse(c, await c.request(get('/')), i, persistence(t, i));
  const ms = await c.serverClose(IDLE_MS + 3000);
  check(ms > IDLE_MS - 500 && ms < IDLE_MS + 1500, `${c.name}: server closed ${ms.toFixed(0)} ms after the last response, expected about ${IDLE_MS} ms`);
  await c.end();
  return { server: t.label, scenario: 'idle_timeout', requests: n, reason: 'idle_timeout', closedBy: 'server' };
}

/** Keep-alive requests up to the server's limit: the last response has Connection: close, then FIN. */
async function maxRequests(t: Target, live: Set<RawConn>): Promise<Made> {
  const c = await open(t, 'max_requests', live);
  const n = t.kind === 'apache' ? APACHE_MAX_KEEPALIVE + 1 : NGINX_KEEPALIVE_REQUESTS;
  for (let i = 1; i <= n; i++) checkResponse(c, await c.request(get('/')), i, persistence(t, i));
  const ms = await c.serverClose(1500);
  check(ms < 500, `${c.name}: server FIN ${ms.toFixed(0)} ms after the last response, expected at once`);
  await c.end();
  return { server: t.label, scenario: 'max_requests', requests: n, reason: 'max_requests', closedBy: 'server' };
}

/** A keep-alive request, then one with Connection: close: answered with Connection: close, server FIN. */
async function clientClose(t: Target, live: Set<RawConn>): Promise<Made> {
  const c = await open(t, 'client_close', live);
  checkResponse(c, await c.request(get('/')), 1, persistence(t, 1));
  checkResponse(c, await c.request(get('/', { connection: 'close' })), 2, { connection: 'close', keepAlive: null });
  const ms = await c.serverClose(1500);
  check(ms < 500, `${c.name}: server FIN ${ms.toFixed(0)} ms after the response, expected at once`);
  await c.end();
  return { server: t.label, scenario: 'client_close', requests: 2, reason: 'client_close', closedBy: 'server' };
}

/** GET / HTTP/1.0 without Connection: answered with Connection: close, server FIN. */
async function http10(t: Target, live: Set<RawConn>): Promise<Made> {
  const c = await open(t, 'http10', live);
  checkResponse(c, await c.request(get('/', { version: '1.0', connection: null })), 1, { connection: 'close', keepAlive: null });
  const ms = await c.serverClose(1500);
  check(ms < 500, `${c.name}: server FIN ${ms.toFixed(0)} ms after the response, expected at once`);
  await c.end();
  return { server: t.label, scenario: 'http10', requests: 1, reason: 'not_persistent', closedBy: 'server' };
}

/** ab -n 3 -c 1 without -k: 3 HTTP/1.0 connections of one request each, each closed by the server. */
async function abHttp10(t: Target): Promise<Made[]> {
  const { stdout } = await run(TOOLS.ab!, ['-n', '3', '-c', '1', '-s', '5', `http://${t.label}/`], { timeout: 10_000 });
  const field = (name: string): string | undefined => new RegExp(`^${name}:\\s+(\\d+)`, 'm').exec(stdout)?.[1];
  // (ab prints "Keep-Alive requests" only with -k; it must not appear, or say 0)
  check(field('Complete requests') === '3' && field('Failed requests') === '0' && (field('Keep-Alive requests') ?? '0') === '0',
    `ab on ${t.label} did not make 3 non-keep-alive requests:\n${stdout}`);
  check(field('Document Length') === String(BODY.length), `ab on ${t.label}: unexpected document length:\n${stdout}`);
  return [1, 2, 3].map(() => ({ server: t.label, scenario: 'ab', requests: 1, reason: 'not_persistent' as const, closedBy: 'server' as const }));
}

/**
 * curl fetches 2 URLs (plain HTTP/1.1, no Connection header) over one connection and exits: it
 * closes the connection right after the 2nd response, asking nothing.
 */
async function curlTwo(t: Target): Promise<Made> {
  const url = `http://${t.label}/`;
  const { stdout } = await run(TOOLS.curl!, ['-sS', '--max-time', '5', '-o', '/dev/null', '-o', '/dev/null', '-w', '%{http_code} %{num_connects}\\n', url, `${url}index.html`], { timeout: 10_000 });
  check(stdout === '200 1\n200 0\n', `curl on ${t.label}: expected two 200s over one connection, got ${JSON.stringify(stdout)}`);
  return { server: t.label, scenario: 'curl', requests: 2, reason: 'client_close', closedBy: 'client' };
}

/** All scenarios at once (the longest is the idle timeout, about 2 s). */
async function driveTraffic(live: Set<RawConn>): Promise<Made[]> {
  const made = await Promise.all([
    // Apache: announces max=3,2,1 and closes after the 4th request.
    idleTimeout(APACHE, 2, live),
    maxRequests(APACHE, live),
    clientClose(APACHE, live),
    abHttp10(APACHE),
    // nginx: announces no max; closes after the 3rd request on two connections, so the limit is inferred.
    idleTimeout(NGINX, 2, live),
    maxRequests(NGINX, live),
    maxRequests(NGINX, live),
    clientClose(NGINX, live),
    http10(NGINX, live),
    curlTwo(NGINX),
  ]);
  return made.flat();
}

// ---------------------------------------------------------------- what Prometheus must show

const QUERIES = {
  requests: ['sum by (server) (keepalive_requests_total)', ['server']],
  reused: ['sum by (server) (keepalive_requests_total{reused="true"})', ['server']],
  reusedAll: ['sum(keepalive_requests_total{reused="true"})', []],
  handshakesSaved: ['sum by (server) (keepalive_handshakes_saved_total)', ['server']],
  // Every handshake was captured, so each connection has its RTT and the time saved is positive.
  handshakeRtts: ['sum(keepalive_handshake_rtt_seconds_count)', []],
  timeSavedPositive: ['sum by (server) (keepalive_handshake_time_saved_seconds_total) > bool 0', ['server']],
  opened: ['sum by (server) (keepalive_connections_opened_total)', ['server']],
  closed: ['sum by (server, reason, closed_by) (keepalive_connections_closed_total)', ['server', 'reason', 'closed_by']],
  openNow: ['sum by (server) (keepalive_open_connections)', ['server']],
  untracked: ['sum(keepalive_connections_untracked_total) or vector(0)', []],
  requestsPerConnCount: ['sum(keepalive_requests_per_connection_count)', []],
  requestsPerConnSum: ['sum(keepalive_requests_per_connection_sum)', []],
  // Closes by the server after more than 1.5 s idle: the idle timeouts (about 2 s); the others are prompt.
  serverClosesIdleOver1_5s: ['sum(keepalive_idle_before_close_seconds_count{closed_by="server"}) - sum(keepalive_idle_before_close_seconds_bucket{closed_by="server",le="1.5"})', []],
  advertisedTimeout: ['keepalive_advertised_timeout_seconds', ['server']],
  advertisedMax: ['keepalive_advertised_max_requests', ['server']],
  inferredMax: ['keepalive_inferred_max_requests', ['server']],
  sourceUp: ['keepalive_source_up', ['source', 'kind']],
  dropped: ['sum(keepalive_capture_dropped_packets_total)', []],
  anomalies: ['sum(keepalive_anomalies_total)', []],
  up: [`up{job="${JOB}"}`, ['job']],
} as const satisfies Record<string, readonly [string, readonly string[]]>;

type Snapshot = { [K in keyof typeof QUERIES]: Record<string, number> };

function expectedSnapshot(made: Made[]): Snapshot {
  const count = (key: (m: Made) => string, value: (m: Made) => number = () => 1): Record<string, number> => {
    const out: Record<string, number> = {};
    for (const m of made) out[key(m)] = (out[key(m)] ?? 0) + value(m);
    return Object.fromEntries(Object.entries(out).sort(([a], [b]) => a.localeCompare(b)));
  };
  const servers = [...new Set(made.map((m) => m.server))].sort();
  const reused = (m: Made): number => Math.max(0, m.requests - 1);
  const total = (f: (m: Made) => number): Record<string, number> => ({ '': made.reduce((s, m) => s + f(m), 0) });
  return {
    requests: count((m) => m.server, (m) => m.requests),
    reused: count((m) => m.server, reused),
    reusedAll: total(reused),
    handshakesSaved: count((m) => m.server, reused),
    handshakeRtts: total(() => 1),
    timeSavedPositive: Object.fromEntries(servers.map((s) => [s, 1])),
    opened: count((m) => m.server),
    closed: count((m) => `${m.server} ${m.reason} ${m.closedBy}`),
    openNow: Object.fromEntries(servers.map((s) => [s, 0])),
    untracked: { '': 0 },
    requestsPerConnCount: total(() => 1),
    requestsPerConnSum: total((m) => m.requests),
    serverClosesIdleOver1_5s: total((m) => (m.reason === 'idle_timeout' ? 1 : 0)),
    // What the servers were configured with (support/servers.ts): Apache announces timeout and max;
    // nginx announces only the timeout, and its limit is inferred from two connections closed at 3.
    advertisedTimeout: { [APACHE.label]: IDLE_TIMEOUT_S, [NGINX.label]: IDLE_TIMEOUT_S },
    advertisedMax: { [APACHE.label]: APACHE_MAX_KEEPALIVE },
    inferredMax: { [NGINX.label]: NGINX_KEEPALIVE_REQUESTS },
    sourceUp: { 'live:lo live': 1 },
    dropped: { '': 0 },
    anomalies: { '': 0 },
    up: { [JOB]: 1 },
  };
}

async function snapshot(port: number): Promise<{ values: Snapshot; scrapedAt: number }> {
  const entries = await Promise.all(Object.entries(QUERIES).map(async ([k, [expr, by]]) => [k, byLabels(await query(port, expr), [...by])] as const));
  const ts = await query(port, `timestamp(up{job="${JOB}"})`);
  return { values: Object.fromEntries(entries) as Snapshot, scrapedAt: ts[0]?.value ?? 0 };
}

/**
 * Polls Prometheus until the snapshot is the same over at least three scrapes, all taken after
 * `after` (seconds since the epoch), or until `timeoutMs`. Returns the last snapshot either way.
 */
async function stableSnapshot(port: number, after: number, timeoutMs: number): Promise<{ values: Snapshot | null; stable: boolean; polls: number }> {
  const deadline = Date.now() + timeoutMs;
  let since: { json: string; scrapedAt: number } | null = null;
  let last: Snapshot | null = null;
  let polls = 0;
  while (Date.now() < deadline) {
    polls++;
    const s = await snapshot(port).catch(() => null);
    if (s && s.scrapedAt > after) {
      last = s.values;
      const json = JSON.stringify(s.values);
      if (since === null || since.json !== json) since = { json, scrapedAt: s.scrapedAt };
      else if (s.scrapedAt >= since.scrapedAt + 2) return { values: last, stable: true, polls };
    }
    await sleep(400);
  }
  return { values: last, stable: false, polls };
}

// ---------------------------------------------------------------- the suite

describe.runIf(canRun || process.env.CI === 'true')('daemon live on lo, scraped by a real Prometheus, with real Apache and nginx', () => {
  let dir = '';
  const procs: { apache: Proc | null; nginx: Proc | null; daemon: Proc | null; prometheus: Proc | null } = { apache: null, nginx: null, daemon: null, prometheus: null };
  const live = new Set<RawConn>();
  let daemonPort = 0;
  /** Prometheus while it starts: afterAll waits for it, so a failed setup cannot leak it. */
  let prometheusStarting: Promise<Proc | null> = Promise.resolve(null);
  let made: Made[] = [];
  let got: { values: Snapshot | null; stable: boolean; polls: number } = { values: null, stable: false, polls: 0 };
  const timings: Record<string, number> = {};
  const logs = (): string => [
    ...Object.values(procs).map((p) => tail(p)),
    ...(dir ? ['apache-error.log', 'nginx-error.log'].map((f) => tailFile(f, join(dir, 'logs', f))) : []),
  ].filter(Boolean).join('\n');

  beforeAll(async () => {
    requirePrerequisites();
    const t0 = Date.now();
    const mark = (name: string): void => { timings[name] = (Date.now() - t0) / 1000; };
    expect(existsSync(MAIN), `${MAIN} is missing: build first (npm run build; npm test does it)`).toBe(true);
    const newestSrc = Math.max(...['cli/daemon.ts', 'capture/live.ts', 'metrics/exporter.ts', 'conn/tracker.ts'].map((f) => statSync(join(ROOT, 'src', f)).mtimeMs));
    if (statSync(MAIN).mtimeMs < newestSrc - 1000) console.warn(`daemon-prometheus e2e: ${MAIN} is older than src/: run npm run build (npm test does)`);
    for (const port of [APACHE_PORT, NGINX_PORT]) {
      expect(await portFree(HOST, port), `something already listens on ${HOST}:${port}; stop it first`).toBe(true);
    }
    dir = mkdtempSync(join(tmpdir(), 'ka-e2e-prom-'));
    prepareDir(dir);
    try {
      // 1. Prometheus first: it applies its targets only about 5 s after it starts, so that wait
      //    overlaps the rest of the setup and the traffic (counters need no sample from before).
      daemonPort = await freePort();
      let promPort = await freePort();
      while (promPort === daemonPort) promPort = await freePort();
      const prometheus = startPrometheus(TOOLS.prometheus!, dir, promPort, JOB, `${HOST}:${daemonPort}`)
        .then((p) => { procs.prometheus = p; return p; });
      prometheusStarting = prometheus.catch(() => null); // awaited below; no unhandled rejection meanwhile

      // 2. The servers, before the capture starts (their readiness probes stay out of it).
      const [apache, nginx] = await Promise.allSettled([
        startApache(TOOLS.apache2!, dir, APACHE_PORT),
        startNginx(TOOLS.nginx!, dir, NGINX_PORT),
      ]);
      if (apache.status === 'fulfilled') procs.apache = apache.value;
      if (nginx.status === 'fulfilled') procs.nginx = nginx.value;
      for (const r of [apache, nginx]) if (r.status === 'rejected') throw r.reason;
      await sleep(300); // let the probes' teardown packets pass before capturing
      mark('servers up');

      // 3. The daemon: the built CLI, as a user runs it.
      procs.daemon = start('daemon', process.execPath, [
        MAIN, '--interface', 'lo', '--ports', `${APACHE_PORT},${NGINX_PORT}`, '--web.listen-address', `${HOST}:${daemonPort}`,
      ], join(dir, 'logs/daemon.log'));
      const daemon = procs.daemon;
      await waitFor('the daemon /readyz to answer 200', 15_000, async () => {
        if (daemon.exit) throw new Error(`the daemon exited (${JSON.stringify(daemon.exit)})`);
        const r = await httpGet(`http://${HOST}:${daemonPort}/readyz`);
        return r?.status === 200 ? true : null;
      }, 100);
      mark('daemon ready');

      // 4. The traffic: every scenario checks that the server behaved as it claims.
      made = await driveTraffic(live);
      mark('traffic done');
      const after = Date.now() / 1000;

      // 5. What Prometheus scraped, once it has settled.
      await prometheus;
      got = await stableSnapshot(promPort, after, 20_000);
      mark('stable in Prometheus');
    } catch (err) {
      (err as Error).message += `\n${logs()}`;
      throw err;
    }
  }, 60_000);

  afterAll(async () => {
    for (const c of live) c.destroy();
    await prometheusStarting;
    await Promise.all([
      stop(procs.daemon, 'SIGTERM', 10_000),
      stop(procs.prometheus, 'SIGTERM', 10_000),
      stop(procs.apache, 'SIGTERM', 10_000),
      stop(procs.nginx, 'SIGTERM', 10_000),
    ]);
    if (dir && process.env.KEEP_TMP !== '1') rmSync(dir, { recursive: true, force: true });
    else if (dir) console.warn(`daemon-prometheus e2e: temp dir kept: ${dir}`);
    console.info(`daemon-prometheus e2e timings (s): ${JSON.stringify(timings)}`);
    if (process.env.E2E_DEBUG) console.info(JSON.stringify(got, null, 1));
  }, 60_000);

  it('made the planned connections (every close reason on both servers)', () => {
    const plan = made.map((m) => `${m.server} ${m.reason}`);
    for (const t of [APACHE, NGINX]) {
      for (const r of ['idle_timeout', 'max_requests', 'client_close', 'not_persistent']) expect(plan, `${t.label} ${r}`).toContain(`${t.label} ${r}`);
    }
    expect(made.filter((m) => m.server === NGINX.label && m.reason === 'max_requests')).toHaveLength(2);
    expect(made).toHaveLength(12);
  });

  it('Prometheus settled on one set of values after the traffic', () => {
    expect(got.values, `no Prometheus snapshot after the traffic (${got.polls} polls)\n${logs()}`).not.toBeNull();
    expect(got.stable, `values still changing after 20 s: ${JSON.stringify(got.values)}`).toBe(true);
  });

  it('scraped the daemon: up == 1, the live source up, no drops, no anomalies', () => {
    const want = expectedSnapshot(made);
    const v = got.values!;
    expect({ up: v.up, sourceUp: v.sourceUp, dropped: v.dropped, anomalies: v.anomalies })
      .toEqual({ up: want.up, sourceUp: want.sourceUp, dropped: want.dropped, anomalies: want.anomalies });
  });

  it('counts every request, the reused ones and the handshakes they saved, per server', () => {
    const want = expectedSnapshot(made);
    const v = got.values!;
    expect({ requests: v.requests, reused: v.reused, reusedAll: v.reusedAll, handshakesSaved: v.handshakesSaved, handshakeRtts: v.handshakeRtts, timeSavedPositive: v.timeSavedPositive })
      .toEqual({ requests: want.requests, reused: want.reused, reusedAll: want.reusedAll, handshakesSaved: want.handshakesSaved, handshakeRtts: want.handshakeRtts, timeSavedPositive: want.timeSavedPositive });
    // Spelled out, so a wrong expectation cannot hide: Apache 2+4+2+3, nginx 2+3+3+2+1+2.
    expect(v.requests).toEqual({ [APACHE.label]: 11, [NGINX.label]: 13 });
    expect(v.reusedAll).toEqual({ '': 12 });
  });

  it('gives every connection its close reason and closing side', () => {
    const want = expectedSnapshot(made);
    const v = got.values!;
    expect(v.closed).toEqual(want.closed);
    expect(v.closed).toEqual({
      [`${APACHE.label} client_close server`]: 1,
      [`${APACHE.label} idle_timeout server`]: 1,
      [`${APACHE.label} max_requests server`]: 1,
      [`${APACHE.label} not_persistent server`]: 3,
      [`${NGINX.label} client_close client`]: 1,
      [`${NGINX.label} client_close server`]: 1,
      [`${NGINX.label} idle_timeout server`]: 1,
      [`${NGINX.label} max_requests server`]: 2,
      [`${NGINX.label} not_persistent server`]: 1,
    });
    expect({ opened: v.opened, openNow: v.openNow, untracked: v.untracked })
      .toEqual({ opened: want.opened, openNow: want.openNow, untracked: want.untracked });
  });

  it('observes requests per connection and the idle time before the idle-timeout closes', () => {
    const want = expectedSnapshot(made);
    const v = got.values!;
    expect({ count: v.requestsPerConnCount, sum: v.requestsPerConnSum, idle: v.serverClosesIdleOver1_5s })
      .toEqual({ count: want.requestsPerConnCount, sum: want.requestsPerConnSum, idle: want.serverClosesIdleOver1_5s });
  });

  it('learns the servers\' keep-alive settings: advertised timeout and max, inferred max', () => {
    const want = expectedSnapshot(made);
    const v = got.values!;
    expect({ advertisedTimeout: v.advertisedTimeout, advertisedMax: v.advertisedMax, inferredMax: v.inferredMax })
      .toEqual({ advertisedTimeout: want.advertisedTimeout, advertisedMax: want.advertisedMax, inferredMax: want.inferredMax });
  });

  it('stops on SIGTERM with exit status 0, leaving no tcpdump behind', async () => {
    const daemon = procs.daemon!;
    const pid = daemon.child.pid!;
    const t = Date.now();
    process.kill(pid, 'SIGTERM');
    const exit = await Promise.race([daemon.exited, sleep(10_000).then(() => null)]);
    expect(exit, `the daemon did not exit within 10 s of SIGTERM\n${tail(daemon)}`).toEqual({ code: 0, signal: null });
    timings['daemon stop'] = (Date.now() - t) / 1000;
    // Its process group (it and the tcpdump it ran) is empty: kill(-pgid, 0) fails with ESRCH.
    await sleep(200);
    let groupGone = false;
    try { process.kill(-pid, 0); } catch (err) { groupGone = (err as NodeJS.ErrnoException).code === 'ESRCH'; }
    expect(groupGone, `processes of the daemon's group are still running after it exited\n${tail(daemon)}`).toBe(true);
    expect(readFileSync(daemon.log, 'utf8')).toMatch(/stopped on SIGTERM/);
  }, 15_000);
});
