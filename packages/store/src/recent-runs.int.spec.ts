// recentRuns: the runs quota windows and fair share are computed from, on both databases. A run
// is a task that started and is still running, or ended since the window's start; a task that
// never started, or ended before, is not one.
import { sql } from 'drizzle-orm';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { DEFAULT_RESOURCES, uniformInventory } from '@trainyard/domain';
import { configureDevices, loadTask, recentRuns, TaskStore } from '.';
import { backendAvailable, backends, openTestDatabase, taskSpec, type TestDatabase } from '../test/support';

const meta = { actor: 'alice' };

for (const backend of backends()) {
  describe.skipIf(!backendAvailable(backend))(`recentRuns on ${backend.kind}`, () => {
    let t: TestDatabase;
    let store: TaskStore;
    beforeEach(async () => {
      t = await openTestDatabase(backend);
      await configureDevices(t.db, uniformInventory(3));
      store = new TaskStore(t, { runnerId: 'r1' });
    });
    afterEach(async () => {
      await t?.close();
    });

    it('given a finished run, a running one and a queued task: the runs, each with its owner, GPUs, start and end', async () => {
      await store.submit('done', taskSpec('done', { owner: 'alice', resources: { ...DEFAULT_RESOURCES, gpus: 1 } }), meta);
      await store.submit('running', taskSpec('running', { owner: 'bob', resources: { ...DEFAULT_RESOURCES, gpus: 2 } }), meta);
      await store.submit('waiting', taskSpec('waiting', { owner: 'carol', resources: { ...DEFAULT_RESOURCES, gpus: 2 } }), meta);
      await store.execute('done', { type: 'fail', reason: 'lost', message: 'ended' }, meta);
      const [done, running, waiting] = await Promise.all(['done', 'running', 'waiting'].map((id) => loadTask(t.db, id)));
      expect([done!.status, running!.status, waiting!.status]).toEqual(['FAILED', 'PREPARING', 'QUEUED']);

      const byOwner = (runs: Awaited<ReturnType<typeof recentRuns>>) => [...runs].sort((a, b) => a.owner.localeCompare(b.owner));
      const ms = (iso: string | null) => (iso === null ? null : Date.parse(iso));
      const bobs = { owner: 'bob', gpus: 2, startMs: ms(running!.startedAt), endMs: null };
      expect(byOwner(await recentRuns(t.db, new Date(Date.parse(done!.finishedAt!) - 1_000)))).toEqual([
        { owner: 'alice', gpus: 1, startMs: ms(done!.startedAt), endMs: ms(done!.finishedAt) },
        bobs,
      ]);
      // The ends compare to the millisecond (the records' ISO text, compared as text): a window
      // starting as the run ended holds it, one starting a millisecond later does not.
      const ended = Date.parse(done!.finishedAt!);
      expect((await recentRuns(t.db, new Date(ended))).map((r) => r.owner).sort()).toEqual(['alice', 'bob']);
      expect((await recentRuns(t.db, new Date(ended + 1))).map((r) => r.owner)).toEqual(['bob']);
      // A window that starts after the finished run ended: only the one still running.
      expect(byOwner(await recentRuns(t.db, new Date(Date.parse(done!.finishedAt!) + 1_000)))).toEqual([bobs]);
    });

    it('given a record time not in the form the fold writes, then its row is still written and the run is left out (not an error that would refuse the row)', async () => {
      await store.submit('odd', taskSpec('odd', { owner: 'alice' }), meta);
      await t.db.execute(sql`UPDATE tasks SET record = jsonb_set(record, '{startedAt}', '"2026-12-06T17:39:45+00:00"') WHERE id = 'odd'`);
      expect((await loadTask(t.db, 'odd'))!.startedAt).toBe('2026-12-06T17:39:45+00:00');
      expect((await recentRuns(t.db, new Date(0))).map((r) => r.owner)).toEqual([]);
    });
  });
}
