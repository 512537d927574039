/**
 * The engine: packets in, connection facts out.
 *
 *   capture (PacketSink) -> decode -> tcp flow table -> http parsers -> connection tracker -> consumers
 *
 * `packet()` is the per-packet hot path: it decodes in place into one reused view and does no
 * allocation for packets that carry no new payload. Time only comes from the packets, so a
 * replay of the same capture gives the same facts.
 */
import { DEFAULT_LIMITS, SWEEP_INTERVAL_SECONDS, type EngineLimits } from '../config/limits.js';
import { A, ANOMALIES, newAnomalyCounts } from '../config/anomalies.js';
import type { CaptureAnomaly, PacketSink } from '../capture/reader.js';
import { DECODED_TCP, decodePacket, newPacketView } from '../decode/packet.js';
import { FlowTable } from '../tcp/flows.js';
import { ConnectionTracker, type TrackerCounters } from './tracker.js';
import type { EngineConsumer } from './records.js';
import { StreamTap, type Endpoint } from './stream-tap.js';
import type { SecretSource } from '../session/session.js';

export interface EngineOptions {
  limits?: Partial<EngineLimits>;
  /** Server ports to analyse; default: any port where HTTP is seen. */
  ports?: number[] | null;
  /** TLS secrets (`--tls-keylog`): connections with a line in it are decrypted. */
  tlsKeys?: SecretSource | null;
}

export interface EngineStats {
  packets: number;
  bytes: number;
  tcpPackets: number;
  streams: number;
  flowsTracked: number;
  /** Out-of-order bytes held now by all flows together (at most `maxBufferedBytes`). */
  bufferedBytes: number;
  flowsCreated: number;
  flowsEvicted: number;
  gaps: number;
  gapBytes: number;
  retransmissions: number;
  connectionsOpened: number;
  connectionsClosed: number;
  openConnections: number;
  nonHttp: { tls: number; http2: number; other: number };
  anomalies: Record<string, number>;
  firstPacketTime: number | null;
  lastPacketTime: number | null;
}

export class Engine implements PacketSink {
  readonly limits: EngineLimits;
  private readonly view = newPacketView();
  private readonly counters: TrackerCounters;
  private readonly tracker: ConnectionTracker;
  private readonly flows: FlowTable;
  private packets = 0;
  /** Connections fed as byte streams (proxy tap). */
  private streams = 0;
  private bytes = 0;
  private tcpPackets = 0;
  private firstTs = -1;
  private lastTs = -1;
  private lastSweep = 0;
  private finished = false;

  constructor(opts: EngineOptions = {}) {
    this.limits = { ...DEFAULT_LIMITS, ...opts.limits };
    this.counters = {
      anomalies: newAnomalyCounts(),
      nonHttp: { tls: 0, http2: 0, other: 0 },
      connectionsOpened: 0,
      connectionsClosed: 0,
      openConnections: 0,
    };
    const ports = opts.ports && opts.ports.length > 0 ? new Set(opts.ports) : null;
    this.tracker = new ConnectionTracker({ limits: this.limits, ports, keys: opts.tlsKeys ?? null }, this.counters);
    this.flows = new FlowTable(this.limits, this.tracker);
  }

  /**
   * A connection seen as two byte streams (the proxy tap) rather than packets. `ts` and the
   * times passed to the tap are wall-clock seconds.
   */
  openStream(client: Endpoint, server: Endpoint, ts: number, handshakeRtt: number): StreamTap {
    if (ts > this.lastTs) this.lastTs = ts;
    this.streams++;
    return new StreamTap(this.tracker, this.flows.ctx, client, server, ts, handshakeRtt);
  }

  subscribe(consumer: EngineConsumer): void {
    this.tracker.subscribe(consumer);
  }

  /** Per-server knowledge (advertised settings, inferred max, RTT median). */
  get servers() {
    return this.tracker.serverStates;
  }

  packet(linkType: number, data: Buffer, offset: number, capLen: number, origLen: number, ts: number): void {
    this.packets++;
    this.bytes += origLen;
    if (this.firstTs < 0) {
      this.firstTs = ts;
      this.lastSweep = ts;
    }
    // Capture time never goes backwards for our timers, even if the file's timestamps do.
    if (ts > this.lastTs) this.lastTs = ts;
    const v = this.view;
    const r = decodePacket(linkType, data, offset, capLen, v);
    if (r !== DECODED_TCP) {
      this.counters.anomalies[r - 1]++;
      return;
    }
    if (capLen < origLen && v.payloadCaptured < v.payloadLength) this.counters.anomalies[A.packet_snaplen_cut]++;
    this.tcpPackets++;
    this.flows.segment(v, data, this.lastTs);
    if (this.lastTs - this.lastSweep >= SWEEP_INTERVAL_SECONDS) {
      this.lastSweep = this.lastTs;
      this.tracker.expireInferences(this.lastTs, false);
    }
  }

  /** The capture reader found a skipped pcapng block or a truncated/corrupt file (PacketSink). */
  captureAnomaly(kind: CaptureAnomaly): void {
    this.counters.anomalies[A[kind]]++;
  }

  /** Advance capture time without packets (a live source that went quiet). */
  tick(ts: number): void {
    if (ts <= this.lastTs) return;
    this.lastTs = ts;
    this.flows.sweep(ts);
    this.tracker.expireInferences(ts, false);
  }

  /** End of input: report every connection still tracked. Idempotent. */
  finish(): void {
    if (this.finished) return;
    this.finished = true;
    const ts = this.lastTs < 0 ? 0 : this.lastTs;
    this.flows.finishAll(ts);
    this.tracker.expireInferences(ts, true);
  }

  stats(): EngineStats {
    const fc = this.flows.counters;
    const c = this.counters;
    const anomalies: Record<string, number> = {};
    ANOMALIES.forEach((name, i) => {
      if (c.anomalies[i] > 0) anomalies[name] = c.anomalies[i];
    });
    if (fc.gaps) anomalies.tcp_gap = fc.gaps;
    if (fc.retransmissions) anomalies.tcp_retransmission = fc.retransmissions;
    if (fc.overflows) anomalies.reassembly_overflow = fc.overflows;
    if (fc.flowsEvicted) anomalies.flow_evicted = fc.flowsEvicted;
    if (fc.synOnOpenFlow) anomalies.syn_on_open_flow = fc.synOnOpenFlow;
    if (fc.chainFull) anomalies.flow_chain_full = fc.chainFull;
    if (fc.budgetRefused) anomalies.buffer_budget_exceeded = fc.budgetRefused;
    return {
      packets: this.packets,
      bytes: this.bytes,
      tcpPackets: this.tcpPackets,
      streams: this.streams,
      flowsTracked: this.flows.size,
      bufferedBytes: this.flows.ctx.heldBytes,
      flowsCreated: fc.flowsCreated,
      flowsEvicted: fc.flowsEvicted,
      gaps: fc.gaps,
      gapBytes: fc.gapBytes,
      retransmissions: fc.retransmissions,
      connectionsOpened: c.connectionsOpened,
      connectionsClosed: c.connectionsClosed,
      openConnections: c.openConnections,
      nonHttp: { ...c.nonHttp },
      anomalies,
      firstPacketTime: this.firstTs < 0 ? null : this.firstTs,
      lastPacketTime: this.lastTs < 0 ? null : this.lastTs,
    };
  }
}
