// exit-transaction: the store's transaction between a trainer's exit and the next task's start
// (its last progress report, the exit, the scheduling pass and the next TaskAssigned, one
// commit), in the bench process on Postgres with no service, trainers or HTTP around it: the
// part of warm-start's "scheduler's part" that is the database's and the store's, without the
// noise of trainers starting on the same cores. Against, in the same process and on the same
// pool, a transaction of one SELECT: the floor any transaction pays.
import { configureDevices, openDatabase, TaskStore } from '@trainyard/store';
import { uniformInventory } from '@trainyard/domain';
import {
  dropSchema,
  freshSchemaName,
  printTable,
  ratio,
  round,
  summarize,
  type BenchContext,
  type Benchmark,
  type BenchOutput,
  type Summary,
} from '../lib/common';
import { storeSpec } from './submit';

type Row = {
  system: string;
  backend: 'postgres';
  n: number;
  latencyMs: Summary;
};

const meta = { actor: 'bench' };

export const exitTransaction: Benchmark = {
  name: 'exit-transaction',
  description: "the store's transaction from a trainer's exit to the next task's assignment, in-process, against a one-SELECT transaction",
  async run(ctx: BenchContext): Promise<BenchOutput> {
    const n = ctx.n ?? (ctx.quick ? 20 : 300);
    const schema = freshSchemaName('exit_tx');
    const database = await openDatabase({ url: ctx.url, schema });
    try {
      await configureDevices(database.db, uniformInventory(1));
      // As the service runs it by default: priority preemption, 3 at most (the pass also reads the top queued priority).
      const store = new TaskStore(database, { runnerId: 'bench', preemption: { maxPreemptions: 3, fairShare: false } });
      let running = 'x0';
      await store.submit(running, storeSpec(0), meta);
      const exits: number[] = [];
      const floor: number[] = [];
      // Warm-up included in the loop's first tenth, left out of the figures: every pool
      // connection prepares its statements on first use.
      const warmup = Math.ceil(n / 10);
      for (let i = 1; i <= n + warmup; i++) {
        await store.submit(`x${i}`, storeSpec(i), meta);
        await store.execute(running, { type: 'recordSpawn', pid: 1, startTime: '1', runDir: '/tmp' }, meta);
        const training = await store.execute(running, { type: 'startTraining' }, meta);
        const t0 = performance.now();
        const r = await store.execute(
          running,
          { type: 'recordExit', exitCode: 0, signal: null },
          meta,
          // The trainer's last progress line, read with its exit, goes in the same transaction.
          // And the runner passes the record its last command returned, as the service's does.
          {
            preceding: [{ command: { type: 'recordProgress', step: 1, totalSteps: 1, epoch: 1, loss: 0.5 }, actor: 'trainer' }],
            known: training.task,
          },
        );
        const exitMs = performance.now() - t0;
        if (r.started.length !== 1) throw new Error(`the exit started ${r.started.length} tasks, not 1`);
        running = r.started[0]!.id;
        const t1 = performance.now();
        await database.transaction((tx) => tx.execute('SELECT 1'));
        const floorMs = performance.now() - t1;
        if (i > warmup) {
          exits.push(exitMs);
          floor.push(floorMs);
        }
      }
      const rows: Row[] = [
        { system: 'exit + next assignment, one transaction', backend: 'postgres', n, latencyMs: summarize(exits) },
        { system: 'a transaction of one SELECT', backend: 'postgres', n, latencyMs: summarize(floor) },
      ];
      printTable(
        `exit-transaction: ${n} exits after ${warmup} more, each followed by a one-SELECT transaction (ms)`,
        ['system', 'backend', 'n', 'p50', 'p90', 'min'],
        rows.map((r) => [r.system, r.backend, r.n, r.latencyMs.p50, r.latencyMs.p90, r.latencyMs.min]),
      );
      return {
        params: { n, warmup, devices: 1 },
        rows,
        ratios: { 'exit transaction / one-SELECT transaction (p50)': ratio(rows[0]!.latencyMs.p50, rows[1]!.latencyMs.p50) },
        targets: [],
        notes: [
          'Each exit: the running task has a recordProgress (actor trainer) and its recordExit in one store.execute, given the task as its last command returned it (known, as the runner passes it), which frees the one device; the scheduling pass assigns the next queued task (one is queued at each exit, submitted before it). Timed around store.execute in the bench process.',
          `p50 in ms, rounded: exit ${round(rows[0]!.latencyMs.p50, 2)}, one-SELECT transaction ${round(rows[1]!.latencyMs.p50, 2)}.`,
        ],
      };
    } finally {
      await database.close();
      await dropSchema(ctx.url, schema);
    }
  },
};
