/**
 * What the dashboards and rules may refer to: the metric names the daemon really exports (read
 * from an exporter's scrape, with a live, a file and a proxy source so every family is there).
 */
import { Engine } from '../../src/conn/engine.js';
import { Exporter, type SourceStatus } from '../../src/metrics/exporter.js';

export async function exportedMetricNames(): Promise<Set<string>> {
  const status = (name: string, kind: SourceStatus['kind']): SourceStatus => ({
    name, kind, up: true, done: false, restarts: 0, kernelDrops: 0, interfaceDrops: 0, engine: new Engine(),
    ...(kind === 'proxy' ? { proxy: { accepted: 0, active: 0, upstreamFailures: 0, idleClosed: 0 } } : {}),
  });
  const sources = [status('live:lo', 'live'), status('file:x.pcap', 'file'), status('proxy:8080', 'proxy')];
  const exporter = new Exporter({ maxServers: 10, sources: () => sources });
  const text = await exporter.text.metrics();
  const names = new Set<string>();
  for (const m of text.matchAll(/^# TYPE (\S+) (\S+)$/gm)) {
    const [, name, type] = m as unknown as [string, string, string];
    names.add(name);
    if (type === 'histogram') for (const s of ['_bucket', '_sum', '_count']) names.add(name + s);
    if (type === 'summary') for (const s of ['_sum', '_count']) names.add(name + s);
  }
  return names;
}

/**
 * Metric names a PromQL expression selects: identifiers followed by a selector or a range
 * (`name{`, `name[`), and recording-rule names (they contain a colon) anywhere.
 */
export function metricNamesIn(expr: string): string[] {
  const noStrings = expr.replace(/"(?:[^"\\]|\\.)*"/g, '""');
  const out = new Set<string>();
  for (const m of noStrings.matchAll(/([a-zA-Z_:][a-zA-Z0-9_:]*)\s*[{[]/g)) out.add(m[1]!);
  for (const m of noStrings.matchAll(/[a-zA-Z_][a-zA-Z0-9_]*:[a-zA-Z0-9_:]+/g)) out.add(m[0]);
  // Function names before `(` never match; `by (...)` lists end in `)` and never match either.
  return [...out].filter((n) => !['by', 'without', 'on', 'ignoring', 'group_left', 'group_right', 'offset'].includes(n));
}
