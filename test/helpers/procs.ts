/**
 * Process and port helpers for the tests that run real programs (end to end, deployment): every
 * child gets its own process group and a log file, every wait is bounded, and stopping escalates
 * to SIGKILL of that group only.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, openSync, closeSync, readFileSync } from 'node:fs';
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
  name: string;
  child: ChildProcess;
  log: string;
  /** Resolves when the process has exited (code or signal). */
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  /** Set once it exited. */
  exit: { code: number | null; signal: NodeJS.Signals | null } | null;
}

/** Starts a process in its own group, stdout and stderr appended to `log`. */
export function start(name: string, cmd: string, args: string[], log: string, env?: NodeJS.ProcessEnv, cwd?: string): Proc {
  const fd = openSync(log, 'a');
  let child: ChildProcess;
  try {
    child = spawn(cmd, args, { stdio: ['ignore', fd, fd], detached: true, env: env ?? process.env, cwd });
  } finally {
    closeSync(fd);
  }
  const p: Proc = { name, child, log, exit: null, exited: Promise.resolve({ code: null, signal: null }) };
  p.exited = new Promise((resolve) => {
    child.once('error', (err) => {
      p.exit = { code: -1, signal: null };
      resolve(p.exit);
      void err;
    });
    child.once('exit', (code, signal) => {
      p.exit = { code, signal };
      resolve(p.exit);
    });
  });
  return p;
}

/** The last lines of a process' log, for failure messages. */
export function tail(p: Proc | null, lines = 15): string {
  return p ? tailFile(p.name, p.log, lines) : '';
}

/** The last lines of a file, headed by its name; '' when it is missing or empty. */
export function tailFile(name: string, path: string, lines = 15): string {
  let text = '';
  try { text = readFileSync(path, 'utf8').trimEnd(); } catch { /* missing */ }
  return text ? `----- ${name} (${path}) -----\n${text.split('\n').slice(-lines).join('\n')}` : '';
}

/**
 * Sends `signal` to the process and waits up to `timeoutMs` for it to exit; then SIGKILLs its
 * process group (only the group we created for it). Returns how it exited and whether it had to
 * be killed.
 */
export async function stop(p: Proc | null, signal: NodeJS.Signals, timeoutMs: number): Promise<{ code: number | null; signal: NodeJS.Signals | null; killed: boolean }> {
  if (!p) return { code: null, signal: null, killed: false };
  const pid = p.child.pid;
  if (p.exit === null && pid !== undefined) {
    try { process.kill(pid, signal); } catch { /* already gone */ }
    const timer = sleep(timeoutMs).then(() => 'timeout' as const);
    if ((await Promise.race([p.exited, timer])) === 'timeout') {
      try { process.kill(-pid, 'SIGKILL'); } catch { /* already gone */ }
      const e = await p.exited;
      return { ...e, killed: true };
    }
  }
  // The leader exited: make sure nothing of its group is left behind (Apache workers, tcpdump).
  if (pid !== undefined) {
    try { process.kill(-pid, 'SIGKILL'); } catch { /* no such group: all gone */ }
  }
  const e = await p.exited;
  return { ...e, killed: false };
}

/** Polls `probe` every `intervalMs` until it returns a non-null value; throws after `timeoutMs`. */
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
    if (Date.now() > deadline) {
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${lastErr ? ` (last error: ${(lastErr as Error).message})` : ''}`);
    }
    await sleep(intervalMs);
  }
}

/** True when nothing accepts connections on host:port. */
export function portFree(host: string, port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.connect({ host, port });
    s.setTimeout(500);
    s.once('connect', () => { s.destroy(); resolve(false); });
    s.once('timeout', () => { s.destroy(); resolve(false); });
    s.once('error', () => resolve(true));
  });
}

/** A port the OS says is free now on 127.0.0.1 (from the ephemeral range, away from fixed test ports). */
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

/** GET on loopback (one connection, closed after): status and body, or null if nothing answered. */
export function httpGet(url: string, timeoutMs = 1000): Promise<{ status: number; body: string } | null> {
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

/** Runs a command to its end (killed after `timeoutMs`): exit status and output. */
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
