/**
 * Decryption of one TLS connection, both directions, from its key log secrets (keylog.ts): the
 * key schedule (keys.ts), per-direction sequence numbers, and the record-by-record opening
 * (aead.ts). It turns encrypted records into what they carry: application data for the HTTP
 * session, alerts (close_notify), post-handshake messages (NewSessionTicket, KeyUpdate), and the
 * TLS 1.3 EncryptedExtensions' ALPN.
 *
 * Call order, per direction, in wire order: `changeCipherSpec(dir)` at that direction's CCS
 * (TLS 1.2: the keys start there, sequence 0), `record(dir, ...)` for each record after it
 * (TLS 1.3: every application_data record after the ServerHello), `lost(dir)` for a record whose
 * bytes the capture lost (framing kept: the sequence number moves on), `resync(dir)` when the
 * record layer lost framing (the next record's sequence number is unknown). `wipe()` at the end.
 *
 * TLS 1.3 (RFC 8446 7.1-7.2): each direction starts with its handshake traffic keys; the record
 * that completes its Finished message switches it to application traffic secret 0 at sequence 0;
 * a KeyUpdate moves to the next secret (HKDF-Expand-Label(secret, "traffic upd", "", Hash.length)).
 * When the handshake secrets are missing or the Finished was not seen (a lost record), a record
 * that fails under the handshake keys is tried once under application secret 0 (the AEAD tag
 * makes a wrong guess harmless).
 *
 * After a loss of framing the next record is tried at the expected sequence number and up to
 * `MAX_SEQ_GUESSES` after it (records the gap swallowed); none opening it stops that direction
 * (`tls_decrypt_lost`). Memory: the keys and two secrets per direction (a few hundred bytes),
 * zeroed by `wipe`.
 */
import { openFragment, TAG_LENGTH } from './aead.js';
import { RecordKeystream } from './ctr.js';
import { ExtensionType, HandshakeType } from './handshake.js';
import { ContentType } from './records.js';
import { hashLength, hkdfExpandLabel, tls12KeyBlock, tls13TrafficKeys, wipeKeys, type SuiteInfo, type TrafficKeys } from './keys.js';
import type { KeylogSecrets } from './keylog.js';

/** Sequence numbers tried after a loss of framing: one per record a gap of a few segments can hide. */
export const MAX_SEQ_GUESSES = 64;


export type Opened =
  /** Application data: plaintext[0, length) (a fresh buffer). */
  | { kind: 'data'; plaintext: Buffer }
  /** An alert: level and description (close_notify is 1, 0). */
  | { kind: 'alert'; level: number; description: number }
  /** A handshake record (TLS 1.2 Finished, TLS 1.3 flight, NewSessionTicket, KeyUpdate). */
  | { kind: 'handshake' }
  /** Did not open: `tls_decrypt_failed` (one record), or `tls_decrypt_lost` (the direction stopped). */
  | { kind: 'failed'; reason: 'tls_decrypt_failed' | 'tls_decrypt_lost' }
  /** This direction is not decrypted (stopped, or no keys for it). */
  | { kind: 'off' };

/**
 * A record opened lazily: its content type and plaintext length are known (TLS 1.3: from its
 * decrypted last block), and `read(start, n)` decrypts just plaintext[start, start + n). AES-GCM
 * and ChaCha20-Poly1305 are counter modes, so any range decrypts on its own; the decrypting owner
 * reads HTTP heads and skips bodies (measured: bench/run.sh --only tls,tls-small, see bench/README.md).
 * The tag is not checked here: the first record under each key was opened with its tag checked
 * (`record`), which is what catches a wrong key or sequence number; integrity of later records
 * is not what a passive observer needs.
 */
export interface LazyRecord {
  readonly kind: 'lazy';
  type: number;
  plainLength: number;
  /** Plaintext [start, start + n): a view valid until the next `read` (of any record). */
  read(start: number, n: number): Buffer;
  /** `read` without a view: the plaintext is the returned buffer's [0, n), valid as long. */
  readScratch(start: number, n: number): Buffer;
}

/** TLS 1.3 records up to this long are decrypted whole at once (their type is in the last byte). */
const LAZY_WHOLE = 384;
/**
 * After this many records of a direction whose last block showed application data and no padding,
 * a long record is taken as the same without decrypting its last block (one keystream call less
 * per response). Post-handshake messages that are not application data come before the first
 * response (NewSessionTicket) or are short (KeyUpdate 22 bytes, alerts 19): those are still read.
 */
const TRUST_AFTER = 4;
const NONCE = Buffer.alloc(0);

class Lazy implements LazyRecord {
  readonly kind = 'lazy' as const;
  type = 0;
  plainLength = 0;
  private ks: RecordKeystream | null = null;
  private ct: Buffer = NONCE;
  private ctOff = 0;
  private ctLen = 0;
  /** The whole record was decrypted into the keystream's output by `readWhole` (until the next read). */
  private whole: Buffer | null = null;

  start(ks: RecordKeystream, ct: Buffer, ctOff: number, ctLen: number): void {
    this.ks = ks;
    this.ct = ct;
    this.ctOff = ctOff;
    this.ctLen = ctLen;
    this.whole = null;
  }

  /** The whole record decrypted: the returned buffer's [0, ctLen). */
  readWhole(): Buffer {
    this.whole = this.ks!.readScratch(this.ct, this.ctOff, 0, this.ctLen);
    return this.whole;
  }

  read(start: number, n: number): Buffer {
    return this.readScratch(start, n).subarray(0, n);
  }

  readScratch(start: number, n: number): Buffer {
    const w = this.whole;
    if (w !== null) {
      if (start === 0) {
        if (n === this.ctLen) this.whole = null; // handed out whole: the next read decrypts again
        return w;
      }
      // A later range of a record read whole: copied down to the scratch's start (short: the record is at most LAZY_WHOLE).
      w.copy(w, 0, start, start + n);
      this.whole = null;
      return w;
    }
    return this.ks!.readScratch(this.ct, this.ctOff, start, n);
  }
}

interface Direction {
  keys: TrafficKeys | null;
  /** The current keys opened a record with their tag checked: later ones may be opened lazily. */
  verified: boolean;
  /** The current key's counter-mode keystream (ctr.ts), made at its first lazily opened record. */
  ks: RecordKeystream | null;
  /** The one lazy record of this direction, reused (valid until the next record). */
  lazy: Lazy | null;
  /** TLS 1.3: consecutive long records whose last block showed unpadded application data. */
  plainRun: number;
  /** The next record's sequence number (a number: 2^53 records is beyond any connection). */
  seq: number;
  /** TLS 1.3: still under handshake keys. */
  handshake: boolean;
  /** TLS 1.3: the current application traffic secret (for KeyUpdate). */
  secret: Buffer | null;
  /** TLS 1.3: application secret 0's keys, until the switch. */
  appKeys: TrafficKeys | null;
  /** Framing was lost: guess the next sequence number. */
  resynced: boolean;
  stopped: boolean;
  /** Handshake message assembly (TLS 1.3, decrypted): the 4-byte header of the message in progress and what is left of it. */
  hsHeader: Buffer;
  hsHeaderLen: number;
  hsRemaining: number;
  hsType: number;
  /** EncryptedExtensions body, collected only to read its ALPN (bounded: it is small). */
  ee: Buffer[] | null;
}

function direction(): Direction {
  return { keys: null, verified: false, ks: null, lazy: null, plainRun: 0, seq: 0, handshake: true, secret: null, appKeys: null, resynced: false, stopped: false, hsHeader: Buffer.alloc(4), hsHeaderLen: 0, hsRemaining: 0, hsType: 0, ee: null };
}

/** Largest EncryptedExtensions read for its ALPN (real ones are tens of bytes). */
const MAX_EE_BYTES = 4096;

export class TlsDecryptor {
  private readonly d: [Direction, Direction] = [direction(), direction()];
  /** The server's ALPN choice, read from the TLS 1.3 EncryptedExtensions; null until seen. */
  alpn: string | null = null;
  /** Records opened, and records that failed, both directions. */
  opened = 0;
  failed = 0;

  private constructor(
    readonly version: '1.2' | '1.3',
    private readonly suite: SuiteInfo,
    private readonly clientDir: number,
  ) {}

  /**
   * A decryptor for a connection, or why not: `tls_keys_missing` (no usable secrets for its
   * version) or null secrets. Derives every key it needs now; the caller then forgets `secrets`.
   */
  static create(version: '1.2' | '1.3', suite: SuiteInfo, secrets: KeylogSecrets, clientRandom: Buffer, serverRandom: Buffer, clientDir: number): TlsDecryptor | null {
    const t = new TlsDecryptor(version, suite, clientDir);
    const c = t.d[clientDir];
    const s = t.d[1 - clientDir];
    if (version === '1.2') {
      const master = secrets.CLIENT_RANDOM;
      if (!master || master.length !== 48) return null;
      const k = tls12KeyBlock(suite, master, clientRandom, serverRandom);
      // Held until each side's ChangeCipherSpec turns them on.
      c.appKeys = k.client;
      s.appKeys = k.server;
      return t;
    }
    const len = hashLength(suite.hash);
    const ok = (b: Buffer | undefined): b is Buffer => b !== undefined && b.length === len;
    const cApp = secrets.CLIENT_TRAFFIC_SECRET_0;
    const sApp = secrets.SERVER_TRAFFIC_SECRET_0;
    if (!ok(cApp) || !ok(sApp)) return null;
    c.secret = Buffer.from(cApp);
    s.secret = Buffer.from(sApp);
    c.appKeys = tls13TrafficKeys(suite, cApp);
    s.appKeys = tls13TrafficKeys(suite, sApp);
    const cHs = secrets.CLIENT_HANDSHAKE_TRAFFIC_SECRET;
    const sHs = secrets.SERVER_HANDSHAKE_TRAFFIC_SECRET;
    if (ok(cHs)) c.keys = tls13TrafficKeys(suite, cHs);
    if (ok(sHs)) s.keys = tls13TrafficKeys(suite, sHs);
    return t;
  }

  /** Both directions under application keys (TLS 1.3 handshakes done, or TLS 1.2 CCS on both sides). */
  get established(): boolean {
    return this.d.every((x) => !x.handshake && x.keys !== null);
  }

  /** TLS 1.2: direction `dir` sent ChangeCipherSpec: its records are encrypted from here, sequence 0. */
  changeCipherSpec(dir: number): void {
    const x = this.d[dir];
    if (this.version !== '1.2' || !x.appKeys) return;
    x.keys = x.appKeys;
    x.appKeys = null;
    x.seq = 0;
    x.handshake = false;
    x.verified = false;
    x.ks?.wipe();
    x.ks = null;
  }

  /** A record of direction `dir` whose bytes were lost: it still used a sequence number. */
  lost(dir: number): void {
    const x = this.d[dir];
    if (x.keys) x.seq++;
    // A TLS 1.3 handshake record lost: its Finished may have been in it. The next record is then
    // opened with its tag checked (handshake keys, else application keys: see `record`), not
    // read through the keystream of a key it may no longer be under.
    if (x.handshake) x.verified = false;
    x.hsHeaderLen = 0;
    x.hsRemaining = 0;
    x.ee = null;
  }

  /** Direction `dir` lost framing: the next record's sequence number is unknown. */
  resync(dir: number): void {
    this.lost(dir);
    this.d[dir].resynced = true;
  }

  /** Open a record of direction `dir`: content type, version field and fragment frag[off, off + len). */
  record(dir: number, type: number, version: number, frag: Buffer, off: number, len: number): Opened {
    const x = this.d[dir];
    if (x.stopped) return { kind: 'off' };
    if (x.keys === null && x.appKeys === null) return { kind: 'off' };
    if (this.version === '1.2' && x.keys === null) return { kind: 'off' }; // before its CCS: cleartext
    let r = this.tryOpen(x, type, version, frag, off, len);
    if (r === null && this.version === '1.3' && x.handshake && x.appKeys) {
      // The Finished was missed, or there were no handshake secrets: application keys from 0.
      r = this.switchAndOpen(x, type, version, frag, off, len);
    }
    if (r === null) {
      this.failed++;
      if (x.resynced) {
        x.stopped = true;
        return { kind: 'failed', reason: 'tls_decrypt_lost' };
      }
      if (x.keys) x.seq++;
      return { kind: 'failed', reason: 'tls_decrypt_failed' };
    }
    x.resynced = false;
    this.opened++;
    return this.carried(dir, x, r.type, r.plaintext);
  }

  /** What an opened record carries, by its (inner) content type; `plaintext` is the caller's to give away. */
  private carried(dir: number, x: Direction, inner: number, plaintext: Buffer): Opened {
    if (inner === ContentType.APPLICATION_DATA) return { kind: 'data', plaintext };
    if (inner === ContentType.ALERT) return plaintext.length >= 2 ? { kind: 'alert', level: plaintext[0], description: plaintext[1] } : { kind: 'handshake' };
    if (inner === ContentType.HANDSHAKE && this.version === '1.3') this.handshakeMessages(dir, x, plaintext);
    return { kind: 'handshake' };
  }

  /**
   * `record` for application-phase records once the current key was verified: a `LazyRecord`
   * for the caller to read ranges of, or what `record` returns (the first record under a key, the
   * handshake phase, after a loss of framing, and records too short to hold a tag).
   */
  recordLazy(dir: number, type: number, version: number, frag: Buffer, off: number, len: number): Opened | LazyRecord {
    const x = this.d[dir];
    const keys = x.keys;
    if (!keys || !x.verified || x.resynced || x.stopped) return this.record(dir, type, version, frag, off, len);
    if (x.handshake && this.version !== '1.3') return this.record(dir, type, version, frag, off, len);
    const tls12Gcm = this.version === '1.2' && keys.aead !== 'chacha20-poly1305';
    const explicit = tls12Gcm ? 8 : 0;
    const ctLen = len - explicit - TAG_LENGTH;
    if (ctLen <= 0 || frag.length - off < len) return this.record(dir, type, version, frag, off, len);
    const seq = x.seq;
    x.seq++;
    this.opened++;
    const ks = (x.ks ??= new RecordKeystream(keys.aead, keys.key, keys.iv, this.version));
    ks.setRecord(seq, frag, off);
    const r = (x.lazy ??= new Lazy());
    r.start(ks, frag, off + explicit, ctLen);
    if (this.version === '1.2') {
      r.type = type;
      r.plainLength = ctLen;
      return r;
    }
    // TLS 1.3: TLSInnerPlaintext ends with the real type, then zero padding: read from the end.
    if (x.handshake) return this.handshakeRecord(dir, x, r, ctLen);
    // A short record is read whole at once (one keystream call for the type and the head).
    if (ctLen <= LAZY_WHOLE) {
      const all = r.readWhole();
      const i = lastNonZero(all, ctLen);
      if (i < 0) return { kind: 'failed', reason: 'tls_decrypt_failed' };
      r.type = all[i];
      r.plainLength = i;
      return r;
    }
    if (x.plainRun >= TRUST_AFTER) {
      r.type = ContentType.APPLICATION_DATA;
      r.plainLength = ctLen - 1;
      return r;
    }
    let end = ctLen;
    while (end > 0) {
      const from = Math.max(0, end - 16);
      const tail = r.read(from, end - from);
      let i = tail.length - 1;
      while (i >= 0 && tail[i] === 0) i--;
      if (i >= 0) {
        r.type = tail[i];
        r.plainLength = from + i;
        if (r.type === ContentType.APPLICATION_DATA && r.plainLength === ctLen - 1) x.plainRun++;
        else x.plainRun = 0;
        return r;
      }
      end = from;
    }
    return { kind: 'failed', reason: 'tls_decrypt_failed' };
  }

  /**
   * A TLS 1.3 handshake-flight record after the flight's first record opened with its tag checked
   * (under the same handshake key): read whole through the keystream, as application data is
   * after its first record. On the TLS benchmark's capture these were 7,391 of 25,705 tag-checked
   * opens (the server's Certificate, CertificateVerify and Finished records), about 9 us each.
   */
  private handshakeRecord(dir: number, x: Direction, r: Lazy, ctLen: number): Opened {
    const all = r.readWhole();
    const i = lastNonZero(all, ctLen);
    if (i < 0) return { kind: 'failed', reason: 'tls_decrypt_failed' };
    // A copy, as `record` gives: `all` is the keystream's scratch, and EncryptedExtensions' parts are kept across records.
    return this.carried(dir, x, all[i], Buffer.from(all.subarray(0, i)));
  }

  /**
   * The plaintext length of the next application-data record of direction `dir` if it can be
   * passed over without decrypting anything (its key verified, no loss of framing), else -1;
   * `skipRecord` then moves the sequence number on. TLS 1.3 assumes no padding and content type
   * 23 for it (the type is in the encrypted last byte): OpenSSL, BoringSSL, Go and rustls pad
   * nothing by default, and the caller asks only for records wholly inside a body of known length.
   */
  skippableLength(dir: number, type: number, len: number): number {
    const x = this.d[dir];
    if (!x.keys || !x.verified || x.handshake || x.resynced || x.stopped || type !== ContentType.APPLICATION_DATA) return -1;
    const overhead = this.version === '1.3' ? TAG_LENGTH + 1 : x.keys.aead === 'chacha20-poly1305' ? TAG_LENGTH : TAG_LENGTH + 8;
    return len > overhead ? len - overhead : -1;
  }

  skipRecord(dir: number): void {
    this.d[dir].seq++;
    this.opened++;
  }

  /** A TLS 1.3 handshake message record opened lazily (NewSessionTicket, KeyUpdate): its plaintext. */
  postHandshake(dir: number, plaintext: Buffer): void {
    if (this.version === '1.3') this.handshakeMessages(dir, this.d[dir], plaintext);
  }

  /** Zero every key and secret. */
  wipe(): void {
    for (const x of this.d) {
      if (x.keys) wipeKeys(x.keys);
      if (x.appKeys) wipeKeys(x.appKeys);
      x.secret?.fill(0);
      x.keys = x.appKeys = x.secret = null;
      x.ks?.wipe();
      x.ks = null;
      x.stopped = true;
    }
  }

  // --- internals ---

  /** Opens at the expected sequence number (or, after a loss of framing, the next guesses); advances it. */
  private tryOpen(x: Direction, type: number, version: number, frag: Buffer, off: number, len: number): { type: number; plaintext: Buffer } | null {
    if (!x.keys) return null;
    const guesses = x.resynced ? MAX_SEQ_GUESSES : 1;
    for (let i = 0; i < guesses; i++) {
      const seq = x.seq + i;
      const r = openFragment(x.keys, seq, type, version, frag, off, len);
      if (r.ok) {
        x.seq = seq + 1;
        x.verified = true;
        return r;
      }
      if (r.reason !== 'tls_bad_tag') return null; // a length no record of this suite has: no guess helps
    }
    return null;
  }

  private switchAndOpen(x: Direction, type: number, version: number, frag: Buffer, off: number, len: number): { type: number; plaintext: Buffer } | null {
    const app = x.appKeys!;
    const r = openFragment(app, 0, type, version, frag, off, len);
    if (!r.ok) return null;
    if (x.keys) wipeKeys(x.keys);
    x.keys = app;
    x.appKeys = null;
    x.handshake = false;
    x.seq = 1;
    x.verified = true;
    x.ks?.wipe();
    x.ks = null;
    return r;
  }

  /**
   * TLS 1.3 handshake messages in a decrypted record (they may span records: Certificate does):
   * EncryptedExtensions (its ALPN), Finished (switch to application keys after this record),
   * KeyUpdate (the next traffic secret).
   */
  private handshakeMessages(dir: number, x: Direction, b: Buffer): void {
    let p = 0;
    let switchAfter = false;
    while (p < b.length) {
      if (x.hsRemaining === 0) {
        const n = Math.min(4 - x.hsHeaderLen, b.length - p);
        b.copy(x.hsHeader, x.hsHeaderLen, p, p + n);
        x.hsHeaderLen += n;
        p += n;
        if (x.hsHeaderLen < 4) break;
        x.hsHeaderLen = 0;
        x.hsType = x.hsHeader[0];
        x.hsRemaining = x.hsHeader.readUIntBE(1, 3);
        if (x.hsType === HandshakeType.ENCRYPTED_EXTENSIONS && dir !== this.clientDir && x.hsRemaining <= MAX_EE_BYTES) x.ee = [];
        if (x.hsRemaining === 0) {
          if (this.messageDone(x)) switchAfter = true;
          continue;
        }
      }
      const n = Math.min(x.hsRemaining, b.length - p);
      if (x.ee && x.hsType === HandshakeType.ENCRYPTED_EXTENSIONS) x.ee.push(b.subarray(p, p + n));
      p += n;
      x.hsRemaining -= n;
      if (x.hsRemaining === 0 && this.messageDone(x)) switchAfter = true;
    }
    if (switchAfter) {
      if (x.handshake) {
        // RFC 8446 4.4.4: after its Finished a side sends under application traffic secret 0.
        if (x.keys) wipeKeys(x.keys);
        x.keys = x.appKeys;
        x.appKeys = null;
        x.handshake = false;
        x.seq = 0;
        x.verified = false;
        x.ks?.wipe();
    x.ks = null;
      } else if (x.secret && x.keys) {
        // KeyUpdate (RFC 8446 4.6.3, 7.2).
        const next = hkdfExpandLabel(this.suite.hash, x.secret, 'traffic upd', Buffer.alloc(0), hashLength(this.suite.hash));
        x.secret.fill(0);
        x.secret = next;
        wipeKeys(x.keys);
        x.keys = tls13TrafficKeys(this.suite, next);
        x.seq = 0;
        x.verified = false;
        x.ks?.wipe();
    x.ks = null;
      }
    }
  }

  /** A handshake message ended; true when the keys change after this record. */
  private messageDone(x: Direction): boolean {
    if (x.hsType === HandshakeType.ENCRYPTED_EXTENSIONS && x.ee) {
      this.alpn = alpnOf(Buffer.concat(x.ee));
      x.ee = null;
    }
    if (x.hsType === HandshakeType.FINISHED) return x.handshake;
    if (x.hsType === HandshakeType.KEY_UPDATE) return !x.handshake;
    return false;
  }
}

/** TLSInnerPlaintext (RFC 8446 5.2) ends with the real content type, then zero padding: its index in b[0, n), or -1 (all zero). */
function lastNonZero(b: Buffer, n: number): number {
  let i = n - 1;
  while (i >= 0 && b[i] === 0) i--;
  return i;
}

/** The ALPN protocol in an EncryptedExtensions body (RFC 7301 3.1: one name in the list); null if absent or malformed. */
function alpnOf(b: Buffer): string | null {
  if (b.length < 2) return null;
  const total = b.readUInt16BE(0);
  let p = 2;
  const end = Math.min(b.length, 2 + total);
  while (p + 4 <= end) {
    const type = b.readUInt16BE(p);
    const len = b.readUInt16BE(p + 2);
    p += 4;
    if (p + len > end) return null;
    if (type === ExtensionType.ALPN && len >= 3) {
      const n = b[p + 2];
      if (3 + n > len || n === 0) return null;
      let s = '';
      for (let i = 0; i < n; i++) {
        const c = b[p + 3 + i];
        s += c > 0x20 && c < 0x7f ? String.fromCharCode(c) : '?';
      }
      return s;
    }
    p += len;
  }
  return null;
}
