// pg-boss (v10, the last line that runs on Node 20) on the same Postgres, in a fresh schema,
// as the baseline a job queue gives for the same work.
import { createRequire } from 'node:module';
import PgBoss from 'pg-boss';
import { dropSchema, freshSchemaName, onCleanup } from './common';

/** pg-boss v10's floor for a worker's polling interval (attorney.js: MIN_POLLING_INTERVAL_MS). */
export const PGBOSS_MIN_POLLING_SECONDS = 0.5;
/** pg-boss v10's default polling interval. */
export const PGBOSS_DEFAULT_POLLING_SECONDS = 2;
/** Same pool size as the service's Postgres pool (packages/store/src/database.ts: 10). */
export const POOL_SIZE = 10;

export interface Boss {
  boss: PgBoss;
  schema: string;
  version: string;
  dispose(): Promise<void>;
}

export async function startBoss(url: string, what: string): Promise<Boss> {
  const schema = freshSchemaName(`pgboss_${what}`);
  const boss = new PgBoss({
    connectionString: url,
    schema,
    max: POOL_SIZE,
    // Only the queue itself: no cron scheduling, no maintenance/monitoring timers adding load.
    schedule: false,
    supervise: false,
    migrate: true,
  });
  boss.on('error', (err) => console.error(`[bench] pg-boss: ${err.message}`));
  const dispose = onCleanup(async () => {
    await boss.stop({ graceful: false, wait: true, timeout: 2000 }).catch(() => {});
    await dropSchema(url, schema).catch(() => {});
  });
  await boss.start();
  const version = (createRequire(import.meta.url)('pg-boss/package.json') as { version: string }).version;
  return { boss, schema, version, dispose };
}
