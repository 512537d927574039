/**
 * Feeding the engine from byte streams instead of packets: the proxy tap sees each client
 * connection as two ordered byte streams (nothing lost, nothing reordered) and says when each
 * side sends FIN or RST. A `StreamTap` dresses that up as a TCP flow seen from its handshake, so
 * the same HTTP parsers and connection tracker produce the same facts as from capture.
 */
import { isIPv4, isIPv6 } from 'node:net';
import { TcpFlow } from '../tcp/flows.js';
import { BYTES_SATURATION, type ReassemblyContext, type StreamSink } from '../tcp/stream.js';
import type { ConnectionTracker } from './tracker.js';

export interface Endpoint {
  address: string;
  port: number;
}

/** Client to server is direction 0, server to client direction 1. */
export const CLIENT_TO_SERVER = 0;
export const SERVER_TO_CLIENT = 1;

export class StreamTap {
  private readonly flow: TcpFlow;
  private readonly sink: StreamSink | null;
  private readonly closedSide = [false, false];
  private ended = false;

  constructor(
    private readonly tracker: ConnectionTracker,
    ctx: ReassemblyContext,
    client: Endpoint,
    server: Endpoint,
    ts: number,
    /** The handshake round trip as the tap sees it (for the proxy: the upstream connect time). */
    handshakeRtt: number,
  ) {
    const f = new TcpFlow({ ctx, events: tracker, spareDirections: [] });
    const s = addressWords(server.address);
    let c = addressWords(client.address);
    // A flow has one address family, and the server's is the one labels show. An IPv4 client of
    // an IPv6 upstream is written IPv4-mapped; an IPv6 client of an IPv4 upstream (a dual-stack
    // listener) cannot be written in IPv4, so it shows as 0.0.0.0 (its port is kept).
    if (c.version !== s.version) {
      c = s.version === 6 ? { version: 6, words: [0, 0, 0xffff, c.words[0]] } : { version: 4, words: [0, 0, 0, 0] };
    }
    f.version = s.version;
    // int32, as the flow table stores them (see TcpFlow)
    [f.a0, f.a1, f.a2, f.a3] = c.words.map((w) => w | 0);
    [f.b0, f.b1, f.b2, f.b3] = s.words.map((w) => w | 0);
    f.aPort = client.port;
    f.bPort = server.port;
    f.clientDir = CLIENT_TO_SERVER;
    // Both streams are seen from their first byte, as after a captured handshake.
    f.dir(0).isn = 0;
    f.dir(1).isn = 0;
    f.synTime = ts - handshakeRtt;
    f.synAckSeen = true;
    f.handshakeRtt = handshakeRtt;
    f.firstSeen = f.lastSeen = ts;
    this.flow = f;
    this.sink = tracker.flowOpened(f, ts) ? f.sink(ts) : null;
  }

  data(dir: number, buf: Buffer, ts: number): void {
    if (!this.sink || this.ended) return;
    this.flow.lastSeen = ts;
    this.sink.data(dir, buf, 0, buf.length, ts);
    const d = this.flow.dir(dir);
    d.bytes = Math.min(BYTES_SATURATION, d.bytes + buf.length);
  }

  /** Side `dir` sent FIN: its stream ended. */
  fin(dir: number, ts: number): void {
    if (!this.sink || this.ended || this.closedSide[dir]) return;
    this.closedSide[dir] = true;
    this.flow.dir(dir).finSeen = true;
    this.sink.end(dir, ts);
    this.tracker.closing(this.flow, dir, false, ts);
  }

  /** Side `dir` reset the connection. */
  rst(dir: number, ts: number): void {
    if (!this.sink || this.ended) return;
    this.closedSide[dir] = true;
    this.tracker.closing(this.flow, dir, true, ts);
  }

  /** Both sockets are gone: the connection's facts are final. Idempotent. */
  end(ts: number): void {
    if (!this.sink || this.ended) return;
    this.ended = true;
    this.tracker.flowFinished(this.flow, 'closed', ts);
  }
}

/** "1.2.3.4", "::1" or an IPv4-mapped "::ffff:1.2.3.4" as the 32-bit words a flow holds. */
export function addressWords(address: string): { version: number; words: [number, number, number, number] } {
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(address);
  const a = mapped ? mapped[1] : address;
  if (isIPv4(a)) {
    const [p0, p1, p2, p3] = a.split('.').map(Number);
    return { version: 4, words: [((p0 << 24) | (p1 << 16) | (p2 << 8) | p3) >>> 0, 0, 0, 0] };
  }
  if (isIPv6(a)) {
    const [head, tail] = a.split('::');
    const h = head ? head.split(':') : [];
    const t = tail !== undefined ? (tail ? tail.split(':') : []) : [];
    const groups = tail !== undefined ? [...h, ...Array(8 - h.length - t.length).fill('0'), ...t] : h;
    const n = groups.map((g) => parseInt(g || '0', 16));
    return { version: 6, words: [0, 1, 2, 3].map((i) => ((n[2 * i] << 16) | n[2 * i + 1]) >>> 0) as [number, number, number, number] };
  }
  return { version: 4, words: [0, 0, 0, 0] };
}
