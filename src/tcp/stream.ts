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
}

export class TcpDirection {
  /** Sequence number of the next byte to deliver; valid once `started`. */
  nextSeq = 0;
  started = false;
  /** The initial sequence number from a SYN, or -1 when the handshake was not seen. */
  isn = -1;
  finSeen = false;
  finSeq = 0;
  finTime = 0;
  endDelivered = false;
  rstSeen = false;
  /** Last time this side sent anything. */
  lastSeen = 0;
  /** Payload bytes delivered. */
  bytes = 0;
  private held: HeldSegment[] | null = null;
  private heldBytes = 0;

  /** Set by the connection layer when the flow is created. */
  sink!: StreamSink;

  constructor(
    readonly dir: number,
    private readonly counters: ReassemblyCounters,
    private readonly maxHeldBytes: number,
    private readonly maxHeldSegments: number,
  ) {}

  /** A SYN from this side: the data stream starts at isn + 1. */
  syn(seq: number): void {
    this.isn = seq;
    this.nextSeq = (seq + 1) >>> 0;
    this.started = true;
  }

  /**
   * A segment from this side. `capLen` payload bytes are in `buf` at `off`; `wireLen` is the
   * payload length on the wire (greater when snaplen cut the packet).
   */
  segment(seq: number, buf: Buffer, off: number, capLen: number, wireLen: number, ts: number): void {
    if (!this.started) {
      // Capture began mid-connection: the stream starts here.
      this.nextSeq = seq;
      this.started = true;
    }
    if (wireLen <= 0) return;
    let d = seqDiff(seq, this.nextSeq);
    if (d > 0) {
      this.hold(seq, buf, off, capLen, wireLen, ts);
      return;
    }
    if (d + wireLen <= 0) {
      this.counters.retransmissions++;
      return;
    }
    // Overlap with bytes already delivered: deliver only the new part.
    let skip = -d;
    this.deliver(buf, off, capLen, wireLen, skip, ts);
    if (this.held) this.drain(ts);
    else if (this.finSeen) this.maybeEnd(ts); // the bytes a FIN was waiting for
  }

  /** FIN from this side at sequence `seq` after `wireLen` payload bytes. */
  fin(seq: number, wireLen: number, ts: number): void {
    if (!this.finSeen) {
      this.finSeen = true;
      this.finSeq = (seq + wireLen) >>> 0;
      this.finTime = ts;
    }
    if (!this.started) {
      this.nextSeq = this.finSeq;
      this.started = true;
    }
    this.maybeEnd(ts);
  }

  /**
   * The other side acknowledged up to `ack`. If held segments start at or below it, the bytes
   * before them were received but not captured: skip the hole now rather than wait for a cap.
   */
  acked(ack: number, ts: number): void {
    if (!this.held || !this.started) return;
    if (seqDiff(ack, this.held[0].seq) >= 0) this.skipTo(this.held[0].seq, ts);
  }

  /** Deliver everything held, skipping holes, then the end of stream if a FIN was seen. */
  flush(ts: number): void {
    while (this.held && this.held.length > 0) this.skipTo(this.held[0].seq, ts);
    if (this.finSeen && !this.endDelivered && seqDiff(this.finSeq, this.nextSeq) > 0) {
      this.gapTo(this.finSeq, ts);
    }
    this.maybeEnd(ts);
  }

  /** Holds (copies) an out-of-order segment; on overflow, skips the hole before the earliest one. */
  private hold(seq: number, buf: Buffer, off: number, capLen: number, wireLen: number, ts: number): void {
    const held = (this.held ??= []);
    // Insert in sequence order; most arrivals append.
    let i = held.length;
    while (i > 0 && seqDiff(held[i - 1].seq, seq) > 0) i--;
    if (i > 0 && held[i - 1].seq === seq && held[i - 1].data.length >= capLen) {
      this.counters.retransmissions++;
      return;
    }
    const copy = Buffer.from(buf.subarray(off, off + capLen));
    held.splice(i, 0, { seq, data: copy, wire: wireLen });
    this.heldBytes += capLen;
    if (this.heldBytes > this.maxHeldBytes || held.length > this.maxHeldSegments) {
      this.counters.overflows++;
      this.skipTo(held[0].seq, ts);
    }
  }

  /** Drains held segments that are now in order. */
  private drain(ts: number): void {
    const held = this.held!;
    while (held.length > 0) {
      const h = held[0];
      const d = seqDiff(h.seq, this.nextSeq);
      if (d > 0) break;
      held.shift();
      this.heldBytes -= h.data.length;
      if (d + h.wire > 0) this.deliver(h.data, 0, h.data.length, h.wire, -d, ts);
      else this.counters.retransmissions++;
    }
    if (held.length === 0) this.held = null;
    this.maybeEnd(ts);
  }

  private skipTo(seq: number, ts: number): void {
    this.gapTo(seq, ts);
    this.drain(ts);
  }

  private gapTo(seq: number, ts: number): void {
    const n = seqDiff(seq, this.nextSeq);
    if (n <= 0) return;
    this.counters.gaps++;
    this.counters.gapBytes += n;
    this.nextSeq = seq >>> 0;
    this.sink.gap(this.dir, n, ts);
  }

  private deliver(buf: Buffer, off: number, capLen: number, wireLen: number, skip: number, ts: number): void {
    if (skip < capLen) {
      const n = capLen - skip;
      this.sink.data(this.dir, buf, off + skip, n, ts);
      this.bytes += n;
    }
    const missing = wireLen - Math.max(skip, capLen);
    this.nextSeq = (this.nextSeq + (wireLen - skip)) >>> 0;
    if (missing > 0) {
      // Cut by snaplen: the rest of the segment was on the wire but not in the capture.
      this.counters.gaps++;
      this.counters.gapBytes += missing;
      this.sink.gap(this.dir, missing, ts);
    }
  }

  private maybeEnd(ts: number): void {
    if (this.finSeen && !this.endDelivered && seqDiff(this.finSeq, this.nextSeq) <= 0 && !this.held) {
      this.endDelivered = true;
      this.sink.end(this.dir, ts);
    }
  }
}
