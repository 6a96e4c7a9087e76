// A database host that goes silent (Postgres): the connections open to it get no answer and no
// error, ever, while a new connection reaches a database that answers (its address moved to a
// standby; here a proxy, test/silencing-proxy.ts). A statement on a silent connection must end as
// a connection error, which every caller already knows to retry, rather than wait for as long as
// TCP takes to give up (many minutes).
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { uniformInventory } from '@trainyard/domain';
import { configureDevices, isConnectionError, loadTask, openDatabase, TaskStore, type Database } from '.';
import { tasks } from './schema';
import { backendAvailable, backends, dropSchema, freshSchemaName, taskSpec } from '../test/support';
import { startSilencingProxy, type SilencingProxy } from '../test/silencing-proxy';

const postgres = backends().find((b) => b.kind === 'postgres')!;
const meta = { actor: 'alice' };

describe.skipIf(!backendAvailable(postgres))('a database host that goes silent (Postgres)', () => {
  let proxy: SilencingProxy;
  let database: Database;
  let schema: string;
  beforeEach(async () => {
    schema = freshSchemaName();
    proxy = await startSilencingProxy(postgres.url!);
    // One connection: the statement after the silence is sure to go on the silenced one.
    database = await openDatabase({ url: proxy.via(postgres.url!), schema, maxConnections: 1, queryTimeoutMs: 300 });
    await configureDevices(database.db, uniformInventory(1));
  });
  afterEach(async () => {
    await database?.close().catch(() => {});
    await proxy?.close();
    await dropSchema(postgres.url!, schema);
  });

  it('given a submission on a connection gone silent, then it fails as a connection error (query timeout, then the unanswered cancel) and writes nothing; the next one reaches the database', async () => {
    const store = new TaskStore(database, { runnerId: 'r1' });
    await store.submit('before', taskSpec('before'), meta);
    expect(proxy.silenceOpen()).toBe(1);

    const lost = await store.submit('during', taskSpec('during'), meta).then(
      () => null,
      (err: unknown) => err,
    );
    expect(lost).not.toBeNull();
    expect(isConnectionError(lost)).toBe(true);

    // The pool connects again: the same submission, retried as a caller would, goes through.
    const after = await store.submit('during', taskSpec('during'), meta);
    expect(after.task.status).toBe('QUEUED');
    expect((await loadTask(database.db, 'before'))!.status).toBe('PREPARING');
    expect((await loadTask(database.db, 'during'))!.version).toBe(after.task.version);
  }, 30_000);

  it('given a pool whose every connection went silent, then one statement finds it out and the pool is replaced whole: the next statements reach the database at once', async () => {
    const pooled = await openDatabase({ url: proxy.via(postgres.url!), schema, maxConnections: 4, queryTimeoutMs: 300 });
    try {
      // Four connections open at once, then all silent.
      await Promise.all(Array.from({ length: 4 }, () => pooled.db.$count(tasks)));
      expect(proxy.silenceOpen()).toBeGreaterThanOrEqual(4);
      const first = await pooled.db.$count(tasks).then(
        () => null,
        (err: unknown) => err,
      );
      expect(isConnectionError(first)).toBe(true);
      // Found one at a time, each of the three left would cost a statement its query timeout and
      // the cancel's 5 s; a statement after the replacement meets none of them.
      const outcomes = await Promise.all(
        Array.from({ length: 6 }, () =>
          pooled.db.$count(tasks).then(
            () => 'answered',
            (err: Error) => err.message,
          ),
        ),
      );
      expect(outcomes).toEqual(Array(6).fill('answered'));
    } finally {
      await pooled.close().catch(() => {});
    }
  }, 30_000);
});
