// lifecycle: N tasks through the whole lifecycle (submit, queue, assign, spawn through the
// shepherd, training, exit, completed, next one) on one GPU slot with an instant simulated
// trainer; beside it pg-boss with one worker (batch size 1) doing the same serial work.
import type { TaskView, TrainyardClient } from '@trainyard/client';
import {
  drive,
  epochNow,
  freshSchemaName,
  printTable,
  ratio,
  round,
  sleep,
  summarize,
  type BenchContext,
  type Benchmark,
  type BenchOutput,
  type Summary,
} from '../lib/common';
import { PGBOSS_MIN_POLLING_SECONDS, startBoss } from '../lib/pgboss';
import { startServer } from '../lib/server';
import { simulatedTrainerRunner } from '../lib/trainer';
import { createInput } from './submit';

interface Row {
  system: string;
  backend: 'postgres';
  tasks: number;
  seconds: number;
  perSecond: number;
  /** Per task: assignment to end (trainyard) or handler time (pg-boss). */
  runMs: Summary | null;
  /** From one task's end to the next one's start. */
  handoverMs: Summary | null;
}

/** Wait until nothing is queued or running, then return the tasks as they ended. */
export async function waitUntilIdle(client: TrainyardClient, ids: string[], timeoutMs: number): Promise<TaskView[]> {
  const until = Date.now() + timeoutMs;
  for (;;) {
    const q = await client.queue.get.query();
    if (q.queuedCount === 0 && q.devices.every((d) => d.holders.length === 0)) break;
    if (Date.now() > until) throw new Error(`still busy after ${timeoutMs} ms: ${q.queuedCount} queued`);
    await sleep(100);
  }
  const out: TaskView[] = [];
  for (const id of ids) out.push(await client.tasks.get.query({ id }));
  return out;
}

const ms = (iso: string | null) => (iso ? Date.parse(iso) : NaN);

export const lifecycle: Benchmark = {
  name: 'lifecycle',
  description: 'tasks/s through the whole lifecycle on one slot (instant trainer) vs pg-boss one worker',
  async run(ctx: BenchContext): Promise<BenchOutput> {
    const n = ctx.n ?? (ctx.quick ? 6 : 200);
    const pollJobs = ctx.quick ? 3 : 20;
    const rows: Row[] = [];
    const notes: string[] = [];
    const stages: Record<string, Summary> = {};

    // --- trainyard
    const server = await startServer({ backend: { kind: 'postgres', url: ctx.url, schema: freshSchemaName('lifecycle') } });
    try {
      const { client } = server;
      // Warm-up: one task end to end (first spawn, first queries on each path).
      const warm = await client.tasks.create.mutate(createInput(0));
      await waitUntilIdle(client, [warm.id], 60_000);
      const ids: string[] = [];
      const t0 = epochNow();
      await drive(n, 4, async (i) => {
        ids[i] = (await client.tasks.create.mutate(createInput(i + 1))).id;
      });
      const tasks = await waitUntilIdle(client, ids, 60_000 + n * 5_000);
      const wallMs = epochNow() - t0;
      const bad = tasks.filter((t) => t.status !== 'COMPLETED');
      if (bad.length)
        throw new Error(
          `${bad.length} task(s) did not complete: ${bad
            .slice(0, 3)
            .map((t) => `${t.id} ${t.status} ${t.error?.message ?? ''}`)
            .join('; ')}`,
        );
      const byStart = [...tasks].sort((a, b) => ms(a.startedAt) - ms(b.startedAt));
      const span = Math.max(...tasks.map((t) => ms(t.finishedAt))) - Math.min(...tasks.map((t) => ms(t.createdAt)));
      rows.push({
        system: 'trainyard',
        backend: 'postgres',
        tasks: n,
        seconds: round(span / 1000, 3),
        perSecond: round((n * 1000) / span, 2),
        runMs: summarize(tasks.map((t) => ms(t.finishedAt) - ms(t.startedAt))),
        handoverMs: summarize(byStart.slice(1).map((t, k) => ms(t.startedAt) - ms(byStart[k]!.finishedAt))),
      });
      ctx.log(`trainyard: ${n} tasks in ${round(span / 1000, 2)} s (wall ${round(wallMs / 1000, 2)} s)`);
      // Where a task's run goes: the time between its consecutive events (commit-time ms).
      const steps: Record<string, number[]> = {};
      for (const t of tasks) {
        const { events } = await client.events.list.query({ taskId: t.id, limit: 100 });
        for (let k = 1; k < events.length; k++) {
          const a = events[k - 1]!;
          const b = events[k]!;
          if (a.type === 'TaskSubmitted') continue;
          (steps[`${a.type} → ${b.type}`] ??= []).push(Date.parse(b.recordedAt) - Date.parse(a.recordedAt));
        }
      }
      for (const [k, v] of Object.entries(steps)) stages[k] = summarize(v);
      printTable(
        "trainyard: time between a task's consecutive events (ms, commit times)",
        ['step', 'n', 'p50', 'p90', 'p99'],
        Object.entries(stages).map(([k, v]) => [k, v.n, v.p50, v.p90, v.p99]),
      );
      notes.push(
        "trainyard: first submission to last TaskCompleted, by the events' commit times; run = TaskAssigned to TaskCompleted; handover = TaskCompleted of one task to TaskAssigned of the next (the same transaction, so ~0).",
      );
    } finally {
      await server.dispose();
    }

    // --- pg-boss, one worker, batch size 1
    const boss = await startBoss(ctx.url, 'lifecycle');
    const trainer = simulatedTrainerRunner();
    try {
      const b = boss.boss;
      const serial = async (system: string, jobs: number, work: (q: string) => Promise<number[][]>) => {
        const q = `bench-${rows.length}`;
        await b.createQueue(q);
        const t0 = epochNow();
        for (let i = 0; i < jobs; i++) await b.send(q, createInput(i));
        const spans = await work(q);
        const last = spans[spans.length - 1]![1]!;
        rows.push({
          system,
          backend: 'postgres',
          tasks: jobs,
          seconds: round((last - t0) / 1000, 3),
          perSecond: round((jobs * 1000) / (last - t0), 2),
          runMs: summarize(spans.map(([s, e]) => e! - s!)),
          handoverMs: summarize(spans.slice(1).map(([s], k) => s! - spans[k]![1]!)),
        });
        ctx.log(`${system}: ${jobs} jobs in ${round((last - t0) / 1000, 2)} s`);
      };
      // work(): pg-boss's worker loop, at its fastest allowed polling interval.
      await serial(`pg-boss work() poll ${PGBOSS_MIN_POLLING_SECONDS} s, no-op job`, pollJobs, async (q) => {
        const spans = await new Promise<number[][]>((resolve) => {
          const out: number[][] = [];
          void b.work(q, { batchSize: 1, pollingIntervalSeconds: PGBOSS_MIN_POLLING_SECONDS }, async () => {
            const s = epochNow();
            out.push([s, epochNow()]);
            if (out.length === pollJobs) resolve(out);
          });
        });
        await b.offWork(q);
        return spans;
      });
      // fetch()/complete() in a loop: no polling wait at all; the job runs the same trainer.
      const loop = (run: () => Promise<unknown>) => async (q: string) => {
        const spans: number[][] = [];
        while (spans.length < n) {
          const [job] = await b.fetch(q);
          if (!job) continue;
          const s = epochNow();
          await run();
          await b.complete(q, job.id);
          spans.push([s, epochNow()]);
        }
        return spans;
      };
      await serial(
        'pg-boss fetch/complete loop, same trainer',
        n,
        loop(() => trainer.run()),
      );
      await serial(
        'pg-boss fetch/complete loop, no-op job',
        n,
        loop(async () => undefined),
      );
    } finally {
      await trainer.dispose();
      await boss.dispose();
    }

    const rate = (prefix: string) => rows.find((r) => r.system.startsWith(prefix))?.perSecond ?? null;
    const ours = rate('trainyard');
    const ratios = {
      'trainyard/pg-boss work() min poll': ratio(ours, rate('pg-boss work()')),
      'trainyard/pg-boss fetch loop + same trainer': ratio(ours, rate('pg-boss fetch/complete loop, same')),
      'trainyard/pg-boss fetch loop no-op': ratio(ours, rate('pg-boss fetch/complete loop, no-op')),
    };
    printTable(
      'lifecycle: one GPU slot / one worker, serial',
      ['system', 'tasks', 'seconds', 'tasks/s', 'run p50 ms', 'handover p50 ms', 'handover p99 ms'],
      rows.map((r) => [r.system, r.tasks, r.seconds, r.perSecond, r.runMs?.p50, r.handoverMs?.p50, r.handoverMs?.p99]),
    );
    printTable('lifecycle ratios', ['ratio', 'value'], Object.entries(ratios));
    notes.push(
      `pg-boss work(): its worker waits out the polling interval after every fetch (batch size 1 → one job per ${PGBOSS_MIN_POLLING_SECONDS} s at best); ${pollJobs} jobs only, for that reason.`,
      'pg-boss fetch/complete loop: the fastest serial pg-boss can go (no polling wait); "same trainer" spawns the same instant simulated trainer per job (without a shepherd), the fairest comparison of orchestration overhead.',
    );
    return {
      params: { tasks: n, pgbossWorkJobs: pollJobs, simulate: createInput(0).config.simulate },
      rows: rows as unknown as Record<string, unknown>[],
      ratios,
      targets: [],
      notes,
      details: { trainyardStepsMs: stages },
    };
  },
};
