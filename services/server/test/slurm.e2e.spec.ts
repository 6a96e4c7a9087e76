// The service with TRAINYARD_EXECUTOR=slurm against the live single-node cluster of
// infra/slurm-up.sh (4 GPUs declared), on both databases: tasks submitted through the HTTP API
// are handed to Slurm (the job id in the log), run there under the shepherd and complete; a
// third 2-GPU task waits with Slurm's reason; cancel is scancel; a job scancelled from outside is
// recorded with the actor `slurm`; a failing trainer fails the task with its exit code; the
// service SIGKILLed while jobs run reconciles on restart, nothing lost or recorded twice; a task
// cancelled while PREPARING is scancelled; a task past its --time is ended by Slurm and fails as
// timed out (on Postgres only: see there); slurmctld stopped mid-run fails nothing.
// The controller's restart is a case of this file's sequence, not a file of its own: vitest runs
// spec files in parallel, and the other specs here would see the controller away.
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { TrainyardClient } from '@trainyard/client';
import { backendAvailable, backends, skipLoudlyOrFail } from '@trainyard/store/testing';
import { eventually, simulated, startServer, type RunningServer } from './harness';
import { slurmMissing, takeSlurmCluster } from './slurm-cluster';

const missing = slurmMissing();
if (missing) skipLoudlyOrFail(`${missing}: the service's Slurm e2e specs cannot run`, 'bash infra/slurm-up.sh');

// Other spec files use the same cluster: take it in turn (see slurm-cluster.ts).
let releaseCluster = (): void => {};
beforeAll(async () => {
  if (missing === null) releaseCluster = await takeSlurmCluster();
}, 25 * 60_000);
afterAll(() => releaseCluster());

const SLURM_UP = join(import.meta.dirname, '../../../infra/slurm-up.sh');

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

const SLURM_ENV = { TRAINYARD_EXECUTOR: 'slurm', TRAINYARD_SLURM_POLL_MS: '300', TRAINYARD_SLURM_MAX_GPUS: '4' };

/** Slurm's own view of a job: state and reason (squeue), or null once it no longer lists it. */
function squeue(jobId: string): { state: string; reason: string } | null {
  try {
    const out = execFileSync('squeue', ['--noheader', '--states=all', `--jobs=${jobId}`, '--format=%T|%r'], { encoding: 'utf8' }).trim();
    if (!out) return null;
    const [state, reason] = out.split('|');
    return { state: state!, reason: reason ?? '' };
  } catch {
    return null;
  }
}

async function jobOf(c: TrainyardClient, id: string): Promise<string> {
  const ev = await eventually(async () => {
    const { events } = await c.events.list.query({ taskId: id, type: 'TaskHandedToSlurm' });
    return events[0];
  }, `task ${id} handed to Slurm`);
  if (ev.type !== 'TaskHandedToSlurm') throw new Error('not a hand-over');
  console.log(`task ${id}: Slurm job ${ev.data.jobId}`);
  return ev.data.jobId;
}

const statusOf = async (c: TrainyardClient, id: string) => (await c.tasks.get.query({ id })).status;
// Generous: a loaded machine starts Node slowly, inside Slurm's jobs too.
const until = (c: TrainyardClient, id: string, statuses: string[], ms = 120_000) =>
  eventually(async () => statuses.includes(await statusOf(c, id)), `task ${id} to be ${statuses.join(' or ')}`, ms, 200);

async function eventTypes(c: TrainyardClient, id: string): Promise<{ type: string; actor: string }[]> {
  const { events } = await c.events.list.query({ taskId: id, limit: 1000 });
  return events.filter((e) => e.type !== 'ProgressRecorded').map((e) => ({ type: e.type, actor: e.metadata.actor }));
}

for (const backend of backends()) {
  describe.skipIf(missing !== null || !backendAvailable(backend))(`Slurm executor through the service on ${backend.kind}`, () => {
    let server: RunningServer;
    let c: TrainyardClient;
    const jobs: string[] = [];

    beforeAll(async () => {
      server = await startServer({ backend, env: SLURM_ENV });
      c = server.client;
    });
    afterEach((ctx) => {
      if (ctx.task.result?.state === 'fail') console.log(`service output:\n${server.output.slice(-60).join('\n')}`);
      // Nothing of ours is left on the shared cluster for the next test.
      for (const j of jobs.splice(0)) {
        try {
          execFileSync('scancel', [j], { stdio: 'pipe' });
        } catch {
          /* ended */
        }
      }
    });
    afterAll(async () => {
      await server?.dispose();
      // The controller is back for the other specs whatever happened above (idempotent when it is up).
      execFileSync('bash', [SLURM_UP], { stdio: 'pipe' });
    });

    const create = async (sim: Record<string, unknown>, gpus = 1) =>
      (await c.tasks.create.mutate(simulated(sim, { resources: { gpus } }))).id;
    const handed = async (id: string) => {
      const jobId = await jobOf(c, id);
      jobs.push(jobId);
      return { id, jobId };
    };
    const submit = async (sim: Record<string, unknown>, gpus = 1) => handed(await create(sim, gpus));

    it('system.health names the executor and says it answers', async () => {
      const h = await c.system.health.query();
      expect(h.executor).toEqual({ executor: 'slurm', reachable: true, detail: expect.stringMatching(/UP/) });
    });

    it('three 2-GPU tasks on the 4-GPU node: two run, one waits with Slurm’s reason, all complete', async () => {
      const ids = [];
      for (let i = 0; i < 3; i++) ids.push(await create({ steps: 40, stepMs: 250 }, 2));
      const tasks: { id: string; jobId: string }[] = [];
      for (const id of ids) tasks.push(await handed(id));
      // While two run, the third waits in Slurm's queue, with Slurm's reason as its queue reason.
      const waiting = await eventually(
        async () => {
          const q = await c.queue.get.query({});
          return q.queued.find((e) => tasks.some((t) => t.id === e.task.id) && /^Slurm: \S/.test(e.reason.message));
        },
        'a task waiting with Slurm’s reason',
        60_000,
        100,
      );
      expect(waiting.reason.message).toContain(`job ${tasks.find((t) => t.id === waiting.task.id)!.jobId}`);
      for (const t of tasks) await until(c, t.id, ['COMPLETED']);
      for (const t of tasks) {
        const task = await c.tasks.get.query({ id: t.id });
        expect(task.slurmJob).toMatchObject({ jobId: t.jobId, attempt: 1 });
        expect(task.progress.percent).toBe(100);
        const types = (await eventTypes(c, t.id)).map((e) => e.type);
        expect(types).toEqual([
          'TaskSubmitted',
          'TaskQueued',
          'TaskHandedToSlurm',
          'TaskAssigned',
          'TrainerSpawned',
          'TrainingStarted',
          'ArtifactRecorded',
          'TaskCompleted',
        ]);
        // The trainer's output reached the log through the run folder.
        const { lines } = await c.tasks.logs.query({ id: t.id, afterSeq: 0, limit: 1000 });
        expect(lines.length).toBeGreaterThan(0);
      }
      const assigned = await c.events.list.query({ taskId: tasks[0]!.id, type: 'TaskAssigned' });
      expect(assigned.events[0]!.metadata.actor).toBe('slurm');
    });

    it('cancel is scancel, running or waiting; a job scancelled outside Trainyard is recorded with the actor slurm', async () => {
      // Four GPUs held by one task; the next waits in Slurm's queue.
      const running = await submit({ steps: 2000, stepMs: 100 }, 4);
      await until(c, running.id, ['TRAINING']);
      const pending = await submit({ steps: 5, stepMs: 100 }, 1);
      await eventually(async () => squeue(pending.jobId)?.state === 'PENDING', 'the second job pending in Slurm');
      // Cancelled through Trainyard while it waits in Slurm: cancelled at once, its job scancelled.
      await c.tasks.cancel.mutate({ id: pending.id });
      expect(await statusOf(c, pending.id)).toBe('CANCELLED');
      await eventually(async () => /CANCELLED/.test(squeue(pending.jobId)?.state ?? 'CANCELLED'), 'the pending job cancelled in Slurm');
      // Cancelled through Trainyard while it trains: scancel, the trainer stops, CANCELLED.
      await c.tasks.cancel.mutate({ id: running.id });
      await until(c, running.id, ['CANCELLED']);
      expect(squeue(running.jobId)?.state ?? 'CANCELLED').toMatch(/CANCELLED|COMPLETING/);
      expect((await eventTypes(c, running.id)).filter((e) => e.type === 'StopRequested')).toEqual([
        { type: 'StopRequested', actor: 'e2e' },
      ]);

      // Now from outside: scancel of a running job and of a waiting one.
      const outside = await submit({ steps: 2000, stepMs: 100 }, 4);
      await until(c, outside.id, ['TRAINING']);
      const outsidePending = await submit({ steps: 5, stepMs: 100 }, 1);
      await eventually(async () => squeue(outsidePending.jobId)?.state === 'PENDING', 'the job pending in Slurm');
      execFileSync('scancel', [outsidePending.jobId]);
      await until(c, outsidePending.id, ['CANCELLED']);
      execFileSync('scancel', [outside.jobId]);
      await until(c, outside.id, ['CANCELLED']);
      const byOutside = await c.tasks.get.query({ id: outside.id });
      expect(byOutside.cancelReason).toContain(`Slurm job ${outside.jobId}`);
      expect((await eventTypes(c, outside.id)).filter((e) => e.type === 'StopRequested')).toEqual([
        { type: 'StopRequested', actor: 'slurm' },
      ]);
      expect((await eventTypes(c, outsidePending.id)).filter((e) => e.type === 'TaskCancelled')).toEqual([
        { type: 'TaskCancelled', actor: 'slurm' },
      ]);
      // Slot accounting: nothing holds a device any more, and the next task runs at once.
      const next = await submit({ steps: 3, stepMs: 100 }, 4);
      await until(c, next.id, ['COMPLETED']);
    });

    it('a failing trainer fails its task with its exit status and the job id', async () => {
      const { id, jobId } = await submit({ steps: 10, stepMs: 50, failAtStep: 3, exitCode: 3 }, 1);
      await until(c, id, ['FAILED']);
      const task = await c.tasks.get.query({ id });
      expect(task.error).toMatchObject({ reason: 'exit', exitCode: 3 });
      expect(task.error!.message).toContain(`Slurm job ${jobId} ended FAILED`);
    });

    // Slurm's smallest limit is a minute and it checks limits about every 30 s: one to two minutes.
    // On one database: the limit is Slurm's and the mapping of its TIMEOUT the executor's, the
    // same code on either; the minute of Slurm's clock is paid once.
    if (backend.kind === 'postgres')
      it('a timeout through --time: Slurm ends the job TIMEOUT and the task fails as timed out, with the job id', async () => {
        const id = (await c.tasks.create.mutate(simulated({ steps: 100_000, stepMs: 200 }, { resources: { gpus: 1 }, timeoutMs: 60_000 })))
          .id;
        const { jobId } = await handed(id);
        expect(execFileSync('scontrol', ['show', 'job', jobId], { encoding: 'utf8' })).toMatch(/TimeLimit=00:01:00/);
        await until(c, id, ['TRAINING']);
        await until(c, id, ['FAILED'], 240_000);
        const task = await c.tasks.get.query({ id });
        expect(task.error).toMatchObject({ reason: 'timeout' });
        expect(task.error!.message).toMatch(new RegExp(`Slurm job ${jobId} ended TIMEOUT.*time limit \\(--time\\) passed`));
        expect(squeue(jobId)?.state).toBe('TIMEOUT');
        const types = await eventTypes(c, id);
        // Slurm stopped it, not Trainyard: the stop is Slurm's; the exit then ends the task.
        expect(types.filter((e) => e.type === 'StopRequested')).toEqual([{ type: 'StopRequested', actor: 'slurm' }]);
      }, 300_000);

    it('cancel while PREPARING is scancel: the task is CANCELLED, never trained, and its GPUs are free', async () => {
      const t = await submit({ steps: 5, stepMs: 100, startupMs: 600_000 }, 4);
      await eventually(
        async () => {
          const task = await c.tasks.get.query({ id: t.id });
          return task.status === 'PREPARING' && task.trainer !== null;
        },
        'the task PREPARING with its trainer spawned',
        120_000,
        200,
      );
      await c.tasks.cancel.mutate({ id: t.id });
      await until(c, t.id, ['CANCELLED']);
      await eventually(async () => /CANCELLED/.test(squeue(t.jobId)?.state ?? 'CANCELLED'), 'the job cancelled in Slurm');
      const types = await eventTypes(c, t.id);
      expect(types.map((e) => e.type)).not.toContain('TrainingStarted');
      expect(types.filter((e) => e.type === 'StopRequested')).toEqual([{ type: 'StopRequested', actor: 'e2e' }]);
      expect(types.at(-1)!.type).toBe('TaskCancelled');
      // Slot accounting: all four GPUs are free again, so a 4-GPU task runs.
      const next = await submit({ steps: 3, stepMs: 100 }, 4);
      await until(c, next.id, ['COMPLETED']);
    });

    it('the service SIGKILLed while jobs run and wait is reconciled on restart: nothing lost, nothing twice', async () => {
      const a = await submit({ steps: 60, stepMs: 200 }, 2);
      const b = await submit({ steps: 60, stepMs: 200 }, 2);
      const w = await submit({ steps: 5, stepMs: 100 }, 2);
      // (On a machine loaded enough, a job may finish before the kill: then the restart settles it from its run folder.)
      await until(c, a.id, ['TRAINING', 'COMPLETED']);
      await until(c, b.id, ['TRAINING', 'COMPLETED']);
      server = await server.restart();
      c = server.client;
      for (const t of [a, b, w]) await until(c, t.id, ['COMPLETED'], 150_000);
      for (const t of [a, b, w]) {
        const types = (await eventTypes(c, t.id)).map((e) => e.type);
        expect(types).toEqual([
          'TaskSubmitted',
          'TaskQueued',
          'TaskHandedToSlurm',
          'TaskAssigned',
          'TrainerSpawned',
          'TrainingStarted',
          'ArtifactRecorded',
          'TaskCompleted',
        ]);
        // Every output line once, in order.
        const { lines } = await c.tasks.logs.query({ id: t.id, afterSeq: 0, limit: 1000, includeProtocol: true });
        const seqs = lines.map((l) => l.seq);
        expect(seqs).toEqual([...new Set(seqs)].sort((x, y) => x - y));
      }
      expect(server.output.join('\n')).toMatch(/slurm: reconciling/);
    }, 420_000);

    it('slurmctld stopped mid-run and started again: the task is kept, health says Slurm is unreachable, then it completes', async () => {
      const t = await submit({ steps: 150, stepMs: 200 }, 1);
      await until(c, t.id, ['TRAINING']);
      try {
        const pid = Number(readFileSync('/run/slurm/slurmctld.pid', 'utf8'));
        process.kill(pid, 'SIGTERM');
        await eventually(async () => !isAlive(pid), 'slurmctld to stop');
        const h = await eventually(async () => {
          const health = await c.system.health.query();
          return health.executor?.reachable === false ? health : undefined;
        }, 'system.health to say Slurm does not answer');
        expect(h.executor).toMatchObject({ executor: 'slurm', reachable: false });
        await eventually(async () => /Slurm does not answer/.test(server.output.join('\n')), 'an unanswered poll in the service log');
        // No answer is not a dead job: the task is still running.
        expect(await statusOf(c, t.id)).toBe('TRAINING');
      } finally {
        execFileSync('bash', [SLURM_UP], { stdio: 'pipe' });
      }
      await eventually(async () => (await c.system.health.query()).executor?.reachable === true, 'system.health to say Slurm answers');
      await until(c, t.id, ['COMPLETED']);
      expect((await eventTypes(c, t.id)).map((e) => e.type)).toEqual([
        'TaskSubmitted',
        'TaskQueued',
        'TaskHandedToSlurm',
        'TaskAssigned',
        'TrainerSpawned',
        'TrainingStarted',
        'ArtifactRecorded',
        'TaskCompleted',
      ]);
    }, 300_000);
  });
}
