/**
 * Cleartext handshake facts (RFC 8446 4.1, RFC 5246 7.4): ClientHello and ServerHello views over
 * a message body (buf[off, off + len), the 4-byte message header excluded, as
 * `RecordSink.handshake` delivers it), and the full-or-resumed rule of keepalive-semantics
 * section 9.
 *
 * Pure functions: nothing throws on wire data, nothing keeps a reference to the bytes (the few
 * fields a later message needs, random and session id, are copied as hex; SNI and ALPN names as
 * strings, bounded). A hello whose lengths do not hold together (a peer would answer
 * decode_error) is a rejection: `tls_hello_truncated` when the bytes end inside a field,
 * otherwise a named content error. A bad server_name is not a rejection of the hello (version,
 * cipher and resumption are still worth having): `sni` is null and `sniRejected` says why.
 * SNI is for the JSON report only, never a metric label (unbounded, chosen by clients).
 */

export const HandshakeType = {
  CLIENT_HELLO: 1,
  SERVER_HELLO: 2,
  NEW_SESSION_TICKET: 4,
  ENCRYPTED_EXTENSIONS: 8,
  CERTIFICATE: 11,
  SERVER_KEY_EXCHANGE: 12,
  CERTIFICATE_REQUEST: 13,
  SERVER_HELLO_DONE: 14,
  CERTIFICATE_VERIFY: 15,
  CLIENT_KEY_EXCHANGE: 16,
  FINISHED: 20,
  KEY_UPDATE: 24,
} as const;

export const ExtensionType = {
  SERVER_NAME: 0,
  ALPN: 16,
  SESSION_TICKET: 35,
  PRE_SHARED_KEY: 41,
  SUPPORTED_VERSIONS: 43,
  KEY_SHARE: 51,
} as const;

export const TLS12 = 0x0303;
export const TLS13 = 0x0304;

/** RFC 8446 4.1.3: a ServerHello with this random is a HelloRetryRequest (SHA-256 of "HelloRetryRequest"). */
export const HRR_RANDOM = Buffer.from('cf21ad74e59a6111be1d8c021e65b891c2a211167abb8c5e079e09e2c8a8339c', 'hex');

/** Longest server_name kept: a DNS name is at most 253 characters (RFC 1035 2.3.4). */
export const MAX_SNI_LENGTH = 253;
/** ALPN names kept from an offer: clients offer 1-3 (h2, http/1.1); more are counted in `alpnOfferedCount`. */
export const MAX_ALPN_KEPT = 8;
/** Extensions read from one hello: real clients send about 10-20 (GREASE included). Past it: `tls_too_many_extensions`. */
export const MAX_EXTENSIONS = 128;

export type HelloRejection =
  /** The body ends inside a field. */
  | 'tls_hello_truncated'
  /** A session id over 32 bytes (RFC 8446 4.1.2). */
  | 'tls_bad_session_id'
  /** Cipher suites empty or of odd length. */
  | 'tls_bad_cipher_suites'
  /** Compression methods empty (ClientHello), or bytes after the extensions block. */
  | 'tls_hello_malformed'
  /** An extension's length runs past the extensions block, or an inner list past its extension. */
  | 'tls_bad_extension_length'
  /** The same extension twice (RFC 8446 4.2: must abort). */
  | 'tls_duplicate_extension'
  /** More than MAX_EXTENSIONS extensions. */
  | 'tls_too_many_extensions'
  /** An ALPN list that is empty, has an empty name, or does not fill its extension. */
  | 'tls_bad_alpn'
  /** A supported_versions that is empty, odd, or (ServerHello) not exactly 2 bytes. */
  | 'tls_bad_supported_versions';

export type SniRejection = 'tls_sni_too_long' | 'tls_sni_bad_chars' | 'tls_sni_malformed';

export interface ClientHelloView {
  legacyVersion: number;
  /** 64 hex characters (the key log's CLIENT_RANDOM). */
  random: string;
  /** Hex, '' when empty. */
  sessionId: string;
  cipherSuiteCount: number;
  /** host_name, lower-cased, or null (absent or rejected). */
  sni: string | null;
  sniRejected: SniRejection | null;
  /** Names in the client's order, at most MAX_ALPN_KEPT; [] without the extension. */
  alpnOffered: string[];
  alpnOfferedCount: number;
  /** supported_versions, GREASE values included as sent; [] without it. */
  supportedVersions: number[];
  /** session_ticket (35): absent, sent empty (asking for one), or carrying a ticket (resumption attempt). */
  sessionTicket: 'absent' | 'empty' | 'ticket';
  /** pre_shared_key (41) present (a TLS 1.3 resumption attempt). */
  psk: boolean;
  /** Groups of key_share entries; [] without it. */
  keyShareGroups: number[];
  extensionCount: number;
}

export interface ServerHelloView {
  legacyVersion: number;
  /** supported_versions when present (TLS 1.3), else legacyVersion. */
  version: number;
  random: string;
  sessionId: string;
  cipherSuite: number;
  /** The random is HRR_RANDOM: not a ServerHello, a request for another ClientHello. */
  helloRetryRequest: boolean;
  /** ALPN protocol selected in the ServerHello (TLS 1.2; in 1.3 it is in the encrypted EncryptedExtensions), else null. */
  alpn: string | null;
  /** pre_shared_key (41) present: TLS 1.3 resumption accepted. */
  psk: boolean;
  /** session_ticket (35) present: the server will send a NewSessionTicket (TLS 1.2). */
  sessionTicket: boolean;
  /** key_share group, or the HRR's requested group; null without it. */
  keyShareGroup: number | null;
  extensionCount: number;
}

function u16(b: Buffer, p: number): number {
  return (b[p] << 8) | b[p + 1];
}

/** Printable ASCII without spaces, for ALPN names (RFC 7301 allows any bytes; all registered ones are this). */
function asciiName(b: Buffer, p: number, n: number): string {
  let s = '';
  for (let i = 0; i < n; i++) {
    const c = b[p + i];
    s += c > 0x20 && c < 0x7f ? String.fromCharCode(c) : '?';
  }
  return s;
}

/** A host_name: letters, digits, '-', '.', '_' (seen in real names), no empty label. */
export function validHostname(b: Buffer, p: number, n: number): boolean {
  if (n === 0 || b[p] === 0x2e) return false;
  let prevDot = false;
  for (let i = 0; i < n; i++) {
    const c = b[p + i];
    const dot = c === 0x2e;
    if (dot && prevDot) return false;
    prevDot = dot;
    const ok = dot || c === 0x2d || c === 0x5f || (c >= 0x30 && c <= 0x39) || (c >= 0x41 && c <= 0x5a) || (c >= 0x61 && c <= 0x7a);
    if (!ok) return false;
  }
  return true;
}

interface Ext {
  type: number;
  off: number;
  len: number;
}

/** The extensions block at b[p, end): each (type, off, len), or a rejection. */
function extensions(b: Buffer, p: number, end: number): Ext[] | HelloRejection {
  const out: Ext[] = [];
  if (p === end) return out; // no extensions block: legal before TLS 1.3 (RFC 5246 7.4.1.2)
  if (end - p < 2) return 'tls_hello_truncated';
  const total = u16(b, p);
  p += 2;
  if (total > end - p) return 'tls_hello_truncated';
  if (total < end - p) return 'tls_hello_malformed';
  const seen = new Set<number>();
  while (p < end) {
    if (end - p < 4) return 'tls_bad_extension_length';
    const type = u16(b, p);
    const len = u16(b, p + 2);
    p += 4;
    if (len > end - p) return 'tls_bad_extension_length';
    if (seen.has(type)) return 'tls_duplicate_extension';
    if (out.length >= MAX_EXTENSIONS) return 'tls_too_many_extensions';
    seen.add(type);
    out.push({ type, off: p, len });
    p += len;
  }
  return out;
}

/** Legacy version, random, session id: common to both hellos. Returns the offset after the session id. */
function helloStart(b: Buffer, p: number, end: number): { version: number; random: string; sessionId: string; next: number } | HelloRejection {
  if (end - p < 35) return 'tls_hello_truncated';
  const version = u16(b, p);
  const random = b.toString('hex', p + 2, p + 34);
  const sidLen = b[p + 34];
  p += 35;
  if (sidLen > 32) return 'tls_bad_session_id';
  if (end - p < sidLen) return 'tls_hello_truncated';
  return { version, random, sessionId: b.toString('hex', p, p + sidLen), next: p + sidLen };
}

function bounds(buf: Buffer, off: number, len: number): number | 'tls_hello_truncated' {
  if (off < 0 || len < 0 || off + len > buf.length) return 'tls_hello_truncated';
  return off + len;
}

/** ALPN list (RFC 7301 3.1) at b[p, p + n): names, count, or a rejection. */
function alpnList(b: Buffer, p: number, n: number): { names: string[]; count: number } | HelloRejection {
  if (n < 2) return 'tls_bad_alpn';
  const listLen = u16(b, p);
  if (listLen !== n - 2 || listLen === 0) return 'tls_bad_alpn';
  const end = p + n;
  p += 2;
  const names: string[] = [];
  let count = 0;
  while (p < end) {
    const l = b[p++];
    if (l === 0 || l > end - p) return 'tls_bad_alpn';
    if (names.length < MAX_ALPN_KEPT) names.push(asciiName(b, p, l));
    count++;
    p += l;
  }
  return { names, count };
}

export function parseClientHello(buf: Buffer, off: number, len: number): ClientHelloView | HelloRejection {
  const end = bounds(buf, off, len);
  if (typeof end !== 'number') return end;
  const s = helloStart(buf, off, end);
  if (typeof s === 'string') return s;
  let p = s.next;
  if (end - p < 2) return 'tls_hello_truncated';
  const csLen = u16(buf, p);
  p += 2;
  if (csLen === 0 || (csLen & 1) !== 0) return 'tls_bad_cipher_suites';
  if (end - p < csLen) return 'tls_hello_truncated';
  p += csLen;
  if (end - p < 1) return 'tls_hello_truncated';
  const compLen = buf[p++];
  if (compLen === 0) return 'tls_hello_malformed';
  if (end - p < compLen) return 'tls_hello_truncated';
  p += compLen;
  const exts = extensions(buf, p, end);
  if (typeof exts === 'string') return exts;
  const v: ClientHelloView = {
    legacyVersion: s.version, random: s.random, sessionId: s.sessionId, cipherSuiteCount: csLen / 2,
    sni: null, sniRejected: null, alpnOffered: [], alpnOfferedCount: 0, supportedVersions: [],
    sessionTicket: 'absent', psk: false, keyShareGroups: [], extensionCount: exts.length,
  };
  for (const e of exts) {
    const q = e.off;
    switch (e.type) {
      case ExtensionType.SERVER_NAME: {
        // ServerNameList<1..2^16-1> of { NameType(0 = host_name), HostName<1..2^16-1> } (RFC 6066 3).
        if (e.len === 0) break; // a server's empty echo; from a client, nothing to read
        if (e.len < 5 || u16(buf, q) !== e.len - 2) {
          v.sniRejected = 'tls_sni_malformed';
          break;
        }
        const listEnd = q + e.len;
        let r = q + 2;
        while (r + 3 <= listEnd) {
          const nt = buf[r];
          const nl = u16(buf, r + 1);
          r += 3;
          if (nl > listEnd - r) {
            v.sniRejected = 'tls_sni_malformed';
            break;
          }
          if (nt === 0 && v.sni === null && v.sniRejected === null) {
            if (nl > MAX_SNI_LENGTH) v.sniRejected = 'tls_sni_too_long';
            else if (!validHostname(buf, r, nl)) v.sniRejected = 'tls_sni_bad_chars';
            else v.sni = buf.toString('latin1', r, r + nl).toLowerCase();
          }
          r += nl;
        }
        if (r !== listEnd && v.sniRejected === null) v.sniRejected = 'tls_sni_malformed';
        if (v.sniRejected !== null) v.sni = null;
        break;
      }
      case ExtensionType.ALPN: {
        const a = alpnList(buf, q, e.len);
        if (typeof a === 'string') return a;
        v.alpnOffered = a.names;
        v.alpnOfferedCount = a.count;
        break;
      }
      case ExtensionType.SUPPORTED_VERSIONS: {
        // ProtocolVersion versions<2..254> (RFC 8446 4.2.1), a 1-byte length.
        if (e.len < 1) return 'tls_bad_supported_versions';
        const l = buf[q];
        if (l !== e.len - 1 || l === 0 || (l & 1) !== 0) return 'tls_bad_supported_versions';
        for (let r = q + 1; r < q + e.len; r += 2) v.supportedVersions.push(u16(buf, r));
        break;
      }
      case ExtensionType.SESSION_TICKET:
        v.sessionTicket = e.len > 0 ? 'ticket' : 'empty';
        break;
      case ExtensionType.PRE_SHARED_KEY:
        v.psk = true;
        break;
      case ExtensionType.KEY_SHARE: {
        // KeyShareEntry client_shares<0..2^16-1> of { group, key_exchange<1..2^16-1> }.
        if (e.len < 2 || u16(buf, q) !== e.len - 2) return 'tls_bad_extension_length';
        const kEnd = q + e.len;
        let r = q + 2;
        while (r < kEnd) {
          if (kEnd - r < 4) return 'tls_bad_extension_length';
          const g = u16(buf, r);
          const kl = u16(buf, r + 2);
          r += 4;
          if (kl > kEnd - r) return 'tls_bad_extension_length';
          if (v.keyShareGroups.length < MAX_EXTENSIONS) v.keyShareGroups.push(g);
          r += kl;
        }
        break;
      }
    }
  }
  return v;
}

export function parseServerHello(buf: Buffer, off: number, len: number): ServerHelloView | HelloRejection {
  const end = bounds(buf, off, len);
  if (typeof end !== 'number') return end;
  const s = helloStart(buf, off, end);
  if (typeof s === 'string') return s;
  let p = s.next;
  if (end - p < 3) return 'tls_hello_truncated';
  const cipherSuite = u16(buf, p);
  p += 3; // cipher suite, legacy_compression_method
  const exts = extensions(buf, p, end);
  if (typeof exts === 'string') return exts;
  const v: ServerHelloView = {
    legacyVersion: s.version, version: s.version, random: s.random, sessionId: s.sessionId, cipherSuite,
    helloRetryRequest: buf.compare(HRR_RANDOM, 0, 32, off + 2, off + 34) === 0,
    alpn: null, psk: false, sessionTicket: false, keyShareGroup: null, extensionCount: exts.length,
  };
  for (const e of exts) {
    const q = e.off;
    switch (e.type) {
      case ExtensionType.SUPPORTED_VERSIONS:
        // selected_version: exactly one ProtocolVersion (RFC 8446 4.2.1).
        if (e.len !== 2) return 'tls_bad_supported_versions';
        v.version = u16(buf, q);
        break;
      case ExtensionType.ALPN: {
        const a = alpnList(buf, q, e.len);
        if (typeof a === 'string') return a;
        if (a.count !== 1) return 'tls_bad_alpn'; // RFC 7301 3.1: exactly one name
        v.alpn = a.names[0];
        break;
      }
      case ExtensionType.PRE_SHARED_KEY:
        v.psk = true;
        break;
      case ExtensionType.SESSION_TICKET:
        v.sessionTicket = true;
        break;
      case ExtensionType.KEY_SHARE:
        // ServerHello: one KeyShareEntry; HelloRetryRequest: just the selected group.
        if (e.len < 2) return 'tls_bad_extension_length';
        v.keyShareGroup = u16(buf, q);
        break;
    }
  }
  return v;
}

/**
 * What the server's cleartext flight showed after its ServerHello in TLS 1.2: `certificate` (a
 * Certificate message: full handshake), `abbreviated` (NewSessionTicket or ChangeCipherSpec
 * right after the ServerHello, no Certificate: RFC 5246 7.3 / RFC 5077 3.1), `unknown` (not seen
 * yet, or lost).
 */
export type ServerFlight = 'certificate' | 'abbreviated' | 'unknown';

/**
 * Full or resumed, by keepalive-semantics section 9 (Zeek's ssl analyzer applies the same rules):
 * - TLS 1.3 (ServerHello's supported_versions says 0x0304): resumed exactly when the ServerHello
 *   carries pre_shared_key. The legacy session id is always echoed in 1.3, so it means nothing.
 * - TLS 1.2 and older: resumed when the server echoes the client's non-empty session id (a full
 *   handshake also gets a non-empty id, so equality is the test), or, after the client offered a
 *   ticket, when the flight is abbreviated (RFC 5077 3.4 lets a server accept a ticket with a new
 *   or empty id). With a ticket offered, no echo and the flight unknown: null (not known yet).
 * A HelloRetryRequest decides nothing: null.
 */
export function resumed(ch: Readonly<ClientHelloView>, sh: Readonly<ServerHelloView>, flight: ServerFlight = 'unknown'): boolean | null {
  if (sh.helloRetryRequest) return null;
  if (sh.version === TLS13) return sh.psk;
  if (ch.sessionId !== '' && sh.sessionId === ch.sessionId) return true;
  if (flight === 'abbreviated') return true;
  if (flight === 'certificate') return false;
  return ch.sessionTicket === 'ticket' ? null : false;
}

/** "1.2", "1.3"... for a protocol version; the hex value for anything else (GREASE, SSL 3). */
export function versionName(v: number): string {
  if (v >= 0x0301 && v <= 0x0304) return `1.${v - 0x0301}`;
  return `0x${v.toString(16).padStart(4, '0')}`;
}

/** IANA names of the suites the product meets (what `openssl s_client` and curl print use OpenSSL's names; this is the registry's). */
const CIPHER_NAMES: Readonly<Record<number, string>> = {
  0x1301: 'TLS_AES_128_GCM_SHA256',
  0x1302: 'TLS_AES_256_GCM_SHA384',
  0x1303: 'TLS_CHACHA20_POLY1305_SHA256',
  0xc02b: 'TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256',
  0xc02c: 'TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384',
  0xc02f: 'TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256',
  0xc030: 'TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384',
  0xcca8: 'TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256',
  0xcca9: 'TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256',
  0x009e: 'TLS_DHE_RSA_WITH_AES_128_GCM_SHA256',
  0x009f: 'TLS_DHE_RSA_WITH_AES_256_GCM_SHA384',
  0x009c: 'TLS_RSA_WITH_AES_128_GCM_SHA256',
  0x009d: 'TLS_RSA_WITH_AES_256_GCM_SHA384',
};

/** OpenSSL's names for the same suites (what `openssl s_client` prints as "Cipher is ..."). */
const OPENSSL_CIPHER_NAMES: Readonly<Record<number, string>> = {
  0x1301: 'TLS_AES_128_GCM_SHA256',
  0x1302: 'TLS_AES_256_GCM_SHA384',
  0x1303: 'TLS_CHACHA20_POLY1305_SHA256',
  0xc02b: 'ECDHE-ECDSA-AES128-GCM-SHA256',
  0xc02c: 'ECDHE-ECDSA-AES256-GCM-SHA384',
  0xc02f: 'ECDHE-RSA-AES128-GCM-SHA256',
  0xc030: 'ECDHE-RSA-AES256-GCM-SHA384',
  0xcca8: 'ECDHE-RSA-CHACHA20-POLY1305',
  0xcca9: 'ECDHE-ECDSA-CHACHA20-POLY1305',
  0x009e: 'DHE-RSA-AES128-GCM-SHA256',
  0x009f: 'DHE-RSA-AES256-GCM-SHA384',
  0x009c: 'AES128-GCM-SHA256',
  0x009d: 'AES256-GCM-SHA384',
};

/** IANA name, or `0x....` for a suite not in the table (bounded either way: one string per 16-bit code). */
export function cipherSuiteName(code: number): string {
  return CIPHER_NAMES[code] ?? `0x${code.toString(16).padStart(4, '0')}`;
}

export function opensslCipherName(code: number): string {
  return OPENSSL_CIPHER_NAMES[code] ?? `0x${code.toString(16).padStart(4, '0')}`;
}
