/**
 * A private Prometheus server (Debian's `prometheus` package) for the end-to-end tests: its own
 * config, TSDB directory and port under a temp dir, scraping the given targets every second.
 * The package's system service is never used.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { httpGet, start, stop, tail, waitFor, type Proc } from '../../helpers/procs.js';

export function prometheusConfig(job: string, target: string, ruleFiles: string[] = []): string {
  const rules = ruleFiles.length ? `rule_files:\n${ruleFiles.map((f) => `  - ${JSON.stringify(f)}\n`).join('')}` : '';
  return `# Private Prometheus for the daemon end-to-end test
global:
  scrape_interval: 1s
  scrape_timeout: 1s
  evaluation_interval: 1s
${rules}scrape_configs:
  - job_name: ${job}
    static_configs:
      - targets: ['${target}']
`;
}

export async function startPrometheus(bin: string, dir: string, port: number, job: string, target: string, ruleFiles: string[] = []): Promise<Proc> {
  const conf = join(dir, 'prometheus.yml');
  const data = join(dir, 'prometheus-data');
  mkdirSync(data, { recursive: true });
  writeFileSync(conf, prometheusConfig(job, target, ruleFiles));
  const p = start('prometheus', bin, [
    `--config.file=${conf}`,
    `--storage.tsdb.path=${data}`,
    `--web.listen-address=127.0.0.1:${port}`,
    '--log.level=warn',
  ], join(dir, 'logs/prometheus.out'));
  try {
    await waitFor('Prometheus to be ready', 15_000, async () => {
      if (p.exit) throw new Error(`prometheus exited (${JSON.stringify(p.exit)})`);
      const r = await httpGet(`http://127.0.0.1:${port}/-/ready`);
      return r?.status === 200 ? true : null;
    }, 200);
  } catch (err) {
    await stop(p, 'SIGKILL', 5000); // not handed to the caller: never leave it running
    throw new Error(`${(err as Error).message}\n${tail(p)}`);
  }
  return p;
}

export interface Sample {
  labels: Record<string, string>;
  value: number;
  /** Sample time (Prometheus' evaluation time for an instant query), seconds since the epoch. */
  time: number;
}

/** An instant query through the HTTP API (`/api/v1/query`); a vector result as samples. */
export async function query(port: number, expr: string): Promise<Sample[]> {
  const r = await httpGet(`http://127.0.0.1:${port}/api/v1/query?query=${encodeURIComponent(expr)}`, 2000);
  if (!r) throw new Error(`Prometheus did not answer the query ${expr}`);
  const body = JSON.parse(r.body) as {
    status: string;
    error?: string;
    data?: { resultType: string; result: Array<{ metric: Record<string, string>; value: [number, string] }> };
  };
  if (body.status !== 'success' || !body.data) throw new Error(`query ${expr} failed: ${body.error ?? r.body}`);
  if (body.data.resultType !== 'vector') throw new Error(`query ${expr} gave a ${body.data.resultType}, not a vector`);
  return body.data.result.map((s) => ({ labels: s.metric, value: Number(s.value[1]), time: s.value[0] }));
}

/**
 * A vector as a plain object for exact comparison: key = the values of `by` labels joined with
 * " ", value = the sample value. Missing labels read as "".
 */
export function byLabels(samples: Sample[], by: string[]): Record<string, number> {
  const out: Record<string, number> = {};
  for (const s of samples) out[by.map((l) => s.labels[l] ?? '').join(' ')] = s.value;
  return Object.fromEntries(Object.entries(out).sort(([a], [b]) => a.localeCompare(b)));
}

/** A GET of Prometheus' HTTP API (`/api/v1/...`): its `data`, or an Error with Prometheus' own message. */
export async function api<T>(port: number, path: string): Promise<T> {
  const r = await httpGet(`http://127.0.0.1:${port}${path}`, 5000);
  if (!r) throw new Error(`Prometheus did not answer ${path}`);
  const body = JSON.parse(r.body) as { status: string; error?: string; data?: T };
  if (body.status !== 'success' || body.data === undefined) throw new Error(`${path}: ${body.error ?? r.body}`);
  return body.data;
}

export interface RangeSeries {
  labels: Record<string, string>;
  values: Array<[number, number]>;
}

/** A range query (`/api/v1/query_range`): every series with its samples as numbers (NaN kept). */
export async function queryRange(port: number, expr: string, start: number, end: number, stepSeconds: number): Promise<RangeSeries[]> {
  const q = `query=${encodeURIComponent(expr)}&start=${start}&end=${end}&step=${stepSeconds}`;
  const data = await api<{ resultType: string; result: Array<{ metric: Record<string, string>; values: Array<[number, string]> }> }>(port, `/api/v1/query_range?${q}`);
  return data.result.map((s) => ({ labels: s.metric, values: s.values.map(([t, v]) => [t, Number(v)] as [number, number]) }));
}
