// The adapter merge of a deployment created with `merge: true`: trainers/merge_adapter.py (or
// TRAINYARD_MERGE) writes the base model with the task's adapter in its weights, and vLLM then
// serves that folder under the task's name. The merge runs under the shepherd like a trainer, so
// a service restart in the middle finds it still running (or ended) in its run folder and waits
// for it instead of starting another. Its output folder is complete or absent (the merge writes it
// aside and renames it), so a folder that is there is a merge that finished.
import { existsSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { launchShepherd, waitForTrainerInfo } from '../trainer/launch';
import { isSameProcessAlive, signalGroup } from '../trainer/proc';
import { readExit, readOutputLines, readTrainerInfo } from '../trainer/run-folder';

/** How long the shepherd may take to report the merge's process. */
const SPAWN_TIMEOUT_MS = 30_000;
/** Lines of the merge's output quoted when it fails. */
const TAIL_LINES = 8;
/** A merge process gone this long with no exit status has lost its shepherd (killed with it). */
const VANISHED_MS = 5000;

/** Where a deployment's merge runs and what it writes. */
export function mergePaths(runsDir: string, deploymentId: string): { runDir: string; out: string } {
  const root = join(runsDir, 'deployments', deploymentId);
  return { runDir: join(root, 'merge'), out: join(root, 'merged') };
}

export interface MergeJob {
  /** argv of the merge program (TRAINYARD_MERGE), before `--base … --adapter … --out …`. */
  argv: string[];
  cwd: string;
  env: Record<string, string>;
  runDir: string;
  base: string;
  adapter: string;
  out: string;
  pollMs: number;
  log: { info(m: string): void };
  /** Asked about once a second while it merges: false (the deployment was stopped) ends the merge. */
  stillWanted: () => Promise<boolean>;
}

export type MergeOutcome = { ok: true } | { ok: false; message: string };

/** Merges (or waits for the merge already running) until `out` is complete; never throws for the merge's own failure. */
export async function runMerge(job: MergeJob): Promise<MergeOutcome> {
  if (existsSync(job.out)) return { ok: true };
  let info = await readTrainerInfo(job.runDir);
  const running = info !== null && (await readExit(job.runDir)) === null && isSameProcessAlive(info.pid, info.startTime);
  if (running) job.log.info(`merge into ${job.out} already running (pid ${info!.pid}): waiting for it`);
  else {
    rmSync(job.runDir, { recursive: true, force: true });
    const argv = [...job.argv, '--base', job.base, '--adapter', job.adapter, '--out', job.out];
    job.log.info(`merging ${job.adapter} into ${job.base}: ${job.out}`);
    const shepherd = await launchShepherd({ runDir: job.runDir, argv, env: job.env, cwd: job.cwd });
    const started = await waitForTrainerInfo(job.runDir, SPAWN_TIMEOUT_MS, { shepherdGone: shepherd.gone });
    if ('error' in started) return { ok: false, message: `the adapter merge did not start: ${started.error}` };
    info = started;
  }
  const pid = info!.pid;
  let goneSince: number | null = null;
  let askedAt = Date.now();
  for (;;) {
    const exit = await readExit(job.runDir);
    if (exit) {
      if (exit.code === 0 && existsSync(job.out)) return { ok: true };
      const how = exit.error ?? (exit.signal ? `killed by ${exit.signal}` : `exit code ${exit.code}`);
      const tail = lastLines(job.runDir);
      return { ok: false, message: `the adapter merge failed (${how})${tail ? `: ${tail}` : ''}` };
    }
    // The shepherd writes exit.json just after the merge ends: only a long absence means it is lost.
    if (isSameProcessAlive(pid, info!.startTime)) goneSince = null;
    else if (Date.now() - (goneSince ??= Date.now()) > VANISHED_MS)
      return { ok: false, message: 'the adapter merge ended without an exit status (its shepherd was killed)' };
    if (Date.now() - askedAt >= 1000) {
      askedAt = Date.now();
      if (!(await job.stillWanted())) {
        signalGroup(pid, 'SIGTERM');
        return { ok: false, message: 'stopped while merging' };
      }
    }
    await new Promise((r) => setTimeout(r, job.pollMs));
  }
}

/** The merge's last stderr lines (it says there what it did and why it refused). */
function lastLines(runDir: string): string {
  return readOutputLines(runDir)
    .filter((l) => l.stream === 'stderr')
    .slice(-TAIL_LINES)
    .map((l) => l.line)
    .join('\n');
}
