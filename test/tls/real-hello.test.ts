/**
 * Real bytes: nginx 1.22 with TLS on loopback (self-signed, TLSv1.2 and TLSv1.3, session cache and
 * tickets), openssl s_client and curl through a recording TCP tap (every TCP read of each
 * direction kept as the piece it arrived in). The tap's bytes go through TlsRecordStream and the
 * hello parsers; version, cipher, SNI, ALPN and resumed must be exactly what the client tools
 * print for the same connections ("New/Reused, TLSv1.x, Cipher is ..."; curl -v's "SSL
 * connection using ..." and "ALPN: ..." lines).
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, connect, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  HandshakeType, opensslCipherName, parseClientHello, parseServerHello, resumed, versionName,
  type ClientHelloView, type ServerFlight, type ServerHelloView,
} from '../../src/tls/handshake.js';
import { TlsRecordStream, type RecordSink } from '../../src/tls/record-stream.js';
import { ContentType, type RecordHeader } from '../../src/tls/records.js';
import { findTool, freePort, run, start, stop, tail, waitFor, type Proc } from '../helpers/procs.js';

const nginxBin = findTool('nginx');
const opensslBin = findTool('openssl');
const curlBin = findTool('curl');
const have = !!(nginxBin && opensslBin && curlBin);

interface Conn {
  pieces: Array<{ dir: 0 | 1; b: Buffer }>;
  closed: Promise<void>;
}

/** A TCP relay that keeps every read, in order, per connection (0: client to server). */
function tap(listenPort: number, upstreamPort: number, conns: Conn[]): Promise<Server> {
  const srv = createServer((c: Socket) => {
    const conn: Conn = { pieces: [], closed: Promise.resolve() };
    conns.push(conn);
    const u = connect(upstreamPort, '127.0.0.1');
    let done = 0;
    conn.closed = new Promise((resolve) => {
      const one = (): void => { if (++done === 2) resolve(); };
      c.once('close', one);
      u.once('close', one);
    });
    c.on('data', (b) => { conn.pieces.push({ dir: 0, b: Buffer.from(b) }); u.write(b); });
    u.on('data', (b) => { conn.pieces.push({ dir: 1, b: Buffer.from(b) }); c.write(b); });
    c.on('end', () => u.end());
    u.on('end', () => c.end());
    c.on('error', () => u.destroy());
    u.on('error', () => c.destroy());
  });
  return new Promise((resolve) => srv.listen(listenPort, '127.0.0.1', () => resolve(srv)));
}

interface Facts {
  ch: ClientHelloView | null;
  sh: ServerHelloView | null;
  flight: ServerFlight;
  anomalies: string[];
  appRecords: [number, number];
}

/** What the cleartext layer tells about one tapped connection. */
function facts(conn: Conn): Facts {
  const f: Facts = { ch: null, sh: null, flight: 'unknown', anomalies: [], appRecords: [0, 0] };
  let afterSh = false;
  const sink: RecordSink = {
    record(dir: number, h: Readonly<RecordHeader>) {
      // TLS 1.2: a CCS from the server before any Certificate means an abbreviated handshake.
      if (dir === 1 && afterSh && f.flight === 'unknown' && h.type === ContentType.CHANGE_CIPHER_SPEC) f.flight = 'abbreviated';
    },
    handshake(dir: number, t: number, body: Buffer | null, off: number, len: number) {
      if (!body) return;
      if (dir === 0 && t === HandshakeType.CLIENT_HELLO && !f.ch) {
        const v = parseClientHello(body, off, len);
        if (typeof v === 'string') f.anomalies.push(v);
        else f.ch = v;
      } else if (dir === 1 && t === HandshakeType.SERVER_HELLO && !f.sh) {
        const v = parseServerHello(body, off, len);
        if (typeof v === 'string') f.anomalies.push(v);
        else { f.sh = v; afterSh = true; }
      } else if (dir === 1 && afterSh && f.flight === 'unknown') {
        if (t === HandshakeType.CERTIFICATE) f.flight = 'certificate';
        else if (t === HandshakeType.NEW_SESSION_TICKET) f.flight = 'abbreviated';
      }
    },
    anomaly(_dir: number, name: string) {
      f.anomalies.push(name);
    },
  };
  const s = [new TlsRecordStream(0, sink), new TlsRecordStream(1, sink)];
  let ts = 0;
  for (const p of conn.pieces) s[p.dir].data(p.b, 0, p.b.length, ++ts);
  s[0].end(++ts);
  s[1].end(++ts);
  f.appRecords = [s[0].appDataRecords, s[1].appDataRecords];
  return f;
}

interface Seen { version: string; cipher: string; resumed: boolean | null; sni: string | null; alpnOffered: string[]; alpn: string | null }

function seen(f: Facts): Seen {
  expect(f.anomalies).toEqual([]);
  expect(f.ch && f.sh).toBeTruthy();
  return {
    version: `TLSv${versionName(f.sh!.version)}`,
    cipher: opensslCipherName(f.sh!.cipherSuite),
    resumed: resumed(f.ch!, f.sh!, f.flight),
    sni: f.ch!.sni,
    alpnOffered: f.ch!.alpnOffered,
    alpn: f.sh!.alpn,
  };
}

/** s_client's "New, TLSv1.3, Cipher is X" / "Reused, ..." lines, in connection order. */
function sClientReports(out: string): Array<{ version: string; cipher: string; resumed: boolean }> {
  return [...out.matchAll(/^(New|Reused), (TLSv1\.[23]), Cipher is (\S+)$/gm)].map((m) => ({ version: m[2], cipher: m[3], resumed: m[1] === 'Reused' }));
}

describe.skipIf(!have)('TLS hellos from real clients against nginx', () => {
  let dir = '';
  let nginx: Proc | null = null;
  let tapServer: Server | null = null;
  let tapPort = 0;
  let conns: Conn[] = [];
  const GET = 'GET / HTTP/1.1\\r\\nHost: tls.test\\r\\nConnection: close\\r\\n\\r\\n';

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'tls-hello-'));
    const cert = await run(opensslBin!, ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', join(dir, 'k.pem'), '-out', join(dir, 'c.pem'), '-days', '2', '-subj', '/CN=tls.test'], { timeoutMs: 30_000 });
    expect(cert.code, cert.stderr).toBe(0);
    const port = await freePort();
    // nginx 1.22's default ssl_protocols lacks TLSv1.3 (keepalive-semantics section 9). Only
    // X25519: a client whose first key share is P-256 gets a HelloRetryRequest.
    writeFileSync(join(dir, 'nginx.conf'), `worker_processes 1; pid ${dir}/nginx.pid; error_log ${dir}/error.log;
events { worker_connections 64; }
http { access_log off; keepalive_requests 100; keepalive_timeout 5s;
  server { listen 127.0.0.1:${port} ssl; server_name tls.test;
    ssl_certificate ${dir}/c.pem; ssl_certificate_key ${dir}/k.pem;
    ssl_protocols TLSv1.2 TLSv1.3; ssl_ecdh_curve X25519; ssl_session_cache shared:TLSHELLO:1m; ssl_session_tickets on;
    location / { return 200 "ok\\n"; } } }
`);
    nginx = start('nginx', nginxBin!, ['-p', dir, '-c', join(dir, 'nginx.conf'), '-g', 'daemon off;'], join(dir, 'nginx.log'));
    await waitFor(`nginx on ${port}\n${tail(nginx)}`, 10_000, () => new Promise<true | null>((resolve) => {
      const s = connect(port, '127.0.0.1');
      s.once('connect', () => { s.destroy(); resolve(true); });
      s.once('error', () => resolve(null));
    }));
    tapPort = await freePort();
    tapServer = await tap(tapPort, port, conns);
  });

  afterAll(async () => {
    await new Promise<void>((r) => (tapServer ? tapServer.close(() => r()) : r()));
    await stop(nginx, 'SIGTERM', 5000);
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  async function captured(from: number): Promise<Facts[]> {
    const mine = conns.slice(from);
    await Promise.all(mine.map((c) => c.closed));
    return mine.map(facts);
  }

  it('openssl s_client -tls1_2 -reconnect: 1 full then 5 resumed, as s_client reports', async () => {
    const from = conns.length;
    const r = await run('sh', ['-c', `"$0" s_client -connect 127.0.0.1:${tapPort} -servername tls.test -tls1_2 -reconnect </dev/null`, opensslBin!], { timeoutMs: 20_000 });
    const reports = sClientReports(r.stdout);
    expect(reports.length, r.stdout + r.stderr).toBe(6);
    expect(reports.map((x) => x.resumed)).toEqual([false, true, true, true, true, true]);
    const got = (await captured(from)).map(seen);
    expect(got.map(({ version, cipher, resumed }) => ({ version, cipher, resumed }))).toEqual(reports);
    for (const g of got) expect([g.sni, g.alpnOffered, g.alpn]).toEqual(['tls.test', [], null]); // s_client offers no ALPN
    // Both TLS 1.2 signals agree on real bytes: OpenSSL resends the session id with its ticket and
    // nginx echoes it, and the resumed flights have no Certificate (CCS right after the ServerHello).
    const f = await captured(from);
    expect(f.map((x) => x.flight)).toEqual(['certificate', 'abbreviated', 'abbreviated', 'abbreviated', 'abbreviated', 'abbreviated']);
    expect(f.slice(1).map((x) => [x.ch!.sessionTicket, x.ch!.sessionId === x.sh!.sessionId])).toEqual(Array(5).fill(['ticket', true]));
    expect(f[0].ch!.sessionTicket).toBe('empty');
  });

  it('openssl s_client -tls1_3 -reconnect with stdin at EOF: 6 full handshakes (no ticket read before each close)', async () => {
    const from = conns.length;
    const r = await run('sh', ['-c', `"$0" s_client -connect 127.0.0.1:${tapPort} -servername tls.test -tls1_3 -reconnect </dev/null`, opensslBin!], { timeoutMs: 20_000 });
    const reports = sClientReports(r.stdout);
    expect(reports.length, r.stdout + r.stderr).toBe(6);
    const got = (await captured(from)).map(seen);
    expect(got.map(({ version, cipher, resumed }) => ({ version, cipher, resumed }))).toEqual(reports);
    expect(reports.every((x) => x.version === 'TLSv1.3' && !x.resumed)).toBe(true);
  });

  it('openssl s_client -tls1_3 -sess_out then -sess_in: full, then resumed by pre_shared_key', async () => {
    const from = conns.length;
    const sess = join(dir, 'sess.pem');
    const reports: ReturnType<typeof sClientReports> = [];
    for (const flag of ['-sess_out', '-sess_in']) {
      const r = await run('sh', ['-c', `printf '${GET}' | "$0" s_client -connect 127.0.0.1:${tapPort} -servername tls.test -tls1_3 -ign_eof ${flag} ${sess}`, opensslBin!], { timeoutMs: 20_000 });
      reports.push(...sClientReports(r.stdout));
    }
    expect(reports.map((x) => x.resumed)).toEqual([false, true]);
    const f = await captured(from);
    const got = f.map(seen);
    expect(got.map(({ version, cipher, resumed }) => ({ version, cipher, resumed }))).toEqual(reports);
    expect(f[1].ch!.psk).toBe(true);
    expect(f[0].sh!.psk).toBe(false);
    expect(f[1].sh!.psk).toBe(true);
  });

  async function curl(args: string[]): Promise<{ version: string; cipher: string; offers: string[]; accepted: string | null; connections: number }> {
    const r = await run(curlBin!, ['-sk', '-v', '--resolve', `tls.test:${tapPort}:127.0.0.1`, ...args], { timeoutMs: 20_000 });
    expect(r.code, r.stderr).toBe(0);
    const m = /SSL connection using (TLSv1\.[23]) \/ (\S+)/.exec(r.stderr);
    const offers = /ALPN: offers (\S+)/.exec(r.stderr);
    const acc = /ALPN: server accepted (\S+)/.exec(r.stderr);
    return { version: m![1], cipher: m![2], offers: offers ? offers[1].split(',') : [], accepted: acc ? acc[1] : null, connections: (r.stderr.match(/^\* Connected to /gm) ?? []).length };
  }

  it('curl --tlsv1.3 with two URLs: one connection, reused, version, cipher, SNI, ALPN offer as curl -v says', async () => {
    const from = conns.length;
    const c = await curl(['--tlsv1.3', `https://tls.test:${tapPort}/`, `https://tls.test:${tapPort}/b`]);
    const f = await captured(from);
    expect(f.length).toBe(c.connections);
    expect(f.length).toBe(1);
    const g = seen(f[0]);
    expect(g).toEqual({ version: c.version, cipher: c.cipher, resumed: false, sni: 'tls.test', alpnOffered: c.offers, alpn: null }); // TLS 1.3: the choice is encrypted
    expect(c.accepted).toBe('http/1.1');
    expect(f[0].appRecords[0]).toBeGreaterThanOrEqual(3); // Finished + 2 requests, all type 23 in 1.3
  });

  it('openssl s_client -groups P-256:X25519: a HelloRetryRequest, then a second ClientHello after the compatibility CCS', async () => {
    const from = conns.length;
    const r = await run('sh', ['-c', `"$0" s_client -connect 127.0.0.1:${tapPort} -servername tls.test -tls1_3 -groups P-256:X25519 </dev/null`, opensslBin!], { timeoutMs: 20_000 });
    expect(sClientReports(r.stdout).map((x) => x.version), r.stdout + r.stderr).toEqual(['TLSv1.3']);
    const [c] = conns.slice(from);
    await c.closed;
    const hellos: string[] = [];
    const sink: RecordSink = {
      record() {},
      handshake(dir, t, body, off, len) {
        if (!body) return;
        if (t === HandshakeType.CLIENT_HELLO && dir === 0) {
          const v = parseClientHello(body, off, len);
          hellos.push(typeof v === 'string' ? v : `ch ${v.keyShareGroups.join(',')}`);
        } else if (t === HandshakeType.SERVER_HELLO && dir === 1) {
          const v = parseServerHello(body, off, len);
          hellos.push(typeof v === 'string' ? v : `${v.helloRetryRequest ? 'hrr' : 'sh'} ${v.keyShareGroup} ${versionName(v.version)}`);
        }
      },
      anomaly(_d, n) { hellos.push(n); },
    };
    const s = [new TlsRecordStream(0, sink), new TlsRecordStream(1, sink)];
    for (const p of c.pieces) s[p.dir].data(p.b, 0, p.b.length, 0);
    expect(hellos).toEqual([`ch ${0x17}`, `hrr ${0x1d} 1.3`, `ch ${0x1d}`, `sh ${0x1d} 1.3`]);
    expect(s[0].cipherChanged).toBe(true); // the second ClientHello came after the client's CCS
  });

  it('real bytes re-cut at every split point give the same hellos and records', () => {
    expect(conns.length).toBeGreaterThan(10);
    for (const c of [conns[0], conns[conns.length - 1]]) {
      for (const dir of [0, 1] as const) {
        const all = Buffer.concat(c.pieces.filter((p) => p.dir === dir).map((p) => p.b));
        const cut = (at: number): string[] => {
          const log: string[] = [];
          const s = new TlsRecordStream(dir, {
            record: (_d, h) => log.push(`r ${h.type} ${h.length}`),
            handshake: (_d, t, body, off, len) => log.push(`h ${t} ${len} ${body ? body.toString('hex', off, off + len) : '-'}`),
            anomaly: (_d, n) => log.push(n),
          });
          s.data(all, 0, at, 1);
          s.data(all, at, all.length - at, 2);
          s.end(3);
          return log;
        };
        const ref = cut(0);
        expect(ref.some((x) => x.startsWith('h '))).toBe(true);
        for (let at = 1; at < all.length; at += 1) if (at < 2000 || at % 7 === 0) expect(cut(at), `dir ${dir} at ${at}`).toEqual(ref);
      }
    }
  });

  it('curl --tls-max 1.2: the server\'s ALPN choice is visible in the ServerHello and equals curl\'s', async () => {
    const from = conns.length;
    const c = await curl(['--tls-max', '1.2', `https://tls.test:${tapPort}/`]);
    const f = await captured(from);
    expect(f.length).toBe(1);
    const g = seen(f[0]);
    expect(g).toEqual({ version: c.version, cipher: c.cipher, resumed: false, sni: 'tls.test', alpnOffered: c.offers, alpn: c.accepted });
    expect(f[0].flight).toBe('certificate');
  });
});
