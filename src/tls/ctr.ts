/**
 * Counter-mode keystreams for reading ranges of TLS records without opening them whole: the
 * cipher part of AES-GCM (NIST SP 800-38D 7.2: plaintext block k = ciphertext XOR
 * E(K, nonce || 2 + k)) and of ChaCha20-Poly1305 (RFC 8439 2.4: 64-byte block k uses block counter
 * 1 + k). Used by decrypt.ts after a key's first record was opened with its tag checked: a
 * decrypting observer reads the HTTP heads and skips the bodies.
 *
 * Why not node:crypto's GCM decipher per record: making one costs about 5 us and the capture of
 * bench/run.sh --only tls has over a million records; one AES-ECB cipher per key encrypts the
 * counter blocks (OpenSSL, AES-NI), and ChaCha20 is computed here (node:crypto's `chacha20`
 * cipher takes the nonce at creation, so it would be one cipher per read again: measured 2.7 us
 * for a 90-byte read and 3.5 us for 384 bytes, against 0.6 and 1.8 us here).
 *
 * An ECB call costs about 1.4 us whatever its size (measured: 16 and 256 bytes alike), so AES
 * keystreams are made ahead: the nonces of the next `WINDOW_RECORDS` records are known (TLS 1.3
 * and ChaCha20: iv XOR sequence number; TLS 1.2 GCM: the explicit nonce, which OpenSSL increments
 * by one per record from wherever it started; checked per record, else the record is done alone), and
 * one call makes the first `WINDOW_BLOCKS` blocks of each: a request, a response head, a whole
 * short record.
 *
 * Memory: per keystream the key (an AES-ECB context, or 8 words), the window (6 x 384 bytes),
 * ChaCha20's 64-byte block; the counter blocks and the output are one scratch for the whole
 * process (everything here is synchronous): `read` returns a view into it, valid until the next
 * `read` of any keystream.
 */
import { createCipheriv, type Cipher } from 'node:crypto';

/** A record's ciphertext is at most 2^14 + 256 bytes (RFC 8446 5.2): 1,041 AES blocks. */
const MAX_BLOCKS = 1041;
const MAX_BYTES = MAX_BLOCKS * 16;
const OUT = Buffer.allocUnsafeSlow(MAX_BYTES);
const CTR = Buffer.allocUnsafeSlow(MAX_BYTES);
const CTR32 = new Uint32Array(CTR.buffer, CTR.byteOffset, MAX_BYTES / 4);
const OUT32 = new Uint32Array(OUT.buffer, OUT.byteOffset, MAX_BYTES / 4);

/**
 * OUT[0, n) = ct[base, base + n) XOR ks[k, k + n): the ciphertext copied first (memcpy) so that the
 * XOR runs on aligned 32-bit words (a quarter of the iterations of a byte loop; the keystream from
 * node:crypto has its own ArrayBuffer); bytes where the keystream offset is not aligned.
 */
function xorInto(ct: Buffer, base: number, ks: Buffer, k: number, n: number, ks32: Uint32Array | null = null): Buffer {
  ct.copy(OUT, 0, base, base + n);
  const ko = ks.byteOffset + k;
  if ((ko & 3) === 0) {
    const words = n >> 2;
    // A view made once per keystream window; the ECB output is its own ArrayBuffer, so aligned.
    const w = ks32 ?? new Uint32Array(ks.buffer, ks.byteOffset & ~3, (ks.byteLength + (ks.byteOffset & 3)) >> 2);
    const k32 = (ko - (w.byteOffset)) >> 2;
    for (let i = 0; i < words; i++) OUT32[i] ^= w[k32 + i];
    for (let i = words << 2; i < n; i++) OUT[i] ^= ks[k + i];
  } else {
    for (let i = 0; i < n; i++) OUT[i] ^= ks[k + i];
  }
  return OUT.subarray(0, n);
}

/** Records whose keystream one ECB call makes ahead, and blocks of each (384 bytes: nginx's response heads are about 260). */
export const WINDOW_RECORDS = 6;
export const WINDOW_BLOCKS = 24;
const WINDOW_BYTES = WINDOW_BLOCKS * 16;
const SCRATCH_NONCE = Buffer.alloc(12);

export class RecordKeystream {
  private readonly ecb: Cipher | null;
  private readonly chachaKey: Uint32Array | null;
  private readonly nonce = Buffer.alloc(12);
  /* ChaCha20 scratch. */
  private readonly block = Buffer.allocUnsafe(64);
  private readonly blockWords = new Uint32Array(this.block.buffer, this.block.byteOffset, 16);

  /** The record being read: its sequence number, and whether its nonce is the predicted one. */
  private seq = 0;
  private predicted = false;
  private win: Buffer | null = null;
  private win32: Uint32Array | null = null;
  private winSeq = -1;
  private readonly iv: Buffer;
  /** TLS 1.2 AES-GCM: the nonce is the 4-byte salt and the record's explicit 8 bytes. */
  private readonly explicitNonce: boolean;

  constructor(aead: 'aes-128-gcm' | 'aes-256-gcm' | 'chacha20-poly1305', key: Buffer, iv: Buffer, version: '1.2' | '1.3') {
    this.iv = Buffer.from(iv);
    this.explicitNonce = version === '1.2' && aead !== 'chacha20-poly1305';
    if (aead === 'chacha20-poly1305') {
      this.ecb = null;
      this.chachaKey = new Uint32Array(8);
      for (let i = 0; i < 8; i++) this.chachaKey[i] = key.readUInt32LE(4 * i);
    } else {
      this.ecb = createCipheriv(aead === 'aes-256-gcm' ? 'aes-256-ecb' : 'aes-128-ecb', key, null);
      this.ecb.setAutoPadding(false);
      this.chachaKey = null;
    }
  }

  /** The record's 12-byte nonce (copied), for a test or a caller that computed it. */
  setNonce(nonce: Buffer, off = 0): void {
    nonce.copy(this.nonce, 0, off, off + 12);
    this.predicted = false;
  }

  /**
   * The next record to read: its sequence number and, for TLS 1.2 AES-GCM, where its 8-byte
   * explicit nonce is. Sets the nonce (RFC 8446 5.3; RFC 5288 3; RFC 7905 2).
   */
  setRecord(seq: number, frag: Buffer | null, explicitOff: number): void {
    this.seq = seq;
    const nonce = this.nonce;
    if (this.explicitNonce) {
      this.iv.copy(nonce, 0, 0, 4);
      frag!.copy(nonce, 4, explicitOff, explicitOff + 8);
      // OpenSSL starts the explicit nonce anywhere and adds one per record (RFC 5288 3 only asks
      // that it never repeat): predicted when it is the last record's plus the records between.
      const hi = nonce.readUInt32BE(4);
      const lo = nonce.readUInt32BE(8);
      const d = seq - this.lastSeq;
      const sum = this.lastLo + d;
      this.predicted = this.lastSeq >= 0 && d > 0 && lo === sum >>> 0 && hi === ((this.lastHi + Math.floor(sum / 0x100000000)) >>> 0);
      if (!this.predicted) this.win = null; // the window was made for other nonces
      this.lastSeq = seq;
      this.lastHi = hi;
      this.lastLo = lo;
    } else {
      this.nonceOf(seq, nonce);
      this.predicted = true;
    }
  }

  /** TLS 1.2 AES-GCM: the last record's sequence number and explicit nonce. */
  private lastSeq = -1;
  private lastHi = 0;
  private lastLo = 0;

  private nonceOf(seq: number, out: Buffer): void {
    const iv = this.iv;
    if (this.explicitNonce) {
      const sum = this.lastLo + (seq - this.lastSeq);
      iv.copy(out, 0, 0, 4);
      out.writeUInt32BE((this.lastHi + Math.floor(sum / 0x100000000)) >>> 0, 4);
      out.writeUInt32BE(sum >>> 0, 8);
      return;
    }
    iv.copy(out, 0, 0, 12);
    out.writeUInt32BE((iv.readUInt32BE(4) ^ Math.floor(seq / 0x100000000)) >>> 0, 4);
    out.writeUInt32BE((iv.readUInt32BE(8) ^ seq) >>> 0, 8);
  }

  /** Plaintext [start, start + n) of the ciphertext at ct[ctOff...]: a view valid until the next call. */
  read(ct: Buffer, ctOff: number, start: number, n: number): Buffer {
    if (n <= 0) return OUT.subarray(0, 0);
    if (this.chachaKey) return this.chacha(ct, ctOff, start, n);
    if (this.predicted && start + n <= WINDOW_BYTES) return this.fromWindow(ct, ctOff, start, n);
    return this.aes(ct, ctOff, start, n);
  }

  private fromWindow(ct: Buffer, ctOff: number, start: number, n: number): Buffer {
    const seq = this.seq;
    if (this.win === null || seq < this.winSeq || seq >= this.winSeq + WINDOW_RECORDS) {
      const w = CTR32;
      const nb = SCRATCH_NONCE;
      for (let r = 0; r < WINDOW_RECORDS; r++) {
        this.nonceOf(seq + r, nb);
        const n0 = nb.readUInt32LE(0);
        const n1 = nb.readUInt32LE(4);
        const n2 = nb.readUInt32LE(8);
        for (let b = 0, o = r * WINDOW_BLOCKS * 4; b < WINDOW_BLOCKS; b++, o += 4) {
          const c = 2 + b;
          w[o] = n0;
          w[o + 1] = n1;
          w[o + 2] = n2;
          w[o + 3] = c << 24; // 2..25 big-endian in the last word
        }
      }
      const win = this.ecb!.update(CTR.subarray(0, WINDOW_RECORDS * WINDOW_BYTES));
      this.win = win;
      this.win32 = (win.byteOffset & 3) === 0 ? new Uint32Array(win.buffer, win.byteOffset, win.byteLength >> 2) : null;
      this.winSeq = seq;
    }
    return xorInto(ct, ctOff + start, this.win, (seq - this.winSeq) * WINDOW_BYTES + start, n, this.win32);
  }

  /** Zero the key schedule's copy here (the ECB cipher's own is freed with it). */
  wipe(): void {
    this.chachaKey?.fill(0);
    this.win?.fill(0);
    this.win = null;
    this.iv.fill(0);
    this.block.fill(0);
  }

  private aes(ct: Buffer, ctOff: number, start: number, n: number): Buffer {
    const first = start >> 4;
    const blocks = ((start + n + 15) >> 4) - first;
    // Counter blocks as words (CTR32 is little-endian: the nonce's bytes read LE are written back as they were).
    const nonce = this.nonce;
    const n0 = nonce.readUInt32LE(0);
    const n1 = nonce.readUInt32LE(4);
    const n2 = nonce.readUInt32LE(8);
    const w = CTR32;
    for (let b = 0, o = 0; b < blocks; b++, o += 4) {
      const c = (2 + first + b) >>> 0;
      w[o] = n0;
      w[o + 1] = n1;
      w[o + 2] = n2;
      w[o + 3] = ((c & 0xff) << 24) | ((c & 0xff00) << 8) | ((c >>> 8) & 0xff00) | (c >>> 24);
    }
    const ks = this.ecb!.update(CTR.subarray(0, blocks << 4));
    return xorInto(ct, ctOff + start, ks, start & 15, n);
  }

  private chacha(ct: Buffer, ctOff: number, start: number, n: number): Buffer {
    const out = OUT;
    const block = this.block;
    let pos = start;
    let o = 0;
    const end = start + n;
    while (pos < end) {
      const k = Math.floor(pos / 64);
      this.chachaBlock(1 + k);
      const inBlock = pos - k * 64;
      const take = Math.min(64 - inBlock, end - pos);
      const base = ctOff + pos;
      for (let i = 0; i < take; i++) out[o + i] = ct[base + i] ^ block[inBlock + i];
      pos += take;
      o += take;
    }
    return out.subarray(0, n);
  }

  /** One ChaCha20 block (RFC 8439 2.3) for `counter` into `this.block` (little-endian words). Locals, not arrays: V8 keeps them in registers. */
  private chachaBlock(counter: number): void {
    const k = this.chachaKey!;
    const nonce = this.nonce;
    const j0 = 0x61707865, j1 = 0x3320646e, j2 = 0x79622d32, j3 = 0x6b206574;
    const j4 = k[0], j5 = k[1], j6 = k[2], j7 = k[3], j8 = k[4], j9 = k[5], j10 = k[6], j11 = k[7];
    const j12 = counter >>> 0, j13 = nonce.readUInt32LE(0), j14 = nonce.readUInt32LE(4), j15 = nonce.readUInt32LE(8);
    let x0 = j0, x1 = j1, x2 = j2, x3 = j3, x4 = j4, x5 = j5, x6 = j6, x7 = j7;
    let x8 = j8, x9 = j9, x10 = j10, x11 = j11, x12 = j12, x13 = j13, x14 = j14, x15 = j15;
    let t: number;
    for (let r = 0; r < 10; r++) {
      // columns
      x0 = (x0 + x4) | 0; t = x12 ^ x0; x12 = (t << 16) | (t >>> 16); x8 = (x8 + x12) | 0; t = x4 ^ x8; x4 = (t << 12) | (t >>> 20);
      x0 = (x0 + x4) | 0; t = x12 ^ x0; x12 = (t << 8) | (t >>> 24); x8 = (x8 + x12) | 0; t = x4 ^ x8; x4 = (t << 7) | (t >>> 25);
      x1 = (x1 + x5) | 0; t = x13 ^ x1; x13 = (t << 16) | (t >>> 16); x9 = (x9 + x13) | 0; t = x5 ^ x9; x5 = (t << 12) | (t >>> 20);
      x1 = (x1 + x5) | 0; t = x13 ^ x1; x13 = (t << 8) | (t >>> 24); x9 = (x9 + x13) | 0; t = x5 ^ x9; x5 = (t << 7) | (t >>> 25);
      x2 = (x2 + x6) | 0; t = x14 ^ x2; x14 = (t << 16) | (t >>> 16); x10 = (x10 + x14) | 0; t = x6 ^ x10; x6 = (t << 12) | (t >>> 20);
      x2 = (x2 + x6) | 0; t = x14 ^ x2; x14 = (t << 8) | (t >>> 24); x10 = (x10 + x14) | 0; t = x6 ^ x10; x6 = (t << 7) | (t >>> 25);
      x3 = (x3 + x7) | 0; t = x15 ^ x3; x15 = (t << 16) | (t >>> 16); x11 = (x11 + x15) | 0; t = x7 ^ x11; x7 = (t << 12) | (t >>> 20);
      x3 = (x3 + x7) | 0; t = x15 ^ x3; x15 = (t << 8) | (t >>> 24); x11 = (x11 + x15) | 0; t = x7 ^ x11; x7 = (t << 7) | (t >>> 25);
      // diagonals
      x0 = (x0 + x5) | 0; t = x15 ^ x0; x15 = (t << 16) | (t >>> 16); x10 = (x10 + x15) | 0; t = x5 ^ x10; x5 = (t << 12) | (t >>> 20);
      x0 = (x0 + x5) | 0; t = x15 ^ x0; x15 = (t << 8) | (t >>> 24); x10 = (x10 + x15) | 0; t = x5 ^ x10; x5 = (t << 7) | (t >>> 25);
      x1 = (x1 + x6) | 0; t = x12 ^ x1; x12 = (t << 16) | (t >>> 16); x11 = (x11 + x12) | 0; t = x6 ^ x11; x6 = (t << 12) | (t >>> 20);
      x1 = (x1 + x6) | 0; t = x12 ^ x1; x12 = (t << 8) | (t >>> 24); x11 = (x11 + x12) | 0; t = x6 ^ x11; x6 = (t << 7) | (t >>> 25);
      x2 = (x2 + x7) | 0; t = x13 ^ x2; x13 = (t << 16) | (t >>> 16); x8 = (x8 + x13) | 0; t = x7 ^ x8; x7 = (t << 12) | (t >>> 20);
      x2 = (x2 + x7) | 0; t = x13 ^ x2; x13 = (t << 8) | (t >>> 24); x8 = (x8 + x13) | 0; t = x7 ^ x8; x7 = (t << 7) | (t >>> 25);
      x3 = (x3 + x4) | 0; t = x14 ^ x3; x14 = (t << 16) | (t >>> 16); x9 = (x9 + x14) | 0; t = x4 ^ x9; x4 = (t << 12) | (t >>> 20);
      x3 = (x3 + x4) | 0; t = x14 ^ x3; x14 = (t << 8) | (t >>> 24); x9 = (x9 + x14) | 0; t = x4 ^ x9; x4 = (t << 7) | (t >>> 25);
    }
    // Uint32Array is little-endian on every platform Node.js runs on (x86-64, arm64).
    const w = this.blockWords;
    w[0] = x0 + j0; w[1] = x1 + j1; w[2] = x2 + j2; w[3] = x3 + j3; w[4] = x4 + j4; w[5] = x5 + j5; w[6] = x6 + j6; w[7] = x7 + j7;
    w[8] = x8 + j8; w[9] = x9 + j9; w[10] = x10 + j10; w[11] = x11 + j11; w[12] = x12 + j12; w[13] = x13 + j13; w[14] = x14 + j14; w[15] = x15 + j15;
  }
}

