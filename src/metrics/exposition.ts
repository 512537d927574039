/**
 * Renders a prom-client registry as a scrape: Prometheus text 0.0.4 or OpenMetrics 1.0.0, from
 * one registry, reading the metrics and never writing to them.
 *
 * Why our own serializer rather than prom-client's `Registry.metrics()`: for OpenMetrics,
 * prom-client 15 renames every counter in place (`metric.name = standardizeCounterName(...)` in
 * lib/registry.js). With every metric registered in a text and an OpenMetrics registry, one
 * OpenMetrics scrape (what Prometheus asks for) left every later text scrape with counters
 * without `_total` until restart, and `promtool check metrics` failed on all of them (issue 9).
 * Here both formats are computed from what `metric.get()` returns, so the order of scrapes
 * cannot change a name, and there is only one registry to keep in step.
 *
 * The render also yields to the event loop (setImmediate) whenever it has run for SLICE_MS, so
 * /healthz and /readyz are answered between slices: at ~25,000 series one render took 35-70 ms
 * of one unbroken block, and 1,000 scrapes back to back held the loop for 19 s
 * (bench/scrape.mjs).
 *
 * The two formats differ, for our metrics, only in (OpenMetrics 1.0 spec, "Counter" and "ABNF"):
 *   - a counter family is named without `_total` in HELP/TYPE, its samples keep `_total`;
 *   - HELP escapes `"` too; no blank lines between families; the text ends with `# EOF`.
 * Exemplars, `_created` samples and `# UNIT` are not emitted (prom-client emits none of them for
 * this project's metrics either).
 */
import { performance } from 'node:perf_hooks';
import { Registry } from 'prom-client';

export type ExpositionFormat = 'text' | 'openmetrics';

export const CONTENT_TYPES: Readonly<Record<ExpositionFormat, string>> = {
  text: Registry.PROMETHEUS_CONTENT_TYPE, // text/plain; version=0.0.4; charset=utf-8
  openmetrics: Registry.OPENMETRICS_CONTENT_TYPE, // application/openmetrics-text; version=1.0.0; charset=utf-8
};

/** The longest a render runs before letting other callbacks (probes, the capture) in. */
export const SLICE_MS = 5;
/** The clock is read once per this many samples (performance.now() per line would cost ~10%). */
const CHECK_EVERY = 256;

/**
 * The format a scraper asked for: OpenMetrics when the Accept header names it at all (Prometheus
 * sends `application/openmetrics-text;version=1.0.0,...;q=0.5` first), Prometheus text otherwise.
 */
export function negotiate(accept: string | undefined): ExpositionFormat {
  return String(accept ?? '').includes('application/openmetrics-text') ? 'openmetrics' : 'text';
}

interface Value {
  value: number;
  labels: Record<string, string | number | undefined>;
  /** Histogram samples: `_bucket`, `_sum`, `_count`. */
  metricName?: string;
  /** Histogram samples from getForPromString(): the series' labels, shared by its buckets. */
  sharedLabels?: Record<string, string | number | undefined>;
}
interface Family {
  name: string;
  help: string;
  type: string;
  values?: Value[];
}
interface Readable {
  get(): Promise<Family>;
  getForPromString?(): Promise<Family>;
}

/** `{a="x",b="y"}` of a histogram series, computed once per series, not once per bucket (as prom-client does). */
const sharedCache = new WeakMap<object, string>();

/**
 * The whole scrape body for `registry` in `format`. Call order: any time; concurrent renders are
 * independent (single flight is the caller's: Exporter.scrape).
 */
export async function render(registry: Registry, format: ExpositionFormat, sliceMs = SLICE_MS): Promise<string> {
  const om = format === 'openmetrics';
  const lines: string[] = [];
  let sliceStart = performance.now();
  let sinceCheck = 0;
  const pause = async (): Promise<void> => {
    if (performance.now() - sliceStart < sliceMs) return;
    await new Promise<void>((resolve) => setImmediate(resolve));
    sliceStart = performance.now();
  };
  let first = true;
  for (const metric of registry.getMetricsAsArray() as unknown as Readable[]) {
    // getForPromString (histograms) leaves the series' labels apart, so they are formatted once per series.
    const family = metric.getForPromString ? await metric.getForPromString() : await metric.get();
    const values = family.values ?? [];
    // The values of one family are taken together before any yield: live counters are updated in
    // place, and a family must not mix moments (a histogram's buckets, sum and count agree).
    const numbers = values.map((v) => v.value);
    const counter = family.type === 'counter';
    const familyName = om && counter ? family.name.replace(/_total$/, '') : family.name;
    if (!first && !om) lines.push(''); // text: a blank line between families, as prom-client writes it
    first = false;
    lines.push(`# HELP ${familyName} ${escapeHelp(family.help, om)}`, `# TYPE ${familyName} ${family.type}`);
    for (let i = 0; i < values.length; i++) {
      const v = values[i];
      const name = om && counter ? `${familyName}_total` : (v.metricName ?? family.name);
      lines.push(`${name}${labelText(v)} ${valueText(numbers[i])}`);
      if (++sinceCheck >= CHECK_EVERY) {
        sinceCheck = 0;
        await pause();
      }
    }
    await pause();
  }
  if (om) lines.push('# EOF');
  lines.push('');
  return lines.join('\n');
}

function labelText(v: Value): string {
  const shared = v.sharedLabels;
  let own = '';
  for (const k in v.labels) {
    if (shared && Object.hasOwn(shared, k)) continue;
    own += `${own ? ',' : ''}${k}="${escapeLabel(v.labels[k])}"`;
  }
  let rest = '';
  if (shared) {
    const cached = sharedCache.get(shared);
    if (cached !== undefined) rest = cached;
    else {
      for (const k in shared) rest += `${rest ? ',' : ''}${k}="${escapeLabel(shared[k])}"`;
      sharedCache.set(shared, rest);
    }
  }
  const all = own && rest ? `${own},${rest}` : own || rest;
  return all ? `{${all}}` : '';
}

/** Both formats: backslash, double quote and newline are escaped in label values. */
function escapeLabel(v: string | number | undefined): string {
  const s = String(v);
  return /[\\"\n]/.test(s) ? s.replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\n') : s;
}

/** Text escapes backslash and newline in HELP; OpenMetrics also the double quote. */
function escapeHelp(s: string, om: boolean): string {
  const e = s.replace(/\\/g, '\\\\').replace(/\n/g, '\\n');
  return om ? e.replace(/"/g, '\\"') : e;
}

/** `NaN`, `+Inf`, `-Inf` as both formats spell them (prom-client writes `Nan`). */
function valueText(v: number): string {
  if (Number.isNaN(v)) return 'NaN';
  if (v === Infinity) return '+Inf';
  if (v === -Infinity) return '-Inf';
  return String(v);
}
