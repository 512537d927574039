/**
 * Whole TCP conversations for tests: a handshake, data both ways with consistent sequence and
 * acknowledgement numbers, FIN and RST, all in capture time.
 *
 *   const c = new Conversation({ client: '10.0.0.1:40000', server: '10.0.0.2:80', t0: 1000 });
 *   c.handshake(0.02)
 *     .clientSends(httpRequest('GET', '/'), 0.001)
 *     .serverSends(httpResponse(200, 'hello'), 0.01)
 *     .serverFin(2)          // 2 s after the previous packet
 *     .clientFin(0.001);
 *   c.feed(engine);                                        // straight into an Engine (a PacketSink)
 *   pcapFile(c.packets(), { linkType: c.linkType });       // or as a capture file
 *
 * Time: every method takes `dt`, the seconds after the previous packet of this conversation (or
 * after `t0` for the first one). Several conversations are interleaved in time order with
 * `merge(a, b, ...)`.
 *
 * Sequence numbers: each side's bytes follow its ISN (+1 for the SYN, +1 after its FIN). Every
 * packet acknowledges everything the other side sent so far, including bytes left out of the
 * capture with `lose` (the peer did receive them): that is what lets the engine skip such holes.
 * Without `handshake()` the conversation is seen mid-stream.
 *
 * Endpoints are "ip:port", IPv6 as "[addr]:port" (the engine's own notation).
 */
import type { PacketSink } from '../../src/capture/reader.js';
import { LINKTYPE, frame, tcpSegment } from './packets.js';

export type Side = 'client' | 'server';

export interface ConversationOptions {
  client: string;
  server: string;
  /** Capture time of the first packet's reference point (seconds since the epoch). Default 1_700_000_000. */
  t0?: number;
  clientIsn?: number;
  serverIsn?: number;
  /** Link type of the frames (default Ethernet). */
  linkType?: number;
}

export interface SendOptions {
  /**
   * Split the bytes into segments of these sizes (the rest, if any, goes in one last segment).
   * Default: segments of at most 1460 bytes.
   */
  segments?: number[];
  /** Seconds between consecutive segments of this send (default 0: same timestamp). */
  spacing?: number;
  /** Indexes of segments left out of the capture (the peer still receives and acknowledges them). */
  lose?: number[];
  /** Send the last segment with FIN (data and FIN together). */
  fin?: boolean;
}

/** One captured packet: compatible with `PcapRecord` of ./packets.ts. */
export interface ConvPacket {
  ts: number;
  data: Buffer;
}

interface Endpoint {
  ip: string;
  port: number;
}

/** "1.2.3.4:80" or "[2001:db8::1]:80" */
export function parseEndpoint(text: string): Endpoint {
  const m = /^\[([^\]]+)\]:(\d+)$/.exec(text) ?? /^([^:]+):(\d+)$/.exec(text);
  if (!m) throw new Error(`bad endpoint ${text} (want ip:port or [ipv6]:port)`);
  return { ip: m[1], port: Number(m[2]) };
}

const MSS = 1460;

export class Conversation {
  readonly client: Endpoint;
  readonly server: Endpoint;
  readonly linkType: number;
  /** Capture time of the last packet (or t0 before the first). */
  now: number;
  private readonly isn: Record<Side, number>;
  /** Next sequence number each side will use. */
  private readonly next: Record<Side, number>;
  private readonly out: ConvPacket[] = [];

  constructor(o: ConversationOptions) {
    this.client = parseEndpoint(o.client);
    this.server = parseEndpoint(o.server);
    this.now = o.t0 ?? 1_700_000_000;
    this.linkType = o.linkType ?? LINKTYPE.ETHERNET;
    this.isn = { client: (o.clientIsn ?? 1_000_000) >>> 0, server: (o.serverIsn ?? 5_000_000) >>> 0 };
    // Data follows the SYN's sequence number, handshake captured or not.
    this.next = { client: (this.isn.client + 1) >>> 0, server: (this.isn.server + 1) >>> 0 };
  }

  /**
   * SYN at +dt, SYN-ACK half an RTT later, the client's ACK of it a full `rtt` after the SYN:
   * the engine's handshake RTT is exactly `rtt`.
   */
  handshake(rtt = 0.001, dt = 0): this {
    this.emit('client', 'S', dt, this.isn.client, 0);
    this.emit('server', 'SA', rtt / 2, this.isn.server, this.next.client);
    this.emit('client', 'A', rtt / 2);
    return this;
  }

  /** Only a SYN (a connection attempt nobody answers, a SYN flood...). */
  syn(dt = 0): this {
    this.emit('client', 'S', dt, this.isn.client, 0);
    return this;
  }

  clientSends(data: string | Buffer, dt = 0, opts: SendOptions = {}): this {
    return this.send('client', data, dt, opts);
  }

  serverSends(data: string | Buffer, dt = 0, opts: SendOptions = {}): this {
    return this.send('server', data, dt, opts);
  }

  send(side: Side, data: string | Buffer, dt = 0, opts: SendOptions = {}): this {
    const bytes = typeof data === 'string' ? Buffer.from(data, 'latin1') : data;
    const sizes: number[] = [];
    let rest = bytes.length;
    for (const s of opts.segments ?? []) {
      if (rest <= 0) break;
      const n = Math.min(s, rest);
      sizes.push(n);
      rest -= n;
    }
    while (rest > 0) {
      const n = Math.min(MSS, rest);
      sizes.push(n);
      rest -= n;
    }
    if (sizes.length === 0) throw new Error('send: no bytes');
    let off = 0;
    sizes.forEach((n, i) => {
      const last = i === sizes.length - 1;
      const flags = last && opts.fin ? 'FPA' : 'PA';
      const payload = bytes.subarray(off, off + n);
      off += n;
      const wait = i === 0 ? dt : opts.spacing ?? 0;
      if (opts.lose?.includes(i)) {
        // Not captured: the sequence space and the clock move on all the same.
        this.now += wait;
        this.next[side] = (this.next[side] + n) >>> 0;
        if (last && opts.fin) this.next[side] = (this.next[side] + 1) >>> 0;
        return;
      }
      this.emit(side, flags, wait, undefined, undefined, payload);
    });
    return this;
  }

  /** A pure ACK from `side`. */
  ack(side: Side, dt = 0): this {
    this.emit(side, 'A', dt);
    return this;
  }

  clientFin(dt = 0): this {
    this.emit('client', 'FA', dt);
    return this;
  }

  serverFin(dt = 0): this {
    this.emit('server', 'FA', dt);
    return this;
  }

  /** RST (with ACK) from `side`. */
  rst(side: Side, dt = 0): this {
    this.emit(side, 'RA', dt);
    return this;
  }

  /** Both FINs and the last ACK: the usual orderly end, `side` closing first. */
  close(side: Side, dt = 0, rtt = 0.0005): this {
    const other: Side = side === 'client' ? 'server' : 'client';
    this.emit(side, 'FA', dt);
    this.emit(other, 'FA', rtt / 2);
    this.emit(side, 'A', rtt / 2);
    return this;
  }

  /** Moves the clock without a packet. */
  wait(dt: number): this {
    this.now += dt;
    return this;
  }

  /** Any packet, for cases the methods above do not cover (flags as letters: 'S', 'PA', 'FA'...). */
  raw(side: Side, flags: string, dt = 0, payload?: Buffer | string, seq?: number, ack?: number): this {
    this.emit(side, flags, dt, seq, ack, typeof payload === 'string' ? Buffer.from(payload, 'latin1') : payload);
    return this;
  }

  /** The next sequence number of a side (after everything it sent, FIN included). */
  seq(side: Side): number {
    return this.next[side];
  }

  /** The captured packets so far, in order (copies of the array, shared buffers). */
  packets(): ConvPacket[] {
    return [...this.out];
  }

  /** Feeds every packet to a sink (an Engine), with capture length = wire length. */
  feed(sink: PacketSink): this {
    feed(sink, this.out, this.linkType);
    return this;
  }

  private emit(side: Side, flags: string, dt: number, seq?: number, ack?: number, payload?: Buffer): void {
    this.now += dt;
    const other: Side = side === 'client' ? 'server' : 'client';
    const src = side === 'client' ? this.client : this.server;
    const dst = side === 'client' ? this.server : this.client;
    const f = flags.toUpperCase();
    const hasAck = f.includes('A');
    const ip = tcpSegment({
      src: src.ip,
      dst: dst.ip,
      sport: src.port,
      dport: dst.port,
      seq: seq ?? this.next[side],
      ack: ack ?? (hasAck ? this.next[other] : 0),
      flags: f,
      payload,
    });
    this.out.push({ ts: this.now, data: frame(this.linkType, ip) });
    if (seq === undefined) {
      let adv = payload?.length ?? 0;
      if (f.includes('F')) adv += 1;
      this.next[side] = (this.next[side] + adv) >>> 0;
    }
  }
}

/** Packets of several conversations in capture-time order (stable: ties keep argument order). */
export function merge(...convs: Array<Conversation | ConvPacket[]>): ConvPacket[] {
  const all = convs.flatMap((c, ci) => (Array.isArray(c) ? c : c.packets()).map((p, i) => ({ p, ci, i })));
  all.sort((a, b) => a.p.ts - b.p.ts || a.ci - b.ci || a.i - b.i);
  return all.map((x) => x.p);
}

/** Feeds packets to a sink (an Engine) as a capture reader would. */
export function feed(sink: PacketSink, packets: ConvPacket[], linkType: number = LINKTYPE.ETHERNET): void {
  for (const p of packets) sink.packet(linkType, p.data, 0, p.data.length, p.data.length, p.ts);
}

// ---------------------------------------------------------------------------------------------
// HTTP messages

/** An HTTP request; `Host` is added unless given. `version` is "1.1" (default) or "1.0". */
export function httpRequest(method: string, target: string, headers: Record<string, string> = {}, body = '', version = '1.1'): string {
  const h: Record<string, string> = { Host: 'example.test', ...headers };
  if (body.length > 0 && !Object.keys(h).some((k) => /^(content-length|transfer-encoding)$/i.test(k))) h['Content-Length'] = String(body.length);
  return `${method} ${target} HTTP/${version}\r\n${Object.entries(h).map(([k, v]) => `${k}: ${v}\r\n`).join('')}\r\n${body}`;
}

/**
 * An HTTP response. `Content-Length` is added for `body` unless a `Content-Length` or
 * `Transfer-Encoding` header is given, or `lengthless` (a close-delimited body).
 */
export function httpResponse(
  status: number,
  body = '',
  headers: Record<string, string> = {},
  opts: { version?: string; reason?: string; lengthless?: boolean } = {},
): string {
  const h: Record<string, string> = { ...headers };
  if (!opts.lengthless && !Object.keys(h).some((k) => /^(content-length|transfer-encoding)$/i.test(k))) h['Content-Length'] = String(Buffer.byteLength(body, 'latin1'));
  return `HTTP/${opts.version ?? '1.1'} ${status} ${opts.reason ?? 'Whatever'}\r\n${Object.entries(h).map(([k, v]) => `${k}: ${v}\r\n`).join('')}\r\n${body}`;
}

/** A chunked body from its chunks (with the last-chunk and an empty trailer). */
export function chunked(...chunks: string[]): string {
  return `${chunks.map((c) => `${Buffer.byteLength(c, 'latin1').toString(16)}\r\n${c}\r\n`).join('')}0\r\n\r\n`;
}
