// Launching a trainer through the shepherd, and waiting for it to say whether the trainer started.
//
// The service never pipes the trainer: it starts a detached shepherd (shepherd.mjs) that runs
// the trainer and writes everything to files in the run folder (run-folder.ts), so the service
// can crash, restart, and re-attach by tailing output.jsonl again (tailer.ts). A shepherd is
// either spawned for the run (`shepherd.mjs <runDir>`: its argv names the folder) or a standby
// started ahead of need (standby.ts) that is handed the folder over its stdin.
import { spawn } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, watch, type FSWatcher } from 'node:fs';
import { join } from 'node:path';
import { DEFAULT_LOG_LINE_BYTES, DEFAULT_LOG_LINES_PER_SECOND } from './defaults.mjs';
import { PRIVATE_DIR_MODE, type LaunchFile } from './run-files.mjs';
import { FILES, readExit, readTrainerInfo, writeJsonAtomic, type TrainerInfo } from './run-folder';
import { SHEPHERD_PATH } from './shepherd-path';
import type { StandbyShepherd } from './standby';

export interface LaunchSpec {
  runDir: string;
  argv: string[];
  env: Record<string, string>;
  cwd: string;
  /** Longer lines are cut, with a `… [cut N bytes]` marker. Default: DEFAULT_LOG_LINE_BYTES. */
  maxLineBytes?: number;
  /** Plain log lines beyond this per second are dropped (protocol lines have their own limits). Default: DEFAULT_LOG_LINES_PER_SECOND. */
  maxLinesPerSecond?: number;
  /** Protocol lines (a full parse decides) beyond this per second are dropped. Default: no limit. */
  maxProtocolLinesPerSecond?: number;
  /** Protocol lines beyond this many in the whole run are dropped. Default: no limit. */
  maxProtocolLinesPerTask?: number;
  /** Plain lines past this many bytes of output in the whole run are dropped. Default: no limit. */
  maxBytesPerTask?: number;
}

export interface LaunchedShepherd {
  shepherdPid: number;
  /** Whether a standby was handed the run (else a fresh shepherd was spawned for it). */
  adopted: boolean;
  /** True once the shepherd process has ended (it is our child: we see its exit). */
  gone(): boolean;
}

/** What launch.json holds for `spec` (a shepherd reads it: spawned here, or as a Slurm job). */
export function launchFileOf(spec: LaunchSpec): LaunchFile {
  return {
    argv: spec.argv,
    env: spec.env,
    cwd: spec.cwd,
    maxLineBytes: spec.maxLineBytes ?? DEFAULT_LOG_LINE_BYTES,
    maxLinesPerSecond: spec.maxLinesPerSecond ?? DEFAULT_LOG_LINES_PER_SECOND,
    ...(spec.maxProtocolLinesPerSecond ? { maxProtocolLinesPerSecond: spec.maxProtocolLinesPerSecond } : {}),
    ...(spec.maxProtocolLinesPerTask ? { maxProtocolLinesPerTask: spec.maxProtocolLinesPerTask } : {}),
    ...(spec.maxBytesPerTask ? { maxBytesPerTask: spec.maxBytesPerTask } : {}),
  };
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
  const launch = launchFileOf(spec);

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
