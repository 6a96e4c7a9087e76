// Launching a trainer through the shepherd, and reading back what the shepherd records.
//
// The service never pipes the trainer: it starts a detached shepherd (shepherd.mjs) that
// runs the trainer and writes everything to files in the run directory. The service can
// crash, restart, and re-attach by tailing output.jsonl again from the last seq it
// consumed. Files of a run directory:
//   launch.json   what to run (written here)
//   trainer.json  {pid, startTime} of the trainer (shepherd, right after spawn)
//   output.jsonl  one {"seq","stream","line","t"} per output line (shepherd)
//   exit.json     {code, signal, endedAt[, error]} (shepherd, after all output)
//   shepherd.log  the shepherd's own problems, if any
import { spawn } from 'node:child_process';
import { existsSync, watch, type FSWatcher } from 'node:fs';
import * as fsp from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

export interface LaunchSpec {
  runDir: string;
  argv: string[];
  env: Record<string, string>;
  cwd: string;
  /** Longer lines are cut, with a `… [cut N bytes]` marker. Default 16 KiB. */
  maxLineBytes?: number;
  /** Plain log lines beyond this per second are dropped (protocol lines never). Default 500. */
  maxLinesPerSecond?: number;
}

export interface LaunchFile {
  argv: string[];
  env: Record<string, string>;
  cwd: string;
  maxLineBytes: number;
  maxLinesPerSecond: number;
}

export interface TrainerInfo {
  pid: number;
  /** /proc/<pid>/stat field 22; '' if it could not be read (not Linux). */
  startTime: string;
}

export interface OutputLine {
  seq: number;
  stream: 'stdout' | 'stderr';
  line: string;
  /** Epoch ms at which the shepherd read the line. */
  t: number;
}

export interface ExitInfo {
  code: number | null;
  signal: string | null;
  /** Set when the trainer could not be started at all ("spawn failed: ..."). */
  error?: string;
  endedAt: number;
}

export const DEFAULT_MAX_LINE_BYTES = 16 * 1024;
export const DEFAULT_MAX_LINES_PER_SECOND = 500;

export const FILES = {
  launch: 'launch.json',
  trainer: 'trainer.json',
  output: 'output.jsonl',
  exit: 'exit.json',
  shepherdLog: 'shepherd.log',
} as const;

/** Absolute path of the shepherd script. */
export const SHEPHERD_PATH = fileURLToPath(new URL('./shepherd.mjs', import.meta.url));

async function writeJsonAtomic(file: string, value: unknown): Promise<void> {
  const tmp = `${file}.tmp-${process.pid}`;
  const handle = await fsp.open(tmp, 'w');
  try {
    await handle.writeFile(`${JSON.stringify(value)}\n`);
    await handle.sync();
  } finally {
    await handle.close();
  }
  await fsp.rename(tmp, file);
}

/**
 * Writes launch.json into a fresh run directory (created if missing; refused if it
 * already holds a run) and starts the shepherd detached, with stdio ignored and unref'ed,
 * so that it survives this process. Resolves once the shepherd process exists; use
 * `waitForTrainerInfo` to learn whether the trainer itself started.
 */
export async function launchShepherd(spec: LaunchSpec): Promise<{ shepherdPid: number }> {
  if (spec.argv.length === 0) throw new Error('launchShepherd: argv is empty');
  await fsp.mkdir(spec.runDir, { recursive: true });
  for (const name of [FILES.launch, FILES.output, FILES.exit, FILES.trainer]) {
    if (existsSync(join(spec.runDir, name))) {
      throw new Error(`launchShepherd: run directory ${spec.runDir} was already used (${name})`);
    }
  }
  const launch: LaunchFile = {
    argv: spec.argv,
    env: spec.env,
    cwd: spec.cwd,
    maxLineBytes: spec.maxLineBytes ?? DEFAULT_MAX_LINE_BYTES,
    maxLinesPerSecond: spec.maxLinesPerSecond ?? DEFAULT_MAX_LINES_PER_SECOND,
  };
  await writeJsonAtomic(join(spec.runDir, FILES.launch), launch);

  const child = spawn(process.execPath, [SHEPHERD_PATH, spec.runDir], {
    cwd: spec.runDir,
    detached: true,
    stdio: 'ignore',
  });
  await new Promise<void>((resolve, reject) => {
    child.once('spawn', () => resolve());
    child.once('error', reject);
  });
  child.unref();
  if (child.pid === undefined) throw new Error('launchShepherd: shepherd has no pid');
  return { shepherdPid: child.pid };
}

/**
 * A launch.json whose shepherd never started (the service died between writing it and starting
 * the shepherd, or the shepherd died before spawning anything) is removed, so the run folder can
 * be launched again. Only when nothing else of a run is there; call it only when no shepherd of
 * the folder is alive. Returns whether it removed one.
 */
export async function discardUnstartedLaunch(runDir: string): Promise<boolean> {
  if (!existsSync(join(runDir, FILES.launch))) return false;
  for (const name of [FILES.trainer, FILES.exit, FILES.output]) if (existsSync(join(runDir, name))) return false;
  await fsp.rm(join(runDir, FILES.launch), { force: true });
  return true;
}

async function readJson<T>(file: string): Promise<T | null> {
  let text: string;
  try {
    text = await fsp.readFile(file, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw err;
  }
  try {
    return JSON.parse(text) as T;
  } catch {
    return null; // files are renamed into place whole; treat garbage as absent
  }
}

/** exit.json of a run, or null while the trainer has not ended. */
export async function readExit(runDir: string): Promise<ExitInfo | null> {
  return readJson<ExitInfo>(join(runDir, FILES.exit));
}

/** trainer.json of a run, or null before the trainer was spawned. */
export async function readTrainerInfo(runDir: string): Promise<TrainerInfo | null> {
  const raw = await readJson<{ pid: number; startTime: string | null }>(
    join(runDir, FILES.trainer),
  );
  if (!raw || !Number.isInteger(raw.pid)) return null;
  return { pid: raw.pid, startTime: raw.startTime ?? '' };
}

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/**
 * Waits until the shepherd reports the trainer's pid (trainer.json), or that it could not
 * start it (exit.json without trainer.json), or `timeoutMs` passes.
 */
export async function waitForTrainerInfo(
  runDir: string,
  timeoutMs: number,
): Promise<TrainerInfo | { error: string }> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const info = await readTrainerInfo(runDir);
    if (info) return info;
    const exit = await readExit(runDir);
    if (exit) {
      // trainer.json is written before exit.json whenever the trainer was spawned.
      const again = await readTrainerInfo(runDir);
      if (again) return again;
      return { error: exit.error ?? 'trainer exited before it was recorded' };
    }
    if (Date.now() >= deadline) {
      return { error: `shepherd did not report the trainer within ${timeoutMs} ms` };
    }
    await sleep(20);
  }
}

export interface RunTailerOptions {
  /** Poll interval; fs.watch only speeds things up. Default 50 ms. */
  pollMs?: number;
}

/**
 * Tails output.jsonl of a run, delivering lines with seq > fromSeq to `onLine`, in order,
 * one at a time (each call awaited). `exited` resolves with exit.json only after exit.json
 * exists AND every line of output.jsonl was delivered. If `onLine` throws, tailing stops
 * and `exited` rejects with that error. `stop()` ends tailing; `exited` then stays
 * pending. A stopped tailer cannot be restarted: create a new one from the last seq seen.
 */
export class RunTailer {
  readonly exited: Promise<ExitInfo>;
  private readonly file: string;
  private readonly pollMs: number;
  private offset = 0;
  private lastSeq: number;
  private started = false;
  private stopped = false;
  private running = false;
  private rerun = false;
  private timer: NodeJS.Timeout | null = null;
  private watcher: FSWatcher | null = null;
  private resolveExited!: (e: ExitInfo) => void;
  private rejectExited!: (err: unknown) => void;

  constructor(
    private readonly runDir: string,
    fromSeq: number,
    private readonly onLine: (l: OutputLine) => void | Promise<void>,
    opts: RunTailerOptions = {},
  ) {
    this.file = join(runDir, FILES.output);
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
    const drained = await this.drain();
    if (this.stopped) return null;
    return exit && drained ? exit : null;
  }

  /** Delivers complete lines from `offset` to EOF; true if nothing is left unread. */
  private async drain(): Promise<boolean> {
    let handle: fsp.FileHandle;
    try {
      handle = await fsp.open(this.file, 'r');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return true;
      throw err;
    }
    try {
      const chunk = Buffer.alloc(1 << 20);
      let carry: Buffer = Buffer.alloc(0);
      for (;;) {
        const { bytesRead } = await handle.read(chunk, 0, chunk.length, this.offset + carry.length);
        if (bytesRead === 0) {
          // A partial last line (shepherd mid-write) stays unread until it is complete.
          return carry.length === 0;
        }
        const data: Buffer = carry.length
          ? Buffer.concat([carry, chunk.subarray(0, bytesRead)])
          : chunk.subarray(0, bytesRead);
        let start = 0;
        for (;;) {
          const nl = data.indexOf(0x0a, start);
          if (nl < 0) break;
          const raw = data.subarray(start, nl);
          start = nl + 1;
          const rec = parseRecord(raw);
          if (rec && rec.seq > this.lastSeq) {
            if (this.stopped) return false;
            await this.onLine(rec);
            this.lastSeq = rec.seq;
          }
          this.offset += raw.length + 1;
        }
        carry = Buffer.from(data.subarray(start));
      }
    } finally {
      await handle.close();
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
