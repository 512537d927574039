/**
 * `keepalive-exporter analyze` as a user meets it: the built CLI, spawned on the real-server
 * fixture (whose manifest says what every connection must be) and on files written here.
 * The CLI is compiled from the current sources into a temporary directory first, so the test
 * never runs a stale dist/.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { createWriteStream, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { buildCli } from '../helpers/cli.js';
import { percent } from '../../src/report/format.js';
import { LINKTYPE, frame, pcapFile, pcapngFile, tcpSegment, udpDatagram } from '../helpers/packets.js';

const ROOT = join(import.meta.dirname, '../..');
const FIXTURE = join(ROOT, 'test/fixtures/real/real-servers.pcap');
const MANIFEST: Array<{ server: string; client: string; expectedReason: string; expectedClosedBy: string; expectedRequests: number }> =
  JSON.parse(readFileSync(join(ROOT, 'test/fixtures/real/manifest.json'), 'utf8'));

let dir = '';
let MAIN = '';

beforeAll(() => {
  ({ dir, main: MAIN } = buildCli('ka-cli-'));
  mkdirSync(join(dir, 'files'));
});

afterAll(() => {
  if (dir) rmSync(dir, { recursive: true, force: true });
});

interface Result {
  status: number | null;
  stdout: string;
  stderr: string;
}

function cli(args: string[], input?: Buffer): Result {
  const r = spawnSync(process.execPath, [MAIN, ...args], { input, maxBuffer: 64 * 1024 * 1024, env: { ...process.env, KEEPALIVE_EXPORTER_DEBUG: '' } });
  return { status: r.status, stdout: r.stdout.toString('utf8'), stderr: r.stderr.toString('utf8') };
}

function file(name: string, content: Buffer | string): string {
  const p = join(dir, 'files', name);
  writeFileSync(p, content);
  return p;
}

/** A user error: exactly one line on stderr, nothing on stdout, exit 2, no stack trace. */
function expectOneLineError(r: Result, ...mustContain: string[]): void {
  expect(r.status).toBe(2);
  expect(r.stdout).toBe('');
  expect(r.stderr.endsWith('\n')).toBe(true);
  expect(r.stderr.trimEnd().split('\n')).toHaveLength(1);
  expect(r.stderr).toMatch(/^keepalive-exporter: /);
  expect(r.stderr).not.toMatch(/\n\s+at /);
  for (const s of mustContain) expect(r.stderr).toContain(s);
}

function json(args: string[], input?: Buffer): Record<string, any> {
  const r = cli(['analyze', ...args, '--json'], input);
  expect(r.stderr).toBe('');
  expect(r.status).toBe(0);
  return JSON.parse(r.stdout);
}

/** Offsets where the records of a classic pcap start (and where the file ends). */
function pcapRecordStarts(buf: Buffer): number[] {
  const le = buf.readUInt32LE(0) === 0xa1b2c3d4 || buf.readUInt32LE(0) === 0xa1b23c4d;
  const out: number[] = [];
  let p = 24;
  while (p + 16 <= buf.length) {
    out.push(p);
    p += 16 + (le ? buf.readUInt32LE(p + 8) : buf.readUInt32BE(p + 8));
  }
  out.push(p);
  return out;
}

const OPTIONS = ['--json', '--format', '--html', '--connections', '--server', '--client', '--ports', '--tls-keylog', '--names', '--client-groups', '--top', '--max-flows', '--no-progress', '--help'];

describe('usage', () => {
  it('--help exits 0 and lists every option', () => {
    for (const args of [['--help'], ['analyze', '--help'], ['analyze', '-h']]) {
      const r = cli(args);
      expect(r.status, args.join(' ')).toBe(0);
      expect(r.stderr).toBe('');
      // The top-level help also lists the daemon's options; analyze's own are all there either way.
      const analyzeHelp = args[0] === 'analyze' ? r.stdout : r.stdout.slice(r.stdout.indexOf('Options for analyze:'));
      const listed = [...analyzeHelp.matchAll(/^ {2}(?:-\w, )?(--[a-z-]+)/gm)].map((m) => m[1]);
      expect(listed.sort(), args.join(' ')).toEqual([...OPTIONS].sort());
      expect(r.stdout).toMatch(/Usage:\s+keepalive-exporter (\[run\] \[options\]|analyze FILE)/);
      expect(r.stdout).toContain('keepalive-exporter analyze FILE');
    }
  });

  it('--version prints the package version (and the revision, test/cli/conventions.test.ts)', () => {
    const r = cli(['--version']);
    expect(r.status).toBe(0);
    expect(r.stdout.split('\n')[0]).toMatch(new RegExp(`^keepalive-exporter, version ${JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')).version.replace(/\./g, '\\.')} \\(revision: `));
  });

  it('analyze without a file: one line, exit 2', () => {
    expectOneLineError(cli(['analyze']), 'analyze needs a capture file');
  });

  it('an unknown command or flag: one line naming it, exit 2', () => {
    expectOneLineError(cli(['analyse', FIXTURE]), '"analyse"');
    expectOneLineError(cli(['analyze', FIXTURE, '--bogus-flag']), 'unknown flag --bogus-flag: see keepalive-exporter analyze --help');
    expectOneLineError(cli(['analyze', '--jsonn', FIXTURE]), 'unknown flag --jsonn: see keepalive-exporter analyze --help');
  });

  it('two files: one line, exit 2', () => {
    expectOneLineError(cli(['analyze', FIXTURE, FIXTURE]), 'one capture file');
  });

  it('--format that is not text, json or ndjson is a usage error naming --format', () => {
    expectOneLineError(cli(['analyze', FIXTURE, '--format', 'csv']), '--format');
  });

  it('--ports that are not ports are usage errors naming --ports', () => {
    for (const bad of ['abc', '70000', '0', '80,x', '', '8o']) {
      expectOneLineError(cli(['analyze', FIXTURE, '--ports', bad]), '--ports');
    }
  });

  it('--top and --max-flows need positive integers', () => {
    expectOneLineError(cli(['analyze', FIXTURE, '--top', '0']), '--top');
    expectOneLineError(cli(['analyze', FIXTURE, '--max-flows', 'lots']), '--max-flows');
  });
});

describe('inputs that are not a readable capture', () => {
  it('a missing file: one line "no such file", exit 2', () => {
    expectOneLineError(cli(['analyze', join(dir, 'files/nope.pcap')]), 'no such file', 'nope.pcap');
  });

  it('a directory: one line, exit 2', () => {
    expectOneLineError(cli(['analyze', dir]), 'is a directory');
  });

  it('a text file: one line "not a pcap or pcapng file" with its magic number, exit 2, no report', () => {
    const p = file('notes.txt', 'hello, this is not a capture\n');
    expectOneLineError(cli(['analyze', p]), 'not a pcap or pcapng file', '0x68656c6c');
    expectOneLineError(cli(['analyze', p, '--json']), 'not a pcap or pcapng file');
  });

  it('a gzip-compressed text file and an empty file: one line, exit 2', () => {
    expectOneLineError(cli(['analyze', file('notes.txt.gz', gzipSync('hello, this is not a capture\n'))]), 'not a pcap or pcapng file');
    expectOneLineError(cli(['analyze', file('empty.pcap', '')]), 'empty');
  });

  it('a truncated capture: the report is still printed, exit 1, stderr names the byte offset', () => {
    const buf = readFileSync(FIXTURE);
    const starts = pcapRecordStarts(buf);
    const cut = starts[400] + 30; // inside record 400
    const p = file('truncated.pcap', buf.subarray(0, cut));
    const text = cli(['analyze', p]);
    expect(text.status).toBe(1);
    expect(text.stdout).toContain('Totals');
    expect(text.stderr.trimEnd().split('\n')).toHaveLength(1);
    expect(text.stderr).toContain(`byte offset ${starts[400]}`);
    const j = cli(['analyze', p, '--json']);
    expect(j.status).toBe(1);
    const out = JSON.parse(j.stdout);
    expect(out.capture).toMatchObject({ complete: false, packets: 400, problem: { kind: 'truncated', offset: starts[400] } });
    expect(out.totals.connections).toBeGreaterThan(0);
  });
});

describe('--json on the real-server capture', () => {
  let out: Record<string, any>;
  beforeAll(() => {
    out = json([FIXTURE]);
  });

  it('has exactly the documented keys', () => {
    expect(Object.keys(out).sort()).toEqual(['capture', 'clients', 'clientsGrouped', 'file', 'requestsPerConnection', 'servers', 'stats', 'totals', 'warnings']);
    expect(Object.keys(out.totals).sort()).toEqual(
      ['closeReasons', 'connections', 'handshakeTimeSavedSeconds', 'handshakesSaved', 'protocols', 'requests', 'reuseRatio', 'reusedRequests', 'tls'],
    );
    expect(Object.keys(out.capture).sort()).toEqual(['complete', 'compressed', 'firstPacketTime', 'format', 'lastPacketTime', 'packets', 'problem']);
    expect(Object.keys(out.requestsPerConnection)).toEqual(['0', '1', '2', '3-4', '5-9', '10-99', '100-999', '1000+']);
    // stats is documented as a list that may grow: these must be there.
    expect(Object.keys(out.stats)).toEqual(expect.arrayContaining(['anomalies', 'flowsCreated', 'flowsEvicted', 'gapBytes', 'gaps', 'nonHttpFlows', 'retransmissions', 'tcpPackets']));
    expect(Object.keys(out.stats.nonHttpFlows).sort()).toEqual(['http2', 'other', 'tls']);
    for (const s of out.servers) {
      expect(Object.keys(s).sort()).toEqual([
        'advertisedMaxRequests', 'advertisedTimeoutSeconds', 'clientIdleTimeoutBelowSeconds', 'closeReasons', 'connections', 'handshakeTimeSavedSeconds', 'handshakesSaved',
        'idleCloseVsAdvertisedSeconds', 'inferredMaxRequests', 'medianHandshakeRttSeconds', 'name', 'observedClientIdleSeconds', 'observedIdleTimeoutSamples',
        'observedIdleTimeoutSeconds', 'protocols', 'requests', 'reuseRatio', 'reusedRequests', 'server', 'tls', 'whatIf',
      ]);
    }
    for (const c of out.clients) {
      expect(Object.keys(c).sort()).toEqual([
        'client', 'closeReasons', 'connections', 'medianIdleBeforeOwnCloseSeconds', 'requests', 'reuseRatio', 'reusedRequests', 'topCloseReason', 'topCloseReasonConnections',
      ]);
    }
  });

  it('totals agree with the manifest of the capture', () => {
    const reasons: Record<string, number> = {};
    for (const e of MANIFEST) reasons[e.expectedReason] = (reasons[e.expectedReason] ?? 0) + 1;
    const requests = MANIFEST.reduce((a, e) => a + e.expectedRequests, 0);
    expect(out.capture).toMatchObject({ format: 'pcap', compressed: false, complete: true, problem: null });
    expect(out.totals.connections).toBe(MANIFEST.length);
    expect(out.totals.requests).toBe(requests);
    expect(out.totals.closeReasons).toEqual(reasons);
    // Every request after the first of its connection was reused.
    const reused = MANIFEST.reduce((a, e) => a + Math.max(0, e.expectedRequests - 1), 0);
    expect(out.totals.reusedRequests).toBe(reused);
    expect(out.totals.handshakesSaved).toBe(reused);
    // Rounded down to 4 places: never 1 unless every request was reused.
    expect(out.totals.reuseRatio).toBe(Math.floor((reused / requests) * 1e4 + 1e-9) / 1e4);
    expect(out.totals.handshakeTimeSavedSeconds).toBeGreaterThan(0);
    const dist = Object.values(out.requestsPerConnection) as number[];
    expect(dist.reduce((a, b) => a + b, 0)).toBe(MANIFEST.length);
    expect(out.requestsPerConnection['0']).toBe(MANIFEST.filter((e) => e.expectedRequests === 0).length);
  });

  it('servers: Apache announces its limit, nginx\'s is inferred, IPv6 written "[addr]:port"', () => {
    const by = Object.fromEntries(out.servers.map((s: any) => [s.server, s]));
    expect(Object.keys(by).sort()).toEqual(['127.0.0.1:18080', '127.0.0.1:18081', '[::1]:18081']);
    expect(by['127.0.0.1:18080']).toMatchObject({ advertisedTimeoutSeconds: 2, advertisedMaxRequests: 3, inferredMaxRequests: null });
    expect(by['127.0.0.1:18081']).toMatchObject({ advertisedTimeoutSeconds: 2, advertisedMaxRequests: null, inferredMaxRequests: 3 });
    expect(by['[::1]:18081']).toMatchObject({ advertisedTimeoutSeconds: 2, advertisedMaxRequests: null, inferredMaxRequests: 3 });
    for (const s of out.servers) {
      expect(s.connections, s.server).toBe(MANIFEST.filter((e) => e.server === s.server).length);
      expect(s.requests, s.server).toBe(MANIFEST.filter((e) => e.server === s.server).reduce((a, e) => a + e.expectedRequests, 0));
    }
    // Busiest first.
    const reqs = out.servers.map((s: any) => s.requests);
    expect(reqs).toEqual([...reqs].sort((a, b) => b - a));
  });

  it('--connections adds every connection with exactly the documented fields, as the manifest says', () => {
    const withConns = json([FIXTURE, '--connections']);
    const conns: any[] = withConns.connections;
    expect(conns).toHaveLength(MANIFEST.length);
    for (const c of conns) {
      expect(Object.keys(c).sort()).toEqual([
        'client', 'closeReason', 'closedAt', 'closedBy', 'h2', 'handshakeRttSeconds', 'idleBeforeCloseSeconds', 'openedAt', 'protocol', 'requests', 'requestsEstimated', 'reusedRequests', 'server', 'tls',
      ]);
    }
    const got = new Map(conns.map((c) => [`${c.client}>${c.server}`, c]));
    for (const e of MANIFEST) {
      const c = got.get(`${e.client}>${e.server}`);
      expect(c, `${e.client}>${e.server}`).toMatchObject({ closeReason: e.expectedReason, closedBy: e.expectedClosedBy, requests: e.expectedRequests });
      expect(c.closedAt).toBeGreaterThanOrEqual(c.openedAt);
    }
    expect(conns.some((c) => /^\[::1\]:\d+$/.test(c.client) && c.server === '[::1]:18081')).toBe(true);
    // In order of opening.
    const opened = conns.map((c) => c.openedAt);
    expect(opened).toEqual([...opened].sort((a, b) => a - b));
    // Everything else is the same as without --connections.
    delete withConns.connections;
    expect(withConns).toEqual(out);
  });

  it('--ports 18081 keeps only nginx', () => {
    const n = json([FIXTURE, '--ports', '18081']);
    expect(n.servers.map((s: any) => s.server).sort()).toEqual(['127.0.0.1:18081', '[::1]:18081']);
    expect(n.totals.connections).toBe(MANIFEST.filter((e) => e.server.endsWith(':18081')).length);
    const both = json([FIXTURE, '--ports', '18080, 18081']);
    expect(both.totals).toEqual(out.totals);
  });

  it('stdin (-) gives the same JSON as the path', () => {
    const piped = json(['-'], readFileSync(FIXTURE));
    expect(piped.file).toBe('-');
    expect({ ...piped, file: FIXTURE }).toEqual(out);
  });

  it('a gzip-compressed capture gives the same JSON (compressed: true), from a file or stdin', () => {
    const gz = gzipSync(readFileSync(FIXTURE));
    const p = file('real-servers.pcap.gz', gz);
    const fromFile = json([p]);
    expect(fromFile.capture.compressed).toBe(true);
    expect({ ...fromFile, file: FIXTURE, capture: { ...fromFile.capture, compressed: false } }).toEqual(out);
    const fromStdin = json(['-'], gz);
    expect({ ...fromStdin, file: p }).toEqual(fromFile);
  });

  it('the text report has its sections and the same numbers as the JSON', () => {
    const r = cli(['analyze', FIXTURE]);
    expect(r.status).toBe(0);
    expect(r.stderr).toBe('');
    const t = r.stdout;
    for (const title of ['Totals', 'Close reasons', 'Requests per connection', 'Busiest servers']) expect(t).toMatch(new RegExp(`^${title}`, 'm'));
    const num = (n: number) => n.toLocaleString('en-US');
    expect(t).toMatch(new RegExp(`^ +connections +${num(out.totals.connections)}$`, 'm'));
    expect(t).toMatch(new RegExp(`^ +requests +${num(out.totals.requests)}$`, 'm'));
    expect(t).toMatch(new RegExp(`^ +reused requests +${num(out.totals.reusedRequests)} +\\(reuse ratio ${percent(out.totals.reusedRequests / out.totals.requests)}\\)`, 'm'));
    expect(t).toMatch(new RegExp(`^ +handshakes saved +${num(out.totals.handshakesSaved)}$`, 'm'));
    for (const [reason, n] of Object.entries(out.totals.closeReasons)) {
      expect(t, reason).toMatch(new RegExp(`^ +${reason} +${num(n as number)} +${percent((n as number) / out.totals.connections)}`, 'm'));
    }
    for (const [bucket, n] of Object.entries(out.requestsPerConnection)) {
      if (n) expect(t, bucket).toMatch(new RegExp(`^ +${bucket.replace('+', '\\+')} +${num(n as number)} `, 'm'));
    }
    for (const s of out.servers) {
      const esc = s.server.replace(/[[\]().]/g, '\\$&');
      expect(t, s.server).toMatch(new RegExp(`^ +${esc} +${num(s.connections)} +${num(s.requests)} +${percent(s.reusedRequests / s.requests)}`, 'm'));
    }
  });

  it('--top limits the servers of the text report', () => {
    const r = cli(['analyze', FIXTURE, '--top', '1']);
    expect(r.status).toBe(0);
    const section = r.stdout.slice(r.stdout.indexOf('Busiest servers'));
    const table = section.slice(0, section.indexOf('\n\n'));
    expect(table).toMatch(/^Busiest servers \(top 1 of 3\)$/m);
    expect(table).toContain(out.servers[0].server);
    expect(table).not.toContain(out.servers[1].server);
    expect(table).not.toContain(out.servers[2].server);
  });
});

describe('progress', () => {
  /** Runs analyze on a FIFO fed slowly (about 1.5 s), so a progress line would have time to show. */
  async function slowRun(cmd: string, args: string[], name: string): Promise<{ status: number | null; stdout: string; stderr: string }> {
    const fifo = join(dir, 'files', name);
    execFileSync('mkfifo', [fifo]);
    const child = spawn(cmd, args.map((a) => a.replace('FIFO', fifo)), { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    const data = readFileSync(FIXTURE);
    const w = createWriteStream(fifo);
    const parts = 15;
    const step = Math.ceil(data.length / parts);
    for (let i = 0; i < parts; i++) {
      await new Promise<void>((res) => w.write(data.subarray(i * step, (i + 1) * step), () => res()));
      await new Promise((res) => setTimeout(res, 100));
    }
    await new Promise<void>((res) => w.end(() => res()));
    const status = await new Promise<number | null>((res) => child.on('close', (code) => res(code)));
    return { status, stdout, stderr };
  }

  it('is not printed when stderr is not a terminal', async () => {
    const r = await slowRun(process.execPath, [MAIN, 'analyze', 'FIFO', '--json'], 'pipe.pcap');
    expect(r.status).toBe(0);
    expect(r.stderr).toBe('');
    expect(JSON.parse(r.stdout).totals.connections).toBe(MANIFEST.length);
  });

  const haveScript = spawnSync('sh', ['-c', 'command -v script']).status === 0;
  it.runIf(haveScript)('is printed on a terminal (control), and not with --no-progress', async () => {
    const onTty = await slowRun('script', ['-qefc', `${process.execPath} ${MAIN} analyze FIFO`, '/dev/null'], 'tty.pcap');
    expect(onTty.status).toBe(0);
    expect(onTty.stdout).toMatch(/MiB read, [\d,]+ packets/);
    const quiet = await slowRun('script', ['-qefc', `${process.execPath} ${MAIN} analyze FIFO --no-progress`, '/dev/null'], 'tty-quiet.pcap');
    expect(quiet.status).toBe(0);
    expect(quiet.stdout).toContain('Totals');
    expect(quiet.stdout).not.toContain('MiB read');
  });
});

// ---------------------------------------------------------------------------------------------
// Issue 11: Ctrl-C on a pipe, files too short for a header, capture anomalies counted.

/** `count` UDP records (not HTTP: counted as not_tcp, they change no total) as pcap records without a file header. */
function udpRecords(count: number, ts: number): Buffer {
  const data = frame(LINKTYPE.ETHERNET, udpDatagram({ src: '10.9.0.1', dst: '10.9.0.2', sport: 5353, dport: 5353, payload: Buffer.alloc(1000, 0x55) }));
  return pcapFile(Array.from({ length: count }, () => ({ ts, data })), { linkType: LINKTYPE.ETHERNET }).subarray(24);
}

describe('Ctrl-C on analyze - (tcpdump ... | keepalive-exporter analyze -)', () => {
  /**
   * The fixture, then enough UDP records that once the pipe took all of it the fixture itself
   * was read by the child (a pipe holds 64 KiB, the child's stream buffer some more); the pipe
   * stays open, as tcpdump's would, and SIGINT ends the read.
   */
  async function interrupted(args: string[]): Promise<{ status: number | null; signal: NodeJS.Signals | null; stdout: string; stderr: string }> {
    const child = spawn(process.execPath, [MAIN, 'analyze', '-', ...args], { stdio: ['pipe', 'pipe', 'pipe'], env: { ...process.env, KEEPALIVE_EXPORTER_DEBUG: '' } });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => { stdout += d.toString('utf8'); });
    child.stderr.on('data', (d: Buffer) => { stderr += d.toString('utf8'); });
    const closed = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((res) => child.on('close', (code, signal) => res({ code, signal })));
    const killer = setTimeout(() => child.kill('SIGKILL'), 20_000);
    try {
      const fixture = readFileSync(FIXTURE);
      await new Promise<void>((res, rej) => child.stdin.write(fixture, (e) => (e ? rej(e) : res())));
      await new Promise<void>((res, rej) => child.stdin.write(udpRecords(512, 1795677031.677783), (e) => (e ? rej(e) : res())));
      expect(child.exitCode).toBeNull(); // still reading: the pipe is open
      child.kill('SIGINT');
      const { code, signal } = await closed;
      return { status: code, signal, stdout, stderr };
    } finally {
      clearTimeout(killer);
      child.stdin.destroy();
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    }
  }

  it('--json: the report on the packets read, exit 0, complete false', async () => {
    const whole = json([FIXTURE]);
    const r = await interrupted(['--json']);
    expect(r.signal).toBeNull();
    expect(r.status, r.stderr).toBe(0);
    const out = JSON.parse(r.stdout);
    expect(out.capture.packets).toBeGreaterThanOrEqual(whole.capture.packets);
    expect(out.capture.packets).toBeLessThanOrEqual(whole.capture.packets + 512);
    expect(out.capture).toMatchObject({ format: 'pcap', complete: false, problem: null });
    // Every packet of the fixture was read: the same connections and requests as the whole file.
    expect(out.totals).toEqual(whole.totals);
    expect(out.totals.connections).toBe(MANIFEST.length);
    expect(r.stderr).toBe(`keepalive-exporter: interrupted: the report covers the ${out.capture.packets} packets read\n`);
  }, 30_000);

  it('what the writer flushes as the same Ctrl-C stops it (tcpdump -w - writes its buffer at exit) is read', async () => {
    // The fixture's first 400 records before SIGINT, the rest after it, then the pipe ends: as
    // tcpdump does on Ctrl-C. The rest comes 100 ms after the signal, well inside the 1 s the
    // read goes on after it (a bound of the failure, not a timing measured).
    const buf = readFileSync(FIXTURE);
    const cut = pcapRecordStarts(buf)[400];
    const child = spawn(process.execPath, [MAIN, 'analyze', '-', '--json'], { stdio: ['pipe', 'pipe', 'pipe'], env: { ...process.env, KEEPALIVE_EXPORTER_DEBUG: '' } });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => { stdout += d.toString('utf8'); });
    child.stderr.on('data', (d: Buffer) => { stderr += d.toString('utf8'); });
    const closed = new Promise<number | null>((res) => child.on('close', (code) => res(code)));
    const killer = setTimeout(() => child.kill('SIGKILL'), 20_000);
    try {
      await new Promise<void>((res, rej) => child.stdin.write(buf.subarray(0, cut), (e) => (e ? rej(e) : res())));
      await new Promise((r) => setTimeout(r, 300)); // let it read them (not asserted: the total is)
      child.kill('SIGINT');
      await new Promise((r) => setTimeout(r, 100));
      await new Promise<void>((res) => child.stdin.end(buf.subarray(cut), () => res()));
      expect(await closed, stderr).toBe(0);
    } finally {
      clearTimeout(killer);
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    }
    const out = JSON.parse(stdout);
    expect(out.capture).toMatchObject({ packets: 752, complete: true, problem: null });
    expect(out.totals.connections).toBe(MANIFEST.length);
  }, 30_000);

  it('a second Ctrl-C exits at once: status 130, no report', async () => {
    const child = spawn(process.execPath, [MAIN, 'analyze', '-', '--json'], { stdio: ['pipe', 'pipe', 'pipe'], env: { ...process.env, KEEPALIVE_EXPORTER_DEBUG: '' } });
    let stdout = '';
    child.stdout.on('data', (d: Buffer) => { stdout += d.toString('utf8'); });
    child.stderr.resume();
    const closed = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((res) => child.on('close', (code, signal) => res({ code, signal })));
    const killer = setTimeout(() => child.kill('SIGKILL'), 20_000);
    try {
      // The pipe stays open and the first SIGINT starts the 1 s grace of a pipe: the second comes inside it.
      await new Promise<void>((res, rej) => child.stdin.write(readFileSync(FIXTURE), (e) => (e ? rej(e) : res())));
      await new Promise((r) => setTimeout(r, 300));
      child.kill('SIGINT');
      await new Promise((r) => setTimeout(r, 100));
      child.kill('SIGINT');
      expect(await closed).toEqual({ code: 130, signal: null });
      expect(stdout).toBe('');
    } finally {
      clearTimeout(killer);
      child.stdin.destroy();
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    }
  }, 30_000);

  it('text: the report is printed, exit 0', async () => {
    const r = await interrupted([]);
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout).toContain('Totals');
    expect(r.stdout).toMatch(new RegExp(`connections\\s+${MANIFEST.length}\\b`));
  }, 30_000);
});

describe('a file too short for its header, or with an unknown magic: not a capture, exit 2', () => {
  it('a few bytes of a pcap header: one line naming the bytes in hex and the header size', () => {
    const head = pcapFile([], { linkType: 1 }).subarray(0, 10);
    expectOneLineError(cli(['analyze', file('short.pcap', head)]), 'not a pcap or pcapng file', 'only 10 bytes', `0x${head.toString('hex')}`, '24 bytes');
    expectOneLineError(cli(['analyze', file('short.pcap', head), '--json']), 'only 10 bytes');
    expectOneLineError(cli(['analyze', '-'], head), 'only 10 bytes');
  });

  it('two bytes of a pcap magic number, and a cut pcapng section header', () => {
    expectOneLineError(cli(['analyze', file('two.pcap', Buffer.from('d4c3', 'hex'))]), 'only 2 bytes', '0xd4c3');
    const ng = pcapngFile([{ interfaces: [], blocks: [] }]).subarray(0, 8);
    expectOneLineError(cli(['analyze', file('short.pcapng', ng)]), 'only 8 bytes', `0x${ng.toString('hex')}`, 'section header');
  });

  it('an unknown magic number: named in hex', () => {
    expectOneLineError(cli(['analyze', file('beef.pcap', Buffer.from('deadbeef00112233445566778899aabbccddeeff0011223344', 'hex'))]), 'not a pcap or pcapng file', '0xdeadbeef');
    expectOneLineError(cli(['analyze', file('three', 'abc')]), '0x616263');
  });
});

describe('capture anomalies are counted (capture_truncated, capture_corrupt, capture_unknown_block)', () => {
  const segs = [0, 1, 2].map((i) => frame(LINKTYPE.ETHERNET, tcpSegment({ src: '10.0.0.1', dst: '10.0.0.2', sport: 40000, dport: 80, seq: 1 + i * 10, ack: 1, flags: 'PA', payload: Buffer.alloc(10, 0x41) })));
  const pcap = pcapFile(segs.map((data, i) => ({ ts: 1700000000 + i, data })), { linkType: LINKTYPE.ETHERNET });

  function analyzeJson(p: string): { status: number | null; out: Record<string, any> } {
    const r = cli(['analyze', p, '--json']);
    return { status: r.status, out: JSON.parse(r.stdout) };
  }

  it('a truncated pcap: stats.anomalies.capture_truncated 1 (exit 1)', () => {
    const { status, out } = analyzeJson(file('cut.pcap', pcap.subarray(0, pcap.length - 5)));
    expect(status).toBe(1);
    expect(out.capture.problem.kind).toBe('truncated');
    expect(out.stats.anomalies.capture_truncated).toBe(1);
    expect(out.stats.anomalies.capture_corrupt).toBeUndefined();
  });

  it('a corrupt record length: stats.anomalies.capture_corrupt 1 (exit 1)', () => {
    const bad = Buffer.from(pcap);
    const second = 24 + 16 + segs[0].length;
    bad.writeUInt32LE(0x7fffffff, second + 8); // captured length of record 2
    const { status, out } = analyzeJson(file('corrupt.pcap', bad));
    expect(status).toBe(1);
    expect(out.capture.packets).toBe(1);
    expect(out.stats.anomalies.capture_corrupt).toBe(1);
    expect(out.stats.anomalies.capture_truncated).toBeUndefined();
  });

  it('a truncated gzip stream counts capture_truncated too', () => {
    const gz = gzipSync(pcap);
    const r = cli(['analyze', file('cut.pcap.gz', gz.subarray(0, gz.length - 12)), '--json']);
    expect(r.status).toBe(1);
    expect(JSON.parse(r.stdout).stats.anomalies.capture_truncated).toBe(1);
  });

  it('two pcapng blocks of an unknown type: capture_unknown_block 2 (exit 0)', () => {
    const ng = pcapngFile([{ interfaces: [{ linkType: LINKTYPE.ETHERNET }], blocks: [
      { type: 'epb', interface: 0, ts: 1, data: segs[0] },
      { type: 'raw', blockType: 0x99, body: Buffer.alloc(8) },
      { type: 'epb', interface: 0, ts: 2, data: segs[1] },
      { type: 'raw', blockType: 0x12345, body: Buffer.alloc(4) },
    ] }]);
    const { status, out } = analyzeJson(file('unknown-blocks.pcapng', ng));
    expect(status).toBe(0);
    expect(out.capture.packets).toBe(2);
    expect(out.stats.anomalies.capture_unknown_block).toBe(2);
  });

  it('a whole capture counts none of them', () => {
    const { status, out } = analyzeJson(file('whole.pcap', pcap));
    expect(status).toBe(0);
    expect(Object.keys(out.stats.anomalies).filter((k) => k.startsWith('capture_'))).toEqual([]);
  });
});
