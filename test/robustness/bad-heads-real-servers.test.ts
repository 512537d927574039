/**
 * Issue 10 items 6 and 7 against real servers: what nginx and Apache httpd answer to each bad
 * request head, and that the engine, reading a real tcpdump capture of those connections, counts
 * every connection and request, pairs the server's answer with the bad request, decides the close
 * and counts the anomaly.
 *
 *   client (node:net, one connection per case) -> nginx / Apache (test/e2e/support/servers.ts)
 *                                    tcpdump on lo ^ -> analyzeFile (the engine, as `analyze`)
 *
 * Measured here (Debian 12: nginx 1.22.1, Apache 2.4): both accept `Content-Length: 000...05`
 * and answer the POST (nginx 405 on a static site, Apache 200) and the GET pipelined after its
 * body, keeping the connection. Both answer 400 with `Connection: close`, then their FIN, to
 * whitespace before the colon (space or tab), `Content-Length: -1`, two conflicting
 * Content-Length fields or a list of them, a value beyond 2^63, and even a list of identical
 * values (`5, 5`, which RFC 9110 8.6 lets a recipient accept: we do, so no anomaly). A field line
 * without a colon: nginx ignores it (200, keep-alive: the client sends another request), Apache
 * answers 400 and closes.
 *
 * Needs root (tcpdump on lo), nginx, apache2 and tcpdump; skipped without them on a developer
 * machine, and in CI (CI=true: .ci/run installs them and runs as root) a missing one fails. The
 * servers listen on ports the OS picks. KEEP_TMP=1 keeps the temp dir (configs, logs, capture).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { ConnectionRecord } from '../../src/conn/records.js';
import { analyzeFile, type Facts } from '../helpers/engine.js';
import { findTool, freePort, sleep, start, stop, tail, tailFile, waitFor, type Proc } from '../helpers/procs.js';
import { RawConn, get, type Response } from '../e2e/support/client.js';
import { prepareDir, startApache, startNginx } from '../e2e/support/servers.js';

const HOST = '127.0.0.1';
const TOOLS = { nginx: findTool('nginx'), apache2: findTool('apache2'), tcpdump: findTool('tcpdump') };
const isRoot = process.getuid?.() === 0;
const haveApache = TOOLS.apache2 !== null && existsSync('/usr/lib/apache2/modules/mod_mpm_event.so');
const canRun = isRoot && TOOLS.nginx !== null && haveApache && TOOLS.tcpdump !== null;

type Kind = 'nginx' | 'apache';
const KINDS: Kind[] = ['nginx', 'apache'];
const H = 'Host: localhost\r\nUser-Agent: keepalive-bad-heads/1\r\nConnection: keep-alive\r\n';

/** What a server answers (status and Connection, lower case, of each response) and what the engine must report. */
interface Outcome {
  answers: Array<[number, string]>;
  closes: boolean;
  engine: { requests: number; responses: number; reason: string; closedBy: 'client' | 'server' };
}

interface Case {
  name: string;
  /** Bytes written at once (a bad head, maybe with a body and a pipelined request). */
  send: string;
  /** A second request written after the answer to `send`, if the server kept the connection. */
  then?: string;
  /** The anomaly the head must count, if it is bad. */
  anomaly: 'http_malformed_head' | 'http_bad_content_length' | null;
  expect: Record<Kind, Outcome>;
}

const KEPT_2 = (first: number): Outcome => ({
  answers: [[first, 'keep-alive'], [200, 'keep-alive']],
  closes: false,
  engine: { requests: 2, responses: 2, reason: 'client_close', closedBy: 'client' },
});
const REJECTED: Outcome = { answers: [[400, 'close']], closes: true, engine: { requests: 1, responses: 1, reason: 'server_close', closedBy: 'server' } };

const CASES: Case[] = [
  {
    name: 'Content-Length with 30 leading zeros, a GET pipelined after its body (item 6)',
    send: `POST / HTTP/1.1\r\n${H}Content-Length: 00000000000000000000000000000005\r\n\r\nhello${get('/')}`,
    anomaly: null,
    expect: { nginx: KEPT_2(405), apache: KEPT_2(200) },
  },
  {
    name: 'a field line without a colon',
    send: `GET / HTTP/1.1\r\n${H}BrokenHeaderLine\r\n\r\n`,
    then: get('/'),
    anomaly: 'http_malformed_head',
    expect: { nginx: KEPT_2(200), apache: REJECTED },
  },
  ...([
    ['a space before the colon', `GET / HTTP/1.1\r\n${H}X-Thing : 1\r\n\r\n`, 'http_malformed_head'],
    ['a tab before the colon', `GET / HTTP/1.1\r\n${H}X-Thing\t: 1\r\n\r\n`, 'http_malformed_head'],
    ['Content-Length: -1', `POST / HTTP/1.1\r\n${H}Content-Length: -1\r\n\r\n`, 'http_bad_content_length'],
    ['two conflicting Content-Length fields', `POST / HTTP/1.1\r\n${H}Content-Length: 5\r\nContent-Length: 6\r\n\r\nhello!`, 'http_bad_content_length'],
    ['a conflicting Content-Length list', `POST / HTTP/1.1\r\n${H}Content-Length: 5, 6\r\n\r\nhello!`, 'http_bad_content_length'],
    ['a Content-Length beyond any integer', `POST / HTTP/1.1\r\n${H}Content-Length: 99999999999999999999\r\n\r\n`, 'http_bad_content_length'],
    ['a list of identical Content-Length values (valid to us, 400 to both servers)', `POST / HTTP/1.1\r\n${H}Content-Length: 5, 5\r\n\r\nhello`, null],
  ] as const).map(([name, send, anomaly]): Case => ({ name, send, anomaly, expect: { nginx: REJECTED, apache: REJECTED } })),
];

interface Seen { kind: Kind; name: string; client: string; answers: Array<[number, string]>; closes: boolean }

/** One connection: the case's bytes, the answers, then the close as the server's answer calls for. */
async function talk(kind: Kind, port: number, k: Case): Promise<Seen> {
  const c = await RawConn.open(`${kind}: ${k.name}`, HOST, port);
  try {
    await c.request(k.send);
    // RawConn keeps every parsed response; the answer to a pipelined request may already be in.
    const all = (c as unknown as { responses: Response[] }).responses;
    const want = k.expect[kind].answers.length;
    if (!k.then) await waitFor(`${c.name}: ${want} answers`, 3000, () => (all.length >= want || c.serverFinAt !== null ? true : null), 20);
    else if (all[0].headers.connection?.toLowerCase() !== 'close') await c.request(k.then);
    const answers = all.map((r): [number, string] => [r.status, (r.headers.connection ?? '').toLowerCase()]);
    // After Connection: close the server's FIN follows at once; after keep-alive the client closes
    // at once (waiting would make it a client_idle close).
    let closes = c.serverFinAt !== null;
    if (!closes && answers.at(-1)?.[1] === 'close') closes = await c.serverClose(1000).then(() => true, () => false);
    await c.end();
    return { kind, name: k.name, client: c.client, answers, closes };
  } finally {
    c.destroy();
  }
}

describe.runIf(canRun || process.env.CI === 'true')('bad request heads sent to real nginx and Apache, captured by tcpdump, counted by the engine', () => {
  let dir = '';
  const procs: { nginx: Proc | null; apache: Proc | null; tcpdump: Proc | null } = { nginx: null, apache: null, tcpdump: null };
  let tcpdumpLog = '';
  const ports: Record<Kind, number> = { nginx: 0, apache: 0 };
  const seen: Seen[] = [];
  let facts: Facts | null = null;
  const logs = (): string => [
    ...Object.values(procs).map((p) => tail(p)),
    ...(dir ? ['nginx-error.log', 'apache-error.log'].map((f) => tailFile(f, join(dir, 'logs', f))) : []),
  ].filter(Boolean).join('\n');

  beforeAll(async () => {
    expect({ root: isRoot, nginx: TOOLS.nginx !== null, apache2: haveApache, tcpdump: TOOLS.tcpdump !== null })
      .toEqual({ root: true, nginx: true, apache2: true, tcpdump: true });
    dir = mkdtempSync(join(tmpdir(), 'ka-bad-heads-'));
    prepareDir(dir);
    try {
      ports.nginx = await freePort();
      procs.nginx = await startNginx(TOOLS.nginx!, dir, ports.nginx);
      ports.apache = await freePort();
      procs.apache = await startApache(TOOLS.apache2!, dir, ports.apache);
      await sleep(300); // the readiness probes' teardown stays out of the capture
      const pcap = join(dir, 'bad-heads.pcap');
      tcpdumpLog = join(dir, 'logs/tcpdump.log');
      procs.tcpdump = start('tcpdump', TOOLS.tcpdump!, ['-i', 'lo', '-n', '-s', '0', '-B', '32768', '--immediate-mode', '-U', '-w', pcap,
        `tcp port ${ports.nginx} or tcp port ${ports.apache}`], tcpdumpLog);
      const td = procs.tcpdump;
      await waitFor('tcpdump to listen', 10_000, () => {
        if (td.exit) throw new Error(`tcpdump exited: ${readFileSync(tcpdumpLog, 'utf8')}`);
        return readFileSync(tcpdumpLog, 'utf8').includes('listening on') ? true : null;
      }, 50);
      // One connection per case and server, one after the other (every wait is bounded).
      for (const kind of KINDS) for (const k of CASES) seen.push(await talk(kind, ports[kind], k));
      await sleep(300); // the last ACKs into the capture
      const st = await stop(procs.tcpdump, 'SIGINT', 10_000);
      procs.tcpdump = null;
      expect(st.killed, 'tcpdump had to be killed').toBe(false);
      facts = await analyzeFile(pcap);
    } catch (err) {
      (err as Error).message += `\n${logs()}`;
      throw err;
    }
  }, 90_000);

  afterAll(async () => {
    await Promise.all([stop(procs.tcpdump, 'SIGINT', 10_000), stop(procs.nginx, 'SIGTERM', 10_000), stop(procs.apache, 'SIGTERM', 10_000)]);
    if (dir && process.env.KEEP_TMP !== '1') rmSync(dir, { recursive: true, force: true });
    else if (dir) console.warn(`bad-heads real servers: temp dir kept: ${dir}`);
  }, 30_000);

  it('each server answers each bad head as documented above (400 + Connection: close and its FIN, or keep-alive)', () => {
    expect(seen.map((s) => ({ kind: s.kind, name: s.name, answers: s.answers, closes: s.closes })))
      .toEqual(KINDS.flatMap((kind) => CASES.map((k) => ({ kind, name: k.name, answers: k.expect[kind].answers, closes: k.expect[kind].closes }))));
  });

  it('the capture is complete: no drops, one connection per case and server', () => {
    expect(readFileSync(tcpdumpLog, 'utf8')).toMatch(/^0 packets dropped by kernel$/m);
    expect(facts!.capture.problem).toBeNull();
    expect(facts!.closed).toHaveLength(KINDS.length * CASES.length);
  });

  it('the engine counts every connection and request, pairs the server\'s answer with the bad request, and decides the close', () => {
    // The OS may give a later case the client port of an earlier one: the k-th case seen from a
    // client address is the k-th connection from it, in order of opening.
    const byClient = new Map<string, ConnectionRecord[]>();
    for (const c of [...facts!.closed].sort((a, b) => a.openedAt - b.openedAt)) byClient.set(c.client, [...(byClient.get(c.client) ?? []), c]);
    const used = new Map<string, number>();
    const conns = seen.map((s) => {
      const k = used.get(s.client) ?? 0;
      used.set(s.client, k + 1);
      return byClient.get(s.client)?.[k];
    });
    const got = seen.map((s, i) => {
      const c = conns[i];
      return { kind: s.kind, name: s.name, requests: c?.requests, responses: c?.responses, reason: c?.closeReason, closedBy: c?.closedBy };
    });
    expect(got).toEqual(KINDS.flatMap((kind) => CASES.map((k) => ({ kind, name: k.name, ...k.expect[kind].engine }))));
    // Each answer's status is paired with its own request, in order.
    const statuses = seen.map((_s, i) => facts!.responses.filter((r) => r.conn === conns[i]).map((r) => r.req.status));
    expect(statuses).toEqual(seen.map((s) => s.answers.map((a) => a[0])));
  });

  it('the engine counts one anomaly per bad head, and none for the valid leading zeros or identical values', () => {
    const want: Record<string, number> = {};
    for (const k of CASES) if (k.anomaly) want[k.anomaly] = (want[k.anomaly] ?? 0) + KINDS.length;
    expect(want).toEqual({ http_malformed_head: 6, http_bad_content_length: 8 });
    expect(facts!.engine.stats().anomalies).toEqual(want);
  });
});
