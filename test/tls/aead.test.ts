/**
 * Record decryption.
 * 1. RFC 8448 section 3 (simple 1-RTT handshake, TLS_AES_128_GCM_SHA256): keys derived from the
 *    RFC's traffic secrets open the RFC's wire records (the server's 674-byte encrypted
 *    handshake flight, the client's Finished, the client's and the server's application data;
 *    the server's is at sequence 1, after its NewSessionTicket), and fail on the wrong sequence,
 *    key or a flipped byte.
 * 2. Live: a Node.js tls server and client on loopback, with a TCP relay in between recording the
 *    bytes as they cross (what a capture sees), the client's `keylog` event feeding KeylogStore;
 *    every record after the handshake is decrypted with our keys and compared with what was
 *    written: TLS 1.2 with ECDHE-RSA-AES128-GCM-SHA256, -AES256-GCM-SHA384 and -CHACHA20-POLY1305,
 *    TLS 1.3 with each of the three suites.
 * 3. A tcpdump capture on lo of curl (SSLKEYLOGFILE, OpenSSL's writer) against `openssl s_server
 *    -www`, all six suites: the request curl sent and the body it saved come out of the records.
 * No secret is printed: assertions compare booleans and lengths.
 */
import { execFileSync } from 'node:child_process';
import { createCipheriv } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import tls from 'node:tls';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openRecord, type OpenResult } from '../../src/tls/aead.js';
import { KeylogStore } from '../../src/tls/keylog.js';
import { tls12KeyBlock, tls12Suite, tls13Suite, tls13TrafficKeys, type TrafficKeys } from '../../src/tls/keys.js';

const hex = (s: string): Buffer => Buffer.from(s.replace(/\s+/g, ''), 'hex');
const AES128 = tls13Suite(0x1301)!;

// RFC 8448 section 3, verbatim.
const CLIENT_HS_SECRET = 'b3eddb126e067f35a780b3abf45e2d8f3b1a950738f52e9600746a0e27a55a21';
const SERVER_HS_SECRET = 'b67b7d690cc16c4e75e54213cb2d37b4e9c912bcded9105d42befd59d391ad38';
const CLIENT_AP_SECRET = '9e40646ce79a7f9dc05af8889bce6552875afa0b06df0087f792ebb7c17504a5';
const SERVER_AP_SECRET = 'a11af9f05531f856ad47116b45a950328204b4f44bfb6b3a4b4f1f3fcb631643';
const SERVER_HS_RECORD = `
17 03 03 02 a2 d1 ff 33 4a 56 f5 bf f6 59 4a 07 cc 87 b5 80 23 3f 50 0f 45 e4 89 e7 f3 3a f3 5e
df 78 69 fc f4 0a a4 0a a2 b8 ea 73 f8 48 a7 ca 07 61 2e f9 f9 45 cb 96 0b 40 68 90 51 23 ea 78
b1 11 b4 29 ba 91 91 cd 05 d2 a3 89 28 0f 52 61 34 aa dc 7f c7 8c 4b 72 9d f8 28 b5 ec f7 b1 3b
d9 ae fb 0e 57 f2 71 58 5b 8e a9 bb 35 5c 7c 79 02 07 16 cf b9 b1 18 3e f3 ab 20 e3 7d 57 a6 b9
d7 47 76 09 ae e6 e1 22 a4 cf 51 42 73 25 25 0c 7d 0e 50 92 89 44 4c 9b 3a 64 8f 1d 71 03 5d 2e
d6 5b 0e 3c dd 0c ba e8 bf 2d 0b 22 78 12 cb b3 60 98 72 55 cc 74 41 10 c4 53 ba a4 fc d6 10 92
8d 80 98 10 e4 b7 ed 1a 8f d9 91 f0 6a a6 24 82 04 79 7e 36 a6 a7 3b 70 a2 55 9c 09 ea d6 86 94
5b a2 46 ab 66 e5 ed d8 04 4b 4c 6d e3 fc f2 a8 94 41 ac 66 27 2f d8 fb 33 0e f8 19 05 79 b3 68
45 96 c9 60 bd 59 6e ea 52 0a 56 a8 d6 50 f5 63 aa d2 74 09 96 0d ca 63 d3 e6 88 61 1e a5 e2 2f
44 15 cf 95 38 d5 1a 20 0c 27 03 42 72 96 8a 26 4e d6 54 0c 84 83 8d 89 f7 2c 24 46 1a ad 6d 26
f5 9e ca ba 9a cb bb 31 7b 66 d9 02 f4 f2 92 a3 6a c1 b6 39 c6 37 ce 34 31 17 b6 59 62 22 45 31
7b 49 ee da 0c 62 58 f1 00 d7 d9 61 ff b1 38 64 7e 92 ea 33 0f ae ea 6d fa 31 c7 a8 4d c3 bd 7e
1b 7a 6c 71 78 af 36 87 90 18 e3 f2 52 10 7f 24 3d 24 3d c7 33 9d 56 84 c8 b0 37 8b f3 02 44 da
8c 87 c8 43 f5 e5 6e b4 c5 e8 28 0a 2b 48 05 2c f9 3b 16 49 9a 66 db 7c ca 71 e4 59 94 26 f7 d4
61 e6 6f 99 88 2b d8 9f c5 08 00 be cc a6 2d 6c 74 11 6d bd 29 72 fd a1 fa 80 f8 5d f8 81 ed be
5a 37 66 89 36 b3 35 58 3b 59 91 86 dc 5c 69 18 a3 96 fa 48 a1 81 d6 b6 fa 4f 9d 62 d5 13 af bb
99 2f 2b 99 2f 67 f8 af e6 7f 76 91 3f a3 88 cb 56 30 c8 ca 01 e0 c6 5d 11 c6 6a 1e 2a c4 c8 59
77 b7 c7 a6 99 9b bf 10 dc 35 ae 69 f5 51 56 14 63 6c 0b 9b 68 c1 9e d2 e3 1c 0b 3b 66 76 30 38
eb ba 42 f3 b3 8e dc 03 99 f3 a9 f2 3f aa 63 97 8c 31 7f c9 fa 66 a7 3f 60 f0 50 4d e9 3b 5b 84
5e 27 55 92 c1 23 35 ee 34 0b bc 4f dd d5 02 78 40 16 e4 b3 be 7e f0 4d da 49 f4 b4 40 a3 0c b5
d2 af 93 98 28 fd 4a e3 79 4e 44 f9 4d f5 a6 31 ed e4 2c 17 19 bf da bf 02 53 fe 51 75 be 89 8e
75 0e dc 53 37 0d 2b`;
const CLIENT_FINISHED_RECORD = `
17 03 03 00 35 75 ec 4d c2 38 cc e6 0b 29 80 44 a7 1e 21 9c 56 cc 77 b0 51 7f e9 b9 3c 7a 4b fc
44 d8 7f 38 f8 03 38 ac 98 fc 46 de b3 84 bd 1c ae ac ab 68 67 d7 26 c4 05 46`;
const CLIENT_APP_RECORD = `
17 03 03 00 43 a2 3f 70 54 b6 2c 94 d0 af fa fe 82 28 ba 55 cb ef ac ea 42 f9 14 aa 66 bc ab 3f
2b 98 19 a8 a5 b4 6b 39 5b d5 4a 9a 20 44 1e 2b 62 97 4e 1f 5a 62 92 a2 97 70 14 bd 1e 3d ea e6
3a ee bb 21 69 49 15 e4`;
const SERVER_APP_RECORD = `
17 03 03 00 43 2e 93 7e 11 ef 4a c7 40 e5 38 ad 36 00 5f c4 a4 69 32 fc 32 25 d0 5f 82 aa 1b 36
e3 0e fa f9 7d 90 e6 df fc 60 2d cb 50 1a 59 a8 fc c4 9c 4b f2 e5 f0 a2 1c 00 47 c2 ab f3 32 54
0d d0 32 e1 67 c2 95 5d`;
/** Both sides' application data in the trace: the bytes 00 01 ... 31. */
const RFC_PAYLOAD = Buffer.from(Array.from({ length: 50 }, (_, i) => i));

function mustOpen(r: OpenResult): { type: number; plaintext: Buffer } {
  if (!r.ok) throw new Error(`record did not open: ${r.reason}`);
  return r;
}

describe('TLS 1.3 records from RFC 8448 section 3', () => {
  const serverHs = tls13TrafficKeys(AES128, hex(SERVER_HS_SECRET));
  const clientHs = tls13TrafficKeys(AES128, hex(CLIENT_HS_SECRET));
  const clientAp = tls13TrafficKeys(AES128, hex(CLIENT_AP_SECRET));
  const serverAp = tls13TrafficKeys(AES128, hex(SERVER_AP_SECRET));

  it("the server's encrypted handshake flight: EncryptedExtensions .. Finished, inner type handshake", () => {
    const rec = hex(SERVER_HS_RECORD);
    expect(rec.length).toBe(679);
    const r = mustOpen(openRecord(serverHs, 0n, rec));
    expect(r.type).toBe(22);
    expect(r.plaintext.length).toBe(674 - 16 - 1);
    expect(r.plaintext[0]).toBe(8); // EncryptedExtensions
    const fin = r.plaintext.subarray(r.plaintext.length - 36);
    expect([...fin.subarray(0, 4)]).toEqual([0x14, 0x00, 0x00, 0x20]); // Finished, 32 bytes
  });

  it("the client's Finished under the client handshake key", () => {
    const r = mustOpen(openRecord(clientHs, 0n, hex(CLIENT_FINISHED_RECORD)));
    expect(r.type).toBe(22);
    expect(r.plaintext.length).toBe(36);
    expect(r.plaintext[0]).toBe(0x14);
  });

  it('application data both ways: the client at sequence 0, the server at 1 (after its ticket)', () => {
    const c = mustOpen(openRecord(clientAp, 0n, hex(CLIENT_APP_RECORD)));
    expect(c.type).toBe(23);
    expect(c.plaintext.equals(RFC_PAYLOAD)).toBe(true);
    const s = mustOpen(openRecord(serverAp, 1n, hex(SERVER_APP_RECORD)));
    expect(s.type).toBe(23);
    expect(s.plaintext.equals(RFC_PAYLOAD)).toBe(true);
  });

  it('a record at an offset inside a larger buffer (two records back to back)', () => {
    const both = Buffer.concat([hex(CLIENT_FINISHED_RECORD), hex(CLIENT_APP_RECORD)]);
    expect(mustOpen(openRecord(clientHs, 0n, both, 0)).type).toBe(22);
    expect(mustOpen(openRecord(clientAp, 0n, both, 5 + 0x35)).plaintext.equals(RFC_PAYLOAD)).toBe(true);
  });

  it('rejects, without throwing: wrong sequence, wrong direction key, a flipped byte anywhere, truncation', () => {
    const rec = hex(CLIENT_APP_RECORD);
    for (const seq of [1n, 2n, 256n, (1n << 64n) - 1n]) {
      expect(openRecord(clientAp, seq, rec)).toEqual({ ok: false, reason: 'tls_bad_tag' });
    }
    expect(openRecord(serverAp, 0n, rec)).toEqual({ ok: false, reason: 'tls_bad_tag' });
    for (let i = 0; i < rec.length; i++) {
      if (i >= 3 && i <= 4) continue; // the length field: changing it is a truncation, below
      const bad = Buffer.from(rec);
      bad[i] ^= 0x01;
      expect(openRecord(clientAp, 0n, bad).ok).toBe(false); // the header is additional data too
    }
    for (let cut = 0; cut < rec.length; cut++) {
      expect(openRecord(clientAp, 0n, rec.subarray(0, cut))).toEqual({ ok: false, reason: 'tls_record_truncated' });
    }
    expect(rec.equals(hex(CLIENT_APP_RECORD))).toBe(true); // input untouched
  });
});

/** Seal a TLS 1.3 record with node's cipher directly (independent of aead.ts). */
function seal13(k: TrafficKeys, seq: bigint, inner: Buffer): Buffer {
  const nonce = Buffer.from(k.iv);
  const s = Buffer.alloc(8);
  s.writeBigUInt64BE(seq);
  for (let i = 0; i < 8; i++) nonce[4 + i] ^= s[i];
  const header = Buffer.from([23, 3, 3, 0, 0]);
  header.writeUInt16BE(inner.length + 16, 3);
  const c = createCipheriv('aes-128-gcm', k.key, nonce);
  c.setAAD(header);
  const ct = Buffer.concat([c.update(inner), c.final()]);
  return Buffer.concat([header, ct, c.getAuthTag()]);
}

describe('TLS 1.3 inner plaintext rules (RFC 8446 5.2, 5.4)', () => {
  const k = tls13TrafficKeys(AES128, hex(CLIENT_AP_SECRET));
  it('zero padding is stripped and the type is the last non-zero byte', () => {
    const r = mustOpen(openRecord(k, 5n, seal13(k, 5n, Buffer.concat([Buffer.from('hi\0'), Buffer.of(21), Buffer.alloc(30)]))));
    expect(r.type).toBe(21);
    expect(r.plaintext.toString('latin1')).toBe('hi\0'); // a zero inside the content stays
  });
  it('an all-zero plaintext has no content type', () => {
    expect(openRecord(k, 0n, seal13(k, 0n, Buffer.alloc(8)))).toEqual({ ok: false, reason: 'tls_no_content_type' });
  });
  it('too short and too long lengths are rejected before decrypting', () => {
    const short = Buffer.concat([Buffer.from([23, 3, 3, 0, 16]), Buffer.alloc(16)]);
    expect(openRecord(k, 0n, short)).toEqual({ ok: false, reason: 'tls_record_too_short' });
    const long = Buffer.concat([Buffer.from([23, 3, 3, 0x41, 0x01]), Buffer.alloc(0x4101)]);
    expect(openRecord(k, 0n, long)).toEqual({ ok: false, reason: 'tls_record_too_long' });
  });
});

// ---------------------------------------------------------------------------------------------
// Live: Node's TLS stack on loopback, the bytes recorded by a relay in between.

interface Record_ {
  type: number;
  off: number;
  buf: Buffer;
}

function records(stream: Buffer): Record_[] {
  const out: Record_[] = [];
  let off = 0;
  while (off + 5 <= stream.length) {
    const len = stream.readUInt16BE(off + 3);
    if (off + 5 + len > stream.length) break;
    out.push({ type: stream[off], off, buf: stream });
    off += 5 + len;
  }
  return out;
}

/** Client and server random from the hellos (record 5, handshake 4, version 2: random at 11). */
const helloRandom = (stream: Buffer): Buffer => Buffer.from(stream.subarray(11, 43));

interface Exchange {
  c2s: Buffer;
  s2c: Buffer;
  keylog: KeylogStore;
  request: Buffer;
  response: Buffer;
  cipher: string;
  version: string;
}

let dir = '';
let cert = Buffer.alloc(0);
let key = Buffer.alloc(0);

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'ka-tls-aead-'));
  execFileSync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', join(dir, 'k.pem'), '-out', join(dir, 'c.pem'), '-days', '1', '-subj', '/CN=localhost'], { stdio: 'ignore' });
  cert = readFileSync(join(dir, 'c.pem'));
  key = readFileSync(join(dir, 'k.pem'));
});
afterAll(() => {
  if (dir) rmSync(dir, { recursive: true, force: true });
});

/** One connection through a recording relay: the client sends `request`, the server answers, both close. */
async function exchange(opts: { version: 'TLSv1.2' | 'TLSv1.3'; cipher: string }): Promise<Exchange> {
  const request = Buffer.from(`GET /${opts.cipher} HTTP/1.1\r\nHost: localhost\r\n\r\n`);
  const response = Buffer.from(`HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello`);
  const server = tls.createServer({ cert, key, minVersion: opts.version, maxVersion: opts.version, ciphers: opts.cipher }, (s) => {
    s.once('data', () => s.end(response));
    s.on('error', () => {});
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const c2s: Buffer[] = [];
  const s2c: Buffer[] = [];
  const relay = net.createServer((down) => {
    const up = net.connect((server.address() as net.AddressInfo).port, '127.0.0.1');
    down.on('data', (d) => { c2s.push(d); up.write(d); });
    up.on('data', (d) => { s2c.push(d); down.write(d); });
    down.on('end', () => up.end());
    up.on('end', () => down.end());
    down.on('error', () => up.destroy());
    up.on('error', () => down.destroy());
  });
  await new Promise<void>((r) => relay.listen(0, '127.0.0.1', r));
  const keylog = new KeylogStore();
  let cipher = '';
  let version = '';
  try {
    await new Promise<void>((resolve, reject) => {
      const guard = setTimeout(() => reject(new Error('exchange did not finish')), 10_000);
      const c = tls.connect({
        host: '127.0.0.1',
        port: (relay.address() as net.AddressInfo).port,
        rejectUnauthorized: false,
        minVersion: opts.version,
        maxVersion: opts.version,
        ciphers: opts.cipher,
      });
      c.on('keylog', (line) => keylog.push(line));
      c.on('secureConnect', () => {
        cipher = c.getCipher().standardName;
        version = c.getProtocol() ?? '';
        c.write(request);
      });
      c.on('data', () => {});
      c.on('end', () => c.end());
      c.on('close', () => { clearTimeout(guard); resolve(); });
      c.on('error', (e) => { clearTimeout(guard); reject(e); });
    });
    // Let the relay deliver its last bytes.
    await new Promise((r) => setTimeout(r, 50));
  } finally {
    relay.close();
    server.close();
  }
  keylog.end();
  return { c2s: Buffer.concat(c2s), s2c: Buffer.concat(s2c), keylog, request, response, cipher, version };
}

/** Decrypt every record after the ChangeCipherSpec of a TLS 1.2 direction, sequence from 0. */
function open12(stream: Buffer, k: TrafficKeys): { type: number; plaintext: Buffer }[] {
  const recs = records(stream);
  const ccs = recs.findIndex((r) => r.type === 20);
  expect(ccs).toBeGreaterThan(0);
  return recs.slice(ccs + 1).map((r, i) => mustOpen(openRecord(k, BigInt(i), r.buf, r.off)));
}

const TLS12 = [
  { cipher: 'ECDHE-RSA-AES128-GCM-SHA256', id: 0xc02f, standard: 'TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256' },
  { cipher: 'ECDHE-RSA-AES256-GCM-SHA384', id: 0xc030, standard: 'TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384' },
  { cipher: 'ECDHE-RSA-CHACHA20-POLY1305', id: 0xcca8, standard: 'TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256' },
];

describe('TLS 1.2 live (Node tls, keylog event, relay capture)', () => {
  for (const t of TLS12) {
    it(`${t.cipher}: Finished and the first application data in both directions`, async () => {
      const x = await exchange({ version: 'TLSv1.2', cipher: t.cipher });
      expect(x.version).toBe('TLSv1.2');
      expect(x.cipher).toBe(t.standard);
      const clientRandom = helloRandom(x.c2s);
      const serverRandom = helloRandom(x.s2c);
      const secrets = x.keylog.get(clientRandom); // looked up by what the wire says
      expect(secrets?.CLIENT_RANDOM?.length).toBe(48);
      const keys = tls12KeyBlock(tls12Suite(t.id)!, secrets!.CLIENT_RANDOM!, clientRandom, serverRandom);

      const c = open12(x.c2s, keys.client);
      expect(c[0].type).toBe(22);
      expect([...c[0].plaintext.subarray(0, 4)]).toEqual([0x14, 0, 0, 12]); // Finished, 12-byte verify_data
      expect(c[1].type).toBe(23);
      expect(c[1].plaintext.equals(x.request)).toBe(true);

      const s = open12(x.s2c, keys.server);
      expect(s[0].type).toBe(22);
      expect(s[0].plaintext[0]).toBe(0x14);
      const data = s.filter((r) => r.type === 23);
      expect(Buffer.concat(data.map((r) => r.plaintext)).equals(x.response)).toBe(true);
      expect(s[s.length - 1].type).toBe(21); // close_notify, encrypted like the rest

      // The wrong direction's key fails on the tag, not with an exception.
      const first = records(x.c2s).find((r) => r.type === 23)!;
      expect(openRecord(keys.server, 1n, first.buf, first.off)).toEqual({ ok: false, reason: 'tls_bad_tag' });
      x.keylog.delete(clientRandom);
      expect(x.keylog.size).toBe(0);
    }, 20_000);
  }
});

/**
 * A TLS 1.3 direction: records under the handshake key until one fails to open, then the
 * application key from sequence 0 (the switch comes after Finished; a wrong try is harmless).
 */
function open13(stream: Buffer, hs: TrafficKeys, ap: TrafficKeys): { phase: 'hs' | 'ap'; type: number; plaintext: Buffer }[] {
  const out: { phase: 'hs' | 'ap'; type: number; plaintext: Buffer }[] = [];
  let phase: 'hs' | 'ap' = 'hs';
  let seq = 0n;
  for (const r of records(stream)) {
    if (r.type !== 23) continue; // ClientHello/ServerHello and the compatibility CCS are clear
    let res = openRecord(phase === 'hs' ? hs : ap, seq, r.buf, r.off);
    if (!res.ok && phase === 'hs') {
      phase = 'ap';
      seq = 0n;
      res = openRecord(ap, seq, r.buf, r.off);
    }
    const o = mustOpen(res);
    out.push({ phase, ...o });
    seq++;
  }
  return out;
}

const TLS13 = [
  { cipher: 'TLS_AES_128_GCM_SHA256', id: 0x1301, secretLength: 32 },
  { cipher: 'TLS_AES_256_GCM_SHA384', id: 0x1302, secretLength: 48 },
  { cipher: 'TLS_CHACHA20_POLY1305_SHA256', id: 0x1303, secretLength: 32 },
];

describe('TLS 1.3 live (Node tls, keylog event, relay capture)', () => {
  for (const t of TLS13) {
    it(`${t.cipher}: handshake flight, Finished, tickets, request and response`, async () => {
      const x = await exchange({ version: 'TLSv1.3', cipher: t.cipher });
      expect(x.version).toBe('TLSv1.3');
      expect(x.cipher).toBe(t.cipher);
      const s = x.keylog.get(helloRandom(x.c2s))!;
      expect(s).toBeDefined();
      for (const l of ['CLIENT_HANDSHAKE_TRAFFIC_SECRET', 'SERVER_HANDSHAKE_TRAFFIC_SECRET', 'CLIENT_TRAFFIC_SECRET_0', 'SERVER_TRAFFIC_SECRET_0', 'EXPORTER_SECRET'] as const) {
        expect(s[l]?.length).toBe(t.secretLength);
      }
      const suite = tls13Suite(t.id)!;
      const c = open13(x.c2s, tls13TrafficKeys(suite, s.CLIENT_HANDSHAKE_TRAFFIC_SECRET!), tls13TrafficKeys(suite, s.CLIENT_TRAFFIC_SECRET_0!));
      expect(c[0]).toMatchObject({ phase: 'hs', type: 22 });
      expect(c[0].plaintext[0]).toBe(0x14); // the client's Finished
      const req = c.find((r) => r.type === 23)!;
      expect(req.phase).toBe('ap');
      expect(req.plaintext.equals(x.request)).toBe(true);

      const sv = open13(x.s2c, tls13TrafficKeys(suite, s.SERVER_HANDSHAKE_TRAFFIC_SECRET!), tls13TrafficKeys(suite, s.SERVER_TRAFFIC_SECRET_0!));
      const hs = Buffer.concat(sv.filter((r) => r.phase === 'hs').map((r) => r.plaintext));
      expect(hs[0]).toBe(8); // EncryptedExtensions first
      const apHandshake = sv.filter((r) => r.phase === 'ap' && r.type === 22);
      expect(apHandshake.length).toBeGreaterThan(0);
      expect(apHandshake.every((r) => r.plaintext[0] === 4)).toBe(true); // NewSessionTicket
      const data = sv.filter((r) => r.type === 23);
      expect(Buffer.concat(data.map((r) => r.plaintext)).equals(x.response)).toBe(true);
      expect(sv[sv.length - 1].type).toBe(21); // close_notify inside an application-data record
    }, 20_000);
  }
});

// ---------------------------------------------------------------------------------------------
// Real capture: tcpdump on lo, `openssl s_server -www`, curl with SSLKEYLOGFILE (OpenSSL's key
// log writer, not Node's). Needs root for tcpdump; skipped (visibly) when the tools are missing.

const haveTools = (() => {
  try {
    execFileSync('sh', ['-c', 'command -v tcpdump && command -v curl && command -v openssl'], { stdio: 'ignore' });
    return process.getuid?.() === 0;
  } catch {
    return false;
  }
})();

/** Per-direction TCP payload of the flow that starts with a ClientHello, from an EN10MB pcap. */
function flowFromPcap(pcap: Buffer, serverPort: number): { c2s: Buffer; s2c: Buffer } {
  const le = pcap.readUInt32LE(0) === 0xa1b2c3d4;
  const u32 = (o: number): number => (le ? pcap.readUInt32LE(o) : pcap.readUInt32BE(o));
  const flows = new Map<number, { c2s: Map<number, Buffer>; s2c: Map<number, Buffer> }>();
  for (let off = 24; off + 16 <= pcap.length; ) {
    const incl = u32(off + 8);
    const p = pcap.subarray(off + 16, off + 16 + incl);
    off += 16 + incl;
    if (p.readUInt16BE(12) !== 0x0800) continue;
    const ip = 14;
    const ihl = (p[ip] & 0x0f) * 4;
    const total = p.readUInt16BE(ip + 2);
    if (p[ip + 9] !== 6) continue;
    const tcp = ip + ihl;
    const sport = p.readUInt16BE(tcp);
    const dport = p.readUInt16BE(tcp + 2);
    const seq = p.readUInt32BE(tcp + 4);
    const data = p.subarray(tcp + (p[tcp + 12] >> 4) * 4, ip + total);
    if (data.length === 0) continue;
    const client = sport === serverPort ? dport : sport;
    let f = flows.get(client);
    if (!f) flows.set(client, (f = { c2s: new Map(), s2c: new Map() }));
    (sport === serverPort ? f.s2c : f.c2s).set(seq, Buffer.from(data)); // a retransmission overwrites
  }
  // Loopback: no loss, small flows, no wraparound worth handling in a test.
  const join_ = (m: Map<number, Buffer>): Buffer => Buffer.concat([...m.entries()].sort((a, b) => a[0] - b[0]).map((e) => e[1]));
  for (const f of flows.values()) {
    const c2s = join_(f.c2s);
    if (c2s[0] === 22) return { c2s, s2c: join_(f.s2c) };
  }
  throw new Error('no TLS flow in the capture');
}

async function freePort(): Promise<number> {
  const s = net.createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  const port = (s.address() as net.AddressInfo).port;
  await new Promise((r) => s.close(r));
  return port;
}

async function waitFor(check: () => boolean, ms: number): Promise<void> {
  for (let waited = 0; !check(); waited += 50) {
    if (waited > ms) throw new Error('tool did not start');
    await new Promise((r) => setTimeout(r, 50));
  }
}

const CAPTURES = [
  { name: 'TLS 1.3 AES-128-GCM', server: ['-tls1_3', '-ciphersuites', 'TLS_AES_128_GCM_SHA256'], curl: ['--tlsv1.3', '--tls13-ciphers', 'TLS_AES_128_GCM_SHA256'] },
  { name: 'TLS 1.3 AES-256-GCM', server: ['-tls1_3', '-ciphersuites', 'TLS_AES_256_GCM_SHA384'], curl: ['--tlsv1.3', '--tls13-ciphers', 'TLS_AES_256_GCM_SHA384'] },
  { name: 'TLS 1.3 ChaCha20-Poly1305', server: ['-tls1_3', '-ciphersuites', 'TLS_CHACHA20_POLY1305_SHA256'], curl: ['--tlsv1.3', '--tls13-ciphers', 'TLS_CHACHA20_POLY1305_SHA256'] },
  { name: 'TLS 1.2 ECDHE-RSA-AES128-GCM-SHA256', server: ['-tls1_2', '-cipher', 'ECDHE-RSA-AES128-GCM-SHA256'], curl: ['--tlsv1.2', '--tls-max', '1.2', '--ciphers', 'ECDHE-RSA-AES128-GCM-SHA256'] },
  { name: 'TLS 1.2 ECDHE-RSA-AES256-GCM-SHA384', server: ['-tls1_2', '-cipher', 'ECDHE-RSA-AES256-GCM-SHA384'], curl: ['--tlsv1.2', '--tls-max', '1.2', '--ciphers', 'ECDHE-RSA-AES256-GCM-SHA384'] },
  { name: 'TLS 1.2 ECDHE-RSA-CHACHA20-POLY1305', server: ['-tls1_2', '-cipher', 'ECDHE-RSA-CHACHA20-POLY1305'], curl: ['--tlsv1.2', '--tls-max', '1.2', '--ciphers', 'ECDHE-RSA-CHACHA20-POLY1305'] },
];

describe.skipIf(!haveTools)('tcpdump capture of curl and openssl s_server, curl SSLKEYLOGFILE', () => {
  for (const t of CAPTURES) {
    it(`${t.name}: the request curl sent and the body it received`, async () => {
      const { spawn } = await import('node:child_process');
      const port = await freePort();
      const pcapPath = join(dir, `${port}.pcap`);
      const keylogPath = join(dir, `${port}.keylog`);
      const bodyPath = join(dir, `${port}.body`);
      let tdErr = '';
      const td = spawn('tcpdump', ['-Z', 'root', '-i', 'lo', '--immediate-mode', '-U', '-w', pcapPath, `tcp port ${port}`], { stdio: ['ignore', 'ignore', 'pipe'] });
      td.stderr.on('data', (d) => (tdErr += d));
      const ss = spawn('openssl', ['s_server', '-quiet', '-accept', `127.0.0.1:${port}`, '-cert', join(dir, 'c.pem'), '-key', join(dir, 'k.pem'), '-www', ...t.server], { stdio: 'ignore' });
      try {
        await waitFor(() => tdErr.includes('listening'), 5000);
        let up = false;
        const probe = (): void => {
          const s = net.connect(port, '127.0.0.1', () => { up = true; s.destroy(); });
          s.on('error', () => {});
        };
        await waitFor(() => { if (!up) probe(); return up; }, 5000);
        execFileSync('curl', ['-sk', '--max-time', '10', ...t.curl, '-o', bodyPath, `https://127.0.0.1:${port}/`], { env: { ...process.env, SSLKEYLOGFILE: keylogPath }, stdio: 'ignore' });
        await new Promise((r) => setTimeout(r, 200)); // let tcpdump write the last packets
      } finally {
        ss.kill();
        if (td.exitCode === null) {
          const exited = new Promise((r) => td.once('exit', r));
          td.kill('SIGINT');
          await exited;
        }
      }
      const { c2s, s2c } = flowFromPcap(readFileSync(pcapPath), port);
      const store = new KeylogStore();
      store.push(readFileSync(keylogPath));
      store.end();
      expect(Object.values(store.stats.rejected).every((n) => n === 0)).toBe(true);
      const cr = helloRandom(c2s);
      const sec = store.get(cr)!;
      expect(sec).toBeDefined();
      const suiteId = s2c.readUInt16BE(44 + s2c[43]); // ServerHello: after the session id
      let client: { type: number; plaintext: Buffer }[];
      let server: { type: number; plaintext: Buffer }[];
      if (t.server[0] === '-tls1_3') {
        const su = tls13Suite(suiteId)!;
        client = open13(c2s, tls13TrafficKeys(su, sec.CLIENT_HANDSHAKE_TRAFFIC_SECRET!), tls13TrafficKeys(su, sec.CLIENT_TRAFFIC_SECRET_0!));
        server = open13(s2c, tls13TrafficKeys(su, sec.SERVER_HANDSHAKE_TRAFFIC_SECRET!), tls13TrafficKeys(su, sec.SERVER_TRAFFIC_SECRET_0!));
      } else {
        const k = tls12KeyBlock(tls12Suite(suiteId)!, sec.CLIENT_RANDOM!, cr, helloRandom(s2c));
        client = open12(c2s, k.client);
        server = open12(s2c, k.server);
      }
      const req = Buffer.concat(client.filter((r) => r.type === 23).map((r) => r.plaintext)).toString('latin1');
      expect(req.startsWith(`GET / HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\n`)).toBe(true);
      const resp = Buffer.concat(server.filter((r) => r.type === 23).map((r) => r.plaintext));
      const body = readFileSync(bodyPath);
      expect(body.length).toBeGreaterThan(0);
      expect(resp.subarray(resp.length - body.length).equals(body)).toBe(true);
      expect(resp.toString('latin1').startsWith('HTTP/1.0 200 ok')).toBe(true);
    }, 30_000);
  }
});
