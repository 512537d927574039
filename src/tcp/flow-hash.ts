/**
 * The flow table's hash: the HalfSipHash-1-3 construction (Aumasson and Bernstein's SipHash on
 * 32-bit words, the variant the Linux kernel uses for its hash tables on 32-bit machines) over
 * five words, under a per-process random key.
 *
 * Why keyed: the addresses and ports are chosen by whoever sends the packets. With an unkeyed
 * hash every step can be inverted, and 100,000 SYNs from one IPv6 /64 crafted to share one hash
 * took 120 s to analyse instead of 0.5 s (every lookup walked one long chain); live, 2,000 such
 * packets a second made tcpdump drop 76% of all traffic. Under a secret key nobody outside the
 * process can aim at a chain; `MAX_CHAIN` in flows.ts bounds the chain even for someone who could.
 *
 * An endpoint (four address words and the port) is hashed on its own; a flow's hash is the sum of
 * its two endpoints' hashes, so both directions of a connection find the same chain.
 */
import { randomBytes } from 'node:crypto';

export interface FlowHashKey {
  readonly k0: number;
  readonly k1: number;
}

/** A fresh key from the operating system's random source. */
export function newFlowHashKey(): FlowHashKey {
  const b = randomBytes(8);
  return { k0: b.readInt32LE(0), k1: b.readInt32LE(4) };
}

/** A hash of one endpoint (four address words and the port) to 32 bits. */
export type EndpointHash = (w0: number, w1: number, w2: number, w3: number, port: number) => number;

/** `endpointHash` under `key` (a fresh random one by default). */
export function keyedEndpointHash(key: FlowHashKey = newFlowHashKey()): EndpointHash {
  return (w0, w1, w2, w3, port) => endpointHash(key, w0, w1, w2, w3, port);
}

/** The four state words, in one preallocated array: no allocation per packet. */
const v = new Int32Array(4);

/** One SipRound on 32-bit words (rotations 5, 16, 8, 7, 13, 16). */
function round(): void {
  let v0 = v[0], v1 = v[1], v2 = v[2], v3 = v[3];
  v0 = (v0 + v1) | 0; v1 = (v1 << 5) | (v1 >>> 27); v1 ^= v0; v0 = (v0 << 16) | (v0 >>> 16);
  v2 = (v2 + v3) | 0; v3 = (v3 << 8) | (v3 >>> 24); v3 ^= v2;
  v0 = (v0 + v3) | 0; v3 = (v3 << 7) | (v3 >>> 25); v3 ^= v0;
  v2 = (v2 + v1) | 0; v1 = (v1 << 13) | (v1 >>> 19); v1 ^= v2; v2 = (v2 << 16) | (v2 >>> 16);
  v[0] = v0; v[1] = v1; v[2] = v2; v[3] = v3;
}

/** One message word: one compression round (the "1" of 1-3). */
function absorb(m: number): void {
  v[3] ^= m;
  round();
  v[0] ^= m;
}

/** HalfSipHash-1-3 of the five words (w0..w3, port), 32-bit result. */
export function endpointHash(key: FlowHashKey, w0: number, w1: number, w2: number, w3: number, port: number): number {
  v[0] = key.k0;
  v[1] = key.k1;
  v[2] = 0x6c796765 ^ key.k0;
  v[3] = 0x74656462 ^ key.k1;
  absorb(w0);
  absorb(w1);
  absorb(w2);
  absorb(w3);
  // The last word carries the port and, as SipHash's padding does, the message length (20 bytes).
  absorb((port & 0xffff) | (20 << 24));
  // Finalization: three rounds (the "3").
  v[2] ^= 0xff;
  round();
  round();
  round();
  return v[1] ^ v[3];
}
