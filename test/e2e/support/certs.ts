/**
 * Real certificates for the TLS tests, made with the `openssl` CLI in a temp dir: a CA, server
 * certificates for 127.0.0.1/localhost signed by it, a client certificate signed by it and one
 * signed by another CA (foreign). EC P-256 keys: quick to make, accepted by curl, Go and Node.
 */
import { execFileSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';

function openssl(args: string[], cwd: string): string {
  return execFileSync('openssl', args, { cwd, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
}

export interface Pair { cert: string; key: string }

/** A self-signed CA named `cn` in dir: <name>.crt and <name>.key. */
export function makeCa(dir: string, name: string, cn: string): Pair {
  const p = { cert: join(dir, `${name}.crt`), key: join(dir, `${name}.key`) };
  openssl(['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', p.key, '-out', p.cert,
    '-days', '2', '-subj', `/CN=${cn}`, '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign'], dir);
  return p;
}

/** A leaf certificate signed by `ca`: a server one (SAN 127.0.0.1, localhost) or a client one. */
export function makeLeaf(dir: string, name: string, cn: string, ca: Pair, kind: 'server' | 'client', serial: number): Pair {
  const p = { cert: join(dir, `${name}.crt`), key: join(dir, `${name}.key`) };
  const csr = join(dir, `${name}.csr`);
  const ext = join(dir, `${name}.ext`);
  writeFileSync(ext, kind === 'server'
    ? 'basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\nsubjectAltName=IP:127.0.0.1,DNS:localhost\n'
    : 'basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=clientAuth\n');
  openssl(['req', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', p.key, '-out', csr, '-subj', `/CN=${cn}`], dir);
  openssl(['x509', '-req', '-in', csr, '-CA', ca.cert, '-CAkey', ca.key, '-set_serial', String(serial), '-days', '2', '-out', p.cert, '-extfile', ext], dir);
  return p;
}
