/**
 * Live capture: tcpdump writing pcap to a pipe.
 *
 *  - with the real tcpdump on `lo` (root only; skipped on a developer machine without it):
 *    packets of a local HTTP server reach the engine; tcpdump killed from outside is restarted
 *    and traffic keeps arriving; stop() ends it for good;
 *  - with a fake tcpdump (a shell script, no root needed): start errors explained in one line,
 *    drop counts read from its stderr and added up across restarts;
 *  - supervision: a tcpdump that stops answering (SIGSTOP) is marked down, killed and restarted,
 *    an idle one that still answers SIGUSR1 is not; tcpdump runs under setpriv --pdeathsig.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { spawnSync, type ChildProcess } from 'node:child_process';
import { chmodSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, request, Agent, type Server } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { LiveCapture, CaptureStartError, bpfFilter, findSetpriv, type LiveLog } from '../../src/capture/live.js';
import { Engine } from '../../src/conn/engine.js';
import type { ConnectionRecord } from '../../src/conn/records.js';

let dir = '';
beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'ka-live-'));
});
afterAll(() => {
  if (dir) rmSync(dir, { recursive: true, force: true });
});

function logger(): LiveLog & { lines: string[] } {
  const lines: string[] = [];
  return { lines, info: (m) => lines.push(`info: ${m}`), warn: (m) => lines.push(`warn: ${m}`) };
}

/** The tcpdump child of a capture (private: reached for the tests that kill it from outside). */
function child(c: LiveCapture): ChildProcess | null {
  return (c as unknown as { child: ChildProcess | null }).child;
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

async function waitFor(what: string, ms: number, cond: () => boolean): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

describe('bpfFilter', () => {
  it('is every TCP packet to or from the ports', () => {
    expect(bpfFilter([80])).toBe('tcp and (port 80)');
    expect(bpfFilter([80, 8080, 3000])).toBe('tcp and (port 80 or port 8080 or port 3000)');
  });
  it('is all of TCP without ports', () => {
    expect(bpfFilter([])).toBe('tcp');
  });
});

describe('tcpdump arguments', () => {
  it('block mode (no --immediate-mode), packet-buffered pcap on stdout, full packets, no name lookups, the kernel buffer', () => {
    const c = new LiveCapture({ interface: 'eth3', ports: [80, 8080], tcpdump: 'tcpdump', bufferKiB: 4096 }, new Engine(), logger());
    expect(c.args()).toEqual(['-i', 'eth3', '-n', '-s', '0', '-B', '4096', '-U', '-w', '-', 'tcp and (port 80 or port 8080)']);
  });
});

// ---------------------------------------------------------------------------------------------
// A fake tcpdump

/** pcap global header, little-endian, Ethernet: what `tcpdump -w -` writes first. */
const PCAP_HEADER = String.raw`\324\303\262\241\002\000\004\000\000\000\000\000\000\000\000\000\377\377\000\000\001\000\000\000`;

let fakes = 0;
function fakeTcpdump(body: string): string {
  const p = join(dir, `fake-tcpdump-${fakes++}`);
  writeFileSync(p, `#!/bin/sh\n${body}\n`);
  chmodSync(p, 0o755);
  return p;
}

describe('start errors (fake tcpdump)', () => {
  it('tcpdump missing: how to install it or name it', async () => {
    const c = new LiveCapture({ interface: 'any', ports: [80], tcpdump: join(dir, 'no-such-tcpdump'), bufferKiB: 1024 }, new Engine(), logger());
    const err = await c.start().then(() => null, (e: unknown) => e);
    expect(err).toBeInstanceOf(CaptureStartError);
    expect((err as Error).message).toContain('apt-get install tcpdump');
    expect((err as Error).message).toContain('--tcpdump');
    expect(c.up).toBe(false);
  });

  it('no such interface: names it and says how to list them', async () => {
    const tcpdump = fakeTcpdump('echo "tcpdump: eth9: No such device exists" >&2\necho "(SIOCGIFHWADDR: No such device)" >&2\nexit 1');
    const c = new LiveCapture({ interface: 'eth9', ports: [80], tcpdump, bufferKiB: 1024 }, new Engine(), logger());
    const err = await c.start().then(() => null, (e: unknown) => e);
    expect(err).toBeInstanceOf(CaptureStartError);
    expect((err as Error).message).toBe(`no capture interface "eth9": list them with 'tcpdump -D' or 'ip link', or use --interface any`);
  });

  it('no permission: root or the capabilities, or a file', async () => {
    const tcpdump = fakeTcpdump(`echo "tcpdump: any: You don't have permission to perform this capture on that device" >&2\necho "(socket: Operation not permitted)" >&2\nexit 1`);
    const c = new LiveCapture({ interface: 'any', ports: [80], tcpdump, bufferKiB: 1024 }, new Engine(), logger());
    const err = (await c.start().then(() => null, (e: unknown) => e)) as Error;
    expect(err).toBeInstanceOf(CaptureStartError);
    expect(err.message).toContain('setcap cap_net_raw=eip');
    expect(err.message).toContain('--pcap');
  });

  it('a spawn that throws instead of emitting an error (EPERM from file capabilities, a bad path): a start error, not a crash', async () => {
    // A NUL byte makes spawn throw synchronously, as EPERM does (test/deploy shows the real one).
    const c = new LiveCapture({ interface: 'any', ports: [80], tcpdump: 'tcp\0dump', bufferKiB: 1024 }, new Engine(), logger());
    const err = (await c.start().then(() => null, (e: unknown) => e)) as Error;
    expect(err).toBeInstanceOf(CaptureStartError);
    expect(err.message).toMatch(/^cannot run tcp\0dump: /);
    expect(c.up).toBe(false);
  });

  it('anything else: tcpdump\'s own last line', async () => {
    const tcpdump = fakeTcpdump('echo "tcpdump: can\'t parse filter expression: syntax error" >&2\nexit 1');
    const c = new LiveCapture({ interface: 'any', ports: [80], tcpdump, bufferKiB: 1024 }, new Engine(), logger());
    const err = (await c.start().then(() => null, (e: unknown) => e)) as Error;
    expect(err).toBeInstanceOf(CaptureStartError);
    expect(err.message).toBe(`tcpdump could not start: tcpdump: can't parse filter expression: syntax error`);
  });
});

describe('restarts and drop counts (fake tcpdump)', () => {
  it('a tcpdump that dies is restarted; drops of every run add up', async () => {
    const runs = join(dir, 'runs');
    // Run 1 dies after 0.3 s with its final statistics; run 2 runs until SIGINT, and prints its
    // statistics on SIGUSR1 and at exit, like tcpdump.
    const tcpdump = fakeTcpdump(`
n=$(cat ${runs} 2>/dev/null || echo 0); n=$((n+1)); echo $n > ${runs}
printf '${PCAP_HEADER}'
echo "tcpdump: listening on fake0, link-type EN10MB (Ethernet), snapshot length 262144 bytes" >&2
if [ "$n" = 1 ]; then
  sleep 0.3
  printf '10 packets captured\\n12 packets received by filter\\n3 packets dropped by kernel\\n1 packet dropped by interface\\n' >&2
  exit 1
fi
stats() { printf '5 packets captured\\n7 packets received by filter\\n2 packets dropped by kernel\\n0 packets dropped by interface\\n' >&2; }
trap stats USR1
trap 'stats; exit 0' INT TERM
while :; do sleep 1 >/dev/null 2>&1 & wait $!; done`);
    const log = logger();
    const c = new LiveCapture({ interface: 'fake0', ports: [80], tcpdump, bufferKiB: 1024 }, new Engine(), log);
    await c.start();
    try {
      expect(c.up).toBe(true);
      expect(c.restarts).toBe(0);
      const first = child(c)!.pid!;
      await waitFor('the first run to die', 5000, () => !c.up);
      expect(c.kernelDrops).toBe(3);
      expect(c.interfaceDrops).toBe(1);
      expect(log.lines.some((l) => /^warn: tcpdump exited \(code 1\).*restarting in 1 s$/.test(l)), log.lines.join('\n')).toBe(true);
      await waitFor('the restart', 5000, () => c.up);
      expect(c.restarts).toBe(1);
      expect(child(c)!.pid).not.toBe(first);
      // Counts of the new run add to the old ones.
      child(c)!.kill('SIGUSR1');
      await waitFor('the statistics of run 2', 5000, () => c.kernelDrops === 5);
      expect(c.interfaceDrops).toBe(1);
      // Drops are logged once, with what to change; the counter says the rest.
      const dropLines = log.lines.filter((l) => /dropped by the kernel/.test(l));
      expect(dropLines).toHaveLength(1);
      expect(dropLines[0]).toMatch(/^warn: tcpdump on fake0 reports 3 packets dropped by the kernel: .*raise --capture.buffer-kib/);
    } finally {
      await c.stop();
    }
    expect(c.up).toBe(false);
    expect(c.kernelDrops).toBe(5);
    expect(c.restarts).toBe(1);
  }, 20_000);

  it('stop() while waiting to restart: no restart happens', async () => {
    const tcpdump = fakeTcpdump(`printf '${PCAP_HEADER}'\necho "tcpdump: listening on fake0" >&2\nsleep 0.1\nexit 1`);
    const c = new LiveCapture({ interface: 'fake0', ports: [80], tcpdump, bufferKiB: 1024 }, new Engine(), logger());
    await c.start();
    await waitFor('tcpdump to die', 5000, () => !c.up && child(c) === null);
    await c.stop();
    await new Promise((r) => setTimeout(r, 1500));
    expect(c.restarts).toBe(0);
    expect(c.up).toBe(false);
    expect(child(c)).toBeNull();
  }, 10_000);
});

/** A fake tcpdump that captures nothing (an idle network) and answers SIGUSR1 with its stats, like tcpdump. */
function idleTcpdump(): string {
  return fakeTcpdump(`
printf '${PCAP_HEADER}'
echo "tcpdump: listening on fake0, link-type EN10MB (Ethernet), snapshot length 262144 bytes" >&2
stats() { printf '0 packets captured\\n0 packets received by filter\\n0 packets dropped by kernel\\n' >&2; }
trap stats USR1
trap 'stats; exit 0' INT TERM
while :; do sleep 1 >/dev/null 2>&1 & wait $!; done`);
}

/** State of a process from /proc (R, S, T for stopped, Z), or null when it is gone. */
function procState(pid: number): string | null {
  try {
    return /^\d+ \(.*\) (\S)/.exec(readFileSync(`/proc/${pid}/stat`, 'utf8'))?.[1] ?? null;
  } catch {
    return null;
  }
}

describe('supervision (fake tcpdump)', () => {
  // Short intervals so the tests take a second, not the defaults' 15 s.
  const fast = { statsIntervalMs: 100, stallAfterMs: 400 };

  it('a stopped tcpdump (SIGSTOP) is marked down, killed, counted as a stall and a restart, and a new run resumes', async () => {
    const log = logger();
    const c = new LiveCapture({ interface: 'fake0', ports: [80], tcpdump: idleTcpdump(), bufferKiB: 1024, ...fast }, new Engine(), log);
    await c.start();
    let first = 0;
    try {
      first = child(c)!.pid!;
      process.kill(first, 'SIGSTOP');
      await waitFor('the stopped tcpdump to be marked down', 5000, () => !c.up);
      expect(c.stalls).toBe(1);
      await waitFor('the restart', 5000, () => c.up);
      expect(c.restarts).toBe(1);
      expect(child(c)!.pid).not.toBe(first);
      // Killed, not left stopped: gone (or a zombie waiting for its reaper).
      await waitFor('the stalled tcpdump to be gone', 5000, () => procState(first) === null || procState(first) === 'Z');
      const stalled = log.lines.filter((l) => /stalled: no packets and no answer to SIGUSR1/.test(l));
      expect(stalled, log.lines.join('\n')).toHaveLength(1);
      expect(stalled[0]).toMatch(/^warn: tcpdump \(pid \d+\) stalled: .*killed it with SIGKILL; restarting in 1 s$/);
      // The new run answers: it stays up over several stall thresholds.
      await new Promise((r) => setTimeout(r, 1500));
      expect(c.up).toBe(true);
      expect(c.stalls).toBe(1);
    } finally {
      await c.stop();
      if (first && procState(first) === 'T') process.kill(first, 'SIGKILL');
    }
    expect(c.up).toBe(false);
  }, 20_000);

  it('an idle tcpdump that answers SIGUSR1 stays up (no packets is not a stall)', async () => {
    const c = new LiveCapture({ interface: 'fake0', ports: [80], tcpdump: idleTcpdump(), bufferKiB: 1024, ...fast }, new Engine(), logger());
    await c.start();
    try {
      const pid = child(c)!.pid!;
      // Five stall thresholds without a single packet.
      await new Promise((r) => setTimeout(r, 2000));
      expect(c.up).toBe(true);
      expect(c.stalls).toBe(0);
      expect(c.restarts).toBe(0);
      expect(child(c)!.pid).toBe(pid);
    } finally {
      await c.stop();
    }
  }, 10_000);

  it('stop() of a stalled (stopped) tcpdump does not wait for SIGINT to be heard', async () => {
    const c = new LiveCapture({ interface: 'fake0', ports: [80], tcpdump: idleTcpdump(), bufferKiB: 1024, statsIntervalMs: 100, stallAfterMs: 60_000, stopTimeoutMs: 300 }, new Engine(), logger());
    await c.start();
    const pid = child(c)!.pid!;
    process.kill(pid, 'SIGSTOP');
    // SIGINT is held by the stopped process; stop() escalates to SIGKILL after stopTimeoutMs.
    await c.stop();
    expect(child(c)).toBeNull();
    expect(procState(pid) === null || procState(pid) === 'Z').toBe(true);
  }, 10_000);
});

const setpriv = findSetpriv();

describe('the parent-death signal', () => {
  it.runIf(setpriv !== null)('tcpdump runs under setpriv --pdeathsig KILL; the log line still shows the tcpdump command', async () => {
    const log = logger();
    const c = new LiveCapture({ interface: 'fake0', ports: [80], tcpdump: idleTcpdump(), bufferKiB: 1024 }, new Engine(), log);
    const cmd = c.command();
    expect(cmd.file).toBe(setpriv);
    expect(cmd.argv.slice(0, 4)).toEqual(['--pdeathsig', 'KILL', '--', c['opts'].tcpdump]);
    expect(cmd.argv.slice(-c.args().length)).toEqual(c.args());
    await c.start();
    try {
      // setpriv exec'd the (fake) tcpdump in place: the daemon's child is tcpdump itself.
      const pid = child(c)!.pid!;
      expect(readFileSync(`/proc/${pid}/cmdline`, 'utf8')).toContain('fake-tcpdump');
      expect(readFileSync(`/proc/${pid}/cmdline`, 'utf8')).not.toContain('setpriv');
      expect(log.lines.filter((l) => l.startsWith('info: capturing on fake0: tcpdump -i fake0 '))).toHaveLength(1);
      expect(log.lines.some((l) => l.includes('setpriv'))).toBe(false);
    } finally {
      await c.stop();
    }
  });

  it('without setpriv: tcpdump runs directly, and that is logged once', async () => {
    const log = logger();
    const c = new LiveCapture({ interface: 'fake0', ports: [80], tcpdump: idleTcpdump(), bufferKiB: 1024, setpriv: null }, new Engine(), log);
    expect(c.command().argv).toEqual(c.args());
    await c.start();
    try {
      expect(c.up).toBe(true);
      expect(c.command().file).toBe(c['opts'].tcpdump);
      expect(log.lines.filter((l) => l.includes('setpriv'))).toEqual(['warn: setpriv (util-linux) not found: tcpdump runs without a parent-death signal and may outlive a SIGKILLed daemon']);
    } finally {
      await c.stop();
    }
  });

  it.runIf(setpriv !== null)('setpriv failing to execute tcpdump gives the same start errors as a direct spawn', async () => {
    const missing = new LiveCapture({ interface: 'any', ports: [80], tcpdump: join(dir, 'no-such-tcpdump'), bufferKiB: 1024 }, new Engine(), logger());
    const err = (await missing.start().then(() => null, (e: unknown) => e)) as Error;
    expect(err).toBeInstanceOf(CaptureStartError);
    expect(err.message).toBe(`tcpdump not found (${join(dir, 'no-such-tcpdump')}): install it (Debian/Ubuntu: apt-get install tcpdump) or name it with --tcpdump PATH`);
    // Not executable: EACCES, named as such.
    const notExec = join(dir, 'not-executable-tcpdump');
    writeFileSync(notExec, '#!/bin/sh\n', { mode: 0o644 });
    const c = new LiveCapture({ interface: 'any', ports: [80], tcpdump: notExec, bufferKiB: 1024 }, new Engine(), logger());
    const err2 = (await c.start().then(() => null, (e: unknown) => e)) as Error;
    expect(err2).toBeInstanceOf(CaptureStartError);
    expect(err2.message).toBe(`cannot run ${notExec}: Permission denied`);
  });
});

// ---------------------------------------------------------------------------------------------
// The real tcpdump

const canCapture = process.getuid?.() === 0 && spawnSync('tcpdump', ['--version']).status === 0;

describe.runIf(canCapture)('the real tcpdump on lo (root)', () => {
  let server: Server;
  let port = 0;
  const agent = new Agent({ keepAlive: true, maxSockets: 1 });

  beforeAll(async () => {
    server = createServer((req, res) => {
      req.resume();
      req.on('end', () => res.end('hello\n'));
    });
    server.keepAliveTimeout = 30_000;
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    port = (server.address() as { port: number }).port;
  });
  afterAll(async () => {
    agent.destroy();
    await new Promise((r) => server.close(r));
  });

  function get(path: string): Promise<void> {
    return new Promise((resolve, reject) => {
      const req = request({ host: '127.0.0.1', port, path, agent }, (res) => {
        res.resume();
        res.on('end', resolve);
      });
      req.on('error', reject);
      req.end();
    });
  }

  it('sees the requests, survives tcpdump being killed, and stops for good', async () => {
    const engine = new Engine({ ports: [port] });
    const opened: ConnectionRecord[] = [];
    let requests = 0;
    engine.subscribe({ opened: (c) => opened.push(c), request: () => { requests++; } });
    const log = logger();
    const c = new LiveCapture({ interface: 'lo', ports: [port], tcpdump: 'tcpdump', bufferKiB: 1024 }, engine, log);
    await c.start();
    let pid = 0;
    try {
      expect(c.up).toBe(true);
      expect(log.lines.some((l) => l.startsWith('info: capturing on lo: tcpdump -i lo'))).toBe(true);

      for (let i = 0; i < 3; i++) await get(`/a${i}`);
      await waitFor('3 requests in the engine', 10_000, () => requests >= 3);
      expect(requests).toBe(3);
      expect(opened).toHaveLength(1);
      expect(opened[0].server).toBe(`127.0.0.1:${port}`);
      expect(opened[0].requests).toBe(3);
      expect(opened[0].reusedRequests).toBe(2);

      // Killed from outside: restarted after the backoff (1 s), counted.
      const first = child(c)!.pid!;
      process.kill(first, 'SIGKILL');
      await waitFor('tcpdump to be seen dead', 5000, () => !c.up);
      await waitFor('the restart', 10_000, () => c.up);
      expect(c.restarts).toBe(1);
      pid = child(c)!.pid!;
      expect(pid).not.toBe(first);
      expect(alive(first)).toBe(false);
      expect(log.lines.some((l) => /^warn: tcpdump exited \(SIGKILL\)/.test(l)), log.lines.join('\n')).toBe(true);

      // Traffic after the restart arrives too: on the same connection, then a new one.
      await get('/after');
      await waitFor('the request after the restart', 10_000, () => requests >= 4);
      agent.destroy();
      await new Promise((r) => setTimeout(r, 100));
      await get('/new-connection');
      await waitFor('the new connection', 10_000, () => requests >= 5);
      expect(requests).toBe(5);
    } finally {
      await c.stop();
    }
    expect(c.up).toBe(false);
    expect(child(c)).toBeNull();
    expect(alive(pid)).toBe(false);
    expect(c.kernelDrops).toBeGreaterThanOrEqual(0);
    // Stopped for good: no restart comes later.
    await new Promise((r) => setTimeout(r, 1500));
    expect(c.restarts).toBe(1);
    expect(child(c)).toBeNull();
    engine.finish();
    expect(engine.stats().packets).toBeGreaterThan(10);
  }, 40_000);

  it('a SIGSTOPped tcpdump: down within the stall threshold, killed, restarted and counted; traffic after it arrives', async () => {
    const engine = new Engine({ ports: [port] });
    let requests = 0;
    engine.subscribe({ request: () => { requests++; } });
    const log = logger();
    const c = new LiveCapture({ interface: 'lo', ports: [port], tcpdump: 'tcpdump', bufferKiB: 1024, statsIntervalMs: 200, stallAfterMs: 1000 }, engine, log);
    await c.start();
    let first = 0;
    try {
      // Idle lo traffic for the port: tcpdump answers SIGUSR1, so it stays up.
      await new Promise((r) => setTimeout(r, 2500));
      expect(c.up).toBe(true);
      expect(c.stalls).toBe(0);
      await get('/before');
      await waitFor('the request before the stop', 10_000, () => requests >= 1);

      first = child(c)!.pid!;
      process.kill(first, 'SIGSTOP');
      await waitFor('the stopped tcpdump to be marked down', 10_000, () => !c.up);
      expect(c.stalls).toBe(1);
      await waitFor('the restart', 10_000, () => c.up);
      expect(log.lines.filter((l) => /stalled: no packets and no answer to SIGUSR1/.test(l)), log.lines.join('\n')).toHaveLength(1);
      expect(c.restarts).toBe(1);
      expect(child(c)!.pid).not.toBe(first);
      expect(procState(first) === null || procState(first) === 'Z').toBe(true);

      await get('/after');
      await waitFor('the request after the restart', 10_000, () => requests >= 2);
      expect(requests).toBe(2);
    } finally {
      await c.stop();
      if (first && procState(first) === 'T') process.kill(first, 'SIGKILL');
      agent.destroy();
    }
    expect(c.up).toBe(false);
    expect(c.stalls).toBe(1);
  }, 40_000);

  it('no such interface: CaptureStartError naming it', async () => {
    const c = new LiveCapture({ interface: 'nosuchif0', ports: [80], tcpdump: 'tcpdump', bufferKiB: 1024 }, new Engine(), logger());
    const err = (await c.start().then(() => null, (e: unknown) => e)) as Error;
    expect(err).toBeInstanceOf(CaptureStartError);
    expect(err.message).toContain('"nosuchif0"');
    expect(c.up).toBe(false);
  });
});
