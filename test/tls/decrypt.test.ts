/**
 * The decryptor of one connection (src/tls/decrypt.ts) on a TLS 1.3 handshake sealed here with
 * node's cipher: the server's flight in several records, the first opened with its tag checked
 * and the later ones read through the keystream, and what happens when one of them is lost.
 */
import { describe, expect, it } from 'vitest';
import { createCipheriv, randomBytes } from 'node:crypto';
import { TlsDecryptor, type LazyRecord, type Opened } from '../../src/tls/decrypt.js';
import { tls13Suite, tls13TrafficKeys, type TrafficKeys } from '../../src/tls/keys.js';
import type { KeylogSecrets } from '../../src/tls/keylog.js';

const SUITE = tls13Suite(0x1301)!; // TLS_AES_128_GCM_SHA256
const CLIENT = 0;
const SERVER = 1;

/** A TLS 1.3 record of `inner` (content then its real type) under `k` at `seq`: header and fragment. */
function seal13(k: TrafficKeys, seq: number, content: Buffer, type: number): { frag: Buffer; len: number } {
  const inner = Buffer.concat([content, Buffer.of(type)]);
  const nonce = Buffer.from(k.iv);
  const s = Buffer.alloc(8);
  s.writeBigUInt64BE(BigInt(seq));
  for (let i = 0; i < 8; i++) nonce[4 + i] ^= s[i];
  const header = Buffer.from([23, 3, 3, 0, 0]);
  header.writeUInt16BE(inner.length + 16, 3);
  const c = createCipheriv('aes-128-gcm', k.key, nonce);
  c.setAAD(header);
  const frag = Buffer.concat([c.update(inner), c.final(), c.getAuthTag()]);
  return { frag, len: frag.length };
}

/** A handshake message: type, 24-bit length, body. */
function msg(type: number, body: Buffer): Buffer {
  const h = Buffer.from([type, 0, 0, 0]);
  h.writeUIntBE(body.length, 1, 3);
  return Buffer.concat([h, body]);
}

/** EncryptedExtensions carrying ALPN `proto` (RFC 7301 3.1). */
function encryptedExtensions(proto: string): Buffer {
  const name = Buffer.from(proto, 'latin1');
  const list = Buffer.concat([Buffer.from([0, name.length + 1, name.length]), name]);
  const ext = Buffer.concat([Buffer.from([0, 16, 0, list.length]), list]);
  const exts = Buffer.concat([Buffer.from([0, ext.length]), ext]);
  return msg(8, exts);
}

function connection() {
  const secrets: KeylogSecrets = {
    CLIENT_HANDSHAKE_TRAFFIC_SECRET: randomBytes(32),
    SERVER_HANDSHAKE_TRAFFIC_SECRET: randomBytes(32),
    CLIENT_TRAFFIC_SECRET_0: randomBytes(32),
    SERVER_TRAFFIC_SECRET_0: randomBytes(32),
  };
  const keys = {
    serverHs: tls13TrafficKeys(SUITE, secrets.SERVER_HANDSHAKE_TRAFFIC_SECRET!),
    clientHs: tls13TrafficKeys(SUITE, secrets.CLIENT_HANDSHAKE_TRAFFIC_SECRET!),
    serverApp: tls13TrafficKeys(SUITE, secrets.SERVER_TRAFFIC_SECRET_0!),
    clientApp: tls13TrafficKeys(SUITE, secrets.CLIENT_TRAFFIC_SECRET_0!),
  };
  const d = TlsDecryptor.create('1.3', SUITE, secrets, randomBytes(32), randomBytes(32), CLIENT)!;
  return { d, keys };
}

/** What `recordLazy` gave, as plaintext for application data (read whole), or its kind. */
function open(d: TlsDecryptor, dir: number, r: { frag: Buffer; len: number }): string {
  const o: Opened | LazyRecord = d.recordLazy(dir, 23, 0x0303, r.frag, 0, r.len);
  if (o.kind === 'lazy') return o.type === 23 ? `data:${o.read(0, o.plainLength).toString('latin1')}` : `type:${o.type}`;
  if (o.kind === 'data') return `data:${o.plaintext.toString('latin1')}`;
  return o.kind;
}

describe('TLS 1.3 handshake flight', () => {
  // The server's flight in three records, as nginx sends it with an RSA certificate.
  const flight = (k: TrafficKeys) => [
    seal13(k, 0, encryptedExtensions('h2'), 22),
    seal13(k, 1, Buffer.concat([msg(11, randomBytes(1500)), msg(15, randomBytes(260))]), 22), // Certificate, CertificateVerify
    seal13(k, 2, msg(20, randomBytes(32)), 22), // Finished
  ];

  it('the first record opened with its tag checked, the rest read through the keystream: ALPN, the switch after Finished, and the first response', () => {
    const { d, keys } = connection();
    const before = d.opened;
    expect(flight(keys.serverHs).map((r) => open(d, SERVER, r))).toEqual(['handshake', 'handshake', 'handshake']);
    expect(d.alpn).toBe('h2');
    expect(open(d, CLIENT, seal13(keys.clientHs, 0, msg(20, randomBytes(32)), 22))).toBe('handshake');
    expect(d.established).toBe(true);
    expect(open(d, CLIENT, seal13(keys.clientApp, 0, Buffer.from('GET / HTTP/1.1\r\n\r\n'), 23))).toBe('data:GET / HTTP/1.1\r\n\r\n');
    expect(open(d, SERVER, seal13(keys.serverApp, 0, Buffer.from('HTTP/1.1 200 OK\r\n\r\n'), 23))).toBe('data:HTTP/1.1 200 OK\r\n\r\n');
    expect(d.opened - before).toBe(6);
    expect(d.failed).toBe(0);
  });

  it('a record of the flight lost (its Finished with it): the next record is opened with its tag under the application key, not read under the handshake key', () => {
    const { d, keys } = connection();
    const [ee, cert] = flight(keys.serverHs);
    expect(open(d, SERVER, ee)).toBe('handshake');
    expect(open(d, SERVER, cert)).toBe('handshake');
    d.lost(SERVER); // the Finished record
    expect(open(d, SERVER, seal13(keys.serverApp, 0, Buffer.from('HTTP/1.1 204 No Content\r\n\r\n'), 23))).toBe('data:HTTP/1.1 204 No Content\r\n\r\n');
    expect(open(d, SERVER, seal13(keys.serverApp, 1, Buffer.from('HTTP/1.1 200 OK\r\n\r\n'), 23))).toBe('data:HTTP/1.1 200 OK\r\n\r\n');
  });

  it('a flight record that is not what the handshake key makes (a corrupted byte): no throw, and the records after Finished still open', () => {
    const { d, keys } = connection();
    const [ee, cert, fin] = flight(keys.serverHs);
    cert.frag[100] ^= 0xff; // read through the keystream, unchecked: only its bytes change
    expect(open(d, SERVER, ee)).toBe('handshake');
    open(d, SERVER, cert);
    expect(open(d, SERVER, fin)).toBe('handshake');
    expect(open(d, SERVER, seal13(keys.serverApp, 0, Buffer.from('HTTP/1.1 200 OK\r\n\r\n'), 23))).toBe('data:HTTP/1.1 200 OK\r\n\r\n');
  });
});
