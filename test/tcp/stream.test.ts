import { describe, expect, it } from 'vitest';
import { TcpDirection, newReassemblyContext, seqDiff, type ReassemblyCounters, type StreamSink } from '../../src/tcp/stream.js';

/** Records what a direction delivers, as `data <text>`, `gap <n>`, `end`. */
class Sink implements StreamSink {
  readonly log: string[] = [];
  readonly times: number[] = [];
  data(_dir: number, buf: Buffer, off: number, len: number, ts: number): void {
    this.log.push(`data ${buf.toString('latin1', off, off + len)}`);
    this.times.push(ts);
  }
  gap(_dir: number, len: number, ts: number): void {
    this.log.push(`gap ${len}`);
    this.times.push(ts);
  }
  end(_dir: number, ts: number): void {
    this.log.push('end');
    this.times.push(ts);
  }
}

function newDir(opts: { maxBytes?: number; maxSegments?: number; budget?: number } = {}) {
  const counters: ReassemblyCounters = { gaps: 0, gapBytes: 0, retransmissions: 0, overflows: 0, budgetRefused: 0 };
  const ctx = newReassemblyContext(counters, { maxOutOfOrderBytes: opts.maxBytes ?? 1 << 20, maxOutOfOrderSegments: opts.maxSegments ?? 64, maxBufferedBytes: opts.budget ?? 1 << 30 });
  const sink = new Sink();
  const d = new TcpDirection(0, ctx, sink);
  let ts = 0;
  /** A segment whose payload is `text`; `wire` is its length on the wire (snaplen cut when larger). */
  const seg = (seq: number, text: string, wire = text.length) => {
    // Payload inside a larger buffer, to exercise offsets.
    const buf = Buffer.from(`<<${text}>>`, 'latin1');
    d.segment(seq >>> 0, buf, 2, text.length, wire, ++ts);
    return buf;
  };
  return { d, sink, counters, ctx, seg, log: sink.log, tick: () => ++ts };
}

const ISN = 1000;
const S = ISN + 1; // first data byte after the SYN

describe('seqDiff', () => {
  it('is the signed distance in 32-bit sequence space', () => {
    expect(seqDiff(10, 3)).toBe(7);
    expect(seqDiff(3, 10)).toBe(-7);
    expect(seqDiff(5, 0xfffffffb)).toBe(10);
    expect(seqDiff(0xfffffffb, 5)).toBe(-10);
  });
});

describe('TcpDirection: in-order delivery', () => {
  it('delivers in-order segments as they arrive', () => {
    const { d, seg, log } = newDir();
    d.syn(ISN);
    seg(S, 'hello');
    seg(S + 5, ' world');
    expect(log).toEqual(['data hello', 'data  world']);
    expect(d.bytes).toBe(11);
    expect(d.nextSeq).toBe(S + 11);
  });

  it('starts the stream at the first segment seen when the SYN was not captured', () => {
    const { d, seg, log } = newDir();
    seg(777_000, 'mid');
    seg(777_003, 'stream');
    expect(log).toEqual(['data mid', 'data stream']);
    expect(d.isn).toBe(-1);
  });

  it('delivers nothing for a segment without payload', () => {
    const { d, seg, log } = newDir();
    d.syn(ISN);
    seg(S, '');
    expect(log).toEqual([]);
    expect(d.nextSeq).toBe(S);
  });

  it('passes the capture time of each segment with its bytes', () => {
    const { d, seg, sink } = newDir();
    d.syn(ISN);
    seg(S, 'a');
    seg(S + 1, 'b');
    expect(sink.times).toEqual([1, 2]);
  });
});

describe('TcpDirection: retransmissions and overlaps', () => {
  it('does not deliver a retransmitted segment twice, and counts it', () => {
    const { d, seg, log, counters } = newDir();
    d.syn(ISN);
    seg(S, 'hello');
    seg(S, 'hello');
    seg(S + 5, 'world');
    expect(log).toEqual(['data hello', 'data world']);
    expect(counters.retransmissions).toBe(1);
  });

  it('counts a retransmission of older data as a retransmission too', () => {
    const { d, seg, log, counters } = newDir();
    d.syn(ISN);
    seg(S, 'abc');
    seg(S + 3, 'def');
    seg(S + 1, 'bc');
    expect(log).toEqual(['data abc', 'data def']);
    expect(counters.retransmissions).toBe(1);
  });

  it('delivers only the new bytes of a segment that overlaps delivered data', () => {
    const { d, seg, log, counters } = newDir();
    d.syn(ISN);
    seg(S, 'hello');
    seg(S + 3, 'lo world');
    expect(log).toEqual(['data hello', 'data  world']);
    expect(d.bytes).toBe(11);
    expect(counters.retransmissions).toBe(0);
  });

  it('delivers only the new bytes of overlapping held segments', () => {
    const { d, seg, log } = newDir();
    d.syn(ISN);
    seg(S + 5, 'fghij');
    seg(S + 7, 'hijklm');
    seg(S, 'abcde');
    expect(log).toEqual(['data abcde', 'data fghij', 'data klm']);
  });

  it('counts a duplicate out-of-order segment once and delivers it once', () => {
    const { d, seg, log, counters } = newDir();
    d.syn(ISN);
    seg(S + 3, 'def');
    seg(S + 3, 'def');
    seg(S, 'abc');
    expect(log).toEqual(['data abc', 'data def']);
    expect(counters.retransmissions).toBe(1);
  });
});

describe('TcpDirection: out-of-order segments', () => {
  it('holds out-of-order segments and delivers them in sequence order', () => {
    const { d, seg, log } = newDir();
    d.syn(ISN);
    seg(S + 6, 'three');
    seg(S + 3, 'two');
    seg(S, 'one');
    expect(log).toEqual(['data one', 'data two', 'data three']);
    expect(d.nextSeq).toBe(S + 11);
  });

  it('delivers nothing while the first bytes are missing', () => {
    const { d, seg, log } = newDir();
    d.syn(ISN);
    seg(S + 3, 'later');
    expect(log).toEqual([]);
  });

  it('copies held bytes: the caller may reuse its buffer after the call', () => {
    const { d, seg, log } = newDir();
    d.syn(ISN);
    const buf = seg(S + 3, 'def');
    buf.fill(0x58); // "XXX..."
    seg(S, 'abc');
    expect(log).toEqual(['data abc', 'data def']);
  });

  it('skips the hole as a gap when held segments exceed the segment cap, and counts the overflow', () => {
    const { d, seg, log, counters } = newDir({ maxSegments: 2 });
    d.syn(ISN);
    seg(S + 5, 'aa');
    seg(S + 7, 'bb');
    expect(log).toEqual([]);
    seg(S + 9, 'cc');
    expect(log).toEqual(['gap 5', 'data aa', 'data bb', 'data cc']);
    expect(counters.overflows).toBe(1);
    expect(counters.gaps).toBe(1);
    expect(counters.gapBytes).toBe(5);
  });

  it('skips the hole as a gap when held bytes exceed the byte cap', () => {
    const { d, seg, log, counters } = newDir({ maxBytes: 10 });
    d.syn(ISN);
    seg(S + 4, '012345');
    expect(log).toEqual([]);
    seg(S + 10, '6789X');
    expect(log).toEqual(['gap 4', 'data 012345', 'data 6789X']);
    expect(counters.overflows).toBe(1);
  });

  it('skips only the first hole on overflow and keeps holding what lies beyond the next one', () => {
    const { d, seg, log } = newDir({ maxSegments: 2 });
    d.syn(ISN);
    seg(S + 2, 'b');
    seg(S + 5, 'd');
    seg(S + 8, 'f');
    expect(log).toEqual(['gap 2', 'data b']);
    seg(S + 3, 'c');
    expect(log).toEqual(['gap 2', 'data b', 'data c']);
    seg(S + 4, 'X');
    expect(log).toEqual(['gap 2', 'data b', 'data c', 'data X', 'data d']);
  });

  it('delivers the bytes a later retransmission would fill as a retransmission after the hole was skipped', () => {
    const { d, seg, log, counters } = newDir({ maxSegments: 1 });
    d.syn(ISN);
    seg(S + 3, 'de');
    seg(S + 5, 'fg');
    seg(S, 'abc');
    expect(log).toEqual(['gap 3', 'data de', 'data fg']);
    expect(counters.retransmissions).toBe(1);
  });
});

describe('TcpDirection: acknowledgements above a hole', () => {
  it('skips a hole the peer acknowledged: gap, then the held data', () => {
    const { d, seg, log, counters, tick } = newDir();
    d.syn(ISN);
    seg(S, 'ab');
    seg(S + 5, 'fg');
    d.acked(S + 7, tick());
    expect(log).toEqual(['data ab', 'gap 3', 'data fg']);
    expect(counters.gaps).toBe(1);
    expect(counters.gapBytes).toBe(3);
  });

  it('skips the hole when the ack reaches exactly the start of the held data', () => {
    const { d, seg, log, tick } = newDir();
    d.syn(ISN);
    seg(S + 5, 'fg');
    d.acked(S + 5, tick());
    expect(log).toEqual(['gap 5', 'data fg']);
  });

  it('keeps waiting while the ack stays below the held data', () => {
    const { d, seg, log, tick } = newDir();
    d.syn(ISN);
    seg(S, 'ab');
    seg(S + 5, 'fg');
    d.acked(S + 2, tick());
    d.acked(S + 4, tick());
    expect(log).toEqual(['data ab']);
    seg(S + 2, 'cde');
    expect(log).toEqual(['data ab', 'data cde', 'data fg']);
  });

  it('ignores acks when nothing is held', () => {
    const { d, seg, log, tick } = newDir();
    d.syn(ISN);
    seg(S, 'ab');
    d.acked(S + 100, tick());
    expect(log).toEqual(['data ab']);
  });
});

describe('TcpDirection: end of stream', () => {
  it('delivers the end right after the last byte when the FIN is in order', () => {
    const { d, seg, log, tick } = newDir();
    d.syn(ISN);
    seg(S, 'bye');
    d.fin(S + 3, 0, tick());
    expect(log).toEqual(['data bye', 'end']);
  });

  it('delivers the end after the payload the FIN segment carries', () => {
    const { d, seg, log, tick } = newDir();
    d.syn(ISN);
    seg(S, 'last');
    d.fin(S, 4, tick());
    expect(log).toEqual(['data last', 'end']);
    expect(d.finSeq).toBe(S + 4);
  });

  it('delivers the end only after held data before it is delivered', () => {
    const { d, seg, log, tick } = newDir();
    d.syn(ISN);
    seg(S + 3, 'def');
    d.fin(S + 6, 0, tick());
    expect(log).toEqual([]);
    seg(S, 'abc');
    expect(log).toEqual(['data abc', 'data def', 'end']);
  });

  it('delivers the end once the missing last bytes arrive in order after the FIN', () => {
    const { d, seg, log, tick } = newDir();
    d.syn(ISN);
    seg(S, 'abc');
    d.fin(S + 6, 0, tick());
    expect(log).toEqual(['data abc']);
    seg(S + 3, 'def');
    expect(log).toEqual(['data abc', 'data def', 'end']);
  });

  it('delivers at most one end', () => {
    const { d, seg, log, tick } = newDir();
    d.syn(ISN);
    seg(S, 'x');
    d.fin(S + 1, 0, tick());
    d.fin(S + 1, 0, tick());
    d.flush(tick());
    expect(log).toEqual(['data x', 'end']);
  });

  it('flush delivers held data with gaps for the holes, then the end', () => {
    const { d, seg, log, counters, tick } = newDir();
    d.syn(ISN);
    seg(S, 'a');
    seg(S + 3, 'd');
    seg(S + 6, 'g');
    d.fin(S + 9, 0, tick());
    expect(log).toEqual(['data a']);
    d.flush(tick());
    expect(log).toEqual(['data a', 'gap 2', 'data d', 'gap 2', 'data g', 'gap 2', 'end']);
    expect(counters.gaps).toBe(3);
    expect(counters.gapBytes).toBe(6);
  });

  it('flush without a FIN delivers held data but no end', () => {
    const { d, seg, log, tick } = newDir();
    d.syn(ISN);
    seg(S + 2, 'cd');
    d.flush(tick());
    expect(log).toEqual(['gap 2', 'data cd']);
  });

  it('a FIN without any data seen starts and ends the stream', () => {
    const { d, log, tick } = newDir();
    d.fin(5000, 0, tick());
    expect(log).toEqual(['end']);
    expect(d.started).toBe(true);
  });
});

describe('TcpDirection: segments cut by the snaplen', () => {
  it('delivers the captured bytes, then a gap for the bytes not captured', () => {
    const { d, seg, log, counters } = newDir();
    d.syn(ISN);
    seg(S, 'GET /', 100);
    expect(log).toEqual(['data GET /', 'gap 95']);
    expect(d.nextSeq).toBe(S + 100);
    expect(counters.gapBytes).toBe(95);
  });

  it('continues in order after a cut segment', () => {
    const { d, seg, log } = newDir();
    d.syn(ISN);
    seg(S, 'ab', 10);
    seg(S + 10, 'next');
    expect(log).toEqual(['data ab', 'gap 8', 'data next']);
  });

  it('delivers a held cut segment as data then gap when it is drained', () => {
    const { d, seg, log } = newDir();
    d.syn(ISN);
    seg(S + 2, 'cd', 6);
    seg(S + 8, 'i');
    seg(S, 'ab');
    expect(log).toEqual(['data ab', 'data cd', 'gap 4', 'data i']);
  });

  it('reports only the new bytes of a cut segment that overlaps delivered data as a gap', () => {
    const { d, seg, log } = newDir();
    d.syn(ISN);
    seg(S, 'abcd');
    seg(S + 2, 'cd', 10); // captured bytes already delivered; the 8 new ones were not captured
    expect(log).toEqual(['data abcd', 'gap 8']);
    expect(d.nextSeq).toBe(S + 12);
  });
});

describe('TcpDirection: sequence number wraparound', () => {
  const ISN_HI = 0xfffffff0;

  it('delivers in order across 2^32', () => {
    const { d, seg, log } = newDir();
    d.syn(ISN_HI);
    seg(ISN_HI + 1, 'abcdefghijklmno'); // ends at 2^32
    seg(0, 'pq');
    seg(2, 'rs');
    expect(log).toEqual(['data abcdefghijklmno', 'data pq', 'data rs']);
    expect(d.nextSeq).toBe(4);
  });

  it('starts at the SYN right below 2^32', () => {
    const { d, seg, log } = newDir();
    d.syn(0xffffffff);
    expect(d.nextSeq).toBe(0);
    seg(0, 'x');
    expect(log).toEqual(['data x']);
  });

  it('holds and drains out-of-order segments across 2^32', () => {
    const { d, seg, log } = newDir();
    d.syn(ISN_HI);
    seg(3, 'after');
    seg(0xfffffffe, 'yz');
    seg(ISN_HI + 1, 'abcdefghijklm');
    seg(0, '012');
    expect(log).toEqual(['data abcdefghijklm', 'data yz', 'data 012', 'data after']);
  });

  it('detects a retransmission across 2^32', () => {
    const { d, seg, log, counters } = newDir();
    d.syn(ISN_HI);
    seg(0xfffffffe, 'wrap'); // 0xfffffffe .. 1: held, the stream starts at 0xfffffff1
    seg(ISN_HI + 1, 'abcdefghijklm');
    seg(0xffffffff, 'ra');
    expect(log).toEqual(['data abcdefghijklm', 'data wrap']);
    expect(counters.retransmissions).toBe(1);
  });

  it('ends at a FIN sequence beyond 2^32', () => {
    const { d, seg, log, tick } = newDir();
    d.syn(ISN_HI);
    seg(ISN_HI + 1, 'abcdefghijklmnop');
    d.fin(0xfffffff8, 9, tick()); // FIN after bytes that reach sequence 1
    expect(d.finSeq).toBe(1);
    expect(log).toEqual(['data abcdefghijklmnop', 'end']);
  });
});
