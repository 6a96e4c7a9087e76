// Instances that do not come back, end to end: two real servers (own data folders, own instance
// names) on one Postgres schema (PGlite cannot be shared), one GPU, a lease term of 3 s.
// - A runs a long task (the simulated trainer checkpoints every 5 steps) and is SIGKILLed for good,
//   its trainer with it (the machine is gone). B leaves the task alone while A's lease is fresh,
//   then takes it back: requeued with its checkpoint, it completes under B as attempt 2, resumed
//   from the checkpoint's step.
// - A is stalled (SIGSTOP) past its term: B takes the task back and runs attempt 2; when A wakes,
//   its late heartbeat finds its lease taken and it stops its own trainer of attempt 1, recording
//   nothing more for the task.
// - A's service alone is SIGKILLed (its trainer lives on under its shepherd): B takes the task
//   back and runs attempt 2; when A is started again, it finds its lease taken and stops the
//   trainer of attempt 1 its previous process left behind, and attempt 2 goes on under B.
import { afterEach, describe, expect, it } from 'vitest';
import { backendAvailable, backends, freshSchemaName, rawClient } from '@trainyard/store/testing';
import { isSameProcessAlive } from '../src/trainer/proc';
import { eventsOf, waitTerminal } from './lifecycle-support';
import { eventually, killRunsUnder, simulated, startServer, type RunningServer } from './harness';

const MIN = 60_000;
const TERM_MS = 3000;
const ONE_GPU = JSON.stringify([{ name: 'A100', memoryGb: 80 }]);
const postgres = backends().find((b) => b.kind === 'postgres')!;

describe.skipIf(!backendAvailable(postgres))('instance leases on postgres (two servers, one schema)', () => {
  let servers: RunningServer[] = [];
  afterEach(async () => {
    // The schema goes with the last one disposed.
    for (const s of servers.reverse()) {
      if (s.proc.signalCode === 'SIGSTOP' || s.proc.exitCode === null) s.proc.kill('SIGCONT');
      await s.dispose();
    }
    servers = [];
  });

  async function twoServers() {
    const schema = freshSchemaName();
    const env = (name: string) => ({ TRAINYARD_INSTANCE: name, TRAINYARD_LEASE_MS: String(TERM_MS), TRAINYARD_GPU_INVENTORY: ONE_GPU });
    const a = await startServer({ backend: postgres, schema, env: env('lease-A') });
    servers.push(a);
    const b = await startServer({ backend: postgres, schema, env: env('lease-B') });
    servers.push(b);
    return { a, b };
  }

  it('an instance SIGKILLed for good has its task resumed by another after its lease expires, and not before', async () => {
    const { a, b } = await twoServers();
    const created = await a.client.tasks.create.mutate(
      simulated({ steps: 80, stepMs: 100, checkpointEvery: 5 }, { name: 'long', timeoutMs: 10 * MIN }),
    );
    const running = await eventually(async () => {
      const t = await b.client.tasks.get.query({ id: created.id });
      return t.status === 'TRAINING' && (t.checkpoint?.step ?? 0) >= 10 ? t : null;
    }, 'the task trains on A past a checkpoint at step 10');
    expect(running.runnerId).toBe('lease-A');

    // A's machine is gone: the service and its trainers.
    await a.stop('SIGKILL');
    killRunsUnder(a.dataDir);
    const killedAt = Date.now();

    // Well inside A's term, B has not touched it.
    await new Promise((r) => setTimeout(r, TERM_MS / 2));
    const untouched = await b.client.tasks.get.query({ id: created.id });
    expect(untouched).toMatchObject({ status: 'TRAINING', runnerId: 'lease-A', attempt: 1 });

    const done = await waitTerminal(b.client, created.id, 60_000);
    expect(done).toMatchObject({ status: 'COMPLETED', attempt: 2, runnerId: 'lease-B', preemptions: 0 });

    const events = await eventsOf(b.client, created.id);
    const requeued = events.find((e) => e.type === 'TaskPreempted')!;
    expect(requeued.data).toMatchObject({ lost: { runnerId: 'lease-A' }, checkpoint: { step: expect.any(Number) } });
    // Not before the lease expired, by the database's clock: taken a whole term after A's last heartbeat.
    const pg = rawClient(postgres.url!, b.schema!);
    try {
      const [lease] = await pg<{ heartbeat_at: Date; taken_at: Date; taken_by: string }[]>`
        SELECT heartbeat_at, taken_at, taken_by FROM instance_leases WHERE runner_id = 'lease-A'`;
      expect(lease!.taken_by).toBe('lease-B');
      expect(lease!.taken_at.getTime() - lease!.heartbeat_at.getTime()).toBeGreaterThanOrEqual(TERM_MS);
      expect(Date.parse(requeued.recordedAt)).toBeGreaterThanOrEqual(lease!.taken_at.getTime());
      expect(lease!.heartbeat_at.getTime()).toBeLessThanOrEqual(killedAt + 1000);
    } finally {
      await pg.end({ timeout: 1 });
    }
    const assigned = events.filter((e) => e.type === 'TaskAssigned');
    expect(assigned.map((e) => (e.data as { runnerId: string }).runnerId)).toEqual(['lease-A', 'lease-B']);
    const savedStep = (requeued.data as { checkpoint: { step: number } }).checkpoint.step;
    expect(savedStep).toBeGreaterThanOrEqual(10);
    const { lines } = await b.client.tasks.logs.query({ id: created.id, limit: 5000 });
    expect(lines.map((l) => l.line)).toEqual(
      expect.arrayContaining([expect.stringMatching(new RegExp(`^resuming from step ${savedStep} \\(`))]),
    );
  });

  it('a stalled instance whose lease was taken stops its trainer when it finds out, by its late heartbeat or by the log', async () => {
    const { a, b } = await twoServers();
    const created = await a.client.tasks.create.mutate(
      simulated({ steps: 400, stepMs: 100, checkpointEvery: 5 }, { name: 'stalled', timeoutMs: 10 * MIN }),
    );
    const first = await eventually(async () => {
      const t = await b.client.tasks.get.query({ id: created.id });
      return t.status === 'TRAINING' && t.trainer && (t.checkpoint?.step ?? 0) >= 5 ? t : null;
    }, 'the task trains on A');
    const trainer = first.trainer!;

    a.proc.kill('SIGSTOP');
    const second = await eventually(
      async () => {
        const t = await b.client.tasks.get.query({ id: created.id });
        return t.attempt === 2 && t.status === 'TRAINING' && t.runnerId === 'lease-B' ? t : null;
      },
      'B takes the task back and trains attempt 2',
      30_000,
    );
    // A was stalled, not dead: its trainer ran on meanwhile (only A could stop it).
    expect(isSameProcessAlive(trainer.pid, trainer.startTime)).toBe(true);

    a.proc.kill('SIGCONT');
    await eventually(async () => !isSameProcessAlive(trainer.pid, trainer.startTime), 'A stops its trainer of attempt 1', 15_000);
    // Whichever A hears first: its heartbeat finding the lease taken, or B's events on the task in the feed.
    expect(a.output.join('\n')).toMatch(/lease was taken over by lease-B|task \S+ is now held by lease-B: stopping its trainer/);

    // Attempt 2 goes on under B; nothing of attempt 1 ended it.
    const now = await b.client.tasks.get.query({ id: created.id });
    expect(now).toMatchObject({ attempt: 2, runnerId: 'lease-B', status: 'TRAINING' });
    expect(now.trainer?.pid).toBe(second.trainer?.pid);
    const types = (await eventsOf(b.client, created.id)).map((e) => e.type);
    expect(types.filter((t) => t === 'TaskFailed' || t === 'TaskCompleted' || t === 'TaskCancelled')).toEqual([]);
    await b.client.tasks.cancel.mutate({ id: created.id });
    expect((await waitTerminal(b.client, created.id, 30_000)).status).toBe('CANCELLED');
  });

  it('a restarted instance stops the trainer its previous process left behind once a peer took the task over', async () => {
    const pair = await twoServers();
    const b = pair.b;
    let a = pair.a;
    const created = await a.client.tasks.create.mutate(
      simulated({ steps: 400, stepMs: 100, checkpointEvery: 5 }, { name: 'left-behind', timeoutMs: 10 * MIN }),
    );
    const first = await eventually(async () => {
      const t = await b.client.tasks.get.query({ id: created.id });
      return t.status === 'TRAINING' && t.trainer && (t.checkpoint?.step ?? 0) >= 5 ? t : null;
    }, 'the task trains on A');
    const trainer = first.trainer!;

    // Only the service dies; its trainer runs on under its detached shepherd.
    await a.stop('SIGKILL');
    const second = await eventually(
      async () => {
        const t = await b.client.tasks.get.query({ id: created.id });
        return t.attempt === 2 && t.status === 'TRAINING' && t.runnerId === 'lease-B' ? t : null;
      },
      'B takes the task back and trains attempt 2',
      30_000,
    );
    expect(isSameProcessAlive(trainer.pid, trainer.startTime)).toBe(true);

    // A starts again (same data folder, same instance name): it stops its leftover trainer of attempt 1.
    a = await a.restart();
    servers[0] = a;
    await eventually(async () => !isSameProcessAlive(trainer.pid, trainer.startTime), 'A stops its leftover trainer', 15_000);
    expect(a.output.join('\n')).toMatch(
      new RegExp(
        `trainer ${trainer.pid} of task ${created.id} \\(attempt 1\\) was left running by this instance's previous process, but the task is attempt 2 on lease-B: stopping it`,
      ),
    );

    // Attempt 2 goes on under B, untouched.
    const now = await b.client.tasks.get.query({ id: created.id });
    expect(now).toMatchObject({ attempt: 2, runnerId: 'lease-B', status: 'TRAINING' });
    expect(now.trainer?.pid).toBe(second.trainer?.pid);
    expect(isSameProcessAlive(second.trainer!.pid, second.trainer!.startTime)).toBe(true);
    await b.client.tasks.cancel.mutate({ id: created.id });
    expect((await waitTerminal(b.client, created.id, 30_000)).status).toBe('CANCELLED');
  });
});
