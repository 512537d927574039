import { describe, expect, it } from 'vitest';
import { CaptureDecoder, type CaptureProblem } from '../../src/capture/reader.js';
import {
  LINKTYPE, collect, frame, pcapFile, pcapngFile, tcpSegment, type CollectedPacket, type PcapngSection,
} from '../helpers/packets.js';

interface Run {
  packets: CollectedPacket[];
  problem: CaptureProblem | null;
  decoder: CaptureDecoder;
}

/** Feeds `file` in the given pieces (default: one push), then ends the input. */
function run(file: Buffer, pieces: Buffer[] = [file]): Run {
  const sink = collect();
  const decoder = new CaptureDecoder(sink);
  for (const p of pieces) if (!decoder.push(p)) break;
  const problem = decoder.end();
  return { packets: sink.packets, problem, decoder };
}

function splitAt(file: Buffer, at: number): Buffer[] {
  return [file.subarray(0, at), file.subarray(at)];
}

function bytewise(file: Buffer): Buffer[] {
  const out: Buffer[] = [];
  for (let i = 0; i < file.length; i++) out.push(file.subarray(i, i + 1));
  return out;
}

const SEG_A = tcpSegment({ src: '10.0.0.1', dst: '10.0.0.2', sport: 40000, dport: 80, seq: 1, ack: 2, flags: 'PA', payload: 'GET / HTTP/1.1\r\nHost: a\r\n\r\n' });
const SEG_B = tcpSegment({ src: '10.0.0.2', dst: '10.0.0.1', sport: 80, dport: 40000, seq: 2, ack: 28, flags: 'A' });
const SEG_C = tcpSegment({ src: '2001:db8::1', dst: '2001:db8::2', sport: 40001, dport: 8080, flags: 'S' });
const ETH_A = frame(LINKTYPE.ETHERNET, SEG_A);
const ETH_B = frame(LINKTYPE.ETHERNET, SEG_B, { padToMinimum: true });
const ETH_C = frame(LINKTYPE.ETHERNET, SEG_C);

/** Offset of record `i` in a pcap file made of these packet lengths. */
function pcapRecordOffset(lengths: number[], i: number): number {
  let off = 24;
  for (let k = 0; k < i; k++) off += 16 + lengths[k];
  return off;
}

describe('pcap', () => {
  for (const bigEndian of [false, true]) {
    for (const nanos of [false, true]) {
      const name = `${bigEndian ? 'big' : 'little'}-endian, ${nanos ? 'nanosecond' : 'microsecond'} timestamps`;
      it(`reads ${name}: link type, lengths, bytes and exact timestamps`, () => {
        const scale = nanos ? 1e9 : 1e6;
        const stamps = [
          { sec: 1700000000, frac: 0 },
          { sec: 1700000000, frac: nanos ? 123456789 : 123456 },
          { sec: 1700000001, frac: scale - 1 },
        ];
        const file = pcapFile(
          [ETH_A, ETH_B, ETH_C].map((data, i) => ({ ts: stamps[i], data })),
          { linkType: LINKTYPE.ETHERNET, bigEndian, nanos },
        );
        const { packets, problem, decoder } = run(file);
        expect(problem).toBeNull();
        expect(decoder.format).toBe('pcap');
        expect(decoder.linkType).toBe(LINKTYPE.ETHERNET);
        expect(decoder.packets).toBe(3);
        expect(packets.map((p) => p.bytes)).toEqual([ETH_A, ETH_B, ETH_C]);
        expect(packets.map((p) => [p.linkType, p.capLen, p.origLen])).toEqual([
          [1, ETH_A.length, ETH_A.length], [1, ETH_B.length, ETH_B.length], [1, ETH_C.length, ETH_C.length],
        ]);
        for (let i = 0; i < 3; i++) {
          const { sec, frac } = stamps[i];
          // A double holds epoch seconds to ~0.24 µs: microseconds round-trip exactly,
          // nanoseconds to within that precision.
          if (nanos) expect(Math.abs(packets[i].ts - (sec + frac / 1e9))).toBeLessThan(3e-7);
          else expect(Math.round(packets[i].ts * 1e6)).toBe(sec * 1e6 + frac);
          if (!nanos) expect(Math.floor(packets[i].ts)).toBe(sec); // .999999999 rounds up in a double
        }
      });
    }
  }

  it('keeps every nanosecond digit when the seconds are small enough for a double', () => {
    const file = pcapFile([{ ts: { sec: 1, frac: 123456789 }, data: ETH_A }], { linkType: 1, nanos: true });
    const { packets } = run(file);
    expect(Math.round(packets[0].ts * 1e9)).toBe(1123456789);
  });

  it('masks the FCS information in the upper bits of the link-type field', () => {
    // pcap-savefile(5)/libpcap LT_FCS_DATALINK_EXT: FCS length (in 16-bit words) in bits 28-31, P bit 26.
    for (const bigEndian of [false, true]) {
      const file = pcapFile([{ ts: 1, data: Buffer.concat([ETH_A, Buffer.alloc(4)]) }], {
        linkType: LINKTYPE.ETHERNET, bigEndian, linkTypeFlags: (2 << 28) | 0x04000000,
      });
      const { packets, problem, decoder } = run(file);
      expect(problem).toBeNull();
      expect(decoder.linkType).toBe(LINKTYPE.ETHERNET);
      expect(packets[0].linkType).toBe(LINKTYPE.ETHERNET);
    }
  });

  it('counts records cut by the snapshot length', () => {
    const file = pcapFile([{ ts: 1, data: ETH_A }, { ts: 2, data: ETH_B }], { linkType: 1, snaplen: 40 });
    const { packets, problem, decoder } = run(file);
    expect(problem).toBeNull();
    expect(packets.map((p) => [p.capLen, p.origLen])).toEqual([[40, ETH_A.length], [40, ETH_B.length]]);
    expect(decoder.snaplenCut).toBe(2);
  });

  it('accepts a record with no captured bytes', () => {
    const file = pcapFile([{ ts: 1, data: Buffer.alloc(0), origLen: 60 }, { ts: 2, data: ETH_A }], { linkType: 1 });
    const { packets, problem } = run(file);
    expect(problem).toBeNull();
    expect(packets.map((p) => p.capLen)).toEqual([0, ETH_A.length]);
  });

  const splitFile = pcapFile(
    [{ ts: 1.5, data: ETH_A }, { ts: 2.25, data: Buffer.alloc(0), origLen: 0 }, { ts: 3, data: ETH_B }, { ts: 4, data: ETH_C }],
    { linkType: LINKTYPE.ETHERNET },
  );

  it('gives identical packets when the file is split in two at every byte offset', () => {
    const whole = run(splitFile);
    expect(whole.problem).toBeNull();
    expect(whole.packets).toHaveLength(4);
    for (let at = 0; at <= splitFile.length; at++) {
      const r = run(splitFile, splitAt(splitFile, at));
      expect(r.problem, `split at ${at}`).toBeNull();
      expect(r.packets, `split at ${at}`).toEqual(whole.packets);
    }
  });

  it('gives identical packets when the file is pushed one byte at a time', () => {
    const whole = run(splitFile);
    const r = run(splitFile, bytewise(splitFile));
    expect(r.problem).toBeNull();
    expect(r.packets).toEqual(whole.packets);
    expect(r.decoder.offset).toBe(splitFile.length);
  });

  it('accepts empty chunks anywhere', () => {
    const pieces = [Buffer.alloc(0), splitFile.subarray(0, 10), Buffer.alloc(0), splitFile.subarray(10), Buffer.alloc(0)];
    expect(run(splitFile, pieces).packets).toEqual(run(splitFile).packets);
  });

  it('delivers the packets before a truncated last record and reports where it starts', () => {
    const lengths = [ETH_A.length, ETH_B.length, ETH_C.length];
    const file = pcapFile([ETH_A, ETH_B, ETH_C].map((data, i) => ({ ts: i + 1, data })), { linkType: 1 });
    const last = pcapRecordOffset(lengths, 2);
    // Cut inside the record header and inside the packet data.
    for (const cut of [last + 1, last + 15, last + 16, last + 30, file.length - 1]) {
      const { packets, problem } = run(file.subarray(0, cut));
      expect(packets.map((p) => p.bytes), `cut at ${cut}`).toEqual([ETH_A, ETH_B]);
      expect(problem?.kind, `cut at ${cut}`).toBe('truncated');
      expect(problem?.offset, `cut at ${cut}`).toBe(last);
      expect(problem?.message).toContain(String(last));
    }
  });

  it('reports the same truncation whatever the chunking', () => {
    const file = pcapFile([{ ts: 1, data: ETH_A }, { ts: 2, data: ETH_B }], { linkType: 1 });
    const cut = file.subarray(0, file.length - 5);
    const expected = run(cut);
    expect(run(cut, bytewise(cut)).problem).toEqual(expected.problem);
    expect(run(cut, splitAt(cut, 50)).problem).toEqual(expected.problem);
  });

  it('reports a file that ends inside the 24-byte header as truncated at offset 0', () => {
    const file = pcapFile([], { linkType: 1 });
    const { packets, problem } = run(file.subarray(0, 10));
    expect(packets).toEqual([]);
    expect(problem).toMatchObject({ kind: 'truncated', offset: 0 });
  });

  it('reads a header-only file as a complete capture with no packets', () => {
    const { packets, problem, decoder } = run(pcapFile([], { linkType: 101 }));
    expect(packets).toEqual([]);
    expect(problem).toBeNull();
    expect(decoder.linkType).toBe(101);
  });

  it('stops at a corrupt record length with its offset, after the packets before it', () => {
    const file = pcapFile([{ ts: 1, data: ETH_A }, { ts: 2, data: ETH_B }, { ts: 3, data: ETH_C }], { linkType: 1 });
    const second = pcapRecordOffset([ETH_A.length], 1);
    file.writeUInt32LE(0x7fffffff, second + 8); // captured length
    const { packets, problem, decoder } = run(file);
    expect(packets.map((p) => p.bytes)).toEqual([ETH_A]);
    expect(problem?.kind).toBe('corrupt');
    expect(problem?.offset).toBe(second);
    expect(problem?.message).toContain(String(second));
    expect(decoder.packets).toBe(1);
  });

  it('stops for good on a corrupt length: later pushes of a large file return false at once', () => {
    const head = pcapFile([{ ts: 1, data: ETH_A }], { linkType: 1 });
    const bad = Buffer.alloc(16);
    bad.writeUInt32LE(0xfffffff0, 8);
    const sink = collect();
    const decoder = new CaptureDecoder(sink);
    expect(decoder.push(Buffer.concat([head, bad]))).toBe(false);
    const problem = decoder.problem;
    expect(problem).toMatchObject({ kind: 'corrupt', offset: head.length });
    // 64 MiB more of the "file": nothing is buffered or parsed any more.
    const mib = Buffer.alloc(1024 * 1024, 0x41);
    for (let i = 0; i < 64; i++) expect(decoder.push(mib)).toBe(false);
    expect(decoder.problem).toBe(problem);
    expect(decoder.offset).toBe(head.length);
    expect(decoder.end()).toBe(problem);
    expect(sink.packets).toHaveLength(1);
  });

  it('reports the same corrupt record, packets and offset whatever the split point', () => {
    const file = Buffer.from(splitFile);
    const bad = pcapRecordOffset([ETH_A.length, 0, ETH_B.length], 3);
    file.writeUInt32LE(0x7fffffff, bad + 8);
    const whole = run(file);
    expect(whole.problem).toMatchObject({ kind: 'corrupt', offset: bad });
    expect(whole.decoder.offset).toBe(bad);
    for (let at = 0; at <= file.length; at++) {
      const r = run(file, splitAt(file, at));
      expect(r.problem, `split at ${at}`).toEqual(whole.problem);
      expect(r.packets, `split at ${at}`).toEqual(whole.packets);
      expect(r.decoder.offset, `split at ${at}`).toBe(bad);
    }
    const r = run(file, bytewise(file));
    expect([r.problem, r.packets, r.decoder.offset]).toEqual([whole.problem, whole.packets, bad]);
  });

  it('stops as soon as a corrupt record header is complete, even when it straddles two chunks', () => {
    const head = pcapFile([{ ts: 1, data: ETH_A }], { linkType: 1 });
    const bad = Buffer.alloc(16);
    bad.writeUInt32LE(2 * 1024 * 1024, 8); // 2 MiB: more than any pcap record may be
    const file = Buffer.concat([head, bad]);
    const sink = collect();
    const decoder = new CaptureDecoder(sink);
    expect(decoder.push(file.subarray(0, head.length + 9))).toBe(true); // the length field is cut
    expect(decoder.push(Buffer.concat([file.subarray(head.length + 9), Buffer.alloc(64 * 1024)]))).toBe(false);
    expect(decoder.problem).toMatchObject({ kind: 'corrupt', offset: head.length });
    expect(decoder.push(Buffer.alloc(64 * 1024))).toBe(false);
  });

  it('rejects a text file as not a capture, naming its magic number', () => {
    const { packets, problem, decoder } = run(Buffer.from('hello world, this is just some text\n'));
    expect(packets).toEqual([]);
    expect(decoder.format).toBeNull();
    expect(problem?.kind).toBe('not_a_capture');
    expect(problem?.offset).toBe(0);
    expect(problem?.message).toContain('0x68656c6c');
  });

  it('rejects an HTML page (a download gone wrong) as not a capture, naming its magic number', () => {
    const sink = collect();
    const decoder = new CaptureDecoder(sink);
    expect(decoder.push(Buffer.from('<!DOCTYPE html>\n<html><body>404 Not Found</body></html>\n'))).toBe(false);
    expect(decoder.problem?.kind).toBe('not_a_capture');
    expect(decoder.problem?.message).toContain('0x3c21444f');
    expect(decoder.push(Buffer.from('more'))).toBe(false);
  });

  it('rejects random bytes as not a capture', () => {
    let x = 12345;
    const junk = Buffer.alloc(4096);
    for (let i = 0; i < junk.length; i++) junk[i] = (x = (x * 1103515245 + 12345) & 0x7fffffff) >>> 16;
    junk.writeUInt32BE(0xdeadbeef, 0);
    expect(run(junk).problem).toMatchObject({ kind: 'not_a_capture', offset: 0 });
  });

  it('rejects a text file shorter than a magic number as not a capture', () => {
    expect(run(Buffer.from('hi\n')).problem?.kind).toBe('not_a_capture');
  });

  it('reports a file cut inside its magic number as truncated', () => {
    const file = pcapFile([], { linkType: 1 });
    expect(run(file.subarray(0, 3)).problem?.kind).toBe('truncated');
  });

  it('reports empty input as not a capture', () => {
    const { packets, problem, decoder } = run(Buffer.alloc(0), []);
    expect(packets).toEqual([]);
    expect(decoder.format).toBeNull();
    expect(problem).toMatchObject({ kind: 'not_a_capture', offset: 0 });
    expect(problem?.message).toMatch(/empty/);
  });
});

// ---------------------------------------------------------------------------------------------

/** A raw pcapng block with an arbitrary length field (for corrupt-length cases). */
function rawBlock(type: number, lengthField: number, body: Buffer, bigEndian = false): Buffer {
  const h = Buffer.alloc(8);
  const t = Buffer.alloc(4);
  if (bigEndian) { h.writeUInt32BE(type, 0); h.writeUInt32BE(lengthField >>> 0, 4); t.writeUInt32BE(lengthField >>> 0); }
  else { h.writeUInt32LE(type, 0); h.writeUInt32LE(lengthField >>> 0, 4); t.writeUInt32LE(lengthField >>> 0); }
  return Buffer.concat([h, body, t]);
}

const RAW_A = SEG_A;
const SLL_B = frame(LINKTYPE.LINUX_SLL, SEG_B);

describe('pcapng', () => {
  it('reads interfaces with their own link types, resolutions (µs default, ns, 2^-20) and if_tsoffset', () => {
    const file = pcapngFile([{
      interfaces: [
        { linkType: LINKTYPE.ETHERNET }, // no if_tsresol: microseconds
        { linkType: LINKTYPE.RAW, tsresol: 9 }, // nanoseconds
        { linkType: LINKTYPE.LINUX_SLL, tsresol: 0x94 }, // 2^-20 s
        { linkType: LINKTYPE.LINUX_SLL2, tsresol: 3, tsoffset: 1700000000 }, // ms, relative to an offset
      ],
      blocks: [
        { type: 'epb', interface: 0, ts: { units: 1700000000123456n }, data: ETH_A },
        { type: 'epb', interface: 1, ts: { units: 1700000000987654321n }, data: RAW_A },
        { type: 'epb', interface: 2, ts: { units: 1700000000n * 2n ** 20n + 2n ** 19n + 2n ** 18n }, data: SLL_B },
        { type: 'epb', interface: 3, ts: { units: 1500n }, data: frame(LINKTYPE.LINUX_SLL2, SEG_C) },
        { type: 'epb', interface: 0, ts: { units: 5n }, data: ETH_B },
      ],
    }]);
    const { packets, problem, decoder } = run(file);
    expect(problem).toBeNull();
    expect(decoder.format).toBe('pcapng');
    expect(decoder.linkType).toBe(LINKTYPE.ETHERNET);
    expect(packets.map((p) => p.linkType)).toEqual([1, 101, 113, 276, 1]);
    expect(packets[1].bytes).toEqual(RAW_A);
    expect(Math.round(packets[0].ts * 1e6)).toBe(1700000000123456);
    expect(Math.abs(packets[1].ts - 1700000000.987654321)).toBeLessThan(3e-7);
    expect(packets[2].ts).toBe(1700000000.75);
    expect(packets[3].ts).toBe(1700000001.5);
    expect(packets[4].ts).toBe(0.000005);
  });

  it('keeps the high 32 bits of the timestamp', () => {
    const units = (1n << 32n) * 3n + 7n;
    const { packets } = run(pcapngFile([{ interfaces: [{ linkType: 1 }], blocks: [{ type: 'epb', interface: 0, ts: { units }, data: ETH_A }] }]));
    expect(packets[0].ts).toBeCloseTo(Number(units) / 1e6, 9);
  });

  it('accepts a negative if_tsoffset', () => {
    const file = pcapngFile([{ interfaces: [{ linkType: 1, tsoffset: -10n }], blocks: [{ type: 'epb', interface: 0, ts: { units: 12_500_000n }, data: ETH_A }] }]);
    expect(run(file).packets[0].ts).toBe(2.5);
  });

  for (const firstBigEndian of [false, true]) {
    it(`reads a second section in the other byte order (${firstBigEndian ? 'big then little' : 'little then big'})`, () => {
      const file = pcapngFile([
        { bigEndian: firstBigEndian, interfaces: [{ linkType: 1 }, { linkType: 101, tsresol: 9 }], blocks: [
          { type: 'epb', interface: 1, ts: 10, data: RAW_A },
          { type: 'epb', interface: 0, ts: 11, data: ETH_A },
        ] },
        // Interface ids restart: interface 0 of this section is SLL.
        { bigEndian: !firstBigEndian, interfaces: [{ linkType: 113 }], blocks: [
          { type: 'epb', interface: 0, ts: 12.5, data: SLL_B, origLen: SLL_B.length + 100 },
        ] },
      ]);
      const { packets, problem, decoder } = run(file);
      expect(problem).toBeNull();
      expect(packets.map((p) => [p.linkType, p.ts, p.capLen, p.origLen])).toEqual([
        [101, 10, RAW_A.length, RAW_A.length],
        [1, 11, ETH_A.length, ETH_A.length],
        [113, 12.5, SLL_B.length, SLL_B.length + 100],
      ]);
      expect(packets[2].bytes).toEqual(SLL_B);
      expect(decoder.snaplenCut).toBe(1);
    });
  }

  it('reads big-endian Simple and Obsolete Packet Blocks too', () => {
    const file = pcapngFile([{ bigEndian: true, interfaces: [{ linkType: 1 }, { linkType: 101 }], blocks: [
      { type: 'opb', interface: 1, ts: 3.25, data: RAW_A },
      { type: 'spb', data: ETH_B },
    ] }]);
    const { packets, problem } = run(file);
    expect(problem).toBeNull();
    expect(packets.map((p) => [p.linkType, p.ts, p.bytes])).toEqual([[101, 3.25, RAW_A], [1, 3.25, ETH_B]]);
  });

  it('attributes a Simple Packet Block to interface 0, cut to its snaplen, with the last timestamp seen', () => {
    const file = pcapngFile([{ interfaces: [{ linkType: 113, snaplen: 50 }, { linkType: 1 }], blocks: [
      { type: 'epb', interface: 1, ts: 7.5, data: ETH_A },
      { type: 'spb', data: SLL_B },
      { type: 'spb', data: frame(113, SEG_A) },
    ] }]);
    const { packets, problem, decoder } = run(file);
    expect(problem).toBeNull();
    expect(packets.map((p) => [p.linkType, p.ts])).toEqual([[1, 7.5], [113, 7.5], [113, 7.5]]);
    expect(packets[1].bytes).toEqual(SLL_B.subarray(0, Math.min(50, SLL_B.length)));
    expect(packets[2].capLen).toBe(50);
    expect(packets[2].origLen).toBe(16 + SEG_A.length);
    expect(decoder.snaplenCut).toBe(SLL_B.length > 50 ? 2 : 1);
  });

  it('reads an Obsolete Packet Block with its interface and timestamp', () => {
    const file = pcapngFile([{ interfaces: [{ linkType: 1 }, { linkType: 101, tsresol: 9 }], blocks: [
      { type: 'opb', interface: 1, ts: { units: 2_000_000_001n }, data: RAW_A },
    ] }]);
    const { packets, problem } = run(file);
    expect(problem).toBeNull();
    expect(packets).toHaveLength(1);
    expect(packets[0]).toMatchObject({ linkType: 101, capLen: RAW_A.length });
    expect(packets[0].ts).toBeCloseTo(2.000000001, 12);
  });

  it('accepts an interface described in the middle of a section', () => {
    const file = pcapngFile([{ interfaces: [{ linkType: 1 }], blocks: [
      { type: 'epb', interface: 0, ts: 1, data: ETH_A },
      { type: 'idb', linkType: 101 },
      { type: 'epb', interface: 1, ts: 2, data: RAW_A },
    ] }]);
    expect(run(file).packets.map((p) => p.linkType)).toEqual([1, 101]);
  });

  it('skips unknown block types and counts them; known non-packet blocks are not counted', () => {
    const file = pcapngFile([{ interfaces: [{ linkType: 1 }], blocks: [
      { type: 'raw', blockType: 0x12345678, body: Buffer.from('whatever') },
      { type: 'epb', interface: 0, ts: 1, data: ETH_A },
      { type: 'raw', blockType: 4, body: Buffer.alloc(4) }, // Name Resolution Block
      { type: 'raw', blockType: 5, body: Buffer.alloc(12) }, // Interface Statistics Block
      { type: 'raw', blockType: 0x00000bad, body: Buffer.alloc(8) }, // custom block
      { type: 'raw', blockType: 7 }, // reserved, empty body
      { type: 'epb', interface: 0, ts: 2, data: ETH_B },
    ] }]);
    const { packets, problem, decoder } = run(file);
    expect(problem).toBeNull();
    expect(packets.map((p) => p.bytes)).toEqual([ETH_A, ETH_B]);
    expect(decoder.unknownBlocks).toBe(2);
  });

  const twoPackets = pcapngFile([{ interfaces: [{ linkType: 1 }], blocks: [
    { type: 'epb', interface: 0, ts: 1, data: ETH_A },
    { type: 'epb', interface: 0, ts: 2, data: ETH_B },
  ] }]);

  for (const [what, lengthField] of [['not a multiple of 4', 30], ['shorter than a block', 8], ['huge', 0x7ffffff0]] as const) {
    it(`stops at a corrupt block length (${what}) with its offset`, () => {
      const bad = rawBlock(6, lengthField, Buffer.alloc(20));
      const { packets, problem } = run(Buffer.concat([twoPackets, bad, twoPackets]));
      expect(packets.map((p) => p.bytes)).toEqual([ETH_A, ETH_B]);
      expect(problem?.kind).toBe('corrupt');
      expect(problem?.offset).toBe(twoPackets.length);
      expect(problem?.message).toContain(String(twoPackets.length));
    });
  }

  it('stops on an Enhanced Packet Block whose captured length is larger than the block', () => {
    const body = Buffer.alloc(20 + 64);
    body.writeUInt32LE(0, 0);
    body.writeUInt32LE(65, 12); // captured length: one more than the block holds
    body.writeUInt32LE(65, 16);
    const { packets, problem } = run(Buffer.concat([twoPackets, rawBlock(6, 12 + body.length, body)]));
    expect(packets).toHaveLength(2);
    expect(problem).toMatchObject({ kind: 'corrupt', offset: twoPackets.length });
  });

  it('stops on an Enhanced Packet Block for an interface that was never described', () => {
    const file = pcapngFile([{ interfaces: [{ linkType: 1 }], blocks: [
      { type: 'epb', interface: 0, ts: 1, data: ETH_A },
      { type: 'epb', interface: 3, ts: 2, data: ETH_B },
    ] }]);
    const { packets, problem } = run(file);
    expect(packets).toHaveLength(1);
    expect(problem?.kind).toBe('corrupt');
    expect(problem?.message).toMatch(/interface/);
  });

  it('stops on a section header with a bad byte-order magic', () => {
    const shb = rawBlock(0x0a0d0d0a, 28, Buffer.concat([Buffer.from([1, 2, 3, 4]), Buffer.alloc(12)]));
    const { packets, problem } = run(Buffer.concat([twoPackets, shb]));
    expect(packets).toHaveLength(2);
    expect(problem).toMatchObject({ kind: 'corrupt', offset: twoPackets.length });
  });

  it('delivers the packets before a truncated last block and reports where it starts', () => {
    const third = pcapngFile([{ interfaces: [{ linkType: 1 }], blocks: [
      { type: 'epb', interface: 0, ts: 1, data: ETH_A },
      { type: 'epb', interface: 0, ts: 2, data: ETH_B },
      { type: 'epb', interface: 0, ts: 3, data: ETH_C },
    ] }]);
    expect(third.subarray(0, twoPackets.length)).toEqual(twoPackets); // the third EPB starts there
    expect(run(third).packets).toHaveLength(3);
    for (const cut of [twoPackets.length + 1, twoPackets.length + 11, twoPackets.length + 40, third.length - 1]) {
      const { packets, problem } = run(third.subarray(0, cut));
      expect(packets, `cut at ${cut}`).toHaveLength(2);
      expect(problem, `cut at ${cut}`).toMatchObject({ kind: 'truncated', offset: twoPackets.length });
    }
  });

  const mixed: PcapngSection[] = [
    { interfaces: [{ linkType: 1 }, { linkType: 101, tsresol: 9 }], blocks: [
      { type: 'epb', interface: 0, ts: 1, data: ETH_A },
      { type: 'raw', blockType: 0x999, body: Buffer.from('x') },
      { type: 'epb', interface: 1, ts: 2, data: RAW_A },
      { type: 'spb', data: ETH_B },
    ] },
    { bigEndian: true, interfaces: [{ linkType: 113, tsresol: 0x94 }], blocks: [
      { type: 'epb', interface: 0, ts: 3.5, data: SLL_B },
      { type: 'opb', interface: 0, ts: 4, data: SLL_B },
    ] },
  ];

  it('gives identical packets when a two-section file is split in two at every byte offset', () => {
    const file = pcapngFile(mixed);
    const whole = run(file);
    expect(whole.problem).toBeNull();
    expect(whole.packets).toHaveLength(5);
    expect(whole.decoder.unknownBlocks).toBe(1);
    for (let at = 0; at <= file.length; at++) {
      const r = run(file, splitAt(file, at));
      expect(r.problem, `split at ${at}`).toBeNull();
      expect(r.packets, `split at ${at}`).toEqual(whole.packets);
      expect(r.decoder.unknownBlocks, `split at ${at}`).toBe(1);
    }
  });

  it('reports the same corrupt block, packets and offset whatever the split point', () => {
    const good = pcapngFile(mixed);
    const file = Buffer.concat([good, rawBlock(6, 30, Buffer.alloc(20), true), twoPackets]);
    const whole = run(file);
    expect(whole.problem).toMatchObject({ kind: 'corrupt', offset: good.length });
    expect(whole.decoder.offset).toBe(good.length);
    for (let at = 0; at <= file.length; at++) {
      const r = run(file, splitAt(file, at));
      expect(r.problem, `split at ${at}`).toEqual(whole.problem);
      expect(r.packets, `split at ${at}`).toEqual(whole.packets);
      expect(r.decoder.offset, `split at ${at}`).toBe(good.length);
    }
  });

  it('gives identical packets when a two-section file is pushed one byte at a time', () => {
    const file = pcapngFile(mixed);
    const r = run(file, bytewise(file));
    expect(r.problem).toBeNull();
    expect(r.packets).toEqual(run(file).packets);
    expect(r.decoder.offset).toBe(file.length);
  });
});
