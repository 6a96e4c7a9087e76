// Read models written by an older fold are refolded from the log at start-up, so a field the
// new fold adds is never read as undefined.
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { sql } from 'drizzle-orm';
import { TASK_PROJECTION_VERSION } from '@trainyard/domain';
import { compareWithLog, ensureProjectionCurrent, loadTask, rowsOf, TaskStore } from '.';
import { backendAvailable, backends, openTestStore, taskSpec, type TestDatabase } from '../test/support';

const meta = { actor: 'alice' };

for (const backend of backends()) {
  describe.skipIf(!backendAvailable(backend))(`projection version on ${backend.kind}`, () => {
    let t: TestDatabase;
    let store: TaskStore;
    beforeEach(async () => {
      ({ t, store } = await openTestStore(backend));
    });
    afterEach(async () => {
      await t?.close();
    });

    const recordedVersion = async () =>
      rowsOf<{ version: number }>(await t.db.execute(sql`SELECT version FROM projection_versions WHERE name = 'tasks'`)).map(
        (r) => r.version,
      );

    it('given read models with no recorded version, when checked, then they are taken as the first fold and left as they are', async () => {
      await store.submit('t1', taskSpec('one'), meta);
      const check = await ensureProjectionCurrent(t);
      expect(check).toEqual({
        found: null,
        version: TASK_PROJECTION_VERSION,
        rebuilt: (TASK_PROJECTION_VERSION as number) === 1 ? null : expect.anything(),
      });
      expect(await recordedVersion()).toEqual([TASK_PROJECTION_VERSION]);
    });

    it('given a record written by an older fold (a field missing), when checked, then the read models are refolded from the log', async () => {
      await store.submit('t1', taskSpec('one'), meta);
      await store.submit('t2', taskSpec('two'), meta);
      await ensureProjectionCurrent(t);
      const before = await loadTask(t.db, 't2');
      // What an older fold wrote: the record lacks a field this code's fold adds, under an older version.
      await t.db.execute(sql`UPDATE tasks SET record = record - 'progress' - 'queuedAt' WHERE id = 't2'`);
      await t.db.execute(sql`UPDATE projection_versions SET version = ${TASK_PROJECTION_VERSION - 1}`);
      expect((await compareWithLog(t.db)).differences).toHaveLength(1);

      const check = await ensureProjectionCurrent(t);
      expect(check.found).toBe(TASK_PROJECTION_VERSION - 1);
      expect(check.rebuilt).toEqual({ events: expect.any(Number), tasks: 2 });
      expect(await loadTask(t.db, 't2')).toEqual(before);
      expect((await compareWithLog(t.db)).differences).toEqual([]);
      expect(await recordedVersion()).toEqual([TASK_PROJECTION_VERSION]);
    });

    it('given current read models, when checked again, then nothing is refolded', async () => {
      await store.submit('t1', taskSpec('one'), meta);
      await ensureProjectionCurrent(t);
      const check = await ensureProjectionCurrent(t);
      expect(check).toEqual({ found: TASK_PROJECTION_VERSION, version: TASK_PROJECTION_VERSION, rebuilt: null });
    });
  });
}
