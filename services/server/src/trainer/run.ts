// Launching a trainer through the shepherd, and reading back what the shepherd records.
//
// The service never pipes the trainer: it starts a detached shepherd (shepherd.mjs) that
// runs the trainer and writes everything to files in the run directory. The service can
// crash, restart, and re-attach by tailing output.jsonl again from the last seq it
// consumed. Files of a run directory:
//   shepherd.json {pid, startTime} of the standby shepherd handed this run (written here,
//                 before launch.json; absent when a fresh shepherd was spawned for it)
//   launch.json   what to run (written here)
//   trainer.json  {pid, startTime} of the trainer (shepherd, right after spawn)
//   output.jsonl  one {"seq","stream","line","t"} per output line (shepherd)
//   exit.json     {code, signal, endedAt[, error]} (shepherd, after all output)
//   shepherd.log  the shepherd's own problems, if any
//
// A shepherd is either spawned for the run (`shepherd.mjs <runDir>`: its argv names the
// folder) or a standby started ahead of need (`shepherd.mjs --standby`, see StandbyShepherd)
// that is handed the folder over its stdin: that saves Node's start-up between two trainers.
import { spawn, type ChildProcess } from 'node:child_process';
import {
  chmodSync,
  closeSync,
  existsSync,
  fchmodSync,
  fsync,
  mkdirSync,
  openSync,
  readFileSync,
  readSync,
  renameSync,
  rmSync,
  watch,
  writeSync,
  type FSWatcher,
} from 'node:fs';
import { join, relative, sep } from 'node:path';
import { fileURLToPath } from 'node:url';
import { readProcessStartTime, SHEPHERD_FILE } from './proc';

export interface LaunchSpec {
  runDir: string;
  argv: string[];
  env: Record<string, string>;
  cwd: string;
  /** Longer lines are cut, with a `… [cut N bytes]` marker. Default 16 KiB. */
  maxLineBytes?: number;
  /** Plain log lines beyond this per second are dropped (protocol lines have their own limits). Default 500. */
  maxLinesPerSecond?: number;
  /** Protocol lines (a full parse decides) beyond this per second are dropped. Default: no limit. */
  maxProtocolLinesPerSecond?: number;
  /** Protocol lines beyond this many in the whole run are dropped. Default: no limit. */
  maxProtocolLinesPerTask?: number;
  /** Plain lines past this many bytes of output in the whole run are dropped. Default: no limit. */
  maxBytesPerTask?: number;
}

export interface LaunchFile {
  argv: string[];
  env: Record<string, string>;
  cwd: string;
  maxLineBytes: number;
  maxLinesPerSecond: number;
  maxProtocolLinesPerSecond?: number;
  maxProtocolLinesPerTask?: number;
  maxBytesPerTask?: number;
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
  shepherd: SHEPHERD_FILE,
  launch: 'launch.json',
  trainer: 'trainer.json',
  output: 'output.jsonl',
  exit: 'exit.json',
  shepherdLog: 'shepherd.log',
} as const;

/** Absolute path of the shepherd script. */
export const SHEPHERD_PATH = fileURLToPath(new URL('./shepherd.mjs', import.meta.url));

// File work on the path from one trainer's exit to the next one's start is done with the sync
// calls: small files on a local disk take microseconds, while each promise-based call is a
// round trip through libuv's thread pool, which on a busy machine costs a millisecond or more.
// Only fsync, which waits for the disk, stays off the event loop.

// Run folders hold a trainer's command line, environment and output: readable by the service's
// user only. Modes are set explicitly (chmod after mkdir, fchmod after open), whatever the umask.
export const PRIVATE_DIR_MODE = 0o700;
export const PRIVATE_FILE_MODE = 0o600;

/**
 * Creates `dir` (and what is missing above it) and makes every folder from `base` down to `dir`
 * private (0700). `dir` must be `base` or inside it.
 */
export function ensurePrivateDir(base: string, dir: string): void {
  mkdirSync(dir, { recursive: true, mode: PRIVATE_DIR_MODE });
  const rel = relative(base, dir);
  if (rel.startsWith('..')) throw new Error(`ensurePrivateDir: ${dir} is not inside ${base}`);
  let at = base;
  chmodSync(at, PRIVATE_DIR_MODE);
  for (const part of rel ? rel.split(sep) : []) {
    at = join(at, part);
    chmodSync(at, PRIVATE_DIR_MODE);
  }
}

/** Writes a file readable by this user only (created or replaced). */
export function writePrivateFile(file: string, data: string): void {
  const fd = openSync(file, 'w', PRIVATE_FILE_MODE);
  try {
    fchmodSync(fd, PRIVATE_FILE_MODE);
    const buf = Buffer.from(data);
    for (let off = 0; off < buf.length;) off += writeSync(fd, buf, off, buf.length - off);
  } finally {
    closeSync(fd);
  }
}

async function writeJsonAtomic(file: string, value: unknown, durable = true): Promise<void> {
  const tmp = `${file}.tmp-${process.pid}`;
  const fd = openSync(tmp, 'w', PRIVATE_FILE_MODE);
  try {
    fchmodSync(fd, PRIVATE_FILE_MODE);
    const buf = Buffer.from(`${JSON.stringify(value)}\n`);
    for (let off = 0; off < buf.length;) off += writeSync(fd, buf, off, buf.length - off);
    if (durable) await new Promise<void>((resolve, reject) => fsync(fd, (err) => (err ? reject(err) : resolve())));
  } finally {
    closeSync(fd);
  }
  renameSync(tmp, file);
}

/**
 * A shepherd started ahead of need (`shepherd.mjs --standby`), waiting for a run folder on its
 * stdin. Started detached like any shepherd (own session, so it outlives us once handed a run),
 * stdout/stderr ignored, stdin a pipe from us; the child and the pipe are unref'ed so a standby
 * never keeps this process alive. When this process exits or dies, the pipe closes and an
 * unused standby exits at once (see shepherd.mjs), so standbys are never left behind.
 */
export class StandbyShepherd {
  readonly pid: number;
  /** /proc start time, recorded in shepherd.json: a pid alone is not an identity. */
  readonly startTime: string;
  private used = false;

  private constructor(private readonly child: ChildProcess) {
    this.pid = child.pid!;
    this.startTime = readProcessStartTime(this.pid) ?? '';
  }

  /** Starts one; `cwd` is where it waits (the runs folder, so /proc tells whose it is). */
  static async start(cwd: string): Promise<StandbyShepherd> {
    const child = spawn(process.execPath, [SHEPHERD_PATH, '--standby'], {
      cwd,
      detached: true,
      stdio: ['pipe', 'ignore', 'ignore'],
    });
    await new Promise<void>((resolve, reject) => {
      child.once('spawn', () => resolve());
      child.once('error', reject);
    });
    child.unref();
    // A write to a standby that died is an EPIPE here; the runner learns of it from `gone`.
    child.stdin!.on('error', () => {});
    (child.stdin as unknown as { unref?: () => void }).unref?.();
    if (child.pid === undefined) throw new Error('StandbyShepherd: no pid');
    return new StandbyShepherd(child);
  }

  /** The process has ended (it is our child: we see its exit). */
  get gone(): boolean {
    return this.child.exitCode !== null || this.child.signalCode !== null;
  }

  /** Not yet handed a run, and still there to take one (identity known). */
  get ready(): boolean {
    return !this.used && !this.gone && this.startTime !== '';
  }

  /**
   * Hands it the run folder. Call only once shepherd.json naming it and launch.json are in
   * place: from this write on, the standby may start the trainer at any moment.
   */
  handOver(runDir: string): void {
    if (this.used) throw new Error('StandbyShepherd: already handed a run');
    this.used = true;
    // One short write: all or nothing, even if we die right after. A standby that gets EOF
    // without a complete line does nothing.
    this.child.stdin!.end(`${runDir}\n`);
  }

  /** An unused standby: close its stdin, so it exits; one handed a run is left alone. */
  dispose(): void {
    if (this.used) return;
    this.used = true;
    this.child.stdin!.destroy();
  }
}

export interface LaunchedShepherd {
  shepherdPid: number;
  /** Whether a standby was handed the run (else a fresh shepherd was spawned for it). */
  adopted: boolean;
  /** True once the shepherd process has ended (it is our child: we see its exit). */
  gone(): boolean;
}

/**
 * Writes launch.json into a fresh run directory (created if missing; refused if it already
 * holds a run) and hands the run to `standby` when one is given and ready, or else starts a
 * fresh shepherd detached, with stdio ignored and unref'ed, so that it survives this process.
 * Resolves once the shepherd process exists; use `waitForTrainerInfo` to learn whether the
 * trainer itself started.
 *
 * With a standby, the order is what makes a crash at any point safe: (1) shepherd.json naming
 * the standby, so that from then on recovery counts it as this folder's shepherd and launches
 * no second one while it lives; (2) launch.json, durable; (3) the folder on its stdin. Dying
 * before (3) closes the pipe: the standby exits without doing anything, and recovery, finding
 * no live shepherd, launches again. Dying after (3): the standby has the line and runs it, and
 * recovery waits for it.
 */
export async function launchShepherd(spec: LaunchSpec, standby?: StandbyShepherd | null): Promise<LaunchedShepherd> {
  if (spec.argv.length === 0) throw new Error('launchShepherd: argv is empty');
  mkdirSync(spec.runDir, { recursive: true, mode: PRIVATE_DIR_MODE });
  chmodSync(spec.runDir, PRIVATE_DIR_MODE);
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
    ...(spec.maxProtocolLinesPerSecond ? { maxProtocolLinesPerSecond: spec.maxProtocolLinesPerSecond } : {}),
    ...(spec.maxProtocolLinesPerTask ? { maxProtocolLinesPerTask: spec.maxProtocolLinesPerTask } : {}),
    ...(spec.maxBytesPerTask ? { maxBytesPerTask: spec.maxBytesPerTask } : {}),
  };

  if (standby?.ready) {
    // Not fsynced: it only matters while processes survive, i.e. across a crash of this
    // process, and the page cache survives that. After a reboot the process it names is gone.
    await writeJsonAtomic(join(spec.runDir, FILES.shepherd), { pid: standby.pid, startTime: standby.startTime }, false);
    // Not fsynced either, for the same reason: the shepherd reads it from the page cache, and
    // after a reboot recovery never needs it (no shepherd alive: an unstarted launch is
    // discarded and launched again, a torn file reads as absent). An fsync here cost the GPU
    // 3-4 ms of idle time per task.
    await writeJsonAtomic(join(spec.runDir, FILES.launch), launch, false);
    if (!standby.gone) {
      standby.handOver(spec.runDir);
      return { shepherdPid: standby.pid, adopted: true, gone: () => standby.gone };
    }
    // It died meanwhile, before it was handed the run, so it started nothing: spawn one.
  } else {
    await writeJsonAtomic(join(spec.runDir, FILES.launch), launch);
  }

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
  return { shepherdPid: child.pid, adopted: false, gone: () => child.exitCode !== null || child.signalCode !== null };
}

/**
 * A launch.json whose shepherd never started (the service died between writing it and starting
 * the shepherd, or before handing it to the standby that shepherd.json names, or the shepherd
 * died before spawning anything) is removed, with that shepherd.json, so the run folder can be
 * launched again. Only when nothing else of a run is there (output.jsonl is created before the
 * trainer is spawned: without it, no trainer was); call it only when no shepherd of the folder
 * is alive. Returns whether it removed a launch.json.
 */
export async function discardUnstartedLaunch(runDir: string): Promise<boolean> {
  for (const name of [FILES.trainer, FILES.exit, FILES.output]) if (existsSync(join(runDir, name))) return false;
  const had = existsSync(join(runDir, FILES.launch));
  // launch.json first: a shepherd.json left alone is harmless (it names a dead process).
  if (had) rmSync(join(runDir, FILES.launch), { force: true });
  rmSync(join(runDir, FILES.shepherd), { force: true });
  return had;
}

function readJson<T>(file: string): T | null {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
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
  const raw = readJson<{ pid: number; startTime: string | null }>(join(runDir, FILES.trainer));
  if (!raw || !Number.isInteger(raw.pid)) return null;
  return { pid: raw.pid, startTime: raw.startTime ?? '' };
}

/**
 * Waits until the shepherd reports the trainer's pid (trainer.json), or that it could not
 * start it (exit.json without trainer.json), or `timeoutMs` passes, or (given `shepherdGone`)
 * the shepherd ended without reporting either (then `shepherdGone: true` in the answer).
 * Watches the folder (fs.watch), so the answer comes as soon as a file is renamed into place;
 * a short poll covers filesystems where watching does not work.
 */
export async function waitForTrainerInfo(
  runDir: string,
  timeoutMs: number,
  opts: { shepherdGone?: () => boolean; pollMs?: number } = {},
): Promise<TrainerInfo | { error: string; shepherdGone?: boolean }> {
  const deadline = Date.now() + timeoutMs;
  let wake: (() => void) | null = null;
  let changed = false;
  let watcher: FSWatcher | null = null;
  try {
    watcher = watch(runDir, () => {
      changed = true;
      wake?.();
    });
    watcher.on('error', () => {});
  } catch {
    watcher = null; // polling alone is enough
  }
  try {
    for (;;) {
      changed = false;
      // Asked before reading: a shepherd writes its files before it exits.
      const gone = opts.shepherdGone?.() ?? false;
      const info = await readTrainerInfo(runDir);
      if (info) return info;
      const exit = await readExit(runDir);
      if (exit) {
        // trainer.json is written before exit.json whenever the trainer was spawned.
        const again = await readTrainerInfo(runDir);
        if (again) return again;
        return { error: exit.error ?? 'trainer exited before it was recorded' };
      }
      if (gone) return { error: 'the shepherd ended before it reported the trainer', shepherdGone: true };
      if (Date.now() >= deadline) {
        return { error: `shepherd did not report the trainer within ${timeoutMs} ms` };
      }
      if (changed) continue;
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, opts.pollMs ?? 20);
        wake = () => {
          clearTimeout(timer);
          resolve();
        };
      });
      wake = null;
    }
  } finally {
    watcher?.close();
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
  /** Read buffer, reused from pass to pass. */
  private chunk: Buffer | null = null;
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
            await this.onLine(rec);
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
