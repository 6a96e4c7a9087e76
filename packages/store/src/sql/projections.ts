// Statements on the projection versions: which fold wrote the read models.
import { eq, sql } from 'drizzle-orm';
import { TASK_PROJECTION_VERSION } from '@trainyard/domain';
import type { Conn } from '../database';
import { projectionVersions } from '../schema';

const TASKS = 'tasks';

/**
 * The version recorded for the task read models (null: none yet), its row locked until the
 * transaction ends, so a second instance starting at the same time waits for the first.
 */
export async function lockProjectionVersion(tx: Conn): Promise<number | null> {
  const [row] = await tx
    .select({ version: projectionVersions.version })
    .from(projectionVersions)
    .where(eq(projectionVersions.name, TASKS))
    .for('update');
  return row?.version ?? null;
}

/** Record that the read models now hold the fold of `version`. */
export async function markProjectionCurrent(tx: Conn, version = TASK_PROJECTION_VERSION): Promise<void> {
  await tx
    .insert(projectionVersions)
    .values({ name: TASKS, version })
    .onConflictDoUpdate({ target: projectionVersions.name, set: { version, recordedAt: sql`now()` } });
}
