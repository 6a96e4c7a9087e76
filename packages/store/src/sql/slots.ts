// Statements on the GPU slots: the configured slots and who holds each. Holders are written
// only by the task projection (tasks.ts), with the task row that takes or frees the slot.
import { asc, eq, sql } from 'drizzle-orm';
import type { TaskRecord } from '@trainyard/domain';
import type { Conn } from '../database';
import { gpuSlots, slotHolders, tasks } from '../schema';

export interface SlotRow {
  slotId: number;
  gpuIndex: number;
  holderTaskId: string | null;
}

export async function listSlots(conn: Conn): Promise<SlotRow[]> {
  const rows = await conn
    .select({ slotId: gpuSlots.slotId, gpuIndex: gpuSlots.gpuIndex, holderTaskId: slotHolders.taskId })
    .from(gpuSlots)
    .leftJoin(slotHolders, eq(slotHolders.slotId, gpuSlots.slotId))
    .orderBy(asc(gpuSlots.slotId));
  return rows.map((r) => ({ ...r, holderTaskId: r.holderTaskId ?? null }));
}

/** The slots with the record of the task holding each (null when free), in slot order. */
export async function listSlotsWithTasks(conn: Conn): Promise<(Omit<SlotRow, 'holderTaskId'> & { task: TaskRecord | null })[]> {
  const rows = await conn
    .select({ slotId: gpuSlots.slotId, gpuIndex: gpuSlots.gpuIndex, record: tasks.record })
    .from(gpuSlots)
    .leftJoin(slotHolders, eq(slotHolders.slotId, gpuSlots.slotId))
    .leftJoin(tasks, eq(tasks.id, slotHolders.taskId))
    .orderBy(asc(gpuSlots.slotId));
  return rows.map((r) => ({ slotId: r.slotId, gpuIndex: r.gpuIndex, task: r.record ?? null }));
}

export async function listSlotHolders(conn: Conn): Promise<Map<number, string>> {
  const rows = await conn.select().from(slotHolders);
  return new Map(rows.map((r) => [r.slotId, r.taskId]));
}

/** Make the slot table match the configuration: one slot per GPU index given. */
export async function configureSlots(conn: Conn, gpuIndices: readonly number[]): Promise<void> {
  for (const [slotId, gpuIndex] of gpuIndices.entries()) {
    await conn.insert(gpuSlots).values({ slotId, gpuIndex }).onConflictDoUpdate({ target: gpuSlots.slotId, set: { gpuIndex } });
  }
  // Extra slots go once nobody holds them (a held one stays until its task ends).
  await conn.execute(sql`
    DELETE FROM gpu_slots s WHERE s.slot_id >= ${gpuIndices.length}
      AND NOT EXISTS (SELECT 1 FROM slot_holders h WHERE h.slot_id = s.slot_id)`);
}
