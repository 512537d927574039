/**
 * The Grafana dashboards as files: the committed JSON is what the generator in dashboards/src
 * produces, and it is well formed for Grafana: a `${datasource}` variable of type prometheus used
 * by every panel and query, job/instance(/server) variables applied by every query, a unit and a
 * description on every panel, unique ids, panels on the 24-column grid without overlaps, and only
 * metrics the daemon really exports. Whether each query returns data on real traffic is checked
 * against a real Prometheus in test/e2e/dashboards-prometheus.test.ts.
 */
import { CLOSE_REASONS } from '../../src/conn/records.js';
import { describe, expect, it } from 'vitest';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { DASHBOARDS, render } from '../../dashboards/src/generate.js';
import { exportedMetricNames, metricNamesIn } from './support.js';

const ROOT = join(import.meta.dirname, '../..');

interface Target { refId: string; expr: string; datasource: { type: string; uid: string } }
interface Panel {
  id: number;
  type: string;
  title: string;
  description?: string;
  datasource?: { type: string; uid: string };
  gridPos: { x: number; y: number; w: number; h: number };
  fieldConfig?: { defaults: { unit?: string; thresholds?: { steps: Array<{ value: number | null }> } }; overrides: Array<{ matcher: { options: string }; properties: Array<{ id: string; value: unknown }> }> };
  targets?: Target[];
  transformations?: Array<{ id: string; options: { renameByName?: Record<string, string> } }>;
}
interface Variable { name: string; type: string; query: unknown; datasource?: { uid: string }; includeAll?: boolean; allValue?: string }
interface Dashboard { uid: string; title: string; schemaVersion: number; panels: Panel[]; templating: { list: Variable[] }; links: Array<{ url: string }> }

// Grafana unit ids the panels may use (Grafana's "Standard options > Unit" values).
const GRAFANA_UNITS = new Set(['short', 'percentunit', 'reqps', 'cps', 'ops', 's', 'ms', 'bytes', 'Bps', 'pps', 'none']);

const files = DASHBOARDS.map((d) => ({ ...d, json: JSON.parse(readFileSync(join(ROOT, 'dashboards', d.file), 'utf8')) as Dashboard }));

describe.each(files.map((f) => [f.file, f]))('%s', (_file, { spec, file, json }) => {
  const panels = json.panels.filter((p) => p.type !== 'row');

  it('is exactly what the generator produces (edit dashboards/src, then npm run dashboards)', () => {
    expect(readFileSync(join(ROOT, 'dashboards', file), 'utf8')).toBe(render(spec));
  });

  it('has a ${datasource} variable of type prometheus, and job and instance variables that use it', () => {
    const vars = new Map(json.templating.list.map((v) => [v.name, v]));
    expect(vars.get('datasource')).toMatchObject({ type: 'datasource', query: 'prometheus' });
    const wanted = json.uid === 'keepalive-reuse' ? ['job', 'instance', 'server'] : ['job', 'instance'];
    for (const name of wanted) {
      expect(vars.get(name), name).toMatchObject({ type: 'query', datasource: { uid: '${datasource}' }, includeAll: true, allValue: '.+' });
    }
    expect([...vars.keys()]).toEqual(['datasource', ...wanted]);
  });

  it('every panel and every query reads from ${datasource}', () => {
    expect(panels.length).toBeGreaterThan(10);
    for (const p of panels) {
      expect(p.datasource, p.title).toEqual({ type: 'prometheus', uid: '${datasource}' });
      expect(p.targets?.length, p.title).toBeGreaterThan(0);
      for (const t of p.targets!) expect(t.datasource, `${p.title} ${t.refId}`).toEqual({ type: 'prometheus', uid: '${datasource}' });
    }
  });

  it('every query applies the job and instance variables (and server, on the reuse dashboard)', () => {
    for (const p of panels) {
      for (const t of p.targets!) {
        // Each selector `{...}` of the expression carries the variables.
        const selectors = [...t.expr.matchAll(/\{([^}]*)\}/g)].map((m) => m[1]!);
        expect(selectors.length, t.expr).toBeGreaterThan(0);
        for (const s of selectors) {
          expect(s, `${p.title}: ${t.expr}`).toContain('job=~"$job"');
          expect(s, `${p.title}: ${t.expr}`).toContain('instance=~"$instance"');
          if (json.uid === 'keepalive-reuse') expect(s, `${p.title}: ${t.expr}`).toContain('server=~"$server"');
        }
      }
    }
  });

  it('every panel has a Grafana unit, a description in words, and unique id and title', () => {
    for (const p of panels) {
      expect(GRAFANA_UNITS.has(p.fieldConfig?.defaults.unit ?? ''), `${p.title}: unit ${p.fieldConfig?.defaults.unit}`).toBe(true);
      expect(p.description?.length ?? 0, p.title).toBeGreaterThan(60);
    }
    const ids = json.panels.map((p) => p.id);
    expect(ids.every((id) => Number.isInteger(id) && id > 0)).toBe(true);
    expect(new Set(ids).size).toBe(ids.length);
    const titles = panels.map((p) => p.title);
    expect(new Set(titles).size, titles.join(', ')).toBe(titles.length);
  });

  it('table columns each have a unit', () => {
    for (const p of panels.filter((x) => x.type === 'table')) {
      const renamed = Object.values(p.transformations!.find((t) => t.id === 'organize')!.options.renameByName!);
      const units = new Map(p.fieldConfig!.overrides.map((o) => [o.matcher.options, o.properties.find((x) => x.id === 'unit')?.value]));
      expect(renamed.length).toBe(p.targets!.length);
      for (const col of renamed) expect(GRAFANA_UNITS.has(String(units.get(col))), col).toBe(true);
    }
  });

  it('thresholds start with a base step (value null), as Grafana requires', () => {
    for (const p of panels) expect(p.fieldConfig!.defaults.thresholds!.steps[0]!.value, p.title).toBeNull();
  });

  it('panels sit on the 24-column grid without overlapping', () => {
    const cells = new Set<string>();
    for (const p of json.panels) {
      const g = p.gridPos;
      expect(g.x >= 0 && g.w > 0 && g.x + g.w <= 24 && g.h > 0 && g.y >= 0, p.title).toBe(true);
      for (let x = g.x; x < g.x + g.w; x++) {
        for (let y = g.y; y < g.y + g.h; y++) {
          expect(cells.has(`${x},${y}`), `${p.title} overlaps at ${x},${y}`).toBe(false);
          cells.add(`${x},${y}`);
        }
      }
    }
  });

  it('queries only metrics the daemon exports', async () => {
    const exported = await exportedMetricNames();
    exported.add('up'); // Prometheus' own, per scrape target
    for (const p of panels) {
      for (const t of p.targets!) {
        const names = metricNamesIn(t.expr);
        expect(names.length, t.expr).toBeGreaterThan(0);
        for (const n of names) expect(exported.has(n), `${p.title}: ${n}`).toBe(true);
      }
    }
  });
});

describe('the dashboards together', () => {
  it('have distinct uids, link to each other, and are provisioned by Grafana\'s file provider', () => {
    const uids = files.map((f) => f.json.uid);
    expect(new Set(uids).size).toBe(uids.length);
    for (const f of files) {
      const others = uids.filter((u) => u !== f.json.uid);
      expect(f.json.links.map((l) => l.url.split('?')[0])).toEqual(others.map((u) => `/d/${u}`));
    }
    const provider = readFileSync(join(ROOT, 'dashboards/grafana/provisioning/dashboards/keepalive.yml'), 'utf8');
    expect(provider).toMatch(/type:\s*file/);
  });

  it('the main dashboard answers the questions it is for', () => {
    const reuse = files.find((f) => f.json.uid === 'keepalive-reuse')!.json;
    const byTitle = new Map(reuse.panels.map((p) => [p.title, p]));
    const exprs = (title: string): string => (byTitle.get(title)?.targets ?? []).map((t) => t.expr).join('\n');
    expect(exprs('Reuse ratio by server')).toContain('reused="true"');
    expect(exprs('Requests and new connections by server')).toMatch(/keepalive_requests_total[\s\S]*keepalive_connections_opened_total/);
    expect(exprs('Handshakes saved by server')).toContain('keepalive_handshakes_saved_total');
    expect(exprs('Estimated handshake time saved by server')).toContain('keepalive_handshake_time_saved_seconds_total');
    expect(byTitle.get('Why connections close')!.type).toBe('timeseries');
    expect(exprs('Why connections close')).toContain('sum by (reason)');
    expect(byTitle.get('Requests per connection, distribution')!.type).toBe('heatmap');
    expect(exprs('Idle before close vs advertised timeout')).toMatch(/closed_by[\s\S]*keepalive_advertised_timeout_seconds/);
    expect(exprs('Keep-alive races by server')).toContain('reason="race"');
    expect(byTitle.get('Servers by handshakes that could still be saved')!.type).toBe('table');
    // idle_timeout and max_requests in distinct fixed colours in the stacked close reasons.
    const colors = new Map(byTitle.get('Why connections close')!.fieldConfig!.overrides.map((o) => [o.matcher.options, JSON.stringify(o.properties)]));
    expect(colors.get('idle_timeout')).toBeDefined();
    expect(colors.get('max_requests')).toBeDefined();
    expect(colors.get('idle_timeout')).not.toBe(colors.get('max_requests'));
    // Every close reason has its colour, max_age (issue 12) included.
    for (const reason of CLOSE_REASONS) expect(colors.get(reason), reason).toBeDefined();
    expect(new Set(CLOSE_REASONS.map((r) => colors.get(r))).size).toBe(CLOSE_REASONS.length);
    // The protocol breakdown (issue 12): connections, requests, reuse and closes by protocol; HTTP/2 streams.
    expect(exprs('New connections by protocol')).toMatch(/sum by \(protocol\) \(rate\(keepalive_connections_opened_total[\s\S]*keepalive_connections_upgraded_total/);
    expect(exprs('Requests by protocol')).toContain('sum by (protocol) (rate(keepalive_requests_total');
    expect(exprs('Reuse ratio by protocol')).toMatch(/sum by \(protocol\) \(rate\(keepalive_requests_total\{[^}]*reused="true"/);
    expect(exprs('Close reasons by protocol')).toContain('sum by (protocol, reason)');
    expect(exprs('HTTP/2 concurrent streams per connection')).toMatch(/keepalive_h2_concurrent_streams_bucket[\s\S]*keepalive_h2_advertised_max_concurrent_streams/);
    expect(exprs('HTTP/2 refused streams by server')).toContain('keepalive_h2_streams_refused_total');
    // The other panels sum the protocol away: no query of the main dashboard keeps it by accident.
    for (const p of reuse.panels) {
      for (const t of p.targets ?? []) {
        if (!/by protocol|HTTP\/2/.test(p.title)) expect(t.expr, p.title).not.toMatch(/by \([^)]*protocol/);
        expect(t.expr, p.title).toMatch(/^\(?(sum|max|histogram_quantile)/);
      }
    }
  });

  it('the TLS row (issue 13): resumption ratio by server, handshake duration by kind, reuse on TLS next to cleartext', () => {
    const reuse = files.find((f) => f.json.uid === 'keepalive-reuse')!.json;
    const rows = reuse.panels.filter((p) => p.type === 'row').map((p) => p.title);
    expect(rows).toContain('TLS');
    const byTitle = new Map(reuse.panels.map((p) => [p.title, p]));
    const targets = (title: string): Target[] => byTitle.get(title)?.targets ?? [];
    const sel = String.raw`\{job=~"\$job", instance=~"\$instance", server=~"\$server"`;
    // resumed / (full + resumed), per server.
    expect(targets('TLS resumption ratio by server').map((t) => t.expr)).toEqual([
      expect.stringMatching(new RegExp(String.raw`^sum by \(server\) \(rate\(keepalive_tls_handshakes_total${sel}, kind="resumed"\}\[\$__rate_interval\]\)\) / sum by \(server\) \(rate\(keepalive_tls_handshakes_total${sel}\}\[\$__rate_interval\]\)\)$`)),
    ]);
    expect(targets('TLS handshakes by kind').map((t) => t.expr).join('\n')).toMatch(/sum by \(kind\) \(rate\(keepalive_tls_handshakes_total[\s\S]*keepalive_tls_hello_retry_requests_total/);
    // p50 and p95, full and resumed apart.
    const durations = targets('TLS handshake duration by kind').map((t) => t.expr);
    expect(durations.map((e) => /^histogram_quantile\(([\d.]+), sum by \(le, kind\) \(rate\(keepalive_tls_handshake_duration_seconds_bucket\{/.exec(e)?.[1])).toEqual(['0.5', '0.95']);
    // TLS from the TLS counters; cleartext = all minus TLS, the TLS part 0 where a selection has no TLS.
    for (const title of ['Reuse ratio, TLS vs cleartext', 'Requests per connection, TLS vs cleartext']) {
      const [tls, clear] = targets(title);
      expect(tls!.expr, title).toMatch(/keepalive_tls_requests_total/);
      expect(tls!.expr, title).not.toMatch(/keepalive_requests_total/);
      expect(clear!.expr, title).toMatch(/^\(sum\(rate\(keepalive_requests_total\{[^}]*\}\[\$__rate_interval\]\)\) - \(sum\(rate\(keepalive_tls_requests_total\{[^}]*\}\[\$__rate_interval\]\)\) or vector\(0\)\)\) \/ \(/);
      expect(byTitle.get(title)!.description, title).toMatch(/estimated[^.]*record turns/);
      expect(byTitle.get(title)!.description, title).toContain('protocol="tls"');
    }
    expect(targets('Reuse ratio, TLS vs cleartext').map((t) => t.expr.match(/reused="true"/g)?.length)).toEqual([1, 2]);
    expect(targets('Requests per connection, TLS vs cleartext')[0]!.expr).toMatch(/keepalive_tls_requests_total[^/]*\/ sum\(rate\(keepalive_tls_handshakes_total/);
    expect(targets('Requests per connection, TLS vs cleartext')[1]!.expr).toMatch(/\/ \(sum\(rate\(keepalive_connections_closed_total\{[^}]*\}\[\$__rate_interval\]\)\) - \(sum\(rate\(keepalive_tls_handshakes_total/);
  });

  it('the health dashboard covers the daemon: packets, drops, flows, evictions, parse errors and gaps, restarts, memory', () => {
    const health = files.find((f) => f.json.uid === 'keepalive-exporter-health')!.json;
    const all = health.panels.flatMap((p) => p.targets ?? []).map((t) => t.expr).join('\n');
    for (const m of ['keepalive_packets_total', 'keepalive_capture_dropped_packets_total', 'keepalive_flows_tracked', 'keepalive_flows_evicted_total',
      'keepalive_anomalies_total', 'keepalive_source_restarts_total', 'process_resident_memory_bytes']) {
      expect(all, m).toContain(m);
    }
  });
});
