// The task lifecycle, in one place: the XState machine is the single authority on which
// transitions are legal; `decide` turns a command into events (checked against the machine,
// and when the machine refuses, the refusal names the machine's reason: the state has no
// transition for the event, or which guard failed), `evolve` folds a stored event into the task
// record with a pure step of the machine (machine-steps.ts).
// Nothing here reads a clock or touches IO: times come from the events.
import { assign, setup, type SnapshotFrom } from 'xstate';
import { machineSteps } from './machine-steps';
import type { NewTaskEvent, StoredTaskEvent, TaskEventMap, TaskEventType } from './events';
import {
  EMPTY_PROGRESS,
  isActive,
  isTerminal,
  progressPercent,
  type FailureReason,
  type TaskRecord,
  type TaskSpec,
  type TaskStatus,
} from './task';
import { IllegalCommandError } from './errors';
import type { DeviceGrant } from './resources';
import type { PlacementGrounds, PreemptionGrounds } from './scheduling';

/** What the machine consumes: a domain event plus the log facts the fold needs. */
export type LifecycleEvent = {
  [K in TaskEventType]: { type: K; data: TaskEventMap[K]; at: string; position: string; actor: string; streamId: string };
}[TaskEventType];

type Ctx = Omit<TaskRecord, 'status' | 'version'>;

const emptyContext = (): Ctx => ({
  id: '',
  spec: null as unknown as TaskSpec,
  progress: { ...EMPTY_PROGRESS },
  createdAt: '',
  queuedAt: null,
  queuedPosition: null,
  startedAt: null,
  trainingAt: null,
  finishedAt: null,
  deadlineAt: null,
  error: null,
  trainer: null,
  attempt: 0,
  devices: [],
  runnerId: null,
  stop: null,
  artifacts: [],
  checkpoint: null,
  preemptions: 0,
  held: false,
  submittedPosition: null,
  cancelReason: null,
  deleted: false,
  slurmJob: null,
});

type Ev<K extends TaskEventType> = Extract<LifecycleEvent, { type: K }>;

/** Ending: the task no longer holds its devices. */
const released = { devices: [] };

type GuardArgs = { context: Ctx; event: LifecycleEvent };

const guards = {
  notSpawned: ({ context }: GuardArgs) => context.trainer === null,
  /** One stop per attempt, except that a cancel overrules a stop of another kind: the user's word wins. */
  stopAllowed: ({ context, event }: GuardArgs) =>
    context.stop === null || ((event as Ev<'StopRequested'>).data.reason === 'cancel' && context.stop.reason !== 'cancel'),
  stoppingForCancel: ({ context }: GuardArgs) => context.stop?.reason === 'cancel',
  notHeld: ({ context }: GuardArgs) => !context.held,
  isHeld: ({ context }: GuardArgs) => context.held,
  heldOrPreempting: ({ context }: GuardArgs) => !context.held && context.stop?.reason === 'preempt',
  /** Requeued: after a preemption's stop, or taken back from an instance whose lease expired. */
  requeueAllowed: ({ context, event }: GuardArgs) =>
    context.stop?.reason === 'preempt' || (event as Ev<'TaskPreempted'>).data.lost?.runnerId === context.runnerId,
  failureAllowed: ({ context, event }: GuardArgs) =>
    (event as Ev<'TaskFailed'>).data.reason !== 'timeout' || context.stop?.reason === 'timeout',
  notDeleted: ({ context }: GuardArgs) => !context.deleted,
  /** Not paused, and no Slurm job holds its next attempt yet (one job per attempt). */
  slurmJobDue: ({ context }: GuardArgs) => !context.held && (context.slurmJob?.attempt ?? 0) <= context.attempt,
};

export const taskMachine = setup({
  types: {
    context: {} as Ctx,
    events: {} as LifecycleEvent,
  },
  guards,
  actions: {
    submitted: assign(({ event }) => {
      const e = event as Ev<'TaskSubmitted'>;
      return { ...emptyContext(), id: e.streamId, spec: e.data.spec, createdAt: e.at, submittedPosition: e.position };
    }),
    queued: assign(({ event }) => ({ queuedAt: event.at, queuedPosition: event.position })),
    assigned: assign(({ context, event }) => {
      const e = event as Ev<'TaskAssigned'>;
      return {
        devices: e.data.devices,
        runnerId: e.data.runnerId,
        attempt: e.data.attempt,
        startedAt: e.at,
        deadlineAt: new Date(Date.parse(e.at) + context.spec.timeoutMs).toISOString(),
      };
    }),
    spawned: assign(({ event }) => {
      const e = event as Ev<'TrainerSpawned'>;
      return { trainer: { pid: e.data.pid, startTime: e.data.startTime, runDir: e.data.runDir } };
    }),
    trainingStarted: assign(({ event }) => ({ trainingAt: event.at })),
    progressed: assign(({ event }) => {
      // The learning rate is the series' (tasks.metrics), not the record's.
      const { learningRate: _lr, ...d } = (event as Ev<'ProgressRecorded'>).data;
      return { progress: { ...d, percent: progressPercent(d) } };
    }),
    artifact: assign(({ context, event }) => ({
      artifacts: [...context.artifacts, (event as Ev<'ArtifactRecorded'>).data.path],
    })),
    held: assign({ held: true }),
    // A queued task paused gives up its Slurm job (the executor cancels it); a new one is submitted when it is resumed.
    slurmJobDropped: assign({ slurmJob: null }),
    handedToSlurm: assign(({ event }) => {
      const d = (event as Ev<'TaskHandedToSlurm'>).data;
      return { slurmJob: { jobId: d.jobId, runDir: d.runDir, attempt: d.attempt } };
    }),
    releasedHold: assign({ held: false }),
    checkpointed: assign(({ event }) => {
      const d = (event as Ev<'CheckpointRecorded'>).data;
      return { checkpoint: { path: d.path, step: d.step } };
    }),
    // Back in the queue in its place (its first TaskQueued, or its submission if it never
    // queued), holding nothing, to start again from its checkpoint.
    preempted: assign(({ context, event }) => ({
      ...released,
      trainer: null,
      stop: null,
      startedAt: null,
      trainingAt: null,
      deadlineAt: null,
      runnerId: null,
      // Taken back from a lost instance is not a preemption (it does not spare it from being a victim).
      preemptions: context.preemptions + ((event as Ev<'TaskPreempted'>).data.lost ? 0 : 1),
      queuedPosition: context.queuedPosition ?? context.submittedPosition,
    })),
    stopRequested: assign(({ event }) => {
      const e = event as Ev<'StopRequested'>;
      return { stop: { reason: e.data.reason, message: e.data.message, by: e.actor, at: e.at } };
    }),
    completed: assign(({ context, event }) => ({
      ...released,
      finishedAt: event.at,
      progress: { ...context.progress, percent: 100 },
    })),
    failed: assign(({ event }) => {
      const d = (event as Ev<'TaskFailed'>).data;
      return {
        ...released,
        finishedAt: event.at,
        error: { reason: d.reason, message: d.message, exitCode: d.exitCode, signal: d.signal },
      };
    }),
    cancelled: assign(({ event }) => ({
      ...released,
      finishedAt: event.at,
      cancelReason: (event as Ev<'TaskCancelled'>).data.reason,
    })),
    deleted: assign({ deleted: true }),
  },
}).createMachine({
  id: 'task',
  initial: 'NEW',
  context: emptyContext,
  states: {
    // Before the stream's first event; not a task status.
    NEW: { on: { TaskSubmitted: { target: 'PENDING', actions: 'submitted' } } },
    PENDING: {
      on: {
        TaskQueued: { target: 'QUEUED', actions: 'queued' },
        TaskAssigned: { target: 'PREPARING', actions: 'assigned' },
        TaskCancelled: { target: 'CANCELLED', actions: 'cancelled' },
      },
    },
    QUEUED: {
      on: {
        TaskAssigned: { guard: 'notHeld', target: 'PREPARING', actions: 'assigned' },
        TaskHeld: { guard: 'notHeld', actions: ['held', 'slurmJobDropped'] },
        TaskHandedToSlurm: { guard: 'slurmJobDue', actions: 'handedToSlurm' },
        TaskReleased: { guard: 'isHeld', actions: 'releasedHold' },
        TaskCancelled: { target: 'CANCELLED', actions: 'cancelled' },
      },
    },
    PREPARING: {
      on: {
        TrainerSpawned: { guard: 'notSpawned', actions: 'spawned' },
        TrainingStarted: { target: 'TRAINING', actions: 'trainingStarted' },
        ProgressRecorded: { actions: 'progressed' },
        ArtifactRecorded: { actions: 'artifact' },
        CheckpointRecorded: { actions: 'checkpointed' },
        TaskHeld: { guard: 'heldOrPreempting', actions: 'held' },
        TaskReleased: { guard: 'isHeld', actions: 'releasedHold' },
        TaskPreempted: { guard: 'requeueAllowed', target: 'QUEUED', actions: 'preempted' },
        StopRequested: { guard: 'stopAllowed', actions: 'stopRequested' },
        TaskCompleted: { target: 'COMPLETED', actions: 'completed' },
        TaskFailed: { guard: 'failureAllowed', target: 'FAILED', actions: 'failed' },
        TaskCancelled: { guard: 'stoppingForCancel', target: 'CANCELLED', actions: 'cancelled' },
      },
    },
    TRAINING: {
      on: {
        ProgressRecorded: { actions: 'progressed' },
        ArtifactRecorded: { actions: 'artifact' },
        CheckpointRecorded: { actions: 'checkpointed' },
        TaskHeld: { guard: 'heldOrPreempting', actions: 'held' },
        TaskReleased: { guard: 'isHeld', actions: 'releasedHold' },
        TaskPreempted: { guard: 'requeueAllowed', target: 'QUEUED', actions: 'preempted' },
        StopRequested: { guard: 'stopAllowed', actions: 'stopRequested' },
        TaskCompleted: { target: 'COMPLETED', actions: 'completed' },
        TaskFailed: { guard: 'failureAllowed', target: 'FAILED', actions: 'failed' },
        TaskCancelled: { guard: 'stoppingForCancel', target: 'CANCELLED', actions: 'cancelled' },
      },
    },
    COMPLETED: { on: { TaskDeleted: { guard: 'notDeleted', actions: 'deleted' } } },
    FAILED: { on: { TaskDeleted: { guard: 'notDeleted', actions: 'deleted' } } },
    CANCELLED: { on: { TaskDeleted: { guard: 'notDeleted', actions: 'deleted' } } },
  },
});

export type TaskSnapshot = SnapshotFrom<typeof taskMachine>;

type GuardName = keyof typeof guards;

/** The rule each guard enforces, in the words a refused caller reads (null: the generic "not allowed while …" says it). */
const guardRefusals: Record<GuardName, ((ctx: Ctx) => string) | null> = {
  notSpawned: () => 'a trainer was already recorded for this attempt',
  stopAllowed: (ctx) => `a stop (${ctx.stop?.reason}) was already requested; the task ends when its trainer exits`,
  notDeleted: () => 'the task was already deleted',
  stoppingForCancel: null,
  requeueAllowed: (ctx) => `it is held by ${ctx.runnerId ?? 'no instance'}, not by the instance named`,
  failureAllowed: null,
  notHeld: () => 'it is paused; resume it first',
  isHeld: () => 'it is not paused',
  heldOrPreempting: (ctx) => (ctx.held ? 'it is paused already' : 'a running task is paused by preempting it first'),
  slurmJobDue: (ctx) => (ctx.held ? 'it is paused' : `Slurm job ${ctx.slurmJob?.jobId} already runs its next attempt`),
};

/** The task as it stands: a machine snapshot plus the stream version it has folded. */
export interface TaskState {
  snapshot: TaskSnapshot;
  version: number;
}

const taskSteps = machineSteps(taskMachine);

/**
 * The events whose fold writes their own log position into the record (the queue's FIFO key),
 * and the record's field each one writes. A record folded from any other events is the same
 * wherever they land in the log, so a store may write it before the append that draws their
 * positions has answered.
 */
export const RECORD_POSITION_FIELDS: Readonly<Partial<Record<TaskEventType, 'submittedPosition' | 'queuedPosition'>>> = {
  TaskSubmitted: 'submittedPosition',
  TaskQueued: 'queuedPosition',
};

export const EVENTS_RECORDING_THEIR_POSITION: ReadonlySet<TaskEventType> = new Set(Object.keys(RECORD_POSITION_FIELDS) as TaskEventType[]);

/**
 * A new task's record, folded from its first events at any positions (a store's provisional
 * ones), with the positions those events were given: what folding the stored events gives.
 * Only for a task's first events: a later event (a preemption) may copy a position elsewhere.
 */
export function newTaskRecordAt(record: TaskRecord, events: readonly StoredTaskEvent[]): TaskRecord {
  const out = { ...record };
  for (const e of events) {
    const field = RECORD_POSITION_FIELDS[e.type];
    if (field) out[field] = e.position;
  }
  return out;
}

export function initialState(): TaskState {
  return { snapshot: taskSteps.initial, version: 0 };
}

export function statusOf(state: TaskState): TaskStatus | null {
  const v = state.snapshot.value as string;
  return v === 'NEW' ? null : (v as TaskStatus);
}

export function toRecord(state: TaskState): TaskRecord {
  const status = statusOf(state);
  if (!status) throw new Error('task has no events yet');
  return { ...state.snapshot.context, artifacts: [...state.snapshot.context.artifacts], status, version: state.version };
}

/** Rebuild the decision state from a projected record (no need to re-read the stream). */
export function stateFromRecord(record: TaskRecord): TaskState {
  const { status, version, ...context } = record;
  const snapshot = taskMachine.resolveState({ value: status, context });
  return { snapshot, version };
}

export function evolve(state: TaskState, event: StoredTaskEvent): TaskState {
  const lifecycleEvent = {
    type: event.type,
    data: event.data,
    at: event.recordedAt,
    position: event.position,
    actor: event.metadata.actor,
    streamId: event.streamId,
  } as LifecycleEvent;
  if (!state.snapshot.can(lifecycleEvent)) {
    // The log only holds events the machine accepted when they were decided; refusing here
    // means the log and the machine disagree, which must never be papered over.
    throw new Error(
      `event ${event.type} at position ${event.position} is not legal in state ${String(state.snapshot.value)} of task ${event.streamId}`,
    );
  }
  const snapshot = taskSteps.next(state.snapshot, lifecycleEvent);
  return { snapshot, version: event.version };
}

export function fold(events: readonly StoredTaskEvent[], from: TaskState = initialState()): TaskState {
  return events.reduce(evolve, from);
}

// ---------------------------------------------------------------------------------------------
// Commands

export type TaskCommand =
  | { type: 'submit'; taskId: string; spec: TaskSpec }
  | { type: 'enqueue' }
  | { type: 'assign'; devices: DeviceGrant[]; runnerId: string; grounds: PlacementGrounds | null }
  | { type: 'recordSpawn'; pid: number; startTime: string; runDir: string }
  | { type: 'startTraining' }
  | {
      type: 'recordProgress';
      epoch?: number | null;
      totalEpochs?: number | null;
      step?: number | null;
      totalSteps?: number | null;
      loss?: number | null;
      learningRate?: number | null;
    }
  | { type: 'recordArtifact'; path: string }
  | { type: 'cancel'; reason?: string | null }
  /** Past its deadline (`message`: said by whoever saw it, e.g. Slurm's TIMEOUT; else the timeout's length). */
  | { type: 'expire'; message?: string }
  /** A device the task holds is no longer in the inventory (a GPU vanished, a MIG layout changed). */
  | { type: 'loseDevices'; message: string }
  /** A task of a higher class (or a user under their fair share) needs its devices: checkpoint, stop, requeue. */
  | { type: 'preempt'; message: string; grounds?: PreemptionGrounds }
  | { type: 'recordCheckpoint'; path: string; step: number }
  /** Pause: a queued task is kept in its place but not started; a running one must be preempting. */
  | { type: 'hold'; reason?: string | null }
  | { type: 'release' }
  /**
   * The instance `runnerId` that held it stopped renewing its lease: end the attempt as its exit
   * would have (a requested stop decides), else requeue it from its checkpoint, or fail it as
   * lost when it has none and `requeue` is off.
   */
  | { type: 'abandon'; runnerId: string; message: string; requeue: boolean }
  | { type: 'recordExit'; exitCode: number | null; signal: string | null; detail?: string }
  | { type: 'fail'; reason: FailureReason; message: string }
  | { type: 'delete' }
  /** Submitted to Slurm as job `jobId`, which runs its next attempt in `runDir` (TRAINYARD_EXECUTOR=slurm). */
  | { type: 'handToSlurm'; jobId: string; runDir: string };

export type TaskCommandType = TaskCommand['type'];
export const TASK_COMMAND_TYPES: readonly TaskCommandType[] = [
  'submit',
  'enqueue',
  'assign',
  'recordSpawn',
  'startTraining',
  'recordProgress',
  'recordArtifact',
  'cancel',
  'expire',
  'loseDevices',
  'preempt',
  'recordCheckpoint',
  'hold',
  'release',
  'abandon',
  'recordExit',
  'fail',
  'delete',
  'handToSlurm',
];

function eventsFor(state: TaskState, command: TaskCommand): NewTaskEvent[] {
  const ctx = state.snapshot.context;
  switch (command.type) {
    case 'submit':
      return [{ type: 'TaskSubmitted', data: { spec: command.spec } }];
    case 'enqueue':
      return [{ type: 'TaskQueued', data: {} }];
    case 'assign':
      return [
        {
          type: 'TaskAssigned',
          data: {
            devices: command.devices,
            runnerId: command.runnerId,
            attempt: ctx.attempt + 1,
            grounds: command.grounds,
          },
        },
      ];
    case 'recordSpawn':
      return [{ type: 'TrainerSpawned', data: { pid: command.pid, startTime: command.startTime, runDir: command.runDir } }];
    case 'startTraining':
      return [{ type: 'TrainingStarted', data: {} }];
    case 'recordProgress':
      return [
        {
          type: 'ProgressRecorded',
          data: {
            epoch: command.epoch ?? null,
            totalEpochs: command.totalEpochs ?? null,
            step: command.step ?? null,
            totalSteps: command.totalSteps ?? null,
            loss: command.loss ?? null,
            learningRate: command.learningRate ?? null,
          },
        },
      ];
    case 'recordArtifact':
      return [{ type: 'ArtifactRecorded', data: { path: command.path } }];
    case 'cancel': {
      const status = statusOf(state);
      // A task that holds no trainer is cancelled at once; a running one is asked to stop and
      // becomes CANCELLED when its trainer has exited (so its GPU is really free by then).
      if (status === 'PENDING' || status === 'QUEUED') return [{ type: 'TaskCancelled', data: { reason: command.reason ?? null } }];
      return [{ type: 'StopRequested', data: { reason: 'cancel', message: command.reason ?? 'cancelled by user' } }];
    }
    case 'expire':
      return [
        {
          type: 'StopRequested',
          data: { reason: 'timeout', message: command.message ?? `timed out after ${formatDuration(ctx.spec?.timeoutMs ?? 0)}` },
        },
      ];
    case 'preempt':
      return [
        {
          type: 'StopRequested',
          data: { reason: 'preempt', message: command.message, ...(command.grounds ? { grounds: command.grounds } : {}) },
        },
      ];
    case 'hold':
      return [{ type: 'TaskHeld', data: { reason: command.reason ?? null } }];
    case 'release':
      return [{ type: 'TaskReleased', data: {} }];
    case 'recordCheckpoint':
      return [{ type: 'CheckpointRecorded', data: { path: command.path, step: command.step } }];
    case 'loseDevices':
      return [{ type: 'StopRequested', data: { reason: 'device-lost', message: command.message } }];
    case 'abandon': {
      const status = statusOf(state);
      if (status && isActive(status) && ctx.runnerId !== command.runnerId)
        throw new IllegalCommandError(
          ctx.id,
          status,
          'abandon',
          `it is held by ${ctx.runnerId ?? 'no instance'}, not by ${command.runnerId}`,
        );
      // Its trainer is out of reach (no exit status will come): a stop already asked for decides
      // as the exit would have; otherwise back to the queue from the last checkpoint.
      const stop = ctx.stop;
      if (stop?.reason === 'cancel') return [{ type: 'TaskCancelled', data: { reason: stop.message } }];
      if (stop?.reason === 'timeout' || stop?.reason === 'device-lost')
        return [
          {
            type: 'TaskFailed',
            data: { reason: stop.reason === 'timeout' ? 'timeout' : 'lost', message: stop.message, exitCode: null, signal: null },
          },
        ];
      const lost = { runnerId: command.runnerId, message: command.message };
      // A trainer never started, a preemption under way, or a checkpoint to resume from: nothing is lost by requeueing.
      if (command.requeue || ctx.checkpoint || !ctx.trainer || stop?.reason === 'preempt')
        return [{ type: 'TaskPreempted', data: { exitCode: null, signal: null, checkpoint: ctx.checkpoint, lost } }];
      return [
        {
          type: 'TaskFailed',
          data: {
            reason: 'lost',
            message: `${command.message}; it has no checkpoint to resume from and requeueing lost tasks is off (TRAINYARD_REQUEUE_LOST)`,
            exitCode: null,
            signal: null,
          },
        },
      ];
    }
    case 'recordExit': {
      // The exit decides the one terminal event. A requested stop wins over the exit code: the
      // user asked for it, and the code of a signalled trainer says nothing about the training.
      if (ctx.stop?.reason === 'cancel') return [{ type: 'TaskCancelled', data: { reason: ctx.stop.message } }];
      if (ctx.stop?.reason === 'timeout')
        return [
          {
            type: 'TaskFailed',
            data: { reason: 'timeout', message: ctx.stop.message, exitCode: command.exitCode, signal: command.signal },
          },
        ];
      // Preempted: back to the queue whatever the code (the checkpoint says where to resume).
      if (ctx.stop?.reason === 'preempt')
        return [{ type: 'TaskPreempted', data: { exitCode: command.exitCode, signal: command.signal, checkpoint: ctx.checkpoint } }];
      // Whatever the code: a trainer whose GPU went away did not finish its training there.
      if (ctx.stop?.reason === 'device-lost')
        return [
          { type: 'TaskFailed', data: { reason: 'lost', message: ctx.stop.message, exitCode: command.exitCode, signal: command.signal } },
        ];
      if (command.exitCode === 0) return [{ type: 'TaskCompleted', data: { exitCode: 0 } }];
      const how = command.signal ? `killed by ${command.signal}` : `exited with code ${command.exitCode}`;
      return [
        {
          type: 'TaskFailed',
          data: {
            reason: command.signal ? 'signal' : 'exit',
            message: command.detail ? `trainer ${how}: ${command.detail}` : `trainer ${how}`,
            exitCode: command.exitCode,
            signal: command.signal,
          },
        },
      ];
    }
    case 'fail':
      return [{ type: 'TaskFailed', data: { reason: command.reason, message: command.message, exitCode: null, signal: null } }];
    case 'delete':
      return [{ type: 'TaskDeleted', data: {} }];
    case 'handToSlurm':
      return [{ type: 'TaskHandedToSlurm', data: { jobId: command.jobId, runDir: command.runDir, attempt: ctx.attempt + 1 } }];
  }
}

/**
 * Decide what a command means for a task: the events to append, or an IllegalCommandError
 * naming the task, its status and the command. Every event is checked against the machine.
 */
export function decide(state: TaskState, command: TaskCommand, taskId?: string): NewTaskEvent[] {
  const id = taskId ?? (command.type === 'submit' ? command.taskId : state.snapshot.context.id);
  const events = eventsFor(state, command);
  let probe = state.snapshot;
  for (const [i, ev] of events.entries()) {
    const lifecycleEvent = { ...ev, at: '1970-01-01T00:00:00.000Z', position: '0', actor: '', streamId: id } as LifecycleEvent;
    if (!probe.can(lifecycleEvent)) {
      throw new IllegalCommandError(id, statusOf(state), command.type, refusal(probe, lifecycleEvent, command));
    }
    // Each event is checked in the state the ones before it leave; nothing checks the state after the last.
    if (i < events.length - 1) probe = taskSteps.next(probe, lifecycleEvent);
  }
  return events;
}

/** Why the machine refused `event` in `snapshot`: no transition for it in that state, or the guard that failed. */
function refusal(snapshot: TaskSnapshot, event: LifecycleEvent, command: TaskCommand): string {
  const value = String(snapshot.value);
  const on = taskMachine.config.states?.[value]?.on as Record<string, { guard?: GuardName } | undefined> | undefined;
  const rule = on?.[event.type];
  if (rule?.guard) {
    const phrase = guardRefusals[rule.guard];
    if (phrase) return phrase(snapshot.context);
  } else if (!rule) {
    if (value === 'NEW') return 'no such task';
    if (event.type === 'TaskSubmitted') return 'the task already exists';
    if (isTerminal(value as TaskStatus)) return 'the task has already ended';
    if (event.type === 'TaskDeleted') return 'only finished tasks (COMPLETED, FAILED, CANCELLED) can be deleted; cancel it first';
  }
  return `${command.type} is not allowed while the task is ${value}`;
}

function formatDuration(ms: number): string {
  if (ms % 3_600_000 === 0 && ms > 0) return `${ms / 3_600_000} h`;
  if (ms % 60_000 === 0 && ms > 0) return `${ms / 60_000} min`;
  return `${Math.round(ms / 100) / 10} s`;
}
