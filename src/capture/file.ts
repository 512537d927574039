/**
 * Reading a capture from a file path or `-` (stdin), gzip-compressed or not.
 * Compression is recognised by its magic number, not the file name.
 */
import { createReadStream, open as openFd, closeSync, constants as fsConstants } from 'node:fs';
import { access, open, stat, type FileHandle } from 'node:fs/promises';
import { Socket } from 'node:net';
import { createGunzip, gunzipSync, constants as zlibConstants } from 'node:zlib';
import { Readable, pipeline } from 'node:stream';
import { CaptureDecoder, type CaptureFormat, type CaptureProblem, type PacketSink } from './reader.js';

/** Reads of 1 MiB: measured 30% faster than fs streams' 64 KiB default on large captures. */
const READ_CHUNK = 1024 * 1024;

export interface CaptureSummary {
  format: CaptureFormat | null;
  compressed: boolean;
  packets: number;
  snaplenCut: number;
  unknownBlocks: number;
  /** Bytes of capture data consumed (after decompression). */
  bytes: number;
  problem: CaptureProblem | null;
}

export interface ReadOptions {
  /** Called after each chunk with compressed bytes read so far and the file size (0 for stdin). */
  onProgress?: (bytesRead: number, totalBytes: number) => void;
  /**
   * Awaited after each chunk was decoded, before the next is taken: back-pressure for a sink
   * that paces packets (replay at capture speed). The sink must copy what it keeps.
   */
  afterChunk?: () => Promise<void>;
  /**
   * Aborting destroys the input stream, so a read waiting on a FIFO or stdin that stays open
   * and silent ends at once (the daemon's SIGTERM, analyze's Ctrl-C); a regular file stops at
   * its next chunk. The read then returns what it had: `problem` is only a damage found before
   * the abort (the record cut by the abort is none), and the caller checks the signal.
   */
  signal?: AbortSignal;
}

/**
 * True when nothing of a capture could be read: no packet, and the problem is at byte 0 (not a
 * capture format, empty, shorter than its file header, a corrupt first block). A user mistake
 * (the wrong file), so the CLI says it in one line and exits 2 rather than report on nothing.
 */
export function readNothing(s: Pick<CaptureSummary, 'packets' | 'problem'>): boolean {
  return s.packets === 0 && s.problem !== null && s.problem.offset === 0;
}

/** A damaged capture is counted by the sink once, at the end of the read (see PacketSink.captureAnomaly). */
function tellProblem(sink: PacketSink, problem: CaptureProblem | null): void {
  if (problem?.kind === 'truncated') sink.captureAnomaly?.('capture_truncated');
  else if (problem?.kind === 'corrupt') sink.captureAnomaly?.('capture_corrupt');
}

/** Thrown (as the only exception of this module) when the file cannot be opened at all: a user error. */
export class CaptureOpenError extends Error {}

export async function readCapture(path: string, sink: PacketSink, opts: ReadOptions = {}): Promise<CaptureSummary> {
  let total = 0;
  let regular = false;
  let fifo = false;
  let input: Readable;
  if (path === '-') {
    input = process.stdin;
  } else {
    try {
      const st = await stat(path);
      if (st.isDirectory()) throw new CaptureOpenError(`${path} is a directory, not a capture file`);
      total = st.size;
      regular = st.isFile();
      fifo = st.isFIFO();
    } catch (err) {
      if (err instanceof CaptureOpenError) throw err;
      throw new CaptureOpenError(describeOpenError(path, err as NodeJS.ErrnoException));
    }
    // Positioned reads need a regular file: a FIFO, <(process substitution) or /dev/stdin cannot seek.
    const plain = regular ? await readPlainFile(path, sink, total, opts) : null;
    if (plain) return plain;
    input = fifo ? await openFifo(path) : createReadStream(path, { highWaterMark: READ_CHUNK });
  }
  return readCaptureStream(input, sink, { ...opts, totalBytes: total, name: path });
}

/**
 * An uncompressed regular file is read into two reused buffers, the next read in flight while
 * the current one is decoded. Streams would allocate a fresh external buffer per chunk, and
 * that external memory is what drives most garbage collections on a large capture.
 * Returns null for gzip input (left to the stream path).
 */
async function readPlainFile(path: string, sink: PacketSink, total: number, opts: ReadOptions): Promise<CaptureSummary | null> {
  let fh: FileHandle;
  try {
    fh = await open(path, 'r');
  } catch (err) {
    throw new CaptureOpenError(describeOpenError(path, err as NodeJS.ErrnoException));
  }
  const decoder = new CaptureDecoder(sink);
  let problem: CaptureProblem | null = null;
  try {
    const bufs = [Buffer.allocUnsafeSlow(READ_CHUNK), Buffer.allocUnsafeSlow(READ_CHUNK)];
    let which = 0;
    let pos = 0;
    let next = fh.read(bufs[0], 0, READ_CHUNK, 0);
    let first = true;
    for (;;) {
      let n: number;
      try {
        n = (await next).bytesRead;
      } catch (err) {
        problem = { kind: 'truncated', offset: decoder.offset, message: `read error after byte offset ${decoder.offset}: ${(err as Error).message}` };
        break;
      }
      if (n === 0) break;
      const cur = bufs[which];
      if (first) {
        first = false;
        if (n >= 2 && cur[0] === 0x1f && cur[1] === 0x8b) return null; // gzip: use the stream path
      }
      pos += n;
      which ^= 1;
      next = fh.read(bufs[which], 0, READ_CHUNK, pos);
      const ok = decoder.push(cur.subarray(0, n));
      opts.onProgress?.(pos, total);
      if (opts.afterChunk) await opts.afterChunk();
      if (!ok || opts.signal?.aborted) {
        await next.catch(() => undefined);
        break;
      }
    }
  } finally {
    await fh.close();
  }
  problem = opts.signal?.aborted ? decoder.problem : decoder.problem ?? problem ?? decoder.end();
  if (!readNothing({ packets: decoder.packets, problem })) tellProblem(sink, problem);
  return {
    format: decoder.format,
    compressed: false,
    packets: decoder.packets,
    snaplenCut: decoder.snaplenCut,
    unknownBlocks: decoder.unknownBlocks,
    bytes: decoder.offset,
    problem,
  };
}

/**
 * A FIFO (or a pipe named by path: <(...), /dev/stdin) read as a socket: fs streams read it on
 * a libuv thread, blocked until data comes, and such a read cannot be cancelled (it held the
 * daemon up after SIGTERM while the writer stayed silent). A socket reads it in the event loop
 * and closes at once.
 */
async function openFifo(path: string): Promise<Readable> {
  let fd: number;
  try {
    // O_NONBLOCK: the open returns at once, and epoll reports nothing until a writer came (Linux
    // remembers the writer count at open), so the read still waits for a writer. A blocking open
    // would wait in a thread that no abort, not even process.exit (it joins the threads), ends.
    fd = await new Promise<number>((resolve, reject) => openFd(path, fsConstants.O_RDONLY | fsConstants.O_NONBLOCK, (err, n) => (err ? reject(err) : resolve(n))));
  } catch (err) {
    throw new CaptureOpenError(describeOpenError(path, err as NodeJS.ErrnoException));
  }
  try {
    return new Socket({ fd, readable: true, writable: false });
  } catch (err) {
    closeSync(fd);
    throw new CaptureOpenError(`cannot read ${path}: ${(err as Error).message}`);
  }
}

export async function readCaptureStream(
  input: Readable,
  sink: PacketSink,
  opts: ReadOptions & { totalBytes?: number; name?: string } = {},
): Promise<CaptureSummary> {
  const decoder = new CaptureDecoder(sink);
  let compressed = false;
  let raw = 0;
  let streamError: CaptureProblem | null = null;
  const onAbort = (): void => { input.destroy(); };
  if (opts.signal?.aborted) onAbort();
  else opts.signal?.addEventListener('abort', onAbort, { once: true });
  const source = input[Symbol.asyncIterator]() as AsyncIterator<Buffer>;
  // Count compressed bytes as they are read, for progress.
  async function* counted(first: Buffer): AsyncGenerator<Buffer> {
    raw += first.length;
    yield first;
    for (let r = await source.next(); !r.done; r = await source.next()) {
      raw += r.value.length;
      yield r.value;
    }
  }
  try {
    const head = await source.next();
    if (!head.done) {
      // The gzip magic is two bytes; a stream (a pipe) may deliver a first chunk of one byte.
      let first: Buffer = head.value;
      while (first.length < 2) {
        const more = await source.next();
        if (more.done) break;
        first = Buffer.concat([first, more.value]);
      }
      let chunks: AsyncIterable<Buffer>;
      if (first.length >= 2 && first[0] === 0x1f && first[1] === 0x8b) {
        compressed = true;
        const gz = createGunzip({ chunkSize: READ_CHUNK });
        pipeline(Readable.from(counted(first)), gz, () => {});
        chunks = gz;
      } else chunks = counted(first);
      for await (const chunk of chunks) {
        if (!decoder.push(chunk)) break;
        opts.onProgress?.(raw, opts.totalBytes ?? 0);
        if (opts.afterChunk) await opts.afterChunk();
      }
    }
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    if (e.code === 'EACCES' || e.code === 'ENOENT' || e.code === 'EISDIR' || e.code === 'EPERM') {
      throw new CaptureOpenError(describeOpenError(opts.name ?? 'input', e));
    }
    streamError = {
      kind: 'truncated',
      offset: decoder.offset,
      message: compressed
        ? `the gzip stream is damaged or truncated (${e.message}); read ${decoder.offset} bytes of capture data before it`
        : `read error after byte offset ${decoder.offset}: ${e.message}`,
    };
  } finally {
    opts.signal?.removeEventListener('abort', onAbort);
    if (input !== process.stdin) input.destroy();
  }
  // Aborted: the stream was cut by us (its error, the record it cut, are not damage).
  const problem = opts.signal?.aborted ? decoder.problem : decoder.problem ?? streamError ?? decoder.end();
  if (!readNothing({ packets: decoder.packets, problem })) tellProblem(sink, problem);
  return {
    format: decoder.format,
    compressed,
    packets: decoder.packets,
    snaplenCut: decoder.snaplenCut,
    unknownBlocks: decoder.unknownBlocks,
    bytes: decoder.offset,
    problem,
  };
}

function describeOpenError(path: string, e: NodeJS.ErrnoException): string {
  switch (e.code) {
    case 'ENOENT':
      return `cannot read ${path}: no such file (check the path)`;
    case 'EACCES':
    case 'EPERM':
      return `cannot read ${path}: permission denied (run as a user who can read it, or fix its mode)`;
    case 'EISDIR':
      return `${path} is a directory, not a capture file`;
    default:
      return `cannot read ${path}: ${e.message}`;
  }
}

/** Bytes read by `checkCapture`: enough for any file header and a first record or block. */
const PEEK_BYTES = 64 * 1024;

/**
 * Checks before a long-running read starts (the daemon, before it says it is listening) that
 * `path` can be read and starts like a capture. Returns one line naming the problem, or null.
 * A regular file (gzip too) is opened and its first PEEK_BYTES are decoded, so "not a capture",
 * "shorter than its header" and a corrupt first block are found; the file is read again from
 * the start by readCapture. Stdin (`-`) and FIFOs cannot be peeked without consuming what the
 * real read must see: only their existence and read permission are checked.
 */
export async function checkCapture(path: string): Promise<string | null> {
  if (path === '-') return null;
  let size: number;
  try {
    const st = await stat(path);
    if (st.isDirectory()) return `${path} is a directory, not a capture file`;
    if (!st.isFile()) {
      await access(path, fsConstants.R_OK);
      return null;
    }
    size = st.size;
  } catch (err) {
    return describeOpenError(path, err as NodeJS.ErrnoException);
  }
  let head: Buffer;
  try {
    const fh = await open(path, 'r');
    try {
      const buf = Buffer.alloc(Math.min(PEEK_BYTES, size));
      const { bytesRead } = await fh.read(buf, 0, buf.length, 0);
      head = buf.subarray(0, bytesRead);
    } finally {
      await fh.close();
    }
  } catch (err) {
    return describeOpenError(path, err as NodeJS.ErrnoException);
  }
  let whole = head.length >= size;
  if (head.length >= 2 && head[0] === 0x1f && head[1] === 0x8b) {
    try {
      // Z_SYNC_FLUSH: a prefix of a gzip stream decompresses to what it holds, without an error for the cut.
      head = gunzipSync(head, { finishFlush: zlibConstants.Z_SYNC_FLUSH });
    } catch (err) {
      return `${path}: the gzip stream is damaged (${(err as Error).message})`;
    }
    whole = false; // a gzip's end is checked by the real read
  }
  const decoder = new CaptureDecoder({ packet() {} });
  decoder.push(head);
  const problem = decoder.problem ?? (whole ? decoder.end() : null);
  return readNothing({ packets: decoder.packets, problem }) ? `${path}: ${problem!.message}` : null;
}
