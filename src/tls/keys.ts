/**
 * TLS key derivation from key-log secrets, with node:crypto's HMAC only (no TLS library).
 *
 * - TLS 1.3 (RFC 8446 7.1, 7.3): a traffic secret from the key log (CLIENT/SERVER_HANDSHAKE_
 *   TRAFFIC_SECRET, CLIENT/SERVER_TRAFFIC_SECRET_0) gives the write key and the 12-byte IV by
 *   HKDF-Expand-Label(secret, "key"/"iv", "", length). Only the Expand half of HKDF is needed
 *   (the secret already is a PRK), so it is built on HMAC here: node's `hkdfSync` always
 *   runs Extract first.
 * - TLS 1.2 (RFC 5246 5, 6.3): the CLIENT_RANDOM line's master secret gives the key block
 *   PRF(master, "key expansion", server_random + client_random). AEAD suites have no MAC keys, so
 *   the block is client key, server key, client IV, server IV. AES-GCM (RFC 5288) takes a 4-byte
 *   implicit IV and sends an 8-byte explicit nonce per record; ChaCha20-Poly1305 (RFC 7905) takes
 *   a 12-byte IV XORed with the sequence number, like TLS 1.3.
 *
 * Call order: look the suite up by its code point (`tls13Suite`, `tls12Suite`: the ServerHello
 * says it), then derive (`tls13TrafficKeys` per secret and direction, `tls12KeyBlock` once per
 * connection), hand the keys to `aead.ts`, and `wipeKeys` them when the connection ends. Nothing
 * here logs, and no derived buffer is cached: the caller owns every key it gets.
 */
import { createHmac } from 'node:crypto';

export type HashName = 'sha256' | 'sha384';
export type AeadAlgorithm = 'aes-128-gcm' | 'aes-256-gcm' | 'chacha20-poly1305';

export interface SuiteInfo {
  /** IANA code point (ServerHello cipher_suite). */
  id: number;
  name: string;
  aead: AeadAlgorithm;
  hash: HashName;
  keyLength: number;
  /** TLS 1.3 and TLS 1.2 ChaCha20: 12; TLS 1.2 AES-GCM: 4 (the implicit salt). */
  ivLength: number;
}

const HASH_LENGTH: Record<HashName, number> = { sha256: 32, sha384: 48 };

export function hashLength(hash: HashName): number {
  return HASH_LENGTH[hash];
}

/** TLS 1.3 suites (RFC 8446 B.4); CCM suites are not offered by the clients we see. */
export const TLS13_SUITES: readonly SuiteInfo[] = [
  { id: 0x1301, name: 'TLS_AES_128_GCM_SHA256', aead: 'aes-128-gcm', hash: 'sha256', keyLength: 16, ivLength: 12 },
  { id: 0x1302, name: 'TLS_AES_256_GCM_SHA384', aead: 'aes-256-gcm', hash: 'sha384', keyLength: 32, ivLength: 12 },
  { id: 0x1303, name: 'TLS_CHACHA20_POLY1305_SHA256', aead: 'chacha20-poly1305', hash: 'sha256', keyLength: 32, ivLength: 12 },
];

/** TLS 1.2 ECDHE AEAD suites (RFC 5289, RFC 7905); the PRF hash is the suite's. */
export const TLS12_SUITES: readonly SuiteInfo[] = [
  { id: 0xc02b, name: 'TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256', aead: 'aes-128-gcm', hash: 'sha256', keyLength: 16, ivLength: 4 },
  { id: 0xc02c, name: 'TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384', aead: 'aes-256-gcm', hash: 'sha384', keyLength: 32, ivLength: 4 },
  { id: 0xc02f, name: 'TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256', aead: 'aes-128-gcm', hash: 'sha256', keyLength: 16, ivLength: 4 },
  { id: 0xc030, name: 'TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384', aead: 'aes-256-gcm', hash: 'sha384', keyLength: 32, ivLength: 4 },
  { id: 0xcca8, name: 'TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256', aead: 'chacha20-poly1305', hash: 'sha256', keyLength: 32, ivLength: 12 },
  { id: 0xcca9, name: 'TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256', aead: 'chacha20-poly1305', hash: 'sha256', keyLength: 32, ivLength: 12 },
];

/** The suite for a TLS 1.3 code point, or undefined (then the connection is not decryptable). */
export function tls13Suite(id: number): SuiteInfo | undefined {
  return TLS13_SUITES.find((s) => s.id === id);
}

/** The suite for a TLS 1.2 code point; CBC, RSA key exchange and others give undefined. */
export function tls12Suite(id: number): SuiteInfo | undefined {
  return TLS12_SUITES.find((s) => s.id === id);
}

/** Keys for one direction of one connection; `aead.ts` decrypts with them. */
export interface TrafficKeys {
  version: '1.2' | '1.3';
  aead: AeadAlgorithm;
  key: Buffer;
  /** 12 bytes, or 4 for TLS 1.2 AES-GCM (the rest of the nonce is in each record). */
  iv: Buffer;
}

/** HKDF-Expand (RFC 5869 2.3) over HMAC: T(i) = HMAC(prk, T(i-1) || info || i). */
export function hkdfExpand(hash: HashName, prk: Buffer, info: Buffer, length: number): Buffer {
  const hl = HASH_LENGTH[hash];
  if (length > 255 * hl) throw new RangeError('hkdfExpand: length too large');
  // One block (every TLS 1.3 key, iv and secret): one HMAC of info || 1, the info kept with its counter byte.
  if (length <= hl) return createHmac(hash, prk).update(withCounter(info)).digest().subarray(0, length);
  const out = Buffer.alloc(length);
  let prev = Buffer.alloc(0);
  let filled = 0;
  for (let i = 1; filled < length; i++) {
    prev = createHmac(hash, prk).update(prev).update(info).update(Buffer.of(i)).digest();
    filled += prev.copy(out, filled);
  }
  return out;
}

/**
 * HKDF-Expand-Label (RFC 8446 7.1): info is HkdfLabel { uint16 length; opaque label<7..255> =
 * "tls13 " + label; opaque context<0..255> }.
 */
/** info || 0x01 for a one-block HKDF-Expand; the labels with an empty context are made once (a connection derives eight). */
const ONE_BLOCK_INFO = new Map<Buffer, Buffer>();
function withCounter(info: Buffer): Buffer {
  const cached = ONE_BLOCK_INFO.get(info);
  if (cached) return cached;
  const b = Buffer.concat([info, Buffer.of(1)]);
  if (LABEL_INFO_VALUES.has(info)) ONE_BLOCK_INFO.set(info, b);
  return b;
}
const LABEL_INFO = new Map<string, Buffer>();
const LABEL_INFO_VALUES = new Set<Buffer>();

export function hkdfExpandLabel(hash: HashName, secret: Buffer, label: string, context: Buffer, length: number): Buffer {
  if (context.length === 0) {
    const k = `${label}/${length}`;
    let info = LABEL_INFO.get(k);
    if (!info) {
      info = labelInfo(label, context, length);
      if (LABEL_INFO.size < 16) {
        LABEL_INFO.set(k, info);
        LABEL_INFO_VALUES.add(info);
      }
    }
    return hkdfExpand(hash, secret, info, length);
  }
  return hkdfExpand(hash, secret, labelInfo(label, context, length), length);
}

function labelInfo(label: string, context: Buffer, length: number): Buffer {
  const fullLabel = Buffer.from(`tls13 ${label}`, 'latin1');
  const info = Buffer.alloc(2 + 1 + fullLabel.length + 1 + context.length);
  info.writeUInt16BE(length, 0);
  info[2] = fullLabel.length;
  fullLabel.copy(info, 3);
  info[3 + fullLabel.length] = context.length;
  context.copy(info, 4 + fullLabel.length);
  return info;
}

/**
 * A TLS 1.3 traffic secret's write key and IV (RFC 8446 7.3). Throws RangeError when the secret's
 * length is not the suite hash's: the key log parser only stores 32- or 48-byte secrets, so this
 * means the caller paired a SHA-384 suite with a SHA-256 secret (a bug, not wire data).
 */
export function tls13TrafficKeys(suite: SuiteInfo, secret: Buffer): TrafficKeys {
  if (secret.length !== HASH_LENGTH[suite.hash]) {
    throw new RangeError(`tls13TrafficKeys: ${suite.name} needs a ${HASH_LENGTH[suite.hash]}-byte secret`);
  }
  const empty = Buffer.alloc(0);
  return {
    version: '1.3',
    aead: suite.aead,
    key: hkdfExpandLabel(suite.hash, secret, 'key', empty, suite.keyLength),
    iv: hkdfExpandLabel(suite.hash, secret, 'iv', empty, 12),
  };
}

/** P_hash (RFC 5246 5): HMAC(secret, A(i) || seed) with A(0) = seed, A(i) = HMAC(secret, A(i-1)). */
function pHash(hash: HashName, secret: Buffer, seed: Buffer, length: number): Buffer {
  const out = Buffer.alloc(length);
  let a = seed;
  let filled = 0;
  while (filled < length) {
    a = createHmac(hash, secret).update(a).digest();
    const block = createHmac(hash, secret).update(a).update(seed).digest();
    filled += block.copy(out, filled);
  }
  return out;
}

/** The TLS 1.2 PRF (RFC 5246 5): P_<hash>(secret, label + seed), the suite's hash. */
export function tls12Prf(hash: HashName, secret: Buffer, label: string, seed: Buffer, length: number): Buffer {
  return pHash(hash, secret, Buffer.concat([Buffer.from(label, 'latin1'), seed]), length);
}

/** Both directions' keys of a TLS 1.2 connection. */
export interface Tls12Keys {
  client: TrafficKeys;
  server: TrafficKeys;
}

/**
 * The TLS 1.2 key block (RFC 5246 6.3) for an AEAD suite: PRF(master, "key expansion",
 * server_random + client_random), cut into client key, server key, client IV, server IV (the MAC
 * keys have length 0 for AEAD suites). Throws RangeError on a master secret that is not 48 bytes
 * or randoms that are not 32 (caller bugs: the parser and the handshake parser check both).
 */
export function tls12KeyBlock(suite: SuiteInfo, master: Buffer, clientRandom: Buffer, serverRandom: Buffer): Tls12Keys {
  if (master.length !== 48 || clientRandom.length !== 32 || serverRandom.length !== 32) {
    throw new RangeError('tls12KeyBlock: master secret is 48 bytes and randoms are 32');
  }
  const k = suite.keyLength;
  const v = suite.ivLength;
  const block = tls12Prf(suite.hash, master, 'key expansion', Buffer.concat([serverRandom, clientRandom]), 2 * k + 2 * v);
  // Copies (not views into `block`), so wiping one direction's keys cannot touch the other's.
  const keys = {
    client: { version: '1.2' as const, aead: suite.aead, key: Buffer.from(block.subarray(0, k)), iv: Buffer.from(block.subarray(2 * k, 2 * k + v)) },
    server: { version: '1.2' as const, aead: suite.aead, key: Buffer.from(block.subarray(k, 2 * k)), iv: Buffer.from(block.subarray(2 * k + v, 2 * k + 2 * v)) },
  };
  block.fill(0);
  return keys;
}

/** Overwrite key material the caller is done with (connection ended or evicted). */
export function wipeKeys(keys: TrafficKeys): void {
  keys.key.fill(0);
  keys.iv.fill(0);
}
