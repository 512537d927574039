/**
 * HTTP/2 frames (RFC 9113 sections 4 and 6): the 9-byte frame header and a view per frame type,
 * over (buffer, offset), in place.
 *
 * Nothing here throws on wire data and nothing keeps a reference to the bytes. `readFrameHeader`
 * says `truncated` when fewer than 9 bytes are there (a length problem, not a content one). The
 * payload views take the header and the payload's offset (the payload is
 * buf[off, off + h.length), all of it present: `frame-stream.ts` guarantees that) and return a
 * small object with offsets into the same buffer, or a rejection: a stable snake_case name
 * (`H2Rejection`) for a frame the RFC says the receiver must treat as an error. Offsets in a view
 * are absolute (into `buf`), so a fragment can be handed to the HPACK decoder without slicing.
 *
 * Order of use: `frame-stream.ts` splits a byte stream into frames and calls its sink once per
 * frame with the header; the sink picks the view by `h.type` (unknown types have no view: RFC
 * 9113 5.5 says receivers ignore them, so they are skipped, never an error).
 */

/** Every frame starts with this many bytes (RFC 9113 4.1). */
export const FRAME_HEADER_LENGTH = 9;

/** Largest length the 24-bit field can carry; a peer may allow up to this with SETTINGS_MAX_FRAME_SIZE. */
export const MAX_FRAME_LENGTH = 0xffffff;

/** SETTINGS_MAX_FRAME_SIZE until the peer says otherwise (RFC 9113 6.5.2), and its least legal value. */
export const DEFAULT_MAX_FRAME_SIZE = 16384;

/** Largest stream id (31 bits): gRPC's first, graceful GOAWAY carries it as last-stream-id. */
export const MAX_STREAM_ID = 0x7fffffff;

export const FrameType = {
  DATA: 0,
  HEADERS: 1,
  PRIORITY: 2,
  RST_STREAM: 3,
  SETTINGS: 4,
  PUSH_PROMISE: 5,
  PING: 6,
  GOAWAY: 7,
  WINDOW_UPDATE: 8,
  CONTINUATION: 9,
} as const;

/** Names by type, for logs and bounded labels; `frameTypeName` says `UNKNOWN` past the end. */
export const FRAME_TYPE_NAMES = [
  'DATA', 'HEADERS', 'PRIORITY', 'RST_STREAM', 'SETTINGS',
  'PUSH_PROMISE', 'PING', 'GOAWAY', 'WINDOW_UPDATE', 'CONTINUATION',
] as const;

/** Types above this one are extensions (ALTSVC, ORIGIN, PRIORITY_UPDATE...) or unknown: skipped. */
export const LAST_KNOWN_FRAME_TYPE = FrameType.CONTINUATION;

export function frameTypeName(type: number): string {
  return type >= 0 && type <= LAST_KNOWN_FRAME_TYPE ? FRAME_TYPE_NAMES[type] : 'UNKNOWN';
}

/* Flags (RFC 9113 6): the same bit means different things in different frame types. */
export const FLAG_END_STREAM = 0x01; // DATA, HEADERS
export const FLAG_ACK = 0x01; // SETTINGS, PING
export const FLAG_END_HEADERS = 0x04; // HEADERS, PUSH_PROMISE, CONTINUATION
export const FLAG_PADDED = 0x08; // DATA, HEADERS, PUSH_PROMISE
export const FLAG_PRIORITY = 0x20; // HEADERS

/**
 * The flags each known type defines, by type. Any other bit is legal on the wire (receivers
 * ignore unknown flags, RFC 9113 4.1) but no implementation sets one, so resynchronisation
 * takes a header with a foreign flag as not a frame header.
 */
export const DEFINED_FLAGS: readonly number[] = [
  FLAG_END_STREAM | FLAG_PADDED, // DATA
  FLAG_END_STREAM | FLAG_END_HEADERS | FLAG_PADDED | FLAG_PRIORITY, // HEADERS
  0, // PRIORITY
  0, // RST_STREAM
  FLAG_ACK, // SETTINGS
  FLAG_END_HEADERS | FLAG_PADDED, // PUSH_PROMISE
  FLAG_ACK, // PING
  0, // GOAWAY
  0, // WINDOW_UPDATE
  FLAG_END_HEADERS, // CONTINUATION
];

/** Error codes (RFC 9113 7), by value. */
export const ERROR_CODE_NAMES = [
  'NO_ERROR', 'PROTOCOL_ERROR', 'INTERNAL_ERROR', 'FLOW_CONTROL_ERROR', 'SETTINGS_TIMEOUT',
  'STREAM_CLOSED', 'FRAME_SIZE_ERROR', 'REFUSED_STREAM', 'CANCEL', 'COMPRESSION_ERROR',
  'CONNECT_ERROR', 'ENHANCE_YOUR_CALM', 'INADEQUATE_SECURITY', 'HTTP_1_1_REQUIRED',
] as const;

export type ErrorCodeName = (typeof ERROR_CODE_NAMES)[number];

export const ErrorCode: { readonly [K in ErrorCodeName]: number } =
  Object.fromEntries(ERROR_CODE_NAMES.map((n, i) => [n, i])) as never;

/**
 * The name of an error code; `UNKNOWN` for any other value (RFC 9113 7: unknown codes must not
 * trigger special behaviour, and a label made of them must stay bounded).
 */
export function errorCodeName(code: number): ErrorCodeName | 'UNKNOWN' {
  return code >= 0 && code < ERROR_CODE_NAMES.length ? ERROR_CODE_NAMES[code] : 'UNKNOWN';
}

/* SETTINGS parameters (RFC 9113 6.5.2). */
export const SETTINGS_HEADER_TABLE_SIZE = 0x1;
export const SETTINGS_ENABLE_PUSH = 0x2;
export const SETTINGS_MAX_CONCURRENT_STREAMS = 0x3;
export const SETTINGS_INITIAL_WINDOW_SIZE = 0x4;
export const SETTINGS_MAX_FRAME_SIZE = 0x5;
export const SETTINGS_MAX_HEADER_LIST_SIZE = 0x6;

/** The client connection preface (RFC 9113 3.4), before the client's first SETTINGS. */
export const CLIENT_PREFACE = Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n', 'latin1');
export const CLIENT_PREFACE_LENGTH = 24;

/**
 * Whether buf[off, off + len) starts with the client preface: `yes` once all 24 bytes match,
 * `no` as soon as one available byte differs, `need_more` when every byte there matches but
 * fewer than 24 are there (a protocol detector waits for the next segment).
 */
export function matchPreface(buf: Buffer, off: number, len: number): 'yes' | 'no' | 'need_more' {
  const n = len < CLIENT_PREFACE_LENGTH ? len : CLIENT_PREFACE_LENGTH;
  for (let i = 0; i < n; i++) if (buf[off + i] !== CLIENT_PREFACE[i]) return 'no';
  return n === CLIENT_PREFACE_LENGTH ? 'yes' : 'need_more';
}

/*
 * Field reads by hand, as in decode/packet.ts: Buffer#readUInt32BE validates its arguments on
 * every call. Callers check lengths first.
 */
function u16(b: Buffer, p: number): number {
  return (b[p] << 8) | b[p + 1];
}
function u32(b: Buffer, p: number): number {
  return ((b[p] << 24) | (b[p + 1] << 16) | (b[p + 2] << 8) | b[p + 3]) >>> 0;
}
/** A 31-bit stream id: the reserved top bit is ignored on receipt (RFC 9113 4.1). */
function sid(b: Buffer, p: number): number {
  return ((b[p] & 0x7f) << 24) | (b[p + 1] << 16) | (b[p + 2] << 8) | b[p + 3];
}

export interface FrameHeader {
  /** Payload length, 0 .. 2^24-1. */
  length: number;
  type: number;
  flags: number;
  /** 31 bits, the reserved bit masked. */
  streamId: number;
}

export function newFrameHeader(): FrameHeader {
  return { length: 0, type: 0, flags: 0, streamId: 0 };
}

/**
 * Fills a caller-owned header from buf[off, off + 9) (the caller checked 9 bytes are there): the
 * splitter reuses one header object for every frame, so the hot path allocates nothing.
 */
export function decodeFrameHeader(buf: Buffer, off: number, out: FrameHeader): void {
  out.length = (buf[off] << 16) | (buf[off + 1] << 8) | buf[off + 2];
  out.type = buf[off + 3];
  out.flags = buf[off + 4];
  out.streamId = sid(buf, off + 5);
}

/** The frame header at buf[off], or `truncated` when fewer than 9 of the `len` bytes there are present. */
export function readFrameHeader(buf: Buffer, off: number, len: number): FrameHeader | 'truncated' {
  if (len < FRAME_HEADER_LENGTH || off + FRAME_HEADER_LENGTH > buf.length) return 'truncated';
  const h = newFrameHeader();
  decodeFrameHeader(buf, off, h);
  return h;
}

/**
 * Could the 9 bytes at buf[off] be a real frame header sent by this side? Used only to find the
 * framing again after bytes were lost (a single false positive would misparse everything after
 * it, so this is strict where the RFC is lenient): a known type; a length the receiver allows
 * (`maxFrameSize`) and the type's fixed size; only the flags the type defines; the reserved bit
 * clear; and the stream id rules of the type: zero for connection frames, non-zero for stream
 * frames, odd for what only a client may send on its own streams (a client never sends HEADERS,
 * DATA or CONTINUATION on a pushed, even stream; a server never sends PUSH_PROMISE on one), no
 * PUSH_PROMISE from a client. The caller checked 9 bytes are there.
 */
export function plausibleFrameHeader(buf: Buffer, off: number, fromClient: boolean, maxFrameSize: number): boolean {
  const type = buf[off + 3];
  if (type > LAST_KNOWN_FRAME_TYPE) return false;
  const flags = buf[off + 4];
  if ((flags & ~DEFINED_FLAGS[type]) !== 0) return false;
  if ((buf[off + 5] & 0x80) !== 0) return false;
  const length = (buf[off] << 16) | (buf[off + 1] << 8) | buf[off + 2];
  if (length > maxFrameSize) return false;
  const stream = sid(buf, off + 5);
  switch (type) {
    case FrameType.DATA:
    case FrameType.HEADERS:
    case FrameType.CONTINUATION:
      if (stream === 0) return false;
      if (fromClient && (stream & 1) === 0) return false;
      break;
    case FrameType.PUSH_PROMISE:
      if (fromClient || stream === 0 || (stream & 1) === 0) return false;
      if (length < 4) return false;
      break;
    case FrameType.PRIORITY:
      if (stream === 0 || length !== 5) return false;
      break;
    case FrameType.RST_STREAM:
      if (stream === 0 || length !== 4) return false;
      break;
    case FrameType.SETTINGS:
      if (stream !== 0 || length % 6 !== 0 || ((flags & FLAG_ACK) !== 0 && length !== 0)) return false;
      break;
    case FrameType.PING:
      if (stream !== 0 || length !== 8) return false;
      break;
    case FrameType.GOAWAY:
      if (stream !== 0 || length < 8) return false;
      break;
    case FrameType.WINDOW_UPDATE:
      if (length !== 4) return false;
      break;
  }
  return true;
}

/**
 * Why a frame is not acceptable (RFC 9113 section 6: each is a connection or stream error for
 * the receiver, which usually answers with GOAWAY or RST_STREAM). Stable names: the lead maps
 * them to anomaly counters.
 */
export type H2Rejection =
  /** Pad Length >= the rest of the payload, or PADDED on a payload too short to hold it (6.1). */
  | 'h2_bad_padding'
  /** A fixed-size frame of the wrong size (PING 8, RST_STREAM 4, WINDOW_UPDATE 4, PRIORITY 5, SETTINGS a multiple of 6 and 0 with ACK, GOAWAY at least 8, ...): FRAME_SIZE_ERROR. */
  | 'h2_bad_frame_size'
  /** Stream id 0 on a stream frame, non-zero on a connection frame, or a promised id of 0: PROTOCOL_ERROR. */
  | 'h2_bad_stream_id'
  /** WINDOW_UPDATE with an increment of 0 (6.9). */
  | 'h2_zero_window_increment'
  /** A SETTINGS value out of range: ENABLE_PUSH not 0/1, INITIAL_WINDOW_SIZE > 2^31-1, MAX_FRAME_SIZE outside 2^14..2^24-1 (6.5.2). */
  | 'h2_bad_setting_value'
  /** A stream depending on itself (5.3.1). */
  | 'h2_self_dependency';

export interface PriorityFields {
  exclusive: boolean;
  /** Stream this one depends on (31 bits). */
  dependency: number;
  /** 1..256 (the wire carries weight - 1). */
  weight: number;
}

/**
 * The Pad Length of a frame (0 without PADDED), or -1 when it cannot be right. With PADDED the
 * payload's first byte is Pad Length. RFC 9113 6.1: "If the length of the padding is the length
 * of the frame payload or greater, the recipient MUST treat this as a connection error"; the
 * payload counted there includes the Pad Length octet (as nghttp2 reads it: `padlen + 1 >
 * payloadleft` is the error), so pad = length - 1 (empty content) is legal and pad >= length is
 * not. The types with fixed fields (HEADERS' priority, PUSH_PROMISE's promised id) check that
 * those still fit.
 */
function padded(h: FrameHeader, buf: Buffer, off: number): number {
  if ((h.flags & FLAG_PADDED) === 0) return 0;
  if (h.length < 1) return -1;
  const pad = buf[off];
  if (pad >= h.length) return -1;
  return pad;
}

export interface DataFrameView {
  /** Absolute offset and length of the application data (padding removed). */
  dataOffset: number;
  dataLength: number;
  padLength: number;
  endStream: boolean;
}

/** DATA (RFC 9113 6.1). */
export function parseData(h: FrameHeader, buf: Buffer, off: number): DataFrameView | H2Rejection {
  if (h.streamId === 0) return 'h2_bad_stream_id';
  const pad = padded(h, buf, off);
  if (pad < 0) return 'h2_bad_padding';
  const head = (h.flags & FLAG_PADDED) !== 0 ? 1 : 0;
  return {
    dataOffset: off + head,
    dataLength: h.length - head - pad,
    padLength: pad,
    endStream: (h.flags & FLAG_END_STREAM) !== 0,
  };
}

export interface HeadersFrameView {
  /** Absolute offset and length of the header block fragment (padding and priority removed). */
  fragmentOffset: number;
  fragmentLength: number;
  padLength: number;
  endStream: boolean;
  /** The block is complete in this frame; otherwise CONTINUATION frames follow on the same stream. */
  endHeaders: boolean;
  /** Present with the PRIORITY flag (deprecated by RFC 9113 but still sent, by nghttp for one). */
  priority: PriorityFields | null;
}

function readPriority(buf: Buffer, p: number): PriorityFields {
  return { exclusive: (buf[p] & 0x80) !== 0, dependency: sid(buf, p), weight: buf[p + 4] + 1 };
}

/** HEADERS (RFC 9113 6.2). */
export function parseHeaders(h: FrameHeader, buf: Buffer, off: number): HeadersFrameView | H2Rejection {
  if (h.streamId === 0) return 'h2_bad_stream_id';
  const pad = padded(h, buf, off);
  if (pad < 0) return 'h2_bad_padding';
  let p = off + ((h.flags & FLAG_PADDED) !== 0 ? 1 : 0);
  let rest = h.length - (p - off) - pad;
  let priority: PriorityFields | null = null;
  if ((h.flags & FLAG_PRIORITY) !== 0) {
    // The 5 priority bytes come before the fragment and the padding after it: both must fit.
    if (rest < 5) return (h.flags & FLAG_PADDED) !== 0 && h.length - (p - off) >= 5 ? 'h2_bad_padding' : 'h2_bad_frame_size';
    priority = readPriority(buf, p);
    if (priority.dependency === h.streamId) return 'h2_self_dependency';
    p += 5;
    rest -= 5;
  }
  return {
    fragmentOffset: p,
    fragmentLength: rest,
    padLength: pad,
    endStream: (h.flags & FLAG_END_STREAM) !== 0,
    endHeaders: (h.flags & FLAG_END_HEADERS) !== 0,
    priority,
  };
}

/** PRIORITY (RFC 9113 6.3): exactly 5 bytes. nghttp opens idle streams with it: not a request. */
export function parsePriority(h: FrameHeader, buf: Buffer, off: number): PriorityFields | H2Rejection {
  if (h.streamId === 0) return 'h2_bad_stream_id';
  if (h.length !== 5) return 'h2_bad_frame_size';
  const pr = readPriority(buf, off);
  if (pr.dependency === h.streamId) return 'h2_self_dependency';
  return pr;
}

export interface RstStreamFrameView {
  errorCode: number;
}

/** RST_STREAM (RFC 9113 6.4): exactly 4 bytes. REFUSED_STREAM says the stream was not processed. */
export function parseRstStream(h: FrameHeader, buf: Buffer, off: number): RstStreamFrameView | H2Rejection {
  if (h.streamId === 0) return 'h2_bad_stream_id';
  if (h.length !== 4) return 'h2_bad_frame_size';
  return { errorCode: u32(buf, off) };
}

export interface SettingsParam {
  id: number;
  value: number;
}

export interface SettingsFrameView {
  ack: boolean;
  /** Every parameter in wire order (unknown ids included: receivers ignore them, 6.5.2). */
  params: SettingsParam[];
  /** The last value of each parameter the product uses, or null when this frame does not set it (6.5.3: processed in order, so the last one wins). */
  headerTableSize: number | null;
  maxConcurrentStreams: number | null;
  maxFrameSize: number | null;
  initialWindowSize: number | null;
  maxHeaderListSize: number | null;
  enablePush: number | null;
}

/** SETTINGS (RFC 9113 6.5): on stream 0, a multiple of 6 bytes, empty with ACK. */
export function parseSettings(h: FrameHeader, buf: Buffer, off: number): SettingsFrameView | H2Rejection {
  if (h.streamId !== 0) return 'h2_bad_stream_id';
  const ack = (h.flags & FLAG_ACK) !== 0;
  if (h.length % 6 !== 0 || (ack && h.length !== 0)) return 'h2_bad_frame_size';
  const v: SettingsFrameView = {
    ack,
    params: [],
    headerTableSize: null,
    maxConcurrentStreams: null,
    maxFrameSize: null,
    initialWindowSize: null,
    maxHeaderListSize: null,
    enablePush: null,
  };
  for (let p = off, end = off + h.length; p < end; p += 6) {
    const id = u16(buf, p);
    const value = u32(buf, p + 2);
    switch (id) {
      case SETTINGS_HEADER_TABLE_SIZE: v.headerTableSize = value; break;
      case SETTINGS_ENABLE_PUSH:
        if (value > 1) return 'h2_bad_setting_value';
        v.enablePush = value;
        break;
      case SETTINGS_MAX_CONCURRENT_STREAMS: v.maxConcurrentStreams = value; break;
      case SETTINGS_INITIAL_WINDOW_SIZE:
        if (value > MAX_STREAM_ID) return 'h2_bad_setting_value';
        v.initialWindowSize = value;
        break;
      case SETTINGS_MAX_FRAME_SIZE:
        if (value < DEFAULT_MAX_FRAME_SIZE || value > MAX_FRAME_LENGTH) return 'h2_bad_setting_value';
        v.maxFrameSize = value;
        break;
      case SETTINGS_MAX_HEADER_LIST_SIZE: v.maxHeaderListSize = value; break;
    }
    v.params.push({ id, value });
  }
  return v;
}

export interface PushPromiseFrameView {
  /** The promised (server-initiated, even) stream. */
  promisedStreamId: number;
  fragmentOffset: number;
  fragmentLength: number;
  padLength: number;
  endHeaders: boolean;
}

/** PUSH_PROMISE (RFC 9113 6.6): only servers send it, on a client's open stream. */
export function parsePushPromise(h: FrameHeader, buf: Buffer, off: number): PushPromiseFrameView | H2Rejection {
  if (h.streamId === 0) return 'h2_bad_stream_id';
  const pad = padded(h, buf, off);
  if (pad < 0) return 'h2_bad_padding';
  const p = off + ((h.flags & FLAG_PADDED) !== 0 ? 1 : 0);
  const rest = h.length - (p - off) - pad;
  if (rest < 4) return (h.flags & FLAG_PADDED) !== 0 && h.length - (p - off) >= 4 ? 'h2_bad_padding' : 'h2_bad_frame_size';
  const promised = sid(buf, p);
  if (promised === 0) return 'h2_bad_stream_id';
  return {
    promisedStreamId: promised,
    fragmentOffset: p + 4,
    fragmentLength: rest - 4,
    padLength: pad,
    endHeaders: (h.flags & FLAG_END_HEADERS) !== 0,
  };
}

export interface PingFrameView {
  ack: boolean;
  /** The 8 opaque bytes as two 32-bit words: an ACK echoes them, so they pair a PING with its answer. */
  opaqueHigh: number;
  opaqueLow: number;
}

/** PING (RFC 9113 6.7): exactly 8 bytes on stream 0. Not activity: servers close idle connections that PING. */
export function parsePing(h: FrameHeader, buf: Buffer, off: number): PingFrameView | H2Rejection {
  if (h.streamId !== 0) return 'h2_bad_stream_id';
  if (h.length !== 8) return 'h2_bad_frame_size';
  return { ack: (h.flags & FLAG_ACK) !== 0, opaqueHigh: u32(buf, off), opaqueLow: u32(buf, off + 4) };
}

export interface GoawayFrameView {
  /** Highest stream the sender may have processed; streams above it were not (RFC 9113 6.8). */
  lastStreamId: number;
  errorCode: number;
  /** Absolute offset and length of the opaque debug data (often a reason in ASCII). */
  debugOffset: number;
  debugLength: number;
}

/** GOAWAY (RFC 9113 6.8): at least 8 bytes on stream 0. */
export function parseGoaway(h: FrameHeader, buf: Buffer, off: number): GoawayFrameView | H2Rejection {
  if (h.streamId !== 0) return 'h2_bad_stream_id';
  if (h.length < 8) return 'h2_bad_frame_size';
  return { lastStreamId: sid(buf, off), errorCode: u32(buf, off + 4), debugOffset: off + 8, debugLength: h.length - 8 };
}

export interface WindowUpdateFrameView {
  /** 1 .. 2^31-1. */
  increment: number;
}

/** WINDOW_UPDATE (RFC 9113 6.9): exactly 4 bytes, on stream 0 (the connection) or a stream. */
export function parseWindowUpdate(h: FrameHeader, buf: Buffer, off: number): WindowUpdateFrameView | H2Rejection {
  if (h.length !== 4) return 'h2_bad_frame_size';
  const increment = sid(buf, off);
  if (increment === 0) return 'h2_zero_window_increment';
  return { increment };
}

export interface ContinuationFrameView {
  fragmentOffset: number;
  fragmentLength: number;
  endHeaders: boolean;
}

/** CONTINUATION (RFC 9113 6.10): the rest of a header block, no padding. Its order is checked by the splitter. */
export function parseContinuation(h: FrameHeader, _buf: Buffer, off: number): ContinuationFrameView | H2Rejection {
  if (h.streamId === 0) return 'h2_bad_stream_id';
  return { fragmentOffset: off, fragmentLength: h.length, endHeaders: (h.flags & FLAG_END_HEADERS) !== 0 };
}
