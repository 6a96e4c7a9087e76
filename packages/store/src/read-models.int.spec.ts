import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { sql } from 'drizzle-orm';
import { listTasks } from '.';
import { backendAvailable, backends, openTestDatabase, type TestDatabase } from '../test/support';

for (const backend of backends()) {
  describe.skipIf(!backendAvailable(backend))(`task list on ${backend.kind}`, () => {
    let t: TestDatabase;
    beforeEach(async () => {
      t = await openTestDatabase(backend);
    });
    afterEach(async () => {
      await t?.close();
    });

    it('pages newest first by (created_at, id), ties included, without repeats or gaps', async () => {
      // Three tasks share one millisecond, two another: the id breaks the tie.
      const rows: [string, string, boolean][] = [
        ['a', '2026-01-01T00:00:00.001Z', false],
        ['b', '2026-01-01T00:00:00.001Z', false],
        ['c', '2026-01-01T00:00:00.001Z', false],
        ['d', '2026-01-01T00:00:00.002Z', false],
        ['x', '2026-01-01T00:00:00.002Z', true],
        ['e', '2026-01-01T00:00:00.002Z', false],
        ['f', '2026-01-01T00:00:00.003Z', false],
        ['g', '2026-01-01T00:00:00.004Z', false],
      ];
      for (const [id, at, deleted] of rows) {
        await t.db.execute(sql`
          INSERT INTO tasks (id, status, version, owner, name, created_at, deleted, last_position, record)
          VALUES (${id}, 'COMPLETED', 1, 'o', ${id}, ${at}::timestamptz, ${deleted}, 1, ${JSON.stringify({ id, createdAt: at })}::jsonb)`);
      }
      const seen: string[] = [];
      let cursor: string | null = null;
      for (let i = 0; i < 10; i++) {
        const page: Awaited<ReturnType<typeof listTasks>> = await listTasks(t.db, { cursor, limit: 2 });
        seen.push(...page.items.map((r) => r.id));
        cursor = page.nextCursor;
        if (!cursor) break;
      }
      expect(seen).toEqual(['g', 'f', 'e', 'd', 'c', 'b', 'a']);
    });

    it('finds tasks by a piece of their name, model or id, in any case, and by the start of their id', async () => {
      const rows: [string, string, string][] = [
        ['tabc100', 'Coder docstrings', 'Qwen/Qwen2.5-Coder-1.5B-Instruct'],
        ['tabc200', 'sql 100% fit_v2', 'Qwen/Qwen2.5-Coder-7B-Instruct'],
        ['tdef300', 'chat', 'my-org/tiny-500M'],
      ];
      for (const [i, [id, name, model]] of rows.entries()) {
        const at = `2026-01-01T00:00:0${i}.000Z`;
        await t.db.execute(sql`
          INSERT INTO tasks (id, status, version, owner, name, created_at, deleted, last_position, record)
          VALUES (${id}, 'COMPLETED', 1, 'o', ${name}, ${at}::timestamptz, false, 1, ${JSON.stringify({ id, createdAt: at, spec: { name, model } })}::jsonb)`);
      }
      const ids = async (q: Omit<Parameters<typeof listTasks>[1], 'limit'>) =>
        (await listTasks(t.db, { ...q, limit: 50 })).items.map((r) => r.id);
      expect(await ids({ search: 'coder' })).toEqual(['tabc200', 'tabc100']);
      expect(await ids({ search: '7b' })).toEqual(['tabc200']);
      expect(await ids({ search: 'DEF3' })).toEqual(['tdef300']);
      // % and _ are themselves, not wildcards.
      expect(await ids({ search: '100%' })).toEqual(['tabc200']);
      expect(await ids({ search: 'fit_' })).toEqual(['tabc200']);
      expect(await ids({ search: '_' })).toEqual(['tabc200']);
      expect(await ids({ idPrefix: 'tabc' })).toEqual(['tabc200', 'tabc100']);
      expect(await ids({ idPrefix: 'tabc1' })).toEqual(['tabc100']);
      expect(await ids({ idPrefix: 't_' })).toEqual([]);
      expect(await ids({ idPrefix: 'tabc', search: 'sql' })).toEqual(['tabc200']);
    });
  });
}
