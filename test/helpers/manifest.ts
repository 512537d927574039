/**
 * The manifests of the real-server fixtures (test/fixtures/real, test/fixtures/servers): what
 * the analyzer must report for every connection of a capture, written by each fixture's
 * generator after its independent checker (test/fixtures/real/check-capture.mjs) verified every
 * entry against the wire.
 */
import { expect } from 'vitest';
import { analyzeFile } from './engine.js';

export interface ManifestEntry {
  scenario: string;
  server: string;
  client: string;
  expectedReason: string;
  expectedClosedBy: 'client' | 'server';
  expectedRequests: number;
}

/** Every connection of the capture gets its entry's reason, closing side and request count, and nothing else is reported. */
export async function expectManifest(pcap: string, manifest: ManifestEntry[]): Promise<void> {
  const facts = await analyzeFile(pcap);
  expect(facts.capture.problem).toBeNull();
  const byTuple = new Map(facts.closed.map((c) => [`${c.client}>${c.server}`, c]));
  const got = manifest.map((e) => {
    const c = byTuple.get(`${e.client}>${e.server}`);
    return { scenario: e.scenario, server: e.server, client: e.client, reason: c?.closeReason, closedBy: c?.closedBy, requests: c?.requests };
  });
  const want = manifest.map((e) => ({
    scenario: e.scenario, server: e.server, client: e.client, reason: e.expectedReason, closedBy: e.expectedClosedBy, requests: e.expectedRequests,
  }));
  expect(got).toEqual(want);
  // Nothing else was reported: every connection in the capture is in the manifest.
  expect(facts.closed.length).toBe(manifest.length);
}
