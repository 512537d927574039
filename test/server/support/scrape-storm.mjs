#!/usr/bin/env node
/**
 * N concurrent GET /metrics on 127.0.0.1:PORT, from a process of its own so that the scrapes
 * really are concurrent (from the server's own process the client's work serialises them) and
 * the client's reading does not run on the server's event loop. One socket per scrape (one
 * agent, maxSockets N); bodies are counted, kept only when short. Sends the results over IPC.
 *
 *   fork('scrape-storm.mjs', [PORT, N])  ->  { results: [{ code, bytes, contentLength, body }] }
 *
 * Bounded: exits after 60 s whatever happens.
 */
import http from 'node:http';

const [port, n] = process.argv.slice(2).map(Number);
setTimeout(() => process.exit(3), 60_000).unref();
const agent = new http.Agent({ keepAlive: false, maxSockets: n });
const one = () => new Promise((resolve) => {
  const req = http.get({ host: '127.0.0.1', port, path: '/metrics', agent }, (res) => {
    let bytes = 0;
    let body = '';
    res.on('data', (d) => {
      bytes += d.length;
      if (body.length < 4096) body += d.toString('utf8');
    });
    res.on('end', () => resolve({ code: res.statusCode, bytes, contentLength: Number(res.headers['content-length'] ?? -1), body: bytes < 4096 ? body : '' }));
    res.on('error', (e) => resolve({ code: e.code ?? 'error', bytes, contentLength: -1, body: '' }));
  });
  req.on('error', (e) => resolve({ code: e.code ?? 'error', bytes: 0, contentLength: -1, body: '' }));
});
const results = await Promise.all(Array.from({ length: n }, one));
agent.destroy();
process.send({ results }, () => process.exit(0));
