#!/usr/bin/env node
// Keep-alive HTTPS load that writes an NSS key log, for bench/generate-tls-capture.sh (issue 13).
// h2load, wrk and ab cannot write a key log, so this is node:tls writing raw HTTP/1.1 (cheaper
// per request than node:https) and node:http2 over a node:tls socket for the h2 part; every
// socket's 'keylog' lines (OpenSSL's SSLKEYLOGFILE format) are appended to one file.
//
//   node bench/tls-load.mjs --keylog FILE --tls13 PORT --tls12 PORT [--h2 PORT]
//        [--requests N] [--concurrency C] [--duration S] [--idle N] [--h2-share F]
//        [--seed N] [--totals FILE]
//
// C workers (default 64) each open connection after connection, alternating TLS 1.3 and 1.2 by
// worker, and send one GET at a time (no pipelining: a request, its response, the next), until
// N requests (default 200000) were sent in all or S seconds (default 60) passed; then each
// worker finishes the response in flight and closes. Per connection, decided at random (seeded,
// so two runs with the same flags make the same plan):
//   - 70%: keep-alive until nginx closes it with its 100th response (keepalive_requests 100);
//   - 30%: the client closes after 1-20 requests (many handshakes);
//   - half of the connections after a worker's first offer the session (ticket or id) of its
//     previous connection of that version, so some are resumed (counted from
//     isSessionReused());
//   - with --h2 PORT, a share F (default 0.05) of the connections is HTTP/2 over TLS 1.3
//     (ALPN h2): up to 100 streams, at most 10 at a time, until nginx's GOAWAY at its
//     keepalive_requests (100) or the client's 1-50 are done.
// Besides, --idle N (default 2) connections per version send one request and then stay silent
// until nginx closes them at its keepalive_timeout (bounded by a 15 s timer).
// URL mix, per 100 requests (--mix bench, the default): 95 /small.html, 3 /medium.html, 1 /large.bin,
// 1 /missing.html. --mix web: 53 /small.html, 35 /medium.html, 10 /large.bin, 2 /missing.html (about
// 23 KB a response, nearer a web page's resources than the benchmark's mostly 0.5 KiB answers).
//
// The totals ("key value" lines: requests sent (HTTP/1.1 ones by version; h2_streams), responses by status class, connections by
// version and ending, resumed handshakes) go to --totals (appended; run.sh sums them) and stderr.
// Exits 1 when a connection failed to handshake or a response could not be parsed (counted as
// errors, so a broken setup is not mistaken for a load run).
import { connect } from 'node:tls';
import { connect as h2connect, constants as h2c } from 'node:http2';
import { createWriteStream, appendFileSync } from 'node:fs';

const args = { requests: 200000, concurrency: 64, duration: 60, idle: 2, 'h2-share': 0.05, seed: 13, mix: 'bench' };
for (let i = 2; i < process.argv.length; i += 2) {
  const k = process.argv[i].replace(/^--/, '');
  const v = process.argv[i + 1];
  if (v === undefined) usage(`missing value for --${k}`);
  args[k] = ['keylog', 'totals', 'mix'].includes(k) ? v : Number(v);
}
function usage(msg) {
  console.error(`tls-load: ${msg}\nusage: node bench/tls-load.mjs --keylog FILE --tls13 PORT --tls12 PORT [--h2 PORT] [--requests N] [--concurrency C] [--duration S] [--idle N] [--h2-share F] [--seed N] [--totals FILE] [--mix bench|web]`);
  process.exit(2);
}
if (!args.keylog || !args.tls13 || !args.tls12) usage('--keylog, --tls13 and --tls12 are required');
if (args.mix !== 'bench' && args.mix !== 'web') usage(`--mix is bench or web, not ${args.mix}`);

const HOST = '127.0.0.1';
process.umask(0o077); // the key log decrypts the capture
const keylog = createWriteStream(args.keylog, { flags: 'a' });
const deadline = Date.now() + args.duration * 1000;

// A small seeded PRNG (mulberry32): the same plan on every run with the same seed.
let seed = args.seed >>> 0;
function rand() {
  seed = (seed + 0x6d2b79f5) >>> 0;
  let t = seed;
  t = Math.imul(t ^ (t >>> 15), t | 1);
  t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
  return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
}

const PATHS = [];
for (let i = 1; i <= 100; i++) {
  if (args.mix === 'web') {
    // Spread over the hundred: 2 missing, 10 large, 38 medium, the rest small.
    if (i % 50 === 0) PATHS.push('/missing.html');
    else if (i % 10 === 5) PATHS.push('/large.bin');
    else if (i % 8 < 3) PATHS.push('/medium.html');
    else PATHS.push('/small.html');
  } else if (i === 50) PATHS.push('/missing.html');
  else if (i === 75) PATHS.push('/large.bin');
  else if (i % 33 === 0) PATHS.push('/medium.html');
  else PATHS.push('/small.html');
}
const REQS = PATHS.map((p) => Buffer.from(`GET ${p} HTTP/1.1\r\nHost: localhost\r\nUser-Agent: tls-load\r\n\r\n`));
let pathIdx = 0;

const t = {
  requests_sent: 0, requests_tls13: 0, requests_tls12: 0, responses: 0, '2xx': 0, '4xx': 0, other_status: 0,
  connections: 0, connections_tls13: 0, connections_tls12: 0, connections_h2: 0,
  resumed: 0, resumed_tls13: 0, resumed_tls12: 0, session_offered: 0,
  closed_by_server: 0, closed_by_client: 0, idle_probes: 0, h2_streams: 0, h2_goaway: 0,
  errors: 0, socket_errors: 0, parse_errors: 0, refused_streams: 0,
};
let budget = args.requests;
const take = () => (budget > 0 && Date.now() < deadline ? (budget--, true) : false);
// The suite each connection offers, so the capture holds every AEAD suite of its version (nginx
// takes the client's order: ssl_prefer_server_ciphers off). Mostly AES-128-GCM, as browsers.
const SUITES = {
  'TLSv1.3': ['TLS_AES_128_GCM_SHA256', 'TLS_AES_128_GCM_SHA256', 'TLS_AES_256_GCM_SHA384', 'TLS_CHACHA20_POLY1305_SHA256'],
  'TLSv1.2': ['ECDHE-RSA-AES128-GCM-SHA256', 'ECDHE-RSA-AES128-GCM-SHA256', 'ECDHE-RSA-AES256-GCM-SHA384', 'ECDHE-RSA-CHACHA20-POLY1305'],
};
const tlsOpts = (version, port, session) => ({
  host: HOST, port, servername: 'localhost', rejectUnauthorized: false,
  minVersion: version, maxVersion: version, ALPNProtocols: ['http/1.1'], session,
  ciphers: offer(version),
});
// The chosen suite first, then the others: a resumed TLS 1.2 session must find its own suite in
// the offer (else nginx fails the handshake: "required cipher missing").
function offer(version) {
  const first = SUITES[version][Math.floor(rand() * 4)];
  return [first, ...new Set(SUITES[version].filter((x) => x !== first))].join(':');
}

function onKeylog(line) { keylog.write(line); }

function countHandshake(sock, version, offered) {
  t.connections++;
  t[version === 'TLSv1.3' ? 'connections_tls13' : 'connections_tls12']++;
  if (offered) t.session_offered++;
  if (sock.isSessionReused()) {
    t.resumed++;
    t[version === 'TLSv1.3' ? 'resumed_tls13' : 'resumed_tls12']++;
  }
}

// One HTTP/1.1 connection: resolves when it is closed. maxReqs = requests the client sends
// before closing (Infinity: until the server closes); idle: one request, then silence.
function h1Connection(version, port, session, maxReqs, idle, sessions) {
  return new Promise((resolve) => {
    const sock = connect(tlsOpts(version, port, session));
    sock.on('keylog', onKeylog);
    sock.on('session', (s) => { sessions[version] = s; });
    let buf = null;
    let sent = 0;
    let want = -1; // bytes of the current response still to come (-1: in the head)
    let serverClose = false;
    let done = false;
    let timer = null;
    const finish = () => {
      if (done) return;
      done = true;
      if (timer) clearTimeout(timer);
      resolve();
    };
    const send = () => {
      if (sent >= maxReqs || !(idle ? sent === 0 : take())) {
        t.closed_by_client++;
        sock.end();
        return;
      }
      if (idle) { budget--; t.idle_probes++; }
      sent++;
      t.requests_sent++;
      t[version === 'TLSv1.3' ? 'requests_tls13' : 'requests_tls12']++;
      sock.write(REQS[pathIdx]);
      pathIdx = (pathIdx + 1) % REQS.length;
    };
    sock.on('secureConnect', () => { countHandshake(sock, version, !!session); send(); });
    sock.on('data', (chunk) => {
      // Only a head is kept across chunks; body bytes are counted down, not copied.
      if (want > 0) {
        if (chunk.length <= want) { want -= chunk.length; if (want > 0) return; chunk = chunk.subarray(chunk.length); }
        else { chunk = chunk.subarray(want); want = 0; }
      }
      buf = buf && buf.length ? Buffer.concat([buf, chunk]) : chunk;
      for (;;) {
        if (want < 0) {
          const end = buf.indexOf('\r\n\r\n');
          if (end < 0) return;
          const head = buf.toString('latin1', 0, end);
          const status = Number(head.slice(9, 12));
          const m = /\r\ncontent-length: *(\d+)/i.exec(head);
          if (!m) { t.errors++; t.parse_errors++; sock.destroy(); return; }
          serverClose = /\r\nconnection: *close/i.test(head);
          if (status >= 200 && status < 300) t['2xx']++;
          else if (status >= 400 && status < 500) t['4xx']++;
          else t.other_status++;
          want = Number(m[1]);
          buf = buf.subarray(end + 4);
        }
        if (buf.length < want) { want -= buf.length; buf = null; return; }
        buf = buf.subarray(want);
        want = -1;
        t.responses++;
        if (serverClose) {
          // nginx closes after its keepalive_requests-th response; wait for its FIN.
          t.closed_by_server++;
          return;
        }
        if (idle) {
          // Silent until nginx's keepalive_timeout closes it; a bound in case it never does.
          timer = setTimeout(() => sock.destroy(), 15000);
          return;
        }
        send();
        if (buf.length === 0) return;
      }
    });
    sock.on('end', () => sock.end());
    sock.on('error', (e) => { t.errors++; t.socket_errors++; if (t.socket_errors === 1) console.error(`tls-load: ${e.message}`); finish(); });
    sock.on('close', finish);
  });
}

// One HTTP/2 connection over TLS 1.3 (ALPN h2): streams until nginx's GOAWAY or maxStreams.
function h2Connection(port, session, maxStreams, sessions) {
  return new Promise((resolve) => {
    let tlsSock;
    const s = h2connect(`https://localhost:${port}`, {
      createConnection: () => {
        tlsSock = connect({ ...tlsOpts('TLSv1.3', port, session), ALPNProtocols: ['h2'] });
        tlsSock.on('keylog', onKeylog);
        tlsSock.on('session', (x) => { sessions.h2 = x; });
        tlsSock.on('secureConnect', () => { countHandshake(tlsSock, 'TLSv1.3', !!session); t.connections_h2++; });
        return tlsSock;
      },
    });
    let started = 0;
    let open = 0;
    let goaway = false;
    let closing = false;
    const timer = setTimeout(() => s.destroy(), 30000);
    const finish = () => { clearTimeout(timer); resolve(); };
    const pump = () => {
      while (!goaway && !closing && open < 10 && started < maxStreams) {
        if (!take()) break;
        started++;
        open++;
        t.requests_sent++;
        t.h2_streams++;
        const req = s.request({ ':path': PATHS[pathIdx] });
        pathIdx = (pathIdx + 1) % PATHS.length;
        req.on('response', (h) => {
          const st = h[':status'];
          if (st >= 200 && st < 300) t['2xx']++;
          else if (st >= 400 && st < 500) t['4xx']++;
          else t.other_status++;
        });
        req.resume();
        req.on('end', () => { t.responses++; });
        req.on('error', () => {});
        req.on('close', () => {
          open--;
          // Streams in flight past nginx's GOAWAY (its 100th) are refused: the server's
          // behaviour, counted, not an error of the setup.
          if (req.rstCode === h2c.NGHTTP2_REFUSED_STREAM) t.refused_streams++;
          pump();
        });
      }
      if (open === 0 && !closing) {
        closing = true;
        if (goaway) t.closed_by_server++;
        else { t.closed_by_client++; s.close(); }
      }
    };
    s.on('goaway', () => { goaway = true; t.h2_goaway++; });
    s.on('connect', pump);
    s.on('error', (e) => { t.errors++; t.socket_errors++; if (t.socket_errors === 1) console.error(`tls-load: ${e.message}`); });
    s.on('close', finish);
  });
}

async function worker(id) {
  const version = id % 2 === 0 ? 'TLSv1.3' : 'TLSv1.2';
  const port = version === 'TLSv1.3' ? args.tls13 : args.tls12;
  const sessions = {};
  while (budget > 0 && Date.now() < deadline) {
    const h2 = args.h2 && version === 'TLSv1.3' && rand() < args['h2-share'];
    const key = h2 ? 'h2' : version;
    const session = sessions[key] && rand() < 0.5 ? sessions[key] : undefined;
    if (h2) {
      await h2Connection(args.h2, session, rand() < 0.7 ? Infinity : 1 + Math.floor(rand() * 50), sessions);
    } else {
      const maxReqs = rand() < 0.7 ? Infinity : 1 + Math.floor(rand() * 20);
      await h1Connection(version, port, session, maxReqs, false, sessions);
    }
  }
}

const idle = [];
for (let i = 0; i < args.idle; i++) {
  idle.push(h1Connection('TLSv1.3', args.tls13, undefined, 1, true, {}));
  idle.push(h1Connection('TLSv1.2', args.tls12, undefined, 1, true, {}));
}
const workers = [];
for (let i = 0; i < args.concurrency; i++) workers.push(worker(i));
// Bound: every worker stops issuing at the deadline; this is the hard stop behind it.
const hard = setTimeout(() => {
  console.error('tls-load: still running 20 s after the deadline, exiting');
  process.exit(1);
}, args.duration * 1000 + 20000);
await Promise.all([...workers, ...idle]);
clearTimeout(hard);
await new Promise((r) => keylog.end(r));

const lines = Object.entries(t).map(([k, v]) => `${k} ${v}`).join('\n') + '\n';
if (args.totals) appendFileSync(args.totals, lines);
process.stderr.write(lines.replace(/^/gm, '  tls-load: '));
process.exit(t.errors > 0 ? 1 : 0);
