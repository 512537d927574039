/**
 * The CLI compiled from the current sources into a temp dir, for tests that run it as a program:
 * they never depend on a stale `dist/`. Beside it: the real package.json (`--version` reads it,
 * and it makes dist/ ESM) and a link to node_modules (fastify, prom-client).
 */
import { spawnSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdtempSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const ROOT = join(import.meta.dirname, '../..');

/** Compiles src/ into a new temp dir named after `prefix`; throws when no main.js came out. */
export function buildCli(prefix: string): { dir: string; main: string } {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  copyFileSync(join(ROOT, 'package.json'), join(dir, 'package.json'));
  symlinkSync(join(ROOT, 'node_modules'), join(dir, 'node_modules'), 'dir');
  const r = spawnSync(process.execPath, [join(ROOT, 'node_modules/typescript/bin/tsc'), '-p', join(ROOT, 'tsconfig.build.json'), '--outDir', join(dir, 'dist')], { cwd: ROOT, encoding: 'utf8' });
  const main = join(dir, 'dist/cli/main.js');
  // tsc emits even when part of src/ has a type error (npm test type-checks separately).
  if (!existsSync(main)) throw new Error(`tsc produced no ${main}:\n${r.stdout}${r.stderr}`);
  return { dir, main };
}
