import { describe, expect, it } from 'vitest';
import {
  CLIENT_PREFACE,
  ERROR_CODE_NAMES,
  ErrorCode,
  FrameType,
  MAX_FRAME_LENGTH,
  errorCodeName,
  frameTypeName,
  matchPreface,
  parseContinuation,
  parseData,
  parseGoaway,
  parseHeaders,
  parsePing,
  parsePriority,
  parsePushPromise,
  parseRstStream,
  parseSettings,
  parseWindowUpdate,
  plausibleFrameHeader,
  readFrameHeader,
  type FrameHeader,
} from '../../src/h2/frames.js';
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

/** The header and payload offset of a frame built by the helpers, placed at offset 3 of a bigger buffer (views must use absolute offsets). */
function at3(f: Buffer): { h: FrameHeader; buf: Buffer; off: number } {
  const buf = Buffer.concat([Buffer.from([0xee, 0xee, 0xee]), f, Buffer.from([0xee])]);
  const h = readFrameHeader(buf, 3, buf.length - 3);
  if (h === 'truncated') throw new Error('truncated');
  return { h, buf, off: 3 + 9 };
}

function text(buf: Buffer, off: number, len: number): string {
  return buf.toString('latin1', off, off + len);
}

describe('readFrameHeader', () => {
  it('reads length, type, flags and stream id at an offset, with the reserved bit masked', () => {
    const buf = Buffer.concat([Buffer.from([1, 2]), frameHeader(0x012345, 0x07, 0xa5, 0x7fffffff, true)]);
    expect(readFrameHeader(buf, 2, 9)).toEqual({ length: 0x012345, type: 7, flags: 0xa5, streamId: 0x7fffffff });
  });

  it('carries lengths up to 2^24-1', () => {
    expect(readFrameHeader(frameHeader(MAX_FRAME_LENGTH, 0, 0, 1), 0, 9)).toMatchObject({ length: 0xffffff });
  });

  it('is truncated at every length below 9, and never reads past the buffer', () => {
    const h = frameHeader(5, 1, 4, 3);
    for (let n = 0; n < 9; n++) {
      expect(readFrameHeader(h, 0, n)).toBe('truncated');
      expect(readFrameHeader(h.subarray(0, n), 0, 9)).toBe('truncated');
    }
    expect(readFrameHeader(h, 0, 9)).toEqual({ length: 5, type: 1, flags: 4, streamId: 3 });
  });
});

describe('matchPreface', () => {
  it('says yes to the preface, with more bytes after it', () => {
    expect(CLIENT_PREFACE.equals(PREFACE)).toBe(true);
    expect(matchPreface(Buffer.concat([PREFACE, settings()]), 0, 33)).toBe('yes');
    expect(matchPreface(Buffer.concat([Buffer.from('xx'), PREFACE]), 2, 24)).toBe('yes');
  });

  it('needs more at every shorter length of a matching prefix', () => {
    for (let n = 0; n < 24; n++) expect(matchPreface(PREFACE, 0, n)).toBe('need_more');
  });

  it('says no as soon as any byte differs, at every position', () => {
    for (let i = 0; i < 24; i++) {
      const b = Buffer.from(PREFACE);
      b[i] ^= 0x20;
      expect(matchPreface(b, 0, 24)).toBe('no');
      expect(matchPreface(b, 0, i + 1)).toBe('no');
    }
    expect(matchPreface(Buffer.from('GET / HTTP/1.1\r\n\r\n'), 0, 18)).toBe('no');
    expect(matchPreface(Buffer.from('PRI * HTTP/1.1'), 0, 14)).toBe('no');
  });
});

describe('names', () => {
  it('names every error code of RFC 9113 section 7, and UNKNOWN for others', () => {
    expect(ERROR_CODE_NAMES.length).toBe(14);
    for (const [name, code] of Object.entries(ERR)) {
      expect(errorCodeName(code)).toBe(name);
      expect(ErrorCode[name as keyof typeof ErrorCode]).toBe(code);
    }
    expect(errorCodeName(14)).toBe('UNKNOWN');
    expect(errorCodeName(0xffffffff)).toBe('UNKNOWN');
  });

  it('names the frame types', () => {
    for (const [name, t] of Object.entries(T)) {
      expect(frameTypeName(t)).toBe(name);
      expect(FrameType[name as keyof typeof FrameType]).toBe(t);
    }
    expect(frameTypeName(0x0a)).toBe('UNKNOWN');
    expect(frameTypeName(0xff)).toBe('UNKNOWN');
  });
});

describe('DATA', () => {
  it('without padding', () => {
    const { h, buf, off } = at3(data(1, 'hello', { endStream: true }));
    const v = parseData(h, buf, off);
    expect(v).toEqual({ dataOffset: off, dataLength: 5, padLength: 0, endStream: true });
  });

  it('with padding, down to an empty content', () => {
    const { h, buf, off } = at3(data(3, 'abc', { pad: 4 }));
    const v = parseData(h, buf, off);
    if (typeof v === 'string') throw new Error(v);
    expect(text(buf, v.dataOffset, v.dataLength)).toBe('abc');
    expect(v).toMatchObject({ padLength: 4, endStream: false });
    const e = at3(frame(T.DATA, F.PADDED, 1, [2, 0, 0]));
    expect(parseData(e.h, e.buf, e.off)).toMatchObject({ dataLength: 0, padLength: 2 });
  });

  it('rejects padding as long as the payload or longer, PADDED with no payload, stream 0', () => {
    const a = at3(frame(T.DATA, F.PADDED, 1, [3, 0, 0]));
    expect(parseData(a.h, a.buf, a.off)).toBe('h2_bad_padding');
    const b = at3(frame(T.DATA, F.PADDED, 1, [200, 1, 2]));
    expect(parseData(b.h, b.buf, b.off)).toBe('h2_bad_padding');
    const c = at3(frame(T.DATA, F.PADDED, 1));
    expect(parseData(c.h, c.buf, c.off)).toBe('h2_bad_padding');
    const d = at3(data(0, 'x'));
    expect(parseData(d.h, d.buf, d.off)).toBe('h2_bad_stream_id');
  });
});

describe('HEADERS', () => {
  it('gives the fragment, END_STREAM and END_HEADERS', () => {
    const { h, buf, off } = at3(headers(1, hpackIndexed(2, 4, 6), { endStream: true }));
    const v = parseHeaders(h, buf, off);
    expect(v).toEqual({ fragmentOffset: off, fragmentLength: 3, padLength: 0, endStream: true, endHeaders: true, priority: null });
  });

  it('skips padding and the PRIORITY fields', () => {
    const { h, buf, off } = at3(headers(13, hpackIndexed(8), { pad: 5, priority: { dependency: 11, weight: 16, exclusive: true }, endHeaders: false }));
    const v = parseHeaders(h, buf, off);
    if (typeof v === 'string') throw new Error(v);
    expect(v.fragmentOffset).toBe(off + 1 + 5);
    expect(buf.subarray(v.fragmentOffset, v.fragmentOffset + v.fragmentLength)).toEqual(hpackIndexed(8));
    expect(v).toMatchObject({ padLength: 5, endHeaders: false, endStream: false, priority: { exclusive: true, dependency: 11, weight: 16 } });
  });

  it('rejects bad padding, a PRIORITY flag without its 5 bytes, stream 0, self-dependency', () => {
    const a = at3(frame(T.HEADERS, F.PADDED | F.END_HEADERS, 1, [4, 0x88, 0, 0]));
    expect(parseHeaders(a.h, a.buf, a.off)).toBe('h2_bad_padding');
    const b = at3(frame(T.HEADERS, F.PRIORITY | F.END_HEADERS, 1, [0, 0, 0]));
    expect(parseHeaders(b.h, b.buf, b.off)).toBe('h2_bad_frame_size');
    // the 5 priority bytes are there, but the padding eats into them
    const c = at3(frame(T.HEADERS, F.PRIORITY | F.PADDED | F.END_HEADERS, 1, [4, 0, 0, 0, 3, 15, 0, 0]));
    expect(parseHeaders(c.h, c.buf, c.off)).toBe('h2_bad_padding');
    const d = at3(headers(0, hpackIndexed(8)));
    expect(parseHeaders(d.h, d.buf, d.off)).toBe('h2_bad_stream_id');
    const e = at3(headers(5, hpackIndexed(8), { priority: { dependency: 5, weight: 1 } }));
    expect(parseHeaders(e.h, e.buf, e.off)).toBe('h2_self_dependency');
  });
});

describe('PRIORITY', () => {
  it('reads exactly 5 bytes', () => {
    const { h, buf, off } = at3(priority(3, { dependency: 0, weight: 201 }));
    expect(parsePriority(h, buf, off)).toEqual({ exclusive: false, dependency: 0, weight: 201 });
  });

  it('rejects other sizes, stream 0 and self-dependency', () => {
    for (const n of [0, 4, 6]) {
      const a = at3(frame(T.PRIORITY, 0, 3, Buffer.alloc(n)));
      expect(parsePriority(a.h, a.buf, a.off)).toBe('h2_bad_frame_size');
    }
    const b = at3(priority(0, { dependency: 1, weight: 1 }));
    expect(parsePriority(b.h, b.buf, b.off)).toBe('h2_bad_stream_id');
    const c = at3(priority(7, { dependency: 7, weight: 1 }));
    expect(parsePriority(c.h, c.buf, c.off)).toBe('h2_self_dependency');
  });
});

describe('RST_STREAM', () => {
  it('reads the error code', () => {
    const { h, buf, off } = at3(rstStream(13, ERR.REFUSED_STREAM));
    expect(parseRstStream(h, buf, off)).toEqual({ errorCode: 7 });
  });

  it('rejects sizes other than 4 and stream 0', () => {
    for (const n of [0, 3, 5, 8]) {
      const a = at3(frame(T.RST_STREAM, 0, 1, Buffer.alloc(n)));
      expect(parseRstStream(a.h, a.buf, a.off)).toBe('h2_bad_frame_size');
    }
    const b = at3(rstStream(0, 0));
    expect(parseRstStream(b.h, b.buf, b.off)).toBe('h2_bad_stream_id');
  });
});

describe('SETTINGS', () => {
  it('reads every parameter, the last value of each winning, unknown ids kept', () => {
    const { h, buf, off } = at3(settings([
      [SETTINGS.MAX_CONCURRENT_STREAMS, 100],
      [SETTINGS.HEADER_TABLE_SIZE, 0],
      [SETTINGS.MAX_FRAME_SIZE, 16777215],
      [0x99, 7],
      [SETTINGS.MAX_CONCURRENT_STREAMS, 128],
      [SETTINGS.INITIAL_WINDOW_SIZE, 0x7fffffff],
      [SETTINGS.ENABLE_PUSH, 0],
      [SETTINGS.MAX_HEADER_LIST_SIZE, 65536],
    ]));
    const v = parseSettings(h, buf, off);
    if (typeof v === 'string') throw new Error(v);
    expect(v).toMatchObject({
      ack: false, maxConcurrentStreams: 128, headerTableSize: 0, maxFrameSize: 16777215,
      initialWindowSize: 0x7fffffff, enablePush: 0, maxHeaderListSize: 65536,
    });
    expect(v.params.length).toBe(8);
    expect(v.params[3]).toEqual({ id: 0x99, value: 7 });
  });

  it('an empty SETTINGS and an ACK set nothing', () => {
    const a = at3(settings());
    expect(parseSettings(a.h, a.buf, a.off)).toMatchObject({ ack: false, params: [], maxConcurrentStreams: null, maxFrameSize: null, headerTableSize: null });
    const b = at3(settingsAck());
    expect(parseSettings(b.h, b.buf, b.off)).toMatchObject({ ack: true, params: [] });
  });

  it('rejects a length not a multiple of 6, an ACK with a payload, a stream id, values out of range', () => {
    for (const n of [1, 5, 7, 11]) {
      const a = at3(frame(T.SETTINGS, 0, 0, Buffer.alloc(n)));
      expect(parseSettings(a.h, a.buf, a.off)).toBe('h2_bad_frame_size');
    }
    const b = at3(frame(T.SETTINGS, F.ACK, 0, Buffer.alloc(6)));
    expect(parseSettings(b.h, b.buf, b.off)).toBe('h2_bad_frame_size');
    const c = at3(frame(T.SETTINGS, 0, 1));
    expect(parseSettings(c.h, c.buf, c.off)).toBe('h2_bad_stream_id');
    for (const p of [[SETTINGS.ENABLE_PUSH, 2], [SETTINGS.INITIAL_WINDOW_SIZE, 0x80000000], [SETTINGS.MAX_FRAME_SIZE, 16383], [SETTINGS.MAX_FRAME_SIZE, 16777216]] as const) {
      const d = at3(settings([p]));
      expect(parseSettings(d.h, d.buf, d.off)).toBe('h2_bad_setting_value');
    }
  });
});

describe('PUSH_PROMISE', () => {
  it('reads the promised id and the fragment, with and without padding', () => {
    const a = at3(pushPromise(1, 2, hpackIndexed(2, 4)));
    expect(parsePushPromise(a.h, a.buf, a.off)).toEqual({ promisedStreamId: 2, fragmentOffset: a.off + 4, fragmentLength: 2, padLength: 0, endHeaders: true });
    const b = at3(pushPromise(3, 4, hpackIndexed(2), { pad: 2, endHeaders: false }));
    expect(parsePushPromise(b.h, b.buf, b.off)).toEqual({ promisedStreamId: 4, fragmentOffset: b.off + 5, fragmentLength: 1, padLength: 2, endHeaders: false });
  });

  it('rejects a short payload, bad padding, stream 0, promised id 0', () => {
    const a = at3(frame(T.PUSH_PROMISE, F.END_HEADERS, 1, [0, 0, 2]));
    expect(parsePushPromise(a.h, a.buf, a.off)).toBe('h2_bad_frame_size');
    const b = at3(frame(T.PUSH_PROMISE, F.PADDED | F.END_HEADERS, 1, [2, 0, 0, 0, 2]));
    expect(parsePushPromise(b.h, b.buf, b.off)).toBe('h2_bad_padding');
    const c = at3(frame(T.PUSH_PROMISE, F.PADDED | F.END_HEADERS, 1, [9, 0, 0, 0, 2]));
    expect(parsePushPromise(c.h, c.buf, c.off)).toBe('h2_bad_padding');
    const d = at3(pushPromise(0, 2, ''));
    expect(parsePushPromise(d.h, d.buf, d.off)).toBe('h2_bad_stream_id');
    const e = at3(pushPromise(1, 0, ''));
    expect(parsePushPromise(e.h, e.buf, e.off)).toBe('h2_bad_stream_id');
  });
});

describe('PING', () => {
  it('reads the ACK flag and the opaque data', () => {
    const a = at3(ping(0xdeadbeef, 42, { ack: true }));
    expect(parsePing(a.h, a.buf, a.off)).toEqual({ ack: true, opaqueHigh: 0xdeadbeef, opaqueLow: 42 });
  });

  it('rejects sizes other than 8 and a stream id', () => {
    for (const n of [0, 7, 9, 16]) {
      const a = at3(frame(T.PING, 0, 0, Buffer.alloc(n)));
      expect(parsePing(a.h, a.buf, a.off)).toBe('h2_bad_frame_size');
    }
    const b = at3(frame(T.PING, 0, 1, Buffer.alloc(8)));
    expect(parsePing(b.h, b.buf, b.off)).toBe('h2_bad_stream_id');
  });
});

describe('GOAWAY', () => {
  it('reads last-stream-id (reserved bit masked), error code and debug data', () => {
    const a = at3(goaway(0x7fffffff, ERR.NO_ERROR));
    expect(parseGoaway(a.h, a.buf, a.off)).toEqual({ lastStreamId: 0x7fffffff, errorCode: 0, debugOffset: a.off + 8, debugLength: 0 });
    const f = Buffer.from(goaway(5, ERR.ENHANCE_YOUR_CALM, 'too_many_pings'));
    f[9] |= 0x80;
    const b = at3(f);
    const v = parseGoaway(b.h, b.buf, b.off);
    if (typeof v === 'string') throw new Error(v);
    expect(v).toMatchObject({ lastStreamId: 5, errorCode: 11 });
    expect(text(b.buf, v.debugOffset, v.debugLength)).toBe('too_many_pings');
  });

  it('rejects fewer than 8 bytes and a stream id', () => {
    for (const n of [0, 4, 7]) {
      const a = at3(frame(T.GOAWAY, 0, 0, Buffer.alloc(n)));
      expect(parseGoaway(a.h, a.buf, a.off)).toBe('h2_bad_frame_size');
    }
    const b = at3(frame(T.GOAWAY, 0, 3, Buffer.alloc(8)));
    expect(parseGoaway(b.h, b.buf, b.off)).toBe('h2_bad_stream_id');
  });
});

describe('WINDOW_UPDATE', () => {
  it('reads the increment on the connection and on a stream', () => {
    const a = at3(windowUpdate(0, 0x7fffffff));
    expect(parseWindowUpdate(a.h, a.buf, a.off)).toEqual({ increment: 0x7fffffff });
    const b = at3(windowUpdate(9, 65535));
    expect(parseWindowUpdate(b.h, b.buf, b.off)).toEqual({ increment: 65535 });
  });

  it('rejects sizes other than 4 and an increment of 0', () => {
    for (const n of [0, 3, 5, 8]) {
      const a = at3(frame(T.WINDOW_UPDATE, 0, 0, Buffer.alloc(n, 1)));
      expect(parseWindowUpdate(a.h, a.buf, a.off)).toBe('h2_bad_frame_size');
    }
    const b = at3(windowUpdate(1, 0));
    expect(parseWindowUpdate(b.h, b.buf, b.off)).toBe('h2_zero_window_increment');
    // the reserved bit does not count towards the increment
    const c = at3(frame(T.WINDOW_UPDATE, 0, 1, [0x80, 0, 0, 0]));
    expect(parseWindowUpdate(c.h, c.buf, c.off)).toBe('h2_zero_window_increment');
  });
});

describe('CONTINUATION', () => {
  it('gives the fragment and END_HEADERS, and rejects stream 0', () => {
    const a = at3(continuation(1, hpackIndexed(4, 6), { endHeaders: false }));
    expect(parseContinuation(a.h, a.buf, a.off)).toEqual({ fragmentOffset: a.off, fragmentLength: 2, endHeaders: false });
    const b = at3(continuation(0, ''));
    expect(parseContinuation(b.h, b.buf, b.off)).toBe('h2_bad_stream_id');
  });
});

describe('plausibleFrameHeader (resynchronisation)', () => {
  const ok = (f: Buffer, fromClient: boolean, max = 16384): boolean => plausibleFrameHeader(f, 0, fromClient, max);

  it('accepts the frames real peers send', () => {
    for (const f of [settings([[3, 100]]), settingsAck(), windowUpdate(0, 1), windowUpdate(1, 1), headers(1, 'x'), data(1, 'x', { endStream: true }),
      continuation(1, 'x'), priority(3, { dependency: 0, weight: 1 }), rstStream(1, 8), ping(), goaway(1, 0, 'bye')]) {
      expect(ok(f, true)).toBe(true);
      expect(ok(f, false)).toBe(true);
    }
    expect(ok(pushPromise(1, 2, 'x'), false)).toBe(true);
    expect(ok(data(2, 'x'), false)).toBe(true); // a pushed response
    expect(ok(headers(2, 'x'), false)).toBe(true);
  });

  it('refuses unknown types, undefined flags, the reserved bit, lengths over the max frame size', () => {
    expect(ok(frame(0x0a, 0, 0, 'x'), true)).toBe(false);
    expect(ok(frame(T.DATA, 0x02, 1, 'x'), true)).toBe(false);
    expect(ok(frame(T.SETTINGS, 0x02, 0), true)).toBe(false);
    expect(ok(frame(T.DATA, 0, 1, 'x', true), true)).toBe(false);
    expect(ok(frameHeader(16385, T.DATA, 0, 1), true)).toBe(false);
    expect(ok(frameHeader(16385, T.DATA, 0, 1), true, 32768)).toBe(true);
  });

  it('refuses stream ids against the type rules and fixed sizes', () => {
    expect(ok(data(0, 'x'), false)).toBe(false);
    expect(ok(data(2, 'x'), true)).toBe(false); // a client never sends DATA on a pushed stream
    expect(ok(headers(2, 'x'), true)).toBe(false);
    expect(ok(continuation(2, 'x'), true)).toBe(false);
    expect(ok(pushPromise(1, 2, 'x'), true)).toBe(false); // clients never push
    expect(ok(pushPromise(2, 4, 'x'), false)).toBe(false);
    expect(ok(frame(T.SETTINGS, 0, 1), true)).toBe(false);
    expect(ok(frame(T.SETTINGS, 0, 0, Buffer.alloc(5)), true)).toBe(false);
    expect(ok(frame(T.SETTINGS, F.ACK, 0, Buffer.alloc(6)), true)).toBe(false);
    expect(ok(frame(T.PING, 0, 1, Buffer.alloc(8)), true)).toBe(false);
    expect(ok(frame(T.PING, 0, 0, Buffer.alloc(7)), true)).toBe(false);
    expect(ok(frame(T.GOAWAY, 0, 0, Buffer.alloc(7)), true)).toBe(false);
    expect(ok(frame(T.WINDOW_UPDATE, 0, 0, Buffer.alloc(5)), true)).toBe(false);
    expect(ok(frame(T.RST_STREAM, 0, 0, Buffer.alloc(4)), true)).toBe(false);
    expect(ok(frame(T.PRIORITY, 0, 1, Buffer.alloc(4)), true)).toBe(false);
    expect(ok(Buffer.alloc(9), true)).toBe(false); // zeros: DATA on stream 0
  });
});
