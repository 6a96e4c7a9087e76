import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { sql } from 'drizzle-orm';
import { HOLDERS_WITH_THEIR_TASKS, listDevicesWithHolders, rowsOf } from '.';
import { backendAvailable, backends, openTestDatabase, type TestDatabase } from '../test/support';

interface PlanNode {
  'Node Type': string;
  'Relation Name'?: string;
  Plans?: PlanNode[];
}

function nodesOn(plan: PlanNode, relation: string): PlanNode[] {
  const own = plan['Relation Name'] === relation ? [plan] : [];
  return [...own, ...(plan.Plans ?? []).flatMap((p) => nodesOn(p, relation))];
}

for (const backend of backends()) {
  describe.skipIf(!backendAvailable(backend))(`device holders on ${backend.kind}`, () => {
    let t: TestDatabase;
    beforeEach(async () => {
      t = await openTestDatabase(backend);
    });
    afterEach(async () => {
      await t?.close();
    });

    it("reads each holder's task by its key in a fresh database with thousands of tasks and no statistics yet", async () => {
      // A fresh database: nothing analyzed, so the planner guesses the holders table's size.
      await t.db.execute(sql`
        INSERT INTO tasks (id, status, version, owner, name, created_at, deleted, last_position, record, priority)
        SELECT 't' || i, 'QUEUED', 2, 'o', 'task ' || i, now(), false, i, jsonb_build_object('id', 't' || i), 0
        FROM generate_series(1, 3000) AS i`);
      await t.db.execute(sql`
        UPDATE tasks SET status = 'TRAINING',
          record = jsonb_build_object('id', id, 'startedAt', '2026-12-05T10:00:00.000Z', 'deadlineAt', '2026-12-05T16:00:00.000Z', 'preemptions', 1, 'stop', null)
        WHERE id = 't17'`);
      await t.db.execute(sql`INSERT INTO devices (device_id, gpu_index, name, memory_mb, present) VALUES ('gpu0', 0, 'A100', 81920, true)`);
      await t.db.execute(
        sql`INSERT INTO device_holders (device_id, task_id, memory_mb, exclusive, since_position) VALUES ('gpu0', 't17', 0, true, 17)`,
      );

      const [{ 'QUERY PLAN': explained }] = rowsOf<{ 'QUERY PLAN': [{ Plan: PlanNode }] | string }>(
        await t.db.execute(sql.raw(`EXPLAIN (FORMAT JSON) ${HOLDERS_WITH_THEIR_TASKS}`)),
      ) as [{ 'QUERY PLAN': [{ Plan: PlanNode }] | string }];
      const [{ Plan: plan }] = typeof explained === 'string' ? (JSON.parse(explained) as [{ Plan: PlanNode }]) : explained;
      const taskReads = nodesOn(plan, 'tasks');
      expect(taskReads.length).toBeGreaterThan(0);
      for (const node of taskReads) expect(node['Node Type']).toMatch(/^Index( Only)? Scan$/);

      const [device] = await listDevicesWithHolders(t.db);
      expect(device!.holders).toEqual([
        {
          deviceId: 'gpu0',
          taskId: 't17',
          memoryMb: 0,
          exclusive: true,
          endsBy: Date.parse('2026-12-05T16:00:00.000Z'),
          owner: 'o',
          priority: 0,
          startedAt: Date.parse('2026-12-05T10:00:00.000Z'),
          preemptions: 1,
          stopping: false,
        },
      ]);
    });
  });
}
