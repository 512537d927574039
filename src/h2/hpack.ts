/**
 * A passive HPACK decoder (RFC 7541), only as far as the engine needs: it reads `:method`,
 * `:status`, `:scheme`, `content-length` and `grpc-status` out of a header block, and keeps the
 * dynamic table exactly as the observed peer's decoder does, so later blocks that refer to it
 * are read too. No other field becomes a string: values that are neither wanted nor inserted in
 * the table are skipped without even Huffman-decoding them. `:path` and `:authority` are never
 * read (paths and hosts are unbounded label values and private).
 *
 * One decoder per direction of a connection: the client->server one mirrors the server's HPACK
 * decoder (requests), the server->client one the client's (responses). Call order:
 *   new HpackDecoder(opts) -> [setMaxTableSize(settings)] -> decode(block) ... with lost()
 *   whenever a header block of that direction was not seen (a capture gap).
 *
 * Never throws on wire data, and every allocation is bounded: the table's bytes are kept in one
 * growable byte array of at most the table's size (itself capped at `tableCap`, 64 KiB by
 * default, whatever the peer announces), entry bookkeeping in one typed array of 16 bytes per
 * entry (at most size/32 entries, rounded up to a power of two),
 * and a Huffman scratch of at most 8/5 of the longest accepted string.
 *
 * Failure model. A block that cannot be fully decoded returns a stable snake_case reason (see
 * HPACK_ERRORS). A malformed block ends its decoding there (its later fields are unknown) and,
 * since its later insertions are unknown too, the decoder forgets its dynamic table; so does
 * lost(), and so does starting mid-connection. A forgotten table makes the decoder
 * "desynchronised" (sticky, counted): references to dynamic entries it does not hold are
 * `hpack_index_unknown`, but a reference to a held entry is still exact, because dynamic index
 * 62 + k always means the k-th newest insertion and every insertion after the loss was seen
 * (eviction never changes which entry an index names, only whether it still exists). So static
 * references (`:status` 200 is static index 8), literals and everything inserted since the loss
 * are read correctly, and nothing is ever read wrongly: what is not known is reported unknown.
 * For the same reason a table kept larger than the peer's (the cap, a missed size update) is
 * harmless, and one kept smaller only yields unknowns.
 */

/**
 * Stable names of decoding failures, to be counted as anomalies (snake_case, never renamed).
 * `hpack_index_unknown` and `hpack_table_size_invalid` do not stop a block's decoding; the others
 * end it there and forget the table.
 */
export const HPACK_ERRORS = [
  'hpack_index_unknown', // a dynamic-table index this decoder does not hold (joined mid-stream, a lost block, or a broken peer)
  'hpack_truncated', // the block ended inside a representation (an integer or a string longer than the rest of the block)
  'hpack_integer_overflow', // an integer above 2^31-1, or with more continuation octets than that needs
  'hpack_string_too_long', // a string literal longer than maxStringBytes
  'hpack_huffman_invalid', // EOS inside a string, or padding longer than 7 bits or not all ones (RFC 7541 5.2)
  'hpack_malformed', // index 0 (RFC 7541 6.1)
  'hpack_table_size_invalid', // a size update above the decoding peer's SETTINGS_HEADER_TABLE_SIZE, or after a field (RFC 7541 4.2)
] as const;
export type HpackError = (typeof HPACK_ERRORS)[number];

/**
 * Largest dynamic table kept, whatever SETTINGS_HEADER_TABLE_SIZE or a size update says (64 KiB;
 * nginx, Node.js and Go use 4096). Above it the table is kept at the cap and `tableSizeCapped`
 * counts it: entries the peer still holds but we evicted are then only unknown, never wrong.
 */
export const HPACK_TABLE_SIZE_CAP = 65536;
/** RFC 9113 6.5.2: the initial SETTINGS_HEADER_TABLE_SIZE. */
export const HPACK_DEFAULT_TABLE_SIZE = 4096;
/** Longest string literal accepted (an entry cannot exceed the capped table anyway). */
export const HPACK_DEFAULT_MAX_STRING = 65536;

export interface HpackOptions {
  /**
   * The decoding peer's SETTINGS_HEADER_TABLE_SIZE, when known (default 4096): size updates above
   * it are `hpack_table_size_invalid`. Capped at HPACK_TABLE_SIZE_CAP.
   */
  maxTableSize?: number;
  /**
   * The capture started inside the connection: earlier insertions are unknown. The decoder starts
   * desynchronised, with the table at the cap (a larger table than the peer's is harmless).
   */
  joinedMidStream?: boolean;
  /** Longest string literal accepted (default 64 KiB); longer is `hpack_string_too_long`. */
  maxStringBytes?: number;
  /**
   * Largest table kept (default HPACK_TABLE_SIZE_CAP). A daemon short of memory may lower it:
   * a table smaller than the peer's only makes references to the entries it lacks unknown.
   */
  tableCap?: number;
}

/**
 * What one header block said. The decoder returns the same object on every call: read it before
 * the next decode(). Numbers are -1 when the field is absent and -2 when present but not a valid
 * non-negative decimal. The first occurrence of a field wins.
 */
export interface HpackResult {
  /** null when the whole block was decoded, else the first failure met. */
  error: HpackError | null;
  /** The block was decoded to its end (an `hpack_index_unknown` field does not stop decoding). */
  complete: boolean;
  /** Header fields seen (every representation but size updates), known or not. */
  fields: number;
  /** Fields whose name was not known (an unknown dynamic index). */
  unknownFields: number;
  method: string | null;
  scheme: string | null;
  status: number;
  contentLength: number;
  grpcStatus: number;
}

export interface HpackStats {
  blocks: number;
  /** Blocks with an error (each counted once, by its first error). */
  failedBlocks: number;
  /** Blocks decoded while desynchronised (the table was forgotten at some point). */
  blocksDesynced: number;
  insertions: number;
  evictions: number;
  /** Fields or names found in the dynamic table (how much the decoding depends on it). */
  dynamicRefs: number;
  /** Size updates or SETTINGS values above the cap (`tableCap`), kept at the cap. */
  tableSizeCapped: number;
  /** Times the table was forgotten: lost(), a malformed block, a mid-stream start. */
  tableLosses: number;
}

// Wanted field ids. 0 = a name we do not care about; UNKNOWN = an entry inserted with a name
// that referred to an entry we did not hold (its value is known, its name is not).
const F_NONE = 0;
const F_METHOD = 1;
const F_SCHEME = 2;
const F_STATUS = 3;
const F_CONTENT_LENGTH = 4;
const F_GRPC_STATUS = 5;
const F_UNKNOWN = 6;

/** RFC 7541 Appendix A. Index 0 is unused. */
const STATIC_TABLE: ReadonlyArray<readonly [string, string]> = [
  ['', ''],
  [':authority', ''],
  [':method', 'GET'],
  [':method', 'POST'],
  [':path', '/'],
  [':path', '/index.html'],
  [':scheme', 'http'],
  [':scheme', 'https'],
  [':status', '200'],
  [':status', '204'],
  [':status', '206'],
  [':status', '304'],
  [':status', '400'],
  [':status', '404'],
  [':status', '500'],
  ['accept-charset', ''],
  ['accept-encoding', 'gzip, deflate'],
  ['accept-language', ''],
  ['accept-ranges', ''],
  ['accept', ''],
  ['access-control-allow-origin', ''],
  ['age', ''],
  ['allow', ''],
  ['authorization', ''],
  ['cache-control', ''],
  ['content-disposition', ''],
  ['content-encoding', ''],
  ['content-language', ''],
  ['content-length', ''],
  ['content-location', ''],
  ['content-range', ''],
  ['content-type', ''],
  ['cookie', ''],
  ['date', ''],
  ['etag', ''],
  ['expect', ''],
  ['expires', ''],
  ['from', ''],
  ['host', ''],
  ['if-match', ''],
  ['if-modified-since', ''],
  ['if-none-match', ''],
  ['if-range', ''],
  ['if-unmodified-since', ''],
  ['last-modified', ''],
  ['link', ''],
  ['location', ''],
  ['max-forwards', ''],
  ['proxy-authenticate', ''],
  ['proxy-authorization', ''],
  ['range', ''],
  ['referer', ''],
  ['refresh', ''],
  ['retry-after', ''],
  ['server', ''],
  ['set-cookie', ''],
  ['strict-transport-security', ''],
  ['transfer-encoding', ''],
  ['user-agent', ''],
  ['vary', ''],
  ['via', ''],
  ['www-authenticate', ''],
];
const STATIC_COUNT = 61;

/** The static table as bytes, for names and values copied into dynamic entries. */
const STATIC_NAMES: Uint8Array[] = STATIC_TABLE.map(([n]) => Buffer.from(n, 'latin1'));
const STATIC_VALUES: Uint8Array[] = STATIC_TABLE.map(([, v]) => Buffer.from(v, 'latin1'));

function fieldIdOfName(name: string): number {
  switch (name) {
    case ':method': return F_METHOD;
    case ':scheme': return F_SCHEME;
    case ':status': return F_STATUS;
    case 'content-length': return F_CONTENT_LENGTH;
    case 'grpc-status': return F_GRPC_STATUS;
    default: return F_NONE;
  }
}
const STATIC_FIELD = Uint8Array.from(STATIC_TABLE, ([n]) => fieldIdOfName(n));

/** Which wanted field a literal name is, straight from its bytes (names are lowercase in HTTP/2). */
function fieldIdOfBytes(b: Uint8Array, off: number, len: number): number {
  if (len === 7) {
    if (b[off] !== 0x3a) return F_NONE; // ':'
    if (eqAscii(b, off, ':method')) return F_METHOD;
    if (eqAscii(b, off, ':status')) return F_STATUS;
    if (eqAscii(b, off, ':scheme')) return F_SCHEME;
    return F_NONE;
  }
  if (len === 14) return eqAscii(b, off, 'content-length') ? F_CONTENT_LENGTH : F_NONE;
  if (len === 11) return eqAscii(b, off, 'grpc-status') ? F_GRPC_STATUS : F_NONE;
  return F_NONE;
}

function eqAscii(b: Uint8Array, off: number, s: string): boolean {
  for (let i = 0; i < s.length; i++) if (b[off + i] !== s.charCodeAt(i)) return false;
  return true;
}

// ---------------------------------------------------------------------------------------------
// Huffman (RFC 7541 5.2, Appendix B), decoded four bits at a time by a state machine built once
// from the code table: a state is an internal node of the code tree (256 of them), and each
// (state, nibble) cell says the next state, the symbol emitted (at most one: the shortest code
// has 5 bits), and whether the path hit EOS. A state accepts as the end of a string when it lies
// on the all-ones path at depth <= 7 (padding is a prefix of EOS, shorter than a byte).
// ---------------------------------------------------------------------------------------------

/** RFC 7541 Appendix B: the code of each symbol (0-255, 256 = EOS), MSB-aligned to its length. */
export const HUFFMAN_CODES = [
  0x1ff8, 0x7fffd8, 0xfffffe2, 0xfffffe3, 0xfffffe4, 0xfffffe5, 0xfffffe6, 0xfffffe7,
  0xfffffe8, 0xffffea, 0x3ffffffc, 0xfffffe9, 0xfffffea, 0x3ffffffd, 0xfffffeb, 0xfffffec,
  0xfffffed, 0xfffffee, 0xfffffef, 0xffffff0, 0xffffff1, 0xffffff2, 0x3ffffffe, 0xffffff3,
  0xffffff4, 0xffffff5, 0xffffff6, 0xffffff7, 0xffffff8, 0xffffff9, 0xffffffa, 0xffffffb,
  0x14, 0x3f8, 0x3f9, 0xffa, 0x1ff9, 0x15, 0xf8, 0x7fa,
  0x3fa, 0x3fb, 0xf9, 0x7fb, 0xfa, 0x16, 0x17, 0x18,
  0x0, 0x1, 0x2, 0x19, 0x1a, 0x1b, 0x1c, 0x1d,
  0x1e, 0x1f, 0x5c, 0xfb, 0x7ffc, 0x20, 0xffb, 0x3fc,
  0x1ffa, 0x21, 0x5d, 0x5e, 0x5f, 0x60, 0x61, 0x62,
  0x63, 0x64, 0x65, 0x66, 0x67, 0x68, 0x69, 0x6a,
  0x6b, 0x6c, 0x6d, 0x6e, 0x6f, 0x70, 0x71, 0x72,
  0xfc, 0x73, 0xfd, 0x1ffb, 0x7fff0, 0x1ffc, 0x3ffc, 0x22,
  0x7ffd, 0x3, 0x23, 0x4, 0x24, 0x5, 0x25, 0x26,
  0x27, 0x6, 0x74, 0x75, 0x28, 0x29, 0x2a, 0x7,
  0x2b, 0x76, 0x2c, 0x8, 0x9, 0x2d, 0x77, 0x78,
  0x79, 0x7a, 0x7b, 0x7ffe, 0x7fc, 0x3ffd, 0x1ffd, 0xffffffc,
  0xfffe6, 0x3fffd2, 0xfffe7, 0xfffe8, 0x3fffd3, 0x3fffd4, 0x3fffd5, 0x7fffd9,
  0x3fffd6, 0x7fffda, 0x7fffdb, 0x7fffdc, 0x7fffdd, 0x7fffde, 0xffffeb, 0x7fffdf,
  0xffffec, 0xffffed, 0x3fffd7, 0x7fffe0, 0xffffee, 0x7fffe1, 0x7fffe2, 0x7fffe3,
  0x7fffe4, 0x1fffdc, 0x3fffd8, 0x7fffe5, 0x3fffd9, 0x7fffe6, 0x7fffe7, 0xffffef,
  0x3fffda, 0x1fffdd, 0xfffe9, 0x3fffdb, 0x3fffdc, 0x7fffe8, 0x7fffe9, 0x1fffde,
  0x7fffea, 0x3fffdd, 0x3fffde, 0xfffff0, 0x1fffdf, 0x3fffdf, 0x7fffeb, 0x7fffec,
  0x1fffe0, 0x1fffe1, 0x3fffe0, 0x1fffe2, 0x7fffed, 0x3fffe1, 0x7fffee, 0x7fffef,
  0xfffea, 0x3fffe2, 0x3fffe3, 0x3fffe4, 0x7ffff0, 0x3fffe5, 0x3fffe6, 0x7ffff1,
  0x3ffffe0, 0x3ffffe1, 0xfffeb, 0x7fff1, 0x3fffe7, 0x7ffff2, 0x3fffe8, 0x1ffffec,
  0x3ffffe2, 0x3ffffe3, 0x3ffffe4, 0x7ffffde, 0x7ffffdf, 0x3ffffe5, 0xfffff1, 0x1ffffed,
  0x7fff2, 0x1fffe3, 0x3ffffe6, 0x7ffffe0, 0x7ffffe1, 0x3ffffe7, 0x7ffffe2, 0xfffff2,
  0x1fffe4, 0x1fffe5, 0x3ffffe8, 0x3ffffe9, 0xffffffd, 0x7ffffe3, 0x7ffffe4, 0x7ffffe5,
  0xfffec, 0xfffff3, 0xfffed, 0x1fffe6, 0x3fffe9, 0x1fffe7, 0x1fffe8, 0x7ffff3,
  0x3fffea, 0x3fffeb, 0x1ffffee, 0x1ffffef, 0xfffff4, 0xfffff5, 0x3ffffea, 0x7ffff4,
  0x3ffffeb, 0x7ffffe6, 0x3ffffec, 0x3ffffed, 0x7ffffe7, 0x7ffffe8, 0x7ffffe9, 0x7ffffea,
  0x7ffffeb, 0xffffffe, 0x7ffffec, 0x7ffffed, 0x7ffffee, 0x7ffffef, 0x7fffff0, 0x3ffffee,
  0x3fffffff,
];
export const HUFFMAN_LENGTHS = [
  13, 23, 28, 28, 28, 28, 28, 28, 28, 24, 30, 28, 28, 30, 28, 28, 28, 28, 28, 28, 28, 28, 30, 28, 28, 28, 28, 28, 28, 28, 28, 28,
  6, 10, 10, 12, 13, 6, 8, 11, 10, 10, 8, 11, 8, 6, 6, 6, 5, 5, 5, 6, 6, 6, 6, 6, 6, 6, 7, 8, 15, 6, 12, 10,
  13, 6, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 8, 7, 8, 13, 19, 13, 14, 6,
  15, 5, 6, 5, 6, 5, 6, 6, 6, 5, 7, 7, 6, 6, 6, 5, 6, 7, 6, 5, 5, 6, 7, 7, 7, 7, 7, 15, 11, 14, 13, 28,
  20, 22, 20, 20, 22, 22, 22, 23, 22, 23, 23, 23, 23, 23, 24, 23, 24, 24, 22, 23, 24, 23, 23, 23, 23, 21, 22, 23, 22, 23, 23, 24,
  22, 21, 20, 22, 22, 23, 23, 21, 23, 22, 22, 24, 21, 22, 23, 23, 21, 21, 22, 21, 23, 22, 23, 23, 20, 22, 22, 22, 23, 22, 22, 23,
  26, 26, 20, 19, 22, 23, 22, 25, 26, 26, 26, 27, 27, 26, 24, 25, 19, 21, 26, 27, 27, 26, 27, 24, 21, 21, 26, 26, 28, 27, 27, 27,
  20, 24, 20, 21, 22, 21, 21, 23, 22, 22, 25, 25, 24, 24, 26, 23, 26, 27, 26, 26, 27, 27, 27, 27, 27, 28, 27, 27, 27, 27, 27, 26,
  30,
];

const EOS = 256;
const H_EMIT = 1 << 17;
const H_FAIL = 1 << 18;
/** (state << 4 | nibble) -> next state (bits 0-7) | symbol (bits 8-16) | H_EMIT | H_FAIL. */
const HUFFMAN_FSM = new Int32Array(256 * 16);
/** States that may end a string: the all-ones path, depth <= 7. */
const HUFFMAN_ACCEPT = new Uint8Array(256);

(function buildHuffman(): void {
  // The code tree: internal nodes 0..255 (0 = root); child >= 0 is an internal node, child < 0
  // is the leaf of symbol -child - 1.
  const child = new Int32Array(256 * 2).fill(0x7fffffff);
  let nodes = 1;
  for (let sym = 0; sym <= EOS; sym++) {
    const code = HUFFMAN_CODES[sym]!;
    const len = HUFFMAN_LENGTHS[sym]!;
    let node = 0;
    for (let i = len - 1; i >= 0; i--) {
      const bit = (code >>> i) & 1;
      const slot = node * 2 + bit;
      if (i === 0) child[slot] = -sym - 1;
      else {
        if (child[slot] === 0x7fffffff) child[slot] = nodes++;
        node = child[slot]!;
      }
    }
  }
  // Depth and all-ones-ness of every internal node, for the padding rule.
  const depth = new Int32Array(256).fill(-1);
  const ones = new Uint8Array(256);
  depth[0] = 0;
  ones[0] = 1;
  for (let n = 0; n < nodes; n++) {
    for (let bit = 0; bit < 2; bit++) {
      const c = child[n * 2 + bit]!;
      if (c >= 0 && c !== 0x7fffffff) {
        depth[c] = depth[n]! + 1;
        ones[c] = ones[n]! & bit;
      }
    }
  }
  for (let n = 0; n < nodes; n++) HUFFMAN_ACCEPT[n] = ones[n]! && depth[n]! <= 7 ? 1 : 0;
  for (let s = 0; s < nodes; s++) {
    for (let nib = 0; nib < 16; nib++) {
      let cur = s;
      let cell = 0;
      for (let i = 3; i >= 0; i--) {
        const c = child[cur * 2 + ((nib >>> i) & 1)]!;
        if (c < 0) {
          const sym = -c - 1;
          if (sym === EOS) {
            cell |= H_FAIL;
            break;
          }
          cell |= H_EMIT | (sym << 8);
          cur = 0;
        } else cur = c;
      }
      HUFFMAN_FSM[(s << 4) | nib] = cell | cur;
    }
  }
})();

/**
 * Decodes `len` Huffman bytes at src[off] into dst[dstOff] (room for floor(len * 8 / 5) bytes
 * needed). Returns the decoded length, or -1 for EOS in the string or bad padding.
 */
export function huffmanDecode(src: Uint8Array, off: number, len: number, dst: Uint8Array, dstOff: number): number {
  let state = 0;
  let o = dstOff;
  const end = off + len;
  for (let i = off; i < end; i++) {
    const byte = src[i]!;
    let cell = HUFFMAN_FSM[(state << 4) | (byte >>> 4)]!;
    if (cell & H_FAIL) return -1;
    if (cell & H_EMIT) dst[o++] = (cell >>> 8) & 0x1ff;
    state = cell & 0xff;
    cell = HUFFMAN_FSM[(state << 4) | (byte & 15)]!;
    if (cell & H_FAIL) return -1;
    if (cell & H_EMIT) dst[o++] = (cell >>> 8) & 0x1ff;
    state = cell & 0xff;
  }
  return HUFFMAN_ACCEPT[state] ? o - dstOff : -1;
}

// ---------------------------------------------------------------------------------------------
// Values of wanted fields.
// ---------------------------------------------------------------------------------------------

const METHODS = ['GET', 'POST', 'PUT', 'DELETE', 'HEAD', 'OPTIONS', 'PATCH', 'CONNECT', 'TRACE'];

/** A latin1 string of the bytes; the common methods and schemes come back interned. */
function text(b: Uint8Array, off: number, len: number): string {
  if (len <= 7) for (const m of METHODS) if (m.length === len && eqAscii(b, off, m)) return m;
  if (len === 4 && eqAscii(b, off, 'http')) return 'http';
  if (len === 5 && eqAscii(b, off, 'https')) return 'https';
  let s = '';
  for (let i = 0; i < len; i++) s += String.fromCharCode(b[off + i]!);
  return s;
}

/** A non-negative decimal (at most 15 digits, so exact), else -2. */
function decimal(b: Uint8Array, off: number, len: number): number {
  if (len === 0 || len > 15) return -2;
  let v = 0;
  for (let i = 0; i < len; i++) {
    const d = b[off + i]! - 0x30;
    if (d < 0 || d > 9) return -2;
    v = v * 10 + d;
  }
  return v;
}

/**
 * Module-wide Huffman scratch: decode() is synchronous and never re-entered, so one suffices.
 * It grows to at most 2 x 8/5 x maxStringBytes (a name and a value) and keeps its bytes.
 */
let scratch = new Uint8Array(1024);
function scratchFor(n: number): Uint8Array {
  if (scratch.length < n) {
    let c = scratch.length;
    while (c < n) c *= 2;
    const grown = new Uint8Array(c);
    grown.set(scratch, 0);
    scratch = grown;
  }
  return scratch;
}

// Errors of the integer and string readers, returned as negative values.
const E_TRUNCATED = -1;
const E_OVERFLOW = -2;
const E_TOO_LONG = -3;

function newResult(): HpackResult {
  return { error: null, complete: true, fields: 0, unknownFields: 0, method: null, scheme: null, status: -1, contentLength: -1, grpcStatus: -1 };
}

export class HpackDecoder {
  readonly stats: HpackStats = { blocks: 0, failedBlocks: 0, blocksDesynced: 0, insertions: 0, evictions: 0, dynamicRefs: 0, tableSizeCapped: 0, tableLosses: 0 };
  private readonly result: HpackResult = newResult();
  private readonly maxString: number;
  private readonly cap: number;
  /** The decoding peer's SETTINGS_HEADER_TABLE_SIZE as announced (size updates are checked against it) and capped. */
  private settings: number;
  private limit: number;
  private limitKnown: boolean;
  /** The table's maximum size now (RFC 7541 4.2), capped. */
  private maxSize: number;
  /** Sum of entry sizes (name + value + 32, RFC 7541 4.1). */
  private size = 0;
  private desync = false;
  private reason: HpackError | null = null;

  // Entry bytes (name then value), oldest first, in bytes[start, end): eviction moves start,
  // insertion appends at end; compacted or grown (to at most 2 x maxSize) when the tail is full.
  private bytes: Uint8Array | null = null;
  private start = 0;
  private end = 0;
  // Entries, a ring of `count` from `first` (oldest); capacity a power of two, <= maxSize / 32.
  // Four slots per entry in one array (one allocation): byte offset, name length, value length,
  // field id.
  private meta: Int32Array | null = null;
  private mask = 0;
  private first = 0;
  private count = 0;
  // Read position and string descriptor of the block being decoded.
  private p = 0;
  private sHuff = false;
  private sOff = 0;
  private sLen = 0;

  constructor(opts: HpackOptions = {}) {
    this.maxString = opts.maxStringBytes ?? HPACK_DEFAULT_MAX_STRING;
    this.cap = Math.max(0, Math.min(opts.tableCap ?? HPACK_TABLE_SIZE_CAP, HPACK_TABLE_SIZE_CAP));
    const settings = opts.maxTableSize ?? HPACK_DEFAULT_TABLE_SIZE;
    if (settings > this.cap) this.stats.tableSizeCapped++;
    this.settings = settings;
    this.limit = Math.min(settings, this.cap);
    this.limitKnown = true;
    this.maxSize = this.limit;
    if (opts.joinedMidStream) {
      // The peer's settings and table are unknown: a table at the cap is never wrong (see top).
      this.limit = this.maxSize = this.cap;
      this.limitKnown = false;
      this.desync = true;
      this.reason = 'hpack_index_unknown';
      this.stats.tableLosses++;
    }
  }

  /** The table was forgotten (mid-stream start, lost block, malformed block): sticky. */
  get desynced(): boolean {
    return this.desync;
  }
  /** Why it was first forgotten: `hpack_index_unknown` for a join or loss, else the error. */
  get desyncReason(): HpackError | null {
    return this.reason;
  }
  /** Entries held and their RFC 7541 size, for tests and memory accounting. */
  get tableEntries(): number {
    return this.count;
  }
  get tableSize(): number {
    return this.size;
  }
  get tableMaxSize(): number {
    return this.maxSize;
  }
  /** Bytes this decoder holds (its entry storage), for memory accounting. */
  get heldBytes(): number {
    return (this.bytes?.length ?? 0) + (this.meta ? this.meta.length * 4 : 0);
  }

  /** The k-th newest entry (k = 0 is dynamic index 62) as [name, value] latin1 strings, for tests. */
  entry(k: number): [string, string] | null {
    if (k < 0 || k >= this.count) return null;
    const i = (this.first + this.count - 1 - k) & this.mask;
    const o = this.meta![i * 4]!;
    const nl = this.meta![i * 4 + 1]!;
    const name = this.meta![i * 4 + 3]! === F_UNKNOWN ? '?' : Buffer.from(this.bytes!.subarray(o, o + nl)).toString('latin1');
    return [name, Buffer.from(this.bytes!.subarray(o + nl, o + nl + this.meta![i * 4 + 2]!)).toString('latin1')];
  }

  /**
   * The decoding peer's SETTINGS_HEADER_TABLE_SIZE, once acknowledged (the client's for the
   * server->client decoder). Lowering it shrinks the table at once (the encoder must follow with
   * a size update, RFC 7541 4.2); raising it only allows larger size updates.
   */
  setMaxTableSize(settings: number): void {
    if (settings > this.cap) this.stats.tableSizeCapped++;
    this.settings = Math.max(0, settings);
    this.limit = Math.min(this.settings, this.cap);
    this.limitKnown = true;
    if (this.maxSize > this.limit) {
      this.maxSize = this.limit;
      this.evictTo(this.maxSize);
    }
  }

  /** A header block of this direction was not seen (a capture gap): its insertions are unknown. */
  lost(): void {
    this.forget('hpack_index_unknown');
  }

  /**
   * Decodes one complete header block (HEADERS or PUSH_PROMISE fragment plus CONTINUATIONs,
   * padding and priority removed) from buf[off, off + len). Never throws. Returns the decoder's
   * one result object, valid until the next call.
   */
  decode(buf: Uint8Array, off: number, len: number): HpackResult {
    const r = this.result;
    r.error = null;
    r.complete = true;
    r.fields = 0;
    r.unknownFields = 0;
    r.method = null;
    r.scheme = null;
    r.status = r.contentLength = r.grpcStatus = -1;
    this.stats.blocks++;
    if (this.desync) this.stats.blocksDesynced++;
    const end = off + len > buf.length ? buf.length : off + len;
    this.p = off;
    let fatal: HpackError | null = null;
    while (this.p < end) {
      const b = buf[this.p]!;
      if (b & 0x80) {
        // 6.1 Indexed Header Field.
        const idx = this.int(buf, end, 7);
        if (idx < 0) { fatal = intError(idx); break; }
        if (idx === 0) { fatal = 'hpack_malformed'; break; }
        r.fields++;
        this.indexed(idx);
      } else if ((b & 0xe0) === 0x20) {
        // 6.3 Dynamic Table Size Update: only before the first field (RFC 7541 4.2).
        const v = this.int(buf, end, 5);
        if (v < 0) { fatal = intError(v); break; }
        if (r.fields > 0 || (this.limitKnown && v > this.settings)) this.fail('hpack_table_size_invalid');
        if (v > this.cap) this.stats.tableSizeCapped++;
        this.maxSize = Math.min(v, this.cap);
        this.evictTo(this.maxSize);
      } else {
        // 6.2 Literal Header Field: with incremental indexing (01), without (0000) or never
        // indexed (0001); the last two are the same to a decoder.
        const insert = (b & 0x40) !== 0;
        const idx = this.int(buf, end, insert ? 6 : 4);
        if (idx < 0) { fatal = intError(idx); break; }
        r.fields++;
        const e = this.literal(buf, end, idx, insert);
        if (e !== null) { fatal = e; break; }
      }
    }
    if (fatal !== null) {
      r.complete = false;
      this.fail(fatal);
      // The rest of the block, and so its insertions, are unknown.
      this.forget(fatal);
    }
    return r;
  }

  private fail(e: HpackError): void {
    if (this.result.error === null) {
      this.result.error = e;
      this.stats.failedBlocks++;
    }
  }

  private forget(reason: HpackError): void {
    this.count = 0;
    this.first = 0;
    this.size = 0;
    this.start = this.end = 0;
    this.stats.tableLosses++;
    if (!this.desync) {
      this.desync = true;
      this.reason = reason;
    }
  }

  /** RFC 7541 5.1, with an N-bit prefix at buf[p]. Returns the value, or E_TRUNCATED / E_OVERFLOW. */
  private int(buf: Uint8Array, end: number, n: number): number {
    const max = (1 << n) - 1;
    let v = buf[this.p++]! & max;
    if (v < max) return v;
    // At most 5 continuation octets (7 x 5 = 35 bits > 31); more is an overflow even when zero.
    let m = 1;
    for (let i = 0; i < 5; i++) {
      if (this.p >= end) return E_TRUNCATED;
      const c = buf[this.p++]!;
      v += (c & 0x7f) * m;
      if (v > 0x7fffffff) return E_OVERFLOW;
      if ((c & 0x80) === 0) return v;
      m *= 128;
    }
    return E_OVERFLOW;
  }

  /** RFC 7541 5.2: reads a string's header into sHuff/sOff/sLen and skips it. 0 or an error. */
  private str(buf: Uint8Array, end: number): number {
    if (this.p >= end) return E_TRUNCATED;
    this.sHuff = (buf[this.p]! & 0x80) !== 0;
    const len = this.int(buf, end, 7);
    if (len < 0) return len;
    if (len > this.maxString) return E_TOO_LONG;
    if (len > end - this.p) return E_TRUNCATED;
    this.sOff = this.p;
    this.sLen = len;
    this.p += len;
    return 0;
  }

  private indexed(idx: number): void {
    const r = this.result;
    if (idx <= STATIC_COUNT) {
      const fid = STATIC_FIELD[idx]!;
      if (fid !== F_NONE) this.setField(fid, STATIC_VALUES[idx]!, 0, STATIC_VALUES[idx]!.length);
      return;
    }
    const k = idx - STATIC_COUNT - 1;
    if (k >= this.count) {
      r.unknownFields++;
      this.fail('hpack_index_unknown');
      return;
    }
    const i = (this.first + this.count - 1 - k) & this.mask;
    const fid = this.meta![i * 4 + 3]!;
    this.stats.dynamicRefs++;
    if (fid === F_NONE) return;
    if (fid === F_UNKNOWN) {
      r.unknownFields++;
      this.fail('hpack_index_unknown');
      return;
    }
    const o = this.meta![i * 4]! + this.meta![i * 4 + 1]!;
    this.setField(fid, this.bytes!, o, this.meta![i * 4 + 2]!);
  }

  /** A literal field whose name index is idx (0: a literal name). null or a fatal error. */
  private literal(buf: Uint8Array, end: number, idx: number, insert: boolean): HpackError | null {
    const r = this.result;
    // The name: where its bytes are (nSrc/nOff/nLen) and which field it is.
    let fid = F_NONE;
    let nSrc: Uint8Array = buf;
    let nOff = 0;
    let nLen = 0;
    let scratchUsed = 0;
    if (idx === 0) {
      const e = this.str(buf, end);
      if (e < 0) return strError(e);
      if (!this.sHuff) {
        nOff = this.sOff;
        nLen = this.sLen;
        fid = fieldIdOfBytes(buf, nOff, nLen);
      } else if (insert || this.sLen <= 53) {
        // A wanted name has at most 14 characters, so at most 14 x 30 / 8 Huffman bytes: longer
        // names that are not inserted are skipped undecoded.
        const s = scratchFor(Math.ceil((this.sLen * 8) / 5));
        nLen = huffmanDecode(buf, this.sOff, this.sLen, s, 0);
        if (nLen < 0) return 'hpack_huffman_invalid';
        nSrc = s;
        scratchUsed = nLen;
        fid = fieldIdOfBytes(s, 0, nLen);
      }
    } else if (idx <= STATIC_COUNT) {
      fid = STATIC_FIELD[idx]!;
      nSrc = STATIC_NAMES[idx]!;
      nLen = nSrc.length;
    } else {
      const k = idx - STATIC_COUNT - 1;
      if (k >= this.count) {
        fid = F_UNKNOWN;
      } else {
        const i = (this.first + this.count - 1 - k) & this.mask;
        fid = this.meta![i * 4 + 3]!;
        nLen = this.meta![i * 4 + 1]!;
        this.stats.dynamicRefs++;
        if (insert && fid !== F_UNKNOWN) {
          // Copied out: the entry may be evicted, and its bytes moved, by this insertion.
          const s = scratchFor(nLen);
          copy(this.bytes!, this.meta![i * 4]!, nLen, s, 0);
          nSrc = s;
          scratchUsed = nLen;
        }
      }
      if (fid === F_UNKNOWN) {
        // Inserted with an empty name: its size is then under the peer's, so the table holds
        // more than the peer's, which is harmless (see the top of this file).
        nLen = 0;
        r.unknownFields++;
        this.fail('hpack_index_unknown');
      }
    }
    // The value.
    const e = this.str(buf, end);
    if (e < 0) return strError(e);
    const wanted = fid !== F_NONE && fid !== F_UNKNOWN;
    if (!insert && !wanted) return null; // skipped, never decoded
    let vSrc: Uint8Array = buf;
    let vOff = this.sOff;
    let vLen = this.sLen;
    if (this.sHuff) {
      // After the name, if the name is there; growing the scratch keeps its bytes.
      const s = scratchFor(scratchUsed + Math.ceil((this.sLen * 8) / 5));
      vLen = huffmanDecode(buf, this.sOff, this.sLen, s, scratchUsed);
      if (vLen < 0) return 'hpack_huffman_invalid';
      vSrc = s;
      vOff = scratchUsed;
      if (scratchUsed > 0) nSrc = s;
    }
    if (wanted) this.setField(fid, vSrc, vOff, vLen);
    if (insert) this.insert(fid, nSrc, nOff, nLen, vSrc, vOff, vLen);
    return null;
  }

  private setField(fid: number, b: Uint8Array, off: number, len: number): void {
    const r = this.result;
    switch (fid) {
      case F_METHOD:
        if (r.method === null) r.method = text(b, off, len);
        break;
      case F_SCHEME:
        if (r.scheme === null) r.scheme = text(b, off, len);
        break;
      case F_STATUS:
        if (r.status === -1) r.status = len === 3 ? decimal(b, off, len) : -2;
        break;
      case F_CONTENT_LENGTH:
        if (r.contentLength === -1) r.contentLength = decimal(b, off, len);
        break;
      case F_GRPC_STATUS:
        if (r.grpcStatus === -1) r.grpcStatus = decimal(b, off, len);
        break;
    }
  }

  /** RFC 7541 4.4: evict until the entry fits, then append it (or empty the table if it cannot fit). */
  private insert(fid: number, nSrc: Uint8Array, nOff: number, nLen: number, vSrc: Uint8Array, vOff: number, vLen: number): void {
    const entrySize = nLen + vLen + 32;
    if (entrySize > this.maxSize) {
      this.evictTo(0);
      return;
    }
    this.evictTo(this.maxSize - entrySize);
    const n = nLen + vLen;
    this.room(n);
    const bytes = this.bytes!;
    const at = this.end;
    copy(nSrc, nOff, nLen, bytes, at);
    copy(vSrc, vOff, vLen, bytes, at + nLen);
    this.end = at + n;
    if (this.meta === null || this.count > this.mask) this.growRing();
    const i = (this.first + this.count) & this.mask;
    this.meta![i * 4] = at;
    this.meta![i * 4 + 1] = nLen;
    this.meta![i * 4 + 2] = vLen;
    this.meta![i * 4 + 3] = fid;
    this.count++;
    this.size += entrySize;
    this.stats.insertions++;
  }

  private evictTo(target: number): void {
    while (this.size > target && this.count > 0) {
      const i = this.first;
      this.size -= this.meta![i * 4 + 1]! + this.meta![i * 4 + 2]! + 32;
      this.first = (i + 1) & this.mask;
      this.count--;
      this.stats.evictions++;
      this.start = this.count === 0 ? this.end : this.meta![this.first * 4]!;
    }
    if (this.count === 0) this.start = this.end = 0;
  }

  /**
   * Makes room for n more bytes at end, by compacting or by growing (doubling from 256). The
   * caller evicted first, so live + n <= maxSize: the array never exceeds the table's maximum
   * size (4 KiB by default), and once it is that large compaction always suffices. Compaction
   * copies at most maxSize bytes and frees at least 32 per entry evicted or held, so it is rare.
   */
  private room(n: number): void {
    const live = this.end - this.start;
    let b = this.bytes;
    if (b !== null && this.end + n <= b.length) return;
    const limit = Math.max(this.maxSize, live + n);
    if (b === null || (live + n > b.length / 2 && b.length < limit)) {
      let c = b === null ? 256 : b.length * 2;
      while (c < live + n) c *= 2;
      const nb = new Uint8Array(Math.min(c, limit));
      if (b !== null) nb.set(b.subarray(this.start, this.end), 0);
      this.bytes = b = nb;
    } else b.copyWithin(0, this.start, this.end);
    const shift = this.start;
    for (let j = 0; j < this.count; j++) {
      const i = (this.first + j) & this.mask;
      this.meta![i * 4]! -= shift;
    }
    this.start = 0;
    this.end = live;
  }


  private growRing(): void {
    const cap = this.meta === null ? 16 : (this.mask + 1) * 2;
    const meta = new Int32Array(cap * 4);
    for (let j = 0; j < this.count; j++) {
      const i = ((this.first + j) & this.mask) * 4;
      meta.set(this.meta!.subarray(i, i + 4), j * 4);
    }
    this.meta = meta;
    this.mask = cap - 1;
    this.first = 0;
  }

}

/** Byte copy without the subarray view that TypedArray.set needs (a view is an allocation). */
function copy(src: Uint8Array, off: number, len: number, dst: Uint8Array, at: number): void {
  if (len > 64) dst.set(src.subarray(off, off + len), at);
  else for (let i = 0; i < len; i++) dst[at + i] = src[off + i]!;
}

function intError(e: number): HpackError {
  return e === E_TRUNCATED ? 'hpack_truncated' : 'hpack_integer_overflow';
}
function strError(e: number): HpackError {
  return e === E_TRUNCATED ? 'hpack_truncated' : e === E_OVERFLOW ? 'hpack_integer_overflow' : 'hpack_string_too_long';
}
