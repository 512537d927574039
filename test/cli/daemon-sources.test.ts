/**
 * Issue 11, the daemon's sources: unique `source` labels (two proxies on one port of two
 * addresses; the same capture file given twice), every --pcap checked before the daemon says it
 * listens, and the capture anomalies counted in keepalive_anomalies_total. The built CLI, spawned
 * on 127.0.0.x with port 0, every run bounded in time.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { spawn } from 'node:child_process';
import { copyFileSync, linkSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { ConfigError, OPTIONS, envName, loadConfig } from '../../src/config/daemon.js';
import { parseProm, total } from '../helpers/prom.js';
import { LINKTYPE, frame, pcapFile, pcapngFile, tcpSegment } from '../helpers/packets.js';
import { buildCli } from '../helpers/cli.js';
import { freePort, waitFor } from '../helpers/procs.js';

const ROOT = join(import.meta.dirname, '../..');
const FIXTURE = join(ROOT, 'test/fixtures/real/real-servers.pcap');
const LOCAL = '127.0.0.1:0';

let dir = '';
let MAIN = '';
let files = '';

beforeAll(() => {
  ({ dir, main: MAIN } = buildCli('ka-daemon-src-'));
  files = mkdtempSync(join(tmpdir(), 'ka-daemon-src-files-'));
}, 120_000);

afterAll(() => {
  if (dir) rmSync(dir, { recursive: true, force: true });
  if (files) rmSync(files, { recursive: true, force: true });
});

const ENV: NodeJS.ProcessEnv = { ...process.env, KEEPALIVE_EXPORTER_DEBUG: '' };
for (const o of OPTIONS) delete ENV[envName(o.flag)];

function write(name: string, data: Buffer | string): string {
  const p = join(files, name);
  writeFileSync(p, data);
  return p;
}

interface Daemon {
  stderr: () => string;
  kill: (sig: NodeJS.Signals) => void;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

function startDaemon(args: string[], ms = 20_000): Daemon {
  const child = spawn(process.execPath, [MAIN, ...args], { env: ENV, stdio: ['ignore', 'pipe', 'pipe'] });
  let err = '';
  child.stdout.resume();
  child.stderr.on('data', (d: Buffer) => { err += d.toString('utf8'); });
  const killer = setTimeout(() => child.kill('SIGKILL'), ms);
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => child.on('close', (code, signal) => {
    clearTimeout(killer);
    resolve({ code, signal });
  }));
  return { stderr: () => err, kill: (sig) => { if (child.exitCode === null && child.signalCode === null) child.kill(sig); }, exited };
}

function baseUrl(d: Daemon): Promise<string> {
  return waitFor(`the daemon to listen (stderr: ${d.stderr()})`, 10_000, () => {
    const m = /listening on (http:\/\/[^\s"/]+)/.exec(d.stderr());
    return m ? m[1] : null;
  });
}

/** A start refused before listening: exit 2, one non-log line naming the problem, no "listening on". */
async function expectRefusedBeforeListening(args: string[], ...mustContain: string[]): Promise<void> {
  const d = startDaemon(args);
  const { code, signal } = await d.exited;
  const err = d.stderr();
  expect(signal, err).toBeNull();
  expect(code, err).toBe(2);
  expect(err).not.toContain('listening on');
  const lines = err.split('\n').filter((l) => l.length > 0 && !l.startsWith('{"level"'));
  expect(lines, err).toHaveLength(1);
  expect(lines[0]).toMatch(/^keepalive-exporter: /);
  expect(err).not.toMatch(/\n\s+at /);
  for (const s of mustContain) expect(lines[0]).toContain(s);
}

const segs = [0, 1, 2].map((i) => frame(LINKTYPE.ETHERNET, tcpSegment({ src: '10.0.0.1', dst: '10.0.0.2', sport: 40000, dport: 80, seq: 1 + i * 10, ack: 1, flags: 'PA', payload: Buffer.alloc(10, 0x41) })));
const PCAP = pcapFile(segs.map((data, i) => ({ ts: 1700000000 + i, data })), { linkType: LINKTYPE.ETHERNET });

describe('loadConfig: unique sources', () => {
  it('a proxy is proxy:PORT when its port is unique, proxy:HOST:PORT (IPv6 bracketed) when another proxy shares it', () => {
    const cfg = loadConfig(['--proxy', '127.0.0.1:8080=a:80', '--proxy', '127.0.0.2:8080=b:80', '--proxy', '[::1]:8080=c:80', '--proxy', ':9090=d:80'], {});
    expect(cfg.proxy.map((r) => r.name)).toEqual(['proxy:127.0.0.1:8080', 'proxy:127.0.0.2:8080', 'proxy:[::1]:8080', 'proxy:9090']);
  });

  it('the same listen address twice is refused, naming it', () => {
    expect(() => loadConfig(['--proxy', '[::1]:8080=a:80,[::1]:8080=b:80'], {})).toThrow(ConfigError);
    expect(() => loadConfig(['--proxy', '[::1]:8080=a:80,[::1]:8080=b:80'], {})).toThrow(/two routes listen on \[::1\]:8080/);
  });

  it('the same --pcap path twice (after path.resolve), or stdin twice, is refused naming it', () => {
    const rel = relative(process.cwd(), join(files, 'x.pcap'));
    expect(() => loadConfig(['--pcap', join(files, 'x.pcap'), '--pcap', `./${rel}`], {})).toThrow(/--pcap: "\.\/.*x\.pcap" is given twice/);
    expect(() => loadConfig(['--pcap', 'a.pcap', '--pcap', 'b/../a.pcap'], {})).toThrow(ConfigError);
    expect(() => loadConfig(['--pcap', '-', '--pcap', '-'], {})).toThrow(/stdin \(-\) is given twice/);
    expect(() => loadConfig([], { [envName('pcap')]: 'a.pcap,a.pcap' })).toThrow(/given twice/);
    expect(loadConfig(['--pcap', 'a.pcap', '--pcap', 'b.pcap'], {}).pcap).toEqual(['a.pcap', 'b.pcap']);
  });
});

describe('the daemon: unique sources, files checked before listening', () => {
  it('two proxies on one port of two addresses, and one on its own port: three distinct source labels', async () => {
    const port = await freePort();
    const other = await freePort();
    const d = startDaemon(['--proxy', `127.0.0.1:${port}=127.0.0.1:9`, '--proxy', `127.0.0.2:${port}=127.0.0.1:9`, '--proxy', `127.0.0.1:${other}=127.0.0.1:9`, '--web.listen-address', LOCAL]);
    try {
      const base = await baseUrl(d);
      const body = await waitFor('the proxies to be up', 10_000, async () => {
        const res = await fetch(`${base}/readyz`);
        return res.status === 200 ? (await res.json()) as { sources: Array<{ name: string }> } : null;
      });
      const want = [`proxy:127.0.0.1:${port}`, `proxy:127.0.0.2:${port}`, `proxy:${other}`];
      expect(body.sources.map((s) => s.name)).toEqual(want);
      const s = parseProm(await (await fetch(`${base}/metrics`)).text());
      for (const name of want) expect(total(s, 'keepalive_source_up', { source: name }), name).toBe(1);
      expect(total(s, 'keepalive_source_up')).toBe(3);
    } finally {
      d.kill('SIGTERM');
      await d.exited;
    }
  });

  it('the same file by two names (a hard link, a symlink) is refused before listening, naming both', async () => {
    const copy = join(files, 'copy.pcap');
    copyFileSync(FIXTURE, copy); // a hard link must be on the same file system
    const link = join(files, 'hard.pcap');
    linkSync(copy, link);
    const sym = join(files, 'sym.pcap');
    symlinkSync(copy, sym);
    await expectRefusedBeforeListening(['--pcap', copy, '--pcap', link, '--web.listen-address', LOCAL], 'hard.pcap', 'is the same file as', copy);
    await expectRefusedBeforeListening(['--pcap', sym, '--pcap', copy, '--web.listen-address', LOCAL], 'is the same file as', 'sym.pcap');
    // A copy is another file: both are served.
    const d = startDaemon(['--pcap', FIXTURE, '--pcap', copy, '--web.listen-address', LOCAL]);
    try {
      await baseUrl(d);
    } finally {
      d.kill('SIGTERM');
      await d.exited;
    }
  });

  it('the same path twice is refused in one line, exit 2', async () => {
    await expectRefusedBeforeListening(['--pcap', FIXTURE, '--pcap', FIXTURE, '--web.listen-address', LOCAL], 'given twice', FIXTURE);
  });

  it('a missing file, a text file, a file shorter than its header, beside a good one: refused before listening', async () => {
    await expectRefusedBeforeListening(['--pcap', FIXTURE, '--pcap', join(files, 'nope.pcap'), '--web.listen-address', LOCAL], 'nope.pcap', 'no such file');
    await expectRefusedBeforeListening(['--pcap', FIXTURE, '--pcap', write('notes.txt', 'hello, not a capture\n'), '--web.listen-address', LOCAL], 'not a pcap or pcapng file', '0x68656c6c');
    await expectRefusedBeforeListening(['--pcap', write('short.pcap', PCAP.subarray(0, 10)), '--pcap', FIXTURE, '--web.listen-address', LOCAL], 'short.pcap', 'only 10 bytes', '24 bytes');
    await expectRefusedBeforeListening(['--pcap', write('empty.pcap', ''), '--web.listen-address', LOCAL], 'empty.pcap', 'empty');
  }, 30_000);

  it('a truncated capture and a pcapng with unknown blocks: keepalive_anomalies_total counts capture_truncated and capture_unknown_block', async () => {
    const cut = write('cut.pcap', PCAP.subarray(0, PCAP.length - 5));
    const ng = write('blocks.pcapng', pcapngFile([{ interfaces: [{ linkType: LINKTYPE.ETHERNET }], blocks: [
      { type: 'epb', interface: 0, ts: 1, data: segs[0] },
      { type: 'raw', blockType: 0x99, body: Buffer.alloc(8) },
      { type: 'raw', blockType: 0x98, body: Buffer.alloc(8) },
    ] }]));
    const bad = Buffer.from(PCAP);
    bad.writeUInt32LE(0x7fffffff, 24 + 16 + segs[0].length + 8);
    const corrupt = write('corrupt.pcap', bad);
    const d = startDaemon(['--pcap', cut, '--pcap', ng, '--pcap', corrupt, '--web.listen-address', LOCAL]);
    try {
      const base = await baseUrl(d);
      await waitFor('the files to be read', 10_000, async () => {
        const res = await fetch(`${base}/readyz`);
        const body = (await res.json()) as { sources: Array<{ done: boolean }> };
        return body.sources.every((s) => s.done) ? true : null;
      });
      const s = parseProm(await (await fetch(`${base}/metrics`)).text());
      expect(total(s, 'keepalive_anomalies_total', { kind: 'capture_truncated' })).toBe(1);
      expect(total(s, 'keepalive_anomalies_total', { kind: 'capture_unknown_block' })).toBe(2);
      expect(total(s, 'keepalive_anomalies_total', { kind: 'capture_corrupt' })).toBe(1);
    } finally {
      d.kill('SIGTERM');
      await d.exited;
    }
  });
});
