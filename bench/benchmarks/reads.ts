// reads: queue.get and tasks.list latency (p50/p99) with 100k tasks in history, over HTTP with
// the typed client, one request at a time after a warm-up. The history is bulk-generated (see
// lib/history.ts); on top of it one task runs (holding the one slot) and some are queued.
import { openDatabase } from '@trainyard/store';
import {
  freshSchemaName,
  printTable,
  summarize,
  target,
  type BenchContext,
  type Benchmark,
  type BenchOutput,
  type Summary,
  type Target,
} from '../lib/common';
import { generateHistory } from '../lib/history';
import { startServer } from '../lib/server';
import { blockedServer, createInput } from './submit';

interface Row {
  system: 'trainyard';
  backend: 'postgres';
  operation: string;
  tasksInHistory: number;
  requests: number;
  latencyMs: Summary;
  /** Items in one answer (tasks or queue entries). */
  items: number;
}

export const reads: Benchmark = {
  name: 'reads',
  description: 'queue.get and tasks.list p50/p99 over HTTP with 100k tasks in history',
  async run(ctx: BenchContext): Promise<BenchOutput> {
    const historyTasks = ctx.n ?? (ctx.quick ? 2000 : 100_000);
    const queued = ctx.quick ? 20 : 100;
    const requests = ctx.quick ? 60 : 1000;
    const warmup = ctx.quick ? 15 : 100;
    const rows: Row[] = [];
    const schema = freshSchemaName('reads');
    const db = await openDatabase({ url: ctx.url, schema });
    const gen = await generateHistory(db.db, historyTasks).finally(() => db.close());
    ctx.log(`generated ${gen.tasks} tasks (${gen.events} events) in ${gen.ms} ms`);
    const server = await startServer({ backend: { kind: 'postgres', url: ctx.url, schema } });
    try {
      const { client } = server;
      await blockedServer(server);
      for (let i = 0; i < queued; i++) await client.tasks.create.mutate(createInput(i));
      // A cursor half-way down the history, reached the way a client would page to it.
      let cursor: string | null = null;
      for (let seen = 0; seen < historyTasks / 2;) {
        const page: { items: unknown[]; nextCursor: string | null } = await client.tasks.list.query({ limit: 200, cursor });
        seen += page.items.length;
        cursor = page.nextCursor;
        if (!cursor) break;
      }
      const sampleId = `h${String(Math.max(1, Math.floor(historyTasks / 3))).padStart(10, '0')}bench`;
      const ops: [string, () => Promise<number>][] = [
        ['queue.get', async () => (await client.queue.get.query()).queued.length],
        ['tasks.list (first page of 50)', async () => (await client.tasks.list.query({})).items.length],
        ['tasks.list status=QUEUED', async () => (await client.tasks.list.query({ status: 'QUEUED' })).items.length],
        ['tasks.list status=COMPLETED', async () => (await client.tasks.list.query({ status: 'COMPLETED' })).items.length],
        ['tasks.list page at half the history', async () => (await client.tasks.list.query({ cursor })).items.length],
        ['tasks.get', async () => ((await client.tasks.get.query({ id: sampleId })) ? 1 : 0)],
      ];
      for (const [operation, op] of ops) {
        for (let i = 0; i < warmup; i++) await op();
        const lat: number[] = [];
        let items = 0;
        for (let i = 0; i < requests; i++) {
          const s = performance.now();
          items = await op();
          lat.push(performance.now() - s);
        }
        rows.push({
          system: 'trainyard',
          backend: 'postgres',
          operation,
          tasksInHistory: historyTasks,
          requests,
          latencyMs: summarize(lat),
          items,
        });
        ctx.log(`${operation}: p50 ${summarize(lat).p50} ms, p99 ${summarize(lat).p99} ms`);
      }
    } finally {
      await server.dispose();
    }
    printTable(
      `reads: ${requests} sequential requests each after ${warmup} warm-up; ${historyTasks} finished tasks in history, 1 running, ${queued} queued`,
      ['operation', 'items', 'p50 ms', 'p90 ms', 'p99 ms', 'max ms'],
      rows.map((r) => [r.operation, r.items, r.latencyMs.p50, r.latencyMs.p90, r.latencyMs.p99, r.latencyMs.max]),
    );
    const targets: Target[] = rows
      .filter((r) => r.operation.startsWith('queue.get') || r.operation.startsWith('tasks.list'))
      .map((r) => target(`${r.operation} p99 (ms)`, '≤ 20', r.latencyMs.p99, (v) => v <= 20));
    return {
      params: { historyTasks, historyEvents: gen.events, queued, requests, warmup },
      rows: rows as unknown as Record<string, unknown>[],
      ratios: {},
      targets,
      notes: [
        'Latency is measured in the bench process around each typed-client call (HTTP, tRPC, validation, SQL, JSON), one request at a time.',
      ],
    };
  },
};
