/**
 * Bad input never crashes the reader or the engine, never makes them grow without bound, and is
 * always reported: captures cut at every offset, random bytes where records or packets should be,
 * mutated real traffic, and hostile floods (a head that never ends, pipelining without responses,
 * a SYN flood, out-of-order segments that never fill their hole).
 *
 * After every run the engine's own bookkeeping must still add up: each connection reported as
 * opened is reported closed exactly once, and every packet that did not decode as TCP is counted
 * as exactly one decode anomaly.
 */
import { describe, expect, it } from 'vitest';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { gzipSync } from 'node:zlib';
import { Engine, type EngineOptions } from '../../src/conn/engine.js';
import { CaptureDecoder, type PacketSink } from '../../src/capture/reader.js';
import { readCaptureStream, type CaptureSummary } from '../../src/capture/file.js';
import { LINKTYPE, frame, pcapFile, pcapngFile, tcpSegment, collect } from '../helpers/packets.js';
import { Conversation, httpRequest, httpResponse } from '../helpers/conversation.js';
import { prng } from '../helpers/prng.js';
import { CORPUS_PRESENT, corpusFiles } from '../helpers/corpus.js';

const ROOT = join(import.meta.dirname, '../..');
const FIXTURE = join(ROOT, 'test/fixtures/real/real-servers.pcap');
const CAPTURES = [FIXTURE, ...corpusFiles(false)];

/** Anomalies that `decodePacket` returns: a packet that is not a TCP segment counts exactly one of them. */
const DECODE_ANOMALIES = ['link_type_unsupported', 'link_truncated', 'ip_truncated', 'ip_malformed', 'ip_fragment', 'not_tcp', 'tcp_truncated', 'tcp_malformed'];


function randomBytes(rnd: () => number, n: number): Buffer {
  const b = Buffer.alloc(n);
  for (let i = 0; i < n; i++) b[i] = (rnd() * 256) | 0;
  return b;
}

/** An Engine whose consumer checks the event contract as it goes. */
class Checked {
  readonly engine: Engine;
  private readonly open = new Set<number>();
  opened = 0;
  closed = 0;
  readonly violations: string[] = [];
  constructor(opts: EngineOptions = {}) {
    this.engine = new Engine(opts);
    this.engine.subscribe({
      opened: (c) => {
        if (this.open.has(c.id)) this.violations.push(`opened twice: ${c.id}`);
        this.open.add(c.id);
        this.opened++;
      },
      request: (c) => {
        if (!this.open.has(c.id)) this.violations.push(`request outside the connection's life: ${c.id}`);
      },
      response: (c) => {
        if (!this.open.has(c.id)) this.violations.push(`response outside the connection's life: ${c.id}`);
      },
      closed: (c) => {
        if (!this.open.delete(c.id)) this.violations.push(`closed without being open: ${c.id}`);
        this.closed++;
      },
    });
  }

  /** Ends the input and checks the books. */
  finish(): void {
    this.engine.finish();
    expect(this.violations).toEqual([]);
    expect(this.open.size).toBe(0);
    expect(this.closed).toBe(this.opened);
    const s = this.engine.stats();
    expect(s.openConnections).toBe(0);
    expect(s.connectionsOpened).toBe(this.opened);
    const decodeFailures = DECODE_ANOMALIES.reduce((a, k) => a + (s.anomalies[k] ?? 0), 0);
    expect(s.tcpPackets + decodeFailures).toBe(s.packets);
  }
}

/** Where every record (pcap) or block (pcapng) of an intact capture starts, and where the file ends; and which are packets. */
function layout(buf: Buffer): { header: number; starts: number[]; isPacket: boolean[] } {
  const starts: number[] = [];
  const isPacket: boolean[] = [];
  const m = buf.readUInt32LE(0);
  if (m === 0x0a0d0d0a) {
    let p = 0;
    let le = true;
    while (p + 12 <= buf.length) {
      const type = buf.readUInt32LE(p) === 0x0a0d0d0a ? 0x0a0d0d0a : le ? buf.readUInt32LE(p) : buf.readUInt32BE(p);
      if (type === 0x0a0d0d0a) le = buf.readUInt32LE(p + 8) === 0x1a2b3c4d;
      starts.push(p);
      isPacket.push(type === 6 || type === 3 || type === 2);
      p += le ? buf.readUInt32LE(p + 4) : buf.readUInt32BE(p + 4);
    }
    starts.push(p);
    return { header: 0, starts, isPacket };
  }
  const le = m === 0xa1b2c3d4 || m === 0xa1b23c4d;
  let p = 24;
  while (p + 16 <= buf.length) {
    starts.push(p);
    isPacket.push(true);
    p += 16 + (le ? buf.readUInt32LE(p + 8) : buf.readUInt32BE(p + 8));
  }
  starts.push(p);
  return { header: 24, starts, isPacket };
}

/** What a capture cut at `cut` must give: the packets wholly before the cut, and the offset of the damage (null: none). */
function expectedAt(l: ReturnType<typeof layout>, cut: number): { packets: number; problemAt: number | null } {
  if (cut < l.header || (l.header === 0 && cut < l.starts[1])) {
    // Inside the file header (pcap) or the first SHB (pcapng).
    return { packets: 0, problemAt: 0 };
  }
  let i = 0;
  let packets = 0;
  while (i + 1 < l.starts.length && l.starts[i + 1] <= cut) {
    if (l.isPacket[i]) packets++;
    i++;
  }
  return { packets, problemAt: l.starts[i] === cut ? null : l.starts[i] };
}

/** The reader's own synchronous core, as readCapture drives it, chunk by chunk. */
function decodeSync(buf: Buffer, sink: PacketSink, chunk = 65536): { packets: number; problem: ReturnType<CaptureDecoder['end']> } {
  const d = new CaptureDecoder(sink);
  for (let p = 0; p < buf.length; p += chunk) if (!d.push(buf.subarray(p, p + chunk))) break;
  const problem = d.problem ?? d.end();
  return { packets: d.packets, problem };
}

async function readBuffer(buf: Buffer, checked: Checked, chunks = 1): Promise<CaptureSummary> {
  const parts: Buffer[] = [];
  const step = Math.max(1, Math.ceil(buf.length / chunks));
  for (let p = 0; p < buf.length; p += step) parts.push(buf.subarray(p, p + step));
  return readCaptureStream(Readable.from(parts), checked.engine);
}

describe('captures cut short', () => {
  it('finds the capture files', () => {
    expect(CAPTURES.length).toBeGreaterThanOrEqual(CORPUS_PRESENT ? 2 : 1);
  });

  it('the real-server capture cut at every offset of its first 2 KB: the packets before the cut, the cut reported at the right offset', () => {
    const full = readFileSync(FIXTURE);
    const l = layout(full);
    for (let cut = 0; cut <= 2048; cut++) {
      const checked = new Checked();
      const r = decodeSync(full.subarray(0, cut), checked.engine, 97);
      const want = expectedAt(l, cut);
      expect(r.packets, `cut at ${cut}`).toBe(want.packets);
      if (cut === 0) expect(r.problem?.kind).toBe('not_a_capture');
      else if (want.problemAt === null) expect(r.problem, `cut at ${cut}`).toBeNull();
      else expect(r.problem, `cut at ${cut}`).toMatchObject({ kind: 'truncated', offset: want.problemAt });
      checked.finish();
    }
  });

  for (const path of CAPTURES) {
    const name = path.split('/').pop()!;
    it(`${name}: cut at every offset of the first 2 KB, then at a stride, through readCapture's stream path`, async () => {
      const full = readFileSync(path);
      const l = layout(full);
      expect(l.starts.at(-1)).toBe(full.length); // the intact file is all records
      const cuts = new Set<number>();
      for (let c = 1; c <= Math.min(2048, full.length); c++) cuts.add(c);
      const stride = Math.max(1, Math.floor(full.length / 150));
      for (let c = 2048; c < full.length; c += stride) cuts.add(c);
      // Right at, just before and just after some record boundaries further in.
      for (let i = 0; i < l.starts.length; i += Math.max(1, Math.floor(l.starts.length / 20))) for (const d of [-1, 0, 1]) cuts.add(l.starts[i] + d);
      cuts.add(full.length);
      for (const cut of [...cuts].filter((c) => c > 0 && c <= full.length).sort((a, b) => a - b)) {
        const checked = new Checked();
        // Small captures are read in several chunks, so records straddle chunk boundaries too.
        const cap = cut <= 2048 ? decodeSync(full.subarray(0, cut), checked.engine, 61) : await readBuffer(full.subarray(0, cut), checked, 3);
        const want = expectedAt(l, cut);
        expect(cap.packets, `${name} cut at ${cut}`).toBe(want.packets);
        if (want.problemAt === null) expect(cap.problem, `${name} cut at ${cut}`).toBeNull();
        else expect(cap.problem, `${name} cut at ${cut}`).toMatchObject({ kind: 'truncated', offset: want.problemAt });
        checked.finish();
      }
    });
  }

  it('a gzip stream cut short is reported, after the packets it did give', async () => {
    const full = readFileSync(FIXTURE);
    const gz = gzipSync(full);
    for (const frac of [0.1, 0.37, 0.5, 0.81, 0.99]) {
      const checked = new Checked();
      const cap = await readBuffer(gz.subarray(0, Math.floor(gz.length * frac)), checked, 4);
      expect(cap.compressed).toBe(true);
      expect(cap.problem, `gzip cut at ${frac}`).not.toBeNull();
      expect(cap.problem!.kind).toBe('truncated');
      expect(cap.packets).toBeGreaterThan(0);
      checked.finish();
    }
  });
});

describe('random bytes', () => {
  it('after a valid pcap header (200 seeds, every link type): never throws, the damage is reported', () => {
    const linkTypes = [...Object.values(LINKTYPE), 147];
    for (let seed = 1; seed <= 200; seed++) {
      const rnd = prng(seed);
      const header = pcapFile([], { linkType: linkTypes[seed % linkTypes.length], bigEndian: seed % 2 === 0, nanos: seed % 3 === 0 });
      const body = randomBytes(rnd, 1 + ((rnd() * 4096) | 0));
      const checked = new Checked();
      const r = decodeSync(Buffer.concat([header, body]), checked.engine, 1 + ((rnd() * 700) | 0));
      // 16 random bytes of record header almost never describe records that end exactly at the end.
      if (r.problem) {
        expect(['truncated', 'corrupt']).toContain(r.problem.kind);
        expect(r.problem.offset).toBeGreaterThanOrEqual(24);
        expect(r.problem.offset).toBeLessThanOrEqual(24 + body.length);
        expect(r.problem.message).toMatch(/offset/);
      }
      checked.finish();
    }
  });

  it('after a valid pcapng section header and interface (200 seeds): never throws', () => {
    for (let seed = 1; seed <= 200; seed++) {
      const rnd = prng(1000 + seed);
      const head = pcapngFile([{ bigEndian: seed % 2 === 0, interfaces: [{ linkType: LINKTYPE.ETHERNET, tsresol: seed % 4 === 0 ? 9 : undefined }], blocks: [] }]);
      const checked = new Checked();
      const r = decodeSync(Buffer.concat([head, randomBytes(rnd, 1 + ((rnd() * 4096) | 0))]), checked.engine, 1 + ((rnd() * 500) | 0));
      if (r.problem) expect(r.problem.offset).toBeGreaterThanOrEqual(head.length);
      checked.finish();
    }
  });

  it('a valid pcap of random packets for each link type: never throws, every packet decoded or counted', async () => {
    const linkTypes = [...Object.values(LINKTYPE), 147];
    for (const linkType of linkTypes) {
      const rnd = prng(linkType + 7);
      const records = Array.from({ length: 400 }, (_, i) => ({ ts: 1_700_000_000 + i * 0.001, data: randomBytes(rnd, (rnd() * 200) | 0) }));
      const checked = new Checked();
      const cap = await readBuffer(pcapFile(records, { linkType }), checked, 5);
      expect(cap.problem).toBeNull();
      expect(cap.packets).toBe(400);
      const s = checked.engine.stats();
      expect(s.packets).toBe(400);
      const counted = DECODE_ANOMALIES.reduce((a, k) => a + (s.anomalies[k] ?? 0), 0);
      expect(counted, `link type ${linkType}`).toBeGreaterThan(0);
      checked.finish();
    }
  });

  it('valid IPv4/IPv6 + TCP headers around random flags, sequence numbers and payloads (HTTP fragments among them): never throws', () => {
    const rnd = prng(42);
    const pieces = ['GET / HTTP/1.1\r\n', 'HTTP/1.1 200 OK\r\n', 'Content-Length: 5\r\n', 'Transfer-Encoding: chunked\r\n', '\r\n', '5\r\nhello\r\n0\r\n\r\n',
      'Connection: close\r\n', 'Keep-Alive: timeout=5, max=1\r\n', 'ffffffffffffffffff\r\n', 'Upgrade: websocket\r\n', 'CONNECT a:443 HTTP/1.1\r\n', 'PRI * HTTP/2.0\r\n'];
    const checked = new Checked({ limits: { maxFlows: 50 } });
    let ts = 1_700_000_000;
    for (let i = 0; i < 20_000; i++) {
      const v6 = rnd() < 0.2;
      const payload = rnd() < 0.5
        ? Buffer.from(Array.from({ length: (rnd() * 4) | 0 }, () => pieces[(rnd() * pieces.length) | 0]).join(''), 'latin1')
        : randomBytes(rnd, (rnd() * 64) | 0);
      const up = rnd() < 0.5;
      const cport = 40000 + ((rnd() * 8) | 0);
      const sport = [80, 8080, 443][(rnd() * 3) | 0];
      const ip = tcpSegment({
        src: v6 ? (up ? '2001:db8::1' : '2001:db8::2') : up ? '10.0.0.1' : '10.0.0.2',
        dst: v6 ? (up ? '2001:db8::2' : '2001:db8::1') : up ? '10.0.0.2' : '10.0.0.1',
        sport: up ? cport : sport,
        dport: up ? sport : cport,
        seq: rnd() < 0.7 ? 1000 + ((rnd() * 3000) | 0) : (rnd() * 2 ** 32) >>> 0,
        ack: (rnd() * 2 ** 32) >>> 0,
        flags: (rnd() * 64) | 0,
        payload,
      });
      const data = frame(LINKTYPE.ETHERNET, ip);
      const capLen = rnd() < 0.1 ? (rnd() * data.length) | 0 : data.length;
      ts += rnd() < 0.01 ? 700 : rnd() * 0.01; // now and then a jump past every timeout
      checked.engine.packet(LINKTYPE.ETHERNET, data, 0, capLen, data.length, ts);
    }
    expect(checked.engine.stats().tcpPackets).toBeGreaterThan(15_000);
    checked.finish();
  });

  it('the real-server capture with random bytes flipped in its packets (30 seeds): never throws', () => {
    const packets = collect();
    decodeSync(readFileSync(FIXTURE), packets);
    expect(packets.packets.length).toBeGreaterThan(700);
    for (let seed = 1; seed <= 30; seed++) {
      const rnd = prng(5000 + seed);
      const checked = new Checked();
      for (const p of packets.packets) {
        const b = Buffer.from(p.bytes);
        const flips = rnd() < 0.3 ? 1 + ((rnd() * 4) | 0) : 0;
        for (let k = 0; k < flips; k++) b[(rnd() * b.length) | 0] = (rnd() * 256) | 0;
        checked.engine.packet(p.linkType, b, 0, b.length, p.origLen, p.ts);
      }
      checked.finish();
    }
  });
});

describe('hostile floods stay bounded', () => {
  const T0 = 1_700_000_000;

  it('10 MB of header bytes without an empty line: counted as header_too_large, the next request is found again', () => {
    const limit = 64 * 1024;
    const c = new Conversation({ client: '10.0.0.1:40000', server: '10.0.0.2:80', t0: T0 });
    c.handshake(0.001).clientSends(httpRequest('GET', '/first'), 0.001).serverSends(httpResponse(200, 'ok'), 0.001);
    const flood = Buffer.concat([Buffer.from('GET /flood HTTP/1.1\r\n'), Buffer.alloc(10 * 1024 * 1024 - 21, 'X-Flood: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n')]);
    c.clientSends(flood, 0.01, { segments: new Array(flood.length / 32768).fill(32768) });
    c.clientSends(httpRequest('GET', '/after'), 0.01).serverSends(httpResponse(200, 'ok'), 0.001).close('server', 2);
    const checked = new Checked({ limits: { maxHeaderBytes: limit } });
    const requests: string[] = [];
    checked.engine.subscribe({ request: (_c, r) => requests.push(r.method) });
    c.feed(checked.engine);
    checked.finish();
    const s = checked.engine.stats();
    expect(s.anomalies.header_too_large).toBe(1);
    expect(requests).toHaveLength(2);
  });

  it('10 MB without a single line feed after a request line: one header_too_large', () => {
    const c = new Conversation({ client: '10.0.0.1:40001', server: '10.0.0.2:80', t0: T0 });
    c.handshake(0.001).clientSends(httpRequest('GET', '/first'), 0.001).serverSends(httpResponse(200, 'ok'), 0.001);
    c.clientSends(Buffer.concat([Buffer.from('GET /'), Buffer.alloc(10 * 1024 * 1024, 'a')]), 0.01, { segments: new Array(320).fill(32768) });
    const checked = new Checked();
    c.feed(checked.engine);
    checked.finish();
    expect(checked.engine.stats().anomalies.header_too_large).toBe(1);
  });

  it('50,000 pipelined requests and no response: every request counted, the pending queue capped', () => {
    const one = httpRequest('GET', '/p');
    const all = Buffer.from(one.repeat(50_000), 'latin1');
    const c = new Conversation({ client: '10.0.0.1:40002', server: '10.0.0.2:80', t0: T0 });
    // 1000-byte segments cut requests anywhere.
    c.handshake(0.001).clientSends(all, 0.001, { segments: new Array(Math.ceil(all.length / 1000)).fill(1000) }).clientFin(1);
    const checked = new Checked();
    let requests = 0;
    let maxOutstanding = 0;
    checked.engine.subscribe({ request: (_c, r) => { requests++; maxOutstanding = Math.max(maxOutstanding, r.outstandingAtStart); } });
    c.feed(checked.engine);
    checked.finish();
    const limit = checked.engine.limits.maxPendingRequests;
    expect(requests).toBe(50_000);
    expect(maxOutstanding).toBe(limit);
    expect(checked.engine.stats().anomalies.pipeline_overflow).toBe(50_000 - limit);
  });

  it('200,000 SYNs to distinct ports with maxFlows 1000: never more than 1000 flows tracked, the rest evicted and counted', () => {
    const checked = new Checked({ limits: { maxFlows: 1000 } });
    const base = frame(LINKTYPE.ETHERNET, tcpSegment({ src: '10.1.0.0', dst: '10.0.0.2', sport: 40000, dport: 1, flags: 'S', seq: 1 }));
    const buf = Buffer.from(base);
    let maxTracked = 0;
    for (let i = 0; i < 200_000; i++) {
      buf.writeUInt16BE(1 + (i % 65535), 14 + 20 + 2); // TCP destination port
      buf[14 + 12 + 3] = Math.floor(i / 65535); // source address, last byte
      checked.engine.packet(LINKTYPE.ETHERNET, buf, 0, buf.length, buf.length, T0 + i * 1e-6);
      if (i % 97 === 0) maxTracked = Math.max(maxTracked, checked.engine.stats().flowsTracked);
    }
    const s = checked.engine.stats();
    expect(Math.max(maxTracked, s.flowsTracked)).toBeLessThanOrEqual(1000);
    expect(s.flowsTracked).toBe(1000);
    expect(s.flowsCreated).toBe(200_000);
    expect(s.flowsEvicted).toBe(199_000);
    expect(s.anomalies.flow_evicted).toBe(199_000);
    checked.finish();
    expect(checked.opened).toBe(0); // SYNs alone are not connections
  });

  it('out-of-order segments that never fill their hole: held up to the cap, then skipped as gaps', () => {
    const checked = new Checked();
    const c = new Conversation({ client: '10.0.0.1:40003', server: '10.0.0.2:80', t0: T0 });
    c.handshake(0.001).clientSends(httpRequest('GET', '/'), 0.001);
    // The server's segments all arrive, except every other one: 10,000 holes.
    const body = Buffer.alloc(20_000 * 100, 'z');
    c.serverSends(Buffer.concat([Buffer.from(`HTTP/1.1 200 OK\r\nContent-Length: ${body.length}\r\n\r\n`), body]), 0.001, {
      segments: new Array(20_001).fill(100),
      lose: Array.from({ length: 10_000 }, (_, i) => 2 * i + 1),
    });
    c.feed(checked.engine);
    checked.finish();
    const s = checked.engine.stats();
    expect(s.anomalies.reassembly_overflow).toBeGreaterThan(0);
    expect(s.gaps).toBe(10_000);
    expect(s.gapBytes).toBe(10_000 * 100);
  });
});
