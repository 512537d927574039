/**
 * Live capture: tcpdump writing pcap to a pipe, read by the same reader as files.
 *
 * tcpdump's mode is chosen by measurement (`npm run bench:live`, bench/README.md): `-s 0 -B
 * 131072 -U`, without --immediate-mode.
 *  - Not immediate mode: there libpcap uses a ring of fixed frames as large as the snapshot
 *    length (256 KiB on `any`), so 32 MiB held 128 packets; with nginx under `ab -k -c 4` on
 *    loopback the daemon counted 17,358 of 20,000 requests, and even tcpdump alone dropped.
 *    Without it, TPACKET_V3 packs packets at their own size into blocks, handed over when full
 *    or after libpcap's 1 s timeout: up to about a second of delivery latency (measured 0.5 to
 *    0.85 s for a lone request on an idle link), nothing for a 15 s scrape interval.
 *  - `-U`: each packet is written to the pipe as it is read from a block. Without it a request on
 *    a quiet link waited in tcpdump's stdio buffer until later traffic pushed it out (over 3 s).
 *  - 128 MiB (`--capture.buffer-kib`): -U costs tcpdump a write per packet, and the ring must
 *    cover the moments tcpdump is not scheduled. At 32 MiB the daemon lost 6-20% from 200,000
 *    packets/s up; at 128 MiB nothing, up to 345,000 packets/s (what tcpreplay reached on 2
 *    cores), on `any` and on a named interface, the same rates tcpdump alone kept up with.
 * The reader never makes tcpdump wait: sampled 100 times a second, tcpdump was never blocked
 * in pipe_write. When tcpdump stops, the block in progress is lost (up to a second of traffic).
 *
 * Its drop counts, the only drop accounting a pipe has, are read from its stderr: asked for with
 * SIGUSR1 while it runs, and printed when it exits. When tcpdump dies it is restarted with
 * exponential backoff and the restarts are counted.
 *
 * Supervision:
 *  - a tcpdump that neither writes packets nor answers SIGUSR1 (stopped with SIGSTOP, hung) for
 *    `stallAfterMs` is marked down, killed with SIGKILL and restarted like a dead one, and the
 *    stall is counted. An idle network writes no packets but tcpdump still prints its stats line
 *    on SIGUSR1, so the answer to SIGUSR1 is the liveness signal, and an idle capture stays up.
 *  - tcpdump runs under `setpriv --pdeathsig KILL` (util-linux), so it dies with the daemon even
 *    when the daemon is SIGKILLed. The kernel clears a parent-death signal when the process'
 *    credentials change (commit_creds: another euid, or capabilities gained at exec). So as root
 *    tcpdump runs with `-Z root`: its own switch to the `tcpdump` user would clear it (measured:
 *    a SIGKILLed parent left it running). With tcpdump holding a file capability (the container
 *    image, an unprivileged daemon) the exec itself clears it; there the container's PID
 *    namespace or the systemd cgroup ends tcpdump, and otherwise tcpdump exits at its next packet
 *    (EPIPE on the closed pipe). Without setpriv it runs plainly, and that is logged once.
 */
import { spawn, type ChildProcessByStdio } from 'node:child_process';
import { accessSync, constants as fsConstants } from 'node:fs';
import { delimiter, join } from 'node:path';
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
  /** How often tcpdump is asked for its statistics (SIGUSR1), ms. Default 5000. */
  statsIntervalMs?: number;
  /**
   * A running tcpdump silent this long (no packet written, no stderr output such as the answer
   * to SIGUSR1) is stalled: marked down, killed and restarted. Checked at every stats interval,
   * so it is seen between this and this plus one interval after its last sign of life.
   * Default 3 stats intervals (15 s).
   */
  stallAfterMs?: number;
  /**
   * setpriv binary used to give tcpdump a parent-death signal; null: run tcpdump directly.
   * Default: `setpriv` found on PATH or in /usr/bin, /bin.
   */
  setpriv?: string | null;
  /** After SIGINT, how long stop() waits for tcpdump to flush and exit before SIGKILL, ms. Default 2000. */
  stopTimeoutMs?: number;
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
/** Unanswered stats intervals before a tcpdump is declared stalled. */
const STALL_INTERVALS = 3;
/** tcpdump flushes and exits within milliseconds of SIGINT; the daemon's stop must fit in 5 s. */
const STOP_TIMEOUT_MS = 2000;

/** One tcpdump process and what it has shown of itself. */
interface Run {
  child: ChildProcessByStdio<null, Readable, Readable>;
  started: boolean;
  startedAt: number;
  /** Date.now() of the last packet output or stderr output. */
  lastSign: number;
  /** Packet data arrived since the last stats tick (cheaper than a clock read per chunk). */
  output: boolean;
  /** Why it was killed as stalled, or null. */
  stalled: string | null;
}

let setprivOnPath: string | null | undefined;
/** setpriv on PATH (or in /usr/bin, /bin, where util-linux puts it), looked up once. */
export function findSetpriv(): string | null {
  if (setprivOnPath !== undefined) return setprivOnPath;
  const dirs = [...(process.env.PATH ?? '').split(delimiter).filter(Boolean), '/usr/bin', '/bin'];
  setprivOnPath = null;
  for (const d of dirs) {
    try {
      accessSync(join(d, 'setpriv'), fsConstants.X_OK);
      setprivOnPath = join(d, 'setpriv');
      break;
    } catch { /* not there */ }
  }
  return setprivOnPath;
}

export function bpfFilter(ports: number[]): string {
  return ports.length === 0 ? 'tcp' : `tcp and (${ports.map((p) => `port ${p}`).join(' or ')})`;
}

export class LiveCapture {
  up = false;
  restarts = 0;
  kernelDrops = 0;
  interfaceDrops = 0;
  /** tcpdumps killed because they stalled (each is also a restart). */
  stalls = 0;
  private dropsBefore = { kernel: 0, iface: 0 };
  private child: ChildProcessByStdio<null, Readable, Readable> | null = null;
  private current: Run | null = null;
  private warnedNoSetpriv = false;
  private warnedDrops = false;
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

  private get statsIntervalMs(): number {
    return this.opts.statsIntervalMs ?? STATS_INTERVAL_MS;
  }

  private get stallAfterMs(): number {
    return this.opts.stallAfterMs ?? STALL_INTERVALS * this.statsIntervalMs;
  }

  /** tcpdump's own arguments (what the "capturing on" line shows). */
  args(): string[] {
    return ['-i', this.opts.interface, '-n', '-s', '0', '-B', String(this.opts.bufferKiB), '-U', '-w', '-', bpfFilter(this.opts.ports)];
  }

  /** The program spawned and its arguments: tcpdump, under setpriv when there is one. */
  command(): { file: string; argv: string[] } {
    const setpriv = this.opts.setpriv === undefined ? findSetpriv() : this.opts.setpriv;
    if (!setpriv) {
      if (!this.warnedNoSetpriv) {
        this.warnedNoSetpriv = true;
        this.log.warn('setpriv (util-linux) not found: tcpdump runs without a parent-death signal and may outlive a SIGKILLed daemon');
      }
      return { file: this.opts.tcpdump, argv: this.args() };
    }
    // As root, tcpdump would switch to its own user after opening the device, and that uid
    // change clears the parent-death signal: -Z root keeps it (see the module comment).
    const keepUser = process.getuid?.() === 0 ? ['-Z', 'root'] : [];
    return { file: setpriv, argv: ['--pdeathsig', 'KILL', '--', this.opts.tcpdump, ...keepUser, ...this.args()] };
  }

  /** Starts tcpdump; rejects with CaptureStartError when it cannot capture at all. */
  async start(): Promise<void> {
    await this.run(true);
  }

  private run(first: boolean): Promise<void> {
    return new Promise((resolve, reject) => {
      let stderr = '';
      let child: ChildProcessByStdio<null, Readable, Readable>;
      const { file, argv } = this.command();
      try {
        child = spawn(file, argv, { stdio: ['ignore', 'pipe', 'pipe'] });
      } catch (err) {
        // Some exec failures throw instead of emitting 'error'. EPERM: tcpdump has a file
        // capability (cap_net_raw=eip, as in the container image) that this process' bounding
        // set lacks, so the kernel refuses to execute it.
        const e = err as NodeJS.ErrnoException;
        const msg = e.code === 'EPERM' ? this.epermMessage() : `cannot run ${this.opts.tcpdump}: ${e.message}`;
        if (first) reject(new CaptureStartError(msg));
        else this.scheduleRestart(msg);
        return;
      }
      const now = Date.now();
      const run: Run = { child, started: false, startedAt: now, lastSign: now, output: false, stalled: null };
      this.child = child;
      this.current = run;
      child.on('error', (err: NodeJS.ErrnoException) => {
        const msg = err.code === 'ENOENT' ? this.notFoundMessage() : `cannot run ${this.opts.tcpdump}: ${err.message}`;
        if (!run.started) reject(new CaptureStartError(msg));
      });
      child.stderr.setEncoding('utf8');
      child.stderr.on('data', (text: string) => {
        run.lastSign = Date.now();
        stderr = (stderr + text).slice(-8192);
        this.parseStats(stderr);
        if (!run.started && /listening on/.test(stderr)) {
          run.started = true;
          this.up = true;
          this.log.info(`capturing on ${this.opts.interface}: tcpdump ${this.args().join(' ')}`);
          resolve();
        }
      });
      const reading = readCaptureStream(child.stdout, this.sink, { name: 'tcpdump', onProgress: () => { run.output = true; } }).catch(() => undefined);
      this.exited = new Promise((done) => {
        child.on('close', (code, signal) => {
          void reading.then(() => {
            this.parseStats(stderr);
            this.up = false;
            this.child = null;
            if (this.current === run) this.current = null;
            this.dropsBefore = { kernel: this.kernelDrops, iface: this.interfaceDrops };
            if (!run.started) {
              const problem = this.explainFailure(stderr);
              if (first) reject(new CaptureStartError(problem));
              else this.scheduleRestart(`tcpdump failed to start again: ${problem}`);
            } else if (!this.stopping) {
              if (Date.now() - run.startedAt > HEALTHY_RUN_MS) this.backoff = BACKOFF_MIN_MS;
              this.scheduleRestart(run.stalled ?? `tcpdump exited (${signal ?? `code ${code}`}): ${lastLine(stderr)}`);
            }
            done();
          });
        });
      });
      if (!this.statsTimer) {
        this.statsTimer = setInterval(() => this.tick(), this.statsIntervalMs);
        this.statsTimer.unref();
      }
    });
  }

  /**
   * Every stats interval: a running tcpdump that showed no sign of life for stallAfterMs is
   * killed as stalled; otherwise it is asked for its statistics (its answer is a sign of life).
   * Only a started run is signalled: before it execs tcpdump, setpriv would die of SIGUSR1.
   */
  private tick(): void {
    const run = this.current;
    if (!run || !run.started || run.stalled !== null || this.stopping) return;
    const now = Date.now();
    if (run.output) {
      run.output = false;
      run.lastSign = now;
    }
    const silent = now - run.lastSign;
    if (silent >= this.stallAfterMs) {
      run.stalled = `tcpdump (pid ${run.child.pid}) stalled: no packets and no answer to SIGUSR1 for ${(silent / 1000).toFixed(1)} s (stopped or hung); killed it with SIGKILL`;
      this.up = false;
      this.stalls++;
      run.child.kill('SIGKILL');
      return;
    }
    run.child.kill('SIGUSR1');
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
    if (this.kernelDrops > 0 && !this.warnedDrops) {
      // Once per process: the counter (keepalive_capture_dropped_packets_total) tells the rest.
      this.warnedDrops = true;
      this.log.warn(`tcpdump on ${this.opts.interface} reports ${this.kernelDrops} packets dropped by the kernel: its ring (--capture.buffer-kib ${this.opts.bufferKiB}) filled faster than tcpdump read it, so requests and close reasons are missing; raise --capture.buffer-kib, narrow --ports, or give the daemon more CPU (keepalive_capture_dropped_packets_total counts them)`);
    }
  }

  private epermMessage(): string {
    return `cannot run ${this.opts.tcpdump}: EPERM: its file capabilities need CAP_NET_RAW, which this process may not have: grant it (docker run --cap-add NET_RAW; Kubernetes capabilities.add: [NET_RAW]), or use --proxy or --pcap`;
  }

  private notFoundMessage(): string {
    return `tcpdump not found (${this.opts.tcpdump}): install it (Debian/Ubuntu: apt-get install tcpdump) or name it with --tcpdump PATH`;
  }

  /** One line that says what is wrong and how to fix it. */
  private explainFailure(stderr: string): string {
    // setpriv reports the exec of tcpdump failing (status 126 or 127) as a direct spawn would.
    const exec = /setpriv: failed to execute .*: (.*)$/m.exec(stderr);
    if (exec) {
      if (/not permitted/i.test(exec[1])) return this.epermMessage();
      if (/no such file/i.test(exec[1])) return this.notFoundMessage();
      return `cannot run ${this.opts.tcpdump}: ${exec[1].trim()}`;
    }
    if (/permission|not permitted/i.test(stderr)) {
      return `tcpdump may not capture on ${this.opts.interface}: run as root, or give tcpdump the capture capabilities (setcap cap_net_raw=eip $(command -v tcpdump)), or use --pcap FILE`;
    }
    if (/no such device|doesn't exist|not found/i.test(stderr)) {
      return `no capture interface "${this.opts.interface}": list them with 'tcpdump -D' or 'ip link', or use --interface any`;
    }
    return `tcpdump could not start: ${lastLine(stderr)}`;
  }

  /** Stops tcpdump with SIGINT (it flushes what it has) and waits for the pipe to drain. */
  async stop(): Promise<void> {
    this.stopping = true;
    if (this.statsTimer) clearInterval(this.statsTimer);
    if (this.restartTimer) clearTimeout(this.restartTimer);
    const child = this.child;
    if (child) {
      // A stopped tcpdump would hold SIGINT until SIGCONT: a stalled one is killed at once.
      if (this.current?.stalled) child.kill('SIGKILL');
      else child.kill('SIGINT');
      const timer = setTimeout(() => child.kill('SIGKILL'), this.opts.stopTimeoutMs ?? STOP_TIMEOUT_MS);
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
