/**
 * Counter-mode keystreams for reading ranges of TLS records without opening them whole: the
 * cipher part of AES-GCM (NIST SP 800-38D 7.2: plaintext block k = ciphertext XOR
 * E(K, nonce || 2 + k)) and of ChaCha20-Poly1305 (RFC 8439 2.4: 64-byte block k uses block counter
 * 1 + k). Used by decrypt.ts after a key's first record was opened with its tag checked: a
 * decrypting observer reads the HTTP heads and skips the bodies.
 *
 * Why not node:crypto's GCM decipher per record: making one costs about 5 us and the capture of
 * bench/run.sh --only tls-small has over a million records; one AES-ECB cipher per key encrypts the
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
 * Little-endian word reads of the ciphertext where it lies (any alignment): a DataView over the
 * Buffer's own bytes (index 0 is its byte 0), the last two Buffers kept (the capture reader hands
 * every packet of a chunk in one Buffer; a record stream's reassembly buffer comes between).
 * Keyed by the Buffer, not its ArrayBuffer: reading `.buffer` and `.byteOffset` per record were
 * runtime calls (JSTypedArray::GetBuffer in the profile). Copying the ciphertext first
 * (Buffer.copy) cost more than the XOR itself.
 */
let dvKey0: Buffer | null = null;
let dvKey1: Buffer | null = null;
let dv0: DataView<ArrayBufferLike> = new DataView(new ArrayBuffer(0));
let dv1 = dv0;
function viewOf(b: Buffer): DataView<ArrayBufferLike> {
  if (b === dvKey0) return dv0;
  if (b === dvKey1) return dv1;
  dvKey1 = dvKey0;
  dv1 = dv0;
  dvKey0 = b;
  dv0 = new DataView(b.buffer, b.byteOffset, b.byteLength);
  return dv0;
}

/**
 * OUT[0, n) = ct[base, base + n) XOR ks[k, k + n), as 32-bit words where the keystream offset is
 * aligned (a quarter of the iterations of a byte loop). `ks32`, when given, is a word view from
 * ks[0] (a window's, made once). Returns OUT itself (no view is made: a view per record was a
 * tenth of the run's allocation).
 */
function xorInto(ct: Buffer, base: number, ks: Buffer, k: number, n: number, ks32: Uint32Array | null = null): Buffer {
  let w = ks32;
  let k32 = k >> 2;
  if (w === null || (k & 3) !== 0) {
    const ko = ks.byteOffset + k;
    if ((ko & 3) !== 0) {
      for (let i = 0; i < n; i++) OUT[i] = ct[base + i] ^ ks[k + i];
      return OUT;
    }
    // The ECB output is its own ArrayBuffer, so aligned.
    w = new Uint32Array(ks.buffer, ks.byteOffset & ~3, (ks.byteLength + (ks.byteOffset & 3)) >> 2);
    k32 = (ko - w.byteOffset) >> 2;
  }
  const words = n >> 2;
  const d = viewOf(ct);
  let i = 0;
  let c = base;
  // Four words a step (about 15% fewer loop checks than one: measured in isolation).
  for (; i + 4 <= words; i += 4, c += 16) {
    const j = k32 + i;
    OUT32[i] = d.getUint32(c, true) ^ w[j];
    OUT32[i + 1] = d.getUint32(c + 4, true) ^ w[j + 1];
    OUT32[i + 2] = d.getUint32(c + 8, true) ^ w[j + 2];
    OUT32[i + 3] = d.getUint32(c + 12, true) ^ w[j + 3];
  }
  for (; i < words; i++, c += 4) OUT32[i] = d.getUint32(c, true) ^ w[k32 + i];
  for (let b = words << 2; b < n; b++) OUT[b] = ct[base + b] ^ ks[k + b];
  return OUT;
}

/**
 * One ECB call makes the keystream of the next records ahead: at most `WINDOW_BLOCKS` blocks of
 * each (384 bytes: nginx's response heads are about 260), and as many records as fit in
 * `WINDOW_BYTES` (at least `WINDOW_RECORDS`). A keystream's window starts at `MIN_WINDOW_BLOCKS`
 * per record (a request of a hundred bytes: 48 records a call), grows at once to a deeper read
 * (16 records of 384 bytes), and is made again as deep as the last window's reads went (nginx's
 * response heads read 288 bytes: 21 records a call). A call costs about 0.5 us plus 0.5 ns a byte (1.6 us for
 * 2,304 bytes, 2.4 us for 6,144).
 */
export const WINDOW_RECORDS = 16;
export const WINDOW_BLOCKS = 24;
const WINDOW_BYTES = 6144;
const MIN_WINDOW_BLOCKS = 8;

/**
 * The windows live in one pool, not in the keystreams: a connection holds no keystream between
 * its records (WINDOW_POOL x 6 KiB = 3 MiB at most, whatever the number of open
 * connections). A slot is taken round-robin; a keystream whose slot was taken makes its window
 * again at its next record (with more connections sending at once than slots, every record then
 * costs an ECB call of its own).
 */
export const WINDOW_POOL = 512;
const poolOwner: (RecordKeystream | null)[] = new Array<RecordKeystream | null>(WINDOW_POOL).fill(null);
const poolWin: (Buffer | null)[] = new Array<Buffer | null>(WINDOW_POOL).fill(null);
const poolWin32: (Uint32Array | null)[] = new Array<Uint32Array | null>(WINDOW_POOL).fill(null);
let poolNext = 0;

/** The 32-bit word with its bytes reversed: a big-endian value as a little-endian word of the same bytes. */
function bswap(x: number): number {
  return ((x & 0xff) << 24) | ((x & 0xff00) << 8) | ((x >>> 8) & 0xff00) | (x >>> 24);
}

export class RecordKeystream {
  private readonly ecb: Cipher | null;
  private readonly chachaKey: Uint32Array | null;
  /* ChaCha20 scratch. */
  private readonly block = Buffer.allocUnsafe(64);
  private readonly blockWords = new Uint32Array(this.block.buffer, this.block.byteOffset, 16);

  /**
   * The record being read: its sequence number, its nonce as three little-endian words (bytes
   * 0-3, 4-7, 8-11: what the counter block and ChaCha20's state take), and whether the nonce is
   * the predicted one (the window holds its keystream).
   */
  private seq = 0;
  private n0 = 0;
  private n1 = 0;
  private n2 = 0;
  private predicted = false;
  /** The iv (TLS 1.3, ChaCha20) or the salt (TLS 1.2 AES-GCM, first word) as little-endian words. */
  private iv0 = 0;
  private iv1 = 0;
  private iv2 = 0;
  /** This keystream's window: its pool slot (-1: none), the first record's sequence number, blocks per record. */
  private slot = -1;
  private winSeq = -1;
  private winBlocks = MIN_WINDOW_BLOCKS;
  private winRecords = WINDOW_BYTES / (MIN_WINDOW_BLOCKS * 16);
  /** The furthest byte read from the current window: the next window is made that deep (at least `MIN_WINDOW_BLOCKS`). */
  private winNeed = 0;
  /** TLS 1.2 AES-GCM: the nonce is the 4-byte salt and the record's explicit 8 bytes. */
  private readonly explicitNonce: boolean;

  constructor(aead: 'aes-128-gcm' | 'aes-256-gcm' | 'chacha20-poly1305', key: Buffer, iv: Buffer, version: '1.2' | '1.3') {
    this.explicitNonce = version === '1.2' && aead !== 'chacha20-poly1305';
    this.iv0 = iv.readInt32LE(0);
    if (iv.length >= 12) {
      this.iv1 = iv.readInt32LE(4);
      this.iv2 = iv.readInt32LE(8);
    }
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

  /** The record's 12-byte nonce, for a test or a caller that computed it. */
  setNonce(nonce: Buffer, off = 0): void {
    this.n0 = nonce.readInt32LE(off);
    this.n1 = nonce.readInt32LE(off + 4);
    this.n2 = nonce.readInt32LE(off + 8);
    this.predicted = false;
  }

  /**
   * The next record to read: its sequence number and, for TLS 1.2 AES-GCM, where its 8-byte
   * explicit nonce is. Sets the nonce (RFC 8446 5.3; RFC 5288 3; RFC 7905 2).
   */
  setRecord(seq: number, frag: Buffer | null, explicitOff: number): void {
    this.seq = seq;
    if (this.explicitNonce) {
      const hi = frag!.readUInt32BE(explicitOff);
      const lo = frag!.readUInt32BE(explicitOff + 4);
      this.n0 = this.iv0;
      this.n1 = bswap(hi);
      this.n2 = bswap(lo);
      // OpenSSL starts the explicit nonce anywhere and adds one per record (RFC 5288 3 only asks
      // that it never repeat): predicted when it is the last record's plus the records between.
      const d = seq - this.lastSeq;
      const sum = this.lastLo + d;
      this.predicted = this.lastSeq >= 0 && d > 0 && lo === sum >>> 0 && hi === ((this.lastHi + Math.floor(sum / 0x100000000)) >>> 0);
      if (!this.predicted) this.winSeq = -1; // the window was made for other nonces
      this.lastSeq = seq;
      this.lastHi = hi;
      this.lastLo = lo;
    } else {
      this.n0 = this.iv0;
      this.n1 = this.iv1 ^ bswap(Math.floor(seq / 0x100000000));
      this.n2 = this.iv2 ^ bswap(seq >>> 0);
      this.predicted = true;
    }
  }

  /** TLS 1.2 AES-GCM: the last record's sequence number and explicit nonce. */
  private lastSeq = -1;
  private lastHi = 0;
  private lastLo = 0;

  /** Plaintext [start, start + n) of the ciphertext at ct[ctOff...]: a view valid until the next call. */
  read(ct: Buffer, ctOff: number, start: number, n: number): Buffer {
    return this.readScratch(ct, ctOff, start, n).subarray(0, Math.max(0, n));
  }

  /**
   * `read` without making a view: the plaintext is the returned buffer's [0, n) (the shared
   * scratch, valid until the next read of any keystream).
   */
  readScratch(ct: Buffer, ctOff: number, start: number, n: number): Buffer {
    if (n <= 0) return OUT;
    if (this.chachaKey) return this.chacha(ct, ctOff, start, n);
    if (this.predicted) {
      const end = start + n;
      if (end <= this.winBlocks << 4) return this.fromWindow(ct, ctOff, start, n);
      if (end <= WINDOW_BLOCKS << 4) {
        // A longer head than the window was made for: later windows make as much.
        this.winBlocks = (end + 15) >> 4;
        this.winRecords = Math.max(WINDOW_RECORDS, Math.floor(WINDOW_BYTES / (this.winBlocks * 16)));
        this.winSeq = -1;
        return this.fromWindow(ct, ctOff, start, n);
      }
    }
    return this.aes(ct, ctOff, start, n);
  }

  private fromWindow(ct: Buffer, ctOff: number, start: number, n: number): Buffer {
    const seq = this.seq;
    let blocks = this.winBlocks;
    let slot = this.slot;
    if (slot < 0 || poolOwner[slot] !== this || this.winSeq < 0 || seq < this.winSeq || seq >= this.winSeq + this.winRecords) {
      // As deep as the last window's reads went (heads got shorter: fewer blocks, more records a call), and this read.
      const need = Math.max(this.winNeed, start + n);
      if (need > 0) {
        const b = Math.max(MIN_WINDOW_BLOCKS, (need + 15) >> 4);
        if (b < blocks) {
          blocks = this.winBlocks = b;
          this.winRecords = Math.max(WINDOW_RECORDS, Math.floor(WINDOW_BYTES / (b * 16)));
        }
      }
      this.winNeed = 0;
      if (slot < 0 || poolOwner[slot] !== this) {
        slot = this.slot = poolNext;
        poolNext = (poolNext + 1) % WINDOW_POOL;
        poolOwner[slot]?.lostSlot();
        poolOwner[slot] = this;
      }
      const w = CTR32;
      const records = this.winRecords;
      for (let r = 0, o = 0; r < records; r++) {
        // The nonce of record seq + r, as setRecord would make it.
        let m1: number, m2: number;
        if (this.explicitNonce) {
          const sum = this.lastLo + r;
          m1 = bswap((this.lastHi + Math.floor(sum / 0x100000000)) >>> 0);
          m2 = bswap(sum >>> 0);
        } else {
          m1 = this.iv1 ^ bswap(Math.floor((seq + r) / 0x100000000));
          m2 = this.iv2 ^ bswap((seq + r) >>> 0);
        }
        const m0 = this.n0;
        for (let b = 0; b < blocks; b++, o += 4) {
          w[o] = m0;
          w[o + 1] = m1;
          w[o + 2] = m2;
          w[o + 3] = (2 + b) << 24; // 2..25 big-endian in the last word
        }
      }
      const win = this.ecb!.update(CTR.subarray(0, records * blocks * 16));
      poolWin[slot] = win;
      poolWin32[slot] = (win.byteOffset & 3) === 0 ? new Uint32Array(win.buffer, win.byteOffset, win.byteLength >> 2) : null;
      this.winSeq = seq;
    }
    if (start + n > this.winNeed) this.winNeed = start + n;
    return xorInto(ct, ctOff + start, poolWin[slot]!, (seq - this.winSeq) * (blocks << 4) + start, n, poolWin32[slot]);
  }

  /** Another keystream took this one's window slot. */
  private lostSlot(): void {
    this.slot = -1;
    this.winSeq = -1;
  }

  /** Zero this keystream's key and window (the ECB cipher's own key schedule is freed with it). */
  wipe(): void {
    this.chachaKey?.fill(0);
    const slot = this.slot;
    if (slot >= 0 && poolOwner[slot] === this) {
      poolWin[slot]?.fill(0);
      poolWin[slot] = null;
      poolWin32[slot] = null;
      poolOwner[slot] = null;
    }
    this.slot = -1;
    this.winSeq = -1;
    this.iv0 = this.iv1 = this.iv2 = 0;
    this.n0 = this.n1 = this.n2 = 0;
    this.block.fill(0);
  }

  private aes(ct: Buffer, ctOff: number, start: number, n: number): Buffer {
    const first = start >> 4;
    const blocks = ((start + n + 15) >> 4) - first;
    const n0 = this.n0;
    const n1 = this.n1;
    const n2 = this.n2;
    const w = CTR32;
    for (let b = 0, o = 0; b < blocks; b++, o += 4) {
      const c = (2 + first + b) >>> 0;
      w[o] = n0;
      w[o + 1] = n1;
      w[o + 2] = n2;
      w[o + 3] = bswap(c);
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
      if (take === 64 && (o & 3) === 0) {
        // A whole block, as words (OUT and the block's words are 4-aligned).
        const w = this.blockWords;
        const d = viewOf(ct);
        for (let i = 0, j = o >> 2, c = base; i < 16; i++, j++, c += 4) OUT32[j] = d.getUint32(c, true) ^ w[i];
      } else {
        for (let i = 0; i < take; i++) out[o + i] = ct[base + i] ^ block[inBlock + i];
      }
      pos += take;
      o += take;
    }
    return out;
  }

  /** One ChaCha20 block (RFC 8439 2.3) for `counter` into `this.block` (little-endian words). Locals, not arrays: V8 keeps them in registers. */
  private chachaBlock(counter: number): void {
    const k = this.chachaKey!;
    const j0 = 0x61707865, j1 = 0x3320646e, j2 = 0x79622d32, j3 = 0x6b206574;
    const j4 = k[0], j5 = k[1], j6 = k[2], j7 = k[3], j8 = k[4], j9 = k[5], j10 = k[6], j11 = k[7];
    const j12 = counter | 0, j13 = this.n0, j14 = this.n1, j15 = this.n2;
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

