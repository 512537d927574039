/**
 * Caps derived from the memory the process may use: the container's cgroup limit or V8's heap
 * limit (`--max-old-space-size`), whichever is smaller. A flood fills every table to its cap, so
 * the caps must fit the memory, or the process is killed exactly when it is attacked.
 *
 * The figures behind the constants are printed by `node --expose-gc bench/flow-memory.mjs` and
 * `node bench/flood.mjs` (bench/README.md).
 */
import { readFileSync } from 'node:fs';
import { getHeapStatistics } from 'node:v8';
import { DEFAULT_LIMITS } from './limits.js';

/**
 * Heap a tracked flow may take, budgeted: measured with the exporter, an idle HTTP/1 keep-alive
 * connection takes 1,866 bytes, an idle h2c one 3,439 and an idle TLS one (not decrypted) 3,531
 * (a SYN alone 441): rounded up so that a host of HTTPS or HTTP/2 connections fits too.
 */
export const FLOW_BYTES_BUDGETED = 4096;
/**
 * Share of the memory limit the flow tables may fill. The rest is the process itself (about
 * 75 MB RSS for an idle daemon), the out-of-order budget, and the garbage collector's headroom:
 * with 100,000 live connections V8 let the heap grow to about twice the live objects.
 */
export const FLOWS_MEMORY_SHARE = 0.3;
/** Share of the memory limit for out-of-order and head bytes held (all flows of all sources). */
export const BUFFERED_MEMORY_SHARE = 0.1;

export interface MemoryLimit {
  bytes: number;
  /** Where it came from, for the log line. */
  from: string;
}

/** The cgroup v2 (memory.max) or v1 (memory.limit_in_bytes) limit of this process, if any. */
export function cgroupMemoryLimit(read: (path: string) => string = (p) => readFileSync(p, 'utf8')): number | null {
  for (const path of ['/sys/fs/cgroup/memory.max', '/sys/fs/cgroup/memory/memory.limit_in_bytes']) {
    let text: string;
    try {
      text = read(path).trim();
    } catch {
      continue;
    }
    const n = Number(text);
    // "max" (v2) or a huge number (v1's "unlimited", 2^63 rounded to pages) mean no limit.
    if (/^\d+$/.test(text) && n > 0 && n < 2 ** 50) return n;
    return null;
  }
  return null;
}

export function memoryLimit(): MemoryLimit {
  const heap = getHeapStatistics().heap_size_limit;
  const cgroup = cgroupMemoryLimit();
  return cgroup !== null && cgroup < heap
    ? { bytes: cgroup, from: 'the cgroup memory limit' }
    : { bytes: heap, from: "V8's heap limit" };
}

/** Default caps per source for `sources` sources sharing `limitBytes`. */
export function capsForMemory(limitBytes: number, sources: number): { maxFlows: number; maxBufferedBytes: number } {
  const n = Math.max(1, sources);
  const flows = Math.floor((limitBytes * FLOWS_MEMORY_SHARE) / n / FLOW_BYTES_BUDGETED);
  const buffered = Math.floor((limitBytes * BUFFERED_MEMORY_SHARE) / n);
  return {
    maxFlows: Math.max(1000, Math.min(DEFAULT_LIMITS.maxFlows, flows)),
    maxBufferedBytes: Math.max(1 << 20, Math.min(DEFAULT_LIMITS.maxBufferedBytes, buffered)),
  };
}
