/**
 * Issue 14, pictures: `analyze --html FILE` and the daemon's landing page in a real browser. Headless Chromium (Debian's
 * package; .ci/run installs it) loads the page made from the real-server capture and from the
 * what-if capture, with no network: the test checks what is on the page after its scripts ran
 * (the totals and tables equal `analyze --json`, both charts drawn by uPlot, the what-if row, the
 * timeline), that the page logged nothing to the console (no error, no warning), and keeps a
 * screenshot of each in test-output/screenshots/ (html-real-servers.png, html-whatif.png). The
 * daemon's `/` with the real-server capture replayed: its live numbers equal /metrics' (reuse
 * ratio, requests, close reasons, the servers' advertised and observed timeouts, no drops);
 * screenshot daemon-landing.png.
 *
 * Chromium runs with --headless --dump-dom (the DOM after the scripts) and --screenshot; its
 * console messages go to stderr with --enable-logging=stderr. Without chromium the suite is
 * skipped on a developer machine and fails in CI (CI=true).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { OPTIONS, envName } from '../../src/config/daemon.js';
import { count, percent } from '../../src/report/format.js';
import { buildCli } from '../helpers/cli.js';
import { findTool } from '../helpers/procs.js';
import { replayDaemon } from '../helpers/daemon.js';
import { parseProm, samples, total } from '../helpers/prom.js';

const ROOT = join(import.meta.dirname, '../..');
const SHOTS = join(ROOT, 'test-output/screenshots');
const ENV: NodeJS.ProcessEnv = { ...process.env };
for (const o of OPTIONS) delete ENV[envName(o.flag)];
const CHROMIUM = findTool('chromium');

let dir = '';
let MAIN = '';
let out = '';

interface Report {
  totals: { connections: number; requests: number; reusedRequests: number; closeReasons: Record<string, number> };
  servers: Array<{ server: string; connections: number; requests: number }>;
  clients: Array<{ client: string; connections: number }>;
}

/** The page's DOM after its scripts ran, and what the page wrote to the console. */
function load(html: string): { dom: string; console: string[] } {
  return loadUrl(`file://${html}`);
}

function loadUrl(url: string): { dom: string; console: string[] } {
  const r = spawnSync(CHROMIUM!, ['--headless', '--no-sandbox', '--disable-gpu', '--no-first-run', '--enable-logging=stderr', '--v=0',
    // No network: the page must not need one (a proxy that goes nowhere for anything not file://).
    '--proxy-server=127.0.0.1:9', '--proxy-bypass-list=<-loopback>;127.0.0.1', `--user-data-dir=${join(out, 'profile')}`, '--dump-dom', url], { encoding: 'utf8', timeout: 60_000 });
  expect(r.status, r.stderr).toBe(0);
  return { dom: r.stdout, console: r.stderr.split('\n').filter((l) => l.includes(':CONSOLE')) };
}

function screenshot(html: string, png: string, height = 2600): void {
  const url = html.startsWith('http') ? html : `file://${html}`;
  const r = spawnSync(CHROMIUM!, ['--headless', '--no-sandbox', '--disable-gpu', '--no-first-run', '--hide-scrollbars', '--proxy-server=127.0.0.1:9', '--proxy-bypass-list=<-loopback>;127.0.0.1',
    `--user-data-dir=${join(out, 'profile')}`, `--window-size=1200,${height}`, `--screenshot=${png}`, url], { encoding: 'utf8', timeout: 60_000 });
  expect(r.status, r.stderr).toBe(0);
  expect(statSync(png).size).toBeGreaterThan(20_000);
}

function analyze(pcap: string, html: string): Report {
  const r = spawnSync(process.execPath, [MAIN, 'analyze', pcap, '--json', '--html', html], { cwd: ROOT, env: ENV, encoding: 'utf8', timeout: 60_000 });
  expect(r.status, r.stderr).toBe(0);
  return JSON.parse(r.stdout) as Report;
}

/** Text of the element with this id in the dumped DOM. */
function byId(dom: string, id: string): string {
  const m = new RegExp(`id="${id}"[^>]*>([^<]*)<`).exec(dom);
  return m ? m[1] : '';
}

describe.runIf(CHROMIUM !== null || process.env.CI)('analyze --html in headless Chromium', () => {
  beforeAll(() => {
    expect(CHROMIUM, 'chromium (apt-get install chromium)').not.toBeNull();
    ({ dir, main: MAIN } = buildCli('ka-html-'));
    out = mkdtempSync(join(tmpdir(), 'ka-html-out-'));
    mkdirSync(SHOTS, { recursive: true });
  }, 120_000);
  afterAll(() => {
    if (dir) rmSync(dir, { recursive: true, force: true });
    if (out) rmSync(out, { recursive: true, force: true });
  });

  it('the real-server capture: totals, close reasons, servers and clients as --json says, two uPlot charts, a timeline, a quiet console', () => {
    const html = join(out, 'real.html');
    const j = analyze(join(ROOT, 'test/fixtures/real/real-servers.pcap'), html);
    const page = readFileSync(html, 'utf8');
    // Self-contained: no address to fetch anything from.
    expect(page).not.toMatch(/(src|href)=["']?(https?:)?\/\//);
    const { dom, console } = load(html);
    expect(console, console.join('\n')).toEqual([]);
    expect(byId(dom, 'connections')).toBe(count(j.totals.connections));
    expect(byId(dom, 'requests')).toBe(count(j.totals.requests));
    expect(byId(dom, 'reuse')).toBe(percent(j.totals.reusedRequests / j.totals.requests));
    for (const [reason, n] of Object.entries(j.totals.closeReasons)) expect(dom, reason).toMatch(new RegExp(`</span>${reason}</td><td>${count(n)}</td>`));
    for (const s of j.servers) expect(dom, s.server).toContain(`<td class="l">${s.server}</td><td>${count(s.connections)}</td><td>${count(s.requests)}</td>`);
    for (const c of j.clients) expect(dom, c.client).toContain(`<td class="l">${c.client}</td><td>${count(c.connections)}</td>`);
    // uPlot drew both charts (its root div and a canvas each), and the timeline has a bar per connection.
    expect(dom.match(/class="uplot/g)?.length).toBe(2);
    expect(dom.match(/<canvas/g)?.length).toBeGreaterThanOrEqual(2);
    const bars = /<svg id="timeline"[\s\S]*?<\/svg>/.exec(dom)?.[0] ?? '';
    expect(bars.match(/<rect /g)?.length).toBe(j.totals.connections);
    screenshot(html, join(SHOTS, 'html-real-servers.png'));
  }, 120_000);

  it('the what-if capture: the table says what a longer timeout and a higher limit would have saved', () => {
    const html = join(out, 'whatif.html');
    analyze(join(ROOT, 'test/fixtures/whatif/whatif.pcap'), html);
    const { dom, console } = load(html);
    expect(console, console.join('\n')).toEqual([]);
    const table = /<table id="whatif">[\s\S]*?<\/table>/.exec(dom)?.[0] ?? '';
    expect(table).toContain('keep-alive timeout (1.0 s today)');
    expect(table).toContain('5.0 s: 3 of 8 new connections (37.5%)<br>10.0 s: 4 of 8 new connections (50.0%)</td>');
    expect(table).toContain('max requests (4)');
    expect(table).toContain('2 ended at the limit, 2 reconnected at once; 40 would have saved about 2');
    screenshot(html, join(SHOTS, 'html-whatif.png'));
  }, 120_000);

  it('the daemon\'s landing page: live numbers equal to /metrics, a quiet console', async () => {
    const d = await replayDaemon(MAIN, ['--pcap', join(ROOT, 'test/fixtures/real/real-servers.pcap')], { cwd: ROOT, env: { ...ENV, KEEPALIVE_EXPORTER_DEBUG: '' } });
    const base = d.base;
    try {
      const s = parseProm(await (await fetch(`${base}/metrics`)).text());
      const { dom, console } = loadUrl(`${base}/`);
      expect(console, console.join('\n')).toEqual([]);
      const requests = total(s, 'keepalive_requests_total');
      expect(byId(dom, 'requests')).toBe(count(requests));
      expect(byId(dom, 'reuse')).toBe(percent(total(s, 'keepalive_requests_total', { reused: 'true' }) / requests));
      expect(byId(dom, 'drops')).toBe('0');
      for (const reason of new Set(samples(s, 'keepalive_connections_closed_total').map((x) => x.labels.reason))) {
        expect(dom, reason).toContain(`<td class="l">${reason}</td><td>${count(total(s, 'keepalive_connections_closed_total', { reason }))}</td>`);
      }
      // Each server with its advertised Keep-Alive timeout and the idle close it was seen to make (2 s, both).
      for (const server of ['127.0.0.1:18080', '127.0.0.1:18081']) {
        expect(dom, server).toMatch(new RegExp(`<td class="l">${server.replace(/\./g, '\\.')}</td><td>${count(total(s, 'keepalive_requests_total', { server }))}</td><td>[0-9.]+%</td><td>2\\.0 s</td><td>2\\.0 s</td>`));
      }
      expect(dom).toContain('<meta http-equiv="refresh" content="5">');
      screenshot(`${base}/`, join(SHOTS, 'daemon-landing.png'), 1000);
    } finally {
      expect(await d.stop(), d.stderr()).toBe(0);
    }
  }, 60_000);

  it('a page that cannot be written is one line and exit 2', () => {
    const r = spawnSync(process.execPath, [MAIN, 'analyze', join(ROOT, 'test/fixtures/real/real-servers.pcap'), '--html', '/nonexistent/dir/report.html'], { cwd: ROOT, env: ENV, encoding: 'utf8', timeout: 60_000 });
    expect(r.status).toBe(2);
    expect(r.stderr.trim().split('\n')).toHaveLength(1);
    expect(r.stderr).toMatch(/--html: cannot write \/nonexistent\/dir\/report\.html: ENOENT/);
  });
});
