/**
 * The Dockerfile, replayed without a Docker engine (none runs here or in CI):
 *
 *  - the build context is the repository's files (git ls-files) minus .dockerignore;
 *  - the build stage's instructions run in a temporary directory standing for its file system:
 *    COPY from the context, RUN commands verbatim (npm ci, the build, the prune), ENV, WORKDIR;
 *  - the runtime stage is assembled the way its COPY lines say (from the build stage and the
 *    context) in another directory; its RUN lines (apt-get) cannot run here and are only read;
 *  - that layout, with production dependencies only, must then work: the ENTRYPOINT with
 *    --help, the daemon on the committed capture, the HEALTHCHECK command against it;
 *  - and the privilege model (as root, which CI is): the runtime run as the image's USER, with
 *    tcpdump given the Dockerfile's setcap, under the capability sets docker-compose.yml, the
 *    Kubernetes DaemonSet and the systemd unit give it, must capture live on loopback; the
 *    settings that must not work (no NET_RAW, no_new_privs with file capabilities) must not.
 *
 * npm ci runs once (beforeAll) with npm_config_prefer_offline=true, so the local npm cache that
 * the repository's own npm ci filled serves it. KEEP_TMP=1 keeps the directories.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { chmodSync, copyFileSync, cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import http from 'node:http';
import { tmpdir } from 'node:os';
import { dirname, isAbsolute, join, posix } from 'node:path';
import { parse as parseYaml } from 'yaml';
import { parseProm, total } from '../helpers/prom.js';
import { DEFAULT_LISTEN, envName, OPTIONS } from '../../src/config/daemon.js';
import { commandForm, dockerignore, parseCopy, parseDockerfile, parseEnv, parseHealthcheck, splitWords, type Healthcheck, type Stage } from './support/dockerfile.js';
import { findTool, freePort, httpGet, run, start, stop, tail, waitFor, type Proc } from '../helpers/procs.js';

const ROOT = join(import.meta.dirname, '../..');
const read = (p: string): string => readFileSync(join(ROOT, p), 'utf8');
const pkg = JSON.parse(read('package.json')) as { dependencies: Record<string, string>; devDependencies: Record<string, string> };
const stages = parseDockerfile(read('Dockerfile'));
const buildStage = stages[0];
const runtimeStage = stages[stages.length - 1];
const ignored = dockerignore(read('.dockerignore'));

const args = (stage: Stage, keyword: string): string[] => stage.instructions.filter((i) => i.keyword === keyword).map((i) => i.args);
const last = (stage: Stage, keyword: string): string | null => args(stage, keyword).pop() ?? null;

/** The runtime stage's user and group ids: numeric, or created by useradd in its RUN lines. */
function runtimeIds(): { uid: number; gid: number } {
  const user = last(runtimeStage, 'USER');
  if (user === null) throw new Error('the runtime stage has no USER');
  const [u, g] = user.split(':');
  const runs = args(runtimeStage, 'RUN').join('\n');
  const idOf = (name: string, cmd: 'useradd' | 'groupadd'): number => {
    if (/^\d+$/.test(name)) return Number(name);
    const m = new RegExp(`${cmd}\\s[^&;|]*--(?:uid|gid)\\s+(\\d+)[^&;|]*\\s${name}(?:\\s|$)`).exec(runs);
    if (!m) throw new Error(`${cmd} of "${name}" with a fixed id not found in the runtime stage`);
    return Number(m[1]);
  };
  const uid = idOf(u, 'useradd');
  return { uid, gid: g === undefined ? uid : idOf(g, 'groupadd') };
}

/** What the runtime stage's RUN lines do with setcap: the capability text and the file. */
function runtimeSetcap(): { caps: string; file: string } {
  const m = /\bsetcap\s+(\S+)\s+(\/\S+)/.exec(args(runtimeStage, 'RUN').join('\n'));
  if (!m) throw new Error('no setcap in the runtime stage');
  return { caps: m[1], file: m[2] };
}

describe('Dockerfile: static properties', () => {
  it('is multi-stage, both stages on node:20-bookworm-slim pinned by tag, the runtime stage last', () => {
    expect(stages.length).toBeGreaterThanOrEqual(2);
    expect(buildStage.image).toBe('node:20-bookworm-slim');
    expect(buildStage.name).not.toBeNull();
    expect(runtimeStage.image).toBe('node:20-bookworm-slim');
    // The runtime stage takes only build outputs from the build stage, by name.
    const froms = args(runtimeStage, 'COPY').map(parseCopy).map((c) => c.from).filter((f) => f !== null);
    expect(froms.length).toBeGreaterThan(0);
    expect(new Set(froms)).toEqual(new Set([buildStage.name]));
  });

  it('runtime: a non-root USER created with a fixed id, EXPOSE of the default listen port, a HEALTHCHECK, the ENTRYPOINT', () => {
    const { uid, gid } = runtimeIds();
    expect(uid).toBeGreaterThan(0);
    expect(gid).toBeGreaterThan(0);
    const port = DEFAULT_LISTEN.split(':').pop();
    expect(port).toBe('10842');
    expect(args(runtimeStage, 'EXPOSE').flatMap((a) => a.split(/\s+/)).map((p) => p.replace(/\/tcp$/, ''))).toEqual([port]);
    const hc = parseHealthcheck(last(runtimeStage, 'HEALTHCHECK') ?? 'NONE');
    expect(hc).not.toBeNull();
    expect(hc!.options).toMatchObject({ interval: expect.any(String), timeout: expect.any(String) });
    expect(commandForm(last(runtimeStage, 'ENTRYPOINT') ?? '')).toEqual({ exec: ['node', '/app/dist/cli/main.js'] });
    // Its listen address comes from the variable the health check reads, defaulting to the daemon's default.
    const env = Object.assign({}, ...args(runtimeStage, 'ENV').map(parseEnv)) as Record<string, string>;
    expect(env[envName('web.listen-address')]).toBe(DEFAULT_LISTEN);
    expect(env.NODE_ENV).toBe('production');
  });

  it('runtime: installs tcpdump without recommends, cleans the apt lists, gives tcpdump CAP_NET_RAW and nothing else', () => {
    const runs = args(runtimeStage, 'RUN').join('\n');
    expect(runs).toMatch(/apt-get install -y --no-install-recommends [^&;]*\btcpdump\b/);
    expect(runs).toMatch(/rm -rf \/var\/lib\/apt\/lists\/\*/);
    const { caps, file } = runtimeSetcap();
    expect(caps).toBe('cap_net_raw=eip');
    expect(file).toBe('/usr/bin/tcpdump');
    // Where Debian 12's tcpdump package puts the binary (the image's base is Debian 12 too).
    const dpkg = spawnSync('dpkg', ['-L', 'tcpdump'], { encoding: 'utf8' });
    if (dpkg.status === 0) expect(dpkg.stdout.split('\n')).toContain(file);
    // setcap comes from libcap2-bin, installed for that and purged in the same layer.
    expect(runs).toMatch(/apt-get purge -y --auto-remove libcap2-bin/);
  });

  it('build: the package manifest and lock are copied before npm ci, sources after (dependency layer cache)', () => {
    const seq = buildStage.instructions.map((i) => `${i.keyword} ${i.args}`);
    const ci = seq.findIndex((s) => /^RUN npm ci\b/.test(s));
    const lock = seq.findIndex((s) => /^COPY .*package-lock\.json/.test(s));
    const src = seq.findIndex((s) => /^COPY src\b/.test(s));
    expect(lock).toBeGreaterThanOrEqual(0);
    expect(ci).toBeGreaterThan(lock);
    expect(src).toBeGreaterThan(ci);
  });

  it('.dockerignore keeps the context to what the Dockerfile copies', () => {
    for (const p of ['node_modules/fastify/package.json', 'dist/cli/main.js', '.git/HEAD', 'test/fixtures/real/real-servers.pcap', 'bench/out/x', 'dashboards/keepalive-reuse.json', 'README.md']) {
      expect(ignored(p), p).toBe(true);
    }
    for (const p of ['package.json', 'package-lock.json', 'tsconfig.json', 'tsconfig.build.json', 'src/cli/main.ts', 'deploy/docker/healthcheck.mjs']) {
      expect(ignored(p), p).toBe(false);
    }
  });
});

// ---------------------------------------------------------------- the replay

interface Image {
  /** Directory standing for the runtime stage's file system root. */
  root: string;
  env: Record<string, string>;
  workdir: string;
  healthcheck: Healthcheck;
  entrypoint: string[];
}

const isRoot = process.getuid?.() === 0;
const KEEP = process.env.KEEP_TMP === '1';
let work = '';
let image: Image;

/**
 * A clean environment like a docker build's: no npm_* or KEEPALIVE_EXPORTER_* from the caller,
 * no NODE_ENV; only where npm finds packages (its cache, its registry) is kept.
 */
function cleanEnv(extra: Record<string, string>): NodeJS.ProcessEnv {
  const keep = Object.fromEntries(['npm_config_cache', 'npm_config_registry'].flatMap((k) => (process.env[k] ? [[k, process.env[k]!]] : [])));
  return { PATH: process.env.PATH ?? '/usr/local/bin:/usr/bin:/bin', HOME: process.env.HOME ?? tmpdir(), ...keep, ...extra };
}

/** Files under dir (relative to the repository), without .git and installed or built trees. */
function walkRepo(dir = ''): string[] {
  return readdirSync(join(ROOT, dir), { withFileTypes: true }).flatMap((e) => {
    const p = dir ? `${dir}/${e.name}` : e.name;
    if (e.isDirectory()) return ['.git', 'node_modules', 'dist'].includes(p) ? [] : walkRepo(p);
    return e.isFile() ? [p] : [];
  });
}

/**
 * The repository's files as a clean clone has them (plus uncommitted new files), minus
 * .dockerignore. Without git (or where git refuses the directory), the files on disk.
 */
function buildContext(dir: string): string[] {
  const r = spawnSync('git', ['ls-files', '-z', '--cached', '--others', '--exclude-standard'], { cwd: ROOT, encoding: 'utf8' });
  const listed = r.status === 0 ? r.stdout.split('\0') : walkRepo();
  const files = listed.filter((p) => p !== '' && existsSync(join(ROOT, p)) && !ignored(p));
  for (const f of files) {
    mkdirSync(dirname(join(dir, f)), { recursive: true });
    copyFileSync(join(ROOT, f), join(dir, f));
    chmodSync(join(dir, f), statSync(join(ROOT, f)).mode & 0o777);
  }
  return files;
}

/** COPY as Docker does it: a directory's contents, a file into a directory (dest ending in /) or to a path. */
function dockerCopy(from: string, sources: string[], destHost: string, destIsDir: boolean): void {
  for (const s of sources) {
    if (/[*?[]/.test(s)) throw new Error(`COPY with a wildcard is not replayed: ${s}`);
    const src = join(from, s);
    if (!existsSync(src)) throw new Error(`COPY source ${s} is not in ${from} (excluded by .dockerignore, or not built)`);
    if (statSync(src).isDirectory()) {
      mkdirSync(destHost, { recursive: true });
      cpSync(src, destHost, { recursive: true, verbatimSymlinks: true });
    } else {
      const target = destIsDir ? join(destHost, posix.basename(s)) : destHost;
      mkdirSync(dirname(target), { recursive: true });
      cpSync(src, target);
    }
  }
}

/** Replays one stage into `root`. RUN lines run only when `execute`; the others are returned. */
async function replay(stage: Stage, root: string, context: string, stageRoots: Map<string, string>, execute: boolean, log: string): Promise<{ env: Record<string, string>; workdir: string; skippedRuns: string[] }> {
  let workdir = '/';
  const env: Record<string, string> = {};
  const skippedRuns: string[] = [];
  const host = (p: string): string => join(root, posix.resolve(workdir, p));
  for (const ins of stage.instructions) {
    switch (ins.keyword) {
      case 'WORKDIR':
        workdir = posix.resolve(workdir, ins.args);
        mkdirSync(join(root, workdir), { recursive: true });
        break;
      case 'ENV':
        Object.assign(env, parseEnv(ins.args));
        break;
      case 'COPY': {
        const c = parseCopy(ins.args);
        const from = c.from === null ? context : stageRoots.get(c.from);
        if (from === undefined) throw new Error(`COPY --from=${c.from}: no such stage`);
        // --from sources are absolute paths in that stage; context sources are relative to it.
        const sources = c.sources.map((s) => (c.from === null ? s : s.replace(/^\/+/, '')));
        dockerCopy(from, sources, host(c.dest), c.dest.endsWith('/') || c.sources.length > 1);
        break;
      }
      case 'RUN': {
        if (!execute) {
          skippedRuns.push(ins.args);
          break;
        }
        const form = commandForm(ins.args);
        const [cmd, ...argv] = 'exec' in form ? form.exec : ['sh', '-c', form.shell];
        writeFileSync(log, `\n$ ${ins.args}\n`, { flag: 'a' });
        const r = await run(cmd, argv, { cwd: join(root, workdir), env: cleanEnv({ ...env, npm_config_prefer_offline: 'true' }), timeoutMs: 400_000 });
        writeFileSync(log, r.stdout + r.stderr, { flag: 'a' });
        if (r.code !== 0) throw new Error(`RUN ${ins.args} (Dockerfile line ${ins.line}) failed with ${r.code ?? r.signal}:\n${(r.stdout + r.stderr).slice(-3000)}`);
        break;
      }
      case 'USER': case 'EXPOSE': case 'HEALTHCHECK': case 'ENTRYPOINT': case 'CMD': case 'LABEL':
        break;
      default:
        throw new Error(`Dockerfile line ${ins.line}: ${ins.keyword} is not replayed by this test`);
    }
  }
  return { env, workdir, skippedRuns };
}

/** An argv of the image (ENTRYPOINT, HEALTHCHECK) as a host command: its files from the runtime root, node from the host. */
function hostArgv(argv: string[]): string[] {
  return argv.map((a, i) => {
    if (i === 0 && a === 'node') return process.execPath;
    if (isAbsolute(a) && existsSync(join(image.root, a))) return join(image.root, a);
    return a;
  });
}

function imageEnv(overrides: Record<string, string>): NodeJS.ProcessEnv {
  // PATH as in the image: its /usr/bin (tcpdump with the file capability) before the host's.
  return { PATH: `${join(image.root, 'usr/bin')}:/usr/local/bin:/usr/bin:/bin`, ...image.env, ...overrides };
}

beforeAll(async () => {
  work = mkdtempSync(join(tmpdir(), 'keepalive-docker-'));
  // The privilege tests run the runtime as an unprivileged user: it must be able to reach it.
  chmodSync(work, 0o755);
  const context = join(work, 'context');
  const buildRoot = join(work, 'build-root');
  const runtimeRoot = join(work, 'runtime-root');
  for (const d of [context, buildRoot, runtimeRoot]) mkdirSync(d, { recursive: true });
  buildContext(context);
  const log = join(work, 'build.log');
  await replay(buildStage, buildRoot, context, new Map(), true, log);
  const roots = new Map([[buildStage.name ?? '0', buildRoot]]);
  const rt = await replay(runtimeStage, runtimeRoot, context, roots, false, log);
  const hc = parseHealthcheck(last(runtimeStage, 'HEALTHCHECK') ?? 'NONE');
  const ep = commandForm(last(runtimeStage, 'ENTRYPOINT') ?? '');
  if (!hc || !('exec' in hc.cmd) || !('exec' in ep)) throw new Error('HEALTHCHECK CMD and ENTRYPOINT must be in exec form');
  image = { root: runtimeRoot, env: rt.env, workdir: rt.workdir, healthcheck: hc, entrypoint: ep.exec };
}, 600_000);

afterAll(() => {
  if (work && !KEEP) rmSync(work, { recursive: true, force: true });
  else if (work) console.log(`kept ${work}`);
});

describe('the runtime layout, assembled as the runtime stage copies it', () => {
  it('holds dist, package.json and the production dependencies only: no devDependencies, no sources', () => {
    const app = join(image.root, image.workdir);
    expect(existsSync(join(app, 'dist/cli/main.js'))).toBe(true);
    expect(existsSync(join(app, 'package.json'))).toBe(true);
    for (const dep of Object.keys(pkg.dependencies)) expect(existsSync(join(app, 'node_modules', dep, 'package.json')), dep).toBe(true);
    for (const dep of Object.keys(pkg.devDependencies)) expect(existsSync(join(app, 'node_modules', dep)), dep).toBe(false);
    // Nor anything only dev dependencies bring (vitest's vite, esbuild, typescript's bin).
    for (const p of ['vite', 'esbuild', '.bin/tsc', '.bin/vitest']) expect(existsSync(join(app, 'node_modules', p)), p).toBe(false);
    expect(readdirSync(app).sort()).toEqual(['dist', 'healthcheck.mjs', 'node_modules', 'package.json']);
  });

  it('ENTRYPOINT --help exits 0 with the usage and every flag', async () => {
    const r = await run(hostArgv(image.entrypoint)[0], [...hostArgv(image.entrypoint).slice(1), '--help'], { env: imageEnv({}), cwd: join(image.root, image.workdir), timeoutMs: 30_000 });
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/^keepalive-exporter \d+\.\d+\.\d+/);
    for (const o of OPTIONS) expect(r.stdout).toContain(`--${o.flag} `);
  });

  it('serves the committed capture; the HEALTHCHECK command passes while it runs and fails once it stopped', async () => {
    const port = await freePort();
    // The Dockerfile's listen address with a free port: its host (0.0.0.0) is what the health check must map to loopback.
    const address = image.env[envName('web.listen-address')].replace(/:\d+$/, `:${port}`);
    const env = imageEnv({ [envName('web.listen-address')]: address });
    const ep = hostArgv(image.entrypoint);
    const hc = hostArgv((image.healthcheck.cmd as { exec: string[] }).exec);
    const fixture = join(ROOT, 'test/fixtures/real/real-servers.pcap');
    let daemon: Proc | null = null;
    try {
      daemon = start('daemon', ep[0], [...ep.slice(1), '--pcap', fixture], join(work, 'daemon-pcap.log'), env, join(image.root, image.workdir));
      const healthy = await waitFor('the HEALTHCHECK to pass', 20_000, async () => {
        if (daemon!.exit) throw new Error(`the daemon exited ${JSON.stringify(daemon!.exit)}\n${tail(daemon, 20)}`);
        const r = await run(hc[0], hc.slice(1), { env, timeoutMs: 10_000 });
        return r.code === 0 ? r : null;
      }, 200);
      expect(healthy.code).toBe(0);
      const ready = await waitFor('/readyz 200 (the file read to its end)', 20_000, async () => {
        const r = await httpGet(`http://127.0.0.1:${port}/readyz`);
        return r && r.status === 200 ? r : null;
      });
      expect(JSON.parse(ready.body)).toMatchObject({ status: 'ready' });
      const metrics = await httpGet(`http://127.0.0.1:${port}/metrics`);
      expect(metrics?.status).toBe(200);
      const s = parseProm(metrics!.body);
      // The fixture's 112 requests, 51 of them reused (README, "Quick start").
      expect(total(s, 'keepalive_requests_total', { source: `file:${fixture}` })).toBe(112);
      expect(total(s, 'keepalive_requests_total', { source: `file:${fixture}`, reused: 'true' })).toBe(51);
    } finally {
      const stopped = await stop(daemon, 'SIGTERM', 8000);
      expect({ code: stopped.code, killed: stopped.killed }, tail(daemon, 20)).toEqual({ code: 0, killed: false });
    }
    const after = await run(hc[0], hc.slice(1), { env, timeoutMs: 10_000 });
    expect(after.code).toBe(1);
    expect(after.stderr).toMatch(/healthz.*ECONNREFUSED/);
  });
});

// ---------------------------------------------------------------- privileges

interface PrivilegeModel {
  what: string;
  uid: number;
  gid: number;
  /** Capability names as setpriv spells them (net_raw). */
  bounding: string[];
  ambient: string[];
  noNewPrivs: boolean;
  /** Directory holding the tcpdump the daemon finds on PATH. */
  tcpdumpDir: string;
  /** Daemon environment and arguments from the deployment file (ports and listen address are set by the test). */
  env: Record<string, string>;
  args: string[];
}

const capName = (c: string): string => c.toLowerCase().replace(/^cap_/, '');

const TOOLS = { setpriv: findTool('setpriv'), setcap: findTool('setcap'), tcpdump: findTool('tcpdump') };
const APT: Record<keyof typeof TOOLS, string> = { setpriv: 'util-linux', setcap: 'libcap2-bin', tcpdump: 'tcpdump' };
const canRunPrivileged = isRoot && Object.values(TOOLS).every((t) => t !== null);

/** The environment variables of a Kubernetes container. */
function k8sEnv(container: { env?: Array<{ name: string; value?: string }> }): Record<string, string> {
  return Object.fromEntries((container.env ?? []).map((e) => [e.name, e.value ?? '']));
}

/** `${VAR:-default}` as docker compose interpolates it with VAR unset. */
const composeDefault = (s: string): string => s.replace(/\$\{[A-Za-z_][A-Za-z0-9_]*:-([^}]*)\}/g, '$1');

/** CapEff of a process as a number, and its uid. */
function procCaps(pid: number): { uid: number; capEff: bigint } | null {
  try {
    const status = readFileSync(`/proc/${pid}/status`, 'utf8');
    const uid = Number(/^Uid:\s+(\d+)/m.exec(status)![1]);
    const capEff = BigInt(`0x${/^CapEff:\s+([0-9a-f]+)/m.exec(status)![1]}`);
    return { uid, capEff };
  } catch {
    return null;
  }
}
const CAP_NET_RAW = 1n << 13n;

function childrenOf(pid: number): number[] {
  try {
    return readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').trim().split(/\s+/).filter(Boolean).map(Number);
  } catch {
    return [];
  }
}

/** A node binary the unprivileged user can execute (the host's, or a copy when its directory is closed to others). */
let nodeForUsers: string | null = null;
async function nodeFor(uid: number, gid: number): Promise<string> {
  if (nodeForUsers) return nodeForUsers;
  const probe = await run(TOOLS.setpriv!, [`--reuid=${uid}`, `--regid=${gid}`, '--clear-groups', process.execPath, '--version'], { timeoutMs: 20_000 });
  if (probe.code === 0) nodeForUsers = process.execPath;
  else {
    nodeForUsers = join(work, 'node');
    copyFileSync(process.execPath, nodeForUsers);
    chmodSync(nodeForUsers, 0o755);
  }
  return nodeForUsers;
}

/** Three requests on one keep-alive connection to a server on 127.0.0.1:port. */
async function keepAliveRequests(port: number): Promise<void> {
  const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
  try {
    for (let i = 0; i < 3; i++) {
      await new Promise<void>((resolve, reject) => {
        http.get({ host: '127.0.0.1', port, path: `/r${i}`, agent }, (res) => {
          res.resume();
          res.on('end', resolve);
        }).on('error', reject);
      });
    }
  } finally {
    agent.destroy();
  }
}

type Outcome = { captured: true; node: { uid: number; capEff: bigint }; tcpdump: { uid: number; capEff: bigint } } | { captured: false; code: number | null; log: string };

/** Runs the runtime layout's daemon under a privilege model and reports whether live capture worked. */
async function captureUnder(m: PrivilegeModel): Promise<Outcome> {
  const httpPort = await freePort();
  const metricsPort = await freePort();
  const server = http.createServer((_req, res) => res.end('ok\n'));
  await new Promise<void>((r) => server.listen(httpPort, '127.0.0.1', r));
  const caps = (l: string[]): string => ['-all', ...l.map((c) => `+${c}`)].join(',');
  const setpriv = [
    `--reuid=${m.uid}`, `--regid=${m.gid}`, '--clear-groups',
    `--inh-caps=${caps(m.ambient)}`, `--ambient-caps=${caps(m.ambient)}`, `--bounding-set=${caps(m.bounding)}`,
    ...(m.noNewPrivs ? ['--no-new-privs'] : []),
  ];
  const node = await nodeFor(m.uid, m.gid);
  const env: NodeJS.ProcessEnv = {
    PATH: `${m.tcpdumpDir}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin`,
    ...m.env,
    [envName('ports')]: String(httpPort),
    [envName('web.listen-address')]: `127.0.0.1:${metricsPort}`,
  };
  const log = join(work, `daemon-${m.what.replace(/\W+/g, '-')}.log`);
  let daemon: Proc | null = null;
  try {
    daemon = start('daemon', TOOLS.setpriv!, [...setpriv, '--', node, join(image.root, '/app/dist/cli/main.js'), ...m.args], log, env, join(image.root, image.workdir));
    const d = daemon;
    const up = await waitFor('the live source up, or the daemon gone', 20_000, async () => {
      if (d.exit) return 'exited' as const;
      const r = await httpGet(`http://127.0.0.1:${metricsPort}/readyz`);
      return r?.status === 200 ? ('ready' as const) : null;
    }, 200);
    if (up === 'exited') return { captured: false, code: d.exit!.code, log: readFileSync(log, 'utf8') };
    const pid = d.child.pid!;
    const tcpdumpPid = childrenOf(pid).find((c) => /tcpdump/.test(readFileSync(`/proc/${c}/cmdline`, 'utf8')));
    if (tcpdumpPid === undefined) throw new Error(`no tcpdump child of ${pid}\n${tail(d, 20)}`);
    const nodeCaps = procCaps(pid)!;
    const tcpdumpCaps = procCaps(tcpdumpPid)!;
    await keepAliveRequests(httpPort);
    const label = `127.0.0.1:${httpPort}`;
    await waitFor(`the 3 requests to ${label} in /metrics`, 15_000, async () => {
      const r = await httpGet(`http://127.0.0.1:${metricsPort}/metrics`);
      if (!r) return null;
      const s = parseProm(r.body);
      return total(s, 'keepalive_requests_total', { server: label, reused: 'true' }) === 2 && total(s, 'keepalive_requests_total', { server: label, reused: 'false' }) === 1 ? true : null;
    }, 200);
    const stopped = await stop(daemon, 'SIGTERM', 8000);
    expect({ code: stopped.code, killed: stopped.killed }, tail(daemon, 20)).toEqual({ code: 0, killed: false });
    return { captured: true, node: nodeCaps, tcpdump: tcpdumpCaps };
  } finally {
    await stop(daemon, 'SIGTERM', 8000);
    await new Promise<void>((r) => server.close(() => r()));
  }
}

describe.runIf(canRunPrivileged || process.env.CI === 'true')('privileges: live capture as an unprivileged user, as each deployment grants it (root only)', () => {
  let imageTcpdump = '';
  const ids = runtimeIds();

  beforeAll(async () => {
    // CI runs as root with these installed (.ci/run): there a missing piece fails instead of skipping.
    expect({ root: isRoot, missing: Object.entries(TOOLS).filter(([, p]) => p === null).map(([t]) => `${t} (apt-get install ${APT[t as keyof typeof TOOLS]})`) }).toEqual({ root: true, missing: [] });
    // The image's tcpdump: the distribution's binary with the Dockerfile's setcap applied.
    const { caps, file } = runtimeSetcap();
    imageTcpdump = join(image.root, file);
    mkdirSync(dirname(imageTcpdump), { recursive: true });
    copyFileSync(TOOLS.tcpdump!, imageTcpdump);
    chmodSync(imageTcpdump, 0o755);
    const r = await run(TOOLS.setcap!, [caps, imageTcpdump]);
    expect(r.code, r.stderr).toBe(0);
  }, 60_000);

  const compose = parseYaml(read('docker-compose.yml')) as { services: Record<string, { command?: string[]; environment?: Record<string, string>; cap_add?: string[]; cap_drop?: string[]; security_opt?: string[] }> };
  const svc = compose.services['keepalive-exporter'];

  it('docker compose (cap_drop ALL, cap_add NET_RAW, the image USER): tcpdump gets NET_RAW from its file capability, the daemon has none', async () => {
    expect(svc.cap_drop).toEqual(['ALL']);
    expect(svc.security_opt ?? []).not.toContain('no-new-privileges:true');
    const out = await captureUnder({
      what: 'compose', ...ids, bounding: (svc.cap_add ?? []).map(capName), ambient: [], noNewPrivs: false,
      tcpdumpDir: dirname(imageTcpdump), env: { ...image.env, ...(svc.environment ?? {}) }, args: (svc.command ?? []).map(composeDefault),
    });
    expect(out.captured, out.captured ? '' : out.log).toBe(true);
    if (!out.captured) return;
    expect(out.node).toEqual({ uid: ids.uid, capEff: 0n });
    expect(out.tcpdump).toEqual({ uid: ids.uid, capEff: CAP_NET_RAW });
  }, 60_000);

  it('docker run without --cap-add NET_RAW: the start fails with exit status 2 (tcpdump cannot even be executed)', async () => {
    const out = await captureUnder({ what: 'no-net-raw', ...ids, bounding: [], ambient: [], noNewPrivs: false, tcpdumpDir: dirname(imageTcpdump), env: { ...image.env }, args: ['--interface', 'lo'] });
    expect(out.captured).toBe(false);
    if (out.captured) return;
    expect(out.code).toBe(2);
    expect(out.log).toMatch(/cannot run tcpdump: EPERM: its file capabilities need CAP_NET_RAW/);
    expect(out.log).not.toMatch(/internal error/);
  }, 60_000);

  const k8s = parseYaml(read('deploy/kubernetes/daemonset.yaml')) as { spec: { template: { spec: { securityContext?: Record<string, unknown>; containers: Array<{ args?: string[]; env?: Array<{ name: string; value?: string }>; securityContext: { runAsUser?: number; runAsGroup?: number; allowPrivilegeEscalation?: boolean; capabilities: { add?: string[]; drop?: string[] } } }> } } } };
  const pod = k8s.spec.template.spec;
  const container = pod.containers[0];
  const k8sModel = (): PrivilegeModel => {
    const sc = { ...(pod.securityContext ?? {}), ...container.securityContext } as typeof container.securityContext;
    expect(sc.capabilities.drop).toEqual(['ALL']);
    return {
      what: 'kubernetes', uid: sc.runAsUser ?? ids.uid, gid: sc.runAsGroup ?? ids.gid,
      bounding: (sc.capabilities.add ?? []).map(capName), ambient: [],
      // allowPrivilegeEscalation: false is no_new_privs on the container's process.
      noNewPrivs: sc.allowPrivilegeEscalation !== true,
      tcpdumpDir: dirname(imageTcpdump), env: { ...image.env, ...k8sEnv(container) }, args: container.args ?? [],
    };
  };

  it('Kubernetes DaemonSet (runAsUser, drop ALL, add NET_RAW, allowPrivilegeEscalation as set): captures', async () => {
    const out = await captureUnder(k8sModel());
    expect(out.captured, out.captured ? '' : out.log).toBe(true);
    if (!out.captured) return;
    expect(out.tcpdump).toEqual({ uid: k8sModel().uid, capEff: CAP_NET_RAW });
  }, 60_000);

  it('the same with allowPrivilegeEscalation: false (no_new_privs) does not: the kernel ignores file capabilities', async () => {
    const out = await captureUnder({ ...k8sModel(), what: 'kubernetes-nnp', noNewPrivs: true });
    expect(out.captured).toBe(false);
    if (out.captured) return;
    expect(out.code).toBe(2);
    expect(out.log).toMatch(/tcpdump may not capture on any/);
  }, 60_000);

  it('systemd unit (User, AmbientCapabilities, CapabilityBoundingSet, NoNewPrivileges, the EnvironmentFile example): captures with the system tcpdump, no setcap', async () => {
    const unit = read('deploy/systemd/keepalive-exporter.service');
    const values = (key: string): string[] => [...unit.matchAll(new RegExp(`^${key}=(.*)$`, 'gm'))].map((m) => m[1].trim());
    const capList = (key: string): string[] => values(key).flatMap((v) => v.split(/\s+/)).filter(Boolean).map(capName);
    const execStart = splitWords(values('ExecStart')[0]);
    expect(execStart.slice(0, 2)).toEqual(['/usr/bin/node', '/opt/keepalive-exporter/dist/cli/main.js']);
    const envFile = Object.fromEntries(read('deploy/systemd/keepalive-exporter.default').split('\n').filter((l) => /^[A-Z_]+=/.test(l)).map((l) => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1)]));
    // The unit's user need not exist for this: any unprivileged uid other than the image's.
    const out = await captureUnder({
      what: 'systemd', uid: ids.uid + 1, gid: ids.gid + 1,
      bounding: capList('CapabilityBoundingSet'), ambient: capList('AmbientCapabilities'), noNewPrivs: values('NoNewPrivileges')[0] === 'yes',
      tcpdumpDir: dirname(TOOLS.tcpdump!), env: envFile, args: execStart.slice(2),
    });
    expect(out.captured, out.captured ? '' : out.log).toBe(true);
    if (!out.captured) return;
    // Ambient: node holds NET_RAW itself and passes it to tcpdump; nothing more.
    expect(out.node).toEqual({ uid: ids.uid + 1, capEff: CAP_NET_RAW });
    expect(out.tcpdump).toEqual({ uid: ids.uid + 1, capEff: CAP_NET_RAW });
  }, 60_000);
});
