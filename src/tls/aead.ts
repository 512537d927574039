/**
 * Decrypt one TLS record with AEAD keys from `keys.ts` (node:crypto's GCM and ChaCha20-Poly1305).
 *
 * `openRecord(keys, seq, buf, off)` reads the record whose 5-byte header starts at buf[off] (the
 * whole record must be present: the record layer guarantees it) and returns the plaintext and
 * content type, or a rejection name. It never throws on wire data: a failed tag is the expected
 * outcome of a wrong sequence guess after a gap, so the caller tries and counts instead.
 *
 * - TLS 1.3 (RFC 8446 5.2-5.4): nonce = iv XOR seq (left-padded to 12 bytes), additional data =
 *   the record header as sent (opaque_type 23, legacy version, length); the plaintext is
 *   TLSInnerPlaintext: content, the real content type, then zero padding, so the type is the last
 *   non-zero byte.
 * - TLS 1.2 AES-GCM (RFC 5288 3): the body starts with the 8-byte explicit nonce; nonce = 4-byte
 *   implicit iv || explicit nonce. TLS 1.2 ChaCha20-Poly1305 (RFC 7905 2): nonce = iv XOR seq, no
 *   explicit part. Additional data (RFC 5246 6.2.3.3) = seq (8) || type || version || plaintext
 *   length, which is the body length minus explicit nonce and tag.
 *
 * Sequence numbers are per direction and the caller's: 0 for the first record under a key, +1
 * after each record (failed or not, as the sender counted it). Keys are not copied or kept.
 */
import { createDecipheriv } from 'node:crypto';
import type { TrafficKeys } from './keys.js';
import { RECORD_HEADER_LENGTH } from './records.js';

/** AEAD tag length for every suite here. */
export const TAG_LENGTH = 16;
/** TLS 1.2 AES-GCM explicit nonce length (RFC 5288 3). */
export const EXPLICIT_NONCE_LENGTH = 8;
/** Largest TLS 1.3 ciphertext (RFC 8446 5.2: 2^14 + 256); larger is a record_overflow. */
export const MAX_TLS13_CIPHERTEXT = 16384 + 256;
/** Largest TLS 1.2 ciphertext (RFC 5246 6.2.3: 2^14 + 2048). */
export const MAX_TLS12_CIPHERTEXT = 16384 + 2048;

/**
 * Why a record did not decrypt (stable snake_case names for the anomaly counters):
 * - tls_record_truncated: fewer bytes than the header's length (a caller bug or a cut capture)
 * - tls_record_too_long: over the RFC's ciphertext limit
 * - tls_record_too_short: no room for explicit nonce and tag
 * - tls_bad_tag: authentication failed (wrong keys, wrong sequence number, corrupt bytes)
 * - tls_no_content_type: TLS 1.3 plaintext all zeros (RFC 8446 5.4: unexpected_message)
 */
export type AeadRejection =
  | 'tls_record_truncated'
  | 'tls_record_too_long'
  | 'tls_record_too_short'
  | 'tls_bad_tag'
  | 'tls_no_content_type';

export type OpenResult =
  | { ok: true; type: number; plaintext: Buffer }
  | { ok: false; reason: AeadRejection };

/** The high and low 32 bits of a sequence number (a number below 2^53, or a 64-bit bigint). */
function seqWords(seq: bigint | number): [number, number] {
  if (typeof seq === 'number') return [Math.floor(seq / 0x100000000) >>> 0, seq >>> 0];
  const s = BigInt.asUintN(64, seq);
  return [Number(s >> 32n) >>> 0, Number(s & 0xffffffffn) >>> 0];
}

/** Scratch for the nonce and the additional data: node:crypto copies both when it takes them. */
const NONCE = Buffer.alloc(12);
const AAD13 = Buffer.alloc(RECORD_HEADER_LENGTH);
const AAD12 = Buffer.alloc(13);

function xorNonce(iv: Buffer, seq: bigint | number): Buffer {
  const [hi, lo] = seqWords(seq);
  iv.copy(NONCE, 0, 0, 12);
  NONCE.writeUInt32BE((NONCE.readUInt32BE(4) ^ hi) >>> 0, 4);
  NONCE.writeUInt32BE((NONCE.readUInt32BE(8) ^ lo) >>> 0, 8);
  return NONCE;
}

function decipher(keys: TrafficKeys, nonce: Buffer, aad: Buffer, ct: Buffer, tag: Buffer): Buffer | null {
  try {
    // One branch per overload so the types know setAAD/setAuthTag exist (both modes have them).
    const d =
      keys.aead === 'chacha20-poly1305'
        ? createDecipheriv(keys.aead, keys.key, nonce, { authTagLength: TAG_LENGTH })
        : createDecipheriv(keys.aead, keys.key, nonce, { authTagLength: TAG_LENGTH });
    d.setAAD(aad, { plaintextLength: ct.length });
    d.setAuthTag(tag);
    const head = d.update(ct);
    const tail = d.final(); // throws on a bad tag
    return tail.length === 0 ? head : Buffer.concat([head, tail]);
  } catch {
    return null;
  }
}

/**
 * Decrypt the record at buf[off]. `seq` is this direction's sequence number for this record
 * (a bigint: 64 bits, RFC 8446 5.3). The returned plaintext is a fresh buffer (for TLS 1.3 a view
 * of it without the type byte and padding); the input is not modified.
 */
export function openRecord(keys: TrafficKeys, seq: bigint | number, buf: Buffer, off = 0): OpenResult {
  if (buf.length - off < RECORD_HEADER_LENGTH) return { ok: false, reason: 'tls_record_truncated' };
  const length = buf.readUInt16BE(off + 3);
  const body = off + RECORD_HEADER_LENGTH;
  if (buf.length - body < length) return { ok: false, reason: 'tls_record_truncated' };
  return openFragment(keys, seq, buf[off], buf.readUInt16BE(off + 1), buf, body, length);
}

/**
 * The same as `openRecord` for a record whose header was already read: its content type, its
 * version field and its fragment at frag[off, off + length) (what the record layer,
 * record-stream.ts, hands over). The additional data is rebuilt from the header fields.
 */
export function openFragment(keys: TrafficKeys, seq: bigint | number, type: number, version: number, frag: Buffer, off: number, length: number): OpenResult {
  if (frag.length - off < length) return { ok: false, reason: 'tls_record_truncated' };
  const body = off;
  if (keys.version === '1.3') {
    if (length > MAX_TLS13_CIPHERTEXT) return { ok: false, reason: 'tls_record_too_long' };
    if (length < TAG_LENGTH + 1) return { ok: false, reason: 'tls_record_too_short' };
    const aad = AAD13;
    aad[0] = type;
    aad.writeUInt16BE(version, 1);
    aad.writeUInt16BE(length, 3);
    const ct = frag.subarray(body, body + length - TAG_LENGTH);
    const tag = frag.subarray(body + length - TAG_LENGTH, body + length);
    const inner = decipher(keys, xorNonce(keys.iv, seq), aad, ct, tag);
    if (inner === null) return { ok: false, reason: 'tls_bad_tag' };
    let end = inner.length - 1;
    while (end >= 0 && inner[end] === 0) end--;
    if (end < 0) return { ok: false, reason: 'tls_no_content_type' };
    return { ok: true, type: inner[end], plaintext: inner.subarray(0, end) };
  }

  if (length > MAX_TLS12_CIPHERTEXT) return { ok: false, reason: 'tls_record_too_long' };
  const gcm = keys.aead !== 'chacha20-poly1305';
  const explicit = gcm ? EXPLICIT_NONCE_LENGTH : 0;
  if (length < explicit + TAG_LENGTH) return { ok: false, reason: 'tls_record_too_short' };
  let nonce: Buffer;
  if (gcm) {
    nonce = NONCE;
    keys.iv.copy(nonce, 0, 0, 4);
    frag.copy(nonce, 4, body, body + EXPLICIT_NONCE_LENGTH);
  } else nonce = xorNonce(keys.iv, seq);
  const plainLength = length - explicit - TAG_LENGTH;
  const aad = AAD12;
  const [hi, lo] = seqWords(seq);
  aad.writeUInt32BE(hi, 0);
  aad.writeUInt32BE(lo, 4);
  aad[8] = type;
  aad.writeUInt16BE(version, 9);
  aad.writeUInt16BE(plainLength, 11);
  const ct = frag.subarray(body + explicit, body + explicit + plainLength);
  const tag = frag.subarray(body + length - TAG_LENGTH, body + length);
  const plain = decipher(keys, nonce, aad, ct, tag);
  if (plain === null) return { ok: false, reason: 'tls_bad_tag' };
  return { ok: true, type, plaintext: plain };
}
