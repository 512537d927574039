/**
 * PROXY protocol headers (src/proxy/proxy-protocol.ts), byte for byte against HAProxy's
 * specification (proxy-protocol.txt, versions 1 and 2), and end to end: a ProxyRelay sending
 * them to a tiny upstream that reads the header first, and (where nginx is installed) to a real
 * nginx with `listen ... proxy_protocol`, which answers with the client address it was told.
 */
import { afterEach, describe, expect, it } from 'vitest';
import net from 'node:net';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { proxyProtocolHeader, type ProxyProtocol } from '../../src/proxy/proxy-protocol.js';
import { ProxyRelay } from '../../src/proxy/relay.js';
import { Engine } from '../../src/conn/engine.js';
import type { ConnectionRecord } from '../../src/conn/records.js';
import { findTool, sleep, start, stop, waitFor, type Proc } from '../helpers/procs.js';

const HOST = '127.0.0.1';
const SIG = '0d0a0d0a000d0a515549540a';

describe('PROXY protocol v1 (text)', () => {
  it('IPv4: "PROXY TCP4 src dst sport dport\\r\\n"', () => {
    const h = proxyProtocolHeader('v1', { address: '192.0.2.10', port: 51000 }, { address: '198.51.100.7', port: 8080 });
    expect(h.toString('latin1')).toBe('PROXY TCP4 192.0.2.10 198.51.100.7 51000 8080\r\n');
  });

  it('IPv6: "PROXY TCP6 ..."', () => {
    const h = proxyProtocolHeader('v1', { address: '2001:db8::1', port: 65535 }, { address: '2001:db8:0:1::2', port: 443 });
    expect(h.toString('latin1')).toBe('PROXY TCP6 2001:db8::1 2001:db8:0:1::2 65535 443\r\n');
  });

  it('IPv4-mapped IPv6 addresses (a dual-stack listener) are written as IPv4', () => {
    const h = proxyProtocolHeader('v1', { address: '::ffff:10.1.2.3', port: 1 }, { address: '::FFFF:10.9.8.7', port: 80 });
    expect(h.toString('latin1')).toBe('PROXY TCP4 10.1.2.3 10.9.8.7 1 80\r\n');
  });

  it('stays within the 107 bytes the specification allows, for the longest addresses', () => {
    const a = 'ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff';
    const h = proxyProtocolHeader('v1', { address: a, port: 65535 }, { address: a, port: 65535 });
    expect(h.length).toBe(104);
    expect(h.length).toBeLessThanOrEqual(107);
  });
});

describe('PROXY protocol v2 (binary)', () => {
  it('IPv4: signature, 0x21 (version 2, PROXY), 0x11 (TCP over IPv4), length 12, addresses, ports', () => {
    const h = proxyProtocolHeader('v2', { address: '192.0.2.10', port: 51000 }, { address: '198.51.100.7', port: 8080 });
    expect(h.toString('hex')).toBe(
      SIG
      + '21' + '11' + '000c'
      + 'c000020a' // 192.0.2.10
      + 'c6336407' // 198.51.100.7
      + 'c738' // 51000
      + '1f90', // 8080
    );
    expect(h.length).toBe(16 + 12);
  });

  it('IPv6: 0x21 (TCP over IPv6), length 36, 16-byte addresses', () => {
    const h = proxyProtocolHeader('v2', { address: '2001:db8::1', port: 1 }, { address: 'fe80::a:b:c:d', port: 65535 });
    expect(h.toString('hex')).toBe(
      SIG
      + '21' + '21' + '0024'
      + '20010db8000000000000000000000001'
      + 'fe80000000000000000a000b000c000d'
      + '0001'
      + 'ffff',
    );
    expect(h.length).toBe(16 + 36);
  });

  it('full and compressed IPv6 forms give the same bytes; :: and ::1 work', () => {
    const full = proxyProtocolHeader('v2', { address: '2001:0db8:0000:0000:0000:0000:0000:0001', port: 2 }, { address: '::', port: 3 });
    const short = proxyProtocolHeader('v2', { address: '2001:db8::1', port: 2 }, { address: '::', port: 3 });
    expect(full.equals(short)).toBe(true);
    const lo = proxyProtocolHeader('v2', { address: '::1', port: 2 }, { address: '1::', port: 3 });
    expect(lo.subarray(16, 48).toString('hex')).toBe('00000000000000000000000000000001' + '00010000000000000000000000000000');
  });

  it('IPv4-mapped addresses on both sides are sent as IPv4 (family 0x11)', () => {
    const h = proxyProtocolHeader('v2', { address: '::ffff:10.1.2.3', port: 40000 }, { address: '::ffff:10.9.8.7', port: 80 });
    expect(h.toString('hex')).toBe(SIG + '2111000c' + '0a010203' + '0a090807' + '9c40' + '0050');
  });

  it('an IPv4 address next to an IPv6 one is written IPv4-mapped in an IPv6 header', () => {
    const h = proxyProtocolHeader('v2', { address: '10.1.2.3', port: 40000 }, { address: '2001:db8::2', port: 80 });
    expect(h.toString('hex')).toBe(
      SIG + '21' + '21' + '0024'
      + '00000000000000000000ffff0a010203'
      + '20010db8000000000000000000000002'
      + '9c40' + '0050',
    );
  });

  it('decodes back to what was given (a reader written from the specification)', () => {
    const cases: Array<[string, number, string, number]> = [
      ['127.0.0.1', 12345, '127.0.0.1', 8080],
      ['255.255.255.255', 65535, '0.0.0.0', 0],
      ['2001:db8:1:2:3:4:5:6', 443, '::1', 8443],
    ];
    for (const [sa, sp, da, dp] of cases) {
      const d = decodeV2(proxyProtocolHeader('v2', { address: sa, port: sp }, { address: da, port: dp }));
      expect(d).toEqual({ src: expand(sa), sport: sp, dst: expand(da), dport: dp, rest: 0 });
    }
  });
});

/** Address in the decoder's notation: dotted IPv4, or eight 4-digit hex groups. */
function expand(a: string): string {
  if (net.isIPv4(a)) return a;
  const [head, tail] = a.split('::');
  const h = head ? head.split(':') : [];
  const t = tail !== undefined && tail ? tail.split(':') : [];
  const groups = tail !== undefined ? [...h, ...Array(8 - h.length - t.length).fill('0'), ...t] : h;
  return groups.map((g) => g.padStart(4, '0')).join(':');
}

function decodeV2(b: Buffer): { src: string; sport: number; dst: string; dport: number; rest: number } {
  if (b.subarray(0, 12).toString('hex') !== SIG) throw new Error('bad signature');
  if (b[12] >> 4 !== 2 || (b[12] & 0xf) !== 1) throw new Error('not version 2 PROXY');
  const len = b.readUInt16BE(14);
  const fam = b[13];
  const body = b.subarray(16, 16 + len);
  if (fam === 0x11) {
    const ip = (o: number): string => [...body.subarray(o, o + 4)].join('.');
    return { src: ip(0), dst: ip(4), sport: body.readUInt16BE(8), dport: body.readUInt16BE(10), rest: b.length - 16 - len };
  }
  if (fam === 0x21) {
    const ip = (o: number): string => Array.from({ length: 8 }, (_, i) => body.readUInt16BE(o + 2 * i).toString(16).padStart(4, '0')).join(':');
    return { src: ip(0), dst: ip(16), sport: body.readUInt16BE(32), dport: body.readUInt16BE(34), rest: b.length - 16 - len };
  }
  throw new Error(`family ${fam}`);
}

// ------------------------------------------------------------------ end to end

const cleanups: Array<() => Promise<unknown> | void> = [];
afterEach(async () => {
  while (cleanups.length) await cleanups.pop()!();
});

async function startRelay(upstreamPort: number, version: ProxyProtocol): Promise<{ relay: ProxyRelay; engine: Engine; port: number; closed: ConnectionRecord[] }> {
  const engine = new Engine();
  const closed: ConnectionRecord[] = [];
  engine.subscribe({ closed: (c) => closed.push(c) });
  const relay = new ProxyRelay({ listenHost: HOST, listenPort: 0, upstreamHost: HOST, upstreamPort }, engine,
    { idleTimeoutMs: 10_000, connectTimeoutMs: 2000, proxyProtocol: version }, { warn: () => {} });
  await relay.start();
  cleanups.push(() => relay.stop());
  return { relay, engine, port: ((relay as unknown as { server: net.Server }).server.address() as net.AddressInfo).port, closed };
}

/** Connects, sends `request`, collects everything until the server closes. */
function fetchRaw(port: number, request: string): Promise<{ reply: Buffer; localPort: number }> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    const s = net.connect({ host: HOST, port });
    let localPort = 0;
    s.once('connect', () => { localPort = s.localPort!; s.write(request); });
    s.on('data', (b: Buffer) => chunks.push(b));
    s.on('end', () => resolve({ reply: Buffer.concat(chunks), localPort }));
    s.on('error', reject);
    s.setTimeout(5000, () => s.destroy(new Error('timed out')));
  });
}

describe('PROXY protocol through the relay', () => {
  it('v1: the upstream reads the header line first, then the unchanged request; the engine never sees the header', async () => {
    const seen: Array<{ header: string; rest: string }> = [];
    const server = net.createServer((s) => {
      let buf = Buffer.alloc(0);
      let header: string | null = null;
      s.on('data', (b: Buffer) => {
        buf = Buffer.concat([buf, b]);
        if (header === null) {
          const i = buf.indexOf('\r\n');
          if (i < 0) return;
          header = buf.subarray(0, i + 2).toString('latin1');
          buf = buf.subarray(i + 2);
        }
        if (buf.includes('\r\n\r\n')) {
          seen.push({ header, rest: buf.toString('latin1') });
          const body = `you are ${header.split(' ')[2]}:${header.split(' ')[4]}`;
          s.end(`HTTP/1.1 200 OK\r\nContent-Length: ${body.length}\r\nConnection: close\r\n\r\n${body}`);
        }
      });
      s.on('error', () => {});
    });
    await new Promise<void>((r) => server.listen(0, HOST, r));
    cleanups.push(() => new Promise((r) => server.close(r)));
    const upstreamPort = (server.address() as net.AddressInfo).port;
    const { relay, engine, port, closed } = await startRelay(upstreamPort, 'v1');
    const request = 'GET /who HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n';
    const { reply, localPort } = await fetchRaw(port, request);
    expect(seen).toEqual([{ header: `PROXY TCP4 ${HOST} ${HOST} ${localPort} ${port}\r\n`, rest: request }]);
    expect(reply.toString('latin1')).toMatch(new RegExp(`\\r\\n\\r\\nyou are ${HOST}:${localPort}$`));
    await waitFor('the relay to close', 3000, () => (relay.active === 0 ? true : null), 10);
    // The header is the tap's own bytes, not the client's: the HTTP facts are untouched by it.
    expect(closed).toHaveLength(1);
    expect(closed[0]).toMatchObject({ requests: 1, responses: 1, closeReason: 'client_close', client: `${HOST}:${localPort}`, server: `${HOST}:${upstreamPort}` });
    expect(engine.stats().anomalies).toEqual({});
  });

  it('v2: the upstream gets the binary header (client and listener addresses), then the request', async () => {
    let first: Buffer | null = null;
    const server = net.createServer((s) => {
      let buf = Buffer.alloc(0);
      s.on('data', (b: Buffer) => {
        buf = Buffer.concat([buf, b]);
        if (buf.length >= 28 && buf.includes('\r\n\r\n', 28)) {
          first = buf;
          s.end('HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n');
        }
      });
      s.on('error', () => {});
    });
    await new Promise<void>((r) => server.listen(0, HOST, r));
    cleanups.push(() => new Promise((r) => server.close(r)));
    const { port } = await startRelay((server.address() as net.AddressInfo).port, 'v2');
    const request = 'GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n';
    const { localPort } = await fetchRaw(port, request);
    expect(first).not.toBeNull();
    const d = decodeV2(first!);
    expect(d).toEqual({ src: HOST, sport: localPort, dst: HOST, dport: port, rest: request.length });
    expect(first!.subarray(28).toString('latin1')).toBe(request);
  });

  const nginx = findTool('nginx');
  describe.runIf(nginx !== null && process.getuid?.() === 0)('with a real nginx (listen ... proxy_protocol)', () => {
    let proc: Proc | null = null;
    let dir = '';
    afterEach(async () => {
      await stop(proc, 'SIGTERM', 5000);
      proc = null;
      if (dir) rmSync(dir, { recursive: true, force: true });
    });

    for (const version of ['v1', 'v2'] as const) {
      it(`nginx accepts the ${version} header and reports the real client address and port`, async () => {
        dir = mkdtempSync(join(tmpdir(), 'ka-pp-nginx-'));
        const probe = net.createServer();
        await new Promise<void>((r) => probe.listen(0, HOST, r));
        const nginxPort = (probe.address() as net.AddressInfo).port;
        await new Promise((r) => probe.close(r));
        const conf = join(dir, 'nginx.conf');
        writeFileSync(conf, `daemon off;
master_process off;
worker_processes 1;
pid ${dir}/nginx.pid;
error_log ${dir}/error.log info;
events { worker_connections 64; }
http {
  access_log off;
  client_body_temp_path ${dir}/body;
  proxy_temp_path ${dir}/proxy;
  fastcgi_temp_path ${dir}/fastcgi;
  uwsgi_temp_path ${dir}/uwsgi;
  scgi_temp_path ${dir}/scgi;
  server {
    listen ${HOST}:${nginxPort} proxy_protocol;
    location / { return 200 "client=$proxy_protocol_addr:$proxy_protocol_port server=$proxy_protocol_server_addr:$proxy_protocol_server_port"; }
  }
}
`);
        const t = spawnSync(nginx!, ['-t', '-p', `${dir}/`, '-c', conf], { encoding: 'utf8' });
        expect(t.status, t.stderr).toBe(0);
        proc = start('nginx', nginx!, ['-p', `${dir}/`, '-c', conf], join(dir, 'nginx.out'));
        await waitFor('nginx to listen', 10_000, () => new Promise<true | null>((resolve) => {
          const s = net.connect({ host: HOST, port: nginxPort });
          s.once('connect', () => { s.destroy(); resolve(true); });
          s.once('error', () => resolve(null));
        }));
        await sleep(100);
        const { port, closed, relay } = await startRelay(nginxPort, version);
        const { reply, localPort } = await fetchRaw(port, 'GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n');
        expect(reply.toString('latin1')).toMatch(/^HTTP\/1\.1 200 /);
        expect(reply.toString('latin1')).toMatch(new RegExp(`\\r\\n\\r\\nclient=${HOST}:${localPort} server=${HOST}:${port}$`));
        await waitFor('the relay to close', 3000, () => (relay.active === 0 ? true : null), 10);
        expect(closed).toHaveLength(1);
        expect(closed[0]).toMatchObject({ requests: 1, responses: 1, closeReason: 'client_close' });
      });
    }
  });
});
