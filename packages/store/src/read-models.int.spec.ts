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
  });
}
