import { describe, expect, it } from 'vitest';
import { FlowTable, FlowState, type FinishReason, type FlowEvents, type TcpFlow } from '../../src/tcp/flows.js';
import type { StreamSink } from '../../src/tcp/stream.js';
import { newPacketView, TCP_ACK, TCP_FIN, TCP_PSH, TCP_RST, TCP_SYN, type PacketView } from '../../src/decode/packet.js';
import { DEFAULT_LIMITS, type EngineLimits } from '../../src/config/limits.js';

// ---------------------------------------------------------------------------------------------
// A fake FlowEvents that logs every event with the flow's number (1 = first flow opened).
// ---------------------------------------------------------------------------------------------

class Events implements FlowEvents {
  readonly log: string[] = [];
  readonly flows: TcpFlow[] = [];
  /** Flow numbers for which flowOpened returns null (ignored flows). */
  readonly ignore = new Set<number>();

  id(f: TcpFlow): number {
    return this.flows.indexOf(f) + 1;
  }

  flowOpened(flow: TcpFlow, ts: number): boolean {
    this.flows.push(flow);
    const n = this.flows.length;
    this.log.push(`opened #${n} @${ts}`);
    return !this.ignore.has(n);
  }

  attach(flow: TcpFlow): StreamSink {
    const n = this.id(flow);
    const log = this.log;
    return {
      data: (dir, buf, off, len) => log.push(`#${n} data ${dir} ${buf.toString('latin1', off, off + len)}`),
      gap: (dir, len) => log.push(`#${n} gap ${dir} ${len}`),
      end: (dir) => log.push(`#${n} end ${dir}`),
    };
  }

  closing(flow: TcpFlow, dir: number, rst: boolean, ts: number): void {
    this.log.push(`#${this.id(flow)} closing ${dir} ${rst ? 'rst' : 'fin'} @${ts}`);
  }

  flowFinished(flow: TcpFlow, why: FinishReason, ts: number): void {
    this.log.push(`#${this.id(flow)} finished ${why} @${ts}`);
  }

  /** Only the lifecycle events (no stream bytes). */
  get lifecycle(): string[] {
    return this.log.filter((e) => e.startsWith('opened') || e.includes('closing') || e.includes('finished'));
  }
}

interface Endpoint {
  ip: number;
  port: number;
}

const CLIENT: Endpoint = { ip: 0x0a000001, port: 40000 };
const SERVER: Endpoint = { ip: 0x0a000002, port: 80 };
const C_ISN = 1000;
const S_ISN = 5000;

function packet(src: Endpoint, dst: Endpoint, flags: number, seq: number, ack: number, payload = '', wire?: number): { v: PacketView; buf: Buffer } {
  const v = newPacketView();
  v.ipVersion = 4;
  v.src0 = src.ip;
  v.dst0 = dst.ip;
  v.srcPort = src.port;
  v.dstPort = dst.port;
  v.seq = seq >>> 0;
  v.ack = ack >>> 0;
  v.flags = flags;
  // The payload sits after 54 bytes of headers, as in a real Ethernet frame.
  const buf = Buffer.concat([Buffer.alloc(54), Buffer.from(payload, 'latin1')]);
  v.payloadOffset = 54;
  v.payloadCaptured = payload.length;
  v.payloadLength = wire ?? payload.length;
  return { v, buf };
}

function setup(limits: Partial<EngineLimits> = {}) {
  const events = new Events();
  const table = new FlowTable({ ...DEFAULT_LIMITS, ...limits }, events);
  const send = (src: Endpoint, dst: Endpoint, flags: number, seq: number, ack: number, ts: number, payload = '', wire?: number) => {
    const { v, buf } = packet(src, dst, flags, seq, ack, payload, wire);
    table.segment(v, buf, ts);
  };
  /** Client and server of one connection, by client port. */
  const conn = (port = CLIENT.port) => {
    const c = { ip: CLIENT.ip, port };
    return {
      c: (flags: number, seq: number, ack: number, ts: number, payload = '') => send(c, SERVER, flags, seq, ack, ts, payload),
      s: (flags: number, seq: number, ack: number, ts: number, payload = '') => send(SERVER, c, flags, seq, ack, ts, payload),
      /** SYN, SYN-ACK, ACK at t, t + 0.01, t + 0.02. */
      handshake: (t: number, cIsn = C_ISN, sIsn = S_ISN) => {
        send(c, SERVER, TCP_SYN, cIsn, 0, t);
        send(SERVER, c, TCP_SYN | TCP_ACK, sIsn, cIsn + 1, t + 0.01);
        send(c, SERVER, TCP_ACK, cIsn + 1, sIsn + 1, t + 0.02);
      },
    };
  };
  return { events, table, send, conn };
}

const PA = TCP_PSH | TCP_ACK;
const FA = TCP_FIN | TCP_ACK;

// ---------------------------------------------------------------------------------------------

describe('FlowTable: handshake and roles', () => {
  it('measures the handshake RTT from the client SYN to the client ACK of the SYN-ACK', () => {
    const { events, conn } = setup();
    const k = conn();
    k.c(TCP_SYN, C_ISN, 0, 10.0);
    k.s(TCP_SYN | TCP_ACK, S_ISN, C_ISN + 1, 10.03);
    k.c(TCP_ACK, C_ISN + 1, S_ISN + 1, 10.05);
    const f = events.flows[0];
    expect(f.handshakeRtt).toBeCloseTo(0.05, 9);
    expect(f.synTime).toBe(10.0);
  });

  it('does not take an ACK of something other than the SYN-ACK as the end of the handshake', () => {
    const { events, conn } = setup();
    const k = conn();
    k.c(TCP_SYN, C_ISN, 0, 1);
    k.s(TCP_SYN | TCP_ACK, S_ISN, C_ISN + 1, 1.1);
    k.c(TCP_ACK, C_ISN + 1, S_ISN, 1.2); // does not acknowledge the SYN-ACK
    expect(events.flows[0].handshakeRtt).toBe(-1);
    k.c(TCP_ACK, C_ISN + 1, S_ISN + 1, 1.3);
    expect(events.flows[0].handshakeRtt).toBeCloseTo(0.3, 9);
  });

  it('counts the ACK of the SYN-ACK that carries the first request', () => {
    const { events, conn } = setup();
    const k = conn();
    k.c(TCP_SYN, C_ISN, 0, 1);
    k.s(TCP_SYN | TCP_ACK, S_ISN, C_ISN + 1, 1.1);
    k.c(PA, C_ISN + 1, S_ISN + 1, 1.2, 'GET / HTTP/1.1\r\n\r\n');
    expect(events.flows[0].handshakeRtt).toBeCloseTo(0.2, 9);
    expect(events.log).toContain('#1 data 0 GET / HTTP/1.1\r\n\r\n');
  });

  it('takes the sender of the SYN as the client and knows both streams from their start', () => {
    const { events, conn } = setup();
    const k = conn();
    k.handshake(1);
    const f = events.flows[0];
    expect(f.clientDir).toBe(0);
    expect(f.fromStart).toBe(true);
    expect(f.aPort).toBe(CLIENT.port);
    expect(f.bPort).toBe(SERVER.port);
  });

  it('tells flowOpened the roles of a flow that starts with a SYN', () => {
    const events = new Events();
    let seen = -2;
    const table = new FlowTable(DEFAULT_LIMITS, {
      ...events,
      flowOpened: (f, ts) => { seen = f.clientDir; return events.flowOpened(f, ts); },
      attach: (f) => events.attach(f),
      closing: () => {},
      flowFinished: () => {},
    });
    const { v, buf } = packet(CLIENT, SERVER, TCP_SYN, C_ISN, 0);
    table.segment(v, buf, 1);
    expect(seen).toBe(0);
  });

  it('makes the sender of a SYN-ACK the server when the SYN was not captured', () => {
    const { events, conn } = setup();
    const k = conn();
    k.s(TCP_SYN | TCP_ACK, S_ISN, C_ISN + 1, 1);
    k.c(PA, C_ISN + 1, S_ISN + 1, 1.1, 'GET / HTTP/1.1\r\n\r\n');
    k.s(PA, S_ISN + 1, C_ISN + 19, 1.2, 'HTTP/1.1 204 No Content\r\n\r\n');
    const f = events.flows[0];
    expect(f.aPort).toBe(SERVER.port); // the first packet's source is endpoint A
    expect(f.clientDir).toBe(1);
    expect(f.fromStart).toBe(true);
    expect(f.handshakeRtt).toBe(-1);
    expect(events.log).toContain('#1 data 1 GET / HTTP/1.1\r\n\r\n');
    expect(events.log).toContain('#1 data 0 HTTP/1.1 204 No Content\r\n\r\n');
  });

  it('starts the client stream of a SYN-ACK-only flow at what the server acknowledges', () => {
    const { events, conn } = setup();
    const k = conn();
    k.s(TCP_SYN | TCP_ACK, S_ISN, C_ISN + 1, 1);
    k.c(PA, C_ISN + 6, S_ISN + 1, 1.2, 'world'); // arrives before the segment it follows
    k.c(PA, C_ISN + 1, S_ISN + 1, 1.3, 'hello');
    expect(events.log.filter((e) => e.includes('data'))).toEqual(['#1 data 1 hello', '#1 data 1 world']);
  });

  it('leaves the roles of a flow joined mid-stream unknown', () => {
    const { events, conn } = setup();
    const k = conn();
    k.c(PA, 77_000, 99_000, 1, 'GET /x HTTP/1.1\r\n\r\n');
    const f = events.flows[0];
    expect(f.clientDir).toBe(-1);
    expect(f.fromStart).toBe(false);
    expect(f.handshakeRtt).toBe(-1);
    expect(events.log).toContain('#1 data 0 GET /x HTTP/1.1\r\n\r\n');
  });

  it('delivers the data a SYN carries (TCP Fast Open) before later data', () => {
    const { events, conn } = setup();
    const k = conn();
    k.c(TCP_SYN, C_ISN, 0, 1, 'GET / HTTP/1.1\r\n');
    k.s(TCP_SYN | TCP_ACK, S_ISN, C_ISN + 17, 1.1);
    k.c(PA, C_ISN + 17, S_ISN + 1, 1.2, 'Host: a\r\n\r\n');
    expect(events.log.filter((e) => e.includes('data'))).toEqual(['#1 data 0 GET / HTTP/1.1\r\n', '#1 data 0 Host: a\r\n\r\n']);
  });

  it('does not deliver a retransmitted TFO SYN twice', () => {
    const { events, conn } = setup();
    const k = conn();
    k.c(TCP_SYN, C_ISN, 0, 1, 'GET / HTTP/1.1\r\n\r\n');
    k.c(TCP_SYN, C_ISN, 0, 2, 'GET / HTTP/1.1\r\n\r\n');
    expect(events.log.filter((e) => e.includes('data'))).toHaveLength(1);
    expect(events.lifecycle).toEqual(['opened #1 @1']);
  });

  it('sends the bytes of each side to its own direction', () => {
    const { events, conn } = setup();
    const k = conn();
    k.handshake(1);
    k.c(PA, C_ISN + 1, S_ISN + 1, 2, 'req');
    k.s(PA, S_ISN + 1, C_ISN + 4, 3, 'res');
    expect(events.log.filter((e) => e.includes('data'))).toEqual(['#1 data 0 req', '#1 data 1 res']);
  });

  it('skips a hole the peer acknowledged, as a gap', () => {
    const { events, conn } = setup();
    const k = conn();
    k.handshake(1);
    k.c(PA, C_ISN + 11, S_ISN + 1, 2, 'after'); // bytes 1..10 were not captured
    k.s(TCP_ACK, S_ISN + 1, C_ISN + 16, 2.1);
    expect(events.log.filter((e) => e.includes('data') || e.includes('gap'))).toEqual(['#1 gap 0 10', '#1 data 0 after']);
  });

  it('does not start a flow with a stray RST', () => {
    const { events, table, conn } = setup();
    conn().c(TCP_RST, 123, 0, 1);
    expect(events.log).toEqual([]);
    expect(table.size).toBe(0);
  });

  it('keeps IPv6 flows apart by every address word', () => {
    const { table } = setup();
    for (const w3 of [1, 2]) {
      const { v, buf } = packet(CLIENT, SERVER, TCP_SYN, C_ISN, 0);
      v.ipVersion = 6;
      v.src0 = 0x20010db8;
      v.src3 = w3;
      v.dst0 = 0x20010db8;
      v.dst3 = 9;
      table.segment(v, buf, 1);
    }
    expect(table.size).toBe(2);
  });
});

describe('FlowTable: closing', () => {
  it('reports a FIN from each side as closing, then finishes the flow as closed', () => {
    const { events, conn } = setup();
    const k = conn();
    k.handshake(1);
    k.s(FA, S_ISN + 1, C_ISN + 1, 5);
    expect(events.lifecycle).toEqual(['opened #1 @1', '#1 closing 1 fin @5']);
    k.c(FA, C_ISN + 1, S_ISN + 2, 5.1);
    expect(events.lifecycle).toEqual(['opened #1 @1', '#1 closing 1 fin @5', '#1 closing 0 fin @5.1', '#1 finished closed @5.1']);
    expect(events.flows[0].state).toBe(FlowState.Finished);
  });

  it('delivers the end of each stream at its FIN', () => {
    const { events, conn } = setup();
    const k = conn();
    k.handshake(1);
    k.s(FA | TCP_PSH, S_ISN + 1, C_ISN + 1, 5, 'bye');
    expect(events.log.slice(-3)).toEqual(['#1 data 1 bye', '#1 end 1', '#1 closing 1 fin @5']);
  });

  it('ignores the last ACK after both FINs: no new flow', () => {
    const { events, table, conn } = setup();
    const k = conn();
    k.handshake(1);
    k.c(FA, C_ISN + 1, S_ISN + 1, 5);
    k.s(FA, S_ISN + 1, C_ISN + 2, 5.1);
    k.c(TCP_ACK, C_ISN + 2, S_ISN + 2, 5.2);
    k.s(FA, S_ISN + 1, C_ISN + 2, 5.5); // retransmitted FIN
    expect(events.lifecycle.filter((e) => e.startsWith('opened'))).toHaveLength(1);
    expect(table.openFlows).toBe(0);
  });

  it('finishes the flow at once on RST', () => {
    const { events, conn } = setup();
    const k = conn();
    k.handshake(1);
    k.s(TCP_RST | TCP_ACK, S_ISN + 1, C_ISN + 1, 3);
    expect(events.lifecycle).toEqual(['opened #1 @1', '#1 closing 1 rst @3', '#1 finished closed @3']);
  });

  it('reports only the first FIN or RST of a side as closing', () => {
    const { events, conn } = setup();
    const k = conn();
    k.handshake(1);
    k.c(FA, C_ISN + 1, S_ISN + 1, 3);
    k.c(TCP_RST, C_ISN + 2, 0, 4);
    expect(events.lifecycle).toEqual(['opened #1 @1', '#1 closing 0 fin @3', '#1 finished closed @4']);
  });

  it('flushes held data before reporting the close', () => {
    const { events, conn } = setup();
    const k = conn();
    k.handshake(1);
    k.s(PA, S_ISN + 4, C_ISN + 1, 2, 'def'); // bytes 1..3 never captured
    k.s(TCP_RST, S_ISN + 7, 0, 3);
    expect(events.log.slice(-4)).toEqual(['#1 gap 1 3', '#1 data 1 def', '#1 closing 1 rst @3', '#1 finished closed @3']);
  });

  describe('a FIN is reported in sequence order, not capture order', () => {
    // On `-i any` the packets of one side come from different CPUs and interleave: a FIN is
    // often captured just before the last data segment it follows.
    it('waits for the data segment captured after it, delivers it, then reports the FIN at its own time', () => {
      const { events, conn } = setup();
      const k = conn();
      k.handshake(1);
      k.s(FA, S_ISN + 1 + 3, C_ISN + 1, 5); // FIN after 3 bytes not captured yet
      expect(events.lifecycle).toEqual(['opened #1 @1']);
      k.s(PA, S_ISN + 1, C_ISN + 1, 5.00002, 'bye');
      expect(events.log.slice(-3)).toEqual(['#1 data 1 bye', '#1 end 1', '#1 closing 1 fin @5']);
    });

    it('skips the bytes as a gap once the peer acknowledges the FIN (the capture lost them)', () => {
      const { events, conn } = setup();
      const k = conn();
      k.handshake(1);
      k.s(FA, S_ISN + 1 + 3, C_ISN + 1, 5);
      k.c(TCP_ACK, C_ISN + 1, S_ISN + 1 + 3 + 1, 5.001);
      expect(events.log.slice(-3)).toEqual(['#1 gap 1 3', '#1 end 1', '#1 closing 1 fin @5']);
    });

    it('reports a waiting FIN before a later RST', () => {
      const { events, conn } = setup();
      const k = conn();
      k.handshake(1);
      k.s(FA, S_ISN + 1 + 3, C_ISN + 1, 5);
      k.c(TCP_RST, C_ISN + 1, 0, 5.5);
      expect(events.lifecycle.slice(-3)).toEqual(['#1 closing 1 fin @5', '#1 closing 0 rst @5.5', '#1 finished closed @5.5']);
    });

    it('reports a waiting FIN before the other side\'s later FIN, then finishes', () => {
      const { events, conn } = setup();
      const k = conn();
      k.handshake(1);
      k.s(FA, S_ISN + 1 + 3, C_ISN + 1, 5);
      k.c(FA, C_ISN + 1, S_ISN + 1, 5.5); // acknowledges nothing of the server's FIN
      expect(events.lifecycle.slice(-3)).toEqual(['#1 closing 1 fin @5', '#1 closing 0 fin @5.5', '#1 finished closed @5.5']);
    });

    it('reports a waiting FIN when the flow ends for another reason (end of the capture)', () => {
      const { events, table, conn } = setup();
      const k = conn();
      k.handshake(1);
      k.s(FA, S_ISN + 1 + 3, C_ISN + 1, 5);
      table.finishAll(6);
      expect(events.log.slice(-4)).toEqual(['#1 gap 1 3', '#1 end 1', '#1 closing 1 fin @5', '#1 finished end @6']);
    });
  });

  it('starts a new flow when a SYN reuses the 4-tuple of a finished connection', () => {
    const { events, table, conn } = setup();
    const k = conn();
    k.handshake(1);
    k.c(FA, C_ISN + 1, S_ISN + 1, 2);
    k.s(FA, S_ISN + 1, C_ISN + 2, 2.1);
    k.handshake(2.5, 900_000, 700_000);
    expect(events.lifecycle).toEqual([
      'opened #1 @1', '#1 closing 0 fin @2', '#1 closing 1 fin @2.1', '#1 finished closed @2.1', 'opened #2 @2.5',
    ]);
    expect(events.flows[1].handshakeRtt).toBeCloseTo(0.02, 9);
    expect(table.openFlows).toBe(1);
  });

  it('replaces an open flow when a SYN with a new ISN arrives on its 4-tuple, and counts it', () => {
    const { events, table, conn } = setup();
    const k = conn();
    k.handshake(1);
    k.c(PA, C_ISN + 1, S_ISN + 1, 2, 'GET / HTTP/1.1\r\n\r\n');
    k.handshake(50, 123_456, 654_321);
    expect(events.lifecycle).toEqual(['opened #1 @1', '#1 finished replaced @50', 'opened #2 @50']);
    expect(table.counters.synOnOpenFlow).toBe(1);
    expect(events.flows[1].clientDir).toBe(0);
    expect(events.flows[1].handshakeRtt).toBeCloseTo(0.02, 9);
  });

  it('replaces a flow joined mid-stream that carried data when a SYN arrives on its 4-tuple', () => {
    const { events, table, conn } = setup();
    const k = conn();
    k.c(PA, 77_000, 99_000, 1, 'GET /old HTTP/1.1\r\n\r\n');
    k.handshake(50);
    expect(events.lifecycle).toEqual(['opened #1 @1', '#1 finished replaced @50', 'opened #2 @50']);
    expect(table.counters.synOnOpenFlow).toBe(1);
    expect(events.flows[1].fromStart).toBe(true);
  });

  it('lets a SYN start a flow first seen as bare ACKs (no data yet)', () => {
    const { events, conn } = setup();
    const k = conn();
    k.c(TCP_ACK, 77_000, 99_000, 1);
    k.handshake(1.5);
    expect(events.lifecycle).toEqual(['opened #1 @1']);
    expect(events.flows[0].clientDir).toBe(0);
    expect(events.flows[0].fromStart).toBe(true);
  });

  it('does not replace a flow on a retransmitted SYN (same ISN)', () => {
    const { events, table, conn } = setup();
    const k = conn();
    k.c(TCP_SYN, C_ISN, 0, 1);
    k.c(TCP_SYN, C_ISN, 0, 2);
    k.s(TCP_SYN | TCP_ACK, S_ISN, C_ISN + 1, 2.01);
    k.c(TCP_ACK, C_ISN + 1, S_ISN + 1, 2.02);
    expect(events.lifecycle).toEqual(['opened #1 @1']);
    expect(table.counters.synOnOpenFlow).toBe(0);
  });

  it('reports every open flow as ended at finishAll', () => {
    const { events, conn, table } = setup();
    conn(1).handshake(1);
    conn(2).handshake(1);
    table.finishAll(9);
    expect(events.lifecycle.filter((e) => e.includes('finished'))).toEqual(['#1 finished end @9', '#2 finished end @9']);
    expect(table.openFlows).toBe(0);
  });

  it('tracks an ignored flow without reporting anything about it', () => {
    const { events, conn, table } = setup();
    events.ignore.add(1);
    const k = conn();
    k.handshake(1);
    k.c(PA, C_ISN + 1, S_ISN + 1, 2, 'data');
    k.c(FA, C_ISN + 5, S_ISN + 1, 3);
    k.s(FA, S_ISN + 1, C_ISN + 6, 3.1);
    table.finishAll(10);
    expect(events.log).toEqual(['opened #1 @1']);
  });
});

describe('FlowTable: bounded size', () => {
  it('evicts the least recently active flow when full, and counts it', () => {
    const { events, table, conn } = setup({ maxFlows: 3 });
    conn(1).handshake(1);
    conn(2).handshake(2);
    conn(3).handshake(3);
    conn(1).c(PA, C_ISN + 1, S_ISN + 1, 4, 'x'); // flow 1 is now the most recent
    conn(4).handshake(5);
    expect(events.lifecycle.filter((e) => e.includes('finished'))).toEqual(['#2 finished evicted @5']);
    expect(table.counters.flowsEvicted).toBe(1);
    expect(table.size).toBe(3);
  });

  it('never holds more flows than the cap', () => {
    const { table, conn } = setup({ maxFlows: 5 });
    for (let i = 0; i < 50; i++) {
      conn(1000 + i).handshake(1 + i * 0.001);
      expect(table.size).toBeLessThanOrEqual(5);
    }
    expect(table.counters.flowsEvicted).toBe(45);
    expect(table.counters.flowsCreated).toBe(50);
  });

  it('drops finished flows (tombstones) before evicting an open one', () => {
    const { events, table, conn } = setup({ maxFlows: 2 });
    const a = conn(1);
    a.handshake(1);
    a.c(TCP_RST, C_ISN + 1, 0, 1.5);
    conn(2).handshake(2);
    conn(3).handshake(3);
    expect(events.lifecycle.filter((e) => e.includes('evicted'))).toEqual([]);
    expect(table.counters.flowsEvicted).toBe(0);
    expect(table.size).toBe(2);
  });
});

describe('FlowTable: expiry by capture time', () => {
  const limits = { halfClosedTimeoutSeconds: 30, flowIdleTimeoutSeconds: 600, closedLingerSeconds: 4 };

  it('finishes a half-closed flow after halfClosedTimeoutSeconds of silence', () => {
    const { events, table, conn } = setup(limits);
    const k = conn();
    k.handshake(1);
    k.s(FA, S_ISN + 1, C_ISN + 1, 10);
    table.sweep(39.9);
    expect(events.lifecycle.filter((e) => e.includes('finished'))).toEqual([]);
    table.sweep(40);
    expect(events.lifecycle.filter((e) => e.includes('finished'))).toEqual(['#1 finished half_closed @40']);
  });

  it('finishes an idle flow after flowIdleTimeoutSeconds of silence', () => {
    const { events, table, conn } = setup(limits);
    conn().handshake(1);
    table.sweep(500);
    expect(events.lifecycle.filter((e) => e.includes('finished'))).toEqual([]);
    table.sweep(601.02);
    expect(events.lifecycle.filter((e) => e.includes('finished'))).toEqual(['#1 finished idle @601.02']);
  });

  it('expires flows as capture time advances with other traffic, without explicit sweeps', () => {
    const { events, conn } = setup(limits);
    const k = conn(1);
    k.handshake(1);
    k.c(FA, C_ISN + 1, S_ISN + 1, 2);
    const other = conn(2);
    other.handshake(10);
    other.c(PA, C_ISN + 1, S_ISN + 1, 33, 'ping');
    expect(events.lifecycle.filter((e) => e.includes('finished'))).toEqual(['#1 finished half_closed @33']);
  });

  it('expires a half-closed flow on time even behind an older idle open flow', () => {
    const { events, table, conn } = setup(limits);
    conn(1).handshake(1); // stays open and idle
    const k = conn(2);
    k.handshake(5);
    k.s(FA, S_ISN + 1, C_ISN + 1, 6);
    table.sweep(36);
    expect(events.lifecycle.filter((e) => e.includes('finished'))).toEqual(['#2 finished half_closed @36']);
  });

  it('keeps a flow alive while it sends packets', () => {
    const { events, table, conn } = setup(limits);
    const k = conn();
    k.handshake(1);
    for (let t = 100; t <= 1300; t += 100) {
      k.c(PA, C_ISN + 1, S_ISN + 1, t, '');
      table.sweep(t + 1);
    }
    expect(events.lifecycle.filter((e) => e.includes('finished'))).toEqual([]);
  });

  it('forgets a finished flow after closedLingerSeconds, so a late packet then starts a new flow', () => {
    const { events, table, conn } = setup(limits);
    const k = conn();
    k.handshake(1);
    k.c(TCP_RST, C_ISN + 1, 0, 2);
    k.c(TCP_ACK, C_ISN + 1, S_ISN + 1, 3); // within the linger: absorbed
    expect(table.size).toBe(1);
    table.sweep(6);
    expect(table.size).toBe(0);
    k.c(PA, C_ISN + 1, S_ISN + 1, 7, 'late');
    expect(events.lifecycle.filter((e) => e.startsWith('opened'))).toEqual(['opened #1 @1', 'opened #2 @7']);
    expect(events.flows[1].clientDir).toBe(-1);
  });
});
