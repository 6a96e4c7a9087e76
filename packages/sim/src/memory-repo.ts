// The storage the simulation runs the real command logic (TaskCommands) on: the event log and
// read models in memory, with the same rules the database enforces (unique stream versions,
// one exclusive holder per device, a task holds a device once) and real transactions: writes go to a working copy
// that is committed whole or dropped whole, as when the process dies before COMMIT.
import type { AppendMetadata, LogLine, TaskRepository, TransactionRunner } from '@trainyard/store';
import { ConcurrencyError, InFlightWrites } from '@trainyard/store';
import {
  CURRENT_SCHEMA_VERSION,
  deviceChange,
  newTaskRecordAt,
  safeText,
  sortHolders,
  type Device,
  type DeviceHolderRow,
  type NewTaskEvent,
  type StoredTaskEvent,
  type TaskRecord,
} from '@trainyard/domain';

/** Thrown where the simulation kills the service in the middle of a transaction. */
export class SimulatedCrash extends Error {
  constructor(where: string) {
    super(`simulated crash: ${where}`);
    this.name = 'SimulatedCrash';
  }
}

/** A constraint the real database would refuse: in a sequential simulation it means a bug. */
export class ConstraintViolation extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ConstraintViolation';
  }
}

/** The database refused data (an SQLSTATE class 22 error in Postgres): not an outage, not a crash. */
export class DataRefused extends Error {
  readonly code = '22P05';
  constructor(message: string) {
    super(message);
    this.name = 'DataRefused';
  }
}

interface State {
  logs: { taskId: string; line: LogLine }[];
  events: StoredTaskEvent[];
  versions: Map<string, number>;
  tasks: Map<string, TaskRecord>;
  holders: DeviceHolderRow[];
  /** When this transaction's events are recorded: all at one time, as Postgres's now() gives them. */
  at?: string;
}

export class MemoryDb {
  events: StoredTaskEvent[] = [];
  versions = new Map<string, number>();
  tasks = new Map<string, TaskRecord>();
  /** device_holders, sorted by device then task. */
  holders: DeviceHolderRow[] = [];
  /** Trainer output lines by task and seq, as task_logs stores them (text made safe as the store does). */
  logs = new Map<string, Map<number, string>>();
  /** Refuse the next write of log lines, as a database refusing some line would (armed by the world). */
  refuseNextLogLines = false;
  /** Positions come from a sequence: drawn numbers of rolled-back transactions are gaps. */
  private nextPosition = 1;
  writes = 0;
  /** Crash the service when the write counter reaches this (null: never). */
  crashAtWrite: number | null = null;

  constructor(
    /** The devices present now (configure() changes them, as configureDevices does). */
    public inventory: Device[],
    private readonly now: () => number,
  ) {}

  /** Devices that left the inventory while held: kept, absent, until their holders let go (as the store does). */
  private absent: Device[] = [];

  /** The store's configureDevices: the new inventory present, a device that left kept absent while held. */
  configure(inventory: Device[]): void {
    const ids = new Set(inventory.map((d) => d.id));
    const held = new Set(this.holders.map((h) => h.deviceId));
    this.absent = [...this.inventory, ...this.absent].filter((d) => !ids.has(d.id) && held.has(d.id));
    this.inventory = inventory;
  }

  /** As listDevicesWithHolders: present devices, and absent ones only while held. */
  devicesWithHolders(holders: readonly DeviceHolderRow[] = this.holders, tasks: ReadonlyMap<string, TaskRecord> = this.tasks) {
    const withHolders = (d: Device, present: boolean) => ({
      ...d,
      present,
      holders: holders
        .filter((h) => h.deviceId === d.id)
        .map((h) => {
          const t = tasks.get(h.taskId);
          return {
            ...h,
            endsBy: t?.deadlineAt ? Date.parse(t.deadlineAt) : null,
            ...(t
              ? {
                  owner: t.spec.owner,
                  priority: t.spec.priority?.value ?? 0,
                  startedAt: t.startedAt ? Date.parse(t.startedAt) : null,
                  preemptions: t.preemptions,
                  stopping: t.stop !== null,
                }
              : {}),
          };
        }),
    });
    return [
      ...this.inventory.map((d) => withHolders(d, true)),
      ...this.absent.map((d) => withHolders(d, false)).filter((d) => d.holders.length),
    ];
  }

  readonly transaction: TransactionRunner = async (fn) => {
    const work: State = {
      logs: [],
      events: [],
      versions: new Map(this.versions),
      tasks: new Map(this.tasks),
      holders: [...this.holders],
    };
    // The read-model writes the command logic does not wait for are settled before COMMIT, and
    // the first that failed fails the transaction, as on the database (in-flight-writes.ts).
    const result = await InFlightWrites.settledWith((writes) => fn(this.repo(work, writes)));
    // COMMIT: everything at once.
    this.events.push(...work.events);
    for (const { taskId, line } of work.logs) {
      const lines = this.logs.get(taskId) ?? new Map<number, string>();
      if (!lines.has(line.seq)) lines.set(line.seq, line.line);
      this.logs.set(taskId, lines);
    }
    this.versions = work.versions;
    this.tasks = work.tasks;
    this.holders = work.holders;
    return result;
  };

  private write(where: string): void {
    this.writes++;
    if (this.crashAtWrite !== null && this.writes >= this.crashAtWrite) {
      this.crashAtWrite = null;
      throw new SimulatedCrash(`before commit, at ${where}`);
    }
  }

  /** Give events their versions after `base`, positions and time, into the working copy. */
  private store(w: State, streamId: string, base: number, events: readonly NewTaskEvent[], meta: AppendMetadata): StoredTaskEvent[] {
    const at = this.transactionTime(w);
    const stored = events.map(
      (e, i) =>
        ({
          ...e,
          streamId,
          version: base + i + 1,
          position: String(this.nextPosition++),
          recordedAt: at,
          metadata: { ...meta, schemaVersion: CURRENT_SCHEMA_VERSION },
        }) as StoredTaskEvent,
    );
    w.versions.set(streamId, base + events.length);
    w.events.push(...stored);
    return stored;
  }

  /** The time every event of the transaction is recorded at: the clock's when first asked. */
  private transactionTime(w: State): string {
    return (w.at ??= new Date(this.now()).toISOString());
  }

  private repo(w: State, writes: InFlightWrites): TaskRepository {
    const repo: Omit<TaskRepository, 'inFlight' | 'transactionTime'> = {
      readTransactionTime: async () => this.transactionTime(w),
      loadTask: async (id) => w.tasks.get(id) ?? null,
      findByIdempotencyKey: async (owner, key) =>
        [...w.tasks.values()].find((t) => t.spec.owner === owner && t.spec.idempotencyKey === key) ?? null,
      append: async (streamId: string, expected: number, events: readonly NewTaskEvent[], meta: AppendMetadata) => {
        this.write(`append ${events.map((e) => e.type).join(',')} to ${streamId}`);
        const actual = w.versions.get(streamId) ?? 0;
        if (actual !== expected) throw new ConcurrencyError(streamId, expected, actual);
        return this.store(w, streamId, expected, events, meta);
      },
      // One statement in the store: every stream checked before any is written, positions drawn
      // in the order given.
      appendNewStreams: async (streams) => {
        this.write(`append new streams ${streams.map((s) => s.streamId).join(',')}`);
        const ids = streams.map((s) => s.streamId);
        if (ids.some((id, i) => (w.versions.get(id) ?? 0) !== 0 || ids.indexOf(id) !== i))
          throw new ConcurrencyError(ids.join(', '), 0, null);
        return streams.map((s) => this.store(w, s.streamId, 0, s.events, s.meta));
      },
      project: async (before, after) => {
        this.write(`project ${after.id}`);
        const current = w.tasks.get(after.id) ?? null;
        if ((current?.version ?? 0) !== (before?.version ?? 0))
          throw new ConcurrencyError(after.id, before?.version ?? 0, current?.version ?? null);
        w.tasks.set(after.id, after);
        const change = deviceChange(before, after);
        const released = new Set(change.release.map((g) => g.deviceId));
        w.holders = w.holders.filter((h) => !(h.taskId === after.id && released.has(h.deviceId)));
        for (const g of change.acquire) {
          // The keys of device_holders: (device, task) once; one exclusive holder per device.
          if (w.holders.some((h) => h.deviceId === g.deviceId && h.taskId === after.id))
            throw new ConstraintViolation(`task ${after.id} already holds ${g.deviceId}`);
          const exclusive = w.holders.find((h) => h.deviceId === g.deviceId && h.exclusive);
          if (g.exclusive && exclusive)
            throw new ConstraintViolation(`${g.deviceId} already held exclusively by ${exclusive.taskId}, ${after.id} tried to take it`);
          w.holders.push({ deviceId: g.deviceId, taskId: after.id, memoryMb: g.memoryMb, exclusive: g.exclusive });
        }
        sortHolders(w.holders);
      },
      // The store's INSERT of several task rows (the positions they hold filled in from their
      // streams' events): a task that already has one is a conflict.
      projectNew: async (records) => {
        this.write(`project new ${records.map((r) => r.id).join(',')}`);
        for (const after of records) {
          if (after.devices.length) throw new Error(`projectNewTasks: task ${after.id} takes devices; use projectTask`);
          if (w.tasks.has(after.id)) throw new ConcurrencyError(after.id, 0, null);
        }
        // A new stream's events are all this transaction's.
        const appended = new Map<string, StoredTaskEvent[]>();
        for (const e of w.events) appended.set(e.streamId, [...(appended.get(e.streamId) ?? []), e]);
        for (const after of records) w.tasks.set(after.id, newTaskRecordAt(after, appended.get(after.id) ?? []));
      },
      appendLogLines: async (taskId, lines) => {
        this.write(`log lines of ${taskId}`);
        if (this.refuseNextLogLines) {
          this.refuseNextLogLines = false;
          throw new DataRefused(`the database refused a line of ${taskId}'s output`);
        }
        // What the store does before its INSERT (sql/logs.ts): NUL and lone surrogates as U+FFFD.
        for (const l of lines) w.logs.push({ taskId, line: { ...l, line: safeText(l.line) } });
      },
      listDevices: async () => this.devicesWithHolders(w.holders, w.tasks),
      // A commit replaces the whole state, so transactions here run one after another: each
      // already has the queue to itself, as the store's advisory lock gives it.
      lockQueue: async () => {},
      countQueued: async () => [...w.tasks.values()].filter((t) => t.status === 'QUEUED').length,
      topQueuedPriority: async () => {
        const queued = [...w.tasks.values()].filter((t) => t.status === 'QUEUED');
        return queued.length ? Math.max(...queued.map((t) => t.spec.priority?.value ?? 0)) : null;
      },
      listQueue: async (limit) =>
        [...w.tasks.values()]
          .filter((t) => t.status === 'QUEUED' && !t.held)
          .sort(
            (a, b) =>
              (b.spec.priority?.value ?? 0) - (a.spec.priority?.value ?? 0) ||
              Number(BigInt(a.queuedPosition!) - BigInt(b.queuedPosition!)),
          )
          .slice(0, limit),
    };
    return {
      ...repo,
      project: (before, after, lastPosition) => writes.track(repo.project(before, after, lastPosition)),
      inFlight: (write) => writes.track(write),
      transactionTime: () => w.at ?? null,
      projectNew: (rows) => writes.track(repo.projectNew(rows)),
      appendLogLines: (taskId, lines) => writes.track(repo.appendLogLines(taskId, lines)),
    };
  }
}
