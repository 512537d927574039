#!/usr/bin/env node
// The reference row of the proxy benchmark: a bare Node.js TCP relay, `pipe()` both ways, no
// parsing, no metrics. What a naive relay costs on this machine.
//
//   node bench/pipe-relay.mjs LISTEN_HOST:PORT UPSTREAM_HOST:PORT
//
// Prints "listening" on stderr once it accepts connections; exits 0 on SIGTERM/SIGINT.
import net from 'node:net';

function hostPort(s) {
  const m = /^(.*):(\d+)$/.exec(s ?? '');
  if (!m) {
    console.error('usage: node bench/pipe-relay.mjs LISTEN_HOST:PORT UPSTREAM_HOST:PORT');
    process.exit(2);
  }
  return { host: m[1] || '0.0.0.0', port: Number(m[2]) };
}
const listen = hostPort(process.argv[2]);
const upstream = hostPort(process.argv[3]);

const server = net.createServer({ noDelay: true }, (client) => {
  const up = net.connect({ host: upstream.host, port: upstream.port, noDelay: true });
  client.pipe(up);
  up.pipe(client);
  const kill = () => {
    client.destroy();
    up.destroy();
  };
  client.on('error', kill);
  up.on('error', kill);
  client.on('close', kill);
  up.on('close', kill);
});
server.listen(listen.port, listen.host, () => console.error('listening'));
for (const sig of ['SIGTERM', 'SIGINT']) process.on(sig, () => process.exit(0));
