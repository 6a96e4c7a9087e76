// Which fold wrote the read models. A record written by an older fold lacks what a newer one
// adds, so start-up refolds the read models from the log when the versions differ.
import { TASK_PROJECTION_VERSION } from '@trainyard/domain';
import type { Database } from './database';
import { replaceReadModelsIn } from './rebuild';
import { lockProjectionVersion, markProjectionCurrent } from './sql/projections';

/** The fold that wrote read models before their version was recorded. */
const FIRST_VERSION = 1;

export interface ProjectionCheck {
  /** The version the read models were written with (null: none recorded yet). */
  found: number | null;
  version: number;
  rebuilt: { events: number; tasks: number } | null;
}

/**
 * Bring the read models to this code's fold. Read models that carry no version were written
 * before versions were kept, by the fold that is version 1, and are marked as such. The row lock
 * makes a second instance starting at the same time wait, then find the work done.
 */
export async function ensureProjectionCurrent(database: Database): Promise<ProjectionCheck> {
  const version = TASK_PROJECTION_VERSION;
  return database.db.transaction(async (tx) => {
    const found = await lockProjectionVersion(tx);
    if (found === null) {
      await markProjectionCurrent(tx, FIRST_VERSION);
      if ((version as number) === FIRST_VERSION) return { found: null, version, rebuilt: null };
    } else if (found === version) {
      return { found, version, rebuilt: null };
    }
    const rebuilt = await replaceReadModelsIn(tx);
    return { found, version, rebuilt };
  });
}
