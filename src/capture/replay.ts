/**
 * Replaying a capture file into a sink, as fast as it reads or at the pace it was captured.
 * At capture pace, packets are copied into a bounded queue and released when the wall clock
 * reaches their capture time; the reader waits while the queue is full.
 *
 * An abort signal stops a replay at its next chunk or timer tick (the daemon's SIGTERM must not
 * wait for a long capture to play out), and destroys the input stream, so a FIFO or stdin that
 * stays open and silent ends too: the promise then rejects with the signal's reason.
 */
import { readCapture, type CaptureSummary } from './file.js';
import type { PacketSink } from './reader.js';

export type ReplayMode = 'fast' | 'realtime';

/** Packets held ahead of the wall clock at capture pace: bounded memory for any file. */
const MAX_QUEUED_PACKETS = 50_000;

interface Queued {
  linkType: number;
  data: Buffer;
  origLen: number;
  ts: number;
}

export interface ReplayOptions {
  signal?: AbortSignal;
}

export async function replayFile(path: string, sink: PacketSink, mode: ReplayMode, opts: ReplayOptions = {}): Promise<CaptureSummary> {
  const { signal } = opts;
  signal?.throwIfAborted();
  if (mode === 'fast') {
    const summary = await readCapture(path, sink, signal ? { signal, afterChunk: () => (signal.aborted ? Promise.reject(signal.reason) : Promise.resolve()) } : {});
    signal?.throwIfAborted();
    return summary;
  }
  const queue: Queued[] = [];
  let head = 0;
  let firstTs = -1;
  let wallStart = 0;
  let wake: (() => void) | null = null;

  const release = (): void => {
    const elapsed = (Date.now() - wallStart) / 1000;
    while (head < queue.length && queue[head].ts - firstTs <= elapsed) {
      const q = queue[head++];
      sink.packet(q.linkType, q.data, 0, q.data.length, q.origLen, q.ts);
    }
    if (head > 1024 && head * 2 > queue.length) {
      queue.splice(0, head);
      head = 0;
    }
  };
  const onAbort = (): void => {
    clearInterval(timer);
    const w = wake;
    wake = null;
    w?.();
  };
  signal?.addEventListener('abort', onAbort, { once: true });
  const timer = setInterval(() => {
    release();
    if (wake && queue.length - head < MAX_QUEUED_PACKETS / 2) {
      const w = wake;
      wake = null;
      w();
    }
  }, 10);
  try {
    const summary = await readCapture(path, {
      packet(linkType, data, offset, capLen, origLen, ts) {
        if (firstTs < 0) {
          firstTs = ts;
          wallStart = Date.now();
        }
        queue.push({ linkType, data: Buffer.from(data.subarray(offset, offset + capLen)), origLen, ts });
      },
      // Told at once, not at capture pace: it is about the file, not a packet.
      captureAnomaly: (kind) => sink.captureAnomaly?.(kind),
    }, {
      signal,
      afterChunk: async () => {
        signal?.throwIfAborted();
        if (queue.length - head >= MAX_QUEUED_PACKETS) await new Promise<void>((r) => { wake = r; });
        signal?.throwIfAborted();
      },
    });
    // Let the rest play out at its pace.
    while (head < queue.length && !signal?.aborted) {
      await new Promise<void>((r) => { wake = r; });
      if (!signal?.aborted) release();
    }
    signal?.throwIfAborted();
    return summary;
  } finally {
    clearInterval(timer);
    signal?.removeEventListener('abort', onAbort);
  }
}
