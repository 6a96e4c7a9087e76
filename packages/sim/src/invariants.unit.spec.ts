// Every invariant of the simulation can fail, and says which one failed: each is tripped by a
// planted bug (a wrong policy, decider or store, run through seeds) or by a doctored state (a bad
// log, a read model or holder table edited behind the store's back, a trainer no runner started),
// and the spec names the invariant that must fire, and that no other does.
import { describe, expect, it } from 'vitest';
import {
  backfillPolicy,
  DEFAULT_RESOURCES,
  queueFor,
  visibleTask,
  type SchedulingPolicy,
  type StoredTaskEvent,
  type TaskSpec,
} from '@trainyard/domain';
import { SIM_TRAINING_CONFIG, simulate, World, type SimInvariant, type SimOptions, type SimViolation } from '.';

const spec = (key: string): TaskSpec => ({
  name: key,
  model: 'm-0.5B',
  datasetPath: '/d.jsonl',
  outputDir: key,
  timeoutMs: 3_600_000,
  resources: { ...DEFAULT_RESOURCES },
  owner: 'sim',
  idempotencyKey: key,
  config: SIM_TRAINING_CONFIG,
});

/** A world with no service running: tasks submitted straight through the real commands. */
async function worldWith(slots: number, ids: string[]): Promise<World> {
  const world = new World({ seed: 1, steps: 0, slots });
  for (const id of ids) await world.commands.submit(id, spec(id), { actor: 'user' });
  return world;
}

const kinds = (world: World): SimInvariant[] => world.result.violations.map((v) => v.invariant);

/** The first violation a planted bug causes over up to 200 seeds. */
async function firstViolation(opts: Omit<SimOptions, 'seed'>): Promise<SimViolation | null> {
  for (let seed = 1; seed <= 200; seed++) {
    const r = await simulate({ ...opts, seed });
    if (r.violations.length) return r.violations[0]!;
  }
  return null;
}

describe('simulation invariants, after every step (World.check)', () => {
  it('given an honest log and read models, nothing fires', async () => {
    const world = await worldWith(1, ['a', 'b']);
    world.check();
    expect(kinds(world)).toEqual([]);
    expect(world.db.tasks.get('a')!.status).toBe('PREPARING');
    expect(world.db.tasks.get('b')!.status).toBe('QUEUED');
  });

  it('stream-version: an event whose version skips one', async () => {
    const world = await worldWith(1, ['a']);
    const last = world.db.events.at(-1)!;
    world.db.events.push({ ...last, version: last.version + 2, position: String(BigInt(last.position) + 1n) } as StoredTaskEvent);
    world.check();
    // The copied event is also illegal where it lands, so the fold refuses it as well.
    expect(kinds(world)).toEqual(['stream-version', 'log-not-foldable']);
  });

  it('log-not-foldable: an event the machine refuses in its state (a second TaskSubmitted)', async () => {
    const world = await worldWith(1, ['a']);
    const events = world.db.events.filter((e) => e.streamId === 'a');
    const submitted = events[0]!;
    world.db.events.push({ ...submitted, version: events.at(-1)!.version + 1, position: '999' });
    world.check();
    expect(kinds(world)).toEqual(['log-not-foldable']);
  });

  it('read-model: a task record that is not the fold of its stream', async () => {
    const world = await worldWith(1, ['a']);
    world.db.tasks.set('a', { ...world.db.tasks.get('a')!, attempt: 7 });
    world.check();
    expect(kinds(world)).toEqual(['read-model']);
  });

  it('device-holder: a device held by a task that does not exist', async () => {
    const world = await worldWith(2, ['a']);
    world.check();
    world.db.holders.push({ deviceId: 'gpu1', taskId: 'ghost', memoryMb: 1024, exclusive: true });
    world.check();
    expect(kinds(world)).toEqual(['device-holder']);
  });

  it('device-holder: a task holding a device its record does not name', async () => {
    const world = await worldWith(2, ['a']);
    world.check();
    world.db.holders.push({ deviceId: 'gpu1', taskId: 'a', memoryMb: 1024, exclusive: true });
    world.check();
    expect(kinds(world)).toEqual(['device-holder']);
  });

  it('phantom-device: a task records a device that no longer names it', async () => {
    const world = await worldWith(1, ['a']);
    world.check();
    world.db.holders.length = 0;
    world.check();
    expect(kinds(world)).toEqual(['phantom-device']);
  });

  it('device-overcommit: a policy that forgets shared holders packs a device past its memory or beside an exclusive task', async () => {
    const forgetful: SchedulingPolicy = {
      name: 'forgets shared holders (planted bug)',
      schedule: (input) =>
        backfillPolicy.schedule({ ...input, devices: input.devices.map((d) => ({ ...d, holders: d.holders.filter((h) => h.exclusive) })) }),
    };
    expect((await firstViolation({ steps: 150, slots: 1, policy: forgetful }))?.invariant).toBe('device-overcommit');
  });

  it('partial-gang: a policy that gives a gang fewer devices than it asked for', async () => {
    const stingy: SchedulingPolicy = {
      name: 'one device per task (planted bug)',
      schedule: (input) => {
        const d = backfillPolicy.schedule(input);
        return { ...d, assignments: d.assignments.map((a) => ({ ...a, devices: a.devices.slice(0, 1) })) };
      },
    };
    expect((await firstViolation({ steps: 150, slots: 2, policy: stingy }))?.invariant).toBe('partial-gang');
  });

  it('backfill-delays-head: a policy that takes every task for a short one backfills past the reservation', async () => {
    const optimist: SchedulingPolicy = {
      name: 'every timeout taken as 1 ms (planted bug)',
      schedule: (input) => backfillPolicy.schedule({ ...input, queue: input.queue.map((q) => ({ ...q, timeoutMs: 1 })) }),
    };
    expect((await firstViolation({ steps: 200, slots: 2, policy: optimist }))?.invariant).toBe('backfill-delays-head');
  });

  it('orphan-trainer: a trainer running for a queued task', async () => {
    const world = await worldWith(1, ['a', 'b']);
    world.plantTrainer('b');
    world.check();
    expect(kinds(world)).toEqual(['orphan-trainer']);
  });

  it('double-trainer: two trainers for the task that holds the slot', async () => {
    const world = await worldWith(1, ['a']);
    world.plantTrainer('a');
    world.plantTrainer('a');
    world.check();
    expect(kinds(world)).toEqual(['double-trainer']);
  });

  it('fifo: a policy that takes the queue newest first', async () => {
    const lifo: SchedulingPolicy = {
      name: 'newest first (planted bug)',
      schedule: (input) => backfillPolicy.schedule({ ...input, queue: [...input.queue].reverse() }),
    };
    expect((await firstViolation({ steps: 150, slots: 1, policy: lifo }))?.invariant).toBe('fifo');
  });

  it('stall: a scheduling policy that never assigns', async () => {
    const idle: SchedulingPolicy = {
      name: 'never assigns (planted bug)',
      schedule: () => ({ assignments: [], waiting: new Map(), reservation: null, preemptions: [] }),
    };
    expect((await firstViolation({ steps: 150, slots: 1, policy: idle }))?.invariant).toBe('stall');
  });

  it('lost-device: a service that leaves tasks running on devices that left the inventory', async () => {
    expect((await firstViolation({ steps: 200, slots: 2, ignoreLostDevices: true }))?.invariant).toBe('lost-device');
  });

  it('quota: a policy that forgets the users’ quotas lets alice hold more devices than she may', async () => {
    const careless: SchedulingPolicy = {
      name: 'ignores quotas (planted bug)',
      schedule: (input) => backfillPolicy.schedule({ ...input, accounts: new Map() }),
    };
    const limits = [{ name: 'alice', maxGpus: 1, gpuHours: null, gpuHoursWindowHours: null, weight: 1 }];
    expect((await firstViolation({ steps: 150, slots: 2, policy: careless, limits }))?.invariant).toBe('quota');
  });

  it('resume: a launcher that starts a preempted task from zero instead of its checkpoint', async () => {
    expect((await firstViolation({ steps: 150, slots: 1, forgetCheckpoints: true }))?.invariant).toBe('resume');
  });

  it('isolation: a visibility that lets a user read any task by its id', async () => {
    const leaky = { visibleTask: ((_viewer, task) => task ?? null) as typeof visibleTask, queueFor };
    const found = await firstViolation({ steps: 150, slots: 1, visibility: leaky });
    expect(found?.invariant).toBe('isolation');
    expect(found?.message).toMatch(/^(alice|bob) read task t\d+ of (alice|bob) by its id$/);
  });

  it('isolation: a queue view that shows everyone every task', async () => {
    const leaky = { visibleTask, queueFor: ((_viewer, q) => ({ ...q, hidden: null })) as typeof queueFor };
    const found = await firstViolation({ steps: 150, slots: 1, visibility: leaky });
    expect(found?.invariant).toBe('isolation');
    expect(found?.message).toMatch(/^(alice|bob) read task t\d+ of (alice|bob) in the queue$/);
  });

  it('isolation: a queue view that keeps other users’ ids in the reasons', async () => {
    // Their records are taken out, but a reason still names the head that is another user's.
    const leaky = {
      visibleTask,
      queueFor: ((viewer, q) => {
        const seen = queueFor(viewer, q);
        const reasons = new Map(q.queued.map((e) => [e.task.id, e.reason]));
        return { ...seen, queued: seen.queued.map((e) => ({ ...e, reason: reasons.get(e.task.id)! })) };
      }) as typeof queueFor,
    };
    const found = await firstViolation({ steps: 150, slots: 1, visibility: leaky });
    expect(found?.invariant).toBe('isolation');
    expect(found?.message).toMatch(/^(alice|bob) read the id of task t\d+ of (alice|bob) in the queue$/);
  });

  it('idempotency: a store that never finds a task by its key', async () => {
    const found = await firstViolation({ steps: 150, slots: 1, forgetIdempotencyKeys: true });
    expect(found?.invariant).toBe('idempotency');
    expect(found?.message).toMatch(/made a second task|\(created true\)/);
  });
});

describe('simulation invariants, once everything has ended (World.checkEnd)', () => {
  /** A world whose one task has ended (cancelled while queued: no device here). */
  async function ended(): Promise<World> {
    const world = await worldWith(0, ['a']);
    await world.commands.execute('a', { type: 'cancel', reason: 'spec' }, { actor: 'user' });
    world.check();
    return world;
  }

  it('given every task ended and nothing doctored, nothing fires', async () => {
    const world = await ended();
    world.checkEnd();
    expect(kinds(world)).toEqual([]);
    expect(world.db.tasks.get('a')!.status).toBe('CANCELLED');
  });

  it('stuck: a task that never ended', async () => {
    const world = await worldWith(1, ['a']);
    world.checkEnd();
    expect(kinds(world)).toEqual(['stuck']);
  });

  it('trainer-at-end: a trainer still running once its task ended', async () => {
    const world = await ended();
    world.plantTrainer('a');
    world.checkEnd();
    expect(kinds(world)).toEqual(['trainer-at-end']);
  });

  it('unsafe-text: a stored line with a NUL', async () => {
    const world = await ended();
    world.db.logs.set('a', new Map([[1, 'loss\u00000.1']]));
    world.checkEnd();
    expect(kinds(world)).toEqual(['unsafe-text']);
  });

  it('rebuild-tasks: a read model edited behind the log', async () => {
    const world = await ended();
    world.db.tasks.set('a', { ...world.db.tasks.get('a')!, cancelReason: 'edited' });
    world.checkEnd();
    expect(kinds(world)).toEqual(['rebuild-tasks']);
  });

  it('rebuild-holders: a device holder the log never assigned', async () => {
    const world = await ended();
    world.db.holders.push({ deviceId: 'gpu0', taskId: 'a', memoryMb: 1024, exclusive: true });
    world.checkEnd();
    expect(kinds(world)).toEqual(['rebuild-holders']);
  });
});
