// PostgresLog (the run's own view of the log, invariants 4 and 5 on Postgres) can fail, and says
// which invariant failed: over a real schema, its tail delivers each committed event once, and a
// read model edited behind the log's back is reported as invariant 4 and nothing else.
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { uniformInventory } from '@trainyard/domain';
import { configureDevices, openDatabase, TaskStore, type Database } from '@trainyard/store';
import { backendAvailable, backends, dropSchema, freshSchemaName, rawClient, taskSpec } from '@trainyard/store/testing';
import { LogTracker, PostgresLog, reportDifferences, Violations } from './invariants';

const postgres = backends().find((b) => b.kind === 'postgres')!;
const meta = { actor: 'spec' };

describe.skipIf(!backendAvailable(postgres))('PostgresLog', () => {
  let schema: string;
  let db: Database;
  let store: TaskStore;
  beforeEach(async () => {
    schema = freshSchemaName();
    db = await openDatabase({ url: postgres.url!, schema });
    await configureDevices(db.db, uniformInventory(1));
    store = new TaskStore(db, { runnerId: 'spec' });
    await store.submit('a', taskSpec('a'), meta);
    await store.submit('b', taskSpec('b'), meta);
  });
  afterEach(async () => {
    await db.close();
    await dropSchema(postgres.url!, schema);
  });

  it('given an honest schema, the tail delivers each event once and the read models equal the log', async () => {
    const log = new PostgresLog(db);
    const v = new Violations(Date.now(), () => {});
    const tracker = new LogTracker();
    tracker.add(await log.readNew(), v, 'one');
    await store.execute('b', { type: 'cancel' }, meta);
    tracker.add(await log.readNew(), v, 'two');
    tracker.checkStreams(v, 'two', true);
    reportDifferences((await log.compare()).differences, v, 'two');
    expect(v.list).toEqual([]);
    expect(tracker.all().map((e) => e.position)).toEqual((await log.readAll()).map((e) => e.position));
    expect(tracker.streams.get('b')!.map((e) => e.type)).toEqual(['TaskSubmitted', 'TaskQueued', 'TaskCancelled']);
  });

  it('4: a task record edited behind the log', async () => {
    const sql = rawClient(postgres.url!, schema);
    try {
      await sql`UPDATE tasks SET record = jsonb_set(record, '{attempt}', '7') WHERE id = 'a'`;
    } finally {
      await sql.end({ timeout: 1 });
    }
    const v = new Violations(Date.now(), () => {});
    reportDifferences((await new PostgresLog(db).compare()).differences, v, 'doctored');
    expect(v.list.map((x) => [x.invariant, x.message])).toEqual([
      ['4', 'task-differs a fields attempt: live {"attempt":7} vs log {"attempt":1}'],
    ]);
  });
});
