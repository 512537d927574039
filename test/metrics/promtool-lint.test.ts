/**
 * `promtool check metrics` (Prometheus' linter for metric names, types, units and help) on the
 * whole scrape of a real daemon process: the CLI compiled from src/, reading the real-server
 * capture and running a proxy tap, scraped over loopback by curl, as Prometheus would:
 *   - text, nothing left out: prom-client's default process_* and nodejs_* metrics included (its
 *     three `nodejs_active_*_total` gauges, which promtool rejects, are dropped by the exporter);
 *   - text again after an OpenMetrics scrape (issue 9: counters had lost `_total`);
 *   - gzipped (Prometheus sends Accept-Encoding: gzip), uncompressed by curl.
 * Runs wherever promtool is (CI installs it: apt-get install -y prometheus), and fails in CI
 * without it.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { buildCli } from '../helpers/cli.js';
import { freePort, start, stop, tail, waitFor, type Proc } from '../helpers/procs.js';
import { OPTIONS, envName } from '../../src/config/daemon.js';

const ROOT = join(import.meta.dirname, '../..');
const FIXTURE = join(ROOT, 'test/fixtures/real/real-servers.pcap');
const promtool = spawnSync('sh', ['-c', 'command -v promtool'], { encoding: 'utf8' }).stdout.trim();
const OM_ACCEPT = 'application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1';

describe.runIf(promtool !== '' || process.env.CI)('promtool check metrics on a real scrape of the daemon, whole', () => {
  let dir = '';
  let daemon: Proc | null = null;
  let base = '';

  beforeAll(async () => {
    expect(promtool, 'promtool is missing: apt-get install -y prometheus').not.toBe('');
    const cli = buildCli('ka-promtool-');
    dir = cli.dir;
    const env: NodeJS.ProcessEnv = { ...process.env };
    for (const o of OPTIONS) delete env[envName(o.flag)];
    const proxyPort = await freePort();
    const log = join(mkdtempSync(join(tmpdir(), 'ka-promtool-log-')), 'daemon.log');
    daemon = start('daemon', process.execPath, [cli.main, '--pcap', FIXTURE, '--proxy', `127.0.0.1:${proxyPort}=127.0.0.1:1`, '--web.listen-address', '127.0.0.1:0'], log, env);
    base = await waitFor(`the daemon to read the capture (${tail(daemon)})`, 20_000, () => {
      const text = readFileSync(log, 'utf8');
      const m = /listening on (http:\/\/[^\s"]+)\/metrics/.exec(text);
      return m && /read \d+ packets/.test(text) ? m[1] : null;
    });
  }, 120_000);

  afterAll(async () => {
    await stop(daemon, 'SIGTERM', 5000);
    if (daemon) rmSync(join(daemon.log, '..'), { recursive: true, force: true });
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  const curl = (...args: string[]): string => {
    const r = spawnSync('curl', ['-sS', '--fail', '--max-time', '10', ...args, `${base}/metrics`], { encoding: 'utf8' });
    expect(r.status, r.stderr).toBe(0);
    return r.stdout;
  };
  const lint = (text: string): void => {
    const r = spawnSync(promtool, ['check', 'metrics'], { input: text, encoding: 'utf8' });
    expect(`${r.stdout}${r.stderr}`.trim()).toBe('');
    expect(r.status).toBe(0);
  };

  it('the text scrape passes, default metrics and all', () => {
    const text = curl();
    // It is the whole scrape: the capture's facts, the proxy tap's, the build, the default metrics.
    expect(text).toContain('keepalive_requests_per_connection_bucket{');
    expect(text).toMatch(/^keepalive_proxy_connections_total\{source="proxy:\d+"\} 0$/m);
    expect(text).toMatch(/^keepalive_exporter_build_info\{version="[^"]+",revision="[^"]+",nodeversion="v\d+[^"]*"\} 1$/m);
    expect(text).toMatch(/^process_cpu_seconds_total /m);
    expect(text).toMatch(/^nodejs_active_handles\{type="[A-Za-z]+"\} \d+$/m);
    expect(text).not.toMatch(/^nodejs_active_(handles|requests|resources)_total/m);
    lint(text);
  });

  it('the text scrape after an OpenMetrics one passes', () => {
    const om = curl('-H', `Accept: ${OM_ACCEPT}`);
    expect(om.endsWith('# EOF\n')).toBe(true);
    const text = curl();
    expect(text).toContain('# TYPE keepalive_requests_total counter');
    lint(text);
  });

  it('the gzipped scrape passes', () => {
    const headers = spawnSync('curl', ['-sS', '-o', '/dev/null', '-D', '-', '-H', 'Accept-Encoding: gzip', `${base}/metrics`], { encoding: 'utf8' }).stdout;
    expect(headers).toMatch(/^content-encoding: gzip\r$/im);
    const text = curl('--compressed');
    expect(text).toContain('# TYPE keepalive_requests_total counter');
    lint(text);
  });
});
