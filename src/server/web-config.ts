/**
 * --web.config.file: TLS and basic auth for the daemon's endpoints, in the Prometheus
 * exporter-toolkit format (docs/web-configuration.md), so one file works for this exporter and
 * node_exporter alike:
 *
 *   tls_server_config:
 *     cert_file: server.crt            # relative paths are relative to the config file
 *     key_file: server.key
 *     client_auth_type: RequireAndVerifyClientCert   # default NoClientCert
 *     client_ca_file: ca.crt
 *     min_version: TLS12               # TLS12 (default) or TLS13; max_version likewise
 *   basic_auth_users:
 *     prometheus: $2y$10$...           # bcrypt hash
 *
 * Call order: `loadWebConfig(path)` once at start (validates the YAML and loads the certificate
 * files once, throwing WebConfigError with one line); then `httpsOptions(config.tls)` for
 * fastify's `https`, `watchCertificates(server, config.tls)` once on the server before listen,
 * and `basicAuth(config.users)` as an onRequest hook. Unknown keys are errors, as in
 * exporter-toolkit (a typo must not silently turn security off).
 */
import { readFileSync, statSync } from 'node:fs';
import { createHash } from 'node:crypto';
import { dirname, resolve } from 'node:path';
import tls from 'node:tls';
import type { Server as HttpsServer, ServerOptions as HttpsServerOptions } from 'node:https';
import bcrypt from 'bcryptjs';
import { parseDocument } from 'yaml';

export class WebConfigError extends Error {}

export const CLIENT_AUTH_TYPES = ['NoClientCert', 'RequestClientCert', 'RequireAnyClientCert', 'VerifyClientCertIfGiven', 'RequireAndVerifyClientCert'] as const;
export type ClientAuthType = typeof CLIENT_AUTH_TYPES[number];
const TLS_VERSIONS: Record<string, tls.SecureVersion> = { TLS12: 'TLSv1.2', TLS13: 'TLSv1.3' };

export interface TlsServerConfig {
  /** Absolute paths (resolved against the config file's directory, as exporter-toolkit). */
  certFile: string;
  keyFile: string;
  clientCaFile: string | null;
  clientAuthType: ClientAuthType;
  minVersion: tls.SecureVersion;
  maxVersion: tls.SecureVersion;
}

export interface WebConfig {
  path: string;
  tls: TlsServerConfig | null;
  /** user -> bcrypt hash; null: no basic auth. */
  users: Map<string, string> | null;
}

const TOP_KEYS = ['tls_server_config', 'basic_auth_users', 'http_server_config'];
const TLS_KEYS = ['cert_file', 'key_file', 'client_ca_file', 'client_auth_type', 'min_version', 'max_version',
  // exporter-toolkit keys this exporter does not implement: named as such rather than "unknown".
  'cert', 'key', 'client_ca', 'cipher_suites', 'curve_preferences', 'prefer_server_cipher_suites', 'client_allowed_sans'];
const TLS_IMPLEMENTED = new Set(['cert_file', 'key_file', 'client_ca_file', 'client_auth_type', 'min_version', 'max_version']);
/** $2a$/$2b$/$2y$, two-digit cost, 22 characters of salt and 31 of hash (htpasswd -B, bcryptjs, Go). */
const BCRYPT_HASH = /^\$2[aby]\$\d\d\$[./A-Za-z0-9]{53}$/;

/** Reads and validates the file; every mistake is one line naming the file and the key. */
export function loadWebConfig(path: string): WebConfig {
  const fail = (key: string | null, what: string): never => {
    throw new WebConfigError(`--web.config.file ${path}: ${key ? `${key}: ` : ''}${what}`);
  };
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    return fail(null, e.code === 'ENOENT' ? 'no such file' : e.code === 'EACCES' ? 'permission denied' : e.message);
  }
  // uniqueKeys (the default): a key given twice is an error, not "the last one wins".
  const doc = parseDocument(text, { prettyErrors: false });
  if (doc.errors.length > 0) {
    const e = doc.errors[0]!;
    const at = e.linePos?.[0] ? `line ${e.linePos[0].line}: ` : '';
    return fail(null, `not valid YAML: ${at}${e.message.split('\n')[0]}`);
  }
  const root: unknown = doc.toJS();
  if (root === null || root === undefined) return { path, tls: null, users: null }; // empty file: as exporter-toolkit, nothing to secure
  const top = mapping(root, null, fail);
  for (const k of Object.keys(top)) if (!TOP_KEYS.includes(k)) fail(k, `unknown key (expected one of ${TOP_KEYS.join(', ')})`);
  if (top.http_server_config !== undefined && top.http_server_config !== null) fail('http_server_config', 'not supported by keepalive-exporter');

  const dir = dirname(resolve(path));
  let tlsConfig: TlsServerConfig | null = null;
  if (top.tls_server_config !== undefined && top.tls_server_config !== null) {
    const t = mapping(top.tls_server_config, 'tls_server_config', fail);
    for (const k of Object.keys(t)) {
      if (!TLS_KEYS.includes(k)) fail(`tls_server_config.${k}`, `unknown key (expected one of ${[...TLS_IMPLEMENTED].join(', ')})`);
      if (!TLS_IMPLEMENTED.has(k)) fail(`tls_server_config.${k}`, `not supported by keepalive-exporter (supported: ${[...TLS_IMPLEMENTED].join(', ')})`);
    }
    const str = (k: string): string | null => {
      const v = t[k];
      if (v === undefined || v === null || v === '') return null;
      if (typeof v !== 'string') return fail(`tls_server_config.${k}`, `must be a string, not ${describe(v)}`);
      return v;
    };
    const certFile = str('cert_file');
    const keyFile = str('key_file');
    if (certFile === null) fail('tls_server_config.cert_file', 'missing (TLS needs cert_file and key_file)');
    if (keyFile === null) fail('tls_server_config.key_file', 'missing (TLS needs cert_file and key_file)');
    const auth = str('client_auth_type') ?? 'NoClientCert';
    if (!(CLIENT_AUTH_TYPES as readonly string[]).includes(auth)) fail('tls_server_config.client_auth_type', `"${auth}" is not one of ${CLIENT_AUTH_TYPES.join(', ')}`);
    const clientAuthType = auth as ClientAuthType;
    const ca = str('client_ca_file');
    // As exporter-toolkit: a CA without a policy that uses it is a mistake, not a no-op.
    if (ca !== null && clientAuthType === 'NoClientCert') fail('tls_server_config.client_ca_file', 'given but client_auth_type is NoClientCert (set client_auth_type, e.g. RequireAndVerifyClientCert)');
    if (ca === null && (clientAuthType === 'VerifyClientCertIfGiven' || clientAuthType === 'RequireAndVerifyClientCert')) {
      fail('tls_server_config.client_ca_file', `missing: client_auth_type ${clientAuthType} verifies client certificates against it`);
    }
    const version = (k: string, dflt: tls.SecureVersion): tls.SecureVersion => {
      const v = str(k);
      if (v === null) return dflt;
      const out = TLS_VERSIONS[v];
      if (!out) return fail(`tls_server_config.${k}`, `"${v}" is not one of ${Object.keys(TLS_VERSIONS).join(', ')}`);
      return out;
    };
    const minVersion = version('min_version', 'TLSv1.2');
    const maxVersion = version('max_version', 'TLSv1.3');
    if (minVersion > maxVersion) fail('tls_server_config.max_version', 'is below min_version');
    tlsConfig = { certFile: resolve(dir, certFile!), keyFile: resolve(dir, keyFile!), clientCaFile: ca === null ? null : resolve(dir, ca), clientAuthType, minVersion, maxVersion };
    // The files now, so a bad one stops the start with one line (later rotations keep the last good one).
    try {
      secureContextOptions(tlsConfig);
    } catch (err) {
      if (err instanceof CertificateFileError) fail(`tls_server_config.${err.key}`, err.message);
      throw err;
    }
  }

  let users: Map<string, string> | null = null;
  if (top.basic_auth_users !== undefined && top.basic_auth_users !== null) {
    const u = mapping(top.basic_auth_users, 'basic_auth_users', fail);
    users = new Map();
    for (const [name, hash] of Object.entries(u)) {
      if (typeof hash !== 'string' || !BCRYPT_HASH.test(hash)) {
        fail(`basic_auth_users.${name}`, 'is not a bcrypt hash ($2y$10$ and 53 characters; make one with htpasswd -nBC 10 "" | tr -d \':\\n\')');
      }
      users.set(name, hash as string);
    }
    if (users.size === 0) fail('basic_auth_users', 'is empty (remove it, or list user: bcrypt-hash pairs)');
  }
  return { path, tls: tlsConfig, users };
}

function mapping(v: unknown, key: string | null, fail: (key: string | null, what: string) => never): Record<string, unknown> {
  if (typeof v !== 'object' || v === null || Array.isArray(v) || v instanceof Map) return fail(key, `must be a mapping (key: value), not ${describe(v)}`);
  return v as Record<string, unknown>;
}

function describe(v: unknown): string {
  return Array.isArray(v) ? 'a list' : v === null ? 'null' : `a ${typeof v}`;
}

// ---------------------------------------------------------------- TLS

class CertificateFileError extends Error {
  constructor(readonly key: 'cert_file' | 'key_file' | 'client_ca_file', message: string) {
    super(message);
  }
}

/** The current files as secure-context options; throws CertificateFileError naming the key. */
function secureContextOptions(t: TlsServerConfig): tls.SecureContextOptions {
  const read = (key: CertificateFileError['key'], file: string): Buffer => {
    try {
      return readFileSync(file);
    } catch (err) {
      const e = err as NodeJS.ErrnoException;
      throw new CertificateFileError(key, `${file}: ${e.code === 'ENOENT' ? 'no such file' : e.code === 'EACCES' ? 'permission denied' : e.message}`);
    }
  };
  const opts: tls.SecureContextOptions = {
    cert: read('cert_file', t.certFile),
    key: read('key_file', t.keyFile),
    minVersion: t.minVersion,
    maxVersion: t.maxVersion,
  };
  if (t.clientCaFile !== null) opts.ca = read('client_ca_file', t.clientCaFile);
  // Parse each part apart first, so the error names the file at fault.
  try {
    tls.createSecureContext({ cert: opts.cert });
  } catch (err) {
    throw new CertificateFileError('cert_file', `${t.certFile}: not a PEM certificate (${(err as Error).message})`);
  }
  try {
    tls.createSecureContext({ key: opts.key });
  } catch (err) {
    throw new CertificateFileError('key_file', `${t.keyFile}: not a PEM private key (${(err as Error).message})`);
  }
  if (opts.ca) {
    try {
      tls.createSecureContext({ ca: opts.ca });
      if (!opts.ca.toString('latin1').includes('-----BEGIN CERTIFICATE-----')) throw new Error('no certificate in it');
    } catch (err) {
      throw new CertificateFileError('client_ca_file', `${t.clientCaFile}: not PEM certificates (${(err as Error).message})`);
    }
  }
  try {
    tls.createSecureContext(opts);
  } catch (err) {
    throw new CertificateFileError('key_file', `${t.keyFile} does not belong to ${t.certFile} (${(err as Error).message})`);
  }
  return opts;
}

/**
 * fastify's `https` options: the certificate as it is now, and the client-certificate policy.
 * Node has no "verify if given" or "require any" mode: those two ask for a certificate without
 * rejecting and are finished by watchCertificates after the handshake.
 */
export function httpsOptions(t: TlsServerConfig): HttpsServerOptions {
  const ask = t.clientAuthType !== 'NoClientCert';
  return {
    ...secureContextOptions(t),
    requestCert: ask,
    // Only RequireAndVerifyClientCert lets OpenSSL refuse in the handshake (no certificate, or one the CA did not sign).
    rejectUnauthorized: t.clientAuthType === 'RequireAndVerifyClientCert',
  };
}

/** What watchCertificates did, for tests and logs. */
export interface CertificateWatch {
  /** Times the files changed and a new context was built from them. */
  reloads: number;
  /** Times changed files could not be used (the last good certificate stayed in use). */
  reloadFailures: number;
  /** Connections closed after the handshake by the client_auth_type policy. */
  refusedClientCerts: number;
}

/**
 * Certificate rotation, as exporter-toolkit (it reads the files on every handshake): before each
 * new connection, the files' identity (inode, size, mtime) is compared with the last one seen,
 * three stat calls, and only a change costs a read and a parse. A change that does not load (a
 * key written before its certificate, a half-written file) keeps the last good context and is
 * logged once per distinct change; the next connection tries again. Call once, before listen.
 */
export function watchCertificates(server: HttpsServer, t: TlsServerConfig, warn: (msg: string) => void): CertificateWatch {
  const watch: CertificateWatch = { reloads: 0, reloadFailures: 0, refusedClientCerts: 0 };
  const files = [t.certFile, t.keyFile, ...(t.clientCaFile ? [t.clientCaFile] : [])];
  const identity = (): string => files.map((f) => {
    try {
      const s = statSync(f, { bigint: true });
      return `${s.ino}:${s.size}:${s.mtimeNs}`;
    } catch {
      return 'missing';
    }
  }).join('|');
  let loaded = identity();
  let lastFailed = '';
  // Prepended: tls.Server's own 'connection' listener makes the TLSSocket with the context it
  // holds at that moment, so the refresh must run before it. (SNICallback would not do: clients
  // that dial an IP address, Prometheus among them, send no SNI.)
  server.prependListener('connection', () => {
    const now = identity();
    if (now === loaded || now === lastFailed) return;
    try {
      server.setSecureContext(secureContextOptions(t));
      loaded = now;
      lastFailed = '';
      watch.reloads++;
    } catch (err) {
      lastFailed = now;
      watch.reloadFailures++;
      warn(`TLS certificate not reloaded, the previous one stays in use: ${(err as Error).message}`);
    }
  });
  if (t.clientAuthType === 'RequireAnyClientCert' || t.clientAuthType === 'VerifyClientCertIfGiven') {
    const requireOne = t.clientAuthType === 'RequireAnyClientCert';
    // Prepended too: the HTTP server must never see a refused connection.
    server.prependListener('secureConnection', (socket: tls.TLSSocket) => {
      const cert = socket.getPeerCertificate();
      const given = cert !== null && Object.keys(cert).length > 0;
      if (requireOne ? !given : given && !socket.authorized) {
        watch.refusedClientCerts++;
        socket.destroy();
      }
    });
  }
  return watch;
}

// ---------------------------------------------------------------- basic auth

/** Successful (user, password) checks remembered, as exporter-toolkit's cache (it holds 100). */
const AUTH_CACHE_MAX = 100;
/**
 * bcrypt compares waiting or running at once; past it a request is answered 503 at once. Each
 * compare is ~50-100 ms of CPU at cost 10, so a flood of wrong passwords would otherwise queue
 * unbounded work (exporter-toolkit serializes them behind a mutex without a bound).
 */
export const AUTH_MAX_PENDING = 16;
/** Compared when the user is unknown, so the time taken does not tell which users exist (exporter-toolkit's). */
const UNKNOWN_USER_HASH = '$2y$10$QOauhQNbBCuQDKes6eFzPeMqBSjb7Mr5DUmpZ/VcEd00UAV/LDeSi';

export type AuthResult = 'ok' | 'denied' | 'busy';

export interface BasicAuth {
  /** The Authorization header's verdict. */
  check(authorization: string | undefined): Promise<AuthResult>;
  readonly stats: { compares: number; cacheHits: number; busy: number };
}

export function basicAuth(users: Map<string, string>): BasicAuth {
  // Keys are digests of (user, hash, password): no password is kept in memory, and a changed
  // hash cannot hit an old entry. Map order is insertion order: the oldest is evicted first.
  const cache = new Set<string>();
  let pending = 0;
  let chain: Promise<unknown> = Promise.resolve();
  const stats = { compares: 0, cacheHits: 0, busy: 0 };
  return {
    stats,
    async check(authorization) {
      if (!authorization || !/^basic /i.test(authorization)) return 'denied';
      const decoded = Buffer.from(authorization.slice(6).trim(), 'base64').toString('utf8');
      const colon = decoded.indexOf(':');
      if (colon < 0) return 'denied';
      const user = decoded.slice(0, colon);
      const password = decoded.slice(colon + 1);
      const hash = users.get(user);
      const key = createHash('sha256').update(user).update('\0').update(hash ?? '').update('\0').update(password).digest('hex');
      if (hash !== undefined && cache.has(key)) {
        stats.cacheHits++;
        return 'ok';
      }
      if (pending >= AUTH_MAX_PENDING) {
        stats.busy++;
        return 'busy';
      }
      pending++;
      // One compare at a time (bcryptjs' async compare yields to the event loop between rounds,
      // so scrapes of other clients and the probes keep being served meanwhile).
      const run = chain.then(() => { stats.compares++; return bcrypt.compare(password, hash ?? UNKNOWN_USER_HASH); });
      chain = run.catch(() => false);
      let match = false;
      try {
        match = await run;
      } catch {
        match = false;
      } finally {
        pending--;
      }
      if (!match || hash === undefined) return 'denied';
      cache.add(key);
      if (cache.size > AUTH_CACHE_MAX) cache.delete(cache.values().next().value!);
      return 'ok';
    },
  };
}
