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
