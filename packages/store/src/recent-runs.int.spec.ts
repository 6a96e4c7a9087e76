// recentRuns: the runs quota windows and fair share are computed from, on both databases. A run
// is a task that started and is still running, or ended since the window's start; a task that
// never started, or ended before, is not one.
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

      const byOwner = (runs: Awaited<ReturnType<typeof recentRuns>>) => [...runs].sort((a, b) => a.spec.owner.localeCompare(b.spec.owner));
      expect(byOwner(await recentRuns(t.db, new Date(Date.parse(done!.finishedAt!) - 1_000)))).toEqual([
        { spec: { owner: 'alice', resources: { gpus: 1 } }, startedAt: done!.startedAt, finishedAt: done!.finishedAt },
        { spec: { owner: 'bob', resources: { gpus: 2 } }, startedAt: running!.startedAt, finishedAt: null },
      ]);
      // A window that starts after the finished run ended: only the one still running.
      expect(byOwner(await recentRuns(t.db, new Date(Date.parse(done!.finishedAt!) + 1_000)))).toEqual([
        { spec: { owner: 'bob', resources: { gpus: 2 } }, startedAt: running!.startedAt, finishedAt: null },
      ]);
    });
  });
}
