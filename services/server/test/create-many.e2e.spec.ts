// tasks.createMany end to end on both databases, over real HTTP: a sweep is one request and one
// transaction, queued in the order given; an invalid item (its error names it: tasks.3.…) means
// nothing is written; an idempotency key gives the same tasks back for the same request and is
// refused for a different one (again writing nothing); the configured maximum holds.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { connect, type TrainyardClient } from '@trainyard/client';
import { backendAvailable, backends } from '@trainyard/store/testing';
import { simulated, startServer, type RunningServer } from './harness';

const long = { steps: 100_000, stepMs: 100 };
const RATES = [1e-4, 2e-4, 3e-4, 4e-4, 5e-4, 6e-4, 7e-4, 8e-4];
const MAX = 6;
type Item = Parameters<TrainyardClient['tasks']['createMany']['mutate']>[0]['tasks'][number];

/** The tRPC error's code and field errors, or throws when the call did not fail. */
async function failure(p: Promise<unknown>): Promise<{ code: string; fieldErrors: Record<string, string[]> | null; message: string }> {
  try {
    await p;
  } catch (err) {
    const e = err as { message: string; data?: { code: string; fieldErrors: Record<string, string[]> | null } };
    return { code: e.data?.code ?? '?', fieldErrors: e.data?.fieldErrors ?? null, message: e.message };
  }
  throw new Error('the call succeeded');
}

for (const backend of backends()) {
  describe.skipIf(!backendAvailable(backend))(`tasks.createMany on ${backend.kind}`, () => {
    let s: RunningServer;
    let client: TrainyardClient;
    let other: TrainyardClient;
    const sweep = (tag: string, n = 4): Item[] =>
      Array.from(
        { length: n },
        (_, i) =>
          simulated(long, { name: `${tag}-${i}`, config: { epochs: 1, learningRate: RATES[i % RATES.length]!, simulate: long } }) as Item,
      );
    const count = async (c: TrainyardClient = client) => (await c.tasks.list.query({ limit: 200 })).items.length;

    beforeAll(async () => {
      s = await startServer({
        backend,
        env: { TRAINYARD_GPU_SLOTS: '1', TRAINYARD_CREATE_MANY_MAX: String(MAX) },
        startTimeoutMs: 200_000,
      });
      client = s.client;
      other = await connect({ url: s.url, user: 'someone-else' });
    }, 300_000);
    afterAll(async () => {
      await s?.dispose();
    });

    it('creates a sweep in one call: each item as asked, owned by the caller, queued in the order given', async () => {
      const before = await count();
      const r = await client.tasks.createMany.mutate({ tasks: sweep('order') });
      expect(r.created).toBe(true);
      expect(r.tasks.map((t) => t.spec.name)).toEqual(['order-0', 'order-1', 'order-2', 'order-3']);
      expect(r.tasks.map((t) => t.spec.config.learningRate)).toEqual(RATES.slice(0, 4));
      expect(r.tasks.every((t) => t.spec.owner === 'e2e')).toBe(true);
      // One GPU: the first starts, the rest queue behind it in the order given.
      expect(r.tasks.map((t) => t.status)).toEqual(['PREPARING', 'QUEUED', 'QUEUED', 'QUEUED']);
      const queue = await client.queue.get.query();
      expect(queue.queued.map((q) => q.task.id)).toEqual(r.tasks.slice(1).map((t) => t.id));
      expect(await count()).toBe(before + 4);
      // Every event of the sweep names its submitter.
      const events = await client.events.list.query({ taskId: r.tasks[2]!.id });
      expect(events.events.map((e) => [e.type, e.metadata.actor])).toEqual([
        ['TaskSubmitted', 'e2e'],
        ['TaskQueued', 'e2e'],
      ]);
    });

    it('writes nothing when item 3 is invalid, and names the item in the field error', async () => {
      const before = await count();
      const badConfig = sweep('bad', 5);
      badConfig[3] = { ...badConfig[3]!, config: { epochs: 1, batchSize: 0 } as Item['config'] };
      const zod = await failure(client.tasks.createMany.mutate({ tasks: badConfig }));
      expect(zod.code).toBe('BAD_REQUEST');
      expect(Object.keys(zod.fieldErrors ?? {})).toEqual(['tasks.3.config.batchSize']);
      // Checks the service makes (the dataset, the priority class) name the item too.
      const badDataset = sweep('bad', 5);
      badDataset[3] = { ...badDataset[3]!, datasetPath: '/etc/passwd' };
      const dataset = await failure(client.tasks.createMany.mutate({ tasks: badDataset }));
      expect(dataset.code).toBe('BAD_REQUEST');
      expect(Object.keys(dataset.fieldErrors ?? {})).toEqual(['tasks.3.datasetPath']);
      const badPriority = sweep('bad', 5);
      badPriority[3] = { ...badPriority[3]!, priority: 'no-such-class' };
      const priority = await failure(client.tasks.createMany.mutate({ tasks: badPriority }));
      expect(Object.keys(priority.fieldErrors ?? {})).toEqual(['tasks.3.priority']);
      expect(await count()).toBe(before);
      expect((await client.tasks.list.query({ search: 'bad-', limit: 50 })).items).toEqual([]);
    });

    it('with an idempotency key: the same request gives the same tasks back; a different one is a conflict that writes nothing', async () => {
      const key = `sweep-${backend.kind}`;
      const first = await client.tasks.createMany.mutate({ tasks: sweep('idem', 3), idempotencyKey: key });
      expect(first.created).toBe(true);
      const before = await count();
      const again = await client.tasks.createMany.mutate({ tasks: sweep('idem', 3), idempotencyKey: key });
      expect(again.created).toBe(false);
      expect(again.tasks.map((t) => t.id)).toEqual(first.tasks.map((t) => t.id));
      expect(await count()).toBe(before);

      const changed = sweep('idem', 3);
      changed[1] = { ...changed[1]!, config: { epochs: 1, learningRate: 9e-4, simulate: long } };
      for (const tasks of [changed, sweep('idem', 2), sweep('idem', 4)]) {
        const conflict = await failure(client.tasks.createMany.mutate({ tasks, idempotencyKey: key }));
        expect(conflict.code).toBe('CONFLICT');
        expect(conflict.message).toMatch(/idempotency key sweep-.* was already used for a different request/);
      }
      expect(await count()).toBe(before);
      // Keys are per user: another user's same key is a new sweep of theirs.
      const theirs = await other.tasks.createMany.mutate({ tasks: sweep('idem', 3), idempotencyKey: key });
      expect(theirs.created).toBe(true);
      expect(theirs.tasks.every((t) => t.spec.owner === 'someone-else')).toBe(true);
    });

    it('refuses more tasks than TRAINYARD_CREATE_MANY_MAX in one call, naming the field', async () => {
      const before = await count();
      const tooMany = await failure(client.tasks.createMany.mutate({ tasks: sweep('many', MAX + 1) }));
      expect(tooMany.code).toBe('BAD_REQUEST');
      expect(tooMany.fieldErrors).toEqual({ tasks: [`${MAX + 1} tasks in one call; at most ${MAX} (TRAINYARD_CREATE_MANY_MAX)`] });
      const none = await failure(client.tasks.createMany.mutate({ tasks: [] }));
      expect(none.fieldErrors).toEqual({ tasks: ['tasks must hold at least one task'] });
      expect(await count()).toBe(before);
    });
  });
}
