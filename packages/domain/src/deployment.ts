// The deployment lifecycle: a vLLM server serving a base model, optionally with LoRA adapters of
// completed tasks. Its events live in the same log as tasks', on streams of their own (`dep-…`).
// As for tasks, an XState machine is the one authority on legal transitions; `decideDeployment`
// turns a command into events (refused with the machine's reason), `evolveDeployment` folds a
// stored event into the record. Pure: times come from the events.
//
//   STARTING ── DeploymentServing ──▶ SERVING ⇄ SLEEPING
//      │                                 │          │
//      └──── DeploymentStopped | DeploymentFailed ──┴──▶ STOPPED | FAILED
import { assign, setup, type SnapshotFrom } from 'xstate';
import { machineSteps } from './machine-steps';

export const DEPLOYMENT_ID_PREFIX = 'dep-';
export const isDeploymentStream = (streamId: string): boolean => streamId.startsWith(DEPLOYMENT_ID_PREFIX);

export type TrainingDemandPolicy = 'wait' | 'sleep' | 'stop';

export interface DeploymentAdapter {
  /** The model name clients ask for (a task's adapter is named after the task). */
  name: string;
  /** The adapter's folder. */
  path: string;
  /** The task it came from, if any. */
  taskId: string | null;
}

export interface DeploymentSpec {
  /** The base model served. */
  model: string;
  /** Set when the deployment serves a completed task's adapter (Studio's "use as backend"). */
  taskId: string | null;
  adapters: DeploymentAdapter[];
  /** Devices, tensor parallel across them. */
  gpus: number;
  gpuMemoryUtilization: number;
  maxModelLen: number | null;
  /** Loopback port asked for (null: the service picks a free one). */
  port: number | null;
  onTrainingDemand: TrainingDemandPolicy;
  /** Its priority class (as a task's): a training task of a lower priority never makes it yield. Absent: 0. */
  priority?: { name: string; value: number } | undefined;
  /**
   * Serve the task's adapter merged into the base weights (one model named after the task, no LoRA
   * at serving time) instead of as a LoRA module. Absent: false.
   */
  merge?: boolean | undefined;
}

/** Memory a deployment holds on one device (gpuMemoryUtilization × the device's memory). */
export interface DeploymentHold {
  deviceId: string;
  gpuIndex: number;
  uuid: string | null;
  memoryMb: number;
}

/** Why a deployment gives its devices up for a while: put to sleep or stopped, for a training task. */
export interface DeploymentYield {
  mode: 'sleep' | 'stop';
  forTaskId: string;
  message: string;
}

/** How often a server that dies on its own is started again before the deployment is FAILED. */
export const MAX_DEPLOYMENT_RESTARTS = 2;

/**
 * The restarts counted against a deployment whose server just died, at `now`: none once its
 * server had served (SERVING, or asleep since) for `stableMs` since it last came up, so a
 * long-lived deployment that dies now and then over weeks gets its budget back each time; else
 * those it has used. A server that died before serving again (STARTING) keeps its count.
 */
export function restartsCounted(
  r: Pick<DeploymentRecord, 'restarts' | 'servingAt' | 'status'>,
  now: string,
  stableMs: number | undefined,
): number {
  if (stableMs === undefined || r.restarts === 0 || r.status === 'STARTING' || r.servingAt === null) return r.restarts;
  return Date.parse(now) - Date.parse(r.servingAt) >= stableMs ? 0 : r.restarts;
}

export type DeploymentStatus = 'STARTING' | 'SERVING' | 'SLEEPING' | 'STOPPED' | 'FAILED';
export const DEPLOYMENT_STATUSES: readonly DeploymentStatus[] = ['STARTING', 'SERVING', 'SLEEPING', 'STOPPED', 'FAILED'];
export const isDeploymentEnded = (s: DeploymentStatus): boolean => s === 'STOPPED' || s === 'FAILED';

export interface DeploymentServer {
  pid: number;
  startTime: string;
  runDir: string;
  port: number;
  /** GPU indices it runs on. */
  devices: number[];
}

export interface DeploymentEventMap {
  DeploymentCreated: { spec: DeploymentSpec };
  /** Its devices and memory, granted under the queue lock (the scheduler counts them as held). */
  DeploymentPlaced: { devices: DeploymentHold[] };
  /** It is to give its devices up for a training task (sleep, or stop and start again later). */
  DeploymentYielding: DeploymentYield;
  /** Asleep, and nvidia-smi shows its memory released: its devices count as free. */
  DeploymentReleased: { observed: string };
  /** Its memory is held again (granted under the queue lock), before it is woken. */
  DeploymentReclaimed: Record<string, never>;
  /** Its server ended (given way to training, or died) and a new one is to be started. */
  DeploymentRestarting: {
    reason: 'yield' | 'died';
    message: string;
    /** Restarts counted after this one (absent in events written before the budget could come back). */
    restarts?: number;
  };
  DeploymentLaunched: DeploymentServer;
  /** Health (`/health`) and the served models (`/v1/models`) were confirmed. */
  DeploymentServing: { endpoint: string; servedModels: string[] };
  /** vLLM confirmed it sleeps (`/is_sleeping`): weights in CPU memory, KV cache dropped. */
  DeploymentSlept: { level: number };
  DeploymentWoken: Record<string, never>;
  DeploymentStopRequested: { reason: string };
  DeploymentStopped: { exitCode: number | null; signal: string | null };
  DeploymentFailed: { message: string; exitCode: number | null; signal: string | null };
  DeploymentDeleted: Record<string, never>;
  /** A completed task's adapter loaded into its running server (`/v1/load_lora_adapter`); served after a restart too. */
  DeploymentAdapterAdded: { adapter: DeploymentAdapter };
  /** An adapter unloaded from its running server (`/v1/unload_lora_adapter`). */
  DeploymentAdapterRemoved: { name: string };
}
export type DeploymentEventType = keyof DeploymentEventMap;
export const DEPLOYMENT_EVENT_TYPES = [
  'DeploymentCreated',
  'DeploymentPlaced',
  'DeploymentYielding',
  'DeploymentReleased',
  'DeploymentReclaimed',
  'DeploymentRestarting',
  'DeploymentLaunched',
  'DeploymentServing',
  'DeploymentSlept',
  'DeploymentWoken',
  'DeploymentStopRequested',
  'DeploymentStopped',
  'DeploymentFailed',
  'DeploymentDeleted',
  'DeploymentAdapterAdded',
  'DeploymentAdapterRemoved',
] as const satisfies readonly DeploymentEventType[];

export type NewDeploymentEvent = { [K in DeploymentEventType]: { type: K; data: DeploymentEventMap[K] } }[DeploymentEventType];

/** A deployment event as stored in the log (the fields the fold reads). */
export type StoredDeploymentEvent = NewDeploymentEvent & { streamId: string; version: number; recordedAt: string; position: string };

export interface DeploymentRecord {
  id: string;
  spec: DeploymentSpec;
  status: DeploymentStatus;
  createdAt: string;
  servingAt: string | null;
  finishedAt: string | null;
  server: DeploymentServer | null;
  /** Base URL of the OpenAI-compatible API (`…/v1`), once SERVING. */
  endpoint: string | null;
  servedModels: string[];
  stopReason: string | null;
  error: string | null;
  exitCode: number | null;
  signal: string | null;
  deleted: boolean;
  /** The devices it was placed on (kept while it sleeps: its server stays bound to them). */
  devices: DeploymentHold[];
  /** Whether its memory counts as held now (false once released asleep, or before placement). */
  holding: boolean;
  /** Set while it gives way to a training task (until it serves again). */
  yielding: DeploymentYield | null;
  /** Servers started again after one died. */
  restarts: number;
  version: number;
}

/** What a deployment holds on devices now: its placement while it holds it, nothing once ended. */
export const deploymentHolds = (r: Pick<DeploymentRecord, 'devices' | 'holding' | 'status'>): DeploymentHold[] =>
  r.holding && !isDeploymentEnded(r.status) ? r.devices : [];

type Ctx = Omit<DeploymentRecord, 'status' | 'version'>;
type MachineEvent = {
  [K in DeploymentEventType]: { type: K; data: DeploymentEventMap[K]; at: string; streamId: string };
}[DeploymentEventType];
type Ev<K extends DeploymentEventType> = Extract<MachineEvent, { type: K }>;

const emptyContext = (): Ctx => ({
  id: '',
  spec: null as unknown as DeploymentSpec,
  createdAt: '',
  servingAt: null,
  finishedAt: null,
  server: null,
  endpoint: null,
  servedModels: [],
  stopReason: null,
  error: null,
  exitCode: null,
  signal: null,
  deleted: false,
  devices: [],
  holding: false,
  yielding: null,
  restarts: 0,
});

const guards = {
  notLaunched: ({ context }: { context: Ctx }) => context.server === null,
  unplaced: ({ context }: { context: Ctx }) => context.server === null && !context.holding,
  placedNotLaunched: ({ context }: { context: Ctx }) => context.server === null && context.holding,
  mayYield: ({ context }: { context: Ctx }) => context.stopReason === null && context.yielding === null,
  holding: ({ context }: { context: Ctx }) => context.holding,
  released: ({ context }: { context: Ctx }) => !context.holding,
  launched: ({ context }: { context: Ctx }) => context.server !== null,
  notStopping: ({ context }: { context: Ctx }) => context.stopReason === null,
  notDeleted: ({ context }: { context: Ctx }) => !context.deleted,
};

const ended = (at: string) => ({ finishedAt: at, endpoint: null, holding: false });

export const deploymentMachine = setup({
  types: { context: {} as Ctx, events: {} as MachineEvent },
  guards,
  actions: {
    created: assign(({ event }) => ({
      ...emptyContext(),
      id: event.streamId,
      spec: (event as Ev<'DeploymentCreated'>).data.spec,
      createdAt: event.at,
    })),
    launched: assign(({ event }) => ({ server: { ...(event as Ev<'DeploymentLaunched'>).data } })),
    placed: assign(({ event }) => ({ devices: (event as Ev<'DeploymentPlaced'>).data.devices.map((d) => ({ ...d })), holding: true })),
    yielding: assign(({ event }) => ({ yielding: { ...(event as Ev<'DeploymentYielding'>).data } })),
    released: assign({ holding: false }),
    reclaimed: assign({ holding: true }),
    woken: assign({ yielding: null }),
    restarting: assign(({ event, context }) => {
      const e = event as Ev<'DeploymentRestarting'>;
      return {
        server: null,
        endpoint: null,
        holding: false,
        devices: [],
        restarts: e.data.restarts ?? context.restarts + (e.data.reason === 'died' ? 1 : 0),
        error: e.data.reason === 'died' ? e.data.message : context.error,
      };
    }),
    serving: assign(({ event }) => {
      const e = event as Ev<'DeploymentServing'>;
      return { endpoint: e.data.endpoint, servedModels: [...e.data.servedModels], servingAt: e.at, yielding: null };
    }),
    stopRequested: assign(({ event }) => ({ stopReason: (event as Ev<'DeploymentStopRequested'>).data.reason })),
    stopped: assign(({ event }) => {
      const e = event as Ev<'DeploymentStopped'>;
      return { ...ended(e.at), exitCode: e.data.exitCode, signal: e.data.signal };
    }),
    failed: assign(({ event }) => {
      const e = event as Ev<'DeploymentFailed'>;
      return { ...ended(e.at), error: e.data.message, exitCode: e.data.exitCode, signal: e.data.signal };
    }),
    deleted: assign({ deleted: true }),
    adapterAdded: assign(({ event, context }) => {
      const a = (event as Ev<'DeploymentAdapterAdded'>).data.adapter;
      return {
        spec: { ...context.spec, adapters: [...context.spec.adapters, { ...a }] },
        servedModels: [...context.servedModels.filter((m) => m !== a.name), a.name],
      };
    }),
    adapterRemoved: assign(({ event, context }) => {
      const { name } = (event as Ev<'DeploymentAdapterRemoved'>).data;
      return {
        spec: { ...context.spec, adapters: context.spec.adapters.filter((x) => x.name !== name) },
        servedModels: context.servedModels.filter((m) => m !== name),
      };
    }),
  },
}).createMachine({
  id: 'deployment',
  initial: 'NEW',
  context: emptyContext,
  states: {
    NEW: { on: { DeploymentCreated: { target: 'STARTING', actions: 'created' } } },
    STARTING: {
      on: {
        DeploymentPlaced: { guard: 'unplaced', actions: 'placed' },
        DeploymentLaunched: { guard: 'placedNotLaunched', actions: 'launched' },
        DeploymentRestarting: { guard: 'launched', actions: 'restarting' },
        DeploymentServing: { guard: 'launched', target: 'SERVING', actions: 'serving' },
        DeploymentStopRequested: { guard: 'notStopping', actions: 'stopRequested' },
        DeploymentStopped: { target: 'STOPPED', actions: 'stopped' },
        DeploymentFailed: { target: 'FAILED', actions: 'failed' },
      },
    },
    SERVING: {
      on: {
        DeploymentYielding: { guard: 'mayYield', actions: 'yielding' },
        DeploymentAdapterAdded: { guard: 'notStopping', actions: 'adapterAdded' },
        DeploymentAdapterRemoved: { guard: 'notStopping', actions: 'adapterRemoved' },
        DeploymentRestarting: { target: 'STARTING', actions: 'restarting' },
        DeploymentSlept: { target: 'SLEEPING' },
        DeploymentStopRequested: { guard: 'notStopping', actions: 'stopRequested' },
        DeploymentStopped: { target: 'STOPPED', actions: 'stopped' },
        DeploymentFailed: { target: 'FAILED', actions: 'failed' },
      },
    },
    SLEEPING: {
      on: {
        DeploymentReleased: { guard: 'holding', actions: 'released' },
        DeploymentReclaimed: { guard: 'released', actions: 'reclaimed' },
        DeploymentWoken: { guard: 'holding', target: 'SERVING', actions: 'woken' },
        DeploymentRestarting: { target: 'STARTING', actions: 'restarting' },
        DeploymentStopRequested: { guard: 'notStopping', actions: 'stopRequested' },
        DeploymentStopped: { target: 'STOPPED', actions: 'stopped' },
        DeploymentFailed: { target: 'FAILED', actions: 'failed' },
      },
    },
    STOPPED: { on: { DeploymentDeleted: { guard: 'notDeleted', actions: 'deleted' } } },
    FAILED: { on: { DeploymentDeleted: { guard: 'notDeleted', actions: 'deleted' } } },
  },
});

type DeploymentSnapshot = SnapshotFrom<typeof deploymentMachine>;

export interface DeploymentState {
  snapshot: DeploymentSnapshot;
  version: number;
}

const deploymentSteps = machineSteps(deploymentMachine);

export function initialDeploymentState(): DeploymentState {
  return { snapshot: deploymentSteps.initial, version: 0 };
}

export function deploymentStatusOf(state: DeploymentState): DeploymentStatus | null {
  const v = state.snapshot.value as string;
  return v === 'NEW' ? null : (v as DeploymentStatus);
}

export function toDeploymentRecord(state: DeploymentState): DeploymentRecord {
  const status = deploymentStatusOf(state);
  if (!status) throw new Error('deployment has no events yet');
  const c = state.snapshot.context;
  return { ...c, servedModels: [...c.servedModels], status, version: state.version };
}

export function deploymentStateFromRecord(record: DeploymentRecord): DeploymentState {
  const { status, version, ...rest } = record;
  // Records projected before placement existed lack its fields.
  const context: Ctx = { ...emptyContext(), ...rest };
  return { snapshot: deploymentMachine.resolveState({ value: status, context }), version };
}

function machineEvent(event: StoredDeploymentEvent | (NewDeploymentEvent & { streamId: string; recordedAt: string })): MachineEvent {
  return { type: event.type, data: event.data, at: event.recordedAt, streamId: event.streamId } as MachineEvent;
}

export function evolveDeployment(state: DeploymentState, event: StoredDeploymentEvent): DeploymentState {
  const e = machineEvent(event);
  if (!state.snapshot.can(e)) {
    throw new Error(
      `event ${event.type} at position ${event.position} is not legal in state ${String(state.snapshot.value)} of deployment ${event.streamId}`,
    );
  }
  const snapshot = deploymentSteps.next(state.snapshot, e);
  return { snapshot, version: event.version };
}

export function foldDeployment(events: readonly StoredDeploymentEvent[], from = initialDeploymentState()): DeploymentState {
  return events.reduce(evolveDeployment, from);
}

export type DeploymentCommand =
  | { type: 'create'; deploymentId: string; spec: DeploymentSpec }
  | { type: 'place'; devices: DeploymentHold[] }
  | { type: 'yield'; yielding: DeploymentYield }
  | { type: 'recordRelease'; observed: string }
  | { type: 'reclaim' }
  | { type: 'recordLaunch'; server: DeploymentServer }
  | { type: 'markServing'; endpoint: string; servedModels: string[] }
  | { type: 'recordSleep'; level: number }
  | { type: 'recordWake' }
  | { type: 'stop'; reason: string }
  /** Its server process ended: stopped when a stop was asked for, else failed. */
  | {
      type: 'recordExit';
      exitCode: number | null;
      signal: string | null;
      detail?: string;
      /** When it was seen to end, and how long serving counts as stable (its restart budget back): see restartsCounted. */
      now?: string;
      stableMs?: number;
    }
  | { type: 'fail'; message: string }
  | { type: 'delete' }
  /** Record an adapter loaded into (or unloaded from) its running server. */
  | { type: 'addAdapter'; adapter: DeploymentAdapter }
  | { type: 'removeAdapter'; name: string };

/** A command the deployment lifecycle does not allow in the deployment's current state. */
export class DeploymentCommandError extends Error {
  readonly code = 'ILLEGAL_DEPLOYMENT_COMMAND' as const;
  constructor(
    readonly deploymentId: string,
    readonly status: DeploymentStatus | null,
    readonly command: string,
    readonly detail: string,
  ) {
    super(
      status !== null
        ? `cannot ${command} deployment ${deploymentId}: it is ${status}; ${detail}`
        : detail
          ? `cannot ${command} deployment ${deploymentId}: ${detail}`
          : `deployment ${deploymentId} does not exist (command ${command})`,
    );
    this.name = 'DeploymentCommandError';
  }
}

const guardRefusals: Record<keyof typeof guards, string> = {
  notLaunched: 'its server was already launched',
  unplaced: 'it was already placed on devices',
  placedNotLaunched: 'it is not placed on devices, or its server was already launched',
  mayYield: 'it is already stopping or giving way to a training task',
  holding: 'its memory is not held (released while asleep)',
  released: 'its memory is still held',
  launched: 'its server has not been launched',
  notStopping: 'a stop was already requested; it ends when its server exits',
  notDeleted: 'it was already deleted',
};

function eventsFor(state: DeploymentState, command: DeploymentCommand): NewDeploymentEvent[] {
  switch (command.type) {
    case 'create':
      return [{ type: 'DeploymentCreated', data: { spec: command.spec } }];
    case 'place':
      return [{ type: 'DeploymentPlaced', data: { devices: command.devices.map((d) => ({ ...d })) } }];
    case 'yield':
      return [{ type: 'DeploymentYielding', data: { ...command.yielding } }];
    case 'recordRelease':
      return [{ type: 'DeploymentReleased', data: { observed: command.observed } }];
    case 'reclaim':
      return [{ type: 'DeploymentReclaimed', data: {} }];
    case 'recordLaunch':
      return [{ type: 'DeploymentLaunched', data: { ...command.server, devices: [...command.server.devices] } }];
    case 'markServing':
      return [{ type: 'DeploymentServing', data: { endpoint: command.endpoint, servedModels: [...command.servedModels] } }];
    case 'recordSleep':
      return [{ type: 'DeploymentSlept', data: { level: command.level } }];
    case 'recordWake':
      return [{ type: 'DeploymentWoken', data: {} }];
    case 'stop':
      // Not launched yet: nothing runs, so it is stopped at once.
      return state.snapshot.context.server === null
        ? [{ type: 'DeploymentStopped', data: { exitCode: null, signal: null } }]
        : [{ type: 'DeploymentStopRequested', data: { reason: command.reason } }];
    case 'recordExit': {
      const { exitCode, signal } = command;
      const c = state.snapshot.context;
      if (c.stopReason !== null) return [{ type: 'DeploymentStopped', data: { exitCode, signal } }];
      // Stopped to give way to training: started again once its devices are free.
      if (c.yielding?.mode === 'stop') return [{ type: 'DeploymentRestarting', data: { reason: 'yield', message: c.yielding.message } }];
      const how = signal ? `signal ${signal}` : `exit code ${String(exitCode)}`;
      const message = `the vLLM server ended on its own (${how})${command.detail ? `: ${command.detail}` : ''}`;
      const status = deploymentStatusOf(state) ?? 'STARTING';
      const used = command.now === undefined ? c.restarts : restartsCounted({ ...c, status }, command.now, command.stableMs);
      if (used < MAX_DEPLOYMENT_RESTARTS) {
        const again = used < c.restarts ? ` after serving stably since ${c.servingAt}, its restart budget back` : '';
        return [
          {
            type: 'DeploymentRestarting',
            data: {
              reason: 'died',
              message: `${message}; started again (${used + 1} of ${MAX_DEPLOYMENT_RESTARTS}${again})`,
              restarts: used + 1,
            },
          },
        ];
      }
      const final = used ? `${message}, after ${used} restart(s)` : message;
      return [{ type: 'DeploymentFailed', data: { message: final, exitCode, signal } }];
    }
    case 'fail':
      return [{ type: 'DeploymentFailed', data: { message: command.message, exitCode: null, signal: null } }];
    case 'delete':
      return [{ type: 'DeploymentDeleted', data: {} }];
    case 'addAdapter': {
      const c = state.snapshot.context;
      if (c.spec.adapters.some((a) => a.name === command.adapter.name) || c.spec.model === command.adapter.name)
        throw new DeploymentCommandError(c.id, deploymentStatusOf(state), 'addAdapter', `it already serves ${command.adapter.name}`);
      if (c.spec.adapters.length === 0)
        throw new DeploymentCommandError(
          c.id,
          deploymentStatusOf(state),
          'addAdapter',
          'it was started without LoRA (--enable-lora): serve an adapter from its creation',
        );
      return [{ type: 'DeploymentAdapterAdded', data: { adapter: { ...command.adapter } } }];
    }
    case 'removeAdapter': {
      const c = state.snapshot.context;
      if (!c.spec.adapters.some((a) => a.name === command.name))
        throw new DeploymentCommandError(c.id, deploymentStatusOf(state), 'removeAdapter', `it serves no adapter named ${command.name}`);
      return [{ type: 'DeploymentAdapterRemoved', data: { name: command.name } }];
    }
  }
}

/** The events `command` produces, checked against the machine; refused with the machine's reason. */
export function decideDeployment(state: DeploymentState, command: DeploymentCommand, streamId: string): NewDeploymentEvent[] {
  const status = deploymentStatusOf(state);
  if (command.type !== 'create' && status === null) throw new DeploymentCommandError(streamId, null, command.type, '');
  if (command.type === 'create' && !isDeploymentStream(streamId)) {
    throw new DeploymentCommandError(streamId, status, 'create', `a deployment id starts with ${DEPLOYMENT_ID_PREFIX}`);
  }
  const out = eventsFor(state, command);
  let snapshot = state.snapshot;
  for (const ev of out) {
    const e = machineEvent({ ...ev, streamId, recordedAt: '' });
    if (!snapshot.can(e)) {
      const node = deploymentMachine.states[String(snapshot.value) as keyof typeof deploymentMachine.states];
      const candidates = node?.config.on?.[ev.type as keyof typeof node.config.on] as { guard?: keyof typeof guards } | undefined;
      const detail = candidates?.guard
        ? guardRefusals[candidates.guard]
        : `${command.type} is not allowed while it is ${String(snapshot.value)}`;
      throw new DeploymentCommandError(streamId, status, command.type, detail);
    }
    snapshot = deploymentSteps.next(snapshot, e);
  }
  return out;
}

/**
 * The memory fraction vLLM takes by default, by model size (the seed's table: ≤ 0.5B: 0.3,
 * 1.5–3B: 0.5–0.6, 7B+: 0.8–0.9), between its rows the nearer smaller row.
 */
export function defaultGpuMemoryUtilization(paramsBillions: number | null): number {
  if (paramsBillions === null) return 0.8;
  if (paramsBillions <= 0.5) return 0.3;
  if (paramsBillions <= 1) return 0.4;
  if (paramsBillions <= 3) return 0.55;
  if (paramsBillions < 7) return 0.7;
  return 0.85;
}
