// idle gap: how long the GPU sits idle between one trainer's exit and the next queued
// trainer's start, measured by the trainers themselves (bench/instant-trainer.mjs records its
// process start and its end with sub-ms epoch times), with the stages in between from the run
// folders' file times and the event log; beside it pg-boss's pickup latency when the queue is
// not empty (job k's end to the worker receiving job k+1).
import { existsSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import {
  drive,
  epochNow,
  freshSchemaName,
  printTable,
  sleep,
  summarize,
  target,
  type BenchContext,
  type Benchmark,
  type BenchOutput,
  type Summary,
} from '../lib/common';
import { PGBOSS_DEFAULT_POLLING_SECONDS, PGBOSS_MIN_POLLING_SECONDS, startBoss } from '../lib/pgboss';
import { startServer } from '../lib/server';
import { INSTANT_TRAINER } from '../lib/trainer';
import { waitUntilIdle } from './lifecycle';
import { createInput } from './submit';

/** How long the bench trainer lingers after its protocol lines (so only the exit is left). */
const DWELL_MS = 100;

interface Timing {
  pid: number;
  timeOrigin: number;
  firstStatement: number;
  endedAt: number;
}

interface Row {
  system: string;
  backend: 'postgres';
  /** What the gap ends at. */
  measuredTo: string;
  samples: number;
  gapMs: Summary;
}

const mtime = (file: string) => (existsSync(file) ? statSync(file).mtimeMs : NaN);

export const idleGap: Benchmark = {
  name: 'idle-gap',
  description: "time from a trainer's exit to the next queued trainer's start (p50/p99) vs pg-boss pickup latency",
  async run(ctx: BenchContext): Promise<BenchOutput> {
    const n = ctx.n ?? (ctx.quick ? 6 : 200);
    const defaultPollJobs = ctx.quick ? 2 : 8;
    const minPollJobs = ctx.quick ? 3 : 30;
    const rows: Row[] = [];
    const stages: Record<string, Summary> = {};
    const notes: string[] = [];

    // --- trainyard
    const server = await startServer({
      backend: { kind: 'postgres', url: ctx.url, schema: freshSchemaName('idlegap') },
      env: { TRAINYARD_TRAINER: JSON.stringify(['node', INSTANT_TRAINER]) },
    });
    try {
      const { client } = server;
      const warm = await client.tasks.create.mutate({ ...createInput(0), config: { epochs: 1, simulate: { stepMs: 0 } } });
      await waitUntilIdle(client, [warm.id], 60_000);
      // The first task holds the slot (its trainer waits on the hold file) until all are queued.
      const hold = join(server.dataDir, 'bench-hold');
      writeFileSync(hold, '');
      const ids: string[] = [];
      await drive(n, 4, async (i) => {
        ids[i] = (await client.tasks.create.mutate({ ...createInput(i + 1), config: { epochs: 1, simulate: { stepMs: DWELL_MS } } })).id;
      });
      await sleep(200);
      rmSync(hold);
      const tasks = (await waitUntilIdle(client, ids, 60_000 + n * 5_000)).sort(
        (a, b) => Date.parse(a.startedAt!) - Date.parse(b.startedAt!),
      );
      const bad = tasks.filter((t) => t.status !== 'COMPLETED');
      if (bad.length)
        throw new Error(
          `${bad.length} task(s) did not complete: ${bad
            .slice(0, 3)
            .map((t) => `${t.id} ${t.status} ${t.error?.message ?? ''}`)
            .join('; ')}`,
        );
      const runs = tasks.map((t) => {
        const dir = t.trainer!.runDir;
        return {
          task: t,
          timing: JSON.parse(readFileSync(join(dir, 'bench-timing.json'), 'utf8')) as Timing,
          launch: mtime(join(dir, 'launch.json')),
          spawned: mtime(join(dir, 'trainer.json')),
          exit: mtime(join(dir, 'exit.json')),
        };
      });
      const stageSamples: Record<string, number[]> = {
        'shepherd wrote exit.json': [],
        'TaskCompleted + next TaskAssigned (tx start)': [],
        'next launch.json written': [],
        'next trainer spawned (trainer.json)': [],
        'next trainer process start': [],
        'next trainer first statement': [],
      };
      let skipped = 0;
      for (let k = 0; k + 1 < runs.length; k++) {
        const prev = runs[k]!;
        const next = runs[k + 1]!;
        // Only gaps where the next task was already waiting when this one ended.
        if (Date.parse(next.task.queuedAt ?? next.task.createdAt) >= prev.timing.endedAt) {
          skipped++;
          continue;
        }
        const end = prev.timing.endedAt;
        stageSamples['shepherd wrote exit.json']!.push(prev.exit - end);
        stageSamples['TaskCompleted + next TaskAssigned (tx start)']!.push(Date.parse(prev.task.finishedAt!) - end);
        stageSamples['next launch.json written']!.push(next.launch - end);
        stageSamples['next trainer spawned (trainer.json)']!.push(next.spawned - end);
        stageSamples['next trainer process start']!.push(next.timing.timeOrigin - end);
        stageSamples['next trainer first statement']!.push(next.timing.firstStatement - end);
      }
      for (const [k, v] of Object.entries(stageSamples)) stages[k] = summarize(v);
      const gap = stages['next trainer process start']!;
      rows.push({ system: 'trainyard', backend: 'postgres', measuredTo: 'next trainer process start', samples: gap.n, gapMs: gap });
      rows.push({
        system: 'trainyard',
        backend: 'postgres',
        measuredTo: 'next trainer first statement',
        samples: gap.n,
        gapMs: stages['next trainer first statement']!,
      });
      if (skipped) notes.push(`${skipped} gap(s) left out: the next task was not yet queued when the previous trainer ended.`);
      printTable(
        `trainyard idle gap, cumulative from the trainer's end (ms, ${gap.n} gaps)`,
        ['stage reached', 'p50', 'p90', 'p99', 'max'],
        Object.entries(stages).map(([k, s]) => [k, s.p50, s.p90, s.p99, s.max]),
      );
    } finally {
      await server.dispose();
    }

    // --- pg-boss: pickup latency with a non-empty queue
    const boss = await startBoss(ctx.url, 'idlegap');
    try {
      const b = boss.boss;
      const viaWork = async (seconds: number, jobs: number) => {
        const q = `gap-${rows.length}`;
        await b.createQueue(q);
        for (let i = 0; i < jobs; i++) await b.send(q, createInput(i));
        const spans = await new Promise<number[][]>((resolve) => {
          const out: number[][] = [];
          void b.work(q, { batchSize: 1, pollingIntervalSeconds: seconds }, async () => {
            out.push([epochNow(), epochNow()]);
            if (out.length === jobs) resolve(out);
          });
        });
        await b.offWork(q);
        const gaps = spans.slice(1).map(([s], k) => s! - spans[k]![1]!);
        rows.push({
          system: `pg-boss work() poll ${seconds} s`,
          backend: 'postgres',
          measuredTo: 'next job handler start',
          samples: gaps.length,
          gapMs: summarize(gaps),
        });
        ctx.log(`pg-boss poll ${seconds} s: p50 ${summarize(gaps).p50} ms`);
      };
      await viaWork(PGBOSS_DEFAULT_POLLING_SECONDS, defaultPollJobs);
      await viaWork(PGBOSS_MIN_POLLING_SECONDS, minPollJobs);
      // The floor: complete(), then fetch() at once.
      const q = 'gap-loop';
      await b.createQueue(q);
      for (let i = 0; i < n; i++) await b.send(q, createInput(i));
      const gaps: number[] = [];
      let ended = NaN;
      for (let k = 0; k < n; k++) {
        const [job] = await b.fetch(q);
        if (!job) break;
        if (!Number.isNaN(ended)) gaps.push(epochNow() - ended);
        await b.complete(q, job.id);
        ended = epochNow();
      }
      rows.push({
        system: 'pg-boss fetch/complete loop',
        backend: 'postgres',
        measuredTo: 'next fetch() returned',
        samples: gaps.length,
        gapMs: summarize(gaps),
      });
    } finally {
      await boss.dispose();
    }

    printTable(
      'idle gap: from the end of one job to the start of the next, queue not empty (ms)',
      ['system', 'measured to', 'samples', 'p50', 'p90', 'p99'],
      rows.map((r) => [r.system, r.measuredTo, r.samples, r.gapMs.p50, r.gapMs.p90, r.gapMs.p99]),
    );
    const ours = rows[0]!.gapMs;
    notes.push(
      "trainyard: the bench trainer's own clock (performance.timeOrigin + now(), epoch ms) at its end and at the next trainer's process start; file stages use the run folder's mtimes (kernel file-time granularity, a few ms); TaskCompleted uses the database's now() (transaction start, ms).",
      `pg-boss v10 workers sleep out the polling interval after each fetch (default ${PGBOSS_DEFAULT_POLLING_SECONDS} s, minimum ${PGBOSS_MIN_POLLING_SECONDS} s) unless notified; the fetch/complete loop is its floor with no polling.`,
    );
    return {
      params: {
        tasks: n,
        dwellMs: DWELL_MS,
        pgbossDefaultPollJobs: defaultPollJobs,
        pgbossMinPollJobs: minPollJobs,
        trainer: 'bench/instant-trainer.mjs',
      },
      rows: rows as unknown as Record<string, unknown>[],
      ratios: {},
      targets: [target('idle gap p50 (to next trainer process start)', '≤ 10 ms', ours.p50, (v) => v <= 10)],
      notes,
      details: { stagesFromTrainerEndMs: stages },
    };
  },
};
