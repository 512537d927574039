/**
 * A daemon (the built CLI) replaying capture files on 127.0.0.1 port 0, for tests that look at
 * what it serves once the files are read: its base URL, its log, and a stop that expects exit 0.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { waitFor } from './procs.js';

export interface ReplayDaemon {
  base: string;
  child: ChildProcess;
  /** Its stderr so far (JSON log lines). */
  stderr: () => string;
  /** The JSON log lines' messages so far. */
  messages: () => string[];
  /** SIGTERM, and the exit code. */
  stop: () => Promise<number | null>;
}

/** Starts `main` with `args` (which give the --pcap files) and waits until every file was read. */
export async function replayDaemon(main: string, args: string[], opts: { cwd: string; env: NodeJS.ProcessEnv; timeoutMs?: number }): Promise<ReplayDaemon> {
  const child = spawn(process.execPath, [main, ...args, '--web.listen-address', '127.0.0.1:0'], { cwd: opts.cwd, env: opts.env, stdio: ['ignore', 'ignore', 'pipe'] });
  let err = '';
  child.stderr!.on('data', (d: Buffer) => { err += d.toString('utf8'); });
  const killer = setTimeout(() => child.kill('SIGKILL'), opts.timeoutMs ?? 60_000);
  const exited = new Promise<number | null>((resolve) => child.on('close', (code) => { clearTimeout(killer); resolve(code); }));
  const messages = (): string[] => err.split('\n').filter((l) => l.startsWith('{')).map((l) => (JSON.parse(l) as { msg: string }).msg);
  const stop = async (): Promise<number | null> => {
    child.kill('SIGTERM');
    return exited;
  };
  try {
    const base = await waitFor(`the daemon to listen (${err})`, 10_000, () => /listening on (http:\/\/[^\s"/]+)/.exec(err)?.[1] ?? null);
    await waitFor(`the capture to be read (${err})`, 15_000, () => messages().some((m) => m.includes('its metrics stay served')) || null);
    return { base, child, stderr: () => err, messages, stop };
  } catch (e) {
    await stop();
    throw e;
  }
}
