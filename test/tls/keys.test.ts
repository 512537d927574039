/**
 * Key derivation against published vectors: RFC 8448 section 3 (the simple 1-RTT handshake,
 * TLS_AES_128_GCM_SHA256: the four traffic secrets and the keys/IVs the RFC lists for them), the
 * TLS 1.2 P_SHA256 vector from the IETF TLS list (msg03416), and HKDF-Expand checked against
 * node's own hkdfSync (Extract + Expand). Live TLS 1.2 key blocks (SHA-256 and SHA-384 PRF) are
 * checked in aead.test.ts by decrypting records Node's TLS stack wrote.
 */
import { createHmac, hkdfSync } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import {
  hkdfExpand,
  hkdfExpandLabel,
  tls12KeyBlock,
  tls12Prf,
  tls12Suite,
  tls13Suite,
  tls13TrafficKeys,
  wipeKeys,
} from '../../src/tls/keys.js';

const hex = (s: string): Buffer => Buffer.from(s.replace(/\s+/g, ''), 'hex');

/** RFC 8448 section 3: traffic secrets and the keys/IVs derived from them. */
const RFC8448 = {
  clientHs: { secret: 'b3eddb126e067f35a780b3abf45e2d8f3b1a950738f52e9600746a0e27a55a21', key: 'dbfaa693d1762c5b666af5d950258d01', iv: '5bd3c71b836e0b76bb73265f' },
  serverHs: { secret: 'b67b7d690cc16c4e75e54213cb2d37b4e9c912bcded9105d42befd59d391ad38', key: '3fce516009c21727d0f2e4e86ee403bc', iv: '5d313eb2671276ee13000b30' },
  clientAp: { secret: '9e40646ce79a7f9dc05af8889bce6552875afa0b06df0087f792ebb7c17504a5', key: '17422dda596ed5d9acd890e3c63f5051', iv: '5b78923dee08579033e523d9' },
  serverAp: { secret: 'a11af9f05531f856ad47116b45a950328204b4f44bfb6b3a4b4f1f3fcb631643', key: '9f02283b6c9c07efc26bb9f2ac92e356', iv: 'cf782b88dd83549aadf1e984' },
};

describe('TLS 1.3 traffic keys (RFC 8446 7.3) against RFC 8448 section 3', () => {
  const suite = tls13Suite(0x1301)!;
  for (const [name, v] of Object.entries(RFC8448)) {
    it(`${name}: key and iv`, () => {
      const k = tls13TrafficKeys(suite, hex(v.secret));
      // Compare as booleans/lengths first so a failure does not print more than needed.
      expect(k.key.length).toBe(16);
      expect(k.iv.length).toBe(12);
      expect(k.key.equals(hex(v.key))).toBe(true);
      expect(k.iv.equals(hex(v.iv))).toBe(true);
      expect(k.version).toBe('1.3');
      expect(k.aead).toBe('aes-128-gcm');
    });
  }

  it('RFC 8448: "derived" from the early secret (a label with a hash context)', () => {
    // early secret (no PSK) and Derive-Secret(., "derived", "") from RFC 8448 section 3.
    const early = hex('33ad0a1c607ec03b09e6cd9893680ce210adf300aa1f2660e1b22e10f170f92a');
    const emptyHash = hex('e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855');
    const derived = hkdfExpandLabel('sha256', early, 'derived', emptyHash, 32);
    expect(derived.toString('hex')).toBe('6f2615a108c702c5678f54fc9dbab69716c076189c48250cebeac3576c3611ba');
  });

  it('key lengths follow the suite: AES-256-GCM and ChaCha20 take 32-byte keys, SHA-384 needs 48-byte secrets', () => {
    const aes256 = tls13Suite(0x1302)!;
    const chacha = tls13Suite(0x1303)!;
    expect(tls13TrafficKeys(aes256, Buffer.alloc(48, 1)).key.length).toBe(32);
    expect(tls13TrafficKeys(chacha, Buffer.alloc(32, 1)).key.length).toBe(32);
    expect(() => tls13TrafficKeys(aes256, Buffer.alloc(32, 1))).toThrow(RangeError);
    expect(tls13Suite(0x1304)).toBeUndefined(); // CCM: not supported, so not decryptable
  });
});

describe('HKDF-Expand on HMAC', () => {
  it('equals node hkdfSync (Extract then Expand) for SHA-256 and SHA-384, across block boundaries', () => {
    for (const hash of ['sha256', 'sha384'] as const) {
      const ikm = Buffer.from('input keying material');
      const salt = Buffer.from('salt');
      const info = Buffer.from('info');
      const prk = createHmac(hash, salt).update(ikm).digest();
      for (const len of [1, 12, 32, 48, 49, 100]) {
        const ours = hkdfExpand(hash, prk, info, len);
        const theirs = Buffer.from(hkdfSync(hash, ikm, salt, info, len));
        expect(ours.equals(theirs)).toBe(true);
      }
    }
  });
});

describe('TLS 1.2 PRF (RFC 5246 5)', () => {
  it('P_SHA256 test vector (IETF TLS list msg03416), 100 bytes', () => {
    const out = tls12Prf('sha256', hex('9bbe436ba940f017b17652849a71db35'), 'test label', hex('a0ba9f936cda311827a6f796ffd5198c'), 100);
    expect(out.toString('hex')).toBe(
      'e3f229ba727be17b8d122620557cd453c2aab21d07c3d495329b52d4e61edb5a' +
        '6b301791e90d35c9c9a46b4e14baf9af0fa022f7077def17abfd3797c0564bab' +
        '4fbc91666e9def9b97fce34f796789baa48082d122ee42c5a72e5a5110fff701' +
        '87347b66',
    );
  });

  it('key block layout: client key, server key, client iv, server iv (AEAD: no MAC keys)', () => {
    const master = Buffer.alloc(48, 7);
    const cr = Buffer.alloc(32, 1);
    const sr = Buffer.alloc(32, 2);
    const gcm = tls12Suite(0xc02f)!;
    const block = tls12Prf('sha256', master, 'key expansion', Buffer.concat([sr, cr]), 40);
    const k = tls12KeyBlock(gcm, master, cr, sr);
    expect(k.client.key.equals(block.subarray(0, 16))).toBe(true);
    expect(k.server.key.equals(block.subarray(16, 32))).toBe(true);
    expect(k.client.iv.equals(block.subarray(32, 36))).toBe(true);
    expect(k.server.iv.equals(block.subarray(36, 40))).toBe(true);
    const chacha = tls12KeyBlock(tls12Suite(0xcca8)!, master, cr, sr);
    expect([chacha.client.key.length, chacha.client.iv.length]).toEqual([32, 12]);
    const aes256 = tls12KeyBlock(tls12Suite(0xc030)!, master, cr, sr);
    expect([aes256.server.key.length, aes256.server.iv.length]).toEqual([32, 4]);
    expect(() => tls12KeyBlock(gcm, Buffer.alloc(32), cr, sr)).toThrow(RangeError);
    expect(tls12Suite(0x009c)).toBeUndefined(); // RSA key exchange, not ECDHE: outside the supported table
  });

  it('wipeKeys zeroes key and iv, and one direction does not share bytes with the other', () => {
    const k = tls12KeyBlock(tls12Suite(0xc02f)!, Buffer.alloc(48, 7), Buffer.alloc(32, 1), Buffer.alloc(32, 2));
    const serverKey = Buffer.from(k.server.key);
    wipeKeys(k.client);
    expect(k.client.key.every((b) => b === 0)).toBe(true);
    expect(k.client.iv.every((b) => b === 0)).toBe(true);
    expect(k.server.key.equals(serverKey)).toBe(true);
  });
});
