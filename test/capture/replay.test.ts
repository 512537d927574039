/**
 * Replaying capture files: `fast` is readCapture itself; `realtime` releases packets at the pace
 * they were captured (never earlier) and must give exactly the same facts, since time only comes
 * from the packets. Timing is asserted with lower bounds only.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { replayFile, type ReplayMode } from '../../src/capture/replay.js';
import { readCapture, CaptureOpenError, type CaptureSummary } from '../../src/capture/file.js';
import { Engine } from '../../src/conn/engine.js';
import type { PacketSink } from '../../src/capture/reader.js';
import { Conversation, httpRequest, httpResponse, merge } from '../helpers/conversation.js';
import { LINKTYPE, pcapFile } from '../helpers/packets.js';
import { corpusFiles } from '../helpers/corpus.js';

const ROOT = join(import.meta.dirname, '../..');
const FIXTURE = join(ROOT, 'test/fixtures/real/real-servers.pcap');
const CORPUS_SAMPLE = corpusFiles(false).filter((_, i) => i % 4 === 0);

let dir = '';
beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'ka-replay-'));
});
afterAll(() => {
  if (dir) rmSync(dir, { recursive: true, force: true });
});

/** Every fact the engine emits, as it was when emitted, in order. */
interface Run {
  summary: CaptureSummary;
  events: string[];
  packets: number;
  stats: ReturnType<Engine['stats']>;
}

async function run(path: string, how: 'read' | ReplayMode, onPacket?: (ts: number) => void): Promise<Run> {
  const engine = new Engine();
  const events: string[] = [];
  engine.subscribe({
    opened: (c) => events.push(`opened ${JSON.stringify(c)}`),
    request: (c, r) => events.push(`request ${c.id} ${JSON.stringify(r)}`),
    response: (c, r) => events.push(`response ${c.id} ${JSON.stringify(r)}`),
    closed: (c) => events.push(`closed ${JSON.stringify(c)}`),
  });
  let packets = 0;
  const sink: PacketSink = {
    packet(linkType, data, offset, capLen, origLen, ts) {
      packets++;
      onPacket?.(ts);
      engine.packet(linkType, data, offset, capLen, origLen, ts);
    },
  };
  const summary = how === 'read' ? await readCapture(path, sink) : await replayFile(path, sink, how);
  engine.finish();
  return { summary, events, packets, stats: engine.stats() };
}

function expectSameRun(a: Run, b: Run): void {
  expect(b.summary).toEqual(a.summary);
  expect(b.packets).toBe(a.packets);
  expect(b.events.length).toBe(a.events.length);
  expect(b.events).toEqual(a.events);
  expect(b.stats).toEqual(a.stats);
}

/** `n` keep-alive connections of two requests each, spread over `span` seconds of capture time. */
function spreadCapture(name: string, n: number, span: number): { path: string; packets: number } {
  const t0 = 1_700_000_000;
  const convs: Conversation[] = [];
  for (let i = 0; i < n; i++) {
    const start = t0 + (span * i) / n;
    const c = new Conversation({ client: `10.0.${(i >> 8) & 255}.${i & 255}:${40000 + (i % 20000)}`, server: `10.9.0.${i % 7}:80`, t0: start });
    const step = span / n / 10;
    c.handshake(step)
      .clientSends(httpRequest('GET', `/${i}`), step).serverSends(httpResponse(200, 'x'.repeat(i % 50)), step)
      .clientSends(httpRequest('GET', `/${i}/b`), step).serverSends(httpResponse(200, 'y'), step)
      .close(i % 2 ? 'client' : 'server', step, step);
    convs.push(c);
  }
  const packets = merge(...convs);
  const path = join(dir, name);
  writeFileSync(path, pcapFile(packets, { linkType: LINKTYPE.ETHERNET }));
  return { path, packets: packets.length };
}

describe('fast replay is readCapture', () => {
  it.each([FIXTURE, ...CORPUS_SAMPLE].map((f) => [f.slice(f.lastIndexOf('/') + 1), f]))('%s', async (_name, path) => {
    expectSameRun(await run(path, 'read'), await run(path, 'fast'));
  });

  it('a missing file is the same CaptureOpenError', async () => {
    const missing = join(dir, 'missing.pcap');
    await expect(replayFile(missing, new Engine(), 'fast')).rejects.toBeInstanceOf(CaptureOpenError);
    await expect(replayFile(missing, new Engine(), 'realtime')).rejects.toBeInstanceOf(CaptureOpenError);
  });
});

describe('realtime replay', () => {
  it('takes the capture\'s own time (0.5 s here), never releases a packet early, and gives identical facts', async () => {
    const { path, packets } = spreadCapture('spread.pcap', 40, 0.5);
    const fast = await run(path, 'fast');
    expect(fast.packets).toBe(packets);
    expect(fast.stats.connectionsOpened).toBe(40);

    let firstTs = -1;
    let early = 0;
    const t = process.hrtime.bigint();
    const real = await run(path, 'realtime', (ts) => {
      if (firstTs < 0) firstTs = ts;
      // No packet before its capture offset has passed since the replay started (2 ms for the
      // millisecond clock the replay reads).
      const now = Number(process.hrtime.bigint() - t) / 1e9;
      if (now < ts - firstTs - 0.002) early++;
    });
    const elapsed = Number(process.hrtime.bigint() - t) / 1e9;
    expect(elapsed).toBeGreaterThanOrEqual(0.4);
    expect(early).toBe(0);
    expectSameRun(fast, real);
  });

  it('a gzip-compressed capture, paced the same way', async () => {
    const { path } = spreadCapture('spread-gz.pcap', 20, 0.5);
    const gz = `${path}.gz`;
    writeFileSync(gz, gzipSync(readFileSync(path)));
    const fast = await run(path, 'fast');
    const t = Date.now();
    const real = await run(gz, 'realtime');
    expect(Date.now() - t).toBeGreaterThanOrEqual(400);
    expect(real.summary.compressed).toBe(true);
    expect({ ...real.summary, compressed: false }).toEqual(fast.summary);
    expect(real.events).toEqual(fast.events);
  });

  it('more packets than its queue holds (60,000 in 0.5 s): all delivered, in order, same facts', async () => {
    const { path, packets } = spreadCapture('dense.pcap', 6000, 0.5);
    expect(packets).toBeGreaterThan(50_000);
    const fast = await run(path, 'fast');
    let last = -Infinity;
    let backwards = 0;
    const t = Date.now();
    const real = await run(path, 'realtime', (ts) => {
      if (ts < last) backwards++;
      last = ts;
    });
    expect(Date.now() - t).toBeGreaterThanOrEqual(400);
    expect(backwards).toBe(0);
    expectSameRun(fast, real);
  }, 30_000);

  it('a damaged file: the packets before the damage, and the same problem', async () => {
    const { path } = spreadCapture('whole.pcap', 10, 0.3);
    const bytes = readFileSync(path);
    const cut = join(dir, 'cut.pcap');
    writeFileSync(cut, bytes.subarray(0, bytes.length - 7));
    const fast = await run(cut, 'fast');
    expect(fast.summary.problem?.kind).toBe('truncated');
    expectSameRun(fast, await run(cut, 'realtime'));
  });

  it('an abort signal stops it at once, mid-capture, with the signal\'s reason', async () => {
    const { path, packets } = spreadCapture('long.pcap', 100, 30);
    for (const file of [path, `${path}.gz`]) {
      if (file.endsWith('.gz')) writeFileSync(file, gzipSync(readFileSync(path)));
      const ac = new AbortController();
      let delivered = 0;
      const replay = replayFile(file, { packet: () => { delivered++; } }, 'realtime', { signal: ac.signal });
      setTimeout(() => ac.abort(), 300);
      await expect(replay).rejects.toMatchObject({ name: 'AbortError' });
      // 30 s of capture: only the first second or so was played.
      expect(delivered).toBeGreaterThan(0);
      expect(delivered).toBeLessThan(packets / 2);
    }
  });

  it('an already aborted signal: nothing is read, in either mode', async () => {
    const ac = new AbortController();
    ac.abort();
    for (const mode of ['fast', 'realtime'] as const) {
      let delivered = 0;
      await expect(replayFile(FIXTURE, { packet: () => { delivered++; } }, mode, { signal: ac.signal })).rejects.toMatchObject({ name: 'AbortError' });
      expect(delivered).toBe(0);
    }
  });

  it('fast replay with a signal that never fires is unchanged', async () => {
    const a = await run(FIXTURE, 'read');
    const engine = new Engine();
    const summary = await replayFile(FIXTURE, engine, 'fast', { signal: new AbortController().signal });
    expect(summary).toEqual(a.summary);
  });

  it('an empty capture (header only) ends at once', async () => {
    const path = join(dir, 'empty.pcap');
    writeFileSync(path, pcapFile([], { linkType: LINKTYPE.ETHERNET }));
    // (the test's timeout is the bound: it must not wait for a packet that never comes)
    const r = await run(path, 'realtime');
    expect(r.packets).toBe(0);
    expect(r.summary.problem).toBeNull();
  });
});
