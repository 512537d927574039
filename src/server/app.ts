/**
 * The HTTP side of the daemon, built apart from `listen` so tests use `app.inject`.
 *   /metrics          Prometheus text, or OpenMetrics when the scraper asks for it; at most
 *                     `webMaxRequests` at once, concurrent ones sharing one render
 *   /healthz          the process is up
 *   /readyz           every source is running (or, for a file, has been read to its end)
 *   /api/connections  open connections, busiest first (?limit=, at most 1000)
 *   /api/clients      clients or client groups since start, busiest first (?limit=, at most 1000)
 *   /                 a landing page with links
 */
import { Readable } from 'node:stream';
import Fastify, { type FastifyInstance, type FastifyServerOptions } from 'fastify';
import type { Exporter, LiveSummary, SourceStatus } from '../metrics/exporter.js';
import { count, duration, percent } from '../report/format.js';
import { CONTENT_TYPES, negotiate } from '../metrics/exposition.js';
import { basicAuth, httpsOptions, watchCertificates, type WebConfig } from './web-config.js';

export interface AppOptions {
  exporter: Exporter;
  sources: () => SourceStatus[];
  logger?: FastifyServerOptions['logger'];
  version: string;
  /**
   * --web.max-requests: scrapes of /metrics in flight at once (waiting for the shared render or
   * still sending), as promhttp's MaxRequestsInFlight and node_exporter's --web.max-requests.
   * One more is answered 503 at once and counted. 0: no limit. Default 40, as the flag.
   */
  webMaxRequests?: number;
  /** --web.telemetry-path: where the metrics are served (node_exporter's flag). Default /metrics. */
  telemetryPath?: string;
  /**
   * --web.config.file, from loadWebConfig: TLS (an https server whose certificate is re-read
   * when its files change) and basic auth on every endpoint but the probes. Null: plain HTTP.
   */
  webConfig?: WebConfig | null;
}

const DEFAULT_MAX_SCRAPES = 40;
/**
 * The listen backlog to pass to `app.listen`: Node's default of 511 overflowed when 1,000
 * scrapers connected at once (the kernel dropped the SYNs past it: clients waited for SYN
 * retransmits, 1 s then 3 s, and some were reset), measured with test/server/scrape-load.test.ts.
 * Go's net.Listen uses net.core.somaxconn, so promhttp exporters queue that many; the kernel
 * caps this value at somaxconn as well (4096 by default since Linux 5.4).
 */
export const LISTEN_BACKLOG = 4096;
/**
 * A shared body is written to each scraper one slice of this size per event-loop turn. Written
 * whole, the ~2.3 MB of 25,000 series went into every waiting socket in the turn the render
 * finished: on loopback (and any fast link) the kernel takes megabytes per write and each write
 * completes synchronously, so even a sliced stream ran write after write in process.nextTick
 * without returning to the loop (bench/scrape.mjs: a 130-260 ms block at 40 scrapes, 1.7 s with
 * no limit, nearly all of it in writeBuffer), and the probes waited behind it.
 */
const BODY_SLICE = 64 * 1024;

const MAX_CONNECTIONS_LISTED = 1000;

export function buildApp(opts: AppOptions): FastifyInstance {
  const tls = opts.webConfig?.tls ?? null;
  const app = Fastify({
    logger: opts.logger ?? false,
    ...(tls ? { https: httpsOptions(tls) } : {}),
    // fastify's own 400 for a malformed URL quotes it back ("'/%zz' is not a valid url component"): never reflect input.
    frameworkErrors: (_err, _req, reply) => { void (reply as import('fastify').FastifyReply).code(400).type('text/plain; charset=utf-8').send('bad request\n'); },
  });
  if (tls) watchCertificates(app.server as import('node:https').Server, tls, (m) => app.log.warn(m));
  // Scrapes and probes are not worth a log line each: request logs only at warn and above.
  const quiet = { logLevel: 'warn' as const };
  const { exporter } = opts;

  // Basic auth (--web.config.file basic_auth_users) on every route but the probes: a kubelet or
  // load balancer probing /healthz and /readyz has no credentials, and they tell nothing secret.
  const users = opts.webConfig?.users ?? null;
  if (users) {
    const auth = basicAuth(users);
    const open = new Set(['/healthz', '/readyz']);
    app.addHook('onRequest', async (req, reply) => {
      if (req.routeOptions.url !== undefined && open.has(req.routeOptions.url)) return;
      const verdict = await auth.check(req.headers.authorization);
      if (verdict === 'ok') return;
      if (verdict === 'busy') return reply.code(503).header('retry-after', '1').type('text/plain; charset=utf-8').send('too many authentication attempts in progress, try again later\n');
      return reply.code(401).header('www-authenticate', 'Basic realm="keepalive-exporter"').type('text/plain; charset=utf-8').send('Unauthorized\n');
    });
  }
  // fastify's own 404 body names the method and URL ("Route GET:/x not found"): never reflect input.
  app.setNotFoundHandler((_req, reply) => reply.code(404).type('text/plain; charset=utf-8').send('not found\n'));

  // A scrape storm (many Prometheus replicas, a retry loop) must not grow memory or starve the
  // probes: past the cap it is refused before any work; below it, scrapes share renders.
  const maxScrapes = opts.webMaxRequests ?? DEFAULT_MAX_SCRAPES;
  let scrapesInFlight = 0;
  const telemetryPath = opts.telemetryPath ?? '/metrics';
  app.get(telemetryPath, quiet, async (req, reply) => {
    if (maxScrapes > 0 && scrapesInFlight >= maxScrapes) {
      exporter.countScrape('rejected');
      return reply.code(503).type('text/plain; charset=utf-8')
        .send(`too many concurrent scrapes (--web.max-requests ${maxScrapes}), try again later\n`);
    }
    scrapesInFlight++;
    // Released when the response is done or the client went away ('close' fires for both), so a
    // slow reader still counts: it holds a body.
    let held = true;
    const release = (): void => {
      if (held) scrapesInFlight--;
      held = false;
    };
    reply.raw.once('close', release);
    try {
      const format = negotiate(req.headers.accept);
      // Prometheus asks for gzip (Accept-Encoding: gzip): the body shrinks several fold, compressed once per render.
      const encoding = acceptsGzip(req.headers['accept-encoding']) ? 'gzip' : 'identity';
      const body = await exporter.scrape(format, encoding);
      exporter.countScrape(format);
      if (encoding === 'gzip') reply.header('content-encoding', 'gzip');
      return reply.header('content-type', CONTENT_TYPES[format]).header('vary', 'Accept-Encoding').header('content-length', body.length).send(slices(body));
    } catch (err) {
      release();
      throw err;
    }
  });

  app.get('/healthz', quiet, async () => ({ status: 'ok' }));

  app.get('/readyz', quiet, async (_req, reply) => {
    const sources = opts.sources().map((s) => ({ name: s.name, kind: s.kind, up: s.up, done: s.done, restarts: s.restarts }));
    const ready = sources.length > 0 && sources.every((s) => s.up || s.done);
    return reply.code(ready ? 200 : 503).send({ status: ready ? 'ready' : 'not ready', sources });
  });

  app.get<{ Querystring: { limit?: string } }>('/api/connections', quiet, async (req, reply) => {
    const raw = req.query.limit ?? '100';
    const limit = Number(raw);
    if (!/^\d+$/.test(raw) || limit < 1) return reply.code(400).send({ error: 'limit must be a positive whole number' });
    const connections = exporter.openConnections(Math.min(limit, MAX_CONNECTIONS_LISTED));
    return { open: exporter.openByConnection.size, listed: connections.length, connections };
  });

  app.get<{ Querystring: { limit?: string } }>('/api/clients', quiet, async (req, reply) => {
    const raw = req.query.limit ?? '100';
    const limit = Number(raw);
    if (!/^\d+$/.test(raw) || limit < 1) return reply.code(400).send({ error: 'limit must be a positive whole number' });
    const t = exporter.clients;
    const clients = t.summaries(Math.min(limit, MAX_CONNECTIONS_LISTED));
    return { grouped: t.grouped, tracked: t.size, listed: clients.length, overflowConnections: t.overflowConnections, clients };
  });

  app.get('/', quiet, async (_req, reply) => {
    // The only HTML: nothing to load, nothing to frame, no referrer to leak, no script (it refreshes itself).
    reply.header('content-security-policy', "default-src 'none'; style-src 'unsafe-inline'")
      .header('x-content-type-options', 'nosniff').header('x-frame-options', 'DENY').header('referrer-policy', 'no-referrer');
    return reply.type('text/html; charset=utf-8').send(landingPage(exporter.liveSummary(Date.now() / 1000), opts.sources(), opts.version, telemetryPath));
  });

  return app;
}

/** The body as a stream of views into it (no copies), one slice per event-loop turn (setImmediate). */
function slices(body: Buffer): Readable {
  let at = 0;
  let waiting = false;
  return new Readable({
    highWaterMark: BODY_SLICE,
    read() {
      if (waiting) return;
      waiting = true;
      setImmediate(() => {
        waiting = false;
        if (at >= body.length) {
          this.push(null);
          return;
        }
        const slice = body.subarray(at, at + BODY_SLICE);
        at += BODY_SLICE;
        this.push(slice);
      });
    },
  });
}

/**
 * Accept-Encoding allows gzip: named (or x-gzip) with a q above 0, else `*` with one (RFC 9110
 * 12.5.3: "gzip;q=0" refuses it, also beside a "*").
 */
export function acceptsGzip(header: string | string[] | undefined): boolean {
  const value = Array.isArray(header) ? header.join(',') : header ?? '';
  let named: boolean | null = null;
  let star = false;
  for (const part of value.split(',')) {
    const [coding, ...params] = part.trim().toLowerCase().split(';').map((p) => p.trim());
    const q = params.find((p) => p.startsWith('q='));
    const allowed = q === undefined || Number(q.slice(2)) > 0;
    if (coding === 'gzip' || coding === 'x-gzip') named = (named ?? false) || allowed;
    else if (coding === '*') star = allowed;
  }
  return named ?? star;
}

function escapeHtml(s: string): string {
  return s.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

/** Seconds between the landing page's refreshes. */
export const LANDING_REFRESH_SECONDS = 5;

/**
 * The landing page: live numbers (reuse ratio, requests per second, close reasons, the busiest
 * servers with their advertised and observed idle timeouts, what the capture lost) and the links.
 * Plain HTML that refreshes itself every LANDING_REFRESH_SECONDS (no script: the CSP allows none).
 */
export function landingPage(live: LiveSummary, sourceList: SourceStatus[], version: string, telemetryPath: string): string {
  const sources = sourceList.map((s) => `<li>${escapeHtml(s.name)} (${s.kind}): ${s.up ? 'running' : s.done ? 'done' : 'down'}</li>`).join('');
  const reasons = Object.entries(live.closed).sort((a, b) => b[1] - a[1]);
  const closedTotal = reasons.reduce((a, [, n]) => a + n, 0);
  const servers = live.servers.slice(0, 10).map((v) => `<tr><td class="l">${escapeHtml(v.server)}</td><td>${count(v.requests)}</td><td>${v.requests > 0 ? percent(v.reused / v.requests) : '-'}</td>` +
    `<td>${v.advertisedTimeoutSeconds === null ? '-' : escapeHtml(duration(v.advertisedTimeoutSeconds))}</td><td>${v.observedIdleTimeoutSeconds === null ? '-' : escapeHtml(duration(v.observedIdleTimeoutSeconds))}</td></tr>`).join('');
  const card = (label: string, value: string, id: string): string => `<div class="card"><div class="label">${label}</div><div class="value" id="${id}">${escapeHtml(value)}</div></div>`;
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta http-equiv="refresh" content="${LANDING_REFRESH_SECONDS}">
<title>keepalive-exporter</title>
<style>
body { font: 14px/1.4 system-ui, sans-serif; margin: 24px; color: #222; }
h1 { font-size: 20px; margin: 0 0 4px; } h2 { font-size: 16px; margin: 24px 0 8px; }
.cards { display: flex; gap: 12px; flex-wrap: wrap; }
.card { border: 1px solid #ddd; border-radius: 6px; padding: 10px 14px; min-width: 140px; }
.card .label { color: #666; font-size: 12px; } .card .value { font-size: 22px; font-weight: 600; }
table { border-collapse: collapse; } th, td { padding: 3px 10px; border-bottom: 1px solid #eee; text-align: right; }
th { color: #555; } td.l, th.l { text-align: left; } .sub { color: #666; }
</style></head>
<body>
<h1>keepalive-exporter ${escapeHtml(version)}</h1>
<p class="sub">HTTP keep-alive reuse, and why connections close: live numbers, refreshed every ${LANDING_REFRESH_SECONDS} s.</p>
<div class="cards">
${card('reuse ratio', live.requests > 0 ? percent(live.reused / live.requests) : '-', 'reuse')}
${card('requests/s', live.requestsPerSecond === null ? '-' : live.requestsPerSecond.toLocaleString('en-US', { maximumFractionDigits: 1 }), 'rps')}
${card('requests', count(live.requests), 'requests')}
${card('open connections', count(live.open), 'open')}
${card('dropped packets', count(live.kernelDrops + live.interfaceDrops), 'drops')}
${card('capture gaps', count(live.gaps), 'gaps')}
</div>
<h2>Close reasons</h2>
${reasons.length === 0 ? '<p>No connection closed yet.</p>' : `<table id="reasons"><tr><th class="l">reason</th><th>connections</th><th>share</th></tr>${reasons.map(([k, n]) => `<tr><td class="l">${escapeHtml(k)}</td><td>${count(n)}</td><td>${percent(n / closedTotal)}</td></tr>`).join('')}</table>`}
<h2>Busiest servers</h2>
${servers === '' ? '<p>No HTTP server seen yet.</p>' : `<table id="servers"><tr><th class="l">server</th><th>requests</th><th>reuse</th><th>ka timeout</th><th>seen timeout</th></tr>${servers}</table>`}
<h2>Endpoints</h2>
<ul>
<li><a href="${escapeHtml(telemetryPath.slice(1))}">${escapeHtml(telemetryPath)}</a>: Prometheus metrics</li>
<li><a href="api/connections">/api/connections</a>: open connections, busiest first</li>
<li><a href="api/clients">/api/clients</a>: clients (or client groups), busiest first: reuse, top close reason</li>
<li><a href="healthz">/healthz</a>, <a href="readyz">/readyz</a></li>
</ul>
<h2>Sources</h2><ul>${sources}</ul>
</body></html>
`;
}
