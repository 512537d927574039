/**
 * The proxy tap at the file descriptor limit, and its refusals as a scrape shows them.
 *
 * - The fd limit: a ProxyRelay from the CLI compiled into a temp dir (test/helpers/cli.ts), run
 *   in a child under `prlimit --nofile=128:128` and 129:129 (soft = hard, so Node cannot raise the soft
 *   limit at start), in front of an upstream in this process (whose fds do not count there).
 *   Connections are opened until refused: every refusal is a reset the client sees, counted as
 *   fd_limit, logged once; the held connections keep relaying; after some close, new ones work.
 *   Without the fd budget the same run loses connections silently (libuv's EMFILE trick).
 * - The daemon: --proxy with --proxy.max-connections 1; the refusals appear in a scrape as
 *   keepalive_proxy_connections_refused_total{source="proxy:PORT",reason=...}, 0 included.
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import net from 'node:net';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { buildCli } from '../helpers/cli.js';
import { parseProm } from '../helpers/prom.js';
import { OPTIONS, envName } from '../../src/config/daemon.js';

const HOST = '127.0.0.1';
/** Two limits, one odd: which fd is the last free one decides where EMFILE strikes (the client's
 * accept, the upstream's socket()), and each relayed connection takes two. */
const FD_LIMITS = [128, 129];
const OK = 'HTTP/1.1 200 X\r\nContent-Length: 2\r\n\r\nok';
const GET = 'GET / HTTP/1.1\r\nHost: fd.test\r\n\r\n';
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
const hasPrlimit = spawnSync('prlimit', ['--version']).status === 0;

let dir = '';
let MAIN = '';
beforeAll(() => {
  ({ dir, main: MAIN } = buildCli('ka-relay-fd-'));
  // The child: a relay with the defaults (maxConnections 10000, far above what 128 fds allow),
  // answering every line on stdin with its counts.
  writeFileSync(join(dir, 'relay-child.mjs'), `
    import { readFileSync } from 'node:fs';
    import { ProxyRelay } from './dist/proxy/relay.js';
    import { Engine } from './dist/conn/engine.js';
    const warnings = [];
    const relay = new ProxyRelay({ listenHost: '${HOST}', listenPort: 0, upstreamHost: '${HOST}', upstreamPort: Number(process.argv[2]) },
      new Engine(), { idleTimeoutMs: 60000, connectTimeoutMs: 5000, proxyProtocol: null }, { warn: (m) => warnings.push(m) });
    await relay.start();
    const limits = readFileSync('/proc/self/limits', 'utf8').split('\\n').find((l) => l.startsWith('Max open files'));
    const stats = () => JSON.stringify({ port: relay.server.address().port, limits, accepted: relay.accepted, active: relay.active,
      upstreamFailures: relay.upstreamFailures, refused: relay.refused, warnings });
    process.stdout.write(stats() + '\\n');
    process.stdin.setEncoding('utf8');
    process.stdin.on('data', () => process.stdout.write(stats() + '\\n'));
    process.stdin.on('end', () => process.exit(0));
  `);
}, 120_000);
afterAll(() => {
  if (dir) rmSync(dir, { recursive: true, force: true });
});

const cleanups: Array<() => Promise<void> | void> = [];
afterEach(async () => {
  while (cleanups.length) await cleanups.pop()!();
});

async function startUpstream(): Promise<{ server: net.Server; port: number; accepted: () => number }> {
  let n = 0;
  const socks = new Set<net.Socket>();
  const server = net.createServer((s) => {
    n++;
    socks.add(s);
    s.on('close', () => socks.delete(s));
    s.on('error', () => {});
    s.on('data', () => s.write(OK));
  });
  await new Promise<void>((r) => server.listen(0, HOST, r));
  cleanups.push(() => new Promise<void>((r) => { for (const s of socks) s.destroy(); server.close(() => r()); }));
  return { server, port: (server.address() as net.AddressInfo).port, accepted: () => n };
}

interface Attempt {
  sock: net.Socket;
  /** 'ok': the response came through; 'refused': closed with nothing received. */
  outcome: 'ok' | 'refused' | 'other';
  error: string | null;
}

/** Connects, sends one request, and resolves with the response or the close (bounded: 5 s). */
function attempt(port: number): Promise<Attempt> {
  return new Promise((resolve) => {
    const sock = net.connect({ host: HOST, port, noDelay: true });
    cleanups.push(() => { sock.destroy(); });
    let got = '';
    let error: string | null = null;
    const done = (outcome: Attempt['outcome']): void => { clearTimeout(timer); resolve({ sock, outcome, error }); };
    const timer = setTimeout(() => done('other'), 5000);
    sock.on('connect', () => sock.write(GET));
    sock.on('data', (b: Buffer) => { got += b.toString('latin1'); if (got === OK) done('ok'); });
    sock.on('error', (e: NodeJS.ErrnoException) => { error = e.code ?? e.message; });
    sock.on('close', () => done(got === '' ? 'refused' : 'other'));
  });
}

/** One more response on a held connection. */
function again(sock: net.Socket): Promise<boolean> {
  return new Promise((resolve) => {
    let got = '';
    const timer = setTimeout(() => resolve(false), 5000);
    const onData = (b: Buffer): void => {
      got += b.toString('latin1');
      if (got === OK) { clearTimeout(timer); sock.off('data', onData); resolve(true); }
    };
    sock.on('data', onData);
    sock.write(GET);
  });
}

interface ChildStats {
  port: number;
  limits: string;
  accepted: number;
  active: number;
  upstreamFailures: number;
  refused: { limit: number; fd_limit: number };
  warnings: string[];
}

describe.runIf(hasPrlimit)('ProxyRelay at the fd limit (prlimit --nofile)', () => {
  it.each(FD_LIMITS)('--nofile=%i: refuses visibly near the limit: each refusal a reset, counted as fd_limit, one log line; held connections keep relaying; freed fds are used again', async (FD_LIMIT) => {
    const upstream = await startUpstream();
    const child: ChildProcess = spawn('prlimit', [`--nofile=${FD_LIMIT}:${FD_LIMIT}`, process.execPath, join(dir, 'relay-child.mjs'), String(upstream.port)],
      { stdio: ['pipe', 'pipe', 'pipe'] });
    let stderr = '';
    child.stderr!.on('data', (b: Buffer) => { stderr += b.toString(); });
    cleanups.push(() => { child.kill('SIGKILL'); });
    const lines: ChildStats[] = [];
    let buf = '';
    child.stdout!.on('data', (b: Buffer) => {
      buf += b.toString();
      for (let i = buf.indexOf('\n'); i >= 0; i = buf.indexOf('\n')) {
        lines.push(JSON.parse(buf.slice(0, i)) as ChildStats);
        buf = buf.slice(i + 1);
      }
    });
    const nextLine = async (): Promise<ChildStats> => {
      const n = lines.length;
      for (let i = 0; lines.length === n; i++) {
        if (i > 500) throw new Error(`no answer from the relay child (stderr: ${stderr})`);
        await sleep(10);
      }
      return lines[n];
    };
    const stats = (): Promise<ChildStats> => { child.stdin!.write('stats\n'); return nextLine(); };

    const first = await nextLine();
    // The limit really is FD_LIMIT in the child (Node raises only a soft limit below the hard one).
    expect(first.limits).toMatch(new RegExp(`^Max open files\\s+${FD_LIMIT}\\s+${FD_LIMIT}\\s`));
    // At start: 10000 connections cannot fit in that many fds, said once.
    expect(first.warnings).toHaveLength(1);
    expect(first.warnings[0]).toMatch(new RegExp(`--proxy\\.max-connections allows 10000 connections.*fd soft limit is ${FD_LIMIT}.*LimitNOFILE=.*ulimit -n`));
    const { port } = first;

    // One at a time until five are refused (bounded: 129 fds cannot hold 100 relayed connections).
    const held: net.Socket[] = [];
    let refusedSeen = 0;
    for (let i = 0; i < 100 && refusedSeen < 5; i++) {
      const a = await attempt(port);
      expect(a.outcome, `attempt ${i}: ${a.error}`).not.toBe('other');
      if (a.outcome === 'ok') {
        expect(refusedSeen, 'a connection relayed after a refusal with nothing closed in between').toBe(0);
        held.push(a.sock);
      } else {
        refusedSeen++;
        expect(a.error).toBe('ECONNRESET');
      }
    }
    expect(refusedSeen).toBe(5);
    expect(held.length).toBeGreaterThan(0);
    // Then 20 at once: all refused, none lost uncounted.
    const burst = await Promise.all(Array.from({ length: 20 }, () => attempt(port)));
    expect(burst.map((a) => a.outcome)).toEqual(Array(20).fill('refused'));

    let s = await stats();
    expect(s.refused).toEqual({ limit: 0, fd_limit: 25 });
    expect(s.accepted).toBe(held.length);
    expect(s.active).toBe(held.length);
    expect(s.upstreamFailures).toBe(0);
    expect(upstream.accepted()).toBe(held.length);
    const fdLines = s.warnings.filter((w) => w.includes('near the file descriptor limit'));
    expect(fdLines).toHaveLength(1);
    expect(fdLines[0]).toMatch(new RegExp(`soft limit ${FD_LIMIT}.*LimitNOFILE=.*ulimit -n.*reason="fd_limit"`));
    expect(s.warnings).toHaveLength(2);

    // The held connections still relay.
    expect(await Promise.all(held.map(again))).toEqual(held.map(() => true));

    // Half of them close: the fds come back, and new connections are relayed again.
    const closing = held.splice(0, Math.ceil(held.length / 2));
    for (const sock of closing) sock.end();
    for (let i = 0; (s = await stats()).active !== held.length; i++) {
      if (i > 200) throw new Error(`the relay still holds ${s.active} connections, expected ${held.length}`);
      await sleep(20);
    }
    const fresh = [];
    for (let i = 0; i < Math.min(3, closing.length); i++) fresh.push(await attempt(port));
    expect(fresh.map((a) => a.outcome)).toEqual(fresh.map(() => 'ok'));
    s = await stats();
    expect(s.refused).toEqual({ limit: 0, fd_limit: 25 });
    expect(s.accepted).toBe(held.length + closing.length + fresh.length);
    expect(s.warnings).toHaveLength(2);
    expect(stderr).toBe('');

    for (const a of fresh) a.sock.destroy();
    for (const sock of held) sock.destroy();
    child.stdin!.end();
  }, 60_000);
});

// ------------------------------------------------------------------ the daemon

const ENV: NodeJS.ProcessEnv = { ...process.env, KEEPALIVE_EXPORTER_DEBUG: '' };
for (const o of OPTIONS) delete ENV[envName(o.flag)];

async function freePort(): Promise<number> {
  const probe = net.createServer();
  await new Promise<void>((r) => probe.listen(0, HOST, r));
  const port = (probe.address() as net.AddressInfo).port;
  await new Promise<void>((r) => probe.close(() => r()));
  return port;
}

describe('the daemon: refusals in a scrape', () => {
  it('--proxy.max-connections 1: a second client is reset and counted in keepalive_proxy_connections_refused_total{source,reason}, both reasons exported', async () => {
    const upstream = await startUpstream();
    const proxyPort = await freePort();
    const d = spawn(process.execPath, [MAIN, '--proxy', `${HOST}:${proxyPort}=${HOST}:${upstream.port}`, '--proxy.max-connections', '1', '--web.listen-address', `${HOST}:0`],
      { env: ENV, stdio: ['ignore', 'pipe', 'pipe'] });
    let stderr = '';
    d.stderr!.on('data', (b: Buffer) => { stderr += b.toString(); });
    cleanups.push(() => { d.kill('SIGKILL'); });
    let base = '';
    for (let i = 0; !base; i++) {
      if (i > 500) throw new Error(`the daemon did not listen: ${stderr}`);
      base = /listening on (http:\/\/[^\s"]+)\/metrics/.exec(stderr)?.[1] ?? '';
      await sleep(20);
    }
    const metric = async (reason: string): Promise<number | undefined> => {
      const text = await (await fetch(`${base}/metrics`)).text();
      return parseProm(text).find((x) => x.name === 'keepalive_proxy_connections_refused_total'
        && x.labels.source === `proxy:${proxyPort}` && x.labels.reason === reason)?.value;
    };
    expect(await metric('limit')).toBe(0);
    expect(await metric('fd_limit')).toBe(0);

    const kept = await attempt(proxyPort);
    expect(kept.outcome).toBe('ok');
    const refused = [await attempt(proxyPort), await attempt(proxyPort)];
    expect(refused.map((a) => a.outcome)).toEqual(['refused', 'refused']);
    expect(await metric('limit')).toBe(2);
    expect(await metric('fd_limit')).toBe(0);
    const warnLines = stderr.split('\n').filter((l) => l.includes('refusing client connections'));
    expect(warnLines).toHaveLength(1);
    expect(JSON.parse(warnLines[0]).level).toBe(40); // pino's warn (fastify's logger)
    kept.sock.destroy();
    d.kill('SIGTERM');
    await new Promise((r) => d.once('close', r));
  }, 60_000);
});
