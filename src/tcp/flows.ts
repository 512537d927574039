/**
 * The flow table: TCP connections keyed by their 4-tuple, with handshake tracking, FIN/RST per
 * side, port reuse, and bounded size.
 *
 * Call order to `FlowEvents` for one flow: `flowOpened` once; then per direction the stream
 * events of `tcp/stream.ts` interleaved with `closing` (first FIN or RST of each side); then
 * `flowFinished` exactly once. Time is always the capture time passed in with the packet.
 */
import { TCP_ACK, TCP_FIN, TCP_RST, TCP_SYN, type PacketView } from '../decode/packet.js';
import { TcpDirection, seqDiff, type ReassemblyCounters, type StreamSink } from './stream.js';
import type { EngineLimits } from '../config/limits.js';

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
  /** A new flow. Return the sink for its bytes, or null to ignore the flow (cheaply) for its lifetime. */
  flowOpened(flow: TcpFlow, ts: number): StreamSink | null;
  /** First FIN or RST from side `dir`. */
  closing(flow: TcpFlow, dir: number, rst: boolean, ts: number): void;
  flowFinished(flow: TcpFlow, why: FinishReason, ts: number): void;
}

export const enum FlowState {
  Open = 0,
  /** RST or both FINs: kept briefly as a tombstone to absorb late packets. */
  Finished = 1,
}

export class TcpFlow {
  /** Endpoint A is the source of the first packet seen; direction 0 is A to B. */
  version = 4;
  a0 = 0; a1 = 0; a2 = 0; a3 = 0; aPort = 0;
  b0 = 0; b1 = 0; b2 = 0; b3 = 0; bPort = 0;
  hash = 0;
  nextInBucket: TcpFlow | null = null;
  prev: TcpFlow | null = null;
  next: TcpFlow | null = null;
  readonly dirs: [TcpDirection, TcpDirection];
  /** Direction index (0 or 1) of client-to-server bytes; -1 until known. */
  clientDir = -1;
  synTime = -1;
  synAckSeen = false;
  /** Client SYN to the client's ACK of the SYN-ACK, seconds; -1 if not captured. */
  handshakeRtt = -1;
  firstSeen = 0;
  lastSeen = 0;
  state = FlowState.Open;
  finishedAt = 0;
  ignored = false;
  /** The connection layer's object for this flow. */
  owner: unknown = null;

  constructor(counters: ReassemblyCounters, limits: EngineLimits) {
    this.dirs = [
      new TcpDirection(0, counters, limits.maxOutOfOrderBytes, limits.maxOutOfOrderSegments),
      new TcpDirection(1, counters, limits.maxOutOfOrderBytes, limits.maxOutOfOrderSegments),
    ];
  }

  /** True when a handshake (SYN or SYN-ACK) was captured, so both streams are seen from their start. */
  get fromStart(): boolean {
    return this.clientDir >= 0 && (this.dirs[0].isn !== -1 || this.dirs[1].isn !== -1);
  }
}

function mix(w0: number, w1: number, w2: number, w3: number, port: number): number {
  let h = Math.imul(w0 ^ 0x9e3779b9, 0x85ebca6b);
  h = Math.imul(h ^ w1 ^ (h >>> 15), 0xc2b2ae35);
  h = Math.imul(h ^ w2 ^ (h >>> 13), 0x27d4eb2f);
  h = Math.imul(h ^ w3 ^ (h >>> 16), 0x165667b1);
  return Math.imul(h ^ port ^ (h >>> 15), 0x85ebca6b);
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

export interface FlowCounters extends ReassemblyCounters {
  flowsCreated: number;
  flowsEvicted: number;
  synOnOpenFlow: number;
}

export class FlowTable {
  private readonly buckets = new Map<number, TcpFlow>();
  /** Open flows, least recently active first. */
  private readonly active = new FlowList();
  /** Finished flows (tombstones), oldest first. */
  private readonly finished = new FlowList();
  private lastSweep = 0;
  readonly counters: FlowCounters = {
    flowsCreated: 0, flowsEvicted: 0, synOnOpenFlow: 0,
    gaps: 0, gapBytes: 0, retransmissions: 0, overflows: 0,
  };

  constructor(
    private readonly limits: EngineLimits,
    private readonly events: FlowEvents,
  ) {}

  /** Flows tracked now (open and lingering). */
  get size(): number {
    return this.active.size + this.finished.size;
  }

  get openFlows(): number {
    return this.active.size;
  }

  /** One decoded TCP segment. `buf` holds the payload at v.payloadOffset. */
  segment(v: PacketView, buf: Buffer, ts: number): void {
    const h = (mix(v.src0, v.src1, v.src2, v.src3, v.srcPort) + mix(v.dst0, v.dst1, v.dst2, v.dst3, v.dstPort)) | 0;
    let flow = this.buckets.get(h) ?? null;
    let dir = -1;
    while (flow) {
      if (flow.aPort === v.srcPort && flow.bPort === v.dstPort && flow.a0 === v.src0 && flow.b0 === v.dst0 &&
        flow.a1 === v.src1 && flow.a2 === v.src2 && flow.a3 === v.src3 && flow.b1 === v.dst1 && flow.b2 === v.dst2 && flow.b3 === v.dst3) {
        dir = 0;
        break;
      }
      if (flow.aPort === v.dstPort && flow.bPort === v.srcPort && flow.a0 === v.dst0 && flow.b0 === v.src0 &&
        flow.a1 === v.dst1 && flow.a2 === v.dst2 && flow.a3 === v.dst3 && flow.b1 === v.src1 && flow.b2 === v.src2 && flow.b3 === v.src3) {
        dir = 1;
        break;
      }
      flow = flow.nextInBucket;
    }
    const flags = v.flags;
    const isSyn = (flags & (TCP_SYN | TCP_ACK)) === TCP_SYN;
    if (flow) {
      if (flow.state === FlowState.Finished) {
        if (!isSyn) return; // a late packet of a finished connection
        this.removeFlow(flow); // port reuse: a new connection on the same 4-tuple
        flow = null;
      } else if (isSyn && (flow.dirs[dir].isn !== -1 ? flow.dirs[dir].isn !== v.seq : flow.dirs[0].bytes + flow.dirs[1].bytes > 0)) {
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
    const d = flow.dirs[dir];
    d.lastSeen = ts;
    let dataSeq = v.seq;
    if (flags & TCP_SYN) {
      if (d.isn === -1) {
        d.syn(v.seq);
        if (flags & TCP_ACK) {
          flow.synAckSeen = true;
          if (flow.clientDir < 0) {
            flow.clientDir = 1 - dir;
            // The client's SYN was not captured; its stream starts at what the server acknowledges.
            const c = flow.dirs[flow.clientDir];
            if (!c.started) { c.nextSeq = v.ack; c.started = true; }
          }
        } else {
          flow.clientDir = dir;
          flow.synTime = ts;
        }
      }
      dataSeq = (v.seq + 1) >>> 0; // data in a SYN (TCP Fast Open) follows the SYN's sequence number
    } else if (flags & TCP_ACK && flow.handshakeRtt < 0 && flow.synTime >= 0 && flow.synAckSeen && dir === flow.clientDir) {
      const server = flow.dirs[1 - dir];
      if (v.ack === ((server.isn + 1) >>> 0)) flow.handshakeRtt = ts - flow.synTime;
    }
    if (v.payloadLength > 0 || !d.started) d.segment(dataSeq, buf, v.payloadOffset, v.payloadCaptured, v.payloadLength, ts);
    if (flags & TCP_ACK) flow.dirs[1 - dir].acked(v.ack, ts);
    if (flags & TCP_RST) {
      if (!d.rstSeen) {
        d.rstSeen = true;
        flow.dirs[0].flush(ts);
        flow.dirs[1].flush(ts);
        if (!d.finSeen) this.events.closing(flow, dir, true, ts); // only the first FIN or RST of a side
        this.finish(flow, 'closed', ts);
      }
      return;
    }
    if (flags & TCP_FIN && !d.finSeen) {
      d.fin(dataSeq, v.payloadLength, ts);
      // Data the FIN follows was acknowledged by the peer's view of the stream: no more will come.
      d.flush(ts);
      this.events.closing(flow, dir, false, ts);
      if (flow.dirs[1 - dir].finSeen) this.finish(flow, 'closed', ts);
    }
  }

  private createFlow(v: PacketView, h: number, ts: number): TcpFlow {
    if (this.size >= this.limits.maxFlows) this.evictOne(ts);
    const f = new TcpFlow(this.counters, this.limits);
    f.version = v.ipVersion;
    f.a0 = v.src0; f.a1 = v.src1; f.a2 = v.src2; f.a3 = v.src3; f.aPort = v.srcPort;
    f.b0 = v.dst0; f.b1 = v.dst1; f.b2 = v.dst2; f.b3 = v.dst3; f.bPort = v.dstPort;
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
    const sink = this.events.flowOpened(f, ts);
    if (!sink) f.ignored = true;
    else {
      f.dirs[0].sink = sink;
      f.dirs[1].sink = sink;
    }
    // handle() sets roles itself from the SYN flags.
    if (flags & TCP_SYN) f.clientDir = -1;
    return f;
  }

  /** Moves a flow to the finished state and reports it. */
  private finish(flow: TcpFlow, why: FinishReason, ts: number): void {
    if (flow.state === FlowState.Finished) return;
    if (!flow.ignored) {
      flow.dirs[0].flush(ts);
      flow.dirs[1].flush(ts);
      this.events.flowFinished(flow, why, ts);
    }
    flow.state = FlowState.Finished;
    flow.finishedAt = ts;
    flow.owner = null;
    this.active.remove(flow);
    this.finished.push(flow);
  }

  private removeFlow(flow: TcpFlow): void {
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
    for (let f = this.finished.head; f && ts - f.finishedAt >= lim.closedLingerSeconds; f = this.finished.head) {
      this.removeFlow(f);
    }
    // Every flow silent for the half-closed timeout is looked at: an open idle flow does not hide
    // a more recent half-closed one behind it.
    for (let f = this.active.head; f && ts - f.lastSeen >= lim.halfClosedTimeoutSeconds; ) {
      const next = f.next;
      if (f.dirs[0].finSeen || f.dirs[1].finSeen) this.finish(f, 'half_closed', ts);
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
