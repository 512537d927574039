// The image's HEALTHCHECK (slim images have no curl): GET /healthz on the daemon's listen
// address, taken from KEEPALIVE_EXPORTER_WEB_LISTEN_ADDRESS as the daemon takes it. Exit 0
// on 200, 1 otherwise. A wildcard address (0.0.0.0, ::, empty host) is checked on loopback.
import http from 'node:http';

const address = process.env.KEEPALIVE_EXPORTER_WEB_LISTEN_ADDRESS || '0.0.0.0:10842';
const m = /^(.*):(\d+)$/.exec(address);
if (!m) {
  console.error(`healthcheck: KEEPALIVE_EXPORTER_WEB_LISTEN_ADDRESS="${address}" is not HOST:PORT`);
  process.exit(1);
}
let host = m[1].replace(/^\[(.*)\]$/, '$1');
if (host === '' || host === '0.0.0.0') host = '127.0.0.1';
else if (host === '::') host = '::1';

const req = http.get({ host, port: Number(m[2]), path: '/healthz', timeout: 4000 }, (res) => {
  res.resume();
  if (res.statusCode !== 200) console.error(`healthcheck: /healthz answered ${res.statusCode}`);
  process.exit(res.statusCode === 200 ? 0 : 1);
});
req.on('timeout', () => req.destroy(new Error('no answer within 4 s')));
req.on('error', (err) => {
  console.error(`healthcheck: http://${host.includes(':') ? `[${host}]` : host}:${m[2]}/healthz: ${err.message}`);
  process.exit(1);
});
