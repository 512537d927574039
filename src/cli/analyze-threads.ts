/**
 * `analyze --threads N`: the capture read by N worker threads at once, each keeping the TCP
 * connections of its shard (Engine `shard`: a symmetric hash of the 4-tuple, so both directions of
 * a connection meet in one worker), and their reports merged (AnalyzeReport.merge). Every worker
 * reads and decodes the whole file (from the page cache after the first), which is cheap next to
 * reassembly, HTTP parsing and TLS decryption: those are split.
 *
 * What is learnt across connections of a server (the inference of an unannounced limit, the
 * median RTT for connections whose handshake was not captured, a server's h2 over TLS 1.3) is
 * learnt per worker, from its share of the server's connections: on a large capture each share
 * has plenty; on a small one a limit confirmed by two connections may fall to two workers and stay
 * `server_close`. Hence one thread unless asked (README, "Performance").
 *
 * The worker entry is this same module (`isMainThread` false): it runs `analyzeShard` and posts
 * its result; the main thread posts `abort` on Ctrl-C.
 */
import { Worker, isMainThread, parentPort, workerData } from 'node:worker_threads';
import { fileURLToPath } from 'node:url';
import { Engine, type EngineStats } from '../conn/engine.js';
import { ServerState } from '../conn/servers.js';
import { CaptureOpenError, readCapture, type CaptureSummary } from '../capture/file.js';
import { AnalyzeReport, type ReportSnapshot } from '../report/summary.js';
import { readKeylogFile } from '../tls/keylog-file.js';
import type { KeylogStats } from '../tls/keylog.js';
import type { EngineLimits } from '../config/limits.js';

export interface ShardJob {
  file: string;
  ports: number[] | null;
  limits: Partial<EngineLimits>;
  keylog: string | null;
  connections: boolean;
  index: number;
  count: number;
}

export interface ShardResult {
  capture: CaptureSummary;
  stats: EngineStats;
  report: ReportSnapshot;
  servers: Array<[string, { advertisedTimeout: number | null; advertisedMax: number | null; inferredMax: number | null; inferredMaxAge: number | null }]>;
  keylog: KeylogStats | null;
}

type FromWorker = { progress: [number, number, number] } | { result: ShardResult } | { error: string; open: boolean };

/** One shard, in this thread: what a worker does. */
export async function analyzeShard(job: ShardJob, signal: AbortSignal, onProgress?: (read: number, total: number, packets: number) => void): Promise<ShardResult> {
  const keylog = job.keylog ? readKeylogFile(job.keylog) : null;
  const engine = new Engine({ ports: job.ports, limits: job.limits, tlsKeys: keylog?.source ?? null, shard: { index: job.index, count: job.count } });
  const report = new AnalyzeReport(job.connections);
  engine.subscribe(report);
  const capture = await readCapture(job.file, engine, { signal, onProgress: onProgress ? (r, t) => onProgress(r, t, engine.stats().packets) : undefined });
  engine.finish();
  keylog?.store.clear();
  return {
    capture,
    stats: engine.stats(),
    report: report.snapshot(),
    servers: [...engine.servers].map(([name, s]) => [name, { advertisedTimeout: s.advertisedTimeout, advertisedMax: s.advertisedMax, inferredMax: s.inferredMax, inferredMaxAge: s.inferredMaxAge }]),
    keylog: keylog?.stats ?? null,
  };
}

export interface Merged {
  capture: CaptureSummary;
  stats: EngineStats;
  report: AnalyzeReport;
  servers: Map<string, ServerState>;
  keylog: KeylogStats | null;
}

/**
 * Runs `count` workers on `job` and merges their results. Counts that every worker sees whole
 * (packets, bytes, the capture's own summary, the key log's lines) are shard 0's; the rest add up.
 */
export async function analyzeThreads(job: Omit<ShardJob, 'index' | 'count'>, count: number, signal: AbortSignal, onProgress?: (read: number, total: number, packets: number) => void): Promise<Merged> {
  const entry = fileURLToPath(import.meta.url);
  const workers: Worker[] = [];
  const done = Array.from({ length: count }, (_, index) => new Promise<ShardResult>((resolve, reject) => {
    const w = new Worker(entry, { workerData: { ...job, index, count } satisfies ShardJob });
    workers.push(w);
    w.on('message', (m: FromWorker) => {
      if ('progress' in m) onProgress?.(...m.progress);
      else if ('result' in m) resolve(m.result);
      else reject(m.open ? new CaptureOpenError(m.error) : new Error(m.error));
    });
    w.on('error', reject);
    w.on('exit', (code) => { if (code !== 0) reject(new Error(`analyze worker ${index} exited with status ${code}`)); });
  }));
  // Ctrl-C: each worker stops its read, and reports what it read.
  signal.addEventListener('abort', () => { for (const w of workers) w.postMessage('abort'); }, { once: true });
  try {
    return merge(await Promise.all(done), job.connections);
  } finally {
    for (const w of workers) void w.terminate();
  }
}

function merge(rs: ShardResult[], connections: boolean): Merged {
  const first = rs[0];
  const sum = (pick: (s: EngineStats) => number): number => rs.reduce((n, r) => n + pick(r.stats), 0);
  const anomalies: Record<string, number> = {};
  for (const r of rs) for (const [k, v] of Object.entries(r.stats.anomalies)) anomalies[k] = (anomalies[k] ?? 0) + v;
  const stats: EngineStats = {
    ...first.stats,
    streams: sum((s) => s.streams),
    flowsTracked: sum((s) => s.flowsTracked),
    bufferedBytes: sum((s) => s.bufferedBytes),
    flowsCreated: sum((s) => s.flowsCreated),
    flowsEvicted: sum((s) => s.flowsEvicted),
    gaps: sum((s) => s.gaps),
    gapBytes: sum((s) => s.gapBytes),
    retransmissions: sum((s) => s.retransmissions),
    connectionsOpened: sum((s) => s.connectionsOpened),
    connectionsClosed: sum((s) => s.connectionsClosed),
    openConnections: sum((s) => s.openConnections),
    nonHttp: { tls: sum((s) => s.nonHttp.tls), http2: sum((s) => s.nonHttp.http2), other: sum((s) => s.nonHttp.other) },
    anomalies,
  };
  const servers = new Map<string, ServerState>();
  for (const r of rs) {
    for (const [name, v] of r.servers) {
      let s = servers.get(name);
      if (!s) servers.set(name, (s = new ServerState(1, name)));
      s.advertisedTimeout ??= v.advertisedTimeout;
      s.advertisedMax ??= v.advertisedMax;
      s.inferredMax ??= v.inferredMax;
      s.inferredMaxAge ??= v.inferredMaxAge;
    }
  }
  const report = AnalyzeReport.merge(rs.map((r) => r.report), connections);
  // The shards saw the same packets: the capture problem (a truncated file) is the first's.
  return { capture: first.capture, stats, report, servers, keylog: first.keylog };
}

// --- worker entry ---
if (!isMainThread && parentPort && (workerData as ShardJob | undefined)?.file !== undefined) {
  const job = workerData as ShardJob;
  const port = parentPort;
  const abort = new AbortController();
  port.on('message', (m) => { if (m === 'abort') abort.abort(); });
  let last = 0;
  const progress = job.index === 0 ? (read: number, total: number, packets: number) => {
    const now = Date.now();
    if (now - last < 200) return;
    last = now;
    port.postMessage({ progress: [read, total, packets] } satisfies FromWorker);
  } : undefined;
  analyzeShard(job, abort.signal, progress)
    .then((result) => { port.postMessage({ result } satisfies FromWorker); port.close(); })
    .catch((err: Error) => { port.postMessage({ error: err.message, open: err instanceof CaptureOpenError || !(err instanceof Error) } satisfies FromWorker); port.close(); });
}
