/**
 * The dashboards and rules against the real thing: a private Prometheus (Debian's package) loads
 * dashboards/prometheus/keepalive-rules.yml and scrapes the built daemon every second while the
 * daemon replays the real-server capture (test/fixtures/real), the h2c one (test/fixtures/h2c:
 * the protocol and HTTP/2 panels) and the TLS one (test/fixtures/tls, without its key log: the
 * TLS panels, with requests estimated from record turns) at capture pace, captures live on
 * `lo` with tcpdump, and relays HTTP through a proxy tap. Then every query of every panel of the
 * committed dashboard JSON, every variable query and every recording rule goes through
 * Prometheus' HTTP API and must return data (a finite value: no empty or NaN-only panel on real
 * traffic), every alert expression must parse there, and every rule must evaluate without error.
 *
 * Grafana's variables are replaced the way Grafana sends them: `$job` by the scrape job,
 * `$instance` and `$server` by the "All" value `.+`, `$__rate_interval` by 4 scrape intervals,
 * `$__range` by the time the test ran.
 *
 * Needs root (tcpdump on lo), tcpdump and prometheus; .ci/run installs them. Without them the
 * suite is skipped on a developer machine and fails in CI (CI=true). KEEP_TMP=1 keeps the temp dir.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { Agent, createServer, request, type Server } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parse as parseYaml } from 'yaml';
import { findTool, freePort, httpGet, sleep, start, stop, tail, waitFor, type Proc } from '../helpers/procs.js';
import { api, query, queryRange, startPrometheus, type RangeSeries } from './support/prometheus.js';

const ROOT = join(import.meta.dirname, '../..');
const MAIN = join(ROOT, 'dist/cli/main.js');
const FIXTURE = join(ROOT, 'test/fixtures/real/real-servers.pcap');
const H2C_FIXTURE = join(ROOT, 'test/fixtures/h2c/h2c-servers.pcap');
const TLS_FIXTURE = join(ROOT, 'test/fixtures/tls/tls-servers.pcap');
/** Clients coming back after nginx's idle closes (test/fixtures/whatif): the what-if panel's reconnect gaps. */
const WHATIF_FIXTURE = join(ROOT, 'test/fixtures/whatif/whatif.pcap');
const RULES = join(ROOT, 'dashboards/prometheus/keepalive-rules.yml');
const DASHBOARDS = ['keepalive-reuse.json', 'keepalive-exporter-health.json'];
// The job name the alerting rules expect (deploy/ scrapes under it too).
const JOB = 'keepalive-exporter';
const HOST = '127.0.0.1';

const TOOLS = { tcpdump: findTool('tcpdump'), prometheus: findTool('prometheus') };
const isRoot = process.getuid?.() === 0;
const canRun = isRoot && TOOLS.tcpdump !== null && TOOLS.prometheus !== null;

interface Panel {
  id: number;
  type: string;
  title: string;
  targets?: Array<{ refId: string; expr: string; instant?: boolean }>;
}
interface Variable { name: string; type: string; query?: { query: string } | string }
interface Dashboard { title: string; panels: Panel[]; templating: { list: Variable[] } }

const dashboards = DASHBOARDS.map((f) => JSON.parse(readFileSync(join(ROOT, 'dashboards', f), 'utf8')) as Dashboard);
const panelQueries = dashboards.flatMap((d) => d.panels.flatMap((p) =>
  (p.targets ?? []).map((t) => ({ name: `${d.title} / ${p.title} / ${t.refId}`, expr: t.expr, instant: t.instant === true }))));
const variables = dashboards.flatMap((d) => d.templating.list.filter((v) => v.type === 'query').map((v) => ({ name: `${d.title} / $${v.name}`, definition: (v.query as { query: string }).query })));

interface Rule { record?: string; alert?: string; expr: string }
const ruleGroups = (parseYaml(readFileSync(RULES, 'utf8')) as { groups: Array<{ name: string; rules: Rule[] }> }).groups;
const recordingRules = ruleGroups.flatMap((g) => g.rules.filter((r) => r.record));
const alertingRules = ruleGroups.flatMap((g) => g.rules.filter((r) => r.alert));

const RATE_INTERVAL = '4s';

function grafana(expr: string, rangeSeconds: number): string {
  return expr
    .replaceAll('$__rate_interval', RATE_INTERVAL)
    .replaceAll('$__range', `${rangeSeconds}s`)
    .replaceAll('$job', JOB)
    .replaceAll('$instance', '.+')
    .replaceAll('$server', '.+');
}

const show = (series: RangeSeries[]): string => JSON.stringify(series.map((s) => ({ ...s.labels, values: s.values.map(([, v]) => v) })));
function get(url: string, agent: Agent): Promise<string> {
  return new Promise((resolve, reject) => {
    request(url, { agent }, (res) => {
      let body = '';
      res.setEncoding('utf8').on('data', (d: string) => (body += d)).on('end', () => resolve(body)).on('error', reject);
    }).on('error', reject).end();
  });
}

const finite = (values: Array<[number, number]>): number => values.filter(([, v]) => Number.isFinite(v)).length;

describe.runIf(canRun || process.env.CI)('dashboards and rules on a real Prometheus scraping the daemon', () => {
  let dir = '';
  let prometheus: Proc | null = null;
  let daemon: Proc | null = null;
  let upstream: Server | null = null;
  let promPort = 0;
  let started = 0;
  let ended = 0;
  let proxied = 0;

  beforeAll(async () => {
    expect({ root: isRoot, tcpdump: TOOLS.tcpdump !== null, prometheus: TOOLS.prometheus !== null }).toEqual({ root: true, tcpdump: true, prometheus: true });
    dir = mkdtempSync(join(tmpdir(), 'keepalive-dashboards-'));
    mkdirSync(join(dir, 'logs'));
    const [daemonPort, proxyPort, upstreamPort] = [await freePort(), await freePort(), await freePort()];
    promPort = await freePort();

    // The upstream behind the proxy tap: a keep-alive HTTP server (Node's default 5 s timeout).
    upstream = createServer((_req, res) => res.end('ok\n'));
    await new Promise<void>((resolve) => upstream!.listen(upstreamPort, HOST, resolve));

    // Prometheus first, so its first scrapes see the counters before the replay moves them.
    prometheus = await startPrometheus(TOOLS.prometheus!, dir, promPort, JOB, `${HOST}:${daemonPort}`, [RULES]);
    // Its discovery hands the target to the scrape loop only after a few seconds: wait until it
    // has tried once (up=0, nothing listens yet), so the whole replay is scraped every second.
    await waitFor('Prometheus to scrape the (not yet started) daemon', 20_000, async () => ((await query(promPort, `up{job="${JOB}"}`)).length ? true : null), 250);
    started = Date.now() / 1000;
    daemon = start('daemon', process.execPath, [
      MAIN,
      '--pcap', FIXTURE, '--pcap', H2C_FIXTURE, '--pcap', TLS_FIXTURE, '--pcap', WHATIF_FIXTURE, '--replay', 'realtime',
      // Live on lo as well: the capture's own metrics (drops, restarts) and the proxied traffic.
      '--interface', 'lo', '--ports', `18080,18081,18100,18101,18102,18103,18110,18111,18112,18120,${upstreamPort}`,
      '--proxy', `${HOST}:${proxyPort}=${HOST}:${upstreamPort}`,
      '--web.listen-address', `${HOST}:${daemonPort}`,
    ], join(dir, 'logs/daemon.out'));
    await waitFor('the daemon to be ready', 15_000, async () => {
      if (daemon!.exit) throw new Error(`daemon exited ${JSON.stringify(daemon!.exit)}\n${tail(daemon)}`);
      return (await httpGet(`http://${HOST}:${daemonPort}/readyz`))?.status === 200 ? true : null;
    });

    // Real clients through the tap while the file replays: 10 requests a second, on a keep-alive
    // agent that is replaced every 10 requests (so connections open and close all along).
    const until = Date.now() + 8000;
    let agent = new Agent({ keepAlive: true });
    while (Date.now() < until) {
      expect(await get(`http://${HOST}:${proxyPort}/`, agent)).toBe('ok\n');
      if (++proxied % 10 === 0) {
        agent.destroy();
        agent = new Agent({ keepAlive: true });
      }
      await sleep(100);
    }
    agent.destroy();
    // The files have ended (the what-if one is the longest: 18 s of traffic) once their sources read 0; a few more scrapes and rule runs.
    await waitFor('the capture files to finish', 30_000, async () => {
      const r = await query(promPort, `keepalive_source_up{kind="file"}`);
      return r.length === 4 && r.every((x) => x.value === 0) ? true : null;
    }, 500);
    await sleep(4000);
    ended = Date.now() / 1000;
  }, 90_000);

  afterAll(async () => {
    if (daemon) {
      const exit = await stop(daemon, 'SIGTERM', 10_000);
      expect(exit.code, tail(daemon)).toBe(0);
    }
    await stop(prometheus, 'SIGKILL', 5000);
    await new Promise((resolve) => (upstream ? upstream.close(resolve) : resolve(null)));
    if (dir && !process.env.KEEP_TMP) rmSync(dir, { recursive: true, force: true });
  });

  it('Prometheus scraped the daemon under the job the alerts expect', async () => {
    const up = await query(promPort, `up{job="${JOB}"}`);
    expect(up.map((s) => s.value)).toEqual([1]);
    expect(proxied).toBeGreaterThan(50);
  });

  it('has dashboard queries to run (both dashboards, every panel type)', () => {
    expect(panelQueries.length).toBeGreaterThan(40);
    expect(new Set(dashboards.flatMap((d) => d.panels.map((p) => p.type)))).toEqual(new Set(['row', 'stat', 'timeseries', 'bargauge', 'heatmap', 'table']));
  });

  it.each(panelQueries.map((q) => [q.name, q]))('panel query returns data: %s', async (_name, q) => {
    const range = Math.ceil(ended - started);
    const expr = grafana(q.expr, range);
    if (q.instant) {
      // Tables and the close-reason bar gauge: one value per series at the end of the range.
      const r = await query(promPort, expr);
      expect(r.length, expr).toBeGreaterThan(0);
      expect(r.filter((s) => Number.isFinite(s.value)).length, expr).toBeGreaterThan(0);
      return;
    }
    const series = await queryRange(promPort, expr, Math.floor(started), Math.ceil(ended), 1);
    expect(series.length, expr).toBeGreaterThan(0);
    expect(series.reduce((n, s) => n + finite(s.values), 0), `${expr}: ${show(series)}`).toBeGreaterThan(0);
  });

  it.each(variables.map((v) => [v.name, v]))('variable has values: %s', async (_name, v) => {
    // label_values(SELECTOR, LABEL): what Grafana asks as /api/v1/label/LABEL/values?match[]=SELECTOR
    const m = /^label_values\((.+),\s*(\w+)\)$/.exec(v.definition);
    expect(m, v.definition).not.toBeNull();
    const selector = grafana(m![1]!, 0);
    const values = await api<string[]>(promPort, `/api/v1/label/${m![2]}/values?match[]=${encodeURIComponent(selector)}&start=${Math.floor(started)}&end=${Math.ceil(ended)}`);
    expect(values.length, v.definition).toBeGreaterThan(0);
    if (m![2] === 'server') expect(values).toEqual(expect.arrayContaining(['127.0.0.1:18080', '127.0.0.1:18081']));
  });

  it.each(recordingRules.map((r) => [r.record!, r]))('recording rule has data: %s', async (name) => {
    const series = await queryRange(promPort, name, Math.floor(started), Math.ceil(ended), 1);
    expect(series.length, name).toBeGreaterThan(0);
    expect(series.reduce((n, s) => n + finite(s.values), 0), `${name}: ${show(series)}`).toBeGreaterThan(0);
  });

  it.each(alertingRules.map((r) => [r.alert!, r]))('alert expression parses and evaluates: %s', async (_name, r) => {
    // Healthy replayed traffic: the expression runs (a parse error would throw) and may be empty.
    const parsed = await api<unknown>(promPort, `/api/v1/query?query=${encodeURIComponent(r.expr)}`);
    expect(parsed).toBeDefined();
  });

  it('every rule Prometheus loaded evaluated without error', async () => {
    const data = await api<{ groups: Array<{ file: string; rules: Array<{ name: string; health: string; lastError?: string; type: string }> }> }>(promPort, '/api/v1/rules');
    const rules = data.groups.flatMap((g) => g.rules.map((r) => ({ file: g.file, name: r.name, type: r.type, health: r.health, lastError: r.lastError ?? '' })));
    expect(rules.length).toBe(recordingRules.length + alertingRules.length);
    for (const r of rules) expect(r, r.name).toEqual({ file: RULES, name: r.name, type: r.type, health: 'ok', lastError: '' });
  });
});
