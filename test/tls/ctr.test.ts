/**
 * ctr.ts reads any range of a record's plaintext from the counter-mode keystream alone: the same
 * bytes node:crypto's full AEAD decryption gives, for AES-128/256-GCM and ChaCha20-Poly1305 (the
 * ChaCha20 block function is ours: RFC 8439 2.3.2's test vector first).
 */
import { describe, expect, it } from 'vitest';
import { createCipheriv, randomBytes } from 'node:crypto';
import { RecordKeystream, WINDOW_POOL } from '../../src/tls/ctr.js';

function seal(aead: 'aes-128-gcm' | 'aes-256-gcm' | 'chacha20-poly1305', key: Buffer, nonce: Buffer, plain: Buffer): Buffer {
  const c = aead === 'chacha20-poly1305' ? createCipheriv(aead, key, nonce, { authTagLength: 16 }) : createCipheriv(aead, key, nonce);
  return Buffer.concat([c.update(plain), c.final()]);
}

describe('RecordKeystream', () => {
  it('ChaCha20 block function: RFC 8439 2.4.2 (encryption of the sunscreen text, counter 1)', () => {
    const key = Buffer.from('000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f', 'hex');
    const nonce = Buffer.from('000000000000004a00000000', 'hex');
    const plain = Buffer.from("Ladies and Gentlemen of the class of '99: If I could offer you only one tip for the future, sunscreen would be it.");
    const want = Buffer.from('6e2e359a2568f98041ba0728dd0d6981e97e7aec1d4360c20a27afccfd9fae0bf91b65c5524733ab8f593dabcd62b3571639d624e65152ab8f530c359f0861d807ca0dbf500d6a6156a38e088a22b65e52bc514d16ccf806818ce91ab77937365af90bbf74a35be6b40b8eedf2785e42874d', 'hex');
    const ks = new RecordKeystream('chacha20-poly1305', key, Buffer.alloc(12), '1.3');
    ks.setNonce(nonce);
    // RFC 8439's example starts at counter 1, as the AEAD's payload does: read(0, n) is exactly it.
    expect(Buffer.from(ks.read(want, 0, 0, want.length))).toEqual(plain);
  });

  for (const aead of ['aes-128-gcm', 'aes-256-gcm', 'chacha20-poly1305'] as const) {
    it(`${aead}: every range of a 3,000-byte record, at odd offsets, equals the plaintext`, () => {
      const key = randomBytes(aead === 'aes-128-gcm' ? 16 : 32);
      const nonce = randomBytes(12);
      const plain = randomBytes(3000);
      const ct = Buffer.concat([Buffer.from('junk'), seal(aead, key, nonce, plain)]);
      const ks = new RecordKeystream(aead, key, Buffer.alloc(12), '1.3');
      ks.setNonce(nonce);
      for (const [start, n] of [[0, 3000], [0, 1], [1, 15], [15, 2], [16, 16], [63, 66], [100, 512], [2999, 1], [2984, 16]]) {
        expect(Buffer.from(ks.read(ct, 4, start, n)), `${start}+${n}`).toEqual(plain.subarray(start, start + n));
      }
    });
  }

  /** TLS 1.3 nonce: iv XOR the sequence number, left-padded (RFC 8446 5.3). */
  function nonce13(iv: Buffer, seq: number): Buffer {
    const n = Buffer.from(iv);
    n.writeUInt32BE((n.readUInt32BE(8) ^ seq) >>> 0, 8);
    return n;
  }

  it(`more keystreams reading at once than window slots (${WINDOW_POOL}): each still reads its own plaintext, and a wiped one leaves the others whole`, () => {
    const n = WINDOW_POOL + 37;
    const streams = Array.from({ length: n }, () => {
      const key = randomBytes(16);
      const iv = randomBytes(12);
      return { key, iv, ks: new RecordKeystream('aes-128-gcm', key, iv, '1.3') };
    });
    // Round after round, every stream reads its next record: slots are taken from each other all the time.
    for (let seq = 0; seq < 6; seq++) {
      for (let i = 0; i < n; i += seq % 2 === 0 ? 1 : 3) {
        if (i === 5 && seq > 4) continue; // wiped: its connection ended
        const { key, iv, ks } = streams[i];
        const plain = randomBytes(90 + (i % 200));
        const frag = seal('aes-128-gcm', key, nonce13(iv, seq), plain);
        ks.setRecord(seq, frag, 0);
        expect(Buffer.from(ks.read(frag, 0, 0, plain.length)), `stream ${i} seq ${seq}`).toEqual(plain);
        if (i === 5 && seq === 4) ks.wipe();
      }
    }
  });

  it('AES-GCM 1.3: windows follow the depth of the reads (deep, then shallow, then deep again), every read equal to its plaintext', () => {
    const key = randomBytes(16);
    const iv = randomBytes(12);
    const ks = new RecordKeystream('aes-128-gcm', key, iv, '1.3');
    // 384-byte heads for 40 records, 96-byte ones for 200 (the windows shrink: more records a call), 384 again.
    for (let seq = 0; seq < 300; seq++) {
      const depth = seq < 40 || seq >= 240 ? 384 : 96;
      const plain = randomBytes(600);
      const frag = seal('aes-128-gcm', key, nonce13(iv, seq), plain);
      ks.setRecord(seq, frag, 0);
      expect(Buffer.from(ks.read(frag, 0, 0, depth)), `seq ${seq}`).toEqual(plain.subarray(0, depth));
      if (seq % 7 === 0) expect(Buffer.from(ks.read(frag, 0, depth, 120)), `seq ${seq} on`).toEqual(plain.subarray(depth, depth + 120));
    }
  });

  for (const version of ['1.3', '1.2'] as const) {
    it(`AES-GCM ${version}: records read through the keystream made ahead (${'window'}) equal their plaintext, across window edges`, () => {
      const key = randomBytes(16);
      const iv = randomBytes(version === '1.3' ? 12 : 4);
      const ks = new RecordKeystream('aes-128-gcm', key, iv, version);
      for (let seq = 0; seq < 30; seq++) {
        const plain = randomBytes(seq % 3 === 0 ? 2000 : 100 + seq);
        // TLS 1.2: salt || explicit nonce, counting up by one from where OpenSSL started it (across a 32-bit carry here), except on records 7 and 19 (a peer that does not follow it)
        const explicit = Buffer.alloc(8);
        const counted = 0xfffffff0 + seq;
        explicit.writeUInt32BE(seq === 7 || seq === 19 ? 0xdead : Math.floor(counted / 0x100000000), 0);
        explicit.writeUInt32BE(seq === 7 || seq === 19 ? 0xbeef : counted >>> 0, 4);
        const nonce = version === '1.3' ? nonce13(iv, seq) : Buffer.concat([iv, explicit]);
        const sealed = seal('aes-128-gcm', key, nonce, plain);
        const frag = version === '1.3' ? sealed : Buffer.concat([explicit, sealed]);
        ks.setRecord(seq, frag, 0);
        const ctOff = version === '1.3' ? 0 : 8;
        for (const [start, n] of [[0, Math.min(256, plain.length)], [5, 50], [0, plain.length], [plain.length - 16, 16]]) {
          expect(Buffer.from(ks.read(frag, ctOff, start, n)), `seq ${seq} ${start}+${n}`).toEqual(plain.subarray(start, start + n));
        }
      }
    });
  }
});
