/**
 * `analyze --html FILE`: one self-contained page (it opens without a network): the totals, close
 * reasons over capture time, the requests-per-connection distribution, the what-if table, the
 * server and client tables, and a timeline of the busiest connections (a bar from open to close
 * per connection, requests as ticks, coloured by close reason).
 *
 * Charts: uPlot (MIT, no dependencies, 51 KB minified: canvas line and bar charts that stay fast
 * with thousands of points), inlined with its CSS from node_modules; the timeline is SVG made
 * here (a Gantt chart is not a uPlot chart type). Every value from the capture is escaped: the
 * page is text and numbers, and the one script block of data is JSON with `<` escaped.
 *
 * `HtmlCollector` consumes the engine's facts as they come and keeps bounded state: close counts
 * per capture second (at most `MAX_SECONDS` distinct seconds), and the request times of open
 * connections (at most `MAX_TICKS` each) and of the `TIMELINE_CONNECTIONS` busiest closed ones.
 */
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { CLOSE_REASONS, type ConnectionOutcome, type ConnectionRecord, type EngineConsumer, type RequestRecord } from '../conn/records.js';
import { count, duration, percent } from './format.js';
import { REQUESTS_PER_CONNECTION_BUCKETS, serverDisplay, shownTimeoutOptions, type ClientSummary, type ServerSummary, type Totals, type Warning } from './summary.js';

/** Connections drawn in the timeline: the busiest (most requests) this many. */
export const TIMELINE_CONNECTIONS = 300;
/** Request ticks kept per connection. */
export const MAX_TICKS = 1000;
/** Distinct capture seconds counted for the close-reason chart; later ones are dropped (counted). */
export const MAX_SECONDS = 200_000;

const OUTCOMES: readonly ConnectionOutcome[] = [...CLOSE_REASONS, 'open'];

/** The colours of the dashboards (dashboards/src/reuse.ts), as CSS colours. */
export const REASON_COLORS: Record<ConnectionOutcome, string> = {
  idle_timeout: '#3274d9',
  max_requests: '#ff780a',
  server_close: '#a352cc',
  client_close: '#56a64b',
  client_idle: '#96d98d',
  not_persistent: '#f2cc0c',
  race: '#e02f44',
  aborted: '#ad0317',
  reset: '#c4162a',
  unused: '#8e8e8e',
  max_age: '#fa6400',
  open: '#c0c0c0',
};

interface TimelineEntry {
  client: string;
  server: string;
  openedAt: number;
  closedAt: number | null;
  reason: ConnectionOutcome;
  requests: number;
  ticks: number[];
}

export class HtmlCollector implements EngineConsumer {
  /** Closes per capture second, by OUTCOMES index. */
  private readonly perSecond = new Map<number, number[]>();
  secondsDropped = 0;
  private readonly ticks = new Map<ConnectionRecord, number[]>();
  private timeline: TimelineEntry[] = [];

  request(c: ConnectionRecord, r: RequestRecord): void {
    let t = this.ticks.get(c);
    if (!t) this.ticks.set(c, (t = []));
    if (t.length < MAX_TICKS) t.push(r.time);
  }

  closed(c: ConnectionRecord): void {
    const ticks = this.ticks.get(c) ?? [];
    this.ticks.delete(c);
    const at = c.closedAt ?? c.openedAt;
    const sec = Math.floor(at);
    let row = this.perSecond.get(sec);
    if (!row) {
      if (this.perSecond.size >= MAX_SECONDS) this.secondsDropped++;
      else this.perSecond.set(sec, (row = new Array<number>(OUTCOMES.length).fill(0)));
    }
    if (row) row[OUTCOMES.indexOf(c.closeReason)]++;
    this.timeline.push({ client: c.client, server: c.server, openedAt: c.openedAt, closedAt: c.closedAt, reason: c.closeReason, requests: c.requests, ticks });
    if (this.timeline.length >= 2 * TIMELINE_CONNECTIONS) this.trim();
  }

  private trim(): void {
    this.timeline.sort((a, b) => b.requests - a.requests || a.openedAt - b.openedAt);
    this.timeline.length = Math.min(this.timeline.length, TIMELINE_CONNECTIONS);
  }

  /** Close counts per time bucket (at most `points` buckets over the capture), by reason; only reasons seen. */
  closeSeries(points = 120): { times: number[]; series: Array<{ reason: ConnectionOutcome; values: number[] }> } {
    const secs = [...this.perSecond.keys()].sort((a, b) => a - b);
    if (secs.length === 0) return { times: [], series: [] };
    const first = secs[0];
    const last = secs[secs.length - 1];
    const width = Math.max(1, Math.ceil((last - first + 1) / points));
    const n = Math.floor((last - first) / width) + 1;
    const times = Array.from({ length: n }, (_, i) => first + i * width);
    const sums = OUTCOMES.map(() => new Array<number>(n).fill(0));
    for (const [s, row] of this.perSecond) {
      const i = Math.floor((s - first) / width);
      row.forEach((v, k) => { sums[k][i] += v; });
    }
    const series = OUTCOMES.map((reason, k) => ({ reason, values: sums[k] })).filter((x) => x.values.some((v) => v > 0));
    return { times, series };
  }

  /** The busiest connections, in order of opening. */
  busiest(): TimelineEntry[] {
    this.trim();
    return [...this.timeline].sort((a, b) => a.openedAt - b.openedAt);
  }
}

export interface HtmlReportInput {
  file: string;
  packets: number;
  firstPacketTime: number | null;
  lastPacketTime: number | null;
  totals: Totals;
  distribution: number[];
  servers: ServerSummary[];
  clients: ClientSummary[];
  clientsGrouped: boolean;
  warnings: Warning[];
  collector: HtmlCollector;
  version: string;
}

const esc = (s: string): string => s.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);

function uplotAssets(): { js: string; css: string } {
  const req = createRequire(import.meta.url);
  return {
    js: readFileSync(req.resolve('uplot/dist/uPlot.iife.min.js'), 'utf8'),
    css: readFileSync(req.resolve('uplot/dist/uPlot.min.css'), 'utf8'),
  };
}

export function renderHtml(r: HtmlReportInput): string {
  const { js, css } = uplotAssets();
  const t = r.totals;
  const span = r.firstPacketTime !== null && r.lastPacketTime !== null ? r.lastPacketTime - r.firstPacketTime : 0;
  const closes = r.collector.closeSeries();
  const data = {
    closes: { times: closes.times, series: closes.series.map((s) => ({ reason: s.reason, color: REASON_COLORS[s.reason], values: s.values })) },
    distribution: { labels: REQUESTS_PER_CONNECTION_BUCKETS.map(([l]) => l), values: r.distribution },
  };
  const card = (label: string, value: string, id: string): string => `<div class="card"><div class="label">${esc(label)}</div><div class="value" id="${id}">${esc(value)}</div></div>`;
  const reasons = ([...CLOSE_REASONS, 'open'] as const).filter((k) => t.closeReasons[k]);
  const top = r.servers.slice(0, 50);
  const out: string[] = [];
  out.push(`<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>keepalive-exporter: ${esc(r.file)}</title>
<style>${css}
body { font: 14px/1.4 system-ui, sans-serif; margin: 24px; color: #222; }
h1 { font-size: 20px; margin: 0 0 4px; } h2 { font-size: 16px; margin: 28px 0 8px; }
.sub { color: #666; margin-bottom: 16px; }
.cards { display: flex; gap: 12px; flex-wrap: wrap; }
.card { border: 1px solid #ddd; border-radius: 6px; padding: 10px 14px; min-width: 150px; }
.card .label { color: #666; font-size: 12px; } .card .value { font-size: 22px; font-weight: 600; }
table { border-collapse: collapse; } th, td { padding: 3px 10px; border-bottom: 1px solid #eee; text-align: right; }
th { color: #555; font-weight: 600; } td.l, th.l { text-align: left; }
.swatch { display: inline-block; width: 10px; height: 10px; margin-right: 6px; }
.warn { background: #fff6e0; border-left: 3px solid #f2a60c; padding: 6px 10px; margin: 6px 0; }
</style></head><body>
<h1>keepalive-exporter ${esc(r.version)}: ${esc(r.file)}</h1>
<div class="sub">${count(r.packets)} packets, ${esc(duration(span))} of traffic${r.firstPacketTime !== null ? ` from ${esc(new Date(r.firstPacketTime * 1000).toISOString().replace('T', ' ').replace(/\.\d+Z$/, ' UTC'))}` : ''}</div>
<div class="cards">
${card('connections', count(t.connections), 'connections')}
${card('requests', count(t.requests), 'requests')}
${card('reuse ratio', percent(t.requests > 0 ? t.reusedRequests / t.requests : 0), 'reuse')}
${card('handshakes saved', count(t.handshakesSaved), 'saved')}
${card('time saved (est.)', duration(t.handshakeTimeSavedSeconds), 'time-saved')}
</div>`);
  out.push(`<h2>Close reasons</h2><table id="reasons"><tr><th class="l">reason</th><th>connections</th><th>share</th></tr>${reasons.map((k) =>
    `<tr><td class="l"><span class="swatch" style="background:${REASON_COLORS[k]}"></span>${k}</td><td>${count(t.closeReasons[k])}</td><td>${percent(t.connections ? t.closeReasons[k] / t.connections : 0)}</td></tr>`).join('')}</table>`);
  out.push('<h2>Close reasons over capture time</h2><div id="chart-closes"></div>');
  out.push('<h2>Requests per connection</h2><div id="chart-distribution"></div>');
  out.push(whatIfTable(top));
  out.push(serverTable(top, r.servers.length));
  out.push(clientTable(r.clients.slice(0, 50), r.clients.length, r.clientsGrouped));
  out.push(timeline(r.collector.busiest()));
  if (r.warnings.length > 0) out.push(`<h2>Warnings</h2>${r.warnings.map((w) => `<div class="warn">${esc(w.message)}</div>`).join('')}`);
  out.push(`<script>${js}</script>
<script type="application/json" id="data">${JSON.stringify(data).replace(/</g, '\\u003c')}</script>
<script>
(function () {
  var d = JSON.parse(document.getElementById('data').textContent);
  var width = Math.min(1100, document.body.clientWidth - 20);
  if (d.closes.times.length > 0) {
    var series = [{}].concat(d.closes.series.map(function (s) { return { label: s.reason, stroke: s.color, width: 2 }; }));
    new uPlot({ width: width, height: 260, series: series, axes: [{}, { label: 'connections closed' }] },
      [d.closes.times].concat(d.closes.series.map(function (s) { return s.values; })), document.getElementById('chart-closes'));
  } else document.getElementById('chart-closes').textContent = 'no connection closed';
  var xs = d.distribution.labels.map(function (_, i) { return i; });
  new uPlot({
    width: width, height: 220,
    scales: { x: { time: false, range: [-0.5, xs.length - 0.5] } },
    axes: [{ values: function (u, splits) { return splits.map(function (i) { return d.distribution.labels[i] || ''; }); }, splits: function () { return xs; } }, { label: 'connections' }],
    series: [{}, { label: 'connections', fill: 'rgba(50,116,217,0.5)', stroke: '#3274d9', paths: uPlot.paths.bars({ size: [0.6] }), points: { show: false } }],
  }, [xs, d.distribution.values], document.getElementById('chart-distribution'));
})();
</script>
</body></html>
`);
  return out.join('\n');
}

function whatIfTable(servers: ServerSummary[]): string {
  const rows: string[] = [];
  for (const s of servers) {
    const w = s.whatIf;
    if (w.timeout) {
      const t = w.timeout;
      const options = shownTimeoutOptions(t);
      rows.push(`<tr><td class="l">${esc(serverDisplay(s))}</td><td class="l">keep-alive timeout${t.currentSeconds !== null ? ` (${esc(duration(t.currentSeconds))} today)` : ''}</td><td class="l">${options.map((o) => `${esc(duration(o.timeoutSeconds))}: ${count(o.savedConnections)} of ${count(t.newConnections)} new connections (${percent(o.savedShare)})`).join('<br>')}</td></tr>`);
    }
    if (w.maxRequests) {
      const m = w.maxRequests;
      rows.push(`<tr><td class="l">${esc(serverDisplay(s))}</td><td class="l">max requests${m.limit !== null ? ` (${count(m.limit)})` : ''}</td><td class="l">${count(m.closes)} ended at the limit, ${count(m.reconnectsAtOnce)} reconnected at once${m.reconnectsAtOnce > 0 ? `; ${m.tenTimesLimit !== null ? count(m.tenTimesLimit) : 'ten times the limit'} would have saved about ${count(m.savedConnections)}` : ''}</td></tr>`);
    }
    if (w.races) {
      rows.push(`<tr><td class="l">${esc(serverDisplay(s))}</td><td class="l">races</td><td class="l">${count(w.races.requests)} request(s) crossed an idle close${w.races.clientIdleTimeoutBelowSeconds !== null ? `; keep the client pool idle timeout below ${esc(duration(w.races.clientIdleTimeoutBelowSeconds))}` : ''}</td></tr>`);
    }
  }
  if (rows.length === 0) return '<h2>What would change if</h2><p>Nothing to estimate: no server closed a connection its client came back for, and no race.</p>';
  return `<h2>What would change if</h2><table id="whatif"><tr><th class="l">server</th><th class="l">setting</th><th class="l">what it would have saved</th></tr>${rows.join('')}</table>`;
}

function serverTable(servers: ServerSummary[], all: number): string {
  const rows = servers.map((v) => {
    const topReason = Object.entries(v.closeReasons).sort((a, b) => b[1] - a[1])[0];
    return `<tr><td class="l">${esc(serverDisplay(v))}</td><td>${count(v.connections)}</td><td>${count(v.requests)}</td><td>${v.requests > 0 ? percent(v.reusedRequests / v.requests) : '-'}</td>` +
      `<td>${v.advertisedTimeoutSeconds === null ? '-' : esc(duration(v.advertisedTimeoutSeconds))}</td><td>${v.observedIdleTimeoutSeconds === null ? '-' : esc(duration(v.observedIdleTimeoutSeconds))}</td>` +
      `<td>${v.advertisedMaxRequests === null ? '-' : count(v.advertisedMaxRequests)}</td><td>${v.inferredMaxRequests === null ? '-' : count(v.inferredMaxRequests)}</td>` +
      `<td class="l">${topReason ? `${topReason[0]} (${count(topReason[1])})` : '-'}</td></tr>`;
  });
  return `<h2>Servers${all > servers.length ? ` (top ${servers.length} of ${count(all)})` : ''}</h2>${rows.length === 0 ? '<p>No HTTP server seen.</p>' :
    `<table id="servers"><tr><th class="l">server</th><th>conns</th><th>reqs</th><th>reuse</th><th>ka timeout</th><th>seen timeout</th><th>ka max</th><th>inferred max</th><th class="l">top close reason</th></tr>${rows.join('')}</table>`}`;
}

function clientTable(clients: ClientSummary[], all: number, grouped: boolean): string {
  if (clients.length === 0) return '';
  const rows = clients.map((c) => `<tr><td class="l">${esc(c.client)}</td><td>${count(c.connections)}</td><td>${count(c.requests)}</td><td>${c.requests > 0 ? percent(c.reusedRequests / c.requests) : '-'}</td>` +
    `<td class="l">${c.topCloseReason ? `${c.topCloseReason} (${count(c.topCloseReasonConnections)})` : '-'}</td><td>${c.medianIdleBeforeOwnCloseSeconds === null ? '-' : esc(duration(c.medianIdleBeforeOwnCloseSeconds))}</td></tr>`);
  return `<h2>${grouped ? 'Client groups' : 'Clients'}${all > clients.length ? ` (top ${clients.length} of ${count(all)})` : ''}</h2><table id="clients"><tr><th class="l">${grouped ? 'group' : 'client'}</th><th>conns</th><th>reqs</th><th>reuse</th><th class="l">top close reason</th><th>idle before own close</th></tr>${rows.join('')}</table>`;
}

/** The busiest connections as SVG bars from open to close, request ticks on them, coloured by close reason. */
function timeline(entries: TimelineEntry[]): string {
  if (entries.length === 0) return '';
  const row = 10;
  const left = 0;
  const w = 1100;
  const t0 = Math.min(...entries.map((e) => e.openedAt));
  const t1 = Math.max(...entries.map((e) => e.closedAt ?? e.openedAt), t0 + 1e-3);
  const x = (t: number): number => left + ((t - t0) / (t1 - t0)) * (w - left);
  const bars = entries.map((e, i) => {
    const y = i * row;
    const x0 = x(e.openedAt);
    const x1 = Math.max(x0 + 1, x(e.closedAt ?? t1));
    const ticks = e.ticks.map((t) => `<line x1="${x(t).toFixed(1)}" x2="${x(t).toFixed(1)}" y1="${y}" y2="${y + row - 2}" stroke="#000" stroke-width="1"/>`).join('');
    return `<g><title>${esc(`${e.client} → ${e.server}: ${e.requests} request(s), ${e.reason}`)}</title><rect x="${x0.toFixed(1)}" y="${y}" width="${(x1 - x0).toFixed(1)}" height="${row - 2}" fill="${REASON_COLORS[e.reason]}"/>${ticks}</g>`;
  });
  const legend = [...new Set(entries.map((e) => e.reason))].map((k) => `<span class="swatch" style="background:${REASON_COLORS[k]}"></span>${k} `).join('');
  return `<h2>Timeline: the ${count(entries.length)} busiest connections</h2><div>${legend}; ticks are requests; ${esc(duration(t1 - t0))} from left to right</div>` +
    `<svg id="timeline" width="${w}" height="${entries.length * row}" viewBox="0 0 ${w} ${entries.length * row}" xmlns="http://www.w3.org/2000/svg">${bars.join('')}</svg>`;
}
