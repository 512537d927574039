/**
 * The daemon as a user meets it: the built CLI, spawned, every run bounded in time. The CLI is
 * compiled from the current sources into a temporary directory first (with the project's
 * node_modules linked beside it), so the test never runs a stale dist/.
 *
 * Every daemon here listens on 127.0.0.1 port 0 (the OS picks a free port, which the daemon logs)
 * unless the test is about the port.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { execFileSync, spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:net';
import { join } from 'node:path';
import { OPTIONS, envName } from '../../src/config/daemon.js';
import { parseProm, total } from '../helpers/prom.js';
import { Conversation, httpRequest, httpResponse, merge } from '../helpers/conversation.js';
import { LINKTYPE, pcapFile } from '../helpers/packets.js';
import { buildCli } from '../helpers/cli.js';
import { start as startProc, stop as stopProc, tail as tailProc, waitFor as pollFor, type Proc } from '../helpers/procs.js';

const ROOT = join(import.meta.dirname, '../..');
const FIXTURE = join(ROOT, 'test/fixtures/real/real-servers.pcap');
const LOCAL = '127.0.0.1:0';

let dir = '';
let MAIN = '';

beforeAll(() => {
  ({ dir, main: MAIN } = buildCli('ka-daemon-'));
}, 120_000);

afterAll(() => {
  if (dir) rmSync(dir, { recursive: true, force: true });
});

const ENV: NodeJS.ProcessEnv = { ...process.env, KEEPALIVE_EXPORTER_DEBUG: '' };
for (const o of OPTIONS) delete ENV[envName(o.flag)];

interface Result {
  status: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

/** Runs the CLI to its end; killed (and the test failed) after `ms`. */
function cli(args: string[], ms = 15_000): Result {
  const r = spawnSync(process.execPath, [MAIN, ...args], { env: ENV, timeout: ms, killSignal: 'SIGKILL' });
  if (r.error) throw r.error;
  return { status: r.status, signal: r.signal, stdout: r.stdout.toString('utf8'), stderr: r.stderr.toString('utf8') };
}

/** stderr without the JSON log lines. */
function messages(stderr: string): string[] {
  return stderr.split('\n').filter((l) => l.length > 0 && !l.startsWith('{"level"'));
}

/** A user error: one line on stderr besides the logs, nothing on stdout, exit 2, no stack trace. */
function expectOneLineError(r: Result, ...mustContain: string[]): void {
  expect(r.signal, `killed: ${r.stderr}`).toBeNull();
  expect(r.status, r.stderr).toBe(2);
  expect(r.stdout).toBe('');
  expect(r.stderr.endsWith('\n')).toBe(true);
  const lines = messages(r.stderr);
  expect(lines, r.stderr).toHaveLength(1);
  expect(lines[0]).toMatch(/^keepalive-exporter: /);
  expect(r.stderr).not.toMatch(/\n\s+at /);
  expect(r.stderr).not.toContain('internal error');
  for (const s of mustContain) expect(lines[0]).toContain(s);
}

describe('--help', () => {
  it('lists every option with its environment variable, and the endpoints', () => {
    const r = cli(['--help']);
    expect(r.status).toBe(0);
    expect(r.stderr).toBe('');
    for (const o of OPTIONS) {
      expect(r.stdout, o.flag).toMatch(new RegExp(`--${o.flag.replace(/\./g, '\\.')}\\b`));
      expect(r.stdout, o.flag).toContain(envName(o.flag));
      if (o.def) expect(r.stdout, o.flag).toContain(`[default: ${o.def}]`);
    }
    for (const e of ['/metrics', '/healthz', '/readyz', '/api/connections']) expect(r.stdout).toContain(e);
    expect(r.stdout).toContain('analyze FILE');
  });

  it.each([['-h'], ['run', '--help'], ['--pcap', 'x.pcap', '--help']])('%s prints it too, starting nothing', (...args) => {
    const r = cli(args);
    expect(r.status).toBe(0);
    expect(r.stdout).toContain('KEEPALIVE_EXPORTER_WEB_LISTEN_ADDRESS');
  });
});

describe('start-up errors: one line and exit 2', () => {
  it('tcpdump missing: says how to install it', () => {
    const r = cli(['--tcpdump', '/nonexistent/tcpdump', '--web.listen-address', LOCAL]);
    expectOneLineError(r, 'apt-get install tcpdump', '/nonexistent/tcpdump', '--tcpdump');
  });

  const canCapture = process.getuid?.() === 0 && spawnSync('tcpdump', ['--version']).status === 0;
  it.runIf(canCapture)('no such interface (as root with tcpdump): names it', () => {
    const r = cli(['--interface', 'nosuchif0', '--web.listen-address', LOCAL]);
    expectOneLineError(r, 'nosuchif0', 'tcpdump -D');
  });

  it('an unknown flag', () => {
    expectOneLineError(cli(['--web.listen-adress', LOCAL]), 'unknown flag --web.listen-adress');
  });

  it('a bad value, from the environment', () => {
    const r = spawnSync(process.execPath, [MAIN], { env: { ...ENV, KEEPALIVE_EXPORTER_MAX_SERVERS: 'lots' }, timeout: 15_000 });
    expectOneLineError({ status: r.status, signal: r.signal, stdout: r.stdout.toString(), stderr: r.stderr.toString() }, 'KEEPALIVE_EXPORTER_MAX_SERVERS', '"lots"');
  });

  it('an unknown command', () => {
    expectOneLineError(cli(['serve']), 'unknown command "serve"');
  });

  it('a capture file that does not exist', () => {
    const missing = join(dir, 'missing.pcap');
    expectOneLineError(cli(['--pcap', missing, '--web.listen-address', LOCAL]), missing);
  });

  it('a file that is not a capture', () => {
    const text = join(dir, 'notes.txt');
    writeFileSync(text, 'hello, not a capture\n');
    expectOneLineError(cli(['--pcap', text, '--web.listen-address', LOCAL]), text, 'not a pcap or pcapng file');
    const empty = join(dir, 'empty.pcap');
    writeFileSync(empty, '');
    expectOneLineError(cli(['--pcap', empty, '--web.listen-address', LOCAL]), empty);
  });

  it('the port is in use: says so and names the flag', async () => {
    const blocker: Server = createServer();
    await new Promise<void>((resolve) => blocker.listen(0, '127.0.0.1', resolve));
    const port = (blocker.address() as { port: number }).port;
    try {
      // Run asynchronously: the blocking server lives in this process's event loop.
      const r = await runToEnd(['--pcap', FIXTURE, '--web.listen-address', `127.0.0.1:${port}`], 15_000);
      expectOneLineError(r, `127.0.0.1:${port}`, 'in use', '--web.listen-address');
    } finally {
      blocker.close();
    }
  });
});

// ---------------------------------------------------------------------------------------------
// A running daemon

interface Daemon {
  child: ChildProcess;
  stdout: () => string;
  stderr: () => string;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

function startDaemon(args: string[]): Daemon {
  const child = spawn(process.execPath, [MAIN, ...args], { env: ENV, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  child.stdout!.on('data', (d: Buffer) => { out += d.toString('utf8'); });
  child.stderr!.on('data', (d: Buffer) => { err += d.toString('utf8'); });
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => child.on('close', (code, signal) => resolve({ code, signal })));
  return { child, stdout: () => out, stderr: () => err, exited };
}

async function runToEnd(args: string[], ms: number): Promise<Result> {
  const d = startDaemon(args);
  const timer = setTimeout(() => d.child.kill('SIGKILL'), ms);
  const { code, signal } = await d.exited;
  clearTimeout(timer);
  return { status: code, signal, stdout: d.stdout(), stderr: d.stderr() };
}

/** The base URL the daemon logged once it listened. */
function baseUrl(d: Daemon): Promise<string> {
  return pollFor(`the daemon to listen (stderr: ${d.stderr()})`, 10_000, () => {
    const m = /listening on (http:\/\/[^\s"]+)\/metrics/.exec(d.stderr());
    return m ? m[1] : null;
  });
}

const canCaptureLive = process.getuid?.() === 0 && spawnSync('tcpdump', ['--version']).status === 0;

describe.runIf(canCaptureLive)('live capture (root with tcpdump)', () => {
  it('on lo: ready while tcpdump runs; SIGTERM stops tcpdump and exits 0', async () => {
    const d = startDaemon(['--interface', 'lo', '--ports', '1', '--web.listen-address', LOCAL]);
    try {
      const base = await baseUrl(d);
      const res = await fetch(`${base}/readyz`);
      expect(res.status).toBe(200);
      expect(((await res.json()) as { sources: Array<{ name: string; up: boolean }> }).sources).toEqual([expect.objectContaining({ name: 'live:lo', up: true })]);
      const s = parseProm(await (await fetch(`${base}/metrics`)).text());
      expect(total(s, 'keepalive_source_up', { source: 'live:lo', kind: 'live' })).toBe(1);
      expect(total(s, 'keepalive_capture_dropped_packets_total', { source: 'live:lo', where: 'kernel' })).toBe(0);
      // tcpdump is the daemon's child.
      const children = spawnSync('pgrep', ['-P', String(d.child.pid)]).stdout.toString().trim().split('\n').filter(Boolean).map(Number);
      expect(children.length).toBe(1);
      expect(d.stderr()).toContain('capturing on lo: tcpdump -i lo');
      d.child.kill('SIGTERM');
      const { code } = await d.exited;
      expect(code).toBe(0);
      for (const pid of children) expect(() => process.kill(pid, 0)).toThrow();
    } finally {
      d.child.kill('SIGKILL');
    }
  }, 30_000);
});

describe('serving a capture file', () => {
  it('serves the fixture\'s numbers, keeps serving after the file ended, and exits 0 on SIGTERM', async () => {
    const d = startDaemon(['--pcap', FIXTURE, '--web.listen-address', LOCAL]);
    try {
      const base = await baseUrl(d);
      // The file source is done: ready, and up=0.
      const ready = await pollFor('the file to be read', 10_000, async () => {
        const res = await fetch(`${base}/readyz`);
        const body = (await res.json()) as { sources: Array<{ name: string; done: boolean }> };
        return res.status === 200 && body.sources.every((s) => s.done) ? body : null;
      });
      expect(ready.sources.map((s) => s.name)).toEqual([`file:${FIXTURE}`]);

      const scrape = async () => {
        const res = await fetch(`${base}/metrics`);
        expect(res.status).toBe(200);
        expect(res.headers.get('content-type')).toMatch(/^text\/plain/);
        return parseProm(await res.text());
      };
      const s = await scrape();
      expect(total(s, 'keepalive_connections_opened_total')).toBe(65);
      expect(total(s, 'keepalive_requests_total')).toBe(112);
      expect(total(s, 'keepalive_requests_total', { reused: 'true' })).toBe(51);
      expect(total(s, 'keepalive_handshakes_saved_total')).toBe(51);
      expect(total(s, 'keepalive_connections_closed_total', { reason: 'idle_timeout' })).toBe(20);
      expect(total(s, 'keepalive_connections_closed_total', { reason: 'max_requests' })).toBe(11);
      expect(total(s, 'keepalive_connections_closed_total', { reason: 'race' })).toBe(4);
      expect(total(s, 'keepalive_packets_total', { source: `file:${FIXTURE}` })).toBe(752);
      expect(total(s, 'keepalive_source_up', { source: `file:${FIXTURE}` })).toBe(0);
      expect(total(s, 'keepalive_open_connections')).toBe(0);

      // Still there, unchanged, a while after the file ended.
      await new Promise((r) => setTimeout(r, 1500));
      const again = await scrape();
      expect(total(again, 'keepalive_requests_total')).toBe(112);
      expect(total(again, 'keepalive_connections_opened_total')).toBe(65);
      const om = await fetch(`${base}/metrics`, { headers: { accept: 'application/openmetrics-text; version=1.0.0' } });
      expect((await om.text()).endsWith('# EOF\n')).toBe(true);
      expect((await fetch(`${base}/healthz`)).status).toBe(200);
      expect(d.child.exitCode).toBeNull();

      const t0 = Date.now();
      d.child.kill('SIGTERM');
      const { code, signal } = await d.exited;
      expect({ code, signal }).toEqual({ code: 0, signal: null });
      expect(Date.now() - t0).toBeLessThan(5000);
      // Logs are JSON lines on stderr; stdout stays empty.
      expect(d.stdout()).toBe('');
      const lines = d.stderr().trim().split('\n');
      for (const l of lines) expect(() => JSON.parse(l), l).not.toThrow();
      expect(lines.some((l) => l.includes('stopped on SIGTERM'))).toBe(true);
    } finally {
      d.child.kill('SIGKILL');
    }
  }, 30_000);

  it('SIGINT stops it too, with exit 0', async () => {
    const d = startDaemon(['--pcap', FIXTURE, '--web.listen-address', LOCAL]);
    try {
      const base = await baseUrl(d);
      expect((await fetch(`${base}/healthz`)).status).toBe(200);
      d.child.kill('SIGINT');
      const { code } = await d.exited;
      expect(code).toBe(0);
      expect(d.stderr()).toContain('stopped on SIGINT');
      expect(d.stdout()).toBe('');
    } finally {
      d.child.kill('SIGKILL');
    }
  }, 20_000);

  it('--replay realtime: serves the capture as it plays, and SIGTERM does not wait for the rest', async () => {
    // Two connections a minute apart in capture time.
    const conn = (port: number, t0: number) => new Conversation({ client: `10.0.0.1:${port}`, server: '10.0.0.2:80', t0 })
      .handshake(0.001).clientSends(httpRequest('GET', '/'), 0.001).serverSends(httpResponse(200, 'ok'), 0.001).close('client', 0.001);
    const path = join(dir, 'minute.pcap');
    writeFileSync(path, pcapFile(merge(conn(40001, 1_700_000_000), conn(40002, 1_700_000_060)), { linkType: LINKTYPE.ETHERNET }));
    const d = startDaemon(['--pcap', path, '--replay', 'realtime', '--web.listen-address', LOCAL]);
    try {
      const base = await baseUrl(d);
      const s = await pollFor('the first connection', 10_000, async () => {
        const m = parseProm(await (await fetch(`${base}/metrics`)).text());
        return total(m, 'keepalive_connections_closed_total') === 1 ? m : null;
      });
      expect(total(s, 'keepalive_connections_opened_total')).toBe(1);
      expect(total(s, 'keepalive_source_up', { source: `file:${path}` })).toBe(1);
      // Playing: the source is up, so ready.
      expect((await fetch(`${base}/readyz`)).status).toBe(200);
      const t0 = Date.now();
      d.child.kill('SIGTERM');
      const { code } = await d.exited;
      expect(code).toBe(0);
      // The second connection was 59 s of capture time away: the exit did not wait for it.
      expect(Date.now() - t0).toBeLessThan(5000);
    } finally {
      d.child.kill('SIGKILL');
    }
  }, 30_000);

  it('several files: one source each, all done, sharing the capped server labels', async () => {
    // A copy: the same file twice is refused at start (it would be counted twice).
    const copy = join(dir, 'copy-of-fixture.pcap');
    writeFileSync(copy, readFileSync(FIXTURE));
    const d = startDaemon(['--pcap', FIXTURE, '--pcap', copy, '--web.listen-address', LOCAL, '--max-servers', '2']);
    try {
      const base = await baseUrl(d);
      await pollFor('both files to be read', 10_000, async () => {
        const body = (await (await fetch(`${base}/readyz`)).json()) as { sources: Array<{ done: boolean }> };
        return body.sources.length === 2 && body.sources.every((s) => s.done) ? true : null;
      });
      const s = parseProm(await (await fetch(`${base}/metrics`)).text());
      // The same capture twice: every count doubles; both sources share the capped server labels.
      expect(total(s, 'keepalive_requests_total')).toBe(224);
      expect(new Set(s.filter((x) => x.name === 'keepalive_requests_total').map((x) => x.labels.server)).size).toBe(3);
      d.child.kill('SIGTERM');
      expect((await d.exited).code).toBe(0);
    } finally {
      d.child.kill('SIGKILL');
    }
  }, 30_000);
});

// ---------------------------------------------------------------------------------------------
// Shutdown however it comes: tcpdump dies with a SIGKILLed daemon; SIGTERM ends a daemon whose
// file sources are a silent FIFO or stdin pipe. Processes run in their own group (procs.start)
// and every wait is bounded; the bounds are failure bounds, not timings.

/** State of a process from /proc (S, T, Z...), or null when it is gone. */
function procState(pid: number): string | null {
  try {
    return /^\d+ \(.*\) (\S)/.exec(readFileSync(`/proc/${pid}/stat`, 'utf8'))?.[1] ?? null;
  } catch {
    return null;
  }
}
/** Gone, or a zombie waiting for its reaper: no longer running. */
const ended = (pid: number): boolean => procState(pid) === null || procState(pid) === 'Z';

function childPids(pid: number): number[] {
  try {
    return readdirSync(`/proc/${pid}/task`).flatMap((t) => readFileSync(`/proc/${pid}/task/${t}/children`, 'utf8').trim().split(/\s+/).filter(Boolean).map(Number));
  } catch {
    return [];
  }
}

function logUrl(p: Proc): string | null {
  let text = '';
  try { text = readFileSync(p.log, 'utf8'); } catch { return null; }
  return /listening on (http:\/\/[^\s"]+)\/metrics/.exec(text)?.[1] ?? null;
}

describe('shutdown, however it comes', () => {
  const procs: Proc[] = [];
  const strays: number[] = [];
  afterAll(async () => {
    for (const p of procs) await stopProc(p, 'SIGKILL', 2000);
    for (const pid of strays) if (!ended(pid)) process.kill(pid, 'SIGKILL');
  });

  /** A daemon capturing live on lo, up and ready, and the pid of its one tcpdump. */
  async function liveDaemon(name: string): Promise<{ d: (typeof procs)[number]; tcpdump: number[] }> {
    const d = startProc(name, process.execPath, [MAIN, '--interface', 'lo', '--ports', '1', '--web.listen-address', LOCAL], join(dir, `${name}.log`), ENV);
    procs.push(d);
    const base = await pollFor('the daemon to listen', 15_000, () => logUrl(d));
    await pollFor('the live source up', 15_000, async () => ((await fetch(`${base}/readyz`)).status === 200 ? true : null));
    const tcpdump = childPids(d.child.pid!).filter((c) => /tcpdump/.test(readFileSync(`/proc/${c}/cmdline`, 'utf8')));
    expect(tcpdump, tailProc(d)).toHaveLength(1);
    strays.push(...tcpdump);
    return { d, tcpdump };
  }

  it.runIf(canCaptureLive)('SIGKILL of a daemon capturing live on lo (root) leaves no tcpdump running', async () => {
    const { d, tcpdump } = await liveDaemon('daemon-sigkill');
    // Spawned from the main thread, which lives as long as the daemon: the parent-death signal
    // has not fired while the daemon runs.
    await new Promise((r) => setTimeout(r, 500));
    expect(ended(tcpdump[0])).toBe(false);
    process.kill(d.child.pid!, 'SIGKILL');
    expect((await d.exited).signal).toBe('SIGKILL');
    await pollFor(`tcpdump (pid ${tcpdump[0]}) to die with the daemon`, 5000, () => (ended(tcpdump[0]) ? true : null));
  }, 40_000);

  it('SIGTERM with --pcap FIFO held open by a silent writer: exits 0', async () => {
    const fifo = join(dir, 'silent.fifo');
    execFileSync('mkfifo', [fifo]);
    // Opens the FIFO for writing (blocking until the daemon opens it to read) and writes nothing.
    const writer = startProc('fifo-writer', 'sh', ['-c', 'exec 3>"$1"; sleep 60', 'sh', fifo], join(dir, 'fifo-writer.log'));
    procs.push(writer);
    const d = startProc('daemon-fifo', process.execPath, [MAIN, '--pcap', fifo, '--web.listen-address', LOCAL], join(dir, 'fifo.log'), ENV);
    procs.push(d);
    const base = await pollFor('the daemon to listen', 15_000, () => logUrl(d));
    expect((await fetch(`${base}/healthz`)).status).toBe(200);
    // The writer holds the FIFO open: the read is under way (the writer's open returned).
    await pollFor('the writer to hold the FIFO open', 10_000, () => (readdirSync(`/proc/${writer.child.pid}/fd`).includes('3') ? true : null));
    const r = await stopProc(d, 'SIGTERM', 10_000);
    expect({ code: r.code, killed: r.killed }, tailProc(d)).toEqual({ code: 0, killed: false });
    expect(readFileSync(d.log, 'utf8')).toContain('stopped on SIGTERM');
  }, 40_000);

  it('SIGTERM with --pcap FIFO that no writer opened yet: exits 0', async () => {
    const fifo = join(dir, 'no-writer.fifo');
    execFileSync('mkfifo', [fifo]);
    const d = startProc('daemon-no-writer', process.execPath, [MAIN, '--pcap', fifo, '--web.listen-address', LOCAL], join(dir, 'no-writer.log'), ENV);
    procs.push(d);
    const base = await pollFor('the daemon to listen', 15_000, () => logUrl(d));
    // Still waiting for a writer: the file source is neither done nor failed.
    const ready = (await (await fetch(`${base}/readyz`)).json()) as { sources: Array<{ done: boolean }> };
    expect(ready.sources).toEqual([expect.objectContaining({ done: false })]);
    const r = await stopProc(d, 'SIGTERM', 10_000);
    expect({ code: r.code, killed: r.killed }, tailProc(d)).toEqual({ code: 0, killed: false });
    expect(readFileSync(d.log, 'utf8')).toContain('stopped on SIGTERM');
  }, 40_000);

  it.runIf(canCaptureLive)('a second SIGTERM while stopping (tcpdump SIGSTOPped, so its stop waits) exits at once with 1, and tcpdump dies with it', async () => {
    const { d, tcpdump } = await liveDaemon('daemon-twice');
    // A stopped tcpdump holds the SIGINT of the stop until the daemon's SIGKILL 2 s later.
    process.kill(tcpdump[0], 'SIGSTOP');
    process.kill(d.child.pid!, 'SIGTERM');
    await pollFor('the stop to begin', 10_000, () => (readFileSync(d.log, 'utf8').includes('stopping on SIGTERM') ? true : null), 20);
    const r = await stopProc(d, 'SIGTERM', 10_000);
    expect({ code: r.code, killed: r.killed }, tailProc(d)).toEqual({ code: 1, killed: false });
    expect(readFileSync(d.log, 'utf8')).toContain('SIGTERM while stopping: exiting now, without waiting for tcpdump (live:lo)');
    await pollFor(`tcpdump (pid ${tcpdump[0]}) to die with the daemon`, 5000, () => (ended(tcpdump[0]) ? true : null));
  }, 40_000);

  it('SIGTERM with --pcap - and stdin a pipe held open by a silent writer: exits 0', async () => {
    // The test holds the write end of the daemon's stdin open and writes nothing.
    const child = spawn(process.execPath, [MAIN, '--pcap', '-', '--web.listen-address', LOCAL], { env: ENV, stdio: ['pipe', 'ignore', 'pipe'], detached: true });
    let err = '';
    child.stderr!.on('data', (b: Buffer) => { err += b.toString('utf8'); });
    const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => child.on('exit', (code, signal) => resolve({ code, signal })));
    try {
      const base = await pollFor('the daemon to listen', 15_000, () => /listening on (http:\/\/[^\s"]+)\/metrics/.exec(err)?.[1] ?? null);
      expect((await fetch(`${base}/healthz`)).status).toBe(200);
      child.kill('SIGTERM');
      const bound = new Promise<'still running'>((r) => setTimeout(() => r('still running'), 10_000).unref());
      expect(await Promise.race([exited, bound]), err).toEqual({ code: 0, signal: null });
      expect(err).toContain('stopped on SIGTERM');
    } finally {
      if (child.exitCode === null && child.signalCode === null) process.kill(-child.pid!, 'SIGKILL');
      child.stdin!.destroy();
    }
  }, 40_000);
});
