// Commands against the log: each runs in one transaction that reads the task's projected
// state, decides with the lifecycle machine, appends with optimistic concurrency, updates the
// read models and, when a slot frees up, runs the scheduling policy, all committing together.
// A conflict (another writer got there first) rolls everything back and the command is retried.
//
// The command logic (TaskCommands) talks to storage through a small repository port, so the
// same code runs on Postgres/PGlite (SqlTaskRepository, below) and inside the deterministic
// simulation of the torture suite.
import {
  CURRENT_SCHEMA_VERSION,
  decide,
  evolve,
  fifoOrder,
  initialState,
  localFifoPolicy,
  stateFromRecord,
  TaskNotFoundError,
  toRecord,
  type Assignment,
  type NewTaskEvent,
  type SchedulingPolicy,
  type SlotView,
  type StoredTaskEvent,
  type TaskCommand,
  type TaskRecord,
  type TaskSpec,
} from '@trainyard/domain';
import { sql } from 'drizzle-orm';
import { pgErrorCode, type Conn, type Database, type Tx } from './database';
import { appendToStream, ConcurrencyError, type AppendMetadata } from './event-store';
import { findByIdempotencyKey, listQueue, listSlots, loadTask, projectTask, type SlotRow } from './read-models';

/** What the command logic needs from storage, inside one transaction. */
export interface TaskRepository {
  loadTask(id: string): Promise<TaskRecord | null>;
  findByIdempotencyKey(owner: string, key: string): Promise<TaskRecord | null>;
  append(streamId: string, expectedVersion: number, events: readonly NewTaskEvent[], meta: AppendMetadata): Promise<StoredTaskEvent[]>;
  project(before: TaskRecord | null, after: TaskRecord, lastPosition: string): Promise<void>;
  listSlots(): Promise<SlotRow[]>;
  listQueue(limit: number): Promise<TaskRecord[]>;
  /**
   * Serialise, until the transaction ends, every transaction that queues a task or fills a slot.
   * A TaskQueued position is drawn at insert but visible only at commit: without this, a
   * scheduler could give a slot to a task queued at p+1 while the one at p was still committing.
   * (Optional: storage that runs one transaction at a time needs nothing.)
   */
  lockQueue?(): Promise<void>;
}

/** Runs `fn` in one transaction: all its writes commit together or not at all. */
export type TransactionRunner = <T>(fn: (repo: TaskRepository) => Promise<T>) => Promise<T>;

export function sqlRepository(tx: Tx): TaskRepository {
  return {
    loadTask: (id) => loadTask(tx, id),
    findByIdempotencyKey: (owner, key) => findByIdempotencyKey(tx, owner, key),
    append: (streamId, expected, events, meta) => appendToStream(tx, streamId, expected, events, meta),
    project: (before, after, pos) => projectTask(tx, before, after, pos),
    listSlots: () => listSlots(tx),
    listQueue: (limit) => listQueue(tx, limit),
    lockQueue: async () => {
      await tx.execute(sql`SELECT pg_advisory_xact_lock(hashtext('trainyard-queue:' || current_schema()))`);
    },
  };
}

export type CommandMeta = AppendMetadata;

export interface CommandResult {
  task: TaskRecord;
  events: StoredTaskEvent[];
  /** Tasks this transaction moved onto a GPU slot: the runner starts their trainers. */
  started: TaskRecord[];
}

export interface SubmitResult extends CommandResult {
  /** False when an idempotency key matched an earlier submission. */
  created: boolean;
}

export interface TaskStoreOptions {
  /** Which service instance runs the trainers of the tasks this store assigns. */
  runnerId: string;
  policy?: SchedulingPolicy;
  /** Slots that must not take work now, with the reason (e.g. GPU held by another program). */
  slotBlocks?: () => ReadonlyMap<number, string>;
  maxAttempts?: number;
  /** Called after each commit with the events it appended (to wake local subscribers). */
  onCommit?: (events: StoredTaskEvent[]) => void;
}

const RETRYABLE = new Set(['23505', '40001', '40P01']);

export function isRetryable(err: unknown): boolean {
  if (err instanceof ConcurrencyError) return true;
  const code = pgErrorCode(err);
  return code !== undefined && RETRYABLE.has(code);
}

/** The command logic, over any storage that offers transactions of a TaskRepository. */
export class TaskCommands {
  readonly policy: SchedulingPolicy;
  constructor(
    private readonly runTransaction: TransactionRunner,
    private readonly opts: TaskStoreOptions,
  ) {
    this.policy = opts.policy ?? localFifoPolicy;
  }

  /** Run `fn` in a transaction, again from the start when it lost a race. */
  async transact<T>(fn: (tx: TaskRepository, appended: StoredTaskEvent[]) => Promise<T>): Promise<T> {
    const max = this.opts.maxAttempts ?? 20;
    for (let attempt = 1; ; attempt++) {
      const appended: StoredTaskEvent[] = [];
      try {
        const result = await this.runTransaction((repo) => fn(repo, appended));
        if (appended.length) this.opts.onCommit?.(appended);
        return result;
      } catch (err) {
        if (attempt >= max || !isRetryable(err)) throw err;
        // Back off a little, randomly, so racing writers do not collide again in lockstep.
        await new Promise((r) => setTimeout(r, Math.random() * Math.min(50, attempt * 5)));
      }
    }
  }

  async submit(taskId: string, spec: TaskSpec, meta: CommandMeta): Promise<SubmitResult> {
    return this.transact(async (tx, appended) => {
      if (spec.idempotencyKey) {
        const existing = await tx.findByIdempotencyKey(spec.owner, spec.idempotencyKey);
        if (existing) return { task: existing, events: [], started: [], created: false };
      }
      await tx.lockQueue?.();
      const submit: TaskCommand = { type: 'submit', taskId, spec };
      const slots = await this.slotViews(tx);
      if (!slots.some(isFree)) {
        // No slot can take it (the usual case while work waits): submitted and queued in one
        // append and one projection write: the same events and record as the steps below.
        const task = await this.applyCommands(tx, appended, null, taskId, [submit, { type: 'enqueue' }], meta);
        return { task, events: appended.filter((e) => e.streamId === taskId), started: [], created: true };
      }
      const submitted = await this.applyCommand(tx, appended, null, taskId, submit, meta);
      const started = await this.scheduleIn(tx, appended, meta, submitted, slots);
      const self = started.find((t) => t.id === taskId);
      const task = self ?? (await this.applyCommand(tx, appended, submitted, taskId, { type: 'enqueue' }, meta));
      return { task, events: appended.filter((e) => e.streamId === taskId), started, created: true };
    });
  }

  /** Decide and apply one command to one task; schedules when the command freed a slot. */
  async execute(taskId: string, command: TaskCommand, meta: CommandMeta): Promise<CommandResult> {
    return this.transact(async (tx, appended) => {
      const before = await tx.loadTask(taskId);
      if (!before) throw new TaskNotFoundError(taskId);
      const task = await this.applyCommand(tx, appended, before, taskId, command, meta);
      const started = before.slotId !== null && task.slotId === null ? await this.scheduleIn(tx, appended, meta) : [];
      return { task, events: appended.filter((e) => e.streamId === taskId), started };
    });
  }

  /** Fill free slots from the queue (after a restart, an unblocked GPU, or on a timer). */
  async schedule(meta: CommandMeta): Promise<TaskRecord[]> {
    return this.transact((tx, appended) => this.scheduleIn(tx, appended, meta));
  }

  private applyCommand(
    tx: TaskRepository,
    appended: StoredTaskEvent[],
    before: TaskRecord | null,
    taskId: string,
    command: TaskCommand,
    meta: CommandMeta,
  ): Promise<TaskRecord> {
    return this.applyCommands(tx, appended, before, taskId, [command], meta);
  }

  /**
   * Decide commands one after another, each on the state the previous one's events lead to,
   * and append all their events at once. Between commands the events are folded provisionally
   * (no position or time yet): decisions depend on event data, never on positions or times.
   */
  private async applyCommands(
    tx: TaskRepository,
    appended: StoredTaskEvent[],
    before: TaskRecord | null,
    taskId: string,
    commands: readonly TaskCommand[],
    meta: CommandMeta,
  ): Promise<TaskRecord> {
    const state = before ? stateFromRecord(before) : initialState();
    const decided: NewTaskEvent[] = [];
    let probe = state;
    for (const [i, command] of commands.entries()) {
      const events = decide(probe, command, taskId);
      decided.push(...events);
      if (i < commands.length - 1) probe = events.reduce((s, e) => evolve(s, provisional(e, taskId, s.version + 1, meta)), probe);
    }
    const stored = await tx.append(taskId, state.version, decided, meta);
    const after = toRecord(stored.reduce(evolve, state));
    await tx.project(before, after, stored[stored.length - 1]!.position);
    appended.push(...stored);
    return after;
  }

  /**
   * The scheduling decision and its events in the caller's transaction. `candidate` is a task
   * just submitted and not yet queued: it may take a free slot only behind everything queued.
   */
  private async scheduleIn(
    tx: TaskRepository,
    appended: StoredTaskEvent[],
    meta: CommandMeta,
    candidate?: TaskRecord,
    slotsRead?: SlotView[],
  ): Promise<TaskRecord[]> {
    await tx.lockQueue?.();
    const slots = slotsRead ?? (await this.slotViews(tx));
    const free = slots.filter(isFree).length;
    if (free === 0) return [];
    const queued = await tx.listQueue(free);
    const byId = new Map(queued.map((t) => [t.id, t]));
    if (candidate) byId.set(candidate.id, candidate);
    const queue = fifoOrder([...byId.values()].map((t) => ({ taskId: t.id, queuedPosition: t.queuedPosition })));
    const assignments: Assignment[] = this.policy.schedule({ slots, queue });
    const started: TaskRecord[] = [];
    for (const a of assignments) {
      const before = byId.get(a.taskId);
      if (!before) throw new Error(`policy ${this.policy.name} assigned unknown task ${a.taskId}`);
      started.push(
        await this.applyCommand(
          tx,
          appended,
          before,
          a.taskId,
          { type: 'assign', slotId: a.slotId, gpuIndex: a.gpuIndex, runnerId: this.opts.runnerId },
          { ...meta, actor: meta.actor || 'scheduler' },
        ),
      );
    }
    return started;
  }

  /** The GPU slots with their holders and, for free ones that must not take work, why. */
  private async slotViews(tx: TaskRepository): Promise<SlotView[]> {
    const blocks = this.opts.slotBlocks?.() ?? new Map<number, string>();
    return (await tx.listSlots()).map((s) => ({ ...s, blockedReason: blocks.get(s.slotId) ?? null }));
  }
}

const isFree = (s: SlotView) => s.holderTaskId === null && s.blockedReason === null;

/** An event as if stored, to decide the next command before the append gives it a place. */
function provisional(e: NewTaskEvent, streamId: string, version: number, meta: CommandMeta): StoredTaskEvent {
  return {
    ...e,
    streamId,
    version,
    position: '0',
    recordedAt: new Date(0).toISOString(),
    metadata: { ...meta, schemaVersion: CURRENT_SCHEMA_VERSION },
  } as StoredTaskEvent;
}

/** The task commands on a Postgres or PGlite database. */
export class TaskStore extends TaskCommands {
  constructor(
    readonly database: Database,
    opts: TaskStoreOptions,
  ) {
    super((fn) => database.db.transaction((tx) => fn(sqlRepository(tx as Tx))), opts);
  }

  get db(): Conn {
    return this.database.db;
  }
}
