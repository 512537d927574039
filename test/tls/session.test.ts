/**
 * The TLS session (src/tls/session.ts) on the real TLS fixture (test/fixtures/tls: nginx 1.22,
 * TLS 1.2 and 1.3, curl, openssl, Python, Node.js, h2load) under what a daemon meets: key log lines
 * that arrive after the records they open, wrong keys, lost packets and flipped bytes. The facts
 * of a connection never depend on when its keys came, wrong keys fall back to the estimate, and
 * bad input is counted, never thrown.
 */
import { describe, expect, it } from 'vitest';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Engine } from '../../src/conn/engine.js';
import { CaptureDecoder } from '../../src/capture/reader.js';
import type { ConnectionRecord } from '../../src/conn/records.js';
import type { SecretSource } from '../../src/session/session.js';
import { KeylogStore } from '../../src/tls/keylog.js';
import { collect } from '../helpers/packets.js';
import { prng } from '../helpers/prng.js';

const FIXTURE = join(import.meta.dirname, '../fixtures/tls');
const PCAP = readFileSync(join(FIXTURE, 'tls-servers.pcap'));
const KEYLOG = readFileSync(join(FIXTURE, 'keylog.txt'), 'latin1');
const MANIFEST: Array<{ scenario: string; client: string; server: string }> = JSON.parse(readFileSync(join(FIXTURE, 'manifest.json'), 'utf8'));

function packets() {
  const sink = collect();
  const d = new CaptureDecoder(sink);
  d.push(PCAP);
  d.end();
  return sink.packets;
}

function store(text = KEYLOG): KeylogStore {
  const s = new KeylogStore();
  s.push(text);
  s.end();
  return s;
}

/** A source the daemon's follower would be: not complete; `reveal(random)` decides when a random's lines are there. */
function lateSource(s: KeylogStore, reveal: (random: string, asked: number) => boolean): SecretSource {
  const asked = new Map<string, number>();
  return {
    get: (r) => {
      const n = (asked.get(r) ?? 0) + 1;
      asked.set(r, n);
      return reveal(r, n) ? s.get(r) : undefined;
    },
    delete: (r) => s.delete(r),
    complete: false,
    keyWaitSeconds: 3,
  };
}

function run(tlsKeys: SecretSource | null, mutate?: (bytes: Buffer, i: number) => Buffer | null): { closed: ConnectionRecord[]; engine: Engine; opened: number } {
  const engine = new Engine({ tlsKeys });
  const closed: ConnectionRecord[] = [];
  let opened = 0;
  engine.subscribe({ opened: () => opened++, closed: (c) => closed.push(c) });
  packets().forEach((p, i) => {
    const b = mutate ? mutate(Buffer.from(p.bytes), i) : p.bytes;
    if (b) engine.packet(p.linkType, b, 0, b.length, p.origLen, p.ts);
  });
  engine.finish();
  return { closed, engine, opened };
}

const facts = (cs: ConnectionRecord[]) =>
  cs.map((c) => ({ c: `${c.client}>${c.server}`, protocol: c.protocol, requests: c.requests, estimated: c.requestsEstimated, reason: c.closeReason, by: c.closedBy, decrypted: c.tls?.decrypted, resumed: c.tls?.resumed, alpn: c.tls?.alpn }))
    .sort((a, b) => (a.c < b.c ? -1 : 1));

describe('TLS session on the real fixture', () => {
  const upfront = run({ ...wrap(store()), complete: true, keyWaitSeconds: 0 });

  it('decrypts the connections it has lines for (the reference for the cases below)', () => {
    expect(upfront.closed.filter((c) => c.tls?.decrypted).length).toBeGreaterThan(20);
    expect(upfront.engine.stats().anomalies.tls_keys_missing).toBe(2); // h2load's two connections
  });

  it('keys that arrive after the ServerHello (the daemon following a key log): the records wait, then decrypt the same', () => {
    // Each connection's lines appear only at its second lookup: its first records are held.
    const late = run(lateSource(store(), (_r, asked) => asked >= 2));
    expect(facts(late.closed)).toEqual(facts(upfront.closed));
  });

  it('keys that never arrive while a connection lives: it is estimated, as without a key log, and counted', () => {
    const never = run(lateSource(store(), () => false));
    const none = run(null);
    // h2load's connections show no h2 record pattern of their own: whether they are known as h2
    // depends on when another connection to the server showed it, which the wait moves.
    const h2load = new Set(MANIFEST.filter((e) => e.scenario.startsWith('h2load')).map((e) => `${e.client}>${e.server}`));
    const keep = (cs: ConnectionRecord[]) => cs.filter((c) => !h2load.has(`${c.client}>${c.server}`));
    expect(h2load.size).toBe(2);
    expect(facts(keep(never.closed))).toEqual(facts(keep(none.closed)));
    expect(never.engine.stats().anomalies.tls_keys_missing).toBe(MANIFEST.length);
  });

  it('wrong keys (every secret altered): nothing decrypts, every connection is estimated as without keys, the failures counted', () => {
    const wrong = KEYLOG.replace(/^(\S+ [0-9a-f]{64} )([0-9a-f])/gim, (_m, head: string, c: string) => head + (c === '0' ? '1' : '0'));
    const r = run({ ...wrap(store(wrong)), complete: true, keyWaitSeconds: 0 });
    expect(facts(r.closed)).toEqual(facts(run(null).closed));
    expect(r.engine.stats().anomalies.tls_decrypt_failed).toBeGreaterThan(10);
  });

  it('lost packets (1 in 12, 20 seeds): never throws, every connection opened is closed once, losses counted', () => {
    for (let seed = 1; seed <= 20; seed++) {
      const rnd = prng(900 + seed);
      const r = run({ ...wrap(store()), complete: true, keyWaitSeconds: 0 }, (b) => (rnd() < 1 / 12 ? null : b));
      expect(r.closed.length).toBe(r.opened);
      const a = r.engine.stats().anomalies;
      expect((a.tcp_gap ?? 0) + (a.tls_resync ?? 0) + (a.tls_record_lost ?? 0)).toBeGreaterThan(0);
    }
  });

  it('flipped bytes in packets (30 seeds), with and without keys: never throws, the books add up', () => {
    for (let seed = 1; seed <= 30; seed++) {
      for (const keys of [true, false]) {
        const rnd = prng(4000 + seed);
        const r = run(keys ? { ...wrap(store()), complete: true, keyWaitSeconds: 0 } : null, (b) => {
          const flips = rnd() < 0.3 ? 1 + ((rnd() * 4) | 0) : 0;
          for (let k = 0; k < flips; k++) b[(rnd() * b.length) | 0] = (rnd() * 256) | 0;
          return b;
        });
        expect(r.closed.length).toBe(r.opened);
      }
    }
  });
});

function wrap(s: KeylogStore): Omit<SecretSource, 'complete' | 'keyWaitSeconds'> {
  return { get: (r) => s.get(r), delete: (r) => s.delete(r) };
}
