/**
 * HTTP/2 frame builders for tests (RFC 9113 sections 4 and 6), shared by the frame, session and
 * fixture tests.
 *
 *   const bytes = Buffer.concat([PREFACE, settings([[SETTINGS.MAX_CONCURRENT_STREAMS, 100]]),
 *     headers(1, hpackIndexed(2, 4, 6), { endStream: true }), data(1, 'hello', { pad: 3 })]);
 *
 * `frame` writes exactly what it is given (any type, flags, stream id, reserved bit): tests of
 * hostile input build wrong frames with it. The per-type helpers build correct frames.
 */

export const PREFACE = Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n', 'latin1');

export const T = {
  DATA: 0, HEADERS: 1, PRIORITY: 2, RST_STREAM: 3, SETTINGS: 4,
  PUSH_PROMISE: 5, PING: 6, GOAWAY: 7, WINDOW_UPDATE: 8, CONTINUATION: 9,
} as const;

export const F = { END_STREAM: 0x1, ACK: 0x1, END_HEADERS: 0x4, PADDED: 0x8, PRIORITY: 0x20 } as const;

export const SETTINGS = {
  HEADER_TABLE_SIZE: 1, ENABLE_PUSH: 2, MAX_CONCURRENT_STREAMS: 3,
  INITIAL_WINDOW_SIZE: 4, MAX_FRAME_SIZE: 5, MAX_HEADER_LIST_SIZE: 6,
} as const;

export const ERR = {
  NO_ERROR: 0, PROTOCOL_ERROR: 1, INTERNAL_ERROR: 2, FLOW_CONTROL_ERROR: 3, SETTINGS_TIMEOUT: 4,
  STREAM_CLOSED: 5, FRAME_SIZE_ERROR: 6, REFUSED_STREAM: 7, CANCEL: 8, COMPRESSION_ERROR: 9,
  CONNECT_ERROR: 10, ENHANCE_YOUR_CALM: 11, INADEQUATE_SECURITY: 12, HTTP_1_1_REQUIRED: 13,
} as const;

export type Bytes = Buffer | string | readonly number[];

export function bytes(b: Bytes): Buffer {
  if (Buffer.isBuffer(b)) return b;
  return typeof b === 'string' ? Buffer.from(b, 'latin1') : Buffer.from(b);
}

/** Just a 9-byte frame header; `length` may differ from what follows (huge or lying lengths). */
export function frameHeader(length: number, type: number, flags: number, streamId: number, reserved = false): Buffer {
  const h = Buffer.alloc(9);
  h[0] = (length >>> 16) & 0xff;
  h[1] = (length >>> 8) & 0xff;
  h[2] = length & 0xff;
  h[3] = type;
  h[4] = flags;
  h.writeUInt32BE(((streamId & 0x7fffffff) | (reserved ? 0x80000000 : 0)) >>> 0, 5);
  return h;
}

/** A frame: header with the payload's length, then the payload. */
export function frame(type: number, flags: number, streamId: number, payload: Bytes = Buffer.alloc(0), reserved = false): Buffer {
  const p = bytes(payload);
  return Buffer.concat([frameHeader(p.length, type, flags, streamId, reserved), p]);
}

/** Pad Length + content + padding, and the PADDED flag, when `pad` is given. */
function withPadding(content: Buffer, pad: number | undefined): { payload: Buffer; flag: number } {
  if (pad === undefined) return { payload: content, flag: 0 };
  return { payload: Buffer.concat([Buffer.from([pad]), content, Buffer.alloc(pad)]), flag: F.PADDED };
}

export function data(streamId: number, body: Bytes, opts: { endStream?: boolean; pad?: number } = {}): Buffer {
  const { payload, flag } = withPadding(bytes(body), opts.pad);
  return frame(T.DATA, flag | (opts.endStream ? F.END_STREAM : 0), streamId, payload);
}

export interface PrioritySpec {
  dependency: number;
  /** 1..256 */
  weight: number;
  exclusive?: boolean;
}

function priorityBytes(p: PrioritySpec): Buffer {
  const b = Buffer.alloc(5);
  b.writeUInt32BE(((p.dependency & 0x7fffffff) | (p.exclusive ? 0x80000000 : 0)) >>> 0, 0);
  b[4] = p.weight - 1;
  return b;
}

/** HEADERS; END_HEADERS unless `endHeaders: false` (then CONTINUATION frames must follow). */
export function headers(
  streamId: number,
  block: Bytes,
  opts: { endStream?: boolean; endHeaders?: boolean; pad?: number; priority?: PrioritySpec } = {},
): Buffer {
  const content = opts.priority ? Buffer.concat([priorityBytes(opts.priority), bytes(block)]) : bytes(block);
  const { payload, flag } = withPadding(content, opts.pad);
  const flags = flag | (opts.endStream ? F.END_STREAM : 0) | (opts.endHeaders === false ? 0 : F.END_HEADERS) | (opts.priority ? F.PRIORITY : 0);
  return frame(T.HEADERS, flags, streamId, payload);
}

export function priority(streamId: number, p: PrioritySpec): Buffer {
  return frame(T.PRIORITY, 0, streamId, priorityBytes(p));
}

export function rstStream(streamId: number, errorCode: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(errorCode >>> 0, 0);
  return frame(T.RST_STREAM, 0, streamId, b);
}

/** SETTINGS with these (id, value) pairs, in order. */
export function settings(params: ReadonlyArray<readonly [number, number]> = []): Buffer {
  const b = Buffer.alloc(params.length * 6);
  params.forEach(([id, value], i) => {
    b.writeUInt16BE(id, i * 6);
    b.writeUInt32BE(value >>> 0, i * 6 + 2);
  });
  return frame(T.SETTINGS, 0, 0, b);
}

export function settingsAck(): Buffer {
  return frame(T.SETTINGS, F.ACK, 0);
}

export function pushPromise(streamId: number, promisedId: number, block: Bytes, opts: { endHeaders?: boolean; pad?: number } = {}): Buffer {
  const id = Buffer.alloc(4);
  id.writeUInt32BE(promisedId >>> 0, 0);
  const { payload, flag } = withPadding(Buffer.concat([id, bytes(block)]), opts.pad);
  return frame(T.PUSH_PROMISE, flag | (opts.endHeaders === false ? 0 : F.END_HEADERS), streamId, payload);
}

/** PING with 8 opaque bytes (two 32-bit words). */
export function ping(high = 0, low = 0, opts: { ack?: boolean } = {}): Buffer {
  const b = Buffer.alloc(8);
  b.writeUInt32BE(high >>> 0, 0);
  b.writeUInt32BE(low >>> 0, 4);
  return frame(T.PING, opts.ack ? F.ACK : 0, 0, b);
}

export function goaway(lastStreamId: number, errorCode: number, debug: Bytes = ''): Buffer {
  const b = Buffer.alloc(8);
  b.writeUInt32BE(lastStreamId >>> 0, 0);
  b.writeUInt32BE(errorCode >>> 0, 4);
  return frame(T.GOAWAY, 0, 0, Buffer.concat([b, bytes(debug)]));
}

export function windowUpdate(streamId: number, increment: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(increment >>> 0, 0);
  return frame(T.WINDOW_UPDATE, 0, streamId, b);
}

export function continuation(streamId: number, block: Bytes, opts: { endHeaders?: boolean } = {}): Buffer {
  return frame(T.CONTINUATION, opts.endHeaders === false ? 0 : F.END_HEADERS, streamId, block);
}

/**
 * An HPACK header block of indexed static-table fields (RFC 7541 6.1, Appendix A): 2 is
 * `:method GET`, 3 `:method POST`, 4 `:path /`, 6 `:scheme http`, 8 `:status 200`, 13
 * `:status 404`, 14 `:status 500`. Enough for requests and responses that need no literals.
 */
export function hpackIndexed(...indices: number[]): Buffer {
  return Buffer.from(indices.map((i) => 0x80 | i));
}
