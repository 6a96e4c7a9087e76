// A run folder's files, as the service sees them: their types, writing the ones the service
// writes (privately, atomically) and reading back what the shepherd records. The names, modes
// and write primitives are run-files.mjs's, shared with the shepherd.
import { chmodSync, closeSync, existsSync, fsync, mkdirSync, readFileSync, renameSync, rmSync } from 'node:fs';
import { join, relative, sep } from 'node:path';
import { jsonFileText, openPrivate, PRIVATE_DIR_MODE, RUN_FILES, tempPathFor, writeAll } from './run-files.mjs';

/** File names of a run folder (see run-files.mjs for what each holds). */
export const FILES = RUN_FILES;

export type { LaunchFile } from './run-files.mjs';

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

// File work on the path from one trainer's exit to the next one's start is done with the sync
// calls: small files on a local disk take microseconds, while each promise-based call is a
// round trip through libuv's thread pool, which on a busy machine costs a millisecond or more.
// Only fsync, which waits for the disk, stays off the event loop.

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
  const fd = openPrivate(file, 'w');
  try {
    writeAll(fd, Buffer.from(data));
  } finally {
    closeSync(fd);
  }
}

/**
 * Writes `value` as JSON to `file` atomically (private temp file, rename); with `durable`, the
 * temp file is fsynced first, off the event loop.
 */
export async function writeJsonAtomic(file: string, value: unknown, durable = true): Promise<void> {
  const tmp = tempPathFor(file);
  const fd = openPrivate(tmp, 'w');
  try {
    writeAll(fd, Buffer.from(jsonFileText(value)));
    if (durable) await new Promise<void>((resolve, reject) => fsync(fd, (err) => (err ? reject(err) : resolve())));
  } finally {
    closeSync(fd);
  }
  renameSync(tmp, file);
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

/** Every line output.jsonl holds so far (a line cut short by a crash mid-write is left out). */
export function readOutputLines(runDir: string): OutputLine[] {
  let text: string;
  try {
    text = readFileSync(join(runDir, FILES.output), 'utf8');
  } catch {
    return [];
  }
  return text.split('\n').flatMap((l) => {
    try {
      return l ? [JSON.parse(l) as OutputLine] : [];
    } catch {
      return [];
    }
  });
}

/** trainer.json of a run, or null before the trainer was spawned. */
export async function readTrainerInfo(runDir: string): Promise<TrainerInfo | null> {
  const raw = readJson<{ pid: number; startTime: string | null }>(join(runDir, FILES.trainer));
  if (!raw || !Number.isInteger(raw.pid)) return null;
  return { pid: raw.pid, startTime: raw.startTime ?? '' };
}
