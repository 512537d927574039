/**
 * Feeding the engine from byte streams instead of packets: the proxy tap sees each client
 * connection as two ordered byte streams (nothing lost, nothing reordered) and says when each
 * side sends FIN or RST. A `StreamTap` gives its `Connection` a `ConnectionFlow` of its own (no
 * TCP flow is faked), so the same protocol sessions produce the same facts as from capture.
 */
import { isIPv4, isIPv6 } from 'node:net';
import { formatEndpoint } from '../decode/packet.js';
import { BYTES_SATURATION, type ReassemblyContext } from '../tcp/stream.js';
import { Connection, type ConnectionFlow } from './connection.js';
import type { ConnectionTracker } from './tracker.js';

export interface Endpoint {
  address: string;
  port: number;
}

/** Client to server is direction 0, server to client direction 1. */
export const CLIENT_TO_SERVER = 0;
export const SERVER_TO_CLIENT = 1;

/** The flow of a proxied connection: roles known, both streams seen from their first byte. */
class TapFlow implements ConnectionFlow {
  readonly clientDir = CLIENT_TO_SERVER;
  readonly fromStart = true;
  readonly version: number;
  readonly synTime: number;
  readonly firstSeen: number;
  private readonly bytes = [0, 0];
  private readonly endpoints: [string, string];
  private readonly ports: [number, number];

  constructor(
    readonly budget: ReassemblyContext,
    client: Endpoint,
    server: Endpoint,
    ts: number,
    readonly handshakeRtt: number,
  ) {
    const s = addressWords(server.address);
    let c = addressWords(client.address);
    // A connection has one address family, and the server's is the one labels show. An IPv4
    // client of an IPv6 upstream is written IPv4-mapped; an IPv6 client of an IPv4 upstream (a
    // dual-stack listener) cannot be written in IPv4, so it shows as 0.0.0.0 (its port is kept).
    if (c.version !== s.version) {
      c = s.version === 6 ? { version: 6, words: [0, 0, 0xffff, c.words[0]] } : { version: 4, words: [0, 0, 0, 0] };
    }
    this.version = s.version;
    // int32, as the flow table stores addresses (formatEndpoint reads them so)
    const cw = c.words.map((w) => w | 0);
    const sw = s.words.map((w) => w | 0);
    this.endpoints = [
      formatEndpoint(this.version, cw[0], cw[1], cw[2], cw[3], client.port),
      formatEndpoint(this.version, sw[0], sw[1], sw[2], sw[3], server.port),
    ];
    this.ports = [client.port, server.port];
    this.synTime = ts - handshakeRtt;
    this.firstSeen = ts;
  }

  bytesIn(dir: number): number {
    return this.bytes[dir];
  }

  delivered(dir: number, n: number): void {
    this.bytes[dir] = Math.min(BYTES_SATURATION, this.bytes[dir] + n);
  }

  endpoint(side: number): string {
    return this.endpoints[side];
  }

  port(side: number): number {
    return this.ports[side];
  }

  assignRoles(): void {
    // The proxy knows the roles from the start.
  }

  ignore(): void {
    // Nothing to drop: the tap stops feeding a connection that is not analysed (see `conn`).
  }
}

export class StreamTap {
  private readonly flow: TapFlow;
  /** null: the connection is not analysed (outside --ports). */
  private readonly conn: Connection | null;
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
    this.flow = new TapFlow(ctx, client, server, ts, handshakeRtt);
    this.conn = tracker.acceptsServerPort(server.port) ? new Connection(tracker, this.flow) : null;
  }

  data(dir: number, buf: Buffer, ts: number): void {
    if (!this.conn || this.ended) return;
    this.conn.data(dir, buf, 0, buf.length, ts);
    this.flow.delivered(dir, buf.length);
  }

  /** Side `dir` sent FIN: its stream ended. */
  fin(dir: number, ts: number): void {
    if (!this.conn || this.ended || this.closedSide[dir]) return;
    this.closedSide[dir] = true;
    this.conn.end(dir, ts);
    this.conn.closing(dir, false, ts);
  }

  /** Side `dir` reset the connection. */
  rst(dir: number, ts: number): void {
    if (!this.conn || this.ended) return;
    this.closedSide[dir] = true;
    this.conn.closing(dir, true, ts);
  }

  /** Both sockets are gone: the connection's facts are final. Idempotent. */
  end(ts: number): void {
    if (!this.conn || this.ended) return;
    this.ended = true;
    this.conn.finished(ts);
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
