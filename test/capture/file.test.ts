import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { spawn, spawnSync } from 'node:child_process';
import { chmodSync, cpSync, existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { Readable } from 'node:stream';
import { gzipSync } from 'node:zlib';
import { CaptureOpenError, readCapture, readCaptureStream } from '../../src/capture/file.js';
import { LINKTYPE, collect, frame, pcapFile, pcapngFile, tcpSegment } from '../helpers/packets.js';
import { buildCli } from '../helpers/cli.js';

const ROOT = resolve(import.meta.dirname, '../..');
let dir: string;

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'kae-capture-file-'));
});
afterAll(() => {
  rmSync(dir, { recursive: true, force: true });
});

function write(name: string, data: Buffer | string): string {
  const p = join(dir, name);
  writeFileSync(p, data);
  return p;
}

/** Deterministic bytes that gzip cannot shrink much, so a cut gzip stream has delivered some packets. */
function noise(n: number, seed: number): Buffer {
  const b = Buffer.alloc(n);
  let x = seed;
  for (let i = 0; i < n; i++) {
    x = (x * 1103515245 + 12345) & 0x7fffffff;
    b[i] = x >>> 16;
  }
  return b;
}

/** A pcap of `count` Ethernet/IPv4 HTTP-ish segments with incompressible payloads. */
function capture(count: number, payloadBytes = 200): { file: Buffer; frames: Buffer[] } {
  const frames: Buffer[] = [];
  for (let i = 0; i < count; i++) {
    const ip = tcpSegment({ src: '10.0.0.1', dst: '10.0.0.2', sport: 40000, dport: 80, seq: 1 + i * payloadBytes, ack: 1, flags: 'PA', payload: noise(payloadBytes, i + 1) });
    frames.push(frame(LINKTYPE.ETHERNET, ip));
  }
  const file = pcapFile(frames.map((data, i) => ({ ts: 1700000000 + i / 1000, data })), { linkType: LINKTYPE.ETHERNET });
  return { file, frames };
}

const SMALL = capture(3);

describe('readCapture', () => {
  it('reads a plain pcap file', async () => {
    const sink = collect();
    const summary = await readCapture(write('plain.pcap', SMALL.file), sink);
    expect(summary).toEqual({
      format: 'pcap', compressed: false, packets: 3, snaplenCut: 0, unknownBlocks: 0, bytes: SMALL.file.length, problem: null,
    });
    expect(sink.packets.map((p) => p.bytes)).toEqual(SMALL.frames);
  });

  it('reads a plain pcapng file', async () => {
    const file = pcapngFile([{ interfaces: [{ linkType: 1 }], blocks: SMALL.frames.map((data, i) => ({ type: 'epb' as const, interface: 0, ts: i, data })) }]);
    const sink = collect();
    const summary = await readCapture(write('plain.pcapng', file), sink);
    expect(summary).toMatchObject({ format: 'pcapng', compressed: false, packets: 3, problem: null });
    expect(sink.packets.map((p) => p.ts)).toEqual([0, 1, 2]);
  });

  it('decompresses a .pcap.gz file', async () => {
    const sink = collect();
    const summary = await readCapture(write('small.pcap.gz', gzipSync(SMALL.file)), sink);
    expect(summary).toMatchObject({ format: 'pcap', compressed: true, packets: 3, bytes: SMALL.file.length, problem: null });
    expect(sink.packets.map((p) => p.bytes)).toEqual(SMALL.frames);
  });

  it('recognises gzip by its magic number, not the file name', async () => {
    const gz = await readCapture(write('looks-plain.pcap', gzipSync(SMALL.file)), collect());
    expect(gz).toMatchObject({ compressed: true, packets: 3, problem: null });
    const plain = await readCapture(write('looks-compressed.pcap.gz', SMALL.file), collect());
    expect(plain).toMatchObject({ compressed: false, packets: 3, problem: null });
  });

  it('reads a large plain capture spanning many reads, records straddling every read boundary intact', async () => {
    const big = capture(12000, 200); // ~3 MB: several 1 MiB reads
    const sink = collect();
    const summary = await readCapture(write('big.pcap', big.file), sink);
    expect(summary).toMatchObject({ compressed: false, packets: 12000, bytes: big.file.length, problem: null });
    for (let i = 0; i < big.frames.length; i++) {
      if (!sink.packets[i].bytes.equals(big.frames[i])) expect.fail(`packet ${i} differs`);
    }
  });

  it('reads a large gzip capture spanning many chunks', async () => {
    const big = capture(12000, 200); // ~3 MB decompressed
    const sink = collect();
    const summary = await readCapture(write('big.pcap.gz', gzipSync(big.file)), sink);
    expect(summary).toMatchObject({ compressed: true, packets: 12000, bytes: big.file.length, problem: null });
    for (let i = 0; i < big.frames.length; i++) {
      if (!sink.packets[i].bytes.equals(big.frames[i])) expect.fail(`packet ${i} differs`);
    }
  });

  it('gives the packets read so far and a problem, without throwing, for a gzip file cut in the middle', async () => {
    const big = capture(2000, 200);
    const gz = gzipSync(big.file);
    const sink = collect();
    const summary = await readCapture(write('cut.pcap.gz', gz.subarray(0, Math.floor(gz.length / 2))), sink);
    expect(summary.compressed).toBe(true);
    expect(summary.problem?.kind).toBe('truncated');
    expect(summary.problem?.message).toMatch(/gzip/);
    expect(summary.packets).toBeGreaterThan(0);
    expect(summary.packets).toBeLessThan(2000);
    expect(sink.packets).toHaveLength(summary.packets);
    // What was delivered is exactly the start of the capture.
    expect(sink.packets.map((p) => p.bytes)).toEqual(big.frames.slice(0, summary.packets));
    expect(summary.problem?.offset).toBe(summary.bytes);
  });

  // Process substitution (`analyze <(zcat a.pcap.gz)`) and /dev/stdin are pipes: no seeking.
  it('reads a named pipe (FIFO)', async () => {
    const fifo = join(dir, 'capture.fifo');
    const made = spawnSync('mkfifo', [fifo]);
    expect(made.status).toBe(0);
    const writer = spawn('sh', ['-c', 'cat "$1" > "$2"', 'sh', write('for-fifo.pcap', SMALL.file), fifo], { stdio: 'ignore' });
    const writerDone = new Promise((done) => writer.on('close', done));
    const sink = collect();
    const summary = await readCapture(fifo, sink);
    await writerDone;
    expect(summary).toMatchObject({ format: 'pcap', packets: 3, problem: null });
    expect(sink.packets.map((p) => p.bytes)).toEqual(SMALL.frames);
  });

  it('reports a pcap file cut inside a record as truncated at that record', async () => {
    const cut = SMALL.file.subarray(0, SMALL.file.length - 10);
    const summary = await readCapture(write('cut.pcap', cut), collect());
    const lastRecord = 24 + 2 * (16 + SMALL.frames[0].length);
    expect(summary).toMatchObject({ packets: 2, problem: { kind: 'truncated', offset: lastRecord } });
  });

  it('reports a corrupt record with its offset and counts only the bytes before it', async () => {
    const file = Buffer.from(SMALL.file);
    const second = 24 + 16 + SMALL.frames[0].length;
    file.writeUInt32LE(0x10000000, second + 8);
    const summary = await readCapture(write('corrupt.pcap', file), collect());
    expect(summary).toMatchObject({ packets: 1, bytes: second, problem: { kind: 'corrupt', offset: second } });
  });

  it('reports an empty file as not a capture', async () => {
    const summary = await readCapture(write('empty.pcap', Buffer.alloc(0)), collect());
    expect(summary).toMatchObject({ format: null, packets: 0, problem: { kind: 'not_a_capture' } });
  });

  it('reports a text file as not a capture', async () => {
    const summary = await readCapture(write('notes.txt', 'GET / HTTP/1.1\r\nHost: x\r\n\r\n'), collect());
    expect(summary.problem).toMatchObject({ kind: 'not_a_capture', offset: 0 });
    expect(summary.problem?.message).toContain('0x47455420');
  });

  it('throws CaptureOpenError naming a missing file', async () => {
    const missing = join(dir, 'does-not-exist.pcap');
    const err = await readCapture(missing, collect()).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(CaptureOpenError);
    expect((err as Error).message).toContain('no such file');
    expect((err as Error).message).toContain(missing);
  });

  it('throws CaptureOpenError for a directory', async () => {
    const err = await readCapture(dir, collect()).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(CaptureOpenError);
    expect((err as Error).message).toMatch(/directory/);
  });

  // Root reads a mode-000 file anyway, so as root (CI) the same check runs the built CLI as the
  // unprivileged user nobody: the user-facing result is one line and exit status 2.
  it('throws CaptureOpenError for a file it may not read', async () => {
    const p = write('secret.pcap', SMALL.file);
    chmodSync(p, 0o000);
    try {
      if (process.getuid?.() !== 0) {
        const err = await readCapture(p, collect()).catch((e: unknown) => e);
        expect(err).toBeInstanceOf(CaptureOpenError);
        expect((err as Error).message).toMatch(/permission denied/);
      } else {
        chmodSync(dir, 0o755);
        expect(existsSync(resolve('dist/cli/main.js')), 'npm test builds dist/ first').toBe(true);
        // nobody may not be able to reach the checkout (a 0700 parent): run a copy of dist/
        // from a world-readable place. The CLI needs only Node's own modules.
        const copy = mkdtempSync(join(tmpdir(), 'ka-cli-'));
        chmodSync(copy, 0o755);
        cpSync(resolve('dist'), join(copy, 'dist'), { recursive: true });
        const cli = join(copy, 'dist/cli/main.js');
        const r = spawnSync('setpriv', ['--reuid=65534', '--regid=65534', '--clear-groups', process.execPath, cli, 'analyze', p], { encoding: 'utf8' });
        rmSync(copy, { recursive: true, force: true });
        expect(r.status).toBe(2);
        const lines = r.stderr.trim().split('\n');
        expect(lines).toHaveLength(1);
        expect(lines[0]).toMatch(/^keepalive-exporter: cannot read .*secret\.pcap: permission denied/);
      }
    } finally {
      chmodSync(p, 0o644);
    }
  });

  it('reports progress in compressed bytes against the file size', async () => {
    const big = capture(12000, 200);
    const gz = gzipSync(big.file);
    const calls: [number, number][] = [];
    await readCapture(write('progress.pcap.gz', gz), collect(), { onProgress: (r, t) => calls.push([r, t]) });
    expect(calls.length).toBeGreaterThan(0);
    expect(calls.every(([, t]) => t === gz.length)).toBe(true);
    expect(calls[calls.length - 1][0]).toBe(gz.length);
    for (let i = 1; i < calls.length; i++) expect(calls[i][0]).toBeGreaterThanOrEqual(calls[i - 1][0]);
  });
});

describe('readCaptureStream', () => {
  it('reads a capture from any readable, whatever its chunking', async () => {
    const chunks: Buffer[] = [];
    for (let i = 0; i < SMALL.file.length; i += 7) chunks.push(SMALL.file.subarray(i, i + 7));
    const sink = collect();
    const summary = await readCaptureStream(Readable.from(chunks), sink);
    expect(summary).toMatchObject({ format: 'pcap', compressed: false, packets: 3, problem: null });
    expect(sink.packets.map((p) => p.bytes)).toEqual(SMALL.frames);
  });

  it('recognises gzip even when the first chunk is a single byte', async () => {
    const gz = gzipSync(SMALL.file);
    const summary = await readCaptureStream(Readable.from([gz.subarray(0, 1), gz.subarray(1, 5), gz.subarray(5)]), collect());
    expect(summary).toMatchObject({ compressed: true, packets: 3, problem: null });
  });

  it('turns a read error in the middle into a truncation problem after the packets read', async () => {
    async function* failing(): AsyncGenerator<Buffer> {
      yield SMALL.file.subarray(0, 24 + 16 + SMALL.frames[0].length + 5);
      throw Object.assign(new Error('EIO: i/o error, read'), { code: 'EIO' });
    }
    const sink = collect();
    const summary = await readCaptureStream(Readable.from(failing()), sink);
    expect(summary.packets).toBe(1);
    expect(summary.problem?.kind).toBe('truncated');
    expect(summary.problem?.message).toMatch(/EIO/);
  });

  it('reads an empty stream as not a capture', async () => {
    const summary = await readCaptureStream(Readable.from([]), collect());
    expect(summary.problem).toMatchObject({ kind: 'not_a_capture' });
  });
});

// ---------------------------------------------------------------------------------------------
// `-` reads stdin: checked end to end through the CLI, built into a private directory so that
// other test files (or engineers) using dist/ are not disturbed while it is rewritten.

describe('readCapture("-") through the CLI', () => {
  let buildDir = '';
  let cli: string | null = null;

  beforeAll(() => {
    // Only a CLI that failed to compile at all skips the test.
    try {
      ({ dir: buildDir, main: cli } = buildCli('kae-cli-build-'));
    } catch {
      cli = null;
    }
  }, 120_000);
  afterAll(() => {
    if (buildDir) rmSync(buildDir, { recursive: true, force: true });
  });

  function analyzeStdin(input: Buffer): Promise<{ code: number | null; stdout: string; stderr: string }> {
    return new Promise((resolveRun, reject) => {
      const child = spawn(process.execPath, [cli!, 'analyze', '-', '--json', '--no-progress'], { stdio: ['pipe', 'pipe', 'pipe'] });
      let stdout = '';
      let stderr = '';
      child.stdout.setEncoding('utf8').on('data', (d: string) => { stdout += d; });
      child.stderr.setEncoding('utf8').on('data', (d: string) => { stderr += d; });
      child.on('error', reject);
      child.on('close', (code) => resolveRun({ code, stdout, stderr }));
      child.stdin.end(input);
    });
  }

  it('reads a pcap piped to stdin', async (ctx) => {
    if (!cli) ctx.skip();
    const { code, stdout, stderr } = await analyzeStdin(SMALL.file);
    expect(stderr).toBe('');
    expect(code).toBe(0);
    const out = JSON.parse(stdout) as { file: string; capture: { packets: number; format: string; compressed: boolean; complete: boolean } };
    expect(out.file).toBe('-');
    expect(out.capture).toMatchObject({ packets: 3, format: 'pcap', compressed: false, complete: true });
  }, 30_000);

  it('reads a gzip-compressed pcapng piped to stdin', async (ctx) => {
    if (!cli) ctx.skip();
    const file = pcapngFile([{ interfaces: [{ linkType: 1 }], blocks: SMALL.frames.map((data, i) => ({ type: 'epb' as const, interface: 0, ts: i, data })) }]);
    const { code, stdout } = await analyzeStdin(gzipSync(file));
    expect(code).toBe(0);
    const out = JSON.parse(stdout) as { capture: { packets: number; format: string; compressed: boolean } };
    expect(out.capture).toMatchObject({ packets: 3, format: 'pcapng', compressed: true });
  }, 30_000);
});
