// The task record and the values it is made of. Plain data: no IO, no clocks.
import type { DeviceGrant, MemorySource, ResourceRequest } from './resources';
import type { TaskStatus } from './status';

export * from './status';

/** Knobs of the simulated trainer (ignored by real trainers). */
export interface SimulateConfig {
  steps?: number;
  stepMs?: number;
  failAtStep?: number;
  exitCode?: number;
  crashSignal?: string;
  ignoreSigterm?: boolean;
  logLinesPerStep?: number;
  startupMs?: number;
  /** Print hostile lines (NUL, lone surrogates, escapes, junk protocol, a NUL last line). */
  hostileOutput?: boolean;
  /** Write a checkpoint every this many steps (it also writes one on SIGUSR1). */
  checkpointEvery?: number;
}

export interface TrainingConfig {
  epochs: number;
  batchSize: number;
  gradientAccumulation: number;
  learningRate: number;
  maxLength: number;
  load8bit: boolean;
  load4bit: boolean;
  loraRank: number;
  loraAlpha: number;
  /** Save a checkpoint every this many steps (trainers that support it; a preemption saves one too). */
  checkpointEverySteps?: number;
  simulate?: SimulateConfig;
}

/** The devices a task asks for, and where its memory figure came from. */
export interface TaskResources extends ResourceRequest {
  memorySource: MemorySource;
}

export interface TaskPriority {
  name: string;
  value: number;
}

/** The priority classes unless configured (TRAINYARD_PRIORITY_CLASSES). */
export const DEFAULT_PRIORITY_CLASSES: Readonly<Record<string, number>> = { low: -10, normal: 0, high: 10, urgent: 20 };
export const DEFAULT_PRIORITY: TaskPriority = { name: 'normal', value: 0 };

export const DEFAULT_RESOURCES: TaskResources = { gpus: 1, memoryMb: null, shared: false, memorySource: null };

/** What the user asked for; fixed at submission. */
export interface TaskSpec {
  name: string;
  model: string;
  datasetPath: string;
  outputDir: string;
  config: TrainingConfig;
  /** Wall-clock budget from assignment to exit, after which the trainer is stopped. */
  timeoutMs: number;
  resources: TaskResources;
  /** Its priority class, with the class's value when submitted (higher goes first); absent: normal. */
  priority?: TaskPriority;
  owner: string;
  idempotencyKey?: string | null;
}

export interface TaskProgress {
  percent: number;
  epoch: number | null;
  totalEpochs: number | null;
  step: number | null;
  totalSteps: number | null;
  loss: number | null;
}

export type FailureReason = 'exit' | 'signal' | 'timeout' | 'spawn' | 'lost';

export interface TaskError {
  reason: FailureReason;
  message: string;
  exitCode: number | null;
  signal: string | null;
}

/**
 * cancel: asked by a user; timeout: past its deadline; device-lost: a device it holds left the
 * inventory; preempt: a task of a higher class needs its devices (it checkpoints and requeues).
 */
export type StopReason = 'cancel' | 'timeout' | 'device-lost' | 'preempt';

/** A checkpoint a trainer reported: where it is and the step it resumes from. */
export interface Checkpoint {
  path: string;
  step: number;
}

export interface StopRequest {
  reason: StopReason;
  message: string;
  by: string;
  at: string;
}

/** A Slurm job that runs (or ran) attempt `attempt` of a task, in `runDir`. */
export interface SlurmJobRef {
  jobId: string;
  runDir: string;
  attempt: number;
}

export interface TrainerProcess {
  pid: number;
  /** /proc/<pid>/stat start time, so a reused pid is never mistaken for our trainer. */
  startTime: string;
  runDir: string;
}

/** The task's state as folded from its event stream. Times are the events' commit times. */
export interface TaskRecord {
  id: string;
  status: TaskStatus;
  spec: TaskSpec;
  progress: TaskProgress;
  createdAt: string;
  queuedAt: string | null;
  /** Log position of the TaskQueued event: the FIFO key of the queue. */
  queuedPosition: string | null;
  startedAt: string | null;
  trainingAt: string | null;
  finishedAt: string | null;
  deadlineAt: string | null;
  error: TaskError | null;
  trainer: TrainerProcess | null;
  attempt: number;
  /** The devices the task holds while PREPARING or TRAINING; empty otherwise. */
  devices: DeviceGrant[];
  runnerId: string | null;
  stop: StopRequest | null;
  artifacts: string[];
  /** The last checkpoint its trainer reported (the next attempt resumes from it). */
  checkpoint: Checkpoint | null;
  /** How many times it was preempted. */
  preemptions: number;
  /** Paused: it stays queued in its place but is not started until released. */
  held: boolean;
  /** Log position of its TaskSubmitted: its place in the queue if it is requeued without having queued. */
  submittedPosition: string | null;
  cancelReason: string | null;
  deleted: boolean;
  /** The Slurm job of its current or last attempt (TRAINYARD_EXECUTOR=slurm); absent or null otherwise. */
  slurmJob?: SlurmJobRef | null;
  /** Stream version of the last event folded in. */
  version: number;
}

export const EMPTY_PROGRESS: TaskProgress = {
  percent: 0,
  epoch: null,
  totalEpochs: null,
  step: null,
  totalSteps: null,
  loss: null,
};

export function progressPercent(p: {
  epoch?: number | null;
  totalEpochs?: number | null;
  step?: number | null;
  totalSteps?: number | null;
}): number {
  let ratio: number | null = null;
  if (p.step != null && p.totalSteps) ratio = p.step / p.totalSteps;
  else if (p.epoch != null && p.totalEpochs) ratio = p.epoch / p.totalEpochs;
  if (ratio == null || !Number.isFinite(ratio)) return 0;
  return Math.round(Math.min(1, Math.max(0, ratio)) * 1000) / 10;
}
