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

function xorNonce(iv: Buffer, seq: bigint): Buffer {
  const nonce = Buffer.from(iv);
  const s = Buffer.alloc(8);
  s.writeBigUInt64BE(BigInt.asUintN(64, seq));
  for (let i = 0; i < 8; i++) nonce[4 + i] ^= s[i];
  return nonce;
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
export function openRecord(keys: TrafficKeys, seq: bigint, buf: Buffer, off = 0): OpenResult {
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
export function openFragment(keys: TrafficKeys, seq: bigint, type: number, version: number, frag: Buffer, off: number, length: number): OpenResult {
  if (frag.length - off < length) return { ok: false, reason: 'tls_record_truncated' };
  const body = off;
  if (keys.version === '1.3') {
    if (length > MAX_TLS13_CIPHERTEXT) return { ok: false, reason: 'tls_record_too_long' };
    if (length < TAG_LENGTH + 1) return { ok: false, reason: 'tls_record_too_short' };
    const aad = Buffer.allocUnsafe(RECORD_HEADER_LENGTH);
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
  const nonce = gcm
    ? Buffer.concat([keys.iv, frag.subarray(body, body + EXPLICIT_NONCE_LENGTH)])
    : xorNonce(keys.iv, seq);
  const plainLength = length - explicit - TAG_LENGTH;
  const aad = Buffer.alloc(13);
  aad.writeBigUInt64BE(BigInt.asUintN(64, seq), 0);
  aad[8] = type;
  aad.writeUInt16BE(version, 9);
  aad.writeUInt16BE(plainLength, 11);
  const ct = frag.subarray(body + explicit, body + explicit + plainLength);
  const tag = frag.subarray(body + length - TAG_LENGTH, body + length);
  const plain = decipher(keys, nonce, aad, ct, tag);
  if (plain === null) return { ok: false, reason: 'tls_bad_tag' };
  return { ok: true, type, plaintext: plain };
}
