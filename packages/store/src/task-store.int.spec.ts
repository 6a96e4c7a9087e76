import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { sql } from 'drizzle-orm';
import { IllegalCommandError } from '@trainyard/domain';
import {
  appendToStream,
  compareWithLog,
  ConcurrencyError,
  configureDevices,
  listQueue,
  listDevicesWithHolders,
  loadTask,
  projectTask,
  readStream,
  replaceReadModels,
  rowsOf,
  TaskStore,
  type Database,
} from '.';
import { backendAvailable, backends, openTestDatabase, openTestStore, taskSpec, type TestDatabase } from '../test/support';
import { evolve, initialState, toRecord, uniformInventory, type NewTaskEvent, type TaskRecord } from '@trainyard/domain';
import recorded from '../test/fixtures/recorded-log.json';

const spec = taskSpec;
const meta = { actor: 'alice' };
const exitOk = { type: 'recordExit', exitCode: 0, signal: null } as const;

async function finish(store: TaskStore, id: string): Promise<TaskRecord[]> {
  await store.execute(id, { type: 'recordSpawn', pid: 1, startTime: '1', runDir: '/tmp' }, meta);
  await store.execute(id, { type: 'startTraining' }, meta);
  return (await store.execute(id, exitOk, meta)).started;
}

for (const backend of backends()) {
  describe.skipIf(!backendAvailable(backend))(`task store on ${backend.kind}`, () => {
    let t: TestDatabase;
    let store: TaskStore;
    beforeEach(async () => {
      ({ t, store } = await openTestStore(backend));
    });
    afterEach(async () => {
      await t?.close();
    });

    it("the seed's FAQ: three at once, one trains, two queue in order, they finish 1, 2, 3", async () => {
      const r1 = await store.submit('t1', spec('one'), meta);
      const r2 = await store.submit('t2', spec('two'), meta);
      const r3 = await store.submit('t3', spec('three'), meta);
      expect([r1.task.status, r2.task.status, r3.task.status]).toEqual(['PREPARING', 'QUEUED', 'QUEUED']);
      expect(r1.started.map((t) => t.id)).toEqual(['t1']);
      expect((await readStream(t.db, 't1')).map((e) => e.type)).toEqual(['TaskSubmitted', 'TaskAssigned']);
      expect((await listQueue(t.db)).map((t) => t.id)).toEqual(['t2', 't3']);

      expect((await finish(store, 't1')).map((t) => t.id)).toEqual(['t2']);
      expect((await loadTask(t.db, 't1'))!.status).toBe('COMPLETED');
      expect((await listDevicesWithHolders(t.db))[0]!.holders.map((h) => h.taskId)).toEqual(['t2']);
      expect((await finish(store, 't2')).map((t) => t.id)).toEqual(['t3']);
      expect(await finish(store, 't3')).toEqual([]);
      expect((await listDevicesWithHolders(t.db))[0]!.holders).toEqual([]);
      expect((await compareWithLog(t.db)).differences).toEqual([]);
    });

    it("an exit that starts the next task writes that task's row and devices before its append answered: they hold its events' position and time", async () => {
      await store.submit('a', spec('a'), meta);
      await store.submit('b', spec('b'), meta);
      expect((await finish(store, 'a')).map((t) => t.id)).toEqual(['b']);
      const assigned = (await readStream(t.db, 'b')).at(-1)!;
      expect(assigned.type).toBe('TaskAssigned');
      const [row] = rowsOf<{ last: string; since: string }>(
        await t.db.execute(
          sql`SELECT t.last_position::text AS last, h.since_position::text AS since FROM tasks t JOIN device_holders h ON h.task_id = t.id WHERE t.id = 'b'`,
        ),
      );
      expect(row).toEqual({ last: assigned.position, since: assigned.position });
      const b = (await loadTask(t.db, 'b'))!;
      expect(b.startedAt).toBe(assigned.recordedAt);
      expect(b.startedAt).toBe((await loadTask(t.db, 'a'))!.finishedAt);
      expect((await compareWithLog(t.db)).differences).toEqual([]);
    });

    it("a submission that queues writes its row before its append answered: the row and the answer hold its events' positions and time", async () => {
      await store.submit('a', spec('a'), meta);
      const b = await store.submit('b', spec('b'), meta);
      const stream = await readStream(t.db, 'b');
      expect(stream.map((e) => e.type)).toEqual(['TaskSubmitted', 'TaskQueued']);
      expect(b.events).toEqual(stream);
      expect(b.task).toEqual(await loadTask(t.db, 'b'));
      expect(b.task).toEqual(toRecord(stream.reduce(evolve, initialState())));
      expect([b.task.submittedPosition, b.task.queuedPosition, b.task.createdAt, b.task.queuedAt]).toEqual([
        stream[0]!.position,
        stream[1]!.position,
        stream[0]!.recordedAt,
        stream[1]!.recordedAt,
      ]);
      const [row] = rowsOf<{ last: string; queued: string; created: string }>(
        await t.db.execute(
          sql`SELECT last_position::text AS last, queued_position::text AS queued, created_at AS created FROM tasks WHERE id = 'b'`,
        ),
      );
      expect([row!.last, row!.queued, new Date(row!.created).toISOString()]).toEqual([
        stream[1]!.position,
        stream[1]!.position,
        stream[0]!.recordedAt,
      ]);
      expect((await compareWithLog(t.db)).differences).toEqual([]);
    });

    it('a submission under an id the log already has fails with the conflict, not with the aborted row write behind it; nothing is written', async () => {
      await store.submit('a', spec('a'), meta);
      await store.submit('b', spec('b'), meta);
      const once = new TaskStore(t, { runnerId: 'r1', maxAttempts: 1 });
      const err = await once.submit('b', spec('b again'), meta).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(ConcurrencyError);
      expect((await readStream(t.db, 'b')).map((e) => e.type)).toEqual(['TaskSubmitted', 'TaskQueued']);
      expect((await loadTask(t.db, 'b'))!.spec.name).toBe('b');
      expect((await compareWithLog(t.db)).differences).toEqual([]);
    });

    it("a trainer's last reports and its exit in one transaction: each with its actor, the next task started; all or nothing", async () => {
      await store.submit('t1', spec('one'), meta);
      await store.submit('t2', spec('two'), meta);
      await store.execute('t1', { type: 'recordSpawn', pid: 1, startTime: '1', runDir: '/tmp' }, meta);
      await store.execute('t1', { type: 'startTraining' }, meta);
      const progress = {
        type: 'recordProgress',
        epoch: 1,
        totalEpochs: 1,
        step: 9,
        totalSteps: 9,
        loss: 0.25,
        learningRate: null,
      } as const;
      const r = await store.execute(
        't1',
        exitOk,
        { actor: 'runner' },
        {
          preceding: [
            { command: progress, actor: 'trainer' },
            { command: { type: 'recordArtifact', path: '/out/adapter' }, actor: 'trainer' },
          ],
        },
      );
      expect(r.task.status).toBe('COMPLETED');
      expect(r.started.map((t) => t.id)).toEqual(['t2']);
      const events = await readStream(t.db, 't1');
      expect(events.slice(-3).map((e) => [e.type, e.metadata.actor])).toEqual([
        ['ProgressRecorded', 'trainer'],
        ['ArtifactRecorded', 'trainer'],
        ['TaskCompleted', 'runner'],
      ]);
      expect(r.task.artifacts).toEqual(['/out/adapter']);
      expect((await compareWithLog(t.db)).differences).toEqual([]);

      // A command the task does not take refuses the whole transaction: nothing of it is written.
      await store.execute('t2', { type: 'recordSpawn', pid: 2, startTime: '2', runDir: '/tmp' }, meta);
      const before = (await readStream(t.db, 't2')).length;
      const again = { type: 'recordSpawn', pid: 3, startTime: '3', runDir: '/tmp' } as const;
      await expect(store.execute('t2', exitOk, meta, { preceding: [{ command: again, actor: 'runner' }] })).rejects.toThrow(
        IllegalCommandError,
      );
      expect((await readStream(t.db, 't2')).length).toBe(before);
    });

    it('a repeated idempotency key returns the first task and writes nothing', async () => {
      const a = await store.submit('k1', spec('a', { idempotencyKey: 'key-1' }), meta);
      const b = await store.submit('k2', spec('b', { idempotencyKey: 'key-1' }), meta);
      expect(a.created).toBe(true);
      expect(b.created).toBe(false);
      expect(b.task.id).toBe('k1');
      expect(await readStream(t.db, 'k2')).toEqual([]);
    });

    it('cancel: queued at once and the slot untouched; running only after the trainer exits', async () => {
      await store.submit('a', spec('a'), meta);
      await store.submit('b', spec('b'), meta);
      await store.submit('c', spec('c'), meta);
      expect((await store.execute('c', { type: 'cancel' }, meta)).task.status).toBe('CANCELLED');
      const stopping = await store.execute('a', { type: 'cancel', reason: 'no' }, meta);
      expect(stopping.task.status).toBe('PREPARING');
      expect(stopping.task.stop).toMatchObject({ reason: 'cancel', by: 'alice' });
      await expect(store.execute('a', { type: 'cancel' }, meta)).rejects.toBeInstanceOf(IllegalCommandError);
      const exited = await store.execute('a', { type: 'recordExit', exitCode: null, signal: 'SIGTERM' }, meta);
      expect(exited.task.status).toBe('CANCELLED');
      expect(exited.started.map((t) => t.id)).toEqual(['b']);
      await expect(store.execute('a', { type: 'cancel' }, meta)).rejects.toThrow(/cannot cancel task a: it is CANCELLED/);
      expect((await compareWithLog(t.db)).differences).toEqual([]);
    });

    it('a blocked device takes no work until unblocked', async () => {
      const blocks = new Map([['gpu0', { externalMemoryMb: 60_000, blockedReason: 'GPU 0 is 80% used by other programs' }]]);
      const blocked = new TaskStore(t, { runnerId: 'r1', deviceConditions: () => blocks });
      expect((await blocked.submit('a', spec('a'), meta)).task.status).toBe('QUEUED');
      expect(await blocked.schedule(meta)).toEqual([]);
      blocks.clear();
      expect((await blocked.schedule(meta)).map((t) => t.id)).toEqual(['a']);
    });

    it('several GPUs: one task each, FIFO', async () => {
      await configureDevices(t.db, uniformInventory(2));
      const statuses = [];
      for (const id of ['a', 'b', 'c', 'd']) statuses.push((await store.submit(id, spec(id), meta)).task);
      expect(statuses.map((s) => [s.status, s.devices.map((g) => g.deviceId)])).toEqual([
        ['PREPARING', ['gpu0']],
        ['PREPARING', ['gpu1']],
        ['QUEUED', []],
        ['QUEUED', []],
      ]);
      await finish(store, 'b');
      expect((await loadTask(t.db, 'c'))!.devices.map((g) => g.deviceId)).toEqual(['gpu1']);
    });

    it('rebuild from the log equals the live read models; tampering is found and repaired', async () => {
      await configureDevices(t.db, uniformInventory(2));
      for (const id of ['a', 'b', 'c', 'd', 'e']) await store.submit(id, spec(id), meta);
      await finish(store, 'a');
      await store.execute('d', { type: 'cancel' }, meta);
      await store.execute('b', { type: 'fail', reason: 'lost', message: 'gone' }, meta);
      await store.execute('a', { type: 'delete' }, meta);
      const clean = await compareWithLog(t.db);
      expect(clean.differences).toEqual([]);
      expect(clean.tasks).toBe(5);

      await t.db.execute(sql`UPDATE tasks SET record = jsonb_set(record, '{status}', '"FAILED"') WHERE id = 'e'`);
      await t.db.execute(sql`DELETE FROM device_holders`);
      await t.db.execute(sql`DELETE FROM tasks WHERE id = 'c'`);
      const dirty = await compareWithLog(t.db);
      expect(dirty.differences.map((d) => [d.kind, d.id])).toEqual(
        expect.arrayContaining([
          ['task-differs', 'e'],
          ['task-missing-live', 'c'],
          ['holders-differ', 'device holders'],
        ]),
      );
      await replaceReadModels(t);
      expect((await compareWithLog(t.db)).differences).toEqual([]);
    });

    it('replays a recorded log through the live projection; the rebuild equals it', async () => {
      await configureDevices(t.db, uniformInventory(2));
      const log = recorded as { streamId: string; events: NewTaskEvent[] }[];
      const records = new Map<string, TaskRecord | null>();
      for (const batch of log) {
        await t.db.transaction(async (tx) => {
          const before = records.get(batch.streamId) ?? null;
          const state = before ? (await import('@trainyard/domain')).stateFromRecord(before) : initialState();
          const stored = await appendToStream(tx, batch.streamId, state.version, batch.events, meta);
          const after = toRecord(stored.reduce(evolve, state));
          await projectTask(tx, before, after, stored[stored.length - 1]!.position);
          records.set(batch.streamId, after);
        });
      }
      const { differences, events, tasks } = await compareWithLog(t.db);
      expect(differences).toEqual([]);
      expect(events).toBe(log.reduce((n, b) => n + b.events.length, 0));
      expect(tasks).toBe(new Set(log.map((b) => b.streamId)).size);
    });
  });
}

const pg = backends().find((b) => b.kind === 'postgres')!;

describe.skipIf(!backendAvailable(pg))('two service processes on one Postgres', () => {
  let t: TestDatabase;
  let other: Database;
  beforeEach(async () => {
    t = await openTestDatabase(pg);
    other = await t.openAnother();
    await configureDevices(t.db, uniformInventory(1));
  });
  afterEach(async () => {
    await t?.close();
  });

  it('racing for one free slot: exactly one wins, every time', async () => {
    const a = new TaskStore(t, { runnerId: 'A' });
    const b = new TaskStore(other, { runnerId: 'B' });
    const blocks = new Map([['gpu0', { externalMemoryMb: 0, blockedReason: 'held for the race set-up' }]]);
    const setup = new TaskStore(t, { runnerId: 'setup', deviceConditions: () => blocks });
    for (let round = 0; round < 15; round++) {
      const id = `q${round}`;
      expect((await setup.submit(id, spec(id), meta)).task.status).toBe('QUEUED');
      const [ra, rb] = await Promise.all([a.schedule(meta), b.schedule(meta)]);
      const winners = [...ra, ...rb];
      expect(winners.map((w) => w.id)).toEqual([id]);
      const devices = await listDevicesWithHolders(t.db);
      expect(devices[0]!.holders.map((h) => h.taskId)).toEqual([id]);
      expect((await loadTask(t.db, id))!.runnerId).toBe(ra.length ? 'A' : 'B');
      await a.execute(id, { type: 'fail', reason: 'lost', message: 'round over' }, meta);
    }
  });

  it('two submissions racing for one free slot: one starts, the other queues', async () => {
    const a = new TaskStore(t, { runnerId: 'A' });
    const b = new TaskStore(other, { runnerId: 'B' });
    for (let round = 0; round < 10; round++) {
      const [ra, rb] = await Promise.all([a.submit(`a${round}`, spec('a'), meta), b.submit(`b${round}`, spec('b'), meta)]);
      expect([ra.task.status, rb.task.status].sort()).toEqual(['PREPARING', 'QUEUED']);
      const running = ra.task.status === 'PREPARING' ? ra.task : rb.task;
      const waiting = ra.task.status === 'PREPARING' ? rb.task : ra.task;
      await a.execute(waiting.id, { type: 'cancel' }, meta);
      await b.execute(running.id, { type: 'fail', reason: 'lost', message: 'round over' }, meta);
    }
    expect((await compareWithLog(t.db)).differences).toEqual([]);
  });

  it("many submissions from two stores at once, all queued: every row holds its own events' positions", async () => {
    const blocks = new Map([['gpu0', { externalMemoryMb: 0, blockedReason: 'every task queues' }]]);
    const a = new TaskStore(t, { runnerId: 'A', deviceConditions: () => blocks });
    const b = new TaskStore(other, { runnerId: 'B', deviceConditions: () => blocks });
    const ids = Array.from({ length: 40 }, (_, i) => `m${i}`);
    const results = await Promise.all(ids.map((id, i) => (i % 2 ? a : b).submit(id, spec(id), meta)));
    for (const r of results) {
      const stream = await readStream(t.db, r.task.id);
      expect(r.events).toEqual(stream);
      expect(r.task).toEqual(await loadTask(t.db, r.task.id));
      expect(r.task.queuedPosition).toBe(stream[1]!.position);
    }
    expect((await listQueue(t.db)).map((x) => x.queuedPosition)).toEqual(
      results.map((r) => r.task.queuedPosition).sort((x, y) => Number(BigInt(x!) - BigInt(y!))),
    );
    expect((await compareWithLog(t.db)).differences).toEqual([]);
  });
});
