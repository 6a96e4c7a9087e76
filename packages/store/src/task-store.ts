// Commands against the log: each runs in one transaction that reads the task's projected
// state, decides with the lifecycle machine, appends with optimistic concurrency, updates the
// read models and, when devices free up, runs the scheduling policy, all committing together.
// A conflict (another writer got there first) rolls everything back and the command is retried.
//
// The command logic (TaskCommands) talks to storage through a small repository port, so the
// same code runs on Postgres/PGlite (sqlRepository, below) and inside the deterministic
// simulation of the torture suite. Every method of the port is required: a storage that could
// leave one out would take another path through the commands than Postgres does, and the
// simulation would test that path instead of the one that runs.
import {
  CURRENT_SCHEMA_VERSION,
  EVENTS_RECORDING_THEIR_POSITION,
  decide,
  backfillPolicy,
  evolve,
  fifoOrder,
  IllegalCommandError,
  initialState,
  newTaskRecordAt,
  stateFromRecord,
  TaskNotFoundError,
  toRecord,
  type Account,
  type DeviceView,
  type NewTaskEvent,
  type QueuedTaskView,
  type SchedulingPolicy,
  type StoredTaskEvent,
  type TaskCommand,
  type TaskRecord,
  type TaskSpec,
  type TaskState,
} from '@trainyard/domain';
import { type Conn, type Database, type Tx } from './database';
import { isRefusedData, isRetryable } from './errors';
import type { InFlightWrites } from './in-flight-writes';
import { appendNewStreams, appendToStream, recordingTime, type AppendMetadata } from './sql/events';
import { appendLogLines, type LogLine } from './sql/logs';
import { countQueued, listQueue, lockQueue, topQueuedPriority } from './sql/queue';
import { listDevicesWithHolders, type DeviceWithHolders } from './sql/devices';
import { findByIdempotencyKey, loadTask, projectNewTasks, projectTask } from './sql/tasks';

/**
 * What the command logic needs from storage, inside one transaction. Each method issues its
 * statements as it is called, before it waits on anything else: calls made one after another
 * without waiting in between run in the order called, in one round trip (the command logic
 * relies on it to read what a write before it wrote).
 *
 * The read-model writes (`project`, `projectNew`, `appendLogLines`) are settled by the
 * transaction (in-flight-writes.ts): the command logic does not wait for them, the transaction
 * commits only if all of them succeeded, and otherwise fails with the first that failed. On
 * Postgres the last of them and COMMIT share a round trip.
 */
export interface TaskRepository {
  loadTask(id: string): Promise<TaskRecord | null>;
  findByIdempotencyKey(owner: string, key: string): Promise<TaskRecord | null>;
  append(streamId: string, expectedVersion: number, events: readonly NewTaskEvent[], meta: AppendMetadata): Promise<StoredTaskEvent[]>;
  /** `lastPosition` null: the position of the events appended last (sent right behind their append). */
  project(before: TaskRecord | null, after: TaskRecord, lastPosition: string | null): Promise<void>;
  /**
   * Leaves `write` to the transaction to wait for, as the read-model writes are: it commits only
   * if `write` succeeded, and fails with its error if not.
   */
  inFlight<T>(write: Promise<T>): Promise<T>;
  /**
   * The time every event of this transaction is recorded at (Postgres's now(): the time its
   * transaction began), known once one of its appends has answered; null before.
   */
  transactionTime(): string | null;
  /** The same time read from the database where no append has answered yet (then known to transactionTime too). */
  readTransactionTime(): Promise<string>;
  /** The devices with their holders (and each holder's deadline). */
  listDevices(): Promise<DeviceWithHolders[]>;
  listQueue(limit: number): Promise<TaskRecord[]>;
  /**
   * Serialise, until the transaction ends, every transaction that queues a task or fills a slot.
   * A TaskQueued position is drawn at insert but visible only at commit: without this, a
   * scheduler could give a slot to a task queued at p+1 while the one at p was still committing.
   */
  lockQueue(): Promise<void>;
  /** Store trainer output lines with the command's events (idempotent per line). */
  appendLogLines(taskId: string, lines: readonly LogLine[]): Promise<void>;
  /** Tasks queued now (for the "queue is long" warning a submission gets). */
  countQueued(): Promise<number>;
  /** The highest priority queued (null: none), to tell whether a full pool should look at preempting. */
  topQueuedPriority(): Promise<number | null>;
  /**
   * Append the first events of several new streams at once, in the order given (so positions,
   * and with them queue order, follow it). A stream that already exists is a conflict, and
   * nothing is written.
   */
  appendNewStreams(streams: readonly NewStream[]): Promise<StoredTaskEvent[][]>;
  /**
   * Insert the read-model rows of several new tasks that take no slot (submitted and queued),
   * sent right behind their appendNewStreams, before it answered: each record is folded at
   * provisional positions, and the positions it holds (RECORD_POSITION_FIELDS) are filled in
   * from its stream's events.
   */
  projectNew(records: readonly TaskRecord[]): Promise<void>;
}

export interface NewStream {
  streamId: string;
  events: readonly NewTaskEvent[];
  meta: AppendMetadata;
}

/**
 * Runs `fn` in one transaction: all its writes commit together or not at all, including the
 * read-model writes `fn` did not wait for.
 */
export type TransactionRunner = <T>(fn: (repo: TaskRepository) => Promise<T>) => Promise<T>;

export function sqlRepository(tx: Tx, writes: InFlightWrites): TaskRepository {
  let recordedAt: string | null = null;
  const timed = (stored: readonly StoredTaskEvent[]) => {
    recordedAt ??= stored[0]?.recordedAt ?? null;
  };
  return {
    loadTask: (id) => loadTask(tx, id),
    findByIdempotencyKey: (owner, key) => findByIdempotencyKey(tx, owner, key),
    append: async (streamId, expected, events, meta) => {
      const stored = await appendToStream(tx, streamId, expected, events, meta);
      timed(stored);
      return stored;
    },
    project: (before, after, pos) => writes.track(projectTask(tx, before, after, pos)),
    inFlight: (write) => writes.track(write),
    transactionTime: () => recordedAt,
    readTransactionTime: async () => recordedAt ?? (recordedAt = await recordingTime(tx)),
    listDevices: () => listDevicesWithHolders(tx),
    listQueue: (limit) => listQueue(tx, limit),
    lockQueue: () => lockQueue(tx),
    countQueued: () => countQueued(tx),
    topQueuedPriority: () => topQueuedPriority(tx),
    appendLogLines: (taskId, lines) => writes.track(appendLogLines(tx, taskId, lines)),
    appendNewStreams: async (streams) => {
      const stored = await appendNewStreams(tx, streams);
      timed(stored.flat());
      return stored;
    },
    projectNew: (records) => writes.track(projectNewTasks(tx, records)),
  };
}

export type CommandMeta = AppendMetadata;

export interface CommandResult {
  task: TaskRecord;
  events: StoredTaskEvent[];
  /** Tasks this transaction placed on devices: the runner starts their trainers. */
  started: TaskRecord[];
}

export interface SubmitResult extends CommandResult {
  /** False when an idempotency key matched an earlier submission. */
  created: boolean;
  /**
   * For a task that queued: how many tasks were queued ahead of it when it committed (read in
   * the same transaction, so exact); undefined for a task that started at once.
   */
  queuedAhead?: number;
}

export interface SubmitRequest {
  taskId: string;
  spec: TaskSpec;
  meta: CommandMeta;
}

/** Most submissions committed in one transaction by group commit. */
export const MAX_SUBMIT_BATCH = 128;

export interface TaskStoreOptions {
  /** Which service instance runs the trainers of the tasks this store assigns. */
  runnerId: string;
  policy?: SchedulingPolicy;
  /** What the probe sees on each device now: memory other programs hold, and a block reason. */
  deviceConditions?: () => ReadonlyMap<string, DeviceCondition>;
  /** Share of each device's memory never given to shared tasks. */
  reserveFraction?: number;
  /** How many queued tasks, from the head, the policy considers (Slurm's bf_max_job_test). */
  queueDepth?: number;
  /** The clock the policy's reservations are measured on (the simulation's own). */
  now?: () => number;
  /**
   * How long after its deadline a holder may still hold its devices: the stop's kill grace (it
   * gets SIGTERM at the deadline and SIGKILL this much later). Reservations count it.
   */
  releaseGraceMs?: number;
  /** Users' quotas and recent use (fair share), as the service last read them. */
  accounts?: () => ReadonlyMap<string, Account>;
  /**
   * Preempt running tasks for a head that cannot otherwise start (by priority; with `fairShare`
   * also by fair share, docs/SCHEDULING.md); a task preempted this often is spared.
   */
  preemption?: { maxPreemptions: number; fairShare?: boolean };
  maxAttempts?: number;
  /** Called after each commit with the events it appended (to wake local subscribers). */
  onCommit?: (events: StoredTaskEvent[]) => void;
  /**
   * Group commit: submissions that arrive while one is committing wait for it and then commit
   * together, in one transaction, in arrival order. Each still gets its own result (or error).
   */
  groupCommit?: boolean;
}

/** How `execute` runs a command, beyond the command itself. */
export interface ExecuteOptions {
  /** A trainer's output lines, stored in the same transaction. */
  logLines?: readonly LogLine[];
  /** The run the command comes from: refused once the task is no longer that attempt on that instance. */
  holder?: { runnerId: string; attempt: number };
  /** Commands appended first, each with its own actor, in the same transaction (a trainer's last reports before its exit). */
  preceding?: readonly { command: TaskCommand; actor: string }[];
  /**
   * The task as the caller last saw it (a runner's, after its own last command): the command is
   * decided on it without reading the task first, a round trip fewer. If the task has moved on
   * since, the append's version check refuses it; that, or any other failure of this first try,
   * runs the command again on the task read afresh, as without it.
   */
  known?: TaskRecord;
}

/** The command logic, over any storage that offers transactions of a TaskRepository. */
export class TaskCommands {
  readonly policy: SchedulingPolicy;
  constructor(
    private readonly runTransaction: TransactionRunner,
    private readonly opts: TaskStoreOptions,
  ) {
    this.policy = opts.policy ?? backfillPolicy;
  }

  /** Run `fn` in one transaction; its appended events reach onCommit once it committed. */
  private async transactOnce<T>(fn: (tx: TaskRepository, appended: StoredTaskEvent[]) => Promise<T>): Promise<T> {
    const appended: StoredTaskEvent[] = [];
    const result = await this.runTransaction((repo) => fn(repo, appended));
    if (appended.length) this.opts.onCommit?.(appended);
    return result;
  }

  /** Run `fn` in a transaction, again from the start when it lost a race. */
  async transact<T>(fn: (tx: TaskRepository, appended: StoredTaskEvent[]) => Promise<T>): Promise<T> {
    const max = this.opts.maxAttempts ?? 20;
    for (let attempt = 1; ; attempt++) {
      try {
        return await this.transactOnce(fn);
      } catch (err) {
        if (attempt >= max || !isRetryable(err)) throw err;
        // Back off a little, randomly, so racing writers do not collide again in lockstep.
        await new Promise((r) => setTimeout(r, Math.random() * Math.min(50, attempt * 5)));
      }
    }
  }

  async submit(taskId: string, spec: TaskSpec, meta: CommandMeta): Promise<SubmitResult> {
    if (this.opts.groupCommit) return this.submitGrouped({ taskId, spec, meta });
    const [result] = await this.submitMany([{ taskId, spec, meta }]);
    if (result instanceof Error) throw result;
    return result!;
  }

  /**
   * Submit several tasks in one transaction, in the order given: FIFO holds among them as it
   * does among single submissions. Each gets its result, or the error that refused it alone
   * (an error of the whole transaction is retried, then each is tried on its own, so one bad
   * submission cannot take the others down with it).
   */
  async submitMany(requests: readonly SubmitRequest[]): Promise<(SubmitResult | Error)[]> {
    if (requests.length === 0) return [];
    try {
      const submitted = await this.transact((tx, appended) => this.submitIn(tx, appended, requests));
      await submitted.ready;
      return submitted.results;
    } catch (err) {
      // Only the database refusing some data can be one submission's fault; anything else
      // (the database away, a crash) is every submission's outcome.
      if (requests.length === 1 || !isRefusedData(err)) return requests.map(() => err as Error);
      const out: (SubmitResult | Error)[] = [];
      for (const r of requests) out.push((await this.submitMany([r]))[0]!);
      return out;
    }
  }

  /**
   * Submit several tasks in one transaction, in the order given, all or nothing: the first
   * error (refused data, a failed check) rolls every one of them back and is thrown. The same
   * path as submitMany (submitIn); `verify`, when given, runs in the transaction on the results
   * (an error it throws rolls the batch back too), e.g. to tell an idempotent repeat from a
   * different request under the same keys.
   */
  async submitAll(
    requests: readonly SubmitRequest[],
    verify?: (results: readonly SubmitResult[], tx: TaskRepository) => Promise<void>,
  ): Promise<SubmitResult[]> {
    if (requests.length === 0) return [];
    return this.transact(async (tx, appended) => {
      const submitted = await this.submitIn(tx, appended, requests);
      if (!verify) return submitted;
      await submitted.ready;
      await verify(submitted.results, tx);
      return submitted;
    }).then(async (submitted) => {
      await submitted.ready;
      return submitted.results;
    });
  }

  private readonly pendingSubmits: { request: SubmitRequest; resolve: (r: SubmitResult) => void; reject: (e: Error) => void }[] = [];
  private submitting = false;

  /** Group commit: join the next batch; the batch commits as soon as the one before it has. */
  private submitGrouped(request: SubmitRequest): Promise<SubmitResult> {
    return new Promise((resolve, reject) => {
      this.pendingSubmits.push({ request, resolve, reject });
      if (!this.submitting) void this.drainSubmits();
    });
  }

  private async drainSubmits(): Promise<void> {
    this.submitting = true;
    try {
      while (this.pendingSubmits.length) {
        const batch = this.pendingSubmits.splice(0, MAX_SUBMIT_BATCH);
        // submitMany reports errors per submission; should it ever throw, every waiter of the
        // batch still gets an answer (and the next batch still runs).
        const results = await this.submitMany(batch.map((b) => b.request)).catch((err: Error) => batch.map(() => err));
        batch.forEach((b, i) => {
          const r = results[i] ?? new Error('submission lost by group commit');
          if (r instanceof Error) b.reject(r);
          else b.resolve(r);
        });
      }
    } finally {
      this.submitting = false;
    }
  }

  /**
   * The submissions' decisions and writes. The queued ones are left in flight (their append, and
   * their rows right behind it, with COMMIT in the same round trip): their `results` are complete
   * once `ready` resolved, which is by the time the transaction has committed.
   */
  private async submitIn(
    tx: TaskRepository,
    appended: StoredTaskEvent[],
    requests: readonly SubmitRequest[],
  ): Promise<{ results: SubmitResult[]; ready: Promise<unknown> }> {
    const results: SubmitResult[] = new Array(requests.length);
    // An idempotency key seen earlier (in the store, or earlier in this batch) gives that task back.
    const firstWithKey = new Map<string, number>();
    const repeats: [repeat: number, first: number][] = [];
    const fresh: number[] = [];
    for (const [i, { spec }] of requests.entries()) {
      if (spec.idempotencyKey) {
        const k = `${spec.owner}\u0000${spec.idempotencyKey}`;
        const first = firstWithKey.get(k);
        if (first !== undefined) {
          repeats.push([i, first]); // answered below with the first one's task
          continue;
        }
        firstWithKey.set(k, i);
        const existing = await tx.findByIdempotencyKey(spec.owner, spec.idempotencyKey);
        if (existing) {
          results[i] = { task: existing, events: [], started: [], created: false };
          continue;
        }
      }
      fresh.push(i);
    }
    // The queue lock, the devices, the queue length and the transaction's time in one round trip:
    // statements sent together on one connection still run in order, so the devices are read
    // under the lock.
    const [, devicesAtStart, queuedAtStart, at] = await Promise.all([
      tx.lockQueue(),
      this.deviceViews(tx),
      tx.countQueued(),
      tx.readTransactionTime(),
    ]);
    let devices = devicesAtStart;
    let queuedAhead: number | undefined = queuedAtStart;
    let next = 0;
    // While a device has room, one at a time: a submission may start at once (behind the queue).
    while (next < fresh.length && devices.some(hasRoom)) {
      const i = fresh[next++]!;
      const { taskId, spec, meta } = requests[i]!;
      const submitted = await this.applyCommand(tx, appended, null, taskId, { type: 'submit', taskId, spec }, meta);
      const started = await this.scheduleIn(tx, appended, meta, { candidate: submitted, devicesRead: devices });
      const self = started.find((t) => t.id === taskId);
      const task = self ?? (await this.applyCommand(tx, appended, submitted, taskId, { type: 'enqueue' }, meta));
      results[i] = { task, events: appended.filter((e) => e.streamId === taskId), started, created: true };
      devices = await this.deviceViews(tx);
      queuedAhead = undefined; // the count read at the start no longer holds
    }
    // No device can take them (the usual case while work waits): each is submitted and queued,
    // all in one append and one projection write: the same events and records as the steps above.
    // Nothing waits for the append: the records are folded at the transaction's time, and the
    // positions they hold are filled in from the log by the projection's write behind it.
    let ready: Promise<unknown> = Promise.resolve();
    const rest = fresh.slice(next);
    if (rest.length) {
      if (queuedAhead === undefined) queuedAhead = await tx.countQueued();
      const ahead = queuedAhead;
      const streams: NewStream[] = rest.map((i) => {
        const { taskId, spec, meta } = requests[i]!;
        return {
          streamId: taskId,
          events: decideSequence(initialState(), taskId, [{ type: 'submit', taskId, spec }, { type: 'enqueue' }], meta),
          meta,
        };
      });
      const records = streams.map((s) =>
        toRecord(s.events.reduce((state, e, k) => evolve(state, provisional(e, s.streamId, k + 1, s.meta, at)), initialState())),
      );
      ready = tx.inFlight(
        tx.appendNewStreams(streams).then((stored) => {
          rest.forEach((i, k) => {
            const events = stored[k]!;
            // The append stores unsafe text in the data (NUL, a lone surrogate) replaced, and hands
            // back the value it stored: then the record is that value's fold, as the row's is.
            const asSent = events.every((e, j) => e.data === streams[k]!.events[j]!.data);
            appended.push(...events);
            results[i] = {
              task: asSent ? newTaskRecordAt(records[k]!, events) : toRecord(events.reduce(evolve, initialState())),
              events,
              started: [],
              created: true,
              queuedAhead: ahead + k,
            };
          });
        }),
      );
      void tx.projectNew(records);
    }
    const filled = ready.then(() => {
      for (const [i, first] of repeats) results[i] = { task: results[first]!.task, events: [], started: [], created: false };
    });
    // A failed append fails the transaction, which throws its error; nothing waits on this then.
    filled.catch(() => {});
    return { results, ready: filled };
  }

  /** Decide and apply one command to one task (after `preceding`); schedules when the command freed a slot. */
  async execute(taskId: string, command: TaskCommand, meta: CommandMeta, opts: ExecuteOptions = {}): Promise<CommandResult> {
    const { known } = opts;
    if (known?.id === taskId) {
      try {
        return await this.transactOnce((tx, appended) => this.executeIn(tx, appended, taskId, command, meta, opts, known));
      } catch {
        // A stale record can also make a legal command look illegal: decided again below.
      }
    }
    return this.transact((tx, appended) => this.executeIn(tx, appended, taskId, command, meta, opts));
  }

  private async executeIn(
    tx: TaskRepository,
    appended: StoredTaskEvent[],
    taskId: string,
    command: TaskCommand,
    meta: CommandMeta,
    opts: ExecuteOptions,
    known?: TaskRecord,
  ): Promise<CommandResult> {
    const lines = opts.logLines ?? [];
    // The trainer's last lines (if any) go with the command: same round trip, same commit.
    const loaded = known ?? tx.loadTask(taskId);
    if (lines.length) void tx.appendLogLines(taskId, lines);
    const before = await loaded;
    if (!before) throw new TaskNotFoundError(taskId);
    // A runner's command holds only for the attempt it runs: once the task was taken back from
    // it (its lease expired) or given to another instance, what it reports belongs to nobody.
    const h = opts.holder;
    if (h && (before.runnerId !== h.runnerId || before.attempt !== h.attempt))
      throw new IllegalCommandError(
        taskId,
        before.status,
        command.type,
        `attempt ${h.attempt} on ${h.runnerId} no longer holds it (it is attempt ${before.attempt} on ${before.runnerId ?? 'no instance'})`,
      );
    const steps = [
      ...(opts.preceding ?? []).map((p) => ({ commands: [p.command], meta: { ...meta, actor: p.actor } })),
      { commands: [command], meta },
    ];
    // Devices freed, or a queued task gone (a blocked head no longer holds the others back):
    // the scheduling pass's reads go with the command's projection write.
    const scheduling: { reads?: Promise<PassReads> } = {};
    const freed = (after: TaskRecord) => before.devices.length > 0 && after.devices.length === 0;
    const task = await this.applySteps(tx, appended, before, taskId, steps, {
      early: (after) => {
        // A task that ends where it ran (an exit, a stop) frees its devices and touches the queue
        // neither way: what the pass reads differs from what it will read after the projection's
        // write only in this task's holders, which are left out here. So the reads go right
        // behind the appends, a round trip before the projection's write could be sent.
        if (!freed(after) || before.status === 'QUEUED' || after.status === 'QUEUED' || before.held !== after.held) return undefined;
        const released = new Set(before.devices.map((d) => d.deviceId));
        scheduling.reads = this.firstPassReads(tx, { roomLikely: true }).then((r) => ({
          ...r,
          devices: withoutHolder(r.devices, taskId, released),
        }));
        return scheduling.reads;
      },
      alongside: (after) => {
        // (A paused task leaves the queue; a resumed one comes back.)
        const leftQueue = (before.status === 'QUEUED' && after.status !== 'QUEUED') || before.held !== after.held;
        if (freed(after) || leftQueue) scheduling.reads = this.firstPassReads(tx, { roomLikely: freed(after) });
        return scheduling.reads;
      },
    });
    const started = scheduling.reads ? await this.scheduleIn(tx, appended, meta, { reads: await scheduling.reads, inFlight: true }) : [];
    return { task, events: appended.filter((e) => e.streamId === taskId), started };
  }

  /** Fill free devices from the queue (after a restart, an unblocked GPU, or on a timer). */
  async schedule(meta: CommandMeta): Promise<TaskRecord[]> {
    return this.transact((tx, appended) => this.scheduleIn(tx, appended, meta, { inFlight: true }));
  }

  private applyCommand(
    tx: TaskRepository,
    appended: StoredTaskEvent[],
    before: TaskRecord | null,
    taskId: string,
    command: TaskCommand,
    meta: CommandMeta,
    inFlight = false,
  ): Promise<TaskRecord> {
    return this.applySteps(tx, appended, before, taskId, [{ commands: [command], meta }], { inFlight });
  }

  /**
   * Decide commands one after another, each on the state the previous one's events lead to,
   * and write them with one projection write. Between commands the events are folded
   * provisionally (no position or time yet): decisions depend on event data, never on
   * positions or times. Each step is one append with its own metadata (its actor); the appends
   * are sent together, since statements on one connection run in the order sent.
   *
   * What the caller reads next goes with them: `early`, given the record as the decisions left it
   * (all but positions and times), may send reads right behind the appends; if it sends none,
   * `alongside`, given the record, sends them behind the projection's write (so they see it).
   *
   * With `inFlight`, once the transaction's time is known (an earlier append answered) and no
   * event writes its own position into the record, the record is known before the appends
   * answer: they are left to the transaction to settle, the projection's write goes right
   * behind them (its positions taken from them in SQL), and where nothing follows, COMMIT goes
   * in the same round trip. The appended events join `appended` when they answer. `before` must
   * be the task as this transaction read or wrote it: its row and its stream are then at one
   * version, so a stale append fails on the stream's unique index and aborts the transaction
   * (see appendToStream) instead of leaving the row written without its events.
   */
  private async applySteps(
    tx: TaskRepository,
    appended: StoredTaskEvent[],
    before: TaskRecord | null,
    taskId: string,
    steps: readonly { commands: readonly TaskCommand[]; meta: CommandMeta }[],
    next: {
      early?: (decided: TaskRecord) => Promise<unknown> | undefined;
      alongside?: (after: TaskRecord) => Promise<unknown> | undefined;
      inFlight?: boolean;
    } = {},
  ): Promise<TaskRecord> {
    const state = before ? stateFromRecord(before) : initialState();
    const at = next.inFlight ? tx.transactionTime() : null;
    let probe = state;
    const appends: { expected: number; events: NewTaskEvent[]; meta: CommandMeta }[] = [];
    for (const step of steps) {
      const decided = decideSequence(probe, taskId, step.commands, step.meta);
      appends.push({ expected: probe.version, events: decided, meta: step.meta });
      probe = decided.reduce((s, e) => evolve(s, provisional(e, taskId, s.version + 1, step.meta, at ?? PROVISIONAL_TIME)), probe);
    }
    if (at !== null && !appends.some((a) => a.events.some((e) => EVENTS_RECORDING_THEIR_POSITION.has(e.type)))) {
      const after = toRecord(probe);
      for (const a of appends)
        void tx.inFlight(
          tx.append(taskId, a.expected, a.events, a.meta).then((stored) => {
            appended.push(...stored);
            return stored;
          }),
        );
      void tx.project(before, after, null);
      await (next.early?.(after) ?? next.alongside?.(after));
      return after;
    }
    const appendsSent = Promise.all(appends.map((a) => tx.append(taskId, a.expected, a.events, a.meta)));
    const early = next.early?.(toRecord(probe));
    // A failed append fails the transaction, and the reads behind it with it: the append's error is the one thrown.
    early?.catch(() => {});
    const stored = (await appendsSent).flat();
    const after = toRecord(stored.reduce(evolve, state));
    // Settled by the transaction (see TaskRepository): the projection's write goes with what
    // follows it, `alongside` (what the caller reads next, which sees it) or the COMMIT.
    void tx.project(before, after, stored[stored.length - 1]!.position);
    await (early ?? next.alongside?.(after));
    appended.push(...stored);
    return after;
  }

  /**
   * The scheduling decision and its events in the caller's transaction. `candidate` is a task
   * just submitted and not yet queued: it comes last, behind everything queued.
   */
  private async scheduleIn(
    tx: TaskRepository,
    appended: StoredTaskEvent[],
    meta: CommandMeta,
    opts: { candidate?: TaskRecord; devicesRead?: DeviceView[]; reads?: PassReads; inFlight?: boolean } = {},
  ): Promise<TaskRecord[]> {
    const { candidate } = opts;
    let reads = opts.reads ?? (await this.firstPassReads(tx, { devicesRead: opts.devicesRead }));
    const started: TaskRecord[] = [];
    // Until a pass places nothing: fair share reorders users as a pass places their tasks, so
    // the order a fresh pass sees can start one more (bounded; one pass is the usual case).
    for (let pass = 0; pass < MAX_PASSES; pass++) {
      const { placed, next } = await this.schedulePass(
        tx,
        appended,
        meta,
        reads,
        started.some((t) => t.id === candidate?.id) ? undefined : candidate,
        pass + 1 < MAX_PASSES,
        opts.inFlight ?? false,
      );
      started.push(...placed);
      if (!placed.length || !next) break;
      reads = next;
    }
    return started;
  }

  /**
   * What a scheduling pass reads first, with the queue's lock, in one round trip: statements
   * sent together on one connection run in order, so everything is read under the lock. The
   * queue is read along only when a device likely has room (the caller's devices have, or one
   * was just freed): a pass that finds no room does not need it.
   */
  private async firstPassReads(
    tx: TaskRepository,
    opts: { devicesRead?: DeviceView[] | undefined; roomLikely?: boolean },
  ): Promise<PassReads> {
    const withQueue = opts.roomLikely === true || (opts.devicesRead?.some(hasRoom) ?? false);
    const [, devices, queued, top] = await Promise.all([
      tx.lockQueue(),
      opts.devicesRead ?? this.deviceViews(tx),
      withQueue ? tx.listQueue(this.queueDepth()) : undefined,
      this.topQueuedPriority(tx),
    ]);
    return { devices, queued, top };
  }

  /** What a later pass reads (the lock is held): the devices, and the top queued priority. */
  private async nextPassReads(tx: TaskRepository): Promise<PassReads> {
    const [devices, top] = await Promise.all([this.deviceViews(tx), this.topQueuedPriority(tx)]);
    return { devices, top };
  }

  /** Read only where preemption may use it. */
  private topQueuedPriority(tx: TaskRepository): Promise<number | null> | undefined {
    return this.opts.preemption ? tx.topQueuedPriority() : undefined;
  }

  private queueDepth(): number {
    return this.opts.queueDepth ?? DEFAULT_QUEUE_DEPTH;
  }

  private async schedulePass(
    tx: TaskRepository,
    appended: StoredTaskEvent[],
    meta: CommandMeta,
    { devices, queued: queueRead, top }: PassReads,
    candidate: TaskRecord | undefined,
    readNext: boolean,
    /** Its preemptions and assignments may be left in flight (see applySteps). */
    inFlight: boolean,
  ): Promise<{ placed: TaskRecord[]; next?: PassReads | undefined }> {
    const none = { placed: [] };
    if (!devices.some(hasRoom) && !(await this.mayPreempt(tx, devices, top))) return none;
    const depth = this.queueDepth();
    const queued = queueRead ?? (await tx.listQueue(depth));
    const byId = new Map(queued.map((t) => [t.id, t]));
    // Past the depth read, the queue is not known: a candidate must not pass tasks it did not see.
    if (candidate && queued.length < depth) byId.set(candidate.id, candidate);
    if (byId.size === 0) return none;
    // FIFO; the policy puts priority and fair share first. A candidate not yet queued comes last.
    const queue = fifoOrder([...byId.values()].map(queuedView));
    const decision = this.policy.schedule({
      devices,
      queue,
      now: this.now(),
      reserveFraction: this.opts.reserveFraction,
      releaseGraceMs: this.opts.releaseGraceMs,
      accounts: this.opts.accounts?.(),
      preemption: this.opts.preemption ? (this.opts.preemption.fairShare ? 'fair-share' : 'priority') : 'off',
    });
    for (const p of decision.preemptions) {
      const victim = await tx.loadTask(p.taskId);
      if (victim && !victim.stop)
        await this.applyCommand(
          tx,
          appended,
          victim,
          p.taskId,
          { type: 'preempt', message: p.message, grounds: p.grounds },
          { ...meta, actor: 'scheduler' },
          inFlight,
        );
    }
    const placed: TaskRecord[] = [];
    let next: Promise<PassReads> | undefined;
    // The next pass's reads go with the last assignment's write, and see it; not read for when
    // that pass could only find nothing (see mayPlaceMore).
    const readNextPass = (last: TaskRecord) =>
      this.mayPlaceMore(withPlacements(devices, [...placed, last], this.opts.preemption?.maxPreemptions), top)
        ? (next = this.nextPassReads(tx))
        : undefined;
    for (const [i, a] of decision.assignments.entries()) {
      const before = byId.get(a.taskId);
      if (!before) throw new Error(`policy ${this.policy.name} assigned unknown task ${a.taskId}`);
      const last = i === decision.assignments.length - 1;
      placed.push(
        await this.applySteps(
          tx,
          appended,
          before,
          a.taskId,
          [
            {
              commands: [{ type: 'assign', devices: a.devices, runnerId: this.opts.runnerId, grounds: a.grounds }],
              meta: { ...meta, actor: meta.actor || 'scheduler' },
            },
          ],
          last && readNext ? { alongside: readNextPass, inFlight } : { inFlight },
        ),
      );
    }
    return { placed, next: await next };
  }

  /** With no room anywhere: whether a queued task outranks a running one that may be preempted. */
  private async mayPreempt(tx: TaskRepository, devices: readonly DeviceView[], topRead: number | null | undefined): Promise<boolean> {
    const lowest = this.lowestPreemptible(devices);
    if (lowest === null) return false;
    return this.outranks(topRead === undefined ? await tx.topQueuedPriority() : topRead, lowest);
  }

  /** The lowest priority among running holders that may be preempted (null: none, or preemption is off). */
  private lowestPreemptible(devices: readonly DeviceView[]): number | null {
    if (!this.opts.preemption) return null;
    let lowest = Infinity;
    for (const d of devices) for (const h of d.holders) if (h.preemptible && !h.stopping) lowest = Math.min(lowest, h.priority ?? 0);
    return lowest === Infinity ? null : lowest;
  }

  /** Whether a queued task of priority `top` may preempt a running holder of priority `lowest`. */
  private outranks(top: number | null, lowest: number): boolean {
    // By fair share a task of an equal priority may be a victim too (the policy decides whose).
    return top !== null && (top > lowest || (this.opts.preemption?.fairShare === true && top >= lowest));
  }

  /**
   * Whether a later pass could place or preempt anything on `devices` (as they are after this
   * pass's placements): the test a pass begins with (a device with room, or mayPreempt), with
   * the top queued priority read before this pass. Placing only takes tasks out of the queue, so
   * that read bounds the one a later pass would make: where this says no, that pass finds nothing.
   */
  private mayPlaceMore(devices: readonly DeviceView[], topBefore: number | null | undefined): boolean {
    if (devices.some(hasRoom)) return true;
    const lowest = this.lowestPreemptible(devices);
    if (lowest === null) return false;
    // Not read before this pass: not known, so the later pass runs.
    return topBefore === undefined || this.outranks(topBefore, lowest);
  }

  private now(): number {
    return this.opts.now?.() ?? Date.now();
  }

  /** The devices as the policy sees them: present ones, with their holders and conditions. */
  async deviceViews(tx: TaskRepository): Promise<DeviceView[]> {
    const conditions = this.opts.deviceConditions?.() ?? new Map<string, DeviceCondition>();
    return toDeviceViews(await tx.listDevices(), conditions, this.opts.preemption?.maxPreemptions);
  }
}

/** What the probe sees on a device now. */
export interface DeviceCondition {
  externalMemoryMb: number;
  blockedReason: string | null;
}

/** The devices as read before `taskId`'s release of `released` was written: its holders there left out. */
function withoutHolder(devices: DeviceView[], taskId: string, released: ReadonlySet<string>): DeviceView[] {
  return devices.map((d) => (released.has(d.id) ? { ...d, holders: d.holders.filter((h) => h.taskId !== taskId) } : d));
}

/** What a scheduling pass reads: the devices, and what was read along with them (the queue, the top queued priority). */
interface PassReads {
  devices: DeviceView[];
  queued?: TaskRecord[] | undefined;
  top?: number | null | undefined;
}

/** Scheduling passes one transaction runs at most (each after one that placed something). */
const MAX_PASSES = 4;

/** Queued tasks the policy considers by default, from the head (Slurm's bf_max_job_test is 500). */
export const DEFAULT_QUEUE_DEPTH = 200;

/** Devices as the policy sees them; an absent device (gone from the inventory) takes no new work. */
export function toDeviceViews(
  rows: readonly DeviceWithHolders[],
  conditions: ReadonlyMap<string, DeviceCondition>,
  maxPreemptions = Infinity,
): DeviceView[] {
  return rows.map((d) => {
    const c = conditions.get(d.id);
    return {
      id: d.id,
      gpuIndex: d.gpuIndex,
      uuid: d.uuid,
      name: d.name,
      memoryMb: d.memoryMb,
      migProfile: d.migProfile,
      externalMemoryMb: c?.externalMemoryMb ?? 0,
      blockedReason: d.present ? (c?.blockedReason ?? null) : `${d.id} is no longer in the inventory.`,
      holders: d.holders.map((h) => ({
        taskId: h.taskId,
        memoryMb: h.memoryMb,
        exclusive: h.exclusive,
        endsBy: h.endsBy,
        ...(h.owner !== undefined ? { owner: h.owner } : {}),
        ...(h.priority !== undefined ? { priority: h.priority } : {}),
        ...(h.startedAt != null ? { startedAt: h.startedAt } : {}),
        preemptible: (h.preemptions ?? 0) < maxPreemptions,
        stopping: h.stopping ?? false,
      })),
    };
  });
}

/** A queued task as the policy sees it. */
export function queuedView(t: TaskRecord): QueuedTaskView {
  const r = t.spec.resources;
  return {
    taskId: t.id,
    queuedPosition: t.queuedPosition,
    request: { gpus: r.gpus, memoryMb: r.memoryMb, shared: r.shared },
    timeoutMs: t.spec.timeoutMs,
    owner: t.spec.owner,
    priority: t.spec.priority?.value ?? 0,
  };
}

/**
 * The devices with the holders this pass's placements add (what the next read of the devices
 * would show): each placed task holds what its record was granted.
 */
function withPlacements(devices: readonly DeviceView[], placed: readonly TaskRecord[], maxPreemptions = Infinity): DeviceView[] {
  return devices.map((d) => {
    const added = placed.flatMap((t) =>
      t.devices
        .filter((g) => g.deviceId === d.id)
        .map((g) => ({
          taskId: t.id,
          memoryMb: g.memoryMb,
          exclusive: g.exclusive,
          endsBy: null,
          owner: t.spec.owner,
          priority: t.spec.priority?.value ?? 0,
          preemptible: t.preemptions < maxPreemptions,
          stopping: t.stop !== null,
        })),
    );
    return added.length ? { ...d, holders: [...d.holders, ...added] } : d;
  });
}

/** Whether a device could take any new work (a cheap test before reading the queue). */
const hasRoom = (d: DeviceView) =>
  d.blockedReason === null &&
  (d.holders.length === 0 || (!d.holders.some((h) => h.exclusive) && d.holders.reduce((n, h) => n + h.memoryMb, 0) < d.memoryMb));

/**
 * Decide commands one after another, each on the state the previous one's events lead to.
 * Between commands the events are folded provisionally (no position or time yet): decisions
 * depend on event data, never on positions or times.
 */
function decideSequence(state: TaskState, taskId: string, commands: readonly TaskCommand[], meta: CommandMeta): NewTaskEvent[] {
  const decided: NewTaskEvent[] = [];
  let probe = state;
  for (const [i, command] of commands.entries()) {
    const events = decide(probe, command, taskId);
    decided.push(...events);
    if (i < commands.length - 1) probe = events.reduce((s, e) => evolve(s, provisional(e, taskId, s.version + 1, meta)), probe);
  }
  return decided;
}

const PROVISIONAL_TIME = new Date(0).toISOString();

/**
 * An event as if stored, to decide the next command before the append gives it a place: at
 * `recordedAt` where the transaction's time is known, else at a placeholder.
 */
function provisional(
  e: NewTaskEvent,
  streamId: string,
  version: number,
  meta: CommandMeta,
  recordedAt = PROVISIONAL_TIME,
): StoredTaskEvent {
  return {
    ...e,
    streamId,
    version,
    position: '0',
    recordedAt,
    metadata: { ...meta, schemaVersion: CURRENT_SCHEMA_VERSION },
  } as StoredTaskEvent;
}

/** The task commands on a Postgres or PGlite database. */
export class TaskStore extends TaskCommands {
  constructor(
    readonly database: Database,
    opts: TaskStoreOptions,
  ) {
    super((fn) => database.transaction((tx, writes) => fn(sqlRepository(tx, writes))), opts);
  }

  get db(): Conn {
    return this.database.db;
  }
}
