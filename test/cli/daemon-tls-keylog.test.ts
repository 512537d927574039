/**
 * Issue 13, `--tls-keylog FILE` in the daemon: the built CLI (compiled from src/ into a temp dir)
 * on the real TLS capture test/fixtures/tls/tls-servers.pcap (curl and Python against nginx on
 * 18110-18112, see its README) with its real key log. With the key log the connections of the
 * TLS servers 18110 and 18111 count as protocol="http/1.1" (decrypted); without it as
 * protocol="tls". The file is followed: a daemon started with an empty key log, then a missing
 * one, decrypts once the lines are appended or the file is created (the capture is fed through
 * stdin only after /metrics shows the lines read, so nothing depends on timing). A path that
 * can never be a key log is one line and exit 2; a key log others can read gets one warning.
 * The proxy tap gets the keys too: curl (SSLKEYLOGFILE, the file it creates after the daemon
 * started) through --proxy to a Node.js HTTPS server, two requests on one connection.
 * Every daemon bound in time, on 127.0.0.1 port 0.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { execFileSync, spawn } from 'node:child_process';
import { createServer, type Server } from 'node:https';
import type { AddressInfo } from 'node:net';
import { chmodSync, copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync, appendFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { OPTIONS, envName } from '../../src/config/daemon.js';
import { parseProm, samples, total, type Sample } from '../helpers/prom.js';
import { buildCli } from '../helpers/cli.js';
import { findTool, freePort, run, waitFor } from '../helpers/procs.js';

const ROOT = join(import.meta.dirname, '../..');
const PCAP = join(ROOT, 'test/fixtures/tls/tls-servers.pcap');
const KEYLOG_REL = 'test/fixtures/tls/keylog.txt';
const KEYLOG = join(ROOT, KEYLOG_REL);
const KEYLOG_LINES = readFileSync(KEYLOG, 'latin1').split('\n').filter((l) => l.trim() !== '' && !l.startsWith('#')).length;
const TLS_SERVERS = ['127.0.0.1:18110', '127.0.0.1:18111'];
const LOCAL = '127.0.0.1:0';

let dir = '';
let MAIN = '';
let files = '';
beforeAll(() => {
  ({ dir, main: MAIN } = buildCli('ka-daemon-keylog-'));
  files = mkdtempSync(join(tmpdir(), 'ka-daemon-keylog-files-'));
}, 120_000);
afterAll(() => {
  if (dir) rmSync(dir, { recursive: true, force: true });
  if (files) rmSync(files, { recursive: true, force: true });
});

const ENV: NodeJS.ProcessEnv = { ...process.env, KEEPALIVE_EXPORTER_DEBUG: '' };
for (const o of OPTIONS) delete ENV[envName(o.flag)];

interface Daemon {
  stderr: () => string;
  /** The JSON log lines' messages. */
  messages: () => string[];
  stdin: NodeJS.WritableStream | null;
  kill: (sig: NodeJS.Signals) => void;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

function startDaemon(args: string[], opts: { stdin?: boolean; env?: NodeJS.ProcessEnv } = {}, ms = 30_000): Daemon {
  const child = spawn(process.execPath, [MAIN, ...args], { cwd: ROOT, env: { ...ENV, ...opts.env }, stdio: [opts.stdin ? 'pipe' : 'ignore', 'pipe', 'pipe'] });
  let err = '';
  child.stdout!.resume();
  child.stderr!.on('data', (d: Buffer) => { err += d.toString('utf8'); });
  child.stdin?.on('error', () => {}); // a daemon that exited early: its error is what the test reports
  const killer = setTimeout(() => child.kill('SIGKILL'), ms);
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => child.on('close', (code, signal) => {
    clearTimeout(killer);
    resolve({ code, signal });
  }));
  const messages = (): string[] => err.split('\n').filter((l) => l.startsWith('{')).map((l) => (JSON.parse(l) as { msg: string }).msg);
  return { stderr: () => err, messages, stdin: child.stdin, kill: (sig) => { if (child.exitCode === null && child.signalCode === null) child.kill(sig); }, exited };
}

function baseUrl(d: Daemon): Promise<string> {
  return waitFor(`the daemon to listen (stderr: ${d.stderr()})`, 10_000, () => {
    const m = /listening on (http:\/\/[^\s"/]+)/.exec(d.stderr());
    return m ? m[1] : null;
  });
}

async function scrape(base: string): Promise<Sample[]> {
  return parseProm(await (await fetch(`${base}/metrics`)).text());
}

/** The metrics once the file source is done (its metrics stay served). */
async function afterReplay(d: Daemon, base: string): Promise<Sample[]> {
  await waitFor(`the capture to be read (stderr: ${d.stderr()})`, 15_000, () => d.messages().some((m) => m.includes('its metrics stay served')) || null);
  return scrape(base);
}

/** Requests of a server by protocol label. */
function protocols(s: Sample[], server: string): Record<string, number> {
  const out: Record<string, number> = {};
  for (const x of samples(s, 'keepalive_requests_total', { server })) out[x.labels.protocol] = (out[x.labels.protocol] ?? 0) + x.value;
  return out;
}

/** Every TLS server's requests are decrypted HTTP/1.1, none estimated from record turns. */
function expectDecrypted(s: Sample[]): void {
  for (const srv of TLS_SERVERS) {
    const p = protocols(s, srv);
    expect(p['http/1.1'], srv).toBeGreaterThan(0);
    expect(p.tls, srv).toBeUndefined();
  }
}

async function stopDaemon(d: Daemon): Promise<void> {
  d.kill('SIGTERM');
  const { code } = await d.exited;
  expect(code, d.stderr()).toBe(0);
}

describe('the daemon with --tls-keylog', () => {
  let withKeys: Record<string, Record<string, number>> = {};

  it(`decrypts the TLS servers' connections of a capture file: protocol="http/1.1" with ${KEYLOG_REL}`, async () => {
    const d = startDaemon(['--pcap', PCAP, '--tls-keylog', KEYLOG_REL, '--web.listen-address', LOCAL]);
    try {
      const s = await afterReplay(d, await baseUrl(d));
      expectDecrypted(s);
      withKeys = Object.fromEntries(TLS_SERVERS.map((srv) => [srv, protocols(s, srv)]));
      expect(total(s, 'keepalive_tls_keylog_lines_total', { result: 'accepted' })).toBe(KEYLOG_LINES);
      expect(total(s, 'keepalive_tls_keylog_lines_total', { result: 'rejected' })).toBe(0);
      expect(total(s, 'keepalive_tls_keylog_up')).toBe(1);
      expect(total(s, 'keepalive_tls_keylog_evicted_total')).toBe(0);
      // Secrets are deleted once a connection's keys are derived: what is held is at most what was logged.
      expect(total(s, 'keepalive_tls_keylog_entries')).toBeLessThan(KEYLOG_LINES);
    } finally {
      await stopDaemon(d);
    }
  });

  it('without it the same connections count as protocol="tls" (estimated from record turns), with the same request totals, and no key log metrics', async () => {
    const d = startDaemon(['--pcap', PCAP, '--web.listen-address', LOCAL]);
    try {
      const s = await afterReplay(d, await baseUrl(d));
      for (const srv of TLS_SERVERS) {
        const p = protocols(s, srv);
        expect(p['http/1.1'], srv).toBeUndefined();
        expect(p.tls, srv).toBeGreaterThan(0);
        expect(p.tls, srv).toBe(withKeys[srv]['http/1.1']);
      }
      expect(samples(s, 'keepalive_tls_keylog_lines_total')).toEqual([]);
      expect(samples(s, 'keepalive_tls_keylog_up')).toEqual([]);
    } finally {
      await stopDaemon(d);
    }
  });

  it('follows the file: started with an empty key log, the lines appended later decrypt a capture fed after them (stdin); env KEEPALIVE_EXPORTER_TLS_KEYLOG; 0600 gives no warning', async () => {
    const log = join(files, 'grow.txt');
    writeFileSync(log, '', { mode: 0o600 });
    const d = startDaemon(['--pcap', '-', '--web.listen-address', LOCAL], { stdin: true, env: { [envName('tls-keylog')]: log } });
    try {
      const base = await baseUrl(d);
      let s = await scrape(base);
      expect(total(s, 'keepalive_tls_keylog_up')).toBe(1);
      expect(total(s, 'keepalive_tls_keylog_lines_total', { result: 'accepted' })).toBe(0);
      const text = readFileSync(KEYLOG);
      const cut = Math.floor(text.length / 2) + 7; // inside a line: the follower keeps the half until the rest comes
      appendFileSync(log, text.subarray(0, cut));
      appendFileSync(log, text.subarray(cut));
      s = await waitFor('the appended lines to be read', 10_000, async () => {
        const now = await scrape(base);
        return total(now, 'keepalive_tls_keylog_lines_total', { result: 'accepted' }) === KEYLOG_LINES ? now : null;
      });
      expect(total(s, 'keepalive_tls_keylog_lines_total', { result: 'rejected' })).toBe(0);
      d.stdin!.end(readFileSync(PCAP));
      s = await afterReplay(d, base);
      expectDecrypted(s);
      for (const srv of TLS_SERVERS) expect(protocols(s, srv), srv).toEqual(withKeys[srv]);
      expect(d.messages().filter((m) => m.includes('readable by'))).toEqual([]);
    } finally {
      await stopDaemon(d);
    }
  });

  it('a key log that does not exist yet is waited for (said once), read when created, and its permissions then warned about once', async () => {
    const log = join(files, 'later.txt');
    const d = startDaemon(['--pcap', '-', '--tls-keylog', log, '--web.listen-address', LOCAL], { stdin: true });
    try {
      const base = await baseUrl(d);
      expect(d.messages().filter((m) => m.includes('does not exist yet'))).toEqual([`the TLS key log ${log} does not exist yet: waiting for a client to create it (TLS connections are estimated from record turns until then)`]);
      expect(total(await scrape(base), 'keepalive_tls_keylog_up')).toBe(0);
      copyFileSync(KEYLOG, log);
      chmodSync(log, 0o644);
      await waitFor('the created file to be read', 10_000, async () => total(await scrape(base), 'keepalive_tls_keylog_lines_total', { result: 'accepted' }) === KEYLOG_LINES || null);
      d.stdin!.end(readFileSync(PCAP));
      const s = await afterReplay(d, base);
      expectDecrypted(s);
      for (const srv of TLS_SERVERS) expect(protocols(s, srv), srv).toEqual(withKeys[srv]);
      expect(total(s, 'keepalive_tls_keylog_up')).toBe(1);
      expect(d.messages().filter((m) => m.includes('readable by'))).toEqual([`${log} is readable by everyone: it holds the keys of every logged TLS connection; chmod 600 ${log}`]);
    } finally {
      await stopDaemon(d);
    }
  });

  it('a world-readable key log present at start: one warning, before the daemon listens; a "tls-keylog" key in --config works too', async () => {
    const log = join(files, 'open.txt');
    copyFileSync(KEYLOG, log);
    chmodSync(log, 0o644);
    const cfg = join(files, 'config.json');
    writeFileSync(cfg, JSON.stringify({ 'tls-keylog': log }));
    const d = startDaemon(['--pcap', PCAP, '--config', cfg, '--web.listen-address', LOCAL]);
    try {
      const s = await afterReplay(d, await baseUrl(d));
      const msgs = d.messages();
      const warnings = msgs.filter((m) => m.includes('readable by'));
      expect(warnings).toEqual([`${log} is readable by everyone: it holds the keys of every logged TLS connection; chmod 600 ${log}`]);
      expect(msgs.findIndex((m) => m.includes('readable by'))).toBeLessThan(msgs.findIndex((m) => m.includes('listening on')));
      expect(total(s, 'keepalive_tls_keylog_lines_total', { result: 'accepted' })).toBe(KEYLOG_LINES);
    } finally {
      await stopDaemon(d);
    }
  });

  it('a path that can never be a key log (its directory missing, a directory) stops the start: one line, exit 2', async () => {
    mkdirSync(join(files, 'a-dir'), { recursive: true });
    for (const [path, want] of [
      [join(files, 'no-such-dir', 'keys.txt'), `the directory ${join(files, 'no-such-dir')} does not exist`],
      [join(files, 'a-dir'), 'is a directory'],
    ]) {
      const d = startDaemon(['--pcap', PCAP, '--tls-keylog', path, '--web.listen-address', LOCAL]);
      const { code } = await d.exited;
      const err = d.stderr();
      expect(code, err).toBe(2);
      expect(err).not.toContain('listening on');
      const lines = err.split('\n').filter((l) => l.length > 0);
      expect(lines, err).toHaveLength(1);
      expect(lines[0]).toMatch(/^keepalive-exporter: --tls-keylog: /);
      expect(lines[0]).toContain(want);
    }
  });
});

const haveTools = findTool('curl') !== null && findTool('openssl') !== null;

describe.skipIf(!haveTools)('the proxy tap with --tls-keylog: curl through it to an HTTPS server', () => {
  let server: Server | null = null;
  let upstream = 0;
  beforeAll(async () => {
    const key = join(files, 'key.pem');
    const cert = join(files, 'cert.pem');
    execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-days', '2', '-subj', '/CN=tls.fixture.test', '-keyout', key, '-out', cert], { stdio: 'ignore' });
    server = createServer({ key: readFileSync(key), cert: readFileSync(cert) }, (_req, res) => res.end('ok\n'));
    await new Promise<void>((r) => server!.listen(0, '127.0.0.1', r));
    upstream = (server.address() as AddressInfo).port;
  });
  afterAll(async () => {
    server?.closeAllConnections();
    await new Promise<void>((r) => (server ? server.close(() => r()) : r()));
  });

  const RUNS = 10;
  it(`the key log curl creates after the start, and appends to, decrypts every relayed connection: ${RUNS} curls of 2 http/1.1 requests, 1 reused`, async () => {
    const log = join(files, 'curl-keys.txt');
    const port = await freePort();
    const d = startDaemon(['--proxy', `127.0.0.1:${port}=127.0.0.1:${upstream}`, '--tls-keylog', log, '--web.listen-address', LOCAL]);
    try {
      const base = await baseUrl(d);
      await waitFor('the proxy to be up', 10_000, async () => (await fetch(`${base}/readyz`)).status === 200 || null);
      const url = `https://127.0.0.1:${port}/`;
      // Each curl appends its lines during its handshake, milliseconds before its connection
      // ends: the follower must read them then, not at its next 200 ms poll. Async: the HTTPS
      // server runs in this process (execFileSync would block it).
      for (let i = 0; i < RUNS; i++) {
        const c = await run('curl', ['-sk', '--http1.1', '--max-time', '10', '-o', '/dev/null', url, '-o', '/dev/null', url], { env: { ...process.env, SSLKEYLOGFILE: log }, timeoutMs: 15_000 });
        expect(c.code, c.stderr).toBe(0);
      }
      const source = `proxy:${port}`;
      const s = await waitFor('the relayed connections to be counted closed', 10_000, async () => {
        const now = await scrape(base);
        return total(now, 'keepalive_connections_closed_total', { source }) >= RUNS ? now : null;
      });
      expect(total(s, 'keepalive_requests_total', { source, protocol: 'http/1.1' })).toBe(2 * RUNS);
      expect(total(s, 'keepalive_requests_total', { source, protocol: 'http/1.1', reused: 'true' })).toBe(RUNS);
      expect(total(s, 'keepalive_requests_total', { source, protocol: 'tls' })).toBe(0);
      expect(total(s, 'keepalive_anomalies_total', { kind: 'tls_keys_missing' })).toBe(0);
      expect(total(s, 'keepalive_tls_keylog_lines_total', { result: 'accepted' })).toBeGreaterThan(0);
      expect(d.messages().some((m) => m.includes(`does not exist yet`))).toBe(true);
      expect(d.messages()).toContain(`reading the TLS key log ${log}`);
    } finally {
      await stopDaemon(d);
    }
  });
});
