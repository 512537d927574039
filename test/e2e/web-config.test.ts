/**
 * --web.config.file end to end: the built CLI replaying test/fixtures/real/real-servers.pcap,
 * served over TLS with certificates made here with the openssl CLI, asked by real curl and
 * scraped by a real Prometheus (scheme https, tls_config.ca_file, basic_auth).
 *
 *   basic auth      no credentials, a wrong password, an unknown user: 401 with the challenge;
 *                   the right ones: 200; /healthz and /readyz: no credentials needed
 *   client certs    RequireAndVerifyClientCert, VerifyClientCertIfGiven, RequireAnyClientCert,
 *                   each against no certificate, one signed by the CA, one signed by another CA
 *   rotation        new files under the same names: the next connection gets the new certificate
 *   Prometheus      up == 1 and a keepalive_ series through its API; a job with a wrong password: up == 0
 *
 * Needs openssl, curl and prometheus (.ci/run installs them); skipped without them on a developer
 * machine, failed in CI (CI=true). KEEP_TMP=1 keeps the temp dir (certificates, configs, logs).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mkdirSync, mkdtempSync, readFileSync, renameSync, rmSync, writeFileSync, copyFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import bcrypt from 'bcryptjs';
import { buildCli } from '../helpers/cli.js';
import { findTool, freePort, httpGet, run, start, stop, tail, waitFor, type Proc } from '../helpers/procs.js';
import { api, query } from './support/prometheus.js';
import { makeCa, makeLeaf, type Pair } from './support/certs.js';

const ROOT = join(import.meta.dirname, '../..');
const FIXTURE = join(ROOT, 'test/fixtures/real/real-servers.pcap');
const TOOLS = { openssl: findTool('openssl'), curl: findTool('curl'), prometheus: findTool('prometheus') };
const missing = Object.entries(TOOLS).filter(([, p]) => p === null).map(([t]) => t);
const inCi = process.env.CI === 'true' || process.env.CI === '1';
const USER = 'prometheus';
const PASSWORD = 'scrape-secret';

let dir = '';
let MAIN = '';
let ca: Pair;
let server: Pair;
let clientOk: Pair;
let clientForeign: Pair;
const procs: Proc[] = [];

beforeAll(() => {
  if (missing.length > 0) return;
  dir = mkdtempSync(join(tmpdir(), 'ka-webcfg-'));
  mkdirSync(join(dir, 'logs'));
  ({ main: MAIN } = buildCli('ka-webcfg-cli-'));
  ca = makeCa(dir, 'ca', 'keepalive-test-ca');
  const foreignCa = makeCa(dir, 'foreign-ca', 'someone-else-ca');
  server = makeLeaf(dir, 'server', 'keepalive-server-1', ca, 'server', 1001);
  clientOk = makeLeaf(dir, 'client', 'prometheus-client', ca, 'client', 2001);
  clientForeign = makeLeaf(dir, 'client-foreign', 'foreign-client', foreignCa, 'client', 3001);
}, 120_000);

afterAll(async () => {
  for (const p of procs) await stop(p, 'SIGTERM', 5000);
  if (dir && !process.env.KEEP_TMP) rmSync(dir, { recursive: true, force: true });
  if (MAIN) rmSync(join(MAIN, '../../..'), { recursive: true, force: true });
});

/** Starts the daemon with this web config (YAML text): its https base URL once it listens. */
async function daemon(name: string, yaml: string): Promise<{ base: string; proc: Proc }> {
  const cfg = join(dir, `${name}.yml`);
  writeFileSync(cfg, yaml);
  const proc = start(`daemon ${name}`, process.execPath, [MAIN, '--pcap', FIXTURE, '--web.config.file', cfg, '--web.listen-address', '127.0.0.1:0'], join(dir, `logs/${name}.log`));
  procs.push(proc);
  const base = await waitFor(`daemon ${name} to listen`, 15_000, () => {
    if (proc.exit) throw new Error(`daemon exited ${JSON.stringify(proc.exit)}\n${tail(proc)}`);
    return /listening on (https:\/\/127\.0\.0\.1:\d+)\/metrics/.exec(readFileSync(proc.log, 'utf8'))?.[1] ?? null;
  });
  return { base, proc };
}

interface Curl { code: number | null; status: number; headers: string; body: string; stderr: string }

/** curl against the daemon, trusting the test CA; `status` 0 when no HTTP response came. */
async function curl(url: string, extra: string[] = []): Promise<Curl> {
  const r = await run(TOOLS.curl!, ['-sS', '-v', '--max-time', '10', '--cacert', ca.cert, '-D', '-', '-o', join(dir, 'body'), '-w', '%{http_code}', ...extra, url], { timeoutMs: 15_000 });
  let body = '';
  try { body = readFileSync(join(dir, 'body'), 'utf8'); rmSync(join(dir, 'body')); } catch { /* none */ }
  const status = Number(/(\d{3})$/.exec(r.stdout)?.[1] ?? 0);
  return { code: r.code, status, headers: r.stdout.toLowerCase(), body, stderr: r.stderr };
}
const cert = (p: Pair): string[] => ['--cert', p.cert, '--key', p.key];

const tlsBlock = (auth: string, withCa: boolean): string => `tls_server_config:
  cert_file: server.crt
  key_file: server.key
${auth ? `  client_auth_type: ${auth}\n` : ''}${withCa ? '  client_ca_file: ca.crt\n' : ''}`;

describe.skipIf(missing.length > 0 && !inCi)('--web.config.file (TLS, client certificates, basic auth)', () => {
  it('has its prerequisites', () => {
    expect(missing.map((t) => `${t} (apt-get install -y ${t})`)).toEqual([]);
  });

  describe('TLS with basic auth', () => {
    let base = '';
    let hash = '';
    beforeAll(async () => {
      hash = bcrypt.hashSync(PASSWORD, 10);
      // Relative paths: resolved against the config file's directory, as exporter-toolkit.
      ({ base } = await daemon('auth', `${tlsBlock('', false)}basic_auth_users:\n  ${USER}: ${hash}\n`));
    }, 30_000);

    it('answers 401 with the Basic challenge without credentials, with a wrong password, for an unknown user', async () => {
      for (const extra of [[], ['-u', `${USER}:wrong`], ['-u', `nobody:${PASSWORD}`], ['-u', `${USER}:`]]) {
        for (const path of ['/metrics', '/api/connections', '/', '/no-such-page']) {
          const r = await curl(`${base}${path}`, extra);
          expect({ extra, path, status: r.status, challenge: r.headers.includes('www-authenticate: basic realm="keepalive-exporter"'), metrics: r.body.includes('keepalive_') })
            .toEqual({ extra, path, status: 401, challenge: true, metrics: false });
        }
      }
    });

    it('serves every endpoint with the right credentials, the same on repeated scrapes', async () => {
      for (let i = 0; i < 3; i++) {
        const r = await curl(`${base}/metrics`, ['-u', `${USER}:${PASSWORD}`]);
        expect({ status: r.status, metrics: /^keepalive_\w+/m.test(r.body) }).toEqual({ status: 200, metrics: true });
      }
      expect((await curl(`${base}/api/connections`, ['-u', `${USER}:${PASSWORD}`])).status).toBe(200);
    });

    it('leaves the probes open', async () => {
      expect((await curl(`${base}/healthz`)).status).toBe(200);
      expect([200, 503]).toContain((await curl(`${base}/readyz`)).status);
    });

    it('sends security headers on the landing page and reflects no input', async () => {
      const r = await curl(`${base}/`, ['-u', `${USER}:${PASSWORD}`]);
      expect(r.status).toBe(200);
      for (const h of ["content-security-policy: default-src 'none'; style-src 'unsafe-inline'", 'x-content-type-options: nosniff', 'x-frame-options: deny', 'referrer-policy: no-referrer']) {
        expect(r.headers).toContain(h);
      }
      const nf = await curl(`${base}/%3Cscript%3Ealert(1)%3C/script%3E`, ['-u', `${USER}:${PASSWORD}`]);
      expect({ status: nf.status, reflected: /script|alert/i.test(nf.body) }).toEqual({ status: 404, reflected: false });
      const bad = await curl(`${base}/api/connections?limit=%3Cb%3Exyz`, ['-u', `${USER}:${PASSWORD}`]);
      expect({ status: bad.status, reflected: /xyz|<b>/.test(bad.body) }).toEqual({ status: 400, reflected: false });
    });

    it('speaks no plain HTTP on the TLS port', async () => {
      const r = await curl(base.replace('https://', 'http://') + '/healthz');
      expect(r.status === 200).toBe(false);
    });

    it('is scraped by Prometheus over TLS with basic auth (and not with a wrong password)', async () => {
      const port = await freePort();
      const target = base.replace('https://', '');
      const job = (name: string, password: string): string => `  - job_name: ${name}
    scheme: https
    tls_config:
      ca_file: ${ca.cert}
    basic_auth:
      username: ${USER}
      password: ${password}
    static_configs:
      - targets: ['${target}']
`;
      const conf = join(dir, 'prometheus.yml');
      writeFileSync(conf, `global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\nscrape_configs:\n${job('keepalive-tls', PASSWORD)}${job('keepalive-wrong', 'not-it')}`);
      mkdirSync(join(dir, 'prom-data'));
      const prom = start('prometheus', TOOLS.prometheus!, [`--config.file=${conf}`, `--storage.tsdb.path=${join(dir, 'prom-data')}`, `--web.listen-address=127.0.0.1:${port}`, '--log.level=warn'], join(dir, 'logs/prometheus.log'));
      procs.push(prom);
      await waitFor('Prometheus to be ready', 20_000, async () => {
        if (prom.exit) throw new Error(`prometheus exited\n${tail(prom)}`);
        return (await httpGet(`http://127.0.0.1:${port}/-/ready`))?.status === 200 ? true : null;
      }, 200);
      const up = await waitFor('both jobs scraped', 30_000, async () => {
        const s = await query(port, 'up');
        return s.length === 2 ? Object.fromEntries(s.map((x) => [x.labels.job, x.value])) : null;
      }, 500);
      const targets = await api<{ activeTargets: Array<{ labels: { job: string }; lastError: string }> }>(port, '/api/v1/targets');
      expect(up, JSON.stringify(targets.activeTargets.map((t) => [t.labels.job, t.lastError]))).toEqual({ 'keepalive-tls': 1, 'keepalive-wrong': 0 });
      expect(targets.activeTargets.find((t) => t.labels.job === 'keepalive-wrong')?.lastError).toMatch(/401/);
      const series = await query(port, 'count({job="keepalive-tls", __name__=~"keepalive_.+"})');
      expect(series[0]?.value ?? 0).toBeGreaterThan(0);
      await stop(prom, 'SIGTERM', 5000);
    }, 90_000);

    it('picks up a rotated certificate on the next connection', async () => {
      const subject = async (): Promise<string> => {
        const r = await curl(`${base}/healthz`);
        expect(r.status).toBe(200);
        return /subject: (.*)/.exec(r.stderr)?.[1]?.trim() ?? `no subject in ${r.stderr}`;
      };
      expect(await subject()).toBe('CN=keepalive-server-1');
      const next = makeLeaf(dir, 'server-2', 'keepalive-server-2', ca, 'server', 1002);
      // As cert-manager or a script would: new files renamed over the old names (key first, then cert).
      copyFileSync(next.key, join(dir, 'server.key.new'));
      copyFileSync(next.cert, join(dir, 'server.crt.new'));
      renameSync(join(dir, 'server.key.new'), join(dir, 'server.key'));
      renameSync(join(dir, 'server.crt.new'), join(dir, 'server.crt'));
      expect(await subject()).toBe('CN=keepalive-server-2');
      const serial = await run(TOOLS.openssl!, ['s_client', '-connect', base.replace('https://', ''), '-CAfile', ca.cert], { timeoutMs: 10_000 });
      const pem = /-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/.exec(serial.stdout)?.[0] ?? '';
      writeFileSync(join(dir, 'seen.pem'), pem);
      const x = await run(TOOLS.openssl!, ['x509', '-in', join(dir, 'seen.pem'), '-noout', '-serial']);
      expect(x.stdout.trim()).toBe(`serial=${(1002).toString(16).toUpperCase().padStart(4, '0')}`);
    }, 30_000);
  });

  describe('client certificates', () => {
    const cases: Array<{ auth: string; none: boolean; signed: boolean; foreign: boolean }> = [
      { auth: 'RequireAndVerifyClientCert', none: false, signed: true, foreign: false },
      { auth: 'VerifyClientCertIfGiven', none: true, signed: true, foreign: false },
      { auth: 'RequireAnyClientCert', none: false, signed: true, foreign: true },
    ];
    for (const c of cases) {
      it(`${c.auth}: no certificate ${c.none ? 'served' : 'refused'}, the CA's served, a foreign one ${c.foreign ? 'served' : 'refused'}`, async () => {
        const { base, proc } = await daemon(c.auth, tlsBlock(c.auth, c.auth !== 'RequireAnyClientCert'));
        const served = async (extra: string[]): Promise<boolean> => {
          const r = await curl(`${base}/metrics`, extra);
          // Refused: the handshake fails or the connection is closed before any response.
          if (r.status !== 200) expect(r.code, r.stderr).not.toBe(0);
          return r.status === 200;
        };
        expect({ none: await served([]), signed: await served(cert(clientOk)), foreign: await served(cert(clientForeign)) })
          .toEqual({ none: c.none, signed: c.signed, foreign: c.foreign });
        expect(proc.exit).toBeNull();
        await stop(proc, 'SIGTERM', 5000);
      }, 30_000);
    }
  });

  it('stops at start with one line and exit 2 on a bad certificate file', async () => {
    const cfg = join(dir, 'bad.yml');
    writeFileSync(cfg, 'tls_server_config:\n  cert_file: server.key\n  key_file: server.key\n');
    const r = await run(process.execPath, [MAIN, '--pcap', FIXTURE, '--web.config.file', cfg, '--web.listen-address', '127.0.0.1:0'], { timeoutMs: 15_000 });
    const lines = r.stderr.split('\n').filter((l) => l && !l.startsWith('{"level"'));
    expect({ code: r.code, lines: lines.length }).toEqual({ code: 2, lines: 1 });
    expect(lines[0]).toContain('tls_server_config.cert_file');
    expect(lines[0]).toContain(cfg);
  }, 20_000);
});
