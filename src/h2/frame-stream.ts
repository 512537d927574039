/**
 * One direction of an HTTP/2 connection split into frames, incrementally and passively.
 *
 * Call order, per direction: `data` and `gap` in stream order (as `tcp/stream.ts` delivers
 * them), then at most one `end`. Bytes given to `data` are valid only during the call and the
 * splitter keeps no reference to them. For each complete frame it calls `FrameSink.frame` once,
 * in wire order, with a header object and a payload view that are both valid only during the
 * call (the header object is reused, the payload may be the caller's buffer or a reassembly
 * buffer that is reused or dropped right after). A counted anomaly is reported through
 * `FrameSink.anomaly` before the frame it concerns. The sink must not call `data`, `gap` or `end`
 * of the stream that called it; it may call `setPeerMaxFrameSize` on either direction.
 *
 * What is read and what is only counted:
 * - DATA payloads (the biggest frames) are never copied nor handed over: the bytes are counted
 *   and skipped, and the sink gets the DATA frame with a null payload once its last byte went by
 *   (its END_STREAM flag is in the header). A PADDED DATA frame's Pad Length is checked in
 *   passing (`h2_bad_padding`).
 * - Every other known frame up to `maxFrameBytes` is read: a view straight into the caller's
 *   buffer when the whole payload is in one piece, else a copy into a reassembly buffer of
 *   exactly the frame's size, taken from the shared budget and released after the call.
 * - Unknown types (extensions) are skipped with a null payload, not an error (RFC 9113 5.5).
 * - Frames over a cap are delivered with a null payload after their anomaly: their fields are
 *   unread. For a header block that means the HPACK decoder of this direction missed updates.
 * Lengths are never checked against SETTINGS_MAX_FRAME_SIZE while framing holds: a peer may
 * allow up to 2^24-1 and a passive parser must accept whatever the two peers agreed.
 *
 * Gaps (bytes the capture lost): inside a payload, framing survives (the header gave its
 * length): a DATA payload is skipped (`h2_gap_in_data`), any other frame is delivered unread
 * (`h2_frame_lost`). A gap that covers a frame header loses the framing (`h2_resync`): the
 * splitter then looks for a frame header it can trust (`plausibleFrameHeader`: known type,
 * length within the receiver's max frame size, defined flags only, the type's stream-id rules)
 * followed, exactly where its length says, by another plausible one, and that by a third
 * (`RESYNC_CHAIN`). The third is where framing resumes (the first two, the witnesses, are not
 * delivered: their payloads went by unread). Candidates must start within `maxResyncBytes` (or one max-size frame, if larger) of the loss; with none
 * confirmed by then, the direction is given up (`h2_resync_failed`, reported once) and its
 * bytes ignored. It never guesses.
 *
 * Memory: a fixed set of numbers per direction, a 9-byte header buffer once a header was split
 * across pieces, the reassembly buffer only while a split frame is in flight, and during a
 * resync a 17-byte window and at most `maxResyncCandidates` numbers.
 */
import { returnBudget, takeBudget, type BufferBudget } from '../session/session.js';
import {
  CLIENT_PREFACE,
  CLIENT_PREFACE_LENGTH,
  DEFAULT_MAX_FRAME_SIZE,
  FLAG_ACK,
  FLAG_END_HEADERS,
  FLAG_PADDED,
  FRAME_HEADER_LENGTH,
  FrameType,
  LAST_KNOWN_FRAME_TYPE,
  MAX_FRAME_LENGTH,
  decodeFrameHeader,
  newFrameHeader,
  plausibleFrameHeader,
  type FrameHeader,
} from './frames.js';

/** What the splitter counts, by stable name (the lead adds them to config/anomalies.ts). */
export type FrameStreamAnomaly =
  /** Client direction: the first 24 bytes are not the preface; or the first frame of a direction is not a SETTINGS (RFC 9113 3.4). The direction stops. */
  | 'h2_bad_preface'
  /** A non-DATA frame longer than `maxFrameBytes` (not a header block): skipped, delivered unread. */
  | 'h2_frame_too_large'
  /** A header block (HEADERS or PUSH_PROMISE plus CONTINUATIONs) over `maxHeaderBlockBytes`: the rest of it is delivered unread. */
  | 'h2_header_block_too_large'
  /** A header block over `maxHeaderBlockFrames` frames (the CONTINUATION flood, CVE-2024-27316): the rest is delivered unread. */
  | 'h2_continuation_flood'
  /** A CONTINUATION with no header block open on its stream, or another frame inside an open block (RFC 9113 6.10: PROTOCOL_ERROR). */
  | 'h2_bad_continuation'
  /** A SETTINGS (not ACK) frame past `maxSettingsFrames` on this direction (the settings flood, CVE-2019-9515): counted per frame, delivered unread. */
  | 'h2_settings_flood'
  /** A PADDED DATA frame whose Pad Length is not less than its length (RFC 9113 6.1). */
  | 'h2_bad_padding'
  /** A gap inside a DATA payload: skipped, framing kept. */
  | 'h2_gap_in_data'
  /** A gap inside another frame's payload: the frame is delivered unread, framing kept. */
  | 'h2_frame_lost'
  /** A gap covered a frame header: framing lost, resynchronising. */
  | 'h2_resync'
  /** No trustworthy frame header within the resync window: the direction is no longer parsed. */
  | 'h2_resync_failed'
  /** The stream ended inside a frame or the preface. */
  | 'h2_truncated_frame'
  /** The shared reassembly budget was spent: a split frame is delivered unread instead of copied. */
  | 'buffer_budget_exceeded';

export interface FrameSink {
  /**
   * One complete frame. `payload` holds it at payload[off, off + h.length) when it was read;
   * null when it was not (DATA, unknown types, over a cap, lost in a gap). `ts` is the capture
   * time of the piece holding the frame's last byte (`frameStartTs` has its first byte's). `h`
   * and `payload` are valid only during the call.
   */
  frame(dir: number, h: Readonly<FrameHeader>, payload: Buffer | null, off: number, ts: number): void;
  /** A counted anomaly; reported before the frame it concerns, if any. */
  anomaly(dir: number, name: FrameStreamAnomaly): void;
}

/** Bytes all parsers of a source may hold together (the flow table's `ReassemblyContext` is one): session/session.ts's `BufferBudget`. */
export type H2BufferBudget = BufferBudget;

export interface FrameStreamLimits {
  /**
   * Largest non-DATA, non-header-block frame payload read (SETTINGS, GOAWAY with its debug data,
   * PING...). 64 KiB: control frames are tens of bytes; a GOAWAY's debug data is a short text.
   */
  maxFrameBytes: number;
  /**
   * Largest header block read, HEADERS or PUSH_PROMISE plus CONTINUATIONs together, padding
   * included. 64 KiB: nginx's http2_max_header_size (16 KiB) and Node.js's maxHeaderListSize
   * default (64 KiB, decoded) stay under it; beyond, the stream is counted, its fields unread.
   */
  maxHeaderBlockBytes: number;
  /** Frames in one header block. Peers split only at the max frame size (16 KiB), so 32 frames cover any block under the byte cap even at that size. */
  maxHeaderBlockFrames: number;
  /** SETTINGS frames (not ACKs) read per direction: a peer sends one in its preface and rarely a few more. */
  maxSettingsFrames: number;
  /** Candidate headers must start within this many bytes of a loss (or one max-size frame, if larger): four 16 KiB frames. */
  maxResyncBytes: number;
  /** Candidate headers awaiting their confirming successor at once: random bytes are rarely plausible, so a full list means crafted input. */
  maxResyncCandidates: number;
}

export const H2_FRAME_LIMITS: Readonly<FrameStreamLimits> = {
  maxFrameBytes: 64 * 1024,
  maxHeaderBlockBytes: 64 * 1024,
  maxHeaderBlockFrames: 32,
  maxSettingsFrames: 32,
  maxResyncBytes: 64 * 1024,
  maxResyncCandidates: 16,
};

export interface FrameStreamOptions {
  /** Whose bytes these are. A client's stream starts with the 24-byte preface; both then start with a SETTINGS frame. */
  role: 'client' | 'server';
  /**
   * `start` (default): the bytes begin at the start of the HTTP/2 stream: the preface (client),
   * then a SETTINGS frame. After an `Upgrade: h2c` and its 101 the caller feeds the bytes after
   * the HTTP/1.1 message; a client still sends the preface then (RFC 9113 3.2 for h2c, kept by
   * RFC 7540 3.2). `lost`: joined mid-stream, framing is found by resynchronisation.
   */
  start?: 'start' | 'lost';
  limits?: Partial<FrameStreamLimits>;
  /** Shared with every reassembly buffer of the source; null: no shared cap. */
  budget?: H2BufferBudget | null;
}

const enum St {
  Preface = 0,
  Header,
  Payload,
  Resync,
  /** Given up (bad preface, resync failed): bytes are ignored. */
  Dead,
  /** `end` was called. */
  Ended,
}

/**
 * Plausible headers in a row, each where the one before ended, before framing is trusted again.
 * Two were not enough: inside the frames of a real server (small ids, zeros, HPACK bytes) the
 * gap-anywhere test found a plausible pair that was not framing (an empty DATA on stream
 * 0x01010100, then a type 0x88) twice in 300 losses; in 3 nothing false has come through.
 */
const RESYNC_CHAIN = 3;

/**
 * The candidate lists of a direction that is not resynchronising: shared and always empty
 * (only `scanAt` pushes, and only after `startResync` gave the direction lists of its own), so
 * an HTTP/2 direction costs no arrays until it loses framing.
 */
const NONE: number[] = [];

/** Resync window: candidate bytes before this piece (< 9) and the first 8 of the piece. */
const WINDOW_BYTES = 2 * (FRAME_HEADER_LENGTH - 1);

export class H2FrameStream {
  /** Frames delivered. */
  frames = 0;
  /** DATA payload bytes, those lost in gaps included. */
  dataBytes = 0;
  /** Bytes reported by `gap`. */
  gapBytes = 0;
  /** Times the framing was found again after a loss. */
  resyncs = 0;

  private state: St;
  private readonly fromClient: boolean;
  private readonly lim: Readonly<FrameStreamLimits>;
  private readonly budget: H2BufferBudget | null;
  /** Receiver's SETTINGS_MAX_FRAME_SIZE, the largest seen: only resynchronisation uses it. */
  private maxFrameSize = DEFAULT_MAX_FRAME_SIZE;

  /** The frame in progress; reused for every frame. */
  private readonly h: FrameHeader = newFrameHeader();
  private hdrBuf: Buffer | null = null;
  private hdrPos = 0;
  private prefacePos = 0;
  /** The next frame must be a SETTINGS (a connection preface, RFC 9113 3.4). */
  private needSettings: boolean;
  private startTs = 0;

  /** Payload bytes of the frame in progress still to come. */
  private remaining = 0;
  /** The payload in progress is counted, not read. */
  private skip = false;
  /** DATA with PADDED whose first payload byte (Pad Length) has not gone by yet. */
  private padCheck = false;
  private reasm: Buffer | null = null;
  private reasmLen = 0;

  /** Stream of the open header block (no END_HEADERS yet), 0 when none. */
  private blockStream = 0;
  private blockBytes = 0;
  private blockFrames = 0;
  /** The open block went over a cap or lost bytes: its remaining frames are not read. */
  private blockSkip = false;
  /** After a resync: a block may have been open across the loss, so a stray CONTINUATION is not an anomaly. */
  private blockUnknown = false;
  private settingsFrames = 0;

  /** Stream position (bytes of data and gaps so far) of the current piece's first byte, and that byte's offset in it. */
  private pos = 0;
  private pieceOff = 0;
  private resyncFrom = 0;
  /** Stream positions where a candidate chain expects its next header, and how many plausible headers each chain has so far. */
  private cands: number[] = NONE;
  private depths: number[] = NONE;
  private win: Buffer | null = null;
  /** Unscanned bytes before the current piece (fewer than 9), at the start of `win`. */
  private carryLen = 0;

  constructor(
    readonly dir: number,
    private readonly sink: FrameSink,
    opts: FrameStreamOptions,
  ) {
    this.fromClient = opts.role === 'client';
    this.lim = opts.limits ? { ...H2_FRAME_LIMITS, ...opts.limits } : H2_FRAME_LIMITS; // shared: one object less per direction
    this.budget = opts.budget ?? null;
    if (opts.start === 'lost') {
      this.state = St.Resync;
      this.needSettings = false;
      this.startResync(0);
    } else {
      this.state = this.fromClient ? St.Preface : St.Header;
      this.needSettings = true;
    }
  }

  /** The direction is no longer parsed (bad preface, failed resync) or ended. */
  get stopped(): boolean {
    return this.state >= St.Dead;
  }

  /** Nothing is in progress: at a frame boundary with no header block open. */
  get idle(): boolean {
    return this.state === St.Header && this.hdrPos === 0 && this.blockStream === 0;
  }

  /** Capture time of the first byte of the frame being (or last) delivered. */
  get frameStartTs(): number {
    return this.startTs;
  }

  /**
   * The receiver (the other direction) announced SETTINGS_MAX_FRAME_SIZE: frames of this
   * direction may be that long. Only resynchronisation uses it, and keeps the largest value seen
   * (the sender may still use an earlier limit until it has the SETTINGS).
   */
  setPeerMaxFrameSize(size: number): void {
    if (size > this.maxFrameSize && size <= MAX_FRAME_LENGTH) this.maxFrameSize = size;
  }

  data(buf: Buffer, off: number, len: number, ts: number): void {
    const end = off + len;
    let p = off;
    this.pieceOff = off;
    while (p < end) {
      switch (this.state) {
        case St.Header:
          if (this.hdrPos === 0 && end - p >= FRAME_HEADER_LENGTH) {
            // Fast path: the whole header is in this piece.
            decodeFrameHeader(buf, p, this.h);
            this.startTs = ts;
            p = this.begin(buf, p + FRAME_HEADER_LENGTH, end, ts);
          } else {
            p = this.headerBytes(buf, p, end, ts);
          }
          break;
        case St.Payload:
          p = this.payload(buf, p, end, ts);
          break;
        case St.Preface:
          p = this.preface(buf, p, end);
          break;
        case St.Resync:
          p = this.resync(buf, p, end, ts);
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
      case St.Preface: {
        const left = CLIENT_PREFACE_LENGTH - this.prefacePos;
        if (len < left) this.prefacePos += len;
        else if (len === left) this.state = St.Header; // the SETTINGS that follows is still checked
        else this.lose(after);
        break;
      }
      case St.Header:
        this.lose(after);
        break;
      case St.Payload: {
        const n = len < this.remaining ? len : this.remaining;
        this.remaining -= n;
        this.payloadLost();
        if (this.remaining === 0) {
          this.deliver(null, 0, ts);
          if (len > n) this.lose(after);
        }
        break;
      }
      case St.Resync: {
        // Candidates expecting their successor inside the hole can no longer be confirmed.
        this.dropCandidates(after);
        // (The window is in stream positions, holes included: a lossy stream gives up no later.)
        this.carryLen = 0;
        break;
      }
    }
    this.pos = after;
  }

  /** The direction ended (FIN, or the connection was dropped). */
  end(_ts: number): void {
    if (this.state >= St.Dead) {
      this.state = St.Ended;
      return;
    }
    if (this.state === St.Payload || (this.state === St.Header && this.hdrPos > 0) || (this.state === St.Preface && this.prefacePos > 0)) {
      this.anomaly('h2_truncated_frame');
    }
    this.release();
    this.state = St.Ended;
  }

  /** Gives back whatever is held (the connection was dropped without an end). */
  release(): void {
    this.releaseReasm();
    this.cands = this.depths = NONE;
    this.win = null;
    this.hdrBuf = null;
  }

  // -------------------------------------------------------------------------------------------

  private anomaly(name: FrameStreamAnomaly): void {
    this.sink.anomaly(this.dir, name);
  }

  /** Stop parsing this direction, saying why once. */
  private fail(name: FrameStreamAnomaly): void {
    this.anomaly(name);
    this.release();
    this.state = St.Dead;
  }

  private preface(buf: Buffer, p: number, end: number): number {
    while (p < end && this.prefacePos < CLIENT_PREFACE_LENGTH) {
      if (buf[p] !== CLIENT_PREFACE[this.prefacePos]) {
        this.fail('h2_bad_preface');
        return end;
      }
      p++;
      this.prefacePos++;
    }
    if (this.prefacePos === CLIENT_PREFACE_LENGTH) this.state = St.Header;
    return p;
  }

  /** A header split across pieces: gathered in a 9-byte buffer. */
  private headerBytes(buf: Buffer, p: number, end: number, ts: number): number {
    if (this.hdrPos === 0) this.startTs = ts;
    const hb = (this.hdrBuf ??= Buffer.alloc(FRAME_HEADER_LENGTH));
    let n = FRAME_HEADER_LENGTH - this.hdrPos;
    if (n > end - p) n = end - p;
    buf.copy(hb, this.hdrPos, p, p + n);
    this.hdrPos += n;
    p += n;
    if (this.hdrPos < FRAME_HEADER_LENGTH) return p;
    this.hdrPos = 0;
    decodeFrameHeader(hb, 0, this.h);
    return this.begin(buf, p, end, ts);
  }

  /**
   * `this.h` was just read and its payload starts at buf[p]: decide whether to read it (caps,
   * header-block order), deliver it at once when it is all here, else go on in `Payload`.
   */
  private begin(buf: Buffer, p: number, end: number, ts: number): number {
    const h = this.h;
    const t = h.type;
    if (this.needSettings) {
      this.needSettings = false;
      if (t !== FrameType.SETTINGS || (h.flags & FLAG_ACK) !== 0) {
        this.fail('h2_bad_preface');
        return end;
      }
    }
    let read = t !== FrameType.DATA && t <= LAST_KNOWN_FRAME_TYPE;
    if (t === FrameType.HEADERS || t === FrameType.PUSH_PROMISE) {
      if (this.blockStream !== 0) this.anomaly('h2_bad_continuation'); // a new block inside an open one
      this.blockUnknown = false;
      this.blockFrames = 1;
      this.blockBytes = h.length;
      this.blockSkip = false;
      this.blockStream = (h.flags & FLAG_END_HEADERS) !== 0 ? 0 : h.streamId;
      if (h.length > this.lim.maxHeaderBlockBytes) {
        this.anomaly('h2_header_block_too_large');
        this.blockSkip = true;
        read = false;
      }
    } else if (t === FrameType.CONTINUATION) {
      if (this.blockStream === 0 || h.streamId !== this.blockStream) {
        // Nothing to continue: its fragment means nothing without the block's start. After a
        // resync the start may have been in the hole: not the peer's fault.
        if (!this.blockUnknown) this.anomaly('h2_bad_continuation');
        read = false;
        if (this.blockStream !== 0) this.blockStream = 0;
      } else {
        this.blockFrames++;
        this.blockBytes += h.length;
        if (this.blockSkip) read = false;
        else if (this.blockFrames > this.lim.maxHeaderBlockFrames) {
          this.anomaly('h2_continuation_flood');
          this.blockSkip = true;
          read = false;
        } else if (this.blockBytes > this.lim.maxHeaderBlockBytes) {
          this.anomaly('h2_header_block_too_large');
          this.blockSkip = true;
          read = false;
        }
        if ((h.flags & FLAG_END_HEADERS) !== 0) this.blockStream = 0;
      }
    } else {
      if (this.blockStream !== 0) {
        this.anomaly('h2_bad_continuation'); // RFC 9113 6.10: only CONTINUATION may follow
        this.blockStream = 0;
      }
      this.blockUnknown = false;
      if (t === FrameType.SETTINGS && (h.flags & FLAG_ACK) === 0 && ++this.settingsFrames > this.lim.maxSettingsFrames) {
        this.anomaly('h2_settings_flood');
        read = false;
      }
      if (read && h.length > this.lim.maxFrameBytes) {
        this.anomaly('h2_frame_too_large');
        read = false;
      }
    }
    this.remaining = h.length;
    this.padCheck = t === FrameType.DATA && (h.flags & FLAG_PADDED) !== 0;
    if (h.length === 0) {
      if (this.padCheck) this.anomaly('h2_bad_padding'); // PADDED needs at least the Pad Length octet
      this.deliver(read ? buf : null, p, ts);
      return p;
    }
    if (read && end - p >= h.length) {
      // The whole payload is in this piece: a view, no copy.
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
    if (this.padCheck) {
      this.padCheck = false;
      if (buf[p] >= this.h.length) this.anomaly('h2_bad_padding');
    }
    if (!this.skip) {
      buf.copy(this.reasm!, this.reasmLen, p, p + n);
      this.reasmLen += n;
    }
    this.remaining -= n;
    if (this.remaining === 0) {
      if (this.skip) this.deliver(null, 0, ts);
      else {
        this.deliver(this.reasm, 0, ts);
        this.releaseReasm();
      }
    }
    return p + n;
  }

  /** Bytes of the payload in progress fell in a gap: framing holds, the content does not. */
  private payloadLost(): void {
    const t = this.h.type;
    this.padCheck = false;
    if (t === FrameType.DATA) {
      this.anomaly('h2_gap_in_data');
      return;
    }
    if (t === FrameType.HEADERS || t === FrameType.PUSH_PROMISE || t === FrameType.CONTINUATION) this.blockSkip = true;
    if (!this.skip) {
      this.anomaly('h2_frame_lost');
      this.skip = true;
      this.releaseReasm();
    }
  }

  private deliver(payload: Buffer | null, off: number, ts: number): void {
    this.state = St.Header;
    this.skip = false;
    this.frames++;
    if (this.h.type === FrameType.DATA) this.dataBytes += this.h.length;
    this.sink.frame(this.dir, this.h, payload, off, ts);
  }

  /** A reassembly buffer for a split frame of `size` bytes, within the shared budget. */
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
  // Resynchronisation

  /** Framing is lost; the next byte is at stream position `at`. */
  private lose(at: number): void {
    this.anomaly('h2_resync');
    this.releaseReasm();
    this.needSettings = false;
    this.state = St.Resync;
    this.startResync(at);
  }

  private startResync(at: number): void {
    this.hdrPos = 0;
    this.blockStream = 0;
    this.blockUnknown = true;
    this.resyncFrom = at;
    this.cands = [];
    this.depths = [];
    this.carryLen = 0;
    this.win ??= Buffer.alloc(WINDOW_BYTES + 1);
  }

  /** Candidates may start this many bytes after the loss. */
  private get resyncWindow(): number {
    const frame = this.maxFrameSize + FRAME_HEADER_LENGTH;
    return this.lim.maxResyncBytes > frame ? this.lim.maxResyncBytes : frame;
  }

  /** Forgets the chains that expected a header before stream position `at`. */
  private dropCandidates(at: number): void {
    const c = this.cands;
    for (let i = c.length - 1; i >= 0; i--) {
      if (c[i] < at) {
        c.splice(i, 1);
        this.depths.splice(i, 1);
      }
    }
  }

  /**
   * Looks at the header-sized bytes at b[o] (stream position `at`): true when they complete a
   * chain of RESYNC_CHAIN plausible headers, each where the one before ended (then `this.h`
   * holds them); else they extend a chain or start one.
   */
  private scanAt(b: Buffer, o: number, at: number): boolean {
    if (!plausibleFrameHeader(b, o, this.fromClient, this.maxFrameSize)) return false;
    const c = this.cands;
    const next = at + FRAME_HEADER_LENGTH + ((b[o] << 16) | (b[o + 1] << 8) | b[o + 2]);
    let depth = 0;
    for (let i = c.length - 1; i >= 0; i--) {
      if (c[i] === at) {
        if (this.depths[i] > depth) depth = this.depths[i];
        c.splice(i, 1);
        this.depths.splice(i, 1);
      }
    }
    if (depth + 1 >= RESYNC_CHAIN) {
      decodeFrameHeader(b, o, this.h);
      return true;
    }
    // Extending a chain is always allowed; starting one only within the window.
    if (depth === 0 && at - this.resyncFrom >= this.resyncWindow) return false;
    if (c.length >= this.lim.maxResyncCandidates) this.dropCandidates(at);
    if (c.length < this.lim.maxResyncCandidates) {
      c.push(next);
      this.depths.push(depth + 1);
    }
    return false;
  }

  /** Framing found again: the header in `this.h` is delivered normally, its payload starts at buf[q]. */
  private resume(buf: Buffer, q: number, end: number, ts: number): number {
    this.state = St.Header;
    this.cands = this.depths = NONE;
    this.carryLen = 0;
    this.resyncs++;
    this.startTs = ts;
    return this.begin(buf, q, end, ts);
  }

  /**
   * Past the window with no candidate left: give up. Returns the earliest pending confirmation
   * position, or -1 after giving up.
   */
  private nextCandidate(at: number): number {
    this.dropCandidates(at);
    const c = this.cands;
    let min = -1;
    for (let i = 0; i < c.length; i++) if (min < 0 || c[i] < min) min = c[i];
    if (min < 0) this.fail('h2_resync_failed');
    return min;
  }

  private resync(buf: Buffer, p: number, end: number, ts: number): number {
    // Stream position of buf[x] is base + x.
    const base = this.pos - this.pieceOff;
    const win = (this.win ??= Buffer.alloc(WINDOW_BYTES + 1));
    if (this.carryLen > 0) {
      // Header-sized windows starting in the bytes before this piece.
      const carry = this.carryLen;
      const k = end - p < FRAME_HEADER_LENGTH - 1 ? end - p : FRAME_HEADER_LENGTH - 1;
      buf.copy(win, carry, p, p + k);
      const winLen = carry + k;
      const winPos = base + p - carry;
      let i = 0;
      for (; i < carry && i + FRAME_HEADER_LENGTH <= winLen; i++) {
        if (winPos + i - this.resyncFrom >= this.resyncWindow && this.nextCandidate(winPos + i) < 0) return end;
        if (this.scanAt(win, i, winPos + i)) return this.resume(buf, p + i + FRAME_HEADER_LENGTH - carry, end, ts);
      }
      if (i < carry) {
        // This piece is too short to finish them: keep what is still unscanned.
        win.copy(win, 0, i, winLen);
        this.carryLen = winLen - i;
        return end;
      }
      this.carryLen = 0;
    }
    let x = p;
    while (x + FRAME_HEADER_LENGTH <= end) {
      const at = base + x;
      if (at - this.resyncFrom >= this.resyncWindow) {
        // No new candidates: only the pending ones' successors are worth looking at.
        const next = this.nextCandidate(at);
        if (next < 0) return end;
        if (next > at) {
          x = next - base < end ? next - base : end;
          continue;
        }
      }
      if (this.scanAt(buf, x, at)) return this.resume(buf, x + FRAME_HEADER_LENGTH, end, ts);
      x++;
    }
    if (x < end) {
      buf.copy(win, 0, x, end);
      this.carryLen = end - x;
    }
    return end;
  }
}
