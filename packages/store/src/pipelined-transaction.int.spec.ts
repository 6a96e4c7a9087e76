import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { sql } from 'drizzle-orm';
import { isConnectionError, openDatabase, pgErrorCode, rowsOf, type Database, type Tx } from '.';
import { backendAvailable, backends, openTestDatabase, rawClient, type TestDatabase } from '../test/support';

// On Postgres a store transaction sends BEGIN with its first statement instead of waiting for
// BEGIN's answer, and COMMIT right behind the writes its callback left in flight; on PGlite it is
// drizzle's own, and those writes are settled before COMMIT. Either way it must be one transaction.
for (const backend of backends()) {
  describe.skipIf(!backendAvailable(backend))(`database transactions on ${backend.kind}`, () => {
    let t: TestDatabase;
    beforeEach(async () => {
      t = await openTestDatabase(backend);
    });
    afterEach(async () => {
      await t?.close();
    });

    const row = async (id: string) =>
      rowsOf<{ id: string }>(await t.db.execute(sql`SELECT id FROM tasks WHERE id = ${id}`)).map((r) => r.id);
    const insertTask = (id: string) => sql`
      INSERT INTO tasks (id, status, version, owner, name, created_at, deleted, last_position, record)
      VALUES (${id}, 'QUEUED', 1, 'o', ${id}, now(), false, 1, ${JSON.stringify({ id })}::jsonb)`;

    it('runs its first statement inside the transaction: one transaction id and one start time for every statement', async () => {
      const seen = await t.transaction(async (tx) => {
        const first = rowsOf<{ xid: string; at: string }>(
          await tx.execute(sql`SELECT pg_current_xact_id()::text AS xid, now()::text AS at`),
        );
        await new Promise((r) => setTimeout(r, 20));
        const second = rowsOf<{ xid: string; at: string }>(
          await tx.execute(sql`SELECT pg_current_xact_id()::text AS xid, now()::text AS at`),
        );
        return [first[0], second[0]];
      });
      expect(seen[1]).toEqual(seen[0]);
    });

    it('commits what the callback wrote, and writes nothing when a statement fails or the callback throws', async () => {
      await t.transaction(async (tx) => {
        await tx.execute(insertTask('kept'));
      });
      await expect(
        t.transaction(async (tx) => {
          await tx.execute(insertTask('refused-1'));
          await tx.execute(insertTask('kept')); // the same key: refused
        }),
      ).rejects.toThrow();
      await expect(
        t.transaction(async (tx) => {
          await tx.execute(insertTask('refused-2'));
          throw new Error('the callback gave up');
        }),
      ).rejects.toThrow('the callback gave up');
      expect(await row('kept')).toEqual(['kept']);
      expect(await row('refused-1')).toEqual([]);
      expect(await row('refused-2')).toEqual([]);
    });

    it('commits the writes the callback left in flight, with the rest of the transaction', async () => {
      const answer = await t.transaction(async (tx, writes) => {
        await tx.execute(insertTask('awaited'));
        void writes.track(tx.execute(insertTask('in-flight-1')));
        void writes.track(tx.execute(insertTask('in-flight-2')));
        return 'done';
      });
      expect(answer).toBe('done');
      for (const id of ['awaited', 'in-flight-1', 'in-flight-2']) expect(await row(id)).toEqual([id]);
    });

    it('writes nothing when a write left in flight fails, and throws its error, not that of a statement after it', async () => {
      await t.transaction(async (tx) => {
        await tx.execute(insertTask('first'));
      });
      const failed = t.transaction(async (tx, writes) => {
        await tx.execute(insertTask('before-it'));
        void writes.track(tx.execute(insertTask('first'))); // the same key: refused
        // Sent after the refused write: it meets an aborted transaction (on Postgres and PGlite alike).
        await tx.execute(sql`SELECT 1`);
      });
      // 23505: the refused write's unique violation; the SELECT after it got 25P02 (transaction aborted).
      expect(pgErrorCode(await failed.catch((err: unknown) => err))).toBe('23505');
      expect(await row('before-it')).toEqual([]);
      // The last write of the transaction, failing behind its COMMIT.
      await expect(
        t.transaction(async (tx, writes) => {
          await tx.execute(insertTask('before-the-last'));
          void writes.track(tx.execute(insertTask('first')));
        }),
      ).rejects.toThrow();
      expect(await row('before-the-last')).toEqual([]);
      expect(await row('first')).toEqual(['first']);
    });

    it('throws the statement that failed, not a write left in flight behind it that met the aborted transaction', async () => {
      await t.transaction(async (tx) => {
        await tx.execute(insertTask('first'));
      });
      const failed = t.transaction(async (tx, writes) => {
        // Sent now (drizzle's query runs when its result is asked for): the same key, refused.
        const refused = tx.execute(insertTask('first')).then((r) => r);
        void writes.track(tx.execute(insertTask('behind-it'))); // sent after it: 25P02
        await refused;
      });
      expect(pgErrorCode(await failed.catch((err: unknown) => err))).toBe('23505');
      expect(await row('behind-it')).toEqual([]);
    });

    if (backend.kind === 'postgres')
      it('runs its statements prepared, so that statements sent together travel together', async () => {
        const prepared = await t.transaction(async (tx) => {
          await tx.execute(sql`SELECT ${1}::int AS one`);
          return rowsOf<{ statement: string }>(await tx.execute(sql`SELECT statement FROM pg_prepared_statements`)).map((r) => r.statement);
        });
        expect(prepared).toContain('SELECT $1::int AS one');
      });

    it('gives its connection back whatever the outcome: more transactions than the pool has connections, failing and not', async () => {
      const outcomes = await Promise.allSettled(
        Array.from({ length: 40 }, (_, i) =>
          t.transaction(async (tx) => {
            await tx.execute(insertTask(`t${i}`));
            if (i % 3 === 0) throw new Error(`gave up ${i}`);
          }),
        ),
      );
      expect(outcomes.filter((o) => o.status === 'fulfilled')).toHaveLength(26);
      const n = rowsOf<{ n: string | number }>(await t.db.execute(sql`SELECT count(*) AS n FROM tasks`));
      expect(Number(n[0]!.n)).toBe(26);
    });

    if (backend.kind === 'postgres')
      describe('when the server closes its connection (an outage, a terminated backend)', () => {
        // One connection, so the transactions after it can only go on with a fresh one.
        let one: Database;
        let admin: ReturnType<typeof rawClient>;
        beforeEach(async () => {
          one = await openDatabase({ url: t.url!, schema: t.schema, migrate: false, maxConnections: 1 });
          admin = rawClient(t.url!, t.schema);
        });
        afterEach(async () => {
          await one?.close();
          await admin?.end({ timeout: 1 });
        });
        const terminate = async (pid: number) => {
          await admin`SELECT pg_terminate_backend(${pid})`;
        };
        const backendPid = async (tx: Tx) => rowsOf<{ pid: number }>(await tx.execute(sql`SELECT pg_backend_pid() AS pid`))[0]!.pid;
        /** Settled within a while, or the pool kept the dead connection (what it would do is hang). */
        const settled = async <T>(p: Promise<T>) => {
          let timer: NodeJS.Timeout | undefined;
          try {
            return await Promise.race([
              p,
              new Promise<never>((_, reject) => {
                timer = setTimeout(() => reject(new Error('did not settle in 10 s: the transaction went to a closed connection')), 10_000);
              }),
            ]);
          } finally {
            clearTimeout(timer);
          }
        };
        const goesOn = async () => {
          expect(await settled(one.transaction(async (tx) => rowsOf(await tx.execute(sql`SELECT 1 AS one`))))).toEqual([{ one: 1 }]);
          expect(rowsOf(await settled(one.db.execute(sql`SELECT 2 AS two`)))).toEqual([{ two: 2 }]);
          await settled(one.transaction(async (tx) => tx.execute(insertTask('after-the-loss'))));
          expect(await row('after-the-loss')).toEqual(['after-the-loss']);
        };

        it('fails with a connection error while a statement waits, writes nothing, and the next transactions run', async () => {
          const lost = one.transaction(async (tx) => {
            await tx.execute(insertTask('lost-1'));
            await terminate(await backendPid(tx));
            await tx.execute(sql`SELECT pg_sleep(5)`);
          });
          expect(isConnectionError(await settled(lost.catch((err: unknown) => err)))).toBe(true);
          expect(await row('lost-1')).toEqual([]);
          await goesOn();
        });

        it('fails a statement sent after the connection closed at once, rather than sending it nowhere, and the next transactions run', async () => {
          const lost = one.transaction(async (tx) => {
            await tx.execute(insertTask('lost-2'));
            await terminate(await backendPid(tx));
            // Long enough for the close to arrive: the next statement is sent after it.
            await new Promise((r) => setTimeout(r, 300));
            await tx.execute(sql`SELECT 1`);
          });
          expect(isConnectionError(await settled(lost.catch((err: unknown) => err)))).toBe(true);
          expect(await row('lost-2')).toEqual([]);
          await goesOn();
        });

        it('fails when the connection closes with writes in flight at COMMIT, and the next transactions run', async () => {
          const lost = one.transaction(async (tx, writes) => {
            const pid = await backendPid(tx);
            void writes.track(tx.execute(insertTask('lost-3')));
            void writes.track(tx.execute(sql`SELECT pg_sleep(5)`));
            await terminate(pid);
          });
          expect(isConnectionError(await settled(lost.catch((err: unknown) => err)))).toBe(true);
          expect(await row('lost-3')).toEqual([]);
          await goesOn();
        });
      });
  });
}
