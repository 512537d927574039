/** Runs the engine over a capture file and collects its facts, as every consumer sees them. */
import { Engine, type EngineOptions } from '../../src/conn/engine.js';
import { readCapture, type CaptureSummary } from '../../src/capture/file.js';
import type { ConnectionRecord, RequestRecord } from '../../src/conn/records.js';

export interface Facts {
  capture: CaptureSummary;
  engine: Engine;
  opened: ConnectionRecord[];
  closed: ConnectionRecord[];
  requests: Array<{ conn: ConnectionRecord; req: RequestRecord }>;
  responses: Array<{ conn: ConnectionRecord; req: RequestRecord }>;
}

export async function analyzeFile(path: string, opts: EngineOptions = {}): Promise<Facts> {
  const engine = new Engine(opts);
  const facts: Omit<Facts, 'capture'> = { engine, opened: [], closed: [], requests: [], responses: [] };
  engine.subscribe({
    opened: (c) => facts.opened.push(c),
    closed: (c) => facts.closed.push(c),
    request: (conn, req) => facts.requests.push({ conn, req }),
    response: (conn, req) => facts.responses.push({ conn, req }),
  });
  const capture = await readCapture(path, engine);
  engine.finish();
  return { capture, ...facts };
}
