/**
 * The command line as Prometheus exporters have it (issue 11), run as a program (the CLI compiled
 * from src/ into a temp dir, test/helpers/cli.ts):
 *   - --version: `keepalive-exporter, version V (revision: R)` and `  node: vX, platform: os/arch`;
 *     the revision from dist/build-info.json, which `npm run build` writes (and writes "unknown"
 *     without failing where there is no .git, as in the Docker build stage);
 *   - --help: every line at most 80 columns, every option's flag, value name, help text, default
 *     and environment variable in it;
 *   - an unknown flag is said one way by main, analyze and the daemon: one line, exit 2;
 *   - the "listening" line names the address bound (0.0.0.0, [::1]) and the telemetry path.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, unlinkSync, writeFileSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { buildCli } from '../helpers/cli.js';
import { OPTIONS, envName } from '../../src/config/daemon.js';
import { start, stop, tail, waitFor, type Proc } from '../helpers/procs.js';

const ROOT = join(import.meta.dirname, '../..');
const FIXTURE = join(ROOT, 'test/fixtures/real/real-servers.pcap');
const VERSION = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')).version as string;
const ENV: NodeJS.ProcessEnv = { ...process.env, KEEPALIVE_EXPORTER_DEBUG: '' };
for (const o of OPTIONS) delete ENV[envName(o.flag)];

let dir = '';
let MAIN = '';
beforeAll(() => {
  ({ dir, main: MAIN } = buildCli('ka-conventions-'));
}, 120_000);
afterAll(() => {
  if (dir) rmSync(dir, { recursive: true, force: true });
});

function cli(args: string[], cwd?: string) {
  const r = spawnSync(process.execPath, [MAIN, ...args], { env: ENV, timeout: 15_000, killSignal: 'SIGKILL', encoding: 'utf8', cwd });
  if (r.error) throw r.error;
  return r;
}

describe('--version', () => {
  it('prints the version, the revision and the runtime, as Prometheus exporters do', () => {
    const info = join(dir, 'dist/build-info.json');
    // Written by the build step (node dist/cli/build-info.js): the temp dir is no git checkout,
    // like the Docker build stage, so it says "unknown" and succeeds.
    const w = spawnSync(process.execPath, [join(dir, 'dist/cli/build-info.js')], { encoding: 'utf8' });
    expect(w.status, w.stderr).toBe(0);
    expect(JSON.parse(readFileSync(info, 'utf8'))).toEqual({ version: VERSION, revision: 'unknown' });
    let r = cli(['--version']);
    expect(r.status).toBe(0);
    expect(r.stdout).toBe(`keepalive-exporter, version ${VERSION} (revision: unknown)\n  node: ${process.version}, platform: ${process.platform}/${process.arch}\n`);
    // What a build in a checkout writes.
    writeFileSync(info, JSON.stringify({ version: VERSION, revision: 'abc1234' }));
    r = cli(['--version']);
    expect(r.stdout.split('\n')[0]).toBe(`keepalive-exporter, version ${VERSION} (revision: abc1234)`);
    unlinkSync(info);
  });

  it('in the repository, the build writes the checkout\'s short revision', () => {
    const git = spawnSync('git', ['-C', ROOT, 'rev-parse', '--short', 'HEAD'], { encoding: 'utf8' });
    if (git.status !== 0) return; // not a checkout (a source tarball): nothing to compare with
    const out = mkdtempSync(join(tmpdir(), 'ka-buildinfo-'));
    try {
      // gitRevision is what the build step asks of the package root.
      const r = spawnSync(process.execPath, ['--input-type=module', '-e', `import { gitRevision } from ${JSON.stringify(join(dir, 'dist/cli/build-info.js'))}; process.stdout.write(gitRevision(${JSON.stringify(ROOT)}))`], { encoding: 'utf8', cwd: out });
      expect(r.stdout).toBe(git.stdout.trim());
    } finally {
      rmSync(out, { recursive: true, force: true });
    }
  });
});

describe('--help', () => {
  it('fits 80 columns, the value name apart from its text, every option documented whole', () => {
    const r = cli(['--help']);
    expect(r.status).toBe(0);
    const lines = r.stdout.split('\n');
    for (const l of lines) expect(l.length, `${l.length} columns: ${l}`).toBeLessThanOrEqual(80);
    const flat = r.stdout.replace(/\s+/g, ' ');
    for (const o of OPTIONS) {
      // The flag and its value name on their own, followed by white space (never glued to the text).
      expect(r.stdout, o.flag).toMatch(new RegExp(`^  --${o.flag.replace(/\./g, '\\.')} ${o.value}(\\s{2,}|\\n)`, 'm'));
      expect(flat, o.flag).toContain(o.help.replace(/\s+/g, ' '));
      if (o.def) expect(flat, o.flag).toContain(`[default: ${o.def}]`);
      expect(r.stdout, o.flag).toMatch(new RegExp(`^ +env ${envName(o.flag)}$`, 'm'));
    }
    expect(r.stdout).not.toContain('HOST:PORTHOST:PORT');
    // analyze's options too.
    for (const flag of ['--json', '--connections', '--ports LIST', '--top N', '--max-flows N', '--no-progress']) expect(r.stdout).toMatch(new RegExp(`^  ${flag}\\s`, 'm'));
    const a = cli(['analyze', '--help']);
    for (const l of a.stdout.split('\n')) expect(l.length, l).toBeLessThanOrEqual(80);
  });
});

describe('an unknown flag: one wording everywhere', () => {
  const cases: Array<[string[], string]> = [
    [['-v'], 'keepalive-exporter: unknown flag -v: see keepalive-exporter --help'],
    [['--bogus'], 'keepalive-exporter: unknown flag --bogus: see keepalive-exporter --help'],
    [['run', '--bogus=1'], 'keepalive-exporter: unknown flag --bogus: see keepalive-exporter --help'],
    [['analyze', FIXTURE, '--bogus'], 'keepalive-exporter: unknown flag --bogus: see keepalive-exporter analyze --help'],
  ];
  for (const [args, line] of cases) {
    it(args.join(' '), () => {
      const r = cli(args);
      expect(r.status).toBe(2);
      expect(r.stdout).toBe('');
      expect(r.stderr).toBe(`${line}\n`);
    });
  }
});

describe('the listening line', () => {
  async function listening(args: string[]): Promise<string[]> {
    const logDir = mkdtempSync(join(tmpdir(), 'ka-listen-'));
    const log = join(logDir, 'daemon.log');
    let d: Proc | null = null;
    try {
      d = start('daemon', process.execPath, [MAIN, '--pcap', FIXTURE, ...args], log, ENV);
      const proc = d;
      return await waitFor(`the listening line (${tail(proc)})`, 15_000, () => {
        const text = existsSync(log) ? readFileSync(log, 'utf8') : '';
        return /listening on/.test(text) ? text.split('\n').filter(Boolean).map((l) => JSON.parse(l).msg as string) : null;
      });
    } finally {
      await stop(d, 'SIGTERM', 5000);
      rmSync(logDir, { recursive: true, force: true });
    }
  }

  it('names 0.0.0.0 when 0.0.0.0 was bound, and the telemetry path', async () => {
    const msgs = await listening(['--web.listen-address', '0.0.0.0:0', '--web.telemetry-path', '/prom']);
    const line = msgs.find((m) => m.includes('listening'));
    expect(line).toMatch(new RegExp(`^keepalive-exporter ${VERSION.replace(/\./g, '\\.')} listening on http://0\\.0\\.0\\.0:\\d+/prom$`));
    // No other line claims to be listening elsewhere (fastify's own named 127.0.0.1).
    expect(msgs.filter((m) => /listening/i.test(m))).toEqual([line]);
  });

  it('the daemon serves at --web.telemetry-path, without default metrics under --web.disable-exporter-metrics', async () => {
    const logDir = mkdtempSync(join(tmpdir(), 'ka-path-'));
    const log = join(logDir, 'daemon.log');
    const d = start('daemon', process.execPath, [MAIN, '--pcap', FIXTURE, '--web.listen-address', '127.0.0.1:0', '--web.telemetry-path', '/prom', '--web.disable-exporter-metrics', 'true'], log, ENV);
    try {
      const url = await waitFor(`the listening line (${tail(d)})`, 15_000, () => /listening on (http:\/\/[^\s"]+)\/prom"/.exec(readFileSync(log, 'utf8'))?.[1] ?? null);
      const prom = await fetch(`${url}/prom`);
      expect(prom.status).toBe(200);
      const text = await prom.text();
      expect(text).toContain('# TYPE keepalive_requests_total counter');
      expect(text).toContain('keepalive_exporter_build_info{');
      expect(text).not.toMatch(/^(# (HELP|TYPE) )?(process|nodejs)_/m);
      expect((await fetch(`${url}/metrics`)).status).toBe(404);
    } finally {
      await stop(d, 'SIGTERM', 5000);
      rmSync(logDir, { recursive: true, force: true });
    }
  });

  it('brackets an IPv6 address', async () => {
    const v6 = spawnSync(process.execPath, ['-e', 'require("net").createServer().listen(0,"::1",function(){this.close()}).on("error",()=>process.exit(1))']);
    if (v6.status !== 0) return; // no IPv6 loopback on this host
    const msgs = await listening(['--web.listen-address', '[::1]:0']);
    expect(msgs.find((m) => m.includes('listening'))).toMatch(/ listening on http:\/\/\[::1\]:\d+\/metrics$/);
    expect(msgs.filter((m) => /::1/.test(m)).every((m) => m.includes('[::1]:'))).toBe(true);
  });
});
