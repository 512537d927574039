/**
 * A raw HTTP/1.x client on node:net for the end-to-end tests: it writes request bytes as given
 * and reads responses with Content-Length bodies (all the static responses these tests ask for),
 * and it tells when the server's FIN arrived, so a scenario can check that the server did what
 * the scenario claims (persistence headers, who closed, and when). Used by daemon-prometheus and
 * proxy-real-servers; the latter also writes past the server's FIN (write, bytesIn) for the race.
 */
import net from 'node:net';

export interface Response {
  status: number;
  version: string;
  headers: Record<string, string>;
  body: Buffer;
  /** performance.now() when the last body byte arrived. */
  at: number;
}

const CRLF = '\r\n';

/** The bytes of one GET request. connection: the Connection header's value, or null for none. */
export function get(path: string, { version = '1.1', connection = 'keep-alive' as string | null } = {}): string {
  const lines = [`GET ${path} HTTP/${version}`, 'Host: localhost', 'User-Agent: keepalive-e2e/1'];
  if (connection !== null) lines.push(`Connection: ${connection}`);
  return lines.join(CRLF) + CRLF + CRLF;
}

export class RawConn {
  private sock!: net.Socket;
  private buf: Buffer = Buffer.alloc(0);
  private readonly responses: Response[] = [];
  private waiters = new Set<() => void>();
  private error: Error | null = null;
  /** performance.now() when the server's FIN arrived. */
  serverFinAt: number | null = null;
  clientClosedAt: number | null = null;
  /** Every byte received, parsed or not: shows that nothing came back to a write(). */
  bytesIn = 0;
  closed = false;
  requests = 0;
  client = '';

  private constructor(readonly name: string) {}

  static open(name: string, host: string, port: number, timeoutMs = 3000): Promise<RawConn> {
    const c = new RawConn(name);
    return new Promise((resolve, reject) => {
      const s = net.connect({ host, port, allowHalfOpen: true, noDelay: true });
      c.sock = s;
      const timer = setTimeout(() => { s.destroy(); reject(new Error(`${name}: connect timed out`)); }, timeoutMs);
      s.once('connect', () => {
        clearTimeout(timer);
        c.client = `${s.localAddress}:${s.localPort}`;
        resolve(c);
      });
      s.on('data', (d: Buffer) => {
        c.bytesIn += d.length;
        c.buf = c.buf.length ? Buffer.concat([c.buf, d]) : d;
        try { c.parse(); } catch (err) { c.error = err as Error; }
        c.kick();
      });
      s.on('end', () => { c.serverFinAt = performance.now(); c.kick(); });
      s.on('error', (err) => {
        clearTimeout(timer);
        c.error = err;
        reject(new Error(`${name}: ${err.message}`));
        c.kick();
      });
      s.on('close', () => { c.closed = true; c.kick(); });
    });
  }

  private kick(): void {
    for (const w of [...this.waiters]) w();
  }

  private parse(): void {
    for (;;) {
      const end = this.buf.indexOf('\r\n\r\n');
      if (end < 0) return;
      const head = this.buf.subarray(0, end).toString('latin1').split('\r\n');
      const m = /^HTTP\/(1\.[01]) (\d{3})/.exec(head[0]);
      if (!m) throw new Error(`${this.name}: not an HTTP response: ${JSON.stringify(head[0])}`);
      const headers: Record<string, string> = {};
      for (const line of head.slice(1)) {
        const i = line.indexOf(':');
        if (i > 0) headers[line.slice(0, i).trim().toLowerCase()] = line.slice(i + 1).trim();
      }
      const len = Number(headers['content-length']);
      if (!Number.isInteger(len)) throw new Error(`${this.name}: response without Content-Length (${JSON.stringify(headers)})`);
      if (this.buf.length < end + 4 + len) return;
      this.responses.push({ status: Number(m[2]), version: m[1], headers, body: this.buf.subarray(end + 4, end + 4 + len), at: performance.now() });
      this.buf = this.buf.subarray(end + 4 + len);
    }
  }

  private waitUntil(pred: () => boolean, timeoutMs: number, what: string): Promise<void> {
    return new Promise((resolve, reject) => {
      const check = (): void => {
        if (!pred()) return;
        clearTimeout(timer);
        this.waiters.delete(check);
        resolve();
      };
      const timer = setTimeout(() => {
        this.waiters.delete(check);
        reject(new Error(`${this.name}: timed out after ${timeoutMs} ms waiting for ${what}`));
      }, timeoutMs);
      this.waiters.add(check);
      check();
    });
  }

  /** Writes one request and waits for its complete response. */
  async request(bytes: string, timeoutMs = 3000): Promise<Response> {
    const n = this.responses.length;
    this.requests++;
    this.sock.write(bytes);
    await this.waitUntil(() => this.responses.length > n || this.error !== null || this.serverFinAt !== null, timeoutMs, `response ${n + 1}`);
    if (this.responses.length <= n) {
      throw new Error(`${this.name}: no response ${n + 1} (${this.error ? this.error.message : 'the server closed the connection'})`);
    }
    return this.responses[n];
  }

  /** Writes bytes and waits for nothing (e.g. a request after the server's FIN, for the race). */
  write(bytes: string): void {
    this.sock.write(bytes);
  }

  /** Waits for the server's FIN; returns the ms from the last complete response to it. */
  async serverClose(timeoutMs: number): Promise<number> {
    await this.waitUntil(() => this.serverFinAt !== null || this.error !== null, timeoutMs, 'the server FIN');
    if (this.error) throw new Error(`${this.name}: ${this.error.message} while waiting for the server FIN`);
    const last = this.responses.at(-1);
    return this.serverFinAt! - (last ? last.at : 0);
  }

  /** Client FIN, then waits until the socket is fully closed. */
  async end(timeoutMs = 3000): Promise<void> {
    if (this.clientClosedAt === null) this.clientClosedAt = performance.now();
    this.sock.end();
    await this.waitUntil(() => this.closed, timeoutMs, 'the socket to close');
  }

  destroy(): void {
    this.sock?.destroy();
  }
}
