// A database that does not answer in time, for either of two reasons. Its host goes silent while a task trains (it vanished without a word and its address
// now leads to a database that answers: a standby, a healed route): the service's open
// connections get no answer and no error, ever. With the statement limit
// (TRAINYARD_DB_QUERY_TIMEOUT_MS) each statement on them fails as a connection error, which the
// runner retries on a fresh connection: the task completes with its whole log and one
// TaskCompleted, and the API answers again. Without the limit its reports would wait for as
// long as TCP takes to give up (many minutes; here, for ever). Or a lock the exit needs is held
// past the limit, or the server cancels the exit's statement (an administrator, a late cancel):
// the cancelled exit is retried until it goes through, never dropped. And while
// the database is gone, health and /metrics say so within 5 s instead of waiting out the limit.
import postgresJs from 'postgres';
import { afterEach, describe, expect, it } from 'vitest';
import { lockQueue, openDatabase } from '@trainyard/store';
import { backendAvailable, backends, startSilencingProxy, type SilencingProxy } from '@trainyard/store/testing';
import { eventually, simulated, startServer, type RunningServer } from './harness';
import { eventsOf, typesOf, waitFor, waitTerminal } from './lifecycle-support';

const postgres = backends().find((b) => b.kind === 'postgres')!;

/** Holds the lock every transaction that fills a slot takes (the store's own), as another writer would, while `during` runs. */
async function holdingQueueLock(schema: string | null, during: () => Promise<void>): Promise<void> {
  const other = await openDatabase({ url: postgres.url!, schema: schema ?? undefined, migrate: false, maxConnections: 1 });
  try {
    await other.transaction(async (tx) => {
      await lockQueue(tx);
      await during();
    });
  } finally {
    await other.close();
  }
}

describe.skipIf(!backendAvailable(postgres))('a database host that goes silent while a task trains (Postgres)', () => {
  let s: RunningServer | undefined;
  let proxy: SilencingProxy | undefined;
  afterEach(async () => {
    proxy?.restore();
    await s?.dispose();
    await proxy?.close();
  });

  it('given the connections gone silent mid-training, then the reports are retried on fresh ones: COMPLETED, every line once, one TaskCompleted', async () => {
    proxy = await startSilencingProxy(postgres.url!);
    s = await startServer({
      backend: { kind: 'postgres', url: proxy.via(postgres.url!) },
      env: { TRAINYARD_DB_QUERY_TIMEOUT_MS: '500' },
    });
    const c = s.client;
    const task = await c.tasks.create.mutate(simulated({ steps: 20, stepMs: 100, logLinesPerStep: 1 }, { name: 'through-silence' }));
    await waitFor(c, task.id, 'TRAINING');
    expect(proxy.silenceOpen()).toBeGreaterThan(0);

    const done = await waitTerminal(c, task.id);
    expect(done.status).toBe('COMPLETED');
    const events = typesOf(await eventsOf(c, task.id));
    expect(events.filter((t) => t === 'TaskCompleted')).toHaveLength(1);
    expect(events.at(-1)).toBe('TaskCompleted');
    const logs = await c.tasks.logs.query({ id: task.id, afterSeq: 0, limit: 1000 });
    const seqs = logs.lines.map((l) => l.seq);
    expect(new Set(seqs).size).toBe(seqs.length);
    expect(logs.lines.filter((l) => /step/i.test(l.line)).length).toBeGreaterThanOrEqual(20);
  }, 120_000);

  it('given the queue lock held past the statement limit as a task ends, then its exit is retried, not dropped: COMPLETED once the lock is let go', async () => {
    s = await startServer({ backend: postgres, env: { TRAINYARD_DB_QUERY_TIMEOUT_MS: '500' } });
    const c = s.client;
    const task = await c.tasks.create.mutate(simulated({ steps: 10, stepMs: 100 }, { name: 'held-up' }));
    await waitFor(c, task.id, 'TRAINING');
    await holdingQueueLock(s.schema, async () => {
      await eventually(
        async () => /database unavailable \(QUERY_TIMEOUT/.test(s!.output.join('\n')),
        'the exit to time out and be retried',
      );
      expect((await c.tasks.get.query({ id: task.id })).status).toBe('TRAINING');
    });
    const done = await waitTerminal(c, task.id, 30_000);
    expect(done.status).toBe('COMPLETED');
    const events = typesOf(await eventsOf(c, task.id));
    expect(events.filter((t) => t === 'TaskCompleted')).toHaveLength(1);
  }, 120_000);

  it("given a task's exit cancelled by the server while it waits for the queue lock (an administrator's pg_cancel_backend, or the statement limit's cancel landing late), then it is retried, not dropped", async () => {
    s = await startServer({ backend: postgres });
    const c = s.client;
    const task = await c.tasks.create.mutate(simulated({ steps: 10, stepMs: 100 }, { name: 'cancelled-exit' }));
    await waitFor(c, task.id, 'TRAINING');
    const admin = postgresJs(postgres.url!, { max: 1, onnotice: () => {} });
    const waiting = async () =>
      (await admin`SELECT pid FROM pg_stat_activity WHERE application_name = 'trainyard' AND wait_event_type = 'Lock'`).map(
        (r) => r.pid as number,
      );
    try {
      await holdingQueueLock(s.schema, async () => {
        // Every statement waiting for the lock is cancelled (the dispatch's too) until the exit's is.
        const exitCancelled = new RegExp(`task ${task.id}: \\w+ failed: canceling statement|database unavailable \\(canceling statement`);
        await eventually(async () => {
          for (const pid of await waiting()) await admin`SELECT pg_cancel_backend(${pid})`;
          return exitCancelled.test(s!.output.join('\n'));
        }, 'the exit to be cancelled');
      });
    } finally {
      await admin.end();
    }
    const done = await waitTerminal(c, task.id, 30_000);
    expect(done.status).toBe('COMPLETED');
    const events = typesOf(await eventsOf(c, task.id));
    expect(events.filter((t) => t === 'TaskCompleted')).toHaveLength(1);
  }, 120_000);

  it('given the database gone silent for every connection and a statement limit longer than a monitor waits, then health and /metrics answer: the database is down', async () => {
    proxy = await startSilencingProxy(postgres.url!);
    s = await startServer({
      backend: { kind: 'postgres', url: proxy.via(postgres.url!) },
      env: { TRAINYARD_DB_QUERY_TIMEOUT_MS: '60000' },
    });
    expect((await s.client.system.health.query()).database).toBe('up');
    proxy.silenceAll();

    // Each waits 5 s for the database (answer-within.ts), not the statement limit's minute.
    const health = await s.client.system.health.query();
    expect(health).toMatchObject({ ok: false, database: 'down', error: 'database unreachable: no answer within 5 s' });
    const scrape = await fetch(`${s.url}/metrics`);
    expect(scrape.status).toBe(200);
    const text = await scrape.text();
    expect(text).toMatch(/^trainyard_database_up 0$/m);
    // No figure rather than an empty queue.
    expect(text).toMatch(/^trainyard_queue_length nan$/im);
    expect(text).toMatch(/^trainyard_task_preparing_max_seconds nan$/im);
    expect(text).not.toMatch(/^trainyard_tasks\{/m);
  }, 40_000);

  it("given another instance holding the read models' version past the statement limit (a refold after an upgrade), then a starting service waits for it, then starts", async () => {
    s = await startServer({ backend: postgres, env: { TRAINYARD_DB_QUERY_TIMEOUT_MS: '500' } });
    const holder = postgresJs(postgres.url!, { max: 1, onnotice: () => {} });
    const watcher = postgresJs(postgres.url!, { max: 1, onnotice: () => {} });
    try {
      let release!: () => void;
      const released = new Promise<void>((resolve) => (release = resolve));
      const holding = holder.begin(async (tx) => {
        await tx.unsafe(`SELECT version FROM ${s!.schema}.projection_versions FOR UPDATE`);
        await released;
      });
      const restarted = s.restart();
      await eventually(
        async () =>
          (
            await watcher`SELECT count(*)::int AS n FROM pg_stat_activity WHERE application_name = 'trainyard' AND wait_event_type = 'Lock'`
          )[0]!.n > 0,
        'the starting service to wait for the lock',
      );
      // Past the limit (500 ms) at least once: its wait is cancelled and begun again.
      await new Promise((resolve) => setTimeout(resolve, 1_500));
      release();
      await holding;
      s = await restarted;
      expect(s.output.join('\n')).toMatch(/waiting for another instance \(it holds the read models' version/);
      expect((await s.client.system.health.query()).ok).toBe(true);
    } finally {
      await holder.end();
      await watcher.end();
    }
  }, 120_000);
});
