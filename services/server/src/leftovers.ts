// Trainers this instance's previous process left behind, at the edge: list our run folders
// (`<runs>/<task>/attempt-<n>`) whose trainer was started and has not exited, ask /proc which
// still run, read their tasks, and stop the ones the domain says are not ours to run any more
// (decideLeftovers: a peer took the task over, it went back to the queue, ended or was deleted).
// Called when the lease is claimed at start-up, before recovery re-attaches the runs we still hold.
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { decideLeftovers, type LeftoverTrainer, type RunFolderView } from '@trainyard/domain';
import { loadTasks, type Conn } from '@trainyard/store';
import { isSameProcessAlive, signalGroup } from './trainer/proc';
import { readExit, readTrainerInfo } from './trainer/run-folder';

const ATTEMPT_DIR = /^attempt-(\d+)$/;

function listDirs(dir: string): string[] {
  try {
    return readdirSync(dir, { withFileTypes: true })
      .filter((d) => d.isDirectory())
      .map((d) => d.name);
  } catch {
    return []; // no runs folder yet
  }
}

/** Our run folders whose trainer was started and wrote no exit: each with whether it still runs. */
async function startedRuns(runsDir: string): Promise<RunFolderView[]> {
  const out: RunFolderView[] = [];
  for (const taskId of listDirs(runsDir)) {
    if (taskId.startsWith('.')) continue; // standby shepherds' folders
    for (const name of listDirs(join(runsDir, taskId))) {
      const m = ATTEMPT_DIR.exec(name);
      if (!m) continue;
      const runDir = join(runsDir, taskId, name);
      const trainer = await readTrainerInfo(runDir);
      if (!trainer || trainer.startTime === '' || (await readExit(runDir))) continue;
      out.push({ taskId, attempt: Number(m[1]), trainer, trainerAlive: isSameProcessAlive(trainer.pid, trainer.startTime) });
    }
  }
  return out;
}

/**
 * Stop the trainers left running in `runsDir` whose runs `runnerId` no longer holds: SIGTERM to
 * the process group, SIGKILL `killGraceMs` later if it still runs. Returns what it stopped.
 */
export async function stopLeftoverTrainers(o: {
  db: Conn;
  runsDir: string;
  runnerId: string;
  killGraceMs: number;
  log: { warn(msg: string): void };
}): Promise<LeftoverTrainer[]> {
  const runs = (await startedRuns(o.runsDir)).filter((r) => r.trainerAlive);
  if (!runs.length) return [];
  const tasks = await loadTasks(o.db, [...new Set(runs.map((r) => r.taskId))]);
  const leftovers = decideLeftovers(o.runnerId, runs, tasks);
  for (const k of leftovers) {
    o.log.warn(k.message);
    signalGroup(k.pid, 'SIGTERM');
    setTimeout(() => {
      if (isSameProcessAlive(k.pid, k.startTime)) signalGroup(k.pid, 'SIGKILL');
    }, o.killGraceMs).unref();
  }
  return leftovers;
}
