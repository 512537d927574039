/**
 * The /metrics exposition, as a scraper sees it (issue 9, point 4):
 *
 *  - Prometheus text, OpenMetrics, then text again give the same names: an OpenMetrics scrape
 *    (what Prometheus asks for) must not leave later text scrapes with counters stripped of
 *    `_total` (prom-client 15 renames shared counters in place when it renders OpenMetrics);
 *  - each format is right: text counters are `..._total` in TYPE and samples; OpenMetrics names
 *    the family without `_total` in HELP/TYPE, keeps `_total` on the samples and ends `# EOF`;
 *  - our text is byte for byte prom-client's own text rendering of the same registry;
 *  - the real-server fixture's whole scrape, and the h2c fixture's (issue 12: protocol labels, the
 *    HTTP/2 families), equal the golden files in test/fixtures/metrics/.
 *    Regenerate them with `UPDATE_GOLDEN=1 npx vitest run test/metrics/exposition.test.ts`
 *    (and review the diff: every changed line is a changed name, label or value).
 *
 * Excluded from the golden comparison, because they vary run to run: the families of
 * prom-client's default metrics (`process_*`, `nodejs_*`: CPU, memory, handles, GC). Nothing
 * else varies: the capture's facts come from packet time, and the scrape counters
 * (`keepalive_scrapes_total`) depend only on the scrapes this test makes, in order.
 */
import { describe, expect, it } from 'vitest';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import type { FastifyInstance } from 'fastify';
import { buildApp } from '../../src/server/app.js';
import { Engine } from '../../src/conn/engine.js';
import { readCapture } from '../../src/capture/file.js';
import { Exporter, type SourceStatus } from '../../src/metrics/exporter.js';

const ROOT = join(import.meta.dirname, '../..');
const FIXTURE_NAME = 'test/fixtures/real/real-servers.pcap';
const H2C_FIXTURE_NAME = 'test/fixtures/h2c/h2c-servers.pcap';
const golden = (base: string) => ({ text: join(ROOT, `test/fixtures/metrics/${base}.prom`), openmetrics: join(ROOT, `test/fixtures/metrics/${base}.openmetrics`) });
const OM_ACCEPT = 'application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1';

/** The daemon's app over one engine that read the real-server fixture, as `--pcap` names it. */
async function fixtureApp(fixture = FIXTURE_NAME): Promise<{ app: FastifyInstance; exporter: Exporter }> {
  const engine = new Engine();
  const source: SourceStatus = { name: `file:${fixture}`, kind: 'file', up: true, done: false, restarts: 0, kernelDrops: 0, interfaceDrops: 0, engine };
  // A fixed build: keepalive_exporter_build_info is in the golden files without changing at every commit.
  const exporter = new Exporter({ maxServers: 500, sources: () => [source], build: { version: 'test', revision: 'test', nodeVersion: 'test' } });
  engine.subscribe(exporter.forSource(source.name));
  await readCapture(join(ROOT, fixture), engine);
  engine.finish();
  source.up = false;
  source.done = true;
  return { app: buildApp({ exporter, sources: () => [source], version: 'test' }), exporter };
}

async function scrape(app: FastifyInstance, accept?: string): Promise<{ body: string; type: string }> {
  const res = await app.inject({ method: 'GET', url: '/metrics', headers: accept ? { accept } : {} });
  expect(res.statusCode).toBe(200);
  return { body: res.body, type: String(res.headers['content-type']) };
}

/** The text without the families of prom-client's default metrics (they vary run to run). */
function withoutDefaults(text: string): string {
  const out: string[] = [];
  let skip = false;
  for (const line of text.split('\n')) {
    const m = /^# (?:HELP|TYPE) (\S+)/.exec(line);
    if (m) skip = /^(process|nodejs)_/.test(m[1]);
    else if (line === '' || line === '# EOF') skip = false;
    if (!skip) out.push(line);
  }
  // Text: the blank line that separated a dropped family from the next one goes too.
  return out.join('\n').replace(/\n{3,}/g, '\n\n').replace(/^\n+/, '');
}

/** Sample names and TYPE/HELP names, in order: what must not change between scrapes. */
function names(text: string): string[] {
  return text.split('\n').filter((l) => l !== '').map((l) => (l.startsWith('# ') ? l.split(' ').slice(0, 3).join(' ') : l.split(/[{ ]/)[0]));
}

/** The scrape counters are the only keepalive_ values a scrape itself changes. */
function withoutScrapeCounts(text: string): string {
  return text.replace(/^(keepalive_scrapes_(?:rejected_)?total(?:\{[^}]*\})?) \d+$/gm, '$1 N');
}

describe('text, OpenMetrics, text: the same names', () => {
  it('an OpenMetrics scrape leaves the text scrapes as they were', async () => {
    const { app } = await fixtureApp();
    const before = await scrape(app);
    const om = await scrape(app, OM_ACCEPT);
    const after = await scrape(app);
    const om2 = await scrape(app, OM_ACCEPT);

    expect(before.type).toBe('text/plain; version=0.0.4; charset=utf-8');
    expect(after.type).toBe(before.type);
    expect(om.type).toBe('application/openmetrics-text; version=1.0.0; charset=utf-8');
    expect(names(withoutDefaults(after.body))).toEqual(names(withoutDefaults(before.body)));
    expect(names(withoutDefaults(om2.body))).toEqual(names(withoutDefaults(om.body)));
    // prom-client's default metrics too (their series come and go: GC kinds, resource types).
    const types = (t: string) => t.split('\n').filter((l) => l.startsWith('# TYPE '));
    expect(types(after.body)).toEqual(types(before.body));
    expect(types(before.body)).toContain('# TYPE process_cpu_seconds_total counter');
    expect(withoutScrapeCounts(withoutDefaults(after.body))).toBe(withoutScrapeCounts(withoutDefaults(before.body)));
    expect(withoutScrapeCounts(withoutDefaults(om2.body))).toBe(withoutScrapeCounts(withoutDefaults(om.body)));

    // Text: counters keep `_total` everywhere.
    for (const body of [before.body, after.body]) {
      expect(body).toContain('# TYPE keepalive_requests_total counter\n');
      expect(body).toContain('# HELP keepalive_requests_total ');
      expect(body).toMatch(/^keepalive_requests_total\{/m);
      expect(body).not.toMatch(/^keepalive_requests\{/m);
      expect(body).not.toMatch(/^# TYPE keepalive_requests counter$/m);
      expect(body).not.toContain('# EOF');
      expect(body.endsWith('\n')).toBe(true);
    }
    // OpenMetrics: the family without `_total`, its samples with it, `# EOF` last, no blank line.
    for (const body of [om.body, om2.body]) {
      expect(body).toContain('# TYPE keepalive_requests counter\n');
      expect(body).toContain('# HELP keepalive_requests ');
      expect(body).not.toContain('# TYPE keepalive_requests_total');
      expect(body).toMatch(/^keepalive_requests_total\{/m);
      expect(body).not.toMatch(/^keepalive_requests\{/m);
      expect(body.endsWith('\n# EOF\n')).toBe(true);
      expect(body.split('\n').slice(0, -2)).not.toContain('');
    }
    // The same samples in both formats (only the families' names differ).
    const samplesOf = (t: string) => withoutScrapeCounts(withoutDefaults(t)).split('\n').filter((l) => l !== '' && !l.startsWith('#'));
    expect(samplesOf(om.body)).toEqual(samplesOf(before.body));
  });

  it('our text is what prom-client itself renders for the same registry, before and after OpenMetrics', async () => {
    const { app, exporter } = await fixtureApp();
    await scrape(app, OM_ACCEPT);
    const ours = (await scrape(app)).body;
    const theirs = await exporter.registry.metrics();
    // (prom-client's text is rendered after ours: one more text scrape counted.)
    expect(withoutScrapeCounts(withoutDefaults(ours))).toBe(withoutScrapeCounts(withoutDefaults(theirs)));
    // And the metric objects kept their names (prom-client's OpenMetrics rendering renamed them).
    const counters = exporter.registry.getMetricsAsArray().filter((m) => String(m.type) === 'counter' && m.name.startsWith('keepalive_'));
    expect(counters.length).toBeGreaterThan(10);
    for (const m of counters) expect(m.name, m.name).toMatch(/_total$/);
  });
});

async function compareGolden(fixture: string, base: string): Promise<{ text: string; openmetrics: string }> {
  const { app } = await fixtureApp(fixture);
  const got = {
    text: withoutDefaults((await scrape(app)).body),
    openmetrics: withoutDefaults((await scrape(app, OM_ACCEPT)).body),
  };
  const paths = golden(base);
  for (const format of ['text', 'openmetrics'] as const) {
    const path = paths[format];
    if (process.env.UPDATE_GOLDEN === '1') {
      mkdirSync(dirname(path), { recursive: true });
      writeFileSync(path, got[format]);
    }
    expect(existsSync(path), `${path} is missing: UPDATE_GOLDEN=1 npx vitest run test/metrics/exposition.test.ts`).toBe(true);
    // Whole-file equality: any name, label, value or order change fails, and vitest shows the diff.
    expect(got[format], `${format} differs from ${path}`).toBe(readFileSync(path, 'utf8'));
  }
  expect(got.text).not.toMatch(/^(process|nodejs)_/m);
  expect(got.openmetrics.endsWith('# EOF\n')).toBe(true);
  return got;
}

describe('the golden scrape of the real-server fixture', () => {
  it('text and OpenMetrics equal test/fixtures/metrics/ whole (default process_/nodejs_ metrics aside)', async () => {
    const got = await compareGolden(FIXTURE_NAME, 'real-servers');
    // The golden files are what they claim: real traffic, both formats, no default metrics.
    expect(got.text).toContain(`keepalive_requests_total{server="127.0.0.1:18080",source="file:${FIXTURE_NAME}",protocol="http/1.1",reused="true"}`);
  });
});

describe('the golden scrape of the h2c fixture', () => {
  it('text and OpenMetrics equal test/fixtures/metrics/h2c-servers.* whole: protocol labels and the HTTP/2 families', async () => {
    const got = await compareGolden(H2C_FIXTURE_NAME, 'h2c-servers');
    const src = `source="file:${H2C_FIXTURE_NAME}"`;
    expect(got.text).toContain(`keepalive_requests_total{server="127.0.0.1:18100",${src},protocol="h2c",reused="true"}`);
    expect(got.text).toContain(`keepalive_connections_closed_total{server="127.0.0.1:18101",${src},protocol="h2c",reason="max_age",closed_by="server"} 3\n`);
    expect(got.text).toContain('# TYPE keepalive_h2_concurrent_streams histogram\n');
    expect(got.openmetrics).toContain('# TYPE keepalive_h2_streams_refused counter\n');
  });
});
