/**
 * loadWebConfig (every mistake is one line naming the file and the key) and the basic-auth hook
 * through buildApp and `inject`: 401 and the challenge, the probes open, successful checks cached,
 * no input reflected, the landing page's security headers. Certificates are made with openssl.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import bcrypt from 'bcryptjs';
import { basicAuth, loadWebConfig, WebConfigError } from '../../src/server/web-config.js';
import { buildApp } from '../../src/server/app.js';
import { Exporter } from '../../src/metrics/exporter.js';
import { makeCa, makeLeaf, type Pair } from '../e2e/support/certs.js';

let dir = '';
let ca: Pair;
let server: Pair;
let other: Pair;
const HASH = bcrypt.hashSync('pw', 4);

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'ka-webcfg-unit-'));
  ca = makeCa(dir, 'ca', 'unit-ca');
  server = makeLeaf(dir, 'server', 'unit-server', ca, 'server', 11);
  other = makeLeaf(dir, 'other', 'unit-other', ca, 'server', 12);
  writeFileSync(join(dir, 'garbage.pem'), 'not pem\n');
}, 60_000);
afterAll(() => { if (dir) rmSync(dir, { recursive: true, force: true }); });

function load(yaml: string): ReturnType<typeof loadWebConfig> {
  const f = join(dir, 'web.yml');
  writeFileSync(f, yaml);
  return loadWebConfig(f);
}
function error(yaml: string): string {
  try {
    load(yaml);
  } catch (err) {
    expect(err).toBeInstanceOf(WebConfigError);
    return (err as Error).message;
  }
  throw new Error('loaded without an error');
}
const tlsOk = 'tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n';

describe('loadWebConfig', () => {
  it('loads TLS (paths relative to the file) and users', () => {
    const c = load(`${tlsOk}  client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: ca.crt\n  min_version: TLS13\nbasic_auth_users:\n  alice: ${HASH}\n`);
    expect(c.tls).toEqual({ certFile: server.cert, keyFile: server.key, clientCaFile: ca.cert, clientAuthType: 'RequireAndVerifyClientCert', minVersion: 'TLSv1.3', maxVersion: 'TLSv1.3' });
    expect([...c.users!]).toEqual([['alice', HASH]]);
    expect(load('')).toEqual({ path: join(dir, 'web.yml'), tls: null, users: null });
  });

  const cases: Array<[string, string, string]> = [
    ['unknown top key', 'tls_server_confg:\n  cert_file: x\n', 'tls_server_confg: unknown key'],
    ['unknown TLS key', `${tlsOk}  cert_fil: x\n`, 'tls_server_config.cert_fil: unknown key'],
    ['unsupported toolkit key', `${tlsOk}  cipher_suites: [TLS_AES_128_GCM_SHA256]\n`, 'tls_server_config.cipher_suites: not supported'],
    ['http_server_config', 'http_server_config:\n  http2: false\n', 'http_server_config: not supported'],
    ['not YAML', 'tls_server_config: [\n', 'not valid YAML'],
    ['duplicate key', `${tlsOk}  key_file: other.key\n`, 'not valid YAML'],
    ['top not a mapping', '- a\n', 'must be a mapping'],
    ['tls not a mapping', 'tls_server_config: yes\n', 'tls_server_config: must be a mapping'],
    ['missing cert_file', 'tls_server_config:\n  key_file: server.key\n', 'tls_server_config.cert_file: missing'],
    ['missing key_file', 'tls_server_config:\n  cert_file: server.crt\n', 'tls_server_config.key_file: missing'],
    ['cert_file not a string', 'tls_server_config:\n  cert_file: 3\n  key_file: server.key\n', 'tls_server_config.cert_file: must be a string'],
    ['bad client_auth_type', `${tlsOk}  client_auth_type: Always\n`, 'tls_server_config.client_auth_type: "Always" is not one of'],
    ['CA without a policy', `${tlsOk}  client_ca_file: ca.crt\n`, 'tls_server_config.client_ca_file: given but client_auth_type is NoClientCert'],
    ['policy without a CA', `${tlsOk}  client_auth_type: VerifyClientCertIfGiven\n`, 'tls_server_config.client_ca_file: missing'],
    ['bad min_version', `${tlsOk}  min_version: TLS10\n`, 'tls_server_config.min_version: "TLS10" is not one of TLS12, TLS13'],
    ['max below min', `${tlsOk}  min_version: TLS13\n  max_version: TLS12\n`, 'tls_server_config.max_version: is below min_version'],
    ['missing cert file', 'tls_server_config:\n  cert_file: nope.crt\n  key_file: server.key\n', 'tls_server_config.cert_file: '],
    ['cert file not PEM', 'tls_server_config:\n  cert_file: garbage.pem\n  key_file: server.key\n', 'tls_server_config.cert_file: '],
    ['key file not a key', 'tls_server_config:\n  cert_file: server.crt\n  key_file: server.crt\n', 'tls_server_config.key_file: '],
    ['key of another cert', 'tls_server_config:\n  cert_file: server.crt\n  key_file: other.key\n', 'tls_server_config.key_file: '],
    ['CA file not PEM', `${tlsOk}  client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: garbage.pem\n`, 'tls_server_config.client_ca_file: '],
    ['users not a mapping', 'basic_auth_users: [alice]\n', 'basic_auth_users: must be a mapping'],
    ['users empty', 'basic_auth_users: {}\n', 'basic_auth_users: is empty'],
    ['plain password', 'basic_auth_users:\n  alice: secret\n', 'basic_auth_users.alice: is not a bcrypt hash'],
  ];
  for (const [name, yaml, want] of cases) {
    it(`one line naming the key: ${name}`, () => {
      const m = error(yaml);
      expect(m.split('\n')).toHaveLength(1);
      expect(m).toContain(`--web.config.file ${join(dir, 'web.yml')}: `);
      expect(m).toContain(want);
    });
  }
  it('names a missing file', () => {
    expect(() => loadWebConfig(join(dir, 'absent.yml'))).toThrow(/absent\.yml: no such file$/);
  });
});

describe('basic auth', () => {
  const users = new Map([['alice', HASH]]);
  const basic = (u: string, p: string): string => `Basic ${Buffer.from(`${u}:${p}`).toString('base64')}`;

  it('caches successful checks only', async () => {
    const auth = basicAuth(users);
    expect(await auth.check(basic('alice', 'pw'))).toBe('ok');
    expect(await auth.check(basic('alice', 'pw'))).toBe('ok');
    expect(await auth.check(basic('alice', 'nope'))).toBe('denied');
    expect(await auth.check(basic('alice', 'nope'))).toBe('denied');
    // The unknown user still costs a compare (no user enumeration by timing).
    expect(await auth.check(basic('bob', 'pw'))).toBe('denied');
    expect(await auth.check(undefined)).toBe('denied');
    expect(await auth.check('Bearer x')).toBe('denied');
    expect(auth.stats).toEqual({ compares: 4, cacheHits: 1, busy: 0 });
  });

  it('guards every route but the probes, and reflects no input', async () => {
    const exporter = new Exporter({ maxServers: 10, sources: () => [] });
    const app = buildApp({ exporter, sources: () => [], version: 't', webConfig: { path: 'x', tls: null, users } });
    try {
      for (const url of ['/metrics', '/', '/api/connections', '/nope']) {
        const r = await app.inject({ url });
        expect({ url, status: r.statusCode, challenge: r.headers['www-authenticate'] }).toEqual({ url, status: 401, challenge: 'Basic realm="keepalive-exporter"' });
        expect((await app.inject({ url, headers: { authorization: basic('alice', 'nope') } })).statusCode).toBe(401);
      }
      expect((await app.inject({ url: '/healthz' })).statusCode).toBe(200);
      expect((await app.inject({ url: '/readyz' })).statusCode).toBe(503); // no sources: not ready, but not 401
      const ok = { authorization: basic('alice', 'pw') };
      expect((await app.inject({ url: '/metrics', headers: ok })).statusCode).toBe(200);
      const home = await app.inject({ url: '/', headers: ok });
      expect({
        csp: home.headers['content-security-policy'], nosniff: home.headers['x-content-type-options'],
        frame: home.headers['x-frame-options'], referrer: home.headers['referrer-policy'],
      }).toEqual({ csp: "default-src 'none'; style-src 'unsafe-inline'", nosniff: 'nosniff', frame: 'DENY', referrer: 'no-referrer' });
      const nf = await app.inject({ url: '/%3Cscript%3Exss', headers: ok });
      expect({ status: nf.statusCode, reflected: /script|xss/i.test(nf.body) }).toEqual({ status: 404, reflected: false });
      const badUrl = await app.inject({ url: '/%zz%3Cscript%3Exss', headers: ok });
      expect({ status: badUrl.statusCode, reflected: /script|xss|zz/i.test(badUrl.body) }).toEqual({ status: 400, reflected: false });
      const bad = await app.inject({ url: '/api/connections?limit=%3Cb%3Exss', headers: ok });
      expect({ status: bad.statusCode, reflected: /xss|<b>/.test(bad.body) }).toEqual({ status: 400, reflected: false });
    } finally {
      await app.close();
    }
  });
});
