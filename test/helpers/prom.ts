/**
 * A small parser of the Prometheus text exposition format (and OpenMetrics, whose sample lines
 * are the same), for tests that assert on what a scraper would see.
 *
 *   const s = parseProm(await exporter.text.metrics());
 *   total(s, 'keepalive_requests_total', { reused: 'true' });
 *   byLabel(s, 'keepalive_requests_total', 'server');   // Map server -> summed value
 */

export interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

export function parseProm(text: string): Sample[] {
  const out: Sample[] = [];
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    let i = 0;
    while (i < line.length && /[a-zA-Z0-9_:]/.test(line[i])) i++;
    const name = line.slice(0, i);
    if (name === '') throw new Error(`not a sample line: ${line}`);
    const labels: Record<string, string> = {};
    if (line[i] === '{') {
      i++;
      while (line[i] !== '}') {
        if (line[i] === ',') { i++; continue; }
        const eq = line.indexOf('=', i);
        const key = line.slice(i, eq);
        if (line[eq + 1] !== '"') throw new Error(`bad label in: ${line}`);
        let j = eq + 2;
        let value = '';
        while (line[j] !== '"') {
          if (j >= line.length) throw new Error(`unterminated label value in: ${line}`);
          if (line[j] === '\\') {
            const c = line[j + 1];
            value += c === 'n' ? '\n' : c;
            j += 2;
          } else {
            value += line[j++];
          }
        }
        labels[key] = value;
        i = j + 1;
      }
      i++;
    }
    const rest = line.slice(i).trim().split(/\s+/);
    const v = rest[0];
    const value = v === '+Inf' ? Infinity : v === '-Inf' ? -Infinity : /^nan$/i.test(v) ? NaN : Number(v);
    if (Number.isNaN(value) && !/^nan$/i.test(v)) throw new Error(`bad value in: ${line}`);
    out.push({ name, labels, value });
  }
  return out;
}

function matches(s: Sample, filter: Record<string, string>): boolean {
  return Object.entries(filter).every(([k, v]) => s.labels[k] === v);
}

/** Samples of one name, optionally only those whose labels include `filter`. */
export function samples(all: Sample[], name: string, filter: Record<string, string> = {}): Sample[] {
  return all.filter((s) => s.name === name && matches(s, filter));
}

/** Sum of the samples of one name (and labels). */
export function total(all: Sample[], name: string, filter: Record<string, string> = {}): number {
  return samples(all, name, filter).reduce((a, s) => a + s.value, 0);
}

/** Sums of the samples of one name grouped by one label's value. */
export function byLabel(all: Sample[], name: string, label: string, filter: Record<string, string> = {}): Map<string, number> {
  const m = new Map<string, number>();
  for (const s of samples(all, name, filter)) {
    const k = s.labels[label];
    m.set(k, (m.get(k) ?? 0) + s.value);
  }
  return m;
}
