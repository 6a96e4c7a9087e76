// The launcher: starts one task's trainer under a shepherd (a standby one if ready), from a
// checked copy of its dataset, and says which trainer started or why none did.
import { existsSync, mkdirSync } from 'node:fs';
import { isAbsolute, join, resolve } from 'node:path';
import { cudaVisibleDevices, type TaskRecord } from '@trainyard/domain';
import type { ServiceConfig } from '../config';
import { DatasetError, stageDataset } from '../datasets';
import { launchShepherd, waitForTrainerInfo, type LaunchSpec } from '../trainer/launch';
import { discardUnstartedLaunch, ensurePrivateDir, FILES, writePrivateFile } from '../trainer/run-folder';
import { trainerLevelEnv, type WarmSpec } from '../trainer/warm.mjs';
import type { SpareRunFolder } from './spare-run-folder';
import type { StandbyPool } from './standby-pool';

/** The run folder's copy of the task's dataset, which the trainer reads; removed when it ends. */
export const DATASET_DIR = 'dataset';

export type LaunchResult = { pid: number; startTime: string } | { failed: string };

/**
 * Start the task's trainer in `runDir`. A refused dataset or a trainer that could not be started
 * is a `failed` result (the task's failure message); anything else unexpected throws.
 */
export async function launchTrainer(
  task: TaskRecord,
  runDir: string,
  config: ServiceConfig,
  standbys: StandbyPool,
  spare: SpareRunFolder,
  log: { info(msg: string): void; warn(msg: string): void },
): Promise<LaunchResult> {
  const outputDir = resolveOutputDir(config, task);
  // The run folder (with its dataset folder) and the output folder made ahead of need, where they can be.
  spare.claim(runDir, outputDir);
  // Sync calls: microseconds each, where a thread-pool round trip costs more (see run-folder.ts).
  ensurePrivateDir(config.runsDir, runDir);
  mkdirSync(outputDir, { recursive: true });
  // The trainer reads a checked copy, never the submitted path (see datasets.ts).
  let datasetPath: string;
  try {
    datasetPath = await stageDataset(task.spec.datasetPath, config.datasetsRoots, join(runDir, DATASET_DIR));
  } catch (err) {
    if (!(err instanceof DatasetError)) throw err;
    return { failed: err.message };
  }
  const specFile = join(runDir, 'task.json');
  writePrivateFile(
    specFile,
    JSON.stringify({ id: task.id, ...task.spec, outputDir, datasetPath, submittedDatasetPath: task.spec.datasetPath }, null, 2),
  );
  // Recovery decided to launch: no shepherd of this folder is alive, so a launch.json left
  // by one that never started is stale.
  if (await discardUnstartedLaunch(runDir)) log.info(`task ${task.id}: its previous launch never started a shepherd; launching again`);
  const base = trainerBase(config);
  const spec: LaunchSpec = {
    runDir,
    argv: base.argv,
    cwd: base.cwd,
    env: {
      ...base.env,
      // The task's devices by UUID where known (a MIG instance has only its UUID); an index is
      // nvidia-smi's, which is PCI bus order, while CUDA's default order (fastest first) differs
      // on a host with mixed GPUs.
      CUDA_VISIBLE_DEVICES: task.devices.length ? cudaVisibleDevices(task.devices) : '0',
      TRAINYARD_TASK_SPEC: specFile,
      TRAINYARD_TASK_ID: task.id,
      // A preempted task's next attempt continues from its last checkpoint (the trainer's choice how).
      ...(task.checkpoint ? { TRAINYARD_RESUME_FROM: task.checkpoint.path } : {}),
      TRAINYARD_OUTPUT_DIR: outputDir,
    },
    maxLineBytes: config.logMaxLineBytes,
    maxLinesPerSecond: config.logMaxLinesPerSecond,
    maxProtocolLinesPerSecond: config.logMaxProtocolLinesPerSecond,
    maxProtocolLinesPerTask: config.logMaxProtocolLinesPerTask,
    maxBytesPerTask: config.logMaxBytesPerTask,
  };
  const standby = standbys.take();
  let shepherd = await launchShepherd(spec, standby).finally(() => standby?.dispose()); // no-op once handed the run
  let info = await waitForTrainerInfo(runDir, 30_000, { shepherdGone: shepherd.gone });
  if ('error' in info && info.shepherdGone && !existsSync(join(runDir, FILES.output)) && (await discardUnstartedLaunch(runDir))) {
    // The shepherd (a standby killed just as it was handed the run, say) ended before it
    // opened output.jsonl, which it does before spawning: no trainer was started. Once more
    // with a fresh shepherd. (It is gone and was our child, so it cannot start one later.)
    log.warn(`task ${task.id}: shepherd ${shepherd.shepherdPid} ended before starting the trainer; launching again`);
    shepherd = await launchShepherd(spec, null);
    info = await waitForTrainerInfo(runDir, 30_000, { shepherdGone: shepherd.gone });
  }
  // The next launch's standby and run folder are made now, off the path between a trainer's exit and the next.
  standbys.ensure();
  spare.replenish();
  if ('error' in info)
    return { failed: `could not start the trainer ${JSON.stringify(config.trainer)}: ${info.error}. Check TRAINYARD_TRAINER.` };
  return { pid: info.pid, startTime: info.startTime };
}

/**
 * The trainer a launch runs now, less its task: argv, folder, and the environment without the
 * task's variables (warm.mjs ASSIGNMENT_ENV). A warm trainer is started as this, and a launch
 * adds the task's variables to it, so the two always match (the shepherd checks they do).
 */
export function trainerBase(config: Pick<ServiceConfig, 'trainer' | 'trainerCwd' | 'trainerInheritedEnv'>): WarmSpec {
  const [cmd, ...args] = config.trainer;
  return {
    argv: [resolveArgv0(cmd!, config.trainerCwd), ...args.map((a) => (a.startsWith('trainers/') ? join(config.trainerCwd, a) : a))],
    cwd: config.trainerCwd,
    // CUDA's order is PCI bus order, as nvidia-smi's indices (see CUDA_VISIBLE_DEVICES below).
    env: trainerLevelEnv({ ...config.trainerInheritedEnv, CUDA_DEVICE_ORDER: 'PCI_BUS_ID' }),
  };
}

/** Outputs live under <data>/outputs; the API refuses anything that would leave it. */
function outputsRoot(config: Pick<ServiceConfig, 'storage'>): string {
  return resolve(config.storage.dataRoot, 'outputs');
}

export function resolveOutputDir(config: Pick<ServiceConfig, 'storage'>, task: Pick<TaskRecord, 'spec'>): string {
  return resolve(outputsRoot(config), task.spec.outputDir);
}

function resolveArgv0(cmd: string, cwd: string): string {
  if (cmd === 'node') return process.execPath;
  return cmd.includes('/') && !isAbsolute(cmd) ? join(cwd, cmd) : cmd;
}
