// TaskCommands.submitAll (tasks.createMany's path): several submissions in one transaction, in
// the order given, all or nothing. Unlike group commit's submitMany, a submission the database
// refuses takes the whole batch down: nothing of it is written.
import { randomBytes } from 'node:crypto';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { uniformInventory } from '@trainyard/domain';
import { compareWithLog, configureDevices, countQueued, listQueue, loadTask, readStream, TaskStore } from '.';
import { backendAvailable, backends, openTestDatabase, taskSpec, type TestDatabase } from '../test/support';

const meta = { actor: 'alice' };

for (const backend of backends()) {
  describe.skipIf(!backendAvailable(backend))(`submitAll on ${backend.kind}`, () => {
    let t: TestDatabase;
    beforeEach(async () => {
      t = await openTestDatabase(backend);
      await configureDevices(t.db, uniformInventory(1));
    });
    afterEach(async () => {
      await t?.close();
    });

    it('submits in the order given: the first takes the free device, the rest queue behind it in order', async () => {
      const store = new TaskStore(t, { runnerId: 'r1' });
      const ids = ['s0', 's1', 's2', 's3'];
      const results = await store.submitAll(ids.map((id) => ({ taskId: id, spec: taskSpec(id), meta })));
      expect(results.map((r) => [r.task.id, r.task.status, r.created])).toEqual([
        ['s0', 'PREPARING', true],
        ['s1', 'QUEUED', true],
        ['s2', 'QUEUED', true],
        ['s3', 'QUEUED', true],
      ]);
      expect((await listQueue(t.db)).map((x) => x.id)).toEqual(['s1', 's2', 's3']);
      expect((await compareWithLog(t.db)).differences).toEqual([]);
    });

    it('hands back the events and records the log and the read model hold (positions and times the database gave)', async () => {
      const store = new TaskStore(t, { runnerId: 'r1' });
      const ids = Array.from({ length: 40 }, (_, i) => `e${i}`);
      const results = await store.submitAll(
        ids.map((id) => ({ taskId: id, spec: taskSpec(id), meta: { actor: 'alice', correlationId: `c-${id}` } })),
      );
      for (const r of results) {
        expect(r.events).toEqual(await readStream(t.db, r.task.id));
        expect(r.task).toEqual(await loadTask(t.db, r.task.id));
      }
      const positions = results.flatMap((r) => r.events.map((e) => BigInt(e.position)));
      expect(positions).toEqual([...positions].sort((a, b) => (a < b ? -1 : 1)));
    });

    it('text the database cannot store (NUL, a lone surrogate) is stored replaced, and handed back as stored', async () => {
      const store = new TaskStore(t, { runnerId: 'r1' });
      const requests = ['u0', 'u1', 'u2'].map((id) => ({ taskId: id, spec: { ...taskSpec(id), name: `${id}\u0000\uD800` }, meta }));
      const results = await store.submitAll(requests);
      for (const r of results) {
        expect(r.task.spec.name).toBe(`${r.task.id}\uFFFD\uFFFD`);
        expect(r.events).toEqual(await readStream(t.db, r.task.id));
        expect(r.task).toEqual(await loadTask(t.db, r.task.id));
      }
      expect((await compareWithLog(t.db)).differences).toEqual([]);
    });

    it('a submission the database refuses (item 3) writes nothing of the batch', async () => {
      const store = new TaskStore(t, { runnerId: 'r1' });
      const ids = ['a0', 'a1', 'a2', 'a3', 'a4'];
      const requests = ids.map((id, i) => ({
        taskId: id,
        // An idempotency key past what a btree index entry may hold: the database refuses it.
        spec: i === 3 ? { ...taskSpec(id), idempotencyKey: randomBytes(20_000).toString('base64') } : taskSpec(id),
        meta,
      }));
      await expect(store.submitAll(requests)).rejects.toThrow();
      for (const id of ids) {
        expect(await loadTask(t.db, id)).toBeNull();
        expect(await readStream(t.db, id)).toEqual([]);
      }
      expect(await countQueued(t.db)).toBe(0);
    });

    it('an error thrown by verify rolls the batch back; verify sees the results in the transaction', async () => {
      const store = new TaskStore(t, { runnerId: 'r1' });
      let seen: string[] = [];
      await expect(
        store.submitAll(
          ['v0', 'v1'].map((id) => ({ taskId: id, spec: taskSpec(id), meta })),
          async (results, tx) => {
            seen = results.map((r) => r.task.id);
            expect(await tx.loadTask('v1')).not.toBeNull();
            throw new Error('not this one');
          },
        ),
      ).rejects.toThrow('not this one');
      expect(seen).toEqual(['v0', 'v1']);
      expect(await loadTask(t.db, 'v0')).toBeNull();
      expect(await loadTask(t.db, 'v1')).toBeNull();
    });
  });
}
