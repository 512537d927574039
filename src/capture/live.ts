/**
 * Live capture: tcpdump writing pcap to a pipe, read by the same reader as files.
 *
 * tcpdump runs with --immediate-mode and -U so each packet reaches the pipe at once (without
 * them it hands packets over in blocks and loses the block in progress when stopped: shared
 * reference section 7). Its drop counts, the only drop accounting a pipe has, are read from
 * its stderr: asked for with SIGUSR1 while it runs, and printed when it exits. When tcpdump
 * dies it is restarted with exponential backoff and the restarts are counted.
 */
import { spawn, type ChildProcessByStdio } from 'node:child_process';
import type { Readable } from 'node:stream';
import { readCaptureStream } from './file.js';
import type { PacketSink } from './reader.js';

export interface LiveCaptureOptions {
  interface: string;
  ports: number[];
  /** tcpdump binary (name on PATH or a path). */
  tcpdump: string;
  /** Kernel capture buffer, KiB (tcpdump -B). */
  bufferKiB: number;
}

/** A start that cannot succeed by retrying: tcpdump missing, no permission, no such interface. */
export class CaptureStartError extends Error {}

export interface LiveLog {
  info(msg: string): void;
  warn(msg: string): void;
}

const BACKOFF_MIN_MS = 1000;
const BACKOFF_MAX_MS = 30_000;
/** A tcpdump that ran this long before dying starts the backoff over. */
const HEALTHY_RUN_MS = 60_000;
const STATS_INTERVAL_MS = 5000;

export function bpfFilter(ports: number[]): string {
  return ports.length === 0 ? 'tcp' : `tcp and (${ports.map((p) => `port ${p}`).join(' or ')})`;
}

export class LiveCapture {
  up = false;
  restarts = 0;
  kernelDrops = 0;
  interfaceDrops = 0;
  private dropsBefore = { kernel: 0, iface: 0 };
  private child: ChildProcessByStdio<null, Readable, Readable> | null = null;
  private stopping = false;
  private backoff = BACKOFF_MIN_MS;
  private statsTimer: NodeJS.Timeout | null = null;
  private restartTimer: NodeJS.Timeout | null = null;
  private exited: Promise<void> = Promise.resolve();

  constructor(
    private readonly opts: LiveCaptureOptions,
    /** Called for every tcpdump run: each run writes a new pcap stream (new file header). */
    private readonly sink: PacketSink,
    private readonly log: LiveLog,
  ) {}

  args(): string[] {
    return ['-i', this.opts.interface, '-n', '-s', '0', '-B', String(this.opts.bufferKiB), '--immediate-mode', '-U', '-w', '-', bpfFilter(this.opts.ports)];
  }

  /** Starts tcpdump; rejects with CaptureStartError when it cannot capture at all. */
  async start(): Promise<void> {
    await this.run(true);
  }

  private run(first: boolean): Promise<void> {
    return new Promise((resolve, reject) => {
      let started = false;
      let stderr = '';
      let child: ChildProcessByStdio<null, Readable, Readable>;
      try {
        child = spawn(this.opts.tcpdump, this.args(), { stdio: ['ignore', 'pipe', 'pipe'] });
      } catch (err) {
        // Some exec failures throw instead of emitting 'error'. EPERM: tcpdump has a file
        // capability (cap_net_raw=eip, as in the container image) that this process' bounding
        // set lacks, so the kernel refuses to execute it.
        const e = err as NodeJS.ErrnoException;
        const msg = e.code === 'EPERM'
          ? `cannot run ${this.opts.tcpdump}: EPERM: its file capabilities need CAP_NET_RAW, which this process may not have: grant it (docker run --cap-add NET_RAW; Kubernetes capabilities.add: [NET_RAW]), or use --proxy or --pcap`
          : `cannot run ${this.opts.tcpdump}: ${e.message}`;
        if (first) reject(new CaptureStartError(msg));
        else this.scheduleRestart(msg);
        return;
      }
      this.child = child;
      const startedAt = Date.now();
      child.on('error', (err: NodeJS.ErrnoException) => {
        const msg = err.code === 'ENOENT'
          ? `tcpdump not found (${this.opts.tcpdump}): install it (Debian/Ubuntu: apt-get install tcpdump) or name it with --tcpdump PATH`
          : `cannot run ${this.opts.tcpdump}: ${err.message}`;
        if (!started) reject(new CaptureStartError(msg));
      });
      child.stderr.setEncoding('utf8');
      child.stderr.on('data', (text: string) => {
        stderr = (stderr + text).slice(-8192);
        this.parseStats(stderr);
        if (!started && /listening on/.test(stderr)) {
          started = true;
          this.up = true;
          this.log.info(`capturing on ${this.opts.interface}: tcpdump ${this.args().join(' ')}`);
          resolve();
        }
      });
      const reading = readCaptureStream(child.stdout, this.sink, { name: 'tcpdump' }).catch(() => undefined);
      this.exited = new Promise((done) => {
        child.on('close', (code, signal) => {
          void reading.then(() => {
            this.parseStats(stderr);
            this.up = false;
            this.child = null;
            this.dropsBefore = { kernel: this.kernelDrops, iface: this.interfaceDrops };
            if (!started) {
              const problem = explainFailure(stderr, this.opts);
              if (first) reject(new CaptureStartError(problem));
              else this.scheduleRestart(`tcpdump failed to start again: ${problem}`);
            } else if (!this.stopping) {
              if (Date.now() - startedAt > HEALTHY_RUN_MS) this.backoff = BACKOFF_MIN_MS;
              this.scheduleRestart(`tcpdump exited (${signal ?? `code ${code}`}): ${lastLine(stderr)}`);
            }
            done();
          });
        });
      });
      if (!this.statsTimer) {
        this.statsTimer = setInterval(() => this.child?.kill('SIGUSR1'), STATS_INTERVAL_MS);
        this.statsTimer.unref();
      }
    });
  }

  private scheduleRestart(why: string): void {
    if (this.stopping) return;
    const wait = this.backoff;
    this.backoff = Math.min(BACKOFF_MAX_MS, this.backoff * 2);
    this.log.warn(`${why}; restarting in ${wait / 1000} s`);
    this.restartTimer = setTimeout(() => {
      this.restartTimer = null;
      if (this.stopping) return;
      this.restarts++;
      this.run(false).catch((e: Error) => this.log.warn(e.message));
    }, wait);
  }

  /** tcpdump prints cumulative counts for its own run; ours add up every run. */
  private parseStats(stderr: string): void {
    const k = [...stderr.matchAll(/(\d+) packets? dropped by kernel/g)].pop();
    const i = [...stderr.matchAll(/(\d+) packets? dropped by interface/g)].pop();
    if (k) this.kernelDrops = this.dropsBefore.kernel + Number(k[1]);
    if (i) this.interfaceDrops = this.dropsBefore.iface + Number(i[1]);
  }

  /** Stops tcpdump with SIGINT (it flushes what it has) and waits for the pipe to drain. */
  async stop(): Promise<void> {
    this.stopping = true;
    if (this.statsTimer) clearInterval(this.statsTimer);
    if (this.restartTimer) clearTimeout(this.restartTimer);
    const child = this.child;
    if (child) {
      child.kill('SIGINT');
      const timer = setTimeout(() => child.kill('SIGKILL'), 5000);
      await this.exited;
      clearTimeout(timer);
    }
    this.up = false;
  }
}

function lastLine(s: string): string {
  const lines = s.trim().split('\n').filter((l) => l.trim().length > 0);
  return lines.length ? lines[lines.length - 1].trim() : 'no message';
}

/** One line that says what is wrong and how to fix it. */
function explainFailure(stderr: string, opts: LiveCaptureOptions): string {
  if (/permission|not permitted/i.test(stderr)) {
    return `tcpdump may not capture on ${opts.interface}: run as root, or give tcpdump the capture capabilities (setcap cap_net_raw=eip $(command -v tcpdump)), or use --pcap FILE`;
  }
  if (/no such device|doesn't exist|not found/i.test(stderr)) {
    return `no capture interface "${opts.interface}": list them with 'tcpdump -D' or 'ip link', or use --interface any`;
  }
  return `tcpdump could not start: ${lastLine(stderr)}`;
}
