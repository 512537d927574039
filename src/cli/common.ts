import { readFileSync } from 'node:fs';

/** A mistake in how the command was called or what it was given: printed as one line, exit 2. */
export class UsageError extends Error {}

export const VERSION: string = (() => {
  try {
    return JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')).version;
  } catch {
    return 'unknown';
  }
})();

/** "80,8080" -> [80, 8080]; rejects anything that is not a port, naming the flag. */
export function parsePorts(value: string, flag: string): number[] {
  const ports = value.split(',').map((p) => p.trim()).filter((p) => p.length > 0);
  if (ports.length === 0) throw new UsageError(`${flag} needs a comma-separated list of ports, e.g. ${flag} 80,8080`);
  return ports.map((p) => {
    const n = Number(p);
    if (!/^\d+$/.test(p) || n < 1 || n > 65535) throw new UsageError(`${flag}: "${p}" is not a TCP port (1-65535)`);
    return n;
  });
}

export function parsePositiveInt(value: string, flag: string): number {
  const n = Number(value);
  if (!/^\d+$/.test(value) || n < 1) throw new UsageError(`${flag}: "${value}" is not a positive integer`);
  return n;
}

/**
 * The one wording of an unknown flag, for every command: `unknown flag --bogus: see
 * keepalive-exporter --help` (or `... analyze --help`). Printed after "keepalive-exporter: ".
 */
export function unknownFlag(flag: string, help = 'keepalive-exporter --help'): string {
  return `unknown flag ${flag}: see ${help}`;
}

/** HOST:PORT for logs and messages; an IPv6 host always in brackets ([::1]:10842). */
export function hostPort(host: string, port: number): string {
  return host.includes(':') ? `[${host}]:${port}` : `${host}:${port}`;
}

/** --help's width: every line fits a terminal of 80 columns. */
export const HELP_WIDTH = 80;
/** Where an option's help text starts; a flag and value longer than this go on their own line. */
const HELP_INDENT = 28;

/** `text` in lines of at most `width` columns, each after `indent` spaces (a word longer than a line stays whole). */
export function wrap(text: string, indent: number, width = HELP_WIDTH): string[] {
  const lines: string[] = [];
  let line = '';
  // "[default: X]" stays on one line: the words are split at spaces outside it.
  const words = text.replace(/\[default: /g, '[default:\u00a0').split(/[ \t\n]+/).filter(Boolean).map((w) => w.replace(/\u00a0/g, ' '));
  for (const word of words) {
    // A word too long for a line at `indent` (a long "[default: ...]") gets a line of its own, less indented.
    if (indent + word.length > width) {
      if (line !== '') lines.push(' '.repeat(indent) + line);
      lines.push(' '.repeat(Math.max(0, width - word.length)) + word);
      line = '';
      continue;
    }
    if (line !== '' && indent + line.length + 1 + word.length > width) {
      lines.push(' '.repeat(indent) + line);
      line = word;
    } else line = line === '' ? word : `${line} ${word}`;
  }
  if (line !== '') lines.push(' '.repeat(indent) + line);
  return lines;
}

/**
 * One option of --help: `  --flag VALUE` then its text with a hanging indent, wrapped at 80;
 * the flag and value on a line of their own when they reach the text's column. `extra` lines
 * (env NAME) follow, indented like the text.
 */
export function helpEntry(left: string, text: string, extra: string[] = []): string {
  const head = `  ${left}`;
  const body = wrap(text, HELP_INDENT);
  const out = head.length + 2 <= HELP_INDENT && body.length > 0
    ? [head.padEnd(HELP_INDENT) + body[0].slice(HELP_INDENT), ...body.slice(1)]
    : [head, ...body];
  for (const e of extra) out.push(...wrap(e, HELP_INDENT));
  return out.join('\n');
}

/**
 * The URL of the address a server is bound to, e.g. http://0.0.0.0:10842 or http://[::]:10842:
 * what was bound (server.address()), not fastify's first reachable address (127.0.0.1 for 0.0.0.0).
 */
export function boundUrl(server: { address(): import('node:net').AddressInfo | string | null }, scheme = 'http'): string {
  const a = server.address();
  if (a === null) return `${scheme}://(not listening)`;
  if (typeof a === 'string') return a;
  return `${scheme}://${hostPort(a.address, a.port)}`;
}
