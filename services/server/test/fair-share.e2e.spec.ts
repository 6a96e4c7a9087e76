// Fair share end to end over HTTP, on PGlite and Postgres (issue 13, "Priorities, quotas and fair
// share" and "Preemption"): tokens mode, users alice and bob with their own bearer tokens, one pool
// of two GPUs, the simulated trainer.
//
// 1. Order. While two tasks of an admin's hold the GPUs, alice queues eight tasks, then bob eight
//    of the same size. In plain FIFO order (the log positions of their TaskQueued) all of alice's
//    come first, so bob would get nothing until alice's last had started. With fair share, the
//    next device goes to the user furthest below their share: bob's first task starts long before
//    alice's last, and while both have work each holds about half of the GPU time.
// 2. Preemption by fair share (TRAINYARD_PREEMPTION=fair-share). Alice's two long tasks hold both
//    GPUs; bob, holding none, submits one: alice's most recently started task is asked for a
//    checkpoint, stopped and requeued (its StopRequested records the decision's grounds: the rule,
//    the head, the victim, each user's devices and fair share), bob's runs; alice's other task is
//    left alone (one device each is the fair share), and the preempted one resumes from its
//    checkpoint once bob's has ended.
import { afterAll, describe, expect, it } from 'vitest';
import { connect, errorInfo, type TrainyardClient } from '@trainyard/client';
import { addUser, createToken, openDatabase, storageFromEnv } from '@trainyard/store';
import { backendAvailable, backends, type Backend } from '@trainyard/store/testing';
import { eventsOf, serverOutputOnFailure, waitFor, waitTerminal, type StoredEvent } from './lifecycle-support';
import { eventually, simulated, newServiceData, startServer, type RunningServer } from './harness';

const MIN = 60_000;
const TWO_GPUS = JSON.stringify([
  { name: 'A100', memoryGb: 80 },
  { name: 'A100', memoryGb: 80 },
]);
const TASKS_EACH = 8;

/** A service in tokens mode with users root (admin), alice and bob, each with a token. */
async function startWithUsers(backend: Backend, env: Record<string, string>) {
  const { dataDir, schema, env: dbEnv } = await newServiceData(backend, 'trainyard-fair-share-');
  const database = await openDatabase(storageFromEnv(dbEnv));
  const tokens: Record<string, string> = {};
  for (const [name, admin] of [
    ['root', true],
    ['alice', false],
    ['bob', false],
  ] as const) {
    await addUser(database.db, { name, admin });
    tokens[name] = (await createToken(database.db, { userName: name, expiresAt: null })).token;
  }
  await database.close();
  const s = await startServer({
    backend,
    dataDir,
    ...(schema ? { schema } : {}),
    env: { TRAINYARD_AUTH: 'tokens', TRAINYARD_GPU_INVENTORY: TWO_GPUS, ...env },
  });
  const as = (name: string) => connect({ url: s.url, token: tokens[name]! });
  return { s, root: await as('root'), alice: await as('alice'), bob: await as('bob') };
}

for (const backend of backends()) {
  describe.skipIf(!backendAvailable(backend))(`fair share between two users on ${backend.kind}`, () => {
    let s: RunningServer | undefined;
    let root: TrainyardClient;
    let alice: TrainyardClient;
    let bob: TrainyardClient;
    serverOutputOnFailure(() => s);
    afterAll(async () => {
      await s?.dispose();
    });

    it('two users of equal weight each get about half of the GPUs while both have work; plain FIFO would give bob nothing', async () => {
      ({ s, root, alice, bob } = await startWithUsers(backend, {}));
      const task = (user: string, i: number) =>
        simulated({ steps: 6, stepMs: 60 }, { name: `${user}-${i}`, timeoutMs: 10 * MIN, idempotencyKey: `${user}-${i}` });
      // Two tasks of root's hold both GPUs while alice and bob queue theirs, so both queues are full
      // when the devices free up, however slowly the submissions go.
      const blockers = [];
      for (let i = 0; i < 2; i++) {
        const b = await root.tasks.create.mutate(simulated({ steps: 100_000, stepMs: 50 }, { name: `blocker-${i}`, timeoutMs: 10 * MIN }));
        blockers.push((await waitFor(root, b.id, 'TRAINING')).id);
      }
      const aliceIds: string[] = [];
      for (let i = 0; i < TASKS_EACH; i++) aliceIds.push((await alice.tasks.create.mutate(task('alice', i))).id);
      const bobIds: string[] = [];
      for (let i = 0; i < TASKS_EACH; i++) bobIds.push((await bob.tasks.create.mutate(task('bob', i))).id);
      for (const id of blockers) await root.tasks.cancel.mutate({ id });
      for (const id of aliceIds) expect((await waitTerminal(alice, id, 180_000)).status).toBe('COMPLETED');
      for (const id of bobIds) expect((await waitTerminal(bob, id, 180_000)).status).toBe('COMPLETED');

      const log = await eventsOf(root);
      const owner = new Map<string, string>([...aliceIds.map((id) => [id, 'alice'] as const), ...bobIds.map((id) => [id, 'bob'] as const)]);
      const queued = log.filter((e) => e.type === 'TaskQueued' && owner.has(e.streamId));
      const assigned = log.filter((e): e is StoredEvent & { type: 'TaskAssigned' } => e.type === 'TaskAssigned' && owner.has(e.streamId));
      expect(assigned).toHaveLength(2 * TASKS_EACH);
      // Plain FIFO: every task of alice's queued before any of bob's (so FIFO would start all of hers first).
      const lastAliceQueued = Math.max(...queued.filter((e) => owner.get(e.streamId) === 'alice').map((e) => Number(e.position)));
      const firstBobQueued = Math.min(...queued.filter((e) => owner.get(e.streamId) === 'bob').map((e) => Number(e.position)));
      expect(lastAliceQueued).toBeLessThan(firstBobQueued);

      // While both have work queued: from bob's first queued task until either user has none left.
      const startsOf = (user: string) => assigned.filter((e) => owner.get(e.streamId) === user);
      const lastStart = (user: string) => Number(startsOf(user)[TASKS_EACH - 1]!.position);
      const windowEnd = Math.min(lastStart('alice'), lastStart('bob'));
      const contended = assigned.filter((e) => Number(e.position) > firstBobQueued && Number(e.position) <= windowEnd);
      const bobShare = contended.filter((e) => owner.get(e.streamId) === 'bob').length / contended.length;
      // GPU time while both had work, from the log's times (assigned until completed), over the
      // window from the first contended start until either user's last task ended. This is what
      // fair share evens out: a user whose tasks happen to run slower (the same size, on a loaded
      // machine) gets fewer starts, not less GPU time, so the starts are reported, not asserted.
      const ended = new Map(log.filter((e) => e.type === 'TaskCompleted').map((e) => [e.streamId, Date.parse(e.recordedAt)]));
      const from = Date.parse(contended[0]!.recordedAt);
      const until = Math.min(...(['alice', 'bob'] as const).map((u) => Math.max(...startsOf(u).map((e) => ended.get(e.streamId)!))));
      const gpuMs = (user: string) =>
        startsOf(user).reduce(
          (n, e) => n + Math.max(0, Math.min(until, ended.get(e.streamId)!) - Math.max(from, Date.parse(e.recordedAt))),
          0,
        );
      const bobTimeShare = gpuMs('bob') / (gpuMs('alice') + gpuMs('bob'));
      console.info(
        `fair share on ${backend.kind}: ${contended.length} starts while both had work, bob ${Math.round(bobShare * 100)} % of them; ` +
          `GPU time then alice ${gpuMs('alice')} ms, bob ${gpuMs('bob')} ms (${Math.round(bobTimeShare * 100)} %)`,
      );
      expect(contended.length).toBeGreaterThanOrEqual(TASKS_EACH);
      expect(bobTimeShare).toBeGreaterThanOrEqual(0.4);
      expect(bobTimeShare).toBeLessThanOrEqual(0.6);
      // Bob's first task started long before alice's last one, which FIFO would have run first.
      expect(Number(startsOf('bob')[0]!.position)).toBeLessThan(lastStart('alice'));
      // Each assignment says why: its priority and its owner's standing then.
      expect(contended[0]!.data.grounds).toMatchObject({ priority: 0, share: expect.any(Number) });
      await s.dispose();
      s = undefined;
    });

    it('with TRAINYARD_PREEMPTION=fair-share a user holding no GPU preempts the newest task of one holding both; the stop says why', async () => {
      ({ s, root, alice, bob } = await startWithUsers(backend, {
        TRAINYARD_PREEMPTION: 'fair-share',
        TRAINYARD_PREEMPT_GRACE_MS: '20000',
      }));
      const long = (name: string) => simulated({ steps: 100_000, stepMs: 50 }, { name, timeoutMs: 10 * MIN });
      const first = await alice.tasks.create.mutate(long('alice-first'));
      await waitFor(alice, first.id, 'TRAINING');
      const second = await alice.tasks.create.mutate(long('alice-second'));
      await waitFor(alice, second.id, 'TRAINING', (t) => (t.progress.step ?? 0) >= 5);

      const mine = await bob.tasks.create.mutate(simulated({ steps: 5, stepMs: 50 }, { name: 'bob', timeoutMs: 10 * MIN }));
      // It is back in the queue only while bob's short task runs (then it starts again): wait for
      // the fact, its TaskPreempted, not for a state a slow poll can miss.
      const preempted = await eventually(async () => {
        const requeued = (await eventsOf(root, second.id)).some((e) => e.type === 'TaskPreempted');
        return requeued ? alice.tasks.get.query({ id: second.id }) : null;
      }, "alice's newer task is preempted and requeued");
      expect(preempted.preemptions).toBe(1);
      expect(preempted.checkpoint).toMatchObject({ step: expect.any(Number) });
      expect((await waitTerminal(bob, mine.id)).status).toBe('COMPLETED');

      // The stop records the decision whole: root (an admin) reads it all; bob cannot read her task at all.
      const stop = (await eventsOf(root, second.id)).find((e) => e.type === 'StopRequested')!;
      expect(stop.metadata.actor).toBe('scheduler');
      expect(stop.data).toMatchObject({
        reason: 'preempt',
        message: expect.stringMatching(/^preempted for task \S+ by fair share: bob holds 0 of 2 devices \(fair share 1\), alice holds 2/),
        grounds: {
          rule: 'fair-share',
          head: { taskId: mine.id, owner: 'bob', priority: 0, gpus: 1 },
          victim: { taskId: second.id, owner: 'alice', priority: 0, gpus: 1 },
          pool: 2,
          users: [
            { user: 'alice', weight: 1, held: 2, fairShare: 1 },
            { user: 'bob', weight: 1, held: 0, fairShare: 1 },
          ],
          victims: [second.id],
        },
      });
      expect(errorInfo(await bob.tasks.get.query({ id: second.id }).catch((e: unknown) => e)).code).toBe('NOT_FOUND');
      // Alice reads that her task was preempted, but neither bob's task, his name nor his devices:
      // not in her task, its events, its replay or its log.
      const mineStop = (await eventsOf(alice, second.id)).find((e) => e.type === 'StopRequested')!;
      expect(mineStop.data).toMatchObject({
        reason: 'preempt',
        message: 'preempted by fair share for a task of another user: it goes back to the queue and resumes from its last checkpoint',
        grounds: { rule: 'fair-share', users: [{ user: 'alice', held: 2 }], victims: [second.id] },
      });
      const aliceViews = JSON.stringify([
        await alice.tasks.get.query({ id: second.id }),
        await alice.tasks.list.query({}),
        await eventsOf(alice, second.id),
        await alice.events.replay.query({ taskId: second.id, limit: 500 }),
        await alice.tasks.logs.query({ id: second.id, limit: 5000, includeProtocol: true }),
      ]);
      expect(aliceViews).toContain('preempted by fair share for a task of another user');
      expect(aliceViews).not.toContain(mine.id);
      expect(aliceViews).not.toContain('bob');
      const rootView = JSON.stringify(await eventsOf(root, second.id));
      expect(rootView).toContain(mine.id);
      expect(rootView).toContain('bob');

      // Alice's older task was left alone; the preempted one resumes from its checkpoint (attempt 2).
      const resumed = await waitFor(alice, second.id, 'TRAINING', (t) => t.attempt === 2);
      expect(resumed.preemptions).toBe(1);
      const older = await alice.tasks.get.query({ id: first.id });
      expect([older.status, older.attempt, older.preemptions]).toEqual(['TRAINING', 1, 0]);
      const { lines } = await alice.tasks.logs.query({ id: second.id, limit: 5000 });
      expect(lines.map((l) => l.line)).toEqual(expect.arrayContaining([expect.stringMatching(/^resuming from step \d+ \(/)]));
      for (const id of [first.id, second.id]) await alice.tasks.cancel.mutate({ id });
    });
  });
}
