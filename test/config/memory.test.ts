/**
 * Caps from the memory limit: the cgroup's or V8's heap limit, whichever is smaller. The last
 * test floods `analyze` running under a small V8 heap: it must evict and finish, never die.
 */
import { afterAll, describe, expect, it, onTestFinished } from 'vitest';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { BUFFERED_MEMORY_SHARE, FLOWS_MEMORY_SHARE, FLOW_BYTES_BUDGETED, capsForMemory, cgroupMemoryLimit } from '../../src/config/memory.js';
import { DEFAULT_LIMITS } from '../../src/config/limits.js';
import { buildCli } from '../helpers/cli.js';
// @ts-expect-error plain JavaScript shared with the benchmarks
import { idleConnection, pcapHeader, pcapRecord, synOnly } from '../../bench/flood-packets.mjs';

const MiB = 2 ** 20;

describe('cgroupMemoryLimit', () => {
  const files = (m: Record<string, string>) => (p: string) => {
    if (p in m) return m[p];
    throw Object.assign(new Error('ENOENT'), { code: 'ENOENT' });
  };

  it('reads cgroup v2 memory.max', () => {
    expect(cgroupMemoryLimit(files({ '/sys/fs/cgroup/memory.max': '536870912\n' }))).toBe(512 * MiB);
  });

  it('is null for "max" (no limit) and without a cgroup file', () => {
    expect(cgroupMemoryLimit(files({ '/sys/fs/cgroup/memory.max': 'max\n' }))).toBe(null);
    expect(cgroupMemoryLimit(files({}))).toBe(null);
  });

  it('reads cgroup v1, where "unlimited" is a huge number', () => {
    expect(cgroupMemoryLimit(files({ '/sys/fs/cgroup/memory/memory.limit_in_bytes': '268435456' }))).toBe(256 * MiB);
    expect(cgroupMemoryLimit(files({ '/sys/fs/cgroup/memory/memory.limit_in_bytes': '9223372036854771712' }))).toBe(null);
  });
});

describe('capsForMemory', () => {
  it('keeps the defaults where memory is plentiful', () => {
    expect(capsForMemory(4096 * MiB, 1)).toEqual({ maxFlows: DEFAULT_LIMITS.maxFlows, maxBufferedBytes: DEFAULT_LIMITS.maxBufferedBytes });
  });

  it('fits the DaemonSet limit of 512 MiB: the flow tables take at most their share', () => {
    const caps = capsForMemory(512 * MiB, 1);
    expect(caps.maxFlows).toBe(Math.floor((512 * MiB * FLOWS_MEMORY_SHARE) / FLOW_BYTES_BUDGETED));
    expect(caps.maxFlows * FLOW_BYTES_BUDGETED + caps.maxBufferedBytes).toBeLessThanOrEqual(512 * MiB * (FLOWS_MEMORY_SHARE + BUFFERED_MEMORY_SHARE));
  });

  it('divides the memory between sources', () => {
    const one = capsForMemory(256 * MiB, 1);
    const four = capsForMemory(256 * MiB, 4);
    expect(four.maxFlows).toBe(Math.floor(one.maxFlows / 4));
    expect(four.maxBufferedBytes).toBe(Math.floor((256 * MiB * BUFFERED_MEMORY_SHARE) / 4));
  });
});

describe('analyze under a small V8 heap, flooded', () => {
  const dir = mkdtempSync(join(tmpdir(), 'kae-memflood-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('evicts and finishes where a fixed 100,000-flow table would exhaust the heap', () => {
    const { dir: cliDir, main } = buildCli('kae-memflood-cli-');
    onTestFinished(() => rmSync(cliDir, { recursive: true, force: true }));
    // 200,000 SYNs, then 150,000 keep-alive connections that never close.
    const parts: Buffer[] = [pcapHeader()];
    let t = 1_700_000_000;
    for (let i = 0; i < 200_000; i++, t += 2e-6) parts.push(...pcapRecord(synOnly(i)[0], t));
    for (let i = 0; i < 150_000; i++, t += 1e-5) for (const p of idleConnection(200_000 + i)) parts.push(...pcapRecord(p, t));
    const file = join(dir, 'flood.pcap');
    writeFileSync(file, Buffer.concat(parts));
    const heapMiB = 96;
    const run = (extra: string[]) => spawnSync(process.execPath, [`--max-old-space-size=${heapMiB}`, main, 'analyze', '--json', ...extra, file], { encoding: 'utf8', maxBuffer: 64 * MiB });
    const r = run([]);
    expect(r.stderr).not.toMatch(/heap out of memory/);
    expect(r.status).toBe(0);
    const out = JSON.parse(r.stdout);
    expect(out.totals.connections).toBe(150_000);
    // V8's heap limit is the old space asked for plus the young generation: a little more than
    // 96 MiB, so a cap of about 15,000-20,000 flows, far under the default 100,000.
    expect(out.stats.flowsEvicted).toBeGreaterThan(350_000 - 25_000);
    // The same flood with the table forced to 100,000 flows is what used to kill the process.
    const forced = run(['--max-flows', String(DEFAULT_LIMITS.maxFlows)]);
    expect(forced.status).not.toBe(0);
    expect(forced.stderr).toMatch(/heap out of memory|Allocation failed/);
  }, 120_000);
});
