/**
 * One direction of a TLS connection split into records, incrementally and passively, without
 * keys: what the cleartext layer shows (record headers, handshake messages before the cipher
 * change, alerts' bytes).
 *
 * Call order, per direction: `data` and `gap` in stream order (as `tcp/stream.ts` delivers them),
 * then at most one `end`. Bytes given to `data` are valid only during the call and the splitter
 * keeps no reference to them. For each complete record it calls `RecordSink.record` once, in wire
 * order; for each complete cleartext handshake message `RecordSink.handshake` once. Header
 * objects and payload views are valid only during the call (the header object is reused, the
 * payload may be the caller's buffer or a reassembly buffer dropped right after). A counted
 * anomaly goes through `RecordSink.anomaly` before the record it concerns. The sink must not call
 * `data`, `gap` or `end` of the stream that called it.
 *
 * Order inside one record: the handshake messages it completes (`handshake`, in order), then the
 * record itself (`record`). So a sink sees the ClientHello before the record that ended it.
 *
 * What is read and what is only counted:
 * - Application data (23), change_cipher_spec (20) and heartbeat (24) payloads are never copied
 *   nor handed over: counted and skipped, the sink gets the header with a null payload once the
 *   record's last byte went by (that is all turn estimation needs: type, length, time). The one
 *   exception: application data is read like handshake records once `readApplicationData` is set
 *   (the owner has keys to decrypt it).
 * - Handshake (22) and alert (21) payloads are read: a view into the caller's buffer when the
 *   record is in one piece, else a copy of exactly the record's length (at most 2^14 + 2048,
 *   `MAX_RECORD_LENGTH`), from the shared budget, released after the call.
 * - Handshake messages (4-byte header: type, 24-bit length) are reassembled across records up to
 *   `maxHandshakeBytes` (64 KiB: a certificate chain of a few certificates fits; a message over
 *   it is counted `tls_handshake_too_large` and delivered with a null body, framing of the
 *   messages kept). After this direction's change_cipher_spec, handshake records are encrypted
 *   (TLS 1.2 Finished, renegotiation) and are delivered as records only; the one exception is
 *   TLS 1.3's middlebox-compatibility CCS around a HelloRetryRequest (RFC 8446 D.4): the real
 *   ServerHello and the second ClientHello come after their side's CCS (`compatHello`).
 *
 * Gaps (bytes the capture lost): inside a record payload, framing survives (the header gave the
 * length): the record is delivered with a null payload (`tls_record_lost` when it would have been
 * read) and the handshake message stream of the direction stops (`tls_handshake_lost`: message
 * boundaries cannot be found again without keys; the facts are in the first messages anyway). A
 * gap that covers a record header loses the framing (`tls_resync`): the splitter then looks for a
 * record header it can trust (`plausibleRecordHeader`) followed, exactly where its length says,
 * by another one (`resyncChain` headers in a row, default 2). The last of the chain is where
 * framing resumes and is delivered normally; the ones before it (witnesses) are counted in
 * `resyncSkippedRecords`, not delivered. Candidates must start within `maxResyncBytes` of the
 * loss; with no chain confirmed by then the direction is given up (`tls_resync_failed`, once).
 * It never guesses. A header that is not TLS where framing holds (no gap) means the stream is not
 * TLS, or not any more: `tls_bad_record`, the direction stops.
 *
 * Memory: a fixed set of numbers per direction, a 5-byte header buffer once a header was split,
 * the record copy only while a split handshake or alert record is in flight, the handshake
 * message buffer only while a message spans records, during a resync at most
 * `maxResyncCandidates` numbers.
 */
import { returnBudget, takeBudget, type BufferBudget } from '../session/session.js';
import {
  ContentType,
  MAX_PLAINTEXT_LENGTH,
  MAX_RECORD_LENGTH,
  RECORD_HEADER_LENGTH,
  checkRecordHeader,
  decodeRecordHeader,
  newRecordHeader,
  plausibleRecordHeader,
  type RecordHeader,
} from './records.js';

/** What the splitter counts, by stable name (the lead adds them to config/anomalies.ts). */
export type RecordStreamAnomaly =
  /** Where framing held, a header that no TLS peer sends (`checkRecordHeader`): the direction stops. */
  | 'tls_bad_record'
  /** A gap inside a handshake or alert payload: delivered unread, framing kept. */
  | 'tls_record_lost'
  /** Handshake bytes were lost: no more handshake messages from this direction. */
  | 'tls_handshake_lost'
  /** A handshake message longer than `maxHandshakeBytes`: delivered with a null body. */
  | 'tls_handshake_too_large'
  /** A gap covered a record header: framing lost, resynchronising. */
  | 'tls_resync'
  /** No chain of plausible headers within the resync window: the direction is no longer parsed. */
  | 'tls_resync_failed'
  /** The stream ended inside a record or a handshake message. */
  | 'tls_truncated_record'
  /** The shared reassembly budget was spent: a split record or message is delivered unread. */
  | 'buffer_budget_exceeded';

export interface RecordSink {
  /**
   * One complete record. `payload` holds its fragment at payload[off, off + h.length) for
   * handshake and alert records that were read; null otherwise. `ts` is the capture time of the
   * piece holding the record's last byte (`recordStartTs` has its first byte's).
   */
  record(dir: number, h: Readonly<RecordHeader>, payload: Buffer | null, off: number, ts: number): void;
  /**
   * One complete cleartext handshake message: its type and its body at body[off, off + len)
   * (the 4-byte message header excluded); body null when over the cap. Valid only during the call.
   */
  handshake(dir: number, msgType: number, body: Buffer | null, off: number, len: number, ts: number): void;
  /** A counted anomaly; reported before the record it concerns, if any. */
  anomaly(dir: number, name: RecordStreamAnomaly): void;
}

/** Bytes all parsers of a source may hold together: session/session.ts's `BufferBudget`. */
export type TlsBufferBudget = BufferBudget;

export interface RecordStreamLimits {
  /** Largest handshake message reassembled: 64 KiB (certificate chains of a few certificates; RFC 8446 allows 2^24-1, no server sends it). */
  maxHandshakeBytes: number;
  /** Candidate headers must start within this many bytes of a loss: four max-size records. */
  maxResyncBytes: number;
  /** Candidate chains awaiting their next header at once: random ciphertext is rarely plausible, so a full list means crafted input. */
  maxResyncCandidates: number;
  /**
   * Plausible headers in a row before framing is trusted again. 2: a plausible header at a random
   * offset of ciphertext is about 1 in 10^7 (type 21-23, 0x03, minor 1-3, length <= 18432), two
   * chained about 1 in 10^14; 3 would lose the last request of a quiet connection.
   */
  resyncChain: number;
}

export const TLS_RECORD_LIMITS: Readonly<RecordStreamLimits> = {
  maxHandshakeBytes: 64 * 1024,
  maxResyncBytes: 4 * (MAX_RECORD_LENGTH + RECORD_HEADER_LENGTH),
  maxResyncCandidates: 16,
  resyncChain: 2,
};

export interface RecordStreamOptions {
  /** `start` (default): the bytes begin at the first record. `lost`: joined mid-stream, framing is found by resynchronisation. */
  start?: 'start' | 'lost';
  limits?: Partial<RecordStreamLimits>;
  /** Shared with every reassembly buffer of the source; null: no shared cap. */
  budget?: TlsBufferBudget | null;
}

const enum St {
  Header = 0,
  Payload,
  Resync,
  /** Given up (bad record, resync failed): bytes are ignored. */
  Dead,
  /** `end` was called. */
  Ended,
}

const HS_HEADER = 4;
const HS_CLIENT_HELLO = 1;
const HS_SERVER_HELLO = 2;

export class TlsRecordStream {
  /** Records delivered. */
  records = 0;
  /** Application data records and their fragment bytes (headers excluded). */
  appDataRecords = 0;
  appDataBytes = 0;
  /** Handshake messages delivered. */
  handshakeMessages = 0;
  /** Bytes reported by `gap`. */
  gapBytes = 0;
  /** Times the framing was found again after a loss, and the witness records skipped doing it. */
  resyncs = 0;
  resyncSkippedRecords = 0;
  /** This direction sent change_cipher_spec: its later handshake records are encrypted. */
  cipherChanged = false;
  /**
   * Read application data payloads too (a view when the record is in one piece, else a budgeted
   * copy, as for handshake records): set by the owner once it holds keys for this direction, so
   * that only connections it can decrypt pay for the copies.
   */
  readApplicationData = false;

  private state: St;
  private readonly lim: Readonly<RecordStreamLimits>;
  private readonly budget: TlsBufferBudget | null;
  private readonly h: RecordHeader = newRecordHeader();
  private hdrBuf: Buffer | null = null;
  private hdrPos = 0;
  private startTs = 0;
  private remaining = 0;
  private skip = false;
  private reasm: Buffer | null = null;
  private reasmLen = 0;

  /* Handshake message assembly. */
  private hsLost = false;
  /** A handshake message header split across records (made when first needed: most never are). */
  private hsHdr: Buffer | null = null;
  private hsHdrPos = 0;
  private hsType = 0;
  private hsLen = 0;
  /** Body bytes still to come of the message in progress (-1: between messages). */
  private hsRemaining = -1;
  private hsBuf: Buffer | null = null;
  private hsBufLen = 0;
  private hsSkip = false;

  /* Resync. */
  private pos = 0;
  private resyncFrom = 0;
  /** The scan window carried across pieces during a resync (made at the first resync). */
  private win: Buffer | null = null;
  private winLen = 0;
  private cands: number[] = [];
  private depths: number[] = [];

  constructor(
    readonly dir: number,
    private readonly sink: RecordSink,
    opts: RecordStreamOptions = {},
  ) {
    this.lim = opts.limits ? { ...TLS_RECORD_LIMITS, ...opts.limits } : TLS_RECORD_LIMITS;
    this.budget = opts.budget ?? null;
    if (opts.start === 'lost') {
      this.state = St.Resync;
      this.hsLost = true;
      this.resyncFrom = 0;
    } else this.state = St.Header;
  }

  get stopped(): boolean {
    return this.state >= St.Dead;
  }

  /** At a record boundary, no message in progress. */
  get idle(): boolean {
    return this.state === St.Header && this.hdrPos === 0 && this.hsRemaining < 0 && this.hsHdrPos === 0;
  }

  /** Capture time of the first byte of the record being (or last) delivered. */
  get recordStartTs(): number {
    return this.startTs;
  }

  data(buf: Buffer, off: number, len: number, ts: number): void {
    const end = off + len;
    let p = off;
    const base = this.pos - off; // stream position of buf[x] is base + x
    while (p < end) {
      switch (this.state) {
        case St.Header:
          if (this.hdrPos === 0 && end - p >= RECORD_HEADER_LENGTH) {
            decodeRecordHeader(buf, p, this.h);
            this.startTs = ts;
            p = this.begin(buf, p + RECORD_HEADER_LENGTH, end, ts);
          } else p = this.headerBytes(buf, p, end, ts);
          break;
        case St.Payload:
          p = this.payload(buf, p, end, ts);
          break;
        case St.Resync:
          p = this.resync(buf, p, end, base, ts);
          break;
        default:
          p = end;
      }
    }
    this.pos += len;
  }

  /** `len` bytes of this direction were lost by the capture. */
  gap(len: number, ts: number): void {
    if (len <= 0) return;
    const after = this.pos + len;
    if (this.state < St.Dead) this.gapBytes += len;
    switch (this.state) {
      case St.Header:
        this.lose(after);
        break;
      case St.Payload: {
        const n = len < this.remaining ? len : this.remaining;
        this.remaining -= n;
        if (this.readable(this.h.type) && !this.skip) this.anomaly('tls_record_lost');
        if (this.h.type === ContentType.HANDSHAKE) this.loseHandshake(true);
        this.skip = true;
        this.releaseReasm();
        if (this.remaining === 0) {
          this.deliver(null, 0, ts);
          if (len > n) this.lose(after);
        }
        break;
      }
      case St.Resync:
        this.dropCandidates(after);
        this.winLen = 0;
        break;
    }
    this.pos = after;
  }

  /** The direction ended (FIN, or the connection was dropped). */
  end(_ts: number): void {
    if (this.state < St.Dead) {
      const inMsg = !this.hsLost && (this.hsRemaining >= 0 || this.hsHdrPos > 0);
      if (this.state === St.Payload || (this.state === St.Header && this.hdrPos > 0) || inMsg) this.anomaly('tls_truncated_record');
    }
    this.release();
    this.state = St.Ended;
  }

  /** Gives back whatever is held. */
  release(): void {
    this.releaseReasm();
    this.releaseHs();
    this.cands = [];
    this.depths = [];
    this.hdrBuf = null;
  }

  // -------------------------------------------------------------------------------------------

  private anomaly(name: RecordStreamAnomaly): void {
    this.sink.anomaly(this.dir, name);
  }

  private fail(name: RecordStreamAnomaly): void {
    this.anomaly(name);
    this.release();
    this.state = St.Dead;
  }

  private readable(type: number): boolean {
    return type === ContentType.HANDSHAKE || type === ContentType.ALERT || (type === ContentType.APPLICATION_DATA && this.readApplicationData);
  }

  private headerBytes(buf: Buffer, p: number, end: number, ts: number): number {
    if (this.hdrPos === 0) this.startTs = ts;
    const hb = (this.hdrBuf ??= Buffer.alloc(RECORD_HEADER_LENGTH));
    let n = RECORD_HEADER_LENGTH - this.hdrPos;
    if (n > end - p) n = end - p;
    buf.copy(hb, this.hdrPos, p, p + n);
    this.hdrPos += n;
    p += n;
    if (this.hdrPos < RECORD_HEADER_LENGTH) return p;
    this.hdrPos = 0;
    decodeRecordHeader(hb, 0, this.h);
    return this.begin(buf, p, end, ts);
  }

  /** `this.h` was just read, its payload starts at buf[p]. */
  private begin(buf: Buffer, p: number, end: number, ts: number): number {
    const h = this.h;
    if (checkRecordHeader(h) !== null) {
      this.fail('tls_bad_record');
      return end;
    }
    const read = this.readable(h.type);
    this.remaining = h.length;
    if (h.length === 0) {
      this.deliver(null, p, ts);
      return p;
    }
    if (read && end - p >= h.length) {
      this.deliver(buf, p, ts);
      return p + h.length;
    }
    this.skip = !read || !this.hold(h.length);
    this.state = St.Payload;
    return p;
  }

  private payload(buf: Buffer, p: number, end: number, ts: number): number {
    let n = end - p;
    if (n > this.remaining) n = this.remaining;
    if (!this.skip) {
      buf.copy(this.reasm!, this.reasmLen, p, p + n);
      this.reasmLen += n;
    }
    this.remaining -= n;
    if (this.remaining === 0) {
      if (this.skip) {
        if (this.h.type === ContentType.HANDSHAKE) this.loseHandshake(true); // unread (budget): messages lost
        this.deliver(null, 0, ts);
      } else {
        this.deliver(this.reasm, 0, ts);
        this.releaseReasm();
      }
    }
    return p + n;
  }

  private deliver(payload: Buffer | null, off: number, ts: number): void {
    const h = this.h;
    this.state = St.Header;
    this.skip = false;
    this.records++;
    if (h.type === ContentType.APPLICATION_DATA) {
      this.appDataRecords++;
      this.appDataBytes += h.length;
    }
    if (payload && h.type === ContentType.HANDSHAKE) this.messages(payload, off, off + h.length, ts);
    this.sink.record(this.dir, h, payload, off, ts);
    if (h.type === ContentType.CHANGE_CIPHER_SPEC) this.cipherChanged = true;
  }

  private hold(size: number): boolean {
    if (!takeBudget(this.budget, size)) {
      this.anomaly('buffer_budget_exceeded');
      return false;
    }
    this.reasm = Buffer.allocUnsafe(size);
    this.reasmLen = 0;
    return true;
  }

  private releaseReasm(): void {
    if (!this.reasm) return;
    returnBudget(this.budget, this.reasm.length);
    this.reasm = null;
    this.reasmLen = 0;
  }

  // -------------------------------------------------------------------------------------------
  // Handshake messages

  /**
   * No more messages from this direction. Said (once) only when something readable was lost: a
   * message in progress, or a cleartext handshake record; a gap between records after the
   * handshake loses nothing of it.
   */
  private loseHandshake(inRecord: boolean): void {
    if (this.hsLost) return;
    if (this.hsRemaining >= 0 || this.hsHdrPos > 0 || (inRecord && !this.cipherChanged)) this.anomaly('tls_handshake_lost');
    this.hsLost = true;
    this.releaseHs();
  }

  private releaseHs(): void {
    if (this.hsBuf) returnBudget(this.budget, this.hsBuf.length);
    this.hsBuf = null;
    this.hsBufLen = 0;
  }

  /**
   * After this direction's CCS, is the record at b[p, end) still a cleartext hello? Only in TLS
   * 1.3 middlebox-compatibility mode around a HelloRetryRequest (RFC 8446 D.4): the server sends
   * HRR, CCS, then its real ServerHello; the client CCS, then its second ClientHello (seen from
   * OpenSSL 3.0 and nginx: each hello alone in its record). So: no message open, a client_hello
   * or server_hello that fills the record exactly (or runs past a full-size one). An encrypted
   * TLS 1.2 Finished starts with an 8-byte explicit nonce (AES-GCM, 0 first from OpenSSL) or is
   * ChaCha20 ciphertext, which passes this by chance about once in 2^31.
   */
  private compatHello(b: Buffer, p: number, end: number): boolean {
    if (this.hsRemaining >= 0 || this.hsHdrPos > 0 || end - p < HS_HEADER) return false;
    if (b[p] !== HS_CLIENT_HELLO && b[p] !== HS_SERVER_HELLO) return false;
    const total = ((b[p + 1] << 16) | (b[p + 2] << 8) | b[p + 3]) + HS_HEADER;
    return total === end - p || (end - p === MAX_PLAINTEXT_LENGTH && total > end - p && total <= this.lim.maxHandshakeBytes);
  }

  /** Handshake record fragment b[p, end): cut into messages. */
  private messages(b: Buffer, p: number, end: number, ts: number): void {
    if (this.hsLost) return;
    if (this.cipherChanged && !this.compatHello(b, p, end)) return; // encrypted from here (RFC 5246 7.1)
    while (p < end) {
      if (this.hsRemaining < 0) {
        if (this.hsHdrPos === 0 && end - p >= HS_HEADER) {
          this.hsType = b[p];
          this.hsLen = (b[p + 1] << 16) | (b[p + 2] << 8) | b[p + 3];
          p += HS_HEADER;
        } else {
          let n = HS_HEADER - this.hsHdrPos;
          if (n > end - p) n = end - p;
          b.copy((this.hsHdr ??= Buffer.alloc(HS_HEADER)), this.hsHdrPos, p, p + n);
          this.hsHdrPos += n;
          p += n;
          if (this.hsHdrPos < HS_HEADER) return;
          this.hsHdrPos = 0;
          const hh = this.hsHdr!;
          this.hsType = hh[0];
          this.hsLen = (hh[1] << 16) | (hh[2] << 8) | hh[3];
        }
        this.hsRemaining = this.hsLen;
        this.hsSkip = false;
        if (this.hsLen > this.lim.maxHandshakeBytes) {
          this.anomaly('tls_handshake_too_large');
          this.hsSkip = true;
        } else if (end - p >= this.hsLen) {
          // Whole message in this fragment: a view.
          this.hsRemaining = -1;
          this.handshakeMessages++;
          this.sink.handshake(this.dir, this.hsType, b, p, this.hsLen, ts);
          p += this.hsLen;
          continue;
        } else if (!takeBudget(this.budget, this.hsLen)) {
          this.anomaly('buffer_budget_exceeded');
          this.hsSkip = true;
        } else {
          this.hsBuf = Buffer.allocUnsafe(this.hsLen);
          this.hsBufLen = 0;
        }
      }
      let n = end - p;
      if (n > this.hsRemaining) n = this.hsRemaining;
      if (!this.hsSkip) {
        b.copy(this.hsBuf!, this.hsBufLen, p, p + n);
        this.hsBufLen += n;
      }
      p += n;
      this.hsRemaining -= n;
      if (this.hsRemaining === 0) {
        this.hsRemaining = -1;
        this.handshakeMessages++;
        const body = this.hsSkip ? null : this.hsBuf;
        this.sink.handshake(this.dir, this.hsType, body, 0, this.hsLen, ts);
        this.releaseHs();
      }
    }
  }

  // -------------------------------------------------------------------------------------------
  // Resynchronisation

  private lose(at: number): void {
    this.anomaly('tls_resync');
    this.releaseReasm();
    this.loseHandshake(false);
    this.state = St.Resync;
    this.hdrPos = 0;
    this.resyncFrom = at;
    this.cands = [];
    this.depths = [];
    this.winLen = 0;
  }

  private dropCandidates(before: number): void {
    const c = this.cands;
    for (let i = c.length - 1; i >= 0; i--) {
      if (c[i] < before) {
        c.splice(i, 1);
        this.depths.splice(i, 1);
      }
    }
  }

  /**
   * Is the header-sized window at b[o] (stream position `at`) the end of a chain? 1: yes (framing
   * resumes with it, decoded into `this.h`), -1: the direction was given up, 0: go on. A
   * plausible header extends the chain expecting it, or starts one within the window.
   */
  private scanAt(b: Buffer, o: number, at: number): number {
    const inWindow = at - this.resyncFrom < this.lim.maxResyncBytes;
    if (!inWindow) {
      this.dropCandidates(at);
      if (this.cands.length === 0) {
        this.fail('tls_resync_failed');
        return -1;
      }
    }
    if (!plausibleRecordHeader(b, o)) return 0;
    const c = this.cands;
    let depth = 0;
    for (let i = c.length - 1; i >= 0; i--) {
      if (c[i] === at) {
        if (this.depths[i] > depth) depth = this.depths[i];
        c.splice(i, 1);
        this.depths.splice(i, 1);
      }
    }
    if (depth + 1 >= this.lim.resyncChain) {
      this.resyncs++;
      this.resyncSkippedRecords += depth;
      this.cands = [];
      this.depths = [];
      this.winLen = 0;
      this.state = St.Header;
      decodeRecordHeader(b, o, this.h);
      return 1;
    }
    if (depth === 0 && !inWindow) return 0;
    if (c.length >= this.lim.maxResyncCandidates) this.dropCandidates(at);
    if (c.length < this.lim.maxResyncCandidates) {
      c.push(at + RECORD_HEADER_LENGTH + ((b[o + 3] << 8) | b[o + 4]));
      this.depths.push(depth + 1);
    }
    return 0;
  }

  /**
   * Every header-sized window: first those starting in the (< 5) unscanned bytes carried from the
   * last piece, through a 9-byte scratch buffer, then straight in the caller's buffer; the last
   * < 5 bytes are carried to the next piece.
   */
  private resync(buf: Buffer, p: number, end: number, base: number, ts: number): number {
    const w = (this.win ??= Buffer.alloc(2 * RECORD_HEADER_LENGTH - 1));
    if (this.winLen > 0) {
      const k = this.winLen;
      const take = end - p < RECORD_HEADER_LENGTH - 1 ? end - p : RECORD_HEADER_LENGTH - 1;
      buf.copy(w, k, p, p + take);
      const wl = k + take;
      const wpos = base + p - k;
      let i = 0;
      for (; i < k && i + RECORD_HEADER_LENGTH <= wl; i++) {
        const r = this.scanAt(w, i, wpos + i);
        if (r < 0) return end;
        if (r > 0) {
          this.startTs = ts;
          return this.begin(buf, p + i + RECORD_HEADER_LENGTH - k, end, ts);
        }
      }
      if (i < k) {
        // This piece is too short to finish them: keep what is still unscanned.
        w.copy(w, 0, i, wl);
        this.winLen = wl - i;
        return end;
      }
      this.winLen = 0;
    }
    let x = p;
    for (; x + RECORD_HEADER_LENGTH <= end; x++) {
      const r = this.scanAt(buf, x, base + x);
      if (r < 0) return end;
      if (r > 0) {
        this.startTs = ts;
        return this.begin(buf, x + RECORD_HEADER_LENGTH, end, ts);
      }
    }
    buf.copy(w, 0, x, end);
    this.winLen = end - x;
    return end;
  }
}
