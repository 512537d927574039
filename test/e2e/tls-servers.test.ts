/**
 * HTTPS (issue 13): `test/fixtures/tls/tls-servers.pcap` was captured by
 * `test/fixtures/tls/generate.sh` on loopback from nginx 1.22 (TLS 1.3 only on 18110, TLS 1.2 only
 * on 18111, HTTP/2 over TLS on 18112; keepalive_requests 3, keepalive_timeout 1s, session cache
 * and tickets) with curl (every TLS 1.3 and ECDHE AEAD TLS 1.2 suite, several URLs, one-shot, no
 * SNI, --http2), openssl s_client (-reconnect: session-ID and ticket resumption; -sess_out /
 * -sess_in: TLS 1.3 pre_shared_key; K: a KeyUpdate between two GETs; -groups X25519:P-256 against
 * 18113, P-256 only: a HelloRetryRequest), Python and Node.js keep-alive clients and h2load;
 * `keylog.txt` is the key log all of them but h2load wrote. Its manifest gives per connection
 * version, cipher, resumption, SNI, ALPN, the true request count and the close reason with and
 * without keys, verified by the generator's independent record walker and by tshark decrypting
 * with the key log.
 *
 * Without keys the product estimates requests from record turns and reads the close from
 * close_notify and TCP; with `--tls-keylog` every request and close reason is exact. The second
 * suite counts the requests tshark decrypts on the committed capture and compares; the third
 * regenerates the capture on this machine and checks the fresh one the same way.
 */
import { describe, expect, it } from 'vitest';
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { analyzeFile } from '../helpers/engine.js';
import { readKeylogFile } from '../../src/tls/keylog-file.js';
import type { ConnectionRecord } from '../../src/conn/records.js';

const FIXTURES = join(import.meta.dirname, '../fixtures/tls');
const TLS13 = '127.0.0.1:18110';
const TLS12 = '127.0.0.1:18111';
const H2 = '127.0.0.1:18112';

interface TlsEntry {
  scenario: string;
  server: string;
  client: string;
  keylogged: boolean;
  expectedVersion: '1.2' | '1.3';
  expectedCipher: string;
  expectedResumed: boolean;
  /** The first ServerHello was a HelloRetryRequest (its RFC 8446 random). */
  expectedHelloRetryRequest: boolean;
  expectedSni: string | null;
  expectedAlpnOffered: string[];
  expectedAlpn: string | null;
  expectedProtocolDecrypted: 'http/1.1' | 'h2';
  expectedRequests: number;
  /** Answered client runs (turns); null for h2. */
  expectedRequestsEstimated: number | null;
  expectedReason: string;
  expectedReasonNoKeys: string;
  expectedClosedBy: 'client' | 'server';
  expectedCloseNotifyBy: 'client' | 'server' | null;
}

const load = (dir: string): TlsEntry[] => JSON.parse(readFileSync(join(dir, 'manifest.json'), 'utf8'));

async function analyze(dir: string, withKeys: boolean): Promise<Map<string, ConnectionRecord>> {
  const tlsKeys = withKeys ? readKeylogFile(join(dir, 'keylog.txt')).source : null;
  const facts = await analyzeFile(join(dir, 'tls-servers.pcap'), { tlsKeys });
  expect(facts.capture.problem).toBeNull();
  expect(facts.engine.stats().nonHttp.tls).toBe(0);
  return new Map(facts.closed.map((c) => [`${c.client}>${c.server}`, c]));
}

/**
 * h2load's connections show no h2 record pattern of their own (it coalesces its SETTINGS ACK):
 * without keys they are known as h2 only once another connection to the server showed it, which
 * depends on the order the connections ran. Their estimate is then null (h2) or the turns.
 */
const learnsH2 = (e: TlsEntry): boolean => e.scenario.startsWith('h2load');

/** The close reason without keys: for h2 (no request count in TLS 1.3) no limit can be inferred, so a prompt server close is server_close. */
function noKeysReason(e: TlsEntry): unknown {
  // Not yet known as h2, an h2load connection is read by the HTTP/1.1 turn rules: its last
  // client run (a SETTINGS ACK or GOAWAY) unanswered gives aborted or race, a limit may be inferred.
  if (learnsH2(e)) return expect.toSatisfy((r: unknown) => r === e.expectedReasonNoKeys || ['aborted', 'race', 'max_requests', 'server_close'].includes(r as string));
  if (e.expectedProtocolDecrypted !== 'h2' || e.expectedReasonNoKeys !== 'max_requests') return e.expectedReasonNoKeys;
  return 'server_close';
}

/** The handshake facts, the estimate and the no-keys close reason of every connection. */
async function expectWithoutKeys(dir: string, manifest: TlsEntry[]): Promise<void> {
  const byTuple = await analyze(dir, false);
  expect(byTuple.size).toBe(manifest.length);
  const got = manifest.map((e) => {
    const c = byTuple.get(`${e.client}>${e.server}`);
    const t = c?.tls;
    return {
      scenario: e.scenario, client: e.client, protocol: c?.protocol, version: t?.version, cipher: t?.cipher, resumed: t?.resumed,
      helloRetryRequest: t?.helloRetryRequest,
      sni: t?.sni, alpnOffered: t?.alpnOffered, decrypted: t?.decrypted, turns: t?.turns, requestsEstimated: c?.requestsEstimated, reason: c?.closeReason,
      // the TLS 1.2 ServerHello shows the server's ALPN choice; TLS 1.3 encrypts it
      alpn: t?.alpn,
    };
  });
  const want = manifest.map((e) => {
    const h2 = e.expectedProtocolDecrypted === 'h2';
    return {
      scenario: e.scenario, client: e.client, protocol: 'tls', version: e.expectedVersion, cipher: e.expectedCipher, resumed: e.expectedResumed,
      helloRetryRequest: e.expectedHelloRetryRequest,
      sni: e.expectedSni, alpnOffered: e.expectedAlpnOffered, decrypted: false,
      // Turns are answered client runs; the estimate also counts a run left unanswered (the race's
      // request, sent and never answered), so for sequential HTTP/1.1 it is the true count.
      turns: e.expectedRequestsEstimated ?? expect.any(Number),
      requestsEstimated: !h2 ? e.expectedRequests : learnsH2(e) ? expect.toSatisfy((v: unknown) => v === null || typeof v === 'number') : null,
      reason: noKeysReason(e),
      alpn: e.expectedVersion === '1.2' ? e.expectedAlpn : null,
    };
  });
  expect(got).toEqual(want);
}

/** With the key log: exact requests, the plaintext's protocol, the close reason from the decrypted HTTP. */
async function expectWithKeys(dir: string, manifest: TlsEntry[]): Promise<void> {
  const byTuple = await analyze(dir, true);
  expect(byTuple.size).toBe(manifest.length);
  const got = manifest.map((e) => {
    const c = byTuple.get(`${e.client}>${e.server}`);
    return { scenario: e.scenario, client: e.client, protocol: c?.protocol, decrypted: c?.tls?.decrypted, requests: c?.requests, requestsEstimated: c?.requestsEstimated, reason: c?.closeReason, alpn: c?.tls?.alpn, closeNotifyBy: c?.tls?.closeNotifyBy,
      helloRetryRequest: c?.tls?.helloRetryRequest };
  });
  const want = manifest.map((e) => {
    if (!e.keylogged) {
      // h2load writes no key log: estimated as without keys.
      const either = expect.toSatisfy((v: unknown) => v === null || typeof v === 'number');
      return {
        scenario: e.scenario, client: e.client, protocol: 'tls', decrypted: false, requests: learnsH2(e) ? expect.any(Number) : 0,
        requestsEstimated: learnsH2(e) ? either : null, reason: noKeysReason(e), alpn: null, closeNotifyBy: e.expectedCloseNotifyBy,
        helloRetryRequest: e.expectedHelloRetryRequest,
      };
    }
    // A connection with no application data (s_client -reconnect) has keys but no plaintext to tell its protocol by.
    const silent = e.expectedRequests === 0 && e.expectedAlpn === null;
    return {
      scenario: e.scenario, client: e.client, protocol: silent ? 'tls' : e.expectedProtocolDecrypted, decrypted: !silent, requests: e.expectedRequests,
      requestsEstimated: silent ? 0 : null, reason: e.expectedReason, alpn: e.expectedAlpn, closeNotifyBy: e.expectedCloseNotifyBy,
      helloRetryRequest: e.expectedHelloRetryRequest,
    };
  });
  expect(got).toEqual(want);
}

describe('HTTPS reuse on nginx with curl, openssl, Python, Node.js and h2load (committed capture)', () => {
  const manifest = load(FIXTURES);
  const on = (server: string) => manifest.filter((e) => e.server === server);

  it('covers both versions, every suite, resumption, ALPN and the close reasons the issue names', () => {
    const suites = new Set(manifest.map((e) => `${e.expectedVersion} ${e.expectedCipher}`));
    for (const s of [
      '1.3 TLS_AES_128_GCM_SHA256', '1.3 TLS_AES_256_GCM_SHA384', '1.3 TLS_CHACHA20_POLY1305_SHA256',
      '1.2 TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256', '1.2 TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384', '1.2 TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256',
      '1.2 TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384', '1.2 TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256', '1.2 TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256',
    ]) expect(suites.has(s), s).toBe(true);
    // resumed by session id and by ticket (TLS 1.2), by pre_shared_key (TLS 1.3)
    expect(on(TLS12).filter((e) => e.expectedResumed).length).toBeGreaterThanOrEqual(4);
    expect(on(TLS13).some((e) => e.expectedResumed)).toBe(true);
    expect(manifest.some((e) => e.expectedSni === null)).toBe(true);
    expect(on(H2).filter((e) => e.expectedAlpn === 'h2').length).toBeGreaterThanOrEqual(3);
    for (const r of ['max_requests', 'idle_timeout', 'client_close', 'client_idle', 'race', 'reset', 'unused']) {
      expect(manifest.some((e) => e.expectedReason === r), r).toBe(true);
    }
    expect(manifest.filter((e) => e.keylogged).length).toBeGreaterThan(30);
    // a HelloRetryRequest (18113: P-256 only, s_client offers an X25519 share first) and a KeyUpdate
    // between two requests (s_client's K command), both with two-way request traffic to decrypt
    expect(manifest.some((e) => e.expectedHelloRetryRequest)).toBe(true);
    expect(manifest.some((e) => e.scenario === 'openssl_tls13_key_update' && e.keylogged && e.expectedRequests === 2)).toBe(true);
  });

  it('without keys: version, cipher, resumption, SNI, ALPN, requests estimated from turns, and the close reason', async () => {
    await expectWithoutKeys(FIXTURES, manifest);
  });

  it('with --tls-keylog: every logged connection decrypted, exact requests and close reasons', async () => {
    await expectWithKeys(FIXTURES, manifest);
  });

  it('saves the TLS handshake on reuse: a reused request saves more than the TCP round trip', async () => {
    const facts = await analyzeFile(join(FIXTURES, 'tls-servers.pcap'));
    const reused = facts.requests.filter(({ conn, req }) => req.reused && conn.handshakeRtt !== null && conn.tls?.handshakeSeconds != null);
    expect(reused.length).toBeGreaterThan(10);
    for (const { conn, req } of reused) expect(req.savedSeconds).toBeCloseTo(conn.handshakeRtt! + conn.tls!.handshakeSeconds!, 9);
    // a full handshake takes longer than a resumed one on the same server (nginx signs with its key only in full ones)
    const full = facts.closed.filter((c) => c.server === TLS12 && c.tls?.resumed === false && c.tls.handshakeSeconds !== null).map((c) => c.tls!.handshakeSeconds!);
    const resumed = facts.closed.filter((c) => c.server === TLS12 && c.tls?.resumed === true && c.tls.handshakeSeconds !== null);
    expect(full.length).toBeGreaterThan(3);
    expect(resumed.length).toBeGreaterThan(3);
    expect(resumed.every((c) => c.tls!.resumptionSavedSeconds >= 0)).toBe(true);
    expect(resumed.some((c) => c.tls!.resumptionSavedSeconds > 0)).toBe(true);
  });
});

const haveTshark = spawnSync('sh', ['-c', 'command -v tshark']).status === 0;

// .ci/run installs tshark.
describe.runIf(haveTshark)('HTTPS requests decrypted by tshark agree with --tls-keylog (committed capture)', () => {
  it('counts the same HTTP/1.1 requests and HTTP/2 client streams per connection', async () => {
    const pcap = join(FIXTURES, 'tls-servers.pcap');
    const out = execFileSync('tshark', [
      '-r', pcap, '-o', `tls.keylog_file:${join(FIXTURES, 'keylog.txt')}`,
      '-d', 'tcp.port==18110,tls', '-d', 'tcp.port==18111,tls', '-d', 'tcp.port==18112,tls', '-d', 'tcp.port==18113,tls',
      '-Y', 'http.request || (http2.type == 1 && http2.streamid % 2 == 1 && tcp.dstport >= 18110 && tcp.dstport <= 18112)',
      '-T', 'fields', '-E', 'occurrence=a', '-e', 'tcp.srcport', '-e', 'http.request.method', '-e', 'http2.type', '-e', 'http2.streamid',
    ], { encoding: 'utf8', maxBuffer: 1 << 26 });
    // tshark: requests per client port (an HTTP/2 frame list may hold several HEADERS of client streams)
    const tshark = new Map<number, Set<string>>();
    for (const line of out.trim().split('\n')) {
      const [port, method, types, streams] = line.split('\t');
      const set = tshark.get(Number(port)) ?? new Set<string>();
      if (method) for (const m of method.split(',')) set.add(`h1:${set.size}:${m}`);
      if (types) {
        const ty = types.split(',');
        const ids = (streams ?? '').split(',');
        ty.forEach((t, i) => { if (t === '1' && Number(ids[i]) % 2 === 1) set.add(`h2:${ids[i]}`); });
      }
      tshark.set(Number(port), set);
    }
    const byTuple = await analyze(FIXTURES, true);
    const manifest = load(FIXTURES).filter((e) => e.keylogged);
    const got = manifest.map((e) => ({ client: e.client, requests: byTuple.get(`${e.client}>${e.server}`)?.requests }));
    const want = manifest.map((e) => ({ client: e.client, requests: tshark.get(Number(e.client.split(':')[1]))?.size ?? 0 }));
    expect(got).toEqual(want);
  });
});

const haveTools = ['nginx', 'tcpdump', 'curl', 'h2load', 'openssl', 'tshark', 'python3'].every((t) => spawnSync('sh', ['-c', `command -v ${t} || test -x /usr/sbin/${t}`]).status === 0);
const isRoot = process.getuid?.() === 0;

// CI (.ci/run) installs nginx, nghttp2-client, openssl, tshark and tcpdump and runs as root, so this
// runs there every time. Its ports (18110-18113) clash with no other generator's.
describe.runIf(haveTools && isRoot)('HTTPS reuse (regenerated now)', () => {
  it('regenerates the capture and key log with live servers and clients, and classifies every connection', async () => {
    const out = mkdtempSync(join(tmpdir(), 'ka-tls-'));
    try {
      execFileSync('bash', [join(FIXTURES, 'generate.sh'), out], { stdio: 'pipe', timeout: 90_000 });
      expect(existsSync(join(out, 'tls-servers.pcap'))).toBe(true);
      const manifest = load(out);
      await expectWithoutKeys(out, manifest);
      await expectWithKeys(out, manifest);
    } finally {
      rmSync(out, { recursive: true, force: true });
    }
  }, 120_000);
});
