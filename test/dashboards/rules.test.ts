/**
 * The Prometheus rules: `promtool check rules` and `promtool test rules` pass (the unit tests in
 * dashboards/prometheus/keepalive-rules.test.yml), every alert has a case where it fires and one
 * where it stays silent, a runbook-style description, and every rule reads only metrics the
 * daemon exports. Debian's prometheus package provides promtool; .ci/run installs it, so in CI
 * (CI=true) a missing promtool fails instead of skipping.
 */
import { describe, expect, it } from 'vitest';
import { execFileSync, spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parse as parseYaml } from 'yaml';
import { exportedMetricNames, metricNamesIn } from './support.js';

const DIR = join(import.meta.dirname, '../../dashboards/prometheus');
const RULES = join(DIR, 'keepalive-rules.yml');
const TESTS = join(DIR, 'keepalive-rules.test.yml');

interface Rule { record?: string; alert?: string; expr: string; for?: string; labels?: Record<string, string>; annotations?: Record<string, string> }
const groups = (parseYaml(readFileSync(RULES, 'utf8')) as { groups: Array<{ name: string; rules: Rule[] }> }).groups;
const rules = groups.flatMap((g) => g.rules);
const alerts = rules.filter((r) => r.alert);
const recorded = rules.filter((r) => r.record);

interface AlertCase { eval_time: string; alertname: string; exp_alerts: Array<{ exp_labels: Record<string, string> }> }
const unitTests = (parseYaml(readFileSync(TESTS, 'utf8')) as { tests: Array<{ alert_rule_test?: AlertCase[] }> }).tests;
const cases = unitTests.flatMap((t) => t.alert_rule_test ?? []);

const promtool = spawnSync('sh', ['-c', 'command -v promtool'], { encoding: 'utf8' }).stdout.trim();

describe('Prometheus rules', () => {
  it('has the alerts the dashboards\' users need', () => {
    expect(alerts.map((a) => a.alert)).toEqual(expect.arrayContaining([
      'KeepaliveExporterDown', 'KeepaliveReuseCollapsed', 'KeepaliveRacesRising', 'KeepaliveMaxRequestsClosesDominating', 'KeepaliveCaptureDroppingPackets',
      'KeepaliveTlsResumptionCollapsed',
    ]));
  });

  describe.runIf(promtool !== '' || process.env.CI)('promtool', () => {
    it('check rules passes', () => {
      expect(promtool, 'promtool is missing: apt-get install -y prometheus').not.toBe('');
      const out = execFileSync(promtool, ['check', 'rules', RULES], { encoding: 'utf8' });
      expect(out).toContain(`SUCCESS: ${rules.length} rules found`);
    });

    it('test rules passes (every alert fires on its condition and stays silent on healthy series)', () => {
      const r = spawnSync(promtool, ['test', 'rules', TESTS], { encoding: 'utf8', cwd: DIR });
      expect(r.status, `${r.stdout}${r.stderr}`).toBe(0);
      expect(r.stdout).toContain('SUCCESS');
    });
  });

  it.each(alerts.map((a) => [a.alert!, a]))('%s has a firing case and a silent case in the unit tests', (name) => {
    const mine = cases.filter((c) => c.alertname === name);
    expect(mine.some((c) => c.exp_alerts.length > 0), 'a case where it fires').toBe(true);
    expect(mine.some((c) => c.exp_alerts.length === 0), 'a case where it stays silent').toBe(true);
  });

  it.each(alerts.map((a) => [a.alert!, a]))('%s has a severity, a hold time and a runbook-style description', (_name, a) => {
    expect(['info', 'warning', 'critical']).toContain(a.labels?.severity);
    expect(a.for).toMatch(/^\d+m$/);
    expect(a.annotations?.summary?.length ?? 0).toBeGreaterThan(10);
    const d = a.annotations?.description ?? '';
    expect(d.length).toBeGreaterThan(250);
    // What it means, how to confirm it, what fixes it.
    expect(d).toMatch(/Check|Compare/);
    expect(d).toMatch(/Fix|Usual causes|Cause/);
  });

  it('records the TLS resumption ratio per server, and alerts on it against the server\'s own day with a handshake-rate guard', () => {
    const byName = new Map(recorded.map((r) => [r.record!, r.expr]));
    expect(byName.get('server:keepalive_tls_handshakes:rate5m')).toBe('sum by (job, server) (rate(keepalive_tls_handshakes_total[5m]))');
    expect(byName.get('server:keepalive_tls_resumption:ratio_rate5m')).toBe('server:keepalive_tls_handshakes_resumed:rate5m / server:keepalive_tls_handshakes:rate5m');
    expect(byName.get('server:keepalive_tls_handshakes_resumed:rate5m')).toContain('kind="resumed"');
    const a = alerts.find((x) => x.alert === 'KeepaliveTlsResumptionCollapsed')!;
    expect(a.expr).toMatch(/server:keepalive_tls_resumption:ratio_rate5m\s+< 0\.5 \* avg_over_time\(server:keepalive_tls_resumption:ratio_rate5m\[1d\]/);
    expect(a.expr).toMatch(/and server:keepalive_tls_handshakes:rate5m > [\d.]+/);
    // Its unit tests cover a collapse, a steady server and a quiet one.
    const mine = unitTests.filter((t) => (t.alert_rule_test ?? []).some((c) => c.alertname === a.alert));
    const series = JSON.stringify(mine);
    for (const s of ['10.0.0.1:443', '10.0.0.2:443', '10.0.0.3:443']) expect(series).toContain(s);
    const fired = mine.flatMap((t) => t.alert_rule_test!.flatMap((c) => c.exp_alerts.map((x) => x.exp_labels.server)));
    expect(fired).toEqual(['10.0.0.1:443']);
  });

  it('recording rules are named level:metric:operations and aggregate by job and server (or instance)', () => {
    expect(recorded.length).toBeGreaterThan(8);
    for (const r of recorded) {
      expect(r.record).toMatch(/^[a-z_]+:keepalive_[a-z_]+:[a-z0-9_]+$/);
      expect(r.expr, r.record).toMatch(/sum by \(job, (server|instance)|server:|server_reason:/);
    }
  });

  it('rules read only metrics the daemon exports, or other recorded rules', async () => {
    const known = await exportedMetricNames();
    known.add('up');
    for (const r of recorded) known.add(r.record!);
    for (const r of rules) {
      const names = metricNamesIn(r.expr);
      expect(names.length, r.expr).toBeGreaterThan(0);
      for (const n of names) expect(known.has(n), `${r.record ?? r.alert}: ${n}`).toBe(true);
    }
  });
});
