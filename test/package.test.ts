/**
 * Every package `npm ci` installs must accept the oldest Node.js we promise, or npm prints
 * EBADENGINE on it (cookie@2 wanted node >=22 through fastify -> light-my-request, issue 11).
 * Runtime packages (what `npm ci --omit=dev` installs, what the daemon runs on) must admit the
 * minimum of package.json's `engines.node`; the build and test tools (vitest's rolldown wants
 * ^20.19.0) must admit DEV_NODE, the oldest Node.js 20 on which the tests can be run.
 */
import { describe, expect, it } from 'vitest';
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';

// semver comes with fastify (a runtime dependency), so no package is added for this test.
const semver = createRequire(import.meta.url)('semver') as {
  satisfies(version: string, range: string, opts?: { includePrerelease?: boolean }): boolean;
  minVersion(range: string): { version: string } | null;
  validRange(range: string): string | null;
};

/** Oldest Node.js on which `npm ci` (with dev dependencies) and `npm test` are supported. */
const DEV_NODE = '20.19.0';

interface LockPackage { engines?: { node?: string } | string[]; dev?: boolean; optional?: boolean; version?: string }

const root = new URL('..', import.meta.url);
const pkg = JSON.parse(readFileSync(new URL('package.json', root), 'utf8')) as { engines: { node: string } };
const lock = JSON.parse(readFileSync(new URL('package-lock.json', root), 'utf8')) as { packages: Record<string, LockPackage> };

function refusing(node: string, filter: (p: LockPackage) => boolean): string[] {
  const bad: string[] = [];
  for (const [path, p] of Object.entries(lock.packages)) {
    if (path === '' || !filter(p)) continue;
    // Old packages wrote engines as an array of strings; npm ignores that form.
    const range = p.engines && !Array.isArray(p.engines) ? p.engines.node : undefined;
    if (range === undefined || range.trim() === '') continue;
    if (semver.validRange(range) === null || !semver.satisfies(node, range)) bad.push(`${path.replace(/^node_modules\//, '')}@${p.version} wants node ${range}`);
  }
  return bad;
}

describe('package-lock.json supports the promised Node.js versions', () => {
  const oldest = semver.minVersion(pkg.engines.node)!.version;

  it('package.json promises Node.js 20 (as the README says)', () => {
    expect(oldest).toBe('20.0.0');
  });

  it('every runtime package admits the oldest Node.js of package.json engines', () => {
    expect(refusing(oldest, (p) => !p.dev)).toEqual([]);
  });

  it('every package, build and test tools included, admits Node.js ' + DEV_NODE, () => {
    expect(refusing(DEV_NODE, () => true)).toEqual([]);
  });
});
