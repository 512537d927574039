/**
 * Real servers, real clients, real tcpdump: `test/fixtures/real/real-servers.pcap` was captured by
 * `test/fixtures/real/generate.sh` (Apache httpd with KeepAliveTimeout 2 / MaxKeepAliveRequests 3,
 * nginx with keepalive_timeout 2s 2 / keepalive_requests 3, on loopback). Its manifest names the
 * close reason, closing side and request count each connection must get.
 *
 * The second suite regenerates the capture on this machine (CI installs the servers) and checks
 * the fresh one the same way, so the fixture can never drift from what the servers really do.
 */
import { describe, expect, it } from 'vitest';
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, existsSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { analyzeFile } from '../helpers/engine.js';
import { expectManifest, type ManifestEntry } from '../helpers/manifest.js';

const FIXTURES = join(import.meta.dirname, '../fixtures/real');

describe('close reasons from real Apache httpd and nginx (committed capture)', () => {
  const manifest: ManifestEntry[] = JSON.parse(readFileSync(join(FIXTURES, 'manifest.json'), 'utf8'));

  it('covers every close reason of the reference', () => {
    const reasons = new Set(manifest.map((e) => e.expectedReason));
    for (const r of ['idle_timeout', 'max_requests', 'server_close', 'client_close', 'client_idle', 'not_persistent', 'race', 'aborted', 'reset', 'unused']) {
      expect(reasons, r).toContain(r);
    }
  });

  it('gives every connection its exact reason, closing side and request count', async () => {
    await expectManifest(join(FIXTURES, 'real-servers.pcap'), manifest);
  });

  it('learns the servers\' keep-alive settings', async () => {
    const facts = await analyzeFile(join(FIXTURES, 'real-servers.pcap'));
    const apache = facts.engine.servers.get('127.0.0.1:18080');
    const nginx = facts.engine.servers.get('127.0.0.1:18081');
    expect(apache?.advertisedTimeout).toBe(2);
    expect(apache?.advertisedMax).toBe(3); // Apache announces max=3 then counts down
    expect(nginx?.advertisedTimeout).toBe(2);
    expect(nginx?.advertisedMax).toBeNull(); // nginx never sends max=
    expect(nginx?.inferredMax).toBe(3); // ...but closes at keepalive_requests, connection after connection
  });
});

const haveTools = ['apache2', 'nginx', 'tcpdump'].every((t) => spawnSync('sh', ['-c', `command -v ${t} || test -x /usr/sbin/${t}`]).status === 0);
const isRoot = process.getuid?.() === 0;

// CI (.ci/run) installs Apache, nginx and tcpdump and runs as root, so this runs there every time.
describe.runIf(haveTools && isRoot)('close reasons from real servers (regenerated now)', () => {
  it('regenerates the capture with live servers and classifies every connection', async () => {
    const out = mkdtempSync(join(tmpdir(), 'ka-real-'));
    try {
      execFileSync('bash', [join(FIXTURES, 'generate.sh'), out], { stdio: 'pipe', timeout: 170_000 });
      const pcap = join(out, 'real-servers.pcap');
      expect(existsSync(pcap)).toBe(true);
      const manifest: ManifestEntry[] = JSON.parse(readFileSync(join(out, 'manifest.json'), 'utf8'));
      await expectManifest(pcap, manifest);
    } finally {
      rmSync(out, { recursive: true, force: true });
    }
  }, 180_000);
});
