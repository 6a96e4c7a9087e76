// Queue order under concurrent submissions (Postgres): the queue is FIFO by the log position of
// each task's TaskQueued event, but a position is drawn when the event is inserted, not when its
// transaction commits. A submission that drew position p and was slow to commit stayed invisible
// to a scheduler that meanwhile gave the free slot to a later submission (position p+1): the
// later task started first. Found by the torture suite's FIFO invariant; here made deterministic
// by holding the slow submission inside its transaction with a lock on its task row.
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { readStream, TaskStore } from '.';
import { backendAvailable, backends, openTestStore, rawClient, taskSpec, type TestDatabase } from '../test/support';

const spec = taskSpec;
const meta = { actor: 'alice' };
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

const postgres = backends().find((b) => b.kind === 'postgres')!;

describe.skipIf(!backendAvailable(postgres))('queue order under concurrent submissions on postgres', () => {
  let t: TestDatabase;
  let store: TaskStore;
  beforeEach(async () => {
    ({ t, store } = await openTestStore(postgres));
  });
  afterEach(async () => {
    await t?.close();
  });

  it('a slow submission that queued first still starts first', async () => {
    await store.submit('a', spec('a'), meta); // holds the only slot
    await store.execute('a', { type: 'recordSpawn', pid: 1, startTime: '1', runDir: '/tmp' }, meta);

    // Another session holds the row the first submission is about to write: it has drawn the
    // position of its TaskQueued but cannot commit yet.
    const blocker = rawClient(t.url!, t.schema);
    const session = await blocker.reserve();
    await session`BEGIN`;
    await session`INSERT INTO tasks (id, status, version, owner, name, created_at, last_position, record)
                  VALUES ('x', 'PENDING', 0, 'alice', 'x', now(), 0, '{}')`;
    const x = store.submit('x', spec('x'), meta);
    await sleep(300);
    // Meanwhile a later submission, and the running task ends (its slot is given away).
    const y = store.submit('y', spec('y'), meta);
    const done = store.execute('a', { type: 'recordExit', exitCode: 0, signal: null }, meta);
    await sleep(500);
    await session`ROLLBACK`;
    session.release();
    await blocker.end();
    await Promise.all([x, y, done]);

    const queuedAt = async (id: string) => (await readStream(t.db, id)).find((e) => e.type === 'TaskQueued')?.position;
    const assigned = async (id: string) => (await readStream(t.db, id)).some((e) => e.type === 'TaskAssigned');
    const [qx, qy] = [await queuedAt('x'), await queuedAt('y')];
    expect(qx && qy && BigInt(qx) < BigInt(qy), `x queued at ${qx}, y at ${qy}`).toBe(true);
    expect(await assigned('x'), 'x queued first, so x gets the slot').toBe(true);
    expect(await assigned('y'), 'y waits behind x').toBe(false);
  });
});
