// sweep: a hyperparameter sweep submitted in one call. tasks.createMany of N tasks (one HTTP
// request, one transaction) beside pg-boss `insert` of N jobs (its batch call, one statement) on
// the same Postgres in the same run, repetitions interleaved; also the same N tasks one
// tasks.create at a time (16 concurrent clients) for scale. The service's one GPU slot is held by a
// long task, so every task queues (the queue grows through the run, as under a burst).
import { connect, type TrainyardClient } from '@trainyard/client';
import { uniformInventory, type TaskRecord } from '@trainyard/domain';
import { appendNewStreams, configureDevices, openDatabase, projectNewTasks, TaskStore } from '@trainyard/store';
import {
  drive,
  dropSchema,
  freshSchemaName,
  onCleanup,
  printTable,
  processCpuMs,
  ratio,
  round,
  target,
  type BenchContext,
  type Benchmark,
  type BenchOutput,
  type Target,
} from '../lib/common';
import { startBoss } from '../lib/pgboss';
import { startServer, type BenchServer } from '../lib/server';
import { blockedServer, createInput, newTaskId, storeSpec } from './submit';

interface Row {
  system: string;
  backend: 'postgres' | 'pglite';
  /** Items per batch (tasks or jobs). */
  n: number;
  reps: number;
  /** Wall time of each repetition (ms). */
  msEach: number[];
  medianMs: number;
  perItemUs: number;
  itemsPerSecond: number;
  /** The service process's CPU (user + system) per item, over all repetitions. */
  serverCpuUsPerItem: number | null;
}

function median(xs: readonly number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = Math.floor(s.length / 2);
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

function row(system: string, backend: Row['backend'], n: number, msEach: number[], cpuMs: number | null): Row {
  const med = median(msEach);
  return {
    system,
    backend,
    n,
    reps: msEach.length,
    msEach: msEach.map((x) => round(x, 1)),
    medianMs: round(med, 1),
    perItemUs: round((med * 1000) / n, 1),
    itemsPerSecond: round((n * 1000) / med, 0),
    serverCpuUsPerItem: cpuMs === null ? null : round((cpuMs * 1000) / (n * msEach.length), 1),
  };
}

interface StoreRep {
  storeMs: number;
  storeCpuMs: number;
  aloneMs: number;
  aloneCpuMs: number;
}

/**
 * Where a batch's time goes without the service around it: the store's submitAll in this
 * process, and the two INSERTs it makes with everything else done beforehand. Its own schema,
 * one device held so every task queues.
 */
async function storeBatches(url: string, n: number): Promise<{ rep(r: number): Promise<StoreRep>; close(): Promise<void> }> {
  const storeDb = await openDatabase({ url, schema: freshSchemaName('sweepstore') });
  const close = onCleanup(async () => {
    await storeDb.close();
    await dropSchema(url, storeDb.schema);
  });
  const store = new TaskStore(storeDb, { runnerId: 'bench' });
  await configureDevices(storeDb.db, uniformInventory(1));
  const [blocker] = await store.submitAll([{ taskId: newTaskId(), spec: storeSpec(-1), meta: { actor: 'bench' } }]);
  if (blocker!.task.devices.length === 0) throw new Error("sweep: the store's first task did not take the device");
  const requests = (rep: number) =>
    Array.from({ length: n }, (_, i) => ({ taskId: newTaskId(), spec: storeSpec(rep * n + i), meta: { actor: 'bench' } }));
  // A queued task's events and record as the store made them, the template of the INSERTs alone.
  const [sample] = await store.submitAll(requests(-1));
  const events = sample!.events.map((e) => ({ type: e.type, data: e.data }));
  const insertsAlone = async (rep: number) => {
    const batch = Array.from({ length: n }, (_, i) => ({ id: newTaskId(), spec: storeSpec(rep * n + i) }));
    const streams = batch.map((b) => ({
      streamId: b.id,
      events: events.map((e, k) => (k === 0 ? { ...e, data: { spec: b.spec } } : e)),
      meta: { actor: 'bench' },
    })) as Parameters<typeof appendNewStreams>[1];
    const records: TaskRecord[] = batch.map((b) => ({ ...sample!.task, id: b.id, spec: b.spec }));
    return timedWithCpu(() =>
      // As the store sends them: the rows right behind the append (their positions from the log).
      storeDb.db.transaction(async (tx) => {
        await Promise.all([appendNewStreams(tx, streams), projectNewTasks(tx, records)]);
      }),
    );
  };
  await insertsAlone(-2);
  return {
    async rep(r) {
      const reqs = requests(r);
      const viaStore = await timedWithCpu(() => store.submitAll(reqs));
      const alone = await insertsAlone(r);
      return { storeMs: viaStore.ms, storeCpuMs: viaStore.cpuMs, aloneMs: alone.ms, aloneCpuMs: alone.cpuMs };
    },
    close,
  };
}

/** Wall time and this process's CPU time (user + system) of `fn`, in ms. */
async function timedWithCpu(fn: () => Promise<unknown>): Promise<{ ms: number; cpuMs: number }> {
  const t0 = performance.now();
  const c0 = process.cpuUsage();
  await fn();
  const c = process.cpuUsage(c0);
  return { ms: performance.now() - t0, cpuMs: (c.user + c.system) / 1000 };
}

async function timeIt(fn: () => Promise<unknown>): Promise<number> {
  const t0 = performance.now();
  await fn();
  return performance.now() - t0;
}

export const sweep: Benchmark = {
  name: 'sweep',
  description: 'tasks.createMany of 1,000 tasks vs pg-boss insert of 1,000 jobs (its batch call) on the same Postgres',
  async run(ctx: BenchContext): Promise<BenchOutput> {
    const n = ctx.n ?? (ctx.quick ? 50 : 1000);
    const reps = ctx.quick ? 2 : 7;
    const singleReps = ctx.quick ? 1 : 2;
    const rows: Row[] = [];
    const notes: string[] = [];
    const batch = (rep: number) => Array.from({ length: n }, (_, i) => createInput(rep * n + i));

    const server = await startServer({ backend: { kind: 'postgres', url: ctx.url, schema: freshSchemaName('sweep') } });
    const boss = await startBoss(ctx.url, 'sweep');
    let stores: Awaited<ReturnType<typeof storeBatches>> | undefined;
    let pgbossVersion = '';
    try {
      stores = await storeBatches(ctx.url, n);
      await blockedServer(server);
      await boss.boss.createQueue('bench-sweep');
      pgbossVersion = boss.version;
      const jobs = (rep: number) => batch(rep).map((data) => ({ name: 'bench-sweep', data }));
      // Warm-up: one of each (connections, JIT, plans).
      await server.client.tasks.createMany.mutate({ tasks: batch(-1) });
      await boss.boss.insert(jobs(-1));
      const ours: number[] = [];
      const theirs: number[] = [];
      const viaStore: StoreRep[] = [];
      let cpu = 0;
      for (let r = 0; r < reps; r++) {
        const input = { tasks: batch(r) };
        const c0 = processCpuMs(server.pid);
        ours.push(await timeIt(() => server.client.tasks.createMany.mutate(input)));
        cpu += processCpuMs(server.pid) - c0;
        const j = jobs(r);
        theirs.push(await timeIt(() => boss.boss.insert(j)));
        viaStore.push(await stores.rep(r));
        ctx.log(
          `rep ${r + 1}/${reps}: createMany ${round(ours[r]!, 1)} ms, pg-boss insert ${round(theirs[r]!, 1)} ms, store submitAll ${round(viaStore[r]!.storeMs, 1)} ms, its two INSERTs alone ${round(viaStore[r]!.aloneMs, 1)} ms`,
        );
      }
      const sum = (xs: number[]) => xs.reduce((a, b) => a + b, 0);
      rows.push(row('trainyard tasks.createMany over HTTP', 'postgres', n, ours, cpu));
      rows.push(row('pg-boss insert', 'postgres', n, theirs, null));
      rows.push(
        row(
          'trainyard store submitAll in-process',
          'postgres',
          n,
          viaStore.map((s) => s.storeMs),
          sum(viaStore.map((s) => s.storeCpuMs)),
        ),
      );
      rows.push(
        row(
          "the batch's two INSERTs alone, in-process",
          'postgres',
          n,
          viaStore.map((s) => s.aloneMs),
          sum(viaStore.map((s) => s.aloneCpuMs)),
        ),
      );

      // The same tasks one call each, 16 clients at once (group commit): what a sweep cost before.
      const clients: TrainyardClient[] = [];
      for (let i = 0; i < 16; i++) clients.push(await connect({ url: server.url, user: `bench${i}` }));
      const singles: number[] = [];
      let singleCpu = 0;
      for (let r = 0; r < singleReps; r++) {
        const c0 = processCpuMs(server.pid);
        singles.push((await drive(n, 16, (i, w) => clients[w]!.tasks.create.mutate(createInput(i)))).ms);
        singleCpu += processCpuMs(server.pid) - c0;
      }
      rows.push(row('trainyard tasks.create ×n, 16 clients', 'postgres', n, singles, singleCpu));
    } finally {
      await stores?.close();
      await boss.dispose();
      await server.dispose();
    }

    if (!ctx.skipPglite) {
      const pgl: BenchServer = await startServer({ backend: { kind: 'pglite' } });
      try {
        await blockedServer(pgl);
        await pgl.client.tasks.createMany.mutate({ tasks: batch(-1) });
        const ms: number[] = [];
        let cpu = 0;
        for (let r = 0; r < Math.min(reps, 3); r++) {
          const input = { tasks: batch(r) };
          const c0 = processCpuMs(pgl.pid);
          ms.push(await timeIt(() => pgl.client.tasks.createMany.mutate(input)));
          cpu += processCpuMs(pgl.pid) - c0;
        }
        rows.push(row('trainyard tasks.createMany over HTTP', 'pglite', n, ms, cpu));
      } finally {
        await pgl.dispose();
      }
    }

    const rate = (system: string, backend = 'postgres') => rows.find((r) => r.system === system && r.backend === backend)?.itemsPerSecond;
    const ratios: Record<string, number | null> = {
      'createMany/pg-boss insert per item': ratio(rate('trainyard tasks.createMany over HTTP'), rate('pg-boss insert')),
      'store submitAll in-process/pg-boss insert per item': ratio(rate('trainyard store submitAll in-process'), rate('pg-boss insert')),
      "the batch's two INSERTs alone/pg-boss insert per item": ratio(
        rate("the batch's two INSERTs alone, in-process"),
        rate('pg-boss insert'),
      ),
      'createMany/tasks.create ×n per item': ratio(
        rate('trainyard tasks.createMany over HTTP'),
        rate('trainyard tasks.create ×n, 16 clients'),
      ),
    };
    const targets: Target[] = [
      target(
        `createMany of ${n} vs pg-boss insert of ${n}, per item`,
        '≥ 1.0',
        ratios['createMany/pg-boss insert per item']!,
        (v) => v >= 1,
      ),
    ];
    printTable(
      `sweep: batches of ${n}, ${reps} repetitions interleaved after one warm-up (median)`,
      ['system', 'backend', 'n', 'reps', 'median ms', 'µs/item', 'items/s', 'server CPU µs/item'],
      rows.map((r) => [r.system, r.backend, r.n, r.reps, r.medianMs, r.perItemUs, r.itemsPerSecond, r.serverCpuUsPerItem]),
    );
    printTable(
      'sweep ratios',
      ['ratio', 'value'],
      Object.entries(ratios).map(([k, v]) => [k, v]),
    );
    notes.push(
      `trainyard: tasks.createMany({ tasks }) of ${n} tasks through the typed client over HTTP (one request; validation, dataset check, one transaction: events, rows, queue), each task queued behind a long one on the single GPU slot; timed around the call in the bench process.`,
      `pg-boss insert: boss.insert() of ${n} jobs with the same payloads into a queue created up front (one INSERT … SELECT FROM json_to_recordset), in the bench process (no HTTP); schedule and supervise off.`,
      `trainyard store submitAll in-process: TaskStore.submitAll of ${n} in the bench process (the transaction createMany runs: decisions, events, rows; no HTTP, tRPC, validation or dataset check); its CPU column is the bench process's own.`,
      `the batch's two INSERTs alone: the same ${n} tasks' events (appendNewStreams) and queued rows (projectNewTasks) written in one transaction, events and records made before the clock starts: what the database is asked to do for a batch, the floor for the event log and its read model written together; its CPU column is the bench process's own.`,
      'Per-item ratio: items per second of createMany over those of pg-boss insert, from the medians; above 1 is faster.',
    );
    return {
      params: { n, reps, singleReps, pgbossVersion },
      rows: rows as unknown as Record<string, unknown>[],
      ratios,
      targets,
      notes,
    };
  },
};
