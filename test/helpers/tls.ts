/**
 * TLS record and hello builders for tests (RFC 8446 4.1, 5.1; RFC 5246 7.4), shared by the record,
 * splitter and handshake tests.
 *
 *   const bytes = Buffer.concat([record(22, handshake(1, clientHello({ sni: 'a.test', alpn: ['h2'] })))]);
 *
 * `record` and `ext` write exactly what they are given (any type, version, length): hostile tests
 * build wrong bytes with them. `clientHello` / `serverHello` build correct hellos.
 */

export const CT = { CCS: 20, ALERT: 21, HANDSHAKE: 22, APP: 23, HEARTBEAT: 24 } as const;
export const HS = { CLIENT_HELLO: 1, SERVER_HELLO: 2, NEW_SESSION_TICKET: 4, CERTIFICATE: 11, SERVER_HELLO_DONE: 14, FINISHED: 20 } as const;
export const EXT = { SERVER_NAME: 0, ALPN: 16, SESSION_TICKET: 35, PRE_SHARED_KEY: 41, SUPPORTED_VERSIONS: 43, KEY_SHARE: 51 } as const;

export const HRR_RANDOM = Buffer.from('cf21ad74e59a6111be1d8c021e65b891c2a211167abb8c5e079e09e2c8a8339c', 'hex');

function u16(n: number): Buffer {
  const b = Buffer.alloc(2);
  b.writeUInt16BE(n & 0xffff);
  return b;
}
function u24(n: number): Buffer {
  return Buffer.from([(n >>> 16) & 0xff, (n >>> 8) & 0xff, n & 0xff]);
}
/** A vector with a 1- or 2-byte length prefix. */
export function vec8(b: Buffer): Buffer {
  return Buffer.concat([Buffer.from([b.length]), b]);
}
export function vec16(b: Buffer): Buffer {
  return Buffer.concat([u16(b.length), b]);
}

/** A 5-byte record header; `length` may lie. */
export function recordHeader(type: number, length: number, version = 0x0303): Buffer {
  return Buffer.concat([Buffer.from([type]), u16(version), u16(length)]);
}
export function record(type: number, payload: Buffer, version = 0x0303): Buffer {
  return Buffer.concat([recordHeader(type, payload.length, version), payload]);
}
/** A handshake message: type, 24-bit length, body. */
export function handshake(type: number, body: Buffer): Buffer {
  return Buffer.concat([Buffer.from([type]), u24(body.length), body]);
}
/** One extension: type, 16-bit length, data (`length` may lie). */
export function ext(type: number, data: Buffer, length = data.length): Buffer {
  return Buffer.concat([u16(type), u16(length), data]);
}
export function sniExt(name: string | Buffer): Buffer {
  const n = typeof name === 'string' ? Buffer.from(name, 'latin1') : name;
  return ext(EXT.SERVER_NAME, vec16(Buffer.concat([Buffer.from([0]), vec16(n)])));
}
export function alpnExt(names: string[]): Buffer {
  return ext(EXT.ALPN, vec16(Buffer.concat(names.map((n) => vec8(Buffer.from(n, 'latin1'))))));
}

export interface ClientHelloOptions {
  legacyVersion?: number;
  random?: Buffer;
  sessionId?: Buffer;
  ciphers?: number[];
  sni?: string;
  alpn?: string[];
  versions?: number[];
  /** undefined: no extension; Buffer (maybe empty): its content. */
  ticket?: Buffer;
  psk?: boolean;
  keyShare?: number[];
  /** Raw extra extensions appended as they are. */
  extra?: Buffer[];
  /** Omit the extensions block entirely (legal before TLS 1.3). */
  noExtensions?: boolean;
}

export function clientHello(o: ClientHelloOptions = {}): Buffer {
  const exts: Buffer[] = [];
  if (o.sni !== undefined) exts.push(sniExt(o.sni));
  if (o.alpn) exts.push(alpnExt(o.alpn));
  if (o.versions) exts.push(ext(EXT.SUPPORTED_VERSIONS, vec8(Buffer.concat(o.versions.map(u16)))));
  if (o.ticket) exts.push(ext(EXT.SESSION_TICKET, o.ticket));
  if (o.keyShare) exts.push(ext(EXT.KEY_SHARE, vec16(Buffer.concat(o.keyShare.map((g) => Buffer.concat([u16(g), vec16(Buffer.alloc(32, 7))]))))));
  if (o.extra) exts.push(...o.extra);
  // pre_shared_key must be last (RFC 8446 4.2.11): identity list and binders, content not read.
  if (o.psk) exts.push(ext(EXT.PRE_SHARED_KEY, Buffer.concat([vec16(Buffer.concat([vec16(Buffer.alloc(16, 1)), Buffer.alloc(4)])), vec16(vec8(Buffer.alloc(32, 2)))])));
  return Buffer.concat([
    u16(o.legacyVersion ?? 0x0303),
    o.random ?? Buffer.alloc(32, 0xab),
    vec8(o.sessionId ?? Buffer.alloc(0)),
    vec16(Buffer.concat((o.ciphers ?? [0x1301, 0x1302, 0xc02f]).map(u16))),
    vec8(Buffer.from([0])),
    o.noExtensions ? Buffer.alloc(0) : vec16(Buffer.concat(exts)),
  ]);
}

export interface ServerHelloOptions {
  legacyVersion?: number;
  random?: Buffer;
  sessionId?: Buffer;
  cipher?: number;
  version?: number;
  alpn?: string;
  psk?: boolean;
  ticket?: boolean;
  keyShare?: number;
  hrr?: boolean;
  extra?: Buffer[];
  noExtensions?: boolean;
}

export function serverHello(o: ServerHelloOptions = {}): Buffer {
  const exts: Buffer[] = [];
  if (o.version !== undefined) exts.push(ext(EXT.SUPPORTED_VERSIONS, u16(o.version)));
  if (o.alpn !== undefined) exts.push(alpnExt([o.alpn]));
  if (o.ticket) exts.push(ext(EXT.SESSION_TICKET, Buffer.alloc(0)));
  if (o.keyShare !== undefined) exts.push(ext(EXT.KEY_SHARE, o.hrr ? u16(o.keyShare) : Buffer.concat([u16(o.keyShare), vec16(Buffer.alloc(32, 9))])));
  if (o.psk) exts.push(ext(EXT.PRE_SHARED_KEY, u16(0)));
  if (o.extra) exts.push(...o.extra);
  return Buffer.concat([
    u16(o.legacyVersion ?? 0x0303),
    o.hrr ? HRR_RANDOM : (o.random ?? Buffer.alloc(32, 0xcd)),
    vec8(o.sessionId ?? Buffer.alloc(0)),
    u16(o.cipher ?? 0x1301),
    Buffer.from([0]),
    o.noExtensions ? Buffer.alloc(0) : vec16(Buffer.concat(exts)),
  ]);
}
