/**
 * What `--version` and `keepalive_exporter_build_info` report: the package version, the git
 * revision it was built from, and the runtime (as Prometheus exporters do).
 *
 * The revision is written at build time into dist/build-info.json (`npm run build` runs this
 * module after tsc: `node dist/cli/build-info.js`), because an installed package or an image has
 * no .git to ask at run time. Where git or .git is missing (the Docker build stage copies only
 * src/ and the package files) the file says "unknown" and the build goes on. Without the file
 * (tests compiling src/ to a temp dir, vitest running src/) the revision is asked of git at run
 * time when the package root is a checkout, else "unknown".
 */
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { VERSION } from './common.js';

export interface BuildInfo {
  version: string;
  revision: string;
  /** process.version, e.g. v20.19.0. */
  nodeVersion: string;
}

/** dist/build-info.json beside dist/cli/ (src/build-info.json under vitest: absent). */
const INFO_FILE = new URL('../build-info.json', import.meta.url);
/** The package root (dist/cli/../../ or src/cli/../../). */
const ROOT = new URL('../../', import.meta.url);

/** `git rev-parse --short HEAD` in `dir`, or "unknown" (no git, not a checkout, any error). */
export function gitRevision(dir: string): string {
  if (!existsSync(`${dir}/.git`)) return 'unknown';
  try {
    const out = execFileSync('git', ['-C', dir, 'rev-parse', '--short', 'HEAD'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'], timeout: 2000 }).trim();
    return /^[0-9a-f]{4,40}$/.test(out) ? out : 'unknown';
  } catch {
    return 'unknown';
  }
}

let cached: BuildInfo | null = null;

/** The build's info, read once (the file, else git at run time, else "unknown"). */
export function buildInfo(): BuildInfo {
  if (cached) return cached;
  let revision: string | null = null;
  try {
    const r = JSON.parse(readFileSync(INFO_FILE, 'utf8')).revision;
    if (typeof r === 'string' && r !== '') revision = r;
  } catch {
    // No file: not built with `npm run build`.
  }
  cached = { version: VERSION, revision: revision ?? gitRevision(fileURLToPath(ROOT)), nodeVersion: process.version };
  return cached;
}

/** The two lines of `--version`, as Prometheus exporters print them (runtime: node, not go). */
export function versionText(info: BuildInfo = buildInfo()): string {
  return `keepalive-exporter, version ${info.version} (revision: ${info.revision})\n`
    + `  node: ${info.nodeVersion}, platform: ${process.platform}/${process.arch}\n`;
}

/** Writes dist/build-info.json; run by `npm run build` after tsc. Never fails the build. */
export function writeBuildInfo(): BuildInfo {
  const info = { version: VERSION, revision: gitRevision(fileURLToPath(ROOT)), nodeVersion: process.version };
  writeFileSync(INFO_FILE, `${JSON.stringify({ version: info.version, revision: info.revision })}\n`);
  return info;
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  const info = writeBuildInfo();
  process.stdout.write(`build-info: ${fileURLToPath(INFO_FILE)} revision ${info.revision}\n`);
}
