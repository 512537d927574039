/**
 * HTTP/2 in cleartext (issue 12): `test/fixtures/h2c/h2c-servers.pcap` was captured by
 * `test/fixtures/h2c/generate.sh` on loopback from nginx 1.22 (`listen ... http2`:
 * keepalive_requests 3 + keepalive_timeout 1s on one port, keepalive_time 1s on another), a
 * Node.js http2 server (session timeout 1 s, SETTINGS_MAX_CONCURRENT_STREAMS 4) and caddy 2.6
 * (h1 + h2c on one port: prior knowledge, `Upgrade: h2c`, and plain HTTP/1.1 connections
 * interleaved), driven by h2load, nghttp, curl, node:http2 and a raw frame client. Its manifest
 * names each connection's protocol, request (client stream) count, close reason and closing side
 * under the rules of issue 12; the generator's independent checker
 * (test/fixtures/h2c/check-capture.mjs, its own HTTP/2 frame reader) verified every entry
 * against the wire before it was written.
 *
 * The second suite regenerates the capture on this machine and checks the fresh one the same way.
 */
import { describe, expect, it } from 'vitest';
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, existsSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { analyzeFile } from '../helpers/engine.js';
import type { ManifestEntry } from '../helpers/manifest.js';

const FIXTURES = join(import.meta.dirname, '../fixtures/h2c');
const NGINX = '127.0.0.1:18100';
const NGINX_AGE = '127.0.0.1:18101';
const NODE = '127.0.0.1:18102';
const CADDY = '127.0.0.1:18103';

interface H2cEntry extends ManifestEntry {
  expectedProtocol: 'h2c' | 'http/1.1';
  expectedH2?: {
    goaways: Array<{ side: 'client' | 'server'; lastStreamId: number; errorCode: number }>;
    peakConcurrentStreams: number;
    streamsRefused: number;
  };
}

/** ManifestEntry's check (test/helpers/manifest.ts) plus the connection's protocol. */
async function expectH2cManifest(pcap: string, manifest: H2cEntry[]): Promise<void> {
  const facts = await analyzeFile(pcap);
  expect(facts.capture.problem).toBeNull();
  // ConnectionRecord gains `protocol` with issue 12 ('http/1.1', 'h2c', ...)
  const byTuple = new Map(facts.closed.map((c) => [`${c.client}>${c.server}`, c as typeof c & { protocol?: string }]));
  const got = manifest.map((e) => {
    const c = byTuple.get(`${e.client}>${e.server}`);
    return { scenario: e.scenario, client: e.client, protocol: c?.protocol, reason: c?.closeReason, closedBy: c?.closedBy, requests: c?.requests };
  });
  const want = manifest.map((e) => ({
    scenario: e.scenario, client: e.client, protocol: e.expectedProtocol, reason: e.expectedReason, closedBy: e.expectedClosedBy, requests: e.expectedRequests,
  }));
  expect(got).toEqual(want);
  expect(facts.closed.length).toBe(manifest.length);
}

describe('close reasons of h2c connections from nginx, Node.js http2 and caddy (committed capture)', () => {
  const manifest: H2cEntry[] = JSON.parse(readFileSync(join(FIXTURES, 'manifest.json'), 'utf8'));
  const on = (server: string) => manifest.filter((e) => e.server === server);
  const has = (server: string, reason: string, protocol = 'h2c') =>
    on(server).some((e) => e.expectedReason === reason && e.expectedProtocol === protocol);

  it('covers every close reason of issue 12 on real servers', () => {
    for (const r of ['max_requests', 'idle_timeout', 'client_close', 'client_idle', 'race', 'reset', 'unused']) expect(has(NGINX, r), `nginx ${r}`).toBe(true);
    expect(on(NGINX_AGE).every((e) => e.expectedReason === 'max_age')).toBe(true);
    for (const r of ['idle_timeout', 'client_close', 'aborted', 'unused']) expect(has(NODE, r), `Node.js ${r}`).toBe(true);
    for (const r of ['idle_timeout', 'client_close', 'race', 'unused']) expect(has(CADDY, r), `caddy ${r}`).toBe(true);
    for (const r of ['idle_timeout', 'client_close', 'client_idle']) expect(has(CADDY, r, 'http/1.1'), `caddy HTTP/1.1 ${r}`).toBe(true);
    // the limit inferences need several connections of one server: the same served count
    // (keepalive_requests), or different counts at a constant age (keepalive_time)
    expect(on(NGINX).filter((e) => e.expectedReason === 'max_requests').length).toBeGreaterThanOrEqual(3);
    const ages = on(NGINX_AGE).map((e) => e.expectedRequests);
    expect(ages.length).toBeGreaterThanOrEqual(3);
    expect(new Set(ages).size).toBe(ages.length);
    // refused streams: above nginx's last-stream-id, and Node.js's REFUSED_STREAM
    expect(manifest.filter((e) => (e.expectedH2?.streamsRefused ?? 0) > 0).map((e) => `${e.server} ${e.scenario}`))
      .toEqual(expect.arrayContaining([`${NGINX} max_requests_refused`, `${NGINX} race`, `${NODE} refused_stream`, `${CADDY} race`]));
    // every h2c entry records what the wire showed; HTTP/1.1 ones have no HTTP/2 facts
    for (const e of manifest) expect(e.expectedH2 !== undefined, e.scenario).toBe(e.expectedProtocol === 'h2c');
  });

  it('gives every connection its exact protocol, request count, reason and closing side', async () => {
    await expectH2cManifest(join(FIXTURES, 'h2c-servers.pcap'), manifest);
  });
});

const haveTools = ['nginx', 'caddy', 'tcpdump', 'curl', 'h2load', 'nghttp'].every((t) => spawnSync('sh', ['-c', `command -v ${t} || test -x /usr/sbin/${t}`]).status === 0);
const isRoot = process.getuid?.() === 0;

// CI (.ci/run) installs nginx, caddy, nghttp2-client and tcpdump and runs as root, so this runs
// there every time. Its ports (18100-18103) clash with no other generator's.
describe.runIf(haveTools && isRoot)('close reasons of h2c connections (regenerated now)', () => {
  it('regenerates the capture with live servers and classifies every connection', async () => {
    const out = mkdtempSync(join(tmpdir(), 'ka-h2c-'));
    try {
      execFileSync('bash', [join(FIXTURES, 'generate.sh'), out], { stdio: 'pipe', timeout: 60_000 });
      const pcap = join(out, 'h2c-servers.pcap');
      expect(existsSync(pcap)).toBe(true);
      const manifest: H2cEntry[] = JSON.parse(readFileSync(join(out, 'manifest.json'), 'utf8'));
      await expectH2cManifest(pcap, manifest);
    } finally {
      rmSync(out, { recursive: true, force: true });
    }
  }, 90_000);
});
