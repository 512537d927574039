/**
 * Child processes for the deployment tests: every long-running child gets its own process
 * group and a log file, every wait is bounded, and stopping kills only that group.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { closeSync, existsSync, openSync, readFileSync } from 'node:fs';
import http from 'node:http';
import net from 'node:net';

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Absolute path of a tool on PATH or in the sbin directories (root's PATH may lack them), or null. */
export function findTool(name: string): string | null {
  const r = spawnSync('sh', ['-c', 'command -v "$1"', 'sh', name], { encoding: 'utf8' });
  const onPath = r.status === 0 ? r.stdout.trim() : '';
  if (onPath.startsWith('/')) return onPath;
  for (const dir of ['/usr/sbin', '/sbin', '/usr/bin', '/bin', '/usr/local/bin', '/usr/local/sbin']) {
    if (existsSync(`${dir}/${name}`)) return `${dir}/${name}`;
  }
  return null;
}

export interface Proc {
  child: ChildProcess;
  log: string;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  exit: { code: number | null; signal: NodeJS.Signals | null } | null;
}

/** Starts a process in its own group, stdout and stderr appended to `log`. */
export function startProc(cmd: string, args: string[], log: string, opts: { env: NodeJS.ProcessEnv; cwd?: string }): Proc {
  const fd = openSync(log, 'a');
  let child: ChildProcess;
  try {
    child = spawn(cmd, args, { stdio: ['ignore', fd, fd], detached: true, env: opts.env, cwd: opts.cwd });
  } finally {
    closeSync(fd);
  }
  const p: Proc = { child, log, exit: null, exited: Promise.resolve({ code: null, signal: null }) };
  p.exited = new Promise((resolve) => {
    child.once('error', () => {
      p.exit = { code: -1, signal: null };
      resolve(p.exit);
    });
    child.once('exit', (code, signal) => {
      p.exit = { code, signal };
      resolve(p.exit);
    });
  });
  return p;
}

/** SIGTERM (or `signal`), then SIGKILL of the process' own group after `timeoutMs`. */
export async function stopProc(p: Proc | null, timeoutMs = 8000, signal: NodeJS.Signals = 'SIGTERM'): Promise<{ code: number | null; signal: NodeJS.Signals | null; killed: boolean }> {
  if (!p) return { code: null, signal: null, killed: false };
  const pid = p.child.pid;
  let killed = false;
  if (p.exit === null && pid !== undefined) {
    try { process.kill(pid, signal); } catch { /* gone */ }
    const timer = sleep(timeoutMs).then(() => 'timeout' as const);
    if ((await Promise.race([p.exited, timer])) === 'timeout') {
      try { process.kill(-pid, 'SIGKILL'); } catch { /* gone */ }
      killed = true;
    }
  }
  // Whatever is left of the group (tcpdump) goes too.
  if (pid !== undefined) {
    try { process.kill(-pid, 'SIGKILL'); } catch { /* no such group */ }
  }
  const e = await p.exited;
  return { ...e, killed };
}

export function logTail(p: Proc | null, lines = 20): string {
  if (!p) return '';
  let text = '';
  try { text = readFileSync(p.log, 'utf8').trimEnd(); } catch { /* none */ }
  return text ? `----- ${p.log} -----\n${text.split('\n').slice(-lines).join('\n')}` : `(${p.log} is empty)`;
}

/** Polls `probe` until it returns non-null; throws after `timeoutMs`. */
export async function waitFor<T>(what: string, timeoutMs: number, probe: () => Promise<T | null> | T | null, intervalMs = 100): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let lastErr: unknown = null;
  for (;;) {
    try {
      const v = await probe();
      if (v !== null) return v;
    } catch (err) {
      lastErr = err;
    }
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${lastErr ? ` (last error: ${(lastErr as Error).message})` : ''}`);
    await sleep(intervalMs);
  }
}

/** A port free on 127.0.0.1 now. */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const port = (srv.address() as net.AddressInfo).port;
      srv.close(() => resolve(port));
    });
  });
}

/** One GET on its own connection: status and body, or null when nothing answered. */
export function httpGet(url: string, timeoutMs = 2000): Promise<{ status: number; body: string } | null> {
  return new Promise((resolve) => {
    const req = http.get(url, { agent: false, headers: { connection: 'close' }, timeout: timeoutMs }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString('utf8') }));
      res.on('error', () => resolve(null));
    });
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.on('error', () => resolve(null));
  });
}

/** Runs a command to its end (bounded): exit status and output. */
export function run(cmd: string, args: string[], opts: { env?: NodeJS.ProcessEnv; cwd?: string; timeoutMs?: number } = {}): Promise<{ code: number | null; signal: NodeJS.Signals | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(cmd, args, { env: opts.env ?? process.env, cwd: opts.cwd, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (t: string) => { stdout += t; });
    child.stderr.setEncoding('utf8').on('data', (t: string) => { stderr += t; });
    const timer = setTimeout(() => child.kill('SIGKILL'), opts.timeoutMs ?? 60_000);
    child.on('error', (err) => {
      clearTimeout(timer);
      resolve({ code: -1, signal: null, stdout, stderr: `${stderr}${err.message}` });
    });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, stdout, stderr });
    });
  });
}
