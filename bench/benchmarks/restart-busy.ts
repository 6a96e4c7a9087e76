// restart with work in flight: the restart benchmark's histories hold only finished tasks, so a
// flat start-up is true of them by construction. Here the log holds 10,000 queued tasks and 64
// running ones whose trainers are alive (started by the service itself, left running by its
// graceful stop, as after an upgrade), and one device is free. Measured from spawning the
// service: its first answered request, and the moment the queue's head leaves QUEUED (the first
// queued task started), each against the same backend's empty-log start-up in this process.
// Each start after the first has one more device, so one is always free for the next head.
// Afterwards `npm run rebuild` checks the generated queue folds to exactly its read models.
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { openDatabase } from '@trainyard/store';
import {
  dropSchema,
  freshSchemaName,
  onCleanup,
  printTable,
  ratio,
  removeDir,
  REPO_ROOT,
  sleep,
  summarize,
  target,
  type BenchContext,
  type Benchmark,
  type BenchOutput,
  type Target,
} from '../lib/common';
import { generateQueued } from '../lib/history';
import { baseEnv, runRebuild, type RebuildResult } from '../lib/rebuild';
import { startServer, type Backend, type BenchServer } from '../lib/server';
import { createInput } from './submit';

interface Row {
  system: 'trainyard';
  backend: 'postgres' | 'pglite';
  scenario: 'empty' | 'busy';
  events: number;
  running: number;
  queued: number;
  starts: number;
  /** Median over the starts: spawn to the first answered system.health. */
  firstResponseMs: number;
  firstResponseAllMs: number[];
  /** Median over the starts: spawn to the queue's head leaving QUEUED (busy only). */
  firstQueuedStartMs: number | null;
  firstQueuedStartAllMs: number[];
  rssMiB: number | null;
  /** Running tasks still TRAINING after the last start (busy only): none lost or failed. */
  stillTraining: number | null;
  rebuild: RebuildResult | null;
}

const range = (n: number) => Array.from({ length: n }, (_, i) => i);

/** Devices 0..n-1 (unprobed, exclusive tasks), and the trainer that trains forever for nothing. */
const busyEnv = (devices: number) => ({
  TRAINYARD_GPU_SLOTS: JSON.stringify(range(devices)),
  TRAINYARD_TRAINER: JSON.stringify(['sh', join(REPO_ROOT, 'bench/idle-trainer.sh')]),
});

async function until<T>(what: string, timeoutMs: number, probe: () => Promise<T | null>): Promise<T> {
  for (const end = Date.now() + timeoutMs; ;) {
    const v = await probe();
    if (v !== null) return v;
    if (Date.now() > end) throw new Error(`restart-busy: timed out waiting for ${what}`);
    await sleep(5);
  }
}

async function statuses(server: BenchServer, ids: readonly string[]): Promise<string[]> {
  return Promise.all(ids.map(async (id) => (await server.client.tasks.get.query({ id })).status));
}

export const restartBusy: Benchmark = {
  name: 'restart-busy',
  description: 'start-up and first queued start with 10,000 queued and 64 running tasks (trainers alive) vs an empty log',
  async run(ctx: BenchContext): Promise<BenchOutput> {
    const running = ctx.quick ? 8 : 64;
    const queued = ctx.quick ? 500 : 10_000;
    const starts = ctx.n ?? (ctx.quick ? 2 : 3);
    const rows: Row[] = [];
    const backends: Row['backend'][] = ctx.skipPglite ? ['postgres'] : ['postgres', 'pglite'];
    for (const kind of backends) {
      const dataDir = mkdtempSync(join(tmpdir(), 'trainyard-bench-restart-busy-'));
      const emptyDir = mkdtempSync(join(tmpdir(), 'trainyard-bench-restart-empty-'));
      const schema = freshSchemaName('rbusy');
      const emptySchema = freshSchemaName('rempty');
      const drop = onCleanup(async () => {
        if (kind === 'postgres') {
          await dropSchema(ctx.url, schema);
          await dropSchema(ctx.url, emptySchema);
        }
        removeDir(dataDir);
        removeDir(emptyDir);
      });
      const backendOf = (s: string): Backend => (kind === 'postgres' ? { kind, url: ctx.url, schema: s } : { kind });
      // The service last started on the busy history: disposing of it kills the trainers left running.
      let server: BenchServer | undefined;
      try {
        // The baseline: the same service on an empty log, with as many devices.
        const empty: number[] = [];
        let emptyRss: number | null = null;
        for (let i = 0; i < starts; i++) {
          const server = await startServer({
            backend: backendOf(emptySchema),
            dataDir: emptyDir,
            ownData: false,
            env: busyEnv(running + 1),
          });
          empty.push(Math.round(server.startup.firstResponseMs));
          emptyRss = server.memory()?.rssMiB ?? null;
          await server.stop();
          await server.dispose();
        }
        rows.push({
          system: 'trainyard',
          backend: kind,
          scenario: 'empty',
          events: 0,
          running: 0,
          queued: 0,
          starts,
          firstResponseMs: summarize(empty).p50,
          firstResponseAllMs: empty,
          firstQueuedStartMs: null,
          firstQueuedStartAllMs: [],
          rssMiB: emptyRss,
          stillTraining: null,
          rebuild: null,
        });

        // The running tasks, started by the service: their trainers outlive its graceful stop.
        server = await startServer({ backend: backendOf(schema), dataDir, ownData: false, env: busyEnv(running) });
        const created = await server.client.tasks.createMany.mutate({ tasks: range(running).map((i) => createInput(i)) });
        const runningIds = created.tasks.map((t) => t.id);
        const first = server;
        await until(`${running} tasks TRAINING`, 300_000, async () =>
          (await statuses(first, runningIds)).every((s) => s === 'TRAINING') ? true : null,
        );
        ctx.log(`${kind}: ${running} tasks training`);
        await server.stop();
        // The queue, written straight into the log behind them.
        const db = await openDatabase(kind === 'postgres' ? { url: ctx.url, schema } : { dataDir: join(dataDir, 'pglite') });
        const gen = await generateQueued(db.db, queued).finally(() => db.close());
        ctx.log(`${kind}: generated ${gen.tasks} queued tasks in ${gen.ms} ms`);

        const firsts: number[] = [];
        const headStarts: number[] = [];
        let rss: number | null = null;
        for (let i = 0; i < starts; i++) {
          // Stopped, not disposed: its trainers run on, for the next start to re-attach.
          server = await startServer({ backend: backendOf(schema), dataDir, ownData: false, env: busyEnv(running + 1 + i) });
          firsts.push(Math.round(server.startup.firstResponseMs));
          const head = gen.firstId(i);
          const s = server;
          await until(`the queue's head ${head} started`, 120_000, async () =>
            (await s.client.tasks.get.query({ id: head })).status !== 'QUEUED' ? true : null,
          );
          headStarts.push(Math.round(performance.now() - server.startup.spawnedAt));
          rss = server.memory()?.rssMiB ?? null;
          ctx.log(`${kind} start ${i + 1}: first response ${firsts[i]} ms, queue head started at ${headStarts[i]} ms`);
          if (i < starts - 1) await server.stop();
        }
        const after = await statuses(server, runningIds);
        await server.stop();
        const env = { ...baseEnv(), TRAINYARD_DATA_DIR: dataDir };
        if (kind === 'postgres') Object.assign(env, { DATABASE_URL: ctx.url, TRAINYARD_DB_SCHEMA: schema });
        const rebuild = await runRebuild(env);
        if (!rebuild.ok) throw new Error(`rebuild check failed (${kind}): ${JSON.stringify(rebuild)}`);
        rows.push({
          system: 'trainyard',
          backend: kind,
          scenario: 'busy',
          events: rebuild.events ?? 0,
          running,
          queued,
          starts,
          firstResponseMs: summarize(firsts).p50,
          firstResponseAllMs: firsts,
          firstQueuedStartMs: summarize(headStarts).p50,
          firstQueuedStartAllMs: headStarts,
          rssMiB: rss,
          stillTraining: after.filter((s) => s === 'TRAINING').length,
          rebuild,
        });
      } finally {
        await server?.dispose();
        await drop();
      }
    }

    printTable(
      `restart-busy: spawn to first answered request and to the queue's head started (median of ${starts})`,
      [
        'backend',
        'scenario',
        'events',
        'running',
        'queued',
        'first resp ms',
        'head started ms',
        'RSS MiB',
        'still training',
        'rebuild diffs',
      ],
      rows.map((r) => [
        r.backend,
        r.scenario,
        r.events,
        r.running,
        r.queued,
        r.firstResponseMs,
        r.firstQueuedStartMs,
        r.rssMiB,
        r.stillTraining,
        r.rebuild?.differences,
      ]),
    );
    const ratios: Record<string, number | null> = {};
    const targets: Target[] = [];
    for (const kind of backends) {
      const empty = rows.find((r) => r.backend === kind && r.scenario === 'empty');
      const busy = rows.find((r) => r.backend === kind && r.scenario === 'busy');
      if (!empty || !busy) continue;
      const startup = `${kind} start-up busy/empty`;
      const head = `${kind} first queued start busy / empty start-up`;
      ratios[startup] = ratio(busy.firstResponseMs, empty.firstResponseMs);
      ratios[head] = ratio(busy.firstQueuedStartMs, empty.firstResponseMs);
      targets.push(target(`start-up flat: ${startup}`, '≤ 1.5', ratios[startup]!, (v) => v <= 1.5));
      targets.push(target(`first start flat: ${head}`, '≤ 1.5', ratios[head]!, (v) => v <= 1.5));
      targets.push(
        target(
          `${kind}: running tasks still training after the restarts`,
          `= ${busy.running}`,
          busy.stillTraining,
          (v) => v === busy.running,
        ),
      );
    }
    printTable('restart-busy ratios', ['ratio', 'value'], Object.entries(ratios));
    return {
      params: { running, queued, starts },
      rows: rows as unknown as Record<string, unknown>[],
      ratios,
      targets,
      notes: [
        `Busy: ${running} tasks created by tasks.createMany on ${running} devices (TRAINYARD_GPU_SLOTS, unprobed), each trainer bench/idle-trainer.sh (the training phase line, then sleep), all TRAINING; the service stopped with SIGTERM (trainers keep running); then ${queued} queued tasks written into the log behind them by INSERT … SELECT generate_series (lib/history.ts generateQueued, the projection rows the fold gives).`,
        `Each start i (0-based) has ${running} + 1 + i devices, so one device is free for the queue's head; the running tasks are re-attached at every start.`,
        'Start-up: spawn (node --import tsx services/server/src/main.ts, as npm start) to the first answered system.health, polled every 5 ms. First queued start: spawn to tasks.get of the queue head reporting a status other than QUEUED, polled every 5 ms after the first response.',
        'Baseline: the same service, devices and environment on an empty log, started the same number of times in this process.',
        'After the starts, `npm run rebuild -- --json` (compareWithLog) finds no difference.',
      ],
    };
  },
};
