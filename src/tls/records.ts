/**
 * TLS records (RFC 8446 5.1, RFC 5246 6.2): the 5-byte record header over (buffer, offset), in
 * place. Nothing here throws on wire data and nothing keeps a reference to the bytes.
 *
 * `readRecordHeader` says `truncated` when fewer than 5 bytes are there (a length problem), and a
 * stable snake_case rejection (`RecordRejection`) for a header no TLS peer sends (a content
 * problem): the caller (`record-stream.ts`) then knows the record framing is wrong.
 * `plausibleRecordHeader` is the same test as a boolean, for resynchronisation after a gap.
 */

/** Every record starts with this many bytes: type (1), legacy_record_version (2), length (2). */
export const RECORD_HEADER_LENGTH = 5;

/** Largest plaintext fragment (RFC 8446 5.1: 2^14). */
export const MAX_PLAINTEXT_LENGTH = 1 << 14;

/**
 * Largest record length a peer may send: 2^14 + 2048 (RFC 5246 6.2.3, TLSCiphertext; TLS 1.3
 * allows only 2^14 + 256, RFC 8446 5.2). The header cannot tell versions apart while encrypted,
 * so the larger bound is the rule.
 */
export const MAX_RECORD_LENGTH = MAX_PLAINTEXT_LENGTH + 2048;

export const ContentType = {
  CHANGE_CIPHER_SPEC: 20,
  ALERT: 21,
  HANDSHAKE: 22,
  APPLICATION_DATA: 23,
  /** RFC 6520; never seen from the servers in section 9, still legal. */
  HEARTBEAT: 24,
} as const;

export const CONTENT_TYPE_NAMES: Readonly<Record<number, string>> = {
  20: 'change_cipher_spec', 21: 'alert', 22: 'handshake', 23: 'application_data', 24: 'heartbeat',
};

/**
 * legacy_record_version: 0x0301 (TLS 1.0, what a ClientHello record carries for compatibility)
 * to 0x0304. TLS 1.3 peers write 0x0303 on every record after the first (RFC 8446 5.1); 0x0304
 * is accepted because the field is "ignored for all purposes". SSL 3.0 (0x0300) is not TLS.
 */
export const MIN_RECORD_VERSION = 0x0301;
export const MAX_RECORD_VERSION = 0x0304;

export type RecordRejection =
  /** Content type outside 20..24. */
  | 'tls_bad_content_type'
  /** legacy_record_version outside 0x0301..0x0304. */
  | 'tls_bad_record_version'
  /** Length over 2^14 + 2048 (RFC 5246 6.2.3: record_overflow). */
  | 'tls_record_too_long'
  /** Length 0 for handshake, alert or change_cipher_spec (RFC 8446 5.1: implementations must not send them). */
  | 'tls_empty_record';

export interface RecordHeader {
  type: number;
  version: number;
  /** Bytes of fragment after the header, 0 .. MAX_RECORD_LENGTH. */
  length: number;
}

export function newRecordHeader(): RecordHeader {
  return { type: 0, version: 0, length: 0 };
}

/** Fills a caller-owned header from buf[off, off + 5) (the caller checked 5 bytes are there): no allocation on the hot path. */
export function decodeRecordHeader(buf: Buffer, off: number, out: RecordHeader): void {
  out.type = buf[off];
  out.version = (buf[off + 1] << 8) | buf[off + 2];
  out.length = (buf[off + 3] << 8) | buf[off + 4];
}

/** Why a decoded header cannot be a TLS record header, or null when it can. */
export function checkRecordHeader(h: Readonly<RecordHeader>): RecordRejection | null {
  if (h.type < ContentType.CHANGE_CIPHER_SPEC || h.type > ContentType.HEARTBEAT) return 'tls_bad_content_type';
  if (h.version < MIN_RECORD_VERSION || h.version > MAX_RECORD_VERSION) return 'tls_bad_record_version';
  if (h.length > MAX_RECORD_LENGTH) return 'tls_record_too_long';
  // Application data may be empty (some stacks send empty records against BEAST); the others may not.
  if (h.length === 0 && h.type !== ContentType.APPLICATION_DATA && h.type !== ContentType.HEARTBEAT) return 'tls_empty_record';
  return null;
}

/**
 * The record header at buf[off] (`len` bytes there): `truncated` with fewer than 5, a rejection
 * for a header no peer sends, else a fresh header object.
 */
export function readRecordHeader(buf: Buffer, off: number, len: number): RecordHeader | 'truncated' | RecordRejection {
  if (len < RECORD_HEADER_LENGTH || off < 0 || off + RECORD_HEADER_LENGTH > buf.length) return 'truncated';
  const h = newRecordHeader();
  decodeRecordHeader(buf, off, h);
  return checkRecordHeader(h) ?? h;
}

/**
 * Could the 5 bytes at buf[off] be a record header? For resynchronisation only, so stricter than
 * `checkRecordHeader`: after the handshake a connection carries only application data (23) and
 * alerts (21), plus handshake records in TLS 1.2 renegotiation or 1.2 cleartext flights; the
 * version is 0x0303 on every record after the hellos in both 1.2 and 1.3 (0x0301/0x0302 only for
 * those old versions, which keep their own value); so a candidate must have a type 21..23, a
 * version 0x0301..0x0303 and a non-zero length within the bound. A 1-in-2^16-ish false positive
 * per offset is why the splitter also wants a chain of them. The caller checked 5 bytes are there.
 */
export function plausibleRecordHeader(buf: Buffer, off: number): boolean {
  const t = buf[off];
  if (t < ContentType.ALERT || t > ContentType.APPLICATION_DATA) return false;
  if (buf[off + 1] !== 0x03) return false;
  const minor = buf[off + 2];
  if (minor < 0x01 || minor > 0x03) return false;
  const length = (buf[off + 3] << 8) | buf[off + 4];
  return length > 0 && length <= MAX_RECORD_LENGTH;
}
