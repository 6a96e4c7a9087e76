// submit: tasks created per second through the typed client over HTTP, at several
// concurrencies, beside pg-boss `send` and a raw single-row INSERT on the same Postgres.
//
// The service runs with one GPU slot held by a long simulated trainer, so every submission
// just queues (the queue grows through the run, as it would under a burst). Each concurrent
// submitter has its own client (independent users; the typed client would otherwise batch
// calls made in the same tick into one HTTP request). pg-boss and postgres.js get the same
// pool size as the service (10 connections).
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PGlite } from '@electric-sql/pglite';
import postgres from 'postgres';
import { createTRPCClient, httpLink } from '@trpc/client';
import { connect, trpcUrl, type AppRouter, type TrainyardClient } from '@trainyard/client';
import { DEFAULT_RESOURCES, isActive, uniformInventory, type TaskSpec } from '@trainyard/domain';
import { configureDevices, openDatabase, TaskStore } from '@trainyard/store';
import {
  DATASET,
  drive,
  dropSchema,
  freshSchemaName,
  onCleanup,
  printTable,
  processCpuMs,
  ratio,
  removeDir,
  round,
  summarize,
  target,
  type BenchContext,
  type Benchmark,
  type BenchOutput,
  type Summary,
  type Target,
} from '../lib/common';
import { POOL_SIZE, startBoss } from '../lib/pgboss';
import { startServer, type BenchServer } from '../lib/server';

const CONCURRENCIES = [1, 16, 64];

export const createInput = (i: number) => ({
  model: 'Qwen/Qwen2.5-Coder-0.5B-Instruct',
  datasetPath: DATASET,
  name: `bench task ${i}`,
  config: { epochs: 1, simulate: { steps: 1, stepMs: 0, startupMs: 0 } },
});

/** A task that holds the one GPU slot for ten minutes (the longest a simulated step may take). */
const blockerInput = () => ({
  ...createInput(0),
  name: 'bench blocker',
  config: { epochs: 1, simulate: { steps: 1, stepMs: 600_000, startupMs: 0 } },
});

/** The spec the service would build from createInput (defaults filled in), for the store row. */
export const storeSpec = (i: number): TaskSpec => ({
  name: `bench task ${i}`,
  model: 'Qwen/Qwen2.5-Coder-0.5B-Instruct',
  datasetPath: DATASET,
  outputDir: `bench-${i}`,
  config: {
    epochs: 1,
    batchSize: 1,
    gradientAccumulation: 16,
    learningRate: 2e-4,
    maxLength: 512,
    load8bit: false,
    load4bit: false,
    loraRank: 8,
    loraAlpha: 16,
    simulate: { steps: 1, stepMs: 0, startupMs: 0 },
  },
  timeoutMs: 6 * 3_600_000,
  resources: { ...DEFAULT_RESOURCES },
  owner: 'bench',
  idempotencyKey: null,
});

let idSeq = 0;
export const newTaskId = () => `b${Date.now().toString(36)}${(idSeq++).toString(36)}${Math.random().toString(36).slice(2, 8)}`;

interface Row {
  system: string;
  backend: 'postgres' | 'pglite';
  concurrency: number;
  n: number;
  seconds: number;
  perSecond: number;
  latencyMs: Summary;
  /**
   * CPU per task (user + system): the service process's, when it runs as its own process; the
   * bench process's own for the store row (nothing else runs in it then).
   */
  serverCpuMsPerTask: number | null;
}

/** Hold the server's one GPU slot with a long task, so submissions queue. */
export async function blockedServer(server: BenchServer): Promise<void> {
  const blocker = await server.client.tasks.create.mutate(blockerInput());
  if (!isActive(blocker.status)) throw new Error(`the blocker task did not take the slot (it is ${blocker.status})`);
}

async function measure(
  rows: Row[],
  label: { system: string; backend: Row['backend'] },
  c: number,
  n: number,
  warmup: number,
  op: (i: number, worker: number) => Promise<unknown>,
  log: (m: string) => void,
  cpuFrom?: number | 'bench process',
): Promise<void> {
  await drive(warmup, c, (i, w) => op(-1 - i, w));
  const cpuNow = () => {
    if (cpuFrom === 'bench process') {
      const u = process.cpuUsage();
      return (u.user + u.system) / 1000;
    }
    return cpuFrom ? processCpuMs(cpuFrom) : NaN;
  };
  const cpu0 = cpuNow();
  const r = await drive(n, c, op);
  const cpu = (cpuNow() - cpu0) / n;
  const row: Row = {
    ...label,
    concurrency: c,
    n,
    seconds: round(r.ms / 1000, 3),
    perSecond: round((n * 1000) / r.ms, 1),
    latencyMs: summarize(r.latencies),
    serverCpuMsPerTask: Number.isNaN(cpu) ? null : round(cpu, 2),
  };
  rows.push(row);
  log(`${label.system} (${label.backend}) c=${c}: ${row.perSecond}/s, p50 ${row.latencyMs.p50} ms`);
}

export const submit: Benchmark = {
  name: 'submit',
  description: 'tasks created per second over HTTP vs pg-boss send vs raw INSERT, at concurrency 1/16/64',
  async run(ctx: BenchContext): Promise<BenchOutput> {
    const n = ctx.n ?? (ctx.quick ? 40 : 2000);
    const warmup = ctx.quick ? 8 : 100;
    const rows: Row[] = [];
    const notes: string[] = [];
    const clientsFor = async (s: BenchServer) => {
      const out: TrainyardClient[] = [];
      for (let i = 0; i < Math.max(...CONCURRENCIES); i++) out.push(await connect({ url: s.url, user: `bench${i}` }));
      return out;
    };

    // --- Postgres: the service, pg-boss and raw INSERT, interleaved per concurrency.
    const server = await startServer({ backend: { kind: 'postgres', url: ctx.url, schema: freshSchemaName('submit') } });
    const boss = await startBoss(ctx.url, 'submit');
    const rawSchema = freshSchemaName('raw');
    const raw = postgres(ctx.url, { max: POOL_SIZE, onnotice: () => {}, connection: { search_path: rawSchema } });
    const dropRaw = onCleanup(async () => {
      await raw.end({ timeout: 2 });
      await dropSchema(ctx.url, rawSchema);
    });
    // The store alone, in this process: the same transaction without HTTP, tRPC and validation.
    const storeDb = await openDatabase({ url: ctx.url, schema: freshSchemaName('store') });
    const closeStore = onCleanup(async () => {
      await storeDb.close();
      await dropSchema(ctx.url, storeDb.schema);
    });
    // With group commit, as the service runs it.
    const store = new TaskStore(storeDb, { runnerId: 'bench', groupCommit: true });
    let pgbossVersion = '';
    try {
      await configureDevices(storeDb.db, uniformInventory(1));
      await store.submit(newTaskId(), storeSpec(-1), { actor: 'bench' });
      await blockedServer(server);
      const clients = await clientsFor(server);
      // The cheapest call the API has (no database), one request each as tasks.create goes.
      const pingers = clients.map(() => createTRPCClient<AppRouter>({ links: [httpLink({ url: trpcUrl(server.url) })] }));
      // A service from an older checkout (--server-root) may not have it.
      const hasPing = await pingers[0]!.system.ping.query().then(
        () => true,
        () => false,
      );
      if (!hasPing) notes.push('system.ping is missing from the service measured (an older checkout): no tRPC no-op row.');
      await boss.boss.createQueue('bench-submit');
      pgbossVersion = boss.version;
      await raw.unsafe(`CREATE SCHEMA ${rawSchema}`);
      await raw.unsafe(
        `CREATE TABLE ${rawSchema}.raw_insert (id bigserial PRIMARY KEY, stream_id text NOT NULL, data jsonb NOT NULL, recorded_at timestamptz NOT NULL DEFAULT now())`,
      );
      for (const c of CONCURRENCIES) {
        await measure(
          rows,
          { system: 'trainyard', backend: 'postgres' },
          c,
          n,
          warmup,
          (i, w) => clients[w]!.tasks.create.mutate(createInput(i)),
          ctx.log,
          server.pid,
        );
        if (hasPing)
          await measure(
            rows,
            { system: 'tRPC no-op over HTTP', backend: 'postgres' },
            c,
            n,
            warmup,
            (_i, w) => pingers[w]!.system.ping.query(),
            ctx.log,
            server.pid,
          );
        await measure(
          rows,
          { system: 'trainyard store in-process', backend: 'postgres' },
          c,
          n,
          warmup,
          (i) => store.submit(newTaskId(), storeSpec(i), { actor: 'bench' }),
          ctx.log,
          'bench process',
        );
        await measure(
          rows,
          { system: 'pg-boss send', backend: 'postgres' },
          c,
          n,
          warmup,
          (i) => boss.boss.send('bench-submit', createInput(i)),
          ctx.log,
        );
        await measure(
          rows,
          { system: 'raw INSERT', backend: 'postgres' },
          c,
          n,
          warmup,
          (i) => raw`INSERT INTO raw_insert (stream_id, data) VALUES (${`r${i}`}, ${raw.json(createInput(i))})`,
          ctx.log,
        );
      }
    } finally {
      await closeStore();
      await dropRaw();
      await boss.dispose();
      await server.dispose();
    }

    // --- PGlite: the service on its embedded database, and PGlite's own INSERT rate in-process.
    if (!ctx.skipPglite) {
      const pgl = await startServer({ backend: { kind: 'pglite' } });
      const dir = mkdtempSync(join(tmpdir(), 'trainyard-bench-pglite-'));
      const lite = await PGlite.create(dir);
      const closeLite = onCleanup(async () => {
        await lite.close();
        removeDir(dir);
      });
      try {
        await blockedServer(pgl);
        const clients = await clientsFor(pgl);
        await lite.exec(
          `CREATE TABLE raw_insert (id bigserial PRIMARY KEY, stream_id text NOT NULL, data jsonb NOT NULL, recorded_at timestamptz NOT NULL DEFAULT now())`,
        );
        for (const c of CONCURRENCIES) {
          await measure(
            rows,
            { system: 'trainyard', backend: 'pglite' },
            c,
            n,
            warmup,
            (i, w) => clients[w]!.tasks.create.mutate(createInput(i)),
            ctx.log,
            pgl.pid,
          );
          await measure(
            rows,
            { system: 'raw INSERT (in-process)', backend: 'pglite' },
            c,
            n,
            warmup,
            (i) => lite.query('INSERT INTO raw_insert (stream_id, data) VALUES ($1, $2)', [`r${i}`, JSON.stringify(createInput(i))]),
            ctx.log,
          );
        }
      } finally {
        await closeLite();
        await pgl.dispose();
      }
      notes.push(
        'PGlite is one connection: the service serialises its transactions on it; the raw PGlite INSERT row runs in the bench process (no HTTP), for scale only.',
      );
    }

    const rate = (system: string, backend: string, c: number) =>
      rows.find((r) => r.system === system && r.backend === backend && r.concurrency === c)?.perSecond ?? null;
    const ratios: Record<string, number | null> = {};
    const targets: Target[] = [];
    for (const c of CONCURRENCIES) {
      const ours = rate('trainyard', 'postgres', c);
      ratios[`trainyard/pg-boss c=${c}`] = ratio(ours, rate('pg-boss send', 'postgres', c));
      ratios[`trainyard/raw c=${c}`] = ratio(ours, rate('raw INSERT', 'postgres', c));
      ratios[`trainyard/tRPC no-op c=${c}`] = ratio(ours, rate('tRPC no-op over HTTP', 'postgres', c));
      ratios[`store in-process/pg-boss c=${c}`] = ratio(
        rate('trainyard store in-process', 'postgres', c),
        rate('pg-boss send', 'postgres', c),
      );
      if (!ctx.skipPglite) ratios[`trainyard pglite/postgres c=${c}`] = ratio(rate('trainyard', 'pglite', c), ours);
      targets.push(target(`submit trainyard/pg-boss c=${c}`, '≥ 1.0', ratios[`trainyard/pg-boss c=${c}`]!, (v) => v >= 1));
      if (c >= 16) targets.push(target(`submit trainyard/raw INSERT c=${c}`, '≥ 0.5', ratios[`trainyard/raw c=${c}`]!, (v) => v >= 0.5));
      // The service's own CPU per tasks.create against a call that does nothing (system.ping), both measured on the server's process.
      const cpuOf = (system: string) =>
        rows.find((r) => r.system === system && r.backend === 'postgres' && r.concurrency === c)?.serverCpuMsPerTask ?? null;
      ratios[`server CPU tasks.create/no-op c=${c}`] = ratio(cpuOf('trainyard'), cpuOf('tRPC no-op over HTTP'));
      // A create is a no-op call plus the store's transaction at least: at 1.0 or above, the
      // store's CPU alone puts tasks.create at 2× the no-op's or more.
      ratios[`CPU store in-process/no-op c=${c}`] = ratio(cpuOf('trainyard store in-process'), cpuOf('tRPC no-op over HTTP'));
      targets.push(
        target(
          `server CPU per tasks.create / per no-op call c=${c}`,
          '≤ 2.0',
          ratios[`server CPU tasks.create/no-op c=${c}`]!,
          (v) => v <= 2,
        ),
      );
    }

    printTable(
      `submit: ${n} per row after ${warmup} warm-up (pool ${POOL_SIZE} connections each)`,
      ['system', 'backend', 'conc', 'per s', 'p50 ms', 'p99 ms', 'CPU ms/task'],
      rows.map((r) => [r.system, r.backend, r.concurrency, r.perSecond, r.latencyMs.p50, r.latencyMs.p99, r.serverCpuMsPerTask]),
    );
    printTable(
      'submit ratios',
      ['ratio', 'value'],
      Object.entries(ratios).map(([k, v]) => [k, v]),
    );
    notes.push(
      'trainyard: tasks.create over HTTP (typed client, one per concurrent submitter); each creates a task that queues behind a long-running one on the single GPU slot.',
      'tRPC no-op over HTTP: system.ping (answers without touching the database) through the same transport as tasks.create (one HTTP request per call): what any procedure of this API costs before it does anything, the ceiling for submissions over HTTP.',
      'trainyard store in-process: TaskStore.submit called directly in the bench process, with group commit as the service runs it (same transactions, no HTTP/tRPC/validation/warnings), to show where the time goes; its CPU column is the bench process (the store and postgres.js: nothing else runs in it then).',
      'pg-boss send: one job per call with the same payload, queue created up front; schedule and supervise off.',
      'raw INSERT: one row (id, text, jsonb payload, default now()) per autocommit statement through postgres.js: the floor the database sets.',
    );
    return {
      params: { n, warmup, concurrencies: CONCURRENCIES, poolSize: POOL_SIZE, pgbossVersion },
      rows: rows as unknown as Record<string, unknown>[],
      ratios,
      targets,
      notes,
    };
  },
};
