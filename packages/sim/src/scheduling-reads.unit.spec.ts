// What a transaction that frees a device reads before it commits, through the real commands on
// the in-memory store. After a pass that placed tasks, the next pass is read for (the devices,
// the top queued priority) only where it could find something: a device with room, or a queued
// task that may preempt a running one. Otherwise the last assignment's write goes out with the
// COMMIT, and the devices are read once. A task that ends where it ran has the pass's reads sent
// right behind its appends, before its projection write (they see its devices free all the same);
// a command that changes the queue has them sent behind its projection write. The next task's
// assignment is not waited for: it, its projection write and the COMMIT share one round trip.
import { describe, expect, it } from 'vitest';
import {
  DEFAULT_RESOURCES,
  fold,
  toRecord,
  uniformInventory,
  type StoredTaskEvent,
  type TaskPriority,
  type TaskRecord,
  type TaskSpec,
} from '@trainyard/domain';
import { TaskCommands, type TaskRepository, type TaskStoreOptions, type TransactionRunner } from '@trainyard/store';
import { MemoryDb } from './memory-repo';
import { SIM_TRAINING_CONFIG } from './world';

const HIGH: TaskPriority = { name: 'high', value: 10 };

/** The spec of a world's `n`th task. */
const taskSpec = (n: number, gpus = 1, priority?: TaskPriority): TaskSpec => ({
  name: `t${n}`,
  model: 'm-0.5B',
  datasetPath: '/d.jsonl',
  outputDir: `out/${n}`,
  timeoutMs: 3_600_000,
  resources: { ...DEFAULT_RESOURCES, gpus },
  owner: 'u',
  config: SIM_TRAINING_CONFIG,
  ...(priority ? { priority } : {}),
});

function world(gpus: number, opts: Partial<TaskStoreOptions> = {}) {
  const db = new MemoryDb(uniformInventory(gpus), () => Date.parse('2026-12-04T00:00:00Z'));
  let deviceReads = 0;
  // The same transactions, counting the reads of the devices.
  const counting: TransactionRunner = (fn) =>
    db.transaction((repo) =>
      fn({
        ...repo,
        listDevices: () => {
          deviceReads++;
          return repo.listDevices();
        },
      }),
    );
  const commands = new TaskCommands(counting, { runnerId: 'r', ...opts });
  let n = 0;
  return {
    db,
    submit: async (id: string, priority?: TaskPriority, gpus?: number) =>
      commands.submit(id, taskSpec(++n, gpus, priority), { actor: 'u' }),
    /** The devices read while `fn` ran. */
    reads: async <T>(fn: () => Promise<T>): Promise<{ result: T; deviceReads: number }> => {
      const before = deviceReads;
      const result = await fn();
      return { result, deviceReads: deviceReads - before };
    },
    exit: (id: string) => commands.execute(id, { type: 'recordExit', exitCode: 0, signal: null }, { actor: 'runner' }),
  };
}

const ids = (tasks: readonly TaskRecord[]) => tasks.map((t) => t.id);

describe('the reads of a transaction that frees a device', () => {
  it.each([
    ['', {}],
    [', with preemption and no queued task that outranks a running one', { preemption: { maxPreemptions: 3 } }],
  ] as const)(
    'given one GPU and two queued tasks%s, when the running one exits, the next starts and the devices are read once',
    async (_, opts) => {
      const w = world(1, opts);
      await w.submit('a');
      await w.submit('b');
      await w.submit('c');
      const { result, deviceReads } = await w.reads(() => w.exit('a'));
      expect(ids(result.started)).toEqual(['b']);
      expect(deviceReads).toBe(1);
      expect(w.db.tasks.get('c')!.status).toBe('QUEUED');
    },
  );

  it('given two GPUs held by one task and one queued task, when it exits, the devices are read again: one still has room', async () => {
    const w = world(2);
    await w.submit('a', undefined, 2);
    await w.submit('c');
    const { result, deviceReads } = await w.reads(() => w.exit('a'));
    expect(ids(result.started)).toEqual(['c']);
    expect(deviceReads).toBe(2);
  });

  it('given preemption and a running task a queued one outranks, the devices are read again: the next pass may preempt it', async () => {
    const w = world(2, { preemption: { maxPreemptions: 3 } });
    await w.submit('a');
    await w.submit('low');
    await w.submit('h1', HIGH);
    await w.submit('h2', HIGH);
    const { result, deviceReads } = await w.reads(() => w.exit('a'));
    expect(ids(result.started)).toContain('h1');
    expect(deviceReads).toBeGreaterThanOrEqual(2);
  });
});

describe('the order of the reads in a transaction that ends a running task', () => {
  /** The commands' calls on the store, in the order they are made, with the task each is for. */
  function logged(gpus: number) {
    const db = new MemoryDb(uniformInventory(gpus), () => Date.parse('2026-12-04T00:00:00Z'));
    const calls: string[] = [];
    const runner: TransactionRunner = (fn) =>
      db.transaction((repo) =>
        fn({
          ...repo,
          append: (id, expected, events, meta) => {
            calls.push(`append ${id} ${events.map((e) => e.type).join(',')}`);
            return repo.append(id, expected, events, meta);
          },
          project: (before, after, last) => {
            calls.push(`project ${after.id} ${after.status}`);
            return repo.project(before, after, last);
          },
          lockQueue: () => {
            calls.push('lock');
            return repo.lockQueue();
          },
          listDevices: () => {
            calls.push('devices');
            return repo.listDevices();
          },
          listQueue: (limit) => {
            calls.push('queue');
            return repo.listQueue(limit);
          },
        }),
      );
    const commands = new TaskCommands(runner, { runnerId: 'r' });
    let n = 0;
    const submit = (id: string, gpus = 1) => commands.submit(id, taskSpec(++n, gpus), { actor: 'u' });
    return { db, calls, commands, submit };
  }

  it("given a running task and a queued one, when it exits, the pass's reads go right behind the exit's append, before its projection write, and see its devices free", async () => {
    const w = logged(2);
    await w.submit('a', 2);
    await w.submit('b', 2);
    w.calls.length = 0;
    const r = await w.commands.execute('a', { type: 'recordExit', exitCode: 0, signal: null }, { actor: 'runner' });
    expect(ids(r.started)).toEqual(['b']);
    expect(w.calls).toEqual([
      'append a TaskCompleted',
      'lock',
      'devices',
      'queue',
      'project a COMPLETED',
      'append b TaskAssigned',
      'project b PREPARING',
    ]);
    expect(w.db.tasks.get('b')!.devices).toHaveLength(2);
  });

  it('given a queued task, when it is cancelled, the reads follow its projection write (the queue they read must not hold it)', async () => {
    const w = logged(1);
    await w.submit('a');
    await w.submit('b');
    await w.submit('c');
    w.calls.length = 0;
    await w.commands.execute('b', { type: 'cancel' }, { actor: 'u' });
    expect(w.calls.slice(0, 3)).toEqual(['append b TaskCancelled', 'project b CANCELLED', 'lock']);
  });
});

describe('the round trips of a transaction that ends a running task and starts the next', () => {
  /**
   * The commands on the in-memory store, each call answered only when the round trip it went out
   * in comes back (on the next turn of the event loop): calls made before the command logic next
   * waits travel together, as statements on one connection do. A write nobody waits for still
   * goes out in the trip it was made in; the transaction waits for it before it commits.
   */
  function roundTrips(gpus: number) {
    const db = new MemoryDb(uniformInventory(gpus), () => Date.parse('2026-12-04T00:00:00Z'));
    const trips: string[][] = [];
    let trip: { calls: string[]; answers: (() => void)[] } | null = null;
    const send = <T>(call: string, run: () => Promise<T>): Promise<T> => {
      if (!trip) {
        const t = { calls: [] as string[], answers: [] as (() => void)[] };
        trip = t;
        trips.push(t.calls);
        setImmediate(() => {
          trip = null;
          for (const answer of t.answers) answer();
        });
      }
      const current = trip;
      current.calls.push(call);
      const result = run();
      return new Promise<T>((resolve, reject) => current.answers.push(() => void result.then(resolve, reject)));
    };
    const runner: TransactionRunner = (fn) =>
      db.transaction((repo) => {
        const timed: TaskRepository = {
          ...repo,
          loadTask: (id) => send(`load ${id}`, () => repo.loadTask(id)),
          append: (id, expected, events, meta) =>
            send(`append ${id} ${events.map((e) => e.type).join(',')}`, () => repo.append(id, expected, events, meta)),
          project: (before, after, last) => send(`project ${after.id} ${after.status}`, () => repo.project(before, after, last)),
          lockQueue: () => send('lock', () => repo.lockQueue()),
          listDevices: () => send('devices', () => repo.listDevices()),
          listQueue: (limit) => send('queue', () => repo.listQueue(limit)),
          countQueued: () => send('count', () => repo.countQueued()),
          topQueuedPriority: () => send('top', () => repo.topQueuedPriority()),
          appendNewStreams: (streams) =>
            send(`append ${streams.map((t) => `${t.streamId} ${t.events.map((e) => e.type).join(',')}`).join('; ')}`, () =>
              repo.appendNewStreams(streams),
            ),
          projectNew: (records) => send(`project ${records.map((r) => `${r.id} ${r.status}`).join('; ')}`, () => repo.projectNew(records)),
          readTransactionTime: () => send('now', () => repo.readTransactionTime()),
        };
        return fn(timed);
      });
    const committed: StoredTaskEvent[] = [];
    const commands = new TaskCommands(runner, { runnerId: 'r', onCommit: (events) => committed.push(...events) });
    let n = 0;
    const submit = (id: string) => commands.submit(id, taskSpec(++n), { actor: 'u' });
    return { db, trips, committed, commands, submit };
  }

  it("given one GPU, a running task and a queued one, when it exits: two round trips, the next task's assignment going out with the exit's projection and the COMMIT", async () => {
    const w = roundTrips(1);
    await w.submit('a');
    await w.submit('b');
    w.trips.length = 0;
    w.committed.length = 0;
    // As the runner calls it: with the record its last command returned, so the task is not read first.
    const known = w.db.tasks.get('a')!;
    const r = await w.commands.execute('a', { type: 'recordExit', exitCode: 0, signal: null }, { actor: 'runner' }, { known });
    expect(ids(r.started)).toEqual(['b']);
    expect(w.trips).toEqual([
      ['append a TaskCompleted', 'lock', 'devices', 'queue'],
      ['project a COMPLETED', 'append b TaskAssigned', 'project b PREPARING'],
    ]);
    // What was written before the append answered is what its events fold to, times included.
    const stream = w.db.events.filter((e) => e.streamId === 'b');
    expect(w.db.tasks.get('b')).toEqual(toRecord(fold(stream)));
    expect(r.started[0]).toEqual(w.db.tasks.get('b'));
    expect(w.db.tasks.get('b')!.startedAt).toBe(w.db.tasks.get('a')!.finishedAt);
    // The events of both tasks reach the subscribers, in the order they were appended.
    expect(w.committed.map((e) => `${e.streamId} ${e.type}`)).toEqual(['a TaskCompleted', 'b TaskAssigned']);
  });

  it("given a running task, when one more is submitted and queues: two round trips, its row going out behind its append and filled in with the append's positions", async () => {
    const w = roundTrips(1);
    await w.submit('a');
    w.trips.length = 0;
    w.committed.length = 0;
    const r = await w.submit('b');
    expect(w.trips).toEqual([
      ['lock', 'devices', 'count', 'now'],
      ['append b TaskSubmitted,TaskQueued', 'project b QUEUED'],
    ]);
    // The row and the answer are what the stored events fold to, positions and times included.
    const stream = w.db.events.filter((e) => e.streamId === 'b');
    expect(w.db.tasks.get('b')).toEqual(toRecord(fold(stream)));
    expect(r.task).toEqual(w.db.tasks.get('b'));
    expect(r.task.queuedPosition).toBe(stream[1]!.position);
    expect(r.events).toEqual(stream);
    expect(r.queuedAhead).toBe(0);
    expect(w.committed).toEqual(stream);
  });
});
