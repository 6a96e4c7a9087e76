// Domain events: facts in the past tense. Each carries a schema version so that old
// events stay readable when a shape changes (add an upcaster in `upcast`, never edit history).
import type { DeviceGrant } from './resources';
import type { PlacementGrounds, PreemptionGrounds } from './scheduling';
import { DEFAULT_RESOURCES, type Checkpoint, type FailureReason, type StopReason, type TaskSpec } from './task';

/** The instance a task was taken back from, and why (its lease expired). */
export interface LostRunner {
  runnerId: string;
  message: string;
}

export interface TaskEventMap {
  TaskSubmitted: { spec: TaskSpec };
  TaskQueued: Record<string, never>;
  /** `grounds`: what the policy saw when it placed the task (null for an assignment made before v2). */
  TaskAssigned: { devices: DeviceGrant[]; runnerId: string; attempt: number; grounds: PlacementGrounds | null };
  TrainerSpawned: { pid: number; startTime: string; runDir: string };
  TrainingStarted: Record<string, never>;
  ProgressRecorded: {
    epoch: number | null;
    totalEpochs: number | null;
    step: number | null;
    totalSteps: number | null;
    loss: number | null;
    /** The optimizer's learning rate when the trainer reports it (absent in events written before it was). */
    learningRate?: number | null;
  };
  ArtifactRecorded: { path: string };
  CheckpointRecorded: { path: string; step: number };
  /** Paused by a user: kept in its place in the queue, not started until released. */
  TaskHeld: { reason: string | null };
  TaskReleased: Record<string, never>;
  /**
   * Back to the queue, in its place, to resume from its checkpoint: its trainer ended after a
   * preemption, or (`lost`) the instance that ran it stopped renewing its lease.
   */
  TaskPreempted: { exitCode: number | null; signal: string | null; checkpoint: Checkpoint | null; lost?: LostRunner };
  /** `grounds`: for a preemption by the scheduler, what its decision saw (absent otherwise, and before it was recorded). */
  StopRequested: { reason: StopReason; message: string; grounds?: PreemptionGrounds };
  TaskCompleted: { exitCode: number };
  TaskFailed: {
    reason: FailureReason;
    message: string;
    exitCode: number | null;
    signal: string | null;
  };
  TaskCancelled: { reason: string | null };
  TaskDeleted: Record<string, never>;
  /**
   * Handed to Slurm (TRAINYARD_EXECUTOR=slurm): `jobId` is the job that runs attempt `attempt`
   * in `runDir` (sbatch --parsable's answer). The task stays QUEUED until Slurm runs the job.
   */
  TaskHandedToSlurm: { jobId: string; runDir: string; attempt: number };
}

export type TaskEventType = keyof TaskEventMap;
export const TASK_EVENT_TYPES = [
  'TaskSubmitted',
  'TaskQueued',
  'TaskAssigned',
  'TrainerSpawned',
  'TrainingStarted',
  'ProgressRecorded',
  'ArtifactRecorded',
  'CheckpointRecorded',
  'TaskHeld',
  'TaskReleased',
  'TaskPreempted',
  'StopRequested',
  'TaskCompleted',
  'TaskFailed',
  'TaskCancelled',
  'TaskDeleted',
  'TaskHandedToSlurm',
] as const satisfies readonly TaskEventType[];

/**
 * The schema the events this code writes follow. 2: TaskSubmitted's spec has `resources`;
 * TaskAssigned names devices (was one `slotId`/`gpuIndex`) and the grounds of the placement.
 */
export const CURRENT_SCHEMA_VERSION = 2;

/** An event as decided, before the store gives it a position and a time. */
export type NewTaskEvent = {
  [K in TaskEventType]: { type: K; data: TaskEventMap[K] };
}[TaskEventType];

export interface EventMetadata {
  actor: string;
  correlationId?: string | null;
  causationId?: string | null;
  schemaVersion: number;
}

/** An event as stored in the log. `position` is a decimal string (bigint-safe). */
export type StoredTaskEvent = NewTaskEvent & {
  position: string;
  streamId: string;
  version: number;
  recordedAt: string;
  metadata: EventMetadata;
};

/** Brings an event written under an older schema to the current shape. */
export function upcast(ev: StoredTaskEvent): StoredTaskEvent {
  // By shape rather than by the recorded version: an import of old events under a new version
  // number reads right too.
  if (ev.type === 'TaskSubmitted' && ev.data.spec && !ev.data.spec.resources)
    return { ...ev, data: { ...ev.data, spec: { ...ev.data.spec, resources: { ...DEFAULT_RESOURCES } } } };
  if (ev.type === 'TaskAssigned' && !('devices' in ev.data)) {
    // v1 held one slot: GPU `gpuIndex`, whole.
    const v1 = ev.data as unknown as { gpuIndex: number; runnerId: string; attempt: number };
    const devices: DeviceGrant[] = [
      { deviceId: `gpu${v1.gpuIndex}`, gpuIndex: v1.gpuIndex, uuid: null, migProfile: null, memoryMb: 0, exclusive: true },
    ];
    return { ...ev, data: { devices, runnerId: v1.runnerId, attempt: v1.attempt, grounds: null } };
  }
  return ev;
}
