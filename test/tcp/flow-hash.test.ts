/**
 * The flow table against crafted addresses (issue 9, point 2): the structure is asserted (chain
 * lengths, what was tracked and counted), never a time.
 */
import { describe, expect, it } from 'vitest';
import { FlowTable, MAX_CHAIN, type FlowEvents } from '../../src/tcp/flows.js';
import { endpointHash, keyedEndpointHash, newFlowHashKey } from '../../src/tcp/flow-hash.js';
import type { StreamSink } from '../../src/tcp/stream.js';
import { newPacketView, TCP_ACK, TCP_SYN, type PacketView } from '../../src/decode/packet.js';
import { DEFAULT_LIMITS } from '../../src/config/limits.js';
import { prng } from '../helpers/prng.js';

// ---------------------------------------------------------------------------------------------
// The attacker's model: the unkeyed hash the table used before this change. Every step of it is
// a multiplication by an odd constant or an xor-shift, both invertible, so for any address
// prefix an attacker can compute the last address word that lands a SYN on a chosen hash.
// ---------------------------------------------------------------------------------------------

function unkeyedMix(w0: number, w1: number, w2: number, w3: number, port: number): number {
  let h = Math.imul(w0 ^ 0x9e3779b9, 0x85ebca6b);
  h = Math.imul(h ^ w1 ^ (h >>> 15), 0xc2b2ae35);
  h = Math.imul(h ^ w2 ^ (h >>> 13), 0x27d4eb2f);
  h = Math.imul(h ^ w3 ^ (h >>> 16), 0x165667b1);
  return Math.imul(h ^ port ^ (h >>> 15), 0x85ebca6b);
}

/** The inverse of an odd number modulo 2^32 (Newton's iteration). */
function inverse(c: number): number {
  let x = c;
  for (let i = 0; i < 5; i++) x = Math.imul(x, 2 - Math.imul(c, x));
  return x;
}

/** The w3 that makes unkeyedMix(w0, w1, w2, w3, port) equal `target`. */
function craftW3(w0: number, w1: number, w2: number, port: number, target: number): number {
  let h = Math.imul(w0 ^ 0x9e3779b9, 0x85ebca6b);
  h = Math.imul(h ^ w1 ^ (h >>> 15), 0xc2b2ae35);
  const h2 = Math.imul(h ^ w2 ^ (h >>> 13), 0x27d4eb2f);
  // out = imul(z, C5) with z = h3 ^ (h3 >>> 15) ^ port
  const z = Math.imul(target, inverse(0x85ebca6b)) ^ port;
  const h3 = z ^ (z >>> 15) ^ (z >>> 30); // inverts x ^ (x >>> 15)
  return Math.imul(h3, inverse(0x165667b1)) ^ h2 ^ (h2 >>> 16);
}

const SERVER = { w: [0x20010db8, 0, 0, 0x80], port: 80 };
const PREFIX = [0x20010db8, 0x00010002]; // one /64: 2001:db8:1:2::/64
const N = 100_000;

/** N clients in one /64, every one crafted to the same unkeyed hash as the first. */
function craftedClients(): Array<[number, number, number, number, number]> {
  const port = 40000;
  const target = unkeyedMix(PREFIX[0], PREFIX[1], 0, 1, port);
  const out: Array<[number, number, number, number, number]> = [];
  for (let i = 0; i < N; i++) out.push([PREFIX[0], PREFIX[1], i + 1, craftW3(PREFIX[0], PREFIX[1], i + 1, port, target) >>> 0, port]);
  return out;
}

function syn(c: [number, number, number, number, number]): PacketView {
  const v = newPacketView();
  v.ipVersion = 6;
  [v.src0, v.src1, v.src2, v.src3, v.srcPort] = c;
  [v.dst0, v.dst1, v.dst2, v.dst3] = SERVER.w;
  v.dstPort = SERVER.port;
  v.seq = 1000;
  v.flags = TCP_SYN;
  return v;
}

const noEvents: FlowEvents = {
  flowOpened: () => true,
  attach: (): StreamSink => ({ data() {}, gap() {}, end() {} }),
  closing() {},
  flowFinished() {},
};

const EMPTY = Buffer.alloc(0);

describe('flow table hash: crafted keys', () => {
  it('the crafted set really defeats an unkeyed hash: every client has the same one', () => {
    const clients = craftedClients();
    const hashes = new Set(clients.map((c) => (unkeyedMix(...c) + unkeyedMix(SERVER.w[0], SERVER.w[1], SERVER.w[2], SERVER.w[3], SERVER.port)) | 0));
    expect(new Set(clients.map((c) => `${c[2]}:${c[3]}`)).size).toBe(N); // distinct addresses
    expect(hashes.size).toBe(1);
  });

  it('under the per-process key they spread: every chain stays short and every flow is tracked', () => {
    const table = new FlowTable({ ...DEFAULT_LIMITS, maxFlows: N + 1 }, noEvents);
    let ts = 1000;
    for (const c of craftedClients()) table.segment(syn(c), EMPTY, (ts += 1e-5));
    const { chains, longest } = table.chainStats();
    expect(table.size).toBe(N);
    expect(table.counters.chainFull).toBe(0);
    // 100,000 random 32-bit values: about one pair shares a value, three alike is vanishingly rare.
    expect(longest).toBeLessThanOrEqual(3);
    expect(chains).toBeGreaterThan(N - 10);
  });

  it('even with hashes the attacker chooses, no chain grows past MAX_CHAIN: the rest is refused and counted', () => {
    // An attacker who knew the key could at best make every flow collide: a constant hash.
    const table = new FlowTable({ ...DEFAULT_LIMITS, maxFlows: N + 1 }, noEvents, () => 42);
    let ts = 1000;
    const clients = craftedClients().slice(0, 10_000);
    for (const c of clients) table.segment(syn(c), EMPTY, (ts += 1e-5));
    expect(table.chainStats()).toEqual({ chains: 1, longest: MAX_CHAIN });
    expect(table.size).toBe(MAX_CHAIN);
    expect(table.counters.chainFull).toBe(clients.length - MAX_CHAIN);
    // The flows it holds still work: a SYN-ACK from the server finds the first one.
    const back = syn(clients[0]);
    [back.src0, back.src1, back.src2, back.src3, back.srcPort] = [...SERVER.w, SERVER.port] as [number, number, number, number, number];
    [back.dst0, back.dst1, back.dst2, back.dst3, back.dstPort] = clients[0];
    back.flags = TCP_SYN | TCP_ACK;
    back.ack = 1001;
    table.segment(back, EMPTY, (ts += 1e-5));
    expect(table.size).toBe(MAX_CHAIN);
    expect(table.counters.flowsCreated).toBe(MAX_CHAIN);
  });
});

describe('flow table hash: the key', () => {
  it('is the same for both directions of a connection', () => {
    const table = new FlowTable(DEFAULT_LIMITS, noEvents);
    const a = syn([PREFIX[0], PREFIX[1], 7, 9, 40000]);
    const b = newPacketView();
    [b.src0, b.src1, b.src2, b.src3, b.srcPort] = [...SERVER.w, SERVER.port] as [number, number, number, number, number];
    [b.dst0, b.dst1, b.dst2, b.dst3, b.dstPort] = [PREFIX[0], PREFIX[1], 7, 9, 40000];
    expect(table.hashOf(a)).toBe(table.hashOf(b));
  });

  it('differs from table to table (a fresh random key each), so one process\'s collisions are not another\'s', () => {
    const v = syn([PREFIX[0], PREFIX[1], 7, 9, 40000]);
    const seen = new Set<number>();
    for (let i = 0; i < 8; i++) seen.add(new FlowTable(DEFAULT_LIMITS, noEvents).hashOf(v));
    expect(seen.size).toBeGreaterThan(6);
  });

  it('depends on every word and on the port', () => {
    const key = newFlowHashKey();
    const base = endpointHash(key, 1, 2, 3, 4, 80);
    expect(endpointHash(key, 0, 2, 3, 4, 80)).not.toBe(base);
    expect(endpointHash(key, 1, 0, 3, 4, 80)).not.toBe(base);
    expect(endpointHash(key, 1, 2, 0, 4, 80)).not.toBe(base);
    expect(endpointHash(key, 1, 2, 3, 0, 80)).not.toBe(base);
    expect(endpointHash(key, 1, 2, 3, 4, 81)).not.toBe(base);
    expect(keyedEndpointHash(key)(1, 2, 3, 4, 80)).toBe(base);
  });

  it('is HalfSipHash-1-3 as written in the textbook way (a state array, one SipRound function): the written-out rounds change nothing', () => {
    const st = new Int32Array(4);
    const round = () => {
      let [v0, v1, v2, v3] = st;
      v0 = (v0 + v1) | 0; v1 = (v1 << 5) | (v1 >>> 27); v1 ^= v0; v0 = (v0 << 16) | (v0 >>> 16);
      v2 = (v2 + v3) | 0; v3 = (v3 << 8) | (v3 >>> 24); v3 ^= v2;
      v0 = (v0 + v3) | 0; v3 = (v3 << 7) | (v3 >>> 25); v3 ^= v0;
      v2 = (v2 + v1) | 0; v1 = (v1 << 13) | (v1 >>> 19); v1 ^= v2; v2 = (v2 << 16) | (v2 >>> 16);
      st.set([v0, v1, v2, v3]);
    };
    const textbook = (k: { k0: number; k1: number }, words: number[]): number => {
      st.set([k.k0, k.k1, 0x6c796765 ^ k.k0, 0x74656462 ^ k.k1]);
      for (const m of words) {
        st[3] ^= m;
        round(); // c = 1 compression round
        st[0] ^= m;
      }
      st[2] ^= 0xff;
      round(); round(); round(); // d = 3 finalization rounds
      return st[1] ^ st[3];
    };
    const rnd = prng(77);
    const word = () => (rnd() * 2 ** 32) | 0;
    for (let i = 0; i < 20_000; i++) {
      const key = { k0: word(), k1: word() };
      const w = [word(), word(), word(), word()];
      const port = (rnd() * 65536) | 0;
      // The fifth word: the port, and the message length (20 bytes) in the top byte as SipHash pads.
      expect(endpointHash(key, w[0], w[1], w[2], w[3], port)).toBe(textbook(key, [...w, port | (20 << 24)]));
    }
  });

  it('spreads sequential keys evenly over the low bits (what a hash table indexes by)', () => {
    const h = keyedEndpointHash();
    const buckets = new Uint32Array(256);
    for (let i = 0; i < 65536; i++) buckets[h(0x0a000000 + i, 0, 0, 0, 80) & 255]++;
    // 256 expected per bucket; a binomial's spread is about 16.
    expect(Math.max(...buckets)).toBeLessThan(256 + 100);
    expect(Math.min(...buckets)).toBeGreaterThan(256 - 100);
  });
});

