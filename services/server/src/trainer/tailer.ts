// Following a run's output: tailing output.jsonl from the last seq consumed, to exit.json.
import { closeSync, existsSync, openSync, readSync, watch, type FSWatcher } from 'node:fs';
import { join } from 'node:path';
import { FILES, readExit, type ExitInfo, type OutputLine } from './run-folder';

export interface RunTailerOptions {
  /** Poll interval; fs.watch only speeds things up. Default 50 ms. */
  pollMs?: number;
}

/**
 * Tails output.jsonl of a run, delivering lines with seq > fromSeq to `onLine`, in order,
 * one at a time (each call awaited), each with whether exit.json was there when it was read
 * (`final`: what follows is the rest of the last lines, then the exit). `exited` resolves with
 * exit.json only after exit.json exists AND every line of output.jsonl was delivered. If `onLine` throws, tailing stops
 * and `exited` rejects with that error. `stop()` ends tailing; `exited` then stays
 * pending. A stopped tailer cannot be restarted: create a new one from the last seq seen.
 */
export class RunTailer {
  readonly exited: Promise<ExitInfo>;
  private readonly file: string;
  private readonly exitFile: string;
  private readonly pollMs: number;
  private offset = 0;
  private lastSeq: number;
  private started = false;
  private stopped = false;
  private running = false;
  private rerun = false;
  private timer: NodeJS.Timeout | null = null;
  private watcher: FSWatcher | null = null;
  /** Read buffer, reused from pass to pass. */
  private chunk: Buffer | null = null;
  private resolveExited!: (e: ExitInfo) => void;
  private rejectExited!: (err: unknown) => void;

  constructor(
    private readonly runDir: string,
    fromSeq: number,
    private readonly onLine: (l: OutputLine, final: boolean) => void | Promise<void>,
    opts: RunTailerOptions = {},
  ) {
    this.file = join(runDir, FILES.output);
    this.exitFile = join(runDir, FILES.exit);
    this.lastSeq = fromSeq;
    this.pollMs = opts.pollMs ?? 50;
    this.exited = new Promise<ExitInfo>((resolve, reject) => {
      this.resolveExited = resolve;
      this.rejectExited = reject;
    });
    // Callers that never look at `exited` must not get an unhandled rejection.
    this.exited.catch(() => {});
  }

  /** Seq of the last line delivered (or fromSeq). */
  get lastDeliveredSeq(): number {
    return this.lastSeq;
  }

  start(): void {
    if (this.started) throw new Error('RunTailer already started');
    this.started = true;
    try {
      this.watcher = watch(this.runDir, () => this.kick());
      this.watcher.on('error', () => this.closeWatcher());
    } catch {
      this.watcher = null; // polling alone is enough
    }
    this.kick();
  }

  stop(): void {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    this.closeWatcher();
  }

  private closeWatcher(): void {
    try {
      this.watcher?.close();
    } catch {
      // ignore
    }
    this.watcher = null;
  }

  /** Runs a pass now, or right after the one in progress. */
  private kick(): void {
    if (this.stopped) return;
    if (this.running) {
      this.rerun = true;
      return;
    }
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    this.running = true;
    void this.pass().then(
      (exit) => {
        this.running = false;
        if (this.stopped) return;
        if (exit) {
          this.stop();
          this.resolveExited(exit);
          return;
        }
        if (this.rerun) {
          this.rerun = false;
          this.kick();
        } else {
          this.timer = setTimeout(() => this.kick(), this.pollMs);
        }
      },
      (err: unknown) => {
        this.running = false;
        if (this.stopped) return;
        this.stop();
        this.rejectExited(err);
      },
    );
  }

  /** One pass: deliver whatever is complete; returns exit.json if the run is fully read. */
  private async pass(): Promise<ExitInfo | null> {
    // Read exit.json BEFORE the output: the shepherd writes all output before exit.json,
    // so if it exists now, reading output to EOF below sees every line.
    const exit = await readExit(this.runDir);
    const drained = await this.drain(exit !== null);
    if (this.stopped) return null;
    return exit && drained ? exit : null;
  }

  /**
   * Delivers complete lines from `offset` to EOF; true if nothing is left unread. `exitSeen`:
   * exit.json was there before the read began; if not, it is looked for again before the first
   * line is delivered (the shepherd writes a trainer's last lines and its exit moments apart).
   */
  private async drain(exitSeen: boolean): Promise<boolean> {
    let final: boolean | null = exitSeen || null;
    let fd: number;
    try {
      fd = openSync(this.file, 'r');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return true;
      throw err;
    }
    try {
      this.chunk ??= Buffer.allocUnsafe(1 << 20);
      const chunk = this.chunk;
      let carry: Buffer = Buffer.alloc(0);
      for (;;) {
        const bytesRead = readSync(fd, chunk, 0, chunk.length, this.offset + carry.length);
        if (bytesRead === 0) {
          // A partial last line (shepherd mid-write) stays unread until it is complete.
          return carry.length === 0;
        }
        const data: Buffer = carry.length ? Buffer.concat([carry, chunk.subarray(0, bytesRead)]) : chunk.subarray(0, bytesRead);
        let start = 0;
        for (;;) {
          const nl = data.indexOf(0x0a, start);
          if (nl < 0) break;
          const raw = data.subarray(start, nl);
          start = nl + 1;
          const rec = parseRecord(raw);
          if (rec && rec.seq > this.lastSeq) {
            if (this.stopped) return false;
            final ??= existsSync(this.exitFile);
            await this.onLine(rec, final);
            this.lastSeq = rec.seq;
          }
          this.offset += raw.length + 1;
        }
        // Copied: the next read reuses `chunk`.
        carry = Buffer.from(data.subarray(start));
      }
    } finally {
      closeSync(fd);
    }
  }
}

function parseRecord(raw: Buffer): OutputLine | null {
  if (raw.length === 0) return null;
  try {
    const v = JSON.parse(raw.toString('utf8')) as Partial<OutputLine>;
    if (
      typeof v.seq === 'number' &&
      (v.stream === 'stdout' || v.stream === 'stderr') &&
      typeof v.line === 'string' &&
      typeof v.t === 'number'
    ) {
      return { seq: v.seq, stream: v.stream, line: v.line, t: v.t };
    }
  } catch {
    // a complete line is always valid JSON; skip anything else
  }
  return null;
}
