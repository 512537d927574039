/**
 * The HTTP side of the daemon, built apart from `listen` so tests use `app.inject`.
 *   /metrics          Prometheus text, or OpenMetrics when the scraper asks for it
 *   /healthz          the process is up
 *   /readyz           every source is running (or, for a file, has been read to its end)
 *   /api/connections  open connections, busiest first (?limit=, at most 1000)
 *   /                 a landing page with links
 */
import Fastify, { type FastifyInstance, type FastifyServerOptions } from 'fastify';
import type { Exporter, SourceStatus } from '../metrics/exporter.js';

export interface AppOptions {
  exporter: Exporter;
  sources: () => SourceStatus[];
  logger?: FastifyServerOptions['logger'];
  version: string;
}

const MAX_CONNECTIONS_LISTED = 1000;

export function buildApp(opts: AppOptions): FastifyInstance {
  const app = Fastify({ logger: opts.logger ?? false });
  // Scrapes and probes are not worth a log line each: request logs only at warn and above.
  const quiet = { logLevel: 'warn' as const };
  const { exporter } = opts;

  app.get('/metrics', quiet, async (req, reply) => {
    const accept = String(req.headers.accept ?? '');
    const registry = accept.includes('application/openmetrics-text') ? exporter.openMetrics : exporter.text;
    const body = await registry.metrics();
    return reply.header('content-type', registry.contentType).send(body);
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

  app.get('/', quiet, async (_req, reply) => {
    const sources = opts.sources().map((s) => `<li>${escapeHtml(s.name)} (${s.kind}): ${s.up ? 'running' : s.done ? 'done' : 'down'}</li>`).join('');
    return reply.type('text/html; charset=utf-8').send(`<!doctype html>
<html><head><title>keepalive-exporter</title></head>
<body>
<h1>keepalive-exporter ${escapeHtml(opts.version)}</h1>
<p>HTTP keep-alive reuse, and why connections close.</p>
<ul>
<li><a href="metrics">/metrics</a>: Prometheus metrics</li>
<li><a href="api/connections">/api/connections</a>: open connections, busiest first</li>
<li><a href="healthz">/healthz</a>, <a href="readyz">/readyz</a></li>
</ul>
<h2>Sources</h2><ul>${sources}</ul>
</body></html>
`);
  });

  return app;
}

function escapeHtml(s: string): string {
  return s.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}
