// Given/when/then helpers for decider specs: events get positions, versions and times as the
// store would give them, so evolve sees exactly what it sees in production.
import {
  decide,
  decideRun,
  fold,
  startRun,
  toRecord,
  type RunDecision,
  type RunDeciderOptions,
  type RunObservation,
  type RunState,
  type TaskRecord,
  initialState,
  CURRENT_SCHEMA_VERSION,
  DEFAULT_RESOURCES,
  type DeviceGrant,
  type NewTaskEvent,
  type StoredTaskEvent,
  type TaskCommand,
  type TaskSpec,
  type TaskState,
} from '../src';

export const T0 = Date.parse('2026-01-01T00:00:00.000Z');

/** A whole GPU given to a task. */
export const grant = (gpuIndex = 0): DeviceGrant => ({
  deviceId: `gpu${gpuIndex}`,
  gpuIndex,
  uuid: `GPU-${gpuIndex}`,
  migProfile: null,
  memoryMb: 81_920,
  exclusive: true,
});

export const spec = (over: Partial<TaskSpec> = {}): TaskSpec => ({
  name: 'demo',
  model: 'Qwen/Qwen2.5-Coder-0.5B-Instruct',
  datasetPath: 'data/train.jsonl',
  outputDir: 'out/demo',
  config: {
    epochs: 3,
    batchSize: 1,
    gradientAccumulation: 16,
    learningRate: 2e-4,
    maxLength: 512,
    load8bit: false,
    load4bit: false,
    loraRank: 8,
    loraAlpha: 16,
  },
  resources: { ...DEFAULT_RESOURCES },
  timeoutMs: 6 * 3_600_000,
  owner: 'alice',
  ...over,
});

export function stored(events: NewTaskEvent[], streamId = 't1', startVersion = 0, startPos = 0): StoredTaskEvent[] {
  return events.map((e, i) => ({
    ...e,
    streamId,
    version: startVersion + i + 1,
    position: String(startPos + i + 1),
    recordedAt: new Date(T0 + (startVersion + i) * 1000).toISOString(),
    metadata: { actor: 'alice', schemaVersion: CURRENT_SCHEMA_VERSION },
  }));
}

export const ev = {
  submitted: (s = spec()): NewTaskEvent => ({ type: 'TaskSubmitted', data: { spec: s } }),
  queued: (): NewTaskEvent => ({ type: 'TaskQueued', data: {} }),
  assigned: (gpuIndex = 0): NewTaskEvent => ({
    type: 'TaskAssigned',
    data: { devices: [grant(gpuIndex)], runnerId: 'r1', attempt: 1, grounds: null },
  }),
  spawned: (): NewTaskEvent => ({ type: 'TrainerSpawned', data: { pid: 4242, startTime: '1234', runDir: '/tmp/run' } }),
  training: (): NewTaskEvent => ({ type: 'TrainingStarted', data: {} }),
  stop: (reason: 'cancel' | 'timeout' | 'device-lost' | 'preempt'): NewTaskEvent => ({
    type: 'StopRequested',
    data: { reason, message: reason },
  }),
  completed: (): NewTaskEvent => ({ type: 'TaskCompleted', data: { exitCode: 0 } }),
  failed: (): NewTaskEvent => ({
    type: 'TaskFailed',
    data: { reason: 'exit', message: 'boom', exitCode: 1, signal: null },
  }),
  cancelled: (): NewTaskEvent => ({ type: 'TaskCancelled', data: { reason: null } }),
  deleted: (): NewTaskEvent => ({ type: 'TaskDeleted', data: {} }),
};

export function given(...events: NewTaskEvent[]): TaskState {
  return fold(stored(events), initialState());
}

/** when(command) on a given state: the decided events' types, or the error thrown. */
export function when(state: TaskState, command: TaskCommand): string[] | Error {
  try {
    return decide(state, command, 't1').map((e) => e.type);
  } catch (e) {
    return e as Error;
  }
}

// ---------------------------------------------------------------------------------------------
// The run decider: given a run (its task, then what was observed), when this is observed, then
// these commands and effects.

/** A task record at the given events (for the run decider's observations). */
export function record(...events: NewTaskEvent[]): TaskRecord {
  return toRecord(given(...events));
}

/** A run taken in charge for `task`, after these observations (their decisions carried out). */
export function givenRun(task: TaskRecord, ...observations: RunObservation[]): RunState {
  return observations.reduce((run, obs) => decideRun(run, obs).run, startRun(task, '/runs/t1/attempt-1'));
}

/** when(observation) on a run: the decision (commands as command + actor, effects as kinds). */
export function whenRun(run: RunState, obs: RunObservation, options?: RunDeciderOptions): RunDecision {
  return decideRun(run, obs, options);
}

/** The decided commands in short: type and actor, e.g. 'recordSpawn by runner'. */
export const commandsOf = (d: RunDecision): string[] => d.commands.map((c) => `${c.command.type} by ${c.actor}`);
/** The decided effects in short: their kinds (a signal as its name). */
export const effectsOf = (d: RunDecision): string[] =>
  d.effects.map((e) => (e.kind === 'signal' ? e.signal : e.kind === 'log' ? `log ${e.level}` : e.kind));
