/**
 * The TLS panels' queries compute what their titles say (issue 13): promtool evaluates the
 * committed dashboard JSON's expressions (Grafana's variables replaced the way Grafana sends
 * them) on series of known rates, and must get the exact ratios. The real-Prometheus e2e
 * (test/e2e/dashboards-prometheus.test.ts) shows they return data on real traffic; this shows the
 * numbers are the right ones: resumed / (full + resumed) per server, TLS reuse from the TLS
 * counters, cleartext as every request minus the TLS ones, and a cleartext line that survives a
 * selection with no TLS at all.
 *
 * The series: 127.0.0.1:443 resumes 90% of 1 handshake/s and carries 5 requests per TLS
 * connection (4 of them reused); 127.0.0.1:8443 resumes half of its handshakes; 127.0.0.1:80 is
 * cleartext HTTP/1.1, 2 requests per connection (half reused). Every counter grows at a constant
 * rate, sampled each minute, so rate() over 5 minutes is exact.
 */
import { describe, expect, it } from 'vitest';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { stringify } from 'yaml';

const ROOT = join(import.meta.dirname, '../..');
const promtool = spawnSync('sh', ['-c', 'command -v promtool'], { encoding: 'utf8' }).stdout.trim();

interface Panel { title: string; targets?: Array<{ expr: string; legendFormat?: string }> }
const reuse = JSON.parse(readFileSync(join(ROOT, 'dashboards/keepalive-reuse.json'), 'utf8')) as { panels: Panel[] };
const expr = (title: string, i = 0): string => {
  const e = reuse.panels.find((p) => p.title === title)?.targets?.[i]?.expr;
  expect(e, `${title} #${i}`).toBeDefined();
  return e!
    .replaceAll('$__rate_interval', '5m')
    .replaceAll('$job', 'keepalive-exporter')
    .replaceAll('$instance', '.+')
    .replaceAll('$server', '.+');
};

const L = 'job="keepalive-exporter", instance="node-a:10842", source="live:any"';
/** A counter growing `perMinute` each minute for 10 minutes. */
const counter = (name: string, labels: string, perMinute: number) => ({ series: `${name}{${L}, ${labels}}`, values: `0+${perMinute}x10` });

const TLS_SERIES = [
  counter('keepalive_tls_handshakes_total', 'server="127.0.0.1:443", kind="full"', 6),
  counter('keepalive_tls_handshakes_total', 'server="127.0.0.1:443", kind="resumed"', 54),
  counter('keepalive_tls_handshakes_total', 'server="127.0.0.1:8443", kind="full"', 30),
  counter('keepalive_tls_handshakes_total', 'server="127.0.0.1:8443", kind="resumed"', 30),
  counter('keepalive_tls_hello_retry_requests_total', 'server="127.0.0.1:443"', 3),
  // 443: 60 connections a minute, 300 requests (60 first, 240 reused), not decrypted.
  counter('keepalive_tls_requests_total', 'server="127.0.0.1:443", reused="false"', 60),
  counter('keepalive_tls_requests_total', 'server="127.0.0.1:443", reused="true"', 240),
  counter('keepalive_requests_total', 'server="127.0.0.1:443", protocol="tls", reused="false"', 60),
  counter('keepalive_requests_total', 'server="127.0.0.1:443", protocol="tls", reused="true"', 240),
  counter('keepalive_connections_closed_total', 'server="127.0.0.1:443", protocol="tls", reason="idle_timeout", closed_by="server"', 60),
  // 8443: 60 connections a minute, one request each, decrypted HTTP/1.1 (the protocol label is http/1.1).
  counter('keepalive_tls_requests_total', 'server="127.0.0.1:8443", reused="false"', 60),
  counter('keepalive_requests_total', 'server="127.0.0.1:8443", protocol="http/1.1", reused="false"', 60),
  counter('keepalive_connections_closed_total', 'server="127.0.0.1:8443", protocol="http/1.1", reason="client_close", closed_by="client"', 60),
];
const CLEARTEXT_SERIES = [
  // 80: 30 connections a minute, 60 requests (30 reused).
  counter('keepalive_requests_total', 'server="127.0.0.1:80", protocol="http/1.1", reused="false"', 30),
  counter('keepalive_requests_total', 'server="127.0.0.1:80", protocol="http/1.1", reused="true"', 30),
  counter('keepalive_connections_closed_total', 'server="127.0.0.1:80", protocol="http/1.1", reason="idle_timeout", closed_by="server"', 30),
];

interface ExprTest { expr: string; eval_time: string; exp_samples: Array<{ labels: string; value: number }> }
function runPromtool(tests: Array<{ input_series: unknown[]; promql_expr_test: ExprTest[] }>): { status: number | null; out: string } {
  const dir = mkdtempSync(join(tmpdir(), 'keepalive-tls-queries-'));
  try {
    writeFileSync(join(dir, 'empty-rules.yml'), 'groups: []\n');
    const file = join(dir, 'tls-queries.test.yml');
    writeFileSync(file, stringify({ rule_files: ['empty-rules.yml'], evaluation_interval: '1m', tests: tests.map((t) => ({ interval: '1m', ...t })) }));
    const r = spawnSync(promtool, ['test', 'rules', file], { encoding: 'utf8', cwd: dir });
    return { status: r.status, out: `${r.stdout}${r.stderr}` };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
const at = (e: string, exp_samples: ExprTest['exp_samples']): ExprTest => ({ expr: e, eval_time: '10m', exp_samples });

describe.runIf(promtool !== '' || process.env.CI)('the TLS panels\' queries on series of known rates (promtool)', () => {
  it('resumption ratio per server, handshakes by kind, reuse and requests per connection on TLS and on cleartext', () => {
    const r = runPromtool([{
      input_series: [...TLS_SERIES, ...CLEARTEXT_SERIES],
      promql_expr_test: [
        at(expr('TLS resumption ratio by server'), [{ labels: '{server="127.0.0.1:443"}', value: 0.9 }, { labels: '{server="127.0.0.1:8443"}', value: 0.5 }]),
        at(expr('TLS handshakes by kind'), [{ labels: '{kind="full"}', value: 0.6 }, { labels: '{kind="resumed"}', value: 1.4 }]),
        at(expr('TLS handshakes by kind', 1), [{ labels: '{}', value: 0.05 }]),
        // TLS: 240 reused of 360 requests; cleartext: 30 of 60.
        at(expr('Reuse ratio, TLS vs cleartext'), [{ labels: '{}', value: 240 / 360 }]),
        at(expr('Reuse ratio, TLS vs cleartext', 1), [{ labels: '{}', value: 0.5 }]),
        // TLS: 360 requests over 120 handshakes; cleartext: 60 requests over 30 connections.
        at(expr('Requests per connection, TLS vs cleartext'), [{ labels: '{}', value: 3 }]),
        at(expr('Requests per connection, TLS vs cleartext', 1), [{ labels: '{}', value: 2 }]),
      ],
    }]);
    expect(r.status, r.out).toBe(0);
  });

  it('a selection without TLS still has its cleartext line, and no TLS line', () => {
    const r = runPromtool([{
      input_series: CLEARTEXT_SERIES,
      promql_expr_test: [
        at(expr('Reuse ratio, TLS vs cleartext'), []),
        at(expr('Reuse ratio, TLS vs cleartext', 1), [{ labels: '{}', value: 0.5 }]),
        at(expr('Requests per connection, TLS vs cleartext', 1), [{ labels: '{}', value: 2 }]),
        at(expr('TLS resumption ratio by server'), []),
      ],
    }]);
    expect(r.status, r.out).toBe(0);
  });

  it('promtool catches a wrong expectation here (the check is not vacuous)', () => {
    const r = runPromtool([{
      input_series: TLS_SERIES,
      promql_expr_test: [at(expr('TLS resumption ratio by server'), [{ labels: '{server="127.0.0.1:443"}', value: 0.5 }, { labels: '{server="127.0.0.1:8443"}', value: 0.5 }])],
    }]);
    expect(r.status).not.toBe(0);
    expect(r.out).toContain('127.0.0.1:443');
  });
});
