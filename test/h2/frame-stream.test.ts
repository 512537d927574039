import { describe, expect, it } from 'vitest';
import { H2FrameStream, H2_FRAME_LIMITS, type FrameSink, type FrameStreamAnomaly, type FrameStreamOptions, type H2BufferBudget } from '../../src/h2/frame-stream.js';
import { type FrameHeader } from '../../src/h2/frames.js';
import {
  ERR,
  F,
  PREFACE,
  SETTINGS,
  T,
  continuation,
  data,
  frame,
  frameHeader,
  goaway,
  headers,
  hpackIndexed,
  ping,
  priority,
  pushPromise,
  rstStream,
  settings,
  settingsAck,
  windowUpdate,
} from '../helpers/h2.js';
import { prng } from '../helpers/prng.js';

// ---------------------------------------------------------------------------------------------
// A recording sink: each frame becomes "TYPE s<stream> f<flags> <length> <payload hex | ->", each
// anomaly "! name"; the payload is copied because it is valid only during the call.
// ---------------------------------------------------------------------------------------------

class Recorder implements FrameSink {
  readonly log: string[] = [];
  readonly headers: FrameHeader[] = [];
  readonly times: number[] = [];

  frame(dir: number, h: Readonly<FrameHeader>, payload: Buffer | null, off: number, ts: number): void {
    expect(dir).toBe(1);
    const body = payload ? payload.toString('hex', off, off + h.length) : '-';
    this.log.push(`${h.type} s${h.streamId} f${h.flags} ${h.length} ${body}`);
    this.headers.push({ ...h });
    this.times.push(ts);
  }

  anomaly(dir: number, name: FrameStreamAnomaly): void {
    expect(dir).toBe(1);
    this.log.push(`! ${name}`);
  }

  get anomalies(): string[] {
    return this.log.filter((e) => e.startsWith('!'));
  }

  get frames(): string[] {
    return this.log.filter((e) => !e.startsWith('!'));
  }
}

/** A budget that remembers the most it ever held. */
function budget(max = 1 << 30): H2BufferBudget & { peak: number } {
  let held = 0;
  const b = {
    peak: 0,
    maxBufferedBytes: max,
    get heldBytes(): number {
      return held;
    },
    set heldBytes(v: number) {
      held = v;
      if (v > b.peak) b.peak = v;
    },
  };
  return b;
}

function stream(opts: Partial<FrameStreamOptions> = {}): { s: H2FrameStream; r: Recorder } {
  const r = new Recorder();
  const s = new H2FrameStream(1, r, { role: 'client', ...opts });
  return { s, r };
}

/** Feeds `bytes` cut at the given offsets (each piece in a buffer of its own with junk around it, so offsets matter). */
function feed(s: H2FrameStream, bytes: Buffer, cuts: number[], ts = 1): void {
  let prev = 0;
  for (const c of [...cuts, bytes.length]) {
    if (c <= prev) continue;
    const piece = Buffer.concat([Buffer.from([0xaa, 0xbb]), bytes.subarray(prev, c), Buffer.from([0xcc])]);
    s.data(piece, 2, c - prev, ts);
    prev = c;
  }
}

function run(bytes: Buffer, cuts: number[], opts: Partial<FrameStreamOptions> = {}): string[] {
  const { s, r } = stream(opts);
  feed(s, bytes, cuts);
  s.end(2);
  return r.log;
}

const block = hpackIndexed(2, 4, 6, 1); // :method GET, :path /, :scheme http, :authority (name only)

/** A client's side of a connection using every frame type a client sends. */
const clientBytes = Buffer.concat([
  PREFACE,
  settings([[SETTINGS.HEADER_TABLE_SIZE, 4096], [SETTINGS.ENABLE_PUSH, 0]]),
  windowUpdate(0, 1 << 20),
  settingsAck(),
  priority(3, { dependency: 0, weight: 201 }),
  headers(13, block, { priority: { dependency: 3, weight: 16 }, pad: 3, endHeaders: false }),
  continuation(13, hpackIndexed(5), { endHeaders: false }),
  continuation(13, hpackIndexed(7)),
  headers(15, block, { endStream: false }),
  data(15, 'x'.repeat(100), { pad: 7 }),
  data(15, '', { endStream: true }),
  frame(0x0a, 0, 0, 'an ALTSVC-like extension'),
  frame(0xfe, 0xff, 9, ''),
  ping(1, 2),
  rstStream(13, ERR.CANCEL),
  windowUpdate(15, 1),
  goaway(0, ERR.NO_ERROR, 'bye'),
]);

/** A server's side, with a push. */
const serverBytes = Buffer.concat([
  settings([[SETTINGS.MAX_CONCURRENT_STREAMS, 128], [SETTINGS.MAX_FRAME_SIZE, 1 << 20]]),
  settingsAck(),
  pushPromise(13, 2, block, { pad: 1 }),
  headers(13, hpackIndexed(8)),
  data(13, Buffer.alloc(5000, 0x61)),
  data(13, 'end', { endStream: true }),
  headers(2, hpackIndexed(8), { endStream: true }),
  ping(1, 2, { ack: true }),
  goaway(15, ERR.NO_ERROR),
  rstStream(15, ERR.REFUSED_STREAM),
]);

describe('H2FrameStream: splitting', () => {
  it('delivers every frame type once, in order; DATA and unknown types unread', () => {
    const log = run(clientBytes, []);
    expect(log.length).toBe(16);
    expect(log[0]).toBe(`4 s0 f0 12 ${settings([[1, 4096], [2, 0]]).toString('hex', 9)}`);
    expect(log[4]).toMatch(/^1 s13 f40 13 03/); // PRIORITY | PADDED, pad length 3
    expect(log[5]).toBe('9 s13 f0 1 85');
    expect(log[6]).toBe('9 s13 f4 1 87');
    expect(log[8]).toBe('0 s15 f8 108 -');
    expect(log[9]).toBe('0 s15 f1 0 -');
    expect(log[10]).toBe('10 s0 f0 24 -');
    expect(log[11]).toBe('254 s9 f255 0 -');
    expect(log[15]).toBe(`7 s0 f0 11 ${goaway(0, 0, 'bye').toString('hex', 9)}`);
    expect(log.filter((e) => e.startsWith('!'))).toEqual([]);
  });

  it('gives the same frames split at every offset, byte by byte, and at random', () => {
    for (const [bytes, role] of [[clientBytes, 'client'], [serverBytes, 'server']] as const) {
      const whole = run(bytes, [], { role });
      expect(whole.some((e) => e.startsWith('!'))).toBe(false);
      for (let i = 1; i < bytes.length; i++) expect(run(bytes, [i], { role })).toEqual(whole);
      expect(run(bytes, Array.from({ length: bytes.length }, (_, i) => i), { role })).toEqual(whole);
      const rnd = prng(12);
      for (let k = 0; k < 50; k++) {
        const cuts = Array.from({ length: 1 + Math.floor(rnd() * 20) }, () => Math.floor(rnd() * bytes.length)).sort((a, b) => a - b);
        expect(run(bytes, cuts, { role })).toEqual(whole);
      }
    }
  });

  it('times a frame by the piece holding its last byte, frameStartTs by its first', () => {
    const { s, r } = stream({ role: 'server' });
    const f = Buffer.concat([settings(), headers(1, hpackIndexed(8))]);
    const starts: number[] = [];
    const sink = r.frame.bind(r);
    r.frame = (dir, h, p, off, ts): void => {
      starts.push(s.frameStartTs);
      sink(dir, h, p, off, ts);
    };
    s.data(f, 0, 12, 10);
    s.data(f, 12, f.length - 12, 20);
    expect(r.times).toEqual([10, 20]);
    expect(starts).toEqual([10, 10]);
  });

  it('is truncated at every length: the complete frames, then h2_truncated_frame unless at a boundary', () => {
    const ends: number[] = [];
    for (let p = 24; p < clientBytes.length; ) {
      ends.push(p);
      p += 9 + clientBytes.readUIntBE(p, 3);
    }
    ends.push(clientBytes.length);
    const whole = run(clientBytes, []);
    for (let n = 0; n <= clientBytes.length; n++) {
      const log = run(clientBytes.subarray(0, n), []);
      const complete = ends.filter((e) => e <= n).length - 1;
      const atBoundary = n === 0 || ends.includes(n);
      expect(log.filter((e) => !e.startsWith('!'))).toEqual(whole.slice(0, Math.max(0, complete)));
      expect(log.filter((e) => e.startsWith('!'))).toEqual(atBoundary ? [] : ['! h2_truncated_frame']);
    }
  });

  it('copies a frame only when it spans pieces, within the budget, and gives the bytes back', () => {
    const b = budget();
    const { s, r } = stream({ role: 'server', budget: b });
    const g = goaway(1, 0, 'x'.repeat(1000));
    s.data(Buffer.concat([settings(), g]), 0, 9 + 500, 1);
    expect(b.heldBytes).toBe(1008);
    s.data(g, 500, g.length - 500, 2);
    expect(b.heldBytes).toBe(0);
    expect(r.frames[1]).toBe(`7 s0 f0 1008 ${g.toString('hex', 9)}`);
    // in one piece: a view, nothing held
    const b2 = budget();
    const t = stream({ role: 'server', budget: b2 });
    t.s.data(Buffer.concat([settings(), g]), 0, 9 + g.length, 1);
    expect(b2.peak).toBe(0);
  });

  it('never holds DATA bytes, however the pieces fall', () => {
    const b = budget();
    const bytes = Buffer.concat([settings(), data(1, Buffer.alloc(40000, 1), { pad: 10 }), data(1, 'z', { endStream: true })]);
    const log: string[][] = [];
    for (const step of [1, 7, 1448, 16384]) {
      const { s, r } = stream({ role: 'server', budget: b });
      for (let p = 0; p < bytes.length; p += step) s.data(bytes, p, Math.min(step, bytes.length - p), 1);
      log.push(r.log);
      expect(s.dataBytes).toBe(40011 + 1);
    }
    expect(b.peak).toBe(0);
    for (const l of log) expect(l).toEqual(['4 s0 f0 0 ', '0 s1 f8 40011 -', '0 s1 f1 1 -']);
  });

  it('after an Upgrade the server side starts with its SETTINGS, the client side with the preface', () => {
    expect(run(Buffer.concat([settings([[3, 100]]), headers(1, hpackIndexed(8))]), [], { role: 'server' }).filter((e) => e.startsWith('!'))).toEqual([]);
    expect(run(Buffer.concat([PREFACE, settings(), data(1, 'x')]), [], { role: 'client' })).toEqual(['4 s0 f0 0 ', '0 s1 f0 1 -']);
  });
});

describe('H2FrameStream: prefaces', () => {
  it('stops at a bad client preface, once', () => {
    const { s, r } = stream();
    const bad = Buffer.from('PRI * HTTP/2.0\r\n\r\nXX\r\n\r\n');
    s.data(bad, 0, bad.length, 1);
    s.data(settings(), 0, 9, 1);
    s.end(2);
    expect(r.log).toEqual(['! h2_bad_preface']);
    expect(s.stopped).toBe(true);
  });

  it('stops at garbage after the preface (the first frame must be a SETTINGS), at every split', () => {
    const bytes = Buffer.concat([PREFACE, Buffer.from('GET / HTTP/1.1\r\nHost: x\r\n\r\n')]);
    for (let i = 0; i <= bytes.length; i++) expect(run(bytes, [i])).toEqual(['! h2_bad_preface']);
    expect(run(Buffer.concat([PREFACE, settingsAck()]), [])).toEqual(['! h2_bad_preface']);
    expect(run(headers(1, hpackIndexed(8)), [], { role: 'server' })).toEqual(['! h2_bad_preface']);
  });

  it('a gap inside the preface keeps it if it ends inside it', () => {
    const { s, r } = stream();
    s.data(PREFACE, 0, 10, 1);
    s.gap(14, 1);
    const rest = Buffer.concat([settings(), ping()]);
    s.data(rest, 0, rest.length, 1);
    expect(r.log).toEqual(['4 s0 f0 0 ', `6 s0 f0 8 ${'00'.repeat(8)}`]);
  });
});

describe('H2FrameStream: hostile input stays bounded', () => {
  it('a 2^24-1 DATA frame is counted, never allocated', () => {
    const b = budget();
    const { s, r } = stream({ role: 'server', budget: b });
    s.data(settings(), 0, 9, 1);
    s.data(frameHeader(0xffffff, T.DATA, F.END_STREAM, 1), 0, 9, 1);
    const piece = Buffer.alloc(65536);
    for (let left = 0xffffff; left > 0; left -= piece.length) s.data(piece, 0, Math.min(left, piece.length), 1);
    s.data(ping(), 0, 17, 1);
    expect(r.log).toEqual(['4 s0 f0 0 ', '0 s1 f1 16777215 -', `6 s0 f0 8 ${'00'.repeat(8)}`]);
    expect(b.peak).toBe(0);
  });

  it('a 2^24-1 HEADERS frame is skipped, not buffered; framing holds after it', () => {
    const b = budget();
    const { s, r } = stream({ role: 'server', budget: b });
    s.data(settings(), 0, 9, 1);
    s.data(frameHeader(0xffffff, T.HEADERS, F.END_HEADERS, 1), 0, 9, 1);
    const piece = Buffer.alloc(1 << 20, 0x88);
    for (let left = 0xffffff; left > 0; left -= piece.length) s.data(piece, 0, Math.min(left, piece.length), 1);
    const h = headers(3, hpackIndexed(8));
    s.data(h, 0, h.length, 1);
    expect(r.log).toEqual(['4 s0 f0 0 ', '! h2_header_block_too_large', '1 s1 f4 16777215 -', '1 s3 f4 1 88']);
    expect(b.peak).toBe(0);
  });

  it('a non-header frame over maxFrameBytes is delivered unread', () => {
    const big = goaway(1, ERR.NO_ERROR, Buffer.alloc(H2_FRAME_LIMITS.maxFrameBytes));
    expect(run(Buffer.concat([settings(), big, ping()]), [100], { role: 'server' })).toEqual([
      '4 s0 f0 0 ', '! h2_frame_too_large', `7 s0 f0 ${65544} -`, `6 s0 f0 8 ${'00'.repeat(8)}`,
    ]);
  });

  it('a frame split while the shared budget is spent is delivered unread', () => {
    const b = budget(100);
    const { s, r } = stream({ role: 'server', budget: b });
    const bytes = Buffer.concat([settings(), goaway(1, 0, 'x'.repeat(200)), ping()]);
    feed(s, bytes, [20]);
    expect(r.log).toEqual(['4 s0 f0 0 ', '! buffer_budget_exceeded', '7 s0 f0 208 -', `6 s0 f0 8 ${'00'.repeat(8)}`]);
    expect(b.heldBytes).toBe(0);
  });

  it('bad DATA padding is counted, framing holds', () => {
    const bytes = Buffer.concat([settings(), frame(T.DATA, F.PADDED, 1, [5, 1, 2, 3, 4]), frame(T.DATA, F.PADDED, 1), data(1, 'ok', { pad: 1 })]);
    const whole = run(bytes, [], { role: 'server' });
    expect(whole).toEqual(['4 s0 f0 0 ', '! h2_bad_padding', '0 s1 f8 5 -', '! h2_bad_padding', '0 s1 f8 0 -', '0 s1 f8 4 -']);
    for (let i = 1; i < bytes.length; i++) expect(run(bytes, [i], { role: 'server' })).toEqual(whole);
  });

  it('a CONTINUATION flood: past maxHeaderBlockFrames the block is counted once, its frames unread', () => {
    const parts = [settings(), headers(1, hpackIndexed(2), { endHeaders: false })];
    for (let i = 0; i < 1000; i++) parts.push(continuation(1, 'ab', { endHeaders: false }));
    parts.push(continuation(1, 'cd'), headers(3, hpackIndexed(2)));
    const b = budget();
    const { s, r } = stream({ role: 'server', budget: b });
    const bytes = Buffer.concat(parts);
    for (let p = 0; p < bytes.length; p += 5) s.data(bytes, p, Math.min(5, bytes.length - p), 1);
    expect(r.anomalies).toEqual(['! h2_continuation_flood']);
    const f = r.frames;
    expect(f.length).toBe(1 + 1 + 1001 + 1);
    expect(f.slice(2, 2 + H2_FRAME_LIMITS.maxHeaderBlockFrames - 1).every((e) => e === '9 s1 f0 2 6162')).toBe(true);
    expect(f.slice(1 + H2_FRAME_LIMITS.maxHeaderBlockFrames, -1).every((e) => e.endsWith(' -'))).toBe(true);
    expect(f.at(-1)).toBe('1 s3 f4 1 82');
    expect(b.peak).toBeLessThanOrEqual(9);
  });

  it('a header block over maxHeaderBlockBytes across CONTINUATIONs is cut there', () => {
    const half = Buffer.alloc(40000, 0x41);
    const bytes = Buffer.concat([settings(), headers(1, half, { endHeaders: false }), continuation(1, half), headers(3, hpackIndexed(2))]);
    expect(run(bytes, [], { role: 'server', limits: { maxFrameBytes: 64 } }).map((e) => e.slice(0, 20))).toEqual([
      '4 s0 f0 0 ', `1 s1 f0 40000 ${'41'.repeat(3)}`, '! h2_header_block_to', '9 s1 f4 40000 -', '1 s3 f4 1 82',
    ]);
  });

  it('CONTINUATION out of place is counted', () => {
    const bytes = Buffer.concat([
      settings(),
      continuation(1, 'x'), // no block open
      headers(1, 'a', { endHeaders: false }),
      continuation(3, 'b'), // another stream
      headers(5, 'c', { endHeaders: false }),
      data(5, 'd'), // a frame inside the block
      headers(7, 'e', { endHeaders: false }),
      headers(9, 'f'), // a new block inside the open one
    ]);
    const log = run(bytes, [], { role: 'server' });
    expect(log.filter((e) => e.startsWith('!'))).toEqual(Array(4).fill('! h2_bad_continuation'));
    expect(log.filter((e) => e.startsWith('9 '))).toEqual(['9 s1 f4 1 -', '9 s3 f4 1 -']);
  });

  it('a SETTINGS flood: each SETTINGS past maxSettingsFrames is counted and unread; ACKs are not counted', () => {
    const parts: Buffer[] = [];
    for (let i = 0; i < 40; i++) parts.push(settings([[SETTINGS.MAX_CONCURRENT_STREAMS, i]]), settingsAck());
    const log = run(Buffer.concat(parts), [], { role: 'server' });
    expect(log.filter((e) => e === '! h2_settings_flood').length).toBe(40 - H2_FRAME_LIMITS.maxSettingsFrames);
    expect(log.filter((e) => e.startsWith('4 s0 f0 6 -')).length).toBe(8);
    expect(log.filter((e) => e === '4 s0 f1 0 ').length).toBe(40);
  });
});

/** Frames of a long server side: many DATA frames and some control frames, with their offsets. */
function longServer(): { bytes: Buffer; starts: number[]; hdrs: string[] } {
  const parts = [settings([[SETTINGS.MAX_CONCURRENT_STREAMS, 100]])];
  const rnd = prng(7);
  for (let sid = 1; sid < 40; sid += 2) {
    parts.push(headers(sid, hpackIndexed(8)));
    for (let k = 0; k < 3; k++) {
      const body = Buffer.alloc(200 + Math.floor(rnd() * 3000));
      for (let i = 0; i < body.length; i++) body[i] = Math.floor(rnd() * 256);
      parts.push(data(sid, body, { endStream: k === 2 }));
    }
    parts.push(windowUpdate(0, 1000), ping(sid, 0, { ack: true }));
  }
  const starts: number[] = [];
  const hdrs: string[] = [];
  let p = 0;
  for (const f of parts) {
    starts.push(p);
    hdrs.push(`${f[3]} s${f.readUInt32BE(5) & 0x7fffffff} f${f[4]} ${f.readUIntBE(0, 3)}`);
    p += f.length;
  }
  return { bytes: Buffer.concat(parts), starts, hdrs };
}

describe('H2FrameStream: gaps', () => {
  it('a gap inside a DATA payload keeps framing', () => {
    const bytes = Buffer.concat([settings(), data(1, Buffer.alloc(1000)), headers(3, hpackIndexed(8))]);
    const { s, r } = stream({ role: 'server' });
    s.data(bytes, 0, 9 + 9 + 100, 1);
    s.gap(500, 1);
    s.data(bytes, 618, bytes.length - 618, 1);
    expect(r.log).toEqual(['4 s0 f0 0 ', '! h2_gap_in_data', '0 s1 f0 1000 -', '1 s3 f4 1 88']);
    expect(s.gapBytes).toBe(500);
    expect(s.dataBytes).toBe(1000);
  });

  it('a gap covering the rest of a DATA payload exactly keeps framing; the frame is delivered at the gap', () => {
    const bytes = Buffer.concat([settings(), data(1, Buffer.alloc(1000), { endStream: true }), headers(3, hpackIndexed(8))]);
    const { s, r } = stream({ role: 'server' });
    s.data(bytes, 0, 118, 1);
    s.gap(900, 5);
    s.data(bytes, 1018, bytes.length - 1018, 6);
    expect(r.log).toEqual(['4 s0 f0 0 ', '! h2_gap_in_data', '0 s1 f1 1000 -', '1 s3 f4 1 88']);
    expect(r.times).toEqual([1, 5, 6]);
  });

  it('a gap inside a HEADERS payload delivers it unread and keeps framing', () => {
    const bytes = Buffer.concat([settings(), headers(1, Buffer.alloc(300, 0x88), { endHeaders: false }), continuation(1, 'x'), ping()]);
    const { s, r } = stream({ role: 'server' });
    s.data(bytes, 0, 100, 1);
    s.gap(100, 1);
    s.data(bytes, 200, bytes.length - 200, 1);
    expect(r.log).toEqual(['4 s0 f0 0 ', '! h2_frame_lost', '1 s1 f0 300 -', '9 s1 f4 1 -', `6 s0 f0 8 ${'00'.repeat(8)}`]);
  });

  it('a gap inside a frame header loses framing; it comes back after two plausible headers in a row', () => {
    const { bytes, starts, hdrs } = longServer();
    const whole = run(bytes, [], { role: 'server' });
    expect(whole.length).toBe(hdrs.length);
    const cut = starts[10] + 4; // inside the 11th frame's header
    const { s, r } = stream({ role: 'server' });
    s.data(bytes, 0, starts[10], 1);
    s.gap(4, 1);
    s.data(bytes, cut, bytes.length - cut, 1);
    expect(r.anomalies).toEqual(['! h2_resync']);
    expect(s.resyncs).toBe(1);
    // frames 0-9 before the gap; 10 is lost, 11 and 12 are the witnesses; from 13 on, all of them
    expect(r.frames).toEqual([...whole.slice(0, 10), ...whole.slice(13)]);
  });

  it('after a gap anywhere, every frame delivered is a real frame, in order, and framing comes back (never a guess)', () => {
    const { bytes, starts, hdrs } = longServer();
    const rnd = prng(99);
    let resynced = 0;
    for (let k = 0; k < 1000; k++) {
      const at = 9 + Math.floor(rnd() * (bytes.length - 9 - 20000));
      const len = 1 + Math.floor(rnd() * (k % 3 === 0 ? 20 : 5000));
      const { s, r } = stream({ role: 'server' });
      feed(s, bytes.subarray(0, at), [Math.floor(at / 2)]);
      s.gap(len, 1);
      feed(s, bytes.subarray(at + len), [Math.floor(rnd() * 3000)]);
      s.end(2);
      const got = r.headers.map((h) => `${h.type} s${h.streamId} f${h.flags} ${h.length}`);
      // a subsequence of the real frames
      let j = 0;
      for (const g of got) {
        while (j < hdrs.length && hdrs[j] !== g) j++;
        expect(j).toBeLessThan(hdrs.length);
        j++;
      }
      expect(r.anomalies).not.toContain('! h2_resync_failed');
      // and the last frames all arrive: framing was found again
      expect(got.at(-1)).toBe(hdrs.at(-1));
      const firstAfter = starts.findIndex((p) => p >= at + len);
      if (firstAfter > 0 && firstAfter + 2 < hdrs.length) expect(got.slice(-(hdrs.length - firstAfter - 2))).toEqual(hdrs.slice(firstAfter + 2));
      if (r.anomalies.includes('! h2_resync')) resynced++;
    }
    expect(resynced).toBeGreaterThan(300); // most gaps cover a header boundary: the resync is what is tested
  });

  it('resynchronises the same way whatever the pieces after the loss', () => {
    const { bytes, starts } = longServer();
    const tail = bytes.subarray(starts[20] + 100);
    const whole = (() => {
      const { s, r } = stream({ role: 'server', start: 'lost' });
      s.data(tail, 0, tail.length, 1);
      return r.log;
    })();
    expect(whole.length).toBeGreaterThan(50);
    expect(whole.filter((e) => e.startsWith('!'))).toEqual([]);
    for (const step of [1, 2, 5, 8, 9, 10, 17, 1000]) {
      const { s, r } = stream({ role: 'server', start: 'lost' });
      for (let p = 0; p < tail.length; p += step) s.data(tail, p, Math.min(step, tail.length - p), 1);
      expect(r.log).toEqual(whole);
    }
  });

  it('gives up once when nothing plausible follows within the window, and ignores the rest', () => {
    const { s, r } = stream({ role: 'server' });
    const start = Buffer.concat([settings(), headers(1, hpackIndexed(8))]);
    s.data(start, 0, start.length, 1);
    s.gap(3, 1);
    const junk = Buffer.alloc(300000);
    const rnd = prng(5);
    for (let i = 0; i < junk.length; i++) junk[i] = 0x0b + Math.floor(rnd() * 0xf0); // no known type byte at all
    for (let p = 0; p < junk.length; p += 1448) s.data(junk, p, Math.min(1448, junk.length - p), 1);
    const after = Buffer.concat([settings(), ping(), ping()]);
    s.data(after, 0, after.length, 1);
    s.end(2);
    expect(r.log).toEqual(['4 s0 f0 0 ', '1 s1 f4 1 88', '! h2_resync', '! h2_resync_failed']);
    expect(s.stopped).toBe(true);
  });

  it('uses the peer\'s SETTINGS_MAX_FRAME_SIZE to trust long frames', () => {
    const parts: Buffer[] = [];
    for (let i = 0; i < 6; i++) parts.push(data(1, Buffer.alloc(30000, 0x30)));
    const bytes = Buffer.concat(parts);
    const tail = bytes.subarray(1000);
    const strict = stream({ role: 'server', start: 'lost', limits: { maxResyncBytes: 1024 } });
    strict.s.data(tail, 0, tail.length, 1);
    expect(strict.r.log).toEqual(['! h2_resync_failed']);
    const ok = stream({ role: 'server', start: 'lost', limits: { maxResyncBytes: 1024 } });
    ok.s.setPeerMaxFrameSize(32768);
    ok.s.data(tail, 0, tail.length, 1);
    expect(ok.r.log).toEqual(Array(3).fill('0 s1 f0 30000 -'));
  });

  it('a gap during the resync drops candidates that expected a header inside it', () => {
    const { bytes, starts } = longServer();
    const { s, r } = stream({ role: 'server', start: 'lost' });
    // the start of frame 30 is seen (a candidate), the header that would confirm it is lost
    const a = starts[30];
    const b = starts[31];
    s.data(bytes, a, 9 + 5, 1);
    s.gap(b - a - 14 + 3, 1);
    s.data(bytes, b + 3, bytes.length - b - 3, 1);
    expect(r.anomalies).toEqual([]);
    expect(r.headers.length).toBe(starts.length - 34);
  });
});
