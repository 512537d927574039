import { describe, expect, it } from 'vitest';
import { TlsRecordStream, type RecordSink, type RecordStreamOptions } from '../../src/tls/record-stream.js';
import type { RecordHeader } from '../../src/tls/records.js';
import { CT, HS, clientHello, handshake, record, recordHeader } from '../helpers/tls.js';
import { prng } from '../helpers/prng.js';

/** Logs every event as a line; payloads and message bodies as hex, so copies and views compare equal. */
class Log implements RecordSink {
  lines: string[] = [];
  record(dir: number, h: Readonly<RecordHeader>, payload: Buffer | null, off: number): void {
    this.lines.push(`r${dir} ${h.type} ${h.version.toString(16)} ${h.length} ${payload ? payload.toString('hex', off, off + h.length) : '-'}`);
  }
  handshake(dir: number, t: number, body: Buffer | null, off: number, len: number): void {
    this.lines.push(`h${dir} ${t} ${len} ${body ? body.toString('hex', off, off + len) : '-'}`);
  }
  anomaly(dir: number, name: string): void {
    this.lines.push(`a${dir} ${name}`);
  }
}

function run(pieces: Array<Buffer | number>, opts?: RecordStreamOptions, end = true): { log: string[]; s: TlsRecordStream } {
  const log = new Log();
  const s = new TlsRecordStream(1, log, opts);
  let ts = 0;
  for (const p of pieces) {
    if (typeof p === 'number') s.gap(p, ++ts);
    else s.data(p, 0, p.length, ++ts);
  }
  if (end) s.end(++ts);
  return { log: log.lines, s };
}

/** A server flight: ServerHello + Certificate in one record, a Certificate message spanning two records, CCS, app data, alert. */
function flight(): Buffer {
  const sh = handshake(HS.SERVER_HELLO, Buffer.alloc(70, 2));
  const cert = handshake(HS.CERTIFICATE, Buffer.alloc(300, 3));
  const done = handshake(HS.SERVER_HELLO_DONE, Buffer.alloc(0));
  const hsBytes = Buffer.concat([sh, cert, done]);
  return Buffer.concat([
    record(CT.HANDSHAKE, hsBytes.subarray(0, 150)),
    record(CT.HANDSHAKE, hsBytes.subarray(150)),
    record(CT.CCS, Buffer.from([1])),
    record(CT.HANDSHAKE, Buffer.alloc(40, 0x11)), // encrypted Finished: not a message
    record(CT.APP, Buffer.alloc(500, 0x22)),
    record(CT.APP, Buffer.alloc(0)),
    record(CT.ALERT, Buffer.alloc(26, 0x33)),
  ]);
}

describe('TlsRecordStream', () => {
  const bytes = flight();
  const whole = run([bytes]);

  it('delivers records, handshake messages across records, not the encrypted Finished, app data unread', () => {
    const l = whole.log;
    expect(l.filter((x) => x.startsWith('h')).map((x) => x.split(' ').slice(0, 3).join(' '))).toEqual(['h1 2 70', 'h1 11 300', 'h1 14 0']);
    expect(l.filter((x) => x.startsWith('r')).map((x) => x.split(' ').slice(0, 4).join(' '))).toEqual([
      'r1 22 303 150', 'r1 22 303 232', 'r1 20 303 1', 'r1 22 303 40', 'r1 23 303 500', 'r1 23 303 0', 'r1 21 303 26',
    ]);
    expect(l.find((x) => x.startsWith('r1 23 303 500'))!.endsWith(' -')).toBe(true);
    expect(l.find((x) => x.startsWith('r1 21'))!.endsWith('33'.repeat(26))).toBe(true);
    expect(l.some((x) => x.startsWith('a'))).toBe(false);
    expect(whole.s.appDataRecords).toBe(2);
    expect(whole.s.appDataBytes).toBe(500);
    expect(whole.s.handshakeMessages).toBe(3);
    // The message order inside a record: messages it completes first, then the record.
    expect(l.indexOf(l.find((x) => x.startsWith('h1 11'))!)).toBeLessThan(l.indexOf(l.find((x) => x.startsWith('r1 22 303 232'))!));
  });

  it('gives the same events at every split point, and byte by byte', () => {
    for (let i = 0; i <= bytes.length; i++) {
      expect(run([bytes.subarray(0, i), bytes.subarray(i)]).log, `split at ${i}`).toEqual(whole.log);
    }
    const ones = [...bytes].map((b) => Buffer.from([b]));
    expect(run(ones).log).toEqual(whole.log);
  });

  it('at every truncation: a prefix of the events, and tls_truncated_record unless at a boundary', () => {
    const boundaries = new Set<number>();
    for (let p = 0; p < bytes.length; ) {
      boundaries.add(p);
      p += 5 + bytes.readUInt16BE(p + 3);
    }
    boundaries.add(bytes.length);
    for (let n = 0; n <= bytes.length; n++) {
      const { log } = run([bytes.subarray(0, n)]);
      const last = log[log.length - 1];
      // A record boundary with no handshake message open: all but 155 (the Certificate spans records 1 and 2).
      const atBoundary = boundaries.has(n) && n !== 155;
      if (atBoundary) expect(last === 'a1 tls_truncated_record', `cut at ${n}`).toBe(false);
      else expect(last, `cut at ${n}`).toBe('a1 tls_truncated_record');
      const events = log.filter((x) => !x.startsWith('a'));
      expect(whole.log.slice(0, events.length), `cut at ${n}`).toEqual(events);
    }
  });

  it('a gap inside app data keeps framing; inside a handshake record loses the messages, not the framing', () => {
    const app = Buffer.concat([record(CT.APP, Buffer.alloc(100, 1)), record(CT.APP, Buffer.alloc(50, 2))]);
    const r = run([app.subarray(0, 30), 40, app.subarray(70)]);
    expect(r.log).toEqual(['r1 23 303 100 -', 'r1 23 303 50 -']);
    const ch = record(CT.HANDSHAKE, handshake(HS.CLIENT_HELLO, clientHello({ sni: 'a.test' })));
    const r2 = run([ch.subarray(0, 20), 10, ch.subarray(30), app]);
    expect(r2.log).toEqual(['a1 tls_record_lost', 'a1 tls_handshake_lost', `r1 22 303 ${ch.length - 5} -`, 'r1 23 303 100 -', 'r1 23 303 50 -']);
    expect(r2.s.gapBytes).toBe(10);
  });

  it('a gap over a header resyncs on two chained plausible headers; the witness is not delivered', () => {
    const recs = [120, 130, 140, 150].map((n, i) => record(CT.APP, Buffer.alloc(n, 0x40 + i)));
    const all = Buffer.concat(recs);
    // Lose the first record's header and part of its payload.
    const r = run([4, all.subarray(4)]);
    expect(r.log).toEqual(['a1 tls_resync', 'r1 23 303 140 -', 'r1 23 303 150 -']);
    expect(r.s.resyncs).toBe(1);
    expect(r.s.resyncSkippedRecords).toBe(1);
    // The same resync whatever the pieces: byte by byte, and split at every point.
    const rest = all.subarray(4);
    expect(run([4, ...[...rest].map((b) => Buffer.from([b]))]).log).toEqual(r.log);
    for (let i = 0; i <= rest.length; i++) expect(run([4, rest.subarray(0, i), rest.subarray(i)]).log, `split at ${i}`).toEqual(r.log);
  });

  it('finds no framing in noise: tls_resync_failed once, then bytes ignored', () => {
    const noise = Buffer.alloc(5000, 0x00);
    const r = run([Buffer.from(recordHeader(CT.APP, 10)), 20, noise, record(CT.APP, Buffer.alloc(5))], { limits: { maxResyncBytes: 1000 } });
    expect(r.log).toEqual(['r1 23 303 10 -', 'a1 tls_resync', 'a1 tls_resync_failed']);
    expect(r.s.stopped).toBe(true);
  });

  it('stops at a header that is not TLS where framing holds (hostile lengths too)', () => {
    expect(run([Buffer.from('GET / HTTP/1.1\r\n\r\n')]).log).toEqual(['a1 tls_bad_record']);
    expect(run([recordHeader(CT.APP, 18433), Buffer.alloc(100)]).log).toEqual(['a1 tls_bad_record']);
    expect(run([recordHeader(CT.HANDSHAKE, 0)]).log).toEqual(['a1 tls_bad_record']);
    const ok = record(CT.APP, Buffer.alloc(18432));
    expect(run([ok]).log).toEqual(['r1 23 303 18432 -']);
  });

  it('caps a handshake message (declared 16 MiB) and keeps the framing of records', () => {
    const big = Buffer.concat([Buffer.from([HS.CERTIFICATE, 0xff, 0xff, 0xff]), Buffer.alloc(100)]);
    const r = run([record(CT.HANDSHAKE, big), record(CT.APP, Buffer.alloc(3))]);
    expect(r.log[0]).toBe('a1 tls_handshake_too_large');
    expect(r.log.slice(1).map((x) => x.slice(0, 14))).toEqual(['r1 22 303 104 ', 'r1 23 303 3 -', 'a1 tls_truncat']); // the 16 MiB message never ended
    const lim = run([record(CT.HANDSHAKE, handshake(HS.CERTIFICATE, Buffer.alloc(200)))], { limits: { maxHandshakeBytes: 100 } });
    expect(lim.log).toEqual(['a1 tls_handshake_too_large', 'h1 11 200 -', `r1 22 303 204 ${handshake(HS.CERTIFICATE, Buffer.alloc(200)).toString('hex')}`]);
  });

  it('shares a budget: a split record past it is delivered unread and released', () => {
    const budget = { heldBytes: 0, maxBufferedBytes: 100 };
    const rec = record(CT.HANDSHAKE, handshake(HS.CERTIFICATE, Buffer.alloc(200)));
    const r = run([rec.subarray(0, 50), rec.subarray(50)], { budget });
    expect(r.log).toEqual(['a1 buffer_budget_exceeded', 'a1 tls_handshake_lost', 'r1 22 303 204 -']);
    expect(budget.heldBytes).toBe(0);
    const r2 = run([bytes.subarray(0, 60), bytes.subarray(60)], { budget: { heldBytes: 0, maxBufferedBytes: 1 << 20 } });
    expect(r2.log).toEqual(whole.log);
  });

  it('reads a second ClientHello after the TLS 1.3 compatibility CCS (HelloRetryRequest)', () => {
    const ch = handshake(HS.CLIENT_HELLO, clientHello({ sni: 'b.test' }));
    const r = run([record(CT.HANDSHAKE, ch, 0x0301), record(CT.CCS, Buffer.from([1])), record(CT.HANDSHAKE, ch)]);
    expect(r.log.filter((x) => x.startsWith('h')).length).toBe(2);
    // The server side: HRR, CCS, then the real ServerHello in cleartext (found by the real-bytes test).
    const shm = handshake(HS.SERVER_HELLO, Buffer.alloc(80, 4));
    const r2 = run([record(CT.HANDSHAKE, shm), record(CT.CCS, Buffer.from([1])), record(CT.HANDSHAKE, shm), record(CT.APP, Buffer.alloc(30))]);
    expect(r2.log.filter((x) => x.startsWith('h')).length).toBe(2);
    // An encrypted TLS 1.2 Finished after the CCS is not read, even if it starts like a hello but does not fill its record.
    const fake = Buffer.concat([Buffer.from([HS.SERVER_HELLO, 0, 0, 10]), Buffer.alloc(30, 9)]);
    const r3 = run([record(CT.CCS, Buffer.from([1])), record(CT.HANDSHAKE, fake)]);
    expect(r3.log.filter((x) => x.startsWith('h')).length).toBe(0);
  });

  it('joined mid-stream (start: lost) finds the records by resync', () => {
    const recs = Buffer.concat([Buffer.alloc(33, 0x17), record(CT.APP, Buffer.alloc(60)), record(CT.APP, Buffer.alloc(61)), record(CT.APP, Buffer.alloc(62))]);
    const r = run([recs], { start: 'lost' });
    expect(r.log).toEqual(['r1 23 303 61 -', 'r1 23 303 62 -']);
  });

  it('a gap anywhere in random ciphertext records never delivers a record that was not sent', () => {
    const rnd = prng(13);
    const rngBytes = (n: number): Buffer => Buffer.from(Array.from({ length: n }, () => Math.floor(rnd() * 256)));
    const lens: number[] = [];
    const parts: Buffer[] = [];
    for (let i = 0; i < 60; i++) {
      const n = 200 + i * 37; // distinct lengths
      lens.push(n);
      parts.push(record(i % 17 === 16 ? CT.ALERT : CT.APP, rngBytes(n)));
    }
    const all = Buffer.concat(parts);
    let resynced = 0;
    for (let at = 0; at < all.length - 8000; at += 97) { // two whole records after the loss: the last one is the chain's second
      const r = run([all.subarray(0, at), 11, all.subarray(at + 11)]);
      const got = r.log.filter((x) => x.startsWith('r')).map((x) => Number(x.split(' ')[3]));
      // In order, a subsequence of what was sent, and the last record always comes through.
      let j = 0;
      for (const g of got) {
        while (j < lens.length && lens[j] !== g) j++;
        expect(j < lens.length, `gap at ${at}: record of ${g} bytes was never sent`).toBe(true);
        j++;
      }
      expect(got[got.length - 1], `gap at ${at}: ${r.log.filter((x) => x.startsWith('a')).join(',')} ${got.slice(-3).join(',')}`).toBe(lens[lens.length - 1]);
      if (r.s.resyncs > 0) resynced++;
    }
    expect(resynced).toBeGreaterThan(0);
  });
});
