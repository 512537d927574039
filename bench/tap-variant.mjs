#!/usr/bin/env node
// The proxy tap with parts left out, to see what each part costs (bench/README.md, "Where the
// tap's time goes"). Uses the built modules in dist/.
//
//   node bench/tap-variant.mjs MODE LISTEN_PORT UPSTREAM_PORT      (both on 127.0.0.1)
//
// MODE: discard   ProxyRelay whose tap throws every byte away (the relay alone)
//       engine    ProxyRelay + Engine: parsing and connection tracking, no metrics
//       exporter  ProxyRelay + Engine + Exporter, as the daemon, without its HTTP server
// Prints "listening" on stderr once it accepts connections; exits 0 on SIGTERM/SIGINT.
import { Engine } from '../dist/conn/engine.js';
import { ProxyRelay } from '../dist/proxy/relay.js';
import { Exporter } from '../dist/metrics/exporter.js';

const [mode, listenPort, upstreamPort] = process.argv.slice(2);
if (!['discard', 'engine', 'exporter'].includes(mode) || !Number(listenPort) || !Number(upstreamPort)) {
  console.error('usage: node bench/tap-variant.mjs discard|engine|exporter LISTEN_PORT UPSTREAM_PORT');
  process.exit(2);
}
let engine = new Engine();
if (mode === 'discard') {
  const nothing = { data() {}, fin() {}, rst() {}, end() {} };
  engine = { openStream: () => nothing, tick() {} };
}
if (mode === 'exporter') {
  const exporter = new Exporter({ maxServers: 500, sources: () => [] });
  engine.subscribe(exporter.forSource(`proxy:${listenPort}`));
}
const relay = new ProxyRelay(
  { listenHost: '127.0.0.1', listenPort: Number(listenPort), upstreamHost: '127.0.0.1', upstreamPort: Number(upstreamPort) },
  engine,
  { idleTimeoutMs: 900_000, connectTimeoutMs: 10_000, proxyProtocol: null },
  { warn: (m) => console.error(m) },
);
await relay.start();
setInterval(() => engine.tick(Date.now() / 1000), 1000).unref();
console.error('listening');
for (const sig of ['SIGTERM', 'SIGINT']) process.on(sig, () => process.exit(0));
