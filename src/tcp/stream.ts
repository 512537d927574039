/**
 * One direction of a TCP connection: sequence tracking and bounded reassembly.
 *
 * Delivery order to the `StreamSink` for one direction is: `data`/`gap` in sequence order, each
 * byte at most once, then at most one `end` (FIN). Bytes passed to `data` are valid only during
 * the call. Out-of-order segments are copied and held up to the caps in `EngineLimits`; when a
 * cap is hit, or the other side acknowledges data the capture never showed, the hole is skipped
 * and reported as a `gap` so the HTTP parser can keep framing (or resynchronise).
 */

export interface StreamSink {
  data(dir: number, buf: Buffer, off: number, len: number, ts: number): void;
  gap(dir: number, len: number, ts: number): void;
  end(dir: number, ts: number): void;
}

interface HeldSegment {
  seq: number;
  data: Buffer;
  /** Length on the wire: more than data.length when snaplen cut the segment. */
  wire: number;
}

/** Signed distance a - b in 32-bit sequence space (RFC 793 modular comparison). */
export function seqDiff(a: number, b: number): number {
  return (a - b) | 0;
}

export interface ReassemblyCounters {
  gaps: number;
  gapBytes: number;
  retransmissions: number;
  overflows: number;
  /** Out-of-order segments not held because every flow together already held `maxBufferedBytes` (`buffer_budget_exceeded`). */
  budgetRefused: number;
}

/**
 * What every direction of one flow table shares: counters, caps, and the budget of bytes held
 * out of order across all flows. Per-flow caps alone do not bound memory: 100,000 flows each
 * holding its 256 KiB would be 25 GiB. With the shared budget spent, a new out-of-order segment
 * is not held: the hole before it is skipped at once (a counted gap), as on a per-flow overflow.
 */
export interface ReassemblyContext {
  readonly counters: ReassemblyCounters;
  readonly maxHeldBytes: number;
  readonly maxHeldSegments: number;
  readonly maxBufferedBytes: number;
  /** Bytes held out of order now, all flows together. */
  heldBytes: number;
}

export function newReassemblyContext(
  counters: ReassemblyCounters,
  limits: { maxOutOfOrderBytes: number; maxOutOfOrderSegments: number; maxBufferedBytes: number },
): ReassemblyContext {
  return {
    counters,
    maxHeldBytes: limits.maxOutOfOrderBytes,
    maxHeldSegments: limits.maxOutOfOrderSegments,
    maxBufferedBytes: limits.maxBufferedBytes,
    heldBytes: 0,
  };
}

const STARTED = 1;
const HAS_ISN = 2;
const FIN_SEEN = 4;
const END_DELIVERED = 8;
const RST_SEEN = 16;
const FIN_REPORTED = 32;

/** `bytes` saturates here, so it stays a small integer in V8 (it is only ever compared with zero). */
export const BYTES_SATURATION = 0x3fffffff;

/**
 * Memory: two of these per tracked flow. Sequence numbers are kept as int32 (`| 0`, read back
 * with `>>> 0`) so V8 keeps them as small integers inside the object instead of boxed doubles;
 * caps and counters are in the shared context.
 */
export class TcpDirection {
  private next = 0;
  private isn32 = 0;
  private fin32 = 0;
  /** STARTED, HAS_ISN, FIN_SEEN, END_DELIVERED, RST_SEEN, FIN_REPORTED: six booleans in one small integer. */
  private flags = 0;
  /**
   * Capture time of this side's FIN (valid once `finSeen`). Starts as null, not 0: a field that
   * starts as a small integer and later holds a double makes V8 box a double in every direction
   * (+16 bytes each, measured with bench/flow-memory.mjs); null keeps it a plain tagged field.
   */
  private finTs: number | null = null;
  /** Payload bytes delivered (saturating at 2^30). */
  bytes = 0;
  private held: HeldSegment[] | null = null;
  private heldBytes = 0;

  constructor(
    public dir: number,
    private readonly ctx: ReassemblyContext,
    /** Where the bytes go. */
    public sink: StreamSink,
  ) {}

  /** The state of a new direction, for another flow (the flow table reuses them). */
  reuse(dir: number, sink: StreamSink): this {
    this.release();
    this.dir = dir;
    this.sink = sink;
    this.next = this.isn32 = this.fin32 = this.flags = this.bytes = 0;
    this.finTs = null;
    return this;
  }

  /** The stream's first sequence number is known (a SYN, or the first segment or FIN seen). */
  get started(): boolean {
    return (this.flags & STARTED) !== 0;
  }

  set started(on: boolean) {
    this.flags = on ? this.flags | STARTED : this.flags & ~STARTED;
  }

  get finSeen(): boolean {
    return (this.flags & FIN_SEEN) !== 0;
  }

  set finSeen(on: boolean) {
    this.flags = on ? this.flags | FIN_SEEN : this.flags & ~FIN_SEEN;
  }

  /** `end` was delivered to the sink. */
  get endDelivered(): boolean {
    return (this.flags & END_DELIVERED) !== 0;
  }

  get finTime(): number {
    return this.finTs ?? 0;
  }

  set finTime(ts: number) {
    this.finTs = ts;
  }

  /** The flow table reported this side's FIN (`FlowEvents.closing`): it waits until the bytes before it are delivered. */
  get finReported(): boolean {
    return (this.flags & FIN_REPORTED) !== 0;
  }

  set finReported(on: boolean) {
    this.flags = on ? this.flags | FIN_REPORTED : this.flags & ~FIN_REPORTED;
  }

  get rstSeen(): boolean {
    return (this.flags & RST_SEEN) !== 0;
  }

  set rstSeen(on: boolean) {
    this.flags = on ? this.flags | RST_SEEN : this.flags & ~RST_SEEN;
  }

  /** Sequence number of the next byte to deliver; valid once `started`. */
  get nextSeq(): number {
    return this.next >>> 0;
  }

  set nextSeq(seq: number) {
    this.next = seq | 0;
  }

  /** The initial sequence number from a SYN, or -1 when the handshake was not seen. */
  get isn(): number {
    return this.flags & HAS_ISN ? this.isn32 >>> 0 : -1;
  }

  set isn(seq: number) {
    this.flags = seq >= 0 ? this.flags | HAS_ISN : this.flags & ~HAS_ISN;
    this.isn32 = seq | 0;
  }

  get finSeq(): number {
    return this.fin32 >>> 0;
  }

  /** Drops whatever is held (the flow finished): the shared budget gets it back. */
  release(): void {
    if (!this.held) return;
    this.ctx.heldBytes -= this.heldBytes;
    this.heldBytes = 0;
    this.held = null;
  }

  /** A SYN from this side: the data stream starts at isn + 1. */
  syn(seq: number): void {
    this.isn = seq;
    this.next = (seq + 1) | 0;
    this.started = true;
  }

  /**
   * A segment from this side. `capLen` payload bytes are in `buf` at `off`; `wireLen` is the
   * payload length on the wire (greater when snaplen cut the packet).
   */
  segment(seq: number, buf: Buffer, off: number, capLen: number, wireLen: number, ts: number): void {
    if (!this.started) {
      // Capture began mid-connection: the stream starts here.
      this.next = seq | 0;
      this.started = true;
    }
    if (wireLen <= 0) return;
    const d = seqDiff(seq, this.next);
    if (d > 0) {
      this.hold(seq, buf, off, capLen, wireLen, ts);
      return;
    }
    if (d + wireLen <= 0) {
      this.ctx.counters.retransmissions++;
      return;
    }
    // Overlap with bytes already delivered: deliver only the new part.
    this.deliver(buf, off, capLen, wireLen, -d, ts);
    if (this.held) this.drain(ts);
    else if (this.finSeen) this.maybeEnd(ts); // the bytes a FIN was waiting for
  }

  /** FIN from this side at sequence `seq` after `wireLen` payload bytes. */
  fin(seq: number, wireLen: number, ts: number): void {
    if (!this.finSeen) {
      this.finSeen = true;
      this.fin32 = (seq + wireLen) | 0;
    }
    if (!this.started) {
      this.next = this.fin32;
      this.started = true;
    }
    this.maybeEnd(ts);
  }

  /**
   * The other side acknowledged up to `ack`. If held segments start at or below it, the bytes
   * before them were received but not captured: skip the hole now rather than wait for a cap.
   */
  acked(ack: number, ts: number): void {
    if (!this.started) return;
    if (this.held && seqDiff(ack, this.held[0].seq) >= 0) this.skipTo(this.held[0].seq, ts);
    // The peer acknowledged the FIN: every byte before it reached the peer, captured or not. (A
    // peer acknowledges a FIN only after the bytes before it, so on any interface the ACK is
    // captured after them: bytes still missing now were lost by the capture.)
    if (this.finSeen && !this.endDelivered && seqDiff(ack, this.fin32) > 0) this.flush(ts);
  }

  /** Deliver everything held, skipping holes, then the end of stream if a FIN was seen. */
  flush(ts: number): void {
    while (this.held && this.held.length > 0) this.skipTo(this.held[0].seq, ts);
    if (this.finSeen && !this.endDelivered && seqDiff(this.fin32, this.next) > 0) {
      this.gapTo(this.fin32, ts);
    }
    this.maybeEnd(ts);
  }

  /** Holds (copies) an out-of-order segment; on overflow, skips the hole before the earliest one. */
  private hold(seq: number, buf: Buffer, off: number, capLen: number, wireLen: number, ts: number): void {
    const ctx = this.ctx;
    if (ctx.heldBytes + capLen > ctx.maxBufferedBytes) {
      // Every flow together holds the budget: do not wait for the hole, skip it now. What is
      // already held here comes first, in order; this segment then continues the stream.
      ctx.counters.budgetRefused++;
      while (this.held && seqDiff(this.held[0].seq, seq) < 0) this.skipTo(this.held[0].seq, ts);
      this.gapTo(seq, ts);
      const d = seqDiff(seq, this.next);
      if (d + wireLen > 0) this.deliver(buf, off, capLen, wireLen, -d, ts);
      else ctx.counters.retransmissions++;
      if (this.held) this.drain(ts);
      else if (this.finSeen) this.maybeEnd(ts);
      return;
    }
    const held = (this.held ??= []);
    // Insert in sequence order; most arrivals append.
    let i = held.length;
    while (i > 0 && seqDiff(held[i - 1].seq, seq) > 0) i--;
    if (i > 0 && held[i - 1].seq === seq && held[i - 1].data.length >= capLen) {
      ctx.counters.retransmissions++;
      return;
    }
    const copy = Buffer.from(buf.subarray(off, off + capLen));
    held.splice(i, 0, { seq, data: copy, wire: wireLen });
    this.heldBytes += capLen;
    ctx.heldBytes += capLen;
    if (this.heldBytes > ctx.maxHeldBytes || held.length > ctx.maxHeldSegments) {
      ctx.counters.overflows++;
      this.skipTo(held[0].seq, ts);
    }
  }

  /** Drains held segments that are now in order. */
  private drain(ts: number): void {
    const held = this.held!;
    while (held.length > 0) {
      const h = held[0];
      const d = seqDiff(h.seq, this.next);
      if (d > 0) break;
      held.shift();
      this.heldBytes -= h.data.length;
      this.ctx.heldBytes -= h.data.length;
      if (d + h.wire > 0) this.deliver(h.data, 0, h.data.length, h.wire, -d, ts);
      else this.ctx.counters.retransmissions++;
    }
    if (held.length === 0) this.held = null;
    this.maybeEnd(ts);
  }

  private skipTo(seq: number, ts: number): void {
    this.gapTo(seq, ts);
    this.drain(ts);
  }

  private gapTo(seq: number, ts: number): void {
    const n = seqDiff(seq, this.next);
    if (n <= 0) return;
    this.ctx.counters.gaps++;
    this.ctx.counters.gapBytes += n;
    this.next = seq | 0;
    this.sink.gap(this.dir, n, ts);
  }

  private deliver(buf: Buffer, off: number, capLen: number, wireLen: number, skip: number, ts: number): void {
    if (skip < capLen) {
      const n = capLen - skip;
      this.sink.data(this.dir, buf, off + skip, n, ts);
      this.bytes = Math.min(BYTES_SATURATION, this.bytes + n);
    }
    const missing = wireLen - Math.max(skip, capLen);
    this.next = (this.next + (wireLen - skip)) | 0;
    if (missing > 0) {
      // Cut by snaplen: the rest of the segment was on the wire but not in the capture.
      this.ctx.counters.gaps++;
      this.ctx.counters.gapBytes += missing;
      this.sink.gap(this.dir, missing, ts);
    }
  }

  private maybeEnd(ts: number): void {
    if (this.finSeen && !this.endDelivered && seqDiff(this.fin32, this.next) <= 0 && !this.held) {
      this.flags |= END_DELIVERED;
      this.sink.end(this.dir, ts);
    }
  }
}
