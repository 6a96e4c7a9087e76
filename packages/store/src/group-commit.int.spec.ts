// Writes committed together. Submissions (TaskCommands.submitMany, and group commit in
// TaskStore): the same events, records and FIFO order as one at a time, fewer transactions, and
// one bad submission never takes the others of its batch down with it. A command with the
// trainer's last log lines: both commit, or neither.
import { randomBytes } from 'node:crypto';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { uniformInventory } from '@trainyard/domain';
import { sql } from 'drizzle-orm';
import { compareWithLog, configureDevices, listQueue, readLogLines, readStream, rowsOf, TaskStore, type SubmitResult } from '.';
import { backendAvailable, backends, openTestDatabase, taskSpec, type TestDatabase } from '../test/support';

const spec = taskSpec;
const meta = { actor: 'alice' };
/**
 * Text the database refuses to store: an idempotency key past what a btree index entry may hold
 * (random, so compression cannot shrink it below the limit).
 */
const unindexableKey = () => ({ idempotencyKey: randomBytes(20_000).toString('base64') });
const ok = (r: SubmitResult | Error): SubmitResult => {
  if (r instanceof Error) throw r;
  return r;
};

for (const backend of backends()) {
  describe.skipIf(!backendAvailable(backend))(`group commit on ${backend.kind}`, () => {
    let t: TestDatabase;
    beforeEach(async () => {
      t = await openTestDatabase(backend);
      await configureDevices(t.db, uniformInventory(1));
    });
    afterEach(async () => {
      await t?.close();
    });

    const transactionsOf = async (ids: string[]) =>
      rowsOf<{ n: string | number }>(
        await t.db.execute(
          sql`SELECT count(DISTINCT transaction_id) AS n FROM events WHERE stream_id IN (${sql.join(
            ids.map((id) => sql`${id}`),
            sql`, `,
          )})`,
        ),
      )[0]!.n;

    it('a batch with a free slot: the first starts, the rest queue in the order given, all in one transaction', async () => {
      const store = new TaskStore(t, { runnerId: 'r1' });
      const ids = ['b1', 'b2', 'b3', 'b4', 'b5'];
      const results = (await store.submitMany(ids.map((id) => ({ taskId: id, spec: spec(id), meta })))).map(ok);
      expect(results.map((r) => r.task.status)).toEqual(['PREPARING', 'QUEUED', 'QUEUED', 'QUEUED', 'QUEUED']);
      expect(results.every((r) => r.created)).toBe(true);
      expect(results[0]!.started.map((x) => x.id)).toEqual(['b1']);
      expect((await listQueue(t.db)).map((x) => x.id)).toEqual(['b2', 'b3', 'b4', 'b5']);
      // Each result carries its own task's events, exactly those in the log.
      for (const [i, id] of ids.entries()) expect(results[i]!.events).toEqual(await readStream(t.db, id));
      expect((await readStream(t.db, 'b3')).map((e) => e.type)).toEqual(['TaskSubmitted', 'TaskQueued']);
      // Counted in the transaction: b2 had none ahead of it, b5 three.
      expect(results.slice(1).map((r) => r.queuedAhead)).toEqual([0, 1, 2, 3]);
      expect(Number(await transactionsOf(ids))).toBe(1);
      expect((await compareWithLog(t.db)).differences).toEqual([]);
    });

    it('a batch behind a busy slot queues after what was queued before, and positions follow the order given', async () => {
      const store = new TaskStore(t, { runnerId: 'r1' });
      await store.submit('run', spec('run'), meta);
      await store.submit('q0', spec('q0'), meta);
      const results = (await store.submitMany(['q1', 'q2', 'q3'].map((id) => ({ taskId: id, spec: spec(id), meta })))).map(ok);
      expect(results.map((r) => r.queuedAhead)).toEqual([1, 2, 3]);
      const queue = await listQueue(t.db);
      expect(queue.map((x) => x.id)).toEqual(['q0', 'q1', 'q2', 'q3']);
      const positions = queue.map((x) => BigInt(x.queuedPosition!));
      expect([...positions].sort((a, b) => (a < b ? -1 : 1))).toEqual(positions);
      expect((await compareWithLog(t.db)).differences).toEqual([]);
    });

    it('an idempotency key repeated within a batch, or already stored, gives the first task back', async () => {
      const store = new TaskStore(t, { runnerId: 'r1' });
      await store.submit('old', spec('old', { idempotencyKey: 'k-old' }), meta);
      const results = (
        await store.submitMany([
          { taskId: 'n1', spec: spec('n1', { idempotencyKey: 'k-new' }), meta },
          { taskId: 'n2', spec: spec('n2', { idempotencyKey: 'k-new' }), meta },
          { taskId: 'n3', spec: spec('n3', { idempotencyKey: 'k-old' }), meta },
          { taskId: 'n4', spec: spec('n4', { idempotencyKey: 'k-new', owner: 'bob' }), meta },
        ])
      ).map(ok);
      expect(results.map((r) => [r.task.id, r.created])).toEqual([
        ['n1', true],
        ['n1', false],
        ['old', false],
        ['n4', true],
      ]);
      expect(await readStream(t.db, 'n2')).toEqual([]);
      expect(await readStream(t.db, 'n3')).toEqual([]);
      expect((await compareWithLog(t.db)).differences).toEqual([]);
    });

    it('one submission the database refuses fails alone; the rest of its batch commits', async () => {
      const store = new TaskStore(t, { runnerId: 'r1' });
      await store.submit('run', spec('run'), meta);
      // The whole batch's statement fails on the one key too large for its index.
      const results = await store.submitMany([
        { taskId: 'g1', spec: spec('g1'), meta },
        { taskId: 'bad', spec: spec('bad', unindexableKey()), meta },
        { taskId: 'g2', spec: spec('g2'), meta },
      ]);
      expect(results[0]).not.toBeInstanceOf(Error);
      expect(results[1]).toBeInstanceOf(Error);
      expect(results[2]).not.toBeInstanceOf(Error);
      expect((await listQueue(t.db)).map((x) => x.id)).toEqual(['g1', 'g2']);
      expect(await readStream(t.db, 'bad')).toEqual([]);
      expect((await compareWithLog(t.db)).differences).toEqual([]);
    });

    it("a command's log lines commit with its events, or not at all", async () => {
      const store = new TaskStore(t, { runnerId: 'r1' });
      await store.submit('L', spec('L'), meta);
      const line = (seq: number) => ({ seq, stream: 'stdout' as const, line: `line ${seq}`, at: new Date().toISOString() });
      await store.execute('L', { type: 'recordSpawn', pid: 1, startTime: '1', runDir: '/tmp' }, meta, { logLines: [line(1)] });
      // Refused (not training yet, cancelled meanwhile...): its lines are not stored either.
      await expect(store.execute('L', { type: 'submit', taskId: 'L', spec: spec('L') }, meta, { logLines: [line(2)] })).rejects.toThrow();
      await store.execute('L', { type: 'startTraining' }, meta);
      await store.execute('L', { type: 'recordExit', exitCode: 0, signal: null }, meta, { logLines: [line(3), line(4)] });
      expect((await readLogLines(t.db, 'L', 0, 10)).map((l) => l.seq)).toEqual([1, 3, 4]);
    });

    it('with group commit, submissions made together share transactions and keep their arrival order', async () => {
      const store = new TaskStore(t, { runnerId: 'r1', groupCommit: true });
      await store.submit('run', spec('run'), meta);
      const ids = Array.from({ length: 40 }, (_, i) => `c${String(i).padStart(2, '0')}`);
      const results = await Promise.all(ids.map((id) => store.submit(id, spec(id), meta)));
      expect(results.map((r) => r.task.status)).toEqual(ids.map(() => 'QUEUED'));
      expect((await listQueue(t.db)).map((x) => x.id)).toEqual(ids);
      // The first commits alone; the others gather while it does.
      expect(Number(await transactionsOf(ids))).toBeLessThan(ids.length / 2);
      await expect(store.submit('c-bad', spec('x', unindexableKey()), meta)).rejects.toThrow();
      expect((await compareWithLog(t.db)).differences).toEqual([]);
    });
  });
}
