/**
 * The flow table: TCP connections keyed by their 4-tuple, with handshake tracking, FIN/RST per
 * side, port reuse, and bounded size.
 *
 * Call order to `FlowEvents` for one flow: `flowOpened` once; `attach` at most once, just before
 * the first stream event or `closing` (a flow that never carries a byte or a FIN, such as a SYN
 * of a flood, never gets a connection object: that is what keeps it small); then per direction
 * the stream events of `tcp/stream.ts` interleaved with `closing` (first FIN or RST of each
 * side); then `flowFinished` exactly once. Time is always the capture time passed in with the
 * packet.
 *
 * The table is keyed by a hash of the 4-tuple under a per-process random key (`flow-hash.ts`),
 * and flows whose keys hash alike are chained at most `MAX_CHAIN` deep: crafted addresses cannot
 * make a lookup cost more than that (see `FlowTable.segment`).
 */
import { TCP_ACK, TCP_FIN, TCP_RST, TCP_SYN, formatEndpoint, type PacketView } from '../decode/packet.js';
import { TcpDirection, newReassemblyContext, seqDiff, type ReassemblyContext, type ReassemblyCounters, type StreamSink } from './stream.js';
import type { EngineLimits } from '../config/limits.js';
import { keyedEndpointHash, type EndpointHash } from './flow-hash.js';

export type FinishReason =
  /** RST, or FIN from both sides */
  | 'closed'
  /** one side sent FIN and the other stayed silent for `halfClosedTimeoutSeconds` */
  | 'half_closed'
  /** no packet for `flowIdleTimeoutSeconds` */
  | 'idle'
  /** the table was full */
  | 'evicted'
  /** a new SYN reused the 4-tuple of a connection that never closed */
  | 'replaced'
  /** end of the capture */
  | 'end';

export interface FlowEvents {
  /** A new flow. Return false to ignore it (cheaply) for its lifetime. */
  flowOpened(flow: TcpFlow, ts: number): boolean;
  /** The sink for the flow's bytes, asked for once, when the first byte, gap or close arrives. */
  attach(flow: TcpFlow, ts: number): StreamSink;
  /** First FIN or RST from side `dir`. */
  closing(flow: TcpFlow, dir: number, rst: boolean, ts: number): void;
  flowFinished(flow: TcpFlow, why: FinishReason, ts: number): void;
}

export const enum FlowState {
  Open = 0,
  /** RST or both FINs: kept briefly as a tombstone to absorb late packets. */
  Finished = 1,
}

/**
 * Memory: one of these per tracked flow, up to --max-flows of them, so every field counts (a
 * SYN flood fills the table with them). Addresses are kept as int32 (`| 0`) so V8 stores them
 * as small integers in the object rather than as boxed doubles; per-flow constants live in the
 * shared `ReassemblyContext`; the connection object is only made by `attach`.
 */
export class TcpFlow implements StreamSink {
  /** Endpoint A is the source of the first packet seen; direction 0 is A to B. */
  version = 4;
  a0 = 0; a1 = 0; a2 = 0; a3 = 0; aPort = 0;
  b0 = 0; b1 = 0; b2 = 0; b3 = 0; bPort = 0;
  hash = 0;
  nextInBucket: TcpFlow | null = null;
  prev: TcpFlow | null = null;
  next: TcpFlow | null = null;
  /** The two directions, each made when first needed: a SYN alone never makes the second. */
  private d0: TcpDirection | null = null;
  private d1: TcpDirection | null = null;
  /** Direction index (0 or 1) of client-to-server bytes; -1 until known. */
  clientDir = -1;
  synTime = -1;
  synAckSeen = false;
  /** Client SYN to the client's ACK of the SYN-ACK, seconds; -1 if not captured. */
  handshakeRtt = -1;
  firstSeen = 0;
  /** Last packet of the flow; for a finished flow, the time it finished (late packets do not move it). */
  lastSeen = 0;
  state = FlowState.Open;
  ignored = false;
  /** The connection layer's object for this flow, from `FlowEvents.attach`; null until then. */
  owner: StreamSink | null = null;

  constructor(
    /** Shared by every flow of a table: its caps, counters and events. */
    private readonly env: FlowEnv,
  ) {}

  /** Direction `i` (0: A to B), made on first use (from the table's spares when it has one). */
  dir(i: number): TcpDirection {
    const d = i === 0 ? this.d0 : this.d1;
    if (d) return d;
    const made = this.env.spareDirections.pop()?.reuse(i, this) ?? new TcpDirection(i, this.env.ctx, this);
    if (i === 0) this.d0 = made;
    else this.d1 = made;
    return made;
  }

  /**
   * Back to the state of a new flow, its directions handed to the table's spares: the table
   * reuses flows it removed instead of leaving them to the garbage collector. Under a SYN flood
   * every new flow evicts an old one, and without reuse each SYN left about 430 bytes of garbage:
   * 1M SYNs made 390 MB of it, and the heap grew to hold it (332 MB RSS for 43 MB of live flows).
   */
  recycle(): void {
    const spares = this.env.spareDirections;
    if (this.d0 && spares.length < MAX_SPARES) spares.push(this.d0);
    if (this.d1 && spares.length < MAX_SPARES) spares.push(this.d1);
    this.d0 = this.d1 = null;
    this.version = 4;
    this.a0 = this.a1 = this.a2 = this.a3 = this.aPort = 0;
    this.b0 = this.b1 = this.b2 = this.b3 = this.bPort = 0;
    this.hash = 0;
    this.nextInBucket = this.prev = this.next = null;
    this.clientDir = -1;
    this.synTime = -1;
    this.synAckSeen = false;
    this.handshakeRtt = -1;
    this.firstSeen = this.lastSeen = 0;
    this.state = FlowState.Open;
    this.ignored = false;
    this.owner = null;
  }

  /** Direction `i` if anything made it yet: for questions a direction that never carried a packet answers with "no". */
  peek(i: number): TcpDirection | null {
    return i === 0 ? this.d0 : this.d1;
  }

  /** The memory budget the flow's table shares between its reassembly and the parsers above it. */
  get budget(): ReassemblyContext {
    return this.env.ctx;
  }

  /** The connection object, made on first use. */
  sink(ts: number): StreamSink {
    return this.owner ?? (this.owner = this.env.events.attach(this, ts));
  }

  // The directions' sink: forwards to the connection object, made on the first byte.
  data(dir: number, buf: Buffer, off: number, len: number, ts: number): void {
    this.sink(ts).data(dir, buf, off, len, ts);
  }

  gap(dir: number, len: number, ts: number): void {
    this.sink(ts).gap(dir, len, ts);
  }

  end(dir: number, ts: number): void {
    this.owner?.end(dir, ts);
  }

  /** Payload bytes delivered in direction `dir` so far (saturating). */
  bytesIn(dir: number): number {
    return (dir === 0 ? this.d0 : this.d1)?.bytes ?? 0;
  }

  /** "ip:port" of endpoint A (`side` 0, the sender of direction 0) or B (`side` 1). */
  endpoint(side: number): string {
    return side === 0
      ? formatEndpoint(this.version, this.a0, this.a1, this.a2, this.a3, this.aPort)
      : formatEndpoint(this.version, this.b0, this.b1, this.b2, this.b3, this.bPort);
  }

  port(side: number): number {
    return side === 0 ? this.aPort : this.bPort;
  }

  /** The roles, from the content of a flow whose handshake was not captured (a request seen in `clientDir`). */
  assignRoles(clientDir: number): void {
    this.clientDir = clientDir;
  }

  /** Not analysed after all: the table drops its packets cheaply from now on. */
  ignore(): void {
    this.ignored = true;
  }

  /** True when a handshake (SYN or SYN-ACK) was captured, so both streams are seen from their start. */
  get fromStart(): boolean {
    return this.clientDir >= 0 && ((this.d0 !== null && this.d0.isn !== -1) || (this.d1 !== null && this.d1.isn !== -1));
  }
}

/** Doubly linked list of flows in order of last activity (oldest first). */
class FlowList {
  head: TcpFlow | null = null;
  tail: TcpFlow | null = null;
  size = 0;
  push(f: TcpFlow): void {
    f.prev = this.tail;
    f.next = null;
    if (this.tail) this.tail.next = f;
    else this.head = f;
    this.tail = f;
    this.size++;
  }
  remove(f: TcpFlow): void {
    if (f.prev) f.prev.next = f.next;
    else this.head = f.next;
    if (f.next) f.next.prev = f.prev;
    else this.tail = f.prev;
    f.prev = f.next = null;
    this.size--;
  }
  touch(f: TcpFlow): void {
    if (this.tail === f) return;
    this.remove(f);
    this.push(f);
  }
}

/** What all flows of one table share (one object, so each flow spends one field on it). */
export interface FlowEnv {
  readonly ctx: ReassemblyContext;
  readonly events: FlowEvents;
  /** Directions of removed flows, for reuse (at most `MAX_SPARES`). */
  readonly spareDirections: TcpDirection[];
}

/**
 * Removed flows (and directions) kept for reuse. In steady state a full table removes one flow
 * for each it creates, so a small stock absorbs the churn of any flood; it is a cap, not a size.
 */
export const MAX_SPARES = 1024;

export interface FlowCounters extends ReassemblyCounters {
  flowsCreated: number;
  flowsEvicted: number;
  synOnOpenFlow: number;
  /** New flows not tracked because their hash chain was full (`flow_chain_full`). */
  chainFull: number;
}

/**
 * Flows whose 4-tuples hash to the same 32-bit value, at most. Under a random key honest traffic
 * never comes close (100,000 flows give about one pair); only keys crafted with the key in hand
 * could, and then a new flow is refused and counted rather than making every lookup slower.
 */
export const MAX_CHAIN = 8;

/** 0 when the segment (source s, destination d) goes a -> b on `flow`, 1 when b -> a, -1 when it is another 4-tuple. */
function directionOf(flow: TcpFlow, s0: number, s1: number, s2: number, s3: number, sp: number, d0: number, d1: number, d2: number, d3: number, dp: number): number {
  if (flow.aPort === sp && flow.bPort === dp && flow.a0 === s0 && flow.b0 === d0 &&
    flow.a1 === s1 && flow.a2 === s2 && flow.a3 === s3 && flow.b1 === d1 && flow.b2 === d2 && flow.b3 === d3) return 0;
  if (flow.aPort === dp && flow.bPort === sp && flow.a0 === d0 && flow.b0 === s0 &&
    flow.a1 === d1 && flow.a2 === d2 && flow.a3 === d3 && flow.b1 === s1 && flow.b2 === s2 && flow.b3 === s3) return 1;
  return -1;
}

export class FlowTable {
  private readonly buckets = new Map<number, TcpFlow>();
  /** The flow of the last segment (a cache in front of `buckets`; cleared when that flow is removed). */
  private lastFlow: TcpFlow | null = null;
  /** Removed flows ready for reuse (see `TcpFlow.recycle`). */
  private readonly spareFlows: TcpFlow[] = [];
  /** Open flows, least recently active first. */
  private readonly active = new FlowList();
  /** Finished flows (tombstones), oldest first. */
  private readonly finished = new FlowList();
  private lastSweep = 0;
  readonly counters: FlowCounters = {
    flowsCreated: 0, flowsEvicted: 0, synOnOpenFlow: 0, chainFull: 0,
    gaps: 0, gapBytes: 0, retransmissions: 0, overflows: 0, budgetRefused: 0,
  };
  readonly ctx: ReassemblyContext;
  private readonly env: FlowEnv;

  constructor(
    private readonly limits: EngineLimits,
    private readonly events: FlowEvents,
    /** The endpoint hash: keyed with a fresh random key by default (tests pass one they can collide). */
    private readonly endpointHash: EndpointHash = keyedEndpointHash(),
  ) {
    this.ctx = newReassemblyContext(this.counters, limits);
    this.env = { ctx: this.ctx, events, spareDirections: [] };
  }

  /** Longest hash chain and how many chains there are: what crafted keys would lengthen. */
  chainStats(): { chains: number; longest: number } {
    let longest = 0;
    for (let f of this.buckets.values()) {
      let n = 0;
      for (let g: TcpFlow | null = f; g; g = g.nextInBucket) n++;
      if (n > longest) longest = n;
    }
    return { chains: this.buckets.size, longest };
  }

  /** The table's hash of a 4-tuple: the same for both directions. */
  hashOf(v: PacketView): number {
    const h = this.endpointHash;
    return (h(v.src0, v.src1, v.src2, v.src3, v.srcPort) + h(v.dst0, v.dst1, v.dst2, v.dst3, v.dstPort)) | 0;
  }

  /** Flows tracked now (open and lingering). */
  get size(): number {
    return this.active.size + this.finished.size;
  }

  get openFlows(): number {
    return this.active.size;
  }

  /** One decoded TCP segment. `buf` holds the payload at v.payloadOffset. */
  segment(v: PacketView, buf: Buffer, ts: number): void {
    let dir = -1;
    let chain = 0;
    // Flows store their addresses as int32 (see TcpFlow); the view has them unsigned.
    const s0 = v.src0 | 0, s1 = v.src1 | 0, s2 = v.src2 | 0, s3 = v.src3 | 0;
    const d0 = v.dst0 | 0, d1 = v.dst1 | 0, d2 = v.dst2 | 0, d3 = v.dst3 | 0;
    // The last packet's flow first: a response of several segments, or its ACKs, comes in a run
    // (on the TLS benchmark's capture two packets in five), and a hit needs no hash.
    let flow = this.lastFlow;
    if (flow) dir = directionOf(flow, s0, s1, s2, s3, v.srcPort, d0, d1, d2, d3, v.dstPort);
    const h = dir >= 0 ? flow!.hash : this.hashOf(v);
    if (dir < 0) flow = this.buckets.get(h) ?? null;
    while (dir < 0 && flow) {
      dir = directionOf(flow, s0, s1, s2, s3, v.srcPort, d0, d1, d2, d3, v.dstPort);
      if (dir >= 0) break;
      flow = flow.nextInBucket;
      chain++;
    }
    if (flow) this.lastFlow = flow;
    const flags = v.flags;
    const isSyn = (flags & (TCP_SYN | TCP_ACK)) === TCP_SYN;
    if (flow) {
      if (flow.state === FlowState.Finished) {
        if (!isSyn) return; // a late packet of a finished connection
        this.removeFlow(flow); // port reuse: a new connection on the same 4-tuple
        flow = null;
      } else if (isSyn && (flow.dir(dir).isn !== -1 ? flow.dir(dir).isn !== v.seq : (flow.peek(0)?.bytes ?? 0) + (flow.peek(1)?.bytes ?? 0) > 0)) {
        // A new SYN on a 4-tuple whose connection we never saw close (its FIN/RST was not captured),
        // whether that connection began with a SYN of its own or was joined mid-stream with data.
        this.counters.synOnOpenFlow++;
        this.finish(flow, 'replaced', ts);
        this.removeFlow(flow);
        flow = null;
      }
    }
    if (!flow) {
      if (flags & TCP_RST) return; // a stray reset does not start a connection
      if (chain >= MAX_CHAIN) {
        this.counters.chainFull++;
        return;
      }
      flow = this.createFlow(v, h, ts);
      dir = 0;
      if (flow.ignored) return;
    } else {
      if (this.lastSweep === 0) this.lastSweep = ts;
      flow.lastSeen = ts;
      this.active.touch(flow);
      if (flow.ignored) return;
    }
    this.handle(flow, dir, v, buf, ts);
    if (ts - this.lastSweep >= 1) this.sweep(ts);
  }

  private handle(flow: TcpFlow, dir: number, v: PacketView, buf: Buffer, ts: number): void {
    const flags = v.flags;
    const d = flow.dir(dir);
    let dataSeq = v.seq;
    if (flags & TCP_SYN) {
      if (d.isn === -1) {
        d.syn(v.seq);
        if (flags & TCP_ACK) {
          flow.synAckSeen = true;
          if (flow.clientDir < 0) {
            flow.clientDir = 1 - dir;
            // The client's SYN was not captured; its stream starts at what the server acknowledges.
            const c = flow.dir(flow.clientDir);
            if (!c.started) { c.nextSeq = v.ack; c.started = true; }
          }
        } else {
          flow.clientDir = dir;
          flow.synTime = ts;
        }
      }
      dataSeq = (v.seq + 1) >>> 0; // data in a SYN (TCP Fast Open) follows the SYN's sequence number
    } else if (flags & TCP_ACK && flow.handshakeRtt < 0 && flow.synTime >= 0 && flow.synAckSeen && dir === flow.clientDir) {
      const server = flow.peek(1 - dir);
      if (server && v.ack === ((server.isn + 1) >>> 0)) flow.handshakeRtt = ts - flow.synTime;
    }
    if (v.payloadLength > 0 || !d.started) d.segment(dataSeq, buf, v.payloadOffset, v.payloadCaptured, v.payloadLength, ts);
    if (flags & TCP_ACK) {
      const other = flow.peek(1 - dir);
      if (other) {
        other.acked(v.ack, ts);
        if (other.finSeen && !other.finReported && other.endDelivered) this.reportFin(flow, 1 - dir, ts);
        if (flow.state === FlowState.Finished) return;
      }
    }
    if (flags & TCP_RST) {
      if (!d.rstSeen) {
        d.rstSeen = true;
        flow.peek(0)?.flush(ts);
        flow.peek(1)?.flush(ts);
        // A FIN captured before this RST, still waiting for bytes before it, came first.
        this.reportWaitingFins(flow);
        if (!d.finSeen) {
          flow.sink(ts);
          this.events.closing(flow, dir, true, ts); // only the first FIN or RST of a side
        }
        this.finish(flow, 'closed', ts);
      }
      return;
    }
    if (flags & TCP_FIN && !d.finSeen) {
      d.fin(dataSeq, v.payloadLength, ts);
      d.finTime = ts;
    }
    // A FIN is reported in sequence order: once every byte before it was delivered. On `-i any`
    // packets from different CPUs interleave, and a FIN is often captured just before the last
    // data segment of its side; reported at once, the response in that segment would look cut
    // off by the close (`aborted`). The FIN waits for those bytes until they arrive, the peer
    // acknowledges the FIN (they were sent, the capture lost them: a gap), the flow finishes, or
    // an RST or the other side's FIN comes.
    if (d.finSeen && !d.finReported && d.endDelivered) this.reportFin(flow, dir, ts);
  }

  /** Reports side `dir`'s FIN (its bytes are all delivered), the other side's earlier one first. */
  private reportFin(flow: TcpFlow, dir: number, ts: number): void {
    const d = flow.dir(dir);
    const other = flow.peek(1 - dir);
    if (other && other.finSeen && !other.finReported && other.finTime <= d.finTime) {
      other.flush(ts);
      this.emitFin(flow, other);
    }
    this.emitFin(flow, d);
    if (other?.finReported) this.finish(flow, 'closed', ts);
  }

  /** FINs seen but not yet reported (waiting for bytes before them), in capture order; the bytes are skipped as gaps. */
  private reportWaitingFins(flow: TcpFlow): void {
    const d0 = flow.peek(0);
    const d1 = flow.peek(1);
    const w0 = d0 !== null && d0.finSeen && !d0.finReported;
    const w1 = d1 !== null && d1.finSeen && !d1.finReported;
    if (!w0 && !w1) return;
    const first = w0 && (!w1 || d0.finTime <= d1!.finTime) ? d0 : d1!;
    const second = first === d0 ? d1 : d0;
    first.flush(first.finTime);
    this.emitFin(flow, first);
    if (second && second.finSeen && !second.finReported) {
      second.flush(second.finTime);
      this.emitFin(flow, second);
    }
  }

  private emitFin(flow: TcpFlow, d: TcpDirection): void {
    d.finReported = true;
    flow.sink(d.finTime);
    this.events.closing(flow, d.dir, false, d.finTime);
  }

  private createFlow(v: PacketView, h: number, ts: number): TcpFlow {
    if (this.size >= this.limits.maxFlows) this.evictOne(ts);
    const f = this.spareFlows.pop() ?? new TcpFlow(this.env);
    f.version = v.ipVersion;
    f.a0 = v.src0 | 0; f.a1 = v.src1 | 0; f.a2 = v.src2 | 0; f.a3 = v.src3 | 0; f.aPort = v.srcPort;
    f.b0 = v.dst0 | 0; f.b1 = v.dst1 | 0; f.b2 = v.dst2 | 0; f.b3 = v.dst3 | 0; f.bPort = v.dstPort;
    f.hash = h;
    f.firstSeen = f.lastSeen = ts;
    if (this.lastSweep === 0) this.lastSweep = ts;
    f.nextInBucket = this.buckets.get(h) ?? null;
    this.buckets.set(h, f);
    this.active.push(f);
    this.counters.flowsCreated++;
    // Roles known from the first packet let the owner decide on port filters before any bytes.
    const flags = v.flags;
    if (flags & TCP_SYN) f.clientDir = flags & TCP_ACK ? 1 : 0;
    if (!this.events.flowOpened(f, ts)) f.ignored = true;
    // handle() sets roles itself from the SYN flags.
    if (flags & TCP_SYN) f.clientDir = -1;
    return f;
  }

  /** Moves a flow to the finished state and reports it. */
  private finish(flow: TcpFlow, why: FinishReason, ts: number): void {
    if (flow.state === FlowState.Finished) return;
    if (!flow.ignored) {
      flow.peek(0)?.flush(ts);
      flow.peek(1)?.flush(ts);
      this.reportWaitingFins(flow);
      this.events.flowFinished(flow, why, ts);
    }
    flow.state = FlowState.Finished;
    flow.lastSeen = ts;
    flow.owner = null;
    flow.peek(0)?.release();
    flow.peek(1)?.release();
    this.active.remove(flow);
    this.finished.push(flow);
  }

  private removeFlow(flow: TcpFlow): void {
    if (this.lastFlow === flow) this.lastFlow = null;
    if (flow.state === FlowState.Finished) this.finished.remove(flow);
    else this.active.remove(flow);
    let f = this.buckets.get(flow.hash) ?? null;
    let prev: TcpFlow | null = null;
    while (f && f !== flow) { prev = f; f = f.nextInBucket; }
    if (!f) return;
    if (prev) prev.nextInBucket = f.nextInBucket;
    else if (f.nextInBucket) this.buckets.set(flow.hash, f.nextInBucket);
    else this.buckets.delete(flow.hash);
    f.nextInBucket = null;
    // Nothing refers to a removed flow but its old connection object, which reads it no more
    // (a connection waiting for an inferred max only reports its record).
    if (this.spareFlows.length < MAX_SPARES) {
      f.recycle();
      this.spareFlows.push(f);
    }
  }

  private evictOne(ts: number): void {
    const victim = this.finished.head ?? this.active.head;
    if (!victim) return;
    if (victim.state !== FlowState.Finished) {
      this.counters.flowsEvicted++;
      this.finish(victim, 'evicted', ts);
    }
    this.removeFlow(victim);
  }

  /**
   * Expires flows by capture time: tombstones after their linger, half-closed flows after the
   * half-closed timeout, silent flows after the idle timeout. Oldest-first lists keep it cheap.
   */
  sweep(ts: number): void {
    this.lastSweep = ts;
    const lim = this.limits;
    for (let f = this.finished.head; f && ts - f.lastSeen >= lim.closedLingerSeconds; f = this.finished.head) {
      this.removeFlow(f);
    }
    // Every flow silent for the half-closed timeout is looked at: an open idle flow does not hide
    // a more recent half-closed one behind it.
    for (let f = this.active.head; f && ts - f.lastSeen >= lim.halfClosedTimeoutSeconds; ) {
      const next = f.next;
      if (f.peek(0)?.finSeen || f.peek(1)?.finSeen) this.finish(f, 'half_closed', ts);
      else if (ts - f.lastSeen >= lim.flowIdleTimeoutSeconds) this.finish(f, 'idle', ts);
      f = next;
    }
  }

  /** End of input: every flow still tracked is reported. */
  finishAll(ts: number): void {
    for (let f = this.active.head; f; f = this.active.head) this.finish(f, 'end', ts);
  }
}

export { seqDiff };
