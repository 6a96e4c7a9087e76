// Domain events: facts in the past tense. Each carries a schema version so that old
// events stay readable when a shape changes (add an upcaster in `upcast`, never edit history).
import type { FailureReason, StopReason, TaskSpec } from './task';

export interface TaskEventMap {
  TaskSubmitted: { spec: TaskSpec };
  TaskQueued: Record<string, never>;
  TaskAssigned: { slotId: number; gpuIndex: number; runnerId: string; attempt: number };
  TrainerSpawned: { pid: number; startTime: string; runDir: string };
  TrainingStarted: Record<string, never>;
  ProgressRecorded: {
    epoch: number | null;
    totalEpochs: number | null;
    step: number | null;
    totalSteps: number | null;
    loss: number | null;
  };
  ArtifactRecorded: { path: string };
  StopRequested: { reason: StopReason; message: string };
  TaskCompleted: { exitCode: number };
  TaskFailed: {
    reason: FailureReason;
    message: string;
    exitCode: number | null;
    signal: string | null;
  };
  TaskCancelled: { reason: string | null };
  TaskDeleted: Record<string, never>;
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
  'StopRequested',
  'TaskCompleted',
  'TaskFailed',
  'TaskCancelled',
  'TaskDeleted',
] as const satisfies readonly TaskEventType[];

export const CURRENT_SCHEMA_VERSION = 1;

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
  // Version 1 is the only schema so far.
  return ev;
}
