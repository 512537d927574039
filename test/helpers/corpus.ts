/**
 * The third-party capture corpus (`../shared/corpus`, beside the repository: see its README).
 * It is not part of the repository: where it is absent (a bare clone), the tests that read it
 * are skipped and say so; where it is present, they require all of it.
 */
import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';

export const CORPUS = join(import.meta.dirname, '../../../shared/corpus');
export const CORPUS_PRESENT = existsSync(CORPUS);

/** Absolute paths of the corpus captures, sorted; gzipped ones too unless `gz` is false. */
export function corpusFiles(gz = true): string[] {
  if (!CORPUS_PRESENT) return [];
  const re = gz ? /\.pcap(ng)?(\.gz)?$/ : /\.pcap(ng)?$/;
  return readdirSync(CORPUS).filter((f) => re.test(f)).sort().map((f) => join(CORPUS, f));
}
