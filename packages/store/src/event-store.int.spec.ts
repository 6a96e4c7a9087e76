import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { sql } from 'drizzle-orm';
import { CURRENT_SCHEMA_VERSION, type NewTaskEvent } from '@trainyard/domain';
import {
  appendToStream,
  ConcurrencyError,
  pgErrorCode,
  readAllAfter,
  readCommittedAfter,
  readStream,
  rowsOf,
  TAIL_START,
  tailHead,
  cursorAt,
  type TailCursor,
} from '.';
import { backendAvailable, backends, openTestDatabase, rawClient, type TestDatabase } from '../test/support';

const submitted = (name = 'a'): NewTaskEvent => ({
  type: 'TaskSubmitted',
  data: {
    spec: {
      name,
      model: 'm-0.5B',
      datasetPath: 'd.jsonl',
      outputDir: 'out',
      timeoutMs: 1000,
      resources: { gpus: 1, memoryMb: null, shared: false, memorySource: null },
      owner: 'o',
      config: {
        epochs: 1,
        batchSize: 1,
        gradientAccumulation: 1,
        learningRate: 1e-4,
        maxLength: 64,
        load8bit: false,
        load4bit: false,
        loraRank: 8,
        loraAlpha: 16,
      },
    },
  },
});
const queued: NewTaskEvent = { type: 'TaskQueued', data: {} };
const meta = { actor: 'spec' };

/**
 * The tail shows only transactions older than every one still running in this database, and
 * other specs run beside this one (one holds a transaction open on purpose): wait until nothing
 * older than our last append is in flight, as a real tailer would by polling again.
 */
async function tailCaughtUp(db: TestDatabase['db']): Promise<void> {
  for (const until = Date.now() + 30_000; Date.now() < until;) {
    const [row] = rowsOf<{ ok: boolean }>(
      await db.execute(sql`SELECT coalesce(max(transaction_id) < pg_snapshot_xmin(pg_current_snapshot()), true) AS ok FROM events`),
    );
    if (row?.ok) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error('the tail did not catch up within 30 s: a transaction left open?');
}

for (const backend of backends()) {
  describe.skipIf(!backendAvailable(backend))(`event store on ${backend.kind}`, () => {
    let t: TestDatabase;
    beforeEach(async () => {
      t = await openTestDatabase(backend);
    });
    afterEach(async () => {
      await t?.close();
    });

    it('appends with versions and positions and reads the stream back', async () => {
      const a = await appendToStream(t.db, 's1', 0, [submitted(), queued], meta);
      expect(a.map((e) => [e.type, e.version])).toEqual([
        ['TaskSubmitted', 1],
        ['TaskQueued', 2],
      ]);
      expect(BigInt(a[1]!.position)).toBeGreaterThan(BigInt(a[0]!.position));
      expect(a[0]!.metadata).toEqual({ actor: 'spec', schemaVersion: CURRENT_SCHEMA_VERSION });
      expect(Number.isNaN(Date.parse(a[0]!.recordedAt))).toBe(false);
      const read = await readStream(t.db, 's1');
      expect(read).toEqual(a);
    });

    it('refuses a stale expected version with a conflict, writing nothing', async () => {
      await appendToStream(t.db, 's1', 0, [submitted()], meta);
      await expect(appendToStream(t.db, 's1', 0, [submitted()], meta)).rejects.toBeInstanceOf(ConcurrencyError);
      await expect(appendToStream(t.db, 's1', 5, [queued], meta)).rejects.toThrow(/expected version 5 but it is 1/);
      expect(await readStream(t.db, 's1')).toHaveLength(1);
    });

    it('a stale append fails in the database, so nothing sent behind it in its transaction can commit', async () => {
      await appendToStream(t.db, 's1', 0, [submitted()], meta);
      // The callback returns whatever the answers (as a transaction that leaves writes in flight
      // at COMMIT does): only the database can keep the COMMIT from writing.
      await t.db
        .transaction(async (tx) => {
          await appendToStream(tx, 's1', 1, [queued], meta);
          await Promise.allSettled([
            appendToStream(tx, 's1', 0, [submitted('b')], meta),
            tx.execute(
              sql`INSERT INTO events (stream_id, stream_version, type, data, metadata) VALUES ('s2', 1, 'TaskQueued', '{}', '{}')`,
            ),
          ]);
        })
        .catch(() => {});
      expect((await readStream(t.db, 's1')).map((e) => e.type)).toEqual(['TaskSubmitted']);
      expect(await readStream(t.db, 's2')).toEqual([]);
    });

    it('the database refuses UPDATE, DELETE and TRUNCATE on the log', async () => {
      await appendToStream(t.db, 's1', 0, [submitted()], meta);
      for (const stmt of [sql`UPDATE events SET type = 'Forged'`, sql`DELETE FROM events`, sql`TRUNCATE events`]) {
        const err = await t.db.execute(stmt).then(
          () => null,
          (e: unknown) => e,
        );
        expect(err, String(stmt.queryChunks)).not.toBeNull();
        expect(String((err as Error).message) + String((err as { cause?: Error }).cause?.message)).toMatch(/append-only/);
      }
      expect((await readStream(t.db, 's1'))[0]!.type).toBe('TaskSubmitted');
    });

    it('the holder table refuses a second exclusive holder of one device, and one task holding a device twice', async () => {
      const hold = (device: string, task: string, exclusive: boolean, pos: number) =>
        t.db
          .execute(
            sql`INSERT INTO device_holders (device_id, task_id, memory_mb, exclusive, since_position) VALUES (${device}, ${task}, 1024, ${exclusive}, ${pos})`,
          )
          .then(
            () => null,
            (e: unknown) => e,
          );
      expect(await hold('gpu0', 'a', true, 1)).toBeNull();
      expect(pgErrorCode(await hold('gpu0', 'b', true, 2))).toBe('23505');
      expect(await hold('gpu1', 'c', false, 3)).toBeNull();
      expect(await hold('gpu1', 'd', false, 4)).toBeNull();
      expect(pgErrorCode(await hold('gpu1', 'c', false, 5))).toBe('23505');
    });

    it('tails committed events and resumes from a position', async () => {
      await appendToStream(t.db, 's1', 0, [submitted(), queued], meta);
      await appendToStream(t.db, 's2', 0, [submitted('b')], meta);
      await tailCaughtUp(t.db);
      const first = await readCommittedAfter(t.db, TAIL_START, 2);
      expect(first.events.map((e) => e.streamId)).toEqual(['s1', 's1']);
      const rest = await readCommittedAfter(t.db, first.cursor, 10);
      expect(rest.events.map((e) => e.streamId)).toEqual(['s2']);
      const resumed = await cursorAt(t.db, first.events[1]!.position);
      expect((await readCommittedAfter(t.db, resumed!, 10)).events).toEqual(rest.events);
      expect(await tailHead(t.db)).toEqual(rest.cursor);
      expect((await readAllAfter(t.db, '0', 10)).length).toBe(3);
    });

    it('tails in numeric position order across a change in digit count (9 → 10), paging without skips', async () => {
      // One transaction, positions 1..12: ordered as text they would go 1, 10, 11, 12, 2, ...
      const appended = await appendToStream(t.db, 's1', 0, [submitted(), ...Array.from({ length: 11 }, () => queued)], meta);
      const all = appended.map((e) => e.position);
      await tailCaughtUp(t.db);
      expect((await readCommittedAfter(t.db, TAIL_START, 100)).events.map((e) => e.position)).toEqual(all);
      const paged: string[] = [];
      let cursor = TAIL_START;
      for (let i = 0; i < 10; i++) {
        const page = await readCommittedAfter(t.db, cursor, 4);
        paged.push(...page.events.map((e) => e.position));
        cursor = page.cursor;
        if (page.events.length < 4) break;
      }
      expect(paged).toEqual(all);
      expect((await tailHead(t.db)).position).toBe(all[all.length - 1]);
    });
  });
}

const pg = backends().find((b) => b.kind === 'postgres')!;

describe.skipIf(!backendAvailable(pg))('event store on postgres, two real connections', () => {
  let t: TestDatabase;
  beforeEach(async () => {
    t = await openTestDatabase(pg);
  });
  afterEach(async () => {
    await t?.close();
  });

  it('two writers with the same expected version: exactly one wins', async () => {
    await appendToStream(t.db, 's1', 0, [submitted()], meta);
    const other = await t.openAnother();
    for (let round = 0; round < 10; round++) {
      const v = (await readStream(t.db, 's1')).length;
      const results = await Promise.allSettled([
        t.db.transaction((tx) => appendToStream(tx, 's1', v, [queued], meta)),
        other.db.transaction((tx) => appendToStream(tx, 's1', v, [queued], meta)),
      ]);
      const won = results.filter((r) => r.status === 'fulfilled');
      const lost = results.filter((r) => r.status === 'rejected');
      expect(won).toHaveLength(1);
      expect((lost[0] as PromiseRejectedResult).reason).toBeInstanceOf(ConcurrencyError);
    }
    const versions = (await readStream(t.db, 's1')).map((e) => e.version);
    expect(versions).toEqual(Array.from({ length: 11 }, (_, i) => i + 1));
  });

  // The sequence-gap problem: a position is drawn when a row is inserted, but a slower
  // transaction can commit a lower position after a faster one committed a higher one.
  it('a tailer never skips an event committed late by a slower transaction', async () => {
    const slow = rawClient(t.url!, t.schema);
    const fast = rawClient(t.url!, t.schema);
    const insert = (c: typeof slow, stream: string) =>
      c`INSERT INTO events (stream_id, stream_version, type, data, metadata)
        VALUES (${stream}, 1, 'TaskSubmitted', '{}'::jsonb, '{"actor":"spec","schemaVersion":1}'::jsonb)
        RETURNING position::text AS position`;
    try {
      for (const fastStartsFirst of [false, true]) {
        // fastStartsFirst: the fast transaction takes its transaction id before the slow one,
        // so ordering by transaction id alone would not be enough either.
        const seen: string[] = [];
        let cursor: TailCursor = await tailHead(t.db);
        const drain = async () => {
          for (;;) {
            const r = await readCommittedAfter(t.db, cursor, 100);
            if (r.events.length === 0) return;
            seen.push(...r.events.map((e) => e.position));
            cursor = r.cursor;
          }
        };
        await fast`BEGIN`;
        if (fastStartsFirst) await fast`SELECT pg_current_xact_id()`;
        await slow`BEGIN`;
        const [slowRow] = await insert(slow, `slow-${fastStartsFirst}`);
        const [fastRow] = await insert(fast, `fast-${fastStartsFirst}`);
        expect(BigInt(fastRow!.position)).toBeGreaterThan(BigInt(slowRow!.position));
        await fast`COMMIT`;
        await drain();
        // Whatever was delivered so far, the slow (uncommitted) event must still be ahead.
        expect(seen).not.toContain(slowRow!.position);
        await slow`COMMIT`;
        // Other writers on the cluster (parallel specs) may hold the horizon back for a moment:
        // the tail is allowed to be late, never to skip.
        for (let i = 0; i < 200 && seen.length < 2; i++) {
          await drain();
          if (seen.length < 2) await new Promise((r) => setTimeout(r, 25));
        }
        expect([...seen].sort()).toEqual([slowRow!.position, fastRow!.position].sort());
        expect(new Set(seen).size).toBe(seen.length);
      }
    } finally {
      await slow.end();
      await fast.end();
    }
  });
});
